//! Every metric name in one place, so dashboards and the code cannot drift.
//! Labels: `kind` is a key kind (`session_id`, `ticket`, `psk_identity`,
//! `ticket_key_name`), `rule` a routing rule, `reason` a short snake_case
//! cause, `backend` a backend name, `listener` a listener's configured name.

/// Connections accepted, by `listener`.
pub const CONNECTIONS: &str = "stickytls_connections_total";
/// Connections closed before routing, by `listener` and `reason` (not_tls,
/// malformed, alert, hello_timeout, over_budget, client_closed,
/// per_ip_limit, io).
pub const REJECTED: &str = "stickytls_rejected_total";
/// Routing decisions, by `rule` (key, rebind, source_ip, balancer).
pub const ROUTED: &str = "stickytls_routed_total";
/// A key in the ClientHello found in the table, by `kind`.
pub const AFFINITY_HITS: &str = "stickytls_affinity_hits_total";
/// A key in the ClientHello not in the table (or naming a backend that is
/// down or gone), by `kind`.
pub const AFFINITY_MISSES: &str = "stickytls_affinity_misses_total";
/// Unknown sessions re-bound by client address, by `reason`.
pub const REBINDS: &str = "stickytls_rebinds_total";
/// Keys learned from what a server confirmed, by `kind`.
pub const LEARNED: &str = "stickytls_learned_total";
/// A route by key that ended in a full handshake: the backend no longer
/// knew the session. By `backend`: how an operator sees stickiness failing.
pub const AFFINITY_LOST: &str = "stickytls_affinity_lost_total";
/// Resumptions the backend accepted, by `kind` of resumption.
pub const RESUMED: &str = "stickytls_resumed_total";
/// TLS 1.3 legacy_session_id values seen and deliberately not stored.
pub const TLS13_SESSION_IDS_IGNORED: &str = "stickytls_tls13_session_ids_ignored_total";
/// Failed backend attempts, by `backend` and `reason` (refused, timeout,
/// silent, closed).
pub const BACKEND_FAILURES: &str = "stickytls_backend_failures_total";
/// Connections that reached a backend other than their first candidate.
pub const FAILOVERS: &str = "stickytls_failovers_total";
/// Connections that found no backend at all.
pub const NO_BACKEND: &str = "stickytls_no_backend_total";
/// Server handshake flights the inspector could not read, by `reason`.
pub const SERVER_UNREADABLE: &str = "stickytls_server_flight_unreadable_total";
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
