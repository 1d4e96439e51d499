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

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Connections accepted, by `listener`.
pub const CONNECTIONS: &str = "stickytls_connections_total";
/// Connections open now, from accept to close (gauge).
pub const CONNECTIONS_ACTIVE: &str = "stickytls_connections_active";
/// Connections closed before routing, by `listener` and `reason` (not_tls,
/// malformed, alert, hello_timeout, over_budget, client_closed,
/// per_ip_limit, io, and the PROXY header's reasons).
pub const REJECTED: &str = "stickytls_rejected_total";
/// Bytes relayed from clients to backends.
pub const BYTES_CLIENT_TO_BACKEND: &str = "stickytls_bytes_client_to_backend_total";
/// Bytes relayed from backends to clients.
pub const BYTES_BACKEND_TO_CLIENT: &str = "stickytls_bytes_backend_to_client_total";
/// Routing decisions, by `rule` (key, rebind, source_ip, balancer).
pub const ROUTED: &str = "stickytls_routed_total";
/// A key in the ClientHello found in the table, by `kind`.
pub const AFFINITY_HITS: &str = "stickytls_affinity_hits_total";
/// A key in the ClientHello not in the table (or naming a backend that is
/// down or gone), by `kind`.
pub const AFFINITY_MISSES: &str = "stickytls_affinity_misses_total";
/// Unknown sessions re-bound by client address, by the `kind` of key the
/// client offered (psk_identity, ticket, session_id).
pub const REBINDS: &str = "stickytls_rebinds_total";
/// Keys learned from what a server confirmed, by `kind`.
pub const LEARNED: &str = "stickytls_learned_total";
/// A route by key that ended in a full handshake: the backend no longer
/// knew the session. By `pool` and `backend`: how an operator sees
/// stickiness failing.
pub const AFFINITY_LOST: &str = "stickytls_affinity_lost_total";
/// Resumptions the backend accepted, by `kind` of resumption.
pub const RESUMED: &str = "stickytls_resumed_total";
/// Entries in a pool's affinity table, by `pool` (gauge, read at scrape).
pub const AFFINITY_ENTRIES: &str = "stickytls_affinity_entries";
/// Entries a full affinity table evicted to make room, by `pool`.
pub const AFFINITY_EVICTIONS: &str = "stickytls_affinity_evictions_total";
/// TLS 1.3 legacy_session_id values seen and deliberately not stored.
pub const TLS13_SESSION_IDS_IGNORED: &str = "stickytls_tls13_session_ids_ignored_total";
/// Handshakes completed, by the `version` the server chose (`1.0`, `1.1`,
/// `1.2`, `1.3`, `other`).
pub const TLS_VERSIONS: &str = "stickytls_tls_versions_total";
/// Handshake bytes the inspector could not read, by `side` (client,
/// server) and `kind` (malformed, over_limit, not_tls, alert).
pub const INSPECTION_ERRORS: &str = "stickytls_inspection_errors_total";
/// A backend's effective state, by `pool`, `backend` and `state` (up, down,
/// drain, maint): 1 for the state it is in, 0 for the others (gauge).
pub const BACKEND_STATE: &str = "stickytls_backend_state";
/// A backend's configured or runtime weight, by `pool` and `backend`
/// (gauge).
pub const BACKEND_WEIGHT: &str = "stickytls_backend_weight";
/// Connections open to a backend now, by `pool` and `backend` (gauge).
pub const BACKEND_ACTIVE: &str = "stickytls_backend_active_connections";
/// Connections relayed to a backend, by `pool` and `backend`.
pub const BACKEND_CONNECTIONS: &str = "stickytls_backend_connections_total";
/// Handshakes completed on a backend, by `pool`, `backend` and `resumed`
/// ("true", "false"): a backend's resumption rate.
pub const BACKEND_HANDSHAKES: &str = "stickytls_backend_handshakes_total";
/// Failed attempts to reach a backend, by `pool`, `backend` and `reason`
/// (refused, timeout, silent, closed, full).
pub const BACKEND_CONNECT_FAILURES: &str = "stickytls_backend_connect_failures_total";
/// Seconds from starting to connect to a backend to its connection being
/// ready (its first answering byte for TLS), by `pool` and `backend`
/// (histogram).
pub const BACKEND_CONNECT_SECONDS: &str = "stickytls_backend_connect_duration_seconds";
/// Seconds from the ClientHello being complete to a backend being chosen,
/// by `pool` (histogram).
pub const DECISION_SECONDS: &str = "stickytls_decision_duration_seconds";
/// Connections that reached a backend other than their first candidate.
pub const FAILOVERS: &str = "stickytls_failovers_total";
/// Connections that found no backend at all, by `pool`.
pub const NO_BACKEND: &str = "stickytls_no_backend_total";
/// Accept errors, by `reason` (emfile, other).
pub const ACCEPT_ERRORS: &str = "stickytls_accept_errors_total";
/// Health-check state changes, by `pool`, `backend` and `to` (up, down).
pub const HEALTH_TRANSITIONS: &str = "stickytls_health_transitions_total";
/// Failed health probes, by `pool`, `backend` and `reason` (refused,
/// timeout, closed, not_tls, alert, malformed, local).
pub const HEALTH_CHECK_FAILURES: &str = "stickytls_health_check_failures_total";
/// The last health probe's result, by `pool` and `backend`: 1 passed, 0
/// failed.
pub const HEALTH_CHECK_PASSED: &str = "stickytls_health_check_passed";
/// Per-connection log lines dropped by the log rate limit.
pub const LOG_LINES_DROPPED: &str = "stickytls_log_lines_dropped_total";
/// Configuration reloads, by `result` (`ok`, `error`).
pub const RELOADS: &str = "stickytls_reloads_total";
/// State file writes, by `result` (ok, error).
pub const STATE_WRITES: &str = "stickytls_state_writes_total";
/// Seconds a successful state file write took, from the first shard copied
/// to the directory's fsync (histogram).
pub const STATE_WRITE_SECONDS: &str = "stickytls_state_write_duration_seconds";
/// Affinity entries in the last state file written (gauge).
pub const STATE_ENTRIES_WRITTEN: &str = "stickytls_state_entries_written";
/// Client records in the last state file written (gauge).
pub const STATE_CLIENTS_WRITTEN: &str = "stickytls_state_clients_written";
/// Size of the last state file written, in bytes (gauge).
pub const STATE_BYTES_WRITTEN: &str = "stickytls_state_bytes_written";
/// State file loads at start, by `result`: ok, skipped (unreadable or
/// unusable: the router started empty), missing (no file yet).
pub const STATE_LOADS: &str = "stickytls_state_loads_total";
/// Affinity entries the load at start put back (gauge).
pub const STATE_ENTRIES_RESTORED: &str = "stickytls_state_entries_restored";
/// Client records the load at start put back (gauge).
pub const STATE_CLIENTS_RESTORED: &str = "stickytls_state_clients_restored";
/// Lookups in the shared store, by `result`: hit, miss, timeout (not
/// answered within the lookup budget), error.
pub const STORE_LOOKUPS: &str = "stickytls_store_lookups_total";
/// Failed requests to the shared store, by `op`: connect, lookup, write.
pub const STORE_ERRORS: &str = "stickytls_store_errors_total";
/// 1 while connected to the shared store, else 0 (gauge).
pub const STORE_UP: &str = "stickytls_store_up";
/// Writes to the shared store not sent, by `reason`: queue_full,
/// store_down, error, timeout, stopped.
pub const STORE_WRITES_DROPPED: &str = "stickytls_store_writes_dropped_total";
/// Writes the shared store acknowledged.
pub const STORE_WRITES: &str = "stickytls_store_writes_total";
/// Values read from the shared store that were not ours or not well
/// formed (each treated as a miss).
pub const STORE_CORRUPT_VALUES: &str = "stickytls_store_corrupt_values_total";

