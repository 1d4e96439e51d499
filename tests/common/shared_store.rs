//! The behaviours of a store shared by several router instances, one
//! body per behaviour, run against a single `redis-server`
//! (tests/instances_share_affinity_through_redis.rs) and a Redis Cluster
//! (tests/instances_share_affinity_through_redis_cluster.rs): a session
//! learned on one instance resumes through another, from a client
//! address that instance never saw and that its balancer (source-hash,
//! computed here) would send elsewhere; a ticket key name confirmed on
//! one routes on the other. The store killed, restarted, slowed down or
//! holding garbage: no client connection fails, routing falls back to
//! local state, and every failure is counted.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use stickytls::affinity::StoreStatus;
use stickytls::affinity::clients::ClientPrefix;
use stickytls::balance::rendezvous_score;
use stickytls::config::{AdminConfig, Balance, Config};
use stickytls::router::{Router, RunningRouter};
use stickytls_peers::Versions;
use stickytls_peers::backend::RunningBackend;
use stickytls_peers::client::{Client, ClientOptions};

use super::redis::SharedStore;
use super::{config, named, rustls_backends};

pub const NAMES: [&str; 3] = ["a", "b", "c"];

/// Where source-hash puts a client address, as the router computes it.
pub fn source_hash(ip: IpAddr) -> &'static str {
    let client = ClientPrefix::new(ip, 32, 64).to_bytes();
    NAMES
        .into_iter()
        .max_by(|x, y| {
            rendezvous_score(&client, x, 1)
                .total_cmp(&rendezvous_score(&client, y, 1))
                .then_with(|| y.cmp(x))
        })
        .unwrap()
}

/// Fresh client addresses on 127.0.`net`.x, each used once.
pub struct Addresses {
    net: u8,
    next: u8,
}

impl Addresses {
    pub fn new(net: u8) -> Self {
        Addresses { net, next: 1 }
    }

    pub fn any(&mut self) -> IpAddr {
        let ip = IpAddr::from([127, 0, self.net, self.next]);
        self.next = self.next.checked_add(1).expect("enough addresses");
        ip
    }

    /// One source-hash sends away from `owner`.
    pub fn away_from(&mut self, owner: &str) -> IpAddr {
        loop {
            let ip = self.any();
            if source_hash(ip) != owner {
                return ip;
            }
        }
    }
}

/// An instance sharing through `store`, balancing by `balance`, a
/// lookup budget of a second (generous: the machine is loaded) unless
/// `tweak` says otherwise.
pub async fn instance(
    farm: &[RunningBackend],
    store: &impl SharedStore,
    balance: Balance,
    tweak: impl FnOnce(&mut Config),
) -> RunningRouter {
    instance_for(&named(farm), store, balance, tweak).await
}

/// [`instance`] in front of `(name, address)` backends of any kind.
pub async fn instance_for(
    backends: &[(String, SocketAddr)],
    store: &impl SharedStore,
    balance: Balance,
    tweak: impl FnOnce(&mut Config),
) -> RunningRouter {
    let mut c = config(backends);
    c.pools[0].balance = balance;
    c.store = store.config();
    c.store.lookup_budget = Duration::from_secs(1);
    tweak(&mut c);
    Router::bind(c).await.expect("router binds").spawn()
}

/// Instance A (round robin) and instance B (source-hash, so that where it
/// agrees with A's owner is chance, not sharing) in front of `backends`,
/// sharing `store`, each with its own tweak, once both have connected.
pub async fn a_and_b(
    backends: &[(String, SocketAddr)],
    store: &impl SharedStore,
    tweak_a: impl FnOnce(&mut Config),
    tweak_b: impl FnOnce(&mut Config),
) -> (RunningRouter, RunningRouter) {
    let a = instance_for(backends, store, Balance::RoundRobin, tweak_a).await;
    let b = instance_for(backends, store, Balance::SourceHash, tweak_b).await;
    until(&a, "A connects", |s| s.up).await;
    until(&b, "B connects", |s| s.up).await;
    (a, b)
}

pub fn with_admin(c: &mut Config) {
    c.admin = Some(AdminConfig::new("127.0.0.1:0".parse().unwrap()));
}

pub fn status(r: &RunningRouter) -> StoreStatus {
    r.pool("default")
        .unwrap()
        .table
        .status()
        .expect("a shared store")
}

