//! Resumptions go back to the backend that owns the session, whatever
//! address the client comes from: TLS 1.2 session IDs, TLS 1.2 tickets and
//! TLS 1.3 PSKs, against real TLS stacks.

mod common;

use common::*;
use stickytls::affinity::KeyKind;
use stickytls_peers::Versions;
use stickytls_peers::client::{Client, ClientOptions};
use stickytls_peers::openssl::{SClient, SClientOptions, SServer, SServerOptions};

async fn openssl_farm(tickets: bool) -> Vec<SServer> {
    let mut out = Vec::new();
    for name in ["a", "b", "c"] {
        let mut o = SServerOptions::new(name);
        o.versions = Versions::Tls12;
        o.tickets = tickets;
        out.push(SServer::start(o).await.expect("s_server starts"));
    }
    out
}

/// Reconnects from a new source address each time, so that neither rule 2
/// nor rule 3 (client-address affinity) can explain a hit: only the key can.
async fn thirty_openssl_resumptions(tickets: bool) {
    let farm = openssl_farm(tickets).await;
    let named: Vec<_> = farm
        .iter()
        .map(|s| (s.name().to_string(), s.addr()))
        .collect();
    let router = start_router(config(&named)).await;
    let client = SClient::new(SClientOptions {
        versions: Versions::Tls12,
        no_ticket: !tickets,
        ..Default::default()
    })
    .expect("s_client");
    let first = client
        .connect(router.addr, Some(ip(2)))
        .await
        .expect("first connection");
    assert!(!first.reused);
    let owner = first.backend.clone().expect("backend named itself");
    let mut resumed_on_owner = 0;
    for i in 0..30u8 {
        let r = client
            .connect(router.addr, Some(ip(10 + i)))
            .await
            .expect("reconnect");
        if r.reused && r.backend.as_deref() == Some(owner.as_str()) {
            resumed_on_owner += 1;
        }
        if !tickets {
            // Without tickets the printed Session-ID is the one on the wire.
            assert_eq!(r.session_id, first.session_id, "the session did not change");
        }
    }
    assert_eq!(resumed_on_owner, 30, "resumed on {owner}");
    let kind = if tickets {
        KeyKind::Ticket
    } else {
        KeyKind::SessionId
    };
    assert!(router.stats().hits_of(kind) >= 30, "{:?}", router.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_session_id_resumes_30_of_30_on_its_backend_from_new_addresses() {
    thirty_openssl_resumptions(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_ticket_resumes_30_of_30_on_its_backend_from_new_addresses() {
    thirty_openssl_resumptions(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_rustls_ticket_resumes_on_its_backend() {
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls12).await;
    let router = start_router(config(&named(&farm))).await;
    let client = Client::new(ClientOptions {
        versions: Versions::Tls12,
        ..Default::default()
    })
    .unwrap();
    let first = client.connect(router.addr, Some(ip(2))).await.unwrap();
    for i in 0..10u8 {
        let r = client.connect(router.addr, Some(ip(20 + i))).await.unwrap();
        assert_eq!(r.backend, first.backend);
        assert!(
            r.server_resumed && r.client_resumed(),
            "connection {i} did not resume: {r:?}"
        );
    }
    assert!(router.stats().hits_of(KeyKind::Ticket) >= 10);
}

/// TLS 1.3 tickets travel encrypted, so the router cannot see which backend
/// issued one: the PSK identity a client presents later is unknown. What
/// it can learn is the ticket key name (the identity's first 16 bytes,
/// which rustls and OpenSSL share across every ticket of one key): once two
/// distinct identities with a name were accepted by one backend, the name
/// routes there. Each resumption here comes from an address never seen
/// before, so client-address affinity cannot be what carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_psk_resumes_on_issuing_backend_from_another_ip() {
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls13).await;
    let router = start_router(config(&named(&farm))).await;
    let opts = ClientOptions {
        versions: Versions::Tls13,
        ..Default::default()
    };

    // Warm-up: clients that resume from the address they got their ticket
    // on, so rule 2 (client-address correlation) takes them home; each
    // accepted resumption teaches the router its identity's key name. It
    // goes on until every backend has accepted two (two distinct
    // identities per key name make the name routable). Bounded.
    for k in 0..30u8 {
        if farm.iter().all(|b| b.resumed() >= 2) {
            break;
        }
        let c = Client::new(opts.clone()).unwrap();
        c.connect(router.addr, Some(ip(30 + k))).await.unwrap();
        c.connect(router.addr, Some(ip(30 + k))).await.unwrap();
    }
    let warm: Vec<usize> = farm.iter().map(|b| b.resumed()).collect();
    assert!(
        warm.iter().all(|&n| n >= 2),
        "warm-up did not reach every backend: {warm:?}"
    );

    let before = router.stats();
    let mut on_issuer = 0;
    for i in 0..30u8 {
        let c = Client::new(opts.clone()).unwrap();
        let fresh = c.connect(router.addr, Some(ip(3))).await.unwrap();
        let resumed = c.connect(router.addr, Some(ip(100 + i))).await.unwrap();
        if resumed.backend == fresh.backend && resumed.server_resumed {
            on_issuer += 1;
        }
    }
    let after = router.stats();
    assert!(
        on_issuer >= 29,
        "only {on_issuer}/30 resumed on the issuing backend"
    );
    let by_name = after.hits_of(KeyKind::TicketKeyName) - before.hits_of(KeyKind::TicketKeyName);
    assert!(by_name >= 29, "key-name routes: {by_name}; stats {after:?}");
}
