//! Per-router counters. Each event is counted twice on purpose: into the
//! `metrics` facade (names in [`crate::metrics`], for whatever exporter the
//! operator installs) and into these atomics, which belong to one router
//! instance so that tests, the future stats page and a reload can read them
//! without a global recorder.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::counter;
use serde::Serialize;

use crate::affinity::KeyKind;
use crate::inspect::Resumption;
use crate::metrics as m;
use crate::route::Rule;

fn kind_index(kind: KeyKind) -> usize {
    match kind {
        KeyKind::PskIdentity => 0,
        KeyKind::Ticket => 1,
        KeyKind::TicketKeyName => 2,
        KeyKind::SessionId => 3,
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicU64,
    rejected: AtomicU64,
    hits: [AtomicU64; 4],
    misses: [AtomicU64; 4],
    learned: [AtomicU64; 4],
    rebinds: AtomicU64,
    routed_source_ip: AtomicU64,
    routed_balancer: AtomicU64,
    affinity_lost: AtomicU64,
    resumed: AtomicU64,
    tls13_session_ids_ignored: AtomicU64,
    backend_failures: AtomicU64,
    failovers: AtomicU64,
    no_backend: AtomicU64,
}

/// A point-in-time copy of a router's counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub connections: u64,
    pub rejected: u64,
    /// Indexed by key kind: psk_identity, ticket, ticket_key_name, session_id.
    pub hits: [u64; 4],
    pub misses: [u64; 4],
    pub learned: [u64; 4],
    pub rebinds: u64,
    pub routed_source_ip: u64,
    pub routed_balancer: u64,
    pub affinity_lost: u64,
    pub resumed: u64,
    pub tls13_session_ids_ignored: u64,
    pub backend_failures: u64,
    pub failovers: u64,
    pub no_backend: u64,
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

impl Stats {
    pub fn connection(&self) {
        inc(&self.connections);
        counter!(m::CONNECTIONS).increment(1);
    }
    pub fn rejected(&self, reason: &'static str) {
        inc(&self.rejected);
        counter!(m::REJECTED, "reason" => reason).increment(1);
    }
    pub fn hit(&self, kind: KeyKind) {
        inc(&self.hits[kind_index(kind)]);
        counter!(m::AFFINITY_HITS, "kind" => kind.as_str()).increment(1);
    }
    pub fn miss(&self, kind: KeyKind) {
        inc(&self.misses[kind_index(kind)]);
        counter!(m::AFFINITY_MISSES, "kind" => kind.as_str()).increment(1);
    }
    pub fn learned(&self, kind: KeyKind) {
        inc(&self.learned[kind_index(kind)]);
        counter!(m::LEARNED, "kind" => kind.as_str()).increment(1);
    }
    pub fn routed(&self, rule: Rule, reason: &'static str) {
        match rule {
            Rule::Rebind => {
                inc(&self.rebinds);
                counter!(m::REBINDS, "reason" => reason).increment(1);
            }
            Rule::SourceIp => inc(&self.routed_source_ip),
            Rule::Balancer => inc(&self.routed_balancer),
            Rule::Key(_) => {}
        }
        counter!(m::ROUTED, "rule" => rule.as_str()).increment(1);
    }
    pub fn affinity_lost(&self, backend: &str) {
        inc(&self.affinity_lost);
        counter!(m::AFFINITY_LOST, "backend" => backend.to_string()).increment(1);
    }
    pub fn resumed(&self, how: Resumption) {
        inc(&self.resumed);
        counter!(m::RESUMED, "kind" => how.as_str()).increment(1);
    }
    pub fn tls13_session_id_ignored(&self) {
        inc(&self.tls13_session_ids_ignored);
        counter!(m::TLS13_SESSION_IDS_IGNORED).increment(1);
    }
    /// A failed backend attempt; by backend and reason in the backend's
    /// own counters.
    pub fn backend_failure(&self) {
        inc(&self.backend_failures);
    }
    pub fn failover(&self) {
        inc(&self.failovers);
        counter!(m::FAILOVERS).increment(1);
    }
    pub fn no_backend(&self) {
        inc(&self.no_backend);
        counter!(m::NO_BACKEND).increment(1);
    }

    pub fn snapshot(&self) -> Snapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let arr = |a: &[AtomicU64; 4]| [load(&a[0]), load(&a[1]), load(&a[2]), load(&a[3])];
        Snapshot {
            connections: load(&self.connections),
            rejected: load(&self.rejected),
            hits: arr(&self.hits),
            misses: arr(&self.misses),
            learned: arr(&self.learned),
            rebinds: load(&self.rebinds),
            routed_source_ip: load(&self.routed_source_ip),
            routed_balancer: load(&self.routed_balancer),
            affinity_lost: load(&self.affinity_lost),
            resumed: load(&self.resumed),
            tls13_session_ids_ignored: load(&self.tls13_session_ids_ignored),
            backend_failures: load(&self.backend_failures),
            failovers: load(&self.failovers),
            no_backend: load(&self.no_backend),
        }
    }
}
