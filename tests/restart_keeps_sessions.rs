//! A restart with a state file keeps what the router learned: sessions
//! learned before it (TLS 1.2 session IDs, TLS 1.2 tickets, TLS 1.3 PSKs
//! by their ticket key names) resume on their issuing backends after it,
//! from client addresses the new process has never seen, under a balancer
//! that sends each of those addresses elsewhere (source-hash, computed
//! here). And a state file that cannot be used (corrupt, truncated, empty,
//! of another format or version) is reported and the router starts clean.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use common::router_process::{RouterProcess, scratch};
use common::traffic::source_hash;
use common::*;
use stickytls_peers::Versions;
use stickytls_peers::backend::RunningBackend;
use stickytls_peers::client::{Client, ClientOptions};

/// Addresses on 127.0.x.y: `net` 1 before the restart, 2 after it.
fn addr(net: u8, host: u8) -> IpAddr {
    IpAddr::from([127, 0, net, host])
}

/// Fresh addresses after the restart, each used once, each one that
/// source-hash sends away from `owner`.
struct Addresses {
    next: u8,
}

impl Addresses {
    fn away_from(&mut self, owner: &str) -> IpAddr {
        loop {
            let ip = addr(2, self.next);
            self.next = self.next.checked_add(1).expect("enough addresses");
            if source_hash(ip, &[("a", 1), ("b", 1), ("c", 1)]) != owner {
                return ip;
            }
        }
    }
}

