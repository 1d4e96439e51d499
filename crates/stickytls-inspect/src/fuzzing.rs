//! Entry points for the fuzz targets (`fuzz/fuzz_targets/*` call these),
//! and the chunking harness the tests share. Each entry point runs the
//! inspector over the data in several chunkings derived from the data
//! itself and asserts that the answers agree, not merely that nothing
//! panicked.
//!
//! Input framing for [`server_stream`] and [`whole`] (see [`frame`]): byte
//! 0 picks the limits (0: [`Limits::default`], 1..=3: small caps so the
//! fuzzer reaches them), bytes 1..3 are the client stream's length (big
//! endian), then the client stream, then the server stream.
#![deny(clippy::indexing_slicing)]

use nom::number::complete::{be_u8, be_u16, be_u24};

use super::wire::{PResult, ctx, vec16};
use super::{ClientHello, Handshake, Limits, Status, ext, is_grease, report};

#[cfg(any(test, feature = "differential"))]
pub mod differential;

/// Every field and list a ClientHello offers, for comparing two views of
/// one hello (a kept hello read back from its spans against a fresh
/// parse, or the same hello fed in two chunkings).
pub(crate) fn hello_fields(c: &ClientHello<'_>) -> String {
    format!(
        "v={:04x} sid={:?} sni={:?} t={:?} psk={:?} ed={} ech={} alpn={:?} sv={:?} ks={:?} \
         cs={:?} ext={:?} sig={:?} len={}",
        c.legacy_version,
        c.session_id,
        c.sni,
        c.session_ticket,
        c.psk_identities().collect::<Vec<_>>(),
        c.early_data,
        c.ech,
        c.alpn().collect::<Vec<_>>(),
        c.supported_versions().collect::<Vec<_>>(),
        c.key_share_groups().collect::<Vec<_>>(),
        c.cipher_suites().collect::<Vec<_>>(),
        c.extension_types().collect::<Vec<_>>(),
        c.signature_algorithms().collect::<Vec<_>>(),
        c.body.len(),
    )
}

/// Everything observable about a handshake, for comparing runs.
pub(crate) fn summary(h: &Handshake, client: &Status, server: Option<&Status>) -> String {
    let ch = |c: Option<ClientHello<'_>>| c.map(|c| hello_fields(&c));
    format!(
        "client={client:?} server={server:?} ch1={:?} r1={:?} ch2={:?} r2={:?} outcome={:?} \
         hrr={} wc={} ws={}",
        ch(h.client_hello()),
        h.client_hello_records(),
        ch(h.second_client_hello()),
        h.second_client_hello_records(),
        h.outcome(),
        h.hello_retry_request(),
        h.wants_client(),
        h.wants_server(),
    )
}

/// Runs a whole client stream through `feed_client` in the given chunks
/// and describes everything observable afterwards.
pub fn run_client(limits: Limits, chunks: &[&[u8]]) -> String {
    let mut h = Handshake::new(limits);
    let mut st = Status::NeedMore;
    for c in chunks {
        st = h.feed_client(c);
    }
    summary(&h, &st, None)
}

/// Feeds the whole client stream, then the server stream in the given
/// chunks, and describes everything observable afterwards.
pub fn run_server(limits: Limits, client: &[u8], chunks: &[&[u8]]) -> String {
    let mut h = Handshake::new(limits);
    let cst = h.feed_client(client);
    let mut st = Status::NeedMore;
    for c in chunks {
        st = h.feed_server(c);
    }
    let cst = if cst == Status::Done {
        h.client_status()
    } else {
        cst
    };
    summary(&h, &cst, Some(&st))
}

/// Every chunking of `input` given to `run` must give the same answer:
/// the whole, every fixed chunk size from 1 byte to the whole, and every
/// two-piece split. Panics naming the first chunking that disagrees;
/// returns the answer. Quadratic in `input.len()`: meant for handshakes
/// of a few KiB.
pub fn feed_all_chunkings<T: PartialEq + std::fmt::Debug>(
    input: &[u8],
    run: impl Fn(&[&[u8]]) -> T,
) -> T {
    let whole = run(&[input]);
    let n = input.len();
    for size in 1..=n.max(1) {
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        assert_eq!(run(&chunks), whole, "chunk size {size}");
    }
    for at in 0..=n {
        let (a, b) = input.split_at(at);
        assert_eq!(run(&[a, b]), whole, "split at {at}");
    }
    whole
}

/// The limits byte 0 of a framed input selects: 0 is the default, the
/// rest are small caps so short inputs reach them.
fn fuzz_limits(seed: u8) -> Limits {
    match seed % 4 {
        0 => Limits::default(),
        k => Limits {
            max_client_bytes: 64 << (2 * k),
            max_server_message: 16 << (2 * k),
        },
    }
}

