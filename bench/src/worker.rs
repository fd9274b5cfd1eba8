//! A worker: one process (or, for the smoke run, one thread) holding up to a
//! few thousand synthetic members' connections, each a task that speaks the
//! real protocol, posts on schedule and checks every event it receives.
//!
//! The worker owns no policy: the coordinator decides when to start, drop
//! and drain. It never blocks on one connection: each member is its own task
//! and they share only counters, two histograms and the current phase.

use crate::hist;
use crate::plan::{Cmd, ConnPlan, Progress, Report, Target, WorkerPlan, WorkerResult};
use crate::procfs;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use protocol::{Author, Channel, ClientOp, Event, EventBody, MessageBody, Role, ServerFrame};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

/// Nanoseconds since the epoch on CLOCK_REALTIME. Every process of the run
/// reads the same clock, so a timestamp written by a sender in one worker can
/// be subtracted from the receive time in another.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// The instant at which CLOCK_REALTIME will read `ns` (now if past).
fn instant_at(ns: i64) -> Instant {
    let delta = ns - now_ns();
    if delta <= 0 {
        Instant::now()
    } else {
        Instant::now() + Duration::from_nanos(delta as u64)
    }
}

/// How long a handshake or a connect may take before it is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts per connection before it counts as failed.
const CONNECT_ATTEMPTS: u32 = 5;
/// How long a sender waits for its last acks after the run before giving up.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

/// The phase every connection task follows. Cumulative (never reset), so a
/// task that wakes late still sees every step.
#[derive(Clone, Default)]
struct Phase {
    /// Senders post between these CLOCK_REALTIME instants.
    run: Option<(i64, i64)>,
    /// Bumped by every `drop` command.
    drop_gen: u32,
    /// Final seq per group and the deadline to reach it.
    drain: Option<(Arc<BTreeMap<u64, u64>>, Instant)>,
    exit: bool,
}

/// Counters and histograms shared by the tasks of one worker. The worker
/// runs on a current-thread runtime, so the mutexes are never contended.
struct Shared {
    plan: Arc<WorkerPlan>,
    addr: SocketAddr,
    ws_config: WebSocketConfig,
    /// Bounds handshakes in flight so the server's accept backlog is not
    /// overrun (a dropped SYN costs a 1 s retransmit).
    connect_gate: Semaphore,
    connected: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    senders_done: AtomicU64,
    resubscribed: AtomicU64,
    caught_up: AtomicU64,
    resume_failed: AtomicU64,
    final_seq: Mutex<BTreeMap<u64, u64>>,
    latency: Mutex<Histogram<u64>>,
    ack_latency: Mutex<Histogram<u64>>,
    /// Per-connection tallies merged when each task ends.
    result: Mutex<WorkerResult>,
    /// Wakes the worker's main loop when a counter it waits on moves.
    changed: Notify,
}

