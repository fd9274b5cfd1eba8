//! Any token given to `hello`: judged without panicking.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| villagehub::wire::fuzz_token(data));
