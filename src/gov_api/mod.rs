//! The HTTP API for other government systems (`/api/v1/`, `docs/API.md`):
//! a system holding an API key publishes notices into the groups of the
//! key's scope and reads the statistics and requests of that scope.
//!
//! Who may do what is decided here, from the key alone: its scope (a
//! group, a town or a district) bounds every group it names, and its rights
//! (`notices`, `read`) bound what it does. What it does is the same code
//! the people's ops run: a notice is appended by `notices::append_notice`
//! (so disclosures keep their hash chain), statistics are
//! `stats::stats_of`, requests are read back by `requests::requests_of`.
//! This module must not write the store, and must never log a key.

pub mod keys;
mod reads;
pub mod time;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use futures_util::future::join_all;

use protocol::{ApiNoticePlaced, ApiNoticePosted, ApiNoticeRequest, Author, ErrorCode, Id, NoticeBody};

use crate::directory::Directory;
use crate::http::{api_error, AppState};
use crate::hub::{Hub, OpError};
use crate::stats::Scope;
use keys::{ApiKeyRecord, ApiRight};

/// The routes under `/api/v1/`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/notices", post(http_notices))
        .route("/api/v1/stats", get(reads::http_stats))
        .route("/api/v1/requests", get(reads::http_requests))
        .route("/api/v1/requests/{id}", get(reads::http_request))
        .route("/api/v1/services", get(reads::http_services))
        .route(
            "/api/v1/{*rest}",
            any(|| async { error(OpError::new(ErrorCode::NotFound, "no such endpoint")) }),
        )
}

/// Requests per key per minute, counted in fixed one-minute windows on
/// each node. Memory: one entry per key that has called this node — keys
/// are few (one per system and scope), made only by the administrator.
pub struct KeyLimiter {
    per_minute: u32,
    /// A std mutex: held for one map operation, never across an await.
    windows: Mutex<HashMap<Id, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl KeyLimiter {
    pub fn new(per_minute: u32) -> KeyLimiter {
        KeyLimiter { per_minute, windows: Mutex::new(HashMap::new()) }
    }

    /// Counts one request of `key`; the seconds to wait if over the limit.
    fn count(&self, key: Id, now: Instant) -> Result<(), u64> {
        let mut windows = self.windows.lock().unwrap();
        let (started, count) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*started) >= WINDOW {
            (*started, *count) = (now, 0);
        }
        if *count >= self.per_minute {
            return Err((WINDOW - now.duration_since(*started)).as_secs().max(1));
        }
        *count += 1;
        Ok(())
    }
}

/// A refused API request: its error, and for `rate_limited` how many
/// seconds to wait.
#[derive(Debug)]
pub struct Refusal {
    error: OpError,
    retry_after: Option<u64>,
}

impl From<OpError> for Refusal {
    fn from(error: OpError) -> Refusal {
        Refusal { error, retry_after: None }
    }
}

/// As JSON (`ApiError`) with its HTTP status; a 401 says how to
/// authenticate, a 429 when to come back.
impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = api_error(self.error.code, &self.error.message);
        if self.error.code == ErrorCode::Unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        response
    }
}

fn error(e: OpError) -> Response {
    Refusal::from(e).into_response()
}

/// The key a request presents: `Authorization: Bearer KEY` or `X-Api-Key:
/// KEY`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, key) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(key.trim())
    });
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim))
}

/// The key's record if it is valid, has `right` and is within its rate.
/// Unknown and revoked keys get one answer, so a failure never tells
/// whether a key exists.
fn authorize(hub: &Hub, headers: &HeaderMap, right: ApiRight) -> Result<ApiKeyRecord, Refusal> {
    let Some(presented) = presented_key(headers).filter(|k| !k.is_empty()) else {
        return Err(OpError::new(
            ErrorCode::Unauthorized,
            "send the API key as `Authorization: Bearer vhk_…` or `X-Api-Key: vhk_…`",
        )
        .into());
    };
    let record = hub.directory.read().unwrap().api_keys.find(presented).cloned();
    let Some(record) = record else {
        return Err(OpError::new(ErrorCode::Unauthorized, "the API key is not valid").into());
    };
    if let Err(wait) = hub.api_limiter.count(record.id, Instant::now()) {
        let error = OpError::new(
            ErrorCode::RateLimited,
            format!(
                "more than {} requests per minute with this key; retry in {wait} s",
                hub.api_limiter.per_minute
            ),
        );
        return Err(Refusal { error, retry_after: Some(wait) });
    }
    if !record.may(right) {
        let message = match right {
            ApiRight::Notices => "this key may not publish notices (it lacks the `notices` right)",
            ApiRight::Read => "this key may not read statistics or requests (it lacks the `read` right)",
        };
        return Err(OpError::new(ErrorCode::Forbidden, message).into());
    }
    Ok(record)
}

/// Whether `outer` (a key's scope) holds `inner`, which must exist.
fn covers(dir: &Directory, outer: Scope, inner: Scope) -> bool {
    let town_of = |g: Id| dir.groups.get(&g).map(|g| g.town);
    let district_of = |t: Id| dir.towns.get(&t).map(|t| t.district);
    match (outer, inner) {
        (Scope::Group(a), Scope::Group(b)) => a == b && dir.groups.contains_key(&b),
        (Scope::Town(a), Scope::Town(b)) => a == b && dir.towns.contains_key(&b),
        (Scope::District(a), Scope::District(b)) => a == b && dir.districts.contains_key(&b),
        (Scope::Town(t), Scope::Group(g)) => town_of(g) == Some(t),
        (Scope::District(d), Scope::Town(t)) => district_of(t) == Some(d),
        (Scope::District(d), Scope::Group(g)) => town_of(g).and_then(district_of) == Some(d),
        _ => false,
    }
}

