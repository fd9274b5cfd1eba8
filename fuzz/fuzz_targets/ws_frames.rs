//! Any bytes on the socket after the upgrade: the WebSocket layer, with the
//! server's configuration, reads them without panicking.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| villagehub::wire::fuzz_ws_bytes(data));
