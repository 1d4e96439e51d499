//! `stickytls selftest`: is every resumption sent back to the backend that
//! issued its session? Asked from outside, as a client, of a live router and
//! its real backends.
//!
//! For each resumption kind (TLS 1.2 session IDs, TLS 1.2 tickets, TLS 1.3
//! PSKs) it makes N sessions, each from its own source address, then resumes
//! each one from a *different* address, where the router has no history to
//! fall back on: only the session itself can bring it home. TLS 1.3 sessions
//! are first resumed once from their original address, as a real client
//! would, so the router can confirm each backend's ticket key name (its
//! tickets travel encrypted; see docs/routing.md).
//!
//! Who answered is read from what any client can see: the leaf certificate
//! of a full handshake, or with `--http` a header or the body of the answer
//! to a GET. A resumed handshake shows no certificate, so with certificates
//! a resumption is counted on the issuer (only a server holding the
//! session's secret can resume it). What each connection offered and was
//! given is read from its own recorded hellos with the handshake inspector.
//!
//! Layout: this file runs the phases; [`report`] holds the results, the
//! table, the reasons and the JSON.

pub mod report;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use stickytls_peers::Versions;
use stickytls_peers::probe::{HttpRequest, Probe, ProbeError, ProbeOptions, Visit};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::parse_duration;
use crate::inspect::{Handshake, Limits};
pub(crate) use report::{Attempt, BackendSeen, KindResult, Outcome, Report};

/// A resumption kind, tested on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// TLS 1.2, the server's session cache: the client offers the session
    /// ID the server assigned.
    Tls12SessionId,
    /// TLS 1.2, RFC 5077: the client offers the ticket the server issued.
    Tls12Ticket,
    /// TLS 1.3: the client offers a PSK identity (an encrypted ticket).
    Tls13Psk,
}

impl Kind {
    /// Every kind, in the order they run and print.
    pub const ALL: [Kind; 3] = [Kind::Tls12SessionId, Kind::Tls12Ticket, Kind::Tls13Psk];

    /// The command-line and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tls12SessionId => "tls12-session-id",
            Kind::Tls12Ticket => "tls12-ticket",
            Kind::Tls13Psk => "tls13-psk",
        }
    }

    /// The name in the table.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Tls12SessionId => "TLS 1.2 session ID",
            Kind::Tls12Ticket => "TLS 1.2 ticket",
            Kind::Tls13Psk => "TLS 1.3 PSK",
        }
    }

    /// Parses [`as_str`](Kind::as_str).
    pub fn parse(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown kind {s:?}; expected tls12-session-id, tls12-ticket or tls13-psk")
            })
    }

    /// How the probe for this kind is set up.
    fn probe_options(self) -> (Versions, bool) {
        match self {
            Kind::Tls12SessionId => (Versions::Tls12, false),
            Kind::Tls12Ticket => (Versions::Tls12, true),
            Kind::Tls13Psk => (Versions::Tls13, false),
        }
    }
}

/// How backends are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identify {
    /// By the leaf certificate of each full handshake (its SHA-256).
    Certificate,
    /// By the body of the answer to `GET path`.
    HttpBody {
        /// The request target, e.g. `/whoami`.
        path: String,
    },
    /// By a header of the answer to `GET path`.
    HttpHeader {
        /// The request target.
        path: String,
        /// The header naming the backend, e.g. `X-Backend`.
        header: String,
    },
}

impl Identify {
    /// Told apart by something in an HTTP answer.
    fn http_path(&self) -> Option<&str> {
        match self {
            Identify::Certificate => None,
            Identify::HttpBody { path } | Identify::HttpHeader { path, .. } => Some(path),
        }
    }

    /// A resumed handshake shows who answered (only HTTP does).
    fn sees_resumed(&self) -> bool {
        self.http_path().is_some()
    }
}

impl fmt::Display for Identify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identify::Certificate => f.write_str("their certificate"),
            Identify::HttpBody { path } => write!(f, "the body of GET {path}"),
            Identify::HttpHeader { path, header } => {
                write!(f, "the {header} header of GET {path}")
            }
        }
    }
}

