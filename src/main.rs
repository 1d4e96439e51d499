//! The `stickytls` command line. Each subcommand is one variant of
//! [`Command`] and one function.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use stickytls::config::LogFormat;
use stickytls::config::StateConfig;
use stickytls::config::file as config_file;
use stickytls::config::quick::{RunArgs, parse_duration_arg};
use stickytls::ctl;
use stickytls::inspect::{Limits, report::report};
use stickytls::router::Router;
use stickytls::shutdown::{Shutdown, Signals};
use stickytls::state::StateFile;
use stickytls::stop::Stopped;

/// jemalloc rather than glibc's malloc: glibc keeps what a wave of
/// connections freed in its arenas, jemalloc gives the pages back after
/// its decay time (docs/performance.md, "Levers tried for memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "stickytls",
    version,
    about = "A TLS-session-aware passthrough router"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the router.
    Run(Box<RunArgs>),
    /// Show stickiness on real TLS: local backends, the router and clients,
    /// connection by connection, then plain round robin for contrast.
    #[cfg(feature = "demo")]
    Demo,
    /// Check that a live router sends every TLS resumption back to the
    /// backend that issued the session: sessions are made, then resumed
    /// from other source addresses. Exits 1 below --min-rate.
    ///
    /// A diagnostic client: it accepts any certificate (it verifies no
    /// server's identity, only that each server holds the key of the
    /// certificate it shows) and sends nothing secret. Backends are told
    /// apart by their certificate or, with --http, by an HTTP answer. See
    /// docs/operations.md.
    #[cfg(feature = "demo")]
    Selftest(SelftestArgs),
    /// Show what the handshake inspector sees in captured bytes, as JSON.
    /// Exits 0 when every side given is complete, 1 otherwise.
    Inspect(InspectArgs),
    /// Validate a configuration file: every mistake with its line and
    /// column; exit 0 only if the file is valid.
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// See and steer a running router through its admin endpoint
    /// (docs/operations.md). Exits 1 when the router cannot be reached or
    /// answers an error.
    Ctl(CtlArgs),
}

#[derive(Debug, Args)]
struct CtlArgs {
    /// The router's admin endpoint, HOST:PORT.
    #[arg(
        long,
        value_name = "ADDR",
        env = "STICKYTLS_ADMIN",
        default_value = "127.0.0.1:9900"
    )]
    admin: String,
    /// The [admin] token (better given in the environment than on a
    /// command line others can read).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "STICKYTLS_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// The pools, with their backends up and affinity table sizes.
    Pools,
    /// A pool's backends: effective state, weight, connections, resumptions.
    Backends { pool: String },
    /// Change a backend's state (up, drain, maint) and/or weight.
    Set {
        pool: String,
        backend: String,
        /// up: in service; drain: no new sessions, its sessions still
        /// resume there; maint: nothing new, its clients move elsewhere.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        #[arg(long, value_name = "N")]
        weight: Option<u32>,
    },
    /// Where a session key or a client address goes, and why.
    Lookup(AffinityArgs),
    /// Forget a session key's or a client address's affinity.
    Forget(AffinityArgs),
    /// The last routing decisions, newest first.
    Decisions {
        pool: String,
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// The router's counters.
    Stats,
    /// Re-read the router's configuration file and apply it in place
    /// (as SIGHUP does); prints what changed, or the file's mistakes.
    Reload,
}

#[derive(Debug, Args)]
struct AffinityArgs {
    pool: String,
    /// A session ID, ticket or PSK identity, in hex.
    #[arg(
        long,
        value_name = "HEX",
        required_unless_present = "client",
        conflicts_with = "client"
    )]
    key: Option<String>,
    /// A client IP address.
    #[arg(long, value_name = "IP")]
    client: Option<String>,
}

