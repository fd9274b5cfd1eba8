//! Cluster mode: several nodes on one Redis. Redis is the sequencer; every
//! node applies every event to its own SQLite and fans it out locally.
//!
//! - **Sequencing** (`Cluster::append`): one Lua script checks the client
//!   key, takes the log's next seq, builds the frame (so the event is
//!   serialized once, cluster-wide), appends it to the log's stream (trimmed
//!   to `--redis-stream-max`) and publishes it. "Accepted by Redis" is the
//!   ack.
//! - **Applying** (`Cluster::follow`): each node subscribes to a fixed set
//!   of shard channels, hands events to the log writer strictly in seq
//!   order, and repairs any jump from the stream before applying later
//!   events, so SQLite never has a hole. On (re)connect it first catches up
//!   every log from the stream.
//! - **Layout**: everything one log's step touches — seq counter, last ts,
//!   stream, idempotency keys and the channel — shares the hash tag of the
//!   log's shard (`{vhN}`, N = log mod 64), so each step lies in one slot of
//!   a Redis Cluster.
//!
//! This module owns Redis; it never touches SQLite or sockets directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::ConnectionManager;

use crate::directory::Directory;
use crate::log::{Append, Appended, Applied, Committed, FrameParts, Log, LogError};
use crate::store::{Store, DIRECTORY_LOG};
use protocol::{Id, Seq};

/// Shard tags. Fixed: a node subscribes to exactly these channels, and a
/// Redis Cluster can spread them over up to this many masters.
pub const SHARDS: u64 = 64;

/// How long a send may wait for Redis before it is refused `unavailable`.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Events read from a stream per XRANGE when catching up.
const CATCH_UP_PAGE: usize = 1000;

/// Live events handed to the writer at once.
const APPLY_BATCH: usize = 1024;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    /// Events kept per group log stream (approximate, `MAXLEN ~`).
    pub stream_max: u64,
    /// Events kept in the directory log's stream: accounts and the org tree,
    /// which a node needs from the beginning unless it starts from a backup.
    pub directory_stream_max: u64,
    /// Seconds a client key is remembered for idempotency.
    pub key_ttl: u64,
    /// Seconds a picture stays in Redis for other nodes to fetch.
    pub image_ttl: u64,
}

fn tag(log: Id) -> String {
    format!("{{vh{}}}", log % SHARDS)
}

fn channel(shard: u64) -> String {
    format!("vh:{{vh{shard}}}:events")
}

fn seq_key(log: Id) -> String {
    format!("vh:{}:seq:{log}", tag(log))
}

fn ts_key(log: Id) -> String {
    format!("vh:{}:ts:{log}", tag(log))
}

fn stream_key(log: Id) -> String {
    format!("vh:{}:log:{log}", tag(log))
}

fn client_key_key(log: Id, author: Id, client_key: &str) -> String {
    format!("vh:{}:key:{log}:{author}:{client_key}", tag(log))
}

/// A picture's bytes (`images.rs`). No hash tag: each picture is one key,
/// touched by single-key commands, so it may live in any slot.
fn image_key(name: &str) -> String {
    format!("vh:img:{name}")
}

/// The sequencing step. KEYS: seq, ts, stream, client-key. ARGV: log,
/// author, kind, client_key ('' = none), frame prefix, frame tail (or the
/// whole payload), is_group, stream max, key ttl, channel, known head.
const SEQUENCE_LUA: &str = r#"
local log, author, kind, ckey = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if ckey ~= '' then
  local prev = redis.call('GET', KEYS[4])
  if prev then return {0, tonumber(prev)} end
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[11]) then
  return redis.error_reply('VHBEHIND Redis has seq ' .. current .. ' of log ' .. log .. ' but a node applied ' .. ARGV[11] .. ': Redis lost data')