fn config(dir: &Path, farm: &[RunningBackend], balance: &str) -> std::path::PathBuf {
    let backends: Vec<String> = farm
        .iter()
        .map(|b| format!("{{ name = \"{}\", address = \"{}\" }}", b.name(), b.addr()))
        .collect();
    let text = format!(
        "[state]\nfile = \"{}\"\ninterval = \"1h\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\ndefault_pool = \"web\"\n\n[pool.web]\nbalance = \"{balance}\"\nbackends = [{}]\n",
        dir.join("state").display(),
        backends.join(", ")
    );
    let path = dir.join(format!("{balance}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run_args(config: &Path) -> Vec<String> {
    vec![
        "--config".into(),
        config.display().to_string(),
        "--threads".into(),
        "2".into(),
    ]
}

fn client(versions: Versions, tls12_tickets: bool) -> Client {
    Client::new(ClientOptions {
        versions,
        tls12_tickets,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_learned_before_a_restart_resume_on_their_backends_after_it() {
    let farm = rustls_backends(3, |_| {}).await;
    let dir = scratch("restart");
    let mut before = RouterProcess::start(
        &run_args(&config(&dir, &farm, "roundrobin")),
        &dir.join("before.log"),
    )
    .await;

    // Sessions, each from an address of its own so round robin spreads
    // them: (client, issuing backend, kind).
    let mut sessions: Vec<(Client, String, &str)> = Vec::new();
    // Addresses and the backend of their last connection: the client index.
    let mut last: Vec<(IpAddr, String)> = Vec::new();
    let mut host = 1u8;
    let mut next_before = || {
        host += 1;
        addr(1, host)
    };
    for (versions, tickets, kind) in [
        (Versions::Tls12, false, "TLS 1.2 session ID"),
        (Versions::Tls12, true, "TLS 1.2 ticket"),
    ] {
        for _ in 0..6 {
            let c = client(versions, tickets);
            let ip = next_before();
            let r = c.connect(before.addr, Some(ip)).await.unwrap();
            assert!(!r.server_resumed);
            last.push((ip, r.backend.clone()));
            sessions.push((c, r.backend, kind));
        }
    }
    // TLS 1.3: a ticket key name routes once two distinct identities with
    // it were accepted on one backend. Clients resuming from the address
    // they got their ticket on (client-address affinity) teach that.
    for _ in 0..30 {
        if farm.iter().all(|b| b.resumed() >= 2) {
            break;
        }
        let c = client(Versions::Tls13, true);
        let ip = next_before();
        c.connect(before.addr, Some(ip)).await.unwrap();
        let r = c.connect(before.addr, Some(ip)).await.unwrap();
        assert!(r.server_resumed, "{r:?}");
    }
    assert!(
        farm.iter().all(|b| b.resumed() >= 2),
        "warm-up reached every backend"
    );
    for _ in 0..6 {
        let c = client(Versions::Tls13, true);
        let r = c.connect(before.addr, Some(next_before())).await.unwrap();
        sessions.push((c, r.backend, "TLS 1.3 PSK"));
    }
    let owners: HashSet<&str> = sessions.iter().map(|(_, b, _)| b.as_str()).collect();
    assert_eq!(owners.len(), 3, "round robin used every backend");

    before.terminate();
    assert_eq!(before.wait().await.code(), Some(0), "{}", before.log());
    assert!(before.log().contains("state written"), "{}", before.log());

    // Another balancer, another process, the same state file.
    let mut after = RouterProcess::start(
        &run_args(&config(&dir, &farm, "source-hash")),
        &dir.join("after.log"),
    )
    .await;
    let restored = after.wait_for_log("state restored").await;
    assert!(!restored.contains("entries=0 "), "{restored}");

    let resumed_before: usize = farm.iter().map(|b| b.resumed()).sum();
    let mut fresh = Addresses { next: 1 };
    for (c, owner, kind) in &sessions {
        let ip = fresh.away_from(owner);
        let r = c.connect(after.addr, Some(ip)).await.unwrap();
        assert_eq!(
            (&r.backend, r.server_resumed),
            (owner, true),
            "{kind} from {ip} (source-hash: {}) after the restart",
            source_hash(ip, &[("a", 1), ("b", 1), ("c", 1)])
        );
    }
    let resumed_after: usize = farm.iter().map(|b| b.resumed()).sum();
    assert_eq!(resumed_after - resumed_before, sessions.len());

    // The client index came back too: a fresh client (no session to offer)
    // from an address seen before the restart is pinned to that address's
    // last backend, where source-hash would not put it.
    let pinned: Vec<_> = last
        .iter()
        .filter(|(ip, backend)| source_hash(*ip, &[("a", 1), ("b", 1), ("c", 1)]) != backend)
        .collect();
    assert!(!pinned.is_empty());
    for (ip, backend) in pinned {
        let r = Client::new(ClientOptions {
            resumption: false,
            ..Default::default()
        })
        .unwrap()
        .connect(after.addr, Some(*ip))
        .await
        .unwrap();
        assert_eq!(&r.backend, backend, "a fresh client from {ip}");
    }

    after.terminate();
    assert_eq!(after.wait().await.code(), Some(0), "{}", after.log());
}

/// What a state file written by a real router looks like, for the broken
/// variants below.
async fn a_real_state_file(dir: &Path, farm: &[RunningBackend]) -> Vec<u8> {
    let mut r = RouterProcess::start(
        &run_args(&config(dir, farm, "roundrobin")),
        &dir.join("writer.log"),
    )
    .await;
    let c = client(Versions::Tls12, true);
    c.connect(r.addr, Some(addr(3, 1))).await.unwrap();
    r.terminate();
    assert_eq!(r.wait().await.code(), Some(0));
    std::fs::read(dir.join("state")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_state_files_are_reported_and_the_router_starts_clean() {
    let farm = rustls_backends(2, |_| {}).await;
    let dir = scratch("broken-state");
    let good = a_real_state_file(&dir, &farm).await;

    let mut corrupt = good.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    let mut other_version = good.clone();
    other_version[9] = other_version[9].wrapping_add(1);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("corrupt", corrupt, "corrupt: the checksum does not match"),
        ("truncated", good[..good.len() - 7].to_vec(), "truncated:"),
        ("empty", Vec::new(), "the file is empty"),
        (
            "foreign",
            b"{\"sessions\": []}\n".to_vec(),
            "not a stickytls state file",
        ),
        ("other version", other_version, "state file version"),
    ];
    let config = config(&dir, &farm, "roundrobin");
    for (what, bytes, reason) in cases {
        std::fs::write(dir.join("state"), &bytes).unwrap();
        let mut r = RouterProcess::start(&run_args(&config), &dir.join("reader.log")).await;
        let line = r.wait_for_log("state file ignored").await;
        assert!(line.contains(reason), "{what}: {line}");
        assert!(!r.log().contains("state restored"), "{what}");
        // It routes, with an empty table: a fresh client gets a full
        // handshake.
        let got = client(Versions::Tls12, true)
            .connect(r.addr, Some(addr(3, 2)))
            .await
            .unwrap();
        assert!(!got.server_resumed, "{what}");
        r.terminate();
        assert_eq!(r.wait().await.code(), Some(0), "{what}: {}", r.log());
    }
}
