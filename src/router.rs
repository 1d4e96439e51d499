//! One router: its listeners and pools, and the path of one connection
//! through the stages (intake → route → connect → relay → learn).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tracing::{error, info, warn};

use crate::admin::{AdminServer, Control, Limits as AdminLimits};
use crate::affinity::clients::{ClientIndex, ClientIndexConfig, ClientPrefix};
use crate::affinity::memory::MemoryStoreConfig;
use crate::affinity::{AffinityStore, MemoryStore};
use crate::backend::{Backend, BackendName, Pool};
use crate::balance::Balancer;
use crate::clock::Clock;
use crate::config::{Config, ConfigErrors, ListenerConfig, NonTls, PoolConfig};
use crate::conn_log::{ConnectionTrace, close};
use crate::inspect::{self, Handshake, Status};
use crate::intake::{IntakeError, read_hello};
use crate::log_limit::LogLimiter;
use crate::relay::{OnServerFlight, RelayEnd, Relayed, Side, relay};
use crate::route::{Decision, Offer, Rule, decide};
use crate::sni::SniMap;
use crate::stats::PoolSeries;
use crate::stats::{Snapshot, Stats};
use crate::{connect, learn, proxy};

/// One pool's live state: its backends, balancer and affinity tables.
/// Affinity never crosses pools.
#[derive(Debug)]
pub struct PoolState {
    pub config: PoolConfig,
    pub backends: Pool,
    pub balancer: Balancer,
    /// Session key → owner backend.
    pub table: Arc<dyn AffinityStore>,
    /// Client prefix → recent confirmed connections.
    pub clients: ClientIndex,
    pub clock: Clock,
    /// The router's counters (shared by every pool).
    pub stats: Arc<Stats>,
    /// Keeps per-connection decision logs at info level affordable.
    pub decision_log: Arc<LogLimiter>,
    /// Its Prometheus series (table size, evictions, decision time).
    pub series: PoolSeries,
    /// The last [`RECENT_DECISIONS`] routing decisions, newest last: lets
    /// `stickytls demo` (and later a stats page) say why each connection
    /// went where it did, without parsing logs.
    recent: Mutex<VecDeque<DecisionRecord>>,
}

/// How many routing decisions a pool remembers for [`PoolState::recent_decisions`].
pub const RECENT_DECISIONS: usize = 256;

/// Why one connection reached the backend it reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// The client's address (after any PROXY header) and port.
    pub client: SocketAddr,
    /// The backend actually connected to (after failover).
    pub backend: BackendName,
    /// The rule that chose: `key`, `rebind`, `source_ip` or `balancer`.
    pub rule: &'static str,
    /// The rule's reason, e.g. "session ID known".
    pub reason: &'static str,
}

impl PoolState {
    /// A pool with an in-process affinity table.
    pub fn new(
        config: PoolConfig,
        clock: Clock,
        stats: Arc<Stats>,
        log: Arc<LogLimiter>,
    ) -> PoolState {
        let a = &config.affinity;
        let table = Arc::new(MemoryStore::new(
            MemoryStoreConfig {
                capacity: a.table_size,
                inactivity: a.inactivity_timeout,
                absolute_max: a.absolute_max,
            },
            clock.clone(),
        ));
        Self::with_store(config, clock, stats, log, table)
    }

    /// A pool around an existing store (shared between routers, or kept
    /// across a reload).
    pub fn with_store(
        config: PoolConfig,
        clock: Clock,
        stats: Arc<Stats>,
        decision_log: Arc<LogLimiter>,
        table: Arc<dyn AffinityStore>,
    ) -> PoolState {
        let a = &config.affinity;
        let clients = ClientIndex::new(
            ClientIndexConfig {
                capacity: a.clients_tracked,
                window: a.correlation_window,
                nat_threshold: a.nat_threshold,
            },
            clock.clone(),
        );
        PoolState {
            series: PoolSeries::register(&config.name),
            backends: Pool::new(&config.name, &config.backends),
            balancer: Balancer::new(config.balance),
            table,
            clients,
            clock,
            stats,
            decision_log,
            config,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_DECISIONS)),
        }
    }

    /// Remembers a decision, forgetting the oldest beyond [`RECENT_DECISIONS`].
    fn record_decision(&self, client: SocketAddr, backend: &BackendName, d: &Decision) {
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == RECENT_DECISIONS {
            recent.pop_front();
        }
        recent.push_back(DecisionRecord {
            client,
            backend: backend.clone(),
            rule: d.rule.as_str(),
            reason: d.reason,
        });
    }

    /// The last routing decisions, oldest first.
    pub fn recent_decisions(&self) -> Vec<DecisionRecord> {
        self.recent.lock().unwrap().iter().cloned().collect()
    }

    /// The newest decision for a client address and port, if still kept.
    pub fn decision_for(&self, client: SocketAddr) -> Option<DecisionRecord> {
        self.recent
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.client == client)
            .cloned()
    }

    pub fn prefix(&self, addr: std::net::IpAddr) -> ClientPrefix {
        let a = &self.config.affinity;
        ClientPrefix::new(addr, a.ipv4_prefix, a.ipv6_prefix)
    }
}

