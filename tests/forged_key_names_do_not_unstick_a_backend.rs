//! A ticket key name is the first 16 bytes of every ticket a backend
//! issues, so any client holding one ticket knows it. Fifty hellos from
//! other addresses offering `name || garbage` (each answered by the owner
//! with a full handshake) must leave the name routing to its backend; what
//! ends its routing is the backend confirming a newer name (it rotated its
//! ticket key) and then refusing the old one. Real rustls backends, whose
//! tickets start with their ticketer's key name.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::shared_store::{Addresses, source_hash};
use common::*;
use stickytls::affinity::{Key, KeyKind, KeyState};
use stickytls::config::Balance;
use stickytls::inspect::{Handshake, Limits};
use stickytls::router::RunningRouter;
use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions, RunningBackend};
use stickytls_peers::client::{Client, ClientOptions};
use stickytls_peers::tap::Tap;

/// `stickytls_key_name_refusals_total`, spelled out so that this test
/// also builds against a router without it.
const KEY_NAME_REFUSALS: &str = "stickytls_key_name_refusals_total";

fn tls13() -> ClientOptions {
    ClientOptions {
        versions: Versions::Tls13,
        ..Default::default()
    }
}

/// Three TLS 1.3 backends a, b, c behind a source-hash router, every key
/// name made routable: clients resume from the address they got their
/// ticket on (so client-address affinity takes them home) until every
/// backend confirmed two identities.
async fn warm_farm() -> (Vec<RunningBackend>, RunningRouter) {
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls13).await;
    let mut cfg = config(&named(&farm));
    cfg.pools[0].balance = Balance::SourceHash;
    let router = start_router(cfg).await;
    let mut addrs = Addresses::new(1);
    for _ in 0..60 {
        if farm.iter().all(|b| b.resumed() >= 2) {
            break;
        }
        let c = Client::new(tls13()).unwrap();
        let ip = addrs.any();
        c.connect(router.addr, Some(ip)).await.unwrap();
        c.connect(router.addr, Some(ip)).await.unwrap();
    }
    let warm: Vec<usize> = farm.iter().map(|b| b.resumed()).collect();
    assert!(warm.iter().all(|&n| n >= 2), "warm-up: {warm:?}");
    (farm, router)
}

/// A client whose session is a ticket of `backend` (got directly, past
/// the router), and the ClientHello record it resumes with: its PSK
/// identity starts with the backend's key name.
async fn ticket_hello(backend: SocketAddr) -> (Vec<u8>, Vec<u8>) {
    let tap = Tap::start(backend).await.unwrap();
    let c = Client::new(tls13()).unwrap();
    c.connect(tap.addr(), None).await.unwrap();
    let r = c.connect(tap.addr(), None).await.unwrap();
    assert!(r.server_resumed, "the direct resumption resumed");
    let captures = tap.wait_closed(2, Duration::from_secs(10)).await.unwrap();
    let stream = &captures[1].client;
    let mut hs = Handshake::new(Limits::default());
    hs.feed_client(stream);
    let identity = hs
        .client_hello()
        .and_then(|h| h.psk_identities().next().map(<[u8]>::to_vec))
        .expect("the resumption offers a PSK identity");
    assert!(identity.len() > 16, "an identity carrying a key name");
    let len = usize::from(u16::from_be_bytes([stream[3], stream[4]]));
    (stream[..5 + len].to_vec(), identity)
}

/// `hello` with its identity's bytes after the key name replaced by
/// garbage numbered `i`: what anyone holding one ticket can send.
fn forged(hello: &[u8], identity: &[u8], i: u8) -> Vec<u8> {
    let at = hello
        .windows(identity.len())
        .position(|w| w == identity)
        .expect("the identity is in the hello");
    let mut out = hello.to_vec();
    for b in &mut out[at + 16..at + identity.len()] {
        *b ^= 0x5a ^ i | 1;
    }
    out
}

