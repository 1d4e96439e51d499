//! Behaviour tests for the inspector, on handcrafted handshakes fed in
//! every chunking.
#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // test code: a panic is a failed test

use super::testutil::*;
use super::*;

fn lim() -> Limits {
    Limits::default()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn malformed_what(st: &Status) -> (&'static str, u64) {
    match st {
        Status::Malformed(e) => (e.what, e.offset),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

fn client_status(bytes: &[u8]) -> Status {
    Handshake::new(lim()).feed_client(bytes)
}

#[test]
fn every_prefix_of_a_hello_needs_more_and_the_whole_is_done() {
    let rec = ChBuilder::tls13("example.com").record();
    for n in 0..rec.len() {
        let mut h = Handshake::new(lim());
        assert_eq!(h.feed_client(&rec[..n]), Status::NeedMore, "prefix {n}");
        assert!(h.client_hello().is_none());
    }
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(&rec), Status::Done);
    let ch = h.client_hello().unwrap();
    assert_eq!(ch.sni, Some(&b"example.com"[..]));
    assert_eq!(ch.alpn().collect::<Vec<_>>(), vec![&b"h2"[..], b"http/1.1"]);
    assert!(ch.offers_tls13());
    assert_eq!(ch.key_share_groups().collect::<Vec<_>>(), vec![0x001d]);
    assert_eq!(ch.session_id, &[0x5a; 32]);
    assert_eq!(h.client_hello_records(), Some(1));
}

#[test]
fn hello_gives_the_same_answer_in_every_chunking() {
    let rec = ChBuilder::tls13("example.com").ticket(&[]).record();
    let out = feed_all_chunkings(&rec, |c| run_client(lim(), c));
    assert!(out.starts_with("client=Done"), "{out}");
}

#[test]
fn pq_hybrid_hello_split_over_records_and_segments_is_normal() {
    let ch = ChBuilder::tls13("pq.example").key_share(&[]).exts.clone();
    let mut b = ChBuilder::tls13("pq.example");
    b.exts = ch.into_iter().filter(|(t, _)| *t != 51).collect();
    let b = b.key_share(&[(0x11ec, 1216), (0x001d, 32)]);
    let msg = b.message();
    assert!(msg.len() > 1300);
    // rustls-style: one record; some stacks cut at 1 KiB records.
    for stream in [handshake_record(&msg), records(22, &msg, 1024)] {
        let out = feed_all_chunkings(&stream, |c| run_client(lim(), c));
        assert!(out.starts_with("client=Done"), "{out}");
        assert!(out.contains("ks=[4588, 29]"), "{out}");
    }
}

#[test]
fn hello_across_three_records_is_reassembled() {
    let msg = ChBuilder::tls13("three.example").message();
    let per = msg.len() / 3 + 1;
    let stream = records(22, &msg, per);
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(&stream), Status::Done);
    assert_eq!(h.client_hello_records(), Some(3));
    assert_eq!(h.client_hello().unwrap().sni, Some(&b"three.example"[..]));
    feed_all_chunkings(&stream, |c| run_client(lim(), c));
}

#[test]
fn hello_split_one_byte_per_record_is_reassembled() {
    let msg = ChBuilder::tls13("a.example").message();
    let stream = records(22, &msg, 1);
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(&stream), Status::Done);
    assert_eq!(h.client_hello_records(), Some(msg.len() as u64));
}

#[test]
fn split_inside_a_record_header_is_reassembled() {
    let msg = ChBuilder::tls13("split.example").message();
    let stream = records(22, &msg, 100);
    // 100 + 5 bytes per record: cut 2 bytes into the second header.
    let (a, b) = stream.split_at(107);
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(a), Status::NeedMore);
    assert_eq!(h.feed_client(b), Status::Done);
}

#[test]
fn duplicate_extension_is_malformed_at_its_offset() {
    let rec = ChBuilder::tls13("d.example")
        .ext(0xff01, &[0])
        .ext(0xff01, &[0])
        .record();
    let st = client_status(&rec);
    let (what, at) = malformed_what(&st);
    assert_eq!(what, "duplicate extension in ClientHello");
    // The second 0xff01 is the last extension (5 bytes).
    assert_eq!(at, rec.len() as u64 - 5);
    feed_all_chunkings(&rec, |c| run_client(lim(), c));
}

