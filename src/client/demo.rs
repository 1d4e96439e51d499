//! `stickytls demo`: real TLS through the router, connection by connection.
//!
//! Three rustls backends that name themselves (certificates made on the fly
//! by [`stickytls_peers::cert`]), the router in front of them on a free port,
//! and rustls clients bound to chosen 127.0.0.x source addresses. Each
//! scenario prints which backend every connection reached, whether that
//! backend resumed the session (its own view, from its answer line), and
//! the rule and reason the router gave. Then the same scenarios run through
//! a pool with inspection off and plain round robin, for contrast, and a
//! summary table compares the two.
//!
//! Every scenario gets fresh backends and a fresh router, so no scenario's
//! affinity or client history leaks into the next one.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::affinity::{Key, KeyKind};
use crate::config::{BackendConfig, Balance, Config, PoolConfig};
use crate::pool::PoolState;
use crate::router::{Router, RunningRouter};
use stickytls_peers::Versions;
use stickytls_peers::backend::{Backend, BackendOptions, RunningBackend};
use stickytls_peers::client::{Client, ClientOptions};

/// Backend names, in the order they are started.
const BACKENDS: [&str; 3] = ["a", "b", "c"];

/// Bound on every client connect and request: a wedged router fails the
/// demo in seconds instead of hanging it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most warm-up resumptions in scenario 3 before giving up on the ticket
/// key name becoming routable (two are normally enough).
const MAX_WARM_UP: usize = 4;

/// The one-line explanation of every round-robin section.
const ROUND_ROBIN_EXPLAIN: &str = "Nothing is inspected: each connection goes to the next backend, so a session resumes only if it lands on its issuer by chance.";

/// Clients behind the shared address in scenario 5.
const NAT_CLIENTS: usize = 8;

/// Which router setup a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Inspection and affinity on (the default pool settings).
    Sticky,
    /// Inspection off: every connection goes to the next backend in turn.
    RoundRobin,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Sticky => "stickytls",
            Mode::RoundRobin => "round robin",
        })
    }
}

/// One connection of the demo, as the client, the backend and the router
/// saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The client's source IP.
    pub from: IpAddr,
    /// Which demo client made it (several share an address in scenario 5).
    pub client: usize,
    /// The client offered a session it had (every connection but a
    /// client's first).
    pub attempt: bool,
    /// The backend that issued the session offered, if any.
    pub owner: Option<String>,
    /// The backend that answered; `None` if the connection failed.
    pub backend: Option<String>,
    /// The backend resumed the session (its own view).
    pub resumed: bool,
    /// The router's rule, e.g. `key`, `rebind`, `balancer`.
    pub rule: &'static str,
    /// The router's reason, e.g. "session ID known".
    pub reason: &'static str,
    /// Why the connection failed, if it did.
    pub error: Option<String>,
}

/// The connections of one scenario under one mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub hops: Vec<Hop>,
}

impl Tally {
    /// Connections that offered a session.
    pub fn attempts(&self) -> usize {
        self.hops.iter().filter(|h| h.attempt).count()
    }

    /// Offered sessions that the backend resumed.
    pub fn resumed(&self) -> usize {
        self.hops.iter().filter(|h| h.attempt && h.resumed).count()
    }

    /// Offered sessions that reached the backend which issued them.
    pub fn on_owner(&self) -> usize {
        self.hops
            .iter()
            .filter(|h| h.attempt && h.owner.is_some() && h.owner == h.backend)
            .count()
    }

    /// Backends that fresh (non-resuming) connections reached.
    pub fn fresh_backends(&self) -> BTreeSet<String> {
        self.hops
            .iter()
            .filter(|h| !h.attempt)
            .filter_map(|h| h.backend.clone())
            .collect()
    }

    /// Connections that failed outright.
    pub fn errors(&self) -> usize {
        self.hops.iter().filter(|h| h.error.is_some()).count()
    }
}

/// One scenario's results in both modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioSummary {
    pub title: &'static str,
    pub sticky: Tally,
    pub round_robin: Tally,
}

/// What [`run_demo`] found, for the summary table and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub scenarios: Vec<ScenarioSummary>,
}

impl DemoSummary {
    /// Connections that failed outright, in either mode.
    pub fn errors(&self) -> usize {
        self.scenarios
            .iter()
            .map(|s| s.sticky.errors() + s.round_robin.errors())
            .sum()
    }
}

