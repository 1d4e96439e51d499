//! Where a proxy's CPU per connection goes, kernel included, from the text
//! `perf script` prints for a `perf record -e cpu-clock -g` taken over a
//! run of short connections.
//!
//! Callgrind counts only user-space instructions, and a passthrough proxy
//! spends most of its time in the kernel's TCP stack; on loopback that
//! includes the receiving side's work for every segment the proxy sends.
//! So each sample is charged to the system call its kernel stack entered
//! through (`__x64_sys_sendto` is "sendto"), to other kernel work (page
//! faults, interrupts), or, in user space, to a kind of code chosen by the
//! function the CPU was in (exclusive: a `malloc` called by the inspector
//! counts as memory, not as inspection). Frames come leaf first.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

#[derive(Args, Debug)]
pub struct PerfArgs {
    /// `perf script` output of the proxy's processes.
    #[arg(long)]
    pub script: PathBuf,
    /// Connections served while perf recorded.
    #[arg(long)]
    pub conns: u64,
    /// KEY=VALUE copied into the JSON result; repeatable.
    #[arg(long = "tag", value_parser = crate::parse_tag)]
    pub tags: Vec<(String, String)>,
}

/// The user-space kinds, first match wins.
const USER_KINDS: &[(&str, &[&str])] = &[
    (
        "user: inspection and affinity",
        &[
            "stickytls::inspect",
            "stickytls::route",
            "stickytls::learn",
            "stickytls::affinity",
            "sha2::",
            "lru::",
        ],
    ),
    ("user: async runtime", &["tokio::", "mio::"]),
    (
        "user: memory (allocation, copies)",
        &[
            "malloc",
            "free",
            "_int_",
            "memcpy",
            "memmove",
            "memset",
            "realloc",
            "unlink_chunk",
            "calloc",
        ],
    ),
];

pub fn run(args: &PerfArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(&args.script)
        .map_err(|e| format!("cannot read {}: {e}", args.script.display()))?;
    let profile = Profile::parse(&text);
    if profile.samples == 0 {
        return Err(format!("no samples in {}", args.script.display()));
    }
    let conns = args.conns.max(1) as f64;
    let us = |ns: u64| ns as f64 / 1e3 / conns;
    let by: BTreeMap<&str, f64> = profile
        .ns
        .iter()
        .map(|(k, &v)| (k.as_str(), us(v)))
        .collect();
    let kernel: f64 = by
        .iter()
        .filter(|(k, _)| !k.starts_with("user"))
        .map(|(_, v)| v)
        .sum();
    let total: f64 = by.values().sum();
    let mut out = json!({
        "kind": "perf",
        "conns": args.conns,
        "samples": profile.samples,
        "us_per_conn": total,
        "kernel_us_per_conn": kernel,
        "user_us_per_conn": total - kernel,
        "by": by,
    });
    for (k, v) in &args.tags {
        out[k] = json!(v);
    }
    println!("{out}");
    Ok(())
}

#[derive(Debug, Default)]
struct Profile {
    samples: u64,
    /// CPU nanoseconds by where they went.
    ns: BTreeMap<String, u64>,
}

impl Profile {
    fn parse(text: &str) -> Profile {
        let mut p = Profile::default();
        let mut period = 0u64;
        let mut frames: Vec<(&str, bool)> = Vec::new();
        for line in text.lines().chain(std::iter::once("")) {
            if line.trim().is_empty() {
                if period > 0 && !frames.is_empty() {
                    p.samples += 1;
                    *p.ns.entry(where_spent(&frames)).or_default() += period;
                }
                period = 0;
                frames.clear();
            } else if !line.starts_with(char::is_whitespace) {
                // "comm pid time: PERIOD cpu-clock:" (the period is in ns).
                period = line
                    .split_whitespace()
                    .rev()
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            } else {
                // "\tADDR SYMBOL+OFF (DSO)"
                let rest = line.trim().split_once(' ').map_or("", |(_, r)| r);
                let kernel = rest.ends_with("([kernel.kallsyms])");
                let sym = rest.rsplit_once(" (").map_or(rest, |(s, _)| s);
                let sym = sym.rsplit_once("+0x").map_or(sym, |(s, _)| s);
                frames.push((sym, kernel));
            }
        }
        p
    }
}

fn where_spent(frames: &[(&str, bool)]) -> String {
    let Some(&(leaf, in_kernel)) = frames.first() else {
        return "unknown".into();
    };
    if in_kernel {
        for &(sym, _) in frames {
            if let Some(call) = sym.strip_prefix("__x64_sys_") {
                return format!("kernel: {call}");
            }
            if sym == "asm_exc_page_fault" {
                return "kernel: page faults".into();
            }
        }
        return "kernel: other (interrupts, scheduling)".into();
    }
    for (kind, patterns) in USER_KINDS {
        if patterns.iter().any(|p| leaf.contains(p)) {
            return (*kind).into();
        }
    }
    "user: other".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
stickytls-0 11477  9379.506628:     200000 cpu-clock: 
\tffffffff8165ad81 tcp_sendmsg+0x31 ([kernel.kallsyms])
\tffffffff817337d0 __x64_sys_sendto+0x60 ([kernel.kallsyms])
\tffffffff821ef691 do_syscall_64+0x71 ([kernel.kallsyms])
\t          109c1a __send+0xa (/usr/lib/x86_64-linux-gnu/libc.so.6)

stickytls-1 11478  9379.506654:     100000 cpu-clock: 
\t          5a1b2c stickytls::inspect::client_hello::ClientHello::parse+0x5 (/x/stickytls)

stickytls-1 11478  9379.506854:     100000 cpu-clock: 
\t          98109 _int_malloc+0xda9 (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t              0 [unknown] ([unknown])

stickytls-1 11478  9379.507054:     300000 cpu-clock: 
\tffffffff8165ad81 alloc_pages_mpol+0x31 ([kernel.kallsyms])
\tffffffff81000c82 asm_exc_page_fault+0x22 ([kernel.kallsyms])
\t          98109 _int_malloc+0xda9 (/usr/lib/x86_64-linux-gnu/libc.so.6)
";

    #[test]
    fn samples_go_to_their_system_call_or_kind_of_code() {
        let p = Profile::parse(SCRIPT);
        assert_eq!(p.samples, 4);
        assert_eq!(p.ns["kernel: sendto"], 200_000);
        assert_eq!(p.ns["user: inspection and affinity"], 100_000);
        assert_eq!(p.ns["user: memory (allocation, copies)"], 100_000);
        assert_eq!(p.ns["kernel: page faults"], 300_000);
    }
}
