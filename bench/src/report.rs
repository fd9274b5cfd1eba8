//! Results as JSON lines (stdout) and as a Markdown section appended to
//! `bench/RESULTS.md`, with the command, the commit and the machine.

use crate::coord::{Outcome, RunConfig, Scenario, TargetResult, CLUSTER_TARGET_US_PER_OP};
use anyhow::Result;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// `git rev-parse --short HEAD`, `+dirty` when the tree has changes.
pub fn git_commit() -> String {
    let out = Command::new("git").args(["rev-parse", "--short", "HEAD"]).output();
    let Ok(out) = out else {
        return "unknown".into();
    };
    if !out.status.success() {
        return "no commit yet".into();
    }
    let mut c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        c.push_str("+dirty");
    }
    c
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// One JSON object per target on stdout, plus the ours/peer ratio.
pub fn print_json(cfg: &RunConfig, out: &Outcome, command: &str) -> Result<()> {
    let commit = git_commit();
    let machine = crate::procfs::machine();
    let mut stdout = std::io::stdout().lock();
    for r in &out.results {
        let mut v = serde_json::to_value(r)?;
        v["commit"] = commit.clone().into();
        v["machine"] = machine.clone().into();
        v["command"] = command.into();
        v["seed_s"] = out.seed_s.into();
        if r.nodes_plus_redis_us_per_op.is_some() {
            v["target_nodes_plus_redis_us_per_op"] = CLUSTER_TARGET_US_PER_OP.into();
        }
        writeln!(stdout, "{}", serde_json::to_string(&v)?)?;
    }
    if let Some(ratio) = ratio(out) {
        writeln!(
            stdout,
            "{}",
            serde_json::json!({
                "scenario": cfg.scenario.as_str(),
                "ratio_ours_over_peer_server_cpu_per_delivery": ratio,
                "target_ratio": 0.8,
            })
        )?;
    }
    Ok(())
}

