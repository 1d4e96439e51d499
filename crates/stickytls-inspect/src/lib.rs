#![doc = include_str!("../README.md")]
//!
//! ## Layout
//!
//! - `record`: TLS record framing and handshake-message reassembly across
//!   records, incremental down to one byte at a time.
//! - `client_hello`: the [`ClientHello`] grammar and its borrowed view.
//! - `wire`: the nom vocabulary the parsers share (length-prefixed
//!   vectors on complete input, the empty-rest check) and their error.
//! - `client`: the client direction (first and, after a retry, second
//!   ClientHello).
//! - `server`: ServerHello / HelloRetryRequest / NewSessionTicket walking.
//! - `handshake`: both directions together, and what they let a router
//!   learn ([`Handshake`], [`Outcome`]).
//! - [`ext`]: the extension type code points, public as wire vocabulary.
//! - `ja4`: the JA4 fingerprint and its resumption-stable variant.
//! - `report` (feature `report`): the JSON report behind
//!   `stickytls inspect`; the only user of serde_json.
//! - `fuzzing` (feature `fuzzing`; `fuzzing::differential` with
//!   `differential`): entry points for the fuzz targets, asserting
//!   properties, and the chunking harness the tests share.
//!
//! Both feature-gated modules are also compiled for this crate's own unit
//! tests, which exercise them.

// The types and signatures here (and re-exported below) are the contract
// the router is written against.
//
// No panic on outside bytes: every read goes through a bounded nom
// combinator or `get`, and nothing unwraps. Test modules allow both lints
// (a panic there is a failed test) and say so where they do.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::fmt;

mod client;
mod client_hello;
pub mod ext;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod handshake;
mod ja4;
mod record;
#[cfg(any(test, feature = "report"))]
pub mod report;
mod server;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
mod wire;

pub use client_hello::{ClientHello, is_grease};
pub use handshake::Handshake;

/// How much the inspector may buffer. Both caps bound memory per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of client input accepted up to the end of the ClientHello
    /// (and, after a HelloRetryRequest, the second one). Default 16 KiB.
    pub max_client_bytes: usize,
    /// Largest server handshake message that is buffered (ServerHello,
    /// NewSessionTicket). Messages we do not need (Certificate) are
    /// streamed past, never buffered. Default 16 KiB.
    pub max_server_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_client_bytes: 16 * 1024,
            max_server_message: 16 * 1024,
        }
    }
}

/// The answer to every `feed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Keep feeding this direction.
    NeedMore,
    /// This direction has told us all it will in cleartext that we need.
    Done,
    /// The input is not TLS (decided from the first bytes).
    NotTls(NotTls),
    /// The input is TLS-shaped but broken, or over a limit.
    Malformed(InspectError),
    /// A cleartext alert record was seen.
    Alert(Alert),
}

/// Why input was classified as not TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotTls {
    /// A short description, e.g. "HTTP request", "SSH banner",
    /// "SSLv2-format hello", "application data before handshake".
    pub reason: &'static str,
}

/// What was wrong and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InspectError {
    /// Byte offset in this direction's stream where the problem was found.
    pub offset: u64,
    /// What was wrong, e.g. "duplicate extension", "over the client byte budget".
    pub what: &'static str,
    /// Whose fault: broken input, or input over one of our [`Limits`].
    pub kind: ErrorKind,
}

/// Whether an [`InspectError`] is the peer's broken input or a size over
/// the caller's [`Limits`], so that callers can count and answer them
/// apart without matching message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The bytes break the TLS grammar.
    Malformed,
    /// Well-formed so far, but larger than [`Limits`] allows.
    OverLimit,
}

impl fmt::Display for InspectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.offset)
    }
}

impl std::error::Error for InspectError {}

/// A cleartext TLS alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub level: u8,
    pub description: u8,
}

/// How a handshake resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resumption {
    Tls12SessionId,
    Tls12Ticket,
    Tls13Psk,
}

impl Resumption {
    /// The name used in JSON and logs: "tls12-session-id", ...
    pub fn as_str(self) -> &'static str {
        match self {
            Resumption::Tls12SessionId => "tls12-session-id",
            Resumption::Tls12Ticket => "tls12-ticket",
            Resumption::Tls13Psk => "tls13-psk",
        }
    }
}

/// The kinds of key a router can learn, in routing precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    PskIdentity,
    Ticket,
    TicketKeyName,
    SessionId,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::PskIdentity => "psk_identity",
            KeyKind::Ticket => "ticket",
            KeyKind::TicketKeyName => "ticket_key_name",
            KeyKind::SessionId => "session_id",
        }
    }
}

/// One key the server confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub kind: KeyKind,
    /// Raw bytes: the session ID, the whole ticket, the whole identity, or
    /// the 16-byte key-name prefix.
    pub key: Vec<u8>,
    /// These are bytes the client offered and the server accepted (an
    /// echoed session ID, a resumed ticket, the selected PSK identity),
    /// not ones the server issued. A router that already derived its keys
    /// from the offer can reuse them instead of hashing the bytes again.
    pub offered: bool,
}

/// A cleartext TLS <= 1.2 NewSessionTicket (RFC 5077 3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSessionTicket {
    pub lifetime_hint: u32,
    /// The ticket without its length prefix. Never empty.
    pub ticket: Vec<u8>,
}

/// What the server side of a handshake showed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The version the server selected (supported_versions wins).
    pub version: u16,
    pub cipher_suite: u16,
    /// Whether a HelloRetryRequest came first.
    pub hello_retry_request: bool,
    /// The ServerHello's session_id (for TLS 1.3 a random echo).
    pub session_id: Vec<u8>,
    /// TLS 1.3 `selected_identity` from the ServerHello's pre_shared_key.
    pub psk_selected: Option<u16>,
    /// Every non-empty cleartext NewSessionTicket (TLS <= 1.2).
    pub new_session_tickets: Vec<NewSessionTicket>,
    pub resumed: bool,
    pub resumption: Option<Resumption>,
    /// What a router may learn from this handshake, as the issue defines it.
    pub learned: Vec<Learned>,
}

/// The first 16 bytes of a ticket or PSK identity: the key name in the
/// ticket formats of OpenSSL, nginx, rustls and friends. `None` unless the
/// ticket is longer than 16 bytes (a 16-byte ticket would be its own name).
pub fn ticket_key_name(ticket: &[u8]) -> Option<&[u8]> {
    if ticket.len() > 16 {
        ticket.get(..16)
    } else {
        None
    }
}

impl Status {
    /// Whether this answer is final for its direction (every status but
    /// `NeedMore` and `Done`).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::NotTls(_) | Status::Malformed(_) | Status::Alert(_)
        )
    }
}
