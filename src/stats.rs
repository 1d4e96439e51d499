//! Per-router counters: plain atomics that belong to one router instance,
//! so tests, the admin API and a reload read them without a global
//! recorder. The connection path only bumps these; the Prometheus series
//! (names in [`crate::metrics`]) are registered once, when the router is
//! built, and a scrape copies the atomics into them ([`Stats::publish`]).
//! So a connection pays the same with the exporter on or off, and no
//! labelled handle is ever looked up per event.
//!
//! Rare events with open-ended reasons (rejections, accept errors) go
//! straight to the `metrics` facade instead, where the lookup is the cost
//! of something already gone wrong.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Gauge, counter, gauge};
use serde::Serialize;

use crate::affinity::KeyKind;
use crate::decision::Rule;
use crate::inspect::Resumption;
use crate::metrics::{self as m, Exported};

const KINDS: [KeyKind; 4] = [
    KeyKind::PskIdentity,
    KeyKind::Ticket,
    KeyKind::TicketKeyName,
    KeyKind::SessionId,
];

fn kind_index(kind: KeyKind) -> usize {
    match kind {
        KeyKind::PskIdentity => 0,
        KeyKind::Ticket => 1,
        KeyKind::TicketKeyName => 2,
        KeyKind::SessionId => 3,
    }
}

const RULES: [&str; 4] = ["key", "rebind", "source_ip", "balancer"];

fn rule_index(rule: Rule) -> usize {
    match rule {
        Rule::Key(_) => 0,
        Rule::Rebind => 1,
        Rule::SourceIp => 2,
        Rule::Balancer => 3,
    }
}

const RESUMPTIONS: [Resumption; 3] = [
    Resumption::Tls12SessionId,
    Resumption::Tls12Ticket,
    Resumption::Tls13Psk,
];

fn resumption_index(r: Resumption) -> usize {
    match r {
        Resumption::Tls12SessionId => 0,
        Resumption::Tls12Ticket => 1,
        Resumption::Tls13Psk => 2,
    }
}

/// Why a connection was closed before routing, as counted per reason: the
/// `reason` label values of [`m::REJECTED`] that the listener, the intake
/// (`IntakeError::reason`) and the PROXY header (`ProxyError::reason`)
/// give. A reason not listed is counted under the last, `other`, so a new
/// one added elsewhere is never lost, only lumped.
pub(crate) const REJECT_REASONS: [&str; 12] = [
    "not_tls",
    "malformed",
    "alert",
    "hello_timeout",
    "over_budget",
    "client_closed",
    "per_ip_limit",
    "per_client_limit",
    "io",
    "proxy_untrusted",
    "proxy_invalid",
    "other",
];

/// A rejection's slot in [`REJECT_REASONS`]: a scan of twelve short
/// strings, paid only by a connection already being turned away.
fn reject_index(reason: &str) -> usize {
    REJECT_REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(REJECT_REASONS.len() - 1)
}

/// The `version` label values of [`m::TLS_VERSIONS`].
const VERSIONS: [&str; 5] = ["1.0", "1.1", "1.2", "1.3", "other"];

fn version_index(v: u16) -> usize {
    match v {
        0x0301 => 0,
        0x0302 => 1,
        0x0303 => 2,
        0x0304 => 3,
        _ => 4,
    }
}

#[derive(Debug)]
pub struct Stats {
    connections: AtomicU64,
    /// Connections accepted and not yet closed.
    active: AtomicU64,
    rejected: AtomicU64,
    /// `rejected` by reason, indexed like [`REJECT_REASONS`]: the stats
    /// page ranks them without reading the metrics recorder.
    rejected_by: [AtomicU64; REJECT_REASONS.len()],
    hits: [AtomicU64; 4],
    misses: [AtomicU64; 4],
    learned: [AtomicU64; 4],
    /// Re-binds by the kind of key offered (indexed like the others; the
    /// key-name slot stays 0: a name alone is never a resumption attempt).
    rebinds: [AtomicU64; 4],
    routed: [AtomicU64; 4],
    affinity_lost: AtomicU64,
    resumed: [AtomicU64; 3],
    tls_versions: [AtomicU64; 5],
    tls13_session_ids_ignored: AtomicU64,
    backend_failures: AtomicU64,
    failovers: AtomicU64,
    no_backend: AtomicU64,
    to_backend_bytes: AtomicU64,
    to_client_bytes: AtomicU64,
    series: Series,
}

/// The router-wide Prometheus series, registered once.
#[derive(Debug)]
struct Series {
    active: Gauge,
    hits: [Exported; 4],
    misses: [Exported; 4],
    learned: [Exported; 4],
    rebinds: [Exported; 4],
    routed: [Exported; 4],
    resumed: [Exported; 3],
    tls_versions: [Exported; 5],
    tls13_session_ids_ignored: Exported,
    failovers: Exported,
    no_backend: Exported,
    to_backend_bytes: Exported,
    to_client_bytes: Exported,
}

