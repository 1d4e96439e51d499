//! Entry points for the fuzz targets (`fuzz/fuzzers/*` call these). Each
//! runs the inspector over the data in several chunkings derived from the
//! data itself and asserts that the answers agree, not merely that
//! nothing panicked.
#![deny(clippy::indexing_slicing)]

use super::{ClientHello, Handshake, Limits, Status, report};

/// Everything observable about a handshake, for comparing runs.
pub(crate) fn summary(h: &Handshake, client: &Status, server: Option<&Status>) -> String {
    let ch = |c: Option<ClientHello<'_>>| {
        c.map(|c| {
            format!(
                "v={:04x} sid={:?} sni={:?} t={:?} psk={:?} ed={} ech={} alpn={:?} sv={:?} ks={:?}",
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
            )
        })
    };
    format!(
        "client={client:?} server={server:?} ch1={:?} r1={:?} ch2={:?} r2={:?} outcome={:?} wc={} ws={}",
        ch(h.client_hello()),
        h.client_hello_records(),
        ch(h.second_client_hello()),
        h.second_client_hello_records(),
        h.outcome(),
        h.wants_client(),
        h.wants_server(),
    )
}

/// Small limits, so the fuzzer reaches the caps with small inputs.
fn fuzz_limits(seed: u8) -> Limits {
    Limits {
        max_client_bytes: 64 + usize::from(seed) * 64,
        max_server_message: 16 + usize::from(seed) * 64,
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

/// Splits fuzz input into (seed, client stream, server stream): byte 0 is
/// the seed, bytes 1..3 the client stream's length.
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

/// ClientHello::parse on raw bytes: never panics; when it accepts, every
/// accessor works, the JA4 has its fixed shape, and one byte less is
/// rejected (every length in a hello is exact).
pub fn client_hello(data: &[u8]) {
    let Ok(ch) = ClientHello::parse(data) else {
        return;
    };
    let _ = (
        ch.psk_identities().count(),
        ch.alpn().count(),
        ch.supported_versions().count(),
    );
    let _ = (
        ch.key_share_groups().count(),
        ch.offers_tls13(),
        ch.extension_types().count(),
    );
    for j in [ch.ja4(), ch.ja4_stable()] {
        assert_eq!(j.len(), 36, "{j}");
        assert!(j.starts_with('t'), "{j}");
    }
    assert_eq!(ch.ja4().get(..4), ch.ja4_stable().get(..4));
    if let Some(shorter) = data.get(..data.len().saturating_sub(1)) {
        if !data.is_empty() {
            assert!(
                ClientHello::parse(shorter).is_err(),
                "a truncated hello was accepted"
            );
        }
    }
}

/// The client direction alone, in several chunkings: same answer each time.
pub fn client_stream(data: &[u8]) {
    let limits = fuzz_limits(data.first().copied().unwrap_or(0) % 4);
    let mut first: Option<String> = None;
    for size in sizes(data) {
        let mut h = Handshake::new(limits);
        let st = feed_sized(data, size, |c| h.feed_client(c));
        assert_eq!(st, h.client_status());
        let s = summary(&h, &st, None);
        match &first {
            None => first = Some(s),
            Some(f) => assert_eq!(&s, f, "chunk size {size}"),
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
/// chunkings all agree, and the JSON report agrees with them.
pub fn whole(data: &[u8]) {
    let (seed, client, server) = split(data);
    let limits = fuzz_limits(seed % 4);
    let mut first: Option<(bool, String)> = None;
    for size in sizes(data) {
        let mut h = Handshake::new(limits);
        feed_sized(client, size, |c| h.feed_client(c));
        let sst = feed_sized(server, size, |c| h.feed_server(c));
        let s = summary(&h, &h.client_status(), Some(&sst));
        let complete = h.client_hello().is_some()
            && (!h.hello_retry_request() || h.second_client_hello().is_some())
            && sst == Status::Done;
        match &first {
            None => first = Some((complete, s)),
            Some((_, f)) => assert_eq!(&s, f, "chunk size {size}"),
        }
    }
    let (v, complete) = report::report(client, Some(server), limits);
    if let Some((expected, _)) = first {
        assert_eq!(complete, expected, "report disagrees: {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::testutil::*;

    fn framed(seed: u8, client: &[u8], server: &[u8]) -> Vec<u8> {
        let mut v = vec![seed];
        v.extend_from_slice(&(client.len() as u16).to_be_bytes());
        v.extend_from_slice(client);
        v.extend_from_slice(server);
        v
    }

    #[test]
    fn fuzz_entry_points_hold_their_properties_on_real_handshakes() {
        let ch = ChBuilder::tls13("f.example").ticket(&[]).psk(&[&[1; 20]]);
        client_hello(&ch.body());
        client_stream(&ch.record());
        let server = [ShBuilder::tls13(&[0x5a; 32]).psk(0).record(), ccs()].concat();
        for seed in [0, 1, 2, 3, 255] {
            server_stream(&framed(seed, &ch.record(), &server));
            whole(&framed(seed, &ch.record(), &server));
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
            let base = framed(3, client, server);
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
