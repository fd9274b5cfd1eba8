//! The fuzzing smoke run of the test suite: every input of the fuzz corpus
//! (fuzz/corpus, grown by `cargo fuzz run`) through the same targets, plus
//! a few thousand generated variations of them. The long runs — a million
//! iterations per target and more — are done with cargo-fuzz (fuzz/README.md).

use std::path::Path;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs.sort();
    inputs
}

/// Cheap deterministic mutations: truncations, byte flips, splices.
fn variations(inputs: &[Vec<u8>], count: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let mut input = inputs[(next() as usize) % inputs.len()].clone();
            match next() % 3 {
                0 if !input.is_empty() => input.truncate((next() as usize) % input.len()),
                1 if !input.is_empty() => {
                    let i = (next() as usize) % input.len();
                    input[i] ^= 1 << (next() % 8);
                }
                _ => {
                    let other = &inputs[(next() as usize) % inputs.len()];
                    let cut = if other.is_empty() { 0 } else { (next() as usize) % other.len() };
                    input.extend_from_slice(&other[cut..]);
                }
            }
            input
        })
        .collect()
}

fn replay(target: &str, run: fn(&[u8])) {
    let inputs = corpus(target);
    for input in inputs.iter().chain(&variations(&inputs, 3000)) {
        run(input);
    }
}

#[test]
fn client_frames() {
    replay("client_frame", villagehub::wire::fuzz_client_frame);
}

#[test]
fn tokens() {
    replay("token", villagehub::wire::fuzz_token);
}

#[test]
fn websocket_bytes() {
    replay("ws_frames", villagehub::wire::fuzz_ws_bytes);
}
