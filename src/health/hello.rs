//! The ClientHello the TLS health check sends, built byte by byte: the
//! router without its `demo` feature links no TLS library, and a check
//! needs no more than a hello any server will answer. It offers TLS 1.3
//! and 1.2, the suites and groups every current server has, and key
//! shares for X25519 and P-256 so that a TLS 1.3 server answers with its
//! ServerHello at once rather than a HelloRetryRequest.
//!
//! The key shares are the groups' base points. They are valid public
//! values (the server's shared secret is then its own public key), and the
//! check never gets as far as using a secret: it stops at the ServerHello.

use std::hash::{BuildHasher, RandomState};

// The extension code points, named once for the inspector and for us.
use crate::inspect::ext;

/// TLS 1.2 as `legacy_version`, and in `supported_versions`.
const TLS12: u16 = 0x0303;
const TLS13: u16 = 0x0304;

/// TLS 1.3 suites (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305), then the
/// TLS 1.2 ECDHE suites (ECDSA and RSA, GCM and ChaCha20, then CBC), then
/// plain RSA for old servers.
const CIPHER_SUITES: [u16; 17] = [
    0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc009, 0xc013, 0xc00a,
    0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
];

/// x25519, secp256r1, secp384r1.
const GROUPS: [u16; 3] = [0x001d, 0x0017, 0x0018];
const X25519: u16 = 0x001d;
const SECP256R1: u16 = 0x0017;

/// ECDSA, RSA-PSS and PKCS#1 with SHA-256/384/512, Ed25519, then SHA-1
/// for TLS 1.2 servers that only have it.
const SIGNATURE_ALGORITHMS: [u16; 11] = [
    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807, 0x0201, 0x0203,
];

/// The X25519 base point, u = 9 (RFC 7748 4.1), little-endian.
const X25519_BASE: [u8; 32] = {
    let mut u = [0u8; 32];
    u[0] = 9;
    u
};

/// The P-256 generator, uncompressed (SEC 1 2.3.3; SEC 2 2.4.2).
const P256_GENERATOR: [u8; 65] = [
    0x04, // uncompressed
    0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2,
    0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
    0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16,
    0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
];

/// A fresh `random` and `legacy_session_id`: per-process keyed hashes of a
/// counter, unpredictable enough for a probe that never derives a key.
pub(crate) fn fresh_random() -> ([u8; 32], [u8; 32]) {
    let state = RandomState::new();
    let mut out = [0u8; 64];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&state.hash_one(i).to_le_bytes());
    }
    let mut random = [0u8; 32];
    let mut session_id = [0u8; 32];
    random.copy_from_slice(&out[..32]);
    session_id.copy_from_slice(&out[32..]);
    (random, session_id)
}

/// One TLS record holding one ClientHello handshake message.
///
/// ```text
/// struct {
///     ProtocolVersion legacy_version = 0x0303;    /* TLS v1.2 */
///     Random random;
///     opaque legacy_session_id<0..32>;
///     CipherSuite cipher_suites<2..2^16-2>;
///     opaque legacy_compression_methods<1..2^8-1>;
///     Extension extensions<8..2^16-1>;
/// } ClientHello;
/// ```
///
/// `sni` must be a host name (validation checks `health.sni`); it is sent
/// as one `host_name` entry.
pub(crate) fn client_hello(sni: Option<&str>, random: &[u8; 32], session_id: &[u8; 32]) -> Vec<u8> {
    let mut body = Vec::with_capacity(512);
    put_u16(&mut body, TLS12);
    body.extend_from_slice(random);
    prefixed(&mut body, 1, |b| b.extend_from_slice(session_id));
    prefixed(&mut body, 2, |b| {
        CIPHER_SUITES.iter().for_each(|s| put_u16(b, *s))
    });
    // legacy_compression_methods: null only.
    prefixed(&mut body, 1, |b| b.push(0));
    prefixed(&mut body, 2, |b| extensions(b, sni));

    // struct { HandshakeType msg_type; uint24 length; ClientHello body; }
    let mut message = Vec::with_capacity(body.len() + 4);
    message.push(1);
    prefixed(&mut message, 3, |m| m.extend_from_slice(&body));

    // struct { ContentType type = handshake(22); ProtocolVersion
    // legacy_record_version = 0x0301; uint16 length; opaque fragment; }
    let mut record = Vec::with_capacity(message.len() + 5);
    record.push(22);
    put_u16(&mut record, 0x0301);
    prefixed(&mut record, 2, |r| r.extend_from_slice(&message));
    record
}