/// Full handshakes the router has seen completed, on every backend.
fn full_handshakes(router: &RunningRouter) -> u64 {
    let pool = router.pool("default").unwrap();
    pool.backends
        .all()
        .iter()
        .map(|b| b.counters.full.load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

/// Waits (bounded) until the router has seen `n` full handshakes: each
/// forged hello's answer has been learned from.
async fn until_full_handshakes(router: &RunningRouter, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while full_handshakes(router) < n {
        assert!(
            Instant::now() < deadline,
            "the router saw too few handshakes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn name_state(router: &RunningRouter, identity: &[u8]) -> Option<KeyState> {
    let name = Key::new(KeyKind::TicketKeyName, &identity[..16]);
    let pool = router.pool("default").unwrap();
    pool.table.peek(&name).map(|p| p.binding.state)
}

#[tokio::test]
async fn fifty_forged_identities_leave_the_key_name_routing_to_its_backend() {
    let metrics = LocalMetrics::default();
    let _recording = metrics.install();
    let (farm, router) = warm_farm().await;
    let owner = &farm[0];
    let (hello, identity) = ticket_hello(owner.addr()).await;
    assert_eq!(name_state(&router, &identity), Some(KeyState::Routable));

    let full_before = full_handshakes(&router);
    let mut attackers = Addresses::new(5);
    for i in 0..50u8 {
        send_raw(router.addr, attackers.any(), &forged(&hello, &identity, i)).await;
    }
    until_full_handshakes(&router, full_before + 50).await;
    assert_eq!(
        name_state(&router, &identity),
        Some(KeyState::Routable),
        "forged refusals changed the name"
    );
    let counted = metrics.take();
    let refusals = |result| {
        counted.get(
            KEY_NAME_REFUSALS,
            &[("pool", "default"), ("backend", "a"), ("result", result)],
        )
    };
    assert_eq!((refusals("kept"), refusals("rejected")), (50, 0));

    // Genuine tickets of `a`, resumed from addresses source-hash sends
    // elsewhere: only the key name can take them home.
    let mut home = Addresses::new(6);
    let mut away = Addresses::new(7);
    let mut on_issuer = 0;
    for _ in 0..10 {
        let c = Client::new(tls13()).unwrap();
        let at_a = loop {
            let ip = home.any();
            if source_hash(ip) == "a" {
                break ip;
            }
        };
        let fresh = c.connect(router.addr, Some(at_a)).await.unwrap();
        assert_eq!(fresh.backend, "a");
        let r = c
            .connect(router.addr, Some(away.away_from("a")))
            .await
            .unwrap();
        if r.backend == "a" && r.server_resumed {
            on_issuer += 1;
        }
    }
    assert!(on_issuer >= 9, "{on_issuer} of 10 resumed on their issuer");
}

#[tokio::test]
async fn a_rotated_backends_old_name_stops_routing_once_its_new_name_is_confirmed() {
    let metrics = LocalMetrics::default();
    let _recording = metrics.install();
    let (farm, router) = warm_farm().await;
    let (_, old_identity) = ticket_hello(farm[0].addr()).await;
    assert_eq!(name_state(&router, &old_identity), Some(KeyState::Routable));

    // Two clients keep tickets of `a`'s old key.
    let mut home = Addresses::new(8);
    let mut at_a = || loop {
        let ip = home.any();
        if source_hash(ip) == "a" {
            break ip;
        }
    };
    let holders: Vec<Client> = (0..2).map(|_| Client::new(tls13()).unwrap()).collect();
    for h in &holders {
        assert_eq!(
            h.connect(router.addr, Some(at_a())).await.unwrap().backend,
            "a"
        );
    }

    // `a` restarts on the same address with a new ticket key.
    farm[0].kill().await;
    let mut o = BackendOptions::new("a");
    o.versions = Versions::Tls13;
    o.addr = farm[0].addr();
    let restarted = Backend::start(o).await.unwrap();

    // Before `a` confirmed anything newer, its refusal of the old name is
    // only counted: the name still routes there.
    let mut away = Addresses::new(9);
    let r = holders[0]
        .connect(router.addr, Some(away.away_from("a")))
        .await
        .unwrap();
    assert_eq!((r.backend.as_str(), r.server_resumed), ("a", false));
    assert_eq!(name_state(&router, &old_identity), Some(KeyState::Routable));

    // Genuine resumptions of the new key confirm its name on `a`.
    for _ in 0..2 {
        let c = Client::new(tls13()).unwrap();
        let ip = at_a();
        c.connect(router.addr, Some(ip)).await.unwrap();
        let r = c.connect(router.addr, Some(ip)).await.unwrap();
        assert!(r.server_resumed && r.backend == "a", "{r:?}");
    }
    let (_, new_identity) = ticket_hello(restarted.addr()).await;
    assert_ne!(old_identity[..16], new_identity[..16], "a new key name");
    assert_eq!(name_state(&router, &new_identity), Some(KeyState::Routable));

    // The old name's next refusal ends its routing.
    let r = holders[1]
        .connect(router.addr, Some(away.away_from("a")))
        .await
        .unwrap();
    assert_eq!((r.backend.as_str(), r.server_resumed), ("a", false));
    assert_eq!(name_state(&router, &old_identity), Some(KeyState::Rejected));
    let counted = metrics.take();
    let refusals = |result| {
        counted.get(
            KEY_NAME_REFUSALS,
            &[("pool", "default"), ("backend", "a"), ("result", result)],
        )
    };
    assert_eq!((refusals("kept"), refusals("rejected")), (1, 1));
}
