//! stickytls: a TLS-session-aware passthrough router.
//!
//! stickytls never decrypts. It reads the cleartext part of each TLS
//! handshake, learns from the server's reply which backend owns which
//! session, and sends every resumption back to its owner.
//!
//! # Layout
//! The path of one connection, one module per stage:
//! - [`listen`]: listeners, their accept loops and limits, and the worker
//!   threads with their `SO_REUSEPORT` sockets.
//! - [`connection`]: one connection through the stages below, in order.
//! - [`proxy`]: the PROXY protocol header, on listeners that require it.
//! - [`intake`]: reading the ClientHello within a byte and time budget.
//! - [`route`]: choosing a backend (affinity rules, else [`balance`]).
//! - [`connect`]: connecting, with failover, and replaying the hello
//!   (after a PROXY protocol header, [`proxy_out`], to backends that want
//!   one).
//! - [`relay`]: copying both ways while the inspector watches the server.
//! - [`learn`]: turning what the server confirmed into table entries.
//!
//! What they share:
//! - [`pool`]: one pool's state (backends, balancer, affinity tables,
//!   recent decisions); every stage works on a pool, none on the router.
//! - [`decision`]: the routing rules' names and the record kept of each
//!   decision.
//! - [`inspect`]: the sans-io handshake inspector, the `stickytls-inspect`
//!   crate (embeddable on its own, without tokio).
//! - [`affinity`]: the affinity table interface, its in-process store, the
//!   store shared by several instances through Redis (`[store]`, with the
//!   in-process one in front as a near cache), and the per-client
//!   correlation index.
//! - [`backend`], [`config`] (every setting described once, the TOML file
//!   and the quick form's flags, with their error reports), [`sni`] (pool choice by server name), [`stats`]
//!   (the router's counters) and [`metrics`] (every metric name), [`worker`] (per-thread state instead
//!   of locks every thread takes).
//! - [`shutdown`]: stopping in two steps (stop accepting, then let open
//!   connections finish until a deadline), with per-thread counts.
//! - [`state`]: the state file that carries the affinity tables and the
//!   client index across a restart.
//! - [`health`]: active health checks, one task per pool, off the
//!   connection path; a backend that fails them is passed over by routing
//!   and its sessions wait for it.
//! - [`conn_log`]: the one log line each connection writes when it ends.
//! - [`runtime`]: a named thread with a single-threaded runtime of its own,
//!   what each worker, the health checks, the admin endpoint and the shared
//!   store's client run on.
//!
//! Seeing and steering a running router:
//! - [`admin`]: the admin endpoint (`/metrics`, the JSON API and the
//!   `/stats` HTML page) on a thread and runtime of its own, and what it
//!   reads and changes in the pools; [`metrics`] installs the Prometheus
//!   recorder it renders.
//! - [`reload`]: what a running router serves now, and applying a re-read
//!   configuration file to it in place (SIGHUP, `ctl reload`, the API).
//!
//! Running it:
//! - [`router`]: builds the pools and listeners from a configuration and
//!   runs them, on worker threads or on the caller's runtime (tests, the
//!   demo).
//! - [`server`]: `stickytls run`, the process from start to exit: one loop
//!   answers the signals (SIGHUP reloads, SIGUSR2 upgrades, SIGTERM and
//!   SIGINT stop, a second one exits at once), drives the stop and the
//!   drain, and writes the state file; [`takeover`] hands the listening
//!   sockets and the state to a new process (upgrades); [`notify`] tells
//!   systemd. Nothing depends on it but the binary
//!   (`tests/modules_have_no_import_cycles.rs` keeps these modules free of
//!   import cycles).
//!
//! Apart from the router, and depending on it, never the other way:
//! [`client`], the command-line tools that are a router's clients
//! (`stickytls ctl`, `selftest`, `demo`, `inspect`).
#![forbid(unsafe_code)]
// The Layout above maps the source, private modules included: their links
// resolve under `cargo doc --document-private-items`, the view for working
// on the router; the public docs show them as plain names.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod affinity;
pub mod backend;
pub mod balance;
pub mod client;
pub mod clock;
pub mod config;
pub(crate) mod conn_log;
pub mod connect;
pub mod connection;
pub(crate) mod decision;
pub mod health;
// The fuzz targets' entry points (fuzz/README.md); the library's own tests
// replay the committed seeds through them.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
/// The handshake inspector, a crate of its own (`stickytls-inspect`) so that
/// it can be embedded without the router.
pub use stickytls_inspect as inspect;
pub mod intake;
pub mod learn;
pub mod listen;
mod log_limit;
pub mod metrics;
pub(crate) mod notify;
pub mod pool;
pub(crate) mod proxy;
pub mod proxy_out;
pub mod relay;
pub(crate) mod reload;
pub mod route;
pub mod router;
pub(crate) mod runtime;
pub mod server;
pub mod shutdown;
pub(crate) mod sni;
pub mod state;
pub mod stats;
pub(crate) mod takeover;
pub(crate) mod worker;
