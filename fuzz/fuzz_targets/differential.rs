//! One handshake message (byte 0 its type, then its body) through ours and
//! tls-parser: every field both read agrees (see
//! `stickytls_inspect::fuzzing::differential`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls_inspect::fuzzing::differential::differential(data);
});
