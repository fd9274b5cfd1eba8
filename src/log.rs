//! The log writer: store writer and applier in one thread, and in the
//! embedded mode also the sequencer. This is the hot path from "append
//! requested" to "bytes queued on every subscriber", and it reads top to
//! bottom in `Writer::run_batch`:
//!
//! 1. take every command waiting (group commit, up to `MAX_BATCH`);
//! 2. in one SQLite transaction: for appends (embedded mode) drop retried
//!    client keys and give each event the next seq of its log; for events
//!    sequenced elsewhere (cluster mode: Redis) skip those already applied;
//!    then `store_committed`: insert the event, apply directory changes to
//!    the views;
//! 3. commit — only now is anything acked;
//! 4. hand each group event to the fan-out in seq order, then answer every
//!    caller.
//!
//! A failed commit rolls everything back and answers `unavailable`; the
//! thread carries on with the next batch, so a full disk or a failing write
//! refuses sends without taking the node down.
//!
//! In cluster mode `Log::append` goes to Redis instead (`cluster.rs`), and
//! the events come back here through `Log::apply`, on every node alike.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::cluster::Cluster;
use crate::directory::{apply_to_views, Directory, DirectoryChange, DirectoryError};
use crate::fanout::{Delivery, Fanout};
use crate::store::{Store, DIRECTORY_LOG};
use protocol::{Author, Channel, EventBody, Id, Millis, Seq};

/// Commands waiting for the writer. Bounded so that a burst of senders waits
/// (their `send` ops are not read meanwhile) instead of growing memory.
const QUEUE: usize = 16 * 1024;

/// Most commands committed in one transaction.
const MAX_BATCH: usize = 4096;

/// What to append.
#[derive(Debug)]
pub enum Append {
    /// A group event. `client_key` makes it idempotent per author and group.
    Group { group: Id, author: Author, client_key: Option<String>, body: EventBody },
    /// A change of the directory log.
    Directory(DirectoryChange),
}

/// What was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Group { group: Id, seq: Seq, duplicate: bool },
    Directory { seq: Seq },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The store could not commit, the sequencer (Redis) cannot be reached,
    /// or the writer has stopped.
    #[error("{0}")]
    Unavailable(String),
    /// The directory change contradicts the directory.
    #[error(transparent)]
    Refused(#[from] DirectoryError),
}

/// An event with its seq, as stored and as replicated between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub log: Id,
    pub seq: Seq,
    pub ts: Millis,
    /// Account id of the author (0 for directory changes).
    pub author: Id,
    pub client_key: Option<String>,
    pub kind: String,
    /// The `event` frame for group logs; the serialized change for the
    /// directory log.
    pub frame: String,
}

/// A group event's frame split around its seq and ts, so that whoever
/// assigns them (this writer, or the Redis script) can build the frame by
/// concatenation: the event is serialized once, cluster-wide.
#[derive(Debug, Clone)]
pub struct FrameParts {
    /// `{"type":"event","group":G,"seq":`
    pub prefix: String,
    /// `"author":…,"channel":…,"kind":…,"body":…}`
    pub tail: String,
}

impl FrameParts {
    pub fn new(group: Id, author: &Author, body: &EventBody) -> FrameParts {
        #[derive(Serialize)]
        struct Tail<'a> {
            author: &'a Author,
            channel: Channel,
            #[serde(flatten)]
            body: &'a EventBody,
        }
        let tail = serde_json::to_string(&Tail { author, channel: body.channel(), body })
            .expect("events always serialize");
        FrameParts {
            prefix: format!(r#"{{"type":"event","group":{group},"seq":"#),
            // Drop the tail's opening brace: it continues the frame's object.
            tail: tail[1..].to_string(),
        }
    }