#[test]
fn pre_shared_key_not_last_is_malformed() {
    let rec = ChBuilder::tls13("p.example")
        .psk(&[b"identity-1"])
        .ext(0xff01, &[0])
        .record();
    assert_eq!(
        malformed_what(&client_status(&rec)).0,
        "pre_shared_key is not the last ClientHello extension"
    );
}

#[test]
fn two_server_names_are_malformed() {
    let mut list = vec![0];
    list.extend(vec16(b"a.example"));
    list.push(0);
    list.extend(vec16(b"b.example"));
    let rec = ChBuilder::new().ext(0, &vec16(&list)).record();
    assert_eq!(
        malformed_what(&client_status(&rec)).0,
        "server_name holds more than one name"
    );
}

#[test]
fn session_id_of_33_bytes_is_malformed_at_the_session_id() {
    let rec = ChBuilder::new().session_id(&[1; 33]).record();
    let (what, at) = malformed_what(&client_status(&rec));
    assert_eq!(what, "ClientHello session_id longer than 32 bytes");
    assert_eq!(at, 5 + 4 + 2 + 32 + 1);
}

#[test]
fn trailing_bytes_after_extensions_are_malformed() {
    let mut body = ChBuilder::tls13("t.example").body();
    body.push(0);
    let rec = handshake_record(&handshake_msg(1, &body));
    assert_eq!(
        malformed_what(&client_status(&rec)).0,
        "trailing bytes after the ClientHello extensions"
    );
}

#[test]
fn truncated_extension_list_is_malformed() {
    let mut body = ChBuilder::tls13("t.example").body();
    body.pop();
    let rec = handshake_record(&handshake_msg(1, &body));
    assert!(matches!(client_status(&rec), Status::Malformed(_)));
}

#[test]
fn hello_without_extensions_is_accepted() {
    let mut b = ChBuilder::new();
    b.no_extensions = true;
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(&b.record()), Status::Done);
    assert!(h.client_hello().unwrap().sni.is_none());
}

#[test]
fn oversized_hello_is_rejected_from_its_declared_length() {
    let b = ChBuilder::tls13("big.example").ext(21, &vec![0; 20_000]);
    let stream = records(22, &b.message(), 16384);
    let mut h = Handshake::new(lim());
    // Rejected as soon as the handshake header shows it cannot fit.
    let st = h.feed_client(&stream[..9]);
    let (what, _) = malformed_what(&st);
    assert_eq!(what, "ClientHello exceeds the client byte budget");
    // And it stays rejected.
    assert_eq!(h.feed_client(&stream[9..]), st);
    assert!(!h.wants_client());
}

#[test]
fn hello_over_a_small_budget_is_malformed_in_every_chunking() {
    let stream = records(22, &ChBuilder::tls13("x.example").message(), 10);
    let small = Limits {
        max_client_bytes: 100,
        ..Limits::default()
    };
    let out = feed_all_chunkings(&stream, |c| run_client(small, c));
    assert!(out.contains("exceeds the client byte budget"), "{out}");
}

#[test]
fn non_tls_is_classified_from_the_first_bytes() {
    let cases: [(&[u8], &str); 9] = [
        (b"G", "HTTP request"),
        (b"PO", "HTTP request"),
        (b"HEA", "HTTP request"),
        (b"S", "SSH banner"),
        (b"SSH", "SSH banner"),
        (&[0x80], "SSLv2-format hello"),
        (&[0x80, 0x2e, 0x01], "SSLv2-format hello"),
        (&[23], "application data before handshake"),
        (&[22, 2], "not a TLS record (version major is not 3)"),
    ];
    for (bytes, reason) in cases {
        assert_eq!(
            client_status(bytes),
            Status::NotTls(NotTls { reason }),
            "{bytes:?}"
        );
        let mut h = Handshake::new(lim());
        assert_eq!(
            h.feed_server(bytes),
            Status::NotTls(NotTls { reason }),
            "server {bytes:?}"
        );
    }
    // Byte by byte: decided at the first byte, and kept.
    let mut h = Handshake::new(lim());
    let st = h.feed_client(b"G");
    assert!(matches!(st, Status::NotTls(_)));
    assert_eq!(h.feed_client(b"ET / HTTP/1.1\r\n"), st);
    // A handshake first byte alone is not enough to decide.
    assert_eq!(client_status(&[22]), Status::NeedMore);
    assert_eq!(client_status(&[22, 3, 1]), Status::NeedMore);
}

