//! Several router instances sharing one affinity table through a real
//! three-master Redis Cluster on 127.0.0.1, started by each test: the
//! behaviours of tests/common/shared_store.rs, where a hello's keys and
//! the client's record fall in different slots on different nodes, and
//! the whole cluster is killed, restarted (same ports and node files) or
//! put to sleep.

mod common;

use common::redis::RedisCluster;
use common::shared_store as behaviour;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_sessions_learned_on_one_instance_resume_through_another_via_a_cluster() {
    behaviour::tls12_sessions_learned_on_one_instance_resume_through_another(RedisCluster::start())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_ticket_key_name_confirmed_on_one_instance_routes_on_another_via_a_cluster() {
    behaviour::tls13_ticket_key_name_confirmed_on_one_instance_routes_on_another(
        RedisCluster::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_killed_fails_no_connection_and_sharing_resumes_when_it_is_back() {
    behaviour::redis_killed_fails_no_connection_and_sharing_resumes_when_it_is_back(
        RedisCluster::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_cluster_holds_a_connection_no_longer_than_the_lookup_budget() {
    behaviour::a_slow_redis_holds_a_connection_no_longer_than_the_lookup_budget(
        RedisCluster::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renegotiated_tls12_session_seen_on_one_instance_is_rebound_on_another_via_a_cluster() {
    behaviour::renegotiated_tls12_session_seen_on_one_instance_is_rebound_on_another(
        RedisCluster::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_value_in_the_cluster_is_a_counted_miss() {
    behaviour::a_corrupt_value_in_redis_is_a_counted_miss(RedisCluster::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_seen_on_one_instance_mark_an_address_shared_on_another() {
    behaviour::new_sessions_seen_on_one_instance_mark_an_address_shared_on_another(
        RedisCluster::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_script_flush_on_every_node_and_are_applied_exactly_once() {
    behaviour::writes_survive_a_script_flush_and_are_applied_exactly_once(RedisCluster::start())
        .await;
}