/// Run one worker until `Exit` (or the command channel closes).
pub async fn run(
    plan: WorkerPlan,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    reports: mpsc::UnboundedSender<Report>,
) -> Result<()> {
    let worker = plan.worker;
    let addr = addr_of(&plan.url)?;
    // Fail before connecting anyone if a member's own node URL is unusable.
    for cp in &plan.conns {
        if let Some(url) = &cp.url {
            addr_of(url)?;
        }
    }
    let n = plan.conns.len() as u64;
    let n_senders = plan.conns.iter().filter(|c| c.send.is_some()).count() as u64;
    let sh = Arc::new(Shared {
        addr,
        ws_config: WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0),
        connect_gate: Semaphore::new(plan.connect_concurrency.max(1)),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        senders_done: AtomicU64::new(0),
        resubscribed: AtomicU64::new(0),
        caught_up: AtomicU64::new(0),
        resume_failed: AtomicU64::new(0),
        final_seq: Mutex::new(BTreeMap::new()),
        latency: Mutex::new(hist::new()),
        ack_latency: Mutex::new(hist::new()),
        result: Mutex::new(WorkerResult { worker, ..Default::default() }),
        changed: Notify::new(),
        plan: Arc::new(plan),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::default());
    let mut tasks = Vec::with_capacity(n as usize);
    for (idx, cp) in sh.plan.conns.iter().enumerate() {
        let conn = Conn::new(idx, cp.clone(), sh.clone());
        tasks.push(tokio::spawn(conn.run(phase_rx.clone())));
    }
    drop(phase_rx);

    let progress = |sh: &Shared| {
        Report::Progress(Progress {
            worker,
            connected: sh.connected.load(Relaxed),
            delivered: sh.delivered.load(Relaxed),
            sent: sh.sent.load(Relaxed),
            acked: sh.acked.load(Relaxed),
            errors: sh.errors.load(Relaxed),
        })
    };

    // Connect everyone.
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while sh.connected.load(Relaxed) + sh.failed.load(Relaxed) < n {
        tokio::select! {
            _ = sh.changed.notified() => {}
            _ = tick.tick() => { let _ = reports.send(progress(&sh)); }
        }
    }
    let _ = reports.send(Report::Ready {
        worker,
        connected: sh.connected.load(Relaxed),
        failed: sh.failed.load(Relaxed),
        connect_ms: t0.elapsed().as_millis() as u64,
    });

    // Follow the coordinator.
    let mut own0 = procfs::sample("self").unwrap_or_default();
    let mut send_done_reported = n_senders == 0;
    let mut drop_at: Option<Instant> = None;
    let mut resubscribed_ms = None;
    let mut finishing = false;
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Start { at_ns, duration_ms }) => {
                    own0 = procfs::sample("self").unwrap_or_default();
                    let end = at_ns + duration_ms as i64 * 1_000_000;
                    phase_tx.send_modify(|p| p.run = Some((at_ns, end)));
                    if n_senders == 0 {
                        let _ = reports.send(Report::SendDone { worker, final_seq: Vec::new() });
                    }
                }
                Some(Cmd::Drop) => {
                    drop_at = Some(Instant::now());
                    resubscribed_ms = None;
                    phase_tx.send_modify(|p| p.drop_gen += 1);
                }
                Some(Cmd::Drain { final_seq, timeout_ms }) => {
                    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
                    let final_seq: BTreeMap<u64, u64> = final_seq.into_iter().collect();
                    phase_tx.send_modify(|p| p.drain = Some((Arc::new(final_seq), deadline)));
                    finishing = true;
                }
                Some(Cmd::Exit) | None => {
                    phase_tx.send_modify(|p| p.exit = true);
                    finishing = true;
                }
            },
            _ = sh.changed.notified() => {}
            _ = tick.tick() => { let _ = reports.send(progress(&sh)); }
        }
        if !send_done_reported && sh.senders_done.load(Relaxed) >= n_senders {
            send_done_reported = true;
            let final_seq = sh.final_seq.lock().unwrap().iter().map(|(&g, &s)| (g, s)).collect();
            let _ = reports.send(Report::SendDone { worker, final_seq });
        }
        if let Some(at) = drop_at {
            let live = sh.connected.load(Relaxed);
            let failed = sh.resume_failed.load(Relaxed);
            if resubscribed_ms.is_none() && sh.resubscribed.load(Relaxed) + failed >= live {
                resubscribed_ms = Some(at.elapsed().as_millis() as u64);
            }
            if let Some(resub) = resubscribed_ms {
                if sh.caught_up.load(Relaxed) + failed >= live {
                    let _ = reports.send(Report::Resumed {
                        worker,
                        resubscribed_ms: resub,
                        caught_up_ms: at.elapsed().as_millis() as u64,
                        failed,
                    });
                    drop_at = None;
                }
            }
        }
        if finishing {
            break;
        }
    }

    // Wait for every connection to finish its drain, still reporting.
    let mut all = futures_util::future::join_all(tasks);
    loop {
        tokio::select! {
            _ = &mut all => break,
            _ = tick.tick() => { let _ = reports.send(progress(&sh)); }
        }
    }
    let own1 = procfs::sample("self").unwrap_or_default();
    let (own_user_us, own_sys_us) = own1.cpu_since(&own0);
    let mut result = std::mem::take(&mut *sh.result.lock().unwrap());
    result.worker = worker;
    result.connected = sh.connected.load(Relaxed);
    result.failed_connects = sh.failed.load(Relaxed);
    result.sent = sh.sent.load(Relaxed);
    result.acked = sh.acked.load(Relaxed);
    result.latency = hist::to_pairs(&sh.latency.lock().unwrap());
    result.ack_latency = hist::to_pairs(&sh.ack_latency.lock().unwrap());
    result.own_user_us = own_user_us;
    result.own_sys_us = own_sys_us;
    let _ = reports.send(Report::Result(Box::new(result)));

    // Stay until told to exit, so that the coordinator decides when the
    // sockets close (after it has read the server's figures).
    if !phase_tx.borrow().exit {
        while let Some(cmd) = cmds.recv().await {
            if matches!(cmd, Cmd::Exit) {
                break;
            }
        }
    }
    Ok(())
}