    pub fn assemble(&self, seq: Seq, ts: Millis) -> String {
        format!(r#"{}{seq},"ts":{ts},{}"#, self.prefix, self.tail)
    }
}

/// An append made ready by the caller's task, so that the writer thread —
/// the one serial resource — does not serialize JSON: a group event arrives
/// with its frame split around seq and ts.
enum Prepared {
    Group { group: Id, author: Id, client_key: Option<String>, kind: &'static str, parts: FrameParts },
    Directory(DirectoryChange),
}

impl Prepared {
    fn new(append: Append) -> Prepared {
        match append {
            Append::Group { group, author, client_key, body } => Prepared::Group {
                group,
                author: author.id,
                client_key,
                kind: body.kind(),
                parts: FrameParts::new(group, &author, &body),
            },
            Append::Directory(change) => Prepared::Directory(change),
        }
    }
}

enum Command {
    Append {
        append: Prepared,
        reply: Reply,
    },
    /// Events sequenced elsewhere, in seq order per log.
    Apply {
        events: Vec<Committed>,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    Close,
}

type Reply = oneshot::Sender<Result<Appended, LogError>>;

/// Counters read by /metrics.
#[derive(Debug, Default)]
pub struct LogMetrics {
    pub events_committed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Sum of commit durations, microseconds (with `batches_committed`,
    /// the mean commit latency).
    pub commit_micros: AtomicU64,
    /// Commits per latency bucket (upper bounds in `COMMIT_BUCKETS_MICROS`).
    pub commit_buckets: [AtomicU64; COMMIT_BUCKETS_MICROS.len()],
}

/// Upper bounds of the commit-latency histogram, microseconds.
pub const COMMIT_BUCKETS_MICROS: [u64; 10] =
    [500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000];

impl LogMetrics {
    fn observe_commit(&self, micros: u64) {
        self.commit_micros.fetch_add(micros, Ordering::Relaxed);
        self.batches_committed.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = COMMIT_BUCKETS_MICROS.iter().position(|b| micros <= *b) {
            self.commit_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the writer has applied, for callers that wait for their own change
/// to come back (cluster mode) and for catch-up.
#[derive(Debug)]
pub struct Applied {
    /// Head of the directory log in the store.
    pub directory_head: watch::Sender<Seq>,
    /// Directory changes that were sequenced but refused when applied
    /// (cluster mode: two nodes raced for the same phone, say). Taken by the
    /// waiting caller; bounded by pruning old entries.
    refused: Mutex<HashMap<Seq, DirectoryError>>,
    /// Messages per group and minute, for spike warnings.
    pub activity: crate::warnings::Activity,
    /// Live-figure watches and the groups changed since their last push.
    pub live: crate::live::Watches,
}

impl Applied {
    pub fn take_refusal(&self, seq: Seq) -> Option<DirectoryError> {
        self.refused.lock().unwrap().remove(&seq)
    }
}

struct LogInner {
    tx: mpsc::Sender<Command>,
    metrics: Arc<LogMetrics>,
    applied: Arc<Applied>,
    /// Set in cluster mode: Redis sequences, this node applies.
    cluster: OnceLock<Arc<Cluster>>,
    /// Keyword warnings of acked posts, to the task that appends them
    /// (`warnings::run_raiser`). Unbounded: one per post that hits the
    /// lexicon, which is rare, and each is small.
    raiser: mpsc::UnboundedSender<DirectoryChange>,
}

/// Handle to the writer thread. Cloning is cheap.
#[derive(Clone)]
pub struct Log {
    inner: Arc<LogInner>,
}

impl Log {
    /// Starts the writer thread on `conn` (the store's writer connection).
    pub fn start(
        store: &Store,
        conn: Connection,
        directory: Arc<RwLock<Directory>>,
        fanout: Arc<Fanout>,
    ) -> Result<(Log, std::thread::JoinHandle<()>), crate::store::StoreError> {
        let mut heads = HashMap::new();
        for (log, seq) in store.heads()? {
            let ts: Millis = conn.query_row(
                "SELECT ts FROM events WHERE log = ?1 AND seq = ?2",
                params![log as i64, seq as i64],
                |r| r.get(0),
            )?;
            heads.insert(log, (seq, ts));
            fanout.set_head(log, seq);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let metrics = Arc::new(LogMetrics::default());
        let directory_head = heads.get(&DIRECTORY_LOG).map(|h| h.0).unwrap_or(0);
        let applied = Arc::new(Applied {
            directory_head: watch::Sender::new(directory_head),
            refused: Mutex::new(HashMap::new()),
            activity: crate::warnings::Activity::default(),
            live: crate::live::Watches::default(),
        });
        let groups: Vec<Id> = heads.keys().copied().filter(|log| *log != DIRECTORY_LOG).collect();
        applied.activity.warm_up(&conn, &groups, crate::clock::now())?;
        let (fanout_tx, fanout_rx) = mpsc::unbounded_channel();
        tokio::spawn(run_fanout(fanout.clone(), fanout_rx));
        let writer = Writer {
            conn,
            state: State {
                fanout_tx,
                heads,
                directory,
                fanout,
                store_path: store.path().to_path_buf(),
                metrics: metrics.clone(),
                applied: applied.clone(),
            },
        };
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(rx))
            .expect("spawn log writer");
        let (raiser, raise_rx) = mpsc::unbounded_channel();
        let inner = LogInner { tx, metrics, applied, cluster: OnceLock::new(), raiser };
        let log = Log { inner: Arc::new(inner) };
        tokio::spawn(crate::warnings::run_raiser(log.clone(), raise_rx));
        Ok((log, handle))
    }

    pub fn metrics(&self) -> &LogMetrics {
        &self.inner.metrics
    }

    pub fn applied(&self) -> &Arc<Applied> {
        &self.inner.applied
    }

    /// Switches appends to the cluster sequencer.
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.inner.cluster.set(cluster);
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.get()
    }

    /// Appends and waits until durable: committed to SQLite (embedded), or
    /// accepted by Redis (cluster; directory changes also wait until applied
    /// here, to learn whether they took effect).
    pub async fn append(&self, append: Append) -> Result<Appended, LogError> {
        let keyword = match &append {
            Append::Group { body, .. } => crate::warnings::keyword_hit(body),
            Append::Directory(_) => None,
        };
        let appended = if let Some(cluster) = self.inner.cluster.get() {
            cluster.append(append, &self.inner.applied).await
        } else {
            let (reply, rx) = oneshot::channel();
            self.inner
                .tx
                .send(Command::Append { append: Prepared::new(append), reply })
                .await
                .map_err(|_| LogError::Unavailable("the log is closed".into()))?;
            rx.await.map_err(|_| LogError::Unavailable("the log writer stopped".into()))?
        };
        if let (Some(detail), Ok(Appended::Group { group, seq, duplicate: false })) = (keyword, &appended) {
            let _ = self.inner.raiser.send(crate::warnings::keyword_warning(*group, *seq, detail));
        }
        appended
    }

    /// Applies events sequenced elsewhere (in seq order per log; already
    /// applied ones are skipped) and waits for the commit.
    pub async fn apply(&self, events: Vec<Committed>) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Apply { events, reply })
            .await
            .map_err(|_| LogError::Unavailable("the log is closed".into()))?;
        rx.await.map_err(|_| LogError::Unavailable("the log writer stopped".into()))?
    }

