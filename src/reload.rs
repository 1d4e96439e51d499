//! Reloading: what a running router serves now ([`Live`]), and replacing it
//! from a re-read configuration file without losing a connection or a
//! session.
//!
//! A reload is applied in place, and only whole: the file is read and
//! checked with the same code as `stickytls check`, every new listening
//! address is bound, and only then does anything change. A file with a
//! mistake, or an address that cannot be bound, leaves the running
//! configuration serving untouched.
//!
//! What carries over: each pool kept by name keeps its affinity table (with
//! the ticket key-name states), its client index and its recent decisions
//! ([`PoolState::reconfigured`]); each backend kept by name and address
//! keeps its health, operator state and open connections; each listener
//! kept by address keeps its sockets, its hello-stage counts and (while its
//! limit is unchanged) its connection slots. Established connections hold
//! the pool and listener states they started with, and run to their end
//! untouched; the next connection gets the new ones. What a reload cannot
//! change in place (the settings [`crate::config::settings`] marks for a
//! restart: the tables' sizes and lifetimes, the admin endpoint, the log,
//! the state file, the stop's deadline, the store) is named in its outcome
//! and logged, for the next restart.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::affinity::AffinityStore;
use crate::clock::Clock;
use crate::config::{Config, ListenerConfig, PoolConfig, settings};
use crate::listen::{ListenerSlot, ListenerState};
use crate::log_limit::LogLimiter;
use crate::pool::PoolState;
use crate::stats::Stats;

pub(crate) use crate::pool::Pools;

/// The listening addresses a router serves now: every worker thread runs
/// an accept loop for each.
pub(crate) type Listeners = Arc<Vec<Arc<ListenerSlot>>>;

/// What a running router serves now, and the one place that changes it.
#[derive(Debug)]
pub struct Live {
    /// The configuration file a reload re-reads; `None` when the router
    /// was configured by flags or in code, which cannot be re-read.
    source: Option<PathBuf>,
    clock: Clock,
    stats: Arc<Stats>,
    log: Arc<LogLimiter>,
    pools: watch::Sender<Pools>,
    listeners: watch::Sender<Listeners>,
    /// The configuration being served. Its lock also makes reloads one at a
    /// time; no connection ever takes it.
    config: Mutex<Config>,
    /// The last reload's outcome, for `GET /api/v1/reload`.
    last: Mutex<Option<Outcome>>,
    /// The shared store (`[store]` on Redis), which a pool added by a
    /// reload joins like those built at start.
    shared: Option<crate::affinity::redis::Shared>,
}

/// What a reload did, as the API returns it and the log says it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `ok` or `error`.
    pub result: &'static str,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The file re-read.
    pub file: String,
    /// Why it was refused, one mistake a line (`FILE:LINE:COLUMN: error:
    /// ...` for the file's own), empty when applied.
    pub errors: Vec<String>,
    /// What changed, one change a line, when applied.
    pub changes: Vec<String>,
    /// Settings that changed in the file but take effect only at the next
    /// restart.
    pub restart_required: Vec<String>,
}

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The router was started from flags: there is no file to re-read.
    #[error(
        "this router was started from flags, not a configuration file: there is nothing to re-read; restart it to change its settings"
    )]
    NoFile,
    /// The file could not be read, or breaks a rule; nothing changed.
    #[error("{}", refused(.0))]
    Invalid(Outcome),
    /// A new listener's address could not be bound; nothing changed.
    #[error("{}", refused(.0))]
    Bind(Outcome),
}

fn refused(o: &Outcome) -> String {
    format!(
        "reload of {} refused, the running configuration keeps serving: {}",
        o.file,
        o.errors.join("; ")
    )
}

impl ReloadError {
    /// The refused reload's outcome, if it got as far as the file.
    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            ReloadError::NoFile => None,
            ReloadError::Invalid(o) | ReloadError::Bind(o) => Some(o),
        }
    }
}

