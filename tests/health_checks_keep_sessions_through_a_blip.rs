//! Active health checks through the router, with real rustls backends on
//! real TCP: a backend failing its TLS check is down within interval ×
//! fall and up again after rise, its sessions' entries wait for it, and its
//! clients come back to it; the TLS check passes against real servers;
//! `check = "none"` never probes.
//!
//! Everything but the OpenSSL test runs on the test's one current-thread
//! runtime with time paused, so the intervals pass without sleeping (see
//! tests/timeouts_hold_on_paused_time.rs for the pattern).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use stickytls::config::{Balance, Config, HealthCheck, SendProxy};
use stickytls::health::{ProbeError, probe};
use stickytls::metrics::HEALTH_TRANSITIONS;
use stickytls::pool::PoolState;
use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions, BlackHole};
use stickytls_peers::client::{Client, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, sleep, sleep_until};

const INTERVAL: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(1);
const RISE: u32 = 2;
const FALL: u32 = 3;

/// A TCP front for a backend that a test can break: while broken it
/// accepts each connection and closes it at once (a crashed TLS server
/// behind a live port, or a blip in the network); otherwise it relays to
/// the backend, whose sessions live on through the blip.
struct Gate {
    addr: SocketAddr,
    broken: Arc<AtomicBool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start(target: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broken = Arc::new(AtomicBool::new(false));
        let state = broken.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if state.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Gate {
            addr,
            broken,
            _task: task,
        }
    }

    fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }
}

fn tls12() -> ClientOptions {
    ClientOptions {
        versions: Versions::Tls12,
        ..Default::default()
    }
}

/// The first `n` loopback addresses from 127.0.0.`from` on that the pool's
/// balancer places on `backend` (`on`), or anywhere else (`!on`).
fn addresses(pool: &PoolState, from: u8, n: usize, backend: &str, on: bool) -> Vec<IpAddr> {
    (from..=250)
        .map(ip)
        .filter(|a| {
            let first = pool
                .balancer
                .order(pool.backends.all(), &pool.prefix(*a))
                .remove(0);
            (&*first.name == backend) == on
        })
        .take(n)
        .collect()
}

fn with_checks(cfg: &mut Config, check: HealthCheck) {
    let h = &mut cfg.pools[0].health;
    h.check = check;
    h.interval = INTERVAL;
    h.timeout = TIMEOUT;
    h.rise = RISE;
    h.fall = FALL;
}

