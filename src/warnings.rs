//! Early warnings: what raises them, how they are stored, who hears of them.
//!
//! Three reasons, each an event (`warning_raised`) of the directory log with
//! the group it concerns, a reason, a detail for people and links to the
//! posts behind it:
//! - `keyword`: a post's `text` or `title` holds a word of the configured
//!   lexicon. Checked by the node that takes the post, after its ack (so a
//!   crash between the two loses the warning, never the post).
//! - `spike`: a group's chat messages in the last window against its own
//!   baseline (the average per window over the hours before). Counted from
//!   the committed events by `Activity`, checked by the deadline sweeper.
//! - `overdue_backlog`: unanswered requests past their first-response
//!   deadline, at or above a threshold. Checked by the requests sweep.
//!
//! Each change carries a key naming what it is about; applying a key seen
//! before is a no-op, so every node of a cluster may raise the same spike
//! and the officers still hear of it once. The writer stores the warning
//! (`warnings` table, the view `warnings` lists) and pushes it to the
//! cadres and secretary of the group and the officers of its town and
//! district connected to this node. Sweeps use the injectable clock
//! (`clock.rs`), so tests cross windows and deadlines without sleeping.
//! Residents never see warnings.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Mutex, OnceLock, RwLock};

use rusqlite::{params, Connection};
use serde_json::Value;
use tokio::sync::mpsc;

use protocol::{EventBody, Id, Millis, Office, Role, Seq, ServerFrame, Warning, WarningLink};

use crate::directory::{Directory, DirectoryChange};
use crate::hub::{Account, Hub, OpError};
use crate::log::{Append, Log, LogError};
use crate::presence::{Accounts, Notice};
use crate::stats::{readable_groups, Scope};
use crate::store::StoreError;

/// Schema 4 → 5: the stored warnings, a view of the directory log.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS warnings (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    "group" INTEGER NOT NULL,
    at INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    links TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS warnings_group ON warnings ("group", seq);
"#;

/// Most warnings one `warnings` op returns.
pub const MAX_LIST: u32 = 200;

/// How spikes and backlogs are judged; set once at start-up.
#[derive(Debug, Clone)]
pub struct WarningConfig {
    /// The window whose messages are counted (10 minutes).
    pub spike_window_ms: i64,
    /// The time before the window that gives the baseline (24 hours).
    pub spike_baseline_ms: i64,
    /// A spike is at least this many times the baseline per window (5).
    pub spike_factor: f64,
    /// …and at least this many messages (30), so a quiet group's three
    /// messages are not a spike.
    pub spike_min_messages: u64,
    /// Unanswered overdue requests of one group that make a backlog (3).
    pub backlog_threshold: usize,
}

impl Default for WarningConfig {
    fn default() -> Self {
        WarningConfig {
            spike_window_ms: 10 * 60_000,
            spike_baseline_ms: 24 * 3_600_000,
            spike_factor: 5.0,
            spike_min_messages: 30,
            backlog_threshold: 3,
        }
    }
}

static CONFIG: OnceLock<WarningConfig> = OnceLock::new();

/// Sets the thresholds (once, before the server starts).
pub fn configure(config: WarningConfig) {
    let _ = CONFIG.set(config);
}

pub fn config() -> &'static WarningConfig {
    CONFIG.get_or_init(WarningConfig::default)
}

/// The keyword lexicon, set once at start-up (`--warning-lexicon FILE`).
static LEXICON: OnceLock<Vec<String>> = OnceLock::new();

/// Reads the lexicon: one keyword a line; blank lines and `#` comments are
/// skipped.
pub fn load_lexicon(path: &Path) -> std::io::Result<usize> {
    let text = std::fs::read_to_string(path)?;
    let words: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let n = words.len();
    let _ = LEXICON.set(words);
    Ok(n)
}

