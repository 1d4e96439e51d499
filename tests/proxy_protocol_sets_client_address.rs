//! Behind a TCP load balancer, the PROXY header's source address is the
//! client address for every affinity rule; a header is believed only from
//! a trusted peer, and a listener that requires one closes connections
//! without it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ppp::v2;
use stickytls_peers::client::{Client, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn v1(src: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 40000 443\r\n").into_bytes()
}

fn v2_header(src: &str) -> Vec<u8> {
    let src: SocketAddr = format!("{src}:40000").parse().unwrap();
    let dst: SocketAddr = "127.0.0.1:443".parse().unwrap();
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (src, dst),
    )
    .build()
    .unwrap()
}

async fn router_with_proxy(
    trusted: &str,
) -> (
    stickytls::router::RunningRouter,
    Vec<stickytls_peers::backend::RunningBackend>,
) {
    let farm = rustls_backends(3, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.listeners[0].proxy_protocol = true;
    cfg.listeners[0].proxy_trusted = vec![trusted.parse().unwrap()];
    (start_router(cfg).await, farm)
}

/// Two client machines behind one proxy: with the proxy's address they
/// would look like one client and share a backend (rule 3); with the
/// header's addresses each keeps its own.
async fn two_clients_behind_one_proxy_behave_as_two_addresses(header: fn(&str) -> Vec<u8>) {
    let (router, farm) = router_with_proxy("127.0.0.0/8").await;
    let via = proxy_in_front(router.addr, move |i| {
        header(if i % 2 == 0 { "192.0.2.1" } else { "192.0.2.2" })
    })
    .await;
    let mut seen = [Vec::new(), Vec::new()];
    // Fresh clients (no session to resume) alternate between the two
    // addresses: each address's fresh clients stay on its backend.
    for i in 0..6 {
        let c = Client::new(ClientOptions::default()).unwrap();
        let r = c.connect(via, None).await.unwrap();
        seen[i % 2].push(r.backend);
    }
    assert!(seen[0].iter().all(|b| *b == seen[0][0]), "{seen:?}");
    assert!(seen[1].iter().all(|b| *b == seen[1][0]), "{seen:?}");
    assert_ne!(
        seen[0][0], seen[1][0],
        "the two addresses were treated as one"
    );
    let peers: Vec<_> = farm.iter().flat_map(|b| b.peer_ips()).collect();
    assert!(
        peers.iter().all(|ip| ip.is_loopback()),
        "the router connects from itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v1_header_address_keys_affinity() {
    two_clients_behind_one_proxy_behave_as_two_addresses(v1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_header_address_keys_affinity() {
    two_clients_behind_one_proxy_behave_as_two_addresses(v2_header).await;
}

async fn assert_closed_without_answer(router: SocketAddr, first: &[u8]) {
    let mut s = tokio::net::TcpStream::connect(router).await.unwrap();
    let _ = s.write_all(first).await;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("closed")
        .ok();
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_from_untrusted_peer_or_missing_header_closes() {
    // Only 10.0.0.0/8 may send headers: our 127.0.0.1 is not trusted.
    let (router, farm) = router_with_proxy("10.0.0.0/8").await;
    assert_closed_without_answer(router.addr, &v1("192.0.2.1")).await;
    // Trusted peer, but TLS without a header.
    let (router2, farm2) = router_with_proxy("127.0.0.0/8").await;
    let hello = Client::new(ClientOptions::default())
        .unwrap()
        .client_hello()
        .unwrap();
    assert_closed_without_answer(router2.addr, &hello).await;
    assert_eq!(
        farm.iter()
            .chain(farm2.iter())
            .map(|b| b.connections())
            .sum::<u64>(),
        0
    );
    assert_eq!(router.stats().rejected, 1);
    assert_eq!(router2.stats().rejected, 1);
}
