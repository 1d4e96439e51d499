//! Turns one run's results (JSON lines from `conns`, `bulk` and the
//! script's strace, callgrind, RSS and criterion steps) into the markdown
//! report and a JSON summary that a later run can be compared with.
//!
//! Every figure of a target is the median over the run's rounds; "vs
//! direct" divides two medians of the same run, measured side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// JSON lines, one per measurement.
    #[arg(long)]
    results: PathBuf,
    /// Machine, versions and parameters of the run (a JSON object).
    #[arg(long)]
    meta: PathBuf,
    /// `callgrind_annotate --inclusive=no` output of stickytls with
    /// inspection.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// The same profile annotated with `--inclusive=yes`.
    #[arg(long)]
    profile_inclusive: Option<PathBuf>,
    /// criterion's output for the affinity group
    /// (`target/criterion/affinity`): each bench's median is read from
    /// `<id>/new/estimates.json`.
    #[arg(long)]
    criterion: Option<PathBuf>,
    #[arg(long)]
    md: PathBuf,
    #[arg(long)]
    json: PathBuf,
}

/// Targets in table order.
const TARGETS: [&str; 7] = [
    "direct",
    "stickytls",
    "stickytls-metrics",
    "stickytls-noinspect",
    "stickytls-tfo",
    "haproxy",
    "nginx",
];

/// Handshake workloads in table order, with what each one is.
const WORKLOADS: [(&str, &str); 6] = [
    (
        "tls12-resumed-session-id",
        "TLS 1.2 resumed by session ID (backends: tickets off, shared cache)",
    ),
    (
        "tls13-resumed-stateful",
        "TLS 1.3 resumed with a stateful ticket (same backends). The ticket travels encrypted and OpenSSL's stateful tickets carry no key name, so stickytls routes a session's first resumption by client address (rule 2 of docs/routing.md) and learns the identity once the backend accepts it: with every client behind one address, its misses are first resumptions of sessions issued elsewhere",
    ),
    (
        "tls12-resumed-ticket",
        "TLS 1.2 resumed by RFC 5077 ticket (backends: tickets on). HAProxy's table keys on session IDs: nginx with tickets and no session cache assigns none, and a client resuming by ticket sends a fresh random one",
    ),
    (
        "tls13-resumed-ticket",
        "TLS 1.3 resumed with a stateless ticket (tickets on). stickytls routes on the ticket key name the identities start with; a TLS 1.3 session ID is random, so HAProxy's table never matches",
    ),
    (
        "tls12-full",
        "TLS 1.2 full handshakes (no resumption offered)",
    ),
    ("tls13-full", "TLS 1.3 full handshakes"),
];

const LATENCY: &str = "latency-tls13-resumed";

/// The line after which docs/performance.md holds sections measured apart
/// from a full run, which a rewrite keeps as they are.
const KEPT_MARKER: &str = "<!-- Below: measured apart from a full scripts/bench run (each section says how); scripts/bench keeps it when it rewrites the part above. -->";

pub fn run(args: &ReportArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.results)
        .map_err(|e| format!("{}: {e}", args.results.display()))?;
    let rows: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| format!("{}: {e}: {l}", args.results.display()))
        })
        .collect::<Result<_, _>>()?;
    let meta: Value = std::fs::read_to_string(&args.meta)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", args.meta.display()))?;
    let read_profile = |p: &Option<PathBuf>, inclusive: bool| {
        p.as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| Profile::parse(&t, inclusive))
    };
    let profile = read_profile(&args.profile, false);
    let inclusive = read_profile(&args.profile_inclusive, true);

    let mut rows = rows;
    if let Some(dir) = &args.criterion {
        rows.extend(criterion_rows(dir));
    }
    let conns = summarize_conns(&rows);
    let bulk = summarize_bulk(&rows);
    let store = summarize_store(&rows);
    let summary = json!({
        "meta": meta,
        "conns": conns,
        "bulk": bulk,
        "rss": of_kind(&rows, "rss"),
        "state": of_kind(&rows, "state"),
        "criterion": of_kind(&rows, "criterion"),
        "callgrind": of_kind(&rows, "callgrind"),
        "strace": of_kind(&rows, "strace"),
        "perf": of_kind(&rows, "perf"),
        "store": store,
        "scale_hello": of_kind(&rows, "scale-hello"),
        "scale_hold": of_kind(&rows, "scale-hold"),
        "scale_limits": of_kind(&rows, "scale-limits"),
        "profile": profile.as_ref().map(Profile::to_json),
        "profile_inclusive": inclusive.as_ref().map(Profile::landmarks_json),
        "runs": rows,
    });
    let mut md = markdown(&summary, profile.as_ref(), inclusive.as_ref());
    // What was measured apart from the run (by hand, or by a part run on
    // its own) lives below the marker and outlives a rewrite.
    if let Ok(old) = std::fs::read_to_string(&args.md)
        && let Some(at) = old.find(KEPT_MARKER)
    {
        md.push('\n');
        md.push_str(&old[at..]);
    } else {
        md.push_str(&format!("\n{KEPT_MARKER}\n"));
    }
    std::fs::write(&args.md, md).map_err(|e| format!("{}: {e}", args.md.display()))?;
    let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    std::fs::write(&args.json, json + "\n").map_err(|e| format!("{}: {e}", args.json.display()))?;
    Ok(())
}

/// One row per criterion bench in `dir`, with its median in ns.
fn criterion_rows(dir: &std::path::Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let est = e.path().join("new/estimates.json");
        let Some(v) = std::fs::read_to_string(&est)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            continue;
        };
        // criterion writes the id's '/' as '_' in the directory name.
        let id = e.file_name().to_string_lossy().replacen('_', "/", 1);
        out.push(
            json!({"kind": "criterion", "id": id, "median_ns": v["median"]["point_estimate"]}),
        );
    }
    out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    out
}

fn of_kind(rows: &[Value], kind: &str) -> Vec<Value> {
    rows.iter().filter(|r| r["kind"] == kind).cloned().collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The runs of one workload against one target.
fn runs<'a>(rows: &'a [Value], kind: &str, workload: &str, target: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| r["kind"] == kind && r["workload"] == workload && r["target"] == target)
        .collect()
}

fn med(runs: &[&Value], f: impl Fn(&Value) -> Option<f64>) -> Option<f64> {
    median(runs.iter().filter_map(|r| f(r)).collect())
}