/// The detail of a keyword warning for a post, if its `text` or `title`
/// holds a lexicon word. Costs nothing without a lexicon.
pub fn keyword_hit(body: &EventBody) -> Option<String> {
    let lexicon = LEXICON.get().filter(|l| !l.is_empty())?;
    // Adjacently tagged: `{"kind": …, "body": {"text": …}}`.
    let value = serde_json::to_value(body).ok()?;
    let fields = value.get("body")?;
    let texts = ["text", "title"].map(|f| fields.get(f).and_then(Value::as_str).unwrap_or(""));
    let hit = lexicon.iter().find(|word| texts.iter().any(|t| t.contains(word.as_str())))?;
    Some(format!("「{hit}」 in a {}", body.kind()))
}

/// The change that raises a keyword warning for post `seq` of `group`.
pub fn keyword_warning(group: Id, seq: Seq, detail: String) -> DirectoryChange {
    DirectoryChange::WarningRaised {
        key: format!("keyword:{group}:{seq}"),
        group,
        reason: "keyword".into(),
        detail,
        links: vec![WarningLink { group, seq }],
        at: crate::clock::now(),
    }
}

/// Appends the keyword warnings handed over by `Log::append` (a task of its
/// own, so a post's ack never waits for its warning).
pub async fn run_raiser(log: Log, mut rx: mpsc::UnboundedReceiver<DirectoryChange>) {
    while let Some(change) = rx.recv().await {
        raise(&log, change).await;
    }
}

/// Appends a warning; a failure is logged (the posts behind it stay in
/// their group's log either way).
pub async fn raise(log: &Log, change: DirectoryChange) {
    if let DirectoryChange::WarningRaised { key, .. } = &change {
        if log.applied().activity.was_raised(key) {
            return;
        }
    }
    match log.append(Append::Directory(change)).await {
        Ok(_) => {}
        Err(LogError::Refused(refusal)) => tracing::warn!(%refusal, "warning refused"),
        Err(e) => tracing::warn!(error = %e, "could not raise a warning"),
    }
}

/// Stores an applied `warning_raised` (inside the writer's transaction).
/// The warning, if it is new; `None` for a key applied before.
pub fn store(conn: &Connection, seq: Seq, change: &DirectoryChange) -> rusqlite::Result<Option<Warning>> {
    let DirectoryChange::WarningRaised { key, group, reason, detail, links, at } = change else {
        return Ok(None);
    };
    let inserted = conn
        .prepare_cached(
            r#"INSERT OR IGNORE INTO warnings (seq, key, "group", at, reason, detail, links)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"#,
        )?
        .execute(params![
            seq as i64,
            key,
            *group as i64,
            at,
            reason,
            detail,
            serde_json::to_string(links).expect("links serialize")
        ])?;
    Ok((inserted == 1).then(|| Warning {
        seq,
        at: *at,
        group: *group,
        reason: reason.clone(),
        detail: detail.clone(),
        links: links.clone(),
    }))
}

/// After the commit: pushes each new warning to the connected people in
/// charge of its group.
pub fn push(accounts: &Accounts, directory: &RwLock<Directory>, warnings: Vec<Warning>) {
    for warning in warnings {
        let in_charge: Vec<Id> = {
            let dir = directory.read().unwrap();
            let Some(group) = dir.groups.get(&warning.group) else { continue };
            let district = dir.towns.get(&group.town).map(|t| t.district);
            let mut people: Vec<Id> = dir
                .members_of(warning.group)
                .into_iter()
                .filter(|(_, role)| matches!(role, Role::Cadre | Role::Secretary))
                .map(|(account, _)| account)
                .collect();
            people.extend(dir.people.states.iter().filter_map(|(account, state)| {
                let officer = state.offices.iter().any(|o| {
                    *o == Office::Town(group.town) || district.is_some_and(|d| *o == Office::District(d))
                });
                officer.then_some(*account)
            }));
            people
        };
        for account in in_charge {
            accounts.notify(account, Notice::Warning(Box::new(warning.clone())));
        }
    }
}

