//! pushpull's TOML file, a Bitrix JSON file or the BitrixVM sysconfig file.
//! Input layout and checks: `pushpull::fuzzing::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pushpull::fuzzing::config(data));
