//! The io_uring experiment's relay (examples/uring_relay.rs, issue 16) is
//! a real passthrough in both of its modes: a TLS handshake and its
//! resumption reach a rustls backend through it, requests and answers flow
//! both ways, and a half-close is passed on in each direction while the
//! other keeps flowing. Compiled only with `--features
//! io-uring-experiment`; the relay runs on threads of this process.

#![cfg(feature = "io-uring-experiment")]

#[allow(dead_code)] // The example's `main` and its arguments.
#[path = "../examples/uring_relay.rs"]
mod uring_relay;

use std::net::SocketAddr;
use std::time::Duration;

use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions};
use stickytls_peers::client::{Client, ClientOptions, Writes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uring_relay::Mode;

/// Only stops a hang: a relay that loses a half-close leaves a peer
/// waiting for an end that never comes.
const BOUND: Duration = Duration::from_secs(10);

/// A relay on port 0 in front of `backend`, with two threads as the
/// router has on this machine.
fn relay(mode: Mode, backend: SocketAddr) -> SocketAddr {
    uring_relay::start(mode, "127.0.0.1:0".parse().unwrap(), backend, 2)
        .expect("relay starts")
        .addr
}

/// TLS 1.2 by session ID and TLS 1.3 by ticket: a full handshake, then a
/// resumption through the relay, each asking the backend three times before
/// closing with close_notify and waiting for the backend's close (so the
/// client's half-close must reach the backend and its close come back).
async fn tls_goes_through(mode: Mode) {
    for versions in [Versions::Tls12, Versions::Tls13] {
        let mut options = BackendOptions::new("b1");
        options.versions = versions;
        options.tickets = versions == Versions::Tls13;
        let backend = Backend::start(options).await.expect("backend starts");
        let addr = relay(mode, backend.addr());
        let client = Client::new(ClientOptions {
            versions,
            tls12_tickets: false,
            ..Default::default()
        })
        .unwrap();
        for resumed in [false, true] {
            let mut conn = client
                .open(addr, None, Writes::Whole)
                .await
                .unwrap_or_else(|e| panic!("{mode:?} {versions:?}: {e}"));
            assert_eq!(conn.reached().backend, "b1");
            assert_eq!(
                conn.reached().server_resumed,
                resumed,
                "{mode:?} {versions:?}"
            );
            for _ in 0..2 {
                assert_eq!(conn.ask().await.unwrap().backend, "b1");
            }
            conn.close()
                .await
                .unwrap_or_else(|e| panic!("{mode:?} {versions:?}: {e}"));
        }
        assert_eq!(backend.handshakes().len(), 2);
        assert_eq!(backend.failed_handshakes(), 0);
    }
}

/// A plain TCP backend that reads to the client's end of stream and only
/// then sends back everything it read and closes: the client's half-close
/// must reach it, and its answer must still come back after it.
async fn half_close_goes_through(mode: Mode) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.unwrap();
                s.write_all(&all).await.unwrap();
            });
        }
    });
    let addr = relay(mode, backend);
    // Larger than a copy buffer and a socket's first read, so both
    // directions loop over several reads and writes.
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&sent).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(BOUND, c.read_to_end(&mut back))
        .await
        .unwrap_or_else(|_| panic!("{mode:?}: no end of stream from the backend"))
        .unwrap();
    assert_eq!(back.len(), sent.len(), "{mode:?}");
    assert!(back == sent, "{mode:?}: the bytes came back changed");
}

#[tokio::test]
async fn epoll_relay_passes_tls_both_ways() {
    tokio::time::timeout(BOUND * 3, tls_goes_through(Mode::Epoll))
        .await
        .expect("bounded");
}

#[tokio::test]
async fn uring_relay_passes_tls_both_ways() {
    tokio::time::timeout(BOUND * 3, tls_goes_through(Mode::Uring))
        .await
        .expect("bounded");
}

#[tokio::test]
async fn epoll_relay_passes_a_half_close_and_the_answer_after_it() {
    half_close_goes_through(Mode::Epoll).await;
}

#[tokio::test]
async fn uring_relay_passes_a_half_close_and_the_answer_after_it() {
    half_close_goes_through(Mode::Uring).await;
}
