//! The backends a router forwards to, known by name, with the passive health
//! state the connect stage keeps: a backend that refused or timed out is
//! skipped for a hold-down period, so routing does not keep paying for it.
//! A backend that took the connection and then failed a client's hello
//! (closed, reset, silent) is held down only once clients of two prefixes
//! saw it do so within that period ([`Backend::hello_refused`]): one
//! client's hellos, which a deny list or a WAF may refuse, cannot take a
//! backend away from the others.
//! The active checks' verdict ([`HealthState`], written by `crate::health`)
//! holds a backend down too, until it passes its checks again.
//! An operator's state (`up`, `drain`, `maint`) and weight, set through the
//! admin API, live here too, as atomics the routing reads without a lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Gauge, Histogram, counter, gauge, histogram};

use crate::clock::Clock;
use crate::config::{BackendConfig, SendProxy};
use crate::metrics::{self as m, Exported};

/// A backend's name: what the affinity table stores, so entries survive a
/// reload that reorders or re-addresses backends.
pub type BackendName = Arc<str>;

/// What an operator set a backend to (`POST .../backends/{backend}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// In service.
    Up,
    /// No new sessions, not even for client addresses last seen there;
    /// resumptions of its sessions (by key or by address re-bind) still go
    /// there, so its clients leave as their sessions end.
    Drain,
    /// Nothing new at all: its sessions' clients are re-pinned elsewhere.
    Maint,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Up => "up",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    /// The state an operator may ask for by name; "down" is not one: it is
    /// what failures make of a backend.
    pub fn parse(s: &str) -> Option<AdminState> {
        match s {
            "up" => Some(AdminState::Up),
            "drain" => Some(AdminState::Drain),
            "maint" => Some(AdminState::Maint),
            _ => None,
        }
    }
}

/// A backend's effective state, as the admin API and the
/// `stickytls_backend_state` gauge show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    /// Marked down after a failed attempt, for the hold-down period.
    Down,
    Drain,
    Maint,
}

impl State {
    pub const ALL: [State; 4] = [State::Up, State::Down, State::Drain, State::Maint];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Drain => "drain",
            State::Maint => "maint",
        }
    }
}

/// One backend and its live state.
#[derive(Debug)]
pub struct Backend {
    pub name: BackendName,
    pub addr: SocketAddr,
    /// The balancer's weight; 0 takes no new sessions, like `drain`.
    /// Starts at the configured weight; the admin API may change it.
    weight: AtomicU32,
    /// [`AdminState`] as a byte, so routing reads it without a lock.
    admin: AtomicU8,
    /// Most connections at once; `u32::MAX` for no limit. A reload may
    /// change it.
    max_connections: AtomicU32,
    /// [`SendProxy`] as a byte: read by every attempt and probe without a
    /// lock, and changed in place by a reload (the backend itself, with its
    /// health and connections, is kept).
    send_proxy: AtomicU8,
    /// Whether attempts set `TCP_FASTOPEN_CONNECT` (`tcp_fastopen`);
    /// changed in place by a reload, like `send_proxy`.
    tcp_fastopen: AtomicBool,
    /// Set once this host's kernel refused `TCP_FASTOPEN_CONNECT` for this
    /// backend, so the warning is logged once, not per connection.
    fast_open_refused: AtomicBool,
    /// Clock millis until which the backend is considered down; 0 = up.
    down_until_ms: AtomicU64,
    /// The first client prefix (its [`ClientKey`]) whose hello this
    /// backend failed after accepting the connection, and when (clock
    /// millis): a second prefix within `down_hold` of it marks the backend
    /// down. Locked only on such a failure, never by a connection that
    /// reached the backend.
    hello_refused_by: Mutex<Option<(ClientKey, u64)>>,
    /// Connections currently open to it (least-connections, max-conns).
    active: AtomicU32,
    /// What the admin API and the metrics report of it.
    pub counters: BackendCounters,
    /// Its Prometheus series, registered once with the pool: the
    /// connection path only touches `counters` (and the connect-time
    /// histogram), a scrape copies them into these.
    series: BackendSeries,
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

/// A client prefix as the backends' passive health tells clients apart:
/// the bytes of the router's `ClientPrefix` (family, then the network), so
/// that two addresses count as one client exactly when routing counts
/// them as one (a PROXY listener's declared source, the pool's
/// `ipv4_prefix` and `ipv6_prefix`).
pub type ClientKey = [u8; 17];

/// What a hello a backend failed did to it ([`Backend::hello_refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloRefusal {
    /// The first client prefix to see it within `down_hold`, or the same
    /// one again: the backend stays up.
    Suspect,
    /// A second client prefix within `down_hold`: the backend is down.
    MarkedDown,
}

