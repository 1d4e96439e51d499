//! tls-parser as a differential oracle: the same handshake message goes to
//! both parsers, and every field both of them read must agree.
//!
//! Input: byte 0 is the handshake type (1 ClientHello, 2 ServerHello, 4
//! NewSessionTicket; anything else is ignored), the rest is the message
//! body. [`cleartext_messages`](super::cleartext_messages) cuts real
//! captures into such inputs.
//!
//! The two parsers are not equally strict. Ours checks every length
//! inside the extensions it reads, duplicates, `pre_shared_key` placement
//! and more; tls-parser accepts much of that, and parses the contents of
//! many extensions we skip. So [`verdict`] sorts every input into one of:
//!
//! - both accept and agree, or there is nothing both read;
//! - ours rejects what tls-parser accepts: ours is stricter, and the
//!   reason is our error message (tls-parser is the one that is wrong:
//!   every such reason is a rule of RFC 8446 or RFC 5077 it does not
//!   check; `fuzz/README.md` lists them with an input each);
//! - a known tls-parser fault on input ours accepts (listed below);
//! - a disagreement: ours accepts and tls-parser differs on a field both
//!   read, for no known reason. [`differential`] panics on it.
#![deny(clippy::indexing_slicing)]

use tls_parser::{
    TlsExtension, TlsExtensionType, TlsMessageHandshake, parse_tls_client_hello_extensions,
    parse_tls_handshake_client_hello, parse_tls_handshake_msg_newsessionticket,
    parse_tls_handshake_server_hello, parse_tls_server_hello_extensions,
};

use crate::ClientHello;
use crate::ext;
use crate::server::{parse_new_session_ticket, parse_server_hello};

