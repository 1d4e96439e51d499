//! One client's hellos cannot take backends away from the others. Each
//! backend sits behind a front that resets every connection whose hello
//! names a refused server (a deny list, a WAF): one client sending such
//! hellos again and again leaves every backend up in the admin API, each
//! of its hellos reaches two backends and not the whole pool, and other
//! clients' sessions still resume on their issuers. The same failures
//! from a second client prefix (on a PROXY listener, a second declared
//! source) still mark a backend down; a backend that crashes once on an
//! ordinary hello still costs its client nothing.
//!
//! The backends are real rustls servers on real TCP; the fronts are plain
//! TCP relays in the test, since the thing under test is the router.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use hyper::Method;
use stickytls::admin::AdminConfig;
use stickytls::client::ctl::Endpoint;
use stickytls::config::Config;
use stickytls::router::RunningRouter;
use stickytls_peers::client::{Client, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The server name the fronts refuse.
const REFUSED: &str = "refused.example";

/// A deny list in front of one backend: it reads the client's first TLS
/// record and resets the connection when the record carries [`REFUSED`]
/// (or when told to crash on the next connections); otherwise it replays
/// the record to the backend and relays both ways.
struct Front {
    addr: SocketAddr,
    /// Connections reset for carrying the refused name.
    refused: Arc<AtomicUsize>,
    /// Ordinary connections still to reset, as a crash would.
    crash_next: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Front {
    async fn start(target: SocketAddr) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = Arc::new(AtomicUsize::new(0));
        let crash_next = Arc::new(AtomicUsize::new(0));
        let (r, c) = (refused.clone(), crash_next.clone());
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let (r, c) = (r.clone(), c.clone());
                tokio::spawn(serve(down, target, r, c));
            }
        });
        Front {
            addr,
            refused,
            crash_next,
            _task: task,
        }
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut down: TcpStream,
    target: SocketAddr,
    refused: Arc<AtomicUsize>,
    crash_next: Arc<AtomicUsize>,
) {
    let Some(record) = first_record(&mut down).await else {
        return;
    };
    let named = record
        .windows(REFUSED.len())
        .any(|w| w == REFUSED.as_bytes());
    let crash = !named
        && crash_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if named || crash {
        if named {
            refused.fetch_add(1, Ordering::SeqCst);
        }
        // A reset, as a deny list or a crashing server sends.
        let _ = socket2::SockRef::from(&down).set_linger(Some(Duration::ZERO));
        return;
    }
    let Ok(mut up) = TcpStream::connect(target).await else {
        return;
    };
    if up.write_all(&record).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
    }
}

