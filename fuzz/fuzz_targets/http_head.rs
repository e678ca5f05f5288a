//! A request head, whole and cut short, its query parameters, then the request on the listener that serves its path.
//! Input layout and checks: `pushpull::fuzzing::http_head`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pushpull::fuzzing::http_head(data));
