//! The client direction alone: every chunking agrees, every accepted hello
//! keeps the ClientHello properties.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls_inspect::fuzzing::client_stream(data);
});
