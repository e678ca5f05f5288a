//! A chunked request body, whole and re-fed in small reads, against a model of RFC 9112 §7.1.
//! Input layout and checks: `pushpull::fuzzing::chunked_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pushpull::fuzzing::chunked_body(data));