/// Feeds `data` in pieces of `size` (0 = whole) to `feed`, checking that a
/// terminal answer, once given, is given again.
fn feed_sized(data: &[u8], size: usize, mut feed: impl FnMut(&[u8]) -> Status) -> Status {
    let mut last = feed(&[]);
    let chunks: Box<dyn Iterator<Item = &[u8]>> = if size == 0 {
        Box::new(std::iter::once(data))
    } else {
        Box::new(data.chunks(size))
    };
    for c in chunks {
        let st = feed(c);
        if last.is_terminal() {
            assert_eq!(st, last, "a terminal answer changed");
        }
        last = st;
    }
    last
}

/// The chunk sizes tried for `data`: whole, 1 byte, and two derived sizes.
fn sizes(data: &[u8]) -> [usize; 4] {
    let a = data.first().map_or(7, |b| usize::from(*b) % 61 + 2);
    let b = data.last().map_or(300, |b| usize::from(*b) * 17 + 64);
    [0, 1, a, b]
}

/// Frames a client and a server stream as [`server_stream`] and [`whole`]
/// read them: `seed` picks the limits (0: the defaults). A client stream
/// longer than 65535 bytes is cut there.
pub fn frame(seed: u8, client: &[u8], server: &[u8]) -> Vec<u8> {
    let client = client.get(..usize::from(u16::MAX)).unwrap_or(client);
    let mut v = Vec::with_capacity(3 + client.len() + server.len());
    v.push(seed);
    v.extend_from_slice(&(client.len() as u16).to_be_bytes());
    v.extend_from_slice(client);
    v.extend_from_slice(server);
    v
}

/// Splits framed input into (seed, client stream, server stream); the
/// inverse of [`frame`].
fn split(data: &[u8]) -> (u8, &[u8], &[u8]) {
    let seed = data.first().copied().unwrap_or(0);
    let n = match (data.get(1), data.get(2)) {
        (Some(a), Some(b)) => usize::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    };
    let rest = data.get(3..).unwrap_or_default();
    let (c, s) = rest.split_at(n.min(rest.len()));
    (seed, c, s)
}

/// ClientHello::parse on raw bytes: never panics; when it accepts, the
/// accessors agree with each other and with the extension list, the JA4
/// has its fixed shape and counts what the accessors show, and one byte
/// less is rejected (every length in a hello is exact).
pub fn client_hello(data: &[u8]) {
    let Ok(ch) = ClientHello::parse(data) else {
        return;
    };
    let types: Vec<u16> = ch.extension_types().collect();
    let has = |t: u16| types.contains(&t);
    let mut distinct = types.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), types.len(), "duplicate extension accepted");
    assert_eq!(
        ch.sni.is_some(),
        has(ext::SERVER_NAME),
        "sni vs extension list"
    );
    assert_eq!(
        ch.alpn().next().is_some(),
        has(ext::ALPN),
        "alpn vs extension list"
    );
    assert_eq!(
        ch.session_ticket.is_some(),
        has(ext::SESSION_TICKET),
        "ticket vs extension list"
    );
    assert_eq!(
        ch.early_data,
        has(ext::EARLY_DATA),
        "early_data vs extension list"
    );
    assert_eq!(
        ch.ech,
        has(ext::ENCRYPTED_CLIENT_HELLO),
        "ech vs extension list"
    );
    assert_eq!(
        ch.has_supported_versions(),
        has(ext::SUPPORTED_VERSIONS),
        "supported_versions vs extension list"
    );
    assert_eq!(
        ch.has_supported_versions(),
        ch.supported_versions().next().is_some(),
        "supported_versions present but empty"
    );
    assert_eq!(
        ch.has_psk,
        has(ext::PRE_SHARED_KEY),
        "pre_shared_key vs extension list"
    );
    assert!(
        !ch.offers_psk_dhe_ke() || (has(ext::KEY_SHARE) && has(ext::PSK_KEY_EXCHANGE_MODES)),
        "psk_dhe_ke without its extensions"
    );
    if ch.has_psk {
        assert_eq!(
            types.last(),
            Some(&ext::PRE_SHARED_KEY),
            "pre_shared_key not last"
        );
    }
    assert_eq!(ch.psk_identity_count(), ch.psk_identities().count());
    assert_eq!(
        ch.has_psk,
        ch.psk_identity_count() > 0,
        "psk without identities"
    );
    assert!(
        ch.psk_identities().all(|id| !id.is_empty()),
        "empty identity"
    );
    assert!(ch.session_id.len() <= 32, "session_id over 32 bytes");
    assert!(ch.cipher_suites().next().is_some(), "no cipher suites");

    let (ja4, stable) = (ch.ja4(), ch.ja4_stable());
    for j in [&ja4, &stable] {
        assert_eq!(j.len(), 36, "{j}");
        assert!(j.starts_with('t'), "{j}");
    }
    assert_eq!(ja4.get(..4), stable.get(..4));
    let sni = if has(ext::SERVER_NAME) { "d" } else { "i" };
    assert_eq!(ja4.get(3..4), Some(sni), "{ja4}");
    let ciphers = ch.cipher_suites().filter(|c| !is_grease(*c)).count();
    let exts = types.iter().filter(|t| !is_grease(**t)).count();
    let counts = format!("{:02}{:02}", ciphers.min(99), exts.min(99));
    assert_eq!(ja4.get(4..8), Some(counts.as_str()), "{ja4}");

    if let Some(shorter) = data.get(..data.len().saturating_sub(1)) {
        if !data.is_empty() {
            assert!(
                ClientHello::parse(shorter).is_err(),
                "a truncated hello was accepted"
            );
        }
    }
}

