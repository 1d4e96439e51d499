//! The state file at scale: how long writing and loading take, and how big
//! the file is, for a pool with N affinity entries and M client records.
//!
//! ```text
//! cargo run --release --example state_at_scale -- 1000000 1000000 [DIR]
//! ```
//!
//! Fills a pool's table with N distinct keys over three backends (mixed
//! key states) and its client index with M IPv4 clients, each with three
//! recent connections; writes the state file as the router does (encode,
//! temporary file, fsync, rename, fsync of the directory), then loads it
//! into a fresh pool as a restart does (read, checksum, parse, apply).
//! Prints one JSON line (`encode_ms`: of the write, the part spent copying
//! the tables out and encoding them; the rest is the file system's). Run on
//! the disk the state file will live on: fsync time is the disk's.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use stickytls::affinity::clients::Confirmed;
use stickytls::affinity::{Binding, Key, KeyState};
use stickytls::config::{BackendConfig, Config};
use stickytls::pool::PoolState;
use stickytls::router::Router;
use stickytls::state::{StateFile, apply};

fn main() {
    let mut args = std::env::args().skip(1);
    let entries: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let clients: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    // The clock is tokio's: a runtime must be current while it is read.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let pool = rt.block_on(new_pool(entries, clients));
    let names: Vec<_> = pool.backends.all().iter().map(|b| b.name.clone()).collect();
    let states = [
        KeyState::Owned,
        KeyState::Owned,
        KeyState::Owned,
        KeyState::Routable,
        KeyState::Candidate { tag: 5 },
    ];
    for i in 0..entries as u64 {
        let binding = Binding {
            backend: names[i as usize % names.len()].clone(),
            state: states[i as usize % states.len()],
            session: stickytls::affinity::Session::UNKNOWN,
        };
        pool.table.put(key(i), binding);
    }
    for i in 0..clients as u32 {
        let prefix = pool.prefix(std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        for k in 0..3u32 {
            pool.clients.record(
                prefix,
                &Confirmed {
                    backend: names[(i + k) as usize % names.len()].clone(),
                    tls12: k == 0,
                    fingerprint: i ^ k,
                    new_session: k == 0,
                },
            );
        }
    }

    let path = dir.join(format!("stickytls-state-at-scale-{}", std::process::id()));
    let file = StateFile::new(path.clone());
    let written = file
        .write_now(std::slice::from_ref(&pool))
        .expect("write the state file");
    let bytes = std::fs::metadata(&path).unwrap().len();

    let fresh = rt.block_on(new_pool(entries, clients));
    let started = Instant::now();
    let saved = file.read().expect("read").expect("the file exists");
    let parsed = started.elapsed();
    let restored = apply(saved, std::slice::from_ref(&fresh), SystemTime::now());
    let loaded = started.elapsed();
    // A full table's shards do not fill evenly, so it holds a little less
    // than N: what was written is what must come back.
    assert_eq!(restored.entries, written.entries, "{restored:?}");
    assert_eq!(restored.clients, written.clients, "{restored:?}");
    let _ = std::fs::remove_file(&path);

    let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    println!(
        "{{\"kind\": \"state\", \"entries\": {}, \"clients\": {}, \"bytes\": {bytes}, \"write_ms\": {}, \"encode_ms\": {}, \"read_parse_ms\": {}, \"load_ms\": {}}}",
        written.entries,
        written.clients,
        ms(written.took),
        ms(written.encoding),
        ms(parsed),
        ms(loaded)
    );
}

/// A pool as the router builds it (behind a listener on a free port that
/// nothing connects to).
async fn new_pool(entries: usize, clients: usize) -> Arc<PoolState> {
    let addr = "127.0.0.1:1".parse().unwrap();
    let backends = ["web1", "web2", "web3"]
        .iter()
        .map(|n| BackendConfig::new(n, addr))
        .collect();
    let mut config = Config::single("127.0.0.1:0".parse().unwrap(), backends);
    config.pools[0].affinity.table_size = entries.max(1);
    config.pools[0].affinity.clients_tracked = clients.max(1);
    let router = Router::bind(config).await.expect("bind");
    router.pools()[0].clone()
}

/// The i-th key: splitmix64 over 16 bytes, as SHA-256 digests spread.
fn key(i: u64) -> Key {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&mix(i.wrapping_add(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
    b[8..].copy_from_slice(&i.to_le_bytes());
    Key::from_bytes(b)
}