#[test]
fn alerts_are_reported_in_both_directions() {
    let a = alert(2, 40);
    let out = feed_all_chunkings(&a, |c| run_client(lim(), c));
    assert!(
        out.starts_with("client=Alert(Alert { level: 2, description: 40 })"),
        "{out}"
    );
    let ch = ChBuilder::tls13("a.example").record();
    let out = feed_all_chunkings(&a, |c| run_server(lim(), &ch, c));
    assert!(
        out.contains("server=Some(Alert(Alert { level: 2, description: 40 }))"),
        "{out}"
    );
    // A client alert after its hello.
    let stream = cat(&[&ch, &alert(1, 0)]);
    let out = run_client(lim(), &[&stream]);
    assert!(
        out.starts_with("client=Alert(Alert { level: 1, description: 0 })"),
        "{out}"
    );
}

#[test]
fn record_headers_are_checked() {
    let mut bad = ChBuilder::tls13("x").record();
    bad[3] = 0x50; // length 0x50xx > 2^14 + 256
    assert_eq!(
        malformed_what(&client_status(&bad)),
        ("record longer than 2^14+256 bytes", 3)
    );
    assert_eq!(
        malformed_what(&client_status(&[22, 3, 1, 0, 0])),
        ("empty record of a type that may not be empty", 3)
    );
    assert_eq!(
        malformed_what(&client_status(&[22, 3, 1, 0, 4, 2, 0, 0, 0])).0,
        "handshake message is not a ClientHello"
    );
}

#[test]
fn ccs_and_early_data_after_the_hello_are_walked_past() {
    let ch = ChBuilder::tls13("e.example")
        .early_data()
        .psk(&[&[7; 40]])
        .record();
    let stream = cat(&[&ch, &ccs(), &app_data(16000), &app_data(300)]);
    let out = feed_all_chunkings(&stream, |c| run_client(lim(), c));
    assert!(out.starts_with("client=Done"), "{out}");
}

/// An HRR exchange: CH1 (X25519 share), HRR (asks for P-256), CCS, CH2
/// with two PSK identities, ServerHello selecting identity 1 of CH2.
fn hrr_exchange() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let id0 = [0xa0u8; 20];
    let ch1 = ChBuilder::tls13("h.example").psk(&[&id0]);
    let mut ch2 = ChBuilder::tls13("h.example");
    ch2.exts.retain(|(t, _)| *t != 51);
    let ch2 = ch2.key_share(&[(0x0017, 65)]).psk(&[&id0, &[0xb1; 48]]);
    let client = cat(&[&ch1.record(), &ccs(), &ch2.record()]);
    let sid = [0x5a; 32];
    let server = cat(&[
        &ShBuilder::hrr(&sid, 0x0017).record(),
        &ccs(),
        &ShBuilder::tls13(&sid).psk(1).record(),
    ]);
    (client, server, ch1.record())
}

#[test]
fn hrr_then_ccs_then_second_hello_indexes_the_second_hellos_identities() {
    let (client, server, ch1) = hrr_exchange();
    // Interleaved as on the wire: CH1, HRR, CCS + CH2, ServerHello.
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(&ch1), Status::Done);
    let (hrr_part, sh_part) =
        server.split_at(server.len() - ShBuilder::tls13(&[0x5a; 32]).psk(1).record().len());
    assert_eq!(h.feed_server(hrr_part), Status::NeedMore);
    assert!(h.hello_retry_request());
    assert!(h.wants_client());
    assert_eq!(h.client_status(), Status::NeedMore);
    assert_eq!(h.feed_client(&client[ch1.len()..]), Status::Done);
    assert!(!h.wants_client());
    assert_eq!(h.feed_server(sh_part), Status::Done);
    let o = h.outcome().unwrap();
    assert!(o.hello_retry_request && o.resumed);
    assert_eq!(o.psk_selected, Some(1));
    assert_eq!(o.resumption, Some(Resumption::Tls13Psk));
    assert_eq!(
        o.learned,
        vec![
            Learned {
                kind: KeyKind::PskIdentity,
                key: vec![0xb1; 48],
                offered: true,
            },
            Learned {
                kind: KeyKind::TicketKeyName,
                key: vec![0xb1; 16],
                offered: true,
            },
        ]
    );
    assert_eq!(
        h.second_client_hello()
            .unwrap()
            .key_share_groups()
            .collect::<Vec<_>>(),
        vec![0x17]
    );
}

