//! The path of one connection through the stages: hello (PROXY header and
//! ClientHello, [`crate::proxy`], [`crate::intake`]) → route
//! ([`crate::route`]) → connect ([`crate::connect`]) → relay
//! ([`crate::relay`]) → learn ([`crate::learn`]); plus what is done beside
//! them: forwarding without inspection, the decision log line and the
//! recent-decisions record.
//!
//! Every log line of a connection carries its listener's configured name
//! (`listener`), as its connection and refusal counters do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::affinity::clients::ClientPrefix;
use crate::backend::{Backend, BackendName};
use crate::connect;
use crate::decision::{DecisionRecord, Sni};
use crate::inspect::{self, Handshake, Status};
use crate::intake::{IntakeError, read_hello};
use crate::learn;
use crate::listen::ListenerState;
use crate::pool::PoolState;
use crate::proxy;
use crate::relay::{OnServerFlight, RelayEnd, Side, relay};
use crate::route::{Decision, Offer, Rule, balanced, decide};

/// The path of one connection. `client` comes from one of the router's
/// listening sockets, so it already has TCP_NODELAY (see
/// `listen::bind_reuseport`).
pub async fn handle(listener: Arc<ListenerState>, mut client: TcpStream, peer: SocketAddr) {
    listener.stats.connection(&listener.name);
    let limits = listener.config.limits;
    let deadline = tokio::time::Instant::now() + listener.hello_timeout;

    // Hello stage: PROXY header, then the ClientHello, within one budget.
    // Behind a PROXY-protocol balancer every connection comes from the
    // balancer, so the per-address cap on connections still sending their
    // hello applies to the client address the header names; only trusted
    // peers get that far, and the header is small and read within the
    // same deadline.
    let mut hello = Vec::with_capacity(2048);
    let client_addr = if listener.config.proxy_protocol {
        match proxy::read_header(
            &mut client,
            peer,
            &listener.config.proxy_trusted,
            deadline,
            &mut hello,
        )
        .await
        {
            Ok(addr) => addr,
            Err(e) => return listener.reject(peer, e.reason(), &e),
        }
    } else {
        peer
    };
    let Some(slot) = listener.begin_inspecting(listener.default_pool().prefix(client_addr.ip()))
    else {
        listener.stats.rejected(&listener.name, "per_ip_limit");
        if listener.decision_log.allow() {
            warn!(listener = %listener.name, peer = %client_addr, "closed: too many connections from this address still sending their hello");
        }
        return;
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
                sni: None,
            };
            forward_blind(&pool, client, at, &hello, false).await;
            return;
        }
        (Err(e), _) => return listener.reject(client_addr, e.reason(), &e),
    }

    // Route: the pool by SNI, then the affinity rules inside it.
    let (pool, offer, sni) = {
        let Some(ch) = hs.client_hello() else { return };
        let pool = listener.pool_for(ch.sni).clone();
        let offer = pool.config.inspect.then(|| Offer::from_hello(&ch));
        (pool, offer, ch.sni.map(Sni::new))
    };
    let at = Arrival {
        listener: &listener.name,
        client: client_addr,
        sni,
    };
    let Some(offer) = offer else {
        forward_blind(&pool, client, at, &hello, true).await;
        return;
    };
    let prefix = pool.prefix(client_addr.ip());
    let decision = decide(&pool, &offer, &prefix);
    pool.stats.routed(decision.rule, decision.reason);

    // Connect, with failover.
    let Some(connected) = connect_logged(&pool, &decision, &at, &hello, true).await else {
        return;
    };
    if let Some(chosen) = decision.candidates.first() {
        if !Arc::ptr_eq(chosen, &connected.backend) {
            // The chosen backend was not reached: stop rules 2 and 3 from
            // pointing this client there.
            pool.clients.forget_backend(&prefix, &chosen.name);
        }
    }
    log_decision(&pool, &at, &decision, &connected.backend.name, &offer);
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
    };
    relay_to(&pool, client, connected, Some(hs), &learner).await;
}

/// Who arrived where: what a connection's log lines and its decision
/// record say about it besides the decision.
struct Arrival<'a> {
    listener: &'a Arc<str>,
    /// The client's address (after any PROXY header).
    client: SocketAddr,
    sni: Option<Sni>,
}

impl Arrival<'_> {
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
) {
    let prefix = pool.prefix(at.client.ip());
    // Backends that are down are passed over here too.
    let decision = balanced(pool, &prefix, "forwarded without inspection");
    pool.stats.routed(decision.rule, decision.reason);
    let Some(connected) = connect_logged(pool, &decision, &at, hello, tls).await else {
        return;
    };
    pool.record_decision(at.record(&connected.backend.name, &decision));
    relay_to(pool, client, connected, None, &NoLearning).await;
}

/// Relays until the connection ends, then passes a reset on as a reset.
/// The backend's connection slot is held until then.
async fn relay_to(
    pool: &PoolState,
    mut client: TcpStream,
    connected: connect::Connected,
    hs: Option<Box<Handshake>>,
    flight: &dyn OnServerFlight,
) {
    let connect::Connected {
        stream: mut server,
        first_bytes,
        active,
        ..
    } = connected;
    let end = relay(
        &mut client,
        &mut server,
        hs,
        &first_bytes,
        pool.config.timeouts.idle,
        &pool.clock,
        flight,
    )
    .await;
    if let RelayEnd::Reset(side, _) = &end {
        let other = match side {
            Side::Client => &server,
            Side::Server => &client,
        };
        let _ = socket2::SockRef::from(other).set_linger(Some(Duration::ZERO));
    }
    drop(active);
}

async fn connect_logged(
    pool: &Arc<PoolState>,
    decision: &Decision,
    at: &Arrival<'_>,
    hello: &[u8],
    await_answer: bool,
) -> Option<connect::Connected> {
    match connect::connect(pool, &decision.candidates, hello, await_answer).await {
        Ok(c) => {
            if c.failed > 0 {
                pool.stats.failover();
            }
            Some(c)
        }
        Err(e) => {
            pool.stats.no_backend();
            warn!(listener = %at.listener, peer = %at.client, pool = %pool.config.name, error = %e, "closed: no backend answered");
            None
        }
    }
}

fn log_decision(pool: &PoolState, at: &Arrival<'_>, d: &Decision, reached: &str, offer: &Offer) {
    // The key's hex is built here, outside the macros, so check the level
    // first: with info off (the usual production filter) this costs nothing.
    if !tracing::enabled!(tracing::Level::INFO) || !pool.decision_log.allow() {
        return;
    }
    let key = offer
        .psk_identities
        .first()
        .map(|(k, _)| k)
        .or(offer.ticket.as_ref().map(|(k, _)| k))
        .or(offer.session_id.as_ref())
        .map(|k| k.short_hex());
    let key = key.as_deref().unwrap_or("-");
    let (listener, peer) = (at.listener, at.client);
    match d.rule {
        Rule::Rebind => info!(
            %listener, %peer, backend = reached, new_key = key, reason = d.reason,
            "re-bound an unknown session to the client address's backend"
        ),
        _ => {
            info!(%listener, %peer, backend = reached, rule = d.rule.as_str(), reason = d.reason, key, "routed")
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
}

impl OnServerFlight for Learner<'_> {
    fn done(&self, hs: &Handshake) {
        if let Some(outcome) = hs.outcome() {
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
            _ => "malformed",
        };
        metrics::counter!(crate::metrics::SERVER_UNREADABLE, "reason" => reason).increment(1);
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
