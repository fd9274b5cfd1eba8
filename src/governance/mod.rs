//! The governance channels of a group — notices, requests, deliberation,
//! exchange, likes — as events of the group's log.
//!
//! Every action is an ordinary group event appended with `Append::Group`,
//! so it persists, resumes and replicates like chat. Nothing here keeps
//! state of its own: each check and each figure is read back from the
//! group's events (by kind, through the `events_kind` index), so every node
//! answers alike from the logs alone. What this module owns is who may do
//! what, and the deadline sweeper (with its injectable clock), which turns
//! the passing of time into events (`request_overdue`, automatic
//! `request_escalated`, `topic_closed`). It must not write the store
//! directly.

pub mod deliberation;
pub mod exchange;
pub mod likes;
pub mod notices;
pub mod requests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post as post_route};
use axum::Router;
use rusqlite::{params, Connection};

use protocol::{ApiError, Author, ErrorCode, Event, EventBody, Id, Millis, Role, Seq, ServerFrame};

use crate::http::AppState;
use crate::hub::{Account, Hub, OpError};
use crate::log::{Append, Appended};
use crate::membership::Sight;
use crate::store::StoreError;

/// Schema 3 → 4: governance state is read back from the events by kind.
pub const SCHEMA: &str = "CREATE INDEX IF NOT EXISTS events_kind ON events (log, kind, seq);";

/// Longest title of a notice, topic or item, in characters.
pub const MAX_TITLE: usize = 200;

/// Deadlines of the requests channel and the sweeper's pace.
#[derive(Debug, Clone)]
pub struct GovernanceConfig {
    /// A request's first response is due this long after it was filed.
    pub first_response_ms: i64,
    /// An overdue, still unanswered request escalates to the town this long
    /// after its first response fell due.
    pub escalate_after_ms: i64,
    pub sweep_every: Duration,
    /// `POST /api/test/clock` exists (tests only).
    pub test_clock: bool,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        GovernanceConfig {
            first_response_ms: 15 * 3_600_000,
            escalate_after_ms: 9 * 3_600_000,
            sweep_every: Duration::from_secs(1),
            test_clock: false,
        }
    }
}

/// The governance clock (wall time plus a test-only offset) and the lock
/// that keeps a group's disclosure chain linear on this node.
pub struct Governance {
    pub config: GovernanceConfig,
    /// Held from reading the chain's head to the commit of the next
    /// disclosure. A tokio mutex: it is held across the append's await.
    pub chain: tokio::sync::Mutex<()>,
}

impl Governance {
    pub fn new(config: GovernanceConfig) -> Governance {
        Governance { config, chain: tokio::sync::Mutex::new(()) }
    }

    /// Now, as deadlines see it.
    pub fn now(&self) -> Millis {
        crate::clock::now()
    }

    pub fn advance(&self, ms: i64) {
        crate::clock::advance(ms);
    }
}

/// Events of the given kinds in a group, ascending by seq.
pub fn events_of(conn: &Connection, group: Id, kinds: &[&str]) -> Result<Vec<Event>, StoreError> {
    let list = kinds.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(",");
    let sql = format!("SELECT frame FROM events WHERE log = ?1 AND kind IN ({list}) ORDER BY seq");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![group as i64], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for frame in rows {
        if let Ok(ServerFrame::Event(event)) = serde_json::from_str::<ServerFrame>(&frame?) {
            out.push(event);
        }
    }
    Ok(out)
}

/// Runs a read on the store off the runtime.
pub async fn read<T: Send + 'static>(
    hub: &Hub,
    f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, OpError> {
    let store = hub.store.clone();
    tokio::task::spawn_blocking(move || store.read(f))
        .await
        .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
        .map_err(OpError::from)
}

pub fn forbidden(message: &str) -> OpError {
    OpError::new(ErrorCode::Forbidden, message)
}

pub fn conflict(message: &str) -> OpError {
    OpError::new(ErrorCode::Conflict, message)
}

