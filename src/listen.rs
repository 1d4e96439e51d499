//! Accepting connections: each listener's state and per-client limits, the
//! accept loop (a global connection limit, back-off when the process runs
//! out of descriptors, a clean stop on shutdown), and the worker threads
//! with their `SO_REUSEPORT` sockets.
//!
//! What happens to an accepted connection is not decided here: the router
//! hands [`serve`] the connection path (`connection::handle`), so this
//! stage depends on the pools it routes to and never on what follows it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

use crate::affinity::clients::ClientPrefix;
use crate::affinity::{KeyedState, keyed_state};
use crate::config::{ListenerConfig, NonTls};
use crate::log_limit::LogLimiter;
use crate::pool::PoolState;
use crate::shutdown::{Connections, Drain};
use crate::sni::SniMap;
use crate::stats::Stats;
use crate::worker::{self, Padded};

/// One listener's state: how it picks a pool, and its per-client limits.
#[derive(Debug)]
pub struct ListenerState {
    pub config: ListenerConfig,
    /// `config.name`, shared: every connection's log lines and counters
    /// carry it, and a shared string costs them no allocation.
    pub(crate) name: Arc<str>,
    /// `stickytls_connections_total{listener}`, registered once here: a
    /// connection bumps it without looking it up.
    pub(crate) accepted: metrics::Counter,
    /// Pools reachable from this listener, indexed by `sni`.
    pools: Vec<Arc<PoolState>>,
    sni: SniMap,
    default_pool: usize,
    non_tls_pool: Option<usize>,
    /// The hello budget: the longest hello timeout of the pools the
    /// listener can reach, since the pool is only known after the hello.
    pub(crate) hello_timeout: Duration,
    pub(crate) stats: Arc<Stats>,
    pub(crate) decision_log: Arc<LogLimiter>,
    /// Connections per client prefix, open and still in the hello stage:
    /// caps the share of the listener's slots, and of the hello budget,
    /// one client can hold at once. Shared with the state a reload puts in
    /// this one's place, so the caps count the connections that began
    /// before it too.
    clients: Arc<ClientCounts>,
    /// `max_connections`, shared by the accept loops of every thread.
    pub(crate) connection_slots: Arc<Slots>,
}

