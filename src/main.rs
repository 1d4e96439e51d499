//! The `stickytls` command line: it parses the arguments and calls the
//! library, [`stickytls::server::Server`] for `run` and
//! [`stickytls::client`] for the tools that are a router's clients. Each
//! subcommand is one variant of [`Command`].

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use stickytls::client;
use stickytls::config::{
    AdminConfig, AdminKey, AffinityKey, BackendConfig, Balance, Config, ConfigErrors, ConfigPath,
    HealthCheck, HealthKey, ListenerKey, LogFormat, LogKey, PoolKey, ProcessKey, SendProxy,
    StateConfig, StoreConfig, StoreKey, TimeoutKey, parse_backend, parse_duration,
};
use stickytls::config_file::{self, Diagnostics};
use stickytls::server::Server;

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
    Selftest(client::selftest::Args),
    /// Show what the handshake inspector sees in captured bytes, as JSON.
    /// Exits 0 when every side given is complete, 1 otherwise.
    Inspect(client::inspect::Args),
    /// Validate a configuration file: every mistake with its line and
    /// column; exit 0 only if the file is valid.
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// See and steer a running router through its admin endpoint
    /// (docs/operations.md). Exits 1 when the router cannot be reached or
    /// answers an error.
    Ctl(client::ctl::Args),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Configuration file (docs/configuration.md), instead of the quick
    /// --listen/--backend form and its tuning options.
    #[arg(long, value_name = "FILE", conflicts_with_all = QUICK_FORM)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", required_unless_present = "config")]
    listen: Option<SocketAddr>,
    /// A backend, as NAME=IP:PORT; repeat for each backend.
    #[arg(long = "backend", value_name = "NAME=ADDR", value_parser = parse_backend_arg, required_unless_present = "config")]
    backends: Vec<BackendConfig>,
    /// Balancer for clients without affinity, one of:
    ///   roundrobin           each backend in turn
    ///   weighted-roundrobin  each backend its weight's share, interleaved
    ///   least-connections    fewest open connections relative to weight
    ///   source-hash          by client address: every instance agrees
    /// (Weights are set in a --config file; here every backend weighs 1.)
    #[arg(long, default_value = "roundrobin", verbatim_doc_comment)]
    balance: Balance,
    /// Affinity entries unused this long are forgotten.
    #[arg(long, default_value = "30m", value_parser = parse_duration_arg)]
    affinity_timeout: Duration,
    /// Time a client has to send its whole ClientHello.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    hello_timeout: Duration,
    /// More new sessions than this from one address within the correlation
    /// window mark it as shared (NAT): its fresh clients are balanced.
    #[arg(long, default_value_t = 4)]
    nat_threshold: u32,
    /// How long a client address's last backend is used to re-bind its
    /// unknown sessions and pin its fresh ones.
    #[arg(long, default_value = "30m", value_parser = parse_duration_arg)]
    correlation_window: Duration,
    /// Bytes a client may send before its ClientHello must be complete.
    #[arg(long, default_value_t = 16 * 1024)]
    max_hello_bytes: usize,
    /// Per-backend connect timeout.
    #[arg(long, default_value = "3s", value_parser = parse_duration_arg)]
    connect_timeout: Duration,
    /// How long a backend may stay silent after the hello before the next
    /// one is tried.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    first_byte_timeout: Duration,
    /// Close connections with no traffic either way for this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration_arg)]
    idle_timeout: Duration,
    /// Most connections at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// How backends are probed between connections: tcp (a connect), tls
    /// (a ClientHello answered by a ServerHello) or none.
    #[arg(long, default_value = "tcp", value_parser = parse_health_check_arg)]
    health_check: HealthCheck,
    /// Time between two health probes of one backend.
    #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
    check_interval: Duration,
    /// Send every backend a PROXY protocol header with the client's
    /// address: v1 (text), v2 (binary, with the routing rule) or off. The
    /// backends must expect it (docs/operations.md).
    #[arg(long, value_name = "VERSION", default_value = "off", value_parser = parse_send_proxy_arg)]
    send_proxy: SendProxy,
    /// Connect to every backend with TCP Fast Open (TCP_FASTOPEN_CONNECT):
    /// the hello travels in the SYN once a backend has given this host a
    /// cookie. Only for backends that enable TFO themselves.
    #[arg(long)]
    tcp_fastopen: bool,
    /// Worker threads, each with its own runtime and listening socket
    /// (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Route by the balancer alone: no affinity lookup and no learning
    /// (the ClientHello is still read, for SNI). For measuring what
    /// inspection costs.
    #[arg(long)]
    no_inspect: bool,
    /// Serve metrics and the admin API on this address
    /// (docs/operations.md); its one pool is named `default`.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// The admin endpoint's bearer token; required unless --admin is a
    /// loopback address.
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "admin",
        env = "STICKYTLS_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Log lines as `text` or `json` (overrides [log] format).
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Per-connection log lines per second at most; the rest are dropped
    /// and counted; 0 turns them off (overrides [log]
    /// connections_per_second).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=u64::from(u32::MAX)))]
    log_rate: Option<u64>,
    /// After SIGTERM or SIGINT, how long open connections may finish
    /// before the rest are closed ("0s": close them at once).
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    shutdown_timeout: Duration,
    /// Keep the affinity table and client index in this file across
    /// restarts (written every minute and at shutdown, read at start).
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// Hand over to a new process without refusing a connection: a
    /// running router listens on this Unix socket, and one started with
    /// the same path takes its listening sockets and state from it.
    #[arg(long, value_name = "PATH")]
    takeover_socket: Option<PathBuf>,
    /// Share the affinity table with other instances through this Redis
    /// server (redis://HOST:PORT/DB) or Redis Cluster
    /// (redis-cluster://HOST:PORT,HOST:PORT,... naming some of its nodes);
    /// see [store] in docs/configuration.md.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// How long a connection waits for the shared store when its hello
    /// offers a key this instance does not know.
    #[arg(long, value_name = "DURATION", requires = "store", value_parser = parse_duration_arg)]
    store_lookup_budget: Option<Duration>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
        .map_err(|e: stickytls::config::ValueError| e.to_string())
}

