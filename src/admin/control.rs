//! What the admin API reads from and steers in a running router: its pools'
//! backends, affinity tables, client index and recent decisions. Every
//! answer is a plain serializable view; nothing here holds a lock longer
//! than one table shard's lookup.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::ApiError;
use crate::affinity::{Key, KeyKind, KeyState, Peeked};
use crate::backend::{AdminState, Backend, BackendCounters, FAILURE_REASONS};
use crate::inspect::ticket_key_name;
use crate::pool::PoolState;
use crate::reload::{Live, Outcome, ReloadError};
use crate::stats::{Snapshot, Stats};

/// The read and steer interface over one router's pools.
#[derive(Debug, Clone)]
pub struct Control {
    /// The pools served now: a reload replaces them, and the next call
    /// sees the new ones.
    live: Arc<Live>,
    stats: Arc<Stats>,
    /// For `uptime_secs` in `GET stats`.
    started: Instant,
}

/// A pool, as `GET /api/v1/pools` lists it.
#[derive(Debug, Serialize)]
pub struct PoolView {
    pub name: String,
    pub balance: &'static str,
    pub inspect: bool,
    pub backends: usize,
    /// Backends whose effective state is `up`.
    pub backends_up: usize,
    pub affinity_entries: usize,
    /// `table_size`: the entries the table holds before it evicts, so a
    /// reader sees how full it is.
    pub affinity_capacity: usize,
    pub affinity_evictions: u64,
    pub clients_tracked: usize,
}

/// A backend, as `GET /api/v1/pools/{pool}/backends` lists it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BackendView {
    pub name: String,
    pub address: String,
    /// Effective: `up`, `down` (failures), `drain` or `maint`.
    pub state: &'static str,
    pub weight: u32,
    /// Connections open to it now.
    pub active: u32,
    /// Connections relayed to it.
    pub total: u64,
    /// Handshakes completed on it, and of those resumptions.
    pub handshakes: u64,
    pub resumed: u64,
    /// Routes by key that it answered with a full handshake: sessions it
    /// had forgotten.
    pub affinity_lost: u64,
    /// The last active health check's result, `passed` or `failed`; `None`
    /// before the first probe or with checks off.
    pub health: Option<&'static str>,
    /// Failed attempts, by reason.
    pub connect_failures: serde_json::Map<String, serde_json::Value>,
}

/// A change asked of a backend: `POST /api/v1/pools/{pool}/backends/{backend}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendChange {
    pub state: Option<AdminState>,
    pub weight: Option<u32>,
}

/// One affinity table entry found for a looked-up key.
#[derive(Debug, Serialize)]
pub struct KeyEntry {
    /// The kind the bytes were looked up as.
    pub kind: &'static str,
    pub backend: String,
    /// `owned`, or a ticket key name's `candidate`, `routable`, `shared`,
    /// `rejected`.
    pub state: &'static str,
    /// Whether rule 1 would route a hello offering these bytes by this
    /// entry now.
    pub routes: bool,
    pub age_secs: u64,
    pub expires_in_secs: u64,
}

/// `GET /api/v1/pools/{pool}/affinity?key=HEX`.
#[derive(Debug, Serialize)]
pub struct KeyLookup {
    pub pool: String,
    pub key: String,
    /// The backend rule 1 would choose, if any entry routes.
    pub backend: Option<String>,
    /// `key` when an entry routes; otherwise none applies to the key and
    /// the client's address decides (rules 2 to 4).
    pub rule: Option<&'static str>,
    /// The kind of the entry that routes.
    pub kind: Option<&'static str>,
    pub age_secs: Option<u64>,
    pub expires_in_secs: Option<u64>,
    /// Every entry found, in the precedence order of rule 1.
    pub entries: Vec<KeyEntry>,
}