impl ListenerState {
    /// `all` holds every pool by name; validation guarantees that the
    /// listener names only pools in it.
    pub(crate) fn new(
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
            accepted: metrics::counter!(crate::metrics::CONNECTIONS, "listener" => config.name.clone()),
            name: Arc::from(config.name.as_str()),
            pools,
            sni,
            default_pool,
            non_tls_pool,
            hello_timeout,
            stats,
            decision_log: log,
            clients: Arc::default(),
            connection_slots: Arc::new(Slots::new(config.limits.max_connections)),
            config,
        }
    }

    /// The state a reload puts in `self`'s place for the same address:
    /// built from the new configuration and pools, but counting each
    /// client's connections and hellos with `self`'s counts (its new limits
    /// apply to the next connection; connections already open count, none
    /// is closed), and, while `max_connections` is unchanged, taking
    /// connection slots from `self`'s semaphore, so that connections from
    /// before the reload still count. A changed limit starts a semaphore of
    /// its own: connections from before it then hold the old one's slots
    /// until they end.
    pub(crate) fn succeed(
        &self,
        config: ListenerConfig,
        all: &HashMap<String, Arc<PoolState>>,
    ) -> Self {
        let same_limit = config.limits.max_connections == self.config.limits.max_connections;
        let mut next =
            ListenerState::new(config, all, self.stats.clone(), self.decision_log.clone());
        next.clients = self.clients.clone();
        if same_limit {
            next.connection_slots = self.connection_slots.clone();
        }
        next
    }

    /// The pool for a hello's SNI. A listener without SNI rules (the usual
    /// one) does not look: the lookup lowercases the name into a new
    /// string, an allocation per connection for nothing.
    pub fn pool_for(&self, sni: Option<&[u8]>) -> &Arc<PoolState> {
        let i = sni
            .filter(|_| !self.sni.is_empty())
            .and_then(|s| self.sni.lookup(s))
            .unwrap_or(self.default_pool);
        &self.pools[i]
    }

    /// Where input that is not TLS goes, if anywhere.
    pub fn non_tls_pool(&self) -> Option<&Arc<PoolState>> {
        self.non_tls_pool.map(|i| &self.pools[i])
    }

    pub(crate) fn default_pool(&self) -> &Arc<PoolState> {
        &self.pools[self.default_pool]
    }

    /// Closes a connection before routing: counted by `reason`, and logged
    /// within the per-connection log budget.
    pub(crate) fn reject(
        &self,
        peer: SocketAddr,
        reason: &'static str,
        why: &dyn std::fmt::Display,
    ) {
        self.stats.rejected(&self.name, reason);
        if self.decision_log.allow() {
            info!(listener = %self.name, %peer, reason, "closed before routing: {why}");
        }
    }

    /// Counts a new connection of client `prefix`: one of the client's
    /// share of the listener's slots (`max_connections_per_client`), held
    /// until the first guard drops, and one of its hello-stage slots
    /// (`max_inspecting_per_ip`), held until the second drops. Refused,
    /// counting nothing, when the client is at either limit. One lock of
    /// one shard of the counts; no count every thread writes.
    pub(crate) fn admit(
        &self,
        prefix: ClientPrefix,
    ) -> Result<(ClientSlot<'_>, HelloSlot<'_>), Refused> {
        let limits = &self.config.limits;
        let share = limits.connections_per_client();
        let counts = &*self.clients;
        let shard = counts.shard(&prefix);
        let mut map = counts.lock(shard);
        let n = map.entry(prefix).or_default();
        // `open` never nears u32::MAX: each is an open socket.
        let refused = if n.open as usize >= share {
            Some(Refused::Share)
        } else if n.hello >= limits.max_inspecting_per_ip {
            Some(Refused::Hello)
        } else {
            n.open += 1;
            n.hello += 1;
            None
        };
        if let Some(refused) = refused {
            // Only a limit of 0, which validation refuses, finds no entry.
            drop_if_unused(&mut map, prefix);
            return Err(refused);
        }
        let at = Held {
            counts,
            prefix,
            shard,
        };
        Ok((ClientSlot(at), HelloSlot(at)))
    }
}

/// Why [`ListenerState::admit`] turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The client holds its share of the listener's slots
    /// (`max_connections_per_client`).
    Share,
    /// The client has `max_inspecting_per_ip` connections still sending
    /// their hello.
    Hello,
}

impl Refused {
    /// The `reason` label of the rejection it counts.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::Share => "per_client_limit",
            Refused::Hello => "per_ip_limit",
        }
    }
}

/// Removes `prefix`'s entry when it counts nothing (the entry
/// [`ListenerState::admit`] made for a client it then refused).
fn drop_if_unused(map: &mut Counts, prefix: ClientPrefix) {
    if let Entry::Occupied(n) = map.entry(prefix) {
        if n.get().open == 0 && n.get().hello == 0 {
            n.remove();
        }
    }
}

/// Shards of the per-client counts, so that worker threads counting
/// different addresses rarely meet on one lock: an address's counts live
/// in the shard a keyed hash of it picks. Keyed ([`KeyedState`], seeded
/// per process) because the addresses are the clients' to choose: a fixed
/// hash would let them pile onto one shard.
#[derive(Debug)]
struct ClientCounts {
    hasher: KeyedState,
    shards: Box<[Padded<Mutex<Counts>>]>,
}

/// One client prefix's connections on a listener: a prefix with none has
/// no entry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PerClient {
    /// Open, from the PROXY header (if any) to the close.
    open: u32,
    /// Of those, the ones still sending their hello.
    hello: u32,
}

/// The per-client counts of one shard.
type Counts = HashMap<ClientPrefix, PerClient, KeyedState>;

