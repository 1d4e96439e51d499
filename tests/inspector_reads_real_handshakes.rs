//! The handshake inspector on handshakes that real TLS stacks produce at
//! test time: rustls client and server in process, and OpenSSL's
//! `s_client` / `s_server`, recorded in both directions by `peer::tap`.
//!
//! Every test asserts what the peers really did (the SNI sent, the ALPN
//! offered, the versions, whether the server resumed, the session ID that
//! OpenSSL printed, the ticket the client offers next time), and feeds every
//! captured stream in every chunking: each fixed chunk size from one byte to
//! the whole, and every two-piece split. The answer must not change.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::crypto::aws_lc_rs::kx_group;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, NamedGroup, RootCertStore};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use stickytls::inspect::fuzzing::{feed_all_chunkings, frame, run_client, run_server, whole};
use stickytls::inspect::{
    ClientHello, Handshake, KeyKind, Learned, Limits, Outcome, Resumption as Resumed, Status,
};
use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions, RunningBackend};
use stickytls_peers::cert::{TempDir, TestCa};
use stickytls_peers::client::{Client, ClientOptions, Reached};
use stickytls_peers::openssl::{SClient, SClientOptions, SClientReport, SServer, SServerOptions};
use stickytls_peers::tap::{Capture, Tap};
use stickytls_peers::{classic_kx_groups, provider};

const WAIT: Duration = Duration::from_secs(10);
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;
const X25519MLKEM768: u16 = 0x11ec;
const X25519: u16 = 0x001d;
const SECP256R1: u16 = 0x0017;

/// The inspector's view of one captured connection, after proving that
/// every chunking of either direction gives the same answer.
fn inspect(capture: &Capture) -> Handshake {
    let limits = Limits::default();
    assert!(!capture.client.is_empty() && !capture.server.is_empty());
    feed_all_chunkings(&capture.client, |c| run_client(limits, c));
    let answer = feed_all_chunkings(&capture.server, |c| run_server(limits, &capture.client, c));
    // The fuzz entry point holds its properties on the capture too.
    whole(&frame(0, &capture.client, &capture.server));

    let mut h = Handshake::new(limits);
    assert_eq!(h.feed_client(&capture.client), Status::Done);
    assert_eq!(h.feed_server(&capture.server), Status::Done, "{answer}");
    assert_eq!(h.client_status(), Status::Done, "{answer}");
    assert!(!h.wants_server());
    assert_eq!(
        run_server(limits, &capture.client, &[&capture.server]),
        answer
    );
    h
}

fn hello(h: &Handshake) -> ClientHello<'_> {
    h.client_hello().expect("a complete ClientHello")
}

fn outcome(h: &Handshake) -> &Outcome {
    h.outcome().expect("an outcome")
}

fn learned(kind: KeyKind, key: &[u8], offered: bool) -> Learned {
    Learned {
        kind,
        key: key.to_vec(),
        offered,
    }
}

/// A key and, when it is longer than 16 bytes, its key-name prefix: what
/// the inspector learns from one ticket or PSK identity.
fn ticket_keys(kind: KeyKind, key: &[u8], offered: bool) -> Vec<Learned> {
    let mut out = vec![learned(kind, key, offered)];
    if key.len() > 16 {
        out.push(learned(KeyKind::TicketKeyName, &key[..16], offered));
    }
    out
}

/// For a TLS 1.3 resumption: the server selected one of `ch`'s PSK
/// identities, and that identity (with its key name) is what was learned,
/// marked as offered.
fn assert_learned_the_selected_identity(ch: &ClientHello<'_>, o: &Outcome) {
    assert_eq!((o.resumed, o.resumption), (true, Some(Resumed::Tls13Psk)));
    let index = usize::from(o.psk_selected.expect("a PSK was selected"));
    let picked = ch
        .psk_identities()
        .nth(index)
        .expect("selected_identity within the offered list");
    assert_eq!(o.learned, ticket_keys(KeyKind::PskIdentity, picked, true));
}

fn alpn(ch: &ClientHello<'_>) -> Vec<Vec<u8>> {
    ch.alpn().map(<[u8]>::to_vec).collect()
}

