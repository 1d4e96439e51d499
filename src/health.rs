//! Active health checks: one task per pool probes each of its backends
//! every `interval`, off the connection path. `fall` failed probes in a
//! row mark a backend down (routing then passes it over, and its table
//! entries wait for it: see `route`), `rise` passed probes in a row bring it
//! back. A refused or timed-out connect still marks a backend down at
//! once, for `down_hold` (`crate::connect`); a backend that accepts and
//! then fails clients' hellos only once two client prefixes saw it, so
//! with one client the TLS check is what catches it. The verdicts are
//! independent and either keeps routing away.
//!
//! A probe is one of:
//! - `tcp`: a connect within the timeout;
//! - `tls`: a ClientHello ([`hello`]) answered within the timeout by a
//!   ServerHello (or a HelloRetryRequest, the same message with a request
//!   to try another group), read by the inspector. An alert, a close, or
//!   bytes that are not TLS fail it.
//!
//! To a backend with `send_proxy`, every probe first sends the header a
//! proxy's own checks send (v2 `LOCAL`, v1 `PROXY UNKNOWN`,
//! [`crate::proxy_out::local`]): a backend that requires a header closes a
//! connection without one, and would fail every check. For the TLS check
//! the header and the ClientHello go in one write.
//!
//! The backends' probes are spread over the interval (backend i of n at
//! i/n of it, from a random start per pool) so that a farm is never probed
//! at once, and several routers started together do not probe in step.
//! Probe connections are closed with a reset, as HAProxy closes its own:
//! a probe every two seconds per backend would otherwise leave the router
//! with a socket in TIME_WAIT for each.

mod hello;

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, info, warn};

use crate::backend::Backend;
use crate::config::{HealthCheck, HealthConfig, SendProxy};
use crate::inspect::{Handshake, Limits, Status};
use crate::metrics as m;
use crate::pool::PoolState;
use crate::proxy_out;

pub(crate) use hello::{client_hello, fresh_random};

/// Why a probe failed. Every failure is the backend's (or the network's):
/// a probe that cannot even open a socket on this host fails the same way
/// for every backend, and is reported as `Local` rather than blamed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The connection was refused or the network said no route.
    #[error("connect failed: {0}")]
    Refused(#[source] io::Error),
    /// No connection, or no answer, within the timeout.
    #[error("no answer within the check's timeout")]
    Timeout,
    /// The backend closed (or reset) before a ServerHello.
    #[error("closed before a ServerHello")]
    Closed,
    /// The answer was not TLS.
    #[error("answered with something not TLS ({0})")]
    NotTls(&'static str),
    /// The backend answered with an alert (its description code).
    #[error("answered the ClientHello with alert {0}")]
    Alert(u8),
    /// TLS-shaped but broken.
    #[error("answered with a broken handshake: {0}")]
    Malformed(&'static str),
    /// This host could not open the probe's socket.
    #[error("cannot open a probe socket on this host: {0}")]
    Local(#[source] io::Error),
}

impl ProbeError {
    /// The `reason` label of `stickytls_health_check_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Refused(_) => "refused",
            ProbeError::Timeout => "timeout",
            ProbeError::Closed => "closed",
            ProbeError::NotTls(_) => "not_tls",
            ProbeError::Alert(_) => "alert",
            ProbeError::Malformed(_) => "malformed",
            ProbeError::Local(_) => "local",
        }
    }

    fn connect_failed(e: io::Error) -> ProbeError {
        if crate::connect::is_local_failure(&e) {
            ProbeError::Local(e)
        } else {
            ProbeError::Refused(e)
        }
    }
}

/// Probes `addr` once, bounded by `limit` as a whole. `sni` is sent by the
/// TLS check only; `send_proxy` is the backend's, and decides the header
/// sent first. `HealthCheck::None` passes without a probe.
pub async fn probe(
    check: HealthCheck,
    addr: SocketAddr,
    limit: Duration,
    sni: Option<&str>,
    send_proxy: SendProxy,
) -> Result<(), ProbeError> {
    let header = proxy_out::local(send_proxy);
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(ProbeError::connect_failed)?;
        // A reset on close: no TIME_WAIT on the router per probe.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        match check {
            HealthCheck::Tls => server_hello(stream, sni, header).await,
            // The connect passed; the header only spares a backend that
            // requires one a connection it would count as broken.
            HealthCheck::Tcp if !header.is_empty() => {
                let _ = stream.set_nodelay(true);
                stream
                    .write_all(header)
                    .await
                    .map_err(|_| ProbeError::Closed)
            }
            HealthCheck::Tcp | HealthCheck::None => Ok(()),
        }
    };
    match check {
        HealthCheck::None => Ok(()),
        _ => timeout(limit, attempt)
            .await
            .unwrap_or(Err(ProbeError::Timeout)),
    }
}