/// Enough shards that 2 to 64 threads seldom share a lock.
const CLIENT_SHARDS: usize = 64;

impl Default for ClientCounts {
    fn default() -> Self {
        ClientCounts {
            hasher: keyed_state(),
            shards: (0..CLIENT_SHARDS)
                .map(|_| Padded(Mutex::new(HashMap::with_hasher(keyed_state()))))
                .collect(),
        }
    }
}

impl ClientCounts {
    fn shard(&self, prefix: &ClientPrefix) -> usize {
        (self.hasher.hash_one(prefix) % CLIENT_SHARDS as u64) as usize
    }

    /// A poisoned shard only means a panic elsewhere mid-update; its counts
    /// are still whole numbers, and accepting must go on.
    fn lock(&self, shard: usize) -> std::sync::MutexGuard<'_, Counts> {
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one from `prefix`'s count that `field` picks, and forgets
    /// the prefix once it counts nothing.
    fn release(&self, shard: usize, prefix: ClientPrefix, field: fn(&mut PerClient) -> &mut u32) {
        let mut map = self.lock(shard);
        // One lookup for the decrement and the removal.
        if let Entry::Occupied(mut n) = map.entry(prefix) {
            let count = field(n.get_mut());
            *count = count.saturating_sub(1);
            if *n.get() == PerClient::default() {
                n.remove();
            }
        }
    }
}

/// Where a guard's count lives. Borrowed from the listener's state, which
/// the connection holds for its whole life: a guard costs no reference
/// count.
#[derive(Debug, Clone, Copy)]
struct Held<'a> {
    counts: &'a ClientCounts,
    prefix: ClientPrefix,
    /// The shard `prefix` hashed to, kept so release does not hash again.
    shard: usize,
}

/// One of a client's share of the listener's slots, given back when
/// dropped: however the connection ends (closed, refused later, timed
/// out, or its task dropped at shutdown), its handler drops it.
#[derive(Debug)]
pub(crate) struct ClientSlot<'a>(Held<'a>);

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        let h = self.0;
        h.counts.release(h.shard, h.prefix, |n| &mut n.open);
    }
}

/// One of a client's hello-stage slots, given back when dropped.
#[derive(Debug)]
pub(crate) struct HelloSlot<'a>(Held<'a>);

impl Drop for HelloSlot<'_> {
    fn drop(&mut self) {
        let h = self.0;
        h.counts.release(h.shard, h.prefix, |n| &mut n.hello);
    }
}

/// One listening address, as every worker thread's accept loop for it sees
/// it: the state connections are handed now (a reload replaces it for the
/// connections accepted after), or `None` once a reload has removed the
/// listener. The accept loop waits on a change together with `accept`, so
/// noticing one costs the connection path nothing, and taking the new
/// state is the only time it touches the channel's lock.
#[derive(Debug)]
pub struct ListenerSlot {
    /// The configured address: what a reload matches listeners by.
    pub bind: SocketAddr,
    /// The address actually bound (the real port when `bind` said 0).
    pub bound: SocketAddr,
    state: watch::Sender<Option<Arc<ListenerState>>>,
    /// Sockets bound before any worker serves the slot: the one bound at
    /// start or by the reload that added it (so that an address that cannot
    /// be bound fails the start or the reload, not a worker), or every
    /// socket a previous process handed over ([`crate::takeover`]). Socket
    /// i goes to worker thread i modulo the thread count, so every one is
    /// served whatever the count; a thread left without one binds its own,
    /// sharing the port through `SO_REUSEPORT`.
    waiting: Mutex<Vec<Option<std::net::TcpListener>>>,
    /// A copy of every socket the accept loops serve, for a takeover to
    /// hand over. Dropped when accepting stops, so that the port then
    /// refuses connections instead of queueing them for nobody.
    copies: Mutex<Vec<std::net::TcpListener>>,
}

