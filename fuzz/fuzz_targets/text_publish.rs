//! `POST /pub/` with a text body and headers, up to the encoded message.
//! Input layout and checks: `pushpull::fuzzing::text_publish`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pushpull::fuzzing::text_publish(data));