/// `ws://127.0.0.1:8080/ws` → 127.0.0.1:8080.
fn addr_of(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow!("url must start with ws://: {url}"))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport.parse().with_context(|| format!("url must name an IPv4 address and port: {url}"))
}

/// The few fields of a server frame the receive path needs. Unknown fields
/// (author, ts, channel, …) are skipped by serde without allocating.
#[derive(Deserialize)]
struct LiteFrame<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    group: Option<u64>,
    seq: Option<u64>,
    #[serde(borrow)]
    body: Option<LiteBody<'a>>,
}

#[derive(Deserialize)]
struct LiteBody<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

/// A send waiting for its `sent` reply; kept so that it can be re-sent with
/// the same `client_key` after a reconnect.
struct InFlight {
    id: u64,
    json: String,
    at: Instant,
}

/// Why the main loop of a connection stopped reading.
enum Wake {
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Phase(bool),
    Timer,
}

/// One synthetic member.
struct Conn {
    idx: usize,
    cp: ConnPlan,
    sh: Arc<Shared>,
    /// Head at the first subscribe: events above it are expected.
    base: Option<u64>,
    /// Last seq received in order.
    last: u64,
    /// After a resubscribe: the head to reach to count as caught up.
    catch_up_to: Option<u64>,
    next_id: u64,
    /// Sends already made in this run (the k of the schedule).
    posts: u64,
    inflight: VecDeque<InFlight>,
    /// Highest seq acked to this sender (peer: assigned by it).
    final_acked: u64,
    send_done: bool,
    seen_drop_gen: u32,
    tally: WorkerResult,
}

impl Conn {
    fn new(idx: usize, cp: ConnPlan, sh: Arc<Shared>) -> Conn {
        Conn {
            idx,
            cp,
            sh,
            base: None,
            last: 0,
            catch_up_to: None,
            next_id: 1,
            posts: 0,
            inflight: VecDeque::new(),
            final_acked: 0,
            send_done: false,
            seen_drop_gen: 0,
            tally: WorkerResult::default(),
        }
    }

    fn violation(&mut self, kind: &str) {
        *self.tally.violations.entry(kind.to_string()).or_default() += 1;
        self.sh.errors.fetch_add(1, Relaxed);
    }

    fn error_code(&mut self, code: &str) {
        *self.tally.errors.entry(code.to_string()).or_default() += 1;
        self.sh.errors.fetch_add(1, Relaxed);
    }