impl ListenerSlot {
    /// Binds `state`'s address.
    pub fn bind(state: Arc<ListenerState>) -> std::io::Result<Arc<ListenerSlot>> {
        let socket = bind_reuseport(state.config.bind)?;
        let bound = socket.local_addr()?;
        Ok(ListenerSlot::around(state, vec![socket], bound))
    }

    /// A slot around sockets already bound at `bound` (by a reload before
    /// it changes anything, or by a previous process).
    pub(crate) fn around(
        state: Arc<ListenerState>,
        sockets: Vec<std::net::TcpListener>,
        bound: SocketAddr,
    ) -> Arc<ListenerSlot> {
        Arc::new(ListenerSlot {
            bind: state.config.bind,
            bound,
            state: watch::Sender::new(Some(state)),
            waiting: Mutex::new(sockets.into_iter().map(Some).collect()),
            copies: Mutex::new(Vec::new()),
        })
    }

    /// The state new connections get, `None` once closed.
    pub fn current(&self) -> Option<Arc<ListenerState>> {
        self.state.borrow().clone()
    }

    /// Hands the connections accepted from now on `state`.
    pub fn replace(&self, state: Arc<ListenerState>) {
        self.state.send_replace(Some(state));
    }

    /// Stops every accept loop on this address; connections already
    /// accepted run on.
    pub fn close(&self) {
        self.state.send_replace(None);
        lock(&self.waiting).clear();
        self.release();
    }

    /// Drops the copies kept for a takeover: once the accept loops have
    /// closed their sockets, the port refuses connections.
    pub(crate) fn release(&self) {
        lock(&self.copies).clear();
    }

    /// Copies of every socket served now, for a takeover.
    pub(crate) fn copies(&self) -> std::io::Result<Vec<std::net::TcpListener>> {
        lock(&self.copies).iter().map(|s| s.try_clone()).collect()
    }

    /// The sockets worker `thread` of `threads` serves: those waiting
    /// whose index falls to it, or one it binds itself when none does.
    fn sockets(
        &self,
        thread: usize,
        threads: usize,
    ) -> std::io::Result<Vec<std::net::TcpListener>> {
        let mut waiting = lock(&self.waiting);
        let mine: Vec<_> = waiting
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % threads.max(1) == thread)
            .filter_map(|(_, s)| s.take())
            .collect();
        let needs_own = waiting.len() <= thread;
        drop(waiting);
        let mut mine = mine;
        if needs_own {
            mine.push(bind_reuseport(self.bound)?);
        }
        let mut copies = lock(&self.copies);
        for s in &mine {
            copies.push(s.try_clone()?);
        }
        Ok(mine)
    }
}