/// What to test and how.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The router's listening address.
    pub target: SocketAddr,
    /// Sessions per kind.
    pub sessions: usize,
    /// SNI to send; `None` sends none.
    pub sni: Option<String>,
    /// Below this share of resumptions on their issuer (per kind), fail.
    pub min_rate: f64,
    /// How backends are told apart.
    pub identify: Identify,
    /// Local addresses to bind; empty means fresh, random addresses in
    /// 127.0.0.0/8 (for a router on this machine).
    pub sources: Vec<IpAddr>,
    /// Kinds to test, in order.
    pub kinds: Vec<Kind>,
    /// Bound on each connection.
    pub timeout: Duration,
    /// Connections at once within a phase.
    pub concurrency: usize,
}

/// Why selftest could not start: a mistake in its options or on this
/// host, not a routing result. The process exits 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    /// The options contradict each other or the target.
    #[error("{0}")]
    Options(String),
    /// A `--source` address is not one of this host's.
    #[error("cannot bind source address {ip}: {source}")]
    Bind {
        ip: IpAddr,
        #[source]
        source: io::Error,
    },
    /// The TLS client could not be built (rustls refused its settings).
    #[error("cannot set up the TLS client: {0}")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where each session connects from.
#[derive(Debug)]
enum Sources {
    /// Never-used addresses of 127.0.0.0/8, counting up from a random one.
    Loopback {
        /// Offset of the next address from [`LOOPBACK_FIRST`].
        next: u32,
    },
    /// The operator's addresses, each reused in turn.
    Given {
        /// At least two, all bindable.
        ips: Vec<IpAddr>,
        /// The next session's home address, as an index into `ips`.
        next: usize,
    },
}

/// Where random loopback addresses are taken from: 127.1.0.0 up to
/// 127.254.255.255, so 127.0.0.x (often used by hand) is never touched.
const LOOPBACK_FIRST: u32 = u32::from_be_bytes([127, 1, 0, 0]);
const LOOPBACK_SPAN: u32 = u32::from_be_bytes([0, 254, 0, 0]);

