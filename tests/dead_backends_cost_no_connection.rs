//! A dead or silent backend never costs a client its connection: the
//! router fails over to the next candidate before anything reached the
//! client, and re-learns the moved sessions on their new backend.

mod common;

use std::time::Duration;

use common::*;
use stickytls::config::BackendConfig;
use stickytls_peers::Versions;
use stickytls_peers::backend::BlackHole;
use stickytls_peers::client::{Client, ClientOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_mid_test_fails_no_client_and_its_sessions_move() {
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls12).await;
    let router = start_router(config(&named(&farm))).await;
    let opts = ClientOptions {
        versions: Versions::Tls12,
        ..Default::default()
    };

    let clients: Vec<Client> = (0..9).map(|_| Client::new(opts.clone()).unwrap()).collect();
    let mut homes = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        homes.push(
            c.connect(router.addr, Some(ip(50 + i as u8)))
                .await
                .expect("fresh")
                .backend,
        );
    }
    let victim = homes[0].clone();
    farm.iter()
        .find(|b| b.name() == victim)
        .unwrap()
        .kill()
        .await;

    let mut failures = 0;
    let mut moved = Vec::new();
    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            match c.connect(router.addr, Some(ip(50 + i as u8))).await {
                Ok(r) => {
                    assert_ne!(r.backend, victim, "reached the dead backend");
                    if homes[i] == victim {
                        if round == 0 {
                            moved.push((i, r.backend.clone()));
                        } else {
                            // Re-learned on its new backend: it stays and resumes.
                            let new_home = &moved.iter().find(|(j, _)| *j == i).unwrap().1;
                            assert_eq!(&r.backend, new_home);
                            assert!(
                                r.server_resumed,
                                "client {i} did not resume on its new backend"
                            );
                        }
                    } else {
                        assert_eq!(r.backend, homes[i]);
                        assert!(r.server_resumed);
                    }
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("client {i} failed: {e}");
                }
            }
        }
    }
    assert_eq!(failures, 0);
    assert!(!moved.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_that_accepts_and_never_answers_is_skipped() {
    let farm = rustls_backends(2, |_| {}).await;
    let hole = BlackHole::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut backends = vec![("hole".to_string(), hole.addr())];
    backends.extend(named(&farm));
    let mut cfg = config(&backends);
    cfg.pools[0].timeouts.first_byte = Duration::from_millis(500);
    let router = start_router(cfg).await;

    for i in 0..6u8 {
        let c = Client::new(ClientOptions::default()).unwrap();
        let r = c
            .connect(router.addr, Some(ip(60 + i)))
            .await
            .expect("served by another backend");
        assert_ne!(r.backend, "hole");
    }
    assert!(
        hole.accepted() >= 1,
        "round robin sent someone to the black hole first"
    );
    assert!(router.stats().failovers >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_is_skipped_and_marked_down() {
    let farm = rustls_backends(1, |_| {}).await;
    // A port nobody listens on: bind, note the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = config(&[
        ("dead".to_string(), dead),
        (farm[0].name().to_string(), farm[0].addr()),
    ]);
    let router = start_router(cfg).await;
    for i in 0..4u8 {
        let c = Client::new(ClientOptions::default()).unwrap();
        let r = c
            .connect(router.addr, Some(ip(70 + i)))
            .await
            .expect("served");
        assert_eq!(r.backend, "a");
    }
    // Marked down after the first refusal: later clients do not pay for it.
    assert_eq!(router.stats().backend_failures, 1, "{:?}", router.stats());
    let _ = BackendConfig::new("unused", dead);
}
