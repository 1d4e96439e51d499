//! The state-file decoder past its checksum: what decodes encodes back,
//! and a decode allocates at most a small multiple of the file (counted
//! by the allocator here).
#![no_main]

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated so far, reallocations' growth included.
fn allocated() -> u64 {
    let s = GLOBAL.stats();
    (s.bytes_allocated as u64).saturating_add(s.bytes_reallocated.max(0) as u64)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls::fuzzing::state_file::state_file_counted(data, Some(&allocated));
});
