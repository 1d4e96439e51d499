//! The attacks of issue 22, each against its own router and backends. An
//! attack measures its victims before and while it runs (and after, where
//! the effect should wear off), and returns table rows.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions, RunningBackend};
use stickytls_peers::cert::{PemFiles, TestCa};
use stickytls_peers::client::{Client, ClientOptions, Writes};
use stickytls_peers::openssl::{SClient, SClientOptions, SServer, SServerOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::forge::Forger;
use crate::hello::{self, Answer, Hello};
use crate::lab::{Addresses, Config, JavaServers, NginxFronts, Router};
use crate::victim::Victim;
use crate::{Figure, Row};

/// Where and how big an attack runs.
#[derive(Debug, Clone)]
pub struct Lab {
    /// The stickytls binary under test.
    pub router: PathBuf,
    /// Configurations and logs.
    pub work: PathBuf,
    /// First port of this attack's block of 20.
    pub ports: u16,
    /// Smaller counts.
    pub quick: bool,
}

impl Lab {
    fn port(&self, i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports + i))
    }

    async fn router(&self, name: &str, mut config: Config<'_>) -> io::Result<Router> {
        config.listen = Some(self.port(0));
        config.admin = Some(self.port(1));
        Router::start(
            &self.router,
            &self.work,
            name,
            &config.toml(),
            self.port(0),
            self.port(1),
        )
        .await
    }

    fn scale(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

const NAMES: [&str; 3] = ["b1", "b2", "b3"];
/// Bound on one victim's connection.
const VISIT: Duration = Duration::from_secs(10);

async fn s_servers(tickets: bool, versions: Versions) -> io::Result<Vec<SServer>> {
    let mut servers = Vec::new();
    for name in NAMES {
        servers.push(
            SServer::start(SServerOptions {
                tickets,
                versions,
                ..SServerOptions::new(name)
            })
            .await?,
        );
    }
    Ok(servers)
}

async fn rustls_backends(
    options: impl Fn(&str) -> BackendOptions,
) -> io::Result<Vec<RunningBackend>> {
    let mut backends = Vec::new();
    for name in NAMES {
        backends.push(Backend::start(options(name)).await?);
    }
    Ok(backends)
}

fn named(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<(String, SocketAddr)> {
    NAMES.iter().map(|n| n.to_string()).zip(addrs).collect()
}

/// A rustls victim and the backend that owns its newest session.
struct Held {
    victim: Victim,
    owner: String,
}

/// Each victim resumes once from a fresh address where the balancer would
/// not pick its owner; counts those that resumed on it. The owner is then
/// whoever answered (a full handshake elsewhere makes a new session there).
async fn resume_away(held: &mut [Held], addrs: &mut Addresses, router: &Router) -> Figure {
    let mut ok = 0;
    for h in held.iter_mut() {
        let from = addrs.away_from(&h.owner);
        match h.victim.visit(router.listen, from, VISIT).await {
            Ok(v) => {
                if v.resumed && v.backend == h.owner {
                    ok += 1;
                } else if !v.resumed {
                    h.owner = v.backend;
                }
            }
            Err(e) => eprintln!("[attack] a victim failed: {e}"),
        }
    }
    Figure::rate(ok, held.len())
}

/// 1. Forged key names: victims hold TLS 1.3 tickets of `b1` (OpenSSL,
/// stateless tickets starting with its key name); the attacker, holding
/// one ticket of its own, offers PSK identities `name || garbage`.
pub async fn forged_key_names(lab: &Lab) -> io::Result<Vec<Row>> {
    let servers = s_servers(true, Versions::Tls13).await?;
    let router = lab
        .router(
            "forged-key-names",
            Config {
                backends: named(servers.iter().map(SServer::addr)),
                ..Config::default()
            },
        )
        .await?;
    let mut addrs = Addresses::new(11, &NAMES);
    let n = lab.scale(10, 5);
    let forged = lab.scale(50, 20);
    let mut held = Vec::new();
    for _ in 0..n {
        let victim = Victim::new(Versions::Tls13, true);
        let home = addrs.placed_on("b1");
        let first = victim.visit(router.listen, home, VISIT).await?;
        // From home again: a resumption the router re-binds to this
        // address's backend, which teaches it the identity and the name.
        victim.visit(router.listen, home, VISIT).await?;
        held.push(Held {
            victim,
            owner: first.backend,
        });
    }
    let before = resume_away(&mut held, &mut addrs, &router).await;

    let attacker = Victim::new(Versions::Tls13, true);
    let from = addrs.placed_on("b1");
    attacker.visit(router.listen, from, VISIT).await?;
    let identity = hello::first_psk_identity(&attacker.hello()?)
        .ok_or_else(|| io::Error::other("the attacker got no TLS 1.3 ticket from b1"))?;
    let name = identity.get(..16).unwrap_or_default().to_vec();
    let mut answered = 0;
    for _ in 0..forged {
        let mut id = name.clone();
        id.extend(hello::random(identity.len().saturating_sub(16).max(16)));
        let h = Hello {
            tls13_only: true,
            sni: Some("localhost".into()),
            psk_identity: Some(id),
            ..Hello::default()
        };
        if hello::send(from, router.listen, &h.record()).await? == Answer::Answered {
            answered += 1;
        }
    }
    let during = resume_away(&mut held, &mut addrs, &router).await;
    drop(servers);
    Ok(vec![Row {
        attack: "1 forged key names".into(),
        measure: format!(
            "TLS 1.3 resumptions of b1's tickets (OpenSSL) reaching b1, from new addresses; \
             attack: {forged} hellos from one address, PSK identity = b1's key name followed by garbage \
             ({answered} answered)"
        ),
        before,
        during,
        after: None,
    }])
}

/// A TLS 1.2 `s_client` victim (session ID in clear) and its owner.
struct Sessioned {
    client: SClient,
    owner: String,
    session_id: Vec<u8>,
    cipher: String,
}

async fn s_client_victims(
    n: usize,
    addrs: &mut Addresses,
    router: &Router,
) -> io::Result<Vec<Sessioned>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let client = SClient::new(SClientOptions {
            versions: Versions::Tls12,
            no_ticket: true,
            ..SClientOptions::default()
        })?;
        let report = client.connect(router.listen, Some(addrs.any())).await?;
        let session_id = report
            .session_id
            .as_deref()
            .and_then(|id| hex::decode(id).ok())
            .ok_or_else(|| io::Error::other("s_client printed no session ID"))?;
        let cipher = report
            .transcript
            .lines()
            .find_map(|l| {
                l.split_once("Cipher is ")
                    .map(|(_, c)| c.trim().to_string())
            })
            .unwrap_or_default();
        out.push(Sessioned {
            client,
            owner: report.backend.unwrap_or_default(),
            session_id,
            cipher,
        });
    }
    Ok(out)
}

