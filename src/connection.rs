//! The path of one connection through the stages: hello (PROXY header and
//! ClientHello, [`crate::proxy`], [`crate::intake`]) → with a shared
//! store, its lookup of the offered keys, within the lookup budget
//! ([`crate::affinity::AffinityStore::prefetch`]) → route
//! ([`crate::route`]) → connect ([`crate::connect`]) → relay
//! ([`crate::relay`]) → learn ([`crate::learn`]); plus what is done beside
//! them: forwarding without inspection, the recent-decisions record, and
//! the connection's one log line when it ends ([`crate::conn_log`]).
//!
//! Every log line of a connection carries its listener's configured name
//! (`listener`), as its connection and refusal counters do.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::affinity::Lookup;
use crate::affinity::clients::ClientPrefix;
use crate::backend::{Backend, BackendName};
use crate::config::SendProxy;
use crate::conn_log::{ConnectionTrace, close};
use crate::connect;
use crate::decision::{DecisionRecord, Sni};
use crate::inspect::{self, Handshake, KeyKind, Status};
use crate::intake::{IntakeError, read_hello};
use crate::learn;
use crate::listen::{ListenerState, Refused};
use crate::pool::PoolState;
use crate::proxy;
use crate::proxy_out::Origin;
use crate::relay::{OnServerFlight, RelayEnd, Relayed, Side, relay};
use crate::route::{Decision, Offer, Rule, balanced, decide};
use crate::stats::Stats;

/// The path of one connection. `client` comes from one of the router's
/// listening sockets, so it already has TCP_NODELAY (see
/// `listen::bind_reuseport`).
pub(crate) async fn handle(listener: Arc<ListenerState>, mut client: TcpStream, peer: SocketAddr) {
    listener.stats.connection();
    listener.accepted.increment(1);
    let _open = Open(&listener.stats);
    let mut trace = ConnectionTrace::start(&listener.name, peer);
    let limits = listener.config.limits;
    let deadline = tokio::time::Instant::now() + listener.hello_timeout;

    // Hello stage: PROXY header, then the ClientHello, within one budget.
    // Behind a PROXY-protocol balancer every connection comes from the
    // balancer, so the per-address cap on connections still sending their
    // hello applies to the client address the header names; only trusted
    // peers get that far, and the header is small and read within the
    // same deadline.
    // Empty: `read_hello` sizes it to what arrives (a stalled client
    // holds a few bytes, not a read buffer).
    let mut hello = Vec::new();
    let proxied = if listener.config.proxy_protocol {
        match proxy::read_header(
            &mut client,
            peer,
            &listener.config.proxy_trusted,
            deadline,
            &mut hello,
        )
        .await
        {
            Ok(proxied) => proxied,
            Err(e) => return listener.reject(peer, e.reason(), &e),
        }
    } else {
        proxy::Proxied {
            client: peer,
            destination: None,
        }
    };
    let client_addr = proxied.client;
    // What a backend's own PROXY header names as the address connected
    // to: the front proxy's word for it, else where this socket accepted,
    // which is only asked of the socket (a system call) when a backend is
    // to be sent a header (`connect_logged`).
    let destination = proxied.destination;
    trace.client(client_addr);
    // The client's share of the listener's slots, held until this handler
    // returns, and its hello-stage slot, given back once the hello is in.
    // Over its share, the connection is closed here and the listener's
    // slot it was accepted with is free again at once.
    let (_share, slot) = match listener.admit(listener.default_pool().prefix(client_addr.ip())) {
        Ok(held) => held,
        Err(refused) => {
            listener.stats.rejected(&listener.name, refused.reason());
            if listener.decision_log.allow() {
                let why = match refused {
                    Refused::Share => {
                        "this address already holds its share of the listener's connections (max_connections_per_client)"
                    }
                    Refused::Hello => {
                        "too many connections from this address still sending their hello"
                    }
                };
                warn!(listener = %listener.name, peer = %client_addr, "closed: {why}");
            }
            return;
        }
    };
    // Boxed: the inspector's state is over a kilobyte, and every stage's
    // future would otherwise carry (and copy) it by value.
    let mut hs = Box::new(Handshake::new(inspect::Limits {
        max_client_bytes: limits.max_hello_bytes,
        ..Default::default()
    }));
    let intake = read_hello(
        &mut client,
        &mut hs,
        &mut hello,
        deadline,
        limits.max_hello_bytes,
    )
    .await;
    drop(slot);
    match (intake, listener.non_tls_pool()) {
        (Ok(()), _) => {}
        (Err(IntakeError::NotTls(n)), Some(non_tls)) => {
            let pool = non_tls.clone();
            if listener.decision_log.allow() {
                info!(listener = %listener.name, peer = %client_addr, reason = n.reason, pool = %pool.config.name, "not TLS: forwarded to the non-TLS pool");
            }
            let at = Arrival {
                listener: &listener.name,
                client: client_addr,
                destination,
                bind: listener.config.bind,
                sni: None,
            };
            trace.hello(None);
            // Boxed like the routed path below.
            Box::pin(forward_blind(&pool, client, at, &hello, false, trace)).await;
            return;
        }
        (Err(e), _) => {
            if let Some((side, kind)) = e.inspection_error() {
                listener.stats.inspection_error(side, kind);
            }
            return listener.reject(client_addr, e.reason(), &e);
        }
    }

    // The stages after the hello run in a future of their own, boxed only
    // once the hello is in: their state (connect, relay) is most of a
    // connection's future, and a client still sending its hello, or one
    // that stalls, would otherwise hold all of it (issue 16).
    Box::pin(routed(
        &listener,
        client,
        client_addr,
        destination,
        hs,
        hello,
        trace,
    ))
    .await;
}

