//! Bad input costs a bounded amount and never disturbs other clients:
//! non-TLS input, a stalled half hello and an oversized hello are closed
//! with a counted reason and nothing forwarded; a post-quantum hello
//! dribbled one byte per write is still routed like any other.
//!
//! Every test here runs the router and its rustls peers on one paused
//! current-thread runtime, so "closed at once" and "closed at the hello
//! timeout" are exact instants of tokio's clock, not guesses about a
//! loaded machine's scheduling.

mod common;

use std::time::Duration;

use common::*;
use stickytls::metrics::REJECTED;
use stickytls_peers::client::{Client, ClientOptions, Writes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Waits (5 s of tokio time at most) for the router to close `s`, which
/// must come without a byte of answer; says how long that took.
async fn closed_without_an_answer(s: &mut TcpStream) -> Duration {
    let t = Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("router closed the connection");
    assert!(got.is_empty(), "the router answered: {got:?}");
    t.elapsed()
}

#[tokio::test(start_paused = true)]
async fn non_tls_stalled_and_oversized_hellos_are_closed_and_others_still_served() {
    const HELLO: Duration = Duration::from_millis(700);
    let metrics = LocalMetrics::default();
    let _recording = metrics.install();
    let farm = rustls_backends(2, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.pools[0].timeouts.hello = HELLO;
    let router = start_router(cfg).await;
    let client = Client::new(ClientOptions::default()).unwrap();
    client
        .connect(router.addr, None)
        .await
        .expect("served before");
    let backend_conns: u64 = farm.iter().map(|b| b.connections()).sum();

    // Non-TLS: closed at once, from the first bytes.
    let mut s = TcpStream::connect(router.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let t = closed_without_an_answer(&mut s).await;
    assert!(
        t < Duration::from_millis(600),
        "non-TLS waited for the hello timeout"
    );
    assert_eq!(t, Duration::ZERO, "non-TLS is closed from its first bytes");

    // A stalled half hello: closed at the hello timeout.
    let hello = client.client_hello().unwrap();
    let mut s = TcpStream::connect(router.addr).await.unwrap();
    s.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let t = closed_without_an_answer(&mut s).await;
    assert!(
        t >= Duration::from_millis(500),
        "closed before the hello timeout"
    );
    assert_eq!(t, HELLO, "a stalled hello is closed at the hello timeout");

    // A hello larger than the byte budget: a handshake header claiming a
    // 20 KB ClientHello, sent as records of junk.
    let mut s = TcpStream::connect(router.addr).await.unwrap();
    let mut big = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x50, 0x00];
    big.resize(5 + 0x4000, 0x41);
    let _ = s.write_all(&big).await;
    let _ = s.write_all(&big).await;
    closed_without_an_answer(&mut s).await;

    let after: u64 = farm.iter().map(|b| b.connections()).sum();
    assert_eq!(after, backend_conns, "something was forwarded to a backend");
    assert!(router.stats().rejected >= 3, "{:?}", router.stats());
    let rejected = metrics.take();
    for reason in ["not_tls", "hello_timeout", "over_budget"] {
        assert_eq!(
            rejected.get(REJECTED, &[("listener", "default"), ("reason", reason)]),
            1,
            "{reason}: {rejected:?}"
        );
    }
    let r = client
        .connect(router.addr, None)
        .await
        .expect("still serving");
    assert!(r.server_resumed);
}

#[tokio::test(start_paused = true)]
async fn post_quantum_hello_in_one_byte_writes_is_routed_to_its_owner() {
    // TLS 1.2 backends: the client still sends its full post-quantum
    // hello (it offers TLS 1.3 too), and the cleartext tickets it gets back
    // make every later hello carry a key the router knows.
    let farm = rustls_backends(3, |o| o.versions = stickytls_peers::Versions::Tls12).await;
    let mut cfg = config(&named(&farm));
    // ~1,500 writes, each a timer tick or two of tokio time after the
    // last: more than the tests' usual 3 s hello budget.
    cfg.pools[0].timeouts.hello = Duration::from_secs(30);
    let router = start_router(cfg).await;
    let client = Client::new(ClientOptions {
        pq: true,
        ..Default::default()
    })
    .unwrap();
    assert!(
        client.client_hello().unwrap().len() > 1200,
        "a post-quantum hello"
    );
    let first = client
        .connect_with(router.addr, Some(ip(80)), Writes::bytewise())
        .await
        .unwrap();
    for i in 0..3u8 {
        let r = client
            .connect_with(router.addr, Some(ip(81 + i)), Writes::bytewise())
            .await
            .unwrap();
        assert_eq!(r.backend, first.backend);
        assert!(r.server_resumed);
    }
    assert!(router.stats().hits_of(stickytls::affinity::KeyKind::Ticket) >= 3);
}

#[tokio::test(start_paused = true)]
async fn one_address_cannot_hold_more_than_its_share_of_hello_slots() {
    let metrics = LocalMetrics::default();
    let _recording = metrics.install();
    let farm = rustls_backends(1, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.listeners[0].limits.max_inspecting_per_ip = 2;
    cfg.pools[0].timeouts.hello = Duration::from_secs(10);
    let router = start_router(cfg).await;
    let hello = Client::new(ClientOptions::default())
        .unwrap()
        .client_hello()
        .unwrap();

    // Two stalled half hellos from 127.0.0.7 hold its two slots.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.7:0".parse().unwrap()).unwrap();
        let mut s = sock.connect(router.addr).await.unwrap();
        s.write_all(&hello[..10]).await.unwrap();
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third from the same address is closed at once...
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.7:0".parse().unwrap()).unwrap();
    let mut third = sock.connect(router.addr).await.unwrap();
    let _ = third.write_all(&hello[..10]).await;
    let t = closed_without_an_answer(&mut third).await;
    assert_eq!(t, Duration::ZERO, "waited for the 10 s hello timeout");
    let rejected = metrics.take();
    assert_eq!(
        rejected.get(
            REJECTED,
            &[("listener", "default"), ("reason", "per_ip_limit")]
        ),
        1,
        "{rejected:?}"
    );
    // ...while other addresses are served.
    let r = Client::new(ClientOptions::default())
        .unwrap()
        .connect(router.addr, Some(ip(8)))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(router.stats().rejected >= 1);
}
