//! The handshake inspector: reads the cleartext part of a TLS handshake in
//! both directions, without decrypting anything, and reports what a router
//! can learn from it.
//!
//! It is sans-io: the caller feeds byte slices as they arrive, in any
//! chunking, and gets back a [`Status`]. Nothing here does I/O, spawns, or
//! allocates in proportion to a length it has not verified.
//!
//! Layout:
//! - `record`: TLS record framing and handshake-message reassembly across
//!   records (tls-parser does not reassemble).
//! - `client_hello`: the ClientHello view, parsed through a bounded cursor.
//! - `server`: ServerHello / HelloRetryRequest / NewSessionTicket walking.
//! - `ja4`: the JA4 fingerprint and its resumption-stable variant.
//! - `fuzzing`: entry points for the fuzz targets, asserting properties.

// CONTRACT SKELETON: the types and signatures below are what the router is
// written against. The implementation fills in the bodies.

use std::fmt;

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
/// ticket formats of OpenSSL, nginx, rustls and friends. `None` when shorter.
pub fn ticket_key_name(ticket: &[u8]) -> Option<&[u8]> {
    ticket.get(..16)
}

/// A parsed ClientHello, borrowing the handshake message bytes. Parsing it
/// allocates nothing; the fingerprint is computed only when asked.
#[derive(Debug, Clone)]
pub struct ClientHello<'a> {
    /// The handshake message body (after the 4-byte handshake header).
    pub body: &'a [u8],
    pub legacy_version: u16,
    /// 0..=32 bytes.
    pub session_id: &'a [u8],
    /// `server_name` host_name, exactly as sent (not lowercased).
    pub sni: Option<&'a [u8]>,
    /// `session_ticket`: None = absent, Some(empty) = present and empty.
    pub session_ticket: Option<&'a [u8]>,
    /// Whether `pre_shared_key` was present.
    pub has_psk: bool,
    pub early_data: bool,
    /// `encrypted_client_hello` (0xfe0d) present: an ECH outer hello whose
    /// PSK identities are GREASE.
    pub ech: bool,
    // Raw extension bodies, walked by the accessor iterators below.
    pub(crate) _raw: (),
}

impl<'a> ClientHello<'a> {
    /// Parses a ClientHello handshake message body.
    pub fn parse(_body: &'a [u8]) -> Result<Self, InspectError> {
        unimplemented!()
    }
    /// PSK identities in order (the identity bytes only).
    pub fn psk_identities(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        std::iter::empty()
    }
    /// ALPN protocol names in order.
    pub fn alpn(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        std::iter::empty()
    }
    /// supported_versions, in order (GREASE included).
    pub fn supported_versions(&self) -> impl Iterator<Item = u16> + '_ {
        std::iter::empty()
    }
    /// key_share groups, in order.
    pub fn key_share_groups(&self) -> impl Iterator<Item = u16> + '_ {
        std::iter::empty()
    }
    /// Whether TLS 1.3 is offered in supported_versions.
    pub fn offers_tls13(&self) -> bool {
        unimplemented!()
    }
    /// JA4 per the FoxIO specification.
    pub fn ja4(&self) -> String {
        unimplemented!()
    }
    /// JA4 without GREASE, padding (21), pre_shared_key (41) and
    /// early_data (42): the same for a client's full and resumed hellos.
    pub fn ja4_stable(&self) -> String {
        unimplemented!()
    }
}

/// One connection's handshake, both directions.
#[derive(Debug)]
pub struct Handshake {
    _p: (),
}

impl Handshake {
    pub fn new(_limits: Limits) -> Self {
        unimplemented!()
    }
    /// Feeds client -> server bytes. `Done` once the first ClientHello is
    /// complete; after the server sends a HelloRetryRequest, feeding goes
    /// on to the second ClientHello and `Done` again.
    pub fn feed_client(&mut self, _data: &[u8]) -> Status {
        unimplemented!()
    }
    /// Feeds server -> client bytes. `Done` when the cleartext part of the
    /// server's flight we need is over (TLS 1.3: the real ServerHello; TLS
    /// <= 1.2: the server's ChangeCipherSpec).
    pub fn feed_server(&mut self, _data: &[u8]) -> Status {
        unimplemented!()
    }
    /// Whether client -> server bytes should still be fed (false once the
    /// client side is finished for good, e.g. after a non-HRR ServerHello).
    pub fn wants_client(&self) -> bool {
        unimplemented!()
    }
    /// Whether server -> client bytes should still be fed.
    pub fn wants_server(&self) -> bool {
        unimplemented!()
    }
    /// The first ClientHello, once complete.
    pub fn client_hello(&self) -> Option<ClientHello<'_>> {
        unimplemented!()
    }
    /// The second ClientHello after a HelloRetryRequest.
    pub fn second_client_hello(&self) -> Option<ClientHello<'_>> {
        unimplemented!()
    }
    /// What the server side showed, once `feed_server` returned `Done`.
    pub fn outcome(&self) -> Option<&Outcome> {
        unimplemented!()
    }
}
