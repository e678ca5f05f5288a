//! One connection's session: arbitrary bytes in scripted chunks, with time and engine events.
//! Input layout and checks: `pushpull::fuzzing::session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pushpull::fuzzing::session(data));