pub fn not_found(message: &str) -> OpError {
    OpError::new(ErrorCode::NotFound, message)
}

/// A cadre or the secretary of the group (not a volunteer, not an officer).
pub fn is_cadre(sight: &Sight) -> bool {
    matches!(sight.member, Some(Role::Cadre | Role::Secretary))
}

/// Checks a text field: not blank, at most `max` characters.
pub fn check_text(text: &str, what: &str, max: usize) -> Result<(), OpError> {
    if text.trim().is_empty() {
        return Err(OpError::bad_request(format!("{what} is empty")));
    }
    if text.chars().count() > max {
        return Err(OpError::new(ErrorCode::TooLarge, format!("{what} is longer than {max} characters")));
    }
    Ok(())
}

/// How `by` sees `group`, and the author it posts as.
pub fn author_in(hub: &Hub, by: &Account, group: Id) -> Result<(Sight, Author), OpError> {
    let dir = hub.directory.read().unwrap();
    let sight = dir.sight(by.id, group).ok_or_else(OpError::no_such_group)?;
    let author = Author {
        id: by.id,
        name: by.name.clone(),
        role: sight.role(),
        party: dir.people.state(by.id).party,
        migrant: dir.people.member(by.id, group).migrant,
        system: false,
    };
    Ok((sight, author))
}

/// The author of the events the sweeper appends.
pub fn system_author() -> Author {
    Author {
        id: 0,
        name: "villagehub".into(),
        role: Role::Secretary,
        party: false,
        migrant: false,
        system: false,
    }
}

pub async fn append(
    hub: &Hub,
    group: Id,
    author: Author,
    client_key: Option<String>,
    body: EventBody,
) -> Result<(Seq, bool), OpError> {
    match hub.log.append(Append::Group { group, author, client_key, body }).await? {
        Appended::Group { seq, duplicate, .. } => Ok((seq, duplicate)),
        Appended::Directory { .. } => unreachable!("governance appends to a group"),
    }
}

/// `post`: one governance event, checked by its channel's module.
pub async fn post(
    hub: &Hub,
    by: &Account,
    id: u64,
    group: Id,
    event: EventBody,
    client_key: Option<String>,
) -> Result<ServerFrame, OpError> {
    let (sight, author) = author_in(hub, by, group)?;
    if sight.member.is_none()
        && !matches!(
            event,
            EventBody::RequestReply(_) | EventBody::RequestResolved(_) | EventBody::RequestEscalated(_)
        )
    {
        return Err(forbidden("only members of the group may post here"));
    }
    hub.serves(group)?;
    if let Some(key) = &client_key {
        if key.is_empty() || key.chars().count() > 64 || key.chars().any(char::is_control) {
            return Err(OpError::bad_request(
                "client_key must be 1 to 64 characters, none of them control characters",
            ));
        }
    }
    // --- images ---
    // Only a post with pictures pays for looking them up.
    let images = match &event {
        EventBody::Notice(notice) => &notice.images[..],
        EventBody::Request(request) => &request.images[..],
        _ => &[],
    };
    if !images.is_empty() {
        hub.check_images(images).await?;
    }
    // --- end images ---
    let max_text = hub.config.limits.max_text;
    let (body, key) = match event {
        EventBody::Message(_) | EventBody::Hide(_) | EventBody::Hidden(_) => {
            return Err(OpError::bad_request("chat messages use send, hiding uses hide"));
        }
        EventBody::Broadcast(_) => {
            return Err(OpError::bad_request("town and district officers use the broadcast op"));
        }
        EventBody::Notice(notice) => {
            return notices::post_notice(hub, id, group, &sight, author, notice, client_key, max_text).await;
        }
        EventBody::NoticeRead(read) => {
            return notices::post_read(hub, id, group, author, read).await;
        }
        EventBody::Request(_)
        | EventBody::RequestReply(_)
        | EventBody::RequestResolved(_)
        | EventBody::RequestEscalated(_)
        | EventBody::RequestOverdue(_)
        | EventBody::RequestRated(_) => {
            requests::check(hub, group, &sight, by.id, event, client_key, max_text).await?
        }
        EventBody::Topic(_)
        | EventBody::TopicComment(_)
        | EventBody::Vote(_)
        | EventBody::TopicClosed(_)
        | EventBody::ProjectProgress(_)
        | EventBody::HallSettings(_) => {
            deliberation::check(hub, group, &sight, by.id, event, client_key, max_text).await?
        }
        EventBody::Item(_) | EventBody::ItemClaimed(_) | EventBody::ItemHandedOver(_) => {
            exchange::check(hub, group, by.id, event, client_key, max_text).await?
        }
        EventBody::Like(_) | EventBody::Unlike(_) => {
            likes::check(hub, group, by.id, event, client_key).await?
        }
    };
    let (seq, duplicate) = append(hub, group, author, key, body).await?;
    Ok(ServerFrame::Sent { id, group, seq, duplicate })
}