/// The quick form's options: given with --config they would be ignored.
const QUICK_FORM: [&str; 24] = [
    "listen",
    "backends",
    "balance",
    "affinity_timeout",
    "hello_timeout",
    "nat_threshold",
    "correlation_window",
    "max_hello_bytes",
    "connect_timeout",
    "first_byte_timeout",
    "idle_timeout",
    "max_connections",
    "no_inspect",
    "shutdown_timeout",
    "state_file",
    "takeover_socket",
    "health_check",
    "check_interval",
    "send_proxy",
    "tcp_fastopen",
    "admin",
    "admin_token",
    "store",
    "store_lookup_budget",
];

fn parse_backend_arg(s: &str) -> Result<BackendConfig, String> {
    parse_backend(s).map_err(|e| e.to_string())
}

fn parse_health_check_arg(s: &str) -> Result<HealthCheck, String> {
    s.parse()
        .map_err(|e: stickytls::config::ValueError| e.to_string())
}

fn parse_send_proxy_arg(s: &str) -> Result<SendProxy, String> {
    s.parse()
        .map_err(|e: stickytls::config::ValueError| e.to_string())
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// A configuration that cannot run, located where the operator gave it.
#[derive(Debug)]
enum Invalid {
    File(Diagnostics),
    /// The configuration is kept (boxed: it is large) to name each
    /// backend by what was typed for it.
    Flags(Box<Config>, ConfigErrors),
}

impl std::fmt::Display for Invalid {
    /// One error per line, as `check` prints them: `FILE:LINE:COLUMN:` for
    /// the file, the flag for the quick form, then the same message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::File(d) => write!(f, "{d}"),
            Invalid::Flags(config, errors) => {
                for (i, e) in errors.0.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    let message = e.message(&|p| flag(config, p));
                    write!(f, "{}: error: {message}", flag(config, e.path))?;
                }
                Ok(())
            }
        }
    }
}

