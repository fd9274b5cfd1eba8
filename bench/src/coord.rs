//! The coordinator: turns a scenario into worker plans, starts the workers
//! (processes of this same binary, or threads for the smoke run), steps them
//! through connect → start → (drop) → drain, samples the server's `/proc`
//! around the measured window and merges what the workers measured.

use crate::hist;
use crate::plan::{Cmd, ConnPlan, Progress, Report, SendPlan, Target, WorkerPlan, WorkerResult};
use crate::procfs;
use crate::servers::{self, ClusterLink, Member, Server};
use crate::worker::{self, now_ns};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// The scenarios of issue 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// (a) G groups × M members, one sender per group at R messages/s.
    Fanout,
    /// (b) Every group's sender posts at the same instant, once per
    /// interval: one post reaches every connection at once.
    Broadcast,
    /// (c) Everyone drops at once and resumes with `since`.
    Reconnect,
    /// (d) Many senders, acked durable sends per second.
    Ingest,
    /// Idle authenticated, subscribed connections: RSS per connection.
    Idle,
    /// (e) Redis and 3 villagehub nodes; a group's members are spread over
    /// the nodes, one sender per group at R messages/s as in (a).
    Cluster,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Broadcast => "broadcast",
            Scenario::Reconnect => "reconnect",
            Scenario::Ingest => "ingest",
            Scenario::Idle => "idle",
            Scenario::Cluster => "cluster",
        }
    }

    /// Does the ws peer make sense for this scenario? It relays, so it has
    /// no resume (c) and no durable ack (d).
    pub fn peer_applies(self) -> bool {
        matches!(self, Scenario::Fanout | Scenario::Broadcast | Scenario::Idle)
    }
}

/// Every knob of a run (flags, with per-scenario defaults filled in).
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub scenario: Scenario,
    pub targets: Vec<Target>,
    pub groups: usize,
    pub members: usize,
    /// Posts per second of each group's sender (fanout, reconnect).
    pub rate: f64,
    /// Broadcast: ms between rounds (every group posts once per round).
    pub interval_ms: u64,
    /// Ingest: senders per group (each a member's connection).
    pub senders_per_group: usize,
    /// Sends waiting for their ack per sender.
    pub window: usize,
    pub duration_ms: u64,
    /// Reconnect: when, after the start, everyone drops.
    pub drop_at_ms: Option<u64>,
    pub text_bytes: usize,
    /// 0 = automatic.
    pub workers: usize,
    pub max_conns_per_worker: usize,
    /// Bind connection j to 127.0.0.(2 + j / conns_per_source_ip).
    pub spread_source_ips: bool,
    /// Connections per source address: below villagehub's default
    /// `--max-connections-per-ip` (2,000) and far below the ~28,000
    /// ephemeral ports per (source, destination) pair.
    pub conns_per_source_ip: usize,
    pub connect_concurrency: usize,
    pub strict: bool,
    /// Ingest: senders also subscribe to their group.
    pub ingest_subscribe: bool,
    pub drain_timeout_ms: u64,
    /// Idle: wait before reading RSS after everyone connected.
    pub settle_ms: u64,
    /// Workers as threads of this process (smoke run, library use).
    pub in_process: bool,
    /// Cluster: villagehub nodes on the one Redis.
    pub nodes: usize,
    /// Cluster: Redis's `appendfsync` (`always` keeps the durability
    /// promise of docs/DEPLOYMENT.md; `everysec` is faster).
    pub redis_appendfsync: String,
    pub quiet: bool,
    /// Before each target, wait up to this long for the machine to be idle
    /// (other work below a quarter of a core), so that figures are not
    /// taken while a build or a browser test runs beside them.
    pub wait_idle_ms: u64,
}

impl RunConfig {
    /// The defaults of issue 7 for `scenario`.
    pub fn defaults(scenario: Scenario) -> RunConfig {
        let mut c = RunConfig {
            scenario,
            targets: if scenario.peer_applies() {
                vec![Target::Ours, Target::Peer]
            } else {
                vec![Target::Ours]
            },
            groups: 20,
            members: 250,
            rate: 20.0,
            interval_ms: 1000,
            senders_per_group: 50,
            window: 64,
            duration_ms: 10_000,
            drop_at_ms: None,
            text_bytes: 120,
            workers: 0,
            max_conns_per_worker: 9000,
            spread_source_ips: true,
            conns_per_source_ip: 1500,
            connect_concurrency: 256,
            strict: false,
            ingest_subscribe: false,
            drain_timeout_ms: 15_000,
            settle_ms: 3000,
            in_process: false,
            nodes: 3,
            redis_appendfsync: "always".into(),
            quiet: false,
            wait_idle_ms: 0,
        };
        match scenario {
            Scenario::Fanout | Scenario::Cluster => {}
            Scenario::Broadcast => {}
            Scenario::Reconnect => {
                c.groups = 76;
                c.rate = 1.0;
                c.duration_ms = 12_000;
                c.drop_at_ms = Some(4000);
            }
            Scenario::Ingest => {
                c.members = 50;
                c.window = 8;
            }
            Scenario::Idle => {
                c.groups = 76;
            }
        }
        c
    }

    /// The small run the test suite uses: 2 groups × 5 members, 10 posts/s
    /// each for 2 s, everyone dropping and resuming halfway, every frame
    /// decoded strictly, workers in-process.
    pub fn smoke() -> RunConfig {
        let mut c = RunConfig::defaults(Scenario::Fanout);
        c.targets = vec![Target::Ours];
        c.groups = 2;
        c.members = 5;
        c.rate = 10.0;
        c.duration_ms = 2000;
        c.drop_at_ms = Some(1000);
        c.strict = true;
        c.in_process = true;
        c.workers = 1;
        c.spread_source_ips = false;
        c.drain_timeout_ms = 10_000;
        c.settle_ms = 0;
        c
    }

