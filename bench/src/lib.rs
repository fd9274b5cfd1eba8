//! villagehub-bench: the load generator of issue 7.
//!
//! A coordinator (`villagehub-bench run …`) seeds and starts the server (and
//! the ws@8 peer), spreads synthetic members over worker processes of this
//! same binary (`villagehub-bench worker`, fed by JSON lines on stdin),
//! steps them through a scenario, samples the server's `/proc` around the
//! measured window and writes the results (JSON lines, `bench/RESULTS.md`).
//! `smoke()` is the small run the test suite uses. See `bench/README.md`.

pub mod coord;
pub mod hist;
pub mod plan;
pub mod procfs;
pub mod report;
pub mod servers;
pub mod worker;

use anyhow::{bail, Result};
use std::path::Path;

/// The smoke run: seed 2 groups × 5 members, start `server_bin`, post for
/// 2 s, drop and resume everyone halfway, and fail on any loss, duplicate,
/// error frame or protocol violation. Takes a few seconds.
pub async fn smoke(server_bin: &Path) -> Result<coord::TargetResult> {
    let r = run_small(coord::RunConfig::smoke(), server_bin).await?;
    if r.resumed_ms.is_none() {
        bail!("smoke run failed: the reconnect did not complete");
    }
    Ok(r)
}

/// The cluster smoke run: a `redis-server` (from `PATH`) and 3 nodes of
/// `server_bin`, 2 groups × 6 members spread over the nodes, posting for
/// 2 s; fails on any loss, duplicate, error frame or protocol violation,
/// or when a node or Redis was not measured. Takes a few seconds.
pub async fn cluster_smoke(server_bin: &Path) -> Result<coord::TargetResult> {
    let r = run_small(coord::RunConfig::cluster_smoke(), server_bin).await?;
    if r.nodes.len() != 3 || r.nodes.iter().any(|n| n.metrics.is_empty()) || r.redis.is_none() {
        bail!("cluster smoke run failed: the nodes and Redis were not all measured");
    }
    Ok(r)
}

async fn run_small(cfg: coord::RunConfig, server_bin: &Path) -> Result<coord::TargetResult> {
    let env = coord::Env { server_bin: Some(server_bin.to_path_buf()), ..Default::default() };
    let mut out = coord::execute(&cfg, &env).await?;
    let r = out.results.pop().expect("one target");
    let mut problems = r.problems();
    if r.delivered == 0 {
        problems.push("nothing delivered".into());
    }
    if !problems.is_empty() {
        bail!("{} smoke run failed: {}", cfg.scenario.as_str(), problems.join("; "));
    }
    Ok(r)
}
