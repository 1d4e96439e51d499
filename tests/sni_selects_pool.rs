//! A listener picks the pool by SNI (exact name, then a one-label
//! wildcard, else the default pool), and affinity then works inside that
//! pool only.

mod common;

use common::*;
use stickytls::config::{BackendConfig, Config, ListenerConfig, PoolConfig, SniRoute};
use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions, RunningBackend};
use stickytls_peers::cert::TestCa;
use stickytls_peers::client::{Client, ClientOptions};

const NAMES: &[&str] = &[
    "api.example.com",
    "www.example.com",
    "shop.example.com",
    "other.test",
];

async fn backend(name: &str) -> RunningBackend {
    let mut o = BackendOptions::new(name);
    o.versions = Versions::Tls12;
    o.leaf = Some(TestCa::shared().leaf_for(name, NAMES));
    Backend::start(o).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_exact_and_wildcard_pick_pools_and_affinity_stays_inside_each() {
    let api = [backend("api1").await, backend("api2").await];
    let web = [backend("web1").await, backend("web2").await];
    let pool = |name: &str, bs: &[RunningBackend]| {
        PoolConfig::new(
            name,
            bs.iter()
                .map(|b| BackendConfig::new(b.name(), b.addr()))
                .collect(),
        )
    };
    let mut listener = ListenerConfig::new("127.0.0.1:0".parse().unwrap(), "web");
    listener.sni = vec![
        SniRoute {
            pattern: "api.example.com".into(),
            pool: "api".into(),
        },
        SniRoute {
            pattern: "*.example.com".into(),
            pool: "web".into(),
        },
    ];
    let cfg = Config {
        listeners: vec![listener],
        pools: vec![pool("api", &api), pool("web", &web)],
        lifecycle: Default::default(),
        admin: None,
        log: Default::default(),
        store: Default::default(),
    };
    let router = start_router(cfg).await;

    let cases = [
        ("api.example.com", "api"), // exact
        ("www.example.com", "web"), // wildcard
        ("shop.example.com", "web"),
        ("other.test", "web"), // default pool
    ];
    for (i, (sni, pool)) in cases.iter().enumerate() {
        let c = Client::new(ClientOptions {
            versions: Versions::Tls12,
            sni: Some(sni.to_string()),
            ..Default::default()
        })
        .unwrap();
        let first = c
            .connect(router.addr, Some(ip(20 + i as u8)))
            .await
            .unwrap();
        assert!(
            first.backend.starts_with(pool),
            "{sni} reached {}",
            first.backend
        );
        for k in 0..3u8 {
            let r = c
                .connect(router.addr, Some(ip(100 + 10 * i as u8 + k)))
                .await
                .unwrap();
            assert_eq!(r.backend, first.backend, "{sni} moved");
            assert!(r.server_resumed);
        }
    }
    // Each pool has its own table.
    assert!(!router.pool("api").unwrap().table.is_empty());
    assert!(!router.pool("web").unwrap().table.is_empty());
}
