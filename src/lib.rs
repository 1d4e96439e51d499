//! stickytls: a TLS-session-aware passthrough router.
//!
//! stickytls never decrypts. It reads the cleartext part of each TLS
//! handshake, learns from the server's reply which backend owns which
//! session, and sends every resumption back to its owner.
//!
//! # Layout
//! The path of one connection, one module per stage:
//! - [`listen`]: the accept loop and its limits.
//! - [`proxy`]: the PROXY protocol header, on listeners that require it.
//! - [`intake`]: reading the ClientHello within a byte and time budget.
//! - [`route`]: choosing a backend (affinity rules, else [`balance`]).
//! - [`connect`]: connecting, with failover, and replaying the hello.
//! - [`relay`]: copying both ways while the inspector watches the server.
//! - [`learn`]: turning what the server confirmed into table entries.
//!
//! What they share:
//! - [`inspect`]: the sans-io handshake inspector (embeddable on its own).
//! - [`affinity`]: the affinity table interface, its in-process store, and
//!   the per-client correlation index.
//! - [`backend`], [`config`], [`config_file`] (the TOML file and its
//!   error report), [`router`] (state and the per-connection path),
//!   [`sni`] (pool choice by server name), [`stats`] and [`metrics`]
//!   (every metric name).
//! - [`peer`]: real TLS peers (rustls backends and clients, the OpenSSL
//!   command line, a capture tap) for `stickytls demo` and the tests.
//! - [`demo`]: `stickytls demo`, the router shown on real TLS.
#![forbid(unsafe_code)]

pub mod affinity;
pub mod backend;
pub mod balance;
pub mod clock;
pub mod config;
pub mod config_file;
pub mod connect;
pub mod demo;
pub mod inspect;
pub mod intake;
pub mod learn;
pub mod listen;
mod log_limit;
pub mod metrics;
pub mod peer;
pub mod proxy;
pub mod relay;
pub mod route;
pub mod router;
pub mod sni;
pub mod stats;
