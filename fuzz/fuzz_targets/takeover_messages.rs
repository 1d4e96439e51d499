//! The takeover conversation as the new process reads it, from a fake old
//! process on a real Unix socket: it takes over only what the protocol
//! says, exactly as sent.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stickytls::fuzzing::takeover_messages::takeover_messages(data);
});