impl Series {
    fn register() -> Series {
        let by_kind =
            |name: &'static str| KINDS.map(|k| Exported::new(counter!(name, "kind" => k.as_str())));
        let one = |name: &'static str| Exported::new(counter!(name));
        Series {
            active: gauge!(m::CONNECTIONS_ACTIVE),
            hits: by_kind(m::AFFINITY_HITS),
            misses: by_kind(m::AFFINITY_MISSES),
            learned: by_kind(m::LEARNED),
            rebinds: by_kind(m::REBINDS),
            routed: RULES.map(|r| Exported::new(counter!(m::ROUTED, "rule" => r))),
            resumed: RESUMPTIONS.map(|r| Exported::new(counter!(m::RESUMED, "kind" => r.as_str()))),
            tls_versions: VERSIONS
                .map(|v| Exported::new(counter!(m::TLS_VERSIONS, "version" => v))),
            tls13_session_ids_ignored: one(m::TLS13_SESSION_IDS_IGNORED),
            failovers: one(m::FAILOVERS),
            no_backend: one(m::NO_BACKEND),
            to_backend_bytes: one(m::BYTES_CLIENT_TO_BACKEND),
            to_client_bytes: one(m::BYTES_BACKEND_TO_CLIENT),
        }
    }
}

impl Default for Stats {
    /// Counters at zero, with series registered in the current recorder.
    fn default() -> Self {
        Stats {
            connections: AtomicU64::new(0),
            active: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            rejected_by: Default::default(),
            hits: Default::default(),
            misses: Default::default(),
            learned: Default::default(),
            rebinds: Default::default(),
            routed: Default::default(),
            affinity_lost: AtomicU64::new(0),
            resumed: Default::default(),
            tls_versions: Default::default(),
            tls13_session_ids_ignored: AtomicU64::new(0),
            backend_failures: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            no_backend: AtomicU64::new(0),
            to_backend_bytes: AtomicU64::new(0),
            to_client_bytes: AtomicU64::new(0),
            series: Series::register(),
        }
    }
}

/// A point-in-time copy of a router's counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub connections: u64,
    pub active: u64,
    pub rejected: u64,
    /// `rejected` by reason, every one of [`REJECT_REASONS`] present.
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    /// Indexed by key kind: psk_identity, ticket, ticket_key_name, session_id.
    pub hits: [u64; 4],
    pub misses: [u64; 4],
    pub learned: [u64; 4],
    /// All re-binds, whatever the key kind.
    pub rebinds: u64,
    pub routed_source_ip: u64,
    pub routed_balancer: u64,
    pub affinity_lost: u64,
    /// Resumptions the backends accepted, of every kind.
    pub resumed: u64,
    pub tls13_session_ids_ignored: u64,
    pub backend_failures: u64,
    pub failovers: u64,
    pub no_backend: u64,
    pub to_backend_bytes: u64,
    pub to_client_bytes: u64,
}

