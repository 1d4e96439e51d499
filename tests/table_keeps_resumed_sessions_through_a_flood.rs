//! A flood of one-hit full handshakes from thousands of addresses (each
//! teaches the table a session nobody resumes) does not push out the
//! sessions clients do resume: new entries wait on probation, and only
//! entries with hits are protected (src/affinity/shards.rs). The table
//! never holds more than `table_size` entries.
//!
//! The victims resume from addresses the balancer (source-hash) would send
//! elsewhere, so only their table entries can bring them to their owner.

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::shared_store::{Addresses, source_hash};
use common::*;
use stickytls::config::Balance;
use stickytls_peers::Versions;
use stickytls_peers::client::{Client, ClientOptions};
use tokio::sync::Semaphore;

const TABLE_SIZE: usize = 200;
const VICTIMS: usize = 20;
const FLOOD: usize = 2_000;
/// Flood connections in flight at once: fast, and bounded.
const PARALLEL: usize = 16;

/// The `i`-th flood address: 127.1.x.y, none of them a victim's.
fn flood_address(i: usize) -> IpAddr {
    IpAddr::from([127, 1, (i / 200) as u8, (i % 200 + 1) as u8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_resumed_sessions_route_to_their_owner_after_two_thousand_one_hit_handshakes() {
    // TLS 1.2 session IDs (no tickets: a ticket's key name could route a
    // victim whose entry was lost, and hide the loss).
    let farm = rustls_backends(3, |o| {
        o.versions = Versions::Tls12;
        o.tickets = false;
    })
    .await;
    let mut c = config(&named(&farm));
    c.pools[0].balance = Balance::SourceHash;
    c.pools[0].affinity.table_size = TABLE_SIZE;
    let router = start_router(c).await;
    let pool = router.pool("default").unwrap();
    let table_len = || pool.table.len();

    // Each victim: a full handshake, then two resumptions.
    let mut homes = Addresses::new(50);
    let mut victims = Vec::new();
    for i in 0..VICTIMS {
        let client = Client::new(ClientOptions {
            versions: Versions::Tls12,
            tls12_tickets: false,
            ..Default::default()
        })
        .unwrap();
        let home = homes.any();
        let first = client.connect(router.addr, Some(home)).await.unwrap();
        assert!(!first.server_resumed);
        for n in 0..2 {
            let r = client.connect(router.addr, Some(home)).await.unwrap();
            assert_eq!(r.backend, first.backend, "victim {i}, resumption {n}");
            assert!(r.server_resumed, "victim {i}, resumption {n}");
        }
        victims.push((client, first.backend));
    }

    // The flood: one full handshake from each of 2,000 addresses.
    let flood = Client::new(ClientOptions {
        versions: Versions::Tls12,
        resumption: false,
        ..Default::default()
    })
    .unwrap();
    let evictions_before = pool.table.evictions();
    let slots = Arc::new(Semaphore::new(PARALLEL));
    let most = Arc::new(AtomicUsize::new(table_len()));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..FLOOD {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (flood, addr, most, table) =
            (flood.clone(), router.addr, most.clone(), pool.table.clone());
        tasks.spawn(async move {
            let r = flood.connect(addr, Some(flood_address(i))).await;
            most.fetch_max(table.len(), Ordering::Relaxed);
            drop(permit);
            r.map(|r| r.server_resumed)
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        let resumed = r.unwrap().expect("a flood handshake completes");
        assert!(!resumed);
        done += 1;
    }
    assert_eq!(done, FLOOD);
    let evicted = pool.table.evictions() - evictions_before;
    assert!(
        evicted as usize >= FLOOD - TABLE_SIZE,
        "the flood filled the table over and over: {evicted} evictions"
    );
    let most = most.load(Ordering::Relaxed).max(table_len());

    // Each victim resumes from an address source-hash sends elsewhere.
    let mut away = Addresses::new(60);
    let mut home_again = 0;
    let mut missed = Vec::new();
    for (i, (client, owner)) in victims.iter().enumerate() {
        let from = away.away_from(owner);
        assert_ne!(source_hash(from), owner.as_str());
        let r = client.connect(router.addr, Some(from)).await.unwrap();
        if &r.backend == owner && r.server_resumed {
            home_again += 1;
        } else {
            missed.push((i, r.backend));
        }
    }
    let most = most.max(table_len());
    println!(
        "{home_again} of {VICTIMS} on their owner; at most {most} entries; {evicted} evictions"
    );
    assert!(
        home_again >= 18 && most <= TABLE_SIZE,
        "{home_again} of {VICTIMS} victims resumed on their owner (missed: {missed:?}); \
         the table held up to {most} entries"
    );
}
