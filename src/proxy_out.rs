//! PROXY protocol out (`send_proxy`): the header a backend is sent before
//! the client's first bytes, built with the `ppp` crate. Behind a
//! passthrough router every connection reaches the backend from the
//! router's address; the header gives the backend the client's real one
//! (the address a PROXY header from the router's own front proxy named,
//! when there was one) for its logs, limits and access rules.
//!
//! A v2 header also says why the router chose this backend, in TLVs of
//! the range the specification leaves to applications (0xE0–0xEF):
//! - [`TLV_RULE`] (0xE0): the routing rule, `key`, `rebind`, `source_ip`
//!   or `balancer` (docs/routing.md);
//! - [`TLV_KEY_KIND`] (0xE1): for `key`, the kind of key that matched, and
//!   for `rebind`, the kind of resumption the client offered:
//!   `session_id`, `ticket`, `psk_identity` or `ticket_key_name`.
//!   Absent for the other rules.
//!
//! Health probes send [`local`] instead: a header that names no client, as
//! HAProxy's own checks do, so that a backend which requires a header
//! answers them.
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2};

use crate::config::SendProxy;
use crate::decision::Rule;
use crate::inspect::KeyKind;

/// The v2 TLV carrying the routing rule's name.
pub const TLV_RULE: u8 = 0xE0;
/// The v2 TLV carrying the kind of session key behind a `key` or `rebind`
/// decision.
pub const TLV_KEY_KIND: u8 = 0xE1;

/// The v2 header of a health probe: version 2, command LOCAL, family and
/// protocol unspecified, no address block. A receiver uses its own
/// connection's addresses for it.
const V2_LOCAL: [u8; 16] = *b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

/// The v1 header of a health probe: the one form v1 has for "no client".
const V1_UNKNOWN: &[u8] = b"PROXY UNKNOWN\r\n";

/// Where a connection came from and why it goes where it goes: everything
/// a header says about it. Fixed-size, so building one allocates nothing
/// on the connections of backends that get no header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The client: the TCP peer, or the source of the incoming PROXY header.
    pub client: SocketAddr,
    /// The address the client connected to: the accepted socket's local
    /// address, or the incoming PROXY header's destination.
    pub destination: SocketAddr,
    /// The rule that chose the backend (for a v2 header's [`TLV_RULE`]).
    pub rule: Rule,
    /// The kind of key behind a `key` or `rebind` decision ([`TLV_KEY_KIND`]).
    pub key_kind: Option<KeyKind>,
}

/// `payload` with the header `send` asks for in front, as one buffer so
/// that both reach the backend in one write (a backend, or a middlebox,
/// that reads the header with one `recv` sees it whole). Borrows `payload`
/// untouched when `send` is off: no copy and no allocation.
pub(crate) fn header_then<'a>(
    send: SendProxy,
    origin: &Origin,
    payload: &'a [u8],
) -> Cow<'a, [u8]> {
    let mut out = match send {
        SendProxy::Off => return Cow::Borrowed(payload),
        SendProxy::V1 => v1_header(origin, payload.len()),
        SendProxy::V2 => v2_header(origin, payload.len()),
    };
    out.extend_from_slice(payload);
    Cow::Owned(out)
}

/// What a health probe sends first to a backend with `send`: v2 LOCAL or
/// v1 UNKNOWN, nothing when off.
pub(crate) fn local(send: SendProxy) -> &'static [u8] {
    match send {
        SendProxy::Off => &[],
        SendProxy::V1 => V1_UNKNOWN,
        SendProxy::V2 => &V2_LOCAL,
    }
}

/// The v1 line, in a buffer with room for `then` more bytes.
fn v1_header(origin: &Origin, then: usize) -> Vec<u8> {
    // "PROXY TCP6 " + two IPv6 addresses and two ports + CRLF is at most 104.
    let mut out = Vec::with_capacity(108 + then);
    let addresses = v1::Addresses::from(same_family(origin.client, origin.destination));
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{addresses}");
    out
}

/// The v2 header with its TLVs, in a buffer with room for `then` more bytes.
fn v2_header(origin: &Origin, then: usize) -> Vec<u8> {
    let rule = origin.rule.as_str().as_bytes();
    let kind = origin.key_kind.map(|k| k.as_str().as_bytes());
    let tlvs = 3 + rule.len() + kind.map_or(0, |k| 3 + k.len());
    let build = || -> std::io::Result<Vec<u8>> {
        let mut b = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            same_family(origin.client, origin.destination),
        )
        .reserve_capacity(tlvs + then)
        .write_tlv(TLV_RULE, rule)?;
        if let Some(kind) = kind {
            b = b.write_tlv(TLV_KEY_KIND, kind)?;
        }
        b.build()
    };
    // ppp fails only for a header longer than its 16-bit length field can
    // say; ours are under 100 bytes whatever the connection.
    build().expect("a PROXY v2 header of under 100 bytes fits its length field")
}