/// One listener's state: how it picks a pool, and its hello-stage limits.
#[derive(Debug)]
pub struct ListenerState {
    pub config: ListenerConfig,
    /// Pools reachable from this listener, indexed by `sni`.
    pools: Vec<Arc<PoolState>>,
    sni: SniMap,
    default_pool: usize,
    non_tls_pool: Option<usize>,
    /// The hello budget: the longest hello timeout of the pools the
    /// listener can reach, since the pool is only known after the hello.
    hello_timeout: Duration,
    stats: Arc<Stats>,
    decision_log: Arc<LogLimiter>,
    /// Connections per client prefix still in the hello stage: caps how
    /// much of the hello budget one address can hold at once.
    inspecting: Mutex<HashMap<ClientPrefix, u32, RandomState>>,
    /// `max_connections`, shared by the accept loops of every thread.
    pub(crate) connection_slots: Arc<tokio::sync::Semaphore>,
}

impl ListenerState {
    fn new(
        config: ListenerConfig,
        all: &HashMap<String, Arc<PoolState>>,
        stats: Arc<Stats>,
        log: Arc<LogLimiter>,
    ) -> Self {
        let mut pools: Vec<Arc<PoolState>> = Vec::new();
        let mut index = |name: &str| -> usize {
            if let Some(i) = pools.iter().position(|p| p.config.name == name) {
                return i;
            }
            // Validation guarantees the name exists.
            pools.push(all[name].clone());
            pools.len() - 1
        };
        let default_pool = index(&config.default_pool);
        let mut sni = SniMap::default();
        for r in &config.sni {
            sni.insert(&r.pattern, index(&r.pool));
        }
        let non_tls_pool = match &config.non_tls {
            NonTls::Reject => None,
            NonTls::Pool(p) => Some(index(p)),
        };
        let hello_timeout = pools
            .iter()
            .map(|p| p.config.timeouts.hello)
            .max()
            .unwrap_or(Duration::from_secs(5));
        ListenerState {
            pools,
            sni,
            default_pool,
            non_tls_pool,
            hello_timeout,
            stats,
            decision_log: log,
            inspecting: Mutex::new(HashMap::default()),
            connection_slots: Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections)),
            config,
        }
    }

    /// The pool for a hello's SNI.
    pub fn pool_for(&self, sni: Option<&[u8]>) -> &Arc<PoolState> {
        let i = sni
            .and_then(|s| self.sni.lookup(s))
            .unwrap_or(self.default_pool);
        &self.pools[i]
    }

    /// Closes a connection before routing: counted by `reason`, and logged
    /// within the per-connection log budget.
    fn reject(&self, peer: SocketAddr, reason: &'static str, why: &dyn std::fmt::Display) {
        self.stats.rejected(reason);
        if self.decision_log.allow() {
            info!(%peer, reason, "closed before routing: {why}");
        }
    }

    fn default_pool(&self) -> &Arc<PoolState> {
        &self.pools[self.default_pool]
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
        Some(InspectingGuard {
            listener: self.clone(),
            prefix,
        })
    }
}

/// Releases a prefix's hello-stage slot.
struct InspectingGuard {
    listener: Arc<ListenerState>,
    prefix: ClientPrefix,
}

impl Drop for InspectingGuard {
    fn drop(&mut self) {
        let mut map = self.listener.inspecting.lock().unwrap();
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
    /// Listening sockets, bound with `SO_REUSEPORT` so that each worker
    /// thread can open its own socket on the same address (the kernel then
    /// spreads connections over them, with no thread handing work to
    /// another).
    listeners: Vec<(std::net::TcpListener, Arc<ListenerState>)>,
    pools: Vec<Arc<PoolState>>,
    stats: Arc<Stats>,
    /// The admin endpoint, on its own thread; it stops when the router is
    /// dropped (after `run_on_threads` returns).
    admin: Option<AdminServer>,
}

impl Router {
    /// Validates `config` and binds every listener.
    pub async fn bind(config: Config) -> Result<Router, RouterError> {
        Self::bind_with(config, Clock::new(), HashMap::new()).await
    }