impl Sources {
    fn new(options: &Options) -> Result<Sources, SetupError> {
        if !options.sources.is_empty() {
            if options.sources.len() < 2 {
                return Err(SetupError::Options(
                    "--source needs at least two addresses: each session is resumed from an address other than its own".into(),
                ));
            }
            for ip in &options.sources {
                if ip.is_ipv4() != options.target.is_ipv4() {
                    return Err(SetupError::Options(format!(
                        "source {ip} and target {} are of different address families",
                        options.target
                    )));
                }
                check_bindable(*ip)?;
            }
            return Ok(Sources::Given {
                ips: options.sources.clone(),
                next: 0,
            });
        }
        match options.target.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => {}
            _ => {
                return Err(SetupError::Options(format!(
                    "the target {} is not on 127.0.0.0/8, so fresh loopback source addresses cannot reach it: give this host's addresses with --source (at least two)",
                    options.target
                )));
            }
        }
        // Fresh addresses on every run, so none has history in the router
        // from an earlier run (its address-based rules could then place a
        // resumption by luck).
        let next = (Random::new().next() % u64::from(LOOPBACK_SPAN)) as u32;
        Ok(Sources::Loopback { next })
    }

    /// A session's home address and the different one it resumes from.
    fn pair(&mut self) -> (IpAddr, IpAddr) {
        match self {
            Sources::Loopback { next } => (Sources::fresh(next), Sources::fresh(next)),
            Sources::Given { ips, next } => {
                let home = ips[*next % ips.len()];
                let away = ips[(*next + 1) % ips.len()];
                *next += 1;
                (home, away)
            }
        }
    }

    /// The next loopback address whose last octet is neither 0 nor 255.
    fn fresh(next: &mut u32) -> IpAddr {
        loop {
            let ip = LOOPBACK_FIRST + *next % LOOPBACK_SPAN;
            *next = next.wrapping_add(1);
            if !matches!(ip & 0xff, 0 | 255) {
                return IpAddr::V4(Ipv4Addr::from(ip));
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Sources::Loopback { .. } => "fresh random addresses of 127.0.0.0/8, one per connection (none used before, so the router has no history for them)".into(),
            Sources::Given { ips, .. } => format!(
                "{} (each session resumes from the next address in the list; an address with history lets the router's address-based rules place a resumption by luck)",
                ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

fn check_bindable(ip: IpAddr) -> Result<(), SetupError> {
    let socket = match ip {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    };
    socket
        .and_then(|s| s.bind(SocketAddr::new(ip, 0)))
        .map_err(|source| SetupError::Bind { ip, source })
}

/// One session of one kind.
struct Session {
    /// Its session store.
    probe: Probe,
    /// Where it is made (and, for TLS 1.3, first resumed).
    home: IpAddr,
    /// Where it is resumed from.
    away: IpAddr,
    /// The backend holding the session, once known.
    issuer: Option<usize>,
}

/// `stickytls selftest`'s command line.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The router's listening address.
    #[arg(long, value_name = "ADDR")]
    target: SocketAddr,
    /// Sessions per resumption kind; each is made from one source address
    /// and resumed from another.
    #[arg(long = "connections", value_name = "N", default_value_t = 30)]
    connections: usize,
    /// Server name to send (none by default).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// Fail (exit 1) when a kind's share of resumptions that reached their
    /// issuing backend and resumed is below this.
    #[arg(long, value_name = "R", default_value_t = 0.99)]
    min_rate: f64,
    /// Tell backends apart by the answer to an HTTP/1.1 GET (its body, or
    /// the --http-header) instead of by their certificate.
    #[arg(long)]
    http: bool,
    /// The path to GET with --http.
    #[arg(long, value_name = "PATH", default_value = "/", requires = "http")]
    http_path: String,
    /// With --http, the response header naming the backend (else the body).
    #[arg(long, value_name = "NAME", requires = "http")]
    http_header: Option<String>,
    /// A local address to connect from (configured on this host); give at
    /// least two. Default: fresh random addresses of 127.0.0.0/8, for a
    /// router on this machine.
    #[arg(long = "source", value_name = "ADDR", num_args = 1..)]
    sources: Vec<IpAddr>,
    /// Resumption kinds to test, comma-separated: tls12-session-id,
    /// tls12-ticket, tls13-psk.
    #[arg(long, value_name = "KIND", value_delimiter = ',', value_parser = Kind::parse,
          default_value = "tls12-session-id,tls12-ticket,tls13-psk")]
    kinds: Vec<Kind>,
    /// Bound on each connection (connect, handshake, answer, and the wait
    /// for a TLS 1.3 ticket).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// Connections at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
    /// Print the findings as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// `stickytls selftest`: the options `args` give, checked and run by
/// [`run_and_print`].
pub fn cli(args: Args) -> ExitCode {
    let identify = match (args.http, args.http_header) {
        (false, _) => Identify::Certificate,
        (true, None) => Identify::HttpBody {
            path: args.http_path,
        },
        (true, Some(header)) => Identify::HttpHeader {
            path: args.http_path,
            header,
        },
    };
    let options = Options {
        target: args.target,
        sessions: args.connections,
        sni: args.sni,
        min_rate: args.min_rate,
        identify,
        sources: args.sources,
        kinds: args.kinds,
        timeout: args.timeout,
        concurrency: args.concurrency,
    };
    run_and_print(&options, args.json)
}

/// Runs every kind, prints the findings (a table, or JSON with `json`),
/// and says how the process exits: 0 when every kind passed, 1 when one
/// did not (or the findings could not be printed), 2 on a set-up mistake
/// (printed on stderr).
pub(crate) fn run_and_print(options: &Options, json: bool) -> ExitCode {
    let report = match super::block_on("selftest", run(options)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("stickytls selftest: {e}");
            return ExitCode::from(super::USAGE);
        }
        Err(code) => return code,
    };
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_string_pretty(&report.to_json())
            .map_err(io::Error::other)
            .and_then(|j| writeln!(out, "{j}"))
    } else {
        report.write_text(&mut out)
    };
    if let Err(e) = written {
        eprintln!("stickytls selftest: {e}");
        return ExitCode::from(1);
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs every kind and returns what was found. Fails only on set-up
/// mistakes; connection failures are results.
pub(crate) async fn run(options: &Options) -> Result<Report, SetupError> {
    if options.sessions == 0 {
        return Err(SetupError::Options(
            "--connections must be at least 1".into(),
        ));
    }
    if !(0.0..=1.0).contains(&options.min_rate) {
        return Err(SetupError::Options(
            "--min-rate must be between 0 and 1".into(),
        ));
    }
    let mut sources = Sources::new(options)?;
    let mut report = Report {
        target: options.target,
        identify: options.identify.clone(),
        sessions: options.sessions,
        min_rate: options.min_rate,
        sources: sources.describe(),
        backends: Vec::new(),
        kinds: Vec::new(),
    };
    let mut backends = Registry::default();
    for &kind in &options.kinds {
        let result = run_kind(options, kind, &mut sources, &mut backends).await?;
        report.kinds.push(result);
    }
    report.backends = backends.list;
    report.sort_backends();
    Ok(report)
}

async fn run_kind(
    options: &Options,
    kind: Kind,
    sources: &mut Sources,
    backends: &mut Registry,
) -> Result<KindResult, SetupError> {
    let (versions, tls12_tickets) = kind.probe_options();
    let probe_options = ProbeOptions {
        versions,
        tls12_tickets,
        sni: options.sni.clone(),
        http: options.identify.http_path().map(|path| HttpRequest {
            path: path.to_string(),
            host: options
                .sni
                .clone()
                .unwrap_or_else(|| options.target.to_string()),
        }),
        timeout: options.timeout,
    };
    let mut sessions = Vec::new();
    for _ in 0..options.sessions {
        let (home, away) = sources.pair();
        let probe = Probe::new(probe_options.clone(), options.target)
            .map_err(|e| SetupError::Tls(e.into()))?;
        sessions.push(Session {
            probe,
            home,
            away,
            issuer: None,
        });
    }
    let mut result = KindResult::new(kind);

    // 1. A full handshake per session, from its home address.
    let visits = visit_all(options, &sessions, |_, _| true, |s| s.home).await;
    for (session, visit) in sessions.iter_mut().zip(visits) {
        let Some(visit) = visit else {
            result.skip("the first connection's task failed".into());
            continue;
        };
        let visit = match visit {
            Ok(v) => v,
            Err(e) => {
                result.skip(format!("the first connection failed: {e}"));
                continue;
            }
        };
        let Some(id) = backends.identify(&options.identify, &visit) else {
            result.skip(format!(
                "the first connection's answer did not name its backend ({})",
                options.identify
            ));
            continue;
        };
        backends.count(id, visit.resumed);
        if visit.resumed {
            // A fresh store has nothing to offer; a server that says it
            // resumed is broken.
            result.skip(
                "the first connection claims to have resumed a session it was never given".into(),
            );
            continue;
        }
        match resumable(kind, &visit) {
            Ok(()) => {
                session.issuer = Some(id);
                result.sessions_made += 1;
            }
            Err(why) => result.skip(why.into()),
        }
    }

    // 2. TLS 1.3: resume once from home, as a real client would, so the
    // router sees each backend accept identities with its key name. The
    // router routes on a name once two resumptions with it were accepted
    // on one backend, so a backend that holds a single session (few
    // sessions, many backends) gets that session resumed once more.
    if kind == Kind::Tls13Psk {
        let visits = visit_all(options, &sessions, made, |s| s.home).await;
        for (session, visit) in sessions.iter_mut().zip(visits) {
            if let Some(attempt) = attempt(options, kind, session, visit, backends) {
                result.warm_up.push(attempt);
            }
        }
        let mut accepted: HashMap<usize, usize> = HashMap::new();
        for a in result
            .warm_up
            .iter()
            .filter(|a| a.outcome == Outcome::Resumed)
        {
            *accepted.entry(a.issuer).or_default() += 1;
        }
        let again: Vec<bool> = sessions
            .iter()
            .map(|s| {
                s.issuer
                    .is_some_and(|b| accepted.get(&b).copied().unwrap_or(0) < 2)
            })
            .collect();
        if again.contains(&true) {
            let visits = visit_all(options, &sessions, |i, _| again[i], |s| s.home).await;
            for (session, visit) in sessions.iter_mut().zip(visits) {
                if let Some(attempt) = attempt(options, kind, session, visit, backends) {
                    result.warm_up.push(attempt);
                }
            }
        }
    }

    // 3. Resume each session from an address of its own.
    let visits = visit_all(options, &sessions, made, |s| s.away).await;
    for (session, visit) in sessions.iter_mut().zip(visits) {
        if let Some(attempt) = attempt(options, kind, session, visit, backends) {
            result.attempts.push(attempt);
        }
    }
    Ok(result)
}

/// The sessions that were made (a later phase's filter).
fn made(_: usize, s: &Session) -> bool {
    s.issuer.is_some()
}

/// Whether the first connection gave the client a session of this kind.
fn resumable(kind: Kind, visit: &Visit) -> Result<(), &'static str> {
    let wire = Wire::read(visit);
    match kind {
        Kind::Tls12SessionId if !wire.issued_session_id => {
            Err("the server assigned no session ID (is its session cache off?)")
        }
        Kind::Tls12Ticket if !wire.issued_ticket => {
            Err("the server issued no TLS 1.2 ticket (are its session tickets off?)")
        }
        Kind::Tls13Psk if visit.tls13_tickets == 0 => Err(
            "the server sent no TLS 1.3 ticket before the timeout (are its session tickets off?)",
        ),
        _ => Ok(()),
    }
}

/// Classifies one resumption attempt and moves the session's issuer to
/// whoever holds it now. `None` for sessions that were never made.
fn attempt(
    options: &Options,
    kind: Kind,
    session: &mut Session,
    visit: Option<Result<Visit, ProbeError>>,
    backends: &mut Registry,
) -> Option<Attempt> {
    let issuer = session.issuer?;
    let visit = match visit? {
        Ok(v) => v,
        Err(e) => {
            return Some(Attempt {
                issuer,
                outcome: Outcome::Failed(e.to_string()),
            });
        }
    };
    if !Wire::read(&visit).offers(kind) {
        return Some(Attempt {
            issuer,
            outcome: Outcome::NotOffered,
        });
    }
    let seen = backends.identify(&options.identify, &visit);
    let outcome = match (seen, visit.resumed) {
        // A resumed handshake shows no certificate: only a server holding
        // the session's secret can resume it, so it is the issuer (or shares
        // its keys, which only --http can tell).
        (None, true) if !options.identify.sees_resumed() => {
            backends.count(issuer, true);
            Outcome::Resumed
        }
        (None, resumed) => Outcome::Unidentified { resumed },
        (Some(id), resumed) => {
            backends.count(id, resumed);
            session.issuer = Some(id);
            match (id == issuer, resumed) {
                (true, true) => Outcome::Resumed,
                (true, false) => Outcome::IssuerDidNotResume,
                (false, true) => Outcome::ResumedElsewhere(id),
                (false, false) => Outcome::OtherBackend(id),
            }
        }
    };
    Some(Attempt { issuer, outcome })
}

/// One connection per `wanted` session, at most `concurrency` at once,
/// answers in session order; the sessions not wanted get `None`.
async fn visit_all(
    options: &Options,
    sessions: &[Session],
    wanted: impl Fn(usize, &Session) -> bool,
    from: impl Fn(&Session) -> IpAddr,
) -> Vec<Option<Result<Visit, ProbeError>>> {
    let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut out: Vec<Option<Result<Visit, ProbeError>>> = sessions.iter().map(|_| None).collect();
    // In an order of its own each phase: resuming in the order the sessions
    // were made would let a round-robin pool put every resumption on its
    // issuer by chance whenever the number of sessions is a multiple of the
    // number of backends. (The semaphore is fair, so tasks start in the
    // order they are spawned.)
    let mut index = HashMap::new();
    let mut order: Vec<usize> = (0..sessions.len()).collect();
    Random::new().shuffle(&mut order);
    for i in order {
        let s = &sessions[i];
        if !wanted(i, s) {
            continue;
        }
        let probe = s.probe.clone();
        let (target, source) = (options.target, from(s));
        let limit = limit.clone();
        let task = tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            probe.connect(target, Some(source)).await
        });
        index.insert(task.id(), i);
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, visit) = match joined {
            Ok((id, visit)) => (id, visit),
            // A panic is a bug of ours, but still a connection that did not
            // give an answer: count it, never drop it.
            Err(e) => (
                e.id(),
                Err(ProbeError::Connect(io::Error::other(format!(
                    "the connection task failed: {e}"
                )))),
            ),
        };
        if let Some(&i) = index.get(&id) {
            out[i] = Some(visit);
        }
    }
    out
}