#[test]
fn hrr_exchange_with_the_whole_client_stream_fed_first_in_every_chunking() {
    let (client, server, _) = hrr_exchange();
    let out = feed_all_chunkings(&client, |c| run_client(lim(), c));
    assert!(out.starts_with("client=Done"), "{out}");
    let out = feed_all_chunkings(&server, |c| run_server(lim(), &client, c));
    assert!(out.contains("server=Some(Done)"), "{out}");
    assert!(out.contains("psk_selected: Some(1)"), "{out}");
    assert!(out.contains("r2=Some(1)"), "{out}");
}

#[test]
fn server_hello_before_the_second_hello_waits_for_it() {
    let (client, server, ch1) = hrr_exchange();
    let mut h = Handshake::new(lim());
    h.feed_client(&ch1);
    assert_eq!(h.feed_server(&server), Status::NeedMore);
    assert!(h.outcome().is_none());
    assert_eq!(h.feed_client(&client[ch1.len()..]), Status::Done);
    assert_eq!(h.feed_server(&[]), Status::Done);
    assert_eq!(h.outcome().unwrap().psk_selected, Some(1));
}

#[test]
fn tls13_psk_index_out_of_range_is_malformed() {
    let ch = ChBuilder::tls13("o.example").psk(&[&[1; 30]]).record();
    let sh = ShBuilder::tls13(&[0x5a; 32]).psk(1).record();
    let mut h = Handshake::new(lim());
    h.feed_client(&ch);
    let (what, at) = malformed_what(&h.feed_server(&sh));
    assert_eq!(what, "ServerHello selected_identity out of range");
    assert_eq!(at, sh.len() as u64 - 2);
    assert!(!h.wants_server());
}

#[test]
fn tls13_full_handshake_learns_nothing_and_stops_after_the_server_hello() {
    let ch = ChBuilder::tls13("f.example").record();
    let server = cat(&[
        &ShBuilder::tls13(&[0x5a; 32]).record(),
        &ccs(),
        &app_data(2000),
    ]);
    let out = feed_all_chunkings(&server, |c| run_server(lim(), &ch, c));
    assert!(out.contains("server=Some(Done)"), "{out}");
    assert!(
        out.contains("resumed: false, resumption: None, learned: []"),
        "{out}"
    );
}

#[test]
fn ech_outer_psk_identities_are_never_learned() {
    let ch = ChBuilder::tls13("public.example")
        .ech()
        .psk(&[&[9; 40]])
        .record();
    let sh = ShBuilder::tls13(&[0x5a; 32]).psk(0).record();
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(&ch), Status::Done);
    assert!(h.client_hello().unwrap().ech);
    assert_eq!(h.feed_server(&sh), Status::Done);
    let o = h.outcome().unwrap();
    assert!(o.resumed);
    assert!(o.learned.is_empty());
}

#[test]
fn tls12_full_handshake_learns_session_id_and_the_ticket_sent_after_client_finished() {
    let sid = [0x51; 32];
    let ticket = [0x7e; 100];
    let ch = ChBuilder::new().ticket(&[]).record();
    let server = cat(&[
        &ShBuilder::tls12(&sid).record(),
        &records(22, &cat(&[&certificate(3000), &server_hello_done()]), 16384),
        &handshake_record(&nst(7200, &ticket)),
        &ccs(),
        &encrypted_finished(),
    ]);
    let out = feed_all_chunkings(&server, |c| run_server(lim(), &ch, c));
    assert!(out.contains("server=Some(Done)"), "{out}");
    let mut h = Handshake::new(lim());
    h.feed_client(&ch);
    assert!(
        h.wants_client(),
        "until the server answers, a second hello may come"
    );
    assert_eq!(h.feed_server(&server), Status::Done);
    assert!(!h.wants_client());
    let o = h.outcome().unwrap();
    assert_eq!(
        (o.version, o.cipher_suite, o.resumed, o.resumption),
        (0x0303, 0xc030, false, None)
    );
    assert_eq!(
        o.new_session_tickets,
        vec![NewSessionTicket {
            lifetime_hint: 7200,
            ticket: ticket.to_vec()
        }]
    );
    let kinds: Vec<_> = o.learned.iter().map(|l| (l.kind, l.key.len())).collect();
    assert_eq!(
        kinds,
        vec![
            (KeyKind::SessionId, 32),
            (KeyKind::Ticket, 100),
            (KeyKind::TicketKeyName, 16)
        ]
    );
}