/// The first TLS record a client sent (header included), or `None` if the
/// connection ended first.
async fn first_record(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    loop {
        if let Some(len) = buf
            .get(3..5)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        {
            if buf.len() >= 5 + len {
                return Some(buf);
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends one hello naming [`REFUSED`] from `from` (127.0.0.1 for `None`),
/// and returns what the router answered before the connection ended
/// (nothing, if it closed it).
async fn refused_hello(router: SocketAddr, from: impl Into<Option<IpAddr>>) -> Vec<u8> {
    let hello = Client::new(ClientOptions {
        sni: Some(REFUSED.into()),
        ..Default::default()
    })
    .unwrap()
    .client_hello()
    .unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(from) = from.into() {
        socket.bind(SocketAddr::new(from, 0)).unwrap();
    }
    let mut s = socket.connect(router).await.unwrap();
    s.write_all(&hello).await.unwrap();
    let mut answer = Vec::new();
    // A reset from the router is an answer too: the connection ended.
    let read = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the router neither answered nor closed");
    answer
}

/// Backends behind fronts, in a router with the admin API and a long
/// `down_hold`, so that a backend marked down is still down when asked.
async fn farm_behind_fronts(n: usize) -> (Vec<Front>, RunningRouter, Endpoint) {
    farm_behind_fronts_with(n, |_| {}).await
}

async fn farm_behind_fronts_with(
    n: usize,
    tweak: impl FnOnce(&mut Config),
) -> (Vec<Front>, RunningRouter, Endpoint) {
    let farm = rustls_backends(n, |_| {}).await;
    let mut fronts = Vec::new();
    let mut backends = named(&farm);
    for b in &mut backends {
        let front = Front::start(b.1).await;
        b.1 = front.addr;
        fronts.push(front);
    }
    // The backends live as long as the fronts' tasks need them.
    std::mem::forget(farm);
    let mut cfg: Config = config(&backends);
    cfg.pools[0].timeouts.down_hold = Duration::from_secs(600);
    cfg.admin = Some(AdminConfig::new("127.0.0.1:0".parse().unwrap()));
    tweak(&mut cfg);
    let router = start_router(cfg).await;
    let api = Endpoint {
        addr: router.admin_addr().unwrap().to_string(),
        token: None,
        timeout: Duration::from_secs(10),
    };
    (fronts, router, api)
}

/// Each backend's state as the admin API reports it.
async fn states(api: &Endpoint) -> Vec<(String, String)> {
    let list = api
        .call(Method::GET, "/api/v1/pools/default/backends", None)
        .await
        .unwrap();
    list["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn hello_refusals(router: &RunningRouter) -> u64 {
    let pool = router.pool("default").unwrap();
    pool.backends
        .all()
        .iter()
        .map(|b| b.counters.hello_refusals.load(Ordering::Relaxed))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_refused_hellos_leave_every_backend_up_and_sessions_home() {
    let (fronts, router, api) = farm_behind_fronts(3).await;

    // Nine victims, each with a session on its issuer.
    let victims: Vec<Client> = (0..9)
        .map(|_| Client::new(ClientOptions::default()).unwrap())
        .collect();
    let mut homes = Vec::new();
    for (i, v) in victims.iter().enumerate() {
        let r = v
            .connect(router.addr, Some(ip(10 + i as u8)))
            .await
            .unwrap();
        homes.push(r.backend);
    }

    // One client, 30 hellos that every backend resets.
    let attacker = ip(200);
    for i in 0..30 {
        let answer = refused_hello(router.addr, attacker).await;
        assert!(answer.is_empty(), "hello {i}: the router sent {answer:?}");
    }

    for (name, state) in states(&api).await {
        assert_eq!(state, "up", "{name} after one client's refused hellos");
    }
    // Each hello reached its first choice and one more, not the pool.
    let refused: usize = fronts.iter().map(Front::refused).sum();
    assert_eq!(refused, 60, "30 hellos, each to two backends");
    assert_eq!(hello_refusals(&router), 60, "each one counted");

    // The victims resume on their issuers, from addresses they never used.
    for (i, v) in victims.iter().enumerate() {
        let r = v
            .connect(router.addr, Some(ip(100 + i as u8)))
            .await
            .unwrap();
        assert_eq!(
            (r.backend.as_str(), r.server_resumed),
            (homes[i].as_str(), true),
            "victim {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_hellos_from_a_second_client_prefix_mark_the_backend_down() {
    let (fronts, router, api) = farm_behind_fronts(1).await;
    for _ in 0..5 {
        assert!(refused_hello(router.addr, ip(201)).await.is_empty());
    }
    assert_eq!(
        states(&api).await,
        [("a".into(), "up".into())],
        "one client"
    );

    assert!(refused_hello(router.addr, ip(202)).await.is_empty());
    assert_eq!(
        states(&api).await,
        [("a".into(), "down".into())],
        "two client prefixes within down_hold"
    );
    assert_eq!(fronts[0].refused(), 6);
    assert_eq!(hello_refusals(&router), 6);
}

/// Behind a PROXY-protocol balancer every connection comes from the
/// balancer: the client is the source its header declares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_proxy_listener_the_declared_source_is_the_client() {
    let (fronts, router, api) = farm_behind_fronts_with(1, |cfg| {
        cfg.listeners[0].proxy_protocol = true;
        cfg.listeners[0].proxy_trusted = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let via = proxy_in_front(router.addr, |i| {
        let src = if i < 5 { "192.0.2.1" } else { "192.0.2.2" };
        format!("PROXY TCP4 {src} 127.0.0.1 40000 443\r\n").into_bytes()
    })
    .await;
    // Five from one declared source; every connection reaches the router
    // from the balancer, 127.0.0.1.
    for _ in 0..5 {
        assert!(refused_hello(via, None).await.is_empty());
    }
    assert_eq!(
        states(&api).await,
        [("a".into(), "up".into())],
        "one source"
    );
    // The balancer's address is the same; the declared source is not.
    assert!(refused_hello(via, None).await.is_empty());
    assert_eq!(
        states(&api).await,
        [("a".into(), "down".into())],
        "two declared sources"
    );
    assert_eq!(fronts[0].refused(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_crashes_once_on_a_hello_costs_its_client_nothing() {
    let (fronts, router, api) = farm_behind_fronts(3).await;
    fronts[0].crash_next.store(1, Ordering::SeqCst);
    // Round robin gives `a` one of the first three.
    for i in 0..3u8 {
        let r = Client::new(ClientOptions::default())
            .unwrap()
            .connect(router.addr, Some(ip(30 + i)))
            .await
            .expect("served by the next backend");
        assert!(!r.backend.is_empty());
    }
    assert_eq!(fronts[0].crash_next.load(Ordering::SeqCst), 0, "a crashed");
    assert_eq!(router.stats().failovers, 1);
    // One client prefix saw it: `a` stays up.
    assert!(states(&api).await.iter().all(|(_, s)| s == "up"));
}
