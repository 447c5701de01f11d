//! Fuzz the config loader: any text yields a config or located errors.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = portcullis::config::parse(std::path::Path::new("fuzz.yaml"), s);
    }
});
