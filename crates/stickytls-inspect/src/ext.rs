//! TLS extension type code points (IANA "TLS ExtensionType Values"): the
//! ones the inspector reads and the ones a minimal ClientHello sends.
//! Public because they are the wire vocabulary an embedder matches
//! [`ClientHello::extensions`](crate::ClientHello::extensions) against,
//! and so that whoever builds a hello (the router's TLS health check)
//! writes each number once.

/// `server_name` (RFC 6066 3).
pub const SERVER_NAME: u16 = 0;
/// `supported_groups` (RFC 8446 4.2.7; `elliptic_curves` in RFC 8422).
pub const SUPPORTED_GROUPS: u16 = 10;
/// `ec_point_formats` (RFC 8422 5.1.2).
pub const EC_POINT_FORMATS: u16 = 11;
/// `signature_algorithms` (RFC 8446 4.2.3).
pub const SIGNATURE_ALGORITHMS: u16 = 13;
/// `application_layer_protocol_negotiation` (RFC 7301 3.1).
pub const ALPN: u16 = 16;
/// `padding` (RFC 7685).
pub const PADDING: u16 = 21;
/// `extended_master_secret` (RFC 7627 5.1).
pub const EXTENDED_MASTER_SECRET: u16 = 23;
/// `session_ticket` (RFC 5077 3.2).
pub const SESSION_TICKET: u16 = 35;
/// `pre_shared_key` (RFC 8446 4.2.11); must be a ClientHello's last.
pub const PRE_SHARED_KEY: u16 = 41;
/// `early_data` (RFC 8446 4.2.10).
pub const EARLY_DATA: u16 = 42;
/// `psk_key_exchange_modes` (RFC 8446 4.2.9).
pub const PSK_KEY_EXCHANGE_MODES: u16 = 45;
/// `supported_versions` (RFC 8446 4.2.1).
pub const SUPPORTED_VERSIONS: u16 = 43;
/// `key_share` (RFC 8446 4.2.8).
pub const KEY_SHARE: u16 = 51;
/// `encrypted_client_hello` (draft-ietf-tls-esni).
pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
/// `renegotiation_info` (RFC 5746 3.2).
pub const RENEGOTIATION_INFO: u16 = 0xff01;
