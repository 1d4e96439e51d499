//! Shared set-up for the end-to-end tests: real TLS backends (rustls in
//! process, or `openssl s_server`) behind a real router on 127.0.0.1.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use stickytls::config::{BackendConfig, Config};
use stickytls::router::{Router, RunningRouter};
use stickytls_peers::backend::{Backend, BackendOptions, RunningBackend};
use stickytls_peers::client::{Client, ClientOptions};

pub mod redis;
pub mod router_process;
pub mod shared_store;
pub mod traffic;

/// A source address on the loopback network: each stands for one client
/// machine (or one NAT gateway).
pub fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Starts `n` rustls backends named a, b, c, ... with `options` applied.
pub async fn rustls_backends(
    n: usize,
    options: impl Fn(&mut BackendOptions),
) -> Vec<RunningBackend> {
    let mut out = Vec::new();
    for i in 0..n {
        let name = ((b'a' + i as u8) as char).to_string();
        let mut o = BackendOptions::new(name);
        options(&mut o);
        out.push(Backend::start(o).await.expect("backend starts"));
    }
    out
}

/// A router config in front of `(name, addr)` backends, with timeouts short
/// enough for tests but no shorter than a loaded CI machine needs.
pub fn config(backends: &[(String, SocketAddr)]) -> Config {
    let bs = backends
        .iter()
        .map(|(n, a)| BackendConfig::new(n, *a))
        .collect();
    let mut c = Config::single("127.0.0.1:0".parse().unwrap(), bs);
    let p = &mut c.pools[0];
    p.timeouts.connect = Duration::from_secs(2);
    p.timeouts.first_byte = Duration::from_secs(3);
    p.timeouts.hello = Duration::from_secs(3);
    // No background probes: tests that count a backend's connections (or
    // sleep through hours of paused time) would count them too. The health
    // tests turn checks on themselves.
    p.health.check = stickytls::config::HealthCheck::None;
    c
}

/// A client that never offers a session: every connection is a full
/// handshake, routed by the balancer (or the client address), not a key.
pub fn fresh_client() -> Client {
    Client::new(ClientOptions {
        resumption: false,
        ..Default::default()
    })
    .expect("client builds")
}

pub fn named(backends: &[RunningBackend]) -> Vec<(String, SocketAddr)> {
    backends
        .iter()
        .map(|b| (b.name().to_string(), b.addr()))
        .collect()
}

pub async fn start_router(config: Config) -> RunningRouter {
    Router::bind(config).await.expect("router binds").spawn()
}

/// A stand-in for a TCP load balancer in front of the router: every
/// connection it accepts gets `header(i)` (a PROXY protocol header, for the
/// i-th connection) written first, then is relayed both ways.
pub async fn proxy_in_front(
    router: SocketAddr,
    header: impl Fn(usize) -> Vec<u8> + Send + Sync + 'static,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut i = 0;
        while let Ok((mut down, _)) = listener.accept().await {
            let h = header(i);
            i += 1;
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let Ok(mut up) = tokio::net::TcpStream::connect(router).await else {
                    return;
                };
                if up.write_all(&h).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    addr
}

/// A plain TCP echo server (the non-TLS pool's backend).
pub async fn echo_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Counts what the router reports through the `metrics` facade, for tests
/// that need a counter's labels (a rejection's reason), which the router's
/// own [`stickytls::stats::Snapshot`] does not keep.
///
/// The recorder is this thread's only: on a current-thread test runtime the
/// router's tasks run on the test's thread, so nothing is shared with the
/// other tests of the binary (a global recorder could be installed once).
#[derive(Debug, Default)]
pub struct LocalMetrics {
    recorder: metrics_util::debugging::DebuggingRecorder,
}

/// Counters as [`LocalMetrics::take`] read them.
#[derive(Debug)]
pub struct Counted(Vec<(metrics::Key, u64)>);

impl LocalMetrics {
    /// Makes this the thread's recorder until the guard is dropped.
    pub fn install(&self) -> metrics::LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(&self.recorder)
    }

    /// The counters incremented since the previous `take`: reading resets
    /// them, as the debugging recorder does.
    pub fn take(&self) -> Counted {
        use metrics_util::debugging::DebugValue;
        Counted(
            self.recorder
                .snapshotter()
                .snapshot()
                .into_vec()
                .into_iter()
                .filter_map(|(key, _, _, value)| match value {
                    DebugValue::Counter(n) => Some((key.key().clone(), n)),
                    _ => None,
                })
                .collect(),
        )
    }
}

impl Counted {
    /// The counter `name` with exactly the `labels` given; 0 if it was not
    /// incremented.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .iter()
            .filter(|(key, _)| {
                key.name() == name
                    && key.labels().count() == labels.len()
                    && key.labels().all(|l| labels.contains(&(l.key(), l.value())))
            })
            .map(|(_, n)| n)
            .sum()
    }
}

/// Sends a hand-made `hello` from `source` to `router` and reads the start
/// of the answer, which must be a handshake record (the owner's
/// ServerHello); the connection is then closed.
pub async fn send_raw(router: SocketAddr, source: IpAddr, hello: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut s = socket.connect(router).await.unwrap();
    s.write_all(hello).await.unwrap();
    let mut head = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head))
        .await
        .expect("the owner answers")
        .expect("a record header");
    assert_eq!(head[0], 0x16, "a handshake record (the ServerHello)");
}