/// Why an attempt to reach a backend failed, as counted: the `reason`
/// label of `stickytls_backend_connect_failures_total`.
pub(crate) const FAILURE_REASONS: [&str; 5] = ["refused", "timeout", "silent", "closed", "full"];

/// A backend's running counts: plain atomics, bumped on the connection
/// path without any lock.
#[derive(Debug, Default)]
pub struct BackendCounters {
    /// Connections relayed to it.
    pub connections: AtomicU64,
    /// Handshakes completed on it in full, and resumed: apart, so that
    /// each is one atomic that a scrape reads whole.
    pub full: AtomicU64,
    pub resumed: AtomicU64,
    /// Failed attempts, indexed like [`FAILURE_REASONS`].
    pub failures: [AtomicU64; 5],
    /// Routes by key that it answered with a full handshake: it no longer
    /// knew the session.
    pub affinity_lost: AtomicU64,
    /// Connections it accepted and then closed, reset or left unanswered
    /// after the client's hello, before sending a byte.
    pub hello_refusals: AtomicU64,
}

impl BackendCounters {
    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn handshake(&self, resumed: bool) {
        let which = if resumed { &self.resumed } else { &self.full };
        which.fetch_add(1, Ordering::Relaxed);
    }

    pub fn affinity_lost(&self) {
        self.affinity_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed attempt; `reason` is one of [`FAILURE_REASONS`].
    pub fn failure(&self, reason: &str) {
        if let Some(i) = FAILURE_REASONS.iter().position(|r| *r == reason) {
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}

/// One backend's labelled series (`pool`, `backend`).
#[derive(Debug)]
struct BackendSeries {
    /// Indexed like [`State::ALL`].
    state: [Gauge; 4],
    weight: Gauge,
    active: Gauge,
    connections: Exported,
    handshakes_full: Exported,
    handshakes_resumed: Exported,
    /// Indexed like [`FAILURE_REASONS`].
    failures: [Exported; 5],
    affinity_lost: Exported,
    hello_refusals: Exported,
    connect_seconds: Histogram,
}

impl BackendSeries {
    fn register(pool: &str, backend: &str) -> Self {
        let labels = |extra: Option<(&'static str, &'static str)>| {
            let mut l = vec![
                metrics::Label::new("pool", pool.to_string()),
                metrics::Label::new("backend", backend.to_string()),
            ];
            if let Some((k, v)) = extra {
                l.push(metrics::Label::new(k, v));
            }
            l
        };
        BackendSeries {
            state: State::ALL
                .map(|s| gauge!(m::BACKEND_STATE, labels(Some(("state", s.as_str()))))),
            weight: gauge!(m::BACKEND_WEIGHT, labels(None)),
            active: gauge!(m::BACKEND_ACTIVE, labels(None)),
            connections: Exported::new(counter!(m::BACKEND_CONNECTIONS, labels(None))),
            handshakes_full: Exported::new(counter!(
                m::BACKEND_HANDSHAKES,
                labels(Some(("resumed", "false")))
            )),
            handshakes_resumed: Exported::new(counter!(
                m::BACKEND_HANDSHAKES,
                labels(Some(("resumed", "true")))
            )),
            failures: FAILURE_REASONS.map(|r| {
                Exported::new(counter!(
                    m::BACKEND_CONNECT_FAILURES,
                    labels(Some(("reason", r)))
                ))
            }),
            affinity_lost: Exported::new(counter!(m::AFFINITY_LOST, labels(None))),
            hello_refusals: Exported::new(counter!(m::BACKEND_HELLO_REFUSALS, labels(None))),
            connect_seconds: histogram!(m::BACKEND_CONNECT_SECONDS, labels(None)),
        }
    }
}

impl Backend {
    /// A backend of `pool`, with its metric series registered.
    pub fn new(pool: &str, cfg: &BackendConfig) -> Self {
        Backend {
            counters: BackendCounters::default(),
            series: BackendSeries::register(pool, &cfg.name),
            name: Arc::from(cfg.name.as_str()),
            addr: cfg.addr,
            weight: AtomicU32::new(cfg.weight),
            admin: AtomicU8::new(AdminState::Up as u8),
            max_connections: AtomicU32::new(cfg.max_connections.unwrap_or(u32::MAX)),
            send_proxy: AtomicU8::new(cfg.send_proxy as u8),
            tcp_fastopen: AtomicBool::new(cfg.tcp_fastopen),
            fast_open_refused: AtomicBool::new(false),
            down_until_ms: AtomicU64::new(0),
            hello_refused_by: Mutex::new(None),
            active: AtomicU32::new(0),
            health: HealthState::default(),
        }
    }

    /// Whether no failure holds the backend down now: neither a failed
    /// attempt's hold-down nor the health checks. Says nothing of the
    /// operator's state: see [`Backend::serves_sessions`] and
    /// [`Backend::takes_new`].
    pub fn is_up(&self, clock: &Clock) -> bool {
        let until = self.down_until_ms.load(Ordering::Relaxed);
        !self.health.is_down() && (until == 0 || clock.now_ms() >= until)
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    pub fn admin_state(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            x if x == AdminState::Drain as u8 => AdminState::Drain,
            x if x == AdminState::Maint as u8 => AdminState::Maint,
            _ => AdminState::Up,
        }
    }

    /// Sets the operator's state. Established connections are untouched:
    /// the state only steers routing decisions made after it.
    pub fn set_admin_state(&self, state: AdminState) {
        self.admin.store(state as u8, Ordering::Relaxed);
    }

    /// Whether sessions this backend already holds may be sent to it (by
    /// key, or re-bound by client address): up, and not in maintenance.
    pub fn serves_sessions(&self, clock: &Clock) -> bool {
        self.admin_state() != AdminState::Maint && self.is_up(clock)
    }

    /// Whether the operator lets it take new sessions (state `up`, weight
    /// above 0), failures aside.
    pub fn open_to_new(&self) -> bool {
        self.admin_state() == AdminState::Up && self.weight() > 0
    }

    /// Whether routing may give it a new session now.
    pub fn takes_new(&self, clock: &Clock) -> bool {
        self.open_to_new() && self.is_up(clock)
    }

    /// The state the API and the metrics show: the operator's drain or
    /// maint first, then down from failures.
    pub fn state(&self, clock: &Clock) -> State {
        match self.admin_state() {
            AdminState::Maint => State::Maint,
            AdminState::Drain => State::Drain,
            AdminState::Up if !self.is_up(clock) => State::Down,
            AdminState::Up => State::Up,
        }
    }

    /// Marks the backend down for `hold` after a failed connect (a refusal
    /// or a connect timeout: no client provokes those).
    pub fn mark_down(&self, clock: &Clock, hold: Duration) {
        let until = clock
            .now_ms()
            .saturating_add(hold.as_millis() as u64)
            .max(1);
        self.down_until_ms.store(until, Ordering::Relaxed);
    }

    /// Records that the backend accepted a connection and then failed the
    /// hello of `client` (closed, reset, or sent nothing), and marks it
    /// down for `hold` only when another client prefix saw the same within
    /// `hold` before. A deny list, a WAF or a backend refusing one PROXY
    /// source does this to one client's hellos and serves everyone else:
    /// one client must not take it away from them. A backend that really
    /// fails every hello is down as soon as a second client tries it (or
    /// its active check fails).
    ///
    /// The state is one prefix and one time, so bounded whatever the
    /// clients send; after a mark, or once `hold` has passed, the next
    /// failure starts a new window. With `hold` zero nothing is marked, as
    /// [`Backend::mark_down`] then holds nothing either.
    pub fn hello_refused(&self, clock: &Clock, hold: Duration, client: ClientKey) -> HelloRefusal {
        self.counters.hello_refusals.fetch_add(1, Ordering::Relaxed);
        let now = clock.now_ms();
        let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
        let mut first = self
            .hello_refused_by
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match *first {
            Some((by, at)) if now.saturating_sub(at) < hold_ms => {
                if by == client {
                    return HelloRefusal::Suspect;
                }
                *first = None;
                drop(first);
                self.mark_down(clock, hold);
                HelloRefusal::MarkedDown
            }
            _ => {
                *first = Some((client, now));
                HelloRefusal::Suspect
            }
        }
    }

    /// Marks the backend up after a successful connect.
    pub fn mark_up(&self) {
        if self.down_until_ms.load(Ordering::Relaxed) != 0 {
            self.down_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Records how long reaching it took (its first byte, for TLS).
    pub fn connect_time(&self, d: Duration) {
        self.series.connect_seconds.record(d.as_secs_f64());
    }

    /// Copies the counts and the current state into its series (at scrape
    /// time).
    pub fn publish(&self, clock: &Clock) {
        let s = &self.series;
        let state = self.state(clock);
        for (g, st) in s.state.iter().zip(State::ALL) {
            g.set(if st == state { 1.0 } else { 0.0 });
        }
        s.weight.set(f64::from(self.weight()));
        s.active.set(f64::from(self.active()));
        let c = &self.counters;
        let get = BackendCounters::get;
        s.connections.publish(get(&c.connections));
        s.handshakes_resumed.publish(get(&c.resumed));
        s.handshakes_full.publish(get(&c.full));
        for (counter, n) in s.failures.iter().zip(&c.failures) {
            counter.publish(get(n));
        }
        s.affinity_lost.publish(get(&c.affinity_lost));
        s.hello_refusals.publish(get(&c.hello_refusals));
    }

    /// Below its connection limit.
    pub fn has_room(&self) -> bool {
        self.active() < self.max_connections()
    }

    /// Most connections at once; `u32::MAX` for no limit.
    pub fn max_connections(&self) -> u32 {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// The PROXY protocol header this backend expects before the client's
    /// bytes (and before a health probe's).
    pub fn send_proxy(&self) -> SendProxy {
        match self.send_proxy.load(Ordering::Relaxed) {
            x if x == SendProxy::V1 as u8 => SendProxy::V1,
            x if x == SendProxy::V2 as u8 => SendProxy::V2,
            _ => SendProxy::Off,
        }
    }

    /// Whether to connect with `TCP_FASTOPEN_CONNECT`, so that the first
    /// bytes can travel in the SYN.
    pub fn tcp_fastopen(&self) -> bool {
        self.tcp_fastopen.load(Ordering::Relaxed)
    }

    /// Records that the kernel refused `TCP_FASTOPEN_CONNECT` on a socket
    /// to this backend; true the first time only, which is when to say so.
    pub fn fast_open_refused_first(&self) -> bool {
        !self.fast_open_refused.swap(true, Ordering::Relaxed)
    }

    /// Applies a reloaded configuration of the same backend (same name,
    /// same address) in place, so that its health, its operator state and
    /// its count of open connections carry over. The weight is the
    /// configured one only if the configuration changed it: a weight the
    /// operator set through the API outlives a reload that leaves the
    /// file's weight alone.
    pub fn reconfigure(&self, old: &BackendConfig, new: &BackendConfig) {
        if old.weight != new.weight {
            self.set_weight(new.weight);
        }
        self.max_connections
            .store(new.max_connections.unwrap_or(u32::MAX), Ordering::Relaxed);
        // The file is the only source of send_proxy, so the new one always
        // applies; connections already open keep the header they were sent.
        self.send_proxy
            .store(new.send_proxy as u8, Ordering::Relaxed);
        // Likewise: the next attempt uses the new setting.
        self.tcp_fastopen.store(new.tcp_fastopen, Ordering::Relaxed);
    }

    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes one of the backend's connection slots until the guard drops;
    /// `None` at the limit.
    pub fn try_track(self: &Arc<Self>) -> Option<ActiveGuard> {
        let max = self.max_connections();
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
    /// The backends of the pool named `pool`, their series registered.
    pub fn new(pool: &str, cfgs: &[BackendConfig]) -> Self {
        Pool {
            backends: cfgs
                .iter()
                .map(|c| Arc::new(Backend::new(pool, c)))
                .collect(),
        }
    }

    /// The backends `new` configures for the pool named `pool`, after a
    /// reload from `old`: a backend of the same name at the same address is
    /// the same [`Backend`], reconfigured in place (its health, operator
    /// state and open connections carry over); any other is new, and starts
    /// up. Entries in the table name backends, so a backend that moved
    /// address keeps its sessions.
    pub fn reconfigured(&self, pool: &str, old: &[BackendConfig], new: &[BackendConfig]) -> Pool {
        let backends = new
            .iter()
            .map(|cfg| {
                let kept = self
                    .by_name(&cfg.name)
                    .filter(|b| b.addr == cfg.addr)
                    .zip(old.iter().find(|o| o.name == cfg.name));
                match kept {
                    Some((b, before)) => {
                        b.reconfigure(before, cfg);
                        b.clone()
                    }
                    None => Arc::new(Backend::new(pool, cfg)),
                }
            })
            .collect();
        Pool { backends }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_changes_send_proxy_of_the_backend_it_keeps() {
        let before = BackendConfig::new("a", "127.0.0.1:1".parse().unwrap());
        let pool = Pool::new("p", std::slice::from_ref(&before));
        let kept = pool.all()[0].clone();
        assert_eq!(kept.send_proxy(), SendProxy::Off);
        for send in [SendProxy::V2, SendProxy::V1, SendProxy::Off] {
            let mut after = before.clone();
            after.send_proxy = send;
            let reloaded = pool.reconfigured("p", std::slice::from_ref(&before), &[after]);
            assert!(Arc::ptr_eq(&reloaded.all()[0], &kept), "the same backend");
            assert_eq!(kept.send_proxy(), send);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hellos_failed_for_one_prefix_never_mark_down_and_a_second_prefix_does() {
        let b = Backend::new(
            "p",
            &BackendConfig::new("a", "127.0.0.1:1".parse().unwrap()),
        );
        let clock = Clock::new();
        let hold = Duration::from_secs(10);
        let (one, two) = ([4; 17], [6; 17]);
        for _ in 0..100 {
            assert_eq!(b.hello_refused(&clock, hold, one), HelloRefusal::Suspect);
        }
        assert!(b.is_up(&clock), "one prefix alone");
        assert_eq!(b.hello_refused(&clock, hold, two), HelloRefusal::MarkedDown);
        assert!(!b.is_up(&clock), "a second prefix within the hold");
        assert_eq!(BackendCounters::get(&b.counters.hello_refusals), 101);

        // Past the hold it is up, and the window starts again: a second
        // prefix only after the first one's hold has passed is a new first.
        tokio::time::advance(hold).await;
        assert!(b.is_up(&clock));
        assert_eq!(b.hello_refused(&clock, hold, one), HelloRefusal::Suspect);
        tokio::time::advance(hold).await;
        assert_eq!(b.hello_refused(&clock, hold, two), HelloRefusal::Suspect);
        assert!(b.is_up(&clock));

        // A hold of zero holds nothing, whoever the clients.
        let z = Backend::new(
            "p",
            &BackendConfig::new("z", "127.0.0.1:1".parse().unwrap()),
        );
        assert_eq!(
            z.hello_refused(&clock, Duration::ZERO, one),
            HelloRefusal::Suspect
        );
        assert_eq!(
            z.hello_refused(&clock, Duration::ZERO, two),
            HelloRefusal::Suspect
        );
        assert!(z.is_up(&clock));
    }

    #[test]
    fn a_reload_turns_tcp_fastopen_on_and_off_in_place() {
        let before = BackendConfig::new("a", "127.0.0.1:1".parse().unwrap());
        let pool = Pool::new("p", std::slice::from_ref(&before));
        let kept = pool.all()[0].clone();
        assert!(!kept.tcp_fastopen(), "off by default");
        let mut on = before.clone();
        on.tcp_fastopen = true;
        let reloaded = pool.reconfigured("p", std::slice::from_ref(&before), &[on.clone()]);
        assert!(Arc::ptr_eq(&reloaded.all()[0], &kept), "the same backend");
        assert!(kept.tcp_fastopen());
        pool.reconfigured("p", &[on], &[before]);
        assert!(!kept.tcp_fastopen());
    }
}
