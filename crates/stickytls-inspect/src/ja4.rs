//! The JA4 TLS client fingerprint (FoxIO, technical_details/JA4.md) and
//! its resumption-stable variant. Computed only when asked; this is the
//! one place in the inspector that allocates for a ClientHello.
#![deny(clippy::indexing_slicing)]

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::client_hello::{ClientHello, is_grease};
use super::ext;

/// `t13d1516h2_8daaf6152771_e5627efa2ab1`. With `stable`, padding,
/// session_ticket, pre_shared_key and early_data are left out as well as
/// GREASE, so a client's full and resumed hellos fingerprint the same
/// (session_ticket because rustls drops it when it resumes a TLS 1.3
/// session, seen in `ja4_stable_ignores_what_a_tls13_resumption_drops`).
pub(crate) fn ja4(ch: &ClientHello<'_>, stable: bool) -> String {
    let skip_ext = |t: u16| {
        is_grease(t)
            || (stable
                && matches!(
                    t,
                    ext::PADDING | ext::SESSION_TICKET | ext::PRE_SHARED_KEY | ext::EARLY_DATA
                ))
    };
    let version = if ch.has_supported_versions() {
        ch.supported_versions()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(0)
    } else {
        ch.legacy_version
    };
    let version = match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    };
    let sni = if ch.extension_types().any(|t| t == ext::SERVER_NAME) {
        'd'
    } else {
        'i'
    };
    let mut ciphers: Vec<u16> = ch.cipher_suites().filter(|c| !is_grease(*c)).collect();
    let mut exts: Vec<u16> = ch.extension_types().filter(|t| !skip_ext(*t)).collect();
    let n_ciphers = ciphers.len().min(99);
    let n_exts = exts.len().min(99);

    let mut out = String::with_capacity(36);
    let _ = write!(
        out,
        "t{version}{sni}{n_ciphers:02}{n_exts:02}{}_",
        alpn_chars(ch.alpn().next())
    );

    ciphers.sort_unstable();
    out.push_str(&hash12(&hex_list(&ciphers)));
    out.push('_');

    exts.retain(|t| *t != ext::SERVER_NAME && *t != ext::ALPN);
    exts.sort_unstable();
    if exts.is_empty() {
        out.push_str("000000000000");
    } else {
        let mut s = hex_list(&exts);
        let sigs: Vec<u16> = ch
            .signature_algorithms()
            .filter(|s| !is_grease(*s))
            .collect();
        if !sigs.is_empty() {
            s.push('_');
            s.push_str(&hex_list(&sigs));
        }
        out.push_str(&hash12(&s));
    }
    out
}

/// The first and last characters of the first ALPN value, or of its hex
/// form when either end is not alphanumeric; "00" when there is none.
fn alpn_chars(first: Option<&[u8]>) -> String {
    let Some(v) = first else { return "00".into() };
    let (Some(&a), Some(&b)) = (v.first(), v.last()) else {
        return "00".into();
    };
    if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() {
        [a as char, b as char].iter().collect()
    } else {
        let hex = |x: u8| char::from_digit(u32::from(x), 16).unwrap_or('0');
        [hex(a >> 4), hex(b & 0xf)].iter().collect()
    }
}

fn hex_list(v: &[u16]) -> String {
    let mut s = String::with_capacity(v.len() * 5);
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x:04x}");
    }
    s
}

/// First 12 lower-case hex digits of SHA-256, or twelve zeros for nothing.
fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".into();
    }
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(12);
    for b in digest.iter().take(6) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_chars_follow_the_spec_examples() {
        assert_eq!(alpn_chars(Some(b"h2")), "h2");
        assert_eq!(alpn_chars(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_chars(Some(b"x")), "xx");
        assert_eq!(alpn_chars(Some(&[0xab])), "ab");
        assert_eq!(alpn_chars(Some(&[0xab, 0xcd])), "ad");
        assert_eq!(alpn_chars(Some(&[0x30, 0xab])), "3b");
        assert_eq!(alpn_chars(Some(&[0x30, 0x31, 0xab, 0xcd])), "3d");
        assert_eq!(alpn_chars(Some(&[0x30, 0xab, 0xcd, 0x31])), "01");
        assert_eq!(alpn_chars(None), "00");
    }

    #[test]
    fn hashes_match_the_spec_examples() {
        assert_eq!(
            hash12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"),
            "8daaf6152771"
        );
        assert_eq!(
            hash12(
                "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
            ),
            "e5627efa2ab1"
        );
        assert_eq!(
            hash12("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01"),
            "6d807ffa2a79"
        );
    }
}