/// Per workload and target: medians over rounds, and counts summed.
fn summarize_conns(rows: &[Value]) -> Vec<Value> {
    let mut workloads: Vec<String> = WORKLOADS.iter().map(|(w, _)| w.to_string()).collect();
    workloads.push(LATENCY.to_string());
    let mut out = Vec::new();
    for w in &workloads {
        let direct = med(&runs(rows, "conns", w, "direct"), |r| {
            r["conns_per_s"].as_f64()
        });
        let direct_hs50 = med(&runs(rows, "conns", w, "direct"), |r| {
            r["handshake_us"]["p50"].as_f64()
        });
        let direct_hs99 = med(&runs(rows, "conns", w, "direct"), |r| {
            r["handshake_us"]["p99"].as_f64()
        });
        for t in TARGETS {
            let rs = runs(rows, "conns", w, t);
            if rs.is_empty() {
                continue;
            }
            let sum = |k: &str| rs.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
            let mut backends: BTreeMap<String, u64> = BTreeMap::new();
            for r in &rs {
                if let Some(b) = r["backends"].as_object() {
                    for (name, n) in b {
                        *backends.entry(name.clone()).or_default() += n.as_u64().unwrap_or(0);
                    }
                }
            }
            let cps = med(&rs, |r| r["conns_per_s"].as_f64());
            let hs50 = med(&rs, |r| r["handshake_us"]["p50"].as_f64());
            let hs99 = med(&rs, |r| r["handshake_us"]["p99"].as_f64());
            let offered = sum("offered");
            out.push(json!({
                "workload": w,
                "target": t,
                "rounds": rs.len(),
                "conns_per_s": cps,
                "vs_direct": ratio(cps, direct),
                "proxy_cpu_s_per_10k": med(&rs, |r| r["proxy_cpu_s_per_10k"].as_f64()),
                "proxy_kernel_share": med(&rs, |r| {
                    Some(r["proxy_sys_s"].as_f64()? / r["proxy_cpu_s"].as_f64().filter(|c| *c > 0.0)?)
                }),
                "handshake_p50_us": hs50,
                "handshake_p99_us": hs99,
                "added_p50_us": diff(hs50, direct_hs50),
                "added_p99_us": diff(hs99, direct_hs99),
                "conns": sum("conns"),
                "errors": sum("errors"),
                "offered": offered,
                "resumed": sum("resumed"),
                "server_resumed": sum("server_resumed"),
                "resumed_share": (offered > 0).then(|| sum("resumed") as f64 / offered as f64),
                "same_backend": sum("same_backend"),
                "backends": backends,
            }));
        }
    }
    out
}

fn summarize_bulk(rows: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for dir in ["up", "down"] {
        let w = format!("bulk-{dir}");
        let direct = med(&runs(rows, "bulk", &w, "direct"), |r| {
            r["gb_per_s"].as_f64()
        });
        for t in TARGETS {
            let rs = runs(rows, "bulk", &w, t);
            if rs.is_empty() {
                continue;
            }
            let gbps = med(&rs, |r| r["gb_per_s"].as_f64());
            out.push(json!({
                "workload": w,
                "target": t,
                "rounds": rs.len(),
                "bytes": rs[0]["bytes"],
                "gb_per_s": gbps,
                "vs_direct": ratio(gbps, direct),
                "proxy_cpu_s_per_gb": med(&rs, |r| r["proxy_cpu_s_per_gb"].as_f64()),
                "machine_cpu_s_per_gb": med(&rs, |r| r["machine_cpu_s_per_gb"].as_f64()),
                "cores_busy": med(&rs, |r| r["cores_busy"].as_f64()),
            }));
        }
    }
    out
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b.filter(|b| *b > 0.0)?)
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

/// A number with `digits` decimals, or a dash.
fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_string(), |x| format!("{x:.digits$}"))
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_string(), |x| format!("{:.0}%", x * 100.0))
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_string(), |x| format!("{:.2}", x / 1000.0))
}

