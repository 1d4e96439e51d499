//! The `stickytls` command line: it parses the arguments and calls the
//! library, [`stickytls::server::Server`] for `run` and
//! [`stickytls::client`] for the tools that are a router's clients. Each
//! subcommand is one variant of [`Command`].

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stickytls::client;
use stickytls::config::LogFormat;
use stickytls::config::file as config_file;
use stickytls::config::quick::RunArgs;
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
        config: std::path::PathBuf,
    },
    /// See and steer a running router through its admin endpoint
    /// (docs/operations.md). Exits 1 when the router cannot be reached or
    /// answers an error.
    Ctl(client::ctl::Args),
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