/// The two addresses in one family, as both header versions need: an
/// IPv4-mapped IPv6 address (a client of a dual-stack listener) is written
/// as the IPv4 address it is, and if the two still differ the IPv4 one is
/// mapped into IPv6, so the client's address is never lost to UNKNOWN.
pub(crate) fn same_family(client: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (c, d) = (canonical(client), canonical(destination));
    if c.is_ipv4() == d.is_ipv4() {
        return (c, d);
    }
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    (v6(c), v6(d))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use ppp::HeaderResult;

    fn origin(client: &str, destination: &str, rule: Rule) -> Origin {
        Origin {
            client: client.parse().unwrap(),
            destination: destination.parse().unwrap(),
            rule,
            key_kind: rule.key_kind(),
        }
    }

    /// The header `bytes` starts with, parsed back by ppp, and its length.
    fn parse_v2(bytes: &[u8]) -> (v2::Header<'_>, usize) {
        match HeaderResult::parse(bytes) {
            HeaderResult::V2(Ok(h)) => {
                let len = h.len();
                (h, len)
            }
            other => panic!("not a v2 header: {other:?}"),
        }
    }

    fn tlvs(h: &v2::Header<'_>) -> Vec<(u8, String)> {
        h.tlvs()
            .map(|t| {
                let t = t.unwrap();
                (t.kind, String::from_utf8(t.value.to_vec()).unwrap())
            })
            .collect()
    }

    #[test]
    fn v1_header_is_the_exact_text_line_for_ipv4_and_ipv6() {
        let hello = [0x16, 0x03, 0x01];
        let four = origin("192.0.2.7:40000", "198.51.100.1:443", Rule::Balancer);
        assert_eq!(
            &*header_then(SendProxy::V1, &four, &hello),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n\x16\x03\x01"
        );
        let six = origin("[2001:db8::7]:40000", "[2001:db8::1]:8443", Rule::Rebind);
        assert_eq!(
            &*header_then(SendProxy::V1, &six, &[]),
            b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8443\r\n"
        );
    }

    #[test]
    fn a_mapped_client_on_a_dual_stack_listener_keeps_its_address() {
        // An IPv4 client of a [::] listener, which accepted on a v4 address.
        let mapped = origin(
            "[::ffff:192.0.2.7]:40000",
            "198.51.100.1:443",
            Rule::Balancer,
        );
        assert_eq!(
            &*header_then(SendProxy::V1, &mapped, &[]),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n"
        );
        // A real mix: the IPv4 side is mapped, not dropped to UNKNOWN.
        let mixed = origin("192.0.2.7:40000", "[2001:db8::1]:443", Rule::Balancer);
        assert_eq!(
            &*header_then(SendProxy::V1, &mixed, &[]),
            b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 40000 443\r\n"
        );
    }

    #[test]
    fn v2_header_parses_back_with_addresses_and_the_decision_tlvs() {
        let hello = b"\x16\x03\x01 the hello";
        let by_key = origin(
            "192.0.2.7:40000",
            "198.51.100.1:443",
            Rule::Key(KeyKind::SessionId),
        );
        let bytes = header_then(SendProxy::V2, &by_key, hello);
        let (h, len) = parse_v2(&bytes);
        assert_eq!(&bytes[len..], hello, "the hello follows the header whole");
        assert_eq!(h.command, v2::Command::Proxy);
        assert_eq!(h.protocol, v2::Protocol::Stream);
        match h.addresses {
            v2::Addresses::IPv4(a) => {
                assert_eq!(
                    SocketAddr::new(a.source_address.into(), a.source_port),
                    by_key.client
                );
                assert_eq!(
                    SocketAddr::new(a.destination_address.into(), a.destination_port),
                    by_key.destination
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            tlvs(&h),
            [
                (TLV_RULE, "key".to_string()),
                (TLV_KEY_KIND, "session_id".to_string())
            ]
        );

        let mut rebind = origin("[2001:db8::7]:1", "[2001:db8::1]:443", Rule::Rebind);
        rebind.key_kind = Some(KeyKind::PskIdentity);
        let bytes = header_then(SendProxy::V2, &rebind, &[]);
        let (h, len) = parse_v2(&bytes);
        assert_eq!(len, bytes.len());
        assert!(matches!(h.addresses, v2::Addresses::IPv6(_)));
        assert_eq!(
            tlvs(&h),
            [
                (TLV_RULE, "rebind".to_string()),
                (TLV_KEY_KIND, "psk_identity".to_string())
            ]
        );

        let balanced = origin("192.0.2.7:1", "198.51.100.1:443", Rule::Balancer);
        let bytes = header_then(SendProxy::V2, &balanced, &[]);
        assert_eq!(
            tlvs(&parse_v2(&bytes).0),
            [(TLV_RULE, "balancer".to_string())],
            "no key kind without a key"
        );
    }

    #[test]
    fn off_sends_the_payload_itself_without_copying_it() {
        let hello = [0x16, 0x03, 0x01];
        let o = origin("192.0.2.7:1", "198.51.100.1:443", Rule::Balancer);
        let sent = header_then(SendProxy::Off, &o, &hello);
        assert!(matches!(sent, Cow::Borrowed(b) if std::ptr::eq(b, &hello[..])));
        assert!(local(SendProxy::Off).is_empty());
    }

    #[test]
    fn probe_headers_name_no_client_and_parse_as_such() {
        match HeaderResult::parse(local(SendProxy::V2)) {
            HeaderResult::V2(Ok(h)) => {
                assert_eq!(h.command, v2::Command::Local);
                assert_eq!(h.addresses, v2::Addresses::Unspecified);
                assert_eq!(h.len(), 16);
            }
            other => panic!("{other:?}"),
        }
        match HeaderResult::parse(local(SendProxy::V1)) {
            HeaderResult::V1(Ok(h)) => assert_eq!(h.addresses, v1::Addresses::Unknown),
            other => panic!("{other:?}"),
        }
    }
}