#[test]
fn tls12_abbreviated_ticket_resumption_with_a_new_ticket() {
    let offered = [0x6f; 80];
    let client_sid = [0x99; 32];
    let ch = ChBuilder::new()
        .session_id(&client_sid)
        .ticket(&offered)
        .record();
    let server = cat(&[
        &handshake_record(&cat(&[
            &ShBuilder::tls12(&client_sid).message(),
            &nst(300, &[0x70; 64]),
        ])),
        &ccs(),
        &encrypted_finished(),
    ]);
    let out = feed_all_chunkings(&server, |c| run_server(lim(), &ch, c));
    assert!(out.contains("server=Some(Done)"), "{out}");
    let mut h = Handshake::new(lim());
    h.feed_client(&ch);
    h.feed_server(&server);
    let o = h.outcome().unwrap();
    assert!(o.resumed);
    assert_eq!(o.resumption, Some(Resumption::Tls12Ticket));
    let learned: Vec<_> = o.learned.iter().map(|l| (l.kind, l.key.clone())).collect();
    assert_eq!(
        learned,
        vec![
            (KeyKind::Ticket, offered.to_vec()),
            (KeyKind::TicketKeyName, offered[..16].to_vec()),
            (KeyKind::Ticket, vec![0x70; 64]),
            (KeyKind::TicketKeyName, vec![0x70; 16]),
        ]
    );
}

#[test]
fn tls12_session_id_resumption() {
    let sid = [0x44; 32];
    let ch = ChBuilder::new().session_id(&sid).record();
    let server = cat(&[
        &ShBuilder::tls12(&sid).record(),
        &ccs(),
        &encrypted_finished(),
    ]);
    let out = feed_all_chunkings(&server, |c| run_server(lim(), &ch, c));
    assert!(
        out.contains("resumed: true, resumption: Some(Tls12SessionId)"),
        "{out}"
    );
    assert!(out.contains("learned: [Learned { kind: SessionId"), "{out}");
}

#[test]
fn tls12_empty_new_session_ticket_is_no_ticket() {
    let ch = ChBuilder::new().ticket(&[]).record();
    let server = cat(&[
        &ShBuilder::tls12(&[1; 32]).record(),
        &handshake_record(&server_hello_done()),
        &handshake_record(&nst(0, &[])),
        &ccs(),
    ]);
    let mut h = Handshake::new(lim());
    h.feed_client(&ch);
    assert_eq!(h.feed_server(&server), Status::Done);
    let o = h.outcome().unwrap();
    assert!(o.new_session_tickets.is_empty());
    assert_eq!(o.learned.len(), 1);
}

#[test]
fn large_certificate_is_streamed_without_growing_the_buffer() {
    let ch = ChBuilder::new().record();
    let small = Limits {
        max_server_message: 1024,
        ..Limits::default()
    };
    let flight = cat(&[
        &ShBuilder::tls12(&[2; 32]).message(),
        &certificate(60_000),
        &server_hello_done(),
    ]);
    let server = cat(&[&records(22, &flight, 16384), &ccs()]);
    let out = feed_all_chunkings(&server, |c| run_server(small, &ch, c));
    assert!(out.contains("server=Some(Done)"), "{out}");
    let mut h = Handshake::new(small);
    h.feed_client(&ch);
    for c in server.chunks(1000) {
        h.feed_server(c);
        assert!(h.buffered_server_bytes() <= 1024);
    }
    assert_eq!(h.server_status(), Status::Done);
}

#[test]
fn server_message_over_the_cap_is_malformed() {
    let ch = ChBuilder::new().record();
    let small = Limits {
        max_server_message: 16,
        ..Limits::default()
    };
    let mut h = Handshake::new(small);
    h.feed_client(&ch);
    let (what, at) = malformed_what(&h.feed_server(&ShBuilder::tls12(&[2; 32]).record()));
    assert_eq!(
        (what, at),
        (
            "server handshake message larger than the server message cap",
            6
        )
    );
}