    /// The small cluster run the test suite uses: Redis and 3 nodes, 2
    /// groups × 6 members (2 per node), 10 posts/s each for 2 s, every
    /// frame decoded strictly, workers in-process.
    pub fn cluster_smoke() -> RunConfig {
        let mut c = RunConfig::defaults(Scenario::Cluster);
        c.groups = 2;
        c.members = 6;
        c.rate = 10.0;
        c.duration_ms = 2000;
        c.strict = true;
        c.in_process = true;
        c.workers = 1;
        c.spread_source_ips = false;
        c.drain_timeout_ms = 10_000;
        c.settle_ms = 0;
        c
    }

    fn conns(&self) -> usize {
        self.groups * self.members
    }

    fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        let n = self.conns();
        let need = n.div_ceil(self.max_conns_per_worker.max(1));
        // Two cores: a second generator process lets the client side use
        // both when the server is not using them.
        need.max(if n >= 1000 { 2 } else { 1 })
    }
}

/// What one target (ours or the peer) measured in one scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetResult {
    pub scenario: String,
    pub target: String,
    pub groups: usize,
    pub members: usize,
    pub conns: usize,
    pub workers: usize,
    pub connected: u64,
    pub failed_connects: u64,
    pub connect_s: f64,
    pub rate_per_group: f64,
    pub duration_s: f64,
    /// Measured window: start of sending → every subscriber caught up.
    pub window_s: f64,
    pub text_bytes: usize,
    pub sent: u64,
    pub acked: u64,
    pub duplicate_acks: u64,
    pub late_sends: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub deliveries_per_s: f64,
    pub acked_per_s: f64,
    pub mean_frame_bytes: f64,
    pub latency: hist::Summary,
    pub ack_latency: hist::Summary,
    /// Server CPU over the window, µs per delivery (per acked send for
    /// ingest), user and system.
    pub server_user_us_per_op: f64,
    pub server_sys_us_per_op: f64,
    pub server_cpu_pct: f64,
    pub rss_before_kib: u64,
    pub rss_connected_kib: u64,
    pub rss_per_conn_kib: f64,
    pub rss_after_kib: u64,
    pub resubscribed_ms: Option<u64>,
    pub resumed_ms: Option<u64>,
    pub resume_failed: u64,
    pub generator_cpu_pct: f64,
    /// Whole machine over the window, % of one core (200 = both cores).
    pub machine_cpu_pct: f64,
    /// Machine − server − generator: other processes competing for the
    /// cores during the window (should be near 0 for clean figures).
    pub other_cpu_pct: f64,
    /// Time the server's threads waited for a core while runnable, as % of
    /// the window (from schedstat): high means the figures were taken on a
    /// crowded machine.
    pub server_run_delay_pct: f64,
    pub login_ms: Vec<f64>,
    /// Change of the server's own `/metrics` counters over the window
    /// (villagehub only, one node): commits, batches, deliveries, overflows.
    pub server_metrics: BTreeMap<String, f64>,
    /// Cluster: each node's share. The `server_*` figures above are the
    /// sum over the nodes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeFigures>,
    /// Cluster: Redis's own CPU (not included in `server_*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<ProcessCpu>,
    /// Cluster: every node plus Redis, µs per delivery (target ≤ 6.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes_plus_redis_us_per_op: Option<f64>,
    pub errors: BTreeMap<String, u64>,
    pub violations: BTreeMap<String, u64>,
}

/// Issue 7's target for the cluster: nodes + Redis CPU per delivery.
pub const CLUSTER_TARGET_US_PER_OP: f64 = 6.5;

/// One process's CPU over the measured window, per delivery.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessCpu {
    pub user_us_per_op: f64,
    pub sys_us_per_op: f64,
    /// % of one core over the window.
    pub cpu_pct: f64,
    /// Runnable but waiting for a core, % of the window.
    pub run_delay_pct: f64,
}

impl ProcessCpu {
    fn new((user_us, sys_us): (u64, u64), delay_us: u64, ops: u64, window_s: f64) -> ProcessCpu {
        let ops = ops.max(1) as f64;
        let window_us = (window_s * 1e6).max(1.0);
        ProcessCpu {
            user_us_per_op: user_us as f64 / ops,
            sys_us_per_op: sys_us as f64 / ops,
            cpu_pct: (user_us + sys_us) as f64 / window_us * 100.0,
            run_delay_pct: delay_us as f64 / window_us * 100.0,
        }
    }

    pub fn us_per_op(&self) -> f64 {
        self.user_us_per_op + self.sys_us_per_op
    }
}

/// One cluster node's share of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeFigures {
    pub node: usize,
    /// Connections planned to this node.
    pub conns: usize,
    /// Whether every group's sender is connected here (node 0): this node
    /// runs the sequencing step for every post; the others only apply and
    /// fan out.
    pub sends: bool,
    /// Per delivery of the whole run (what adds up to the total).
    #[serde(flatten)]
    pub cpu: ProcessCpu,
    /// Deliveries this node wrote to its own connections (its `/metrics`)
    /// and its CPU per such delivery: comparable with a single server's
    /// figure, since each node pays its per-event costs (apply, commit,
    /// feed) for a third of the deliveries.
    pub own_deliveries: u64,
    pub us_per_own_delivery: f64,
    pub rss_connected_kib: u64,
    /// Change of the node's `/metrics` counters over the window.
    pub metrics: BTreeMap<String, f64>,
}

impl TargetResult {
    /// Server CPU per op, user + system.
    pub fn server_us_per_op(&self) -> f64 {
        self.server_user_us_per_op + self.server_sys_us_per_op
    }