/// `b1 34 / b2 33 / b3 33` (% of connections), or the one backend.
fn spread(backends: &Value) -> String {
    let Some(b) = backends.as_object() else {
        return "–".into();
    };
    let total: u64 = b.values().filter_map(Value::as_u64).sum();
    if total == 0 {
        return "–".into();
    }
    if b.len() == 1 {
        return format!("{} only", b.keys().next().map_or("", String::as_str));
    }
    b.iter()
        .map(|(k, v)| {
            format!(
                "{k} {:.0}",
                v.as_u64().unwrap_or(0) as f64 * 100.0 / total as f64
            )
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

fn markdown(s: &Value, profile: Option<&Profile>, inclusive: Option<&Profile>) -> String {
    let meta = &s["meta"];
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Performance\n");
    let _ = writeln!(
        w,
        "Written by `scripts/bench` ({} mode); rerun it rather than editing. The same figures, \
         and every single measurement, are in `performance.json` next to this file, so a later \
         run can be compared with this one.\n",
        meta["mode"].as_str().unwrap_or("?")
    );
    let _ = writeln!(w, "## Summary\n");
    for line in summary(s) {
        let _ = writeln!(w, "- {line}");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "## Machine, versions, command\n");
    let _ = writeln!(
        w,
        "- Command: `{}`, {} rounds, {} s in all, finished {}",
        meta["command"].as_str().unwrap_or(""),
        meta["rounds"],
        meta["elapsed_s"],
        meta["date"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        w,
        "- Machine: {} × {}, {}; load average before the run {} (the machine is shared: compare ratios within this run, not absolute figures across runs)",
        meta["cores"],
        meta["cpu"].as_str().unwrap_or("?"),
        meta["memory"].as_str().unwrap_or("?"),
        meta["load_before"].as_str().unwrap_or("?")
    );
    if let Some(v) = meta["versions"].as_object() {
        let list: Vec<String> = v
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("")))
            .collect();
        let _ = writeln!(w, "- Versions: {}", list.join("; "));
    }
    let _ = writeln!(
        w,
        "- Load: {} connections in flight from {} simulated clients, each with its own session store; \
         every client connects from 127.0.0.1, so to the proxies the clients look like one NAT address.\n",
        meta["concurrency"], meta["clients"]
    );
    let _ = writeln!(
        w,
        "Targets, side by side in one interleaved run (each round runs every workload against every target in turn; figures are medians over the rounds):\n"
    );
    let _ = writeln!(w, "- **direct**: straight to one nginx backend, the limit;");
    let _ = writeln!(
        w,
        "- **stickytls**: `stickytls run` with session affinity (round robin for new sessions);"
    );
    let _ = writeln!(
        w,
        "- **stickytls-metrics**: the same with the admin endpoint on (`--admin`), `/metrics` scraped every second;"
    );
    let _ = writeln!(
        w,
        "- **stickytls-noinspect**: the same with `--no-inspect` (the ClientHello is read, nothing is learned or looked up);"
    );
    let _ = writeln!(
        w,
        "- **stickytls-tfo**: stickytls with `--tcp-fastopen`: TCP Fast Open to the backends (nginx `listen ... fastopen=256`), the ClientHello in the SYN once a backend has given its cookie;"
    );
    let _ = writeln!(
        w,
        "- **haproxy**: `mode tcp`, the SSL session-ID stick table (`stick on req.payload_lv(43,1)`, `stick store-response res.payload_lv(43,1)`, both inspect-delays), `balance roundrobin`, `option splice-auto`;"
    );
    let _ = writeln!(
        w,
        "- **nginx**: `stream` with `ssl_preread on` and `hash $remote_addr consistent`.\n"
    );
    let _ = writeln!(
        w,
        "Reading the ratios: load generator, backends and proxy share the same cores, so conns/s measures the whole machine. **direct** sends every connection to one nginx worker while the proxies spread them over three, so a proxy can beat direct when the backend is the bottleneck (full handshakes); a proxy that breaks resumption pays with full handshakes on the backends. The proxy's own cost is the CPU column. With one client address, nginx's `hash $remote_addr` sends everything to one backend: it always sticks, and never balances.\n"
    );
    let _ = writeln!(
        w,
        "Backends: three nginx servers (one worker each), each with a tickets-off listener (`ssl_session_tickets off`, `ssl_session_cache shared`) and a tickets-on listener (its own ticket key); the body names the backend and `$ssl_session_reused`. Proxy CPU is utime+stime from /proc/PID/stat of every process of the proxy, over the timed part only; the share in parentheses is stime, the kernel's part.\n"
    );

    let _ = writeln!(w, "## Handshakes: many short connections\n");
    let _ = writeln!(
        w,
        "Each connection: TCP connect, TLS handshake, one HTTP request, close. \"Resumed\" is the share of offered sessions the backend accepted; a session resumes only on the backend that issued it, so it is the share of resumptions that reached the issuing backend.\n"
    );
    let _ = writeln!(
        w,
        "| workload | target | conns/s | vs direct | proxy CPU-s per 10k conns | resumed on issuing backend | backends (% of conns) | handshake p50 / p99 ms | errors |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---|---:|---:|");
    for (wl, _) in WORKLOADS {
        for r in s["conns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["workload"] == wl)
        {
            let _ = writeln!(
                w,
                "| {wl} | {} | {} | {} | {} | {} | {} | {} / {} | {} |",
                r["target"].as_str().unwrap_or(""),
                num(&r["conns_per_s"], 0),
                num(&r["vs_direct"], 2),
                if r["target"] == "direct" {
                    "–".into()
                } else if r["proxy_kernel_share"].is_f64() {
                    format!(
                        "{} ({} kernel)",
                        num(&r["proxy_cpu_s_per_10k"], 2),
                        pct(&r["proxy_kernel_share"])
                    )
                } else {
                    num(&r["proxy_cpu_s_per_10k"], 2)
                },
                pct(&r["resumed_share"]),
                spread(&r["backends"]),
                ms(&r["handshake_p50_us"]),
                ms(&r["handshake_p99_us"]),
                r["errors"],
            );
        }
    }
    let _ = writeln!(w, "\nWorkloads:\n");
    for (wl, what) in WORKLOADS {
        let _ = writeln!(w, "- `{wl}`: {what}.");
    }

    let _ = writeln!(w, "\n## Bulk transfer\n");
    let bytes = s["bulk"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|r| r["bytes"].as_u64());
    let _ = writeln!(
        w,
        "One TLS 1.3 connection to a rustls backend that discards uploads and generates downloads; {} per direction, timed from after the handshake. GB = 10^9 bytes.\n",
        bytes.map_or("?".to_string(), |b| format!(
            "{:.2} GiB",
            b as f64 / (1u64 << 30) as f64
        ))
    );
    let _ = writeln!(
        w,
        "| direction | target | GB/s | vs direct | proxy CPU-s per GB | every process's CPU-s per GB | cores busy |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|");
    for r in s["bulk"].as_array().into_iter().flatten() {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r["workload"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("bulk-"),
            r["target"].as_str().unwrap_or(""),
            num(&r["gb_per_s"], 2),
            num(&r["vs_direct"], 2),
            if r["target"] == "direct" {
                "–".into()
            } else {
                num(&r["proxy_cpu_s_per_gb"], 2)
            },
            num(&r["machine_cpu_s_per_gb"], 2),
            num(&r["cores_busy"], 2),
        );
    }
    let _ = writeln!(
        w,
        "\nThe load generator, the backend and the proxy share the machine's cores. \"Every process's CPU-s per GB\" is the machine's busy time (/proc/stat) over the transfer, per GB; \"cores busy\" is that time over the elapsed time. Where direct already keeps every core busy, the transfer is bound by the machine's CPU, and a proxy that adds P CPU-s per GB to direct's D can reach at most D / (D + P) of direct's rate, however it moves the bytes."
    );

    let _ = writeln!(w, "\n## Connection-setup latency\n");
    let _ = writeln!(
        w,
        "One client, one connection at a time, TLS 1.3 resumed (tickets on): from `connect()` to the handshake's end at the client.\n"
    );
    let _ = writeln!(
        w,
        "| target | p50 ms | p99 ms | added p50 ms | added p99 ms | resumed |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|");
    for r in s["conns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["workload"] == LATENCY)
    {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} |",
            r["target"].as_str().unwrap_or(""),
            ms(&r["handshake_p50_us"]),
            ms(&r["handshake_p99_us"]),
            ms(&r["added_p50_us"]),
            ms(&r["added_p99_us"]),
            pct(&r["resumed_share"]),
        );
    }

    let _ = writeln!(w, "\n## Affinity table at scale\n");
    let _ = writeln!(
        w,
        "`stickytls::affinity::MemoryStore` through its API, in-process (`examples/affinity_rss.rs`, `benches/affinity.rs`).\n"
    );
    let _ = writeln!(
        w,
        "| entries | resident bytes per entry | fill ns per entry (incl. SHA-256 of the key) |"
    );
    let _ = writeln!(w, "|---:|---:|---:|");
    for r in s["rss"].as_array().into_iter().flatten() {
        let _ = writeln!(
            w,
            "| {} | {} | {} |",
            r["entries"],
            num(&r["bytes_per_entry"], 1),
            num(&r["fill_ns_per_entry"], 0)
        );
    }
    let _ = writeln!(
        w,
        "\nOn a full table of 1M entries, ns per operation as one thread sees it while the others run the same loop (criterion median):\n"
    );
    let _ = writeln!(w, "| operation | 1 thread | 4 threads |");
    let _ = writeln!(w, "|---|---:|---:|");
    for (op, what) in [("lookup", "lookup (hit)"), ("insert", "insert (evicting)")] {
        let ns = |t: u32| {
            s["criterion"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["id"] == format!("{op}/threads={t}"))
                .map_or("–".to_string(), |r| num(&r["median_ns"], 0))
        };
        let _ = writeln!(w, "| {what} | {} | {} |", ns(1), ns(4));
    }

    let _ = writeln!(w, "\n## State file at scale\n");
    let _ = writeln!(
        w,
        "Writing the state file as `stickytls run` does at its stop (encode shard by shard, temporary file, fsync, rename, fsync of the directory) and loading it as a start does (read, SHA-256 check, parse, apply to a fresh pool), one pool with three backends (`examples/state_at_scale.rs`; each client has three recent connections). Targets: under 1 s each way, under 100 MB.\n"
    );
    let _ = writeln!(
        w,
        "| entries | clients | file MB | write ms | load ms (of which read and parse) |"
    );
    let _ = writeln!(w, "|---:|---:|---:|---:|---:|");
    for r in s["state"].as_array().into_iter().flatten() {
        let mb = r["bytes"].as_f64().map(|b| Value::from(b / 1e6));
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} ({}) |",
            r["entries"],
            r["clients"],
            num(&mb.unwrap_or(Value::Null), 1),
            num(&r["write_ms"], 0),
            num(&r["load_ms"], 0),
            num(&r["read_parse_ms"], 0)
        );
    }

    let _ = writeln!(w, "\n## Cost of inspection (callgrind)\n");
    let ir = |mode: &str| {
        s["callgrind"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["target"] == mode)
            .and_then(|r| {
                Some(r["instructions"].as_f64()? / r["conns"].as_f64().filter(|c| *c > 0.0)?)
            })
    };
    let (with, without) = (ir("inspect"), ir("noinspect"));
    let _ = writeln!(
        w,
        "User-space instructions stickytls executes per resumed TLS 1.2 connection (`valgrind --tool=callgrind`, counted from after the warm-up; the kernel's share is in the syscall table below). One backend, so both modes resume every connection and relay the same bytes.\n"
    );
    let _ = writeln!(w, "| stickytls | instructions per connection |");
    let _ = writeln!(w, "|---|---:|");
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
    let _ = writeln!(w, "| with inspection | {} |", f(with));
    let _ = writeln!(w, "| `--no-inspect` | {} |", f(without));
    if let (Some(a), Some(b)) = (with, without) {
        let _ = writeln!(
            w,
            "| inspection and affinity | {:.0} ({:+.0}%) |",
            a - b,
            (a / b - 1.0) * 100.0
        );
    }
    let exporter = ir("metrics");
    if let Some(m) = exporter {
        let _ = writeln!(
            w,
            "| with inspection, the exporter on (`--admin`) and `/metrics` scraped every second | {m:.0} |"
        );
        if let Some(a) = with {
            let _ = writeln!(
                w,
                "| the exporter | {:.0} ({:+.1}%) |",
                m - a,
                (m / a - 1.0) * 100.0
            );
        }
    }
    if let Some(p) = profile {
        let _ = writeln!(w, "\n### Where the time goes\n");
        let _ = writeln!(w, "{}\n", p.paragraph(with));
        let _ = writeln!(w, "| function (exclusive) | share |");
        let _ = writeln!(w, "|---|---:|");
        for (name, ir) in p.functions.iter().take(12) {
            let _ = writeln!(
                w,
                "| `{}` | {:.1}% |",
                short(name),
                *ir as f64 * 100.0 / p.total.max(1) as f64
            );
        }
    }
    if let Some(p) = inclusive {
        let _ = writeln!(
            w,
            "\nInclusive cost (a function and everything it calls) of stickytls's own functions, and of the zeroed allocations and formatting they do:\n"
        );
        let _ = writeln!(
            w,
            "| function (inclusive) | what it is | share | instructions per connection |"
        );
        let _ = writeln!(w, "|---|---|---:|---:|");
        let conns = s["callgrind"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["target"] == "inspect")
            .and_then(|r| r["conns"].as_f64())
            .unwrap_or(0.0);
        for (name, ir) in p.landmarks().into_iter().take(16) {
            let per = if conns > 0.0 {
                format!("{:.0}", ir as f64 / conns)
            } else {
                "–".into()
            };
            let _ = writeln!(
                w,
                "| `{}` | {} | {:.1}% | {per} |",
                short(name),
                what(name),
                ir as f64 * 100.0 / p.total.max(1) as f64
            );
        }
    }

    let _ = writeln!(w, "\n## Syscalls per connection\n");
    let _ = writeln!(
        w,
        "`strace -c -f` attached to every process of the proxy over resumed TLS 1.2 connections (warm-up included in the count of connections). Without inspection two thirds of the resumptions reach the wrong backend and become full handshakes, which move more records.\n"
    );
    let _ = writeln!(
        w,
        "| proxy | syscalls per connection | most frequent (calls per connection) |"
    );
    let _ = writeln!(w, "|---|---:|---|");
    for r in s["strace"].as_array().into_iter().flatten() {
        let conns = r["traced_conns"].as_f64().unwrap_or(0.0).max(1.0);
        let top: Vec<String> = r["top"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|kv| kv.split_once(':'))
            .filter_map(|(k, v)| Some(format!("{k} {:.1}", v.parse::<f64>().ok()? / conns)))
            .collect();
        let _ = writeln!(
            w,
            "| {} | {:.1} | {} |",
            r["target"].as_str().unwrap_or(""),
            r["syscalls"].as_f64().unwrap_or(0.0) / conns,
            top.join(", ")
        );
    }
    store_section(w, s);
    perf_section(w, s);
    scale_section(w, s);
    md
}

