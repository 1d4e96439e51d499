//! The in-process affinity table under contention: nanoseconds per lookup
//! (a hit, as on a resumption) and per insert (a new session, evicting the
//! least recently used entry of a full shard), from 1 and from 4 threads at
//! once on a table holding `ENTRIES` entries.
//!
//! Each figure is the time one operation takes as seen by one thread while
//! the others run the same loop, so 4-thread figures above 1-thread ones
//! are lock contention plus cores shared. Keys are random 16-byte values,
//! as SHA-256 digests are.
//!
//! `cargo bench --bench affinity`; `scripts/bench` passes shorter times.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stickytls::affinity::memory::MemoryStoreConfig;
use stickytls::affinity::{AffinityStore, Binding, Key, KeyState, MemoryStore};
use stickytls::backend::BackendName;
use stickytls::clock::Clock;

const ENTRIES: u64 = 1_000_000;
const THREADS: [usize; 2] = [1, 4];

/// The i-th key: splitmix64 spread over 16 bytes, so shards fill evenly
/// and no two indices collide.
fn key(i: u64) -> Key {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(i.wrapping_add(0x9e37_79b9_7f4a_7c15));
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&a.to_le_bytes());
    b[8..].copy_from_slice(&i.to_le_bytes());
    Key::from_bytes(b)
}

fn full_table() -> (Arc<MemoryStore>, Vec<BackendName>) {
    let store = MemoryStore::new(
        MemoryStoreConfig {
            capacity: ENTRIES as usize,
            inactivity: Duration::from_secs(3600),
            absolute_max: None,
        },
        Clock::new(),
    );
    let names: Vec<BackendName> = ["b1", "b2", "b3"]
        .iter()
        .map(|n| BackendName::from(*n))
        .collect();
    for i in 0..ENTRIES {
        store.put(
            key(i),
            Binding {
                backend: names[(i % 3) as usize].clone(),
                state: KeyState::Owned,
                session: stickytls::affinity::Session::UNKNOWN,
            },
        );
    }
    (Arc::new(store), names)
}

/// Runs `op(thread, i)` `iters` times on each of `threads` threads at once
/// and returns the wall time, i.e. the per-thread time for `iters` ops.
fn contended(threads: usize, iters: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                for i in 0..iters {
                    op(t, i);
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let (store, names) = full_table();
    let mut group = c.benchmark_group("affinity");
    for threads in THREADS {
        // Hits spread over the whole table, each thread on its own stride.
        let store_ = store.clone();
        group.bench_function(format!("lookup/threads={threads}"), |b| {
            b.iter_custom(|iters| {
                contended(threads, iters, |t, i| {
                    let k = key((i.wrapping_mul(7919) + t as u64 * 104_729) % ENTRIES);
                    black_box(store_.get(&k));
                })
            })
        });
        // New keys only, so every insert evicts: the steady state of a
        // full table.
        let next = AtomicU64::new(ENTRIES * 16);
        let store_ = store.clone();
        let names_ = names.clone();
        group.bench_function(format!("insert/threads={threads}"), |b| {
            b.iter_custom(|iters| {
                let base = next.fetch_add(iters * threads as u64, Ordering::Relaxed);
                contended(threads, iters, |t, i| {
                    let k = key(base + t as u64 * iters + i);
                    store_.put(
                        k,
                        Binding {
                            backend: names_[(i % 3) as usize].clone(),
                            state: KeyState::Owned,
                            session: stickytls::affinity::Session::UNKNOWN,
                        },
                    );
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