#[test]
fn terminal_status_is_kept_in_both_directions() {
    let mut h = Handshake::new(lim());
    let st = h.feed_client(&ChBuilder::new().session_id(&[0; 33]).record());
    assert!(st.is_terminal());
    assert_eq!(h.feed_client(&ChBuilder::new().record()), st);
    let st = h.feed_server(b"HTTP/1.1 200 OK\r\n");
    assert!(st.is_terminal());
    assert_eq!(h.feed_server(&ShBuilder::tls12(&[]).record()), st);
}

#[test]
fn client_fed_past_a_tls12_hello_parks_its_second_flight_until_the_server_answers() {
    // Report-style: the whole client stream (hello, then its second
    // flight) before the server's. The ClientKeyExchange is not a second
    // hello; that would only matter after a HelloRetryRequest.
    let ch = ChBuilder::new().record();
    let client = cat(&[
        &ch,
        &handshake_record(&handshake_msg(16, &[0; 66])),
        &ccs(),
        &encrypted_finished(),
    ]);
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(&client), Status::Done);
    assert!(!h.wants_client());
    assert_eq!(
        h.feed_server(&ShBuilder::tls12(&[3; 32]).record()),
        Status::NeedMore
    );
    assert!(!h.wants_client());
    assert!(h.second_client_hello().is_none());
}

#[test]
fn ja4_matches_the_published_example() {
    // FoxIO technical_details/JA4.md: 15 ciphers, 16 extensions in this
    // order, these signature algorithms, ALPN h2, TLS 1.3 offered.
    let ciphers = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
        0x009c, 0x009d, 0x002f, 0x0035,
    ];
    let sigs = [
        0x0403u16, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ];
    let mut b = ChBuilder::new();
    b.ciphers = vec![0x0a0a];
    b.ciphers.extend(ciphers);
    let b = b
        .ext(0x1a1a, &[]) // GREASE, ignored
        .ext(0x001b, &[])
        .sni("example.com")
        .key_share(&[(0x001d, 32)])
        .alpn(&["h2", "http/1.1"])
        .ext(0x4469, &[])
        .ext(0x0017, &[])
        .ext(0x002d, &[1, 1])
        .ext(0x000d, &vec16(&u16s(&sigs)))
        .ext(0x0005, &[])
        .ticket(&[])
        .ext(0x0012, &[])
        .versions(&[0x2a2a, 0x0304, 0x0303])
        .ext(0xff01, &[0])
        .ext(0x000b, &[1, 0])
        .ext(0x000a, &[0, 2, 0, 0x1d])
        .ext(0x0015, &[0; 10]);
    let body = b.body();
    let ch = ClientHello::parse(&body).unwrap();
    assert_eq!(ch.ja4(), "t13d1516h2_8daaf6152771_e5627efa2ab1");
}

#[test]
fn ja4_stable_is_the_same_for_full_and_resumed_hellos() {
    let full = ChBuilder::tls13("s.example").ext(0x000d, &vec16(&u16s(&[0x0403])));
    let resumed = full.clone().ext(21, &[0; 7]).early_data().psk(&[&[5; 40]]);
    let (fb, rb) = (full.body(), resumed.body());
    let (f, r) = (
        ClientHello::parse(&fb).unwrap(),
        ClientHello::parse(&rb).unwrap(),
    );
    assert_ne!(f.ja4(), r.ja4());
    assert_eq!(f.ja4_stable(), r.ja4_stable());
    assert!(f.ja4().starts_with("t13d0"), "{}", f.ja4());
}

#[test]
fn ja4_without_ciphers_worth_hashing_or_extensions_uses_zeros() {
    let mut b = ChBuilder::new();
    b.ciphers = vec![0x0a0a];
    b.no_extensions = true;
    let body = b.body();
    let ch = ClientHello::parse(&body).unwrap();
    assert_eq!(ch.ja4(), "t12i000000_000000000000_000000000000");
}