async fn s_client_resume_away(
    victims: &[Sessioned],
    addrs: &mut Addresses,
    router: &Router,
) -> Figure {
    let mut ok = 0;
    for v in victims {
        match v
            .client
            .connect(router.listen, Some(addrs.away_from(&v.owner)))
            .await
        {
            Ok(r) if r.reused && r.backend.as_deref() == Some(v.owner.as_str()) => ok += 1,
            Ok(_) => {}
            Err(e) => eprintln!("[attack] a victim failed: {e}"),
        }
    }
    Figure::rate(ok, victims.len())
}

/// 2a. Unresumable hellos: victims hold TLS 1.2 sessions (OpenSSL, session
/// IDs); the attacker sends, per victim, a TLS 1.3-only hello carrying the
/// victim's session ID as its legacy_session_id.
pub async fn unresumable_hellos(lab: &Lab) -> io::Result<Vec<Row>> {
    let servers = s_servers(false, Versions::Both).await?;
    let router = lab
        .router(
            "unresumable-hellos",
            Config {
                backends: named(servers.iter().map(SServer::addr)),
                ..Config::default()
            },
        )
        .await?;
    let mut addrs = Addresses::new(12, &NAMES);
    let victims = s_client_victims(lab.scale(10, 5), &mut addrs, &router).await?;
    let before = s_client_resume_away(&victims, &mut addrs, &router).await;
    let from = addrs.any();
    let mut answered = 0;
    for v in &victims {
        let h = Hello {
            tls13_only: true,
            session_id: v.session_id.clone(),
            sni: Some("localhost".into()),
            ..Hello::default()
        };
        if hello::send(from, router.listen, &h.record()).await? == Answer::Answered {
            answered += 1;
        }
    }
    let during = s_client_resume_away(&victims, &mut addrs, &router).await;
    drop(servers);
    Ok(vec![Row {
        attack: "2 unresumable hellos (TLS 1.3-only)".into(),
        measure: format!(
            "TLS 1.2 session-ID resumptions (OpenSSL) reaching their owner, from new addresses; \
             attack: one TLS 1.3-only hello per victim carrying its session ID ({answered} answered)"
        ),
        before,
        during,
        after: None,
    }])
}

