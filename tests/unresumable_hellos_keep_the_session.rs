//! Session IDs and tickets travel in clear. A client that copies a
//! victim's TLS 1.2 session ID or ticket into a TLS 1.3-only hello, which
//! cannot resume it, gets a full handshake from the owner: the router must
//! keep the victim's entry (and count the event), since that handshake
//! says nothing of whether the owner still holds the session. An owner
//! that really forgot the session (restarted) still loses the entry at
//! once. Real rustls backends; the hostile hellos are a real rustls
//! TLS 1.3 hello with the victim's key put in.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::shared_store::Addresses;
use common::*;
use stickytls::affinity::{Key, KeyKind};
use stickytls::config::Balance;
use stickytls::inspect::{Handshake, Limits};
use stickytls::router::RunningRouter;
use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions, RunningBackend};
use stickytls_peers::client::{Client, ClientOptions};
use stickytls_peers::tap::Tap;

/// `stickytls_unresumable_offers_total`, spelled out so that this test
/// also builds against a router without it.
const UNRESUMABLE_OFFERS: &str = "stickytls_unresumable_offers_total";

/// Three backends speaking TLS 1.2 and 1.3 behind a source-hash router.
async fn farm() -> (Vec<RunningBackend>, RunningRouter) {
    let farm = rustls_backends(3, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.pools[0].balance = Balance::SourceHash;
    let router = start_router(cfg).await;
    (farm, router)
}

/// A TLS 1.2 victim (resuming by session ID, or by ticket): its first
/// connection goes through a tap in front of the router, which shows the
/// key its owner issued. Returns the client, its owner and the key.
async fn victim(router: SocketAddr, tickets: bool) -> (Client, String, Vec<u8>) {
    let c = Client::new(ClientOptions {
        versions: Versions::Tls12,
        tls12_tickets: tickets,
        ..Default::default()
    })
    .unwrap();
    let tap = Tap::start(router).await.unwrap();
    let first = c.connect(tap.addr(), None).await.unwrap();
    let capture = &tap.wait_closed(1, Duration::from_secs(10)).await.unwrap()[0];
    let mut hs = Handshake::new(Limits::default());
    hs.feed_client(&capture.client);
    hs.feed_server(&capture.server);
    let kind = if tickets {
        KeyKind::Ticket
    } else {
        KeyKind::SessionId
    };
    let key = hs
        .outcome()
        .and_then(|o| o.learned.iter().find(|l| l.kind == kind))
        .map(|l| l.key.clone())
        .expect("the owner issued a session key");
    (c, first.backend, key)
}

/// A real TLS 1.3-only ClientHello record (rustls, no session), which can
/// resume no TLS 1.2 session whatever it carries.
async fn tls13_only_hello(backend: SocketAddr) -> Vec<u8> {
    let tap = Tap::start(backend).await.unwrap();
    let c = Client::new(ClientOptions {
        versions: Versions::Tls13,
        resumption: false,
        ..Default::default()
    })
    .unwrap();
    c.connect(tap.addr(), None).await.unwrap();
    let stream = tap.wait_closed(1, Duration::from_secs(10)).await.unwrap()[0]
        .client
        .clone();
    let len = usize::from(u16::from_be_bytes([stream[3], stream[4]]));
    stream[..5 + len].to_vec()
}

/// Where a ClientHello record's legacy_session_id starts: record header
/// (5), handshake header (4), version (2), random (32), then its length.
const SESSION_ID_AT: usize = 5 + 4 + 2 + 32;

/// `hello` with its 32-byte legacy_session_id replaced by `sid`.
fn with_session_id(hello: &[u8], sid: &[u8]) -> Vec<u8> {
    assert_eq!((hello[SESSION_ID_AT], sid.len()), (32, 32));
    let mut out = hello.to_vec();
    out[SESSION_ID_AT + 1..SESSION_ID_AT + 33].copy_from_slice(sid);
    out
}

/// `hello` with a session_ticket extension carrying `ticket` added at the
/// end of its extensions (it offers no PSK, which would have to stay
/// last), every length around it grown to match.
fn with_ticket(hello: &[u8], ticket: &[u8]) -> Vec<u8> {
    let u16_at = |i: usize| usize::from(u16::from_be_bytes([hello[i], hello[i + 1]]));
    let mut at = SESSION_ID_AT;
    at += 1 + usize::from(hello[at]); // legacy_session_id
    at += 2 + u16_at(at); // cipher_suites
    at += 1 + usize::from(hello[at]); // legacy_compression_methods
    let exts_len_at = at;
    assert_eq!(
        exts_len_at + 2 + u16_at(exts_len_at),
        hello.len(),
        "one hello"
    );
    let mut ext = vec![0, 35];
    ext.extend((ticket.len() as u16).to_be_bytes());
    ext.extend(ticket);
    let mut out = hello.to_vec();
    out.extend(&ext);
    let grow = |out: &mut Vec<u8>, at: usize, width: usize| {
        let mut n = 0usize;
        for b in &out[at..at + width] {
            n = n << 8 | usize::from(*b);
        }
        let bytes = (n + ext.len()).to_be_bytes();
        out[at..at + width].copy_from_slice(&bytes[bytes.len() - width..]);
    };
    grow(&mut out, 3, 2); // record length
    grow(&mut out, 6, 3); // handshake length
    grow(&mut out, exts_len_at, 2); // extensions length
    out
}

fn full_handshakes(router: &RunningRouter, backend: &str) -> u64 {
    let pool = router.pool("default").unwrap();
    let b = pool.backends.by_name(backend).unwrap();
    b.counters.full.load(Ordering::Relaxed)
}

/// Waits (bounded) until the router has seen `backend` complete `n` full
/// handshakes: the hostile hello's answer has been learned from.
async fn until_full_handshakes(router: &RunningRouter, backend: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while full_handshakes(router, backend) < n {
        assert!(
            Instant::now() < deadline,
            "the router saw too few handshakes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn owner_of(router: &RunningRouter, key: &Key) -> Option<String> {
    let pool = router.pool("default").unwrap();
    pool.table.peek(key).map(|p| p.binding.backend.to_string())
}

/// One victim per key kind: the hostile hello reaches the owner, which
/// answers in TLS 1.3; the victim then resumes from an address the
/// balancer sends elsewhere.
async fn a_tls13_only_hello_leaves_the_entry(tickets: bool) {
    let metrics = LocalMetrics::default();
    let _recording = metrics.install();
    let (farm, router) = farm().await;
    let (victim, owner, key_bytes) = victim(router.addr, tickets).await;
    let (kind, label) = if tickets {
        (KeyKind::Ticket, "ticket")
    } else {
        (KeyKind::SessionId, "session_id")
    };
    let key = Key::new(kind, &key_bytes);
    assert_eq!(owner_of(&router, &key).as_deref(), Some(owner.as_str()));

    let plain = tls13_only_hello(farm[0].addr()).await;
    let hostile = if tickets {
        with_ticket(&plain, &key_bytes)
    } else {
        with_session_id(&plain, &key_bytes)
    };
    let before = full_handshakes(&router, &owner);
    send_raw(router.addr, IpAddr::from([127, 0, 3, 1]), &hostile).await;
    until_full_handshakes(&router, &owner, before + 1).await;
    assert_eq!(
        owner_of(&router, &key).as_deref(),
        Some(owner.as_str()),
        "the victim's entry was forgotten"
    );

    let away = Addresses::new(4).away_from(&owner);
    let r = victim.connect(router.addr, Some(away)).await.unwrap();
    assert_eq!(r.backend, owner, "the victim's resumption went elsewhere");
    assert!(r.server_resumed, "{r:?}");
    let counted = metrics.take();
    assert_eq!(
        counted.get(UNRESUMABLE_OFFERS, &[("pool", "default"), ("kind", label)]),
        1
    );
    assert_eq!(router.stats().affinity_lost, 0);
}

#[tokio::test]
async fn a_tls13_only_hello_with_a_victims_session_id_leaves_its_entry() {
    a_tls13_only_hello_leaves_the_entry(false).await;
}

#[tokio::test]
async fn a_tls13_only_hello_with_a_victims_ticket_leaves_its_entry() {
    a_tls13_only_hello_leaves_the_entry(true).await;
}

#[tokio::test]
async fn an_owner_that_really_forgot_the_session_still_loses_the_entry() {
    let (farm, router) = farm().await;
    let (victim, owner, sid) = victim(router.addr, false).await;
    let key = Key::new(KeyKind::SessionId, &sid);
    assert_eq!(owner_of(&router, &key).as_deref(), Some(owner.as_str()));

    // The owner restarts: same address, an empty session cache.
    let old = farm.iter().find(|b| b.name() == owner).unwrap();
    old.kill().await;
    let mut o = BackendOptions::new(owner.as_str());
    o.addr = old.addr();
    let _restarted = Backend::start(o).await.unwrap();

    let away = Addresses::new(4).away_from(&owner);
    let r = victim.connect(router.addr, Some(away)).await.unwrap();
    assert_eq!(r.backend, owner, "routed by its session ID");
    assert!(!r.server_resumed, "the restarted owner forgot it");
    assert_eq!(owner_of(&router, &key), None, "the entry is gone at once");
    assert_eq!(router.stats().affinity_lost, 1);
}

/// One `openssl s_client` run over TLS 1.2 by session ID (from `source`,
/// with `args` added), its stdin closed at once; what it printed.
async fn s_client(router: SocketAddr, source: IpAddr, args: &[&str]) -> String {
    let dir = stickytls_peers::cert::TempDir::new("unresumable").unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, stickytls_peers::cert::TestCa::shared().cert_pem()).unwrap();
    let mut command = tokio::process::Command::new("openssl");
    command
        .arg("s_client")
        .args(["-connect", &router.to_string()])
        .arg("-CAfile")
        .arg(&ca)
        .args(["-servername", "localhost", "-tls1_2", "-no_ticket"])
        .args(["-bind", &SocketAddr::new(source, 0).to_string()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("s_client finishes")
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `Cipher is NAME` from s_client's summary line.
fn cipher_of(transcript: &str) -> String {
    transcript
        .lines()
        .find_map(|l| {
            l.split_once(", Cipher is ")
                .map(|(_, c)| c.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no cipher in {transcript}"))
}

/// A TLS 1.2 hello without the session's cipher suite: the owner (rustls,
/// like Java's JSSE) answers with a full handshake in another suite and
/// keeps the session. The victim's entry stays; its next resumption, from
/// an address the balancer sends elsewhere, resumes on the owner.
#[tokio::test]
async fn a_tls12_hello_without_the_sessions_cipher_suite_leaves_its_entry() {
    let metrics = LocalMetrics::default();
    let _recording = metrics.install();
    let (_farm, router) = farm().await;
    let dir = stickytls_peers::cert::TempDir::new("victim").unwrap();
    let session = dir.path().join("session.pem");
    let session = session.to_str().unwrap();

    let first = s_client(
        router.addr,
        IpAddr::from([127, 0, 5, 1]),
        &["-sess_out", session],
    )
    .await;
    assert!(first.contains("New, TLSv1.2"), "{first}");
    let cipher = cipher_of(&first);
    let owner = router
        .pool("default")
        .unwrap()
        .last_decisions(1)
        .first()
        .map(|d| d.backend.to_string())
        .unwrap();

    // The same session offered without its suite.
    let without = format!("DEFAULT:!{cipher}");
    let before = full_handshakes(&router, &owner);
    let hostile = s_client(
        router.addr,
        IpAddr::from([127, 0, 3, 1]),
        &["-sess_in", session, "-cipher", &without],
    )
    .await;
    assert!(hostile.contains("New, TLSv1.2"), "{hostile}");
    assert_ne!(cipher_of(&hostile), cipher);
    until_full_handshakes(&router, &owner, before + 1).await;

    let away = Addresses::new(4).away_from(&owner);
    let again = s_client(router.addr, away, &["-sess_in", session]).await;
    assert!(
        again.contains("Reused, TLSv1.2"),
        "the victim's session: {again}"
    );
    assert_eq!(
        router.pool("default").unwrap().last_decisions(1)[0]
            .backend
            .as_ref(),
        owner.as_str()
    );
    let counted = metrics.take();
    assert_eq!(
        counted.get(
            UNRESUMABLE_OFFERS,
            &[("pool", "default"), ("kind", "session_id")]
        ),
        1
    );
}