fn upper_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// `n` connections from `client` to a fresh backend through a tap.
async fn rustls_run(
    backend: BackendOptions,
    client: ClientOptions,
    n: usize,
) -> (Vec<Capture>, Vec<Reached>, RunningBackend) {
    let backend = Backend::start(backend).await.unwrap();
    let tap = Tap::start(backend.addr()).await.unwrap();
    let client = Client::new(client).unwrap();
    let mut reached = Vec::new();
    for _ in 0..n {
        reached.push(client.connect(tap.addr(), None).await.unwrap());
    }
    (tap.wait_closed(n, WAIT).await.unwrap(), reached, backend)
}

fn h2_http11() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

#[tokio::test]
async fn rustls_tls13_with_tickets_learns_the_psk_identity_the_resumption_offers() {
    let backend = BackendOptions {
        versions: Versions::Tls13,
        tickets: true,
        session_cache: false,
        alpn: h2_http11(),
        ..BackendOptions::new("t13")
    };
    let client = ClientOptions {
        versions: Versions::Tls13,
        alpn: h2_http11(),
        ..ClientOptions::default()
    };
    let (caps, reached, _b) = rustls_run(backend, client, 2).await;
    assert!(!reached[0].server_resumed && reached[1].server_resumed);
    assert_eq!(reached[1].version, "TLSv1_3");
    assert_eq!(reached[1].alpn.as_deref(), Some(&b"h2"[..]));

    let full = inspect(&caps[0]);
    let ch = hello(&full);
    assert_eq!(ch.sni, Some(&b"localhost"[..]));
    assert_eq!(alpn(&ch), h2_http11());
    assert_eq!(ch.supported_versions().collect::<Vec<_>>(), [TLS13]);
    assert_eq!(ch.key_share_groups().collect::<Vec<_>>(), [X25519]);
    assert_eq!(ch.psk_identity_count(), 0);
    let o = outcome(&full);
    assert_eq!((o.version, o.resumed, o.resumption), (TLS13, false, None));
    assert!(o.learned.is_empty() && !o.hello_retry_request);
    // The ServerHello echoes the client's legacy session ID (RFC 8446 4.1.3).
    assert_eq!(o.session_id, ch.session_id);

    let resumed = inspect(&caps[1]);
    let ch = hello(&resumed);
    assert!(ch.psk_identity_count() > 0);
    let o = outcome(&resumed);
    assert_eq!(o.version, TLS13);
    assert_learned_the_selected_identity(&ch, o);
}

#[tokio::test]
async fn rustls_tls13_stateful_tickets_resume_by_the_identity_offered() {
    // Tickets off with a session cache: rustls issues short stateful
    // tickets (a cache key), still offered as a PSK identity.
    let backend = BackendOptions {
        versions: Versions::Tls13,
        tickets: false,
        session_cache: true,
        ..BackendOptions::new("t13-stateful")
    };
    let client = ClientOptions {
        versions: Versions::Tls13,
        ..ClientOptions::default()
    };
    let (caps, reached, _b) = rustls_run(backend, client, 2).await;
    assert!(!reached[0].server_resumed && reached[1].server_resumed);
    assert!(outcome(&inspect(&caps[0])).learned.is_empty());

    let resumed = inspect(&caps[1]);
    assert_learned_the_selected_identity(&hello(&resumed), outcome(&resumed));
}