/// OpenSSL's names of the ECDSA TLS 1.2 suites (and their codes).
const ECDSA_SUITES: [(&str, u16); 5] = [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", 0xc02b),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", 0xc02c),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", 0xcca9),
    ("ECDHE-ECDSA-AES128-SHA256", 0xc023),
    ("ECDHE-ECDSA-AES256-SHA384", 0xc024),
];

/// 2b. The cipher-suite case against Java's JSSE: the attacker offers a
/// victim's session ID in a TLS 1.2 hello without the session's suite.
pub async fn jsse_cipher_suite(lab: &Lab) -> io::Result<Vec<Row>> {
    let ca = TestCa::shared();
    let mut files: Vec<PemFiles> = Vec::new();
    let mut specs = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let pem = ca.write_pem(&ca.leaf(name))?;
        specs.push((
            name.to_string(),
            lab.ports + 6 + i as u16,
            pem.cert.clone(),
            pem.key.clone(),
        ));
        files.push(pem);
    }
    let java = JavaServers::start(&lab.work, &specs).await?;
    let router = lab
        .router(
            "jsse-cipher-suite",
            Config {
                backends: named((0..3).map(|i| lab.port(6 + i))),
                ..Config::default()
            },
        )
        .await?;
    let mut addrs = Addresses::new(13, &NAMES);
    let victims = s_client_victims(lab.scale(10, 5), &mut addrs, &router).await?;
    let before = s_client_resume_away(&victims, &mut addrs, &router).await;
    let from = addrs.any();
    let forger = Forger::new(&lab.work.join("forger"), router.listen, from).await?;
    let mut full = 0;
    for v in &victims {
        let ciphers: Vec<&str> = ECDSA_SUITES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| *name != v.cipher)
            .collect();
        if forger
            .offer(router.listen, from, &v.session_id, &ciphers.join(":"))
            .await?
        {
            full += 1;
        }
    }
    let during = s_client_resume_away(&victims, &mut addrs, &router).await;
    java.stop().await;
    drop(files);
    Ok(vec![Row {
        attack: "2 unresumable hellos (JSSE cipher suite)".into(),
        measure: format!(
            "TLS 1.2 session-ID resumptions (OpenSSL client, Java 17 JSSE servers) reaching their owner, \
             from new addresses; attack: one TLS 1.2 hello per victim with its session ID but not its \
             cipher suite, completed by a real client ({full} full handshakes)"
        ),
        before,
        during,
        after: None,
    }])
}

/// 3. Table flood: `table_size = 200`, victims resumed twice, then
/// one-hit full handshakes from as many distinct addresses.
pub async fn table_flood(lab: &Lab) -> io::Result<Vec<Row>> {
    let servers = s_servers(false, Versions::Both).await?;
    let router = lab
        .router(
            "table-flood",
            Config {
                backends: named(servers.iter().map(SServer::addr)),
                affinity: "table_size = 200",
                ..Config::default()
            },
        )
        .await?;
    let mut addrs = Addresses::new(14, &NAMES);
    let flood = lab.scale(2000, 600);
    let mut held = Vec::new();
    for _ in 0..20 {
        let victim = Victim::new(Versions::Tls12, true);
        let home = addrs.any();
        let first = victim.visit(router.listen, home, VISIT).await?;
        // First resumption, from home; the second is the "before" figure.
        victim.visit(router.listen, home, VISIT).await?;
        held.push(Held {
            victim,
            owner: first.backend,
        });
    }
    let before = resume_away(&mut held, &mut addrs, &router).await;

    let one_hit = Victim::new(Versions::Tls12, false);
    let gate = Arc::new(Semaphore::new(16));
    let mut tasks = JoinSet::new();
    for _ in 0..flood {
        let (client, from, to, gate) = (one_hit.clone(), addrs.any(), router.listen, gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            client.visit(to, from, VISIT).await.is_ok()
        });
    }
    let mut done = 0;
    while let Some(ok) = tasks.join_next().await {
        done += usize::from(ok.unwrap_or(false));
    }
    let entries = router
        .table_entries()
        .await
        .map(|e| e.to_string())
        .unwrap_or_else(|e| e.to_string());
    let during = resume_away(&mut held, &mut addrs, &router).await;
    drop(servers);
    Ok(vec![Row {
        attack: "3 table flood".into(),
        measure: format!(
            "TLS 1.2 session-ID resumptions (OpenSSL servers) of 20 sessions resumed twice, reaching \
             their owner from new addresses; table_size = 200; attack: {flood} one-hit full handshakes \
             from {flood} addresses ({done} completed; table entries after it: {entries})"
        ),
        before,
        during,
        after: None,
    }])
}