/// A hello the handshake kept must read back exactly as a fresh parse of
/// its bytes, and keep the [`client_hello`] properties.
fn kept_hello(kept: Option<ClientHello<'_>>) {
    let Some(kept) = kept else { return };
    let fresh = ClientHello::parse(kept.body).expect("a kept hello parses again");
    assert_eq!(hello_fields(&kept), hello_fields(&fresh), "kept vs parsed");
    client_hello(kept.body);
}

/// The client direction alone, in several chunkings, with the default
/// limits and with small ones picked by the last byte: same answer each
/// time. A complete hello is also put through [`client_hello`].
pub fn client_stream(data: &[u8]) {
    let small = fuzz_limits(data.last().map_or(1, |b| b % 3 + 1));
    for limits in [Limits::default(), small] {
        let mut first: Option<String> = None;
        for size in sizes(data) {
            let mut h = Handshake::new(limits);
            let st = feed_sized(data, size, |c| h.feed_client(c));
            assert_eq!(st, h.client_status());
            let s = summary(&h, &st, None);
            match &first {
                None => {
                    kept_hello(h.client_hello());
                    kept_hello(h.second_client_hello());
                    first = Some(s);
                }
                Some(f) => assert_eq!(&s, f, "chunk size {size}"),
            }
        }
    }
}

/// The server direction after a given client stream, in several chunkings.
pub fn server_stream(data: &[u8]) {
    let (seed, client, server) = split(data);
    let limits = fuzz_limits(seed % 4);
    let mut first: Option<String> = None;
    for size in sizes(server) {
        let mut h = Handshake::new(limits);
        h.feed_client(client);
        let st = feed_sized(server, size, |c| h.feed_server(c));
        assert_eq!(st, h.server_status());
        let s = summary(&h, &h.client_status(), Some(&st));
        match &first {
            None => first = Some(s),
            Some(f) => assert_eq!(&s, f, "chunk size {size}"),
        }
    }
}

/// Both directions: the client stream then the server stream in matching
/// chunkings all agree, and the JSON report agrees with them: it is
/// complete exactly when every side is, and its first hello's status is
/// the one a router acts on (what `feed_client` answered before the
/// server's bytes), never `complete` for a hello the router refuses.
pub fn whole(data: &[u8]) {
    let (seed, client, server) = split(data);
    let limits = fuzz_limits(seed % 4);
    let mut seen: Option<(bool, Status, String)> = None;
    for size in sizes(data) {
        let mut h = Handshake::new(limits);
        // What a router routes on: the client side before the server's
        // bytes (a second hello read ahead only counts after a retry).
        let routed_on = feed_sized(client, size, |c| h.feed_client(c));
        let sst = feed_sized(server, size, |c| h.feed_server(c));
        let s = summary(&h, &h.client_status(), Some(&sst));
        let complete = routed_on == Status::Done
            && h.client_hello().is_some()
            && (!h.hello_retry_request()
                || (h.client_status() == Status::Done && h.second_client_hello().is_some()))
            && sst == Status::Done;
        match &seen {
            None => {
                kept_hello(h.client_hello());
                kept_hello(h.second_client_hello());
                seen = Some((complete, routed_on, s));
            }
            Some(f) => assert_eq!(&(complete, routed_on, s), f, "chunk size {size}"),
        }
    }
    let (v, complete) = report::report(client, Some(server), limits);
    if let Some((expected, routed_on, _)) = seen {
        assert_eq!(complete, expected, "report disagrees: {v}");
        let status = v.get("client").and_then(|c| c.get("status"));
        assert_eq!(
            status.and_then(|s| s.as_str()),
            Some(report::status_name(&routed_on)),
            "the report's client status is not what the router acts on: {v}"
        );
    }
}

