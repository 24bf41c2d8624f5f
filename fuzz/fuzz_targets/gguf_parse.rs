//! cargo-fuzz target: `tern_tests::fuzz::gguf_parse` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_tests::fuzz::gguf_parse(data));