/// Buckets of [`DECISION_SECONDS`]: a decision is a few table lookups, so
/// microseconds, with room for a contended lock or a remote store.
pub const DECISION_BUCKETS: [f64; 12] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 1e-1,
];
/// Buckets of [`BACKEND_CONNECT_SECONDS`]: from a local backend's tens of
/// microseconds to the default 3 s connect timeout plus the first byte.
pub const CONNECT_BUCKETS: [f64; 16] = [
    2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
    5.0,
];

/// Buckets of [`STATE_WRITE_SECONDS`]: a small table writes in
/// milliseconds, a million entries in about half a second, and a slow disk's
/// fsync can take seconds.
pub const STATE_WRITE_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histograms are drained into their buckets when nobody
/// scrapes: keeps their memory bounded.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A counter the router keeps as a plain atomic and copies into the
/// exporter at scrape time. What is copied is the increase since the last
/// copy, so the counters of several routers in one process (tests) add up
/// as they would through the facade.
#[derive(Debug)]
pub struct Exported {
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
pub fn recorder() -> Option<PrometheusHandle> {
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

/// HELP lines for every metric.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(CONNECTIONS, "Connections accepted, by listener.");
    describe_gauge!(CONNECTIONS_ACTIVE, "Connections open now.");
    describe_counter!(
        REJECTED,
        "Connections closed before routing, by listener and reason."
    );
    describe_counter!(
        BYTES_CLIENT_TO_BACKEND,
        Unit::Bytes,
        "Bytes relayed from clients to backends."
    );
    describe_counter!(
        BYTES_BACKEND_TO_CLIENT,
        Unit::Bytes,
        "Bytes relayed from backends to clients."
    );
    describe_counter!(ROUTED, "Routing decisions, by rule.");
    describe_counter!(
        RELOADS,
        "Configuration reloads (SIGHUP, ctl reload, POST /api/v1/reload), by result."
    );
    describe_counter!(AFFINITY_HITS, "Offered keys found in the affinity table.");
    describe_counter!(
        AFFINITY_MISSES,
        "Offered keys not in the table, or naming an unusable backend."
    );
    describe_counter!(
        REBINDS,
        "Unknown sessions re-bound by client address, by offered key kind."
    );
    describe_counter!(LEARNED, "Keys learned from what servers confirmed.");
    describe_counter!(
        AFFINITY_LOST,
        "Routes by key that ended in a full handshake on the owner."
    );
    describe_counter!(RESUMED, "Resumptions the backends accepted, by kind.");
    describe_gauge!(AFFINITY_ENTRIES, "Entries in a pool's affinity table.");
    describe_counter!(AFFINITY_EVICTIONS, "Entries a full affinity table evicted.");
    describe_counter!(
        TLS13_SESSION_IDS_IGNORED,
        "TLS 1.3 legacy session IDs seen and not stored."
    );
    describe_counter!(TLS_VERSIONS, "Handshakes completed, by TLS version.");
    describe_counter!(
        INSPECTION_ERRORS,
        "Handshake bytes the inspector could not read, by side and kind."
    );
    describe_gauge!(
        BACKEND_STATE,
        "1 for a backend's effective state (up, down, drain, maint)."
    );
    describe_gauge!(BACKEND_WEIGHT, "A backend's weight.");
    describe_gauge!(BACKEND_ACTIVE, "Connections open to a backend now.");
    describe_counter!(BACKEND_CONNECTIONS, "Connections relayed to a backend.");
    describe_counter!(
        BACKEND_HANDSHAKES,
        "Handshakes completed on a backend, resumed or not."
    );
    describe_counter!(
        BACKEND_CONNECT_FAILURES,
        "Failed attempts to reach a backend, by reason."
    );
    describe_histogram!(
        BACKEND_CONNECT_SECONDS,
        Unit::Seconds,
        "Time to reach a backend (its first byte, for TLS)."
    );
    describe_histogram!(
        DECISION_SECONDS,
        Unit::Seconds,
        "Time from a complete ClientHello to a chosen backend."
    );
    describe_counter!(
        FAILOVERS,
        "Connections that reached another backend than the first chosen."
    );
    describe_counter!(NO_BACKEND, "Connections that found no backend.");
    describe_counter!(ACCEPT_ERRORS, "Accept errors, by reason.");
    describe_counter!(
        LOG_LINES_DROPPED,
        "Per-connection log lines dropped by the rate limit."
    );
    describe_counter!(STATE_WRITES, "State file writes, by result.");
    describe_histogram!(
        STATE_WRITE_SECONDS,
        Unit::Seconds,
        "Time a successful state file write took, fsyncs included."
    );
    describe_gauge!(
        STATE_ENTRIES_WRITTEN,
        "Affinity entries in the last state file written."
    );
    describe_gauge!(
        STATE_CLIENTS_WRITTEN,
        "Client records in the last state file written."
    );
    describe_gauge!(
        STATE_BYTES_WRITTEN,
        Unit::Bytes,
        "Size of the last state file written."
    );
    describe_counter!(
        STATE_LOADS,
        "State file loads at start, by result (ok, skipped, missing)."
    );
    describe_gauge!(
        STATE_ENTRIES_RESTORED,
        "Affinity entries the state file load put back."
    );
    describe_gauge!(
        STATE_CLIENTS_RESTORED,
        "Client records the state file load put back."
    );
    describe_counter!(
        STORE_LOOKUPS,
        "Shared store lookups, by result (hit, miss, timeout, error)."
    );
    describe_counter!(
        STORE_ERRORS,
        "Failed shared store requests, by op (connect, lookup, write)."
    );
    describe_gauge!(STORE_UP, "1 while connected to the shared store.");
    describe_counter!(
        STORE_WRITES_DROPPED,
        "Writes to the shared store not sent, by reason."
    );
    describe_counter!(STORE_WRITES, "Writes the shared store acknowledged.");
    describe_counter!(
        STORE_CORRUPT_VALUES,
        "Values read from the shared store that were malformed or foreign, each a miss."
    );
}