/// The groups of a scope, ascending.
fn groups_in(dir: &Directory, scope: Scope) -> Vec<Id> {
    let mut groups: Vec<Id> =
        dir.groups.keys().copied().filter(|g| covers(dir, scope, Scope::Group(*g))).collect();
    groups.sort_unstable();
    groups
}

/// The scope asked for (the key's own when absent) and its groups; a scope
/// outside the key's is `forbidden`, whether or not it exists.
fn scope_of(hub: &Hub, key: &ApiKeyRecord, asked: Option<&str>) -> Result<(Scope, Vec<Id>), OpError> {
    let scope = match asked.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => Scope::parse(text)?,
        None => key.scope,
    };
    let dir = hub.directory.read().unwrap();
    if !covers(&dir, key.scope, scope) {
        return Err(OpError::new(
            ErrorCode::Forbidden,
            format!("{} is outside this key's scope ({})", scope.to_wire(), key.scope.to_wire()),
        ));
    }
    Ok((scope, groups_in(&dir, scope)))
}

/// `POST /api/v1/notices`: one notice event in each group asked for (every
/// group of the key's scope by default), authored by the system.
async fn http_notices(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let hub = &state.hub;
    let result = async {
        let key = authorize(hub, &headers, ApiRight::Notices)?;
        // Unknown fields are refused here, unlike on the socket: a misspelt
        // `groups` would otherwise post into every group of the scope.
        let request: ApiNoticeRequest = serde_json::from_slice(&body).map_err(|e| {
            OpError::bad_request(format!(
                "expected {{groups?, kind, title, text, must_read?, client_key?}}: {e}"
            ))
        })?;
        Ok::<_, Refusal>(publish(hub, &key, request).await?)
    }
    .await;
    match result {
        Ok(posted) => (StatusCode::CREATED, axum::Json(posted)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn publish(
    hub: &Hub,
    key: &ApiKeyRecord,
    request: ApiNoticeRequest,
) -> Result<ApiNoticePosted, OpError> {
    if let Some(k) = &request.client_key {
        if k.is_empty() || k.chars().count() > 64 || k.chars().any(char::is_control) {
            return Err(OpError::bad_request(
                "client_key must be 1 to 64 characters, none of them control characters",
            ));
        }
    }
    let (_, in_scope) = scope_of(hub, key, None)?;
    let groups = match request.groups {
        None if in_scope.is_empty() => {
            return Err(OpError::new(ErrorCode::NotFound, "the key's scope has no groups"));
        }
        None => in_scope,
        Some(list) if list.is_empty() => return Err(OpError::bad_request("groups is empty")),
        Some(mut list) => {
            list.sort_unstable();
            list.dedup();
            if let Some(outside) = list.iter().find(|g| in_scope.binary_search(g).is_err()) {
                return Err(OpError::new(
                    ErrorCode::Forbidden,
                    format!("group {outside} is outside this key's scope ({})", key.scope.to_wire()),
                ));
            }
            list
        }
    };
    for group in &groups {
        hub.serves(*group)?;
    }
    // Author 0, like the server's own events: not an account, and not a
    // participant in any figure (`stats`, the live view). The client key
    // is namespaced by the API key, so that two systems' keys (or the
    // sweeper's) never meet.
    let author = Author {
        id: 0,
        name: key.system.clone(),
        role: key.role(),
        party: false,
        migrant: false,
        system: true,
    };
    let notice = NoticeBody {
        title: request.title,
        text: request.text,
        category: request.kind.category(),
        must_read: request.must_read,
        amends: None,
        prev_hash: None,
        hash: None,
        // The government API posts text only.
        images: Vec::new(),
    };
    let max_text = hub.config.limits.max_text;
    let appends = groups.iter().map(|group| {
        crate::governance::notices::append_notice(
            hub,
            *group,
            author.clone(),
            notice.clone(),
            request.client_key.as_ref().map(|k| format!("api:{}:{k}", key.id)),
            max_text,
        )
    });
    let mut placed = Vec::with_capacity(groups.len());
    let mut failure = None;
    for (group, result) in groups.iter().zip(join_all(appends).await) {
        match result {
            Ok((seq, duplicate)) => placed.push(ApiNoticePlaced { group: *group, seq, duplicate }),
            Err(e) => failure = Some(e),
        }
    }
    match failure {
        None => Ok(ApiNoticePosted { groups: placed }),
        Some(e) if placed.is_empty() => Err(e),
        Some(e) => {
            let reached: Vec<Id> = placed.iter().map(|p| p.group).collect();
            Err(OpError::new(
                e.code,
                format!(
                    "{}; the notice reached groups {reached:?} — retry with the same client_key",
                    e.message
                ),
            ))
        }
    }
}

/// Query extractor whose failure is a JSON `bad_request`, like every other
/// refusal here.
fn query<T>(result: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, OpError> {
    result.map(|Query(q)| q).map_err(|e| OpError::bad_request(e.body_text()))
}

fn path<T>(result: Result<Path<T>, axum::extract::rejection::PathRejection>) -> Result<T, OpError> {
    result.map(|Path(p)| p).map_err(|e| OpError::bad_request(e.body_text()))
}

/// A read's answer: its JSON, or the refusal.
fn answer<T: serde::Serialize>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(body) => axum::Json(body).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}
