//! Every metric name in one place, so dashboards and the code cannot drift,
//! and the Prometheus exporter that serves them.
//!
//! Labels, every one with a bounded set of values (never a client address
//! or a session): `kind` is a key kind (`session_id`, `ticket`,
//! `psk_identity`, `ticket_key_name`), `rule` a routing rule, `reason` a
//! short snake_case cause, `listener`, `pool` and `backend` names from
//! the configuration. docs/operations.md says what each metric means.
//!
//! Nothing is exported unless the admin endpoint is on: without a recorder
//! the `metrics` facade is a no-op. Per-backend handles are registered when
//! pools are built, so the recorder must be installed before that.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Declares each metric once: its constant, whose doc opens with the
/// metric's HELP line, and its row in [`DESCRIBED`], from which
/// [`describe`] gives the exporter every HELP line. A row reads
/// `/// more doc`, then `CONSTANT: kind(Unit) = "name", "HELP line";`.
macro_rules! metric_table {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $kind:ident $(($unit:ident))? = $metric:literal, $help:literal;
    )*) => {
        $(
            #[doc = $help]
            #[doc = ""]
            $(#[doc = $doc])*
            #[doc = ""]
            #[doc = concat!("A ", stringify!($kind), ".")]
            pub const $name: &str = $metric;
        )*

        /// Every metric with a HELP line, as `/metrics` describes it.
        pub(crate) const DESCRIBED: &[Described] = &[$(Described {
            name: $name,
            kind: metric_table!(@kind $kind),
            unit: metric_table!(@unit $($unit)?),
            help: $help,
        },)*];
    };
    (@kind counter) => { Kind::Counter };
    (@kind gauge) => { Kind::Gauge };
    (@kind histogram) => { Kind::Histogram };
    (@unit) => { None };
    (@unit $unit:ident) => { Some(Unit::$unit) };
}

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric as the exporter describes it: its HELP line and unit.
#[derive(Debug)]
pub(crate) struct Described {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Option<Unit>,
    pub help: &'static str,
}

