//! stickytls: a TLS-session-aware passthrough router.
//!
//! # Layout
//! One module per stage of a connection's path, plus the pieces they share:
//! - [`inspect`]: the sans-io handshake inspector (embeddable on its own).
#![forbid(unsafe_code)]

pub mod inspect;