/// Route, connect, relay and learn: a connection whose ClientHello is in.
async fn routed(
    listener: &Arc<ListenerState>,
    client: TcpStream,
    client_addr: SocketAddr,
    destination: Option<SocketAddr>,
    hs: Box<Handshake>,
    hello: Vec<u8>,
    mut trace: ConnectionTrace,
) {
    // Route: the pool by SNI, then the affinity rules inside it. The
    // decision time runs from here: the hello is complete.
    let decided = Instant::now();
    let (pool, offer, sni) = {
        let Some(ch) = hs.client_hello() else { return };
        trace.hello(ch.sni);
        let pool = listener.pool_for(ch.sni).clone();
        let offer = pool.config.inspect.then(|| Offer::from_hello(&ch));
        (pool, offer, ch.sni.map(Sni::new))
    };
    let at = Arrival {
        listener: &listener.name,
        client: client_addr,
        destination,
        bind: listener.config.bind,
        sni,
    };
    let Some(offer) = offer else {
        forward_blind(&pool, client, at, &hello, true, trace).await;
        return;
    };
    let prefix = pool.prefix(client_addr.ip());
    // A shared store fetches what this process does not know of the
    // offered keys first, within its lookup budget; routing then reads
    // only the local table.
    // The wait counts in the decision time.
    if pool.table.is_shared() {
        let (keys, names) = offer.lookup_keys();
        let lookup = Lookup {
            keys,
            names,
            client: prefix,
            clients: pool.clients.clone(),
            backends: pool.backend_names.clone(),
        };
        if let Some(wait) = pool.table.prefetch(lookup) {
            wait.await;
        }
    }
    let decision = decide(&pool, &offer, &prefix);
    pool.series.decision_time(decided.elapsed());
    pool.stats.routed(decision.rule);
    let kind = match decision.rule {
        Rule::Key(kind) => Some(kind),
        Rule::Rebind => Some(offer.resumption_kind()),
        _ => None,
    };
    trace.routed(
        &pool.config.name,
        decision.rule.as_str(),
        kind.map(KeyKind::as_str),
    );

    // Connect, with failover.
    trace.connecting();
    let Some(connected) =
        connect_logged(&pool, &decision, kind, (&at, &client), &hello, true).await
    else {
        trace.finish(close::NO_BACKEND, &pool.decision_log);
        return;
    };
    trace.connected(&connected.backend.name);
    if let Some(chosen) = decision.candidates.first() {
        if !Arc::ptr_eq(chosen, &connected.backend) {
            // The chosen backend was not reached: stop rules 2 and 3 from
            // pointing this client there.
            pool.clients.forget_backend(&prefix, &chosen.name);
        }
    }
    pool.record_decision(at.record(&connected.backend.name, &decision));

    // Relay, learning from the server's flight.
    let backend = connected.backend.clone();
    let learner = Learner {
        pool: &pool,
        listener: &listener.name,
        prefix,
        offer: &offer,
        decision: &decision,
        backend: &backend,
        seen: HandshakeSeen::default(),
    };
    let relayed = relay_to(&pool, client, connected, &hello, Some(hs), &learner).await;
    let (version, resumed) = learner.seen.get();
    trace.handshake(version, resumed);
    finish(&pool, trace, relayed);
}

