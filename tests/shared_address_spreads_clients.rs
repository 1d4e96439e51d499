//! Many clients behind one address (NAT, a proxy): source-IP affinity alone
//! would pile them all onto one backend. Once the address has more new
//! sessions than the NAT threshold it counts as shared: its fresh clients
//! are balanced, and each client's own session keys keep its resumptions
//! on its own backend.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use stickytls_peers::Versions;
use stickytls_peers::client::{Client, ClientOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_behind_one_address_spread_and_keep_their_backends() {
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls12).await;
    let router = start_router(config(&named(&farm))).await;
    let nat = Some(ip(9));

    let mut clients = Vec::new();
    let mut homes: HashMap<usize, String> = HashMap::new();
    for i in 0..20 {
        // Half resume by ticket, half by session ID.
        let c = Client::new(ClientOptions {
            versions: Versions::Tls12,
            tls12_tickets: i % 2 == 0,
            ..Default::default()
        })
        .unwrap();
        let r = c.connect(router.addr, nat).await.unwrap();
        assert!(!r.server_resumed);
        homes.insert(i, r.backend.clone());
        clients.push(c);
    }
    let used: HashSet<&String> = homes.values().collect();
    assert_eq!(used.len(), 3, "fresh handshakes used only {used:?}");

    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            let r = c.connect(router.addr, nat).await.unwrap();
            assert_eq!(r.backend, homes[&i], "client {i} moved in round {round}");
            assert!(
                r.server_resumed,
                "client {i} did not resume in round {round}"
            );
        }
    }
}