end
local seq = current + 1
redis.call('SET', KEYS[1], seq)
local t = redis.call('TIME')
local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if ts < last then ts = last end
redis.call('SET', KEYS[2], ts)
local frame = ARGV[6]
if ARGV[7] == '1' then frame = ARGV[5] .. seq .. ',"ts":' .. ts .. ',' .. ARGV[6] end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '0-' .. seq,
  'ts', ts, 'author', author, 'kind', kind, 'key', ckey, 'frame', frame)
if ckey ~= '' then redis.call('SET', KEYS[4], seq, 'EX', ARGV[9]) end
redis.call('PUBLISH', ARGV[10], log .. '\n' .. seq .. '\n' .. ts .. '\n' .. author .. '\n' .. kind .. '\n' .. ckey .. '\n' .. frame)
return {1, seq}
"#;

/// What readiness reports.
#[derive(Debug, Default, Clone)]
pub struct ClusterStatus {
    /// Following Redis pub/sub and caught up with every stream.
    pub live: bool,
    pub last_error: Option<String>,
    /// Logs this node cannot serve: Redis no longer holds the events it is
    /// missing. Cured only by restoring another node's backup.
    pub stale: BTreeMap<Id, String>,
}

pub struct Cluster {
    config: RedisConfig,
    client: redis::Client,
    /// Commands (the script, catch-up reads). Reconnects by itself.
    commands: ConnectionManager,
    script: redis::Script,
    /// True while the feed is connected: when false, sends fail at once
    /// instead of waiting for a Redis that is known to be away.
    connected: AtomicBool,
    status: Mutex<ClusterStatus>,
    /// Highest seq of each log that this node has seen sequenced (its own
    /// appends included), for the guard against a Redis that lost data.
    known: Mutex<HashMap<Id, Seq>>,
    /// The node's log, set when the feed starts; directory appends wait on
    /// it for their change to be applied.
    log: OnceLock<Log>,
}

