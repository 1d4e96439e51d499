//! The shared store behind a password: a real `redis-server` with an ACL
//! user that may touch only the router's keys, the password kept out of
//! the URL (`[store] password_file`, or `STICKYTLS_STORE_PASSWORD`), and a
//! wrong password refused by the server and counted, never a failed
//! connection.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::redis::{RedisServer, SharedStore};
use common::router_process::RouterProcess;
use common::shared_store as behaviour;
use stickytls::config::{Balance, StoreConfig};

const USER: &str = "stickytls";
// No spaces: redis-server takes the ACL rule as separate arguments.
const PASSWORD: &str = "correct-horse-battery-staple";

/// A `redis-server` whose only user with a password is [`USER`], allowed
/// the router's keys (`stickytls:*`) and nothing else; routers log in as
/// it with the password from a file. The `default` user stays open for the
/// test's own commands (PING, KEYS, CLIENT LIST), as an operator's own
/// would be behind its own password.
struct AclRedis {
    server: RedisServer,
    password_file: PathBuf,
}

impl AclRedis {
    fn start() -> AclRedis {
        let acl = format!("{USER} on >{PASSWORD} ~stickytls:* +@all");
        let extra: Vec<String> = std::iter::once("--user".to_string())
            .chain(acl.split(' ').map(str::to_string))
            .collect();
        let server = RedisServer::start_with(common::redis::free_port(), extra, None);
        let password_file = std::env::temp_dir().join(format!(
            "stickytls-store-password-{}-{}",
            std::process::id(),
            server.port
        ));
        // As an operator writes it: one line, a final newline.
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        AclRedis {
            server,
            password_file,
        }
    }

    fn url(&self) -> String {
        format!("redis://{USER}@127.0.0.1:{}/0", self.server.port)
    }
}

impl Drop for AclRedis {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.password_file);
    }
}

impl SharedStore for AclRedis {
    fn config(&self) -> StoreConfig {
        let mut c = StoreConfig::redis(&self.url());
        c.password_file = Some(self.password_file.clone());
        c
    }
    fn kind(&self) -> &'static str {
        "redis"
    }
    fn kill(&mut self) {
        self.server.kill();
    }
    fn restart(&mut self) {
        self.server.restart();
    }
    fn keys(&self, pattern: &str) -> Vec<String> {
        self.server.keys(pattern)
    }
    fn command_for_key(&self, _key: &str, args: &[&str]) -> String {
        self.server.command(args).unwrap()
    }
    fn ports(&self) -> Vec<u16> {
        vec![self.server.port]
    }
}

/// Waits (10 s at most) until the server has a connection logged in
/// as [`USER`].
async fn until_logged_in(server: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = server.command(&["CLIENT", "LIST"]).unwrap();
        if list.contains(&format!("user={USER} ")) {
            return;
        }
        assert!(Instant::now() < deadline, "no connection as {USER}: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_logged_in_as_an_acl_user_share_sessions() {
    let store = AclRedis::start();
    let farm = common::rustls_backends(1, |_| {}).await;
    let router = behaviour::instance(&farm, &store, Balance::RoundRobin, |_| {}).await;
    behaviour::until(&router, "connects with the file's password", |s| s.up).await;
    until_logged_in(&store.server).await;
    drop(router);
    // Learned on one instance, resumed through two others: every one of
    // them logged in as the ACL user.
    behaviour::tls12_sessions_learned_on_one_instance_resume_through_another(AclRedis::start())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_counted_and_connections_still_route() {
    let store = AclRedis::start();
    std::fs::write(&store.password_file, "not the password\n").unwrap();
    let farm = common::rustls_backends(1, |_| {}).await;
    let router = behaviour::instance(&farm, &store, Balance::RoundRobin, |_| {}).await;
    behaviour::until(&router, "AUTH refused, counted", |s| {
        !s.up && s.errors_connect >= 1
    })
    .await;
    // Routed on local state: the client is served all the same.
    let r = common::fresh_client()
        .connect(router.addr, None)
        .await
        .unwrap();
    assert_eq!(r.backend, farm[0].name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_can_come_from_the_environment() {
    let store = AclRedis::start();
    let backends = common::rustls_backends(1, |_| {}).await;
    let dir = common::router_process::scratch("store-password-env");
    let backend = format!("{}={}", backends[0].name(), backends[0].addr());
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--backend",
        &backend,
        "--store",
        &store.url(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let router = RouterProcess::start_with_env(
        &args,
        &dir.join("router.log"),
        &[(StoreConfig::PASSWORD_ENV, PASSWORD)],
    )
    .await;
    until_logged_in(&store.server).await;
    let r = common::fresh_client()
        .connect(router.addr, None)
        .await
        .unwrap();
    assert!(!r.backend.is_empty());
}
