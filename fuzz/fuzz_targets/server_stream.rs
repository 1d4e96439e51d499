//! The server direction after a given client stream (framed input, see
//! `stickytls_inspect::fuzzing::frame`): every chunking agrees.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls_inspect::fuzzing::server_stream(data);
});
