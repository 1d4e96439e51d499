//! The `stickytls` command line. Each subcommand is one variant of
//! [`Command`] and one function.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use stickytls::inspect::{Limits, report::report};

#[derive(Debug, Parser)]
#[command(name = "stickytls", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what the handshake inspector sees in captured bytes, as JSON.
    /// Exits 0 when every side given is complete, 1 otherwise.
    Inspect(InspectArgs),
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

/// Exit code for usage errors, as clap uses.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect(args) => inspect(&args),
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