#[tokio::test]
async fn rustls_tls12_ticket_learned_is_the_ticket_the_client_offers_next() {
    let backend = BackendOptions {
        versions: Versions::Tls12,
        tickets: true,
        session_cache: false,
        ..BackendOptions::new("t12-ticket")
    };
    let client = ClientOptions {
        versions: Versions::Tls12,
        tls12_tickets: true,
        ..ClientOptions::default()
    };
    let (caps, reached, _b) = rustls_run(backend, client, 2).await;
    assert!(!reached[0].server_resumed && reached[1].server_resumed);
    assert_eq!(reached[0].version, "TLSv1_2");

    let full = inspect(&caps[0]);
    let ch = hello(&full);
    assert_eq!(ch.sni, Some(&b"localhost"[..]));
    assert_eq!(ch.legacy_version, TLS12);
    assert!(!ch.offers_tls13());
    // An empty session_ticket extension: "I take tickets, I have none".
    assert_eq!(ch.session_ticket, Some(&[][..]));
    let o = outcome(&full);
    assert_eq!((o.version, o.resumed, o.resumption), (TLS12, false, None));
    assert_eq!(o.new_session_tickets.len(), 1);
    let ticket = o.new_session_tickets[0].ticket.clone();
    let mut expect = Vec::new();
    if !o.session_id.is_empty() {
        expect.push(learned(KeyKind::SessionId, &o.session_id, false));
    }
    expect.extend(ticket_keys(KeyKind::Ticket, &ticket, false));
    assert_eq!(o.learned, expect);

    let resumed = inspect(&caps[1]);
    let ch = hello(&resumed);
    assert_eq!(
        ch.session_ticket,
        Some(&ticket[..]),
        "the learned ticket is offered"
    );
    let o = outcome(&resumed);
    assert_eq!(
        (o.resumed, o.resumption),
        (true, Some(Resumed::Tls12Ticket))
    );
    // With a ticket offered the echoed session ID is the client's own
    // choice: never learned.
    assert!(o.learned.iter().all(|l| l.kind != KeyKind::SessionId));
    assert_eq!(
        o.learned[..ticket_keys(KeyKind::Ticket, &ticket, true).len()],
        ticket_keys(KeyKind::Ticket, &ticket, true)
    );
}

#[tokio::test]
async fn rustls_tls12_session_id_learned_is_the_session_id_the_client_offers_next() {
    let backend = BackendOptions {
        versions: Versions::Tls12,
        tickets: false,
        session_cache: true,
        ..BackendOptions::new("t12-sid")
    };
    let client = ClientOptions {
        versions: Versions::Tls12,
        tls12_tickets: false,
        ..ClientOptions::default()
    };
    let (caps, reached, _b) = rustls_run(backend, client, 2).await;
    assert!(!reached[0].server_resumed && reached[1].server_resumed);

    let full = inspect(&caps[0]);
    assert_eq!(hello(&full).session_ticket, None);
    let o = outcome(&full);
    assert_eq!(o.session_id.len(), 32);
    assert!(!o.resumed && o.new_session_tickets.is_empty());
    assert_eq!(
        o.learned,
        [learned(KeyKind::SessionId, &o.session_id, false)]
    );
    let sid = o.session_id.clone();

    let resumed = inspect(&caps[1]);
    assert_eq!(
        hello(&resumed).session_id,
        &sid[..],
        "the learned ID is offered"
    );
    let o = outcome(&resumed);
    assert_eq!(o.session_id, sid);
    assert_eq!(
        (o.resumed, o.resumption),
        (true, Some(Resumed::Tls12SessionId))
    );
    assert_eq!(o.learned, [learned(KeyKind::SessionId, &sid, true)]);
}

#[tokio::test]
async fn rustls_post_quantum_key_share_hello_is_read_whole() {
    let backend = BackendOptions {
        versions: Versions::Both,
        ..BackendOptions::new("pq")
    };
    let client = ClientOptions {
        versions: Versions::Both,
        pq: true,
        ..ClientOptions::default()
    };
    let (caps, reached, _b) = rustls_run(backend, client, 2).await;
    assert!(reached[1].server_resumed);

    for (i, cap) in caps.iter().enumerate() {
        let h = inspect(cap);
        let ch = hello(&h);
        assert!(ch.body.len() > 1200, "{} bytes", ch.body.len());
        assert_eq!(ch.key_share_groups().next(), Some(X25519MLKEM768));
        assert_eq!(ch.supported_versions().collect::<Vec<_>>(), [TLS13, TLS12]);
        assert_eq!(ch.sni, Some(&b"localhost"[..]));
        let o = outcome(&h);
        assert_eq!((o.version, o.hello_retry_request), (TLS13, false));
        assert_eq!(o.resumed, i == 1);
    }
}

