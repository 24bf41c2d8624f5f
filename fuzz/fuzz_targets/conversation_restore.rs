//! cargo-fuzz target: `tern_tests::fuzz::conversation_restore` on each input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_tests::fuzz::conversation_restore(data));
