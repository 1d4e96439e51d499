//! stickytls: a TLS-session-aware passthrough router.
//!
//! # Layout
//! One module per stage of a connection's path, plus the pieces they share:
//! - [`inspect`]: the sans-io handshake inspector (embeddable on its own).
//! - [`peer`]: real TLS peers (rustls, OpenSSL) and a byte-recording tap,
//!   for the tests and `stickytls demo`.
#![forbid(unsafe_code)]

pub mod inspect;
pub mod peer;
