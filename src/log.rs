//! The log writer: the embedded sequencer, store writer and applier in one
//! thread. This is the hot path from "append requested" to "bytes queued on
//! every subscriber", and it reads top to bottom in `Writer::run_batch`:
//!
//! 1. take every append waiting (group commit, up to `MAX_BATCH`);
//! 2. in one SQLite transaction: drop retried client keys, give each event
//!    the next seq of its log, serialize it **once**, insert it, apply
//!    directory changes to the views;
//! 3. commit — only now is anything acked;
//! 4. hand each group event to the fan-out in seq order, then answer every
//!    caller.
//!
//! A failed commit rolls everything back and answers `unavailable`; the
//! thread carries on with the next batch, so a full disk or a failing write
//! refuses sends without taking the node down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::auth::unix_millis;
use crate::directory::{apply_to_views, Directory, DirectoryChange, DirectoryError};
use crate::fanout::{Delivery, Fanout};
use crate::store::{Store, DIRECTORY_LOG};
use protocol::{Author, Event, EventBody, Id, Millis, Seq, ServerFrame};

/// Appends waiting for the writer. Bounded so that a burst of senders waits
/// (their `send` ops are not read meanwhile) instead of growing memory.
const QUEUE: usize = 16 * 1024;

/// Most appends committed in one transaction.
const MAX_BATCH: usize = 4096;

/// What to append.
#[derive(Debug)]
pub enum Append {
    /// A group event. `client_key` makes it idempotent per author.
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
    /// The store could not commit, or the writer has stopped.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The directory change contradicts the directory.
    #[error(transparent)]
    Refused(#[from] DirectoryError),
}

struct Command {
    append: Append,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// Counters read by /metrics.
#[derive(Debug, Default)]
pub struct LogMetrics {
    pub events_committed: AtomicU64,
    pub batches_committed: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Sum of commit durations, microseconds (with `batches_committed`,
    /// the mean commit latency).
    pub commit_micros: AtomicU64,
}

/// Handle to the writer thread. Cloning is cheap.
#[derive(Clone)]
pub struct Log {
    tx: mpsc::Sender<Option<Command>>,
    pub metrics: Arc<LogMetrics>,
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
        let writer = Writer {
            conn,
            heads,
            directory,
            fanout,
            store_path: store.path().to_path_buf(),
            metrics: metrics.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(rx))
            .expect("spawn log writer");
        Ok((Log { tx, metrics }, handle))
    }

    /// Appends and waits until committed.
    pub async fn append(&self, append: Append) -> Result<Appended, LogError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Some(Command { append, reply }))
            .await
            .map_err(|_| LogError::Unavailable("the log is closed".into()))?;
        rx.await.map_err(|_| LogError::Unavailable("the log writer stopped".into()))?
    }

    /// Asks the writer to finish what is queued and stop. Appends after this
    /// get `Unavailable`.
    pub async fn close(&self) {
        let _ = self.tx.send(None).await;
    }
}

struct Writer {
    conn: Connection,
    /// Last seq and ts of every log. Only this thread sequences, so a plain
    /// map: seqs are gap-free because nothing else hands them out.
    heads: HashMap<Id, (Seq, Millis)>,
    directory: Arc<RwLock<Directory>>,
    fanout: Arc<Fanout>,
    store_path: std::path::PathBuf,
    metrics: Arc<LogMetrics>,
}