/// `GET /api/v1/pools/{pool}/affinity?client=IP`.
#[derive(Debug, Serialize)]
pub struct ClientLookup {
    pub pool: String,
    pub client: IpAddr,
    /// The prefix length that stands for one client.
    pub prefix_len: u8,
    /// The backend of the address's most recent confirmed connection within
    /// the correlation window.
    pub backend: Option<String>,
    /// What places this address's next fresh client: `source_ip` (its
    /// recent backend) or `balancer` (no usable recent backend, or the
    /// address is shared).
    pub rule: &'static str,
    /// Where a resumption with unknown keys from it goes by rule 2.
    pub rebind_to: Option<String>,
    /// The kind of key an unknown session ID would be re-bound as: only
    /// when the last connection was TLS <= 1.2.
    pub kind: Option<&'static str>,
    pub shared: bool,
    pub new_sessions: u32,
    pub age_secs: Option<u64>,
    pub expires_in_secs: Option<u64>,
}

/// `DELETE` on an affinity lookup.
#[derive(Debug, Serialize)]
pub struct Forgotten {
    pub pool: String,
    pub removed: usize,
}

/// One routing decision, as `GET .../decisions` lists it.
#[derive(Debug, Serialize)]
pub struct DecisionView {
    /// When the backend was reached, as an RFC 3339 UTC time.
    pub time: String,
    pub client: String,
    pub sni: Option<String>,
    pub rule: &'static str,
    /// The key kind that decided (rule 1).
    pub kind: Option<&'static str>,
    pub backend: String,
    pub reason: &'static str,
}

/// `GET /api/v1/stats`.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub uptime_secs: u64,
    pub pools: usize,
    pub backends: usize,
    /// Connections open to backends now (`active`, below, counts every
    /// connection accepted and not closed, before routing too).
    pub open_to_backends: u64,
    /// The shared affinity store's state and counters (`[store] kind =
    /// "redis"` or `"redis-cluster"`); absent with the in-process store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::affinity::StoreStatus>,
    #[serde(flatten)]
    pub counters: Snapshot,
}

/// Everything the stats page shows, read in one pass through the same
/// views the JSON API answers with, so the page and the API never disagree
/// on what a figure means.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// When it was read, as an RFC 3339 UTC time.
    pub generated: String,
    pub stats: StatsView,
    pub pools: Vec<PoolOverview>,
}

/// One pool in an [`Overview`].
#[derive(Debug, Serialize)]
pub struct PoolOverview {
    pub pool: PoolView,
    pub backends: Vec<BackendView>,
    /// The newest decisions first.
    pub decisions: Vec<DecisionView>,
}

/// Decisions returned when `limit` is not given.
pub(crate) const DEFAULT_DECISIONS: usize = 50;
/// Longest key accepted in a lookup, in bytes: tickets run to a few
/// hundred bytes, and the bound keeps a query's work small.
pub(crate) const MAX_KEY_BYTES: usize = 4096;

impl Control {
    pub fn new(live: Arc<Live>, stats: Arc<Stats>) -> Control {
        Control {
            live,
            stats,
            started: Instant::now(),
        }
    }