metric_table! {
    CONNECTIONS: counter = "stickytls_connections_total",
        "Connections accepted, by listener.";
    /// From accept to close.
    CONNECTIONS_ACTIVE: gauge = "stickytls_connections_active",
        "Connections open now.";
    /// `reason`: not_tls, malformed, alert, hello_timeout, over_budget,
    /// client_closed, per_ip_limit (`max_inspecting_per_ip`),
    /// per_client_limit (`max_connections_per_client`), io, and the PROXY
    /// header's reasons.
    REJECTED: counter = "stickytls_rejected_total",
        "Connections closed before routing, by listener and reason.";
    BYTES_CLIENT_TO_BACKEND: counter(Bytes) = "stickytls_bytes_client_to_backend_total",
        "Bytes relayed from clients to backends.";
    BYTES_BACKEND_TO_CLIENT: counter(Bytes) = "stickytls_bytes_backend_to_client_total",
        "Bytes relayed from backends to clients.";
    /// `rule`: key, rebind, source_ip, balancer.
    ROUTED: counter = "stickytls_routed_total",
        "Routing decisions, by rule.";
    /// A key in the ClientHello, by `kind`.
    AFFINITY_HITS: counter = "stickytls_affinity_hits_total",
        "Offered keys found in the affinity table.";
    /// A key in the ClientHello (an unusable backend is down or gone), by
    /// `kind`.
    AFFINITY_MISSES: counter = "stickytls_affinity_misses_total",
        "Offered keys not in the table, or naming an unusable backend.";
    /// `kind`: the key the client offered (psk_identity, ticket,
    /// session_id).
    REBINDS: counter = "stickytls_rebinds_total",
        "Unknown sessions re-bound by client address, by offered key kind.";
    /// By `kind`.
    LEARNED: counter = "stickytls_learned_total",
        "Keys learned from what servers confirmed.";
    /// The backend no longer knew the session. By `pool` and `backend`:
    /// how an operator sees stickiness failing.
    AFFINITY_LOST: counter = "stickytls_affinity_lost_total",
        "Routes by key that ended in a full handshake on the owner.";
    /// By `pool`, `backend` and `result`: `kept` (the refusal alone is no
    /// evidence: anyone holding one ticket can offer its name), `rejected`
    /// (the backend had confirmed a newer name: it rotated its key, and
    /// the name no longer routes there).
    KEY_NAME_REFUSALS: counter = "stickytls_key_name_refusals_total",
        "Full handshakes answering a ticket or PSK with a routable key name of that backend.";
    /// By `pool` and `kind`: the entry stays (another version or cipher
    /// suite than the session's, a PSK without psk_dhe_ke).
    UNRESUMABLE_OFFERS: counter = "stickytls_unresumable_offers_total",
        "Full handshakes on a key's owner for hellos that could not resume its session.";
    /// `kind` of resumption.
    RESUMED: counter = "stickytls_resumed_total",
        "Resumptions the backends accepted, by kind.";
    /// By `pool`, read at scrape.
    AFFINITY_ENTRIES: gauge = "stickytls_affinity_entries",
        "Entries in a pool's affinity table.";
    /// To make room, by `pool`.
    AFFINITY_EVICTIONS: counter = "stickytls_affinity_evictions_total",
        "Entries a full affinity table evicted.";
    /// `legacy_session_id` values, deliberately not kept.
    TLS13_SESSION_IDS_IGNORED: counter = "stickytls_tls13_session_ids_ignored_total",
        "TLS 1.3 legacy session IDs seen and not stored.";
    /// `version`, the one the server chose: `1.0`, `1.1`, `1.2`, `1.3`,
    /// `other`.
    TLS_VERSIONS: counter = "stickytls_tls_versions_total",
        "Handshakes completed, by TLS version.";
    /// `side`: client, server; `kind`: malformed, over_limit, not_tls,
    /// alert.
    INSPECTION_ERRORS: counter = "stickytls_inspection_errors_total",
        "Handshake bytes the inspector could not read, by side and kind.";
    /// By `pool`, `backend` and `state`: 1 for the state it is in, 0 for
    /// the others.
    BACKEND_STATE: gauge = "stickytls_backend_state",
        "1 for a backend's effective state (up, down, drain, maint).";
    /// Configured or set at runtime, by `pool` and `backend`.
    BACKEND_WEIGHT: gauge = "stickytls_backend_weight",
        "A backend's weight.";
    /// By `pool` and `backend`.
    BACKEND_ACTIVE: gauge = "stickytls_backend_active_connections",
        "Connections open to a backend now.";
    /// By `pool` and `backend`.
    BACKEND_CONNECTIONS: counter = "stickytls_backend_connections_total",
        "Connections relayed to a backend.";
    /// By `pool`, `backend` and `resumed` ("true", "false"): a backend's
    /// resumption rate.
    BACKEND_HANDSHAKES: counter = "stickytls_backend_handshakes_total",
        "Handshakes completed on a backend, resumed or not.";
    /// By `pool` and `backend` too; `reason`: refused, timeout, silent,
    /// closed, full.
    BACKEND_CONNECT_FAILURES: counter = "stickytls_backend_connect_failures_total",
        "Failed attempts to reach a backend, by reason.";
    /// By `pool` and `backend`: connections it accepted and then closed,
    /// reset or left unanswered after a client's hello (also counted in
    /// `stickytls_backend_connect_failures_total`). One client prefix's
    /// alone never mark it down (docs/routing.md).
    BACKEND_HELLO_REFUSALS: counter = "stickytls_backend_hello_refusals_total",
        "Client hellos a backend failed after accepting the connection.";
    /// From starting to connect to the connection being ready, by `pool`
    /// and `backend`.
    BACKEND_CONNECT_SECONDS: histogram(Seconds) = "stickytls_backend_connect_duration_seconds",
        "Time to reach a backend (its first byte, for TLS).";
    /// By `pool`.
    DECISION_SECONDS: histogram(Seconds) = "stickytls_decision_duration_seconds",
        "Time from a complete ClientHello to a chosen backend.";
    FAILOVERS: counter = "stickytls_failovers_total",
        "Connections that reached another backend than the first chosen.";
    /// By `pool`.
    NO_BACKEND: counter = "stickytls_no_backend_total",
        "Connections that found no backend.";
    /// `reason`: emfile, other.
    ACCEPT_ERRORS: counter = "stickytls_accept_errors_total",
        "Accept errors, by reason.";
    LOG_LINES_DROPPED: counter = "stickytls_log_lines_dropped_total",
        "Per-connection log lines dropped by the rate limit.";
    /// `result`: `ok`, `error`.
    RELOADS: counter = "stickytls_reloads_total",
        "Configuration reloads (SIGHUP, ctl reload, POST /api/v1/reload), by result.";
    /// `result`: ok, error.
    STATE_WRITES: counter = "stickytls_state_writes_total",
        "State file writes, by result.";
    /// From the first shard copied to the directory's fsync.
    STATE_WRITE_SECONDS: histogram(Seconds) = "stickytls_state_write_duration_seconds",
        "Time a successful state file write took, fsyncs included.";
    STATE_ENTRIES_WRITTEN: gauge = "stickytls_state_entries_written",
        "Affinity entries in the last state file written.";
    STATE_CLIENTS_WRITTEN: gauge = "stickytls_state_clients_written",
        "Client records in the last state file written.";
    STATE_BYTES_WRITTEN: gauge(Bytes) = "stickytls_state_bytes_written",
        "Size of the last state file written.";
    /// skipped: unreadable or unusable, the router started empty;
    /// missing: no file yet.
    STATE_LOADS: counter = "stickytls_state_loads_total",
        "State file loads at start, by result (ok, skipped, missing).";
    /// At start.
    STATE_ENTRIES_RESTORED: gauge = "stickytls_state_entries_restored",
        "Affinity entries the state file load put back.";
    /// At start.
    STATE_CLIENTS_RESTORED: gauge = "stickytls_state_clients_restored",
        "Client records the state file load put back.";
    /// timeout: not answered within the lookup budget.
    STORE_LOOKUPS: counter = "stickytls_store_lookups_total",
        "Shared store lookups, by result (hit, miss, timeout, error).";
    STORE_ERRORS: counter = "stickytls_store_errors_total",
        "Failed shared store requests, by op (connect, lookup, write).";
    /// Else 0.
    STORE_UP: gauge = "stickytls_store_up",
        "1 while connected to the shared store.";
    /// `reason`: queue_full, store_down, error, timeout, stopped.
    STORE_WRITES_DROPPED: counter = "stickytls_store_writes_dropped_total",
        "Writes to the shared store not sent, by reason.";
    STORE_WRITES: counter = "stickytls_store_writes_total",
        "Writes the shared store acknowledged.";
    STORE_CORRUPT_VALUES: counter = "stickytls_store_corrupt_values_total",
        "Values read from the shared store that were malformed or foreign, each a miss.";
}

