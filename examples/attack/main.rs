//! Runs the attacks of issue 22 against a stickytls binary with real
//! backends, on 127.0.0.0/8 only, and prints per attack what its victims
//! got before, during and (where it should wear off) after it.
//! `scripts/attack` installs what it needs, builds this, and runs it.
//!
//! ```text
//! attack --router target/release/stickytls [--only NAME,...] [--quick] [--json FILE]
//! ```
//!
//! Every attack starts its own router (`source-hash`, so the lab knows
//! where an address lands, and the admin endpoint) and backends, and is
//! bounded in time; every process it starts is killed when it ends.
//!
//! Layout:
//! - [`attacks`]: the attacks, one function each.
//! - [`victim`]: the victims, real rustls clients.
//! - [`hello`]: the attacker's hand-made hellos.
//! - [`forge`]: the attacker's real TLS 1.2 client offering a victim's session ID.
//! - [`lab`]: addresses, the router process, nginx and Java peers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod attacks;
mod forge;
mod hello;
mod lab;
mod victim;

#[derive(Parser, Debug)]
#[command(
    name = "attack",
    about = "Hostile clients against a stickytls router (issue 22)"
)]
struct Cli {
    /// The stickytls binary to attack.
    #[arg(long)]
    router: PathBuf,
    /// Only these attacks (comma-separated): key-names, unresumable, jsse,
    /// flood, slots, mark-downs, memory.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Smaller counts (fewer victims, a shorter flood).
    #[arg(long)]
    quick: bool,
    /// Also write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The first of the 140 ports used (127.0.0.1 only).
    #[arg(long, default_value_t = 19800)]
    port_base: u16,
    /// Where configurations and router logs go (created if missing).
    #[arg(long)]
    work: PathBuf,
    /// The revision the router was built from, for the JSON.
    #[arg(long, default_value = "unknown")]
    commit: String,
    /// Bound on each attack, in seconds.
    #[arg(long, default_value_t = 300)]
    attack_timeout: u64,
}

/// One measured figure.
#[derive(Debug, Clone)]
pub enum Figure {
    /// `ok` of `of` victims got what they should.
    Rate { ok: usize, of: usize },
    /// A resident set size.
    Kib(u64),
}

impl Figure {
    fn rate(ok: usize, of: usize) -> Figure {
        Figure::Rate { ok, of }
    }

    fn text(&self) -> String {
        match self {
            Figure::Rate { ok, of } => format!("{ok}/{of}"),
            Figure::Kib(k) => format!("{:.1} MiB", *k as f64 / 1024.0),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Figure::Rate { ok, of } => serde_json::json!({ "ok": ok, "of": of }),
            Figure::Kib(k) => serde_json::json!({ "rss_kib": k }),
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Row {
    /// The issue's attack, numbered as there.
    attack: String,
    /// What was measured, on what, and what the attack did.
    measure: String,
    before: Figure,
    during: Figure,
    after: Option<Figure>,
}

type AttackFn = for<'a> fn(
    &'a attacks::Lab,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = std::io::Result<Vec<Row>>> + Send + 'a>,
>;

/// Name, title, function.
const ATTACKS: [(&str, &str, AttackFn); 7] = [
    ("key-names", "1 forged key names", |l| {
        Box::pin(attacks::forged_key_names(l))
    }),
    ("unresumable", "2 unresumable hellos (TLS 1.3-only)", |l| {
        Box::pin(attacks::unresumable_hellos(l))
    }),
    ("jsse", "2 unresumable hellos (JSSE cipher suite)", |l| {
        Box::pin(attacks::jsse_cipher_suite(l))
    }),
    ("flood", "3 table flood", |l| {
        Box::pin(attacks::table_flood(l))
    }),
    ("slots", "4 slot hogging", |l| {
        Box::pin(attacks::slot_hogging(l))
    }),
    ("mark-downs", "5 provoked mark-downs", |l| {
        Box::pin(attacks::mark_downs(l))
    }),
    ("memory", "6 hello-stage memory", |l| {
        Box::pin(attacks::hello_memory(l))
    }),
];

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(unknown) = cli
        .only
        .iter()
        .find(|o| !ATTACKS.iter().any(|(n, _, _)| n == o))
    {
        let names: Vec<&str> = ATTACKS.iter().map(|(n, _, _)| *n).collect();
        eprintln!(
            "attack: unknown attack {unknown:?}; known: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    if let Err(e) = std::fs::create_dir_all(&cli.work) {
        eprintln!("attack: cannot create {}: {e}", cli.work.display());
        return ExitCode::FAILURE;
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for (i, (name, title, run)) in ATTACKS.iter().enumerate() {
        if !cli.only.is_empty() && !cli.only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("[attack] {title}");
        let lab = attacks::Lab {
            router: cli.router.clone(),
            work: cli.work.clone(),
            ports: cli.port_base + 20 * i as u16,
            quick: cli.quick,
        };
        let bound = Duration::from_secs(cli.attack_timeout);
        match tokio::time::timeout(bound, run(&lab)).await {
            Ok(Ok(mut r)) => rows.append(&mut r),
            Ok(Err(e)) => {
                failed = true;
                eprintln!(
                    "[attack] {title} failed: {e} (router logs in {})",
                    cli.work.display()
                );
            }
            Err(_) => {
                failed = true;
                eprintln!(
                    "[attack] {title} did not finish within {}s",
                    bound.as_secs()
                );
            }
        }
    }
    print_table(&rows);
    if let Some(path) = &cli.json {
        let doc = serde_json::json!({
            "date": std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default(),
            "commit": cli.commit,
            "router": cli.router.display().to_string(),
            "quick": cli.quick,
            "rows": rows.iter().map(|r| serde_json::json!({
                "attack": r.attack,
                "measure": r.measure,
                "before": r.before.json(),
                "during": r.during.json(),
                "after": r.after.as_ref().map(Figure::json),
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("attack: cannot write {}: {e}", path.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The rows as a markdown table: what docs/security.md carries.
fn print_table(rows: &[Row]) {
    println!("| attack | what is measured | before | during | after |");
    println!("|---|---|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.attack,
            r.measure,
            r.before.text(),
            r.during.text(),
            r.after
                .as_ref()
                .map(Figure::text)
                .unwrap_or_else(|| "–".into())
        );
    }
}