#[tokio::test(start_paused = true)]
async fn a_backend_failing_its_tls_check_is_down_then_up_and_its_clients_come_back() {
    let metrics = LocalMetrics::default();
    let _recording = metrics.install();
    let farm = rustls_backends(3, |o| o.versions = Versions::Tls12).await;
    let gate = Gate::start(farm[0].addr()).await;
    let mut backends = named(&farm);
    backends[0].1 = gate.addr;
    let mut cfg = config(&backends);
    cfg.pools[0].balance = Balance::SourceHash;
    with_checks(&mut cfg, HealthCheck::Tls);
    cfg.pools[0].health.sni = Some("localhost".into());
    let router = start_router(cfg).await;
    let pool = router.pool("default").unwrap().clone();
    let a = pool.backends.by_name("a").unwrap().clone();

    // Sessions on `a`, made by clients the balancer placed there.
    let homes = addresses(&pool, 10, 3, "a", true);
    let clients: Vec<Client> = (0..3).map(|_| Client::new(tls12()).unwrap()).collect();
    for (c, from) in clients.iter().zip(&homes) {
        let r = c.connect(router.addr, Some(*from)).await.unwrap();
        assert_eq!(r.backend, "a");
    }
    // Fresh addresses the balancer would never put on `a`: only the
    // table can send their clients there.
    let mut elsewhere = addresses(&pool, 100, 6, "a", false).into_iter();

    sleep(INTERVAL * 3).await;
    assert_eq!(
        a.health.last_passed(),
        Some(true),
        "a real TLS 1.2 server passes"
    );
    assert!(a.is_up(&pool.clock));

    // The blip: `a` answers every connection by closing it.
    let broken_at = pool.clock.now_ms();
    gate.set_broken(true);
    sleep(INTERVAL * FALL + INTERVAL / 2).await;
    assert!(a.health.is_down() && !a.is_up(&pool.clock));
    assert_eq!(a.health.last_passed(), Some(false));
    let down_at = a.health.changed_ms().unwrap();
    let ms = |d: Duration| d.as_millis() as u64;
    assert!(
        down_at > broken_at + ms(INTERVAL * (FALL - 1))
            && down_at <= broken_at + ms(INTERVAL * FALL),
        "down {} ms after the blip began; expected after {} failed checks, {} ms apart",
        down_at - broken_at,
        FALL,
        ms(INTERVAL)
    );

    // While `a` is down, a resumption of its session goes where the
    // balancer says, and its entry stays.
    let hello = clients[0].client_hello().unwrap();
    let from = elsewhere.next().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut raw = socket.connect(router.addr).await.unwrap();
    let local = raw.local_addr().unwrap();
    raw.write_all(&hello).await.unwrap();
    let mut answer = [0u8; 5];
    raw.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer[0], 22, "a handshake record from the fallback");
    let decision = pool.decision_for(local).unwrap();
    assert_ne!(&*decision.backend, "a");
    assert_eq!(decision.rule, "balancer");
    assert_eq!(
        decision.reason,
        "owner of the session is down: balanced, entry kept"
    );
    drop(raw);
    // And a client with no session there is served as usual.
    let stranger = Client::new(tls12()).unwrap();
    let r = stranger
        .connect(router.addr, elsewhere.next())
        .await
        .expect("served while a backend is down");
    assert_ne!(r.backend, "a");

    // `a` comes back.
    let restored_at = pool.clock.now_ms();
    gate.set_broken(false);
    sleep(INTERVAL * RISE + INTERVAL / 2).await;
    assert!(!a.health.is_down() && a.is_up(&pool.clock));
    let up_at = a.health.changed_ms().unwrap();
    assert!(
        up_at > restored_at + ms(INTERVAL * (RISE - 1))
            && up_at <= restored_at + ms(INTERVAL * RISE),
        "up {} ms after it was restored; expected after {} passed checks",
        up_at - restored_at,
        RISE
    );

    // Its clients return and resume the sessions made before the blip,
    // including the one whose resumption was sent elsewhere during it.
    for c in &clients {
        let r = c.connect(router.addr, elsewhere.next()).await.unwrap();
        assert_eq!(
            (r.backend.as_str(), r.server_resumed),
            ("a", true),
            "a client of a, back from an address the balancer puts elsewhere"
        );
    }

    let counted = metrics.take();
    for (backend, to, n) in [
        ("a", "down", 1),
        ("a", "up", 1),
        ("b", "down", 0),
        ("c", "down", 0),
    ] {
        let labels = [("pool", "default"), ("backend", backend), ("to", to)];
        assert_eq!(
            counted.get(HEALTH_TRANSITIONS, &labels),
            n,
            "{backend} {to}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopped_backend_is_down_within_interval_times_fall_and_up_after_rise() {
    let farm = rustls_backends(2, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.pools[0].balance = Balance::SourceHash;
    with_checks(&mut cfg, HealthCheck::Tcp);
    let router = start_router(cfg).await;
    let pool = router.pool("default").unwrap().clone();
    let b = pool.backends.by_name("b").unwrap().clone();
    let addr = farm[1].addr();
    let for_b = addresses(&pool, 10, 2, "b", true);

    sleep(INTERVAL * 2).await;
    let stopped_at = pool.clock.now_ms();
    farm[1].kill().await;
    sleep(INTERVAL * FALL).await;
    assert!(
        b.health.is_down(),
        "refused {FALL} times in {:?}",
        INTERVAL * FALL
    );
    let down_at = b.health.changed_ms().unwrap();
    assert!(down_at - stopped_at <= (INTERVAL * FALL).as_millis() as u64);
    // Its clients are served elsewhere meanwhile, without a failed attempt.
    let client = Client::new(ClientOptions::default()).unwrap();
    let r = client.connect(router.addr, Some(for_b[0])).await.unwrap();
    assert_eq!(r.backend, "a");
    assert_eq!(router.stats().failovers, 0, "b was not even tried");

    // Back on its address: up after `rise` probes, not before.
    let restarted = Backend::start(BackendOptions {
        addr,
        ..BackendOptions::new("b")
    })
    .await
    .unwrap();
    let back_at = Instant::now();
    sleep_until(back_at + INTERVAL * (RISE - 1) - Duration::from_millis(1)).await;
    assert!(b.health.is_down(), "up before {RISE} passed checks");
    sleep_until(back_at + INTERVAL * RISE).await;
    assert!(!b.health.is_down(), "still down after {RISE} passed checks");
    let client = Client::new(ClientOptions::default()).unwrap();
    let r = client.connect(router.addr, Some(for_b[1])).await.unwrap();
    assert_eq!(
        r.backend, "b",
        "the balancer places its clients on it again"
    );
    drop(restarted);
}

#[tokio::test(start_paused = true)]
async fn check_none_never_probes_and_tcp_probes_once_an_interval() {
    let quiet = rustls_backends(2, |_| {}).await;
    let mut cfg = config(&named(&quiet));
    with_checks(&mut cfg, HealthCheck::None);
    let _quiet_router = start_router(cfg).await;

    let probed = rustls_backends(2, |_| {}).await;
    let mut cfg = config(&named(&probed));
    with_checks(&mut cfg, HealthCheck::Tcp);
    let _probed_router = start_router(cfg).await;

    sleep(Duration::from_secs(60)).await;
    for b in &quiet {
        assert_eq!(b.connections(), 0, "{} was probed", b.name());
    }
    for b in &probed {
        // One probe per interval from a start within the first interval.
        let n = b.connections();
        assert!((29..=30).contains(&n), "{}: {n} probes in 60 s", b.name());
    }
}

#[tokio::test(start_paused = true)]
async fn the_tls_check_passes_on_every_version_and_fails_on_what_is_not_a_tls_server() {
    for versions in [Versions::Tls12, Versions::Tls13, Versions::Both] {
        let backend = Backend::start(BackendOptions {
            versions,
            ..BackendOptions::new("a")
        })
        .await
        .unwrap();
        for sni in [None, Some("localhost")] {
            probe(
                HealthCheck::Tls,
                backend.addr(),
                TIMEOUT,
                sni,
                SendProxy::Off,
            )
            .await
            .unwrap_or_else(|e| panic!("{versions:?} {sni:?}: {e}"));
        }
    }

    // Accepts and closes.
    let closes = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closes_addr = closes.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = closes.accept().await {
            drop(s);
        }
    });
    // Answers with HTTP.
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = http.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let hole = BlackHole::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let tls = |addr| probe(HealthCheck::Tls, addr, TIMEOUT, None, SendProxy::Off);
    assert!(matches!(tls(closes_addr).await, Err(ProbeError::Closed)));
    assert!(matches!(tls(http_addr).await, Err(ProbeError::NotTls(_))));
    assert!(matches!(tls(hole.addr()).await, Err(ProbeError::Timeout)));
    assert!(matches!(tls(refused).await, Err(ProbeError::Refused(_))));
    // A TCP check only asks for a connect.
    assert!(
        probe(HealthCheck::Tcp, closes_addr, TIMEOUT, None, SendProxy::Off)
            .await
            .is_ok()
    );
    assert!(
        probe(HealthCheck::Tcp, hole.addr(), TIMEOUT, None, SendProxy::Off)
            .await
            .is_ok()
    );
    assert!(matches!(
        probe(HealthCheck::Tcp, refused, TIMEOUT, None, SendProxy::Off).await,
        Err(ProbeError::Refused(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_check_passes_against_openssl() {
    use stickytls_peers::openssl::{SServer, SServerOptions};
    for versions in [Versions::Tls12, Versions::Tls13] {
        let server = SServer::start(SServerOptions {
            versions,
            ..SServerOptions::new("o")
        })
        .await
        .unwrap();
        probe(
            HealthCheck::Tls,
            server.addr(),
            Duration::from_secs(5),
            Some("localhost"),
            SendProxy::Off,
        )
        .await
        .unwrap_or_else(|e| panic!("{versions:?}: {e}; {}", server.output()));
    }
}

#[tokio::test(start_paused = true)]
async fn a_pool_without_inspection_passes_over_a_backend_its_checks_hold_down() {
    let farm = rustls_backends(2, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.pools[0].inspect = false;
    with_checks(&mut cfg, HealthCheck::Tls);
    let router = start_router(cfg).await;
    farm[0].kill().await;
    sleep(INTERVAL * FALL + INTERVAL / 2).await;
    let pool = router.pool("default").unwrap();
    assert!(pool.backends.by_name("a").unwrap().health.is_down());
    let client = Client::new(ClientOptions::default()).unwrap();
    for i in 0..4 {
        let r = client.connect(router.addr, Some(ip(40 + i))).await.unwrap();
        assert_eq!(r.backend, "b");
    }
    assert_eq!(router.stats().failovers, 0, "a was not tried");
}

/// `stickytls run` serves on worker threads (`Router::run_on_threads`),
/// where the checks run on a thread of their own: they start with the
/// router and stop with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_run_beside_worker_threads_and_stop_with_them() {
    let farm = rustls_backends(2, |_| {}).await;
    let mut cfg = config(&named(&farm));
    with_checks(&mut cfg, HealthCheck::Tls);
    let h = &mut cfg.pools[0].health;
    h.interval = Duration::from_millis(50);
    h.timeout = Duration::from_millis(50);
    h.fall = 1;
    let router = stickytls::router::Router::bind(cfg).await.unwrap();
    let pool = router.pool("default").unwrap().clone();
    let shutdown = stickytls::shutdown::Shutdown::new(2);
    let drain = shutdown.drain();
    let workers = std::thread::spawn(move || router.run_on_threads(2, drain));

    farm[0].kill().await;
    let a = pool.backends.by_name("a").unwrap().clone();
    // Bounded, not timed: a probe every 50 ms marks it down on the first
    // failure; ten seconds is only there so a broken build fails.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !a.health.is_down() {
        assert!(std::time::Instant::now() < deadline, "never marked down");
        sleep(Duration::from_millis(20)).await;
    }
    shutdown.stop_accepting();
    workers.join().unwrap().unwrap();
    let probes = farm[1].connections();
    sleep(Duration::from_millis(300)).await;
    assert_eq!(
        farm[1].connections(),
        probes,
        "probed after the router stopped"
    );
}