/// A session store that never remembers which group the server chose, so
/// every connection leads with the client's first group, resumptions too.
#[derive(Debug)]
struct NoKxHint(Arc<ClientSessionMemoryCache>);

impl ClientSessionStore for NoKxHint {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}
    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }
    fn set_tls12_session(
        &self,
        n: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.0.set_tls12_session(n, v)
    }
    fn tls12_session(&self, n: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.0.tls12_session(n)
    }
    fn remove_tls12_session(&self, n: &ServerName<'static>) {
        self.0.remove_tls12_session(n)
    }
    fn insert_tls13_ticket(
        &self,
        n: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.0.insert_tls13_ticket(n, v)
    }
    fn take_tls13_ticket(
        &self,
        n: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.0.take_tls13_ticket(n)
    }
}

/// One TLS 1.3 connection with `config`: asks the backend who it is (which
/// also waits for its tickets) and closes.
async fn ask_once(config: Arc<ClientConfig>, addr: SocketAddr) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(WAIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let mut tls = BufReader::new(tls);
    tls.write_all(b"who\n").await.unwrap();
    tls.flush().await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(WAIT, tls.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    tls.get_mut().shutdown().await.unwrap();
    line
}

#[tokio::test]
async fn hello_retry_request_reads_the_second_hello_and_indexes_its_psk() {
    // The client leads with X25519; the server only has secp256r1, so
    // every handshake, the resumption included, goes through a retry.
    let backend = Backend::start(BackendOptions {
        versions: Versions::Tls13,
        kx_groups: vec![kx_group::SECP256R1],
        ..BackendOptions::new("hrr")
    })
    .await
    .unwrap();
    let tap = Tap::start(backend.addr()).await.unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(TestCa::shared().cert()).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider(classic_kx_groups()))
        .with_protocol_versions(Versions::Tls13.rustls())
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::store(Arc::new(NoKxHint(Arc::new(
        ClientSessionMemoryCache::new(8),
    ))));
    let config = Arc::new(config);
    let first = ask_once(config.clone(), tap.addr()).await;
    let second = ask_once(config, tap.addr()).await;
    assert!(first.contains("resumed=false"), "{first}");
    assert!(second.contains("resumed=true"), "{second}");
    let caps = tap.wait_closed(2, WAIT).await.unwrap();

    for (i, cap) in caps.iter().enumerate() {
        let h = inspect(cap);
        assert!(h.hello_retry_request());
        let ch1 = hello(&h);
        let ch2 = h.second_client_hello().expect("client2");
        assert_eq!(ch1.key_share_groups().collect::<Vec<_>>(), [X25519]);
        assert_eq!(ch2.key_share_groups().collect::<Vec<_>>(), [SECP256R1]);
        assert_eq!(
            (ch1.sni, ch2.sni),
            (Some(&b"localhost"[..]), Some(&b"localhost"[..]))
        );
        assert_eq!(h.second_client_hello_records(), Some(1));
        let o = outcome(&h);
        assert!(o.hello_retry_request);
        assert_eq!(o.version, TLS13);
        if i == 0 {
            assert!(!o.resumed && o.learned.is_empty());
            continue;
        }
        // The resumption offers its PSK in both hellos; the index in the
        // real ServerHello points into the second one's list.
        assert!(ch1.psk_identity_count() > 0);
        assert_learned_the_selected_identity(&ch2, o);
    }
}

/// `n` s_client runs against one s_server through a tap, each offering the
/// session the previous one saved.
async fn openssl_run(
    server: SServerOptions,
    client: SClientOptions,
    n: usize,
) -> (Vec<Capture>, Vec<SClientReport>) {
    let server = SServer::start(server).await.unwrap();
    let tap = Tap::start(server.addr()).await.unwrap();
    let client = SClient::new(client).unwrap();
    let mut reports = Vec::new();
    for _ in 0..n {
        let report = client.connect(tap.addr(), None).await.unwrap();
        assert_eq!(
            report.backend.as_deref(),
            Some(server.name()),
            "{}",
            report.transcript
        );
        reports.push(report);
    }
    (tap.wait_closed(n, WAIT).await.unwrap(), reports)
}