/// A scenario: its title, a one-line explanation, and its script.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    title: &'static str,
    explain: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SessionIds,
    Tls12Tickets,
    Tls13Psk,
    UnknownSessionId,
    SharedAddress,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        title: "1. TLS 1.2 session IDs",
        explain: "The backend assigns a session ID in its cleartext ServerHello; the router learns it and sends the ID back there.",
        kind: Kind::SessionIds,
    },
    Scenario {
        title: "2. TLS 1.2 session tickets",
        explain: "The backend's NewSessionTicket travels in cleartext under TLS 1.2; the router learns the ticket and routes it home.",
        kind: Kind::Tls12Tickets,
    },
    Scenario {
        title: "3. TLS 1.3 PSK resumed from another address",
        explain: "TLS 1.3 tickets are encrypted, but each identity starts with the backend's ticket key name, which the router learns from resumptions it sees accepted.",
        kind: Kind::Tls13Psk,
    },
    Scenario {
        title: "4. A session ID the router never saw",
        explain: "After the router forgets a session (a restart, a renegotiation it could not read), rule 2 re-binds it by client address.",
        kind: Kind::UnknownSessionId,
    },
    Scenario {
        title: "5. Eight clients behind one shared address",
        explain: "Once an address has more new sessions than nat_threshold it counts as shared: its fresh clients are balanced, and each session keeps its client on its own backend.",
        kind: Kind::SharedAddress,
    },
];