impl Live {
    /// Builds the pools and listeners `config` asks for (validated by the
    /// caller), binding every listening address that `inherited` (sockets
    /// a previous process handed over, by configured address) does not
    /// bring. `stores` gives, per pool name, an affinity store to use
    /// instead of a new in-process one; `shared` makes the tables of pools
    /// that later reloads add.
    pub(crate) fn build(
        config: Config,
        source: Option<PathBuf>,
        clock: Clock,
        stats: Arc<Stats>,
        mut stores: HashMap<String, Arc<dyn AffinityStore>>,
        shared: Option<crate::affinity::redis::Shared>,
        mut inherited: HashMap<std::net::SocketAddr, Vec<std::net::TcpListener>>,
    ) -> Result<Live, (std::net::SocketAddr, std::io::Error)> {
        let log = Arc::new(LogLimiter::new(config.log.connections_per_second));
        let mut by_name = HashMap::new();
        let mut pools = Vec::new();
        for p in &config.pools {
            let state = Arc::new(new_pool(p, &clock, &stats, &log, stores.remove(&p.name)));
            by_name.insert(p.name.clone(), state.clone());
            pools.push(state);
        }
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let state = Arc::new(ListenerState::new(
                l.clone(),
                &by_name,
                stats.clone(),
                log.clone(),
            ));
            let slot = match inherited.remove(&l.bind) {
                Some(sockets) if !sockets.is_empty() => {
                    let bound = sockets[0].local_addr().map_err(|e| (l.bind, e))?;
                    ListenerSlot::around(state, sockets, bound)
                }
                _ => ListenerSlot::bind(state).map_err(|e| (l.bind, e))?,
            };
            listeners.push(slot);
        }
        for (bind, sockets) in inherited {
            warn!(listen = %bind, sockets = sockets.len(), "the previous process listened here and this configuration does not: connections queued on its sockets are reset");
        }
        Ok(Live {
            source,
            clock,
            stats,
            log,
            pools: watch::Sender::new(pools.into()),
            listeners: watch::Sender::new(Arc::new(listeners)),
            config: Mutex::new(config),
            last: Mutex::new(None),
            shared,
        })
    }

    /// The pools served now.
    pub fn pools(&self) -> Pools {
        self.pools.borrow().clone()
    }

    /// The pool named `name` served now.
    pub fn pool(&self, name: &str) -> Option<Arc<PoolState>> {
        self.pools
            .borrow()
            .iter()
            .find(|p| p.config.name == name)
            .cloned()
    }

    /// Follows the pools through reloads (the health checks restart on
    /// each change).
    pub fn watch_pools(&self) -> watch::Receiver<Pools> {
        self.pools.subscribe()
    }

    /// The listening addresses served now.
    pub fn listeners(&self) -> Listeners {
        self.listeners.borrow().clone()
    }

    /// Follows the listeners through reloads (every worker thread starts
    /// accepting on an added one, and stops on a removed one).
    pub fn watch_listeners(&self) -> watch::Receiver<Listeners> {
        self.listeners.subscribe()
    }

    /// Whether a reload has a file to re-read.
    pub fn can_reload(&self) -> bool {
        self.source.is_some()
    }

    /// The last reload's outcome, if there was one since the start.
    pub fn last(&self) -> Option<Outcome> {
        lock(&self.last).clone()
    }

    /// Re-reads the configuration file and applies it in place (see the
    /// module's documentation); logs and counts the outcome. Blocking: the
    /// file is read here.
    pub fn reload(&self) -> Result<Outcome, ReloadError> {
        let Some(path) = &self.source else {
            return Err(ReloadError::NoFile);
        };
        let file = path.display().to_string();
        let result = match crate::config::file::load(path) {
            Ok(config) => self.apply(config, &file),
            Err(diagnostics) => {
                let errors = diagnostics.0.iter().map(ToString::to_string).collect();
                Err(ReloadError::Invalid(refusal(&file, errors)))
            }
        };
        match &result {
            Ok(o) => {
                metrics::counter!(crate::metrics::RELOADS, "result" => "ok").increment(1);
                info!(file = %o.file, changes = ?o.changes, restart_required = ?o.restart_required, "configuration reloaded");
                for setting in &o.restart_required {
                    warn!(file = %o.file, setting = %setting, "changed setting takes effect at the next restart");
                }
                *lock(&self.last) = Some(o.clone());
            }
            Err(e) => {
                metrics::counter!(crate::metrics::RELOADS, "result" => "error").increment(1);
                error!("{e}");
                if let Some(o) = e.outcome() {
                    *lock(&self.last) = Some(o.clone());
                }
            }
        }
        result
    }

    /// Applies a checked configuration: binds the new addresses first (the
    /// only step that can fail), then swaps pools and listeners.
    fn apply(&self, new: Config, file: &str) -> Result<Outcome, ReloadError> {
        let mut current = lock(&self.config);
        let old_slots = self.listeners();
        let old_pools = self.pools();

        // 1. Bind what is new. Nothing is changed until every bind holds:
        //    the sockets bound so far close with this function on failure.
        let mut fresh = HashMap::new();
        for l in &new.listeners {
            if old_slots.iter().any(|s| s.bind == l.bind) {
                continue;
            }
            match crate::listen::bind_reuseport(l.bind).and_then(|s| Ok((s.local_addr()?, s))) {
                Ok((bound, socket)) => {
                    fresh.insert(l.bind, (socket, bound));
                }
                Err(e) => {
                    let error = format!(
                        "{file}: error: cannot listen on {}: {e}; free the address or change the listener's bind",
                        l.bind
                    );
                    return Err(ReloadError::Bind(refusal(file, vec![error])));
                }
            }
        }

        // 2. The pools: kept by name (tables shared, backends reconfigured
        //    in place), or new.
        let mut changes = Vec::new();
        let mut restart_required = Vec::new();
        let mut by_name = HashMap::new();
        let mut pools = Vec::new();
        for p in &new.pools {
            let state = match old_pools.iter().find(|o| o.config.name == p.name) {
                Some(old) => {
                    describe_pool_changes(&old.config, p, &mut changes);
                    for s in settings::pool_restart_required(&old.config, p) {
                        restart_required.push(format!("pool.{}.{s}", p.name));
                    }
                    old.reconfigured(p.clone())
                }
                None => {
                    changes.push(format!("pool {} added", p.name));
                    let store = self.shared.as_ref().map(|shared| shared.store_for(p));
                    if store.is_none() && new.store.kind.is_redis() {
                        // No link was made at start (the store was
                        // in-process then, a restart change of its own):
                        // until a restart, the table is local.
                        restart_required.push(format!("pool.{} (shared through [store])", p.name));
                    }
                    new_pool(p, &self.clock, &self.stats, &self.log, store)
                }
            };
            let state = Arc::new(state);
            by_name.insert(p.name.clone(), state.clone());
            pools.push(state);
        }
        for old in old_pools.iter() {
            if !new.pools.iter().any(|p| p.name == old.config.name) {
                changes.push(format!(
                    "pool {} removed ({} affinity entries dropped)",
                    old.config.name,
                    old.table.len()
                ));
            }
        }

        // 3. The listeners: kept by address (new state in the same slot),
        //    added (a slot around the socket bound above), or closed.
        let mut slots = Vec::new();
        let new_listener = |l: &ListenerConfig| {
            ListenerState::new(l.clone(), &by_name, self.stats.clone(), self.log.clone())
        };
        for l in &new.listeners {
            match old_slots.iter().find(|s| s.bind == l.bind) {
                Some(slot) => {
                    let next = match slot.current() {
                        Some(prev) => {
                            if prev.config != *l {
                                changes.push(format!("listener {} changed", l.bind));
                            }
                            prev.succeed(l.clone(), &by_name)
                        }
                        None => new_listener(l),
                    };
                    slot.replace(Arc::new(next));
                    slots.push(slot.clone());
                }
                None => {
                    let state = new_listener(l);
                    // Step 1 bound every address no slot has.
                    let Some((socket, bound)) = fresh.remove(&l.bind) else {
                        continue;
                    };
                    let slot = ListenerSlot::around(Arc::new(state), vec![socket], bound);
                    changes.push(format!("listener {} added on {}", l.name, slot.bound));
                    slots.push(slot);
                }
            }
        }
        for slot in old_slots.iter() {
            if !new.listeners.iter().any(|l| l.bind == slot.bind) {
                slot.close();
                changes.push(format!(
                    "listener {} closed (its open connections run on)",
                    slot.bound
                ));
            }
        }

        // 4. What only a restart applies, as the settings table says.
        restart_required.extend(settings::restart_required(&current, &new));

        // 5. Publish: the next connection, API call and health check see
        //    the new configuration.
        self.pools.send_replace(pools.into());
        self.listeners.send_replace(Arc::new(slots));
        *current = new;
        Ok(outcome(file, Vec::new(), changes, restart_required))
    }
}