    fn pool(&self, name: &str) -> Result<Arc<PoolState>, ApiError> {
        self.live
            .pools()
            .iter()
            .find(|p| p.config.name == name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no pool named `{name}`")))
    }

    fn backend<'a>(pool: &'a PoolState, name: &str) -> Result<&'a Arc<Backend>, ApiError> {
        pool.backends.by_name(name).ok_or_else(|| {
            ApiError::not_found(format!(
                "no backend named `{name}` in pool `{}`",
                pool.config.name
            ))
        })
    }

    pub fn pools(&self) -> Vec<PoolView> {
        self.live.pools().iter().map(|p| pool_view(p)).collect()
    }

    pub fn backends(&self, pool: &str) -> Result<Vec<BackendView>, ApiError> {
        let p = &self.pool(pool)?;
        Ok(p.backends.all().iter().map(|b| view(p, b)).collect())
    }

    /// Applies a state and/or weight change. Established connections are
    /// never touched: only decisions made after it see the change.
    pub fn set_backend(
        &self,
        pool: &str,
        backend: &str,
        change: BackendChange,
    ) -> Result<BackendView, ApiError> {
        let p = &self.pool(pool)?;
        let b = Self::backend(p, backend)?;
        if change.state.is_none() && change.weight.is_none() {
            return Err(ApiError::bad_request(
                "nothing to change: give \"state\" and/or \"weight\"",
            ));
        }
        if let Some(w) = change.weight {
            b.set_weight(w);
        }
        if let Some(s) = change.state {
            b.set_admin_state(s);
        }
        tracing::info!(
            pool,
            backend,
            state = b.admin_state().as_str(),
            weight = b.weight(),
            "backend changed through the admin API"
        );
        Ok(view(p, b))
    }

    pub fn lookup_key(&self, pool: &str, hex: &str) -> Result<KeyLookup, ApiError> {
        let p = &self.pool(pool)?;
        let bytes = parse_key(hex)?;
        let mut entries = Vec::new();
        for (kind, key) in keys_for(&bytes) {
            if let Some(peeked) = p.table.peek(&key) {
                entries.push(entry(p, kind, &peeked));
            }
        }
        let routing = entries.iter().find(|e| e.routes);
        Ok(KeyLookup {
            pool: pool.to_string(),
            key: hex.to_ascii_lowercase(),
            backend: routing.map(|e| e.backend.clone()),
            rule: routing.map(|_| "key"),
            kind: routing.map(|e| e.kind),
            age_secs: routing.map(|e| e.age_secs),
            expires_in_secs: routing.map(|e| e.expires_in_secs),
            entries,
        })
    }

    pub fn forget_key(&self, pool: &str, hex: &str) -> Result<Forgotten, ApiError> {
        let p = &self.pool(pool)?;
        let bytes = parse_key(hex)?;
        let mut removed = 0;
        for (_, key) in keys_for(&bytes) {
            if p.table.peek(&key).is_some() {
                removed += 1;
            }
            // Shared stores may hold it even where this router does not.
            p.table.forget(&key);
        }
        if removed == 0 {
            return Err(ApiError::not_found(format!(
                "no affinity entry for key {hex} in pool `{pool}`"
            )));
        }
        tracing::info!(
            pool,
            removed,
            "affinity entries forgotten through the admin API"
        );
        Ok(Forgotten {
            pool: pool.to_string(),
            removed,
        })
    }

    pub fn lookup_client(&self, pool: &str, ip: &str) -> Result<ClientLookup, ApiError> {
        let p = &self.pool(pool)?;
        let ip = parse_ip(ip)?;
        let summary = p.clients.peek(&p.prefix(ip));
        let last = summary.as_ref().and_then(|s| s.last.as_ref());
        let shared = summary.as_ref().is_some_and(|s| s.shared);
        let by_name = |name: &str| p.backends.by_name(name);
        let pinned = last
            .filter(|_| !shared)
            .and_then(|l| by_name(&l.backend))
            .filter(|b| b.takes_new(&p.clock));
        let rebind = last
            .and_then(|l| by_name(&l.backend))
            .filter(|b| b.serves_sessions(&p.clock));
        let a = &p.config.affinity;
        Ok(ClientLookup {
            pool: pool.to_string(),
            client: ip,
            prefix_len: if ip.to_canonical().is_ipv4() {
                a.ipv4_prefix
            } else {
                a.ipv6_prefix
            },
            backend: last.map(|l| l.backend.to_string()),
            rule: if pinned.is_some() {
                "source_ip"
            } else {
                "balancer"
            },
            rebind_to: rebind.map(|b| b.name.to_string()),
            kind: last
                .filter(|l| l.tls12)
                .map(|_| KeyKind::SessionId.as_str()),
            shared,
            new_sessions: summary.as_ref().map_or(0, |s| s.new_sessions),
            age_secs: last.map(|l| l.age.as_secs()),
            expires_in_secs: last.map(|l| l.expires_in.as_secs()),
        })
    }

    pub fn forget_client(&self, pool: &str, ip: &str) -> Result<Forgotten, ApiError> {
        let p = &self.pool(pool)?;
        let ip = parse_ip(ip)?;
        if !p.clients.forget(&p.prefix(ip)) {
            return Err(ApiError::not_found(format!(
                "no client record for {ip} in pool `{pool}`"
            )));
        }
        tracing::info!(pool, client = %ip, "client record forgotten through the admin API");
        Ok(Forgotten {
            pool: pool.to_string(),
            removed: 1,
        })
    }

    /// The newest decisions first, at most `limit`.
    pub fn decisions(&self, pool: &str, limit: usize) -> Result<Vec<DecisionView>, ApiError> {
        Ok(decision_views(&*self.pool(pool)?, limit))
    }

    /// Every pool with its backends and its last `decisions`, and the
    /// router's counters: what `GET /stats` renders. Built from the same
    /// functions as `/api/v1/pools`, `.../backends`, `.../decisions` and
    /// `/api/v1/stats`, so it reads the same atomics and takes no lock
    /// the connection path holds longer than a table shard's count.
    pub fn overview(&self, decisions: usize) -> Overview {
        Overview {
            generated: rfc3339(std::time::SystemTime::now()),
            stats: self.stats(),
            pools: self
                .live
                .pools()
                .iter()
                .map(|p| PoolOverview {
                    pool: pool_view(p),
                    backends: p.backends.all().iter().map(|b| view(p, b)).collect(),
                    decisions: decision_views(p, decisions),
                })
                .collect(),
        }
    }

    pub fn stats(&self) -> StatsView {
        let pools = self.live.pools();
        StatsView {
            uptime_secs: self.started.elapsed().as_secs(),
            pools: pools.len(),
            backends: pools.iter().map(|p| p.backends.all().len()).sum(),
            open_to_backends: pools
                .iter()
                .flat_map(|p| p.backends.all())
                .map(|b| u64::from(b.active()))
                .sum(),
            // One link serves every pool: the first pool's is the router's.
            store: pools.iter().find_map(|p| p.table.status()),
            counters: self.stats.snapshot(),
        }
    }

    /// Re-reads the configuration file and applies it (see
    /// [`crate::reload`]). Blocking.
    pub fn reload(&self) -> Result<Outcome, ReloadError> {
        self.live.reload()
    }

    /// The last reload's outcome since the start, if any.
    pub fn last_reload(&self) -> Option<Outcome> {
        self.live.last()
    }

    /// Copies what is read at scrape time (states, gauges, per-backend
    /// counts) into the metric series, just before they are rendered.
    pub fn publish(&self) {
        self.stats.publish();
        for p in self.live.pools().iter() {
            p.series.publish(&*p.table);
            for b in p.backends.all() {
                b.publish(&p.clock);
            }
        }
    }
}

