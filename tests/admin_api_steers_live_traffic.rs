//! The JSON API steering a router that carries live TLS traffic: drain
//! keeps a backend's sessions resuming there but gives it no new session,
//! maint moves its clients elsewhere, established connections survive
//! both, and no connection fails. Lookups and forgets by session ID and by
//! client address, against real OpenSSL sessions.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use hyper::Method;
use serde_json::{Value, json};
use stickytls::admin::AdminConfig;
use stickytls::client::ctl::{CtlError, Endpoint};
use stickytls_peers::Versions;
use stickytls_peers::client::{Client, ClientOptions, Writes};
use stickytls_peers::openssl::{SClient, SClientOptions, SServer, SServerOptions};
use tokio::sync::Mutex;

fn api(admin: SocketAddr) -> Endpoint {
    Endpoint {
        addr: admin.to_string(),
        token: None,
        timeout: Duration::from_secs(10),
    }
}

async fn set(api: &Endpoint, backend: &str, state: &str) -> Value {
    api.call(
        Method::POST,
        &format!("/api/v1/pools/default/backends/{backend}"),
        Some(&json!({ "state": state })),
    )
    .await
    .unwrap_or_else(|e| panic!("set {backend} {state}: {e}"))
}

fn tls12_client() -> Client {
    Client::new(ClientOptions {
        versions: Versions::Tls12,
        tls12_tickets: false,
        ..Default::default()
    })
    .unwrap()
}

/// One simulated client reconnecting in a loop, resuming its session each
/// time, until told to stop.
struct Looper {
    ip: IpAddr,
    /// Every connection's (backend, resumed), in order.
    seen: Mutex<Vec<(String, bool)>>,
    failures: AtomicU64,
}

impl Looper {
    async fn done(&self) -> usize {
        self.seen.lock().await.len()
    }

    /// The connections made from `from` on.
    async fn since(&self, from: usize) -> Vec<(String, bool)> {
        self.seen.lock().await[from..].to_vec()
    }
}

