//! `ClientHello::parse` and every routing-field accessor allocate nothing,
//! on every real hello in `fuzz/seeds/`; `Handshake::feed_client` on a
//! hello in one record allocates once, for the copy it keeps. A counting global allocator
//! (`stats_alloc`, so the crate keeps forbidding unsafe code) counts the
//! allocations between two points. This binary holds a single test so no
//! other test allocates at the same time.

use std::alloc::System;
use std::path::Path;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use stickytls::inspect::{ClientHello, Handshake, Limits, Status};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Everything the router reads, and every list the report walks.
fn read_everything(ch: &ClientHello<'_>) -> usize {
    ch.session_id.len()
        + ch.sni.map_or(0, <[u8]>::len)
        + ch.session_ticket.map_or(0, <[u8]>::len)
        + ch.psk_identities().map(<[u8]>::len).sum::<usize>()
        + ch.alpn().count()
        + ch.supported_versions().count()
        + ch.key_share_groups().count()
        + ch.cipher_suites().count()
        + ch.extension_types().count()
        + ch.signature_algorithms().count()
        + usize::from(ch.offers_tls13() || ch.early_data || ch.ech || ch.has_psk)
}

#[test]
fn client_hello_parse_and_its_accessors_allocate_nothing_on_real_hellos() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let (mut hellos, mut unfragmented) = (0, 0);
    for entry in std::fs::read_dir(&seeds).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".client.bin") {
            continue;
        }
        let stream = std::fs::read(&path).unwrap();
        // The hello's body, reassembled from however many records it took.
        let mut h = Handshake::new(Limits::default());
        assert_eq!(h.feed_client(&stream), Status::Done, "{}", path.display());
        let body = h.client_hello().unwrap().body.to_vec();

        // The whole feed path, for a hello in one record: one allocation,
        // the copy of the hello kept for later, of exactly its size. (A
        // fragmented hello's buffer grows as its records arrive, so memory
        // follows the bytes received, not the length declared.)
        if h.client_hello_records() == Some(1) && h.second_client_hello().is_none() {
            let region = Region::new(GLOBAL);
            let mut fed = Handshake::new(Limits::default());
            fed.feed_client(std::hint::black_box(&stream));
            let change = region.change();
            drop(fed);
            assert_eq!(
                (
                    change.allocations,
                    change.reallocations,
                    change.bytes_allocated
                ),
                (1, 0, body.len()),
                "{}",
                path.display()
            );
            unfragmented += 1;
        }
        let region = Region::new(GLOBAL);
        let ch = ClientHello::parse(std::hint::black_box(&body)).unwrap();
        let read = read_everything(&ch);
        let change = region.change();
        assert!(read > 0);
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{}",
            path.display()
        );
        hellos += 1;
    }
    assert!(hellos >= 11, "only {hellos} hellos");
    assert!(unfragmented >= 9, "only {unfragmented} unfragmented hellos");

    // The counter is live: the fingerprint, a String, is counted.
    let stream = std::fs::read(seeds.join("rustls-tls13-full.client.bin")).unwrap();
    let record_len = usize::from(u16::from_be_bytes([stream[3], stream[4]]));
    let ch = ClientHello::parse(&stream[9..5 + record_len]).unwrap();
    let region = Region::new(GLOBAL);
    let ja4 = ch.ja4();
    assert!(region.change().allocations > 0, "{ja4}");
}
