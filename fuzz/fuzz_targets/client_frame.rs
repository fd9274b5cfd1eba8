//! Any text frame a client can send: parsed and validated as the server
//! does, never a panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| villagehub::wire::fuzz_client_frame(data));
