//! Resident bytes per entry of the in-process affinity table.
//!
//! ```text
//! cargo run --release --example affinity_rss -- 1000000
//! ```
//!
//! Reads this process's RSS from /proc/self/statm, builds a
//! `MemoryStore` with room for exactly N entries, fills it with N distinct
//! keys, reads RSS again and prints one JSON line. Run one size per
//! process: memory freed by an earlier size would be reused and hide the
//! cost.

use std::time::{Duration, Instant};

use stickytls::affinity::memory::MemoryStoreConfig;
use stickytls::affinity::{AffinityStore, Binding, Key, KeyState, MemoryStore};
use stickytls::backend::BackendName;
use stickytls::clock::Clock;

/// Resident set size in bytes (statm's second field is in pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // 4 KiB pages on every platform this bench runs on (x86_64, aarch64
    // Linux defaults); statm has no page size of its own.
    pages * 4096
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let names: Vec<BackendName> = ["b1", "b2", "b3"]
        .iter()
        .map(|n| BackendName::from(*n))
        .collect();
    let before = rss_bytes();
    let started = Instant::now();
    let store = MemoryStore::new(
        MemoryStoreConfig {
            capacity: n as usize,
            inactivity: Duration::from_secs(3600),
            absolute_max: None,
        },
        Clock::new(),
    );
    for i in 0..n {
        // Real keys, as the router makes them: a digest of a session ID.
        let key = Key::new(stickytls::affinity::KeyKind::SessionId, &i.to_le_bytes());
        store.put(
            key,
            Binding {
                backend: names[(i % 3) as usize].clone(),
                state: KeyState::Owned,
                session: stickytls::affinity::Session::UNKNOWN,
            },
        );
    }
    let fill = started.elapsed();
    let after = rss_bytes();
    let held = store.len() as u64;
    println!(
        "{{\"kind\":\"rss\",\"entries\":{n},\"held\":{held},\"rss_before\":{before},\"rss_after\":{after},\"bytes_per_entry\":{:.1},\"fill_ns_per_entry\":{:.0}}}",
        after.saturating_sub(before) as f64 / held.max(1) as f64,
        fill.as_nanos() as f64 / n.max(1) as f64,
    );
}
