//! IPv6 listeners and clients: the same routing, with a client address
//! keyed on its /64.

mod common;

use common::*;
use stickytls_peers::Versions;
use stickytls_peers::client::{Client, ClientOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_routes_and_resumes() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine; nothing to test");
        return;
    }
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls12).await;
    let mut cfg = config(&named(&farm));
    cfg.listeners[0].bind = "[::1]:0".parse().unwrap();
    let router = start_router(cfg).await;
    assert!(router.addr.is_ipv6());
    let client = Client::new(ClientOptions {
        versions: Versions::Tls12,
        ..Default::default()
    })
    .unwrap();
    let first = client.connect(router.addr, None).await.unwrap();
    for _ in 0..5 {
        let r = client.connect(router.addr, None).await.unwrap();
        assert_eq!(r.backend, first.backend);
        assert!(r.server_resumed);
    }
    // Fresh clients from the same /64 stay on its backend (rule 3).
    for _ in 0..3 {
        let fresh = Client::new(ClientOptions {
            versions: Versions::Tls12,
            resumption: false,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            fresh.connect(router.addr, None).await.unwrap().backend,
            first.backend
        );
    }
}