/// The cleartext ClientHello, ServerHello and NewSessionTicket messages
/// of a captured stream, each as the differential target reads it (the
/// handshake type, then the body). Consecutive handshake records are one
/// run (any other record ends it) and their payloads are joined, so a
/// message split over records comes out whole; a run counts only if its
/// messages tile it exactly, which an encrypted TLS 1.2 Finished (also a
/// handshake record) does not.
pub fn cleartext_messages(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut run = Vec::new();
    let mut rest = stream;
    while let Ok((after, (ctype, payload))) = record(rest) {
        if ctype == 22 {
            run.extend_from_slice(payload);
        } else {
            messages_of(&run, &mut out);
            run.clear();
        }
        rest = after;
    }
    messages_of(&run, &mut out);
    out
}

/// `struct { ContentType type; ProtocolVersion legacy_record_version;
/// uint16 length; opaque fragment[TLSPlaintext.length]; } TLSPlaintext;`
fn record(i: &[u8]) -> PResult<'_, (u8, &[u8])> {
    let (i, ctype) = ctx("record truncated in its type", be_u8)(i)?;
    let (i, _version) = ctx("record truncated in its version", be_u16)(i)?;
    let (i, fragment) = vec16("record truncated")(i)?;
    Ok((i, (ctype, fragment)))
}

/// Appends the hellos and tickets of one run of handshake records to
/// `out`, or nothing when the run is not whole messages.
fn messages_of(run: &[u8], out: &mut Vec<Vec<u8>>) {
    let mut found = Vec::new();
    let mut i = run;
    while !i.is_empty() {
        let Ok((rest, (typ, body))) = handshake_message(i) else {
            return;
        };
        if matches!(typ, 1 | 2 | 4) {
            found.push([&[typ], body].concat());
        }
        i = rest;
    }
    out.extend(found);
}

/// `struct { HandshakeType msg_type; uint24 length; ... } Handshake;`
fn handshake_message(i: &[u8]) -> PResult<'_, (u8, &[u8])> {
    let (i, typ) = ctx("handshake message truncated in its type", be_u8)(i)?;
    let (i, body) = ctx(
        "handshake message truncated",
        nom::combinator::complete(nom::multi::length_data(be_u24)),
    )(i)?;
    Ok((i, (typ, body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn fuzz_entry_points_hold_their_properties_on_real_handshakes() {
        let ch = ChBuilder::tls13("f.example").ticket(&[]).psk(&[&[1; 20]]);
        client_hello(&ch.body());
        client_stream(&ch.record());
        let server = [ShBuilder::tls13(&[0x5a; 32]).psk(0).record(), ccs()].concat();
        for seed in [0, 1, 2, 3, 255] {
            server_stream(&frame(seed, &ch.record(), &server));
            whole(&frame(seed, &ch.record(), &server));
        }
        client_stream(b"GET / HTTP/1.1\r\n");
        client_stream(&[]);
        whole(&[]);
    }

    #[allow(clippy::indexing_slicing)] // test code
    /// A few thousand cheap mutations of real handshakes through every
    /// entry point: a smoke run of what the fuzzer does for hours.
    #[test]
    fn mutated_handshakes_keep_the_fuzz_properties() {
        let sid = [0x5a; 32];
        let ch1 = ChBuilder::tls13("m.example")
            .ticket(&[1; 20])
            .psk(&[&[1; 20], &[2; 30]]);
        let hrr_client = [ch1.record(), ccs(), records(22, &ch1.message(), 50)].concat();
        let hrr_server = [
            ShBuilder::hrr(&sid, 0x17).record(),
            ccs(),
            ShBuilder::tls13(&sid).psk(1).record(),
        ]
        .concat();
        let t12_client = ChBuilder::new().session_id(&sid).ticket(&[9; 40]).record();
        let t12_server = [
            records(
                22,
                &[
                    ShBuilder::tls12(&sid).message(),
                    certificate(300),
                    server_hello_done(),
                ]
                .concat(),
                90,
            ),
            handshake_record(&nst(5, &[3; 50])),
            ccs(),
        ]
        .concat();
        let cases = [(hrr_client, hrr_server), (t12_client, t12_server)];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for (client, server) in &cases {
            let base = frame(3, client, server);
            for _ in 0..600 {
                let mut m = base.clone();
                for _ in 0..(rnd() % 4 + 1) {
                    if m.len() < 5 {
                        break;
                    }
                    let at = 3 + (rnd() as usize) % (m.len() - 3);
                    match rnd() % 3 {
                        0 => m[at] = rnd() as u8,
                        1 => m[at] ^= 1 << (rnd() % 8),
                        _ => m.truncate(at),
                    }
                }
                let body = m.get(3 + 9..).unwrap_or_default();
                client_hello(body);
                client_stream(m.get(3..).unwrap_or_default());
                server_stream(&m);
                whole(&m);
            }
        }
    }
}
