//! The bench's smoke run as a test, so the generator cannot rot: seed 2
//! groups × 5 members, post for 2 s with a reconnect of everyone halfway,
//! and fail on any loss, duplicate, error frame or protocol violation.
//!
//! The server binary is `$VILLAGEHUB_BIN` if set, else the workspace's
//! debug `villagehub`, built here first (a no-op when `cargo test
//! --workspace` has already built it).

use std::path::PathBuf;
use std::process::Command;

fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("VILLAGEHUB_BIN") {
        return PathBuf::from(bin);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "villagehub", "--bin", "villagehub"])
        .current_dir(&root)
        .status()
        .expect("running cargo build -p villagehub");
    assert!(status.success(), "cargo build -p villagehub failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    target.join("debug").join("villagehub")
}

#[test]
fn smoke_run_loses_nothing_and_sees_no_protocol_error() {
    let bin = server_bin();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r = rt.block_on(villagehub_bench::smoke(&bin)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(r.lost, 0);
    assert_eq!(r.duplicates, 0);
    assert!(r.delivered > 0);
    assert!(r.resumed_ms.is_some());
}
