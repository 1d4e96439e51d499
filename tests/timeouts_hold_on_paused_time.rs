//! The router's time limits, through the router with real rustls peers, on
//! a paused runtime: the idle timeout, the correlation window and the
//! affinity table's inactivity timeout each take effect exactly when
//! configured and not a second before, without the test sleeping.
//!
//! Everything runs on the test's one current-thread runtime (`Router::spawn`
//! serves on it), so `tokio::time::sleep` advances the router's clock
//! instantly once every peer is waiting. No subprocess may take part: paused
//! time would run ahead of it.

mod common;

use std::time::Duration;

use common::*;
use stickytls::config::Config;
use stickytls::router::RunningRouter;
use stickytls::stats::Snapshot;
use stickytls_peers::Versions;
use stickytls_peers::backend::RunningBackend;
use stickytls_peers::client::{Client, ClientOptions, Writes};
use tokio::time::{Instant, sleep, sleep_until};

/// The table and the client index keep whole seconds: a second either side
/// of a limit is the finest distinction they promise.
const SECOND: Duration = Duration::from_secs(1);

/// TLS 1.2 backends: their NewSessionTickets are cleartext, so the router
/// learns a client's ticket on its first connection.
async fn tls12_router(tune: impl FnOnce(&mut Config)) -> (Vec<RunningBackend>, RunningRouter) {
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls12).await;
    let mut cfg = config(&named(&farm));
    tune(&mut cfg);
    let router = start_router(cfg).await;
    (farm, router)
}

fn hits(s: &Snapshot) -> u64 {
    s.hits.iter().sum()
}

fn misses(s: &Snapshot) -> u64 {
    s.misses.iter().sum()
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_at_the_idle_timeout_and_not_before() {
    const IDLE: Duration = Duration::from_secs(300);
    const MS: Duration = Duration::from_millis(1);
    let farm = rustls_backends(1, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.pools[0].timeouts.idle = IDLE;
    let router = start_router(cfg).await;
    let client = Client::new(ClientOptions::default()).unwrap();

    // Each open ends with the backend's answer: the last byte relayed.
    let mut kept = client.open(router.addr, None, Writes::Whole).await.unwrap();
    let kept_at = Instant::now();
    let mut silent = client.open(router.addr, None, Writes::Whole).await.unwrap();
    let silent_at = Instant::now();

    sleep_until(kept_at + IDLE - MS).await;
    kept.ask()
        .await
        .expect("open a millisecond before its idle timeout");
    let kept_at = Instant::now();

    sleep_until(silent_at + IDLE + MS).await;
    let closed = silent.ask().await;
    assert!(
        closed.is_err(),
        "still open a millisecond past its idle timeout"
    );

    // The request above was traffic: the kept connection's timer restarted.
    sleep_until(kept_at + IDLE - MS).await;
    kept.ask().await.expect("traffic restarts the idle timer");
    let kept_at = Instant::now();
    sleep_until(kept_at + IDLE + MS).await;
    assert!(kept.ask().await.is_err(), "idle past its restarted timer");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_session_is_rebound_by_address_within_the_correlation_window_and_not_after() {
    const INACTIVITY: Duration = Duration::from_secs(60);
    const WINDOW: Duration = Duration::from_secs(1800);
    let (_farm, router) = tls12_router(|c| {
        let a = &mut c.pools[0].affinity;
        a.inactivity_timeout = INACTIVITY;
        a.correlation_window = WINDOW;
    })
    .await;
    let client = Client::new(ClientOptions::default()).unwrap();
    let from = Some(ip(20));

    let first = client.connect(router.addr, from).await.unwrap();
    let owner = first.backend.clone();

    // The table forgets the session; the address's backend is remembered
    // for the whole window.
    sleep(INACTIVITY).await;
    let before = router.stats();
    let r = client.connect(router.addr, from).await.unwrap();
    let after = router.stats();
    assert_eq!(hits(&after), hits(&before), "the session's keys expired");
    assert_eq!(after.rebinds, before.rebinds + 1, "{after:?}");
    assert_eq!(
        (r.backend.as_str(), r.server_resumed),
        (owner.as_str(), true)
    );

    // A second before the window closes, still re-bound.
    sleep(WINDOW - SECOND).await;
    let before = router.stats();
    let r = client.connect(router.addr, from).await.unwrap();
    let after = router.stats();
    assert_eq!(hits(&after), hits(&before), "the session's keys expired");
    assert_eq!(after.rebinds, before.rebinds + 1, "{after:?}");
    assert_eq!(
        (r.backend.as_str(), r.server_resumed),
        (owner.as_str(), true)
    );

    // Once the window has passed since that connection, the unknown
    // session is a stranger's: the balancer places it.
    sleep(WINDOW).await;
    let before = router.stats();
    client.connect(router.addr, from).await.unwrap();
    let after = router.stats();
    assert_eq!(after.rebinds, before.rebinds, "re-bound after the window");
    assert_eq!(after.routed_source_ip, before.routed_source_ip);
    assert_eq!(after.routed_balancer, before.routed_balancer + 1);
}

#[tokio::test(start_paused = true)]
async fn a_session_routes_to_its_owner_until_the_affinity_timeout_since_its_last_use() {
    const INACTIVITY: Duration = Duration::from_secs(600);
    // Shorter than the table's timeout, so that neither rule 2 nor rule 3
    // (client-address affinity) can stand in for an expired key.
    const WINDOW: Duration = Duration::from_secs(120);
    let (_farm, router) = tls12_router(|c| {
        let a = &mut c.pools[0].affinity;
        a.inactivity_timeout = INACTIVITY;
        a.correlation_window = WINDOW;
    })
    .await;
    let client = Client::new(ClientOptions::default()).unwrap();
    let from = Some(ip(30));

    let first = client.connect(router.addr, from).await.unwrap();
    assert!(!first.server_resumed);

    sleep(INACTIVITY - SECOND).await;
    let before = router.stats();
    let r = client.connect(router.addr, from).await.unwrap();
    let after = router.stats();
    assert_eq!(hits(&after), hits(&before) + 1, "{after:?}");
    assert_eq!(after.rebinds, before.rebinds);
    assert_eq!(
        (r.backend.as_str(), r.server_resumed),
        (first.backend.as_str(), true)
    );

    // Every entry was last used (or learned) by that connection.
    sleep(INACTIVITY).await;
    let before = router.stats();
    client.connect(router.addr, from).await.unwrap();
    let after = router.stats();
    assert_eq!(hits(&after), hits(&before), "a key outlived its timeout");
    assert!(misses(&after) > misses(&before), "{after:?}");
    assert_eq!(after.rebinds, before.rebinds);
    assert_eq!(after.routed_balancer, before.routed_balancer + 1);
}
