//! The backends a router forwards to, known by name, with the passive health
//! state the connect stage keeps: a backend that refused or timed out is
//! skipped for a hold-down period, so routing does not keep paying for it.
//! The active checks' verdict ([`HealthState`], written by `crate::health`)
//! holds a backend down too, until it passes its checks again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::BackendConfig;

/// A backend's name: what the affinity table stores, so entries survive a
/// reload that reorders or re-addresses backends.
pub type BackendName = Arc<str>;

/// One backend and its live state.
#[derive(Debug)]
pub struct Backend {
    pub name: BackendName,
    pub addr: SocketAddr,
    pub weight: u32,
    /// Most connections at once; `u32::MAX` for no limit.
    pub max_connections: u32,
    /// Clock millis until which the backend is considered down; 0 = up.
    down_until_ms: AtomicU64,
    /// Connections currently open to it (least-connections, max-conns).
    active: AtomicU32,
    /// What the active health checks concluded.
    pub health: HealthState,
}

/// The active health checks' view of one backend, kept as atomics: the
/// pool's checker task writes it, routing and the admin API read it.
#[derive(Debug, Default)]
pub struct HealthState {
    /// Failed `fall` probes in a row and has not passed `rise` since.
    down: AtomicBool,
    /// The last probe's result: 0 none yet, 1 passed, 2 failed.
    last: AtomicU8,
    /// Clock millis of the last change of `down`; 0 for never.
    changed_ms: AtomicU64,
}

impl HealthState {
    /// Whether the checks hold the backend down. Backends start up.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// The last probe's result: `None` before the first (or with checks
    /// off).
    pub fn last_passed(&self) -> Option<bool> {
        match self.last.load(Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }

    /// Clock millis of the last transition, if there was one.
    pub fn changed_ms(&self) -> Option<u64> {
        Some(self.changed_ms.load(Ordering::Relaxed)).filter(|&ms| ms != 0)
    }

    pub(crate) fn record(&self, passed: bool) {
        self.last
            .store(if passed { 1 } else { 2 }, Ordering::Relaxed);
    }

    /// Sets the verdict at clock millis `now_ms`.
    pub(crate) fn set_down(&self, down: bool, now_ms: u64) {
        self.changed_ms.store(now_ms.max(1), Ordering::Relaxed);
        self.down.store(down, Ordering::Relaxed);
    }
}

impl Backend {
    pub fn new(cfg: &BackendConfig) -> Self {
        Backend {
            name: Arc::from(cfg.name.as_str()),
            addr: cfg.addr,
            weight: cfg.weight,
            max_connections: cfg.max_connections.unwrap_or(u32::MAX),
            down_until_ms: AtomicU64::new(0),
            active: AtomicU32::new(0),
            health: HealthState::default(),
        }
    }

    /// Whether routing may pick this backend now: neither a failed
    /// attempt's hold-down nor the health checks hold it down.
    pub fn is_up(&self, clock: &Clock) -> bool {
        let until = self.down_until_ms.load(Ordering::Relaxed);
        !self.health.is_down() && (until == 0 || clock.now_ms() >= until)
    }

    /// Marks the backend down for `hold` after a failed connect.
    pub fn mark_down(&self, clock: &Clock, hold: Duration) {
        let until = clock
            .now_ms()
            .saturating_add(hold.as_millis() as u64)
            .max(1);
        self.down_until_ms.store(until, Ordering::Relaxed);
    }

    /// Marks the backend up after a successful connect.
    pub fn mark_up(&self) {
        if self.down_until_ms.load(Ordering::Relaxed) != 0 {
            self.down_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Below its connection limit.
    pub fn has_room(&self) -> bool {
        self.active() < self.max_connections
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes one of the backend's connection slots until the guard drops;
    /// `None` at the limit.
    pub fn try_track(self: &Arc<Self>) -> Option<ActiveGuard> {
        let max = self.max_connections;
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ActiveGuard(Arc::clone(self)))
    }
}

/// Decrements a backend's active count when the connection ends.
#[derive(Debug)]
pub struct ActiveGuard(Arc<Backend>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pool: the backends one listener routes over.
#[derive(Debug)]
pub struct Pool {
    backends: Vec<Arc<Backend>>,
}

impl Pool {
    pub fn new(cfgs: &[BackendConfig]) -> Self {
        Pool {
            backends: cfgs.iter().map(|c| Arc::new(Backend::new(c))).collect(),
        }
    }

    pub fn all(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The backend with this name, if it is in the pool. A table entry
    /// naming a backend outside the pool is a miss.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| &*b.name == name)
    }
}