/// Waits (10 s at most) until `r`'s store says `ok`.
pub async fn until(r: &RunningRouter, what: &str, ok: impl Fn(&StoreStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok(&status(r)) {
        assert!(Instant::now() < deadline, "{what}: {:?}", status(r));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Long enough for write-behind (sent within 100 ms) on a loaded machine.
pub async fn shared() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

pub fn client(versions: Versions, tls12_tickets: bool) -> Client {
    Client::new(ClientOptions {
        versions,
        tls12_tickets,
        ..Default::default()
    })
    .unwrap()
}

/// A GET on the admin endpoint; the response body.
pub async fn admin_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn tls12_sessions_learned_on_one_instance_resume_through_another(
    store: impl SharedStore,
) {
    let farm = rustls_backends(3, |_| {}).await;
    let (a, b) = a_and_b(&named(&farm), &store, |_| {}, |_| {}).await;
    let c3 = instance(&farm, &store, Balance::SourceHash, |_| {}).await;
    until(&c3, "C connects", |s| s.up).await;

    let mut on_a = Addresses::new(1);
    let mut sessions = Vec::new();
    for (tickets, kind) in [(false, "TLS 1.2 session ID"), (true, "TLS 1.2 ticket")] {
        for _ in 0..3 {
            let c = client(Versions::Tls12, tickets);
            let ip = on_a.any();
            let r = c.connect(a.addr, Some(ip)).await.unwrap();
            assert!(!r.server_resumed);
            sessions.push((c, r.backend, kind, ip));
        }
    }
    shared().await;
    assert!(!store.keys("stickytls:default:e:*").is_empty());
    // Spread by slot: in a cluster, the entries and client records that
    // B's lookups ask for live on several nodes.
    let holders = store.holders("stickytls:default:*");
    assert!(
        holders >= store.ports().len().min(2),
        "keys on {holders} of {} servers",
        store.ports().len()
    );

    let mut on_b = Addresses::new(2);
    for (c, owner, kind, _) in &sessions {
        let ip = on_b.away_from(owner);
        let r = c.connect(b.addr, Some(ip)).await.unwrap();
        assert_eq!(
            (&r.backend, r.server_resumed),
            (owner, true),
            "{kind} learned on A, through B from {ip} (source-hash: {})",
            source_hash(ip)
        );
    }
    assert!(
        status(&b).lookups_hit >= sessions.len() as u64,
        "{:?}",
        status(&b)
    );
    // And through a third instance, from a third network, where neither
    // its balancer nor anything it saw itself would pick the owner.
    let mut on_c = Addresses::new(3);
    for (c, owner, kind, _) in &sessions {
        let ip = on_c.away_from(owner);
        let r = c.connect(c3.addr, Some(ip)).await.unwrap();
        assert_eq!(
            (&r.backend, r.server_resumed),
            (owner, true),
            "{kind} learned on A, through C from {ip}"
        );
    }

    // The client record is shared too: a client from an address A saw,
    // with no session to offer, goes through B to that address's last
    // backend where source-hash would not send it.
    let pinned: Vec<_> = sessions
        .iter()
        .filter(|(_, owner, _, ip)| source_hash(*ip) != owner)
        .collect();
    assert!(!pinned.is_empty());
    for (_, owner, _, ip) in pinned {
        let fresh = Client::new(ClientOptions {
            resumption: false,
            ..Default::default()
        })
        .unwrap();
        let r = fresh.connect(b.addr, Some(*ip)).await.unwrap();
        assert_eq!(&r.backend, owner, "a fresh client from {ip}, seen on A");
    }

    // What an operator forgets on one instance (the admin API's DELETE)
    // is gone from Redis too.
    let stored = store.keys("stickytls:default:e:*");
    let digest = stored[0].rsplit(':').next().unwrap();
    let mut bytes = [0u8; 16];
    hex::decode_to_slice(digest, &mut bytes).unwrap();
    let key = stickytls::affinity::Key::from_bytes(bytes);
    a.pool("default").unwrap().table.forget(&key);
    shared().await;
    assert!(!store.keys("stickytls:default:e:*").contains(&stored[0]));
}

pub async fn tls13_ticket_key_name_confirmed_on_one_instance_routes_on_another(
    store: impl SharedStore,
) {
    let farm = rustls_backends(3, |_| {}).await;
    let (a, b) = a_and_b(&named(&farm), &store, |_| {}, |_| {}).await;

    // On A: resumptions from the address that got the ticket (client
    // address affinity) confirm two distinct identities per key name.
    let mut on_a = Addresses::new(1);
    for _ in 0..30 {
        if farm.iter().all(|f| f.resumed() >= 2) {
            break;
        }
        let c = client(Versions::Tls13, true);
        let ip = on_a.any();
        c.connect(a.addr, Some(ip)).await.unwrap();
        let r = c.connect(a.addr, Some(ip)).await.unwrap();
        assert!(r.server_resumed, "{r:?}");
    }
    assert!(
        farm.iter().all(|f| f.resumed() >= 2),
        "every key name confirmed on A"
    );
    shared().await;
    assert!(!store.keys("stickytls:default:n:*").is_empty());

    // New sessions from A: their identities were never accepted anywhere,
    // so only their key names can route them on B.
    let mut on_b = Addresses::new(2);
    let resumed_before: usize = farm.iter().map(|f| f.resumed()).sum();
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let c = client(Versions::Tls13, true);
        let r = c.connect(a.addr, Some(on_a.any())).await.unwrap();
        sessions.push((c, r.backend));
    }
    for (c, owner) in &sessions {
        let ip = on_b.away_from(owner);
        let r = c.connect(b.addr, Some(ip)).await.unwrap();
        assert_eq!(
            (&r.backend, r.server_resumed),
            (owner, true),
            "a TLS 1.3 ticket from A's backend {owner}, through B from {ip}"
        );
    }
    let resumed_after: usize = farm.iter().map(|f| f.resumed()).sum();
    assert_eq!(resumed_after - resumed_before, sessions.len());
}

pub async fn redis_killed_fails_no_connection_and_sharing_resumes_when_it_is_back(
    mut store: impl SharedStore,
) {
    let farm = rustls_backends(3, |_| {}).await;
    let (a, b) = a_and_b(&named(&farm), &store, with_admin, |_| {}).await;
    let mut on_a = Addresses::new(1);
    let mut on_b = Addresses::new(2);

    store.kill();
    // Every connection succeeds, through both, while Redis is gone: new
    // sessions, resumptions on A (local state), resumptions offered to B
    // (its lookup fails at once, the balancer places them).
    for _ in 0..4 {
        let c = client(Versions::Tls12, false);
        let ip = on_a.any();
        let first = c
            .connect(a.addr, Some(ip))
            .await
            .expect("through A, Redis down");
        let again = c.connect(a.addr, Some(ip)).await.expect("again through A");
        assert_eq!(
            (&again.backend, again.server_resumed),
            (&first.backend, true)
        );
        c.connect(b.addr, Some(on_b.any()))
            .await
            .expect("through B, Redis down");
    }
    until(&a, "A sees Redis down", |s| !s.up).await;
    until(&b, "B sees Redis down", |s| !s.up && s.lookups_error > 0).await;
    let down = status(&a);
    assert!(
        down.errors_connect + down.errors_write + down.writes_dropped > 0,
        "{down:?}"
    );
    let admin = a.admin_addr().unwrap();
    let stats = admin_get(admin, "/api/v1/stats").await;
    assert!(
        stats.contains(&format!(
            "\"store\":{{\"kind\":\"{}\",\"up\":false",
            store.kind()
        )),
        "{stats}"
    );
    let metrics = admin_get(admin, "/metrics").await;
    for series in [
        "stickytls_store_up 0",
        "stickytls_store_errors_total{op=\"",
        "stickytls_store_lookups_total{result=\"error\"}",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    // The stats page says so too, in words an operator reads at a glance.
    let page = admin_get(admin, "/stats").await;
    assert!(
        page.contains(&format!("<h2>Shared store ({})</h2>", store.kind()))
            && page.contains("data-field=\"store-up\">unreachable"),
        "{page}"
    );

    store.restart();
    until(&a, "A reconnects", |s| s.up).await;
    until(&b, "B reconnects", |s| s.up).await;
    let c = client(Versions::Tls12, true);
    let owner = c.connect(a.addr, Some(on_a.any())).await.unwrap().backend;
    shared().await;
    let ip = on_b.away_from(&owner);
    let r = c.connect(b.addr, Some(ip)).await.unwrap();
    assert_eq!(
        (&r.backend, r.server_resumed),
        (&owner, true),
        "a session learned on A after Redis came back resumes through B"
    );
    let metrics = admin_get(admin, "/metrics").await;
    assert!(
        metrics.contains("stickytls_store_up 1")
            && metrics.contains("stickytls_store_writes_total "),
        "A is back and its writes are counted:\n{metrics}"
    );
}

pub async fn a_slow_redis_holds_a_connection_no_longer_than_the_lookup_budget(
    store: impl SharedStore,
) {
    let farm = rustls_backends(3, |_| {}).await;
    let budget = Duration::from_millis(50);
    let slow = |c: &mut Config| {
        c.store.lookup_budget = budget;
        // Long enough for Redis's answer to arrive after the budget.
        c.store.timeout = Duration::from_secs(5);
    };
    let (a, b) = a_and_b(&named(&farm), &store, slow, slow).await;

    let c = client(Versions::Tls12, false);
    let owner = c
        .connect(a.addr, Some(IpAddr::from([127, 0, 1, 1])))
        .await
        .unwrap()
        .backend;
    shared().await;

    // Every server blocks for 2 s: a router that waited for it would
    // take that.
    let sleepers: Vec<_> = store
        .ports()
        .into_iter()
        .map(|port| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.write_all(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$1\r\n2\r\n")
                    .unwrap();
                let mut buf = [0u8; 16];
                let _ = s.read(&mut buf);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let timeouts = status(&b).lookups_timeout;
    let start = Instant::now();
    let ip = Addresses::new(2).away_from(&owner);
    let r = c
        .connect(b.addr, Some(ip))
        .await
        .expect("through B, Redis asleep");
    let took = start.elapsed();
    assert!(
        took < budget + Duration::from_secs(1),
        "the connection took {took:?} with a {budget:?} budget"
    );
    assert_eq!(status(&b).lookups_timeout, timeouts + 1, "{:?}", status(&b));
    // Not known in time: placed by B's balancer.
    assert_eq!(r.backend, source_hash(ip));
    for s in sleepers {
        s.join().unwrap();
    }

    // The late answer was kept for the next connection: B's table now
    // holds the entry naming A's backend, beside the session it learned.
    let table = b.pool("default").unwrap().table.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut owners = Vec::new();
        let names = table.save(&mut |batch| owners.extend(batch.iter().map(|e| e.backend)));
        if owners
            .iter()
            .any(|&i| names[usize::from(i)].as_ref() == owner)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never filled: {owners:?} of {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// NAT detection counts the new sessions every instance saw from an
/// address: one address that A saw open many sessions is shared (NAT) on
/// B too, as soon as B looks it up, though B never saw one of them.
pub async fn new_sessions_seen_on_one_instance_mark_an_address_shared_on_another(
    store: impl SharedStore,
) {
    let farm = rustls_backends(3, |_| {}).await;
    let threshold = |c: &mut Config| c.pools[0].affinity.nat_threshold = 2;
    let (a, b) = a_and_b(&named(&farm), &store, threshold, threshold).await;

    let nat = IpAddr::from([127, 0, 1, 9]);
    let prefix = ClientPrefix::new(nat, 32, 64);
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let c = client(Versions::Tls12, false);
        let owner = c.connect(a.addr, Some(nat)).await.unwrap().backend;
        sessions.push((c, owner));
    }
    let on_a = a.pool("default").unwrap().clients.peek(&prefix).unwrap();
    assert!(on_a.shared && on_a.new_sessions == 4, "{on_a:?}");
    shared().await;
    assert!(
        b.pool("default").unwrap().clients.peek(&prefix).is_none(),
        "B has seen nothing of this address yet"
    );

    // One resumption from the address through B: its lookup brings the
    // address's count with the session.
    let (c, owner) = &sessions[0];
    let r = c.connect(b.addr, Some(nat)).await.unwrap();
    assert_eq!((&r.backend, r.server_resumed), (owner, true));
    let on_b = b.pool("default").unwrap().clients.peek(&prefix).unwrap();
    assert!(
        on_b.shared && on_b.new_sessions >= 4,
        "A's sessions count on B: {on_b:?}"
    );
}

pub async fn a_corrupt_value_in_redis_is_a_counted_miss(store: impl SharedStore) {
    let farm = rustls_backends(3, |_| {}).await;
    let (a, b) = a_and_b(&named(&farm), &store, |_| {}, |_| {}).await;

    let c = client(Versions::Tls12, false);
    let owner = c
        .connect(a.addr, Some(IpAddr::from([127, 0, 1, 1])))
        .await
        .unwrap()
        .backend;
    shared().await;
    let entries = store.keys("stickytls:default:e:*");
    assert!(!entries.is_empty());
    for (i, key) in entries.iter().enumerate() {
        // Garbage, a foreign version, and a backend name with a newline.
        let junk = ["garbage", "9:0:1:a", "1:0:1:a\nb"][i % 3];
        assert!(
            store
                .command_for_key(key, &["SET", key, junk])
                .starts_with("+OK")
        );
    }

    let before = status(&b);
    let ip = Addresses::new(2).away_from(&owner);
    let r = c.connect(b.addr, Some(ip)).await.expect("through B");
    let after = status(&b);
    assert_eq!(r.backend, source_hash(ip), "a corrupt entry routes nowhere");
    assert!(after.corrupt_values > before.corrupt_values, "{after:?}");
    assert_eq!(after.lookups_miss, before.lookups_miss + 1, "{after:?}");
    assert_eq!(after.lookups_hit, before.lookups_hit);

    // Well formed, but naming a backend B does not have: a counted miss,
    // never taken in (B's balancer places the client).
    let known: std::collections::HashSet<String> =
        store.keys("stickytls:default:e:*").into_iter().collect();
    let c2 = client(Versions::Tls12, false);
    let owner = c2
        .connect(a.addr, Some(IpAddr::from([127, 0, 1, 2])))
        .await
        .unwrap()
        .backend;
    shared().await;
    let new: Vec<String> = store
        .keys("stickytls:default:e:*")
        .into_iter()
        .filter(|k| !known.contains(k))
        .collect();
    assert!(!new.is_empty());
    for key in &new {
        store.command_for_key(key, &["SET", key, "1:0:1:elsewhere"]);
    }
    let before = status(&b);
    let ip = Addresses::new(3).away_from(&owner);
    let r = c2.connect(b.addr, Some(ip)).await.expect("through B");
    assert_eq!(
        (r.backend.as_str(), r.server_resumed),
        (source_hash(ip), false),
        "an entry naming an unknown backend is a miss"
    );
    let after = status(&b);
    assert!(after.corrupt_values > before.corrupt_values, "{after:?}");
    assert_eq!(after.lookups_hit, before.lookups_hit, "{after:?}");

    // A value far longer than any router writes: cut by the server
    // (GETRANGE) before it reaches the router, refused, counted.
    let c3 = client(Versions::Tls12, false);
    let owner = c3
        .connect(a.addr, Some(IpAddr::from([127, 0, 1, 3])))
        .await
        .unwrap()
        .backend;
    shared().await;
    let known: std::collections::HashSet<String> = known.into_iter().chain(new).collect();
    let huge = format!("1:0:1:{owner}{}", "x".repeat(1 << 20));
    for key in store
        .keys("stickytls:default:e:*")
        .into_iter()
        .filter(|k| !known.contains(k))
    {
        store.command_for_key(&key, &["SET", &key, &huge]);
    }
    let before = status(&b);
    let ip = Addresses::new(4).away_from(&owner);
    let r = c3.connect(b.addr, Some(ip)).await.expect("through B");
    assert_eq!(r.backend, source_hash(ip), "an over-long value is a miss");
    let after = status(&b);
    assert!(after.corrupt_values > before.corrupt_values, "{after:?}");
}

/// A TLS 1.2 session renegotiated inside the encrypted channel has an ID
/// no router saw: instance B re-binds it to the backend that instance A
/// last confirmed for the client's address, which it learns from the
/// store's client record, where its own balancer would send the client
/// elsewhere.
pub async fn renegotiated_tls12_session_seen_on_one_instance_is_rebound_on_another(
    store: impl SharedStore,
) {
    use stickytls_peers::openssl::{SClient, SClientOptions, SServer, SServerOptions};
    let mut farm = Vec::new();
    for name in NAMES {
        let mut o = SServerOptions::new(name);
        o.versions = Versions::Tls12;
        o.tickets = false;
        o.client_renegotiation = true;
        farm.push(SServer::start(o).await.expect("s_server starts"));
    }
    let backends: Vec<_> = farm
        .iter()
        .map(|s| (s.name().to_string(), s.addr()))
        .collect();
    let (a, b) = a_and_b(&backends, &store, |_| {}, |_| {}).await;
    let opts = SClientOptions {
        versions: Versions::Tls12,
        no_ticket: true,
        ..Default::default()
    };

    let mut addresses = Addresses::new(3);
    let mut against_the_balancer = 0;
    for _ in 0..6 {
        let source = addresses.any();
        let client = SClient::new(opts.clone()).unwrap();
        let reneg = client
            .renegotiate(a.addr, Some(source))
            .await
            .expect("renegotiation through A");
        assert_ne!(reneg.before, reneg.after, "a new session");
        let owner = reneg.backend.clone().expect("backend named itself");
        shared().await;

        let r = client
            .connect(b.addr, Some(source))
            .await
            .expect("through B");
        assert_eq!(
            r.session_id.as_deref().map(str::to_ascii_uppercase),
            Some(reneg.after.to_ascii_uppercase()),
            "the client offered its renegotiated session"
        );
        assert!(
            r.reused && r.backend.as_deref() == Some(owner.as_str()),
            "renegotiated on A's {owner}, through B from {source} (source-hash: {}): {r:?}",
            source_hash(source)
        );
        if source_hash(source) != owner {
            against_the_balancer += 1;
        }
    }
    assert!(against_the_balancer > 0, "every owner was B's own choice");
    assert!(b.stats().rebinds >= against_the_balancer, "{:?}", b.stats());
}

/// The scripts go by hash: a server that forgot them (`SCRIPT FLUSH`, or a
/// node new to the cluster) answers a write NOSCRIPT, which did not run;
/// the router loads the scripts and sends that write once more. Each
/// write is applied exactly once: the shared count of new sessions is the
/// number of sessions sent, and no script text is ever sent with EVAL.
pub async fn writes_survive_a_script_flush_and_are_applied_exactly_once(store: impl SharedStore) {
    use std::sync::Arc;
    use stickytls::affinity::clients::Confirmed;
    use stickytls::affinity::redis::decode_binding;
    use stickytls::affinity::{Key, KeyKind, KeyState};

    let nowhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let r = instance_for(
        &[("a".into(), nowhere)],
        &store,
        Balance::RoundRobin,
        |_| {},
    )
    .await;
    until(&r, "connects", |s| s.up).await;
    let table = r.pool("default").unwrap().table.clone();
    let prefix = ClientPrefix::new(IpAddr::from([127, 0, 2, 1]), 32, 64);
    let name = Key::new(KeyKind::TicketKeyName, b"a name");
    let a: stickytls::backend::BackendName = Arc::from("a");
    for round in 1..=3u16 {
        for port in store.ports() {
            let reply = super::redis::command(port, &["SCRIPT", "FLUSH"]).unwrap();
            assert!(reply.starts_with("+OK"), "{reply}");
        }
        // A client record and its new session (SET, then COUNT_SESSION),
        // and a key-name step (CONFIRM_NAME), with a new tag each round.
        let confirmed = Confirmed {
            backend: a.clone(),
            tls12: true,
            fingerprint: 7,
            new_session: true,
        };
        table.share_client(prefix, &confirmed);
        table.confirm_key_name(name, &a, round);
        let sent = 3 * u64::from(round);
        until(&r, "the writes are acknowledged", |s| s.writes >= sent).await;
    }
    let s = status(&r);
    assert_eq!(
        (s.writes, s.writes_dropped, s.errors_write),
        (9, 0, 0),
        "{s:?}"
    );

    let counts = store.keys("stickytls:default:s:*");
    assert_eq!(counts.len(), 1, "{counts:?}");
    let reply = store.command_for_key(&counts[0], &["GET", &counts[0]]);
    assert_eq!(reply, "$1\r\n3\r\n", "three sessions, each counted once");
    let names = store.keys("stickytls:default:n:*");
    assert_eq!(names.len(), 1, "{names:?}");
    let reply = store.command_for_key(&names[0], &["GET", &names[0]]);
    let value = reply.split("\r\n").nth(1).unwrap();
    let (binding, _) = decode_binding(value.as_bytes(), true).unwrap();
    assert_eq!(
        (binding.backend.as_ref(), binding.state),
        ("a", KeyState::Routable)
    );

    // By hash only: no server ever ran a script sent in full, and every
    // script write after a flush met NOSCRIPT first (two a round).
    let mut no_script = 0;
    for port in store.ports() {
        let stats = super::redis::command(port, &["INFO", "commandstats"]).unwrap();
        assert!(!stats.contains("cmdstat_eval:"), "EVAL on {port}: {stats}");
        let errors = super::redis::command(port, &["INFO", "errorstats"]).unwrap();
        no_script += errors
            .lines()
            .find_map(|l| l.strip_prefix("errorstat_NOSCRIPT:count="))
            .map_or(0, |n| n.trim().parse::<u32>().unwrap());
    }
    assert_eq!(no_script, 6);
}