/// Sends `header` (empty for none) and a ClientHello, in one write, and
/// reads until the inspector has the ServerHello. The one place the checks
/// read a backend's bytes, so the one held to the network modules' lints.
#[deny(clippy::indexing_slicing, clippy::unwrap_used)]
async fn server_hello(
    mut stream: TcpStream,
    sni: Option<&str>,
    header: &[u8],
) -> Result<(), ProbeError> {
    let _ = stream.set_nodelay(true);
    let (random, session_id) = fresh_random();
    let hello = client_hello(sni, &random, &session_id);
    let mut hs = Handshake::new(Limits::default());
    // The inspector checks the server's answer against the hello it
    // answers (versions, a selected PSK), so it reads ours first.
    if hs.feed_client(&hello) != Status::Done {
        return Err(ProbeError::Malformed("the check's own ClientHello"));
    }
    let first = if header.is_empty() {
        hello
    } else {
        [header, &hello].concat()
    };
    stream
        .write_all(&first)
        .await
        .map_err(|_| ProbeError::Closed)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|_| ProbeError::Closed)?;
        if n == 0 {
            return Err(ProbeError::Closed);
        }
        // `read` never reports more than the buffer holds.
        let status = hs.feed_server(buf.get(..n).unwrap_or_default());
        if hs.server_version().is_some() || hs.hello_retry_request() {
            return Ok(());
        }
        match status {
            Status::NeedMore | Status::Done => {}
            Status::NotTls(n) => return Err(ProbeError::NotTls(n.reason)),
            Status::Alert(a) => return Err(ProbeError::Alert(a.description)),
            Status::Malformed(e) => return Err(ProbeError::Malformed(e.what)),
        }
    }
}

/// Runs every pool's checks until `shutdown` completes, starting them anew
/// for the pools each reload publishes. A backend's verdict (up or down)
/// lives in the backend, which a reload keeps when its address is
/// unchanged, so a restart of the checks forgets only the current run of
/// passes or failures: a down backend still needs `rise` passes.
pub(crate) async fn follow(
    mut pools: tokio::sync::watch::Receiver<crate::pool::Pools>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let current = pools.borrow_and_update().clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut checks = JoinSet::new();
        for pool in current.iter() {
            let mut stopped = stopped.clone();
            checks.spawn(run(pool.clone(), async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        }
        let reloaded = tokio::select! {
            _ = &mut shutdown => false,
            changed = pools.changed() => changed.is_ok(),
        };
        let _ = stop.send(true);
        while checks.join_next().await.is_some() {}
        if !reloaded {
            return;
        }
    }
}

/// Runs the pool's checks until `shutdown` completes. Returns at once for
/// `check = "none"`.
pub(crate) async fn run(pool: Arc<PoolState>, shutdown: impl Future<Output = ()>) {
    let cfg = pool.config.health.clone();
    let backends: Vec<Arc<Backend>> = pool.backends.all().to_vec();
    if cfg.check == HealthCheck::None || backends.is_empty() {
        return;
    }
    tokio::pin!(shutdown);
    let mut checker = Checker::new(&pool, &cfg, backends);
    // Probes in flight, each tagged with its backend's index. Dropping
    // the set (at shutdown) aborts them.
    let mut probes: JoinSet<(usize, Result<(), ProbeError>)> = JoinSet::new();
    loop {
        let (i, due) = checker.next_due();
        tokio::select! {
            _ = &mut shutdown => return,
            _ = sleep_until(due) => {
                checker.due[i] = (due + cfg.interval).max(Instant::now());
                // A probe still running (its timeout is at most the
                // interval, so only just) is not doubled.
                if !checker.in_flight[i] {
                    checker.in_flight[i] = true;
                    let addr = checker.backends[i].addr;
                    let send_proxy = checker.backends[i].send_proxy();
                    let sni = cfg.sni.clone();
                    let (check, limit) = (cfg.check, cfg.timeout);
                    probes.spawn(async move {
                        (i, probe(check, addr, limit, sni.as_deref(), send_proxy).await)
                    });
                }
            }
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                if let Ok((i, result)) = done {
                    checker.in_flight[i] = false;
                    checker.apply(i, result);
                }
            }
        }
    }
}

