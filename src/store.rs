//! The SQLite store: the event logs and the views derived from them.
//!
//! One writer connection belongs to the log writer thread (`log.rs`); reads
//! (history, backfill, directory load) use a small pool of read-only
//! connections, which WAL mode lets run beside the writer. This module owns
//! the schema and every SQL statement; it does not decide who may do what.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::config::SyncMode;
use crate::directory::{AccountRecord, Directory, GroupRecord, TownRecord};
use protocol::{AuditAction, AuditEntry, GroupKind, Id, Millis, Person, Role, Seq};

/// The directory log (accounts, org tree, memberships) is log 0; every group
/// log is keyed by its group id, and group ids start at 1.
pub const DIRECTORY_LOG: Id = 0;

/// How often the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Bumped whenever the schema changes; `open` migrates older files with
/// `MIGRATIONS`, and creates new ones directly at this version.
pub const SCHEMA_VERSION: i64 = 6;

/// `MIGRATIONS[v - 1]` takes a store from schema v to v + 1. Each runs in
/// one transaction with the version bump, so a crash mid-migration leaves
/// the old version intact.
const MIGRATIONS: &[&str] = &[
    // 1 → 2: client keys are unique per author *within a log* (so that the
    // cluster sequencer can check them in the group's own Redis slot).
    r#"
    DROP INDEX IF EXISTS events_client_key;
    CREATE UNIQUE INDEX events_client_key ON events (log, author, client_key) WHERE client_key IS NOT NULL;
    "#,
    // 2 → 3: the membership views (registration, households, offices,
    // member flags, audit, hidden messages); all new tables.
    crate::membership::SCHEMA,
    // 3 → 4: the governance channels (an index by event kind).
    crate::governance::SCHEMA,
    // 4 → 5: stored early warnings (none were stored before).
    crate::warnings::SCHEMA,
    // 5 → 6: the live figures view, filled from the stored events.
    crate::live::SCHEMA,
];

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Every change is an event in exactly one log, with a gap-free seq from 1.
-- `frame` is the event exactly as pushed to clients (for group logs) or the
-- serialized directory change (log 0), so backfill sends stored bytes.
CREATE TABLE IF NOT EXISTS events (
    log        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    author     INTEGER NOT NULL,
    client_key TEXT,
    kind       TEXT NOT NULL,
    frame      TEXT NOT NULL,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;
-- A client key is unique per author within a log (a group): retries land
-- in the same group, and in cluster mode the check runs in that group's
-- Redis slot.
CREATE UNIQUE INDEX IF NOT EXISTS events_client_key
    ON events (log, author, client_key) WHERE client_key IS NOT NULL;

-- Views of the directory log.
CREATE TABLE IF NOT EXISTS districts (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS towns (
    id       INTEGER PRIMARY KEY,
    district INTEGER NOT NULL REFERENCES districts(id),
    name     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS "groups" (
    id   INTEGER PRIMARY KEY,
    town INTEGER NOT NULL REFERENCES towns(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id            INTEGER PRIMARY KEY,
    phone         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    account INTEGER NOT NULL REFERENCES accounts(id),
    "group" INTEGER NOT NULL REFERENCES "groups"(id),
    role    TEXT NOT NULL,
    PRIMARY KEY (account, "group")
);
"#;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("the store was written by a newer villagehub (schema {0}, this build knows {1})")]
    TooNew(i64, i64),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Handle for reads. Cheap to share (`Arc<Store>`); the writer connection
/// is opened separately with `Store::open_writer`.
pub struct Store {
    path: PathBuf,
    /// Idle read-only connections. A std mutex: it is held only to push or
    /// pop, never across an await or a query.
    readers: Mutex<Vec<Connection>>,
}

/// A stored event: its seq and the frame exactly as it goes on the wire.
pub struct StoredEvent {
    pub seq: Seq,
    pub frame: String,
}

impl Store {
    /// Opens (creating or migrating) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::DataDir(data_dir.into(), e))?;
        Store::open_file(&data_dir.join("villagehub.sqlite3"))
    }

    /// Opens (creating or migrating) the store in one SQLite file.
    pub fn open_file(path: &Path) -> Result<Store, StoreError> {
        let path = path.to_path_buf();
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&conn)?;
        Ok(Store { path, readers: Mutex::new(Vec::new()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The one connection that writes; owned by the log writer thread.
    pub fn open_writer(&self, sync: SyncMode) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The default 2 MiB page cache made the writer re-read index pages
        // with pread on every batch; the writer is the one serial resource.
        conn.pragma_update(None, "cache_size", -65_536)?; // KiB: 64 MiB
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoints run mostly on a thread of their own
        // (`start_checkpointer`): in the writer they took a quarter of its
        // time, inside the commit every acked send waits for. The writer
        // still checkpoints past 4,000 pages (16 MiB of WAL): only a
        // checkpoint right after a commit, with nothing newer in the WAL,
        // lets SQLite start the WAL over, so under a steady stream of writes
        // the background thread alone would let it grow without end. By
        // then that thread has copied most of it.
        conn.pragma_update(None, "wal_autocheckpoint", 4_000)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Copies the write-ahead log into the database file every
    /// `CHECKPOINT_EVERY`, off the writer thread. PASSIVE: it never waits
    /// for readers or the writer, and copies what it can; the WAL is
    /// reused from its start once everything in it has been copied. Runs
    /// until the process exits (a checkpoint is never needed for
    /// durability: the WAL itself is synced at each commit).
    pub fn start_checkpointer(&self, sync: SyncMode) -> Result<std::thread::JoinHandle<()>, StoreError> {
        let conn = Connection::open(&self.path)?;
        conn.pragma_update(None, "synchronous", if sync == SyncMode::Full { "FULL" } else { "NORMAL" })?;
        let handle = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "checkpoint failed; retried");
                }
            })
            .map_err(|e| StoreError::DataDir(self.path.clone(), e))?;
        Ok(handle)
    }

    /// Runs `f` on a pooled read-only connection. Blocking: call it from
    /// `spawn_blocking` or a thread of its own.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.readers.lock().unwrap().pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                c
            }
        };
        let result = f(&conn);
        // Keep a few idle connections; more would only hold file handles.
        let mut idle = self.readers.lock().unwrap();
        if idle.len() < 8 {
            idle.push(conn);
        }
        result
    }

    /// Events of `log` with `after < seq`, ascending, at most `limit`, with
    /// hidden messages replaced by their redacted frame: the members' one,
    /// or (`moderator`) the one with the text.
    pub fn events_after_as(
        &self,
        log: Id,
        after: Seq,
        limit: u32,
        moderator: bool,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.seq, COALESCE(CASE WHEN ?4 THEN r.moderator_frame ELSE r.member_frame END, e.frame)
                 FROM events e LEFT JOIN redactions r ON r.log = e.log AND r.seq = e.seq
                 WHERE e.log = ?1 AND e.seq > ?2 ORDER BY e.seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![log as i64, after as i64, limit, moderator], stored_event)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The newest `limit` events of `log` with `seq < before` (all if
    /// `before` is None), ascending, and whether older ones exist; hidden
    /// messages redacted as in `events_after_as`.
    pub fn history_as(
        &self,
        log: Id,
        before: Option<Seq>,
        limit: u32,
        moderator: bool,
    ) -> Result<(Vec<StoredEvent>, bool), StoreError> {
        self.read(|c| {
            let before = before.map(|b| b as i64).unwrap_or(i64::MAX);
            let mut stmt = c.prepare_cached(
                "SELECT e.seq, COALESCE(CASE WHEN ?4 THEN r.moderator_frame ELSE r.member_frame END, e.frame)
                 FROM events e LEFT JOIN redactions r ON r.log = e.log AND r.seq = e.seq
                 WHERE e.log = ?1 AND e.seq < ?2 ORDER BY e.seq DESC LIMIT ?3",
            )?;
            let mut events = stmt
                .query_map(params![log as i64, before, limit, moderator], stored_event)?
                .collect::<Result<Vec<_>, _>>()?;
            events.reverse();
            // Seqs are gap-free from 1, so older events exist iff the first
            // returned seq is above 1.
            let more = events.first().is_some_and(|e| e.seq > 1);
            Ok((events, more))
        })
    }

    /// The kind of event `seq` of `log`, and whether it has been hidden.
    pub fn event_kind(&self, log: Id, seq: Seq) -> Result<Option<(String, bool)>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT e.kind, r.seq IS NOT NULL FROM events e
                 LEFT JOIN redactions r ON r.log = e.log AND r.seq = e.seq
                 WHERE e.log = ?1 AND e.seq = ?2",
            )?
            .query_row(params![log as i64, seq as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
        })
    }

    /// A page of a group's audit log, newest first, with `at < before`; and
    /// whether older entries exist.
    pub fn audit(
        &self,
        group: Id,
        before: Option<Millis>,
        limit: u32,
    ) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        self.read(|c| {
            let before = before.unwrap_or(i64::MAX);
            let mut stmt = c.prepare_cached(
                r#"SELECT a.at, a.action, a.actor, COALESCE(x.name, ''), a.target, y.name, a.role,
                          a.target_seq, a.until, a.reason
                   FROM audit a LEFT JOIN accounts x ON x.id = a.actor LEFT JOIN accounts y ON y.id = a.target
                   WHERE a."group" = ?1 AND a.at < ?2
                   ORDER BY a.at DESC, a.log DESC, a.seq DESC LIMIT ?3"#,
            )?;
            let mut entries = Vec::new();
            let rows = stmt.query_map(params![group as i64, before, limit as i64 + 1], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            })?;
            for row in rows {
                let (at, action, actor, actor_name, target, target_name, role, seq, until, reason) = row?;
                let action = AuditAction::parse(&action)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {action:?}")))?;
                entries.push(AuditEntry {
                    at,
                    action,
                    actor: Person { id: actor as Id, name: actor_name },
                    target: target.map(|t| Person { id: t as Id, name: target_name.unwrap_or_default() }),
                    role: role.as_deref().map(parse_role).transpose()?,
                    seq: seq.map(|s| s as Seq),
                    until,
                    reason,
                });
            }
            let more = entries.len() > limit as usize;
            entries.truncate(limit as usize);
            Ok((entries, more))
        })
    }

    /// The last seq of every log that has events.
    pub fn heads(&self) -> Result<Vec<(Id, Seq)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare("SELECT log, MAX(seq) FROM events GROUP BY log")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as Id, r.get::<_, i64>(1)? as Seq)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// Loads the directory views into memory.
    pub fn load_directory(&self) -> Result<Directory, StoreError> {
        self.read(|c| {
            let mut dir = Directory::default();
            let mut stmt = c.prepare("SELECT id, name FROM districts")?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
                let (id, name) = row?;
                dir.districts.insert(id as Id, name);
            }
            let mut stmt = c.prepare("SELECT id, district, name FROM towns")?;
            for row in stmt.query_map([], |r| {
                Ok(TownRecord {
                    id: r.get::<_, i64>(0)? as Id,
                    district: r.get::<_, i64>(1)? as Id,
                    name: r.get(2)?,
                })
            })? {
                let town = row?;
                dir.towns.insert(town.id, town);
            }
            let mut stmt = c.prepare(r#"SELECT id, town, name, kind FROM "groups""#)?;
            for row in stmt.query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })? {
                let (id, town, name, kind) = row?;
                let kind = parse_group_kind(&kind)?;
                dir.groups.insert(id as Id, GroupRecord { id: id as Id, town: town as Id, name, kind });
            }
            let mut stmt = c.prepare("SELECT id, phone, name, password_hash FROM accounts")?;
            for row in stmt.query_map([], |r| {
                Ok(AccountRecord {
                    id: r.get::<_, i64>(0)? as Id,
                    phone: r.get(1)?,
                    name: r.get(2)?,
                    password_hash: r.get(3)?,
                })
            })? {
                dir.insert_account(row?);
            }
            let mut stmt = c.prepare(r#"SELECT account, "group", role FROM memberships"#)?;
            for row in stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?
            {
                let (account, group, role) = row?;
                dir.set_role(account as Id, group as Id, parse_role(&role)?);
            }
            crate::membership::load(c, &mut dir)?;
            crate::gov_api::keys::load(c, &mut dir)?;
            Ok(dir)
        })
    }
}

