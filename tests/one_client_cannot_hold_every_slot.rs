//! One client address cannot hold a whole listener: it gets at most its
//! share of the slots (`max_connections_per_client`, by default half of
//! `max_connections`, rounded up), a connection past its share is closed at
//! once, and a client from another address still completes its TLS
//! handshake within 2 s while the first holds its share idle. Behind a
//! PROXY listener the share is the declared source's.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use stickytls_peers::client::{Client, Connection};

/// The listener's slots; the default share is half of them.
const SLOTS: usize = 8;
const SHARE: usize = SLOTS / 2;

/// How long a client from another address may take to be served.
const SERVED_WITHIN: Duration = Duration::from_secs(2);

/// Opens `SLOTS` idle TLS connections through `addr`, one at a time, as
/// `source` (a bound source address, or the proxy's header): as many as
/// the share allows complete and are kept; every one past it must be
/// closed at once, without a handshake.
async fn fill_the_listener(
    c: &Client,
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
) -> Vec<Connection> {
    let mut held = Vec::new();
    for i in 0..SLOTS {
        let t = Instant::now();
        let opened =
            tokio::time::timeout(SERVED_WITHIN, c.open(addr, source, Default::default())).await;
        match opened {
            Ok(Ok(conn)) => held.push(conn),
            Ok(Err(e)) => {
                assert!(
                    i >= SHARE,
                    "connection {i}, within the share, was refused: {e}"
                );
                assert!(
                    t.elapsed() < Duration::from_secs(1),
                    "a connection past the share waited {:?} to be closed",
                    t.elapsed()
                );
            }
            Err(_) => panic!(
                "connection {i} neither completed nor was closed within {SERVED_WITHIN:?}: it waits for a slot"
            ),
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_holding_its_share_idle_leaves_slots_for_another() {
    let farm = rustls_backends(1, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.listeners[0].limits.max_connections = SLOTS;
    let router = start_router(cfg).await;
    let c = fresh_client();

    let held = fill_the_listener(&c, router.addr, Some(ip(1))).await;
    assert_eq!(
        held.len(),
        SHARE,
        "127.0.0.1 holds {} of {SLOTS} slots",
        held.len()
    );
    let refused = router.stats().rejected_by_reason["per_client_limit"];
    assert_eq!(refused, (SLOTS - SHARE) as u64, "each refusal is counted");

    // 127.0.0.2: another client machine (Linux routes 127.0.0.0/8 on lo).
    let t = Instant::now();
    let other = tokio::time::timeout(
        SERVED_WITHIN,
        c.open(router.addr, Some(ip(2)), Default::default()),
    )
    .await
    .expect("a client from another address waited while 127.0.0.1 held its share")
    .expect("its handshake completes");
    assert!(t.elapsed() < SERVED_WITHIN);
    drop(other);

    // The share comes back as connections close.
    drop(held);
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match c.open(router.addr, Some(ip(1)), Default::default()).await {
                Ok(conn) => return conn,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("127.0.0.1 is served again once its connections closed");
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_declared_source_holds_the_share() {
    let farm = rustls_backends(1, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.listeners[0].limits.max_connections = SLOTS;
    cfg.listeners[0].proxy_protocol = true;
    cfg.listeners[0].proxy_trusted = vec!["127.0.0.1/32".parse().unwrap()];
    let router = start_router(cfg).await;
    // Every connection reaches the router from the proxy, 127.0.0.1; the
    // first SLOTS declare one client, the next another.
    let via = proxy_in_front(router.addr, |i| {
        let src = if i < SLOTS {
            "192.0.2.1"
        } else {
            "198.51.100.2"
        };
        format!("PROXY TCP4 {src} 127.0.0.1 40000 443\r\n").into_bytes()
    })
    .await;
    let c = fresh_client();

    let held = fill_the_listener(&c, via, None).await;
    assert_eq!(
        held.len(),
        SHARE,
        "192.0.2.1 holds {} of {SLOTS} slots",
        held.len()
    );
    let other = tokio::time::timeout(SERVED_WITHIN, c.open(via, None, Default::default()))
        .await
        .expect("a client declared from another address waited while 192.0.2.1 held its share")
        .expect("its handshake completes");
    drop((held, other));
}
