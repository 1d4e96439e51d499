//! Reloading the real binary's configuration file (`POST /api/v1/reload`,
//! `stickytls ctl reload`, SIGHUP): under continuous TLS load no connection
//! fails, an established connection runs on, a changed weight shows in the
//! API, the affinity table is kept whole, and sessions learned before the
//! reload resume on their issuing backends after it, from client addresses
//! the router has never seen, which source-hash sends elsewhere. A file
//! with a mistake is refused (400, the API's last outcome, the metric) and
//! the running configuration keeps routing; listeners are added and closed
//! in place; a router started from flags logs SIGHUP and ignores it.

mod common;
#[path = "common/prom.rs"]
#[allow(dead_code)]
mod prom;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::router_process::{RouterProcess, scratch};
use common::traffic::{continuous_load, source_hash, tls12};
use common::*;
use hyper::Method;
use rustix::process::Signal;
use serde_json::Value;
use stickytls::client::ctl::{CtlError, Endpoint};
use stickytls_peers::backend::RunningBackend;
use stickytls_peers::client::Writes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAMES: [&str; 3] = ["a", "b", "c"];

/// The file's text: the admin endpoint on, one pool `web` over `farm` with
/// `weights`, and a listener on each of `binds`.
fn config_text(farm: &[RunningBackend], weights: [u32; 3], binds: &[&str]) -> String {
    let backends: Vec<String> = farm
        .iter()
        .zip(weights)
        .map(|(b, w)| {
            format!(
                "{{ name = \"{}\", address = \"{}\", weight = {w} }}",
                b.name(),
                b.addr()
            )
        })
        .collect();
    let mut text = String::from("[admin]\nbind = \"127.0.0.1:0\"\n\n");
    for (i, bind) in binds.iter().enumerate() {
        text.push_str(&format!(
            "[[listener]]\nname = \"l{i}\"\nbind = \"{bind}\"\ndefault_pool = \"web\"\n\n"
        ));
    }
    text.push_str(&format!(
        "[pool.web]\nbalance = \"source-hash\"\nbackends = [{}]\n\n[pool.web.health]\ncheck = \"none\"\n",
        backends.join(", ")
    ));
    text
}

fn write(path: &Path, text: &str) {
    // Whole or not at all: a reload must never read half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Router {
    process: RouterProcess,
    admin: SocketAddr,
    file: PathBuf,
}