impl Cluster {
    pub fn new(config: RedisConfig, store: &Store) -> anyhow::Result<Arc<Cluster>> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
        let known = store.heads()?.into_iter().collect();
        Ok(Arc::new(Cluster {
            config,
            client,
            commands,
            script: redis::Script::new(SEQUENCE_LUA),
            connected: AtomicBool::new(false),
            status: Mutex::new(ClusterStatus::default()),
            known: Mutex::new(known),
            log: OnceLock::new(),
        }))
    }

    pub fn status(&self) -> ClusterStatus {
        self.status.lock().unwrap().clone()
    }

    /// Events sequenced in Redis (as far as this node has heard) but not yet
    /// applied here, over all logs.
    pub fn replication_lag(&self, applied: impl Fn(Id) -> Seq) -> u64 {
        self.known.lock().unwrap().iter().map(|(log, known)| known.saturating_sub(applied(*log))).sum()
    }

    /// Whether anything was ever sequenced in this cluster's directory log
    /// (as far as this node has seen).
    pub fn directory_exists(&self) -> bool {
        self.known_head(DIRECTORY_LOG) > 0
    }

    /// Whether this node may serve the log (not stale).
    pub fn serves(&self, log: Id) -> bool {
        let status = self.status.lock().unwrap();
        !status.stale.contains_key(&log) && !status.stale.contains_key(&DIRECTORY_LOG)
    }

    fn set_error(&self, error: String) {
        tracing::warn!(%error, "cluster");
        let mut status = self.status.lock().unwrap();
        status.live = false;
        status.last_error = Some(error);
    }

    fn known_head(&self, log: Id) -> Seq {
        self.known.lock().unwrap().get(&log).copied().unwrap_or(0)
    }

    fn saw(&self, log: Id, seq: Seq) {
        let mut known = self.known.lock().unwrap();
        let head = known.entry(log).or_insert(0);
        *head = (*head).max(seq);
    }

    /// Sequences an append in Redis.
    pub async fn append(&self, append: Append, applied: &Applied) -> Result<Appended, LogError> {
        if !self.connected.load(Ordering::Acquire) {
            return Err(LogError::Unavailable("the sequencer (Redis) is unreachable; retry".into()));
        }
        match append {
            Append::Group { group, author, client_key, body } => {
                if !self.serves(group) {
                    return Err(LogError::Unavailable("this node is missing events of this group".into()));
                }
                let parts = FrameParts::new(group, &author, &body);
                let key = client_key.unwrap_or_default();
                let (fresh, seq) = self
                    .sequence(group, author.id, body.kind(), &key, &parts.prefix, &parts.tail, true)
                    .await?;
                Ok(Appended::Group { group, seq, duplicate: !fresh })
            }
            Append::Directory(change) => {
                let payload = serde_json::to_string(&change).expect("changes serialize");
                let (_, seq) =
                    self.sequence(DIRECTORY_LOG, 0, change.kind(), "", "", &payload, false).await?;
                // Whether it took effect is decided when it is applied, the
                // same way on every node; wait for that here.
                let log = self.log.get().expect("the feed is started before appends").clone();
                if !log.wait_directory(seq, Duration::from_secs(10)).await {
                    return Err(LogError::Unavailable(
                        "the change was sequenced but is not applied yet".into(),
                    ));
                }
                match applied.take_refusal(seq) {
                    Some(refusal) => Err(LogError::Refused(refusal)),
                    None => Ok(Appended::Directory { seq }),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn sequence(
        &self,
        log: Id,
        author: Id,
        kind: &str,
        client_key: &str,
        prefix: &str,
        tail: &str,
        is_group: bool,
    ) -> Result<(bool, Seq), LogError> {
        let idem = if client_key.is_empty() {
            format!("vh:{}:key:-", tag(log))
        } else {
            client_key_key(log, author, client_key)
        };
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(seq_key(log))
            .key(ts_key(log))
            .key(stream_key(log))
            .key(idem)
            .arg(log)
            .arg(author)
            .arg(kind)
            .arg(client_key)
            .arg(prefix)
            .arg(tail)
            .arg(if is_group { "1" } else { "0" })
            .arg(if log == DIRECTORY_LOG { self.config.directory_stream_max } else { self.config.stream_max })
            .arg(self.config.key_ttl)
            .arg(channel(log % SHARDS))
            .arg(self.known_head(log));
        let mut conn = self.commands.clone();
        let result: redis::RedisResult<(i64, u64)> =
            match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut conn)).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(LogError::Unavailable("the sequencer (Redis) did not answer in time".into()))
                }
            };
        match result {
            Ok((fresh, seq)) => {
                self.saw(log, seq);
                Ok((fresh == 1, seq))
            }
            Err(e) => {
                tracing::warn!(error = %e, log, "sequencing failed");
                Err(LogError::Unavailable(format!("the sequencer (Redis) failed: {e}")))
            }
        }
    }
}

// --- images ---
/// How long a picture transfer may take before it is given up.
const IMAGE_TIMEOUT: Duration = Duration::from_secs(10);

impl Cluster {
    /// Puts a picture where every node can fetch it (value: the type, a
    /// newline, the bytes), refreshing its TTL if it is there already.
    pub async fn put_image(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let content_type = crate::images::sniff(bytes).unwrap_or("application/octet-stream");
        let mut value = Vec::with_capacity(content_type.len() + 1 + bytes.len());
        value.extend_from_slice(content_type.as_bytes());
        value.push(b'\n');
        value.extend_from_slice(bytes);
        let mut conn = self.commands.clone();
        let mut set = redis::cmd("SET");
        set.arg(image_key(name)).arg(value).arg("EX").arg(self.config.image_ttl);
        let command = set.query_async::<()>(&mut conn);
        match tokio::time::timeout(IMAGE_TIMEOUT, command).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("could not hand the picture to the other nodes (Redis): {e}")),
            Err(_) => {
                Err("could not hand the picture to the other nodes: Redis did not answer in time".into())
            }
        }
    }

    /// A picture's bytes from Redis, if it is (still) there.
    pub async fn get_image(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let mut conn = self.commands.clone();
        let mut get = redis::cmd("GET");
        get.arg(image_key(name));
        let command = get.query_async::<Option<Vec<u8>>>(&mut conn);
        let value = match tokio::time::timeout(IMAGE_TIMEOUT, command).await {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => return Err(format!("could not fetch the picture from Redis: {e}")),
            Err(_) => return Err("could not fetch the picture: Redis did not answer in time".into()),
        };
        Ok(value.and_then(|v| {
            let split = v.iter().position(|b| *b == b'\n')?;
            Some(v[split + 1..].to_vec())
        }))
    }
}
// --- end images ---