fn pool_view(p: &PoolState) -> PoolView {
    PoolView {
        name: p.config.name.clone(),
        balance: balance_name(p.config.balance),
        inspect: p.config.inspect,
        backends: p.backends.all().len(),
        backends_up: p
            .backends
            .all()
            .iter()
            .filter(|b| b.state(&p.clock) == crate::backend::State::Up)
            .count(),
        affinity_entries: p.table.len(),
        affinity_capacity: p.config.affinity.table_size,
        affinity_evictions: p.table.evictions(),
        clients_tracked: p.clients.len(),
    }
}

fn decision_views(p: &PoolState, limit: usize) -> Vec<DecisionView> {
    p.last_decisions(limit)
        .into_iter()
        .map(|d| DecisionView {
            time: rfc3339(d.time),
            client: d.client.to_string(),
            sni: d.sni.map(|s| s.as_str_lossy().into_owned()),
            rule: d.rule,
            kind: d.key_kind.map(KeyKind::as_str),
            backend: d.backend.to_string(),
            reason: d.reason,
        })
        .collect()
}

fn view(pool: &PoolState, b: &Backend) -> BackendView {
    let c = &b.counters;
    let get = BackendCounters::get;
    BackendView {
        name: b.name.to_string(),
        address: b.addr.to_string(),
        state: b.state(&pool.clock).as_str(),
        weight: b.weight(),
        active: b.active(),
        total: get(&c.connections),
        handshakes: get(&c.full) + get(&c.resumed),
        resumed: get(&c.resumed),
        affinity_lost: get(&c.affinity_lost),
        health: b
            .health
            .last_passed()
            .map(|passed| if passed { "passed" } else { "failed" }),
        connect_failures: FAILURE_REASONS
            .iter()
            .zip(&c.failures)
            .map(|(r, n)| (r.to_string(), get(n).into()))
            .collect(),
    }
}