#[tokio::test]
async fn openssl_tls12_session_id_learned_is_the_one_openssl_printed() {
    let (caps, reports) = openssl_run(
        SServerOptions {
            versions: Versions::Tls12,
            tickets: false,
            ..SServerOptions::new("ossl-sid")
        },
        SClientOptions {
            versions: Versions::Tls12,
            no_ticket: true,
            servername: Some("sid.inspect.test".into()),
            ..SClientOptions::default()
        },
        2,
    )
    .await;
    assert!(!reports[0].reused && reports[1].reused);
    assert_eq!(reports[0].protocol, "TLSv1.2");
    let printed = reports[0]
        .session_id
        .clone()
        .expect("s_client printed a Session-ID");
    assert_eq!(reports[1].session_id.as_ref(), Some(&printed));

    let full = inspect(&caps[0]);
    let ch = hello(&full);
    assert_eq!(ch.sni, Some(&b"sid.inspect.test"[..]));
    assert_eq!(
        ch.session_ticket, None,
        "-no_ticket sends no session_ticket"
    );
    assert!(!ch.offers_tls13());
    let o = outcome(&full);
    assert_eq!((o.version, o.resumed), (TLS12, false));
    assert_eq!(
        o.learned,
        [learned(KeyKind::SessionId, &o.session_id, false)]
    );
    assert_eq!(
        upper_hex(&o.session_id),
        printed,
        "the exact Session-ID s_client printed"
    );

    let resumed = inspect(&caps[1]);
    assert_eq!(upper_hex(hello(&resumed).session_id), printed);
    let o = outcome(&resumed);
    assert_eq!(
        (o.resumed, o.resumption),
        (true, Some(Resumed::Tls12SessionId))
    );
    assert_eq!(upper_hex(&o.session_id), printed);
    assert_eq!(
        o.learned,
        [learned(KeyKind::SessionId, &o.session_id, true)]
    );
}

#[tokio::test]
async fn openssl_tls12_ticket_learned_is_offered_next_and_hashes_to_the_printed_id() {
    let (caps, reports) = openssl_run(
        SServerOptions {
            versions: Versions::Tls12,
            ..SServerOptions::new("ossl-ticket")
        },
        SClientOptions {
            versions: Versions::Tls12,
            ..SClientOptions::default()
        },
        2,
    )
    .await;
    assert!(!reports[0].reused && reports[1].reused);

    let full = inspect(&caps[0]);
    assert_eq!(hello(&full).session_ticket, Some(&[][..]));
    let o = outcome(&full);
    assert_eq!((o.version, o.resumed), (TLS12, false));
    assert_eq!(o.new_session_tickets.len(), 1);
    let ticket = o.new_session_tickets[0].ticket.clone();
    assert!(
        o.learned
            .ends_with(&ticket_keys(KeyKind::Ticket, &ticket, false))
    );
    // With tickets, the Session-ID s_client prints is SHA-256 of the
    // ticket: it never appears in a ServerHello.
    let printed = reports[0].session_id.clone().unwrap();
    assert_eq!(printed, upper_hex(&Sha256::digest(&ticket)));
    assert_ne!(upper_hex(&o.session_id), printed);

    let resumed = inspect(&caps[1]);
    assert_eq!(
        hello(&resumed).session_ticket,
        Some(&ticket[..]),
        "the learned ticket is offered"
    );
    let o = outcome(&resumed);
    assert_eq!(
        (o.resumed, o.resumption),
        (true, Some(Resumed::Tls12Ticket))
    );
    assert!(o.learned.iter().all(|l| l.kind != KeyKind::SessionId));
    assert!(
        o.learned
            .starts_with(&ticket_keys(KeyKind::Ticket, &ticket, true))
    );
}

