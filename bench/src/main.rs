//! `villagehub-bench`: run a scenario (`run`), the smoke check (`smoke`), or
//! serve as one generator process (`worker`, started by `run`).

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use villagehub_bench::coord::{self, RunConfig, Scenario};
use villagehub_bench::plan::Target;
use villagehub_bench::report;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Parser)]
#[command(version, about = "Load generator for villagehub (bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario against villagehub (and the ws peer) and record it.
    Run(Box<RunArgs>),
    /// Small end-to-end check for the test suite: 2 groups × 5 members, 2 s,
    /// a reconnect halfway; exits non-zero on loss, duplicates or errors.
    Smoke {
        /// The villagehub binary to seed and start.
        #[arg(long, default_value_t = format!("{MANIFEST_DIR}/../target/debug/villagehub"))]
        server_bin: String,
        /// The cluster check instead: redis-server and 3 nodes, 2 groups ×
        /// 6 members spread over them, 2 s.
        #[arg(long)]
        cluster: bool,
    },
    /// One generator process (internal: started by `run`).
    #[command(hide = true)]
    Worker,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Targets {
    Ours,
    Peer,
    Both,
}

#[derive(clap::Args)]
struct RunArgs {
    /// fanout (a), broadcast (b), reconnect (c), ingest (d), idle (RSS per
    /// connection), cluster (e: Redis + 3 nodes, members spread over them).
    scenario: Scenario,
    /// Which servers to drive; default: both where the peer applies.
    #[arg(long)]
    target: Option<Targets>,
    #[arg(long)]
    groups: Option<usize>,
    /// Members (connections) per group.
    #[arg(long)]
    members: Option<usize>,
    /// Posts per second of each group's sender (fanout, reconnect).
    #[arg(long)]
    rate: Option<f64>,
    /// Broadcast: ms between rounds; every group posts once per round.
    #[arg(long)]
    interval_ms: Option<u64>,
    /// Ingest: senders per group.
    #[arg(long)]
    senders_per_group: Option<usize>,
    /// Sends in flight (unacked) per sender.
    #[arg(long)]
    window: Option<usize>,
    /// Seconds of sending.
    #[arg(long)]
    duration: Option<f64>,
    /// Reconnect: seconds after the start at which everyone drops.
    #[arg(long)]
    drop_at: Option<f64>,
    /// Bytes of message text (~120 in the reference workload).
    #[arg(long)]
    text_bytes: Option<usize>,
    /// Generator processes (default: one per 9,000 connections, at least 2
    /// from 1,000 connections).
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long)]
    max_conns_per_worker: Option<usize>,
    /// Do not bind workers to 127.0.0.2, 127.0.0.3, …
    #[arg(long)]
    no_source_ips: bool,
    /// Handshakes in flight per worker.
    #[arg(long)]
    connect_concurrency: Option<usize>,
    /// Decode every frame with protocol::ServerFrame.
    #[arg(long)]
    strict: bool,
    /// Ingest: senders also subscribe (deliveries measured too).
    #[arg(long)]
    ingest_subscribe: bool,
    /// Seconds subscribers may take to catch up after the senders stop.
    #[arg(long)]
    drain_timeout: Option<f64>,
    /// Seconds to wait after connecting before reading RSS.
    #[arg(long)]
    settle: Option<f64>,
    /// Run the workers as threads of this process.
    #[arg(long)]
    in_process: bool,
    /// Cluster: villagehub nodes on the one Redis.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Cluster: Redis `appendfsync` (`always`: the durability docs/DEPLOYMENT.md
    /// asks for; `everysec`: faster, loses up to a second on a machine crash).
    #[arg(long, default_value = "always", value_parser = ["always", "everysec", "no"])]
    redis_appendfsync: String,
    /// Cluster: the redis-server binary.
    #[arg(long, default_value = "redis-server")]
    redis_server: String,
    #[arg(long)]
    quiet: bool,
    /// Before each target wait up to this many seconds for other processes
    /// to leave the CPU (0: do not wait).
    #[arg(long, default_value_t = 0.0)]
    wait_idle: f64,

    /// villagehub binary to seed and start on a scratch data dir.
    #[arg(long, default_value_t = format!("{MANIFEST_DIR}/../target/release/villagehub"))]
    server_bin: String,
    /// Drive an already running, already seeded villagehub instead
    /// (ws://127.0.0.1:PORT/ws); needs --server-pid and --tokens.
    #[arg(long)]
    server_url: Option<String>,
    #[arg(long)]
    server_pid: Option<u32>,
    /// Tokens file written by `villagehub bench-seed --tokens-out`.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Extra villagehub flag (repeatable), e.g. --server-arg=--outbox=256.
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    #[arg(long, default_value_t = format!("{MANIFEST_DIR}/peers/ws-room-server.js"))]
    peer_script: String,
    /// Drive an already running ws peer (ws://127.0.0.1:PORT); needs --peer-pid.
    #[arg(long)]
    peer_url: Option<String>,
    #[arg(long)]
    peer_pid: Option<u32>,
    /// Real logins to time through POST /api/login.
    #[arg(long, default_value_t = 5)]
    logins: usize,
    /// Keep the scratch data dir (and server.log).
    #[arg(long)]
    keep_data: bool,
    /// Markdown file the results are appended to.
    #[arg(long, default_value_t = format!("{MANIFEST_DIR}/RESULTS.md"))]
    results: String,
    #[arg(long)]
    no_append: bool,
    /// A line of context added to the Markdown section.
    #[arg(long)]
    note: Option<String>,
}