    /// Waits until the directory log has been applied up to `seq`.
    pub async fn wait_directory(&self, seq: Seq, timeout: Duration) -> bool {
        let mut head = self.inner.applied.directory_head.subscribe();
        tokio::time::timeout(timeout, head.wait_for(|h| *h >= seq)).await.is_ok_and(|r| r.is_ok())
    }

    /// Asks the writer to finish what is queued and stop. Appends after this
    /// get `Unavailable`.
    pub async fn close(&self) {
        let _ = self.inner.tx.send(Command::Close).await;
    }
}

/// The event's row: the one place where an event enters the store.
fn insert_event(tx: &Transaction, event: &Committed) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (log, seq, ts, author, client_key, kind, frame)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        event.log as i64,
        event.seq as i64,
        event.ts,
        event.author as i64,
        event.client_key,
        event.kind,
        event.frame
    ])?;
    Ok(())
}

/// Hands committed events to subscribers. It runs as a task on the runtime,
/// not on the writer thread, because waking a connection's task from a
/// worker thread pushes it on that worker's own run queue, while a wake from
/// a foreign thread goes through the runtime's shared injection queue (a
/// mutex, and often a futex to unpark a worker) — once per delivery.
async fn run_fanout(fanout: Arc<Fanout>, mut committed: mpsc::UnboundedReceiver<Vec<Delivery>>) {
    while let Some(batch) = committed.recv().await {
        for delivery in batch {
            fanout.publish(delivery);
        }
    }
}

struct Writer {
    conn: Connection,
    state: State,
}

/// Everything the writer keeps besides its connection (split off so that a
/// transaction on the connection and the state can be borrowed together).
struct State {
    /// Committed group events, in commit order, to the fan-out task.
    /// Unbounded: one message per commit, drained as fast as it is filled.
    fanout_tx: mpsc::UnboundedSender<Vec<Delivery>>,
    /// Last seq and ts of every log in the store. Only this thread writes
    /// events, so a plain map.
    heads: HashMap<Id, (Seq, Millis)>,
    directory: Arc<RwLock<Directory>>,
    /// For pushing directory outcomes to connected accounts (presence);
    /// group events go through `fanout_tx`.
    fanout: Arc<Fanout>,
    store_path: std::path::PathBuf,
    metrics: Arc<LogMetrics>,
    applied: Arc<Applied>,
}

/// What a batch does once it is committed.
#[derive(Default)]
struct Effects {
    deliveries: Vec<Delivery>,
    refused: Vec<(Seq, DirectoryError)>,
    directory_touched: bool,
    /// New early warnings of this batch, pushed after the commit.
    warnings: Vec<protocol::Warning>,
    /// Keys of the warnings applied in this batch (new or repeated).
    warning_keys: Vec<String>,
    /// Chat messages `(group, seq, ts)`, counted for spike warnings.
    messages: Vec<(Id, Seq, Millis)>,
    /// The batch's changes to the figures view.
    figures: crate::live::FigureDeltas,
    undo: HashMap<Id, Option<(Seq, Millis)>>,
}

enum Answer {
    Append(Reply, Result<Appended, LogError>),
    Apply(oneshot::Sender<Result<(), LogError>>),
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch: Vec<Command> = Vec::with_capacity(64);
        loop {
            let mut closing = false;
            match rx.blocking_recv() {
                Some(Command::Close) | None => closing = true,
                Some(cmd) => batch.push(cmd),
            }
            while !closing && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Command::Close) => closing = true,
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.run_batch(std::mem::take(&mut batch));
            }
            if closing {
                // Anything sent after the close request is refused by the
                // closed receiver; what was queued before it is committed.
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    if !matches!(cmd, Command::Close) {
                        batch.push(cmd);
                    }
                }
                if !batch.is_empty() {
                    self.run_batch(std::mem::take(&mut batch));
                }
                tracing::info!("log writer stopped");
                return;
            }
        }
    }

    fn run_batch(&mut self, batch: Vec<Command>) {
        let started = Instant::now();
        let now = crate::clock::now();
        let mut fx = Effects::default();
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());

        let state = &mut self.state;
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            for command in batch {
                match command {
                    Command::Append { append, reply } => {
                        let result = state.sequence(&tx, append, now, &mut fx)?;
                        answers.push(Answer::Append(reply, result));
                    }
                    Command::Apply { events, reply } => {
                        for event in events {
                            let head = state.heads.get(&event.log).map(|h| h.0).unwrap_or(0);
                            if event.seq <= head {
                                continue; // applied before: idempotent by seq
                            }
                            if event.seq != head + 1 {
                                // The feed repairs gaps before applying; a hole
                                // here would be a bug, and is never written.
                                tracing::error!(
                                    log = event.log,
                                    seq = event.seq,
                                    head,
                                    "gap in applied events"
                                );
                                continue;
                            }
                            state.store_committed(&tx, event, &mut fx)?;
                        }
                        answers.push(Answer::Apply(reply));
                    }
                    Command::Close => {}
                }
            }
            fx.figures.write(&tx)?;
            tx.commit()
        })();

        match outcome {
            Ok(()) => {
                let micros = started.elapsed().as_micros() as u64;
                state.metrics.observe_commit(micros);
                state.metrics.events_committed.fetch_add(fx.deliveries.len() as u64, Ordering::Relaxed);
                // Committed: now, and only now, publish and acknowledge.
                // The fan-out itself runs on a runtime thread (see
                // `run_fanout`); the channel keeps commit order.
                if !fx.deliveries.is_empty() {
                    for delivery in &fx.deliveries {
                        state.fanout.set_head(delivery.group, delivery.seq);
                    }
                    let _ = state.fanout_tx.send(fx.deliveries);
                }
                if !fx.refused.is_empty() {
                    let mut refused = state.applied.refused.lock().unwrap();
                    if refused.len() > 10_000 {
                        refused.clear(); // nobody waits that long
                    }
                    refused.extend(fx.refused);
                }
                if let Some((head, _)) = state.heads.get(&DIRECTORY_LOG) {
                    state.applied.directory_head.send_if_modified(|h| {
                        let changed = *h != *head;
                        *h = *head;
                        changed
                    });
                }
                // Tell the connections of the accounts concerned.
                crate::presence::after_commit(&state.fanout.accounts, &state.directory);
                state.applied.activity.record(&fx.messages);
                if !fx.figures.is_empty() {
                    state.applied.live.touch(fx.figures.groups());
                }
                for key in &fx.warning_keys {
                    state.applied.activity.note_raised(key);
                }
                crate::warnings::push(&state.fanout.accounts, &state.directory, fx.warnings);
                for answer in answers {
                    match answer {
                        Answer::Append(reply, result) => drop(reply.send(result)),
                        Answer::Apply(reply) => drop(reply.send(Ok(()))),
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the batch is refused");
                state.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
                for (log, before) in fx.undo {
                    match before {
                        Some(head) => state.heads.insert(log, head),
                        None => state.heads.remove(&log),
                    };
                }
                if fx.directory_touched {
                    state.reload_directory();
                }
                // Callers whose command was reached get this answer; the rest
                // were dropped with the closure and see their reply channel
                // closed, which is also `Unavailable`.
                let error = LogError::Unavailable(format!("could not write to the store: {e}"));
                for answer in answers {
                    match answer {
                        Answer::Append(reply, _) => drop(reply.send(Err(error.clone()))),
                        Answer::Apply(reply) => drop(reply.send(Err(error.clone()))),
                    }
                }
            }
        }
    }
}