/// The ticket in an OpenSSL session file, from `openssl sess_id -text`'s
/// hex dump.
fn saved_ticket(session: &std::path::Path) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(["sess_id", "-text", "-noout", "-in"])
        .arg(session)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text
        .lines()
        .skip_while(|l| l.trim() != "TLS session ticket:");
    lines.next().expect("a ticket in the saved session");
    let mut ticket = Vec::new();
    // "    0000 - 89 b3 77 ...-65 cc ...   ascii"
    for line in lines.take_while(|l| l.contains(" - ")) {
        let hex = line.split_once(" - ").unwrap().1;
        let hex = hex.split("   ").next().unwrap().replace('-', " ");
        ticket.extend(
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap()),
        );
    }
    assert!(!ticket.is_empty(), "{text}");
    ticket
}

#[tokio::test]
async fn openssl_tls13_psk_from_a_saved_session_is_learned_as_offered() {
    let server = SServer::start(SServerOptions {
        versions: Versions::Tls13,
        ..SServerOptions::new("ossl-psk")
    })
    .await
    .unwrap();
    let tap = Tap::start(server.addr()).await.unwrap();
    // Our own session files, so the ticket s_client saved can be read back.
    let dir = TempDir::new("psk").unwrap();
    let (first, second) = (dir.path().join("1.pem"), dir.path().join("2.pem"));
    let options = |extra: Vec<&std::path::Path>| SClientOptions {
        servername: Some("psk.inspect.test".into()),
        alpn: Some("h2,http/1.1".into()),
        extra_args: extra
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        ..SClientOptions::default()
    };
    let full = SClient::new(options(vec!["-sess_out".as_ref(), &first]))
        .unwrap()
        .connect(tap.addr(), None)
        .await
        .unwrap();
    let saved = saved_ticket(&first);
    let resumption = SClient::new(options(vec![
        "-sess_in".as_ref(),
        &first,
        "-sess_out".as_ref(),
        &second,
    ]))
    .unwrap()
    .connect(tap.addr(), None)
    .await
    .unwrap();
    assert!(
        !full.reused && resumption.reused,
        "{}",
        resumption.transcript
    );
    assert_eq!(resumption.protocol, "TLSv1.3");
    let caps = tap.wait_closed(2, WAIT).await.unwrap();

    let full = inspect(&caps[0]);
    let ch = hello(&full);
    assert_eq!(ch.sni, Some(&b"psk.inspect.test"[..]));
    assert_eq!(alpn(&ch), h2_http11());
    assert!(
        ch.supported_versions()
            .collect::<Vec<_>>()
            .starts_with(&[TLS13, TLS12])
    );
    assert_eq!(ch.psk_identity_count(), 0);
    let o = outcome(&full);
    assert_eq!((o.version, o.resumed), (TLS13, false));
    assert!(o.learned.is_empty());

    let resumed = inspect(&caps[1]);
    let ch = hello(&resumed);
    let offered: Vec<&[u8]> = ch.psk_identities().collect();
    assert_eq!(
        offered,
        [&saved[..]],
        "the identity offered is the saved ticket"
    );
    let o = outcome(&resumed);
    assert_eq!(o.psk_selected, Some(0));
    assert_eq!((o.resumed, o.resumption), (true, Some(Resumed::Tls13Psk)));
    assert_eq!(o.learned, ticket_keys(KeyKind::PskIdentity, &saved, true));
}

#[tokio::test]
async fn openssl_hello_fragmented_over_records_is_reassembled_with_its_alpn_list() {
    let offered: Vec<String> = (0..8)
        .map(|i| format!("proto-{i}-{}", "x".repeat(90)))
        .collect();
    let (caps, reports) = openssl_run(
        SServerOptions::new("ossl-frag"),
        SClientOptions {
            alpn: Some(offered.join(",")),
            max_send_frag: Some(512),
            servername: Some("frag.inspect.test".into()),
            ..SClientOptions::default()
        },
        1,
    )
    .await;
    assert_eq!(reports[0].protocol, "TLSv1.3");

    let h = inspect(&caps[0]);
    let records = h.client_hello_records().unwrap();
    assert!(records > 1, "{records} record(s)");
    let ch = hello(&h);
    assert!(ch.body.len() > 512);
    assert_eq!(
        alpn(&ch),
        offered
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect::<Vec<_>>()
    );
    assert_eq!(ch.sni, Some(&b"frag.inspect.test"[..]));
    assert_eq!(outcome(&h).version, TLS13);
}