/// `stickytls demo`: runs every scenario on stdout and says how the
/// process exits: 0 when every connection succeeded, 1 otherwise. On a
/// multi-threaded runtime: the router, the backends and the clients all
/// run in this one process.
pub fn cli() -> std::process::ExitCode {
    use std::process::ExitCode;
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stickytls demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    match rt.block_on(run_demo(&mut out)) {
        Ok(summary) if summary.errors() == 0 => ExitCode::SUCCESS,
        Ok(summary) => {
            eprintln!("stickytls demo: {} connection(s) failed", summary.errors());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("stickytls demo: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs every scenario in both modes, writing the report to `out`.
pub async fn run_demo(out: &mut impl Write) -> io::Result<DemoSummary> {
    writeln!(
        out,
        "stickytls demo: three rustls backends ({}) behind the router, real TLS clients.",
        BACKENDS.join(", ")
    )?;
    writeln!(
        out,
        "The router never decrypts. Each backend answers with its name and whether it resumed the session."
    )?;
    writeln!(
        out,
        "Columns: the client's source address, the backend reached, its resumed flag, the router's rule and reason."
    )?;
    let mut summary = DemoSummary::default();
    let mut sticky = Vec::new();
    for mode in [Mode::Sticky, Mode::RoundRobin] {
        writeln!(out)?;
        match mode {
            Mode::Sticky => writeln!(
                out,
                "######## With stickytls (inspection and affinity on) ########"
            )?,
            Mode::RoundRobin => writeln!(
                out,
                "######## For contrast: plain round robin (a pool with inspect = false, no affinity) ########"
            )?,
        }
        for s in &SCENARIOS {
            writeln!(out)?;
            writeln!(out, "== {} ({mode}) ==", s.title)?;
            say(out, mode, s.explain, ROUND_ROBIN_EXPLAIN)?;
            let tally = run_scenario(out, s.kind, mode).await?;
            let line = format!(
                "-> resumed {}/{}, {}/{} on the backend that issued the session",
                tally.resumed(),
                tally.attempts(),
                tally.on_owner(),
                tally.attempts()
            );
            writeln!(out, "{line}")?;
            match mode {
                Mode::Sticky => sticky.push(tally),
                Mode::RoundRobin => {
                    let i = summary.scenarios.len();
                    summary.scenarios.push(ScenarioSummary {
                        title: s.title,
                        sticky: sticky.get(i).cloned().unwrap_or_default(),
                        round_robin: tally,
                    });
                }
            }
        }
    }
    write_summary(out, &summary)?;
    Ok(summary)
}

fn write_summary(out: &mut impl Write, summary: &DemoSummary) -> io::Result<()> {
    writeln!(out)?;
    writeln!(out, "== Summary: resumptions accepted / attempted ==")?;
    writeln!(
        out,
        "{:<46} {:>10} {:>12}",
        "scenario", "stickytls", "round robin"
    )?;
    for s in &summary.scenarios {
        let cell = |t: &Tally| format!("{}/{}", t.resumed(), t.attempts());
        writeln!(
            out,
            "{:<46} {:>10} {:>12}",
            s.title,
            cell(&s.sticky),
            cell(&s.round_robin)
        )?;
    }
    if let Some(nat) = summary.scenarios.iter().find(|s| s.title.starts_with("5.")) {
        let names = |t: &Tally| t.fresh_backends().into_iter().collect::<Vec<_>>().join(",");
        writeln!(
            out,
            "Fresh handshakes from the shared address reached backends {} with stickytls.",
            names(&nat.sticky)
        )?;
    }
    let errors = summary.errors();
    if errors > 0 {
        writeln!(
            out,
            "{errors} connection(s) failed; see the lines marked FAILED above."
        )?;
    }
    Ok(())
}

/// Fresh backends and a fresh router for one scenario.
struct Stage {
    /// Held so the backends keep serving until the scenario ends.
    _backends: Vec<RunningBackend>,
    router: RunningRouter,
    mode: Mode,
}

impl Stage {
    async fn start(mode: Mode, options: impl Fn(&str) -> BackendOptions) -> io::Result<Stage> {
        let mut backends = Vec::new();
        for name in BACKENDS {
            backends.push(Backend::start(options(name)).await?);
        }
        let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let configs = backends
            .iter()
            .map(|b| BackendConfig::new(b.name(), b.addr()))
            .collect();
        let mut config = Config::single(listen, configs);
        let pool: &mut PoolConfig = &mut config.pools[0];
        pool.balance = Balance::RoundRobin;
        pool.inspect = mode == Mode::Sticky;
        let router = Router::bind(config)
            .await
            .map_err(io::Error::other)?
            .spawn();
        Ok(Stage {
            _backends: backends,
            router,
            mode,
        })
    }

    fn pool(&self) -> std::sync::Arc<PoolState> {
        // `Config::single` names its one pool `default`.
        self.router
            .pool("default")
            .expect("Config::single makes a pool named default")
    }

    /// One connection from `client` at `from`, printed and recorded.
    async fn connect(
        &self,
        out: &mut impl Write,
        tally: &mut Tally,
        peer: &mut Peer,
        from: IpAddr,
        label: &str,
    ) -> io::Result<()> {
        let attempt = peer.owner.is_some();
        let mut hop = Hop {
            from,
            client: peer.id,
            attempt,
            owner: peer.owner.clone(),
            backend: None,
            resumed: false,
            rule: "-",
            reason: "-",
            error: None,
        };
        match peer.client.connect(self.router.addr, Some(from)).await {
            Ok(reached) => {
                if let Some(d) = self.pool().decision_for(reached.local) {
                    hop.rule = d.rule;
                    hop.reason = d.reason;
                }
                hop.resumed = reached.server_resumed;
                hop.backend = Some(reached.backend.clone());
                // Whatever happened, the session the client now holds was
                // issued (or kept) by the backend it just reached.
                peer.owner = Some(reached.backend);
            }
            Err(e) => hop.error = Some(e.to_string()),
        }
        print_hop(out, &hop, label)?;
        tally.hops.push(hop);
        Ok(())
    }
}

/// A demo client: one session store, and the backend that issued the
/// session it holds.
struct Peer {
    id: usize,
    client: Client,
    owner: Option<String>,
}

impl Peer {
    fn new(id: usize, options: ClientOptions) -> io::Result<Peer> {
        let client = Client::new(ClientOptions {
            timeout: CLIENT_TIMEOUT,
            ..options
        })
        .map_err(io::Error::other)?;
        Ok(Peer {
            id,
            client,
            owner: None,
        })
    }
}

fn print_hop(out: &mut impl Write, hop: &Hop, label: &str) -> io::Result<()> {
    let offer = if hop.attempt { "resume" } else { "fresh" };
    match (&hop.backend, &hop.error) {
        (Some(backend), _) => {
            let resumed = if hop.resumed { "yes" } else { "NO" };
            let resumed = if hop.attempt { resumed } else { "-" };
            writeln!(
                out,
                "  {label:<10} from {:<10} {offer:<6} -> backend {backend}  resumed {resumed:<3}  rule {:<9} {}",
                hop.from.to_string(),
                hop.rule,
                hop.reason
            )
        }
        (None, error) => writeln!(
            out,
            "  {label:<10} from {:<10} {offer:<6} -> FAILED: {}",
            hop.from.to_string(),
            error.as_deref().unwrap_or("unknown error")
        ),
    }
}

/// Writes the line that fits the mode: the narration of what the router
/// does only makes sense when it inspects.
fn say(out: &mut impl Write, mode: Mode, sticky: &str, round_robin: &str) -> io::Result<()> {
    match mode {
        Mode::Sticky => writeln!(out, "{sticky}"),
        Mode::RoundRobin => writeln!(out, "{round_robin}"),
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

fn backend_options(name: &str, tickets: bool, session_cache: bool) -> BackendOptions {
    BackendOptions {
        tickets,
        session_cache,
        ..BackendOptions::new(name)
    }
}

fn tls12_client(tickets: bool) -> ClientOptions {
    ClientOptions {
        versions: Versions::Tls12,
        tls12_tickets: tickets,
        ..ClientOptions::default()
    }
}

async fn run_scenario(out: &mut impl Write, kind: Kind, mode: Mode) -> io::Result<Tally> {
    let mut tally = Tally::default();
    match kind {
        Kind::SessionIds => {
            writeln!(
                out,
                "backends: session tickets off, session cache on; client: TLS 1.2, session IDs only"
            )?;
            let stage = Stage::start(mode, |n| backend_options(n, false, true)).await?;
            let mut peer = Peer::new(1, tls12_client(false))?;
            for i in 1..=4 {
                stage
                    .connect(out, &mut tally, &mut peer, ip(11), &format!("conn {i}"))
                    .await?;
            }
        }
        Kind::Tls12Tickets => {
            writeln!(
                out,
                "backends: session tickets on, session cache off; client: TLS 1.2 with tickets"
            )?;
            let stage = Stage::start(mode, |n| backend_options(n, true, false)).await?;
            let mut peer = Peer::new(1, tls12_client(true))?;
            for i in 1..=4 {
                stage
                    .connect(out, &mut tally, &mut peer, ip(12), &format!("conn {i}"))
                    .await?;
            }
        }
        Kind::Tls13Psk => tls13_psk(out, &mut tally, mode).await?,
        Kind::UnknownSessionId => unknown_session_id(out, &mut tally, mode).await?,
        Kind::SharedAddress => shared_address(out, &mut tally, mode).await?,
    }
    Ok(tally)
}

/// Scenario 3: the session is made from 127.0.0.2 and resumed from
/// 127.0.0.3, where the router has no client history to fall back on.
async fn tls13_psk(out: &mut impl Write, tally: &mut Tally, mode: Mode) -> io::Result<()> {
    writeln!(
        out,
        "backends: TLS 1.3 tickets on (each backend has its own ticket key); client: TLS 1.3"
    )?;
    let stage = Stage::start(mode, |n| backend_options(n, true, false)).await?;
    let mut peer = Peer::new(
        1,
        ClientOptions {
            versions: Versions::Tls13,
            ..ClientOptions::default()
        },
    )?;
    writeln!(out, " first contact from 127.0.0.2:")?;
    stage
        .connect(out, tally, &mut peer, ip(2), "conn 1")
        .await?;

    say(
        out,
        mode,
        " warm-up from 127.0.0.2: a key name becomes a route after two distinct tickets with it are confirmed on one backend;\n until then these resumptions are re-bound by client address (rule 2):",
        " resuming from 127.0.0.2:",
    )?;
    let warm_ups = match stage.mode {
        Mode::Sticky => MAX_WARM_UP,
        // Nothing is learned without inspection: the same two as usual.
        Mode::RoundRobin => 2,
    };
    let mut n = 1;
    for _ in 0..warm_ups {
        n += 1;
        stage
            .connect(out, tally, &mut peer, ip(2), &format!("conn {n}"))
            .await?;
        let state = key_name_state(&stage);
        if stage.mode == Mode::Sticky {
            writeln!(out, "{:>14} router's ticket key name: {state}", "")?;
        }
        if state == KeyNameState::Routable {
            break;
        }
    }

    writeln!(
        out,
        " the same session store, now resuming from 127.0.0.3 (no history at that address):"
    )?;
    for _ in 0..3 {
        n += 1;
        stage
            .connect(out, tally, &mut peer, ip(3), &format!("conn {n}"))
            .await?;
    }
    Ok(())
}

/// What the router holds for the scenario's ticket key name, read from its
/// learning counter: each state change of a key name counts once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyNameState {
    Unknown,
    Candidate,
    Routable,
}

impl fmt::Display for KeyNameState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyNameState::Unknown => "not learned yet",
            KeyNameState::Candidate => "candidate (one ticket confirmed; not routed on yet)",
            KeyNameState::Routable => {
                "routable (two distinct tickets confirmed on the same backend)"
            }
        })
    }
}

fn key_name_state(stage: &Stage) -> KeyNameState {
    match stage.router.stats().learned_of(KeyKind::TicketKeyName) {
        0 => KeyNameState::Unknown,
        1 => KeyNameState::Candidate,
        _ => KeyNameState::Routable,
    }
}

/// Scenario 4: the router's entry for a live session ID is deleted, as if
/// the router had restarted or the session had been renegotiated where it
/// could not see.
async fn unknown_session_id(out: &mut impl Write, tally: &mut Tally, mode: Mode) -> io::Result<()> {
    writeln!(
        out,
        "backends: session tickets off, session cache on; client: TLS 1.2, session IDs only"
    )?;
    let stage = Stage::start(mode, |n| backend_options(n, false, true)).await?;
    let mut peer = Peer::new(1, tls12_client(false))?;
    let from = ip(14);
    stage.connect(out, tally, &mut peer, from, "conn 1").await?;
    stage.connect(out, tally, &mut peer, from, "conn 2").await?;

    // The session ID the client will offer next, read from the hello it
    // would send: the same bytes the router would look up.
    let hello = peer.client.client_hello().map_err(io::Error::other)?;
    match session_id(&hello) {
        Some(id) => {
            stage.pool().table.remove(&Key::new(KeyKind::SessionId, id));
            let hex: String = id.iter().take(8).map(|b| format!("{b:02x}")).collect();
            let sticky = format!(
                "{:>14} the router forgets session ID {hex}... (deleted from its affinity table)",
                ""
            );
            let rr = format!(
                "{:>14} (session ID {hex}...: round robin keeps no table, nothing to forget)",
                ""
            );
            say(out, mode, &sticky, &rr)?;
        }
        None => writeln!(
            out,
            "{:>14} (the client holds no session ID; nothing to forget)",
            ""
        )?,
    }
    stage.connect(out, tally, &mut peer, from, "conn 3").await?;
    stage.connect(out, tally, &mut peer, from, "conn 4").await?;
    Ok(())
}

/// The legacy session ID of a single-record ClientHello.
///
/// ```text
/// record header (5) | msg_type (1) | length (3) | legacy_version (2)
/// | random (32) | legacy_session_id<0..32>
/// ```
fn session_id(record: &[u8]) -> Option<&[u8]> {
    const HANDSHAKE: u8 = 22;
    const CLIENT_HELLO: u8 = 1;
    const SESSION_ID_AT: usize = 5 + 4 + 2 + 32;
    if record.first() != Some(&HANDSHAKE) || record.get(5) != Some(&CLIENT_HELLO) {
        return None;
    }
    let len = usize::from(*record.get(SESSION_ID_AT)?);
    let id = record.get(SESSION_ID_AT + 1..SESSION_ID_AT + 1 + len)?;
    (len > 0 && len <= 32).then_some(id)
}

/// Scenario 5: several clients at one address, each with its own session.
async fn shared_address(out: &mut impl Write, tally: &mut Tally, mode: Mode) -> io::Result<()> {
    writeln!(
        out,
        "backends: session tickets on; {NAT_CLIENTS} TLS 1.2 clients, all from 127.0.0.5; nat_threshold {} (the default)",
        crate::config::AffinityConfig::default().nat_threshold
    )?;
    let stage = Stage::start(mode, |n| backend_options(n, true, false)).await?;
    let from = ip(5);
    let mut peers = Vec::new();
    for id in 1..=NAT_CLIENTS {
        peers.push(Peer::new(id, tls12_client(true))?);
    }
    say(
        out,
        mode,
        " each client's first connection (until the address counts as shared, rule 3 keeps it on one backend):",
        " each client's first connection:",
    )?;
    for peer in &mut peers {
        let label = format!("client {}", peer.id);
        stage.connect(out, tally, peer, from, &label).await?;
    }
    writeln!(out, " each client reconnects:")?;
    for peer in &mut peers {
        let label = format!("client {}", peer.id);
        stage.connect(out, tally, peer, from, &label).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_is_read_from_a_client_hello_record() {
        let mut record = vec![22, 3, 3, 0, 0, 1, 0, 0, 0, 3, 3];
        record.extend([0u8; 32]);
        record.push(4);
        record.extend([9, 8, 7, 6]);
        record.extend([0, 2, 0x13, 0x01]);
        assert_eq!(session_id(&record), Some(&[9u8, 8, 7, 6][..]));
    }

    #[test]
    fn session_id_is_none_when_empty_truncated_or_not_a_hello() {
        let mut record = vec![22, 3, 3, 0, 0, 1, 0, 0, 0, 3, 3];
        record.extend([0u8; 32]);
        let mut empty = record.clone();
        empty.push(0);
        assert_eq!(session_id(&empty), None);
        let mut truncated = record.clone();
        truncated.extend([32, 1, 2]);
        assert_eq!(session_id(&truncated), None);
        let mut alert = empty.clone();
        alert[0] = 21;
        assert_eq!(session_id(&alert), None);
    }
}
