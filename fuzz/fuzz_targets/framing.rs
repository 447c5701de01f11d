//! Fuzz the HTTP/1 framing guard: arbitrary bytes, split at an arbitrary
//! point, must never panic, and split feeding must agree with whole feeding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    portcullis::framing::check_split_consistency(data);
});