async fn start(name: &str, text: &str) -> Router {
    let dir = scratch(name);
    let file = dir.join("stickytls.toml");
    write(&file, text);
    let args: Vec<String> = ["--config", file.to_str().unwrap(), "--threads", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut process = RouterProcess::start(&args, &dir.join("stderr.log")).await;
    let line = process.wait_for_log("admin endpoint listening").await;
    let admin = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("the admin line names its address")
        .parse()
        .unwrap();
    Router {
        process,
        admin,
        file,
    }
}

fn api(admin: SocketAddr) -> Endpoint {
    Endpoint {
        addr: admin.to_string(),
        token: None,
        timeout: Duration::from_secs(30),
    }
}

async fn get(admin: SocketAddr, path: &str) -> Value {
    api(admin)
        .call(Method::GET, path, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn reload(admin: SocketAddr) -> Result<Value, CtlError> {
    api(admin).call(Method::POST, "/api/v1/reload", None).await
}

fn entries(pools: &Value) -> u64 {
    pools["pools"][0]["affinity_entries"].as_u64().unwrap()
}

fn weight_of(backends: &Value, name: &str) -> u64 {
    backends["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap()["weight"]
        .as_u64()
        .unwrap()
}

/// `stickytls_reloads_total{result}` from `/metrics`.
async fn reloads(admin: SocketAddr, result: &str) -> f64 {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let exposition = prom::parse(body).expect("a valid exposition");
    exposition.sum("stickytls_reloads_total", &[("result", result)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_loses_no_connection_applies_weights_and_keeps_sessions() {
    let farm = rustls_backends(3, |_| {}).await;
    let before = [1, 1, 1];
    let mut router = start("reload-load", &config_text(&farm, before, &["127.0.0.1:0"])).await;
    let addr = router.process.addr;

    // Sessions learned before the reload: (client, issuer), TLS 1.2 IDs
    // and tickets, from addresses source-hash spreads over the farm.
    let mut sessions = Vec::new();
    for i in 0..12u8 {
        let c = tls12(i % 2 == 1);
        let r = c
            .connect(addr, Some(IpAddr::from([127, 1, 0, 10 + i])))
            .await
            .unwrap();
        assert!(!r.server_resumed);
        sessions.push((c, r.backend));
    }
    let issuers: std::collections::HashSet<_> = sessions.iter().map(|(_, b)| b.clone()).collect();
    assert!(
        issuers.len() >= 2,
        "source-hash spread the sessions: {issuers:?}"
    );

    // A quiet reload that changes nothing keeps every entry.
    let entries_before = entries(&get(router.admin, "/api/v1/pools").await);
    assert!(entries_before >= 12, "{entries_before} entries");
    let same = reload(router.admin)
        .await
        .expect("an unchanged file reloads");
    assert_eq!(same["result"], "ok", "{same}");
    assert_eq!(
        entries(&get(router.admin, "/api/v1/pools").await),
        entries_before
    );

    // An established connection, held across the reload.
    let held_client = tls12(false);
    let mut held = held_client
        .open(addr, Some(IpAddr::from([127, 1, 1, 1])), Writes::Whole)
        .await
        .unwrap();
    let held_on = held.ask().await.unwrap().backend;

    // Load, then the reload that changes c's weight, then more load.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = continuous_load(addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = [1, 1, 3];
    write(&router.file, &config_text(&farm, after, &["127.0.0.1:0"]));
    let applied = reload(router.admin).await.expect("the new file reloads");
    assert_eq!(applied["result"], "ok", "{applied}");
    let changes = applied["changes"].to_string();
    assert!(changes.contains("backend c weight 1 -> 3"), "{changes}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (made, failed) = loader.await.unwrap();
    assert_eq!(
        failed, 0,
        "connections lost across the reload ({made} made)"
    );
    assert!(
        made >= 4,
        "the load ran across the reload: {made} connections"
    );

    // The held connection still talks to its backend.
    assert_eq!(held.ask().await.unwrap().backend, held_on);
    held.close().await.unwrap();

    // The weight shows in the API.
    let backends = get(router.admin, "/api/v1/pools/web/backends").await;
    assert_eq!(weight_of(&backends, "c"), 3, "{backends}");
    assert_eq!(weight_of(&backends, "a"), 1, "{backends}");
    let last = get(router.admin, "/api/v1/reload").await;
    assert_eq!(last["last"]["result"], "ok", "{last}");

    // Sessions from before resume on their issuers, from new addresses
    // that source-hash (with the new weights) sends elsewhere.
    let mut host = 0u8;
    for (c, issuer) in &sessions {
        let ip = loop {
            host = host.checked_add(1).expect("enough addresses");
            let ip = IpAddr::from([127, 2, 0, host]);
            if source_hash(ip, &[("a", after[0]), ("b", after[1]), ("c", after[2])])
                != issuer.as_str()
            {
                break ip;
            }
        };
        let r = c.connect(addr, Some(ip)).await.unwrap();
        assert_eq!(
            &r.backend, issuer,
            "the session's owner, not source-hash's choice"
        );
        assert!(r.server_resumed, "resumed on {issuer}");
    }
    assert_eq!(reloads(router.admin, "ok").await, 2.0);
    assert_eq!(reloads(router.admin, "error").await, 0.0);
    assert!(router.process.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_and_the_running_configuration_keeps_routing() {
    let farm = rustls_backends(3, |_| {}).await;
    let good = config_text(&farm, [1, 1, 1], &["127.0.0.1:0"]);
    let mut router = start("reload-invalid", &good).await;
    let addr = router.process.addr;
    let c = tls12(false);
    let first = c
        .connect(addr, Some(IpAddr::from([127, 1, 0, 1])))
        .await
        .unwrap();

    // A weight that is not a number, on line 8 of the file.
    let bad = good.replace("weight = 1 }", "weight = \"heavy\" }");
    write(&router.file, &bad);
    let refused = reload(router.admin)
        .await
        .expect_err("a broken file is refused");
    let CtlError::Api { status, message } = &refused else {
        panic!("{refused}");
    };
    assert_eq!(status.as_u16(), 400);
    let file = router.file.display().to_string();
    assert!(
        message.contains(&format!("{file}:")),
        "FILE:LINE:COLUMN in {message}"
    );
    assert!(message.contains("keeps serving"), "{message}");
    let last = get(router.admin, "/api/v1/reload").await;
    assert_eq!(last["last"]["result"], "error", "{last}");
    assert!(
        !last["last"]["errors"].as_array().unwrap().is_empty(),
        "{last}"
    );
    assert_eq!(reloads(router.admin, "error").await, 1.0);

    // SIGHUP with the same file: refused and logged, the process runs on.
    router.process.signal(Signal::HUP);
    router.process.wait_for_log("SIGHUP: reloading").await;
    let mut counted = 0.0;
    for _ in 0..250 {
        counted = reloads(router.admin, "error").await;
        if counted == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, 2.0, "the SIGHUP's refusal is counted");
    assert_eq!(
        router
            .process
            .log()
            .matches("refused, the running configuration keeps serving")
            .count(),
        2,
        "both refusals are logged"
    );
    assert!(router.process.running());

    // The old configuration routes: the session resumes where it began,
    // and the weights are the old ones.
    let again = c
        .connect(addr, Some(IpAddr::from([127, 1, 0, 1])))
        .await
        .unwrap();
    assert!(again.server_resumed);
    assert_eq!(again.backend, first.backend);
    let backends = get(router.admin, "/api/v1/pools/web/backends").await;
    assert_eq!(weight_of(&backends, "a"), 1, "{backends}");

    // `stickytls ctl reload` reports the mistake and exits 1.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stickytls"))
        .args(["ctl", "--admin", &router.admin.to_string(), "reload"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{file}:")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_closes_listeners_in_place() {
    let farm = rustls_backends(3, |_| {}).await;
    // A port that was free a moment ago, for the listener the reload adds.
    let second: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut router = start(
        "reload-listeners",
        &config_text(&farm, [1, 1, 1], &["127.0.0.1:0"]),
    )
    .await;
    let first = router.process.addr;
    let c = tls12(false);
    let mut held = c
        .open(first, Some(IpAddr::from([127, 1, 0, 1])), Writes::Whole)
        .await
        .unwrap();
    let held_on = held.ask().await.unwrap().backend;

    // Added: the second address routes after a SIGHUP.
    let both = config_text(&farm, [1, 1, 1], &["127.0.0.1:0", &second.to_string()]);
    write(&router.file, &both);
    router.process.signal(Signal::HUP);
    router.process.wait_for_log("configuration reloaded").await;
    let r = c
        .connect(second, Some(IpAddr::from([127, 1, 0, 2])))
        .await
        .unwrap();
    assert!(NAMES.contains(&r.backend.as_str()));
    let r = c
        .connect(first, Some(IpAddr::from([127, 1, 0, 3])))
        .await
        .unwrap();
    assert!(NAMES.contains(&r.backend.as_str()));

    // Closed: the first address refuses new connections through `ctl
    // reload`; the connection accepted on it runs on.
    write(
        &router.file,
        &config_text(&farm, [1, 1, 1], &[&second.to_string()]),
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stickytls"))
        .args(["ctl", "--admin", &router.admin.to_string(), "reload"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("closed"), "{stdout}");
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(first).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the closed listener's port refuses connections");
    assert_eq!(held.ask().await.unwrap().backend, held_on);
    held.close().await.unwrap();
    let r = c
        .connect(second, Some(IpAddr::from([127, 1, 0, 4])))
        .await
        .unwrap();
    assert!(NAMES.contains(&r.backend.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_ignored_by_a_router_started_from_flags() {
    let farm = rustls_backends(1, |_| {}).await;
    let dir = scratch("reload-flags");
    let args: Vec<String> = ["--listen", "127.0.0.1:0", "--threads", "1", "--backend"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("a={}", farm[0].addr())])
        .collect();
    let mut router = RouterProcess::start(&args, &dir.join("stderr.log")).await;
    router.signal(Signal::HUP);
    router.wait_for_log("SIGHUP ignored").await;
    assert!(router.running(), "SIGHUP does not end the process");
    let r = tls12(false)
        .connect(router.addr, Some(ip(9)))
        .await
        .unwrap();
    assert_eq!(r.backend, "a");
}