/// Waits until every looper made `n` more connections than at `marks`.
async fn until_each_made(loopers: &[Arc<Looper>], marks: &[usize], n: usize) {
    loop {
        let mut all = true;
        for (l, m) in loopers.iter().zip(marks) {
            all &= l.done().await >= m + n;
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn marks(loopers: &[Arc<Looper>]) -> Vec<usize> {
    let mut out = Vec::new();
    for l in loopers {
        out.push(l.done().await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_maint_steer_live_traffic_without_a_failed_connection() {
    let backends = rustls_backends(3, |o| o.versions = Versions::Tls12).await;
    let mut cfg = config(&named(&backends));
    cfg.admin = Some(AdminConfig::new("127.0.0.1:0".parse().unwrap()));
    let router = start_router(cfg).await;
    let api = api(router.admin_addr().unwrap());
    let addr = router.addr;

    // An established connection to every backend, kept open throughout.
    let mut held = HashMap::new();
    let mut n = 0;
    while held.len() < 3 {
        // A new client each time, so no session pins it.
        let conn = tls12_client()
            .open(addr, Some(ip(200 + n)), Writes::Whole)
            .await
            .unwrap();
        n += 1;
        held.entry(conn.reached().backend.clone()).or_insert(conn);
        assert!(n < 30, "round robin reaches every backend");
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loopers = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..6u8 {
        let looper = Arc::new(Looper {
            ip: ip(10 + i),
            seen: Mutex::new(Vec::new()),
            failures: AtomicU64::new(0),
        });
        loopers.push(looper.clone());
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let client = tls12_client();
            while !*stop.borrow_and_update() {
                match client.connect(addr, Some(looper.ip)).await {
                    Ok(r) => looper.seen.lock().await.push((r.backend, r.server_resumed)),
                    Err(_) => {
                        looper.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let start = marks(&loopers).await;
    until_each_made(&loopers, &start, 3).await;
    let mut home = HashMap::new();
    for l in &loopers {
        let seen = l.since(0).await;
        home.insert(l.ip, seen.last().unwrap().0.clone());
    }

    // Drain a: its clients keep resuming there; nothing new goes there.
    let b = set(&api, "a", "drain").await;
    assert_eq!(b["state"], "drain");
    let m = marks(&loopers).await;
    until_each_made(&loopers, &m, 3).await;
    for (l, from) in loopers.iter().zip(&m) {
        // The first connection may have been decided before the change.
        for (backend, resumed) in l.since(from + 1).await {
            assert!(resumed, "{}: a session resumed", l.ip);
            assert_eq!(backend, home[&l.ip], "{}: still on its backend", l.ip);
        }
    }
    let on_a: Vec<_> = loopers.iter().filter(|l| home[&l.ip] == "a").collect();
    assert!(!on_a.is_empty(), "some clients live on a: {home:?}");
    for l in &on_a {
        // A fresh client from an address last seen on a: not to a.
        let fresh = tls12_client().connect(addr, Some(l.ip)).await.unwrap();
        assert_ne!(
            fresh.backend, "a",
            "drain gives no new session, even to a's addresses"
        );
    }
    for i in 0..6 {
        let fresh = tls12_client()
            .connect(addr, Some(ip(100 + i)))
            .await
            .unwrap();
        assert_ne!(fresh.backend, "a");
    }
    let list = api
        .call(Method::GET, "/api/v1/pools/default/backends", None)
        .await
        .unwrap();
    let a = &list["backends"].as_array().unwrap()[0];
    assert_eq!(
        (a["name"].as_str(), a["state"].as_str()),
        (Some("a"), Some("drain"))
    );

    // Maint b: its clients move elsewhere and stay there.
    set(&api, "b", "maint").await;
    let m = marks(&loopers).await;
    until_each_made(&loopers, &m, 3).await;
    for (l, from) in loopers.iter().zip(&m) {
        let after = l.since(from + 1).await;
        assert!(
            after.iter().all(|(b, _)| b != "b"),
            "{}: nothing new on b: {after:?}",
            l.ip
        );
        if home[&l.ip] == "b" {
            // A full handshake on its new backend (c: a takes no new
            // session), then resumptions there.
            let (last, resumed) = after.last().unwrap();
            assert_eq!(
                (last.as_str(), *resumed),
                ("c", true),
                "{}: {after:?}",
                l.ip
            );
        }
    }

    // Both back up; then stop and count.
    set(&api, "a", "up").await;
    set(&api, "b", "up").await;
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.unwrap();
    }
    let failed: u64 = loopers
        .iter()
        .map(|l| l.failures.load(Ordering::Relaxed))
        .sum();
    assert_eq!(failed, 0, "no connection failed");
    for (backend, conn) in held.iter_mut() {
        let who = conn
            .ask()
            .await
            .expect("an established connection survived drain and maint");
        assert_eq!(&who.backend, backend);
    }

    // The decisions behind it, newest first.
    let d = api
        .call(Method::GET, "/api/v1/pools/default/decisions?limit=5", None)
        .await
        .unwrap();
    let list = d["decisions"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert!(
        list.iter()
            .all(|d| d["backend"].is_string() && d["rule"].is_string()),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_and_a_client_are_looked_up_and_forgotten() {
    let mut farm = Vec::new();
    for name in ["a", "b"] {
        let mut o = SServerOptions::new(name);
        o.versions = Versions::Tls12;
        o.tickets = false;
        farm.push(SServer::start(o).await.expect("s_server starts"));
    }
    let named: Vec<_> = farm
        .iter()
        .map(|s| (s.name().to_string(), s.addr()))
        .collect();
    let mut cfg = config(&named);
    cfg.admin = Some(AdminConfig::new("127.0.0.1:0".parse().unwrap()));
    let router = start_router(cfg).await;
    let api = api(router.admin_addr().unwrap());

    let client = SClient::new(SClientOptions {
        versions: Versions::Tls12,
        no_ticket: true,
        ..Default::default()
    })
    .unwrap();
    let first = client.connect(router.addr, Some(ip(7))).await.unwrap();
    let owner = first.backend.clone().unwrap();
    let sid = first.session_id.clone().unwrap().to_lowercase();

    let path = format!("/api/v1/pools/default/affinity?key={sid}");
    let found = api.call(Method::GET, &path, None).await.unwrap();
    assert_eq!(found["backend"], owner.as_str(), "{found}");
    assert_eq!(found["rule"], "key");
    assert_eq!(found["kind"], "session_id");
    assert!(found["expires_in_secs"].as_u64().unwrap() > 0);

    let by_ip = api
        .call(
            Method::GET,
            "/api/v1/pools/default/affinity?client=127.0.0.7",
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_ip["backend"], owner.as_str(), "{by_ip}");
    assert_eq!(by_ip["rule"], "source_ip");
    assert_eq!(
        by_ip["kind"], "session_id",
        "its last connection was TLS 1.2"
    );

    let gone = api.call(Method::DELETE, &path, None).await.unwrap();
    assert_eq!(gone["removed"], 1);
    let again = api.call(Method::GET, &path, None).await.unwrap();
    assert_eq!(again["backend"], Value::Null);
    assert_eq!(again["entries"], json!([]));
    match api.call(Method::DELETE, &path, None).await {
        Err(CtlError::Api { status, .. }) => assert_eq!(status.as_u16(), 404),
        other => panic!("forgetting twice: {other:?}"),
    }

    api.call(
        Method::DELETE,
        "/api/v1/pools/default/affinity?client=127.0.0.7",
        None,
    )
    .await
    .unwrap();
    let by_ip = api
        .call(
            Method::GET,
            "/api/v1/pools/default/affinity?client=127.0.0.7",
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_ip["backend"], Value::Null);
    assert_eq!(by_ip["rule"], "balancer");

    // Forgotten, the session is re-learned from its next resumption: the
    // client re-binds by nothing (its address was forgotten too), so it
    // resumes only if round robin happens to send it home; either way the
    // router learns where it went.
    let next = client.connect(router.addr, Some(ip(7))).await.unwrap();
    let relearned = api.call(Method::GET, &path, None).await.unwrap();
    if next.reused {
        assert_eq!(relearned["backend"], owner.as_str());
    } else {
        assert_eq!(
            relearned["backend"],
            Value::Null,
            "a new session, not this one"
        );
    }
}
