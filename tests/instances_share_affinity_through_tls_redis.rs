//! Several router instances sharing one affinity table through a real
//! `redis-server` over TLS (`rediss://`, with a CA made here by rcgen):
//! only in a build with the `store-tls` feature, which brings rustls into
//! the router. Run with
//! `cargo test --features store-tls --test instances_share_affinity_through_tls_redis`.
#![cfg(feature = "store-tls")]

mod common;

use std::time::{Duration, Instant};

use common::redis::{RedisServer, SharedStore};
use common::shared_store as behaviour;
use stickytls::config::Balance;
use stickytls_peers::cert::TestCa;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_sessions_learned_on_one_instance_resume_through_another_over_tls_to_redis() {
    let ca = TestCa::new();
    let pem = ca.write_pem(&ca.leaf("redis")).unwrap();
    let redis = RedisServer::start_tls(&pem);
    assert!(redis.config().urls[0].starts_with("rediss://"));
    behaviour::tls12_sessions_learned_on_one_instance_resume_through_another(redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_certificate_from_another_ca_is_refused_and_counted() {
    let ca = TestCa::new();
    let pem = ca.write_pem(&ca.leaf("redis")).unwrap();
    let redis = RedisServer::start_tls(&pem);
    let stranger = TestCa::new();
    let other = stranger.write_pem(&stranger.leaf("other")).unwrap();
    let farm = common::rustls_backends(1, |_| {}).await;
    let router = behaviour::instance(&farm, &redis, Balance::RoundRobin, |c| {
        c.store.tls_ca_file = Some(other.ca.clone());
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = behaviour::status(&router);
        assert!(!s.up, "connected to a store it should not trust: {s:?}");
        if s.errors_connect >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
