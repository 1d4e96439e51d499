//! ClientHellos built byte by byte, for what no TLS library sends: a
//! server name or ALPN name holding control characters (rustls refuses
//! such names), and records framed differently from a library's.
#![allow(dead_code)]

/// `body` behind a 16-bit length.
fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// `body` behind an 8-bit length.
fn vec8(body: &[u8]) -> Vec<u8> {
    let mut v = vec![body.len() as u8];
    v.extend_from_slice(body);
    v
}

/// A TLS handshake record holding `payload`.
pub fn record(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x16, 0x03, 0x01];
    v.extend(vec16(payload));
    v
}

/// A TLS 1.2 ClientHello message (its 4-byte header included) with
/// `server_name` and, when `alpn` is not empty, those ALPN names: every
/// byte as given, whatever it is.
pub fn hello_message(server_name: &[u8], alpn: &[&[u8]]) -> Vec<u8> {
    let mut exts = Vec::new();
    let mut entry = vec![0]; // host_name
    entry.extend(vec16(server_name));
    exts.extend([0, 0]);
    exts.extend(vec16(&vec16(&entry)));
    if !alpn.is_empty() {
        let list: Vec<u8> = alpn.iter().flat_map(|n| vec8(n)).collect();
        exts.extend([0, 16]);
        exts.extend(vec16(&vec16(&list)));
    }
    let mut body = vec![0x03, 0x03];
    body.extend([0x42; 32]); // random
    body.push(0); // no session ID
    body.extend(vec16(&[0xc0, 0x2f, 0xc0, 0x30, 0x13, 0x01]));
    body.extend([1, 0]); // null compression
    body.extend(vec16(&exts));
    let mut msg = vec![0x01];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

/// [`hello_message`] in one record.
pub fn hello(server_name: &[u8], alpn: &[&[u8]]) -> Vec<u8> {
    record(&hello_message(server_name, alpn))
}

/// The handshake payload of a stream of handshake records, joined.
pub fn payload(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 5 {
        assert_eq!(rest[0], 0x16, "a handshake record");
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        out.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty(), "whole records");
    out
}

/// The same handshake bytes in records of at most `max` bytes each.
pub fn reframe(stream: &[u8], max: usize) -> Vec<u8> {
    payload(stream).chunks(max).flat_map(record).collect()
}

/// The ClientHello of `stream` in one record that declares `extra` bytes
/// more than the hello, of which the first `sent` follow it: a record
/// running past the end of its hello, which a router must refuse.
pub fn running_past(stream: &[u8], extra: usize, sent: usize) -> Vec<u8> {
    let mut p = payload(stream);
    p.extend(vec![0x16; extra]);
    let mut r = record(&p);
    r.truncate(r.len() - (extra - sent));
    r
}