fn mb(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_string(), |x| format!("{:.1}", x / 1e6))
}

fn kb(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{:.1}", x / 1000.0))
}

/// `after` against `base`, as a signed share.
fn vs_base(after: &Value, base: &Value) -> String {
    match (after.as_f64(), base.as_f64().filter(|b| *b > 0.0)) {
        (Some(a), Some(b)) => format!("{:+.0}%", (a / b - 1.0) * 100.0),
        _ => "–".to_string(),
    }
}

/// The scale part: RSS per stalled hello, and many established
/// connections idle and active. Written only when the run had it.
fn scale_section(w: &mut String, s: &Value) {
    let hello: Vec<&Value> = s["scale_hello"].as_array().into_iter().flatten().collect();
    let hold: Vec<&Value> = s["scale_hold"].as_array().into_iter().flatten().collect();
    if hello.is_empty() && hold.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "\n## Scale: hello-stage memory and many open connections\n"
    );
    let _ = writeln!(
        w,
        "Resident memory is VmRSS of every process of the proxy (nginx: master and workers), read from /proc; the proxies run side by side, each measured in turn on its listener to the bulk backend (`loadgen serve`). Memory the kernel holds for sockets is not in RSS, and is the same for every proxy.\n"
    );
    if !hello.is_empty() {
        let _ = writeln!(
            w,
            "### Clients that stall in their hello\n\nEach wave: N clients, each from its own loopback address (127.X.Y.1), connect and send the 5-byte header of a handshake record announcing 512 bytes, then stall; RSS is read once they have all sent it and a second has passed (before any proxy's 5 s hello timeout), then they close, and RSS is read again a second later. The first wave pays for the allocator's growth; later waves reuse it.\n"
        );
        let _ = writeln!(
            w,
            "| target | RSS before, MB | wave | stalled (open when read) | RSS per stalled connection, KB | RSS after the wave closed, MB | vs before the first wave |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|");
        for r in &hello {
            for wave in r["waves"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} ({}) | {} | {} | {} |",
                    r["target"].as_str().unwrap_or(""),
                    mb(&r["rss_baseline"]),
                    wave["wave"],
                    wave["connected"],
                    wave["open_at_sample"],
                    kb(wave["bytes_per_conn"].as_f64()),
                    mb(&wave["rss_closed"]),
                    vs_base(&wave["rss_closed"], &r["rss_baseline"]),
                );
            }
        }
    }
    if !hold.is_empty() {
        let limits = s["scale_limits"].as_array().and_then(|a| a.first());
        let cap = limits.map_or(String::new(), |l| {
            format!(
                " Sizes are capped at {} by the open-file limit (hard limit {}: a proxy holds two descriptors per connection).",
                l["cap"], l["nofile_hard"]
            )
        });
        let _ = writeln!(
            w,
            "\n### Many established connections, idle then active\n\nN TLS 1.3 connections established through the proxy (full handshakes, 64 at a time) and left idle: RSS per connection is the growth over RSS before they opened. Then each sends small requests (`echo 64`: a 9-byte line up, 64 bytes back, one at a time per connection): proxy CPU (utime+stime) per request. Meanwhile one more client opens new connections one at a time (connect to handshake end, a new one every 5 ms at most): setup p50 / p99 with nothing held, with the N idle, and while they are active.{cap}\n"
        );
        let _ = writeln!(
            w,
            "| target | held | RSS before, MB | RSS per idle connection, KB | RSS after close vs before | requests | proxy CPU µs per request | setup ms p50 / p99: none | idle | active |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &hold {
            let p = |phase: &str| {
                let q = &r["probes"][phase]["setup_us"];
                format!("{} / {}", ms(&q["p50"]), ms(&q["p99"]))
            };
            let _ = writeln!(
                w,
                "| {} | {} of {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r["target"].as_str().unwrap_or(""),
                r["held"],
                r["conns"],
                mb(&r["rss_baseline"]),
                kb(r["bytes_per_idle_conn"].as_f64()),
                vs_base(&r["rss_closed"], &r["rss_baseline"]),
                r["requests"],
                num(&r["proxy_cpu_us_per_request"], 1),
                p("none"),
                p("idle"),
                p("active"),
            );
        }
    }
}