/// The quick-form flag that sets `path`.
fn flag(config: &Config, path: ConfigPath) -> String {
    let name = match path {
        ConfigPath::Listener(_, ListenerKey::Bind) => "--listen",
        ConfigPath::Listener(_, ListenerKey::MaxConnections) => "--max-connections",
        ConfigPath::Listener(_, ListenerKey::MaxHelloBytes) => "--max-hello-bytes",
        ConfigPath::Pool(_, PoolKey::Balance) => "--balance",
        ConfigPath::Pool(_, PoolKey::Timeout(t)) => match t {
            TimeoutKey::Hello => "--hello-timeout",
            TimeoutKey::Connect => "--connect-timeout",
            TimeoutKey::FirstByte => "--first-byte-timeout",
            TimeoutKey::Idle => "--idle-timeout",
            TimeoutKey::DownHold => "the command line",
        },
        ConfigPath::Pool(_, PoolKey::Affinity(a)) => match a {
            AffinityKey::Timeout => "--affinity-timeout",
            AffinityKey::CorrelationWindow => "--correlation-window",
            AffinityKey::NatThreshold => "--nat-threshold",
            _ => "the command line",
        },
        ConfigPath::Pool(_, PoolKey::Health(h)) => match h {
            HealthKey::Check => "--health-check",
            HealthKey::Interval => "--check-interval",
            _ => "the command line",
        },
        // Each backend is known by what was typed for it.
        ConfigPath::Backend { pool, backend, .. } => {
            return match config.pools.get(pool).and_then(|p| p.backends.get(backend)) {
                Some(b) => format!("--backend {}={}", b.name, b.addr),
                None => "--backend".to_string(),
            };
        }
        ConfigPath::Pool(..) => "--backend",
        ConfigPath::Process(ProcessKey::ShutdownTimeout) => "--shutdown-timeout",
        ConfigPath::Process(ProcessKey::TakeoverSocket) => "--takeover-socket",
        ConfigPath::Process(_) => "--state-file",
        ConfigPath::Admin(AdminKey::Token) => "--admin-token",
        ConfigPath::Admin(_) => "--admin",
        ConfigPath::Log(LogKey::Format) => "--log-format",
        ConfigPath::Log(_) => "--log-rate",
        ConfigPath::Store(StoreKey::LookupBudget) => "--store-lookup-budget",
        ConfigPath::Store(_) => "--store",
        _ => "the command line",
    };
    name.to_string()
}

impl RunArgs {
    /// The file's configuration, or the quick form's checked by the same
    /// rules; then the log flags, which apply to both.
    fn config(self) -> Result<Config, Invalid> {
        let (format, rate) = (self.log_format, self.log_rate);
        let mut c = self.config_without_log_flags()?;
        if let Some(f) = format {
            c.log.format = f;
        }
        if let Some(n) = rate {
            c.log.connections_per_second = n;
        }
        Ok(c)
    }