    /// Everything the smoke run must not see.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.failed_connects > 0 {
            p.push(format!("{} connections failed", self.failed_connects));
        }
        if self.lost > 0 {
            p.push(format!("{} deliveries lost", self.lost));
        }
        if self.duplicates > 0 {
            p.push(format!("{} duplicate deliveries", self.duplicates));
        }
        if self.gaps > 0 {
            p.push(format!("{} seq gaps", self.gaps));
        }
        if self.target == "ours" && self.acked < self.sent {
            p.push(format!("{} of {} sends not acked", self.sent - self.acked, self.sent));
        }
        if self.resume_failed > 0 {
            p.push(format!("{} failed to resume", self.resume_failed));
        }
        for (k, v) in &self.errors {
            p.push(format!("error frame {k} × {v}"));
        }
        for (k, v) in &self.violations {
            p.push(format!("protocol violation: {k} × {v}"));
        }
        p
    }
}

/// Build one worker plan per generator process.
///
/// With several `urls` (the nodes of a cluster), member *i* of every group
/// connects to node *i* mod n: each group's subscribers are spread evenly
/// and every sender (member 0) is on node 0.
pub fn plan_workers(
    cfg: &RunConfig,
    target: Target,
    urls: &[String],
    members: &BTreeMap<u64, Vec<Member>>,
) -> Result<Vec<WorkerPlan>> {
    let url = urls.first().ok_or_else(|| anyhow!("no server to connect to"))?;
    if members.len() < cfg.groups {
        bail!("only {} groups seeded, {} asked", members.len(), cfg.groups);
    }
    let mut conns = Vec::with_capacity(cfg.conns());
    for (gi, (&group, list)) in members.iter().take(cfg.groups).enumerate() {
        if list.len() < cfg.members {
            bail!("group {group} has {} members, {} asked", list.len(), cfg.members);
        }
        for (mi, m) in list.iter().take(cfg.members).enumerate() {
            let send = match cfg.scenario {
                Scenario::Fanout | Scenario::Reconnect | Scenario::Cluster if mi == 0 => {
                    let period_us = (1e6 / cfg.rate.max(0.001)) as u64;
                    Some(SendPlan {
                        period_us,
                        // Spread the groups' posts over the period.
                        phase_us: period_us * gi as u64 / cfg.groups as u64,
                        window: cfg.window,
                    })
                }
                Scenario::Broadcast if mi == 0 => {
                    Some(SendPlan { period_us: cfg.interval_ms * 1000, phase_us: 0, window: cfg.window })
                }
                Scenario::Ingest if mi < cfg.senders_per_group => {
                    Some(SendPlan { period_us: 0, phase_us: 0, window: cfg.window })
                }
                _ => None,
            };
            let subscribe = match cfg.scenario {
                Scenario::Ingest => cfg.ingest_subscribe,
                _ => true,
            };
            let j = conns.len();
            let source_ip = cfg.spread_source_ips.then(|| {
                let k = j / cfg.conns_per_source_ip.max(1);
                Ipv4Addr::new(127, 0, (k / 250) as u8, 2 + (k % 250) as u8)
            });
            conns.push(ConnPlan {
                group,
                account: m.account,
                token: m.token.clone(),
                source_ip,
                url: (urls.len() > 1).then(|| urls[mi % urls.len()].clone()),
                subscribe,
                send,
            });
        }
    }
    let n = cfg.worker_count();
    let mut plans: Vec<WorkerPlan> = (0..n)
        .map(|w| WorkerPlan {
            worker: w,
            target,
            url: url.clone(),
            source_ip: None,
            conns: Vec::new(),
            text_bytes: cfg.text_bytes,
            connect_concurrency: cfg.connect_concurrency,
            strict: cfg.strict,
        })
        .collect();
    for (i, c) in conns.into_iter().enumerate() {
        plans[i % n].conns.push(c);
    }
    for p in &plans {
        if p.conns.len() > 19_000 {
            bail!("worker {} would hold {} connections: above the open-file limit", p.worker, p.conns.len());
        }
    }
    Ok(plans)
}

/// A running worker and the way to command it.
enum Handle {
    Process { child: tokio::process::Child, stdin: tokio::process::ChildStdin },
    Thread { tx: mpsc::UnboundedSender<Cmd>, join: Option<std::thread::JoinHandle<()>> },
}

impl Handle {
    async fn send(&mut self, cmd: &Cmd) -> Result<()> {
        match self {
            Handle::Process { stdin, .. } => {
                let mut line = serde_json::to_string(cmd)?;
                line.push('\n');
                stdin.write_all(line.as_bytes()).await?;
                stdin.flush().await?;
            }
            Handle::Thread { tx, .. } => {
                tx.send(cmd.clone()).map_err(|_| anyhow!("worker thread gone"))?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self) {
        let _ = self.send(&Cmd::Exit).await;
        match self {
            Handle::Process { child, .. } => {
                if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
            }
            Handle::Thread { join, .. } => {
                if let Some(j) = join.take() {
                    let _ = tokio::task::spawn_blocking(move || j.join()).await;
                }
            }
        }
    }
}

async fn spawn_workers(
    plans: Vec<WorkerPlan>,
    in_process: bool,
    reports: mpsc::UnboundedSender<Report>,
) -> Result<Vec<Handle>> {
    let mut handles = Vec::new();
    for plan in plans {
        let worker = plan.worker;
        if in_process {
            let (tx, rx) = mpsc::unbounded_channel();
            let rep = reports.clone();
            let join =
                std::thread::Builder::new().name(format!("bench-worker-{worker}")).spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("worker runtime");
                    if let Err(e) = rt.block_on(worker::run(plan, rx, rep.clone())) {
                        let _ = rep.send(Report::Fatal { worker, message: format!("{e:#}") });
                    }
                })?;
            handles.push(Handle::Thread { tx, join: Some(join) });
            continue;
        }
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker process")?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let rep = reports.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Report>(&line) {
                    Ok(r) => {
                        let _ = rep.send(r);
                    }
                    Err(e) => {
                        let _ = rep.send(Report::Fatal {
                            worker,
                            message: format!("unreadable report {line:?}: {e}"),
                        });
                    }
                }
            }
            let _ = rep.send(Report::Fatal { worker, message: "worker exited".into() });
        });
        let mut line = serde_json::to_string(&plan)?;
        line.push('\n');
        // The worker reads its plan before anything else, so this write of
        // a few megabytes (the tokens) completes as fast as the pipe drains.
        stdin.write_all(line.as_bytes()).await.context("sending the plan to a worker")?;
        handles.push(Handle::Process { child, stdin });
    }
    Ok(handles)
}