impl AffinityArgs {
    fn split(self) -> (String, ctl::By) {
        let by = match (self.key, self.client) {
            (Some(k), _) => ctl::By::Key(k),
            (None, Some(c)) => ctl::By::Client(c),
            (None, None) => unreachable!("clap requires --key or --client"),
        };
        (self.pool, by)
    }
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// Client -> server bytes ("-" for stdin).
    #[arg(value_name = "CLIENT_FILE")]
    client: String,
    /// Server -> client bytes ("-" for stdin).
    #[arg(value_name = "SERVER_FILE")]
    server: Option<String>,
    /// The files hold hex text (whitespace ignored) rather than raw bytes.
    #[arg(long)]
    hex: bool,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
struct SelftestArgs {
    /// The router's listening address.
    #[arg(long, value_name = "ADDR")]
    target: SocketAddr,
    /// Sessions per resumption kind; each is made from one source address
    /// and resumed from another.
    #[arg(long = "connections", value_name = "N", default_value_t = 30)]
    connections: usize,
    /// Server name to send (none by default).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Fail (exit 1) when a kind's share of resumptions that reached their
    /// issuing backend and resumed is below this.
    #[arg(long, value_name = "R", default_value_t = 0.99)]
    min_rate: f64,
    /// Tell backends apart by the answer to an HTTP/1.1 GET (its body, or
    /// the --http-header) instead of by their certificate.
    #[arg(long)]
    http: bool,
    /// The path to GET with --http.
    #[arg(long, value_name = "PATH", default_value = "/", requires = "http")]
    http_path: String,
    /// With --http, the response header naming the backend (else the body).
    #[arg(long, value_name = "NAME", requires = "http")]
    http_header: Option<String>,
    /// A local address to connect from (configured on this host); give at
    /// least two. Default: fresh random addresses of 127.0.0.0/8, for a
    /// router on this machine.
    #[arg(long = "source", value_name = "ADDR", num_args = 1..)]
    sources: Vec<std::net::IpAddr>,
    /// Resumption kinds to test, comma-separated: tls12-session-id,
    /// tls12-ticket, tls13-psk.
    #[arg(long, value_name = "KIND", value_delimiter = ',', value_parser = stickytls::selftest::Kind::parse,
          default_value = "tls12-session-id,tls12-ticket,tls13-psk")]
    kinds: Vec<stickytls::selftest::Kind>,
    /// Bound on each connection (connect, handshake, answer, and the wait
    /// for a TLS 1.3 ticket).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration_arg)]
    timeout: Duration,
    /// Connections at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
    /// Print the findings as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// Exit code for usage errors, as clap uses.
const USAGE: u8 = 2;

