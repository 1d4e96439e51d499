//! Both directions and the JSON report (framed input, see
//! `stickytls::inspect::fuzzing::frame`): every chunking and the report agree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls::inspect::fuzzing::whole(data);
});