/// What the coordinator knows about its workers so far.
struct Board {
    label: String,
    latest: Vec<Progress>,
    ready: Vec<Option<(u64, u64, u64)>>,
    send_done: Vec<Option<Vec<(u64, u64)>>>,
    resumed: Vec<Option<(u64, u64, u64)>>,
    results: Vec<Option<WorkerResult>>,
    t0: Instant,
    last_print: Instant,
    last_delivered: u64,
    tty: bool,
    quiet: bool,
}

impl Board {
    fn new(label: String, n: usize, quiet: bool) -> Board {
        Board {
            label,
            latest: vec![Progress::default(); n],
            ready: vec![None; n],
            send_done: vec![None; n],
            resumed: vec![None; n],
            results: vec![None; n],
            t0: Instant::now(),
            last_print: Instant::now(),
            last_delivered: 0,
            tty: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    fn all<T>(v: &[Option<T>]) -> bool {
        v.iter().all(|x| x.is_some())
    }

    fn apply(&mut self, r: Report) -> Result<()> {
        match r {
            Report::Ready { worker, connected, failed, connect_ms } => {
                self.ready[worker] = Some((connected, failed, connect_ms))
            }
            Report::Progress(p) => {
                let w = p.worker;
                self.latest[w] = p;
            }
            Report::SendDone { worker, final_seq } => self.send_done[worker] = Some(final_seq),
            Report::Resumed { worker, resubscribed_ms, caught_up_ms, failed } => {
                self.resumed[worker] = Some((resubscribed_ms, caught_up_ms, failed))
            }
            Report::Result(r) => {
                let w = r.worker;
                self.results[w] = Some(*r);
            }
            Report::Fatal { worker, message } => {
                if self.results.get(worker).is_some_and(|r| r.is_none()) {
                    bail!("worker {worker}: {message}");
                }
            }
        }
        Ok(())
    }

    fn print_progress(&mut self, force: bool) {
        if self.quiet {
            return;
        }
        let every = if self.tty { 1.0 } else { 5.0 };
        let dt = self.last_print.elapsed().as_secs_f64();
        if !force && dt < every {
            return;
        }
        let sum = |f: fn(&Progress) -> u64| self.latest.iter().map(f).sum::<u64>();
        let delivered = sum(|p| p.delivered);
        let rate = (delivered.saturating_sub(self.last_delivered)) as f64 / dt.max(0.001);
        let line = format!(
            "[{} {:5.1}s] conns {} delivered {} ({:.0}/s) sent {} acked {} errors {}",
            self.label,
            self.t0.elapsed().as_secs_f64(),
            sum(|p| p.connected),
            delivered,
            rate,
            sum(|p| p.sent),
            sum(|p| p.acked),
            sum(|p| p.errors),
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        self.last_delivered = delivered;
        self.last_print = Instant::now();
    }

    fn end_progress(&self) {
        if self.tty && !self.quiet {
            eprintln!();
        }
    }

    /// Take reports until `done` holds (true) or `deadline` passes (false).
    async fn wait(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Report>,
        deadline: Instant,
        done: impl Fn(&Board) -> bool,
    ) -> Result<bool> {
        loop {
            if done(self) {
                return Ok(true);
            }
            let tick = tokio::time::sleep(Duration::from_millis(250));
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => self.apply(r)?,
                    None => bail!("every worker is gone"),
                },
                _ = tick => {}
                _ = tokio::time::sleep_until(deadline.into()) => return Ok(done(self)),
            }
            self.print_progress(false);
        }
    }
}

/// The processes whose CPU and memory a run reads from `/proc`: the server
/// (villagehub, the peer, or every node of a cluster) and, in a cluster,
/// Redis.
struct Measured {
    /// (pid, HTTP port) of each server process.
    nodes: Vec<(String, u16)>,
    redis: Option<String>,
}

impl Measured {
    fn sample_nodes(&self) -> Result<Vec<procfs::Sample>> {
        self.nodes.iter().map(|(pid, _)| procfs::sample(pid)).collect()
    }

    fn sample_redis(&self) -> Result<Option<procfs::Sample>> {
        self.redis.as_deref().map(procfs::sample).transpose()
    }

    fn run_delays(&self) -> Vec<u64> {
        self.nodes.iter().map(|(pid, _)| procfs::run_delay_us(pid)).collect()
    }