/// Counts a connection closed when its handler ends, whichever way.
struct Open<'a>(&'a Stats);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.closed();
    }
}

/// Writes the connection's line once its relay is over.
fn finish(pool: &PoolState, mut trace: ConnectionTrace, relayed: Relayed) {
    trace.bytes(relayed.to_server, relayed.to_client);
    let close = match relayed.end {
        RelayEnd::Closed => close::CLOSED,
        RelayEnd::Idle => close::IDLE,
        RelayEnd::Reset(Side::Client) => close::CLIENT_RESET,
        RelayEnd::Reset(Side::Server) => close::BACKEND_RESET,
    };
    trace.finish(close, &pool.decision_log);
}

/// Who arrived where: what a connection's log lines and its decision
/// record say about it besides the decision.
struct Arrival<'a> {
    listener: &'a Arc<str>,
    /// The client's address (after any PROXY header).
    client: SocketAddr,
    /// The address the client connected to as a PROXY header named it;
    /// `None` without one, when the accepted socket's own address stands
    /// in (see [`Arrival::destination`]).
    destination: Option<SocketAddr>,
    /// The listener's configured address: the destination of last resort.
    bind: SocketAddr,
    sni: Option<Sni>,
}

impl Arrival<'_> {
    /// The address the client connected to, for the header a backend with
    /// `send_proxy` is sent: the PROXY header's, else where `client` was
    /// accepted. Without a header to send it is never asked for, which
    /// saves a `getsockname` on every connection; a reload that turns
    /// `send_proxy` on between this and the connect can only make that
    /// one connection's header name the listener's configured address.
    fn destination(&self, client: &TcpStream, candidates: &[Arc<Backend>]) -> SocketAddr {
        if let Some(d) = self.destination {
            return d;
        }
        if candidates.iter().all(|b| b.send_proxy() == SendProxy::Off) {
            return self.bind;
        }
        client.local_addr().unwrap_or(self.bind)
    }

    fn record(&self, backend: &BackendName, d: &Decision) -> DecisionRecord {
        DecisionRecord {
            time: SystemTime::now(),
            client: self.client,
            sni: self.sni,
            backend: backend.clone(),
            rule: d.rule.as_str(),
            key_kind: d.rule.key_kind(),
            reason: d.reason,
        }
    }
}

/// Forwards a connection by the balancer alone: non-TLS input sent to a
/// pool (`tls` false: its protocol may not have the server speak first, so
/// reaching a backend is enough), or a pool with inspection off.
async fn forward_blind(
    pool: &Arc<PoolState>,
    client: TcpStream,
    at: Arrival<'_>,
    hello: &[u8],
    tls: bool,
    mut trace: ConnectionTrace,
) {
    let prefix = pool.prefix(at.client.ip());
    // Backends that are down are passed over here too.
    let decision = balanced(pool, &prefix, "forwarded without inspection");
    pool.stats.routed(decision.rule);
    trace.routed(&pool.config.name, decision.rule.as_str(), None);
    trace.connecting();
    let Some(connected) = connect_logged(pool, &decision, None, (&at, &client), hello, tls).await
    else {
        trace.finish(close::NO_BACKEND, &pool.decision_log);
        return;
    };
    trace.connected(&connected.backend.name);
    pool.record_decision(at.record(&connected.backend.name, &decision));
    let relayed = relay_to(pool, client, connected, hello, None, &NoLearning).await;
    finish(pool, trace, relayed);
}

