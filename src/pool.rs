//! One pool's live state: its backends, balancer, affinity tables and the
//! decisions it made lately. Every stage that routes, connects or learns
//! works on a [`PoolState`]; none of them needs the router around it.
//!
//! Recent decisions are kept per worker thread ([`crate::worker`]): each
//! thread appends to a ring of its own, so recording one costs an
//! uncontended lock and no allocation once the ring is full, and readers
//! (the demo, a stats page, an admin API asking for the last N) merge the
//! rings by time. The newest [`RECENT_DECISIONS`] decisions of the pool are
//! always among them, since each is among the newest of its own thread.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::affinity::clients::{ClientIndex, ClientIndexConfig, ClientPrefix};
use crate::affinity::memory::MemoryStoreConfig;
use crate::affinity::rotation::KeyNameLog;
use crate::affinity::{AffinityStore, MemoryStore};
use crate::backend::Pool;
use crate::balance::Balancer;
use crate::clock::Clock;
use crate::config::PoolConfig;
use crate::decision::DecisionRecord;
use crate::log_limit::LogLimiter;
use crate::stats::{PoolSeries, Stats};
use crate::worker::PerThread;

/// The pools a router serves now, as everything off the connection path
/// reads them (the admin API, the state file, the health checks); a reload
/// ([`crate::reload`]) replaces the whole list.
pub type Pools = Arc<[Arc<PoolState>]>;

/// One pool's live state. Affinity never crosses pools.
#[derive(Debug)]
pub struct PoolState {
    pub config: PoolConfig,
    pub backends: Pool,
    /// The names of `backends`, for a shared store's lookups: what Redis
    /// answers is used only for a backend configured here.
    pub backend_names: Arc<[crate::backend::BackendName]>,
    pub balancer: Balancer,
    /// Session key → owner backend.
    pub table: Arc<dyn AffinityStore>,
    /// Client prefix → recent confirmed connections. Shared with the pool
    /// a reload puts in this one's place.
    pub clients: Arc<ClientIndex>,
    /// The ticket key names each backend confirmed lately: the evidence
    /// that a backend rotated its key, before a name stops routing to it.
    /// Shared with the pool a reload puts in this one's place.
    pub key_names: Arc<KeyNameLog>,
    pub clock: Clock,
    /// The router's counters (shared by every pool).
    pub stats: Arc<Stats>,
    /// Keeps per-connection logs at info level affordable.
    pub decision_log: Arc<LogLimiter>,
    /// Its Prometheus series (table size, evictions, decision time).
    pub series: PoolSeries,
    /// Each worker thread's last [`RECENT_DECISIONS`] routing decisions,
    /// newest last: lets `stickytls demo` (and later a stats page) say why
    /// each connection went where it did, without parsing logs.
    recent: Arc<PerThread<VecDeque<DecisionRecord>>>,
}

fn names_of(backends: &Pool) -> Arc<[crate::backend::BackendName]> {
    backends.all().iter().map(|b| b.name.clone()).collect()
}

