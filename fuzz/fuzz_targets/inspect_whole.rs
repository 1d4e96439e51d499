//! Both directions and the JSON report (framed input, see
//! `stickytls_inspect::fuzzing::frame`): every chunking and the report agree.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls_inspect::fuzzing::whole(data);
});