    async fn run(mut self, mut phase: watch::Receiver<Phase>) {
        let mut ws = match self.join_with_retries(None).await {
            Some(ws) => {
                self.sh.connected.fetch_add(1, Relaxed);
                self.sh.changed.notify_one();
                ws
            }
            None => {
                self.sh.failed.fetch_add(1, Relaxed);
                if self.cp.send.is_some() {
                    // A sender that never connected has nothing to wait for.
                    self.send_done = true;
                    self.sh.senders_done.fetch_add(1, Relaxed);
                }
                self.sh.changed.notify_one();
                self.finish(&phase.borrow().clone());
                return;
            }
        };
        loop {
            let p = phase.borrow().clone();
            if p.drop_gen != self.seen_drop_gen {
                self.seen_drop_gen = p.drop_gen;
                drop(ws);
                match self.rejoin().await {
                    Some(w) => ws = w,
                    None => break,
                }
                continue;
            }
            if let Err(e) = self.post_due(&mut ws, &p).await {
                self.violation(&format!("send failed: {e}"));
            }
            self.check_send_done(&p);
            if self.is_finished(&p) {
                break;
            }
            let wake = self.wake_at(&p);
            let w = tokio::select! {
                m = ws.next() => Wake::Frame(m),
                r = phase.changed() => Wake::Phase(r.is_ok()),
                _ = tokio::time::sleep_until(wake.unwrap_or_else(far_future).into()) => Wake::Timer,
            };
            match w {
                Wake::Frame(Some(Ok(Message::Text(t)))) => {
                    self.tally.frames += 1;
                    self.tally.bytes += t.len() as u64;
                    self.on_text(t.as_str());
                }
                Wake::Frame(Some(Ok(Message::Close(frame)))) => {
                    let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                    self.violation(&format!("closed by server ({code})"));
                    match self.rejoin().await {
                        Some(w) => ws = w,
                        None => break,
                    }
                }
                Wake::Frame(Some(Ok(Message::Binary(_)))) => self.violation("binary frame"),
                Wake::Frame(Some(Ok(_))) => {} // ping/pong: tungstenite answers pings
                Wake::Frame(Some(Err(_))) | Wake::Frame(None) => {
                    self.violation("connection lost");
                    match self.rejoin().await {
                        Some(w) => ws = w,
                        None => break,
                    }
                }
                Wake::Phase(true) | Wake::Timer => {}
                Wake::Phase(false) => break,
            }
        }
        if self.cp.send.is_some() && !self.send_done {
            self.send_done = true;
            self.sh.senders_done.fetch_add(1, Relaxed);
            self.sh.changed.notify_one();
        }
        let p = phase.borrow().clone();
        self.finish(&p);
    }

    /// Merge this connection's tally into the worker's result.
    fn finish(&mut self, p: &Phase) {
        if self.cp.subscribe {
            if let (Some(base), Some((final_seq, _))) = (self.base, p.drain.as_ref()) {
                let target = final_seq.get(&self.cp.group).copied().unwrap_or(base);
                self.tally.expected += target.saturating_sub(base);
            }
        }
        let t = std::mem::take(&mut self.tally);
        let mut r = self.sh.result.lock().unwrap();
        r.delivered += t.delivered;
        r.expected += t.expected;
        r.duplicates += t.duplicates;
        r.gaps += t.gaps;
        r.duplicate_acks += t.duplicate_acks;
        r.late_sends += t.late_sends;
        r.frames += t.frames;
        r.bytes += t.bytes;
        for (k, v) in t.errors {
            *r.errors.entry(k).or_default() += v;
        }
        for (k, v) in t.violations {
            *r.violations.entry(k).or_default() += v;
        }
    }

    fn is_finished(&self, p: &Phase) -> bool {
        if p.exit {
            return true;
        }
        let Some((final_seq, deadline)) = &p.drain else {
            return false;
        };
        if Instant::now() >= *deadline {
            return true;
        }
        if !self.cp.subscribe {
            return true;
        }
        let target = final_seq.get(&self.cp.group).copied().unwrap_or(0);
        self.last >= target
    }

