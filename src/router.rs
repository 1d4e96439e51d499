//! One router: its shared state, and the path of one connection through the
//! stages (intake → route → connect → relay → learn).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};

use crate::affinity::clients::{ClientIndex, ClientIndexConfig, ClientPrefix};
use crate::affinity::memory::MemoryStoreConfig;
use crate::affinity::{AffinityStore, MemoryStore};
use crate::backend::Pool;
use crate::balance::Balancer;
use crate::clock::Clock;
use crate::config::{ConfigError, RouterConfig};
use crate::inspect::{self, Handshake, Status};
use crate::intake::{IntakeError, read_hello};
use crate::log_limit::LogLimiter;
use crate::relay::{OnServerFlight, RelayEnd, Side, relay};
use crate::route::{Decision, Offer, decide};
use crate::stats::Stats;
use crate::{connect, learn};

/// State every connection of one router shares.
#[derive(Debug)]
pub struct Shared {
    pub config: RouterConfig,
    pub pool: Pool,
    pub balancer: Balancer,
    /// Session key → owner backend.
    pub table: Arc<dyn AffinityStore>,
    /// Client prefix → recent confirmed connections.
    pub clients: ClientIndex,
    pub clock: Clock,
    pub stats: Stats,
    /// Connections per client prefix still in the hello stage: a cap on
    /// how much of the hello budget one address can hold at once.
    inspecting: Mutex<HashMap<ClientPrefix, u32, RandomState>>,
    /// Keeps per-connection decision logs at info level affordable.
    pub decision_log: LogLimiter,
}

impl Shared {
    /// Builds the state for `config`, with an in-process affinity table.
    pub fn new(config: RouterConfig, clock: Clock) -> Result<Shared, ConfigError> {
        config.validate()?;
        let a = &config.affinity;
        let table = Arc::new(MemoryStore::new(
            MemoryStoreConfig { capacity: a.table_size, inactivity: a.inactivity_timeout, absolute_max: a.absolute_max },
            clock.clone(),
        ));
        Ok(Self::with_store(config, clock, table))
    }

    /// Builds the state around an existing store (shared between routers,
    /// or kept across a reload).
    pub fn with_store(config: RouterConfig, clock: Clock, table: Arc<dyn AffinityStore>) -> Shared {
        let a = &config.affinity;
        let clients = ClientIndex::new(
            ClientIndexConfig { capacity: a.clients_tracked, window: a.correlation_window, nat_threshold: a.nat_threshold },
            clock.clone(),
        );
        Shared {
            pool: Pool::new(&config.backends),
            balancer: Balancer::new(config.balance),
            table,
            clients,
            clock,
            stats: Stats::default(),
            inspecting: Mutex::new(HashMap::default()),
            decision_log: LogLimiter::new(50),
            config,
        }
    }

    pub fn prefix(&self, addr: SocketAddr) -> ClientPrefix {
        let a = &self.config.affinity;
        ClientPrefix::new(addr.ip(), a.ipv4_prefix, a.ipv6_prefix)
    }

    /// Counts a connection into the hello stage of its prefix; `None` when
    /// the prefix is at its cap.
    fn begin_inspecting(self: &Arc<Self>, prefix: ClientPrefix) -> Option<InspectingGuard> {
        let mut map = self.inspecting.lock().unwrap();
        let n = map.entry(prefix).or_insert(0);
        if *n >= self.config.limits.max_inspecting_per_ip {
            return None;
        }
        *n += 1;
        Some(InspectingGuard { shared: self.clone(), prefix })
    }
}

/// Releases a prefix's hello-stage slot.
struct InspectingGuard {
    shared: Arc<Shared>,
    prefix: ClientPrefix,
}

impl Drop for InspectingGuard {
    fn drop(&mut self) {
        let mut map = self.shared.inspecting.lock().unwrap();
        if let Some(n) = map.get_mut(&self.prefix) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.prefix);
            }
        }
    }
}

/// A bound router, ready to serve.
#[derive(Debug)]
pub struct Router {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Router {
    /// Validates `config` and binds its listen address.
    pub async fn bind(config: RouterConfig) -> Result<Router, RouterError> {
        let shared = Shared::new(config, Clock::new()).map_err(RouterError::Config)?;
        Self::bind_shared(Arc::new(shared)).await
    }

    pub async fn bind_shared(shared: Arc<Shared>) -> Result<Router, RouterError> {
        let addr = shared.config.listen;
        let listener = TcpListener::bind(addr).await.map_err(|e| RouterError::Bind(addr, e))?;
        Ok(Router { listener, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.shared.config.listen)
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        crate::listen::serve(self.listener, self.shared, shutdown).await
    }
}

/// Why a router could not start.
#[derive(Debug)]
pub enum RouterError {
    Config(ConfigError),
    Bind(SocketAddr, std::io::Error),
}

impl std::fmt::Display for RouterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouterError::Config(e) => write!(f, "invalid configuration: {e}"),
            RouterError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
        }
    }
}