impl State {
    /// The embedded sequencer: gives an append the next seq of its log,
    /// unless its client key was used before.
    fn sequence(
        &mut self,
        tx: &Transaction,
        append: Prepared,
        now: Millis,
        fx: &mut Effects,
    ) -> rusqlite::Result<Result<Appended, LogError>> {
        match append {
            Prepared::Group { group, author, client_key, kind, parts } => {
                // No lookup of the client key first: the unique index
                // (log, author, client_key) refuses a second use, and only
                // then is the earlier event looked up. One index search per
                // send instead of two.
                let (seq, ts) = self.next(group, now);
                let frame = parts.assemble(seq, ts);
                let key = client_key.clone();
                let event =
                    Committed { log: group, seq, ts, author, client_key, kind: kind.to_string(), frame };
                match insert_event(tx, &event) {
                    Ok(()) => {
                        self.apply_stored(tx, event, fx)?;
                        Ok(Ok(Appended::Group { group, seq, duplicate: false }))
                    }
                    Err(rusqlite::Error::SqliteFailure(e, message))
                        if e.code == rusqlite::ErrorCode::ConstraintViolation && key.is_some() =>
                    {
                        let earlier = tx
                            .prepare_cached(
                                "SELECT seq FROM events WHERE log = ?1 AND author = ?2 AND client_key = ?3",
                            )?
                            .query_row(params![group as i64, author as i64, key], |r| r.get::<_, i64>(0))
                            .optional()?;
                        match earlier {
                            Some(seq) => Ok(Ok(Appended::Group { group, seq: seq as Seq, duplicate: true })),
                            None => Err(rusqlite::Error::SqliteFailure(e, message)),
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Prepared::Directory(change) => {
                if let Err(refusal) = self.directory.read().unwrap().check(&change) {
                    return Ok(Err(LogError::Refused(refusal)));
                }
                let (seq, ts) = self.next(DIRECTORY_LOG, now);
                let frame = serde_json::to_string(&change).expect("changes serialize");
                let kind = change.kind().to_string();
                let event =
                    Committed { log: DIRECTORY_LOG, seq, ts, author: 0, client_key: None, kind, frame };
                self.store_committed(tx, event, fx)?;
                Ok(Ok(Appended::Directory { seq }))
            }
        }
    }

    /// The next seq of a log and a ts that never goes backwards.
    fn next(&self, log: Id, now: Millis) -> (Seq, Millis) {
        let (head, last_ts) = self.heads.get(&log).copied().unwrap_or((0, 0));
        (head + 1, now.max(last_ts))
    }

    /// Stores one sequenced event and applies it: the one place where an
    /// event enters the store, in both modes.
    fn store_committed(
        &mut self,
        tx: &Transaction,
        event: Committed,
        fx: &mut Effects,
    ) -> rusqlite::Result<()> {
        insert_event(tx, &event)?;
        self.apply_stored(tx, event, fx)
    }

    /// Everything after the event's row: heads, views, deliveries.
    fn apply_stored(&mut self, tx: &Transaction, event: Committed, fx: &mut Effects) -> rusqlite::Result<()> {
        let previous = self.heads.insert(event.log, (event.seq, event.ts));
        fx.undo.entry(event.log).or_insert(previous);
        if event.log == DIRECTORY_LOG {
            self.apply_directory(tx, event.seq, &event.frame, fx)?;
        } else {
            // Views derived from group events (hidden messages, audit).
            crate::moderation::apply_group_frame(tx, event.log, event.seq, &event.frame)?;
            if event.kind == "message" {
                fx.messages.push((event.log, event.seq, event.ts));
            }
            fx.figures.add(event.log, event.seq, event.ts, event.author, &event.kind, &event.frame);
            fx.deliveries.push(Delivery {
                group: event.log,
                seq: event.seq,
                frame: Utf8Bytes::from(event.frame),
            });
        }
        Ok(())
    }

    /// Applies a directory change to the views and to memory — or, if it
    /// contradicts the directory as it now stands, to nothing. The outcome
    /// depends only on the log, so every node decides alike.
    fn apply_directory(
        &mut self,
        tx: &Transaction,
        seq: Seq,
        frame: &str,
        fx: &mut Effects,
    ) -> rusqlite::Result<()> {
        let change: DirectoryChange = match serde_json::from_str(frame) {
            Ok(change) => change,
            Err(e) => {
                tracing::error!(seq, error = %e, "directory change this version cannot read; skipped");
                return Ok(());
            }
        };
        let mut dir = self.directory.write().unwrap();
        match dir.check(&change) {
            Ok(()) => {
                apply_to_views(tx, seq, &change)?;
                if let DirectoryChange::WarningRaised { key, .. } = &change {
                    fx.warnings.extend(crate::warnings::store(tx, seq, &change)?);
                    fx.warning_keys.push(key.clone());
                }
                // Applied to memory now so that later changes of this batch
                // see it; undone by a reload if the commit fails.
                dir.apply(seq, &change);
                fx.directory_touched = true;
            }
            Err(refusal) => fx.refused.push((seq, refusal)),
        }
        Ok(())
    }

    fn reload_directory(&self) {
        let reloaded = Store::open(self.store_path.parent().unwrap_or(std::path::Path::new(".")))
            .and_then(|store| store.load_directory());
        match reloaded {
            Ok(dir) => *self.directory.write().unwrap() = dir,
            Err(e) => tracing::error!(error = %e, "could not reload the directory after a failed commit"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Event, MessageBody, Role, ServerFrame};

    #[test]
    fn assembled_frame_is_the_serialized_event() {
        let author = Author {
            id: 7,
            name: "王秀英 \"quoted\"".into(),
            role: Role::Member,
            party: true,
            migrant: false,
            system: false,
        };
        let body = EventBody::Message(MessageBody {
            text: "你好\n{}".into(),
            reply_to: Some(3),
            images: Vec::new(),
        });
        let assembled = FrameParts::new(4, &author, &body).assemble(126, 1_764_319_200_123);
        let serialized = serde_json::to_string(&ServerFrame::Event(Event {
            group: 4,
            seq: 126,
            ts: 1_764_319_200_123,
            author,
            channel: Channel::Chat,
            body,
        }))
        .unwrap();
        assert_eq!(assembled, serialized);
    }
}
