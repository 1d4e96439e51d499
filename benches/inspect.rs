//! Nanoseconds per ClientHello, on real captures from `fuzz/seeds/`: our
//! routing-field path (`Handshake::feed_client` and reading the session ID,
//! SNI, ticket and PSK identities), `ClientHello::parse` alone, tls-parser's
//! full parse of the same bytes (`parse_tls_plaintext` and then
//! `parse_tls_extensions`), and JA4 alone.
//!
//! ```text
//! cargo bench --bench inspect
//! ```
//!
//! Compare the figures of one run with each other, not with another run's:
//! the machine is shared and noisy. Results are in `docs/inspect.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use stickytls::inspect::{ClientHello, Handshake, Limits, Status};
use tls_parser::{TlsMessage, TlsMessageHandshake, parse_tls_extensions, parse_tls_plaintext};

/// Real hellos, each the first record of a captured client stream.
const HELLOS: [(&str, &[u8]); 3] = [
    (
        "tls12",
        include_bytes!("../fuzz/seeds/openssl-tls12-full-session-id.client.bin"),
    ),
    (
        "tls13",
        include_bytes!("../fuzz/seeds/rustls-tls13-full.client.bin"),
    ),
    (
        "pq",
        include_bytes!("../fuzz/seeds/rustls-tls13-pq-hello.client.bin"),
    ),
];

/// The first TLS record of a client stream (the whole ClientHello, in
/// these captures).
fn first_record(stream: &[u8]) -> &[u8] {
    let len = usize::from(u16::from_be_bytes([stream[3], stream[4]]));
    &stream[..5 + len]
}

/// What the router reads off a hello, summed so none of it is optimised
/// away.
fn routing_fields(ch: &ClientHello<'_>) -> usize {
    ch.session_id.len()
        + ch.sni.map_or(0, <[u8]>::len)
        + ch.session_ticket.map_or(0, <[u8]>::len)
        + ch.psk_identities().map(<[u8]>::len).sum::<usize>()
}

fn bench(c: &mut Criterion) {
    for (name, stream) in HELLOS {
        let record = first_record(stream);
        // Handshake header: type (1) and length (3) after the record header.
        let body = &record[9..];
        let mut group = c.benchmark_group(name);
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));

        group.bench_function("ours: feed_client + routing fields", |b| {
            b.iter(|| {
                let mut h = Handshake::new(Limits::default());
                assert_eq!(h.feed_client(black_box(record)), Status::Done);
                routing_fields(&h.client_hello().unwrap())
            })
        });
        group.bench_function("ours: ClientHello::parse + routing fields", |b| {
            b.iter(|| routing_fields(&ClientHello::parse(black_box(body)).unwrap()))
        });
        group.bench_function("tls-parser: plaintext + extensions", |b| {
            b.iter(|| {
                let (_, plain) = parse_tls_plaintext(black_box(record)).unwrap();
                let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))) =
                    plain.msg.first()
                else {
                    panic!("not a ClientHello");
                };
                let (_, exts) = parse_tls_extensions(ch.ext.unwrap_or_default()).unwrap();
                exts.len() + ch.session_id.map_or(0, <[u8]>::len)
            })
        });
        let parsed = ClientHello::parse(body).unwrap();
        group.bench_function("ja4 alone (pre-parsed hello)", |b| {
            b.iter(|| black_box(&parsed).ja4())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