/// The feed: follows Redis and applies every event to this node.
pub struct Feed {
    cluster: Arc<Cluster>,
    log: Log,
    directory: Arc<RwLock<Directory>>,
    /// Highest seq handed to (and committed by) the writer, per log.
    handed: HashMap<Id, Seq>,
    /// This node's pictures: those a replicated event names are fetched.
    images: Arc<crate::images::Images>,
}

impl Cluster {
    /// Starts following Redis; returns a handle to stop it.
    pub fn start_feed(
        self: &Arc<Self>,
        log: Log,
        directory: Arc<RwLock<Directory>>,
        store: &Store,
        images: Arc<crate::images::Images>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let _ = self.log.set(log.clone());
        let handed = store.heads()?.into_iter().collect();
        let feed = Feed { cluster: self.clone(), log, directory, handed, images };
        Ok(tokio::spawn(feed.run()))
    }

    /// Waits until the feed is live (caught up), at most `timeout`.
    pub async fn wait_live(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.status.lock().unwrap().live {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Feed {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let error = self.follow().await;
            self.cluster.connected.store(false, Ordering::Release);
            self.cluster.set_error(error);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            if self.cluster.status.lock().unwrap().live {
                backoff = Duration::from_millis(100);
            }
        }
    }

    /// Connects, catches up, then applies live events until the connection
    /// fails; returns why it stopped.
    async fn follow(&mut self) -> String {
        let pubsub = match tokio::time::timeout(REDIS_TIMEOUT, self.cluster.client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => return format!("cannot connect to Redis: {e}"),
            Err(_) => return "cannot connect to Redis: timed out".into(),
        };
        let mut pubsub = pubsub;
        let channels: Vec<String> = (0..SHARDS).map(channel).collect();
        if let Err(e) = pubsub.subscribe(&channels).await {
            return format!("cannot subscribe: {e}");
        }
        // Subscribed first, then caught up: whatever is published meanwhile
        // waits in the subscription and is deduplicated by seq.
        let mut messages = pubsub.into_on_message();
        self.cluster.connected.store(true, Ordering::Release);
        if let Err(e) = self.catch_up().await {
            return e;
        }
        {
            let mut status = self.cluster.status.lock().unwrap();
            status.live = true;
            status.last_error = None;
        }
        tracing::info!("cluster feed live");
        while let Some(first) = messages.next().await {
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match parse_message(msg.get_payload_bytes()) {
                    Some(event) => batch.push(event),
                    None => tracing::error!("unreadable message on {}", msg.get_channel_name()),
                }
                if batch.len() < APPLY_BATCH {
                    next = messages.next().now_or_never().flatten();
                }
            }
            if let Err(e) = self.apply_in_order(batch).await {
                return e;
            }
        }
        "the Redis subscription closed".into()
    }

    /// Brings every log up to Redis's head from the streams: the directory
    /// first (it names the groups), then every group.
    async fn catch_up(&mut self) -> Result<(), String> {
        self.catch_up_log(DIRECTORY_LOG).await?;
        let groups: Vec<Id> = self.directory.read().unwrap().groups.keys().copied().collect();
        for group in groups {
            self.catch_up_log(group).await?;
        }
        Ok(())
    }

