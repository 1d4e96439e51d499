//! `send_proxy`: backends that require a PROXY protocol header (as behind
//! HAProxy's `send-proxy`) get one with the client's real address, the
//! address an incoming PROXY header named when there was one, and in v2
//! the routing decision; sessions still resume on their issuers; health
//! probes send a LOCAL/UNKNOWN header so that such backends pass them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use stickytls::backend::State;
use stickytls::config::{Config, HealthCheck, SendProxy};
use stickytls::proxy_out::{TLV_KEY_KIND, TLV_RULE};
use stickytls::router::RunningRouter;
use stickytls_peers::Versions;
use stickytls_peers::backend::{Handshake, RunningBackend};
use stickytls_peers::client::{Client, ClientOptions, Reached};

/// Backends a, b that close any connection without a PROXY header.
async fn proxy_backends() -> Vec<RunningBackend> {
    rustls_backends(2, |o| o.proxy_protocol = true).await
}

/// The quick form's config in front of `farm`, every backend sent `send`.
fn config_sending(farm: &[RunningBackend], send: SendProxy) -> Config {
    let mut cfg = config(&named(farm));
    for b in &mut cfg.pools[0].backends {
        b.send_proxy = send;
    }
    cfg
}

/// The handshake the backend that answered `r` recorded last.
fn handshake_of(farm: &[RunningBackend], r: &Reached) -> Handshake {
    let backend = farm.iter().find(|b| b.name() == r.backend).unwrap();
    backend.handshakes().last().cloned().expect("a handshake")
}

fn tlv(h: &Handshake, kind: u8) -> Option<String> {
    h.proxy_tlvs
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
}