/// `warnings`: the stored warnings of a scope, newest first.
pub async fn list(
    hub: &Hub,
    by: &Account,
    id: u64,
    scope: &str,
    before: Option<Seq>,
    limit: Option<u32>,
) -> Result<ServerFrame, OpError> {
    let scope = Scope::parse(scope)?;
    let groups = readable_groups(&hub.directory.read().unwrap(), by.id, scope)?;
    let limit = limit.unwrap_or(50).clamp(1, MAX_LIST) as usize;
    let before = before.unwrap_or(Seq::MAX).min(i64::MAX as Seq) as i64;
    let mut warnings = crate::governance::read(hub, move |c| {
        let mut stmt = c.prepare_cached(
            r#"SELECT seq, at, reason, detail, links FROM warnings
               WHERE "group" = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"#,
        )?;
        let mut out = Vec::new();
        for group in groups {
            let rows = stmt.query_map(params![group as i64, before, limit as i64 + 1], |r| {
                Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, String>(4)?))
            })?;
            for row in rows {
                let (seq, at, reason, detail, links) = row?;
                let links = serde_json::from_str(&links)
                    .map_err(|e| StoreError::Corrupt(format!("warning {seq}: links: {e}")))?;
                out.push(Warning { seq: seq as Seq, at, group, reason, detail, links });
            }
        }
        Ok(out)
    })
    .await?;
    warnings.sort_unstable_by_key(|w| std::cmp::Reverse(w.seq));
    let more = warnings.len() > limit;
    warnings.truncate(limit);
    Ok(ServerFrame::Warnings { id, warnings, more })
}

/// Chat messages per group per minute, from committed events (local and
/// replicated alike), for spike detection. Only minutes with messages are
/// kept, and only as far back as the window plus the baseline.
#[derive(Debug, Default)]
pub struct Activity {
    /// A std mutex: taken once per committed batch and once per group per
    /// sweep, never across an await.
    groups: Mutex<HashMap<Id, VecDeque<Minute>>>,
    /// Keys of the warnings applied here, so that the sweeper does not
    /// append a spike or backlog again every second while it lasts (the
    /// repeat would be a no-op, but still an event). Cleared when large;
    /// the cost of that is one no-op event per ongoing warning.
    raised: Mutex<HashSet<String>>,
}

/// Keys remembered before `Activity::raised` is cleared.
const MAX_RAISED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Minute {
    minute: i64,
    count: u64,
    first: Seq,
    last: Seq,
}

/// Messages of a group in a span of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub first: Seq,
    pub last: Seq,
}

impl Activity {
    /// Records messages `(group, seq, ts)`, in commit order.
    pub fn record(&self, messages: &[(Id, Seq, Millis)]) {
        if messages.is_empty() {
            return;
        }
        let keep = config().spike_window_ms + config().spike_baseline_ms;
        let mut groups = self.groups.lock().unwrap();
        for &(group, seq, ts) in messages {
            let minutes = groups.entry(group).or_default();
            let minute = ts.div_euclid(60_000);
            match minutes.back_mut() {
                Some(last) if last.minute == minute => {
                    last.count += 1;
                    last.last = seq;
                }
                _ => minutes.push_back(Minute { minute, count: 1, first: seq, last: seq }),
            }
            let horizon = (ts - keep).div_euclid(60_000);
            while minutes.front().is_some_and(|m| m.minute < horizon) {
                minutes.pop_front();
            }
        }
    }

    /// Notes a warning applied here (new or not).
    pub fn note_raised(&self, key: &str) {
        let mut raised = self.raised.lock().unwrap();
        if raised.len() >= MAX_RAISED {
            raised.clear();
        }
        raised.insert(key.to_string());
    }

    pub fn was_raised(&self, key: &str) -> bool {
        self.raised.lock().unwrap().contains(key)
    }