impl Snapshot {
    pub fn hits_of(&self, kind: KeyKind) -> u64 {
        self.hits[kind_index(kind)]
    }
    pub fn learned_of(&self, kind: KeyKind) -> u64 {
        self.learned[kind_index(kind)]
    }
}

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Stats {
    /// A connection accepted; [`Stats::closed`] when it ends. (Its
    /// `listener`-labelled counter is the listener's own handle.)
    pub fn connection(&self) {
        inc(&self.connections);
        inc(&self.active);
    }
    pub fn closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn rejected(&self, listener: &Arc<str>, reason: &'static str) {
        inc(&self.rejected);
        inc(&self.rejected_by[reject_index(reason)]);
        counter!(m::REJECTED, "listener" => listener.clone(), "reason" => reason).increment(1);
    }
    pub fn hit(&self, kind: KeyKind) {
        inc(&self.hits[kind_index(kind)]);
    }
    pub fn miss(&self, kind: KeyKind) {
        inc(&self.misses[kind_index(kind)]);
    }
    pub fn learned(&self, kind: KeyKind) {
        inc(&self.learned[kind_index(kind)]);
    }
    /// A routing decision. Re-binds are counted by key kind apart, in
    /// [`Stats::rebound`], where the offer is known.
    pub fn routed(&self, rule: Rule) {
        inc(&self.routed[rule_index(rule)]);
    }
    /// An unknown session re-bound by client address, by the kind of key
    /// the client offered.
    pub fn rebound(&self, kind: KeyKind) {
        inc(&self.rebinds[kind_index(kind)]);
    }
    pub fn affinity_lost(&self) {
        inc(&self.affinity_lost);
    }
    pub fn resumed(&self, how: Resumption) {
        inc(&self.resumed[resumption_index(how)]);
    }
    /// A completed handshake's version, as the server chose it.
    pub fn tls_version(&self, version: u16) {
        inc(&self.tls_versions[version_index(version)]);
    }
    pub fn tls13_session_id_ignored(&self) {
        inc(&self.tls13_session_ids_ignored);
    }
    /// A failed backend attempt; by backend and reason in the backend's
    /// own counters.
    pub fn backend_failure(&self) {
        inc(&self.backend_failures);
    }
    pub fn failover(&self) {
        inc(&self.failovers);
    }
    pub fn no_backend(&self) {
        inc(&self.no_backend);
    }
    /// Handshake bytes the inspector could not read: `side` client or
    /// server, `kind` malformed, over_limit, not_tls or alert. Rare, so
    /// counted straight into the facade.
    pub fn inspection_error(&self, side: &'static str, kind: &'static str) {
        counter!(m::INSPECTION_ERRORS, "side" => side, "kind" => kind).increment(1);
    }

    /// Bytes a finished relay passed each way.
    pub fn relayed(&self, to_backend: u64, to_client: u64) {
        self.to_backend_bytes
            .fetch_add(to_backend, Ordering::Relaxed);
        self.to_client_bytes.fetch_add(to_client, Ordering::Relaxed);
    }

    /// Copies the counters into their Prometheus series (at scrape time).
    pub fn publish(&self) {
        let s = &self.series;
        let all = |series: &[Exported], counts: &[AtomicU64]| {
            for (c, n) in series.iter().zip(counts) {
                c.publish(load(n));
            }
        };
        s.active.set(load(&self.active) as f64);
        all(&s.hits, &self.hits);
        all(&s.misses, &self.misses);
        all(&s.learned, &self.learned);
        all(&s.rebinds, &self.rebinds);
        all(&s.routed, &self.routed);
        all(&s.resumed, &self.resumed);
        all(&s.tls_versions, &self.tls_versions);
        s.tls13_session_ids_ignored
            .publish(load(&self.tls13_session_ids_ignored));
        s.failovers.publish(load(&self.failovers));
        s.no_backend.publish(load(&self.no_backend));
        s.to_backend_bytes.publish(load(&self.to_backend_bytes));
        s.to_client_bytes.publish(load(&self.to_client_bytes));
    }

    pub fn snapshot(&self) -> Snapshot {
        let arr = |a: &[AtomicU64; 4]| [load(&a[0]), load(&a[1]), load(&a[2]), load(&a[3])];
        Snapshot {
            connections: load(&self.connections),
            active: load(&self.active),
            rejected: load(&self.rejected),
            rejected_by_reason: REJECT_REASONS
                .iter()
                .zip(&self.rejected_by)
                .map(|(r, n)| (*r, load(n)))
                .collect(),
            hits: arr(&self.hits),
            misses: arr(&self.misses),
            learned: arr(&self.learned),
            rebinds: self.rebinds.iter().map(load).sum(),
            routed_source_ip: load(&self.routed[rule_index(Rule::SourceIp)]),
            routed_balancer: load(&self.routed[rule_index(Rule::Balancer)]),
            affinity_lost: load(&self.affinity_lost),
            resumed: self.resumed.iter().map(load).sum(),
            tls13_session_ids_ignored: load(&self.tls13_session_ids_ignored),
            backend_failures: load(&self.backend_failures),
            failovers: load(&self.failovers),
            no_backend: load(&self.no_backend),
            to_backend_bytes: load(&self.to_backend_bytes),
            to_client_bytes: load(&self.to_client_bytes),
        }
    }
}

/// One pool's series (label `pool`), registered when the pool is built.
#[derive(Debug)]
pub struct PoolSeries {
    entries: Gauge,
    evictions: Exported,
    decision_seconds: metrics::Histogram,
}

impl PoolSeries {
    pub fn register(pool: &str) -> PoolSeries {
        let pool = pool.to_string();
        PoolSeries {
            entries: gauge!(m::AFFINITY_ENTRIES, "pool" => pool.clone()),
            evictions: Exported::new(counter!(m::AFFINITY_EVICTIONS, "pool" => pool.clone())),
            decision_seconds: metrics::histogram!(m::DECISION_SECONDS, "pool" => pool),
        }
    }

    /// Records how long a routing decision took.
    pub fn decision_time(&self, d: std::time::Duration) {
        self.decision_seconds.record(d.as_secs_f64());
    }

    /// Copies the table's size and evictions into the series (at scrape
    /// time: counting a table's entries takes each shard's lock once).
    pub fn publish(&self, table: &dyn crate::affinity::AffinityStore) {
        self.entries.set(table.len() as f64);
        self.evictions.publish(table.evictions());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_counted_by_reason_and_unknown_ones_as_other() {
        let stats = Stats::default();
        let listener: Arc<str> = Arc::from("l");
        stats.rejected(&listener, "not_tls");
        stats.rejected(&listener, "not_tls");
        stats.rejected(&listener, "proxy_invalid");
        stats.rejected(&listener, "a_reason_added_later");
        let s = stats.snapshot();
        assert_eq!(s.rejected, 4);
        assert_eq!(s.rejected_by_reason["not_tls"], 2);
        assert_eq!(s.rejected_by_reason["proxy_invalid"], 1);
        assert_eq!(s.rejected_by_reason["other"], 1);
        assert_eq!(s.rejected_by_reason["malformed"], 0);
        assert_eq!(s.rejected_by_reason.len(), REJECT_REASONS.len());
        assert_eq!(s.rejected_by_reason.values().sum::<u64>(), s.rejected);
    }
}