// The health checks' series have no HELP line (none was ever written for
// them), so they are outside the table.

/// Health-check state changes, by `pool`, `backend` and `to` (up, down).
pub const HEALTH_TRANSITIONS: &str = "stickytls_health_transitions_total";
/// Failed health probes, by `pool`, `backend` and `reason` (refused,
/// timeout, closed, not_tls, alert, malformed, local).
pub(crate) const HEALTH_CHECK_FAILURES: &str = "stickytls_health_check_failures_total";
/// The last health probe's result, by `pool` and `backend`: 1 passed, 0
/// failed.
pub(crate) const HEALTH_CHECK_PASSED: &str = "stickytls_health_check_passed";

/// Buckets of [`DECISION_SECONDS`]: a decision is a few table lookups, so
/// microseconds, with room for a contended lock or a remote store.
pub(crate) const DECISION_BUCKETS: [f64; 12] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 1e-1,
];
/// Buckets of [`BACKEND_CONNECT_SECONDS`]: from a local backend's tens of
/// microseconds to the default 3 s connect timeout plus the first byte.
pub(crate) const CONNECT_BUCKETS: [f64; 16] = [
    2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
    5.0,
];

/// Buckets of [`STATE_WRITE_SECONDS`]: a small table writes in
/// milliseconds, a million entries in about half a second, and a slow disk's
/// fsync can take seconds.
pub(crate) const STATE_WRITE_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are drained into their buckets when nobody
/// scrapes: keeps their memory bounded.
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A counter the router keeps as a plain atomic and copies into the
/// exporter at scrape time. What is copied is the increase since the last
/// copy, so the counters of several routers in one process (tests) add up
/// as they would through the facade.
#[derive(Debug)]
pub(crate) struct Exported {
    handle: metrics::Counter,
    /// The count at the last copy.
    published: AtomicU64,
}

impl Exported {
    pub fn new(handle: metrics::Counter) -> Self {
        Exported {
            handle,
            published: AtomicU64::new(0),
        }
    }

    /// Copies the increase from the last copy to `now`.
    pub fn publish(&self, now: u64) {
        let before = self.published.swap(now, Ordering::Relaxed);
        self.handle.increment(now.saturating_sub(before));
    }
}

/// The process-wide Prometheus recorder, installed on first use; `None`
/// if another recorder already owns the process. A router with an admin
/// endpoint calls this before it builds its pools: handles registered
/// before the recorder exists stay no-ops for good.
pub(crate) fn recorder() -> Option<PrometheusHandle> {
    static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    RECORDER
        .get_or_init(|| match install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot install the Prometheus recorder; /metrics is off");
                None
            }
        })
        .clone()
}

/// Installs the process-wide Prometheus recorder; fails if one is there.
fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DECISION_SECONDS.into()), &DECISION_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(BACKEND_CONNECT_SECONDS.into()),
            &CONNECT_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(STATE_WRITE_SECONDS.into()),
            &STATE_WRITE_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// HELP lines for every metric in [`DESCRIBED`].
fn describe() {
    metrics::with_recorder(|recorder| {
        for d in DESCRIBED {
            let (name, help) = (d.name.into(), d.help.into());
            match d.kind {
                Kind::Counter => recorder.describe_counter(name, d.unit, help),
                Kind::Gauge => recorder.describe_gauge(name, d.unit, help),
                Kind::Histogram => recorder.describe_histogram(name, d.unit, help),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_described_metric_has_its_own_name_and_a_help_line() {
        let mut names: Vec<&str> = DESCRIBED.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DESCRIBED.len(), "a name described twice");
        for d in DESCRIBED {
            assert!(d.name.starts_with("stickytls_"), "{}", d.name);
            assert!(d.help.ends_with('.'), "{}: {}", d.name, d.help);
            assert_eq!(
                d.name.ends_with("_total"),
                d.kind == Kind::Counter,
                "{}",
                d.name
            );
        }
    }
}
