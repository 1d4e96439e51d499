//! The server direction after a given client stream (framed input, see
//! `stickytls::inspect::fuzzing::frame`): every chunking agrees.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls::inspect::fuzzing::server_stream(data);
});
