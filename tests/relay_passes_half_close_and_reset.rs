//! The relay passes a half-close on as a half-close (the other direction
//! keeps flowing) and a reset as a reset. Driven through the non-TLS pool,
//! which uses the same relay without inspection, so the peers can be plain
//! TCP sockets whose closing the test controls exactly.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use stickytls::config::{BackendConfig, HealthCheck, NonTls, PoolConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn router_to(backend: SocketAddr) -> stickytls::router::RunningRouter {
    // The TLS pool is never used here; it only has to exist.
    let mut cfg = config(&[("unused".to_string(), backend)]);
    let mut plain = PoolConfig::new("plain", vec![BackendConfig::new("plain", backend)]);
    // The backends here accept one connection: a health probe must not be
    // the one they take (the test helper turns probes off the same way).
    plain.health.check = HealthCheck::None;
    cfg.pools.push(plain);
    cfg.listeners[0].non_tls = NonTls::Pool("plain".into());
    start_router(cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_the_backend_and_its_answer_still_comes_back() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    // Reads everything until the client's FIN, then answers with the count.
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        s.write_all(format!("got {} bytes", all.len()).as_bytes())
            .await
            .unwrap();
    });
    let router = router_to(backend).await;
    let mut c = TcpStream::connect(router.addr).await.unwrap();
    c.write_all(b"hello, plain text").await.unwrap();
    c.shutdown().await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, "got 17 bytes");
}

/// Closes `s` with a reset: linger 0, then close.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

/// Reads `c` to its end, which must be `expected` and then a reset.
async fn assert_bytes_then_reset(c: &mut TcpStream, expected: &[u8]) {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
        .await
        .unwrap();
    assert_eq!(buf, expected);
    let e = r.expect_err("a reset, not a clean close");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_reset_reaches_the_client_as_a_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        // Answer once (so the router's first-byte wait is satisfied), then
        // reset.
        s.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        reset(s);
    });
    let router = router_to(backend).await;
    let mut c = TcpStream::connect(router.addr).await.unwrap();
    c.write_all(b"plain").await.unwrap();
    assert_bytes_then_reset(&mut c, b"x").await;
}

/// A backend that answers the client's first five bytes with "x", reads
/// four more, writes "last words" and hands its socket to `end`; and a
/// client through the router that has played its part up to there.
async fn exchange_up_to_last_words<F, Fut>(end: F) -> (stickytls::router::RunningRouter, TcpStream)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"x").await.unwrap();
        s.read_exact(&mut buf[..4]).await.unwrap();
        s.write_all(b"last words").await.unwrap();
        end(s).await;
    });
    let router = router_to(backend).await;
    let mut c = TcpStream::connect(router.addr).await.unwrap();
    c.write_all(b"plain").await.unwrap();
    let mut x = [0u8; 1];
    c.read_exact(&mut x).await.unwrap();
    c.write_all(b"more").await.unwrap();
    (router, c)
}

/// A backend that writes its last bytes and closes at once (data and FIN
/// in one go, which the relay passes on as one corked segment): the client
/// gets every byte, then the end of stream, and its own direction keeps
/// flowing after that, since the backend only half-closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_bytes_sent_with_the_fin_arrive_and_the_other_way_stays_open() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (_router, mut c) = exchange_up_to_last_words(|mut s| async move {
        // The FIN right behind the last bytes.
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        let _ = tx.send(rest);
    })
    .await;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, b"last words");
    c.write_all(b"after the backend's FIN").await.unwrap();
    c.shutdown().await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, b"after the backend's FIN");
}

/// A backend that resets right behind its last bytes: the bytes still
/// reach the client, then the reset does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_bytes_sent_just_before_a_reset_arrive_then_the_reset() {
    let (_router, mut c) = exchange_up_to_last_words(|s| async move { reset(s) }).await;
    assert_bytes_then_reset(&mut c, b"last words").await;
}

/// Bulk moves to splice(2) after a full buffer: every byte must still
/// arrive, in order, and the half-close must come after the pipe drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfer_arrives_whole_and_in_order_both_ways() {
    let echo = echo_server().await;
    let router = router_to(echo).await;
    let c = TcpStream::connect(router.addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    const SIZE: usize = 32 * 1024 * 1024;
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 + i / 4093) as u8).collect();
    let expected = data.clone();
    let writer = tokio::spawn(async move {
        // Its first byte is no TLS record type: the non-TLS pool takes it.
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(SIZE);
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), SIZE);
    assert!(got == expected, "bytes changed or reordered");
}
