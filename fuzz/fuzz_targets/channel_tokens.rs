//! A `CHANNEL_ID` list as subscribers and publishers send it, signed and unsigned.
//! Input layout and checks: `pushpull::fuzzing::channel_tokens`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pushpull::fuzzing::channel_tokens(data));
