//! `stickytls run` serves on one single-threaded runtime per CPU, each with
//! its own SO_REUSEPORT socket: connections land on different threads, but
//! the affinity table is one, so a session learned on one thread is routed
//! home by another.

mod common;

use common::*;
use stickytls::router::Router;
use stickytls::shutdown::Shutdown;
use stickytls_peers::Versions;
use stickytls_peers::client::{Client, ClientOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_learned_on_one_worker_thread_route_on_all() {
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls12).await;
    let router = Router::bind(config(&named(&farm))).await.unwrap();
    let addr = router.local_addr();
    let stats = router.stats_handle();
    let shutdown = Shutdown::new(3);
    let drain = shutdown.drain();
    let workers = std::thread::spawn(move || router.run_on_threads(3, drain));

    // Many connections from many source ports: the kernel spreads them
    // over the three sockets, and every resumption must still come home.
    for i in 0..12u8 {
        let c = Client::new(ClientOptions {
            versions: Versions::Tls12,
            ..Default::default()
        })
        .unwrap();
        let first = c.connect(addr, Some(ip(100 + i))).await.unwrap();
        for k in 0..4u8 {
            let r = c.connect(addr, Some(ip(150 + i + k))).await.unwrap();
            assert_eq!(r.backend, first.backend);
            assert!(r.server_resumed, "client {i} resumption {k}");
        }
    }
    assert_eq!(stats.snapshot().connections, 60);

    shutdown.stop_accepting();
    let joined = tokio::task::spawn_blocking(move || workers.join())
        .await
        .unwrap();
    assert!(matches!(joined, Ok(Ok(()))), "workers stop cleanly");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