/// A pool's checking state: when each backend is due, and its run of
/// passes or failures. Only the pool's task touches it.
struct Checker<'a> {
    pool: &'a PoolState,
    cfg: &'a HealthConfig,
    backends: Vec<Arc<Backend>>,
    /// When each backend's next probe starts.
    due: Vec<Instant>,
    in_flight: Vec<bool>,
    /// Consecutive passes (positive) or failures (negative) of each.
    run: Vec<i64>,
}

impl<'a> Checker<'a> {
    fn new(pool: &'a PoolState, cfg: &'a HealthConfig, backends: Vec<Arc<Backend>>) -> Self {
        let n = backends.len();
        let step = cfg.interval / n as u32;
        let start = Instant::now() + random_below(cfg.interval);
        Checker {
            pool,
            cfg,
            due: (0..n).map(|i| start + step * i as u32).collect(),
            in_flight: vec![false; n],
            run: vec![0; n],
            backends,
        }
    }

    fn next_due(&self) -> (usize, Instant) {
        self.due
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, t)| *t)
            .unwrap_or((0, Instant::now() + self.cfg.interval))
    }

    /// Counts a probe's result and moves the backend up or down when its
    /// run reaches `rise` or `fall`.
    fn apply(&mut self, i: usize, result: Result<(), ProbeError>) {
        let b = &self.backends[i];
        let pool = self.pool.config.name.as_str();
        let labels = [("pool", pool.to_string()), ("backend", b.name.to_string())];
        let passed = result.is_ok();
        b.health.record(passed);
        gauge!(m::HEALTH_CHECK_PASSED, &labels).set(if passed { 1.0 } else { 0.0 });
        let run = &mut self.run[i];
        *run = match (passed, *run) {
            (true, r) if r > 0 => r.saturating_add(1),
            (true, _) => 1,
            (false, r) if r < 0 => r.saturating_sub(1),
            (false, _) => -1,
        };
        let now_ms = self.pool.clock.now_ms();
        match result {
            Ok(()) => {
                if b.health.is_down() && *run >= i64::from(self.cfg.rise) {
                    b.health.set_down(false, now_ms);
                    counter!(m::HEALTH_TRANSITIONS, &with(&labels, ("to", "up"))).increment(1);
                    info!(pool, backend = %b.name, addr = %b.addr, check = self.cfg.check.as_str(), passed = *run,
                        "backend up: passed its health check {} times in a row", self.cfg.rise);
                }
            }
            Err(e) => {
                let reason = e.reason();
                counter!(m::HEALTH_CHECK_FAILURES, &with(&labels, ("reason", reason))).increment(1);
                if !b.health.is_down() && -*run >= i64::from(self.cfg.fall) {
                    b.health.set_down(true, now_ms);
                    counter!(m::HEALTH_TRANSITIONS, &with(&labels, ("to", "down"))).increment(1);
                    warn!(pool, backend = %b.name, addr = %b.addr, check = self.cfg.check.as_str(), error = %e,
                        "backend down: failed its health check {} times in a row", self.cfg.fall);
                } else {
                    debug!(pool, backend = %b.name, addr = %b.addr, error = %e, "health check failed");
                }
            }
        }
    }
}

/// `labels` and one more.
fn with(
    labels: &[(&'static str, String); 2],
    extra: (&'static str, &'static str),
) -> Vec<(&'static str, String)> {
    let mut l = labels.to_vec();
    l.push((extra.0, extra.1.to_string()));
    l
}

/// A random duration in `[0, d)`, in whole milliseconds.
fn random_below(d: Duration) -> Duration {
    let ms = d.as_millis().max(1) as u64;
    Duration::from_millis(RandomState::new().hash_one(ms) % ms)
}