/// Relays until the connection ends, then passes a reset on as a reset.
/// The backend's connection slot is held until then. The bytes are
/// counted (`hello`, already sent to the backend, included) before the
/// sockets close, so a client that saw its connection end sees them
/// counted.
async fn relay_to(
    pool: &PoolState,
    mut client: TcpStream,
    connected: connect::Connected,
    hello: &[u8],
    hs: Option<Box<Handshake>>,
    flight: &dyn OnServerFlight,
) -> Relayed {
    let connect::Connected {
        stream: mut server,
        first_bytes,
        active,
        ..
    } = connected;
    let mut relayed = relay(
        &mut client,
        &mut server,
        hs,
        first_bytes,
        pool.config.timeouts.idle,
        &pool.clock,
        flight,
    )
    .await;
    relayed.to_server += hello.len() as u64;
    pool.stats.relayed(relayed.to_server, relayed.to_client);
    if let RelayEnd::Reset(side) = &relayed.end {
        let other = match side {
            Side::Client => &server,
            Side::Server => &client,
        };
        let _ = socket2::SockRef::from(other).set_linger(Some(Duration::ZERO));
    }
    drop(active);
    relayed
}

/// Connects to the decision's candidates. `key_kind` is the kind of key
/// behind a `key` or `rebind` decision, which a v2 header reports.
async fn connect_logged(
    pool: &Arc<PoolState>,
    decision: &Decision,
    key_kind: Option<KeyKind>,
    (at, client): (&Arrival<'_>, &TcpStream),
    hello: &[u8],
    await_answer: bool,
) -> Option<connect::Connected> {
    let origin = Origin {
        client: at.client,
        destination: at.destination(client, &decision.candidates),
        rule: decision.rule,
        key_kind,
    };
    match connect::connect(pool, &decision.candidates, hello, &origin, await_answer).await {
        Ok(c) => {
            if c.failed > 0 {
                pool.stats.failover();
            }
            Some(c)
        }
        Err(e) => {
            pool.stats.no_backend();
            // A client can have its own hellos fail on purpose.
            if e.stopped_after_hello() && !pool.decision_log.allow() {
                return None;
            }
            warn!(listener = %at.listener, peer = %at.client, pool = %pool.config.name, error = %e, "closed: no backend answered");
            None
        }
    }
}

/// Learns from the server's flight as soon as the inspector has it.
struct Learner<'a> {
    pool: &'a PoolState,
    listener: &'a Arc<str>,
    prefix: ClientPrefix,
    offer: &'a Offer,
    decision: &'a Decision,
    backend: &'a Arc<Backend>,
    /// What the server's flight said, for the connection's line.
    seen: HandshakeSeen,
}

/// A handshake's version and whether it resumed, written once by the
/// relay's inspection and read when the connection ends.
#[derive(Debug, Default)]
struct HandshakeSeen {
    /// The version the server chose; 0 until it is known.
    version: AtomicU16,
    /// 0 unknown, 1 full, 2 resumed.
    resumed: AtomicU8,
}

impl HandshakeSeen {
    fn set(&self, version: u16, resumed: bool) {
        self.version.store(version, Ordering::Relaxed);
        self.resumed.store(1 + u8::from(resumed), Ordering::Relaxed);
    }

    fn get(&self) -> (Option<u16>, Option<bool>) {
        let v = self.version.load(Ordering::Relaxed);
        let r = self.resumed.load(Ordering::Relaxed);
        ((v != 0).then_some(v), (r != 0).then_some(r == 2))
    }
}

impl OnServerFlight for Learner<'_> {
    fn done(&self, hs: &Handshake) {
        if let Some(outcome) = hs.outcome() {
            self.backend.counters.handshake(outcome.resumed);
            self.pool.stats.tls_version(outcome.version);
            self.seen.set(outcome.version, outcome.resumed);
            learn::learn(
                self.pool,
                self.prefix,
                self.offer,
                self.decision,
                self.backend,
                outcome,
            );
        }
    }

    fn unreadable(&self, status: &Status) {
        let reason = match status {
            Status::Alert(_) => "alert",
            Status::NotTls(_) => "not_tls",
            Status::Malformed(e) if e.kind == inspect::ErrorKind::OverLimit => "over_limit",
            _ => "malformed",
        };
        self.pool.stats.inspection_error("server", reason);
        if self.pool.decision_log.allow() {
            info!(listener = %self.listener, backend = %self.backend.name, ?status, "server flight not learned from");
        }
    }
}

/// For relays that do not inspect.
struct NoLearning;

impl OnServerFlight for NoLearning {
    fn done(&self, _: &Handshake) {}
    fn unreadable(&self, _: &Status) {}
}
