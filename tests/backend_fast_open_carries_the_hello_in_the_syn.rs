//! `tcp_fastopen` on a backend: once the backend has given this host a TCP
//! Fast Open cookie, the router's ClientHello reaches it in the SYN; with
//! the option off it never does; a reload turns it on for new connections;
//! resumption still reaches the issuing backend; a refused connect still
//! fails over and is counted as a refusal.
//!
//! The backends are real rustls servers on listeners with `TCP_FASTOPEN`.
//! Whether a SYN carried data is read from the kernel's own counters in
//! `/proc/net/netstat` (`TcpExt: TCPFastOpenPassive`, connections accepted
//! with data in the SYN; `TCPFastOpenActive`, SYNs with data the peer
//! acknowledged). They count the whole network namespace, so the tests of
//! this file run one at a time and compare deltas; nothing else on a test
//! machine uses Fast Open. (`TCP_INFO`'s `TCPI_OPT_SYN_DATA` would say it
//! per connection, but no dependency reads `TCP_INFO` without unsafe code.)
//!
//! Server-side Fast Open needs bit 2 of `net.ipv4.tcp_fastopen` (the
//! default, 1, is client only). As root the test sets that bit (it changes
//! nothing for listeners that do not ask for TFO); otherwise it fails and
//! says what to run.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use rustls::HandshakeKind;
use stickytls::router::Router;
use stickytls_peers::Versions;
use stickytls_peers::backend::BackendOptions;
use stickytls_peers::cert::TempDir;
use stickytls_peers::client::{Client, ClientOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;
use tokio_tfo::TfoListener;

/// The counters are the namespace's: one test of this file at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SYSCTL: &str = "/proc/sys/net/ipv4/tcp_fastopen";

/// Makes sure this host accepts Fast Open as a server (bit 2) and uses it
/// as a client (bit 1), setting the missing bits when allowed to.
fn fast_open_enabled() {
    let current: u32 = std::fs::read_to_string(SYSCTL)
        .unwrap_or_else(|e| {
            panic!("cannot read {SYSCTL} ({e}): this test needs Linux with TCP Fast Open")
        })
        .trim()
        .parse()
        .expect("a number");
    if current & 3 == 3 {
        return;
    }
    let wanted = current | 3;
    if let Err(e) = std::fs::write(SYSCTL, wanted.to_string()) {
        panic!(
            "TCP Fast Open is not enabled for servers here (net.ipv4.tcp_fastopen = {current}) and this test cannot enable it ({e}): run `sysctl -w net.ipv4.tcp_fastopen={wanted}` as root, then the test again"
        );
    }
    eprintln!("set net.ipv4.tcp_fastopen from {current} to {wanted} (server-side Fast Open)");
}

/// `TcpExt: NAME` from /proc/net/netstat.
fn tcp_ext(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").expect("/proc/net/netstat");
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("this kernel has no TcpExt {name} counter"));
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// SYNs whose data was taken: (by a listener, acknowledged to a connector).
fn syn_data() -> (u64, u64) {
    (tcp_ext("TCPFastOpenPassive"), tcp_ext("TCPFastOpenActive"))
}

/// A rustls backend on a listener with `TCP_FASTOPEN`, answering each line
/// as [`stickytls_peers::backend`] does (`backend=NAME resumed=BOOL
/// version=V`), so the peers' client reads it.
struct FastOpenBackend {
    name: String,
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FastOpenBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fast_open_backend(name: &str, versions: Versions) -> FastOpenBackend {
    let mut options = BackendOptions::new(name);
    options.versions = versions;
    let acceptor = TlsAcceptor::from(options.server_config().unwrap());
    let listener = TfoListener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("a listener with TCP_FASTOPEN");
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let (count, answer_name) = (accepted.clone(), Arc::<str>::from(name));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, name) = (acceptor.clone(), answer_name.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (_, conn) = tls.get_ref();
                let answer = format!(
                    "backend={name} resumed={} version={:?}\n",
                    conn.handshake_kind() == Some(HandshakeKind::Resumed),
                    conn.protocol_version().unwrap()
                );
                let mut tls = BufReader::new(tls);
                let mut line = String::new();
                while matches!(tls.read_line(&mut line).await, Ok(n) if n > 1) {
                    if tls.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                    line.clear();
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    FastOpenBackend {
        name: name.to_string(),
        addr,
        accepted,
        task,
    }
}

/// A configuration file for one pool in front of `backends`, each with
/// `tcp_fastopen` as given.
fn config_text(backends: &[(&str, SocketAddr)], tcp_fastopen: bool) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|(name, addr)| {
            format!("{{ name = \"{name}\", address = \"{addr}\", tcp_fastopen = {tcp_fastopen} }}")
        })
        .collect();
    format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"p\"\n\n[pool.p]\nbackends = [{}]\n[pool.p.timeouts]\nconnect = \"2s\"\nfirst_byte = \"3s\"\nhello = \"3s\"\n[pool.p.health]\ncheck = \"none\"\n",
        list.join(", ")
    )
}