/// The kernel-inclusive profile: CPU microseconds per connection by system
/// call and kind of code, one column per proxy.
fn perf_section(w: &mut String, s: &Value) {
    let rows: Vec<&Value> = s["perf"].as_array().into_iter().flatten().collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "
## Where a connection's CPU goes, kernel included (perf)
"
    );
    let _ = writeln!(
        w,
        "`perf record -e cpu-clock -g` on every process of the proxy over resumed TLS 1.2 connections (8 in flight), read back with `perf script`. Each sample is charged to the system call the kernel was serving, which on loopback includes the receiving end's TCP work for every segment the proxy sends, or in user space to the kind of code the CPU was in (exclusive: a `malloc` the inspector calls counts as memory). Microseconds of CPU per connection; sampling under perf runs slower than the timed runs above, so compare the columns, not these totals with the CPU-seconds there.\n"
    );
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["target"].as_str().unwrap_or("?"))
        .collect();
    let _ = writeln!(w, "| where | {} |", names.join(" | "));
    let _ = writeln!(w, "|---|{}", "---:|".repeat(rows.len()));
    // Biggest first, each row weighed by the first proxy that has it.
    let mut keys: Vec<(String, f64)> = Vec::new();
    for r in &rows {
        for (k, v) in r["by"].as_object().into_iter().flatten() {
            if !keys.iter().any(|(n, _)| n == k) {
                keys.push((k.clone(), v.as_f64().unwrap_or(0.0)));
            }
        }
    }
    keys.sort_by(|a, b| b.1.total_cmp(&a.1));
    let cell = |r: &Value, k: &str| {
        r["by"][k]
            .as_f64()
            .map_or("–".to_string(), |v| format!("{v:.1}"))
    };
    for (k, _) in keys.iter().filter(|(_, v)| *v >= 0.05) {
        let cells: Vec<String> = rows.iter().map(|r| cell(r, k)).collect();
        let _ = writeln!(w, "| {k} | {} |", cells.join(" | "));
    }
    let total = |key: &str| -> Vec<String> {
        rows.iter()
            .map(|r| {
                r[key]
                    .as_f64()
                    .map_or("–".to_string(), |v| format!("{v:.1}"))
            })
            .collect()
    };
    let _ = writeln!(
        w,
        "| **kernel** | {} |",
        total("kernel_us_per_conn").join(" | ")
    );
    let _ = writeln!(
        w,
        "| **user** | {} |",
        total("user_us_per_conn").join(" | ")
    );
    let _ = writeln!(w, "| **all** | {} |", total("us_per_conn").join(" | "));
    if let Some(line) = perf_sentence(s) {
        let _ = writeln!(w, "\n{line}");
    }
}

/// stickytls's inspection share and the kernel floor, from the perf rows.
fn perf_sentence(s: &Value) -> Option<String> {
    let rows = s["perf"].as_array()?;
    let of = |t: &str| rows.iter().find(|r| r["target"] == t);
    let st = of("stickytls")?;
    let all = st["us_per_conn"].as_f64()?;
    let insp = st["by"]["user: inspection and affinity"]
        .as_f64()
        .unwrap_or(0.0);
    let mut line = format!(
        "Inspection and affinity (the inspector, session keys, table lookups and learning) take {insp:.1} µs of stickytls's {all:.1} µs per connection: {:.1}% of its CPU, kernel included.",
        insp * 100.0 / all.max(1e-9)
    );
    if let Some(h) = of("haproxy") {
        let (hk, ha) = (
            h["kernel_us_per_conn"].as_f64()?,
            h["us_per_conn"].as_f64()?,
        );
        let sk = st["kernel_us_per_conn"].as_f64()?;
        line += &format!(
            " HAProxy's kernel time alone is {hk:.1} of its {ha:.1} µs ({:.0}%): a proxy on the kernel's TCP stack that cost the kernel what HAProxy does, with no user-space work at all, would still spend that share of HAProxy's CPU. stickytls's kernel time is {sk:.1} µs.",
            hk * 100.0 / ha.max(1e-9)
        );
    }
    Some(line)
}