/// How many routing decisions a pool can be asked for, newest first
/// ([`PoolState::last_decisions`]); each worker thread keeps this many.
pub(crate) const RECENT_DECISIONS: usize = 256;

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

    /// A pool with its own clock, counters and log budget: what a unit
    /// test of one stage needs, built one way everywhere.
    #[cfg(test)]
    pub(crate) fn for_test(config: PoolConfig) -> PoolState {
        PoolState::new(
            config,
            Clock::new(),
            Arc::default(),
            Arc::new(LogLimiter::new(1)),
        )
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
        let backends = Pool::new(&config.name, &config.backends);
        PoolState {
            series: PoolSeries::register(&config.name),
            backend_names: names_of(&backends),
            backends,
            balancer: Balancer::new(config.balance),
            table,
            clients: Arc::new(clients),
            key_names: Arc::default(),
            clock,
            stats,
            decision_log,
            config,
            recent: Arc::default(),
        }
    }

    /// The pool a reload puts in this one's place, configured by `config`
    /// (same name): it shares this pool's affinity table (with its key-name
    /// states), client index and recent decisions, so a reload forgets no
    /// session; it keeps the backends still configured at the same address
    /// (with their health, operator state and open connections). Entries
    /// naming a backend no longer configured are dropped when next looked
    /// up (`route`), or at the next restart's load. The table's and the
    /// client index's sizes and lifetimes are fixed when they are made: a
    /// restart applies them (the settings table's `restart!` rows, in
    /// `config/settings.rs`).
    pub fn reconfigured(&self, config: PoolConfig) -> PoolState {
        let backends =
            self.backends
                .reconfigured(&config.name, &self.config.backends, &config.backends);
        PoolState {
            series: PoolSeries::register(&config.name),
            backend_names: names_of(&backends),
            backends,
            balancer: Balancer::new(config.balance),
            table: self.table.clone(),
            clients: self.clients.clone(),
            key_names: self.key_names.clone(),
            clock: self.clock.clone(),
            stats: self.stats.clone(),
            decision_log: self.decision_log.clone(),
            recent: self.recent.clone(),
            config,
        }
    }

    /// Remembers a decision in this thread's ring, forgetting the thread's
    /// oldest beyond [`RECENT_DECISIONS`].
    pub fn record_decision(&self, record: DecisionRecord) {
        let mut ring = self.recent.mine();
        if ring.len() == RECENT_DECISIONS {
            ring.pop_front();
        } else if ring.capacity() == 0 {
            // Sized once: growing by doubling would copy the ring six times.
            ring.reserve_exact(RECENT_DECISIONS);
        }
        ring.push_back(record);
    }

    /// The last [`RECENT_DECISIONS`] routing decisions, oldest first.
    pub fn recent_decisions(&self) -> Vec<DecisionRecord> {
        let mut newest_first = self.last_decisions(RECENT_DECISIONS);
        newest_first.reverse();
        newest_first
    }

    /// The last `limit` routing decisions (at most [`RECENT_DECISIONS`]),
    /// newest first: the threads' rings merged by time, each ring's own
    /// order kept even if the wall clock stepped back.
    pub fn last_decisions(&self, limit: usize) -> Vec<DecisionRecord> {
        let limit = limit.min(RECENT_DECISIONS);
        let mut rings: Vec<Vec<DecisionRecord>> = Vec::new();
        self.recent.for_each(|ring| {
            if !ring.is_empty() {
                let skip = ring.len().saturating_sub(limit);
                rings.push(ring.iter().skip(skip).cloned().collect());
            }
        });
        let mut out = Vec::with_capacity(limit);
        while out.len() < limit {
            let newest = rings
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.last().map(|d| (d.time, i)))
                .max();
            let Some((_, i)) = newest else { break };
            out.extend(rings[i].pop());
        }
        out
    }

    /// The newest decision for a client address and port, if still kept.
    pub fn decision_for(&self, client: SocketAddr) -> Option<DecisionRecord> {
        let mut found: Option<DecisionRecord> = None;
        self.recent.for_each(|ring| {
            if let Some(d) = ring.iter().rev().find(|d| d.client == client) {
                if found.as_ref().is_none_or(|f| f.time < d.time) {
                    found = Some(d.clone());
                }
            }
        });
        found
    }

    /// The client prefix an address counts as in this pool.
    pub fn prefix(&self, addr: IpAddr) -> ClientPrefix {
        let a = &self.config.affinity;
        ClientPrefix::new(addr, a.ipv4_prefix, a.ipv6_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendName;
    use crate::config::BackendConfig;
    use std::time::{Duration, SystemTime};

    fn pool() -> PoolState {
        let config = PoolConfig::new(
            "p",
            vec![BackendConfig::new("a", "127.0.0.1:1".parse().unwrap())],
        );
        PoolState::for_test(config)
    }

    fn record(port: u16, time: SystemTime) -> DecisionRecord {
        let a: BackendName = Arc::from("a");
        DecisionRecord {
            time,
            client: SocketAddr::from(([127, 0, 0, 1], port)),
            sni: None,
            backend: a,
            rule: "balancer",
            key_kind: None,
            reason: "test",
        }
    }

    #[test]
    fn recent_decisions_keep_the_newest_within_the_cap() {
        let pool = pool();
        let start = SystemTime::now();
        for port in 0..(RECENT_DECISIONS as u16 + 10) {
            let at = start + Duration::from_micros(u64::from(port));
            pool.record_decision(record(port, at));
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
    fn last_decisions_merge_the_threads_by_time() {
        let pool = Arc::new(pool());
        let start = SystemTime::now();
        // Worker 1 decides at even microseconds, worker 2 at odd ones.
        let threads: Vec<_> = [1usize, 2]
            .into_iter()
            .map(|w| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    crate::worker::set_index(w);
                    for k in 0..5u16 {
                        let port = 2 * k + w as u16 - 1;
                        let at = start + Duration::from_micros(u64::from(port));
                        pool.record_decision(record(port, at));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let ports: Vec<u16> = pool
            .last_decisions(4)
            .iter()
            .map(|d| d.client.port())
            .collect();
        assert_eq!(ports, [9, 8, 7, 6], "newest first, across threads");
        let all: Vec<u16> = pool
            .recent_decisions()
            .iter()
            .map(|d| d.client.port())
            .collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let from_worker_1 = SocketAddr::from(([127, 0, 0, 1], 8));
        assert_eq!(
            pool.decision_for(from_worker_1).map(|d| d.client),
            Some(from_worker_1)
        );
    }

    #[test]
    fn a_thread_keeps_its_order_when_the_wall_clock_steps_back() {
        let pool = pool();
        let start = SystemTime::now();
        pool.record_decision(record(1, start));
        pool.record_decision(record(2, start - Duration::from_secs(1)));
        let ports: Vec<u16> = pool
            .last_decisions(2)
            .iter()
            .map(|d| d.client.port())
            .collect();
        assert_eq!(ports, [2, 1]);
    }
}
