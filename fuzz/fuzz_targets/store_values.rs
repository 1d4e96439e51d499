//! The decoders of the values kept in Redis: what decodes encodes back,
//! and what we encode decodes to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls::fuzzing::store_values::store_values(data);
});