/// One line per change a reload makes to a pool it keeps.
fn describe_pool_changes(old: &PoolConfig, new: &PoolConfig, changes: &mut Vec<String>) {
    let pool = &new.name;
    for b in &new.backends {
        match old.backends.iter().find(|o| o.name == b.name) {
            None => changes.push(format!(
                "pool {pool}: backend {} added at {}",
                b.name, b.addr
            )),
            Some(o) => {
                if o.addr != b.addr {
                    changes.push(format!(
                        "pool {pool}: backend {} moved from {} to {} (its sessions stay with it)",
                        b.name, o.addr, b.addr
                    ));
                }
                // Debug is Display for the numbers and booleans.
                let fields: [(&str, &dyn Debug, &dyn Debug); 4] = [
                    ("weight", &o.weight, &b.weight),
                    ("send_proxy", &o.send_proxy, &b.send_proxy),
                    ("tcp_fastopen", &o.tcp_fastopen, &b.tcp_fastopen),
                    ("max_connections", &o.max_connections, &b.max_connections),
                ];
                for (what, old, new) in fields {
                    let (old, new, name) = (format!("{old:?}"), format!("{new:?}"), &b.name);
                    if old != new {
                        changes.push(format!("pool {pool}: backend {name} {what} {old} -> {new}"));
                    }
                }
            }
        }
    }
    for o in &old.backends {
        if !new.backends.iter().any(|b| b.name == o.name) {
            changes.push(format!(
                "pool {pool}: backend {} removed (its affinity entries are dropped)",
                o.name
            ));
        }
    }
    let inspect = format!("inspect = {}", new.inspect);
    for (changed, what) in [
        (old.balance != new.balance, "balance changed"),
        (old.timeouts != new.timeouts, "timeouts changed"),
        (old.health != new.health, "health checks changed"),
        (old.inspect != new.inspect, &inspect),
    ] {
        if changed {
            changes.push(format!("pool {pool}: {what}"));
        }
    }
}

