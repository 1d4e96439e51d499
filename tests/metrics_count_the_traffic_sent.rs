//! `/metrics`, scraped from a router with real TLS going through it, parses
//! strictly as Prometheus text, and its counters move by exactly the
//! traffic sent: connections, each backend's full and resumed handshakes,
//! hits by key kind, the routing rules, TLS versions. One router in this
//! test binary: the recorder is process-wide.

#[path = "common/prom.rs"]
mod prom;

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;

use common::*;
use stickytls::admin::AdminConfig;
use stickytls::client::ctl::Endpoint;
use stickytls_peers::Versions;
use stickytls_peers::client::{Client, ClientOptions};

/// The recorder is process-wide: the tests of this binary take turns, so
/// one's traffic never shows in another's deltas.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn scrape(admin: SocketAddr) -> prom::Exposition {
    let text = raw_get(admin, "/metrics").await;
    prom::parse(&text).unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

/// A GET over a plain HTTP/1.1 connection; the body.
async fn raw_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_the_connections_resumptions_and_hits_sent() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let backends = rustls_backends(2, |o| o.versions = Versions::Tls12).await;
    let mut cfg = config(&named(&backends));
    cfg.admin = Some(AdminConfig::new("127.0.0.1:0".parse().unwrap()));
    let router = start_router(cfg).await;
    let admin = router.admin_addr().expect("the admin endpoint is on");
    let before = scrape(admin).await;

    // Five clients, each from its own address, each one full handshake and
    // three resumptions by session ID.
    let mut full: HashMap<String, f64> = HashMap::new();
    let mut resumed: HashMap<String, f64> = HashMap::new();
    for i in 0..5u8 {
        let client = Client::new(ClientOptions {
            versions: Versions::Tls12,
            tls12_tickets: false,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..4 {
            let r = client
                .connect(router.addr, Some(ip(20 + i)))
                .await
                .expect("connects");
            let tally = if r.server_resumed {
                &mut resumed
            } else {
                &mut full
            };
            *tally.entry(r.backend).or_default() += 1.0;
        }
    }
    let resumptions: f64 = resumed.values().sum();
    assert_eq!(resumptions, 15.0, "every reconnection resumed: {resumed:?}");

    let after = scrape(admin).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };

    assert_eq!(delta("stickytls_connections_total", &[]), 20.0);
    assert_eq!(
        delta("stickytls_affinity_hits_total", &[("kind", "session_id")]),
        15.0
    );
    assert_eq!(delta("stickytls_routed_total", &[("rule", "key")]), 15.0);
    assert_eq!(
        delta("stickytls_resumed_total", &[("kind", "tls12-session-id")]),
        15.0
    );
    assert_eq!(
        delta("stickytls_tls_versions_total", &[("version", "1.2")]),
        20.0
    );
    assert_eq!(
        after.sum("stickytls_affinity_lost_total", &[])
            - before.sum("stickytls_affinity_lost_total", &[]),
        0.0
    );
    for b in ["a", "b"] {
        let on = |resumed: &str| {
            delta(
                "stickytls_backend_handshakes_total",
                &[("pool", "default"), ("backend", b), ("resumed", resumed)],
            )
        };
        let want_full = full.get(b).copied().unwrap_or(0.0);
        let want_resumed = resumed.get(b).copied().unwrap_or(0.0);
        assert_eq!(on("false"), want_full, "full handshakes on {b}");
        assert_eq!(on("true"), want_resumed, "resumptions on {b}");
        assert_eq!(
            delta(
                "stickytls_backend_connections_total",
                &[("pool", "default"), ("backend", b)]
            ),
            want_full + want_resumed,
            "connections to {b}"
        );
        assert_eq!(
            delta(
                "stickytls_backend_connect_duration_seconds_count",
                &[("pool", "default"), ("backend", b)]
            ),
            want_full + want_resumed,
            "connect times of {b}"
        );
        assert_eq!(
            after.value(
                "stickytls_backend_state",
                &[("pool", "default"), ("backend", b), ("state", "up")]
            ),
            1.0
        );
    }
    assert_eq!(
        delta(
            "stickytls_decision_duration_seconds_count",
            &[("pool", "default")]
        ),
        20.0
    );
    assert!(delta("stickytls_bytes_client_to_backend_total", &[]) > 0.0);
    assert!(delta("stickytls_bytes_backend_to_client_total", &[]) > 0.0);
    assert!(after.value("stickytls_affinity_entries", &[("pool", "default")]) >= 5.0);

    // Every per-backend series carries both labels; no label names a client.
    for (name, kind) in &after.types {
        for labels in after
            .series(name)
            .into_iter()
            .chain(after.series(&format!("{name}_count")))
        {
            if name.starts_with("stickytls_backend_") {
                assert!(
                    labels.contains_key("pool") && labels.contains_key("backend"),
                    "{name} {labels:?} ({kind})"
                );
            }
            assert!(
                !labels
                    .keys()
                    .any(|k| k == "client" || k == "session" || k == "sni"),
                "{name} {labels:?}"
            );
        }
    }

    // The API agrees with the exposition.
    let api = Endpoint {
        addr: admin.to_string(),
        token: None,
        timeout: std::time::Duration::from_secs(10),
    };
    let list = api
        .call(hyper::Method::GET, "/api/v1/pools/default/backends", None)
        .await
        .unwrap();
    for b in list["backends"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        assert_eq!(
            b["resumed"].as_f64().unwrap(),
            after.value(
                "stickytls_backend_handshakes_total",
                &[("pool", "default"), ("backend", name), ("resumed", "true")]
            )
        );
    }
}

/// Bytes each way, exactly: plain text through the non-TLS pool to an
/// echo server, so what was sent is all there is to count.
async fn echo_exactly(router: SocketAddr, payload: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(router).await.unwrap();
    s.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, payload);
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    // The router ends the connection once the echo server has: the relay
    // is over, and its bytes counted, before this returns.
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_counters_move_by_exactly_the_bytes_relayed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let farm = rustls_backends(1, |_| {}).await;
    let echo = echo_server().await;
    let mut cfg = config(&named(&farm));
    cfg.pools[0].name = "tls-bytes".into();
    cfg.listeners[0].default_pool = "tls-bytes".into();
    cfg.pools.push(stickytls::config::PoolConfig::new(
        "plain",
        vec![stickytls::config::BackendConfig::new("echo", echo)],
    ));
    cfg.listeners[0].non_tls = stickytls::config::NonTls::Pool("plain".into());
    cfg.admin = Some(AdminConfig::new("127.0.0.1:0".parse().unwrap()));
    let router = start_router(cfg).await;
    let admin = router.admin_addr().unwrap();

    let before = scrape(admin).await;
    echo_exactly(router.addr, b"PING plain text\n").await;
    echo_exactly(router.addr, &[b'x'; 100_000]).await;
    let after = scrape(admin).await;
    let delta = |name: &str| after.value(name, &[]) - before.value(name, &[]);
    assert_eq!(delta("stickytls_bytes_client_to_backend_total"), 100_016.0);
    assert_eq!(delta("stickytls_bytes_backend_to_client_total"), 100_016.0);
    let echo_conns = |e: &prom::Exposition| {
        e.value(
            "stickytls_backend_connections_total",
            &[("pool", "plain"), ("backend", "echo")],
        )
    };
    assert_eq!(echo_conns(&after) - echo_conns(&before), 2.0);
}