/// Logs to stderr, filtered by `RUST_LOG` or else `default_filter`, as
/// text or one JSON object per line. Colour only when stderr is a
/// terminal: in a file or a journal the escape codes are noise that every
/// reader and every grep has to get past.
fn init_logging(default_filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => fmt.json().init(),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let source = args.config.clone();
    let config = match args.config() {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    init_logging("info", config.log.format);
    let nofile = stickytls::listen::raise_nofile_limit();
    // The main thread only binds and waits for the signal; connections are
    // served on worker threads, one single-threaded runtime each.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stickytls: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let lifecycle = config.lifecycle.clone();
    // A router already running at the takeover socket hands over its
    // listening sockets and state; without one, this process starts on
    // its own.
    let inherited = lifecycle.takeover_socket.as_deref().and_then(|path| {
        match stickytls::takeover::take_over(path) {
            Ok(Some(i)) => {
                let sockets: usize = i.sockets.values().map(Vec::len).sum();
                tracing::info!(from_pid = ?i.from_pid, sockets, state_bytes = i.state.len(), "taking over from the running router");
                Some(i)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), "no takeover, starting on new sockets: {e}");
                None
            }
        }
    });
    let bound = match (source, &inherited) {
        (file, Some(i)) => {
            let sockets = i
                .sockets
                .iter()
                .map(|(a, s)| (*a, s.iter().filter_map(|s| s.try_clone().ok()).collect()))
                .collect();
            rt.block_on(Router::bind_inherited(config, file, sockets))
        }
        (Some(file), None) => rt.block_on(Router::bind_file(config, file)),
        (None, None) => rt.block_on(Router::bind(config)),
    };
    let router = match bound {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stickytls: {e}");
            return ExitCode::from(1);
        }
    };
    // Signals are caught from here on: before, their default action ends
    // the process, which has nothing to drain or save yet.
    let mut signals = match rt.block_on(async { Signals::new() }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stickytls: cannot handle signals: {e}");
            return ExitCode::from(1);
        }
    };
    // Caught from here on too: its default action would end the process.
    match rt.block_on(async { stickytls::reload::on_sighup(router.live().clone()) }) {
        Ok(reloads) => {
            rt.spawn(reloads);
        }
        Err(e) => {
            eprintln!("stickytls: cannot handle SIGHUP: {e}");
            return ExitCode::from(1);
        }
    }
    let pools = router.pools();
    let watched_pools = router.live().watch_pools();
    let state = lifecycle
        .state
        .as_ref()
        .map(|s| StateFile::new(s.file.clone()));
    match (&inherited, &state) {
        // What the running router knew is newer than any file.
        (Some(i), _) => match stickytls::takeover::restore(i, &pools) {
            Ok(r) => tracing::info!(
                entries = r.entries,
                clients = r.clients,
                "affinity state taken over"
            ),
            Err(e) => {
                tracing::warn!("the running router's state is not usable, starting without it: {e}")
            }
        },
        // Before any connection, so no lookup misses what the file holds.
        (None, Some(state)) => {
            state.restore(&pools);
        }
        (None, None) => {}
    }
    let live = router.live().clone();
    let taken_over = inherited.is_some();
    let backends: Vec<String> = pools
        .iter()
        .flat_map(|p| p.backends.all())
        .map(|b| format!("{}={}", b.name, b.addr))
        .collect();
    tracing::info!(listen = %router.local_addr(), backends = ?backends, threads, open_files = nofile, "stickytls routing");
    let shutdown = Shutdown::new(threads);
    let drain = shutdown.drain();
    let (done, workers) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = done.send(router.run_on_threads(threads, drain));
    });
    let (handed, takeover) = tokio::sync::mpsc::channel(1);
    if let Some(path) = &lifecycle.takeover_socket {
        // The workers serve the handed-over sockets from now on (and what
        // queues on them meanwhile waits for them): the old process may
        // stop accepting.
        let listening = match inherited {
            Some(i) => i.ready(live, path, handed),
            None => stickytls::takeover::listen(path, live, handed),
        };
        if let Err(e) = listening {
            tracing::warn!(path = %path.display(), "takeover socket unusable, a later upgrade will need a restart: {e}");
        }
    }
    if taken_over {
        // Under systemd (NotifyAccess=all) this process becomes the
        // service's main one; the old one drains and exits.
        stickytls::notify::ready_as_main();
    } else {
        stickytls::notify::notify("READY=1");
    }
    // SIGUSR2: start the new binary, which takes over through the socket.
    match rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
    }) {
        Ok(mut usr2) => {
            let can = lifecycle.takeover_socket.is_some();
            rt.spawn(async move {
                while usr2.recv().await.is_some() {
                    if !can {
                        tracing::warn!("SIGUSR2 ignored: an upgrade needs [state] takeover_socket (or --takeover-socket)");
                        continue;
                    }
                    if let Err(e) = stickytls::takeover::spawn_successor() {
                        tracing::error!("SIGUSR2: cannot start the new binary, still serving: {e}");
                    }
                }
            });
        }
        Err(e) => {
            eprintln!("stickytls: cannot handle SIGUSR2: {e}");
            return ExitCode::from(1);
        }
    }
    let stop = stickytls::stop::Stop {
        shutdown,
        signals: &mut signals,
        timeout: lifecycle.shutdown_timeout,
        state: state.map(|file| {
            let interval = lifecycle
                .state
                .as_ref()
                .map_or(StateConfig::INTERVAL, |s| s.interval);
            (file, watched_pools, interval)
        }),
        takeover: Some(takeover),
    };
    match rt.block_on(stop.run(workers)) {
        Ok(Stopped::Clean) => ExitCode::SUCCESS,
        // At once: returning would wait for the runtime's blocking tasks
        // (a state write) and the worker threads' connections.
        Ok(Stopped::Forced) => std::process::exit(1),
        Err(e) => {
            eprintln!("stickytls: {e}");
            ExitCode::from(1)
        }
    }
}

