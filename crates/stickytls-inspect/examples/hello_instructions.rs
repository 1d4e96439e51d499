//! Runs one of the `benches/inspect.rs` paths N times on one captured
//! hello, for counting instructions with callgrind, which a shared, noisy
//! machine does not disturb the way it disturbs timings. It lives in the
//! inspector's crate so that its release build is the parser and
//! tls-parser only, not the router:
//!
//! ```text
//! cargo build --release -p stickytls-inspect --example hello_instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/hello_instructions PATH HELLO N
//! ```
//!
//! PATH is `feed`, `parse`, `tls-parser` or `ja4`; HELLO is `tls12`,
//! `tls13` or `pq`. Instructions per hello are the difference between two
//! runs with different N, divided by the difference in N (that cancels
//! start-up). `docs/inspect.md` has the figures.

use std::hint::black_box;

use stickytls_inspect::{ClientHello, Handshake, Limits, Status};
use tls_parser::{TlsMessage, TlsMessageHandshake, parse_tls_extensions, parse_tls_plaintext};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, hello, n] = &args[..] else {
        eprintln!("usage: hello_instructions feed|parse|tls-parser|ja4 tls12|tls13|pq N");
        std::process::exit(2);
    };
    let stream: &[u8] = match hello.as_str() {
        "tls12" => include_bytes!("../testdata/openssl-tls12-hello.client.bin"),
        "tls13" => include_bytes!("../testdata/rustls-tls13-hello.client.bin"),
        "pq" => include_bytes!("../testdata/rustls-tls13-pq-hello.client.bin"),
        other => panic!("unknown hello {other}"),
    };
    let n: usize = n.parse().expect("N is a number");
    let len = usize::from(u16::from_be_bytes([stream[3], stream[4]]));
    let record = &stream[..5 + len];
    let body = &record[9..];
    let parsed = ClientHello::parse(body).unwrap();
    let mut acc = 0usize;
    for _ in 0..n {
        acc += match path.as_str() {
            "feed" => {
                let mut h = Handshake::new(Limits::default());
                assert_eq!(h.feed_client(black_box(record)), Status::Done);
                routing_fields(&h.client_hello().unwrap())
            }
            "parse" => routing_fields(&ClientHello::parse(black_box(body)).unwrap()),
            "tls-parser" => {
                let (_, plain) = parse_tls_plaintext(black_box(record)).unwrap();
                let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))) =
                    plain.msg.first()
                else {
                    panic!("not a ClientHello");
                };
                let (_, exts) = parse_tls_extensions(ch.ext.unwrap_or_default()).unwrap();
                exts.len() + ch.session_id.map_or(0, <[u8]>::len)
            }
            "ja4" => black_box(&parsed).ja4().len(),
            other => panic!("unknown path {other}"),
        };
    }
    println!("{acc}");
}

/// What the router reads off a hello (as in the bench).
fn routing_fields(ch: &ClientHello<'_>) -> usize {
    ch.session_id.len()
        + ch.sni.map_or(0, <[u8]>::len)
        + ch.session_ticket.map_or(0, <[u8]>::len)
        + ch.psk_identities().map(<[u8]>::len).sum::<usize>()
}
