//! One router: it builds the pools and listeners a configuration asks
//! for, binds the listening sockets, and runs them, on the caller's runtime
//! or on worker threads of its own. It only builds and runs: what a pool
//! holds is in [`crate::pool`], accepting in [`crate::listen`], and the
//! path of one connection in [`crate::connection`]. Each pool's health
//! checks ([`crate::health`]) run while the router runs; a reload
//! ([`crate::reload`]) replaces its pools and listeners in place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::admin::{AdminServer, Control, Limits as AdminLimits};
use crate::affinity::AffinityStore;
use crate::clock::Clock;
use crate::config::{Config, ConfigErrors};
use crate::connection::handle;
use crate::listen::{self, stopped};
use crate::pool::PoolState;
use crate::reload::{Live, Pools};
use crate::shutdown::{Connections, Drain};
use crate::stats::{Snapshot, Stats};

/// A bound router, ready to serve.
#[derive(Debug)]
pub struct Router {
    /// Its pools and listening addresses, which a reload replaces. The
    /// listening sockets are bound with `SO_REUSEPORT` so that each worker
    /// thread can open its own socket on the same address (the kernel then
    /// spreads connections over them, with no thread handing work to
    /// another).
    live: Arc<Live>,
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

    /// Like [`Router::bind`], for a configuration read from `file`: a
    /// reload (SIGHUP, `POST /api/v1/reload`) re-reads that file.
    pub async fn bind_file(config: Config, file: PathBuf) -> Result<Router, RouterError> {
        Self::build(
            config,
            Some(file),
            Clock::new(),
            HashMap::new(),
            HashMap::new(),
        )
    }

    /// Like [`Router::bind`] (or [`Router::bind_file`] with `file`), on the
    /// listening sockets a previous process handed over
    /// ([`crate::takeover`]), by configured address; a listener they do
    /// not cover is bound anew.
    pub async fn bind_inherited(
        config: Config,
        file: Option<PathBuf>,
        sockets: HashMap<SocketAddr, Vec<std::net::TcpListener>>,
    ) -> Result<Router, RouterError> {
        Self::build(config, file, Clock::new(), HashMap::new(), sockets)
    }

    /// Like [`Router::bind`], with a clock and, per pool name, an existing
    /// affinity store to use instead of a new in-process one.
    pub async fn bind_with(
        config: Config,
        clock: Clock,
        stores: HashMap<String, Arc<dyn AffinityStore>>,
    ) -> Result<Router, RouterError> {
        Self::build(config, None, clock, stores, HashMap::new())
    }

    fn build(
        config: Config,
        source: Option<PathBuf>,
        clock: Clock,
        stores: HashMap<String, Arc<dyn AffinityStore>>,
        inherited: HashMap<SocketAddr, Vec<std::net::TcpListener>>,
    ) -> Result<Router, RouterError> {
        config.validate().map_err(RouterError::Config)?;
        // The recorder first: the series registered below are no-ops for
        // good if it comes later.
        let recorder = config
            .admin
            .as_ref()
            .and_then(|_| crate::metrics::recorder());
        let stats = Arc::new(Stats::default());
        let admin_config = config.admin.clone();
        let mut stores = stores;
        let shared = crate::affinity::redis::stores_for(&config, &clock, &mut stores);
        let live = Arc::new(
            Live::build(
                config,
                source,
                clock,
                stats.clone(),
                stores,
                shared,
                inherited,
            )
            .map_err(|(addr, e)| RouterError::Bind(addr, e))?,
        );
        let admin = match &admin_config {
            Some(a) => Some(
                AdminServer::start(
                    a,
                    Control::new(live.clone(), stats.clone()),
                    recorder,
                    AdminLimits::default(),
                )
                .map_err(|e| RouterError::Admin(a.bind, e))?,
            ),
            None => None,
        };
        Ok(Router { live, stats, admin })
    }

    /// The first listener's bound address (with the real port when the
    /// configuration said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs()[0]
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.live.listeners().iter().map(|s| s.bound).collect()
    }

    pub fn pool(&self, name: &str) -> Option<Arc<PoolState>> {
        self.live.pool(name)
    }

    /// The admin endpoint's bound address, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminServer::local_addr)
    }

    /// What the router serves now, and reloads.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    pub fn pools(&self) -> Pools {
        self.live.pools()
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
        let stop = move || stopped(rx.clone());
        let accepting = tokio::spawn(listen::accept_all(
            self.live.watch_listeners(),
            (0, 1),
            handle,
            stop.clone(),
            Connections::default(),
        ));
        let checks = tokio::spawn(crate::health::follow(self.live.watch_pools(), stop()));
        shutdown.await;
        let _ = tx.send(true);
        let _ = accepting.await;
        let _ = checks.await;
    }

    /// Serves on `threads` worker threads, each with its own single-threaded
    /// runtime and its own listening socket per listener, until `drain` says
    /// to stop accepting, then until the connections are gone or `drain`
    /// says to close them (see [`listen::run_on_threads`] and
    /// [`crate::shutdown`]). Blocks until every thread has returned.
    pub fn run_on_threads(self, threads: usize, drain: Drain) -> std::io::Result<()> {
        // The checks get a thread and runtime of their own: probes are
        // never queued behind connections, nor connections behind probes.
        // They stop with accepting.
        let pools = self.live.watch_pools();
        let health_stop = drain.clone();
        let checks = crate::runtime::spawn("stickytls-health".into(), move || {
            crate::health::follow(pools, async move { health_stop.stop_accepting().await })
        })?;
        // The admin endpoint (the rest of `self`) serves until the workers
        // are done: a scrape during a drain still answers. A worker that
        // could not start returns before the stop: the checks are then left
        // to end with the process rather than waited for.
        listen::run_on_threads(self.live.watch_listeners(), threads, drain, handle)?;
        checks
            .join()
            .map_err(|_| std::io::Error::other("the health-check thread panicked"))
    }

    /// Starts serving on a task of the current runtime; the router stops
    /// when the returned handle is dropped.
    pub fn spawn(mut self) -> RunningRouter {
        let addr = self.local_addr();
        let stats = self.stats.clone();
        let live = self.live.clone();
        let admin = self.admin.take();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            let _ = rx.await;
        }));
        RunningRouter {
            addr,
            stats,
            live,
            admin,
            _stop: tx,
            task,
        }
    }
}

/// A router serving on a task: its address and state, for tests and the
/// demo. Dropping it stops the accept loops.
#[derive(Debug)]
pub struct RunningRouter {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    live: Arc<Live>,
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

    pub fn pool(&self, name: &str) -> Option<Arc<PoolState>> {
        self.live.pool(name)
    }

    /// What the router serves now, and reloads.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }
}

impl Drop for RunningRouter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The configuration breaks a rule: the operator's to fix.
    #[error("invalid configuration: {0}")]
    Config(#[source] ConfigErrors),
    /// A listening address is taken or not this host's.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The admin endpoint could not listen.
    #[error("cannot start the admin endpoint on {0}: {1}")]
    Admin(SocketAddr, #[source] std::io::Error),
}