impl std::error::Error for RouterError {}

/// The path of one connection.
pub async fn handle(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr) {
    shared.stats.connection();
    let _ = client.set_nodelay(true);
    let prefix = shared.prefix(peer);

    // Intake: the ClientHello within its byte and time budget.
    let Some(slot) = shared.begin_inspecting(prefix) else {
        shared.stats.rejected("per_ip_limit");
        if shared.decision_log.allow() {
            warn!(%peer, "closed: too many connections from this address still sending their hello");
        }
        return;
    };
    let limits = &shared.config.limits;
    let mut hs = Handshake::new(inspect::Limits { max_client_bytes: limits.max_hello_bytes, ..Default::default() });
    let mut hello = Vec::with_capacity(2048);
    let intake = read_hello(&mut client, &mut hs, &mut hello, shared.config.timeouts.hello, limits.max_hello_bytes).await;
    drop(slot);
    if let Err(e) = intake {
        reject(&shared, peer, &e);
        return;
    }

    // Route.
    let Some(offer) = hs.client_hello().map(|ch| Offer::from_hello(&ch)) else { return };
    let decision = decide(&shared, &offer, &prefix);
    shared.stats.routed(decision.rule.as_str(), decision.reason);

    // Connect, with failover.
    let connected = match connect::connect(&shared, &decision.candidates, &hello).await {
        Ok(c) => c,
        Err(e) => {
            shared.stats.no_backend();
            warn!(%peer, error = %e, "closed: no backend answered");
            return;
        }
    };
    if connected.failed > 0 {
        shared.stats.failover();
    }
    let chosen = &decision.candidates[0];
    if !std::sync::Arc::ptr_eq(chosen, &connected.backend) {
        // The chosen backend was not reached: forget the client's recent
        // connections to it so rules 2 and 3 stop pointing there.
        shared.clients.forget_backend(&prefix, &chosen.name);
    }
    log_decision(&shared, peer, &decision, &connected.backend.name, &offer);
    let _active = connected.backend.track();

    // Relay, learning from the server's flight.
    let mut server = connected.stream;
    let learner = Learner { shared: &shared, prefix, offer: &offer, decision: &decision, backend: &connected.backend };
    let end = relay(
        &mut client,
        &mut server,
        hs,
        &connected.first_bytes,
        shared.config.timeouts.idle,
        &shared.clock,
        &learner,
    )
    .await;
    if let RelayEnd::Reset(side, _) = &end {
        // Pass a reset on as a reset.
        let other = match side {
            Side::Client => &server,
            Side::Server => &client,
        };
        let _ = socket2::SockRef::from(other).set_linger(Some(std::time::Duration::ZERO));
    }
}

fn reject(shared: &Shared, peer: SocketAddr, e: &IntakeError) {
    shared.stats.rejected(e.reason());
    if shared.decision_log.allow() {
        info!(%peer, reason = e.reason(), "closed before routing: {e}");
    }
}

fn log_decision(shared: &Shared, peer: SocketAddr, d: &Decision, reached: &str, offer: &Offer) {
    if !shared.decision_log.allow() {
        return;
    }
    let key = offer
        .psk_identities
        .first()
        .map(|(k, _)| k)
        .or(offer.ticket.as_ref().map(|(k, _)| k))
        .or(offer.session_id.as_ref())
        .map(|k| k.short_hex());
    match d.rule {
        crate::route::Rule::Rebind => info!(
            %peer, backend = reached, new_key = key.as_deref().unwrap_or("-"), reason = d.reason,
            "re-bound an unknown session to the client address's backend"
        ),
        _ => info!(%peer, backend = reached, rule = d.rule.as_str(), reason = d.reason, key = key.as_deref().unwrap_or("-"), "routed"),
    }
}

/// Learns from the server's flight as soon as the inspector has it.
struct Learner<'a> {
    shared: &'a Shared,
    prefix: ClientPrefix,
    offer: &'a Offer,
    decision: &'a Decision,
    backend: &'a Arc<crate::backend::Backend>,
}

impl OnServerFlight for Learner<'_> {
    fn done(&self, hs: &Handshake) {
        if let Some(outcome) = hs.outcome() {
            learn::learn(self.shared, self.prefix, self.offer, self.decision, self.backend, outcome);
        }
    }

    fn unreadable(&self, status: &Status) {
        let reason = match status {
            Status::Alert(_) => "alert",
            Status::NotTls(_) => "not_tls",
            _ => "malformed",
        };
        metrics::counter!(crate::metrics::SERVER_UNREADABLE, "reason" => reason).increment(1);
        if self.shared.decision_log.allow() {
            info!(backend = %self.backend.name, ?status, "server flight not learned from");
        }
    }
}