    async fn metrics(&self) -> Vec<Option<BTreeMap<String, f64>>> {
        let mut v = Vec::with_capacity(self.nodes.len());
        for (_, port) in &self.nodes {
            v.push(servers::scrape_metrics(*port).await);
        }
        v
    }
}

fn total_rss(samples: &[procfs::Sample]) -> u64 {
    samples.iter().map(|s| s.rss_kib).sum()
}

/// Drive one target through the scenario. `servers` holds one server, or
/// the nodes of a cluster (members are then spread over them, see
/// `plan_workers`); `redis_pid` is the cluster's Redis, measured apart.
pub async fn run_target(
    cfg: &RunConfig,
    target: Target,
    servers: &[&Server],
    redis_pid: Option<u32>,
    members: &BTreeMap<u64, Vec<Member>>,
) -> Result<TargetResult> {
    let urls: Vec<String> = servers.iter().map(|s| s.ws_url.clone()).collect();
    let plans = plan_workers(cfg, target, &urls, members)?;
    let n = plans.len();
    let label = format!("{}/{}", cfg.scenario.as_str(), target.as_str());
    let measured = Measured {
        nodes: servers.iter().map(|s| (s.pid.to_string(), s.http_port)).collect(),
        redis: redis_pid.map(|p| p.to_string()),
    };
    let before = measured.sample_nodes()?;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut handles = spawn_workers(plans, cfg.in_process, tx).await?;
    let mut board = Board::new(label.clone(), n, cfg.quiet);
    let result = drive(cfg, &measured, &mut board, &mut rx, &mut handles, &before).await;
    board.end_progress();
    for h in &mut handles {
        h.finish().await;
    }
    let mut r = result?;
    r.target = target.as_str().into();
    r.workers = n;
    Ok(r)
}

async fn drive(
    cfg: &RunConfig,
    measured: &Measured,
    board: &mut Board,
    rx: &mut mpsc::UnboundedReceiver<Report>,
    handles: &mut [Handle],
    before: &[procfs::Sample],
) -> Result<TargetResult> {
    let conns = cfg.conns();
    // Connect: allow ~2 ms per connection on top of a minute.
    let connect_deadline = Instant::now() + Duration::from_secs(60 + conns as u64 / 500);
    if !board.wait(rx, connect_deadline, |b| Board::all(&b.ready)).await? {
        bail!("not every worker connected its members in time");
    }
    let connect_s = board.t0.elapsed().as_secs_f64();
    let (connected, failed) = board.ready.iter().flatten().fold((0, 0), |(c, f), r| (c + r.0, f + r.1));
    if connected == 0 {
        bail!("no connection could be made ({failed} failed)");
    }
    if cfg.settle_ms > 0 {
        let settle = Instant::now() + Duration::from_millis(cfg.settle_ms);
        board.wait(rx, settle, |_| false).await?;
    }
    let connected_samples = measured.sample_nodes()?;
    let (rss_before, rss_connected) = (total_rss(before), total_rss(&connected_samples));

    let mut r = TargetResult {
        scenario: cfg.scenario.as_str().into(),
        groups: cfg.groups,
        members: cfg.members,
        conns,
        connected,
        failed_connects: failed,
        connect_s,
        rate_per_group: cfg.rate,
        text_bytes: cfg.text_bytes,
        rss_before_kib: rss_before,
        rss_connected_kib: rss_connected,
        rss_per_conn_kib: (rss_connected as f64 - rss_before as f64) / connected.max(1) as f64,
        ..Default::default()
    };

    if cfg.scenario == Scenario::Idle {
        for h in handles.iter_mut() {
            h.send(&Cmd::Exit).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        board.wait(rx, deadline, |b| Board::all(&b.results)).await?;
        merge_results(cfg, board, &mut r, 0.0, (0, 0), 1.0);
        r.rss_after_kib = total_rss(&measured.sample_nodes()?);
        return Ok(r);
    }

    // Run.
    let metrics0 = measured.metrics().await;
    let cpu0 = measured.sample_nodes()?;
    let redis0 = measured.sample_redis()?;
    let delay0 = measured.run_delays();
    let redis_delay0 = measured.redis.as_deref().map(procfs::run_delay_us).unwrap_or(0);
    let machine0 = procfs::machine_cpu()?;
    let start_ns = now_ns() + 500_000_000;
    let t_start = Instant::now() + Duration::from_millis(500);
    for h in handles.iter_mut() {
        h.send(&Cmd::Start { at_ns: start_ns, duration_ms: cfg.duration_ms }).await?;
    }
    if let Some(drop_at) = cfg.drop_at_ms {
        let at = t_start + Duration::from_millis(drop_at);
        board.wait(rx, at, |_| false).await?;
        for h in handles.iter_mut() {
            h.send(&Cmd::Drop).await?;
        }
        let t_drop = Instant::now();
        let deadline = t_drop + Duration::from_secs(60 + conns as u64 / 200);
        if board.wait(rx, deadline, |b| Board::all(&b.resumed)).await? {
            r.resubscribed_ms = board.resumed.iter().flatten().map(|x| x.0).max();
            r.resumed_ms = Some(t_drop.elapsed().as_millis() as u64)
                .max(board.resumed.iter().flatten().map(|x| x.1).max());
            r.resume_failed = board.resumed.iter().flatten().map(|x| x.2).sum();
        } else {
            r.resume_failed = conns as u64;
            eprintln!("\n{}: not every client resumed within the deadline", board.label);
        }
    }
    let send_deadline = t_start + Duration::from_millis(cfg.duration_ms) + Duration::from_secs(60);
    if !board.wait(rx, send_deadline, |b| Board::all(&b.send_done)).await? {
        bail!("senders did not finish in time");
    }
    let mut final_seq: BTreeMap<u64, u64> = BTreeMap::new();
    for m in board.send_done.iter().flatten() {
        for &(g, s) in m {
            let e = final_seq.entry(g).or_default();
            *e = (*e).max(s);
        }
    }
    for h in handles.iter_mut() {
        h.send(&Cmd::Drain {
            final_seq: final_seq.iter().map(|(&g, &s)| (g, s)).collect(),
            timeout_ms: cfg.drain_timeout_ms,
        })
        .await?;
    }
    let deadline = Instant::now() + Duration::from_millis(cfg.drain_timeout_ms) + Duration::from_secs(30);
    if !board.wait(rx, deadline, |b| Board::all(&b.results)).await? {
        bail!("workers did not report their results in time");
    }
    let window = t_start.elapsed().as_secs_f64();
    let cpu1 = measured.sample_nodes()?;
    let redis1 = measured.sample_redis()?;
    let machine1 = procfs::machine_cpu()?;
    let delay1 = measured.run_delays();
    let redis_delay1 = measured.redis.as_deref().map(procfs::run_delay_us).unwrap_or(0);
    let metrics1 = measured.metrics().await;
    // Counters only: gauges (connections) move as the drain closes sockets,
    // and histogram buckets add nothing to the sums.
    let counter = |k: &str| k.ends_with("_total") || k.ends_with("_sum") || k.ends_with("_count");
    let metrics: Vec<BTreeMap<String, f64>> = metrics0
        .iter()
        .zip(&metrics1)
        .map(|pair| match pair {
            (Some(m0), Some(m1)) => m1
                .iter()
                .filter(|(k, _)| counter(k))
                .map(|(k, v1)| (k.clone(), v1 - m0.get(k).copied().unwrap_or(0.0)))
                .collect(),
            _ => BTreeMap::new(),
        })
        .collect();
    board.print_progress(true);
    r.rss_after_kib = total_rss(&cpu1);
    r.duration_s = cfg.duration_ms as f64 / 1000.0;
    let node_cpu: Vec<(u64, u64)> = cpu1.iter().zip(&cpu0).map(|(b, a)| b.cpu_since(a)).collect();
    let server_cpu = node_cpu.iter().fold((0, 0), |(u, s), c| (u + c.0, s + c.1));
    merge_results(cfg, board, &mut r, window, server_cpu, window);
    let node_delay: Vec<u64> = delay1.iter().zip(&delay0).map(|(b, a)| b.saturating_sub(*a)).collect();
    if measured.nodes.len() == 1 {
        r.server_metrics = metrics.into_iter().next().unwrap_or_default();
    } else {
        let n = measured.nodes.len();
        r.nodes = (0..n)
            .map(|i| {
                let own = metrics[i].get("villagehub_deliveries_total").copied().unwrap_or(0.0) as u64;
                let (user, sys) = node_cpu[i];
                NodeFigures {
                    node: i,
                    conns: (0..cfg.members).filter(|m| m % n == i).count() * cfg.groups,
                    sends: i == 0,
                    cpu: ProcessCpu::new(node_cpu[i], node_delay[i], r.delivered, window),
                    own_deliveries: own,
                    us_per_own_delivery: (user + sys) as f64 / own.max(1) as f64,
                    rss_connected_kib: connected_samples[i].rss_kib,
                    metrics: metrics[i].clone(),
                }
            })
            .collect();
    }
    let mut redis_pct = 0.0;
    if let (Some(a), Some(b)) = (redis0, redis1) {
        let redis =
            ProcessCpu::new(b.cpu_since(&a), redis_delay1.saturating_sub(redis_delay0), r.delivered, window);
        redis_pct = redis.cpu_pct;
        r.nodes_plus_redis_us_per_op = Some(r.server_us_per_op() + redis.us_per_op());
        r.redis = Some(redis);
    }
    let busy = machine1.0.saturating_sub(machine0.0) as f64;
    r.machine_cpu_pct = busy / (window * 1e6) * 100.0;
    r.other_cpu_pct = (r.machine_cpu_pct - r.server_cpu_pct - redis_pct - r.generator_cpu_pct).max(0.0);
    r.server_run_delay_pct = node_delay.iter().sum::<u64>() as f64 / (window * 1e6) * 100.0;
    Ok(r)
}

fn merge_results(
    cfg: &RunConfig,
    board: &Board,
    r: &mut TargetResult,
    window_s: f64,
    (user_us, sys_us): (u64, u64),
    gen_window_s: f64,
) {
    let mut lat = hist::new();
    let mut ack = hist::new();
    let mut gen_cpu_us = 0u64;
    for w in board.results.iter().flatten() {
        r.delivered += w.delivered;
        r.expected += w.expected;
        r.duplicates += w.duplicates;
        r.gaps += w.gaps;
        r.sent += w.sent;
        r.acked += w.acked;
        r.duplicate_acks += w.duplicate_acks;
        r.late_sends += w.late_sends;
        r.mean_frame_bytes += w.bytes as f64;
        for (k, v) in &w.errors {
            *r.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &w.violations {
            *r.violations.entry(k.clone()).or_default() += v;
        }
        hist::add_pairs(&mut lat, &w.latency);
        hist::add_pairs(&mut ack, &w.ack_latency);
        gen_cpu_us += w.own_user_us + w.own_sys_us;
    }
    let frames: u64 = board.results.iter().flatten().map(|w| w.frames).sum();
    r.mean_frame_bytes /= frames.max(1) as f64;
    r.lost = r.expected.saturating_sub(r.delivered);
    r.latency = hist::summary(&lat);
    r.ack_latency = hist::summary(&ack);
    r.window_s = window_s;
    if window_s > 0.0 {
        r.deliveries_per_s = r.delivered as f64 / window_s;
        r.acked_per_s = r.acked as f64 / window_s;
        r.server_cpu_pct = (user_us + sys_us) as f64 / (window_s * 1e6) * 100.0;
        r.generator_cpu_pct = gen_cpu_us as f64 / (gen_window_s * 1e6) * 100.0;
    }
    // Ingest is about sends; everything else about deliveries.
    let ops = if cfg.scenario == Scenario::Ingest && !cfg.ingest_subscribe { r.acked } else { r.delivered };
    if ops > 0 {
        r.server_user_us_per_op = user_us as f64 / ops as f64;
        r.server_sys_us_per_op = sys_us as f64 / ops as f64;
    }
}

/// Where the servers come from.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// villagehub binary to seed and start (ignored with `server_url`).
    pub server_bin: Option<PathBuf>,
    /// An already running, already seeded villagehub.
    pub server_url: Option<String>,
    pub server_pid: Option<u32>,
    pub tokens: Option<PathBuf>,
    /// Extra flags for `villagehub` (after the bench's own).
    pub server_args: Vec<String>,
    pub peer_script: PathBuf,
    pub peer_url: Option<String>,
    pub peer_pid: Option<u32>,
    /// Real logins to time through `POST /api/login`.
    pub logins: usize,
    pub keep_data: bool,
    /// Cluster: the `redis-server` binary (default: from `PATH`).
    pub redis_server: Option<String>,
}

/// The outcome of a whole run: each target's figures and the setup facts.
#[derive(Debug, Default)]
pub struct Outcome {
    pub results: Vec<TargetResult>,
    pub seed_s: Option<f64>,
    pub notes: Vec<String>,
}

/// Run `cfg` against the servers of `env`: seed, start, measure, stop.
pub async fn execute(cfg: &RunConfig, env: &Env) -> Result<Outcome> {
    let mut out = Outcome::default();
    for &target in &cfg.targets {
        if target == Target::Peer && !cfg.scenario.peer_applies() {
            out.notes.push(format!(
                "peer skipped: the ws relay has no {} semantics",
                match cfg.scenario {
                    Scenario::Ingest => "durable-ack",
                    Scenario::Cluster => "cluster",
                    _ => "resume",
                }
            ));
            continue;
        }
        if cfg.wait_idle_ms > 0 {
            wait_idle(Duration::from_millis(cfg.wait_idle_ms), cfg.quiet).await?;
        }
        let r = match target {
            Target::Ours if cfg.scenario == Scenario::Cluster => run_cluster(cfg, env, &mut out).await?,
            Target::Ours => run_ours(cfg, env, &mut out).await?,
            Target::Peer => run_peer(cfg, env).await?,
        };
        if !cfg.quiet {
            eprintln!("{}", summary_line(&r));
        }
        out.results.push(r);
    }
    Ok(out)
}

/// Wait until the machine's CPU use over one second is below 25 % of a
/// core, or `limit` has passed (then go on, and say so).
async fn wait_idle(limit: Duration, quiet: bool) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let a = procfs::machine_cpu()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = procfs::machine_cpu()?;
        let pct = (b.0 - a.0) as f64 / 1e4;
        if pct < 25.0 {
            return Ok(());
        }
        if t0.elapsed() >= limit {
            if !quiet {
                eprintln!("machine still busy ({pct:.0} % of a core) after {limit:?}; running anyway");
            }
            return Ok(());
        }
        if !quiet {
            eprint!("\rwaiting for the machine to be idle ({pct:.0} % of a core busy)…");
        }
    }
}