    /// Like [`Router::bind`], with a clock and, per pool name, an existing
    /// affinity store to use instead of a new in-process one.
    pub async fn bind_with(
        config: Config,
        clock: Clock,
        mut stores: HashMap<String, Arc<dyn AffinityStore>>,
    ) -> Result<Router, RouterError> {
        config.validate().map_err(RouterError::Config)?;
        // The recorder first: the series registered below are no-ops for
        // good if it comes later.
        let recorder = config
            .admin
            .as_ref()
            .and_then(|_| crate::metrics::recorder());
        let stats = Arc::new(Stats::default());
        let log = Arc::new(LogLimiter::new(config.log.connections_per_second));
        let mut by_name = HashMap::new();
        let mut pools = Vec::new();
        for p in &config.pools {
            let state = Arc::new(match stores.remove(&p.name) {
                Some(store) => PoolState::with_store(
                    p.clone(),
                    clock.clone(),
                    stats.clone(),
                    log.clone(),
                    store,
                ),
                None => PoolState::new(p.clone(), clock.clone(), stats.clone(), log.clone()),
            });
            by_name.insert(p.name.clone(), state.clone());
            pools.push(state);
        }
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let socket = bind_reuseport(l.bind).map_err(|e| RouterError::Bind(l.bind, e))?;
            listeners.push((
                socket,
                Arc::new(ListenerState::new(
                    l.clone(),
                    &by_name,
                    stats.clone(),
                    log.clone(),
                )),
            ));
        }
        let admin = match &config.admin {
            Some(a) => Some(
                AdminServer::start(
                    a,
                    Control::new(pools.clone(), stats.clone()),
                    recorder,
                    AdminLimits::default(),
                )
                .map_err(|e| RouterError::Admin(a.bind, e))?,
            ),
            None => None,
        };
        Ok(Router {
            listeners,
            pools,
            stats,
            admin,
        })
    }

    /// The first listener's bound address (with the real port when the
    /// configuration said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0]
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .map(|(l, s)| l.local_addr().unwrap_or(s.config.bind))
            .collect()
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<PoolState>> {
        self.pools.iter().find(|p| p.config.name == name)
    }

    /// The admin endpoint's bound address, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    pub fn pools(&self) -> &[Arc<PoolState>] {
        &self.pools
    }

    /// A handle on the router's counters that outlives `run`.
    pub fn stats_handle(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    pub fn stats(&self) -> Snapshot {
        self.stats.snapshot()
    }

    /// Serves every listener on the current runtime until `shutdown`
    /// completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for (socket, state) in self.listeners {
            match TcpListener::from_std(socket) {
                Ok(l) => tasks.push(tokio::spawn(crate::listen::serve(
                    l,
                    state,
                    stopped(rx.clone()),
                ))),
                Err(e) => error!(error = %e, "cannot register a listening socket with the runtime"),
            }
        }
        shutdown.await;
        let _ = tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Serves on `threads` worker threads, each with its own single-threaded
    /// runtime and its own listening socket per listener, until `stop` turns
    /// true. Blocks until every thread has stopped accepting.
    ///
    /// Why not one multi-threaded runtime: a proxy's work is many short,
    /// independent connections, and work stealing then mostly costs
    /// cross-thread wake-ups (an eventfd write and an extra epoll_wait per
    /// hand-off) and cache misses. With a socket per thread the kernel
    /// spreads connections, and each connection lives on one thread.
    /// Tables and counters stay shared.
    pub fn run_on_threads(
        mut self,
        threads: usize,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let mut sockets = Vec::new();
            for (socket, state) in &self.listeners {
                let s = if i == 0 {
                    socket.try_clone()?
                } else {
                    bind_reuseport(socket.local_addr()?)?
                };
                sockets.push((s, state.clone()));
            }
            let stop = stop.clone();
            let handle = std::thread::Builder::new()
                .name(format!("stickytls-{i}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let mut tasks = Vec::new();
                        for (s, state) in sockets {
                            let l = TcpListener::from_std(s)?;
                            tasks.push(tokio::spawn(crate::listen::serve(
                                l,
                                state,
                                stopped(stop.clone()),
                            )));
                        }
                        for t in tasks {
                            let _ = t.await;
                        }
                        Ok::<(), std::io::Error>(())
                    })
                })?;
            handles.push(handle);
        }
        for h in handles {
            h.join()
                .map_err(|_| std::io::Error::other("a worker thread panicked"))??;
        }
        // Serving until the workers are done: a scrape during shutdown
        // still answers.
        drop(self.admin.take());
        Ok(())
    }

    /// Starts serving on a task of the current runtime; the router stops
    /// when the returned handle is dropped.
    pub fn spawn(mut self) -> RunningRouter {
        let addr = self.local_addr();
        let stats = self.stats.clone();
        let pools = self.pools.clone();
        let admin = self.admin.take();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            let _ = rx.await;
        }));
        RunningRouter {
            addr,
            stats,
            pools,
            admin,
            _stop: tx,
            task,
        }
    }
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A listening socket that shares its port with the other worker threads'.
/// TCP_NODELAY is set here, once, rather than on every accepted connection:
/// Linux copies it to the sockets `accept` returns, which saves a system
/// call per connection (a relay forwards records as they come and must not
/// wait on Nagle's algorithm).
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A router serving on a task: its address and state, for tests and the
/// demo. Dropping it stops the accept loops.
#[derive(Debug)]
pub struct RunningRouter {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    pools: Vec<Arc<PoolState>>,
    admin: Option<AdminServer>,
    _stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRouter {
    /// The admin endpoint's bound address, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    pub fn stats(&self) -> Snapshot {
        self.stats.snapshot()
    }