    async fn catch_up_log(&mut self, log: Id) -> Result<(), String> {
        let mut conn = self.cluster.commands.clone();
        let head: Option<u64> = redis::cmd("GET")
            .arg(seq_key(log))
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("catch-up of log {log}: {e}"))?;
        let head = head.unwrap_or(0);
        self.cluster.saw(log, head);
        let mut applied = self.handed.get(&log).copied().unwrap_or(0);
        if head < applied {
            let message = format!(
                "Redis has seq {head} of log {log} but this node applied {applied}: Redis lost data (check its persistence)"
            );
            tracing::error!("{message}");
            self.cluster.status.lock().unwrap().last_error = Some(message);
            return Ok(());
        }
        while applied < head {
            let events = self.read_stream(log, applied, head).await?;
            if events.first().map(|e| e.seq) != Some(applied + 1) {
                self.mark_stale(log, applied, events.first().map(|e| e.seq));
                return Ok(());
            }
            applied = events.last().map(|e| e.seq).unwrap_or(applied);
            self.hand(events).await?;
        }
        Ok(())
    }

    fn mark_stale(&self, log: Id, applied: Seq, first_available: Option<Seq>) {
        let why = format!(
            "log {log}: this node has applied up to seq {applied}, but the Redis stream starts at {}; restore this node from another node's backup",
            first_available.map(|s| s.to_string()).unwrap_or_else(|| "nothing".into())
        );
        tracing::error!("{why}");
        self.cluster.status.lock().unwrap().stale.insert(log, why);
    }

    /// Up to `CATCH_UP_PAGE` events of `log` with `after < seq <= to`.
    async fn read_stream(&self, log: Id, after: Seq, to: Seq) -> Result<Vec<Committed>, String> {
        let mut conn = self.cluster.commands.clone();
        type Entry = (String, Vec<(String, Vec<u8>)>);
        let entries: Vec<Entry> = redis::cmd("XRANGE")
            .arg(stream_key(log))
            .arg(format!("(0-{after}"))
            .arg(format!("0-{to}"))
            .arg("COUNT")
            .arg(CATCH_UP_PAGE)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("reading the stream of log {log}: {e}"))?;
        let mut events = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            let seq: Seq = id.strip_prefix("0-").and_then(|s| s.parse().ok()).ok_or("bad stream id")?;
            let field = |name: &str| {
                fields.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            let key = field("key").unwrap_or_default();
            events.push(Committed {
                log,
                seq,
                ts: field("ts").and_then(|v| v.parse().ok()).unwrap_or(0),
                author: field("author").and_then(|v| v.parse().ok()).unwrap_or(0),
                client_key: (!key.is_empty()).then_some(key),
                kind: field("kind").unwrap_or_default(),
                frame: field("frame").ok_or("stream entry without frame")?,
            });
        }
        Ok(events)
    }

    /// Applies live events in seq order per log, repairing jumps from the
    /// stream first.
    async fn apply_in_order(&mut self, batch: Vec<Committed>) -> Result<(), String> {
        let mut ordered: Vec<Committed> = Vec::with_capacity(batch.len());
        let mut heads: HashMap<Id, Seq> = HashMap::new();
        for event in batch {
            self.cluster.saw(event.log, event.seq);
            let head =
                *heads.entry(event.log).or_insert_with(|| self.handed.get(&event.log).copied().unwrap_or(0));
            if event.seq <= head {
                continue;
            }
            if event.seq > head + 1 {
                let mut after = head;
                while after < event.seq - 1 {
                    let missing = self.read_stream(event.log, after, event.seq - 1).await?;
                    if missing.first().map(|e| e.seq) != Some(after + 1) {
                        self.mark_stale(event.log, after, missing.first().map(|e| e.seq));
                        return Ok(());
                    }
                    after = missing.last().map(|e| e.seq).unwrap_or(after);
                    ordered.extend(missing);
                }
            }
            heads.insert(event.log, event.seq);
            ordered.push(event);
        }
        self.hand(ordered).await
    }

    /// Hands events to the writer and waits for the commit.
    async fn hand(&mut self, events: Vec<Committed>) -> Result<(), String> {
        if events.is_empty() {
            return Ok(());
        }
        let heads: Vec<(Id, Seq)> = events.iter().map(|e| (e.log, e.seq)).collect();
        let pictures: Vec<String> =
            events.iter().flat_map(|e| crate::images::names_in_frame(&e.kind, &e.frame)).collect();
        if !pictures.is_empty() {
            crate::images::fetch_missing_later(self.cluster.clone(), self.images.clone(), pictures);
        }
        match self.log.apply(events).await {
            Ok(()) => {
                for (log, seq) in heads {
                    let head = self.handed.entry(log).or_insert(0);
                    *head = (*head).max(seq);
                }
                Ok(())
            }
            // Nothing of the batch was stored; reconnecting catches it up.
            Err(e) => Err(format!("could not apply events: {e}")),
        }
    }
}