/// A poisoned lock only means a panic elsewhere while a list of sockets
/// was changed; the list is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts on `listener` until `shutdown` completes or the slot closes,
/// running `handle` for each connection on a task of its own, counted in
/// `connections` until it ends. The listening socket closes when this
/// returns; connections already accepted run on.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    slot: Arc<ListenerSlot>,
    handle: H,
    shutdown: impl std::future::Future<Output = ()>,
    connections: Connections,
) where
    H: Fn(Arc<ListenerState>, TcpStream, SocketAddr) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut changes = slot.state.subscribe();
    let Some(mut state) = changes.borrow_and_update().clone() else {
        return;
    };
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(1);
    // One wait for the next change, kept across iterations like
    // `shutdown`: a fresh `changed()` per connection would register and
    // unregister a waiter under the channel's lock, which every worker
    // thread's loop on this address shares.
    let mut next_change = Box::pin(next_change_of(changes.clone()));
    loop {
        // Wait for a free slot first, so that at the limit new clients wait
        // in the kernel's backlog instead of being accepted and dropped.
        // Both waits are cancel-safe: a change or a stop that wins drops a
        // slot already taken, and `accept` loses nothing.
        let slots = state.connection_slots.clone();
        let next = async {
            let permit = slots.acquire().await;
            Some((permit, listener.accept().await))
        };
        let (permit, accepted) = tokio::select! {
            got = next => match got {
                Some(got) => got,
                None => return,
            },
            _ = &mut shutdown => return,
            c = &mut next_change => {
                match (c, changes.borrow_and_update().clone()) {
                    (Ok(()), Some(s)) => state = s,
                    _ => return,
                }
                next_change = Box::pin(next_change_of(changes.clone()));
                continue;
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                // Boxed where it is made: a connection's future is several
                // KiB (the nested states of every stage), and the task
                // would otherwise copy it whole on spawn and on each change
                // of stage. Boxed here, not by wrapping it in the task's
                // own future and boxing that: the wrapper took the future
                // by value, a second copy of it, which was 9.2k of a
                // resumed connection's 58k instructions (callgrind).
                let connection = Box::pin(handle(state.clone(), stream, peer));
                let tracked = connections.track();
                tokio::spawn(async move {
                    connection.await;
                    drop(permit);
                    drop(tracked);
                });
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning; the
                // pending connection stays in the backlog until then.
                let reason = if matches!(e.raw_os_error(), Some(24) | Some(23)) {
                    "emfile"
                } else {
                    "other"
                };
                metrics::counter!(crate::metrics::ACCEPT_ERRORS, "reason" => reason).increment(1);
                warn!(listener = %state.name, error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// A listener's `max_connections`: every worker thread's accept loop takes
/// a slot before it accepts and each connection gives it back as it ends.
/// Below the limit that is one atomic add each way. A tokio `Semaphore`
/// took its waiter list's mutex on every release, one lock per
/// connection shared by every thread; here the waiters' lock is only
/// reached at the limit, where loops wait for a slot.
#[derive(Debug)]
pub(crate) struct Slots {
    free: AtomicUsize,
    freed: Notify,
}

/// A slot taken from [`Slots`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Slots>);

impl Slots {
    pub(crate) fn new(limit: usize) -> Self {
        Slots {
            free: AtomicUsize::new(limit),
            freed: Notify::new(),
        }
    }

    /// Waits for a free slot. Cancel-safe: a wait dropped after it was
    /// woken hands the wake-up on to another waiter (`Notify`'s contract).
    pub(crate) async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the count is read again, so a slot freed
            // in between still wakes this wait.
            freed.as_mut().enable();
            if let Some(slot) = self.try_acquire() {
                return slot;
            }
            freed.await;
            if let Some(slot) = self.try_acquire() {
                // Only the release that found no slot free wakes a
                // waiter; pass the wake-up on while slots are left.
                if self.free.load(Ordering::Acquire) > 0 {
                    self.freed.notify_one();
                }
                return slot;
            }
        }
    }

    fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut free = self.free.load(Ordering::Acquire);
        while free > 0 {
            match self.free.compare_exchange_weak(
                free,
                free - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => free = now,
            }
        }
        None
    }

    /// Slots free now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.free.fetch_add(1, Ordering::AcqRel) == 0 {
            self.0.freed.notify_one();
        }
    }
}

/// Completes at the next change of the slot's state after the one `rx`
/// has seen (or when the slot is gone).
async fn next_change_of(
    mut rx: watch::Receiver<Option<Arc<ListenerState>>>,
) -> Result<(), watch::error::RecvError> {
    rx.changed().await
}