async fn run_ours(cfg: &RunConfig, env: &Env, out: &mut Outcome) -> Result<TargetResult> {
    if let Some(url) = &env.server_url {
        let pid = env.server_pid.ok_or_else(|| anyhow!("--server-url needs --server-pid (for /proc)"))?;
        let tokens =
            env.tokens.as_ref().ok_or_else(|| anyhow!("--server-url needs --tokens (from bench-seed)"))?;
        let members = servers::load_members(tokens)?;
        let server = Server::external("villagehub", pid, url.clone());
        let mut r = run_target(cfg, Target::Ours, &[&server], None, &members).await?;
        r.login_ms = logins(env, &server, &members).await;
        return Ok(r);
    }
    let bin = env.server_bin.clone().ok_or_else(|| anyhow!("give --server-bin (or --server-url)"))?;
    let dir = scratch_dir()?;
    let t0 = Instant::now();
    let tokens = servers::seed(&bin, &dir, cfg.groups, cfg.members, None)?;
    out.seed_s = Some(t0.elapsed().as_secs_f64());
    let members = servers::load_members(&tokens)?;
    let mut server = servers::start_ours(&bin, &dir, &server_args(env), None)?;
    let result = run_target(cfg, Target::Ours, &[&server], None, &members).await;
    let login_ms = match &result {
        Ok(_) => logins(env, &server, &members).await,
        Err(_) => Vec::new(),
    };
    server.stop();
    if env.keep_data || result.is_err() {
        eprintln!("data dir and server log kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut r = result?;
    r.login_ms = login_ms;
    Ok(r)
}

/// villagehub's flags for a bench run: the rate limit lifted (unless the
/// caller sets it), then the caller's `--server-arg`s.
fn server_args(env: &Env) -> Vec<String> {
    let mut args = Vec::new();
    if !env.server_args.iter().any(|a| a.starts_with("--ops-per-sec")) {
        // Senders post faster than a resident would; the limit is not what
        // is measured here.
        args.extend(["--ops-per-sec", "1000000", "--burst", "1000000"].map(String::from));
    }
    args.extend(env.server_args.iter().cloned());
    args
}

/// Scenario (e): start Redis, seed once through it, start `cfg.nodes`
/// nodes on it, wait until each is caught up, run the fan-out with the
/// members spread over the nodes, stop everything.
async fn run_cluster(cfg: &RunConfig, env: &Env, out: &mut Outcome) -> Result<TargetResult> {
    if env.server_url.is_some() {
        bail!("the cluster scenario starts its own Redis and nodes: --server-url is not supported");
    }
    let bin = env.server_bin.clone().ok_or_else(|| anyhow!("give --server-bin"))?;
    let dir = scratch_dir()?;
    let result = run_cluster_in(cfg, env, out, &bin, &dir).await;
    if env.keep_data || result.is_err() {
        eprintln!("data dirs, server and Redis logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_cluster_in(
    cfg: &RunConfig,
    env: &Env,
    out: &mut Outcome,
    bin: &std::path::Path,
    dir: &std::path::Path,
) -> Result<TargetResult> {
    let redis_bin = env.redis_server.as_deref().unwrap_or("redis-server");
    let mut redis = servers::start_redis(redis_bin, &dir.join("redis"), &cfg.redis_appendfsync)?;
    let link = ClusterLink {
        redis_url: redis.url(),
        // Fresh per run (≥ 32 characters); only these processes know it.
        token_key: format!("villagehub-bench-cluster-{}-{}", std::process::id(), now_ns()),
    };
    let t0 = Instant::now();
    let tokens = servers::seed(bin, &dir.join("seed"), cfg.groups, cfg.members, Some(&link))?;
    out.seed_s = Some(t0.elapsed().as_secs_f64());
    let members = servers::load_members(&tokens)?;
    let args = server_args(env);
    let mut nodes = Vec::with_capacity(cfg.nodes);
    for i in 0..cfg.nodes.max(1) {
        nodes.push(servers::start_ours(bin, &dir.join(format!("node{i}")), &args, Some(&link))?);
    }
    for node in &nodes {
        // A node that is not caught up would refuse the seeded tokens'
        // accounts; catching up 5,000 members takes a second or two.
        servers::wait_ready(node.http_port, Duration::from_secs(60 + cfg.conns() as u64 / 100)).await?;
    }
    out.notes.push(format!(
        "cluster: Redis (appendonly, appendfsync {}) and {} villagehub nodes; member i of every group connects to node i mod {}, so every group's sender is on node 0 (which runs the sequencing step for every post) and the other nodes apply and fan out",
        cfg.redis_appendfsync,
        nodes.len(),
        nodes.len()
    ));
    let refs: Vec<&Server> = nodes.iter().collect();
    let result = run_target(cfg, Target::Ours, &refs, Some(redis.pid), &members).await;
    let login_ms = match &result {
        Ok(_) => logins(env, &nodes[0], &members).await,
        Err(_) => Vec::new(),
    };
    for node in &mut nodes {
        node.stop();
    }
    redis.stop();
    let mut r = result?;
    r.login_ms = login_ms;
    Ok(r)
}

async fn logins(env: &Env, server: &Server, members: &BTreeMap<u64, Vec<Member>>) -> Vec<f64> {
    if env.logins == 0 {
        return Vec::new();
    }
    let phones: Vec<String> = members
        .values()
        .flatten()
        .map(|m| m.phone.clone())
        .filter(|p| !p.is_empty())
        .take(env.logins)
        .collect();
    match servers::measure_logins(server.http_port, &phones, "bench1234").await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("login measurement failed: {e:#}");
            Vec::new()
        }
    }
}

async fn run_peer(cfg: &RunConfig, env: &Env) -> Result<TargetResult> {
    // The relay needs no accounts: synthesise members with the same shape.
    let mut members = BTreeMap::new();
    for g in 1..=cfg.groups as u64 {
        let list: Vec<Member> = (0..cfg.members as u64)
            .map(|i| Member {
                group: g,
                account: g * 100_000 + i,
                phone: String::new(),
                token: String::new(),
            })
            .collect();
        members.insert(g, list);
    }
    if let Some(url) = &env.peer_url {
        let pid = env.peer_pid.ok_or_else(|| anyhow!("--peer-url needs --peer-pid (for /proc)"))?;
        let server = Server::external("ws@8 peer", pid, url.clone());
        return run_target(cfg, Target::Peer, &[&server], None, &members).await;
    }
    let mut server = servers::start_peer(&env.peer_script)?;
    let r = run_target(cfg, Target::Peer, &[&server], None, &members).await;
    server.stop();
    r
}

fn scratch_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "villagehub-bench-{}-{}",
        std::process::id(),
        now_ns() / 1_000_000
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// One human line per target, printed as soon as it is measured.
pub fn summary_line(r: &TargetResult) -> String {
    format!(
        "{}/{}: {} conns, {:.0} deliveries/s, lost {}, dup {}, p50 {} µs p99 {} µs max {} µs, server {:.2}+{:.2} µs/op (user+sys), RSS {:.1} KiB/conn{}",
        r.scenario,
        r.target,
        r.connected,
        r.deliveries_per_s,
        r.lost,
        r.duplicates,
        r.latency.p50_us,
        r.latency.p99_us,
        r.latency.max_us,
        r.server_user_us_per_op,
        r.server_sys_us_per_op,
        r.rss_per_conn_kib,
        r.resumed_ms
            .map(|ms| format!(", resumed in {ms} ms"))
            .unwrap_or_default()
    ) + &r
        .nodes_plus_redis_us_per_op
        .map(|t| {
            format!(
                "; nodes + Redis {t:.2} µs/delivery (Redis {:.2}; target ≤ {CLUSTER_TARGET_US_PER_OP})",
                r.redis.as_ref().map(|x| x.us_per_op()).unwrap_or(0.0)
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(groups: u64, per_group: u64) -> BTreeMap<u64, Vec<Member>> {
        (1..=groups)
            .map(|g| {
                let list = (0..per_group)
                    .map(|i| Member {
                        group: g,
                        account: g * 1000 + i,
                        phone: String::new(),
                        token: "t".into(),
                    })
                    .collect();
                (g, list)
            })
            .collect()
    }

    #[test]
    fn cluster_members_are_spread_over_the_nodes_with_every_sender_on_node_0() {
        let mut cfg = RunConfig::cluster_smoke();
        cfg.members = 7;
        let urls: Vec<String> = (0..3).map(|i| format!("ws://127.0.0.1:{}/ws", 4000 + i)).collect();
        let plans = plan_workers(&cfg, Target::Ours, &urls, &members(2, 7)).unwrap();
        let conns: Vec<&ConnPlan> = plans.iter().flat_map(|p| &p.conns).collect();
        assert_eq!(conns.len(), 14);
        for c in &conns {
            let i = (c.account % 1000) as usize;
            assert_eq!(c.url.as_deref(), Some(urls[i % 3].as_str()), "member {i}");
            assert_eq!(c.send.is_some(), i == 0, "member {i}");
            assert!(c.subscribe);
        }
    }

    #[test]
    fn one_server_needs_no_url_per_connection() {
        let cfg = RunConfig::smoke();
        let plans =
            plan_workers(&cfg, Target::Ours, &["ws://127.0.0.1:4000/ws".into()], &members(2, 5)).unwrap();
        assert!(plans.iter().flat_map(|p| &p.conns).all(|c| c.url.is_none()));
    }
}