/// 4. Slot hogging: a 40-slot listener; one address opens 40 TLS
/// connections and leaves them idle; others' handshakes meanwhile.
pub async fn slot_hogging(lab: &Lab) -> io::Result<Vec<Row>> {
    let backends = rustls_backends(|name| BackendOptions::new(name)).await?;
    let router = lab
        .router(
            "slot-hogging",
            Config {
                backends: named(backends.iter().map(RunningBackend::addr)),
                listener: "max_connections = 40",
                ..Config::default()
            },
        )
        .await?;
    let mut addrs = Addresses::new(15, &NAMES);
    let others: Vec<IpAddr> = (0..5).map(|_| addrs.any()).collect();
    let client = Client::new(ClientOptions {
        timeout: Duration::from_secs(2),
        resumption: false,
        ..ClientOptions::default()
    })
    .map_err(io::Error::other)?;
    let within = |client: Client, to: SocketAddr, others: Vec<IpAddr>| async move {
        let mut ok = 0;
        let mut slowest = Duration::ZERO;
        for from in others {
            let start = std::time::Instant::now();
            if client.connect(to, Some(from)).await.is_ok() {
                ok += 1;
                slowest = slowest.max(start.elapsed());
            }
        }
        (Figure::rate(ok, 5), slowest)
    };
    let (before, _) = within(client.clone(), router.listen, others.clone()).await;

    let hog = addrs.any();
    let holder = Client::new(ClientOptions {
        timeout: Duration::from_secs(3),
        resumption: false,
        ..ClientOptions::default()
    })
    .map_err(io::Error::other)?;
    let mut tasks = JoinSet::new();
    for _ in 0..40 {
        let (holder, to) = (holder.clone(), router.listen);
        tasks.spawn(async move { holder.open(to, Some(hog), Writes::Whole).await.ok() });
    }
    let mut held = Vec::new();
    while let Some(conn) = tasks.join_next().await {
        held.extend(conn.ok().flatten());
    }
    let holding = held.len();
    let (during, slowest) = within(client.clone(), router.listen, others.clone()).await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = within(client, router.listen, others).await;
    drop(backends);
    Ok(vec![Row {
        attack: "4 slot hogging".into(),
        measure: format!(
            "TLS handshakes of 5 clients from other addresses completing within 2 s; \
             max_connections = 40; attack: one address opens 40 TLS connections and idles \
             (it got {holding}; slowest handshake meanwhile {} ms)",
            slowest.as_millis()
        ),
        before,
        during,
        after: Some(after),
    }])
}

