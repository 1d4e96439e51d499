//! A TLS 1.2 session renegotiated inside the encrypted channel gets a new
//! session ID the router never saw. The next connection offering it must
//! still land on the backend that holds it: the router re-binds the unknown
//! ID to the client address's most recent confirmed backend (rule 2),
//! where LocalDirector-style routers sent it to a random server.

mod common;

use common::*;
use stickytls_peers::Versions;
use stickytls_peers::openssl::{SClient, SClientOptions, SServer, SServerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renegotiated_tls12_session_resumes_on_its_backend_10_of_10() {
    let mut farm = Vec::new();
    for name in ["a", "b", "c"] {
        let mut o = SServerOptions::new(name);
        o.versions = Versions::Tls12;
        o.tickets = false;
        o.client_renegotiation = true;
        farm.push(SServer::start(o).await.expect("s_server starts"));
    }
    let named: Vec<_> = farm
        .iter()
        .map(|s| (s.name().to_string(), s.addr()))
        .collect();
    let router = start_router(config(&named)).await;
    let opts = SClientOptions {
        versions: Versions::Tls12,
        no_ticket: true,
        ..Default::default()
    };

    let mut resumed_on_owner = 0;
    for round in 0..10u8 {
        let source = Some(ip(40 + round));
        let client = SClient::new(opts.clone()).unwrap();
        let reneg = client
            .renegotiate(router.addr, source)
            .await
            .expect("renegotiation");
        assert_ne!(
            reneg.before, reneg.after,
            "renegotiation made a new session"
        );
        let owner = reneg.backend.clone().expect("backend named itself");

        // Another client from the same address in between.
        let other = SClient::new(opts.clone()).unwrap();
        other
            .connect(router.addr, source)
            .await
            .expect("other client");

        let r = client
            .connect(router.addr, source)
            .await
            .expect("reconnect");
        assert_eq!(
            r.session_id.as_deref().map(str::to_ascii_uppercase),
            Some(reneg.after.to_ascii_uppercase()),
            "the client offered its renegotiated session"
        );
        if r.reused && r.backend.as_deref() == Some(owner.as_str()) {
            resumed_on_owner += 1;
        }
    }
    assert_eq!(resumed_on_owner, 10);
    assert!(router.stats().rebinds >= 10, "{:?}", router.stats());
}