/// Headline sentences computed from the figures, so that they stay true
/// when the run is repeated.
fn summary(s: &Value) -> Vec<String> {
    let conns = s["conns"].as_array().cloned().unwrap_or_default();
    let find = |w: &str, t: &str| {
        conns
            .iter()
            .find(|r| r["workload"] == w && r["target"] == t)
    };
    let resumed: Vec<&str> = WORKLOADS
        .iter()
        .map(|(w, _)| *w)
        .filter(|w| w.contains("resumed"))
        .collect();
    let mut out = Vec::new();

    // Who sticks: per target, the resumption workloads where at least 95%
    // of offers resumed on the issuing backend.
    let mut sticks = Vec::new();
    for t in ["stickytls", "haproxy", "nginx", "stickytls-noinspect"] {
        let shares: Vec<(&str, f64)> = resumed
            .iter()
            .filter_map(|w| Some((*w, find(w, t)?["resumed_share"].as_f64()?)))
            .collect();
        if shares.is_empty() {
            continue;
        }
        let good: Vec<&str> = shares
            .iter()
            .filter(|(_, v)| *v >= 0.95)
            .map(|(w, _)| *w)
            .collect();
        let worst = shares.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
        let what = match good.len() {
            n if n == shares.len() => format!(
                "sticks in all {n} resumption workloads (lowest {:.0}%)",
                worst * 100.0
            ),
            0 => format!(
                "sticks in none (as low as {:.0}%, what balancing alone gives)",
                worst * 100.0
            ),
            _ => format!(
                "sticks only in {} (as low as {:.0}% elsewhere)",
                good.join(", "),
                worst * 100.0
            ),
        };
        sticks.push(format!("**{t}** {what}"));
    }
    if !sticks.is_empty() {
        out.push(format!("Resumptions reaching the issuing backend: {}. nginx's address hash sticks by sending one address's every connection to one backend.", sticks.join("; ")));
    }

    let cpu = |w: &str, t: &str| find(w, t).and_then(|r| r["proxy_cpu_s_per_10k"].as_f64());
    let w = "tls12-resumed-session-id";
    if let (Some(st), Some(ha), Some(ng)) =
        (cpu(w, "stickytls"), cpu(w, "haproxy"), cpu(w, "nginx"))
    {
        out.push(format!(
            "Proxy CPU for 10k resumed TLS 1.2 connections (session IDs, where every proxy sticks): stickytls {st:.2} s, HAProxy {ha:.2} s ({:.2}×), nginx {ng:.2} s ({:.2}×).",
            st / ha, st / ng
        ));
    }
    // The exporter's cost: resumed workloads, exporter on against off.
    let costs: Vec<String> = resumed
        .iter()
        .filter_map(|w| {
            let (on, off) = (cpu(w, "stickytls-metrics")?, cpu(w, "stickytls")?);
            Some(format!("{w} {:+.1}%", (on / off - 1.0) * 100.0))
        })
        .collect();
    if !costs.is_empty() {
        out.push(format!(
            "Proxy CPU per resumed connection with the Prometheus exporter on and scraped every second, against off: {}.",
            costs.join(", ")
        ));
    }
    let bulk = s["bulk"].as_array().cloned().unwrap_or_default();
    let b = |w: &str, t: &str, k: &str| {
        bulk.iter()
            .find(|r| r["workload"] == w && r["target"] == t)
            .and_then(|r| r[k].as_f64())
    };
    if let (Some(up), Some(down)) = (
        b("bulk-up", "stickytls", "vs_direct"),
        b("bulk-down", "stickytls", "vs_direct"),
    ) {
        let cmp = |t: &str| {
            b("bulk-down", t, "proxy_cpu_s_per_gb")
                .map_or(String::new(), |c| format!(", {t} {c:.2}"))
        };
        out.push(format!(
            "Bulk through stickytls runs at {:.0}% (upload) and {:.0}% (download) of direct; CPU-s per GB downloaded: stickytls {}{}{}.",
            up * 100.0,
            down * 100.0,
            b("bulk-down", "stickytls", "proxy_cpu_s_per_gb").map_or("–".into(), |c| format!("{c:.2}")),
            cmp("haproxy"),
            cmp("nginx"),
        ));
    }
    let lat = |t: &str| find(LATENCY, t).and_then(|r| r["added_p50_us"].as_f64());
    if let (Some(st), Some(ha), Some(ng)) = (lat("stickytls"), lat("haproxy"), lat("nginx")) {
        out.push(format!(
            "Connection setup, one at a time: stickytls adds {:.2} ms at p50 over direct, HAProxy {:.2} ms (its resumptions fail here), nginx {:.2} ms.",
            st / 1000.0, ha / 1000.0, ng / 1000.0
        ));
    }
    let ir = |mode: &str| {
        s["callgrind"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["target"] == mode)
            .and_then(|r| {
                Some(r["instructions"].as_f64()? / r["conns"].as_f64().filter(|c| *c > 0.0)?)
            })
    };
    if let (Some(a), Some(b)) = (ir("inspect"), ir("noinspect")) {
        out.push(format!(
            "Inspection and affinity cost {:.0} user-space instructions per connection ({:+.0}% over forwarding without them, user space only); see where below.",
            a - b,
            (a / b - 1.0) * 100.0
        ));
    }
    if let Some(line) = perf_sentence(s) {
        out.push(line);
    }
    if let Some(line) = store_sentence(s) {
        out.push(line);
    }
    out
}

/// The shared store's cost and stickiness in one sentence: CPU from the
/// TLS 1.2 session-ID rows, added latency from the one-at-a-time rows.
fn store_sentence(s: &Value) -> Option<String> {
    let rows = s["store"].as_array()?;
    let of = |w: &str, t: &str| rows.iter().find(|r| r["workload"] == w && r["target"] == t);
    let w = "store-tls12-resumed-session-id";
    let (off, local, remote) = (
        of(w, "store-off")?,
        of(w, "store-local")?,
        of(w, "store-remote")?,
    );
    let cpu = |r: &Value| r["proxy_cpu_s_per_10k"].as_f64();
    let times = |r: &Value| {
        r["vs_store_off"]
            .as_f64()
            .map_or("–".into(), |v| format!("{v:.2}×"))
    };
    let mut line = format!(
        "Shared store, resumed TLS 1.2 connections (session IDs), proxy CPU per 10k: {:.2} s with the in-process table, {:.2} s ({}) with Redis and near-cache hits, {:.2} s ({}) on an instance that fetches every session from Redis (resumptions on the issuing backend {} / {} / {}).",
        cpu(off)?,
        cpu(local)?,
        times(local),
        cpu(remote)?,
        times(remote),
        pct(&off["resumed_share"]),
        pct(&local["resumed_share"]),
        pct(&remote["resumed_share"]),
    );
    let l = "store-latency-tls12-resumed";
    if let (Some(off), Some(local), Some(remote)) = (
        of(l, "store-off"),
        of(l, "store-local"),
        of(l, "store-remote"),
    ) {
        let added = |r: &Value| format!("{} / {}", ms(&r["added_p50_us"]), ms(&r["added_p99_us"]));
        line += &format!(
            " One connection at a time, setup added over direct (p50 / p99 ms): {}, {} and {}.",
            added(off),
            added(local),
            added(remote)
        );
    }
    Some(line)
}

/// What a landmark function of the profile does, for readers who do not
/// know the code.
fn what(name: &str) -> &'static str {
    const KNOWN: [(&str, &str); 12] = [
        ("alloc_zeroed", "zero-filled buffers (`vec![0u8; n]`)"),
        (
            "Offer::from_hello",
            "session keys (SHA-256) and the balancer's fingerprint, from the hello",
        ),
        ("ja4::", "the JA4 fingerprint: sorted lists, hex, SHA-256"),
        ("core::fmt::write", "string formatting"),
        ("Learner", "learning from the server's flight"),
        ("learn::", "learning from the server's flight"),
        ("route::decide", "the routing decision: table lookups"),
        ("log_decision", "the per-decision log line"),
        ("short_hex", "a key in hex, for logs"),
        ("inspect::", "the handshake inspector"),
        ("affinity::", "the affinity table"),
        ("relay", "the copy loop"),
    ];
    KNOWN
        .iter()
        .find(|(k, _)| name.contains(k))
        .map_or("", |(_, w)| w)
}

/// A function name for a table: without its object file, pipes escaped.
fn short(name: &str) -> String {
    name.replace('|', "\\|")
}

/// A `callgrind_annotate` listing: instructions per function, exclusive or
/// inclusive as it was annotated.
struct Profile {
    total: u64,
    /// Most expensive first.
    functions: Vec<(String, u64)>,
}