/// A small xorshift generator: it picks source addresses and connection
/// orders, nothing secret, so the standard library's per-process random
/// hash keys are a good enough seed.
#[derive(Debug)]
struct Random(u64);

impl Random {
    fn new() -> Random {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(u64::from(std::process::id()));
        Random(h.finish() | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64* (Vigna 2016).
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// What the recorded hellos say: what the client offered, what the server
/// gave. Read with the router's own inspector.
#[derive(Debug, Default)]
struct Wire {
    /// The hello offered a TLS 1.2 session ID (without a ticket).
    offered_session_id: bool,
    /// The hello offered a TLS 1.2 ticket.
    offered_ticket: bool,
    /// The hello offered TLS 1.3 PSK identities.
    offered_psk: bool,
    /// A TLS 1.2 ServerHello carried a session ID.
    issued_session_id: bool,
    /// The server sent a cleartext NewSessionTicket.
    issued_ticket: bool,
}

impl Wire {
    fn read(visit: &Visit) -> Wire {
        let mut h = Handshake::new(Limits {
            max_client_bytes: visit.client_bytes.len().max(16 * 1024),
            max_server_message: 64 * 1024,
        });
        h.feed_client(&visit.client_bytes);
        h.feed_server(&visit.server_bytes);
        let mut wire = Wire::default();
        if let Some(hello) = h.client_hello() {
            wire.offered_ticket = hello.session_ticket.is_some_and(|t| !t.is_empty());
            wire.offered_psk = hello.has_psk;
            wire.offered_session_id =
                !hello.session_id.is_empty() && !wire.offered_ticket && !wire.offered_psk;
        }
        if let Some(outcome) = h.outcome() {
            wire.issued_session_id = outcome.version <= 0x0303 && !outcome.session_id.is_empty();
            wire.issued_ticket = !outcome.new_session_tickets.is_empty();
        }
        wire
    }

    fn offers(&self, kind: Kind) -> bool {
        match kind {
            Kind::Tls12SessionId => self.offered_session_id,
            Kind::Tls12Ticket => self.offered_ticket,
            Kind::Tls13Psk => self.offered_psk,
        }
    }
}

/// The backends seen so far, each under a unique label.
#[derive(Debug, Default)]
struct Registry {
    /// In order of first sight.
    list: Vec<BackendSeen>,
    /// Identity key (fingerprint, header value, body digest) to index.
    by_key: HashMap<String, usize>,
}

impl Registry {
    /// The index of the backend that answered, if the answer names one.
    fn identify(&mut self, how: &Identify, visit: &Visit) -> Option<usize> {
        let (key, name, detail) = match how {
            Identify::Certificate => {
                let cert = visit.certificate.as_ref()?;
                let fp = cert.sha256_hex();
                let name = cert
                    .common_name
                    .clone()
                    .or_else(|| cert.dns_names.first().cloned())
                    .unwrap_or_else(|| format!("sha256:{}", &fp[..12]));
                let subject = cert.subject.clone().unwrap_or_else(|| "?".into());
                (fp.clone(), name, format!("{subject}, sha256 {fp}"))
            }
            Identify::HttpHeader { header, .. } => {
                let value = visit.http.as_ref()?.header(header)?.to_string();
                (value.clone(), value.clone(), format!("{header}: {value}"))
            }
            Identify::HttpBody { .. } => {
                let body = &visit.http.as_ref()?.body;
                let digest: String = Sha256::digest(body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let text = String::from_utf8_lossy(body);
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                let name: String = first.trim().chars().take(24).collect();
                let name = if name.is_empty() {
                    format!("body:{}", &digest[..12])
                } else {
                    name
                };
                (digest.clone(), name, format!("body sha256 {digest}"))
            }
        };
        if let Some(&i) = self.by_key.get(&key) {
            return Some(i);
        }
        // Two backends may share a name (a CN, say) with different keys.
        let mut label = name.clone();
        let mut n = 2;
        while self.list.iter().any(|b| b.label == label) {
            label = format!("{name}#{n}");
            n += 1;
        }
        self.list.push(BackendSeen {
            label,
            detail,
            full_handshakes: 0,
            resumed_handshakes: 0,
        });
        self.by_key.insert(key, self.list.len() - 1);
        Some(self.list.len() - 1)
    }

    fn count(&mut self, id: usize, resumed: bool) {
        let b = &mut self.list[id];
        if resumed {
            b.resumed_handshakes += 1;
        } else {
            b.full_handshakes += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn options(target: &str, sources: &[&str]) -> Options {
        Options {
            target: target.parse().unwrap(),
            sessions: 1,
            sni: None,
            min_rate: 0.99,
            identify: Identify::Certificate,
            sources: sources.iter().map(|s| s.parse().unwrap()).collect(),
            kinds: Kind::ALL.to_vec(),
            timeout: Duration::from_secs(1),
            concurrency: 1,
        }
    }

    #[tokio::test]
    async fn loopback_sources_are_never_reused_and_skip_network_and_broadcast_octets() {
        let mut sources = Sources::new(&options("127.0.0.1:443", &[])).unwrap();
        let mut seen = HashSet::new();
        // Enough pairs to cross several /24 boundaries.
        for _ in 0..700 {
            let (home, away) = sources.pair();
            for ip in [home, away] {
                let IpAddr::V4(v4) = ip else { panic!("{ip}") };
                let [a, b, _, d] = v4.octets();
                assert!(a == 127 && b >= 1 && d != 0 && d != 255, "{ip}");
                assert!(seen.insert(ip), "{ip} used twice");
            }
        }
    }

    #[tokio::test]
    async fn given_sources_resume_each_session_from_the_next_address() {
        let mut sources = Sources::new(&options(
            "127.0.0.1:443",
            &["127.0.0.2", "127.0.0.3", "127.0.0.4"],
        ))
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(sources.pair(), (ip("127.0.0.2"), ip("127.0.0.3")));
        assert_eq!(sources.pair(), (ip("127.0.0.3"), ip("127.0.0.4")));
        assert_eq!(sources.pair(), (ip("127.0.0.4"), ip("127.0.0.2")));
    }

    #[tokio::test]
    async fn sources_that_cannot_work_are_refused() {
        for (target, sources) in [
            ("192.0.2.1:443", &[][..]),
            ("[::1]:443", &[][..]),
            ("127.0.0.1:443", &["127.0.0.2"][..]),
            ("127.0.0.1:443", &["127.0.0.2", "::1"][..]),
        ] {
            assert!(
                Sources::new(&options(target, sources)).is_err(),
                "{target} {sources:?}"
            );
        }
    }

    #[test]
    fn shuffle_is_a_permutation_in_another_order() {
        let mut items: Vec<usize> = (0..30).collect();
        Random::new().shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..30).collect::<Vec<_>>());
        // The identity comes out once in 30! shuffles.
        assert_ne!(items, sorted);
    }

    #[test]
    fn kinds_parse_from_their_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Ok(k));
        }
        assert!(Kind::parse("tls13").is_err());
    }
}