    pub fn pool(&self, name: &str) -> Option<&Arc<PoolState>> {
        self.pools.iter().find(|p| p.config.name == name)
    }
}

impl Drop for RunningRouter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a router could not start.
#[derive(Debug)]
pub enum RouterError {
    Config(ConfigErrors),
    Bind(SocketAddr, std::io::Error),
    /// The admin endpoint could not listen.
    Admin(SocketAddr, std::io::Error),
}

impl std::fmt::Display for RouterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouterError::Config(e) => write!(f, "invalid configuration: {e}"),
            RouterError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            RouterError::Admin(a, e) => write!(f, "cannot start the admin endpoint on {a}: {e}"),
        }
    }
}

impl std::error::Error for RouterError {}

/// The path of one connection. `client` comes from one of the router's
/// listening sockets, so it already has TCP_NODELAY (see `bind_reuseport`).
pub async fn handle(listener: Arc<ListenerState>, mut client: TcpStream, peer: SocketAddr) {
    listener.stats.connection();
    let _open = Open(&listener.stats);
    let mut trace = ConnectionTrace::start("", peer);
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
    trace.client(client_addr);
    let Some(slot) = listener.begin_inspecting(listener.default_pool().prefix(client_addr.ip()))
    else {
        listener.stats.rejected("per_ip_limit");
        if listener.decision_log.allow() {
            warn!(peer = %client_addr, "closed: too many connections from this address still sending their hello");
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
    match (intake, listener.non_tls_pool) {
        (Ok(()), _) => {}
        (Err(IntakeError::NotTls(n)), Some(non_tls)) => {
            let pool = listener.pools[non_tls].clone();
            if listener.decision_log.allow() {
                info!(peer = %client_addr, reason = n.reason, pool = %pool.config.name, "not TLS: forwarded to the non-TLS pool");
            }
            trace.hello(None);
            forward_blind(&pool, client, client_addr, &hello, false, trace).await;
            return;
        }
        (Err(e), _) => {
            if let Some((side, kind)) = e.inspection_error() {
                listener.stats.inspection_error(side, kind);
            }
            return listener.reject(client_addr, e.reason(), &e);
        }
    }

    // Route: the pool by SNI, then the affinity rules inside it.
    let (pool, offer) = {
        let Some(ch) = hs.client_hello() else { return };
        trace.hello(ch.sni);
        let pool = listener.pool_for(ch.sni).clone();
        let offer = pool.config.inspect.then(|| Offer::from_hello(&ch));
        (pool, offer)
    };
    let Some(offer) = offer else {
        forward_blind(&pool, client, client_addr, &hello, true, trace).await;
        return;
    };
    let decided = Instant::now();
    let prefix = pool.prefix(client_addr.ip());
    let decision = decide(&pool, &offer, &prefix);
    pool.series.decision_time(decided.elapsed());
    pool.stats.routed(decision.rule);
    let kind = match decision.rule {
        Rule::Key(kind) => Some(kind.as_str()),
        Rule::Rebind => Some(offer.resumption_kind().as_str()),
        _ => None,
    };
    trace.routed(&pool.config.name, decision.rule.as_str(), kind);

    // Connect, with failover.
    let connecting = Instant::now();
    let Some(connected) = connect_logged(&pool, &decision, client_addr, &hello, true).await else {
        trace.finish(close::NO_BACKEND, &pool.decision_log);
        return;
    };
    trace.connected(&connected.backend.name, connecting.elapsed());
    if let Some(chosen) = decision.candidates.first() {
        if !Arc::ptr_eq(chosen, &connected.backend) {
            // The chosen backend was not reached: stop rules 2 and 3 from
            // pointing this client there.
            pool.clients.forget_backend(&prefix, &chosen.name);
        }
    }
    pool.record_decision(client_addr, &connected.backend.name, &decision);

    // Relay, learning from the server's flight.
    let backend = connected.backend.clone();
    let learner = Learner {
        pool: &pool,
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
        RelayEnd::Reset(Side::Client, _) => close::CLIENT_RESET,
        RelayEnd::Reset(Side::Server, _) => close::BACKEND_RESET,
    };
    trace.finish(close, &pool.decision_log);
}

/// Forwards a connection by the balancer alone: non-TLS input sent to a
/// pool (`tls` false: its protocol may not have the server speak first, so
/// reaching a backend is enough), or a pool with inspection off.
async fn forward_blind(
    pool: &Arc<PoolState>,
    client: TcpStream,
    client_addr: SocketAddr,
    hello: &[u8],
    tls: bool,
    mut trace: ConnectionTrace,
) {
    let prefix = pool.prefix(client_addr.ip());
    let order = pool.balancer.order(pool.backends.all(), &prefix);
    let decision = Decision {
        candidates: order,
        rule: Rule::Balancer,
        matched: None,
        reason: "forwarded without inspection",
    };
    pool.stats.routed(decision.rule);
    trace.routed(&pool.config.name, decision.rule.as_str(), None);
    let connecting = Instant::now();
    let Some(connected) = connect_logged(pool, &decision, client_addr, hello, tls).await else {
        trace.finish(close::NO_BACKEND, &pool.decision_log);
        return;
    };
    trace.connected(&connected.backend.name, connecting.elapsed());
    pool.record_decision(client_addr, &connected.backend.name, &decision);
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
        &first_bytes,
        pool.config.timeouts.idle,
        &pool.clock,
        flight,
    )
    .await;
    relayed.to_server += hello.len() as u64;
    pool.stats.relayed(relayed.to_server, relayed.to_client);
    if let RelayEnd::Reset(side, _) = &relayed.end {
        let other = match side {
            Side::Client => &server,
            Side::Server => &client,
        };
        let _ = socket2::SockRef::from(other).set_linger(Some(Duration::ZERO));
    }
    drop(active);
    relayed
}

async fn connect_logged(
    pool: &Arc<PoolState>,
    decision: &Decision,
    client_addr: SocketAddr,
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
            warn!(peer = %client_addr, pool = %pool.config.name, error = %e, "closed: no backend answered");
            None
        }
    }
}