/// 5. Provoked mark-downs: nginx (stream, ssl_preread) in front of each
/// backend closes any connection whose hello names `blocked.example`; one
/// client sends such hellos.
pub async fn mark_downs(lab: &Lab) -> io::Result<Vec<Row>> {
    let backends = rustls_backends(|name| BackendOptions {
        versions: Versions::Both,
        tickets: false,
        session_cache: true,
        ..BackendOptions::new(name)
    })
    .await?;
    let pairs: Vec<(SocketAddr, SocketAddr)> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (lab.port(2 + i as u16), b.addr()))
        .collect();
    let fronts = NginxFronts::start(&lab.work, "blocked.example", lab.port(5), &pairs).await?;
    let router = lab
        .router(
            "mark-downs",
            Config {
                backends: named(fronts.fronts.iter().copied()),
                health: "tcp",
                ..Config::default()
            },
        )
        .await?;
    let mut addrs = Addresses::new(16, &NAMES);
    let mut held = Vec::new();
    for name in NAMES {
        for _ in 0..3 {
            let victim = Victim::new(Versions::Tls12, true);
            let first = victim
                .visit(router.listen, addrs.placed_on(name), VISIT)
                .await?;
            held.push(Held {
                victim,
                owner: first.backend,
            });
        }
    }
    let before = resume_away(&mut held, &mut addrs, &router).await;
    let from = addrs.any();
    let hellos = 30;
    let mut closed = 0;
    for _ in 0..hellos {
        let h = Hello {
            tls13_only: true,
            sni: Some("blocked.example".into()),
            ..Hello::default()
        };
        if hello::send(from, router.listen, &h.record()).await? != Answer::Answered {
            closed += 1;
        }
    }
    let states = router.backend_states().await?;
    let up = states.iter().filter(|(_, s)| s == "up").count();
    let during = resume_away(&mut held, &mut addrs, &router).await;
    // down_hold is 10 s by default.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = resume_away(&mut held, &mut addrs, &router).await;
    fronts.stop().await;
    drop(backends);
    let states: Vec<String> = states.iter().map(|(b, s)| format!("{b} {s}")).collect();
    Ok(vec![
        Row {
            attack: "5 provoked mark-downs".into(),
            measure: format!(
                "TLS 1.2 resumptions of 9 victims (3 per backend) reaching their owner, from new \
                 addresses; attack: {hellos} hellos from one address naming an SNI every backend's \
                 WAF (nginx) closes ({closed} closed); after: past down_hold (10 s)"
            ),
            before,
            during,
            after: Some(after),
        },
        Row {
            attack: "5 provoked mark-downs".into(),
            measure: format!("backends up in the admin API ({})", states.join(", ")),
            before: Figure::rate(3, 3),
            during: Figure::rate(up, 3),
            after: None,
        },
    ])
}

/// 6. Hello-stage memory: connections that send 16 KB of a hello as
/// 1-byte records and stall; then the same number sending a 5-byte
/// record header only.
pub async fn hello_memory(lab: &Lab) -> io::Result<Vec<Row>> {
    let backends = rustls_backends(|name| BackendOptions::new(name)).await?;
    let router = lab
        .router(
            "hello-memory",
            Config {
                backends: named(backends.iter().map(RunningBackend::addr)),
                // Long enough to measure before the router gives up on them.
                timeouts: "hello = \"120s\"",
                ..Config::default()
            },
        )
        .await?;
    let mut addrs = Addresses::new(17, &NAMES);
    let n = lab.scale(200, 100);
    // Warm the router up: its runtimes and tables allocate on first use.
    let warm = Victim::new(Versions::Both, true);
    for _ in 0..5 {
        warm.visit(router.listen, addrs.any(), VISIT).await?;
    }
    let mut rows = Vec::new();
    let shapes: [(&str, Vec<u8>); 2] = [
        // The header alone first: what the bigger shape leaves in the
        // allocator would hide its cost.
        ("a 5-byte record header", vec![0x16, 0x03, 0x01, 0x40, 0x00]),
        (
            "16 KB of 1-byte records",
            hello::stalled_one_byte_records(16 * 1024),
        ),
    ];
    for (shape, bytes) in shapes {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss0 = router.rss_kib()?;
        let mut open = Vec::new();
        for _ in 0..n {
            let mut s = hello::connect_from(addrs.any(), router.listen).await?;
            s.write_all(&bytes).await?;
            open.push(s);
        }
        // Let the router read what was sent.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = router.rss_kib()?;
        drop(open);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss2 = router.rss_kib()?;
        let per = (rss1 as f64 - rss0 as f64) / n as f64;
        rows.push(Row {
            attack: "6 hello-stage memory".into(),
            measure: format!(
                "router RSS with {n} connections stalled after {shape} ({} bytes each); \
                 growth per connection: {per:.1} KiB",
                bytes.len()
            ),
            before: Figure::Kib(rss0),
            during: Figure::Kib(rss1),
            after: Some(Figure::Kib(rss2)),
        });
    }
    drop(backends);
    Ok(rows)
}