/// Two clients' connections, then the first client resuming: each backend
/// sees the address the connection really came from, and the resumption
/// lands on the backend that issued the session. Over TLS 1.2 the router
/// learned the ticket, so the resumption comes from another address and
/// is routed by its key; a TLS 1.3 ticket is encrypted, so there it comes
/// from the same address and is re-bound by it.
async fn backends_see_clients_and_sessions_resume(send: SendProxy, versions: Versions) {
    let farm = proxy_backends().await;
    let router = start_router(config_sending(&farm, send)).await;
    let options = || ClientOptions {
        versions,
        ..ClientOptions::default()
    };
    let alice = Client::new(options()).unwrap();
    let bob = Client::new(options()).unwrap();
    let (resume_from, rule, kind) = match versions {
        Versions::Tls12 => (4, "key", "ticket"),
        _ => (2, "rebind", "psk_identity"),
    };

    let mut seen = Vec::new();
    let mut reached = Vec::new();
    for (client, from) in [(&alice, 2), (&bob, 3), (&alice, resume_from)] {
        let r = client.connect(router.addr, Some(ip(from))).await.unwrap();
        let h = handshake_of(&farm, &r);
        let what = format!("{send:?} {versions:?} from {}", r.local);
        assert_eq!(h.proxied, Some(r.local), "{what}: the client, port and all");
        assert_eq!(
            h.proxied_to,
            Some(router.addr),
            "{what}: where it connected"
        );
        assert!(h.peer.ip().is_loopback());
        seen.push(h);
        reached.push(r);
    }
    let (first, again) = (&reached[0], &reached[2]);
    assert!(!first.server_resumed);
    assert_eq!(again.backend, first.backend, "{send:?}: stickiness kept");
    assert!(again.server_resumed, "{send:?}: the issuer resumed it");
    // Not by luck: the router chose the issuer by the session.
    let pool = router.pool("default").unwrap();
    let decided = pool.decision_for(again.local).expect("decision kept");
    assert_eq!(decided.rule, rule);
    assert_eq!(
        farm.iter().map(|b| b.bad_proxy_headers()).sum::<u64>(),
        0,
        "every connection came with a header"
    );

    // v2 also says why, as the router's own decision record does.
    if send == SendProxy::V2 {
        let resumed = &seen[2];
        assert_eq!(tlv(resumed, TLV_RULE).as_deref(), Some(rule), "{resumed:?}");
        assert_eq!(tlv(resumed, TLV_KEY_KIND).as_deref(), Some(kind));
        if let Some(k) = decided.key_kind {
            assert_eq!(k.as_str(), kind);
        }
        let fresh = &seen[0];
        assert_eq!(tlv(fresh, TLV_RULE).as_deref(), Some("balancer"));
        assert_eq!(tlv(fresh, TLV_KEY_KIND), None, "no key, no kind");
    } else {
        assert!(seen.iter().all(|h| h.proxy_tlvs.is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_proxy_v1_gives_backends_the_client_address_and_sessions_still_resume() {
    backends_see_clients_and_sessions_resume(SendProxy::V1, Versions::Tls12).await;
    backends_see_clients_and_sessions_resume(SendProxy::V1, Versions::Tls13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_proxy_v2_gives_backends_the_client_address_and_the_rule_in_tlvs() {
    backends_see_clients_and_sessions_resume(SendProxy::V2, Versions::Tls12).await;
    backends_see_clients_and_sessions_resume(SendProxy::V2, Versions::Tls13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_an_incoming_proxy_header_names_is_what_backends_are_sent() {
    for send in [SendProxy::V1, SendProxy::V2] {
        let farm = proxy_backends().await;
        let mut cfg = config_sending(&farm, send);
        cfg.listeners[0].proxy_protocol = true;
        cfg.listeners[0].proxy_trusted = vec!["127.0.0.0/8".parse().unwrap()];
        let router = start_router(cfg).await;
        let via = proxy_in_front(router.addr, |i| {
            format!("PROXY TCP4 192.0.2.{} 198.51.100.1 4000{i} 443\r\n", i + 1).into_bytes()
        })
        .await;
        let client = Client::new(ClientOptions::default()).unwrap();
        for i in 0..2 {
            let r = client.connect(via, Some(ip(9))).await.unwrap();
            let h = handshake_of(&farm, &r);
            let named: SocketAddr = format!("192.0.2.{}:4000{i}", i + 1).parse().unwrap();
            assert_eq!(h.proxied, Some(named), "{send:?}: not the front proxy's");
            assert_eq!(h.proxied_to, Some("198.51.100.1:443".parse().unwrap()));
        }
    }
}

/// Checks every 300 ms (the probe's bound too: generous for a loaded test
/// machine); one failed probe marks a backend down and a thousand passes
/// would bring it back, so "not down" after several probes means not one
/// of them failed.
fn with_fast_checks(cfg: &mut Config, check: HealthCheck) {
    let h = &mut cfg.pools[0].health;
    h.check = check;
    h.interval = Duration::from_millis(300);
    h.timeout = Duration::from_millis(300);
    h.fall = 1;
    h.rise = 1000;
}

/// Polls `f` every 20 ms until it holds, for at most ten seconds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state_of(router: &RunningRouter, name: &str) -> (State, Option<bool>) {
    let pool = router.pool("default").unwrap();
    let b = pool.backends.by_name(name).unwrap();
    (b.state(&pool.clock), b.health.last_passed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_send_a_local_header_and_keep_proxy_backends_up() {
    for check in [HealthCheck::Tls, HealthCheck::Tcp] {
        for send in [SendProxy::V1, SendProxy::V2] {
            let farm = proxy_backends().await;
            let mut cfg = config_sending(&farm, send);
            with_fast_checks(&mut cfg, check);
            let router = start_router(cfg).await;
            eventually(&format!("{check:?} {send:?}: probes arrive"), || {
                farm.iter().all(|b| b.local_probes() >= 3)
            })
            .await;
            for b in &farm {
                assert_eq!(
                    state_of(&router, b.name()),
                    (State::Up, Some(true)),
                    "{check:?} {send:?}: {}",
                    b.name()
                );
                assert_eq!(b.bad_proxy_headers(), 0, "{check:?} {send:?}");
            }
            // Still routed to, with the client's address.
            let r = Client::new(ClientOptions::default())
                .unwrap()
                .connect(router.addr, Some(ip(5)))
                .await
                .unwrap();
            assert_eq!(handshake_of(&farm, &r).proxied, Some(r.local));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_expecting_a_header_fails_the_tls_check_when_none_is_sent() {
    let farm = proxy_backends().await;
    let mut cfg = config_sending(&farm, SendProxy::Off);
    with_fast_checks(&mut cfg, HealthCheck::Tls);
    let router = start_router(cfg).await;
    eventually("both held down by their checks", || {
        farm.iter()
            .all(|b| state_of(&router, b.name()) == (State::Down, Some(false)))
    })
    .await;
    assert!(farm.iter().all(|b| b.bad_proxy_headers() >= 1));
    assert_eq!(farm.iter().map(|b| b.local_probes()).sum::<u64>(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_a_kept_backend_to_the_new_header() {
    let farm = proxy_backends().await;
    let a = &farm[0];
    let file =
        std::env::temp_dir().join(format!("stickytls-send-proxy-{}.toml", std::process::id()));
    let write = |pool_default: &str| {
        let text = format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"default\"\n\n[pool.default]\nsend_proxy = \"{pool_default}\"\nbackends = [{{ name = \"a\", address = \"{}\" }}]\n[pool.default.health]\ncheck = \"none\"\n",
            a.addr()
        );
        std::fs::write(&file, text).unwrap();
    };
    write("v1");
    let cfg = stickytls::config::file::load(&file).unwrap();
    let router = stickytls::router::Router::bind_file(cfg, file.clone())
        .await
        .unwrap()
        .spawn();
    let kept = router.pool("default").unwrap().backends.all()[0].clone();
    let client = Client::new(ClientOptions::default()).unwrap();

    let r = client.connect(router.addr, Some(ip(6))).await.unwrap();
    let h = handshake_of(&farm, &r);
    assert_eq!(h.proxied, Some(r.local));
    assert!(h.proxy_tlvs.is_empty(), "v1 has no TLVs");

    write("v2");
    let live = router.live().clone();
    let reloaded = tokio::task::spawn_blocking(move || live.reload().map_err(|e| format!("{e:?}")))
        .await
        .unwrap();
    assert!(reloaded.is_ok(), "{reloaded:?}");
    let now = router.pool("default").unwrap().backends.all()[0].clone();
    assert!(
        std::sync::Arc::ptr_eq(&kept, &now),
        "the same backend, kept"
    );
    assert_eq!(now.send_proxy(), SendProxy::V2);
    let r = client.connect(router.addr, Some(ip(6))).await.unwrap();
    let h = handshake_of(&farm, &r);
    assert_eq!(h.proxied, Some(r.local));
    assert!(tlv(&h, TLV_RULE).is_some(), "now v2: {h:?}");
    let _ = std::fs::remove_file(&file);
}