    /// Messages of `group` with `from <= ts < to`, to the minute: the minutes
    /// of `from` and of `to - 1` are counted whole.
    pub fn tally(&self, group: Id, from: Millis, to: Millis) -> Tally {
        let (first, last) = (from.div_euclid(60_000), (to - 1).div_euclid(60_000));
        let groups = self.groups.lock().unwrap();
        let mut tally = Tally::default();
        for m in groups.get(&group).into_iter().flatten().filter(|m| m.minute >= first && m.minute <= last) {
            if tally.count == 0 {
                tally.first = m.first;
            }
            tally.count += m.count;
            tally.last = m.last;
        }
        tally
    }

    /// Fills the counts from the store at start-up: each group's messages
    /// of the window and baseline before `now`, read newest first through
    /// the primary key, stopping at the first older one.
    pub fn warm_up(&self, conn: &Connection, logs: &[Id], now: Millis) -> rusqlite::Result<()> {
        let since = now - config().spike_window_ms - config().spike_baseline_ms;
        let mut stmt = conn.prepare("SELECT seq, ts, kind FROM events WHERE log = ?1 ORDER BY seq DESC")?;
        for &group in logs {
            let mut recent = Vec::new();
            let mut rows = stmt.query(params![group as i64])?;
            while let Some(row) = rows.next()? {
                let ts: Millis = row.get(1)?;
                if ts < since {
                    break;
                }
                if row.get_ref(2)?.as_str().unwrap_or("") == "message" {
                    recent.push((group, row.get::<_, i64>(0)? as Seq, ts));
                }
            }
            recent.reverse();
            self.record(&recent);
        }
        let mut stmt = conn.prepare("SELECT key FROM warnings WHERE at >= ?1")?;
        for key in stmt.query_map(params![now - 86_400_000], |r| r.get::<_, String>(0))? {
            self.note_raised(&key?);
        }
        Ok(())
    }
}

/// Raises a `spike` warning for `group` if its messages of the last window
/// stand out against its baseline.
pub async fn check_spike(hub: &Hub, group: Id, now: Millis) {
    let c = config();
    let activity = &hub.log.applied().activity;
    let window = activity.tally(group, now - c.spike_window_ms, now + 1);
    if window.count < c.spike_min_messages {
        return;
    }
    // The window's first minute is counted whole in the window, so the
    // baseline ends before it.
    let window_start = (now - c.spike_window_ms).div_euclid(60_000) * 60_000;
    let earlier = activity.tally(group, window_start - c.spike_baseline_ms, window_start);
    let per_window = earlier.count as f64 * c.spike_window_ms as f64 / c.spike_baseline_ms as f64;
    if (window.count as f64) < c.spike_factor * per_window.max(1.0) {
        return;
    }
    let minutes = c.spike_window_ms / 60_000;
    let change = DirectoryChange::WarningRaised {
        // One warning per group per window.
        key: format!("spike:{group}:{}", now.div_euclid(c.spike_window_ms)),
        group,
        reason: "spike".into(),
        detail: format!(
            "{} messages in {minutes} minutes; usually {per_window:.1} (over the {} hours before)",
            window.count,
            c.spike_baseline_ms / 3_600_000
        ),
        links: vec![WarningLink { group, seq: window.first }, WarningLink { group, seq: window.last }],
        at: now,
    };
    raise(&hub.log, change).await;
}

/// Raises an `overdue_backlog` warning for `group` when `overdue` (the
/// seqs of its unanswered overdue requests) reaches the threshold — at
/// most once a day per group.
pub async fn check_backlog(hub: &Hub, group: Id, overdue: Vec<Seq>, now: Millis) {
    if overdue.len() < config().backlog_threshold.max(1) {
        return;
    }
    let change = DirectoryChange::WarningRaised {
        key: format!("overdue_backlog:{group}:{}", now.div_euclid(86_400_000)),
        group,
        reason: "overdue_backlog".into(),
        detail: format!("{} requests without a first response past their deadline", overdue.len()),
        links: overdue.into_iter().map(|seq| WarningLink { group, seq }).collect(),
        at: now,
    };
    raise(&hub.log, change).await;
}
