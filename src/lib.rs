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
//! - [`stop`]: `stickytls run`'s stop, from the first signal (or a takeover)
//!   to the exit; [`takeover`]: handing the listening sockets and the state
//!   to a new process (upgrades); [`notify`]: telling systemd.
//! - [`health`]: active health checks, one task per pool, off the
//!   connection path; a backend that fails them is passed over by routing
//!   and its sessions wait for it.
//! - [`conn_log`]: the one log line each connection writes when it ends.
//!
//! Seeing and steering a running router:
//! - [`admin`]: the admin endpoint (`/metrics`, the JSON API and the
//!   `/stats` HTML page) on a thread and runtime of its own, and what it
//!   reads and changes in the pools; [`metrics`] installs the Prometheus
//!   recorder it renders.
//! - [`ctl`]: `stickytls ctl`, the API's client.
//! - [`reload`]: what a running router serves now, and applying a re-read
//!   configuration file to it in place (SIGHUP, `ctl reload`, the API).
//!
//! - [`router`]: builds the pools and listeners from a configuration and
//!   runs them; nothing depends on it but the binary, the demo and tests
//!   (`tests/modules_have_no_import_cycles.rs` keeps these modules free of
//!   import cycles).
//! - [`demo`]: `stickytls demo`, the router shown on real TLS, with the
//!   real peers of the `stickytls-peers` crate (the default-on `demo`
//!   feature; without it the router links neither rustls nor rcgen).
//! - [`selftest`]: `stickytls selftest`, a client that checks a live router
//!   sends every resumption to its issuing backend (the same feature).
#![forbid(unsafe_code)]

pub mod admin;
pub mod affinity;
pub mod backend;
pub mod balance;
pub mod clock;
pub mod config;
pub mod conn_log;
pub mod connect;
pub mod connection;
pub mod ctl;
pub mod decision;
#[cfg(feature = "demo")]
pub mod demo;
pub mod health;
/// The handshake inspector, a crate of its own (`stickytls-inspect`) so that
/// it can be embedded without the router.
pub use stickytls_inspect as inspect;
pub mod intake;
pub mod learn;
pub mod listen;
mod log_limit;
pub mod metrics;
pub mod notify;
pub mod pool;
pub mod proxy;
pub mod proxy_out;
pub mod relay;
pub mod reload;
pub mod route;
pub mod router;
#[cfg(feature = "demo")]
pub mod selftest;
pub mod shutdown;
pub mod sni;
pub mod state;
pub mod stats;
pub mod stop;
pub mod takeover;
pub mod worker;