/// Learns from the server's flight as soon as the inspector has it.
struct Learner<'a> {
    pool: &'a PoolState,
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
            info!(backend = %self.backend.name, ?status, "server flight not learned from");
        }
    }
}

/// For relays that do not inspect.
struct NoLearning;

impl OnServerFlight for NoLearning {
    fn done(&self, _: &Handshake) {}
    fn unreadable(&self, _: &Status) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendConfig;

    #[test]
    fn recent_decisions_keep_the_newest_within_the_cap() {
        let config = PoolConfig::new(
            "p",
            vec![BackendConfig::new("a", "127.0.0.1:1".parse().unwrap())],
        );
        let pool = PoolState::new(
            config,
            Clock::new(),
            Arc::default(),
            Arc::new(LogLimiter::new(1)),
        );
        let a: BackendName = Arc::from("a");
        let d = Decision {
            candidates: Vec::new(),
            rule: Rule::Balancer,
            matched: None,
            reason: "test",
        };
        for port in 0..(RECENT_DECISIONS as u16 + 10) {
            pool.record_decision(SocketAddr::from(([127, 0, 0, 1], port)), &a, &d);
        }
        let recent = pool.recent_decisions();
        assert_eq!(recent.len(), RECENT_DECISIONS);
        assert_eq!(
            recent[0].client.port(),
            10,
            "the oldest are forgotten first"
        );
        let last = SocketAddr::from(([127, 0, 0, 1], RECENT_DECISIONS as u16 + 9));
        assert_eq!(pool.decision_for(last).map(|r| r.rule), Some("balancer"));
        assert_eq!(
            pool.decision_for(SocketAddr::from(([127, 0, 0, 1], 0))),
            None
        );
    }

    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        let listener = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(
            accepted.nodelay().unwrap(),
            "this kernel does not copy TCP_NODELAY to accepted sockets"
        );
    }
}
