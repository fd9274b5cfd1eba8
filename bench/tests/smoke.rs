//! The bench's smoke runs as tests, so the generator cannot rot:
//! - seed 2 groups × 5 members, post for 2 s with a reconnect of everyone
//!   halfway;
//! - the cluster scenario in small: a real `redis-server` (test.sh installs
//!   it) and 3 nodes, 2 groups × 6 members spread over them, 2 s;
//!
//! each failing on any loss, duplicate, error frame or protocol violation.
//!
//! The server binary is `$VILLAGEHUB_BIN` if set, else the workspace's
//! debug `villagehub`, built here first (a no-op when `cargo test
//! --workspace` has already built it).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
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
    })
    .clone()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn smoke_run_loses_nothing_and_sees_no_protocol_error() {
    let bin = server_bin();
    let r = runtime().block_on(villagehub_bench::smoke(&bin)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(r.lost, 0);
    assert_eq!(r.duplicates, 0);
    assert!(r.delivered > 0);
    assert!(r.resumed_ms.is_some());
}

#[test]
fn cluster_smoke_run_spreads_members_over_three_nodes_and_loses_nothing() {
    let bin = server_bin();
    let r = runtime().block_on(villagehub_bench::cluster_smoke(&bin)).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!((r.lost, r.duplicates, r.gaps), (0, 0, 0));
    assert_eq!(r.connected, 12);
    // 2 groups × 6 members: 2 of each group on each node, and each node
    // delivered to its own subscribers.
    assert_eq!(r.nodes.iter().map(|n| n.conns).collect::<Vec<_>>(), [4, 4, 4]);
    for n in &r.nodes {
        let delivered = n.metrics.get("villagehub_deliveries_total").copied().unwrap_or(0.0);
        assert!(delivered > 0.0, "node {} delivered nothing", n.node);
    }
    assert!(r.nodes[0].sends && !r.nodes[1].sends);
    assert!(r.nodes_plus_redis_us_per_op.is_some());
}