    /// The next instant this task must act without any frame arriving.
    fn wake_at(&self, p: &Phase) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |i: Instant| at = Some(at.map_or(i, |a: Instant| a.min(i)));
        if let Some((_, deadline)) = &p.drain {
            earliest(*deadline);
        }
        if let (Some(send), Some((start, end))) = (self.cp.send, p.run) {
            if !self.send_done {
                earliest(instant_at(end));
                earliest(instant_at(end) + ACK_TIMEOUT);
                if self.inflight.len() < send.window.max(1) {
                    let due = self.due_ns(start);
                    if due < end {
                        earliest(instant_at(due));
                    }
                }
            }
        }
        at
    }

    /// When post number `self.posts` is due (CLOCK_REALTIME ns).
    fn due_ns(&self, start: i64) -> i64 {
        let send = self.cp.send.expect("sender");
        if send.period_us == 0 {
            return start;
        }
        start + ((send.phase_us + self.posts * send.period_us) * 1000) as i64
    }

    async fn post_due(&mut self, ws: &mut Ws, p: &Phase) -> Result<()> {
        let (Some(send), Some((start, end))) = (self.cp.send, p.run) else {
            return Ok(());
        };
        if self.send_done {
            return Ok(());
        }
        let window = send.window.max(1);
        loop {
            let now = now_ns();
            let due = self.due_ns(start);
            if due > now || due >= end || now >= end {
                return Ok(());
            }
            if self.sh.plan.target == Target::Ours && self.inflight.len() >= window {
                return Ok(());
            }
            if send.period_us > 0 && now - due > (send.period_us * 1000) as i64 {
                self.tally.late_sends += 1;
            }
            self.post(ws, now).await?;
        }
    }

    async fn post(&mut self, ws: &mut Ws, now: i64) -> Result<()> {
        let text = message_text(now, self.sh.plan.worker, self.idx, self.posts, self.sh.plan.text_bytes);
        self.posts += 1;
        let json = match self.sh.plan.target {
            Target::Ours => {
                let id = self.next_id;
                self.next_id += 1;
                let op = ClientOp::Send {
                    id,
                    group: self.cp.group,
                    channel: Channel::Chat,
                    body: MessageBody { text, reply_to: None, images: Vec::new() },
                    client_key: format!(
                        "b{}-{}-{}-{}",
                        self.sh.plan.worker, self.idx, self.cp.account, self.posts
                    ),
                };
                let json = serde_json::to_string(&op)?;
                self.inflight.push_back(InFlight { id, json: json.clone(), at: Instant::now() });
                json
            }
            Target::Peer => {
                // The same event villagehub would push, numbered by the
                // sender (one sender per room keeps seq gap-free).
                let seq = self.posts;
                self.final_acked = seq;
                let ev = ServerFrame::Event(Event {
                    group: self.cp.group,
                    seq,
                    ts: now / 1_000_000,
                    author: Author {
                        id: self.cp.account,
                        name: "李建国".into(),
                        role: Role::Secretary,
                        party: false,
                        migrant: false,
                        system: false,
                    },
                    channel: Channel::Chat,
                    body: EventBody::Message(MessageBody { text, reply_to: None, images: Vec::new() }),
                });
                serde_json::to_string(&ev)?
            }
        };
        self.sh.sent.fetch_add(1, Relaxed);
        ws.send(Message::text(json)).await?;
        Ok(())
    }

    fn check_send_done(&mut self, p: &Phase) {
        let (Some(_), Some((_, end))) = (self.cp.send, p.run) else {
            return;
        };
        if self.send_done || now_ns() < end {
            return;
        }
        if !self.inflight.is_empty() {
            if Instant::now() < instant_at(end) + ACK_TIMEOUT {
                return;
            }
            let lost = self.inflight.len();
            self.inflight.clear();
            for _ in 0..lost {
                self.violation("no ack within 15 s");
            }
        }
        self.send_done = true;
        {
            let mut f = self.sh.final_seq.lock().unwrap();
            let e = f.entry(self.cp.group).or_default();
            *e = (*e).max(self.final_acked);
        }
        self.sh.senders_done.fetch_add(1, Relaxed);
        self.sh.changed.notify_one();
    }

    fn on_text(&mut self, text: &str) {
        if self.sh.plan.strict {
            match serde_json::from_str::<ServerFrame>(text) {
                Ok(ServerFrame::Event(ev)) => {
                    let text = match &ev.body {
                        EventBody::Message(m) => m.text.as_str(),
                        _ => "",
                    };
                    self.on_event(ev.group, ev.seq, text);
                }
                Ok(frame) => self.on_reply(frame),
                Err(_) => self.violation("frame does not parse as ServerFrame"),
            }
            return;
        }
        match serde_json::from_str::<LiteFrame>(text) {
            Ok(f) if f.ty == "event" => match (f.group, f.seq, f.body.and_then(|b| b.text)) {
                (Some(g), Some(s), Some(t)) => self.on_event(g, s, &t),
                _ => self.violation("event without group, seq or text"),
            },
            Ok(_) => match serde_json::from_str::<ServerFrame>(text) {
                Ok(frame) => self.on_reply(frame),
                Err(_) => self.violation("frame does not parse as ServerFrame"),
            },
            Err(_) => self.violation("frame is not JSON with a type"),
        }
    }

    fn on_event(&mut self, group: u64, seq: u64, text: &str) {
        if group != self.cp.group {
            self.violation("event of a group not subscribed");
            return;
        }
        if self.base.is_none() {
            self.violation("event before subscribed");
            return;
        }
        if seq <= self.last {
            self.tally.duplicates += 1;
            self.sh.errors.fetch_add(1, Relaxed);
            return;
        }
        if seq > self.last + 1 {
            self.tally.gaps += seq - self.last - 1;
            self.sh.errors.fetch_add(1, Relaxed);
        }
        self.last = seq;
        self.tally.delivered += 1;
        self.sh.delivered.fetch_add(1, Relaxed);
        match parse_sent_ns(text) {
            Some(sent) => {
                let us = ((now_ns() - sent) / 1000).max(1) as u64;
                self.sh.latency.lock().unwrap().saturating_record(us);
            }
            None => self.violation("event text without a bench timestamp"),
        }
        if let Some(head) = self.catch_up_to {
            if seq >= head {
                self.catch_up_to = None;
                self.sh.caught_up.fetch_add(1, Relaxed);
                self.sh.changed.notify_one();
            }
        }
    }

    /// A reply outside the handshake: `sent` acks and errors.
    fn on_reply(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Sent { id, seq, duplicate, .. } => {
                match self.inflight.front() {
                    Some(f) if f.id == id => {
                        let f = self.inflight.pop_front().expect("front");
                        let us = f.at.elapsed().as_micros().max(1) as u64;
                        self.sh.ack_latency.lock().unwrap().saturating_record(us);
                    }
                    _ => {
                        self.violation("sent reply out of order or for an unknown id");
                        return;
                    }
                }
                if duplicate {
                    self.tally.duplicate_acks += 1;
                }
                self.final_acked = self.final_acked.max(seq);
                self.sh.acked.fetch_add(1, Relaxed);
            }
            ServerFrame::Error { id, code, .. } => {
                self.error_code(code.as_str());
                if let (Some(id), Some(f)) = (id, self.inflight.front()) {
                    if f.id == id {
                        self.inflight.pop_front();
                    }
                }
            }
            ServerFrame::Subscribed { .. } | ServerFrame::Welcome(_) => {
                self.violation("handshake reply outside the handshake")
            }
            // Pushes about people (membership, receipts, warnings) are not
            // the bench's traffic.
            ServerFrame::Membership(_)
            | ServerFrame::Application(_)
            | ServerFrame::Receipts(_)
            | ServerFrame::Warning(_)
            | ServerFrame::StatsUpdate { .. }
            | ServerFrame::PresenceUpdate { .. } => {}
            ServerFrame::Event(_) => unreachable!("events are handled by on_event"),
            _ => self.violation("reply to an op never sent"),
        }
    }

    async fn join_with_retries(&mut self, since: Option<u64>) -> Option<Ws> {
        let sh = self.sh.clone();
        let _permit = sh.connect_gate.acquire().await.ok()?;
        for attempt in 0..CONNECT_ATTEMPTS {
            match tokio::time::timeout(CONNECT_TIMEOUT, self.join(since)).await {
                Ok(Ok(ws)) => return Some(ws),
                Ok(Err(e)) => {
                    let e = format!("{e:#}");
                    if e.starts_with("refused:") {
                        self.violation(&e);
                        return None;
                    }
                    if attempt + 1 == CONNECT_ATTEMPTS {
                        self.violation(&format!("connect failed: {e}"));
                    }
                }
                Err(_) => {
                    if attempt + 1 == CONNECT_ATTEMPTS {
                        self.violation("connect timed out");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        None
    }

    /// Reconnect after a drop: resubscribe with `since` = last seq, then
    /// re-send unacked posts under their first `client_key`.
    async fn rejoin(&mut self) -> Option<Ws> {
        let since = self.base.map(|_| self.last);
        let Some(mut ws) = self.join_with_retries(since).await else {
            self.sh.resume_failed.fetch_add(1, Relaxed);
            self.sh.changed.notify_one();
            return None;
        };
        self.sh.resubscribed.fetch_add(1, Relaxed);
        if self.catch_up_to.is_none() {
            self.sh.caught_up.fetch_add(1, Relaxed);
        }
        self.sh.changed.notify_one();
        let resend: Vec<String> = self.inflight.iter().map(|f| f.json.clone()).collect();
        for json in resend {
            if ws.send(Message::text(json)).await.is_err() {
                self.violation("re-send after reconnect failed");
            }
        }
        Some(ws)
    }

    /// Connect, `hello`, `subscribe`. Sets `catch_up_to` when the head is
    /// above what this member has seen.
    async fn join(&mut self, since: Option<u64>) -> Result<Ws> {
        let sh = self.sh.clone();
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        if let Some(ip) = self.cp.source_ip.or(sh.plan.source_ip) {
            socket.bind(SocketAddr::from((ip, 0)))?;
        }
        // A member spread to another node (cluster) names it; checked in run().
        let addr = match &self.cp.url {
            Some(url) => addr_of(url)?,
            None => sh.addr,
        };
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let url = match sh.plan.target {
            Target::Ours => self.cp.url.clone().unwrap_or_else(|| sh.plan.url.clone()),
            Target::Peer => format!("{}/room/{}", sh.plan.url, self.cp.group),
        };
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url, stream, Some(sh.ws_config)).await?;
        if sh.plan.target == Target::Peer {
            // Joining the room is opening the socket.
            if self.base.is_none() {
                self.base = Some(0);
            }
            return Ok(ws);
        }
        let id = self.next_id;
        self.next_id += 1;
        let hello =
            ClientOp::Hello { id, token: self.cp.token.clone(), client: Some("villagehub-bench/0.1".into()) };
        ws.send(Message::text(serde_json::to_string(&hello)?)).await?;
        match self.await_reply(&mut ws, id).await? {
            ServerFrame::Welcome(w) if w.groups.iter().any(|g| g.id == self.cp.group) => {}
            ServerFrame::Welcome(_) => bail!("refused: welcome does not list the member's group"),
            ServerFrame::Error { code, message, .. } => {
                bail!("refused: hello → {}: {message}", code.as_str())
            }
            other => bail!("refused: hello answered by {other:?}"),
        }
        if !self.cp.subscribe {
            return Ok(ws);
        }
        let id = self.next_id;
        self.next_id += 1;
        let sub = ClientOp::Subscribe { id, group: self.cp.group, since };
        ws.send(Message::text(serde_json::to_string(&sub)?)).await?;
        match self.await_reply(&mut ws, id).await? {
            ServerFrame::Subscribed { group, head, .. } if group == self.cp.group => match self.base {
                None => {
                    self.base = Some(head);
                    self.last = head;
                }
                Some(_) => {
                    if head < self.last {
                        self.violation("head below an event already received");
                    } else if head > self.last {
                        self.catch_up_to = Some(head);
                    }
                }
            },
            ServerFrame::Error { code, message, .. } => {
                bail!("refused: subscribe → {}: {message}", code.as_str())
            }
            other => bail!("refused: subscribe answered by {other:?}"),
        }
        Ok(ws)
    }

    /// Read frames until the reply to op `id`; anything else that arrives
    /// meanwhile (acks of re-sent posts, stray events) goes the usual way.
    async fn await_reply(&mut self, ws: &mut Ws, id: u64) -> Result<ServerFrame> {
        loop {
            let msg = ws.next().await.ok_or_else(|| anyhow!("closed during handshake"))??;
            let Message::Text(t) = msg else {
                if let Message::Close(f) = msg {
                    bail!("closed during handshake: {f:?}");
                }
                continue;
            };
            self.tally.frames += 1;
            self.tally.bytes += t.len() as u64;
            let frame: ServerFrame = match serde_json::from_str(t.as_str()) {
                Ok(f) => f,
                Err(_) => {
                    self.violation("frame does not parse as ServerFrame");
                    continue;
                }
            };
            let reply_id = match &frame {
                ServerFrame::Welcome(w) => Some(w.id),
                ServerFrame::Subscribed { id, .. } => Some(*id),
                ServerFrame::Error { id, .. } => *id,
                _ => None,
            };
            if reply_id == Some(id) {
                return Ok(frame);
            }
            match frame {
                ServerFrame::Event(ev) => {
                    let text = match &ev.body {
                        EventBody::Message(m) => m.text.clone(),
                        _ => String::new(),
                    };
                    self.on_event(ev.group, ev.seq, &text);
                }
                other => self.on_reply(other),
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// `"<send ns, 19 digits> b<worker>.<conn>.<n> …"` padded to `len` bytes.
pub fn message_text(now: i64, worker: usize, conn: usize, n: u64, len: usize) -> String {
    let mut s = format!("{now:019} b{worker}.{conn}.{n} ");
    while s.len() < len {
        s.push('.');
    }
    s
}

fn parse_sent_ns(text: &str) -> Option<i64> {
    text.get(..19)?.parse().ok()
}

/// Entry point of `villagehub-bench worker`: the plan is the first line on
/// stdin, commands follow one per line; reports go to stdout, one per line.
pub fn process_main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let first = lines.next_line().await?.ok_or_else(|| anyhow!("no plan on stdin"))?;
        let plan: WorkerPlan = serde_json::from_str(&first).context("bad plan")?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (rep_tx, mut rep_rx) = mpsc::unbounded_channel::<Report>();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Cmd>(&line) {
                    Ok(cmd) => {
                        if cmd_tx.send(cmd).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("worker: bad command {line:?}: {e}"),
                }
            }
        });
        let writer = tokio::spawn(async move {
            use std::io::Write;
            while let Some(r) = rep_rx.recv().await {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", serde_json::to_string(&r).unwrap_or_default());
                let _ = out.flush();
            }
        });
        let worker = plan.worker;
        let rep = rep_tx.clone();
        if let Err(e) = run(plan, cmd_rx, rep_tx).await {
            let _ = rep.send(Report::Fatal { worker, message: format!("{e:#}") });
        }
        drop(rep);
        let _ = writer.await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_carries_its_send_time_and_has_the_asked_length() {
        let t = message_text(1_764_319_200_123_456_789, 3, 17, 42, 120);
        assert_eq!(t.len(), 120);
        assert_eq!(parse_sent_ns(&t), Some(1_764_319_200_123_456_789));
    }

    #[test]
    fn url_gives_the_socket_address() {
        assert_eq!(addr_of("ws://127.0.0.1:4000/ws").unwrap(), "127.0.0.1:4000".parse().unwrap());
        assert!(addr_of("http://x").is_err());
    }

    #[test]
    fn lite_frame_reads_a_protocol_event() {
        let ev = ServerFrame::Event(Event {
            group: 4,
            seq: 9,
            ts: 1,
            author: Author {
                id: 7,
                name: "王秀英".into(),
                role: Role::Member,
                party: false,
                migrant: false,
                system: false,
            },
            channel: Channel::Chat,
            body: EventBody::Message(MessageBody {
                text: "hello \"quoted\"".into(),
                reply_to: None,
                images: Vec::new(),
            }),
        });
        let json = serde_json::to_string(&ev).unwrap();
        let f: LiteFrame = serde_json::from_str(&json).unwrap();
        assert_eq!(f.ty, "event");
        assert_eq!((f.group, f.seq), (Some(4), Some(9)));
        assert_eq!(f.body.unwrap().text.unwrap(), "hello \"quoted\"");
    }
}
