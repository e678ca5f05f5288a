//! Client WebSocket frames, read whole and re-fed in small reads.
//! Input layout and checks: `pushpull::fuzzing::ws_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pushpull::fuzzing::ws_frames(data));
