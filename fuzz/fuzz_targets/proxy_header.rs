//! The PROXY v1/v2 header parser: every chunking agrees, a header is
//! recognised at its last byte, and our own headers parse back.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls::fuzzing::proxy_header::proxy_header(data);
});