/// The schema version of a store; None for a new, empty file.
pub fn schema_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    let version: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get(0)).optional()?;
    Ok(version.map(|v| v.parse::<i64>().unwrap_or(0)))
}

/// A `(seq, frame)` row.
fn stored_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent { seq: row.get::<_, i64>(0)? as Seq, frame: row.get(1)? })
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let set_version = "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
                       ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    match schema_version(conn)? {
        None => {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(crate::membership::SCHEMA)?;
            tx.execute_batch(crate::governance::SCHEMA)?;
            tx.execute_batch(crate::warnings::SCHEMA)?;
            tx.execute_batch(crate::live::SCHEMA)?;
            tx.execute(set_version, [SCHEMA_VERSION.to_string()])?;
            tx.commit()?;
        }
        Some(v) if v > SCHEMA_VERSION => return Err(StoreError::TooNew(v, SCHEMA_VERSION)),
        Some(v) => {
            for (from, migration) in MIGRATIONS.iter().enumerate().skip((v - 1).max(0) as usize) {
                let to = from as i64 + 2;
                tracing::info!(from = from + 1, to, "migrating the store");
                let tx = conn.unchecked_transaction()?;
                tx.execute_batch(migration)?;
                tx.execute(set_version, [to.to_string()])?;
                tx.commit()?;
            }
        }
    }
    Ok(())
}

pub fn parse_role(text: &str) -> Result<Role, StoreError> {
    Role::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown role {text:?}")))
}

pub fn parse_group_kind(text: &str) -> Result<GroupKind, StoreError> {
    match text {
        "village" => Ok(GroupKind::Village),
        "neighbourhood" => Ok(GroupKind::Neighbourhood),
        other => Err(StoreError::Corrupt(format!("unknown group kind {other:?}"))),
    }
}