type Reply = oneshot::Sender<Result<Appended, LogError>>;

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Option<Command>>) {
        let mut batch: Vec<Command> = Vec::with_capacity(64);
        loop {
            let mut closing = false;
            match rx.blocking_recv() {
                Some(Some(cmd)) => batch.push(cmd),
                Some(None) | None => closing = true,
            }
            while !closing && batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Some(cmd)) => batch.push(cmd),
                    Ok(None) => closing = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.run_batch(std::mem::take(&mut batch));
            }
            if closing {
                // Anything sent after the close request is refused by the
                // dropped receiver.
                rx.close();
                while let Ok(Some(cmd)) = rx.try_recv() {
                    batch.push(cmd);
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
        let now = unix_millis(SystemTime::now());
        let mut undo: HashMap<Id, Option<(Seq, Millis)>> = HashMap::new();
        let mut directory_touched = false;
        let mut deliveries: Vec<Delivery> = Vec::new();
        let mut answers: Vec<(Reply, Result<Appended, LogError>)> = Vec::with_capacity(batch.len());

        let outcome =
            (|| -> rusqlite::Result<()> {
                let tx = self.conn.transaction()?;
                // Keys used earlier in this same batch (not yet visible to SQL).
                let mut batch_keys: HashMap<(Id, String), (Id, Seq)> = HashMap::new();
                for Command { append, reply } in batch {
                    let result =
                        match append {
                            Append::Group { group, author, client_key, body } => {
                                let earlier = match &client_key {
                            Some(key) => match batch_keys.get(&(author.id, key.clone())) {
                                Some(found) => Some(*found),
                                None => tx
                                    .prepare_cached(
                                        "SELECT log, seq FROM events WHERE author = ?1 AND client_key = ?2",
                                    )?
                                    .query_row(params![author.id as i64, key], |r| {
                                        Ok((r.get::<_, i64>(0)? as Id, r.get::<_, i64>(1)? as Seq))
                                    })
                                    .optional()?,
                            },
                            None => None,
                        };
                                if let Some((group, seq)) = earlier {
                                    Ok(Appended::Group { group, seq, duplicate: true })
                                } else {
                                    let head = self.heads.get(&group).copied().unwrap_or((0, 0));
                                    undo.entry(group).or_insert(self.heads.get(&group).copied());
                                    let seq = head.0 + 1;
                                    let ts = now.max(head.1);
                                    let kind = body.kind();
                                    let channel = body.channel();
                                    let frame = serde_json::to_string(&ServerFrame::Event(Event {
                                        group,
                                        seq,
                                        ts,
                                        author: author.clone(),
                                        channel,
                                        body,
                                    }))
                                    .expect("events always serialize");
                                    tx.prepare_cached(
                                        "INSERT INTO events (log, seq, ts, author, client_key, kind, frame)
                                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                    )?
                                    .execute(params![
                                        group as i64,
                                        seq as i64,
                                        ts,
                                        author.id as i64,
                                        client_key,
                                        kind,
                                        frame
                                    ])?;
                                    self.heads.insert(group, (seq, ts));
                                    if let Some(key) = client_key {
                                        batch_keys.insert((author.id, key), (group, seq));
                                    }
                                    deliveries.push(Delivery { group, seq, frame: Utf8Bytes::from(frame) });
                                    Ok(Appended::Group { group, seq, duplicate: false })
                                }
                            }
                            Append::Directory(change) => {
                                let mut dir = self.directory.write().unwrap();
                                match dir.check(&change) {
                                    Err(refusal) => Err(LogError::Refused(refusal)),
                                    Ok(()) => {
                                        let head = self.heads.get(&DIRECTORY_LOG).copied().unwrap_or((0, 0));
                                        undo.entry(DIRECTORY_LOG)
                                            .or_insert(self.heads.get(&DIRECTORY_LOG).copied());
                                        let seq = head.0 + 1;
                                        let ts = now.max(head.1);
                                        let frame =
                                            serde_json::to_string(&change).expect("changes serialize");
                                        tx.prepare_cached(
                                    "INSERT INTO events (log, seq, ts, author, client_key, kind, frame)
                                     VALUES (0, ?1, ?2, 0, NULL, ?3, ?4)",
                                )?
                                .execute(params![seq as i64, ts, change.kind(), frame])?;
                                        apply_to_views(&tx, seq, &change)?;
                                        // Applied to memory now so that later changes of
                                        // this batch see it; undone by a reload if the
                                        // commit fails.
                                        dir.apply(seq, &change);
                                        directory_touched = true;
                                        self.heads.insert(DIRECTORY_LOG, (seq, ts));
                                        Ok(Appended::Directory { seq })
                                    }
                                }
                            }
                        };
                    answers.push((reply, result));
                }
                // Views derived from group events (hidden messages, audit).
                for delivery in &deliveries {
                    crate::moderation::apply_group_frame(&tx, delivery.group, delivery.seq, &delivery.frame)?;
                }
                tx.commit()
            })();

        match outcome {
            Ok(()) => {
                let micros = started.elapsed().as_micros() as u64;
                self.metrics.commit_micros.fetch_add(micros, Ordering::Relaxed);
                self.metrics.batches_committed.fetch_add(1, Ordering::Relaxed);
                self.metrics.events_committed.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
                // Committed: now, and only now, publish and acknowledge.
                for delivery in deliveries {
                    self.fanout.publish(delivery);
                }
                // Tell the connections of the accounts concerned.
                crate::presence::after_commit(&self.fanout.accounts, &self.directory);
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed; the batch is refused");
                self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
                for (log, before) in undo {
                    match before {
                        Some(head) => self.heads.insert(log, head),
                        None => self.heads.remove(&log),
                    };
                }
                if directory_touched {
                    self.reload_directory();
                }
                // Callers whose command was reached get their own answer
                // replaced; the rest were dropped with the closure and see
                // the writer's reply channel closed, which is also
                // `Unavailable`.
                let message = format!("could not write to the store: {e}");
                for (reply, _) in answers {
                    let _ = reply.send(Err(LogError::Unavailable(message.clone())));
                }
            }
        }
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
