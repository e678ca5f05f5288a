//! A protobuf `RequestBatch` from a back end or a browser, parsed and then posted.
//! Input layout and checks: `pushpull::fuzzing::request_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pushpull::fuzzing::request_batch(data));