#[test]
fn client_hello_fields_agree_with_tls_parser() {
    use tls_parser::{TlsMessage, TlsMessageHandshake, parse_tls_extensions, parse_tls_plaintext};
    let rec = ChBuilder::tls13("cross.example")
        .ticket(&[1, 2, 3])
        .psk(&[&[4; 20]])
        .record();
    let (_, plain) = parse_tls_plaintext(&rec).unwrap();
    let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(theirs))) = plain.msg.first()
    else {
        panic!("tls-parser did not see a ClientHello");
    };
    let mut h = Handshake::new(lim());
    h.feed_client(&rec);
    let ours = h.client_hello().unwrap();
    assert_eq!(ours.session_id, theirs.session_id.unwrap_or_default());
    assert_eq!(
        ours.cipher_suites().collect::<Vec<_>>(),
        theirs.ciphers.iter().map(|c| c.0).collect::<Vec<_>>()
    );
    let (rest, exts) = parse_tls_extensions(theirs.ext.unwrap()).unwrap();
    assert!(rest.is_empty());
    assert_eq!(ours.extension_types().count(), exts.len());
}

#[test]
fn a_broken_speculative_second_hello_only_counts_after_a_hello_retry_request() {
    let ch1 = ChBuilder::tls13("r.example").record();
    let bad2 = ChBuilder::tls13("r.example").session_id(&[0; 33]).record();
    let client = cat(&[&ch1, &ccs(), &bad2]);
    let sid = [0x5a; 32];
    // Without HRR the bytes were never a second hello.
    let mut h = Handshake::new(lim());
    assert_eq!(h.feed_client(&client), Status::Done);
    assert_eq!(
        h.feed_server(&ShBuilder::tls13(&sid).record()),
        Status::Done
    );
    assert_eq!(h.client_status(), Status::Done);
    // With HRR they were, and it is malformed, at the same offset in either order.
    let mut a = Handshake::new(lim());
    a.feed_client(&client);
    a.feed_server(&ShBuilder::hrr(&sid, 0x17).record());
    let mut b = Handshake::new(lim());
    b.feed_client(&ch1);
    b.feed_server(&ShBuilder::hrr(&sid, 0x17).record());
    b.feed_client(&client[ch1.len()..]);
    assert_eq!(a.client_status(), b.client_status());
    assert_eq!(
        malformed_what(&a.client_status()).0,
        "ClientHello session_id longer than 32 bytes"
    );
}

#[test]
fn a_kept_hello_reads_back_exactly_as_parsed() {
    let built = [
        ChBuilder::tls13("spans.example")
            .ticket(&[1, 2, 3])
            .early_data()
            .psk(&[&[4; 20], &[5; 9]])
            .record(),
        ChBuilder::new().session_id(&[7; 32]).record(),
        ChBuilder::tls13("ech.example").ech().record(),
    ];
    // The crate's own captures; every capture in the repository's
    // fuzz/seeds is read back the same way by the root's
    // tests/fuzz_seeds_replay.rs (not shipped with this crate).
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let captured = std::fs::read_dir(testdata)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".client.bin"))
        .map(|p| std::fs::read(p).unwrap());
    let mut n = 0;
    for stream in built.into_iter().chain(captured) {
        let mut h = Handshake::new(lim());
        assert_eq!(h.feed_client(&stream), Status::Done);
        let kept = h.client_hello().unwrap();
        let parsed = ClientHello::parse(kept.body).unwrap();
        assert_eq!(format!("{kept:?}"), format!("{parsed:?}"));
        n += 1;
    }
    assert!(n >= 8, "only {n} hellos");
}

#[test]
fn seen_extension_types_agree_with_a_set_through_the_filter_and_past_40() {
    use super::client_hello::SeenTypes;
    use std::collections::HashSet;
    let real = [
        0u16, 23, 65281, 10, 11, 35, 16, 5, 13, 18, 51, 45, 43, 27, 17513, 21, 41,
    ];
    let grease: Vec<u16> = (0..16u16).map(|i| 0x0a0a + i * 0x1010).collect();
    let mut x: u32 = 0x2545_f491;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u16
    };
    let noise: Vec<u16> = (0..200).map(|_| rnd() % 300).collect();
    for seq in [
        real.to_vec(),
        [&real[..], &real[..]].concat(),
        grease,
        noise,
    ] {
        let mut seen = SeenTypes::new();
        let mut set = HashSet::new();
        for t in seq {
            assert_eq!(seen.insert(t), set.insert(t), "type {t}");
        }
    }
}