fn extensions(b: &mut Vec<u8>, sni: Option<&str>) {
    if let Some(name) = sni {
        // struct { NameType name_type = host_name(0); HostName host_name<1..2^16-1>; }
        // ServerNameList: ServerName server_name_list<1..2^16-1>;
        extension(b, ext::SERVER_NAME, |e| {
            prefixed(e, 2, |list| {
                list.push(0);
                prefixed(list, 2, |h| h.extend_from_slice(name.as_bytes()));
            })
        });
    }
    // NamedGroup named_group_list<2..2^16-1>;
    extension(b, ext::SUPPORTED_GROUPS, |e| {
        prefixed(e, 2, |g| GROUPS.iter().for_each(|x| put_u16(g, *x)))
    });
    // ECPointFormat ec_point_format_list<1..2^8-1>: uncompressed(0).
    extension(b, ext::EC_POINT_FORMATS, |e| prefixed(e, 1, |f| f.push(0)));
    // SignatureScheme supported_signature_algorithms<2..2^16-2>;
    extension(b, ext::SIGNATURE_ALGORITHMS, |e| {
        prefixed(e, 2, |s| {
            SIGNATURE_ALGORITHMS.iter().for_each(|x| put_u16(s, *x))
        })
    });
    // Empty: the server may answer with it (RFC 7627).
    extension(b, ext::EXTENDED_MASTER_SECRET, |_| {});
    // opaque renegotiated_connection<0..255>, empty on a first handshake.
    extension(b, ext::RENEGOTIATION_INFO, |e| prefixed(e, 1, |_| {}));
    // ProtocolVersion versions<2..254>;
    extension(b, ext::SUPPORTED_VERSIONS, |e| {
        prefixed(e, 1, |v| {
            put_u16(v, TLS13);
            put_u16(v, TLS12);
        })
    });
    // KeyShareEntry client_shares<0..2^16-1>;
    // struct { NamedGroup group; opaque key_exchange<1..2^16-1>; } KeyShareEntry;
    extension(b, ext::KEY_SHARE, |e| {
        prefixed(e, 2, |shares| {
            for (group, key) in [(X25519, &X25519_BASE[..]), (SECP256R1, &P256_GENERATOR[..])] {
                put_u16(shares, group);
                prefixed(shares, 2, |k| k.extend_from_slice(key));
            }
        })
    });
}

/// struct { ExtensionType extension_type; opaque extension_data<0..2^16-1>; } Extension;
fn extension(b: &mut Vec<u8>, typ: u16, data: impl FnOnce(&mut Vec<u8>)) {
    put_u16(b, typ);
    prefixed(b, 2, data);
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}

/// Writes what `fill` writes behind a big-endian length of `width` bytes.
/// Every field here is far below its maximum (a hello of a few hundred
/// bytes, a host name of at most 253), which the debug assertion checks.
fn prefixed(b: &mut Vec<u8>, width: usize, fill: impl FnOnce(&mut Vec<u8>)) {
    let at = b.len();
    b.resize(at + width, 0);
    fill(b);
    let len = b.len() - at - width;
    debug_assert!(len < 1 << (8 * width), "length field overflow");
    let bytes = (len as u32).to_be_bytes();
    b[at..at + width].copy_from_slice(&bytes[4 - width..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{Handshake, Limits, Status};

    fn read(bytes: &[u8]) -> Handshake {
        let mut hs = Handshake::new(Limits::default());
        assert_eq!(hs.feed_client(bytes), Status::Done);
        hs
    }

    #[test]
    fn the_inspector_reads_the_hello_with_its_server_name_and_both_versions() {
        let (random, sid) = fresh_random();
        let bytes = client_hello(Some("check.example.com"), &random, &sid);
        let hs = read(&bytes);
        let ch = hs.client_hello().unwrap();
        assert_eq!(ch.sni, Some(&b"check.example.com"[..]));
        assert!(ch.offers_tls13());
        assert_eq!(ch.session_id, sid);
        assert_eq!(
            ch.cipher_suites().collect::<Vec<_>>(),
            CIPHER_SUITES.to_vec()
        );
        assert!(!ch.has_psk);
    }

    #[test]
    fn without_a_name_no_server_name_is_sent() {
        let (random, sid) = fresh_random();
        let hs = read(&client_hello(None, &random, &sid));
        let ch = hs.client_hello().unwrap();
        assert_eq!(ch.sni, None);
        assert!(!ch.extension_types().any(|t| t == ext::SERVER_NAME));
    }

    #[test]
    fn tls_parser_agrees_on_every_field() {
        use tls_parser::{TlsMessage, TlsMessageHandshake, parse_tls_plaintext};
        let (random, sid) = fresh_random();
        let bytes = client_hello(Some("a.example"), &random, &sid);
        let (rest, record) = parse_tls_plaintext(&bytes).unwrap();
        assert!(rest.is_empty(), "one record, nothing after it");
        let [TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))] = &record.msg[..] else {
            panic!("not one ClientHello: {:?}", record.msg);
        };
        assert_eq!(ch.random, &random[..]);
        assert_eq!(ch.session_id, Some(&sid[..]));
        assert_eq!(ch.ciphers.len(), CIPHER_SUITES.len());
        let (rest, exts) = tls_parser::parse_tls_client_hello_extensions(ch.ext.unwrap()).unwrap();
        assert!(rest.is_empty());
        assert_eq!(exts.len(), 8, "{exts:?}");
    }

    #[test]
    fn two_hellos_differ_in_random_and_session_id() {
        let (r1, s1) = fresh_random();
        let (r2, s2) = fresh_random();
        assert_ne!(r1, r2);
        assert_ne!(s1, s2);
    }
}