/// Server CPU per delivery, ours ÷ peer, when both ran.
pub fn ratio(out: &Outcome) -> Option<f64> {
    let find = |t: &str| out.results.iter().find(|r| r.target == t);
    let (o, p) = (find("ours")?, find("peer")?);
    (p.server_us_per_op() > 0.0).then(|| o.server_us_per_op() / p.server_us_per_op())
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The Markdown section for one run.
pub fn markdown(cfg: &RunConfig, out: &Outcome, command: &str) -> String {
    let mut s = String::new();
    s.push_str(&format!("\n### {} — {} — commit {}\n\n", cfg.scenario.as_str(), utc_now(), git_commit()));
    s.push_str(&format!("```\n{command}\n```\n\n"));
    s.push_str(&format!("Machine: {}.", crate::procfs::machine()));
    if let Some(seed) = out.seed_s {
        s.push_str(&format!(" Seeding took {seed:.1} s."));
    }
    s.push_str("\n\n");
    s.push_str("| target | conns | groups × members | posts/s per group | deliveries/s | expected | lost | dup | gaps | p50 ms | p99 ms | p99.9 ms | max ms | server µs/op user + sys | server CPU % | RSS KiB/conn | generator CPU % | other CPU % | server run-queue wait % |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &out.results {
        s.push_str(&format!(
            "| {} | {}/{} | {} × {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} + {:.2} = **{:.2}** | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} |\n",
            r.target,
            r.connected,
            r.conns,
            r.groups,
            r.members,
            rate_cell(cfg, r),
            r.deliveries_per_s,
            r.expected,
            r.lost,
            r.duplicates,
            r.gaps,
            ms(r.latency.p50_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            ms(r.latency.max_us),
            r.server_user_us_per_op,
            r.server_sys_us_per_op,
            r.server_us_per_op(),
            r.server_cpu_pct,
            r.rss_per_conn_kib,
            r.generator_cpu_pct,
            r.other_cpu_pct,
            r.server_run_delay_pct,
        ));
    }
    for r in &out.results {
        s.push_str(&cluster_table(r));
        s.push_str(&extra_lines(r));
    }
    if let Some(ratio) = ratio(out) {
        s.push_str(&format!("\nServer CPU per delivery, ours ÷ peer: **{ratio:.2}** (target ≤ 0.8).\n"));
    }
    for n in &out.notes {
        s.push_str(&format!("\nNote: {n}\n"));
    }
    s
}

/// The "posts/s per group" cell: only fan-out and reconnect post at a rate.
fn rate_cell(cfg: &RunConfig, r: &TargetResult) -> String {
    match cfg.scenario {
        Scenario::Fanout | Scenario::Reconnect | Scenario::Cluster => format!("{}", r.rate_per_group),
        Scenario::Broadcast => format!("1 per {} ms, all at once", cfg.interval_ms),
        Scenario::Ingest => format!("window {} per sender", cfg.window),
        _ => "—".into(),
    }
}

/// Cluster runs: CPU per delivery of each node and of Redis, and their
/// total against the target.
fn cluster_table(r: &TargetResult) -> String {
    let Some(total) = r.nodes_plus_redis_us_per_op else {
        return String::new();
    };
    let mut s = format!(
        "\n{}: CPU per delivery by process over the window ({} deliveries in {:.1} s):\n\n",
        r.target, r.delivered, r.window_s
    );
    s.push_str("| process | conns | does | user µs | sys µs | µs per delivery | own deliveries | µs per own delivery | CPU % | run-queue wait % | RSS KiB connected |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for n in &r.nodes {
        s.push_str(&format!(
            "| node {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.0} | {:.0} | {} |\n",
            n.node,
            n.conns,
            if n.sends {
                "sends (sequencing step of every post), applies, fans out"
            } else {
                "applies, fans out"
            },
            n.cpu.user_us_per_op,
            n.cpu.sys_us_per_op,
            n.cpu.us_per_op(),
            n.own_deliveries,
            n.us_per_own_delivery,
            n.cpu.cpu_pct,
            n.cpu.run_delay_pct,
            n.rss_connected_kib,
        ));
    }
    if let Some(redis) = &r.redis {
        s.push_str(&format!(
            "| Redis | — | Lua step, XADD, PUBLISH to every node | {:.2} | {:.2} | {:.2} | — | — | {:.0} | {:.0} | — |\n",
            redis.user_us_per_op,
            redis.sys_us_per_op,
            redis.us_per_op(),
            redis.cpu_pct,
            redis.run_delay_pct,
        ));
        s.push_str(&format!(
            "| **nodes + Redis** | {} | | {:.2} | {:.2} | **{total:.2}** | {} | | {:.0} | | |\n",
            r.conns,
            r.server_user_us_per_op + redis.user_us_per_op,
            r.server_sys_us_per_op + redis.sys_us_per_op,
            r.delivered,
            r.server_cpu_pct + redis.cpu_pct,
        ));
    }
    s.push_str(&format!(
        "\nNodes + Redis: **{total:.2} µs per delivery** (target ≤ {CLUSTER_TARGET_US_PER_OP}: {}).\n",
        if total <= CLUSTER_TARGET_US_PER_OP { "met" } else { "missed" }
    ));
    for n in &r.nodes {
        s.push_str(&metrics_line(&format!("{} node {}", r.target, n.node), &n.metrics, r.window_s));
    }
    s
}

/// One line from the change of a villagehub's `/metrics` counters.
fn metrics_line(label: &str, m: &std::collections::BTreeMap<String, f64>, window_s: f64) -> String {
    // Older servers export commit_batches_total, newer ones a commit-time
    // histogram whose count is the number of batches.
    let batches =
        m.get("villagehub_commit_batches_total").or_else(|| m.get("villagehub_commit_seconds_count"));
    let (Some(events), Some(batches)) = (m.get("villagehub_events_committed_total"), batches) else {
        return String::new();
    };
    if *batches <= 0.0 {
        return String::new();
    }
    let commit_s = m.get("villagehub_commit_seconds_sum").copied().unwrap_or(0.0);
    format!(
        "\n{label}: server /metrics over the window — {events:.0} events committed in {batches:.0} batches ({:.1} events/batch, {:.2} ms per commit, commit thread busy {:.0} % of the window); {:.0} deliveries; {:.0} outbox overflows.\n",
        events / batches,
        commit_s * 1000.0 / batches,
        commit_s / window_s.max(1e-9) * 100.0,
        m.get("villagehub_deliveries_total").copied().unwrap_or(0.0),
        m.get("villagehub_outbox_overflows_total").copied().unwrap_or(0.0),
    )
}

fn extra_lines(r: &TargetResult) -> String {
    let mut s = String::new();
    if r.target == "peer" && r.sent > 0 {
        s.push_str(&format!(
            "\n{}: sent {} posts (relayed, the peer has no acks); mean frame {:.0} bytes.\n",
            r.target, r.sent, r.mean_frame_bytes
        ));
    } else if r.acked > 0 || r.sent > 0 {
        s.push_str(&format!(
            "\n{}: sent {}, acked {} ({:.0}/s over {:.1} s){}; ack latency p50 {} ms, p99 {} ms, max {} ms; mean frame {:.0} bytes.\n",
            r.target,
            r.sent,
            r.acked,
            r.acked_per_s,
            r.window_s,
            if r.duplicate_acks > 0 {
                format!(", {} acked as duplicates after re-send", r.duplicate_acks)
            } else {
                String::new()
            },
            ms(r.ack_latency.p50_us),
            ms(r.ack_latency.p99_us),
            ms(r.ack_latency.max_us),
            r.mean_frame_bytes,
        ));
    }
    if let Some(resumed) = r.resumed_ms {
        s.push_str(&format!(
            "\n{}: reconnect storm — all {} resubscribed in {} ms, all caught up in {resumed} ms ({} failed).\n",
            r.target,
            r.connected,
            r.resubscribed_ms.unwrap_or(0),
            r.resume_failed
        ));
    }
    if r.rss_connected_kib > 0 {
        s.push_str(&format!(
            "\n{}: RSS {} KiB before connecting, {} KiB with {} connected ({:.2} KiB each), {} KiB at the end; connecting took {:.1} s.\n",
            r.target, r.rss_before_kib, r.rss_connected_kib, r.connected, r.rss_per_conn_kib, r.rss_after_kib, r.connect_s
        ));
    }
    if !r.login_ms.is_empty() {
        let mut v = r.login_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        s.push_str(&format!(
            "\n{}: {} real logins (POST /api/login, argon2): median {:.1} ms, max {:.1} ms.\n",
            r.target,
            v.len(),
            v[v.len() / 2],
            v[v.len() - 1]
        ));
    }
    s.push_str(&metrics_line(&r.target, &r.server_metrics, r.window_s));
    let problems = r.problems();
    if !problems.is_empty() {
        s.push_str(&format!("\n{} problems: {}.\n", r.target, problems.join("; ")));
    }
    s
}

pub fn append(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