/// The bytes after a ClientHello in its own record are something the
/// server would see, so such a hello is never routable. Decided from the
/// record's declared length the moment the hello ends: the answer is the
/// same whether the extra bytes have arrived or not, in every chunking.
#[test]
fn record_running_past_the_end_of_its_hello_is_malformed_in_every_chunking() {
    const WHAT: &str = "handshake data after the ClientHello in its record";
    let msg = ChBuilder::tls13("past.example").message();
    let split = msg.len() - 40;
    for extra in [1usize, 4, 300] {
        let tail = cat(&[&msg[split..], &vec![0x16; extra]]);
        let one_record = record(22, &cat(&[&msg, &vec![0x16; extra]]));
        let three_records = cat(&[&records(22, &msg[..split], 100), &record(22, &tail)]);
        for stream in [one_record, three_records] {
            let hello_end = stream.len() - extra;
            let out = feed_all_chunkings(&stream, |c| run_client(lim(), c));
            assert!(out.starts_with("client=Malformed"), "{out}");
            assert!(out.contains(WHAT), "{out}");
            for n in 0..=stream.len() {
                let st = client_status(&stream[..n]);
                if n < hello_end {
                    assert_eq!(st, Status::NeedMore, "prefix {n}");
                } else {
                    assert_eq!(malformed_what(&st), (WHAT, hello_end as u64), "prefix {n}");
                }
            }
        }
    }

    // The second hello after a HelloRetryRequest, in either feeding order.
    let sid = [0x5a; 32];
    let ch1 = ChBuilder::tls13("past.example").record();
    let ch2 = ChBuilder::tls13("past.example").message();
    let client = cat(&[&ch1, &ccs(), &record(22, &cat(&[&ch2, &[0x16, 0]]))]);
    let hrr = ShBuilder::hrr(&sid, 0x17).record();
    let expected = (WHAT, (client.len() - 2) as u64);
    let client_first = feed_all_chunkings(&client, |c| {
        let mut h = Handshake::new(lim());
        for piece in c {
            h.feed_client(piece);
        }
        h.feed_server(&hrr);
        h.client_status()
    });
    let server_first = feed_all_chunkings(&client, |c| {
        let mut h = Handshake::new(lim());
        h.feed_server(&hrr);
        for piece in c {
            h.feed_client(piece);
        }
        h.client_status()
    });
    assert_eq!(malformed_what(&client_first), expected);
    assert_eq!(client_first, server_first);
}

#[test]
fn server_hello_outside_ssl3_to_tls12_framing_is_malformed() {
    let ch = ChBuilder::new().record();
    for version in [[3u8, 4], [3, 0xf2], [0, 0], [0x7f, 0x12]] {
        let mut sh = ShBuilder::tls12(&[2; 32]).record();
        // Record header (5) and handshake header (4), then legacy_version.
        sh[9..11].copy_from_slice(&version);
        let mut h = Handshake::new(lim());
        h.feed_client(&ch);
        assert_eq!(
            malformed_what(&h.feed_server(&sh)),
            ("ServerHello legacy_version is not SSL 3.0 to TLS 1.2", 9),
            "{version:02x?}"
        );
    }
}

#[test]
fn psk_dhe_ke_needs_the_mode_and_a_key_share() {
    // pre_shared_key must stay the last extension: it is added last.
    let parse = |b: ChBuilder| {
        let msg = b.psk(&[&[7; 40]]).body();
        ClientHello::parse(&msg).unwrap().offers_psk_dhe_ke()
    };
    let modes = |m: &[u8]| {
        let mut body = vec![m.len() as u8];
        body.extend_from_slice(m);
        body
    };
    let base = || ChBuilder::tls13("x");
    assert!(!parse(base()), "no psk_key_exchange_modes");
    assert!(parse(base().ext(45, &modes(&[1]))));
    assert!(parse(base().ext(45, &modes(&[0, 1]))));
    assert!(!parse(base().ext(45, &modes(&[0]))), "psk_ke only");
    assert!(!parse(base().ext(45, &[5, 1])), "a truncated mode list");
    let mut no_share = base().ext(45, &modes(&[1]));
    no_share.exts.retain(|(t, _)| *t != 51);
    assert!(!parse(no_share), "psk_dhe_ke without a key_share");
}