impl RunArgs {
    fn config(&self) -> RunConfig {
        let mut c = RunConfig::defaults(self.scenario);
        match self.target {
            Some(Targets::Ours) => c.targets = vec![Target::Ours],
            Some(Targets::Peer) => c.targets = vec![Target::Peer],
            Some(Targets::Both) => c.targets = vec![Target::Ours, Target::Peer],
            None => {}
        }
        let secs = |s: f64| (s * 1000.0) as u64;
        c.groups = self.groups.unwrap_or(c.groups);
        c.members = self.members.unwrap_or(c.members);
        c.rate = self.rate.unwrap_or(c.rate);
        c.interval_ms = self.interval_ms.unwrap_or(c.interval_ms);
        c.senders_per_group = self.senders_per_group.unwrap_or(c.senders_per_group);
        c.window = self.window.unwrap_or(c.window);
        c.duration_ms = self.duration.map(secs).unwrap_or(c.duration_ms);
        if let Some(d) = self.drop_at {
            c.drop_at_ms = Some(secs(d));
        }
        c.text_bytes = self.text_bytes.unwrap_or(c.text_bytes).max(40);
        c.workers = self.workers.unwrap_or(c.workers);
        c.max_conns_per_worker = self.max_conns_per_worker.unwrap_or(c.max_conns_per_worker);
        c.spread_source_ips = !self.no_source_ips;
        c.connect_concurrency = self.connect_concurrency.unwrap_or(c.connect_concurrency);
        c.strict = self.strict;
        c.ingest_subscribe = self.ingest_subscribe;
        c.drain_timeout_ms = self.drain_timeout.map(secs).unwrap_or(c.drain_timeout_ms);
        c.settle_ms = self.settle.map(secs).unwrap_or(c.settle_ms);
        c.in_process = self.in_process;
        c.nodes = self.nodes.max(1);
        c.redis_appendfsync = self.redis_appendfsync.clone();
        c.quiet = self.quiet;
        c.wait_idle_ms = secs(self.wait_idle);
        c
    }

    fn env(&self) -> coord::Env {
        coord::Env {
            server_bin: Some(PathBuf::from(&self.server_bin)),
            server_url: self.server_url.clone(),
            server_pid: self.server_pid,
            tokens: self.tokens.clone(),
            server_args: self.server_arg.clone(),
            peer_script: PathBuf::from(&self.peer_script),
            peer_url: self.peer_url.clone(),
            peer_pid: self.peer_pid,
            logins: self.logins,
            keep_data: self.keep_data,
            redis_server: Some(self.redis_server.clone()),
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Worker => villagehub_bench::worker::process_main(),
        Cmd::Smoke { server_bin, cluster } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            let bin = PathBuf::from(&server_bin);
            let run = async {
                if cluster {
                    villagehub_bench::cluster_smoke(&bin).await
                } else {
                    villagehub_bench::smoke(&bin).await
                }
            };
            match rt.block_on(run) {
                Ok(r) => {
                    println!("{}", serde_json::to_string(&r)?);
                    eprintln!("smoke ok: {}", coord::summary_line(&r));
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e:#}");
                    std::process::exit(1);
                }
            }
        }
        Cmd::Run(args) => {
            let cfg = args.config();
            let env = args.env();
            let command = std::env::var("BENCH_COMMAND")
                .unwrap_or_else(|_| std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" "));
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            let mut out = rt.block_on(coord::execute(&cfg, &env))?;
            if let Some(note) = &args.note {
                out.notes.push(note.clone());
            }
            report::print_json(&cfg, &out, &command)?;
            let md = report::markdown(&cfg, &out, &command);
            if !args.no_append {
                report::append(std::path::Path::new(&args.results), &md)?;
                eprintln!("appended to {}", args.results);
            }
            if let Some(r) = report::ratio(&out) {
                eprintln!("server CPU per delivery, ours ÷ peer: {r:.2} (target ≤ 0.8)");
            }
            Ok(())
        }
    }
}

/// Quote `a` for a POSIX shell when it needs it, so that the recorded
/// command can be pasted back.
fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quoting_keeps_plain_words_and_escapes_quotes() {
        assert_eq!(shell_quote("--rate=5"), "--rate=5");
        assert_eq!(shell_quote("lead's run"), "'lead'\\''s run'");
    }
}
