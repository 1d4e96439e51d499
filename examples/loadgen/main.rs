//! The benchmark suite's TLS load generator, bulk backend and report
//! writer (`scripts/bench` drives it; see docs/performance.md).
//!
//! ```text
//! loadgen conns  --target ADDR --conns N --concurrency C --clients M --tls 12|13 [--resume [--warmup-target ADDR]]
//! loadgen bulk   --target ADDR --bytes N --direction up|down
//! loadgen serve  --listen ADDR --cert PEM --key PEM       (bulk sink and source)
//! loadgen certs  --out DIR --names b1,b2,...              (a throwaway CA and leaves)
//! loadgen report --results FILE --meta FILE --md OUT --json OUT
//! loadgen perf   --script FILE --conns N                  (CPU by system call)
//! loadgen stall  --target ADDR --conns N --waves W        (hello-stage memory)
//! loadgen hold   --target ADDR --conns N --requests R     (many open connections)
//! ```
//!
//! `conns` and `bulk` print one JSON object per run. With `--watch-pids`
//! they also report the CPU seconds (utime + stime from /proc/PID/stat)
//! those processes spent during the timed part only, so warm-up and setup
//! are not charged to the proxy.
//!
//! Layout:
//! - [`conns`]: many short connections, each one TLS handshake and one
//!   HTTP request, with per-client session stores for resumption.
//! - [`bulk`]: one connection moving N bytes one way; and `serve`, the
//!   backend that discards uploads and generates downloads.
//! - [`procstat`]: CPU time of a set of processes.
//! - [`perf`]: a proxy's CPU per connection by system call and kind of
//!   code, kernel included, from `perf script`.
//! - [`scale`]: stalled hellos and many held connections: RSS per
//!   connection, CPU per small request, setup latency meanwhile.
//! - [`report`]: medians over rounds, the markdown table and the JSON.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod bulk;
mod conns;
mod perf;
mod procstat;
mod report;
mod scale;
mod tls;

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "TLS load generator for the stickytls benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Many short TLS connections: handshake, one request, close.
    Conns(conns::ConnsArgs),
    /// One connection moving a stream of bytes up or down.
    Bulk(bulk::BulkArgs),
    /// The bulk backend: discards `up N`, answers `down N` with N bytes.
    Serve(bulk::ServeArgs),
    /// Writes a throwaway CA and one leaf per name, as PEM.
    Certs(CertsArgs),
    /// Turns the results of a run into docs/performance.{md,json}.
    Report(report::ReportArgs),
    /// CPU per connection by system call and kind of code, from `perf script`.
    Perf(perf::PerfArgs),
    /// Clients that send 5 bytes of a hello and stall: the proxy's RSS per
    /// stalled connection, wave after wave.
    Stall(scale::StallArgs),
    /// Many established TLS connections held idle, then active with small
    /// requests: RSS and CPU per connection, setup latency meanwhile.
    Hold(scale::HoldArgs),
}

/// Options shared by the measuring subcommands.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Where to connect (the proxy under test, or a backend directly).
    #[arg(long)]
    pub target: SocketAddr,
    /// The CA certificate to trust (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// Server name to send and verify.
    #[arg(long, default_value = "localhost")]
    pub sni: String,
    /// Processes whose CPU time is charged to the target (comma-separated
    /// PIDs: every process of the proxy).
    #[arg(long, value_delimiter = ',')]
    pub watch_pids: Vec<u32>,
    /// Clock ticks per second for /proc/PID/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    pub clk_tck: u64,
    /// KEY=VALUE copied into the JSON result; repeatable.
    #[arg(long = "tag", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

/// TLS version a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tls {
    #[value(name = "12")]
    V12,
    #[value(name = "13")]
    V13,
}

#[derive(Args, Debug)]
struct CertsArgs {
    /// Directory to write ca.pem, NAME.pem and NAME.key into.
    #[arg(long)]
    out: PathBuf,
    /// Leaf names (the CN); each leaf covers localhost and 127.0.0.1.
    #[arg(long, value_delimiter = ',', required = true)]
    names: Vec<String>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// Parses `30s`, `500ms` or a plain number of seconds.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let (n, unit) = match s.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    n.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| Duration::from_secs_f64(v * unit))
        .ok_or_else(|| format!("not a duration: {s:?}"))
}

fn certs(args: &CertsArgs) -> std::io::Result<()> {
    use stickytls_peers::cert::TestCa;
    std::fs::create_dir_all(&args.out)?;
    let ca = TestCa::new();
    std::fs::write(args.out.join("ca.pem"), ca.cert_pem())?;
    for name in &args.names {
        let leaf = ca.leaf(name);
        // nginx wants the chain in the certificate file, leaf first.
        std::fs::write(
            args.out.join(format!("{name}.pem")),
            format!("{}{}", leaf.cert_pem, ca.cert_pem()),
        )?;
        std::fs::write(args.out.join(format!("{name}.key")), &leaf.key_pem)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(args) => certs(&args).map_err(|e| e.to_string()),
        Command::Report(args) => report::run(&args),
        Command::Perf(args) => perf::run(&args),
        Command::Conns(args) => runtime(args.threads).and_then(|rt| rt.block_on(conns::run(args))),
        Command::Bulk(args) => runtime(1).and_then(|rt| rt.block_on(bulk::run(args))),
        Command::Stall(args) => runtime(1).and_then(|rt| rt.block_on(scale::stall(args))),
        Command::Hold(args) => runtime(2).and_then(|rt| rt.block_on(scale::hold(args))),
        Command::Serve(args) => runtime(args.threads).and_then(|rt| rt.block_on(bulk::serve(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}