/// `log \n seq \n ts \n author \n kind \n client_key \n frame` — the frame
/// last, since only it may contain anything (JSON never has a raw newline,
/// and client keys may not contain control characters).
fn parse_message(payload: &[u8]) -> Option<Committed> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.splitn(7, '\n');
    let log = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let ts = parts.next()?.parse().ok()?;
    let author = parts.next()?.parse().ok()?;
    let kind = parts.next()?.to_string();
    let key = parts.next()?;
    let frame = parts.next()?.to_string();
    Some(Committed {
        log,
        seq,
        ts,
        author,
        client_key: (!key.is_empty()).then(|| key.to_string()),
        kind,
        frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_with_newline_free_fields_and_any_frame() {
        let event = parse_message(b"4\n126\n1764319200123\n7\nmessage\nk-1\n{\"a\":\"x\\ny\"}").unwrap();
        assert_eq!((event.log, event.seq, event.ts, event.author), (4, 126, 1_764_319_200_123, 7));
        assert_eq!(event.client_key.as_deref(), Some("k-1"));
        assert_eq!(event.frame, "{\"a\":\"x\\ny\"}");
        assert!(parse_message(b"4\n126\n").is_none());
        assert_eq!(parse_message(b"0\n1\n5\n0\ndistrict_created\n\n{}").unwrap().client_key, None);
    }

    #[test]
    fn one_log_one_slot() {
        for log in [0, 4, 65, 1000] {
            let t = tag(log);
            for key in [
                seq_key(log),
                ts_key(log),
                stream_key(log),
                client_key_key(log, 7, "k"),
                channel(log % SHARDS),
            ] {
                assert!(key.contains(&t), "{key} lacks {t}");
                assert_eq!(key.find('{'), key.find(&t), "{key}: the first hash tag must be the shard's");
            }
        }
    }
}

// --- presence ---
// Who is online, across nodes: each node keeps, per group, the set of the
// group's members with a connection open on it (`vh:{vhp}:on:<group>:<node>`,
// under a TTL refreshed every few rounds so a dead node's sets go away),
// and announces which groups changed in a short stream (`vh:{vhp}:changes`)
// that every node reads to learn which counts to push again. A group's
// online members are the union of its sets on the nodes whose last round
// is recent. All presence keys share one hash tag, so a round is one
// pipeline to one slot.

/// A node whose last round is older than this is not counted.
pub const PRESENCE_TTL_MS: i64 = 15_000;
/// Changes kept in the stream (approximate).
const PRESENCE_CHANGES_MAX: usize = 10_000;
const NODES_KEY: &str = "vh:{vhp}:nodes";
const CHANGES_KEY: &str = "vh:{vhp}:changes";

fn online_key(group: Id, node: &str) -> String {
    format!("vh:{{vhp}}:on:{group}:{node}")
}

/// What one presence round learnt.
#[derive(Debug, Default)]
pub struct PresenceRound {
    /// Groups whose online members changed on some node since `after`.
    pub changed: Vec<Id>,
    /// The id of the last change read (the next round's `after`).
    pub last: String,
    /// Nodes counted (their last round is recent), sorted.
    pub nodes: Vec<String>,
}

impl Cluster {
    /// One presence round: replaces this node's sets of the `changed`
    /// groups, refreshes the TTL of the `refresh` groups' sets, announces
    /// the change and reads every node's changes after `after` (empty:
    /// start from now).
    pub async fn presence_round(
        &self,
        node: &str,
        changed: &[(Id, Vec<Id>)],
        refresh: &[Id],
        after: &str,
        now: protocol::Millis,
    ) -> redis::RedisResult<PresenceRound> {
        let mut conn = self.commands.clone();
        let ttl = PRESENCE_TTL_MS * 4;
        let mut pipe = redis::pipe();
        for (group, online) in changed {
            let key = online_key(*group, node);
            pipe.cmd("DEL").arg(&key).ignore();
            if !online.is_empty() {
                pipe.cmd("SADD").arg(&key).arg(online).ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(ttl).ignore();
            }
        }
        for group in refresh {
            pipe.cmd("PEXPIRE").arg(online_key(*group, node)).arg(ttl).ignore();
        }
        pipe.cmd("ZADD").arg(NODES_KEY).arg(now).arg(node).ignore();
        pipe.cmd("ZREMRANGEBYSCORE").arg(NODES_KEY).arg("-inf").arg(now - ttl).ignore();
        if !changed.is_empty() {
            let groups = changed.iter().map(|(g, _)| g.to_string()).collect::<Vec<_>>().join(",");
            pipe.cmd("XADD")
                .arg(CHANGES_KEY)
                .arg("MAXLEN")
                .arg("~")
                .arg(PRESENCE_CHANGES_MAX)
                .arg("*")
                .arg("groups")
                .arg(groups)
                .ignore();
        }
        type Entry = (String, Vec<(String, String)>);
        if after.is_empty() {
            pipe.cmd("XREVRANGE").arg(CHANGES_KEY).arg("+").arg("-").arg("COUNT").arg(1);
        } else {
            pipe.cmd("XRANGE").arg(CHANGES_KEY).arg(format!("({after}")).arg("+").arg("COUNT").arg(10_000);
        }
        pipe.cmd("ZRANGEBYSCORE").arg(NODES_KEY).arg(now - PRESENCE_TTL_MS).arg("+inf");
        let (entries, mut nodes): (Vec<Entry>, Vec<String>) = pipe.query_async(&mut conn).await?;
        nodes.sort_unstable();
        let mut round = PresenceRound { last: after.to_string(), nodes, ..Default::default() };
        if let Some((id, _)) = entries.last() {
            round.last = id.clone();
        }
        if !after.is_empty() {
            for (_, fields) in entries {
                for (_, groups) in fields.iter().filter(|(k, _)| k == "groups") {
                    round.changed.extend(groups.split(',').filter_map(|g| g.parse::<Id>().ok()));
                }
            }
        }
        Ok(round)
    }

    /// The online members of each of `groups` on any of `nodes`.
    pub async fn online_in(&self, nodes: &[String], groups: &[Id]) -> redis::RedisResult<Vec<Vec<Id>>> {
        if nodes.is_empty() || groups.is_empty() {
            return Ok(vec![Vec::new(); groups.len()]);
        }
        let mut conn = self.commands.clone();
        let mut pipe = redis::pipe();
        for group in groups {
            let keys: Vec<String> = nodes.iter().map(|n| online_key(*group, n)).collect();
            pipe.cmd("SUNION").arg(keys);
        }
        pipe.query_async(&mut conn).await
    }
}
// --- end presence ---
