//! Several router instances sharing one affinity table through a real
//! `redis-server`: the behaviours of tests/common/shared_store.rs against
//! one server, and what only a single server shows (the key-name scripts
//! step by step, reloads that add a pool or change the store).

mod common;

use common::redis::RedisServer;
use common::router_process;
use common::shared_store as behaviour;
use stickytls::config::Balance;
use stickytls::router::Router;
use stickytls_peers::Versions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_sessions_learned_on_one_instance_resume_through_another() {
    behaviour::tls12_sessions_learned_on_one_instance_resume_through_another(RedisServer::start())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_ticket_key_name_confirmed_on_one_instance_routes_on_another() {
    behaviour::tls13_ticket_key_name_confirmed_on_one_instance_routes_on_another(
        RedisServer::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fails_no_connection_and_sharing_resumes_when_it_is_back() {
    behaviour::redis_killed_fails_no_connection_and_sharing_resumes_when_it_is_back(
        RedisServer::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_holds_a_connection_no_longer_than_the_lookup_budget() {
    behaviour::a_slow_redis_holds_a_connection_no_longer_than_the_lookup_budget(
        RedisServer::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renegotiated_tls12_session_seen_on_one_instance_is_rebound_on_another() {
    behaviour::renegotiated_tls12_session_seen_on_one_instance_is_rebound_on_another(
        RedisServer::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_seen_on_one_instance_mark_an_address_shared_on_another() {
    behaviour::new_sessions_seen_on_one_instance_mark_an_address_shared_on_another(
        RedisServer::start(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_value_in_redis_is_a_counted_miss() {
    behaviour::a_corrupt_value_in_redis_is_a_counted_miss(RedisServer::start()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_a_script_flush_and_are_applied_exactly_once() {
    behaviour::writes_survive_a_script_flush_and_are_applied_exactly_once(RedisServer::start())
        .await;
}

/// The value of `key`, from a bulk-string reply; `None` for nil.
fn get(redis: &RedisServer, key: &str) -> Option<String> {
    let reply = redis.command(&["GET", key]).unwrap();
    if reply.starts_with("$-1") {
        return None;
    }
    let (_, rest) = reply.split_once("\r\n").expect("a bulk string");
    Some(rest.trim_end_matches("\r\n").to_string())
}

#[test]
fn the_key_name_scripts_take_the_same_steps_as_the_local_table() {
    use stickytls::affinity::redis::{CONFIRM_NAME, REJECT_NAME, decode_binding, encode_binding};
    use stickytls::affinity::{Binding, KeyState, next_key_name_state};
    let redis = RedisServer::start();
    let b = |backend: &str, state| Binding::name(std::sync::Arc::from(backend), state);
    let states = [
        None,
        Some(b("a", KeyState::Candidate { tag: 5 })),
        Some(b("a", KeyState::Routable)),
        Some(b("a", KeyState::Shared)),
        Some(b("a", KeyState::Rejected)),
        Some(b("b", KeyState::Candidate { tag: 5 })),
        Some(b("b", KeyState::Routable)),
    ];
    let key = "t:n:name";
    for current in &states {
        for tag in [5u16, 6] {
            let set = |redis: &RedisServer| match current {
                Some(c) => {
                    let v = encode_binding(c, 7).unwrap();
                    redis.command(&["SET", key, &v]).unwrap();
                }
                None => {
                    redis.command(&["DEL", key]).unwrap();
                }
            };
            set(&redis);
            let tag_text = tag.to_string();
            let reply = redis
                .command(&["EVAL", CONFIRM_NAME, "1", key, "a", &tag_text, "9", "60000"])
                .unwrap();
            assert!(reply.starts_with(':'), "{reply}");
            let got = get(&redis, key).unwrap();
            let (binding, _) = decode_binding(got.as_bytes(), true).unwrap();
            let a: stickytls::backend::BackendName = std::sync::Arc::from("a");
            let want = next_key_name_state(current.as_ref(), &a, tag);
            assert_eq!(binding, want, "confirm on a, tag {tag}, from {current:?}");

            set(&redis);
            redis
                .command(&["EVAL", REJECT_NAME, "1", key, "a", "60000"])
                .unwrap();
            let got = get(&redis, key).map(|v| decode_binding(v.as_bytes(), true).unwrap().0);
            let want = current.clone().map(|c| {
                if c.backend.as_ref() == "a" && c.state != KeyState::Shared {
                    b("a", KeyState::Rejected)
                } else {
                    c
                }
            });
            assert_eq!(got, want, "reject by a from {current:?}");
        }
    }
    // A value that is not a key name's state is replaced by a first
    // confirmation, never trusted.
    redis.command(&["SET", key, "garbage"]).unwrap();
    redis
        .command(&["EVAL", CONFIRM_NAME, "1", key, "a", "3", "9", "60000"])
        .unwrap();
    let got = get(&redis, key).unwrap();
    assert_eq!(
        decode_binding(got.as_bytes(), true).unwrap().0,
        b("a", KeyState::Candidate { tag: 3 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_added_by_a_reload_is_shared_and_a_changed_store_needs_a_restart() {
    let redis = RedisServer::start();
    let dir = router_process::scratch("store-reload");
    let file = dir.join("stickytls.toml");
    let text = |prefix: &str, extra_pool: bool| {
        let mut t = format!(
            "[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\n[pool.web]\nbackends = [{{ name = \"a\", address = \"127.0.0.1:1\" }}]\n",
            redis.url()
        );
        if extra_pool {
            t.push_str("\n[pool.api]\nbackends = [{ name = \"b\", address = \"127.0.0.1:2\" }]\n");
        }
        t
    };
    std::fs::write(&file, text("one:", false)).unwrap();
    let config = stickytls::config::file::load(&file).unwrap();
    let router = Router::bind_file(config, file.clone()).await.unwrap();
    assert!(router.pool("web").unwrap().table.is_shared());
    let reload = || {
        let live = router.live().clone();
        async move {
            tokio::task::spawn_blocking(move || live.reload().map_err(|e| e.to_string()))
                .await
                .unwrap()
                .unwrap()
        }
    };

    // Same store, one pool more: the new pool joins the running link.
    std::fs::write(&file, text("one:", true)).unwrap();
    let outcome = reload().await;
    assert!(outcome.restart_required.is_empty(), "{outcome:?}");
    let api = router.pool("api").expect("the reload added pool api");
    assert!(api.table.is_shared(), "pool api shares through Redis");

    // A changed store is a restart's: the running link stays as it was.
    std::fs::write(&file, text("two:", true)).unwrap();
    let outcome = reload().await;
    assert_eq!(
        outcome.restart_required,
        vec!["store".to_string()],
        "{outcome:?}"
    );
    assert!(router.pool("api").unwrap().table.is_shared());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_offering_tls13_only_asks_the_store_nothing_for_its_session_id() {
    let redis = RedisServer::start();
    let farm = common::rustls_backends(1, |_| {}).await;
    let router = behaviour::instance(&farm, &redis, Balance::RoundRobin, |_| {}).await;
    behaviour::until(&router, "connects", |s| s.up).await;
    let lookups = |r: &stickytls::router::RunningRouter| {
        let s = behaviour::status(r);
        s.lookups_hit + s.lookups_miss + s.lookups_timeout + s.lookups_error
    };
    // rustls sends a random 32-byte legacy_session_id with TLS 1.3
    // (middlebox compatibility): in a hello offering TLS 1.3 only, no
    // backend can have assigned it.
    for _ in 0..5 {
        let c = behaviour::client(Versions::Tls13, false);
        c.connect(router.addr, None).await.unwrap();
    }
    assert_eq!(lookups(&router), 0, "{:?}", behaviour::status(&router));
    // A hello that also offers TLS 1.2 may carry a real 1.2 session ID:
    // asked for.
    let c = behaviour::client(Versions::Both, false);
    c.connect(router.addr, None).await.unwrap();
    assert!(lookups(&router) >= 1, "{:?}", behaviour::status(&router));
}