/// Runs an accept loop for every listener in `listeners` on the current
/// (single-threaded) runtime, starting one for each listener a reload adds,
/// until the future `stop()` makes completes (each loop gets one of its
/// own); then waits for those loops to close their sockets. The
/// connections they accepted are the caller's to wait for.
pub(crate) async fn accept_all<H, F, S, SF>(
    mut listeners: watch::Receiver<Arc<Vec<Arc<ListenerSlot>>>>,
    (thread, threads): (usize, usize),
    handle: H,
    stop: S,
    connections: Connections,
) where
    H: Fn(Arc<ListenerState>, TcpStream, SocketAddr) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
    S: Fn() -> SF,
    SF: std::future::Future<Output = ()> + Send + 'static,
{
    let mut serving: Vec<(Arc<ListenerSlot>, tokio::task::JoinHandle<()>)> = Vec::new();
    // Slots this thread has taken its sockets from, served or not.
    let mut started: Vec<Arc<ListenerSlot>> = Vec::new();
    let until = stop();
    tokio::pin!(until);
    loop {
        let slots = listeners.borrow_and_update().clone();
        // Loops of closed slots have returned or are returning on their
        // own; forget them.
        serving.retain(|(_, t)| !t.is_finished());
        started.retain(|s| slots.iter().any(|n| Arc::ptr_eq(s, n)));
        for slot in slots.iter() {
            if started.iter().any(|s| Arc::ptr_eq(s, slot)) {
                continue;
            }
            started.push(slot.clone());
            let sockets = slot.sockets(thread, threads).and_then(|socks| {
                socks
                    .into_iter()
                    .map(TcpListener::from_std)
                    .collect::<std::io::Result<Vec<_>>>()
            });
            match sockets {
                Ok(socks) => {
                    for l in socks {
                        let task = tokio::spawn(serve(
                            l,
                            slot.clone(),
                            handle.clone(),
                            stop(),
                            connections.clone(),
                        ));
                        serving.push((slot.clone(), task));
                    }
                }
                Err(e) => {
                    error!(listen = %slot.bound, error = %e, thread, "cannot listen on this thread; the other threads still accept");
                }
            }
        }
        tokio::select! {
            _ = &mut until => break,
            changed = listeners.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    for (slot, t) in serving {
        slot.release();
        let _ = t.await;
    }
}

/// Serves `listeners` on `threads` worker threads, each with its own
/// single-threaded runtime and its own listening socket per listener, until
/// `drain` says to stop accepting; each thread then closes its sockets and
/// waits for its connections to end, or for `drain` to say to close them
/// (its runtime's end closes them). A listener a reload adds is served by
/// every thread from then on. Blocks until every thread has returned.
///
/// Why not one multi-threaded runtime: a proxy's work is many short,
/// independent connections, and work stealing then mostly costs
/// cross-thread wake-ups (an eventfd write and an extra epoll_wait per
/// hand-off) and cache misses. With a socket per thread the kernel spreads
/// connections, and each connection lives on one thread, which is also what
/// lets per-thread state ([`crate::worker`]) replace shared locks. Tables
/// and counters stay shared.
pub(crate) fn run_on_threads<H, F>(
    listeners: watch::Receiver<Arc<Vec<Arc<ListenerSlot>>>>,
    threads: usize,
    drain: Drain,
    handle: H,
) -> std::io::Result<()>
where
    H: Fn(Arc<ListenerState>, TcpStream, SocketAddr) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut handles = Vec::new();
    let threads = threads.max(1);
    for i in 0..threads {
        let drain = drain.clone();
        let handle = handle.clone();
        let listeners = listeners.clone();
        let accepting = drain.accepting();
        // Dropping the thread's runtime when the future returns closes
        // what is still open.
        let thread = crate::runtime::spawn(format!("stickytls-{i}"), move || {
            worker::set_index(i);
            let connections = drain.connections(i);
            async move {
                let stop = || {
                    let drain = drain.clone();
                    async move { drain.stop_accepting().await }
                };
                accept_all(listeners, (i, threads), handle, stop, connections.clone()).await;
                // Every socket this thread served is closed now.
                drop(accepting);
                drain.drained(&connections).await;
            }
        })?;
        handles.push(thread);
    }
    for h in handles {
        h.join()
            .map_err(|_| std::io::Error::other("a worker thread panicked"))?;
    }
    Ok(())
}

/// Completes when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A listening socket that shares its port with the other worker threads'.
/// TCP_NODELAY is set here, once, rather than on every accepted connection:
/// Linux copies it to the sockets `accept` returns, which saves a system
/// call per connection (a relay forwards records as they come and must not
/// wait on Nagle's algorithm).
pub(crate) fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
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

/// Raises the soft descriptor limit to the hard limit: each relayed
/// connection holds two sockets, and the default soft limit (1024) would
/// cap the router at about 500 clients.
pub(crate) fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        if lim.current != Some(max) {
            let new = rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            };
            if let Err(e) = setrlimit(Resource::Nofile, new) {
                error!(error = %e, "could not raise the open-file limit");
                return lim.current.unwrap_or(0);
            }
        }
        return max;
    }
    lim.current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::{BackendConfig, PoolConfig};

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

    #[tokio::test]
    async fn slots_hold_the_limit_and_come_back_when_dropped() {
        let slots = Arc::new(Slots::new(2));
        let a = slots.acquire().await;
        let b = slots.acquire().await;
        assert_eq!(slots.available(), 0);
        assert!(slots.try_acquire().is_none());
        drop(a);
        assert_eq!(slots.available(), 1);
        let _c = slots.acquire().await;
        drop(b);
        assert_eq!(slots.available(), 1);
    }

    #[tokio::test]
    async fn every_waiter_gets_a_slot_when_several_are_freed_at_once() {
        let slots = Arc::new(Slots::new(3));
        let held: Vec<Slot> = vec![
            slots.acquire().await,
            slots.acquire().await,
            slots.acquire().await,
        ];
        let (got, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (slots, got) = (slots.clone(), got.clone());
                tokio::spawn(async move {
                    let slot = slots.acquire().await;
                    got.send(()).unwrap();
                    // Held until the test ends.
                    std::future::pending::<()>().await;
                    drop(slot);
                })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(got_rx.try_recv().is_err(), "no slot is free yet");
        // Only the first release finds no slot free and wakes a waiter;
        // the others must still be reached.
        drop(held);
        for _ in 0..3 {
            tokio::time::timeout(std::time::Duration::from_secs(10), got_rx.recv())
                .await
                .expect("a waiter was left waiting with a slot free")
                .unwrap();
        }
        assert_eq!(slots.available(), 0);
        waiters.iter().for_each(|w| w.abort());
    }

    #[tokio::test]
    async fn a_wait_dropped_after_its_wake_up_passes_it_on() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.acquire().await;
        let first = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire().await }
        });
        let second = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire().await }
        });
        tokio::task::yield_now().await;
        // The first waiter is cancelled (as a stopping accept loop's wait
        // is) while its wake-up is on the way: the second still gets the
        // slot.
        first.abort();
        drop(held);
        let slot = tokio::time::timeout(std::time::Duration::from_secs(10), second)
            .await
            .expect("the wake-up was lost with the cancelled wait")
            .unwrap();
        drop(slot);
        assert_eq!(slots.available(), 1);
    }

    /// A listener on one pool, its limits set by `limits`, and the pools a
    /// reload of it would be given.
    fn listener_with(
        limits: impl FnOnce(&mut crate::config::Limits),
    ) -> (Arc<ListenerState>, HashMap<String, Arc<PoolState>>) {
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut pool = PoolConfig::new("p", vec![BackendConfig::new("a", bind)]);
        pool.affinity.ipv4_prefix = 24;
        let log = Arc::new(LogLimiter::new(1));
        let stats: Arc<Stats> = Arc::default();
        let state = Arc::new(PoolState::new(
            pool,
            Clock::new(),
            stats.clone(),
            log.clone(),
        ));
        let all = HashMap::from([("p".to_string(), state)]);
        let mut config = ListenerConfig::new(bind, "p");
        limits(&mut config.limits);
        let l = Arc::new(ListenerState::new(config, &all, stats, log));
        (l, all)
    }

    fn prefix(l: &ListenerState, ip: &str) -> ClientPrefix {
        l.default_pool().prefix(ip.parse().unwrap())
    }

    fn no_entries(l: &ListenerState) -> bool {
        l.clients
            .shards
            .iter()
            .all(|s| s.0.lock().unwrap().is_empty())
    }

    #[test]
    fn the_hello_stage_cap_counts_each_prefix_and_frees_on_drop() {
        let (l, _) = listener_with(|l| l.max_inspecting_per_ip = 2);
        let (a, b) = (prefix(&l, "192.0.2.1"), prefix(&l, "198.51.100.1"));
        let (open1, first) = l.admit(a).expect("under the cap");
        let second = l.admit(a).expect("at the cap");
        assert_eq!(l.admit(a).err(), Some(Refused::Hello), "over the cap");
        let other = l.admit(b);
        assert!(other.is_ok(), "another prefix has its own count");
        drop(first);
        let third = l.admit(a);
        assert!(third.is_ok(), "a finished hello frees its slot");
        drop((open1, second, third, other));
        assert!(no_entries(&l), "released prefixes leave no entries");
    }

    #[test]
    fn one_prefix_holds_at_most_its_share_of_the_slots_hello_done_or_not() {
        // Five slots: a share of three, rounded up.
        let (l, _) = listener_with(|l| l.max_connections = 5);
        assert_eq!(l.config.limits.connections_per_client(), 3);
        let a = prefix(&l, "192.0.2.1");
        // The same /24 (the pool's ipv4_prefix): the same client.
        let a2 = prefix(&l, "192.0.2.200");
        let b = prefix(&l, "198.51.100.1");
        let mut held = Vec::new();
        for ip in [a, a2, a] {
            let (share, hello) = l.admit(ip).expect("within the share");
            // Hellos done: idle connections still hold the share.
            drop(hello);
            held.push(share);
        }
        assert_eq!(l.admit(a).err(), Some(Refused::Share));
        assert_eq!(l.admit(a2).err(), Some(Refused::Share));
        let (b_share, b_hello) = l.admit(b).expect("another client has its own share");
        held.pop();
        let again = l
            .admit(a)
            .expect("a closed connection gives its share back");
        drop((again, b_share, b_hello, held));
        assert!(no_entries(&l), "released prefixes leave no entries");
    }

    #[test]
    fn a_share_over_max_connections_is_allowed_and_never_reached() {
        let (l, _) = listener_with(|l| {
            l.max_connections = 2;
            l.max_connections_per_client = Some(10);
        });
        let a = prefix(&l, "192.0.2.1");
        let held: Vec<_> = (0..10).map(|_| l.admit(a).expect("within 10")).collect();
        assert_eq!(l.admit(a).err(), Some(Refused::Share));
        drop(held);
        assert!(no_entries(&l));
    }

    #[test]
    fn a_reload_keeps_the_counts_and_applies_the_new_share_to_the_next_connection() {
        let (l, all) = listener_with(|l| l.max_connections_per_client = Some(3));
        let a = prefix(&l, "192.0.2.1");
        let held: Vec<_> = (0..3).map(|_| l.admit(a).unwrap().0).collect();
        let mut config = l.config.clone();
        config.limits.max_connections_per_client = Some(2);
        let lower = Arc::new(l.succeed(config.clone(), &all));
        assert_eq!(
            lower.admit(a).err(),
            Some(Refused::Share),
            "connections from before the reload count"
        );
        config.limits.max_connections_per_client = Some(4);
        let higher = Arc::new(lower.succeed(config, &all));
        let fourth = higher.admit(a).expect("a raised share applies at once");
        assert_eq!(higher.admit(a).err(), Some(Refused::Share));
        drop((held, fourth));
        assert!(no_entries(&l) && no_entries(&higher), "one set of counts");
    }

    #[test]
    fn threads_admitting_one_prefix_never_pass_its_share_together() {
        let (l, _) = listener_with(|l| {
            l.max_connections_per_client = Some(4);
            l.max_inspecting_per_ip = 1_000;
        });
        let a = prefix(&l, "192.0.2.1");
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        if let Ok((share, hello)) = l.admit(a) {
                            drop(hello);
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            inside.fetch_sub(1, Ordering::SeqCst);
                            drop(share);
                        }
                    }
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= 4, "{most:?}");
        assert!(no_entries(&l), "every release came back");
    }
}