/// `n` fresh (never resumed) connections through `router`, each answered
/// by `backend`.
async fn fresh_connections(router: SocketAddr, n: usize, backend: &str) {
    let client = fresh_client();
    for i in 0..n {
        let r = client
            .connect(router, Some(ip(2)))
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(r.backend, backend);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_rides_in_the_syn_with_the_option_on_and_never_with_it_off() {
    let _serial = SERIAL.lock().await;
    fast_open_enabled();
    let backend = fast_open_backend("a", Versions::Both).await;
    let dir = TempDir::new("fast-open").unwrap();
    let file = dir.path().join("stickytls.toml");
    let backends = [(backend.name.as_str(), backend.addr)];
    std::fs::write(&file, config_text(&backends, false)).unwrap();
    let config = stickytls::config::file::load(&file).expect("the file parses");
    let router = Router::bind_file(config, file.clone())
        .await
        .expect("router binds")
        .spawn();

    // Off (the default): the backend would take data in the SYN, but none
    // comes.
    let before = syn_data();
    fresh_connections(router.addr, 10, "a").await;
    assert_eq!(
        syn_data(),
        before,
        "(accepted with SYN data, SYN data acknowledged) moved with tcp_fastopen off"
    );

    // A reload turns it on, for the next connection.
    std::fs::write(&file, config_text(&backends, true)).unwrap();
    let outcome = router.live().reload().expect("the new file reloads");
    assert!(
        outcome
            .changes
            .iter()
            .any(|c| c.contains("backend a tcp_fastopen false -> true")),
        "{:?}",
        outcome.changes
    );
    // The first connection may only ask for a cookie (unless one is left
    // from an earlier run); from the second on, every hello is in the SYN.
    fresh_connections(router.addr, 1, "a").await;
    let (passive, active) = syn_data();
    fresh_connections(router.addr, 10, "a").await;
    let (passive_after, active_after) = syn_data();
    assert!(
        passive_after - passive >= 10 && active_after - active >= 10,
        "of 10 connections, {} reached the backend with the hello in the SYN and {} SYNs with data were acknowledged",
        passive_after - passive,
        active_after - active
    );
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 21);
    assert_eq!(router.stats().backend_failures, 0, "{:?}", router.stats());
}

/// Sessions of three Fast Open backends, resumed from addresses never seen
/// before: only the session key can take them home, and it still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumption_reaches_the_issuing_backend_with_the_hello_in_the_syn() {
    let _serial = SERIAL.lock().await;
    fast_open_enabled();
    let mut farm = Vec::new();
    for name in ["a", "b", "c"] {
        farm.push(fast_open_backend(name, Versions::Tls12).await);
    }
    let mut cfg = config(
        &farm
            .iter()
            .map(|b| (b.name.clone(), b.addr))
            .collect::<Vec<_>>(),
    );
    for b in &mut cfg.pools[0].backends {
        b.tcp_fastopen = true;
    }
    let router = start_router(cfg).await;
    for k in 0..3u8 {
        // Each client's first connection gives every backend its cookie
        // request in turn (round robin).
        let client = Client::new(ClientOptions {
            versions: Versions::Tls12,
            ..Default::default()
        })
        .unwrap();
        let first = client.connect(router.addr, Some(ip(2 + k))).await.unwrap();
        assert!(!first.server_resumed);
        let (passive, _) = syn_data();
        for i in 0..10u8 {
            let r = client
                .connect(router.addr, Some(ip(20 + 10 * k + i)))
                .await
                .unwrap();
            assert_eq!(r.backend, first.backend, "resumption {i} of client {k}");
            assert!(
                r.server_resumed && r.client_resumed(),
                "connection {i} of client {k} did not resume: {r:?}"
            );
        }
        let (passive_after, _) = syn_data();
        assert!(
            passive_after - passive >= 10,
            "client {k}: {} of 10 resumptions reached {} with the hello in the SYN",
            passive_after - passive,
            first.backend
        );
    }
}

/// A port nobody listens on, with a cookie for its address already held
/// (cookies are per destination address): the connect is deferred, the SYN
/// carries the hello and is refused. The refusal is reported as a refusal
/// at connect time, the backend marked down, and the next one serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fast_open_connect_fails_over_as_a_refusal() {
    let _serial = SERIAL.lock().await;
    fast_open_enabled();
    let live = fast_open_backend("a", Versions::Both).await;
    // A connection with the option on leaves the cookie for 127.0.0.1.
    let mut warm = config(&[("a".to_string(), live.addr)]);
    warm.pools[0].backends[0].tcp_fastopen = true;
    fresh_connections(start_router(warm).await.addr, 1, "a").await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = config(&[("dead".to_string(), dead), ("a".to_string(), live.addr)]);
    for b in &mut cfg.pools[0].backends {
        b.tcp_fastopen = true;
    }
    cfg.pools[0].timeouts.connect = Duration::from_secs(2);
    let router = start_router(cfg).await;
    let (_, active) = syn_data();
    fresh_connections(router.addr, 4, "a").await;
    let (_, active_after) = syn_data();
    assert!(active_after > active, "the hello went in the SYN to `a`");
    assert_eq!(router.stats().backend_failures, 1, "{:?}", router.stats());
    let pool = router.pool("default").expect("the pool");
    let dead = pool
        .backends
        .by_name("dead")
        .expect("the dead backend")
        .clone();
    let refused = &dead.counters.failures[0];
    assert_eq!(refused.load(Ordering::Relaxed), 1, "counted as refused");
}