/// What comparing the two parsers on one input showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Both accept and agree on every field both read, or neither accepts.
    Agree,
    /// Not a message type compared here.
    NotCompared,
    /// tls-parser accepts a message ours rejects, for this reason.
    OursStricter(&'static str),
    /// Ours accepts; tls-parser rejects or misreads it in a known way.
    TlsParserFault(&'static str),
    /// Ours accepts and tls-parser differs on a field both read.
    Disagree(String),
}

/// The fuzz entry point: panics on a [`Verdict::Disagree`].
pub fn differential(data: &[u8]) {
    if let Verdict::Disagree(why) = verdict(data) {
        panic!("ours and tls-parser disagree: {why}");
    }
}

/// Compares the two parsers on one input (see the module docs).
pub fn verdict(data: &[u8]) -> Verdict {
    let Some((&typ, body)) = data.split_first() else {
        return Verdict::NotCompared;
    };
    match typ {
        1 => client_hello(body),
        2 => server_hello(body),
        4 => new_session_ticket(body),
        _ => Verdict::NotCompared,
    }
}

/// Extension types whose contents ours reads in a ClientHello: if
/// tls-parser fails on one of these where ours accepts, they disagree.
const CLIENT_READ: [u16; 8] = [
    ext::SERVER_NAME,
    ext::SIGNATURE_ALGORITHMS,
    ext::ALPN,
    ext::SESSION_TICKET,
    ext::PRE_SHARED_KEY,
    ext::EARLY_DATA,
    ext::SUPPORTED_VERSIONS,
    ext::KEY_SHARE,
];

/// The code point of a tls-parser extension, as sent.
fn ext_type(e: &TlsExtension<'_>) -> u16 {
    match e {
        TlsExtension::Grease(t, _) => *t,
        other => TlsExtensionType::from(other).0,
    }
}

/// The type of the extension at the start of `rest`, where tls-parser's
/// extension list stopped.
fn stopped_at(rest: &[u8]) -> Option<u16> {
    match rest {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

fn client_hello(body: &[u8]) -> Verdict {
    let theirs = parse_tls_handshake_client_hello(body);
    let ours = match ClientHello::parse(body) {
        Ok(ch) => ch,
        Err(e) => {
            // Theirs "accepts" only a hello it reads to the end, with
            // every extension parsed.
            let accepted = matches!(&theirs, Ok((rest, ch)) if rest.is_empty()
            && ch.ext.is_none_or(|x| {
                parse_tls_client_hello_extensions(x).is_ok_and(|(r, _)| r.is_empty())
            }));
            return if accepted {
                Verdict::OursStricter(e.what)
            } else {
                Verdict::Agree
            };
        }
    };
    let theirs = match theirs {
        Ok(([], ch)) => ch,
        other => return Verdict::Disagree(format!("ours accepts, tls-parser: {other:?}")),
    };
    if theirs.version.0 != ours.legacy_version {
        return Verdict::Disagree(format!("legacy_version {:?}", theirs.version));
    }
    if theirs.session_id.unwrap_or_default() != ours.session_id {
        return Verdict::Disagree("session_id".into());
    }
    if !theirs.ciphers.iter().map(|c| c.0).eq(ours.cipher_suites()) {
        return Verdict::Disagree("cipher_suites".into());
    }
    let Some(raw) = theirs.ext else {
        return if ours.extensions().next().is_none() {
            Verdict::Agree
        } else {
            Verdict::Disagree("tls-parser sees no extensions".into())
        };
    };
    let Ok((rest, exts)) = parse_tls_client_hello_extensions(raw) else {
        return Verdict::Disagree("tls-parser's extension list fails".into());
    };
    let mut ours_exts = ours.extensions();
    for theirs_ext in &exts {
        let Some((t, data)) = ours_exts.next() else {
            return Verdict::Disagree("tls-parser sees more extensions".into());
        };
        if ext_type(theirs_ext) != t {
            return Verdict::Disagree(format!("extension type {t:#06x}"));
        }
        if let Some(field) = client_extension_differs(&ours, theirs_ext, data) {
            return Verdict::Disagree(format!("{field} (extension {t:#06x})"));
        }
    }
    match stopped_at(rest) {
        // tls-parser read the whole list: so did ours, extension by
        // extension, so the counts must match too.
        None if rest.is_empty() => {
            if ours_exts.next().is_some() {
                Verdict::Disagree("tls-parser sees fewer extensions".into())
            } else {
                Verdict::Agree
            }
        }
        Some(t) if !CLIENT_READ.contains(&t) => Verdict::Agree,
        _ => Verdict::Disagree(format!(
            "tls-parser stops at an extension ours reads: {:02x?}",
            rest.get(..4)
        )),
    }
}

/// The field on which one extension, as both parsers read it, differs.
fn client_extension_differs(
    ours: &ClientHello<'_>,
    theirs: &TlsExtension<'_>,
    data: &[u8],
) -> Option<&'static str> {
    let same = match theirs {
        TlsExtension::SNI(names) => {
            names.len() == 1 && names.first().map(|(t, n)| (t.0, Some(*n))) == Some((0, ours.sni))
        }
        TlsExtension::ALPN(names) => names.iter().copied().eq(ours.alpn()),
        TlsExtension::SessionTicket(t) => ours.session_ticket == Some(*t),
        TlsExtension::PreSharedKey(raw) => *raw == data && ours.has_psk,
        TlsExtension::SupportedVersions(v) => v.iter().map(|v| v.0).eq(ours.supported_versions()),
        TlsExtension::KeyShare(raw) => *raw == data,
        TlsExtension::SignatureAlgorithms(s) => s.iter().copied().eq(ours.signature_algorithms()),
        TlsExtension::EarlyData(age) => age.is_none() && ours.early_data,
        TlsExtension::Grease(_, raw) | TlsExtension::Unknown(_, raw) => *raw == data,
        _ => true,
    };
    (!same).then_some(match theirs {
        TlsExtension::SNI(_) => "sni",
        TlsExtension::ALPN(_) => "alpn",
        TlsExtension::SessionTicket(_) => "session_ticket",
        TlsExtension::PreSharedKey(_) => "pre_shared_key bytes",
        TlsExtension::SupportedVersions(_) => "supported_versions",
        TlsExtension::KeyShare(_) => "key_share bytes",
        TlsExtension::SignatureAlgorithms(_) => "signature_algorithms",
        TlsExtension::EarlyData(_) => "early_data",
        _ => "extension data",
    })
}

fn server_hello(body: &[u8]) -> Verdict {
    let theirs = parse_tls_handshake_server_hello(body);
    let ours = match parse_server_hello(body) {
        Ok(sh) => sh,
        Err(e) => {
            let accepted = matches!(&theirs, Ok((rest, sh)) if rest.is_empty()
            && sh.ext.is_none_or(|x| {
                parse_tls_server_hello_extensions(x).is_ok_and(|(r, _)| r.is_empty())
            }));
            return if accepted {
                Verdict::OursStricter(e.what)
            } else {
                Verdict::Agree
            };
        }
    };
    let legacy = body
        .first_chunk::<2>()
        .map_or(0, |v| u16::from_be_bytes(*v));
    let theirs = match theirs {
        Ok(([], sh)) => sh,
        // tls-parser reads an SSL 3.0 ServerHello as having no extensions,
        // so extensions after it are trailing bytes to it.
        _ if legacy == 0x0300 => {
            return Verdict::TlsParserFault("SSL 3.0 ServerHello extensions not read");
        }
        other => return Verdict::Disagree(format!("ours accepts, tls-parser: {other:?}")),
    };
    if theirs.session_id.unwrap_or_default() != ours.session_id.as_slice() {
        return Verdict::Disagree("ServerHello session_id".into());
    }
    if theirs.cipher.0 != ours.cipher_suite {
        return Verdict::Disagree("ServerHello cipher_suite".into());
    }
    let mut version = theirs.version.0;
    let mut psk = None;
    if let Some(raw) = theirs.ext {
        let Ok((rest, exts)) = parse_tls_server_hello_extensions(raw) else {
            return Verdict::Disagree("tls-parser's ServerHello extension list fails".into());
        };
        for e in &exts {
            match e {
                TlsExtension::SupportedVersions(v) => match v.as_slice() {
                    [v] => version = v.0,
                    _ => return Verdict::Disagree("ServerHello supported_versions".into()),
                },
                TlsExtension::PreSharedKey(raw) => {
                    psk = raw.first_chunk::<2>().map(|v| u16::from_be_bytes(*v));
                }
                _ => {}
            }
        }
        match stopped_at(rest) {
            Some(ext::SUPPORTED_VERSIONS | ext::PRE_SHARED_KEY) => {
                return Verdict::Disagree(format!(
                    "tls-parser stops at a ServerHello extension ours reads: {:02x?}",
                    rest.get(..4)
                ));
            }
            // Stopped at one ours skips: tls-parser never saw the fields
            // after it, so there is nothing more both read.
            Some(_) => return Verdict::Agree,
            None => {}
        }
    }
    if version != ours.version {
        return Verdict::Disagree(format!("ServerHello version {version:#06x}"));
    }
    if psk != ours.psk_selected {
        return Verdict::Disagree("ServerHello selected_identity".into());
    }
    Verdict::Agree
}

fn new_session_ticket(body: &[u8]) -> Verdict {
    let theirs = parse_tls_handshake_msg_newsessionticket(body, body.len());
    let ours = match parse_new_session_ticket(body) {
        Ok(t) => t,
        Err(e) => {
            return if matches!(&theirs, Ok((rest, _)) if rest.is_empty()) {
                Verdict::OursStricter(e.what)
            } else {
                Verdict::Agree
            };
        }
    };
    let theirs = match theirs {
        Ok(([], TlsMessageHandshake::NewSessionTicket(t))) => t,
        other => return Verdict::Disagree(format!("ours accepts, tls-parser: {other:?}")),
    };
    let (lifetime, ticket) = match &ours {
        Some(t) => (Some(t.lifetime_hint), t.ticket.as_slice()),
        None => (None, &[][..]),
    };
    // tls-parser keeps the ticket's two-byte length prefix in `ticket`
    // (a known quirk of its API, not a misreading): strip it to compare.
    let Some((prefix, theirs_ticket)) = theirs.ticket.split_first_chunk::<2>() else {
        return Verdict::Disagree("tls-parser's ticket lost its length".into());
    };
    if usize::from(u16::from_be_bytes(*prefix)) != theirs_ticket.len() || theirs_ticket != ticket {
        return Verdict::Disagree("NewSessionTicket ticket".into());
    }
    if lifetime.is_some_and(|l| l != theirs.ticket_lifetime_hint) {
        return Verdict::Disagree("NewSessionTicket lifetime hint".into());
    }
    Verdict::Agree
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;
    use crate::fuzzing::cleartext_messages;
    use crate::testutil::*;

    #[test]
    fn every_message_of_the_crates_captures_agrees_with_tls_parser() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut seen = [0usize; 5];
        for entry in std::fs::read_dir(dir).unwrap() {
            let stream = std::fs::read(entry.unwrap().path()).unwrap();
            for msg in cleartext_messages(&stream) {
                assert_eq!(verdict(&msg), Verdict::Agree, "{:02x?}", &msg[..8]);
                seen[usize::from(msg[0])] += 1;
            }
        }
        // Five client streams, two server streams (a TLS 1.3 ServerHello;
        // a TLS 1.2 ServerHello and its NewSessionTicket).
        assert_eq!(seen, [0, 5, 2, 0, 1]);
    }

    #[test]
    fn built_messages_agree_with_tls_parser() {
        let sid = [0x5a; 32];
        let hellos = [
            ChBuilder::tls13("d.example")
                .ticket(&[1, 2, 3])
                .early_data()
                .psk(&[&[4; 20], &[5; 9]]),
            ChBuilder::new().session_id(&sid),
            ChBuilder::tls13("e.example").ech(),
        ];
        for h in hellos {
            assert_eq!(verdict(&[&[1], &h.body()[..]].concat()), Verdict::Agree);
        }
        for sh in [
            ShBuilder::tls12(&sid),
            ShBuilder::tls13(&sid).psk(1),
            ShBuilder::hrr(&sid, 0x17),
        ] {
            let msg = sh.message();
            assert_eq!(verdict(&[&[2], &msg[4..]].concat()), Verdict::Agree);
        }
        for ticket in [&[7u8; 40][..], &[]] {
            let msg = nst(300, ticket);
            assert_eq!(verdict(&[&[4], &msg[4..]].concat()), Verdict::Agree);
        }
    }

    #[test]
    fn what_only_ours_checks_is_ours_being_stricter() {
        let dup = ChBuilder::tls13("d.example")
            .ext(0xff01, &[0])
            .ext(0xff01, &[0]);
        assert_eq!(
            verdict(&[&[1], &dup.body()[..]].concat()),
            Verdict::OursStricter("duplicate extension in ClientHello")
        );
        // A ticket whose length says 5 but carries 3 bytes: tls-parser
        // keeps all of it, prefix included.
        let short = [&[4u8][..], &[0, 0, 1, 44], &[0, 5, 1, 2, 3]].concat();
        assert_eq!(
            verdict(&short),
            Verdict::OursStricter("NewSessionTicket truncated in ticket")
        );
    }

    #[test]
    fn cleartext_messages_joins_records_and_skips_encrypted_runs() {
        let msg = ChBuilder::tls13("r.example").message();
        let stream = [records(22, &msg, 50), ccs(), handshake_record(&[0x99; 40])].concat();
        let found = cleartext_messages(&stream);
        assert_eq!(found, vec![[&[1u8][..], &msg[4..]].concat()]);
    }
}
