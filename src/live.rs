//! Live figures for dashboards: a view of each group's figures since its
//! start, maintained by the log writer as events commit (so a district's
//! figures are a sum over its groups' rows, not a re-read of millions of
//! events), the `watch_stats` subscriptions that push them when they
//! change, and the officers' list of escalated requests. Also the request
//! clock: which requests still wait for a first response, since when, so
//! that the deadline sweeper asks one indexed query a round instead of
//! re-reading every group's request events every second.
//!
//! The view is derived from the group logs alone, in the writer's
//! transaction, like every other view; `stats` with a period still reads
//! the events (`stats.rs`), and a test checks the two agree. This module
//! must not write the store outside the writer's transaction.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection};
use serde_json::Value;
use tokio::sync::mpsc;

use protocol::{EscalatedRequest, Id, Millis, ServerFrame, Stats};

use crate::governance::read;
use crate::governance::requests::requests_of;
use crate::hub::{Account, Hub, OpError};
use crate::presence::Notice;
use crate::stats::{readable_groups, Scope};
use crate::store::StoreError;

/// Schema 5 → 6: the figures view, filled from the events already stored.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS figures (
    "group" INTEGER PRIMARY KEY,
    interactions INTEGER NOT NULL DEFAULT 0,
    notices INTEGER NOT NULL DEFAULT 0,
    likes INTEGER NOT NULL DEFAULT 0,
    topics INTEGER NOT NULL DEFAULT 0,
    conventions INTEGER NOT NULL DEFAULT 0,
    projects INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    solved_in_group INTEGER NOT NULL DEFAULT 0,
    exchanged_items INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS figure_participants (
    "group" INTEGER NOT NULL,
    account INTEGER NOT NULL,
    PRIMARY KEY ("group", account)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS figure_participants_account ON figure_participants (account);
INSERT OR IGNORE INTO figures
SELECT log, COUNT(*),
    SUM(kind IN ('notice', 'broadcast')),
    SUM(kind = 'like') - SUM(kind = 'unlike'),
    SUM(kind = 'topic'),
    SUM(kind = 'topic_closed' AND json_extract(frame, '$.body.outcome') = 'convention'),
    SUM(kind = 'topic_closed' AND json_extract(frame, '$.body.outcome') = 'project'),
    SUM(kind = 'request'),
    SUM(kind = 'request_resolved' AND json_extract(frame, '$.body.solved_in_group') = 1),
    SUM(kind = 'item_handed_over')
FROM events WHERE log != 0 GROUP BY log;
INSERT OR IGNORE INTO figure_participants
SELECT DISTINCT log, author FROM events WHERE log != 0 AND author != 0;
CREATE TABLE IF NOT EXISTS request_clock (
    "group" INTEGER NOT NULL,
    request INTEGER NOT NULL,
    filed_at INTEGER NOT NULL,
    answered INTEGER NOT NULL DEFAULT 0,
    resolved INTEGER NOT NULL DEFAULT 0,
    overdue INTEGER NOT NULL DEFAULT 0,
    escalated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY ("group", request)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS request_clock_waiting ON request_clock (filed_at)
    WHERE answered = 0 AND resolved = 0;
INSERT OR IGNORE INTO request_clock ("group", request, filed_at)
SELECT log, seq, ts FROM events WHERE log != 0 AND kind = 'request';
UPDATE request_clock SET
    answered = EXISTS (SELECT 1 FROM events e WHERE e.log = request_clock."group"
        AND e.kind = 'request_reply' AND json_extract(e.frame, '$.body.request') = request_clock.request),
    resolved = EXISTS (SELECT 1 FROM events e WHERE e.log = request_clock."group"
        AND e.kind = 'request_resolved' AND json_extract(e.frame, '$.body.request') = request_clock.request),
    overdue = EXISTS (SELECT 1 FROM events e WHERE e.log = request_clock."group"
        AND e.kind = 'request_overdue' AND json_extract(e.frame, '$.body.request') = request_clock.request),
    escalated = EXISTS (SELECT 1 FROM events e WHERE e.log = request_clock."group"
        AND e.kind = 'request_escalated' AND json_extract(e.frame, '$.body.request') = request_clock.request);
"#;

/// What one committed batch changes in the figures view. Gathered per
/// event (a few adds; the frame is parsed only for the rare kinds whose
/// body matters) and written once per group per batch.
#[derive(Debug, Default)]
pub struct FigureDeltas {
    groups: HashMap<Id, [i64; 9]>,
    participants: HashSet<(Id, Id)>,
    /// Changes to the request clock (which also gives the figures of
    /// requests answered and escalated).
    clock: Vec<Clock>,
}

/// A request waiting for its first response: (group, request, filed_at,
/// overdue marked, escalated).
pub type Waiting = (Id, u64, Millis, bool, bool);

/// A change to `request_clock`.
#[derive(Debug)]
enum Clock {
    Filed {
        group: Id,
        request: u64,
        at: Millis,
    },
    /// `column` of the request becomes 1.
    Mark {
        group: Id,
        request: u64,
        column: &'static str,
    },
}

// Columns of `figures` after `group`, in the order of the deltas.
const COLUMNS: [&str; 9] = [
    "interactions",
    "notices",
    "likes",
    "topics",
    "conventions",
    "projects",
    "requests",
    "solved_in_group",
    "exchanged_items",
];

impl FigureDeltas {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Requests of every group waiting for a first response (not answered,
    /// not resolved) filed at or before `filed_by`: (group, request,
    /// filed_at, overdue marked, escalated), by group and request.
    pub fn waiting(conn: &Connection, filed_by: Millis) -> rusqlite::Result<Vec<Waiting>> {
        let mut stmt = conn.prepare_cached(
            r#"SELECT "group", request, filed_at, overdue, escalated FROM request_clock
               WHERE answered = 0 AND resolved = 0 AND filed_at <= ?1 ORDER BY "group", request"#,
        )?;
        let rows = stmt.query_map(params![filed_by], |r| {
            Ok((r.get::<_, i64>(0)? as Id, r.get::<_, i64>(1)? as u64, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.collect()
    }

    /// The groups this batch touched.
    pub fn groups(&self) -> impl Iterator<Item = Id> + '_ {
        self.groups.keys().copied()
    }

    /// Counts one committed group event.
    pub fn add(&mut self, group: Id, seq: u64, ts: Millis, author: Id, kind: &str, frame: &str) {
        let d = self.groups.entry(group).or_default();
        d[0] += 1;
        if author != 0 {
            self.participants.insert((group, author));
        }
        let body = || {
            serde_json::from_str::<Value>(frame)
                .ok()
                .and_then(|mut v| v.get_mut("body").map(Value::take))
                .unwrap_or(Value::Null)
        };
        match kind {
            "notice" | "broadcast" => d[1] += 1,
            "like" => d[2] += 1,
            "unlike" => d[2] -= 1,
            "topic" => d[3] += 1,
            "topic_closed" => match body().get("outcome").and_then(Value::as_str) {
                Some("convention") => d[4] += 1,
                Some("project") => d[5] += 1,
                _ => {}
            },
            "request" => {
                d[6] += 1;
                self.clock.push(Clock::Filed { group, request: seq, at: ts });
            }
            "request_resolved" if body().get("solved_in_group").and_then(Value::as_bool) == Some(true) => {
                d[7] += 1
            }
            "item_handed_over" => d[8] += 1,
            _ => {}
        }
        let column = match kind {
            "request_reply" => "answered",
            "request_resolved" => "resolved",
            "request_overdue" => "overdue",
            "request_escalated" => "escalated",
            _ => return,
        };
        if let Some(request) = body().get("request").and_then(Value::as_u64) {
            self.clock.push(Clock::Mark { group, request, column });
        }
    }

    /// Writes the deltas (inside the writer's transaction).
    pub fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        let set = COLUMNS.map(|c| format!("{c} = {c} + excluded.{c}")).join(", ");
        let sql = format!(
            r#"INSERT INTO figures ("group", {}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
               ON CONFLICT ("group") DO UPDATE SET {set}"#,
            COLUMNS.join(", ")
        );
        let mut upsert = conn.prepare_cached(&sql)?;
        for (group, d) in &self.groups {
            upsert.execute(params![*group as i64, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8]])?;
        }
        let mut participant = conn.prepare_cached(
            r#"INSERT OR IGNORE INTO figure_participants ("group", account) VALUES (?1, ?2)"#,
        )?;
        for (group, account) in &self.participants {
            participant.execute(params![*group as i64, *account as i64])?;
        }
        for change in &self.clock {
            match change {
                Clock::Filed { group, request, at } => {
                    conn.prepare_cached(
                        r#"INSERT OR IGNORE INTO request_clock ("group", request, filed_at) VALUES (?1, ?2, ?3)"#,
                    )?
                    .execute(params![*group as i64, *request as i64, at])?;
                }
                Clock::Mark { group, request, column } => {
                    conn.prepare_cached(&format!(
                        r#"UPDATE request_clock SET {column} = 1 WHERE "group" = ?1 AND request = ?2"#
                    ))?
                    .execute(params![*group as i64, *request as i64])?;
                }
            }
        }
        Ok(())
    }
}

/// The figures of `groups` since their start, from the view.
pub fn all_time(conn: &Connection, scope: &str, groups: &[Id], now: Millis) -> Result<Stats, StoreError> {
    let list = groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(",");
    let sums = COLUMNS.map(|c| format!("COALESCE(SUM({c}), 0)")).join(", ");
    let d: [i64; 9] =
        conn.query_row(&format!(r#"SELECT {sums} FROM figures WHERE "group" IN ({list})"#), [], |r| {
            let mut d = [0i64; 9];
            for (i, v) in d.iter_mut().enumerate() {
                *v = r.get(i)?;
            }
            Ok(d)
        })?;
    let count = |sql: String| conn.query_row(&sql, [], |r| r.get::<_, i64>(0));
    let participants = count(format!(
        r#"SELECT COUNT(DISTINCT account) FROM figure_participants WHERE "group" IN ({list})"#
    ))?;
    let answered =
        count(format!(r#"SELECT COUNT(*) FROM request_clock WHERE "group" IN ({list}) AND answered"#))?;
    let escalated =
        count(format!(r#"SELECT COUNT(*) FROM request_clock WHERE "group" IN ({list}) AND escalated"#))?;
    Ok(Stats {
        scope: scope.to_string(),
        from: 0,
        to: now + 1,
        groups: groups.len() as u64,
        interactions: d[0] as u64,
        notices: d[1] as u64,
        likes: d[2],
        participants: participants as u64,
        topics: d[3] as u64,
        conventions: d[4] as u64,
        projects: d[5] as u64,
        requests: d[6] as u64,
        requests_answered: answered as u64,
        requests_solved_in_group: d[7] as u64,
        requests_escalated: escalated as u64,
        exchanged_items: d[8] as u64,
    })
}

/// Most scopes one connection may watch at once.
pub const MAX_WATCHES: usize = 32;

/// How often changed figures are pushed, at most.
pub const PUSH_EVERY: Duration = Duration::from_secs(1);

/// One `watch_stats` of one connection.
#[derive(Debug)]
struct Watch {
    conn: u64,
    scope: String,
    /// Sorted.
    groups: Vec<Id>,
    tx: mpsc::Sender<Notice>,
    /// The figures it was last told (`to` aside), so that a round which
    /// finds nothing new for it sends nothing. `None` until the reply to
    /// `watch_stats` is computed: no push may overtake the reply.
    told: Option<Stats>,
}

/// Figures compared without their `to` (which is always "now").
fn unchanged(told: &Option<Stats>, now: &Stats) -> bool {
    told.as_ref().is_some_and(|t| Stats { to: now.to, ..t.clone() } == *now)
}

/// The watches of this node's connections and the groups changed since the
/// last push.
#[derive(Debug, Default)]
pub struct Watches {
    /// A std mutex: held to add, remove or copy out, never across an await.
    watches: Mutex<Vec<Watch>>,
    /// Groups whose events committed since the last round (written by the
    /// log writer once per batch).
    touched: Mutex<HashSet<Id>>,
}

impl Watches {
    pub fn touch(&self, groups: impl Iterator<Item = Id>) {
        let mut touched = self.touched.lock().unwrap();
        touched.extend(groups);
    }

    /// Ends every watch of a connection (it closed).
    pub fn forget(&self, conn: u64) {
        self.watches.lock().unwrap().retain(|w| w.conn != conn);
    }
}

/// `watch_stats`: the figures now, then a push whenever they change.
pub async fn watch(
    hub: &Arc<Hub>,
    by: &Account,
    conn: u64,
    tx: mpsc::Sender<Notice>,
    id: u64,
    scope: &str,
) -> Result<ServerFrame, OpError> {
    let parsed = Scope::parse(scope)?;
    let groups = readable_groups(&hub.directory.read().unwrap(), by.id, parsed)?;
    let scope = parsed.to_wire();
    {
        let mut watches = hub.log.applied().live.watches.lock().unwrap();
        if !watches.iter().any(|w| w.conn == conn && w.scope == scope) {
            if watches.iter().filter(|w| w.conn == conn).count() >= MAX_WATCHES {
                return Err(OpError::new(
                    protocol::ErrorCode::TooLarge,
                    format!("at most {MAX_WATCHES} scopes watched per connection"),
                ));
            }
            watches.push(Watch { conn, scope: scope.clone(), groups: groups.clone(), tx, told: None });
        }
    }
    let now = crate::clock::now();
    let stats = {
        let scope = scope.clone();
        read(hub, move |c| all_time(c, &scope, &groups, now)).await?
    };
    let live = &hub.log.applied().live;
    let mut watches = live.watches.lock().unwrap();
    if let Some(w) = watches.iter_mut().find(|w| w.conn == conn && w.scope == scope) {
        // A change committed while the reply was read was perhaps taken by
        // a round that skipped this watch: the next round looks again, and
        // pushes only if the figures differ from these.
        live.touch(w.groups.iter().copied());
        w.told = Some(stats.clone());
    }
    Ok(ServerFrame::Stats { id, stats })
}

/// `unwatch_stats`.
pub fn unwatch(hub: &Hub, conn: u64, id: u64, scope: &str) -> Result<ServerFrame, OpError> {
    let scope = Scope::parse(scope)?.to_wire();
    hub.log.applied().live.watches.lock().unwrap().retain(|w| !(w.conn == conn && w.scope == scope));
    Ok(ServerFrame::Done { id, seq: None })
}

/// Pushes changed figures to their watchers, at most once per `PUSH_EVERY`.
pub async fn run(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(PUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let touched = std::mem::take(&mut *hub.log.applied().live.touched.lock().unwrap());
        if touched.is_empty() {
            continue;
        }
        // scope → its groups: each scope is computed once however many
        // connections watch it.
        let mut due: HashMap<String, Vec<Id>> = HashMap::new();
        for w in hub.log.applied().live.watches.lock().unwrap().iter() {
            if w.groups.iter().any(|g| touched.contains(g)) {
                due.entry(w.scope.clone()).or_insert_with(|| w.groups.clone());
            }
        }
        let now = crate::clock::now();
        for (scope, groups) in due {
            let key = scope.clone();
            let stats = match read(&hub, move |c| all_time(c, &key, &groups, now)).await {
                Ok(stats) => stats,
                Err(e) => {
                    tracing::warn!(error = %e.message, "live figures failed");
                    continue;
                }
            };
            let mut watches = hub.log.applied().live.watches.lock().unwrap();
            let due = |w: &&mut Watch| w.scope == scope && w.told.is_some() && !unchanged(&w.told, &stats);
            for w in watches.iter_mut().filter(due) {
                // try_send never waits (the lock is not held across a wait).
                // Overflow drops this push; the next change sends the
                // figures whole again.
                if w.tx.try_send(Notice::Stats(Box::new(stats.clone()))).is_ok() {
                    w.told = Some(stats.clone());
                }
            }
        }
    }
}

/// `escalated`: the escalated requests of a scope, oldest escalation first.
pub async fn escalated(hub: &Hub, by: &Account, id: u64, scope: &str) -> Result<ServerFrame, OpError> {
    let groups = readable_groups(&hub.directory.read().unwrap(), by.id, Scope::parse(scope)?)?;
    let mut requests = read(hub, move |c| {
        let mut out = Vec::new();
        for group in groups {
            for r in requests_of(c, group)?.into_values() {
                let (Some(to), Some(escalated_at)) = (r.escalated, r.escalated_at) else { continue };
                let status = if r.resolved.is_some() {
                    "resolved"
                } else if r.replied_since_escalation {
                    "responded"
                } else {
                    "escalated"
                };
                out.push(EscalatedRequest {
                    group,
                    seq: r.seq,
                    category: r.category,
                    text: r.text,
                    filed_at: r.ts,
                    escalated_at,
                    to,
                    automatic: r.escalated_automatically,
                    status: status.into(),
                });
            }
        }
        Ok(out)
    })
    .await?;
    requests.sort_unstable_by_key(|r| (r.escalated_at, r.group, r.seq));
    Ok(ServerFrame::Escalated { id, requests })
}