/// Exit 0 only for a valid file, so a restart script can run this first.
fn check(path: &std::path::Path) -> ExitCode {
    match config_file::load(path) {
        Ok(c) => {
            let backends: usize = c.pools.iter().map(|p| p.backends.len()).sum();
            let n = |count: usize, what: &str| {
                format!("{count} {what}{}", if count == 1 { "" } else { "s" })
            };
            println!(
                "{}: ok ({}, {}, {})",
                path.display(),
                n(c.listeners.len(), "listener"),
                n(c.pools.len(), "pool"),
                n(backends, "backend")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "demo")]
fn demo() -> ExitCode {
    // Warnings only by default: the demo prints its own account of every
    // decision, and per-connection logs would interleave with it.
    init_logging("warn", LogFormat::Text);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stickytls: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    match rt.block_on(stickytls::demo::run_demo(&mut out)) {
        Ok(summary) if summary.errors() == 0 => ExitCode::SUCCESS,
        Ok(summary) => {
            eprintln!("stickytls demo: {} connection(s) failed", summary.errors());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("stickytls demo: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "demo")]
fn selftest(args: SelftestArgs) -> ExitCode {
    use stickytls::selftest::{Identify, Options};
    let identify = match (args.http, args.http_header) {
        (false, _) => Identify::Certificate,
        (true, None) => Identify::HttpBody {
            path: args.http_path,
        },
        (true, Some(header)) => Identify::HttpHeader {
            path: args.http_path,
            header,
        },
    };
    let options = Options {
        target: args.target,
        sessions: args.connections,
        sni: args.sni,
        min_rate: args.min_rate,
        identify,
        sources: args.sources,
        kinds: args.kinds,
        timeout: args.timeout,
        concurrency: args.concurrency,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stickytls: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match rt.block_on(stickytls::selftest::run(&options)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stickytls selftest: {e}");
            return ExitCode::from(USAGE);
        }
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_string_pretty(&report.to_json())
            .map_err(std::io::Error::other)
            .and_then(|j| writeln!(out, "{j}"))
    } else {
        report.write_text(&mut out)
    };
    if let Err(e) = written {
        eprintln!("stickytls selftest: {e}");
        return ExitCode::from(1);
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args),
        #[cfg(feature = "demo")]
        Command::Demo => demo(),
        #[cfg(feature = "demo")]
        Command::Selftest(args) => selftest(args),
        Command::Inspect(args) => inspect(&args),
        Command::Check { config } => check(&config),
        Command::Ctl(args) => ctl_command(args),
    }
}

fn ctl_command(args: CtlArgs) -> ExitCode {
    let endpoint = ctl::Endpoint {
        addr: args.admin,
        token: args.token,
        timeout: Duration::from_secs(10),
    };
    let cmd = match args.command {
        CtlCommand::Pools => ctl::Command::Pools,
        CtlCommand::Backends { pool } => ctl::Command::Backends { pool },
        CtlCommand::Set {
            pool,
            backend,
            state,
            weight,
        } => {
            if state.is_none() && weight.is_none() {
                eprintln!("stickytls ctl set: give --state and/or --weight");
                return ExitCode::from(USAGE);
            }
            ctl::Command::Set {
                pool,
                backend,
                state,
                weight,
            }
        }
        CtlCommand::Lookup(a) => {
            let (pool, by) = a.split();
            ctl::Command::Lookup { pool, by }
        }
        CtlCommand::Forget(a) => {
            let (pool, by) = a.split();
            ctl::Command::Forget { pool, by }
        }
        CtlCommand::Decisions { pool, limit } => ctl::Command::Decisions { pool, limit },
        CtlCommand::Stats => ctl::Command::Stats,
        CtlCommand::Reload => ctl::Command::Reload,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stickytls ctl: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(ctl::run(&endpoint, &cmd, args.json)) {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stickytls ctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn inspect(args: &InspectArgs) -> ExitCode {
    if args.client == "-" && args.server.as_deref() == Some("-") {
        eprintln!("stickytls inspect: only one of CLIENT_FILE and SERVER_FILE can be stdin");
        return ExitCode::from(USAGE);
    }
    let read = |path: &str| -> Result<Vec<u8>, String> {
        let mut raw = Vec::new();
        let res = if path == "-" {
            std::io::stdin().read_to_end(&mut raw).map(|_| ())
        } else {
            std::fs::read(path).map(|b| raw = b)
        };
        res.map_err(|e| format!("{path}: {e}"))?;
        if args.hex {
            from_hex(&raw).map_err(|e| format!("{path}: {e}"))
        } else {
            Ok(raw)
        }
    };
    let client = match read(&args.client) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("stickytls inspect: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let server = match args.server.as_deref().map(read).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("stickytls inspect: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let (json, complete) = report(&client, server.as_deref(), Limits::default());
    println!(
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Hex text to bytes, ignoring whitespace.
fn from_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks_exact(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| format!("not hex: {:?}", String::from_utf8_lossy(p)))
        })
        .collect()
}