/// Runs the deadline sweeper until the node stops (the task is aborted).
/// Every node may run it: its events carry fixed client keys, so a second
/// node's (or a second round's) append of the same deadline is a duplicate.
pub async fn run_sweeper(hub: Arc<Hub>) {
    let mut tick = tokio::time::interval(hub.governance.config.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep(&hub).await;
    }
}

/// One round: every group's overdue requests and ended votes.
pub async fn sweep(hub: &Hub) {
    let groups: Vec<Id> = {
        let dir = hub.directory.read().unwrap();
        let mut ids: Vec<Id> = dir.groups.keys().copied().collect();
        ids.sort_unstable();
        ids
    };
    let now = hub.governance.now();
    if let Err(e) = requests::sweep(hub, now).await {
        tracing::warn!(error = %e.message, "request sweep failed");
    }
    for group in groups {
        if hub.serves(group).is_err() {
            continue;
        }
        if let Err(e) = deliberation::sweep_group(hub, group, now).await {
            tracing::warn!(group, error = %e.message, "topic sweep failed");
        }
        crate::warnings::check_spike(hub, group, now).await;
    }
}

/// The HTTP routes of the governance channels; `/api/test/clock` only with
/// `--test-clock`.
pub fn routes(test_clock: bool) -> Router<AppState> {
    let router = Router::new().route("/api/requests/figures", get(http_figures));
    if test_clock {
        router.route("/api/test/clock", post_route(http_test_clock))
    } else {
        router
    }
}

fn api_error(e: OpError) -> Response {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(ApiError { code: e.code, message: e.message })).into_response()
}

#[derive(serde::Deserialize)]
struct FiguresQuery {
    scope: protocol::ScopeKind,
    of: Id,
}

/// `GET /api/requests/figures?scope=group|town|district&of=ID` with
/// `Authorization: Bearer TOKEN`.
async fn http_figures(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FiguresQuery>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let account = match state.hub.authenticate(token.trim(), 0) {
        Ok((account, _)) => account,
        Err(e) => return api_error(e),
    };
    match requests::figures(&state.hub, &account, query.scope, query.of).await {
        Ok(figures) => axum::Json(figures).into_response(),
        Err(e) => api_error(e),
    }
}

#[derive(serde::Deserialize)]
struct AdvanceClock {
    advance_ms: i64,
}

/// `POST /api/test/clock {"advance_ms": N}`: moves the governance clock and
/// runs one sweep before answering, so a test sees its events next.
async fn http_test_clock(State(state): State<AppState>, body: axum::body::Bytes) -> Response {
    let Ok(advance) = serde_json::from_slice::<AdvanceClock>(&body) else {
        return api_error(OpError::bad_request("expected {advance_ms}"));
    };
    state.hub.governance.advance(advance.advance_ms);
    sweep(&state.hub).await;
    axum::Json(serde_json::json!({"now": state.hub.governance.now()})).into_response()
}