    fn config_without_log_flags(self) -> Result<Config, Invalid> {
        let listen = match (self.config, self.listen) {
            (Some(path), _) => return config_file::load(&path).map_err(Invalid::File),
            (None, Some(listen)) => listen,
            (None, None) => unreachable!("clap requires --listen unless --config is given"),
        };
        let mut backends = self.backends;
        for b in &mut backends {
            b.send_proxy = self.send_proxy;
            b.tcp_fastopen = self.tcp_fastopen;
        }
        let mut c = Config::single(listen, backends);
        c.admin = self.admin.map(|bind| AdminConfig {
            bind,
            token: self.admin_token,
            token_for_reads: false,
        });
        let p = &mut c.pools[0];
        p.balance = self.balance;
        p.inspect = !self.no_inspect;
        p.affinity.inactivity_timeout = self.affinity_timeout;
        p.affinity.correlation_window = self.correlation_window;
        p.affinity.nat_threshold = self.nat_threshold;
        p.timeouts.hello = self.hello_timeout;
        p.timeouts.connect = self.connect_timeout;
        p.timeouts.first_byte = self.first_byte_timeout;
        p.timeouts.idle = self.idle_timeout;
        p.health.check = self.health_check;
        p.health.interval = self.check_interval;
        // The probe's bound follows a shorter interval down, so that
        // `--check-interval 500ms` alone is valid.
        if !self.check_interval.is_zero() {
            p.health.timeout = p.health.timeout.min(self.check_interval);
        }
        let l = &mut c.listeners[0].limits;
        l.max_hello_bytes = self.max_hello_bytes;
        l.max_connections = self.max_connections;
        c.lifecycle.shutdown_timeout = self.shutdown_timeout;
        c.lifecycle.state = self.state_file.map(StateConfig::new);
        c.lifecycle.takeover_socket = self.takeover_socket;
        if let Some(url) = self.store {
            c.store = StoreConfig::from_flag(&url);
            if let Some(b) = self.store_lookup_budget {
                c.store.lookup_budget = b;
            }
        }
        match c.validate() {
            Ok(()) => Ok(c),
            Err(errors) => Err(Invalid::Flags(Box::new(c), errors)),
        }
    }
}

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args),
        #[cfg(feature = "demo")]
        Command::Demo => {
            // Warnings only by default: the demo prints its own account of
            // every decision, and per-connection logs would interleave
            // with it.
            init_logging("warn", LogFormat::Text);
            client::demo::cli()
        }
        #[cfg(feature = "demo")]
        Command::Selftest(args) => client::selftest::cli(args),
        Command::Inspect(args) => client::inspect::cli(&args),
        Command::Check { config } => check(&config),
        Command::Ctl(args) => client::ctl::cli(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let (file, threads) = (args.config.clone(), args.threads);
    let config = match args.config() {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(1);
        }
    };
    init_logging("info", config.log.format);
    match Server::new(config, file, threads).run() {
        Ok(()) => ExitCode::SUCCESS,
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

#[cfg(test)]
mod tests {
    use super::*;
    use stickytls::config_file::Problem;

    fn quick_config(flags: &[&str]) -> Result<Config, Invalid> {
        let args = ["stickytls", "run", "--listen", "127.0.0.1:8443"];
        let cli = Cli::try_parse_from(args.iter().chain(flags)).unwrap();
        let Command::Run(run) = cli.command else {
            unreachable!("the arguments start with `run`")
        };
        run.config()
    }

    /// The quick form's errors for `flags`, as `run` prints them.
    fn quick_form(flags: &[&str]) -> Vec<String> {
        match quick_config(flags) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    /// A file with one pool named `default`, as the quick form has, and
    /// `extra` appended; its rule errors as `check` prints them.
    fn file(backends: &str, extra: &str) -> Vec<String> {
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:8443\"\ndefault_pool = \"default\"\n{extra}\n[pool.default]\nbackends = [{backends}]\n"
        );
        let errors = config_file::parse(&text, "t.toml").unwrap_err().0;
        assert!(
            errors.iter().all(|d| matches!(d.problem, Problem::Rule(_))),
            "{errors:?}"
        );
        errors.iter().map(|d| d.to_string()).collect()
    }

    /// What follows `error: `: the message without its location.
    fn message(line: &str) -> &str {
        line.split_once(": error: ").unwrap().1
    }

    #[test]
    fn store_flags_set_a_redis_store_and_a_bad_url_names_the_flag() {
        let c = quick_config(&[
            "--backend",
            "a=127.0.0.1:1",
            "--store",
            "redis://10.0.0.5:6379/1",
            "--store-lookup-budget",
            "5ms",
        ])
        .unwrap();
        assert_eq!(c.store.kind, stickytls::config::StoreKind::Redis);
        assert_eq!(c.store.urls, ["redis://10.0.0.5:6379/1"]);
        assert_eq!(c.store.lookup_budget, Duration::from_millis(5));
        assert_eq!(c.store.prefix, StoreConfig::PREFIX);
        let without = quick_config(&["--backend", "a=127.0.0.1:1"]).unwrap();
        assert_eq!(without.store, StoreConfig::default());
        let bad = quick_form(&["--backend", "a=127.0.0.1:1", "--store", "10.0.0.5:6379"]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].starts_with("--store: error: `10.0.0.5:6379` is not a Redis URL"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_cluster_store_flag_names_its_seed_nodes() {
        let c = quick_config(&[
            "--backend",
            "a=127.0.0.1:1",
            "--store",
            "redis-cluster://10.0.0.5:7000,10.0.0.6:7001",
        ])
        .unwrap();
        assert_eq!(c.store.kind, stickytls::config::StoreKind::RedisCluster);
        assert_eq!(
            c.store.urls,
            ["redis://10.0.0.5:7000", "redis://10.0.0.6:7001"]
        );
        let bad = quick_form(&["--backend", "a=127.0.0.1:1", "--store", "redis-cluster://"]);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(
            bad[0].starts_with("--store: error: `redis://` is not a Redis URL"),
            "{bad:?}"
        );
    }

    #[test]
    fn a_rule_broken_in_a_file_or_by_flags_gives_the_same_message() {
        let one = r#"{ name = "a", address = "127.0.0.1:1" }"#;
        let cases: [(&[&str], &str, String, &str); 7] = [
            (
                &["--backend", "a=127.0.0.1:1", "--idle-timeout", "0s"],
                "[pool.default.timeouts]\nidle = \"0s\"",
                one.into(),
                "--idle-timeout",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--affinity-timeout", "0"],
                "[pool.default.affinity]\ntimeout = \"0\"",
                one.into(),
                "--affinity-timeout",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--correlation-window", "0ms"],
                "[pool.default.affinity]\ncorrelation_window = \"0ms\"",
                one.into(),
                "--correlation-window",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--max-hello-bytes", "100"],
                "max_hello_bytes = 100",
                one.into(),
                "--max-hello-bytes",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--max-connections", "0"],
                "max_connections = 0",
                one.into(),
                "--max-connections",
            ),
            (
                &["--backend", "a=127.0.0.1:1", "--backend", "a=127.0.0.1:2"],
                "",
                format!(r#"{one}, {{ name = "a", address = "127.0.0.1:2" }}"#),
                "--backend a=127.0.0.1:2",
            ),
            (
                &["--backend", "=127.0.0.1:1"],
                "",
                r#"{ name = "", address = "127.0.0.1:1" }"#.into(),
                "--backend =127.0.0.1:1",
            ),
        ];
        for (flags, extra, backends, flag) in cases {
            let quick = quick_form(flags);
            let file = file(&backends, extra);
            assert_eq!(quick.len(), 1, "{flags:?}: {quick:?}");
            assert_eq!(file.len(), 1, "{extra}: {file:?}");
            assert_eq!(message(&quick[0]), message(&file[0]), "{flags:?}");
            assert!(
                quick[0].starts_with(&format!("{flag}: error: ")),
                "{}",
                quick[0]
            );
        }
    }

    #[test]
    fn health_flags_set_the_check_and_its_interval() {
        let c = quick_config(&["--backend", "a=127.0.0.1:1"]).unwrap();
        assert_eq!(c.pools[0].health.check, HealthCheck::Tcp);
        let c = quick_config(&[
            "--backend",
            "a=127.0.0.1:1",
            "--health-check",
            "tls",
            "--check-interval",
            "500ms",
        ])
        .unwrap();
        let h = &c.pools[0].health;
        assert_eq!(h.check, HealthCheck::Tls);
        assert_eq!(h.interval, Duration::from_millis(500));
        assert_eq!(
            h.timeout,
            Duration::from_millis(500),
            "bounded by the interval"
        );
        let c = quick_config(&["--backend", "a=127.0.0.1:1", "--health-check", "none"]).unwrap();
        assert_eq!(c.pools[0].health.check, HealthCheck::None);
    }

    #[test]
    fn send_proxy_flag_applies_to_every_backend_and_refuses_other_values() {
        let two = ["--backend", "a=127.0.0.1:1", "--backend", "b=127.0.0.1:2"];
        let sent = |flags: &[&str]| -> Vec<SendProxy> {
            let all: Vec<&str> = two.iter().chain(flags).copied().collect();
            let c = quick_config(&all).unwrap();
            c.pools[0].backends.iter().map(|b| b.send_proxy).collect()
        };
        assert_eq!(sent(&[]), [SendProxy::Off, SendProxy::Off]);
        assert_eq!(sent(&["--send-proxy", "v1"]), [SendProxy::V1; 2]);
        assert_eq!(sent(&["--send-proxy", "v2"]), [SendProxy::V2; 2]);
        let args = ["stickytls", "run", "--listen", "127.0.0.1:8443"];
        let e = Cli::try_parse_from(args.iter().chain(&two).chain(&["--send-proxy", "v3"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--send-proxy"), "{e}");
        assert!(e.contains("unknown send_proxy `v3`"), "{e}");
        // Like the other quick-form options, it cannot be mixed with a file.
        let e = Cli::try_parse_from([
            "stickytls",
            "run",
            "--config",
            "x.toml",
            "--send-proxy",
            "v2",
        ])
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn tcp_fastopen_flag_applies_to_every_backend() {
        let two = ["--backend", "a=127.0.0.1:1", "--backend", "b=127.0.0.1:2"];
        let fast_open = |flags: &[&str]| -> Vec<bool> {
            let all: Vec<&str> = two.iter().chain(flags).copied().collect();
            let c = quick_config(&all).unwrap();
            c.pools[0].backends.iter().map(|b| b.tcp_fastopen).collect()
        };
        assert_eq!(fast_open(&[]), [false, false]);
        assert_eq!(fast_open(&["--tcp-fastopen"]), [true, true]);
        let e = Cli::try_parse_from(["stickytls", "run", "--config", "x.toml", "--tcp-fastopen"])
            .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn valid_flags_make_a_config_with_their_values() {
        let c = quick_config(&["--backend", "a=127.0.0.1:1", "--idle-timeout", "1s"]).unwrap();
        assert_eq!(c.pools[0].timeouts.idle, Duration::from_secs(1));
        assert_eq!(c.pools[0].backends[0].name, "a");
    }
}