/// A new pool's state, its table in `store` when one is given (shared
/// through Redis, or handed over), else a new one in this process.
fn new_pool(
    p: &PoolConfig,
    clock: &Clock,
    stats: &Arc<Stats>,
    log: &Arc<LogLimiter>,
    store: Option<Arc<dyn AffinityStore>>,
) -> PoolState {
    let (p, clock, stats, log) = (p.clone(), clock.clone(), stats.clone(), log.clone());
    match store {
        Some(store) => PoolState::with_store(p, clock, stats, log, store),
        None => PoolState::new(p, clock, stats, log),
    }
}

/// A reload of `file` refused for `errors`: nothing changed.
fn refusal(file: &str, errors: Vec<String>) -> Outcome {
    outcome(file, errors, Vec::new(), Vec::new())
}

/// A reload of `file`: "ok", or "error" for its `errors`.
fn outcome(
    file: &str,
    errors: Vec<String>,
    changes: Vec<String>,
    restart_required: Vec<String>,
) -> Outcome {
    Outcome {
        result: if errors.is_empty() { "ok" } else { "error" },
        at_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        file: file.to_string(),
        errors,
        changes,
        restart_required,
    }
}

/// A poisoned lock only means a panic elsewhere mid-reload, before the
/// publish step; what it guards is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