/// Function groups for the paragraph, first match wins.
const GROUPS: [(&str, &[&str]); 11] = [
    (
        "memory allocation",
        &[
            "malloc",
            "free",
            "realloc",
            "calloc",
            "__rust_alloc",
            "__rust_dealloc",
            "alloc::alloc",
            "tcache",
            "sysmalloc",
            "arena_",
        ],
    ),
    (
        "memcpy/memmove/memset",
        &["memcpy", "memmove", "memset", "memcmp", "bcmp"],
    ),
    (
        "SHA-256 (JA4 fingerprints and table keys)",
        &["sha2::", "digest::"],
    ),
    (
        "the handshake inspector",
        &["stickytls::inspect", "tls_parser", "nom::"],
    ),
    (
        "affinity table, routing and learning",
        &[
            "stickytls::affinity",
            "stickytls::learn",
            "stickytls::route",
            "stickytls::balance",
            "lru::",
            "hashbrown",
            "core::hash",
            "RandomState",
            "siphash",
        ],
    ),
    (
        "tokio's scheduler, timers and I/O driver",
        &[
            "tokio::",
            "mio::",
            "parking_lot",
            "std::sync",
            "crossbeam",
            "futures",
        ],
    ),
    ("logging and metrics", &["tracing", "metrics"]),
    (
        "the relay and connect path",
        &[
            "stickytls::relay",
            "stickytls::connect",
            "stickytls::router",
            "stickytls::intake",
            "stickytls::listen",
        ],
    ),
    (
        "formatting (core::fmt)",
        &["core::fmt", "alloc::fmt", "fmt::"],
    ),
    (
        "libc's system-call wrappers and locks",
        &[
            "__libc_",
            "__GI_",
            "syscall",
            "epoll_",
            "recvfrom",
            "sendto",
            "accept4",
            "connect",
            "close",
            "setsockopt",
            "getsockopt",
            "shutdown",
            "socket",
            "clock_gettime",
            "futex",
            "pthread_",
            "__lll_",
        ],
    ),
    (
        "the dynamic loader and thread start-up",
        &["ld-linux", "ld.so", "_dl_"],
    ),
];

impl Profile {
    /// Parses a listing. callgrind_annotate lists a function once per
    /// source file its code came from (inlining), so entries are merged by
    /// name: summed when exclusive, the largest kept when inclusive (the
    /// entries are nested frames of one call).
    fn parse(text: &str, inclusive: bool) -> Profile {
        let mut total = 0;
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            let Some((count, rest)) = line.split_once(' ') else {
                continue;
            };
            let Ok(n) = count.replace(',', "").parse::<u64>() else {
                continue;
            };
            // "1,234 (12.3%)  file:function [object]"
            let rest = rest.trim_start();
            let rest = if rest.starts_with('(') {
                rest.split_once(')').map_or(rest, |(_, r)| r).trim_start()
            } else {
                rest
            };
            if rest.starts_with("PROGRAM TOTALS") {
                total = n;
            } else if let Some((_file, function)) = rest.split_once(':') {
                // The object file in brackets is not always printed.
                let name = function
                    .rsplit_once(" [")
                    .map_or(function, |(f, _)| f)
                    .to_string();
                let e = by_name.entry(name).or_default();
                *e = if inclusive { (*e).max(n) } else { *e + n };
            }
        }
        let mut functions: Vec<(String, u64)> = by_name.into_iter().collect();
        if total == 0 {
            total = functions.iter().map(|f| f.1).sum();
        }
        // A profile dumped while the process runs lists the functions on
        // the stack at that moment (thread start, the runtime's loop) with
        // the whole total, even as exclusive cost; they say nothing.
        functions.retain(|f| (f.1 as f64) < total as f64 * 0.999);
        functions.sort_by_key(|f| std::cmp::Reverse(f.1));
        Profile { total, functions }
    }

    /// From an inclusive profile: stickytls's own functions, zeroed
    /// allocations and formatting, below the whole-connection tasks.
    fn landmarks(&self) -> Vec<(&str, u64)> {
        self.functions
            .iter()
            .filter(|(f, n)| {
                (f.contains("stickytls::")
                    || f.contains("__rust_alloc_zeroed")
                    || f.starts_with("core::fmt::write"))
                    && !f.contains("{{closure}}")
                    && (*n as f64) < self.total as f64 * 0.5
            })
            .map(|(f, n)| (f.as_str(), *n))
            .collect()
    }

    fn landmarks_json(&self) -> Value {
        json!({
            "total": self.total,
            "functions": self.landmarks().iter().take(30).map(|(f, n)| json!({"function": f, "instructions": n})).collect::<Vec<_>>(),
        })
    }

    fn groups(&self) -> Vec<(&'static str, u64)> {
        let mut sums: Vec<(&'static str, u64)> = GROUPS.iter().map(|(g, _)| (*g, 0)).collect();
        let mut other = 0;
        for (name, n) in &self.functions {
            match GROUPS
                .iter()
                .position(|(_, pats)| pats.iter().any(|p| name.contains(p)))
            {
                Some(i) => sums[i].1 += n,
                None => other += n,
            }
        }
        sums.push(("everything else", other));
        sums.sort_by_key(|g| std::cmp::Reverse(g.1));
        sums
    }

    fn to_json(&self) -> Value {
        json!({
            "total": self.total,
            "groups": self.groups().iter().map(|(g, n)| json!({"group": g, "instructions": n})).collect::<Vec<_>>(),
            "top": self.functions.iter().take(30).map(|(f, n)| json!({"function": f, "instructions": n})).collect::<Vec<_>>(),
        })
    }

    fn paragraph(&self, per_conn: Option<f64>) -> String {
        let total = self.total.max(1) as f64;
        let parts: Vec<String> = self
            .groups()
            .iter()
            .filter(|(_, n)| *n as f64 / total >= 0.01)
            .map(|(g, n)| format!("{g} {:.0}%", *n as f64 * 100.0 / total))
            .collect();
        let head = per_conn.map_or(String::new(), |p| {
            format!(
                "Of the {p:.0} instructions a resumed connection costs stickytls with inspection, "
            )
        });
        let head = if head.is_empty() {
            "Of stickytls's instructions, ".to_string()
        } else {
            head
        };
        format!(
            "{head}by exclusive cost: {}. These are user-space instructions only: the time in \
             the kernel's TCP stack, which a passthrough proxy's copy loop mostly is, is not \
             counted here (see the syscall table, and the kernel-inclusive perf profile after it). Valgrind hides the CPU's SHA extensions, so \
             SHA-256 (session keys, JA4) runs in software here and its share is overstated \
             for hardware that has them.",
            parts.join("; ")
        )
    }
}

/// The shared-store part's modes in table order, with what each one is.
const STORE_TARGETS: [(&str, &str); 4] = [
    ("direct", "straight to one backend"),
    ("store-off", "the in-process table (`kind = \"memory\"`)"),
    (
        "store-local",
        "`--store redis://…`, learned and resumed through the same instance: hits in its near cache",
    ),
    (
        "store-remote",
        "`--store redis://…`, learned through instance A (the warm-up) and resumed through instance B, which asks Redis for every session; B's CPU only",
    ),
];

/// The instance whose store counters go with a mode's resumptions.
fn store_instance(target: &str) -> Option<&'static str> {
    match target {
        "store-local" => Some("a"),
        "store-remote" => Some("b"),
        _ => None,
    }
}

