//! cargo-fuzz target: `tern_tests::fuzz::chat_template` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_tests::fuzz::chat_template(data));