fn entry(pool: &PoolState, kind: KeyKind, p: &Peeked) -> KeyEntry {
    let routable = match kind {
        KeyKind::TicketKeyName => p.binding.state == KeyState::Routable,
        _ => true,
    };
    let serves = pool
        .backends
        .by_name(&p.binding.backend)
        .is_some_and(|b| b.serves_sessions(&pool.clock));
    KeyEntry {
        kind: kind.as_str(),
        backend: p.binding.backend.to_string(),
        state: state_name(p.binding.state),
        routes: routable && serves,
        age_secs: p.age.as_secs(),
        expires_in_secs: p.expires_in.as_secs(),
    }
}

/// The table keys the bytes a client would offer stand for, in rule 1's
/// precedence order: as a PSK identity, a ticket, the key name of either,
/// a session ID.
fn keys_for(bytes: &[u8]) -> Vec<(KeyKind, Key)> {
    let mut keys = vec![
        (KeyKind::PskIdentity, Key::new(KeyKind::PskIdentity, bytes)),
        (KeyKind::Ticket, Key::new(KeyKind::Ticket, bytes)),
    ];
    if let Some(name) = ticket_key_name(bytes) {
        keys.push((
            KeyKind::TicketKeyName,
            Key::new(KeyKind::TicketKeyName, name),
        ));
    }
    if bytes.len() <= 32 {
        // A legacy session ID is at most 32 bytes.
        keys.push((KeyKind::SessionId, Key::new(KeyKind::SessionId, bytes)));
    }
    keys
}

fn parse_key(text: &str) -> Result<Vec<u8>, ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "key: {why}; give the session ID, ticket or PSK identity as hex"
        ))
    };
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if text.len() % 2 != 0 {
        return Err(bad("odd number of hex digits"));
    }
    if text.len() / 2 > MAX_KEY_BYTES {
        return Err(bad(&format!("longer than {MAX_KEY_BYTES} bytes")));
    }
    hex::decode(text).map_err(|_| bad("not hex"))
}

fn parse_ip(s: &str) -> Result<IpAddr, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("client: `{s}` is not an IP address")))
}

fn state_name(s: KeyState) -> &'static str {
    match s {
        KeyState::Owned => "owned",
        KeyState::Candidate { .. } => "candidate",
        KeyState::Routable => "routable",
        KeyState::Shared => "shared",
        KeyState::Rejected => "rejected",
    }
}

/// `2026-11-30T07:12:03.042Z`: UTC, to the millisecond, without a date
/// library (days to a civil date by Howard Hinnant's algorithm).
fn rfc3339(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

fn balance_name(b: crate::config::Balance) -> &'static str {
    use crate::config::Balance;
    match b {
        Balance::RoundRobin => "roundrobin",
        Balance::WeightedRoundRobin => "weighted-roundrobin",
        Balance::LeastConnections => "least-connections",
        Balance::SourceHash => "source-hash",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 12:34:56.789, a leap day.
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(rfc3339(t), "2099-12-31T23:59:59.000Z");
    }
}