/// Store counters, from `/api/v1/stats`, that the report shows.
const STORE_COUNTERS: [&str; 6] = [
    "lookups_hit",
    "lookups_miss",
    "lookups_timeout",
    "lookups_error",
    "corrupt_values",
    "writes_dropped",
];

/// Per (workload, target, instance): the store counters' growth over the
/// runs of that workload and target, from the snapshots the script takes
/// after every run (each minus the instance's snapshot before it).
fn store_deltas(rows: &[Value]) -> BTreeMap<(String, String, String), BTreeMap<&'static str, u64>> {
    let mut last: BTreeMap<(String, String), &Value> = BTreeMap::new();
    let mut out: BTreeMap<(String, String, String), BTreeMap<&'static str, u64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r["kind"] == "store_stats") {
        let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
        let inst = (s("instance"), s("set"));
        if let Some(prev) = last.insert(inst.clone(), r) {
            let d = out
                .entry((s("workload"), s("target"), inst.0.clone()))
                .or_default();
            for c in STORE_COUNTERS {
                let v = |x: &Value| x["stats"]["store"][c].as_u64().unwrap_or(0);
                *d.entry(c).or_default() += v(r).saturating_sub(v(prev));
            }
        }
    }
    out
}

/// Per store workload and mode: medians over rounds, counts summed, and
/// the resuming instance's store counters.
fn summarize_store(rows: &[Value]) -> Vec<Value> {
    let deltas = store_deltas(rows);
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows {
        if let Some(w) = r["workload"].as_str() {
            if r["kind"] == "conns" && w.starts_with("store-") && !workloads.contains(&w) {
                workloads.push(w);
            }
        }
    }
    let mut out = Vec::new();
    for w in workloads {
        let of = |t: &str, f: &dyn Fn(&Value) -> Option<f64>| med(&runs(rows, "conns", w, t), f);
        let hs = |p: &'static str| move |r: &Value| r["handshake_us"][p].as_f64();
        let cpu = |r: &Value| r["proxy_cpu_s_per_10k"].as_f64();
        let (d50, d99) = (of("direct", &hs("p50")), of("direct", &hs("p99")));
        let off_cpu = of("store-off", &cpu);
        for (t, _) in STORE_TARGETS {
            let rs = runs(rows, "conns", w, t);
            if rs.is_empty() {
                continue;
            }
            let sum = |k: &str| rs.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
            let (hs50, hs99) = (of(t, &hs("p50")), of(t, &hs("p99")));
            let c = of(t, &cpu);
            let offered = sum("offered");
            let counters = store_instance(t)
                .and_then(|i| deltas.get(&(w.to_string(), t.to_string(), i.to_string())))
                .map(|d| json!(d));
            out.push(json!({
                "workload": w,
                "target": t,
                "rounds": rs.len(),
                "concurrency": rs[0]["concurrency"],
                "conns_per_s": of(t, &|r: &Value| r["conns_per_s"].as_f64()),
                "proxy_cpu_s_per_10k": c,
                "vs_store_off": ratio(c, off_cpu),
                "handshake_p50_us": hs50,
                "handshake_p99_us": hs99,
                "added_p50_us": diff(hs50, d50),
                "added_p99_us": diff(hs99, d99),
                "conns": sum("conns"),
                "errors": sum("errors"),
                "offered": offered,
                "resumed": sum("resumed"),
                "resumed_share": (offered > 0).then(|| sum("resumed") as f64 / offered as f64),
                "store_instance": store_instance(t),
                "store_counters": counters,
            }));
        }
    }
    out
}

/// The shared-store section, only when the run had the `store` part (so a
/// run without it prints no empty table).
fn store_section(w: &mut String, s: &Value) {
    let rows: Vec<&Value> = s["store"].as_array().into_iter().flatten().collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(w, "\n## Shared store (Redis)\n");
    let _ = writeln!(
        w,
        "Resumed connections with the affinity table in the process and shared through a local `redis-server` (started by the run on 127.0.0.1), side by side in one interleaved run. Every simulated client makes one full handshake in the untimed warm-up and one timed resumption, so each timed connection is the first resumption of a session learned in the warm-up. Modes:\n"
    );
    for (t, what) in STORE_TARGETS {
        let _ = writeln!(w, "- **{t}**: {what};");
    }
    let _ = writeln!(
        w,
        "\nHandshake: from `connect()` to the handshake's end at the client, p50 and p99, medians over the rounds. \"Added\" is that over direct's, shown for the workload that makes one connection at a time: with 32 in flight on a shared machine, handshake times are mostly queueing. Lookups are the resuming instance's store counters over the timed runs and their warm-ups (`/api/v1/stats`): a hit found something usable for that hello in Redis (the session, a key name's state or the client's record); a timeout was not answered within `--store-lookup-budget` (2 ms by default), and that connection went to the balancer's choice. A near-cache hit asks Redis nothing and is not counted.\n"
    );
    let _ = writeln!(
        w,
        "| workload | mode | conns/s | proxy CPU-s per 10k conns | vs store-off | handshake p50 / p99 ms | added p50 / p99 ms | resumed on issuing backend | lookups hit / miss / timeout / error | errors |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let lookups = r["store_counters"]
            .as_object()
            .map_or("–".to_string(), |c| {
                let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
                format!(
                    "{} / {} / {} / {}",
                    n("lookups_hit"),
                    n("lookups_miss"),
                    n("lookups_timeout"),
                    n("lookups_error")
                )
            });
        let direct = r["target"] == "direct";
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {lookups} | {} |",
            r["workload"].as_str().unwrap_or(""),
            r["target"].as_str().unwrap_or(""),
            num(&r["conns_per_s"], 0),
            if direct {
                "–".into()
            } else {
                num(&r["proxy_cpu_s_per_10k"], 2)
            },
            if direct {
                "–".into()
            } else {
                num(&r["vs_store_off"], 2)
            },
            ms(&r["handshake_p50_us"]),
            ms(&r["handshake_p99_us"]),
            if direct || r["concurrency"] != 1 {
                "–".to_string()
            } else {
                format!("{} / {}", ms(&r["added_p50_us"]), ms(&r["added_p99_us"]))
            },
            pct(&r["resumed_share"]),
            r["errors"],
        );
    }
    let _ = writeln!(
        w,
        "\nWorkloads: `store-tls12-resumed-session-id` (TLS 1.2 session IDs, tickets off) and `store-tls13-resumed-ticket` (TLS 1.3 stateless tickets, tickets on), {} connections in flight; `store-latency-tls12-resumed`, one connection at a time. TLS 1.3 tickets travel encrypted, so each timed connection, the first resumption of its session, is routed by the ticket's key name once that name is routable (two resumptions confirmed on its backend) and by client address before: with every client on 127.0.0.1 these rows measure how soon names become routable as much as the store, and their CPU includes the full handshakes of resumptions that missed. An instance asks Redis while the offered key name is not settled in its near cache; and a fresh TLS 1.3 hello carries a random legacy session ID, which is looked up too, so with the store on every warm-up connection costs a lookup (found: the client's record).",
        s["meta"]["concurrency"]
    );
}
