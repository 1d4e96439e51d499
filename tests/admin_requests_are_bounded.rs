//! The admin endpoint's rules and bounds, over real HTTP: the bearer token
//! (writes; reads with `token_for_reads`), JSON errors with their status,
//! and oversized, malformed and slow requests, which get a 4xx or are cut
//! off while TLS keeps flowing through the router.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;
use stickytls::admin::{AdminConfig, AdminServer, Control, Limits};
use stickytls::router::{Router, RunningRouter};
use stickytls_peers::backend::RunningBackend;
use stickytls_peers::client::{Client, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds small enough that the slow cases end quickly.
fn test_limits() -> Limits {
    Limits {
        connections: 2,
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}

struct Setup {
    _backends: Vec<RunningBackend>,
    router: RunningRouter,
    admin: AdminServer,
}

async fn setup(admin: AdminConfig, limits: Limits) -> Setup {
    let backends = rustls_backends(2, |_| {}).await;
    let router = Router::bind(config(&named(&backends)))
        .await
        .expect("router binds");
    let control = Control::new(router.live().clone(), router.stats_handle());
    let admin = AdminServer::start(&admin, control, None, limits).expect("admin endpoint starts");
    Setup {
        _backends: backends,
        router: router.spawn(),
        admin,
    }
}

fn loopback() -> AdminConfig {
    AdminConfig::new("127.0.0.1:0".parse().unwrap())
}

/// One raw request on its own connection; the status and the body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    s.write_all(request).await.expect("write request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the admin endpoint answers or closes");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let (status, text) = raw(addr, req.as_bytes()).await;
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{method} {path}: body is not JSON: {text:?}"));
    (status, json)
}

async fn tls_still_flows(router: &RunningRouter) {
    let client = Client::new(ClientOptions::default()).unwrap();
    client
        .connect(router.addr, None)
        .await
        .expect("a TLS connection through the router");
}

#[tokio::test]
async fn writes_need_the_bearer_token_and_reads_only_with_token_for_reads() {
    let mut cfg = loopback();
    cfg.token = Some("s3cret-admin-token".into());
    let s = setup(cfg.clone(), Limits::default()).await;
    let a = s.admin.local_addr();
    let write = Some(r#"{"state":"drain"}"#);

    let (status, _) = request(a, "GET", "/api/v1/pools", None, None).await;
    assert_eq!(status, 200, "reads are open without token_for_reads");
    let (status, err) = request(a, "POST", "/api/v1/pools/default/backends/a", None, write).await;
    assert_eq!(status, 401);
    assert!(err["error"].as_str().unwrap().contains("Bearer"), "{err}");
    let (status, _) = request(
        a,
        "POST",
        "/api/v1/pools/default/backends/a",
        Some("guess"),
        write,
    )
    .await;
    assert_eq!(status, 401, "a wrong token");
    let (status, _) = request(
        a,
        "DELETE",
        "/api/v1/pools/default/affinity?client=127.0.0.1",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401, "a DELETE is a write");
    let (status, b) = request(
        a,
        "POST",
        "/api/v1/pools/default/backends/a",
        Some("s3cret-admin-token"),
        write,
    )
    .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["state"], "drain");

    cfg.token_for_reads = true;
    let s = setup(cfg, Limits::default()).await;
    let a = s.admin.local_addr();
    let (status, _) = request(a, "GET", "/api/v1/stats", None, None).await;
    assert_eq!(status, 401, "reads need the token with token_for_reads");
    let (status, _) = request(a, "GET", "/api/v1/stats", Some("s3cret-admin-token"), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn errors_are_json_with_their_status() {
    let s = setup(loopback(), Limits::default()).await;
    let a = s.admin.local_addr();
    let cases: [(&str, &str, Option<&str>, u16); 14] = [
        ("GET", "/api/v1/pools/nope/backends", None, 404),
        ("GET", "/api/v1/nothing/here", None, 404),
        (
            "POST",
            "/api/v1/pools/default/backends/zz",
            Some(r#"{"state":"up"}"#),
            404,
        ),
        ("PUT", "/api/v1/pools", None, 405),
        ("DELETE", "/api/v1/stats", None, 405),
        (
            "POST",
            "/api/v1/pools/default/backends/a",
            Some(r#"{"state":"off"}"#),
            400,
        ),
        (
            "POST",
            "/api/v1/pools/default/backends/a",
            Some(r#"{"weight":-1}"#),
            400,
        ),
        (
            "POST",
            "/api/v1/pools/default/backends/a",
            Some(r#"{"weight":"x"}"#),
            400,
        ),
        (
            "POST",
            "/api/v1/pools/default/backends/a",
            Some(r#"{"state":"up""#),
            400,
        ),
        (
            "POST",
            "/api/v1/pools/default/backends/a",
            Some(r#"{"colour":"red"}"#),
            400,
        ),
        ("POST", "/api/v1/pools/default/backends/a", Some("{}"), 400),
        ("GET", "/api/v1/pools/default/affinity?key=zz", None, 400),
        (
            "GET",
            "/api/v1/pools/default/affinity?key=00&client=::1",
            None,
            400,
        ),
        ("GET", "/api/v1/pools/default/decisions?limit=0", None, 400),
    ];
    for (method, path, body, want) in cases {
        let (status, err) = request(a, method, path, None, body).await;
        assert_eq!(status, want, "{method} {path} {body:?}: {err}");
        assert!(
            err["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {err}"
        );
    }
    let (status, b) = request(a, "GET", "/api/v1/pools/default/backends", None, None).await;
    assert_eq!(status, 200);
    assert!(
        b["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == "up" && b["weight"] == 1),
        "no refused request changed a backend: {b}"
    );
}

#[tokio::test]
async fn oversized_and_malformed_requests_get_a_4xx_and_never_touch_routing() {
    let s = setup(loopback(), Limits::default()).await;
    let a = s.admin.local_addr();

    let big = format!(r#"{{"state":"drain","pad":"{}"}}"#, "x".repeat(64 * 1024));
    let (status, err) = request(
        a,
        "POST",
        "/api/v1/pools/default/backends/a",
        None,
        Some(&big),
    )
    .await;
    assert_eq!(status, 413, "{err}");

    // A body over the limit without a length announced up front.
    let chunk = "x".repeat(20 * 1024);
    let chunked = format!(
        "POST /api/v1/pools/default/backends/a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (status, body) = raw(a, chunked.as_bytes()).await;
    assert_eq!(status, 413, "{body}");

    let mut many = String::from("GET /api/v1/pools HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let (status, _) = raw(a, many.as_bytes()).await;
    assert!((400..500).contains(&status), "100 headers: {status}");

    let long_head = format!(
        "GET /api/v1/pools HTTP/1.1\r\nHost: localhost\r\nX-Long: {}\r\n\r\n",
        "y".repeat(64 * 1024)
    );
    let (status, _) = raw(a, long_head.as_bytes()).await;
    assert!(
        (400..500).contains(&status) || status == 0,
        "a 64 KiB header: {status}"
    );

    let (status, _) = raw(a, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(
        (400..500).contains(&status) || status == 0,
        "garbage: {status}"
    );

    let (status, b) = request(a, "GET", "/api/v1/pools/default/backends", None, None).await;
    assert_eq!(status, 200);
    assert!(
        b["backends"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["state"] == "up"),
        "{b}"
    );
    tls_still_flows(&s.router).await;
}

#[tokio::test]
async fn slow_requests_are_cut_off_and_free_their_connection_slot() {
    let s = setup(loopback(), test_limits()).await;
    let a = s.admin.local_addr();

    // Two connections (the limit) that never finish their headers.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(a).await.unwrap();
        c.write_all(b"GET /api/v1/pools HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        stalled.push(c);
    }
    // A third request waits for a slot, which the header timeout frees.
    let (status, _) = request(a, "GET", "/api/v1/stats", None, None).await;
    assert_eq!(status, 200);
    for mut c in stalled {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf))
            .await
            .expect("a stalled connection is closed by the endpoint")
            .ok();
        let head = String::from_utf8_lossy(&buf);
        assert!(
            buf.is_empty() || head.starts_with("HTTP/1.1 4"),
            "closed, or told why: {head:?}"
        );
    }

    // A body announced but not sent in time: 408.
    let mut c = TcpStream::connect(a).await.unwrap();
    c.write_all(
        b"POST /api/v1/pools/default/backends/a HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"state\":",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf))
        .await
        .expect("a slow body is cut off")
        .ok();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""), "{text}");

    let (_, b) = request(a, "GET", "/api/v1/pools/default/backends", None, None).await;
    assert_eq!(
        b["backends"][0]["state"], "up",
        "the half-sent change was not applied"
    );
    tls_still_flows(&s.router).await;
}
