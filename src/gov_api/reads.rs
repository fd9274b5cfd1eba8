//! The read side of the government API: statistics (the `stats` op's
//! figures), requests in Open311 GeoReport v2 shape, and the request
//! categories as an Open311 service list. Everything is read back from
//! the group logs, like the people's figures.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use protocol::{
    ErrorCode, EscalationLevel, Id, Millis, RequestStage, Seq, Service, ServiceRequest, ServiceRequestStatus,
    REQUEST_CATEGORIES,
};

use super::keys::ApiRight;
use super::{answer, authorize, path, query, scope_of, time, Refusal};
use crate::governance::read;
use crate::governance::requests::{requests_of, RequestState};
use crate::http::AppState;
use crate::hub::{Hub, OpError};

/// Most requests in one answer (Open311 servers cap theirs likewise).
pub const MAX_REQUESTS: usize = 1000;

/// Query of `/api/v1/stats`. Every field is text, parsed here, so that a
/// wrong value gets a JSON `bad_request` that names it.
#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    scope: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn time_param(name: &str, value: Option<&str>) -> Result<Option<Millis>, OpError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => time::parse(v).map(Some).ok_or_else(|| {
            OpError::bad_request(format!(
                "{name} must be milliseconds since the epoch, an RFC 3339 datetime or a date (YYYY-MM-DD)"
            ))
        }),
    }
}

/// `GET /api/v1/stats?scope=town:2&from=&to=`: the `stats` op's figures.
pub async fn http_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<StatsQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let key = authorize(&state.hub, &headers, ApiRight::Read)?;
        let q = query(q)?;
        let (scope, groups) = scope_of(&state.hub, &key, q.scope.as_deref())?;
        let from = time_param("from", q.from.as_deref())?;
        let to = time_param("to", q.to.as_deref())?;
        Ok::<_, Refusal>(crate::stats::stats_of(&state.hub, scope, groups, from, to).await?)
    }
    .await;
    answer(result)
}

/// Query of `/api/v1/requests`.
#[derive(Debug, Deserialize)]
pub struct RequestsQuery {
    scope: Option<String>,
    /// `open`, `closed` or both, comma-separated (Open311).
    status: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    service_code: Option<String>,
    limit: Option<String>,
}

/// The names a request's agency is told by: its group's, town's and
/// district's.
struct Names {
    group: String,
    town: String,
    district: String,
}

fn names_of(hub: &Hub, groups: &[Id]) -> HashMap<Id, Names> {
    let dir = hub.directory.read().unwrap();
    groups
        .iter()
        .filter_map(|g| {
            let group = dir.groups.get(g)?;
            let town = dir.towns.get(&group.town);
            let district = town.and_then(|t| dir.districts.get(&t.district));
            Some((
                *g,
                Names {
                    group: group.name.clone(),
                    town: town.map(|t| t.name.clone()).unwrap_or_default(),
                    district: district.cloned().unwrap_or_default(),
                },
            ))
        })
        .collect()
}

/// One request as Open311 shows it.
fn service_request(group: Id, r: RequestState, names: &Names, first_response_ms: i64) -> ServiceRequest {
    let due = r.ts + first_response_ms;
    let stage = if r.resolved.is_some() {
        RequestStage::Resolved
    } else if r.escalated.is_some() {
        RequestStage::Escalated
    } else if r.first_reply.is_some() {
        RequestStage::Responded
    } else {
        RequestStage::Filed
    };
    let agency = match r.escalated {
        Some(EscalationLevel::Town) => &names.town,
        Some(EscalationLevel::District) => &names.district,
        None => &names.group,
    };
    ServiceRequest {
        service_request_id: format!("{group}-{}", r.seq),
        status: if r.resolved.is_some() { ServiceRequestStatus::Closed } else { ServiceRequestStatus::Open },
        status_notes: r.last_reply,
        service_code: r.category.clone(),
        service_name: r.category,
        description: r.text,
        agency_responsible: agency.clone(),
        requested_datetime: time::rfc3339(r.ts),
        updated_datetime: time::rfc3339(r.updated),
        expected_datetime: time::rfc3339(due),
        group,
        stage,
        escalated_to: r.escalated,
        rating: r.rating,
        replies: r.replies,
        first_response_datetime: r.first_reply.map(time::rfc3339),
        overdue: r.overdue || r.first_reply.is_some_and(|at| at > due),
    }
}

/// Every request of `groups`, with the group it belongs to.
async fn requests_in(hub: &Hub, groups: Vec<Id>) -> Result<Vec<(Id, RequestState)>, OpError> {
    read(hub, move |c| {
        let mut all = Vec::new();
        for group in groups {
            all.extend(requests_of(c, group)?.into_values().map(|r| (group, r)));
        }
        Ok(all)
    })
    .await
}

/// `GET /api/v1/requests?scope=&status=&start_date=&end_date=&service_code=&limit=`:
/// newest first, at most `limit` (default and most: 1000).
pub async fn http_requests(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<RequestsQuery>, QueryRejection>,
) -> Response {
    let hub = &state.hub;
    let result = async {
        let key = authorize(&state.hub, &headers, ApiRight::Read)?;
        let q = query(q)?;
        let (_, groups) = scope_of(hub, &key, q.scope.as_deref())?;
        let (mut open, mut closed) = (true, true);
        if let Some(status) = q.status.as_deref().filter(|s| !s.trim().is_empty()) {
            (open, closed) = (false, false);
            for s in status.split(',') {
                match s.trim() {
                    "open" => open = true,
                    "closed" => closed = true,
                    _ => return Err(OpError::bad_request("status is open, closed or open,closed").into()),
                }
            }
        }
        let start = time_param("start_date", q.start_date.as_deref())?;
        let end = time_param("end_date", q.end_date.as_deref())?;
        let limit = match q.limit.as_deref().map(str::trim) {
            None | Some("") => MAX_REQUESTS,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_REQUESTS).contains(&n) => n,
                _ => return Err(OpError::bad_request(format!("limit is 1 to {MAX_REQUESTS}")).into()),
            },
        };
        let names = names_of(hub, &groups);
        let mut found: Vec<(Id, RequestState)> = requests_in(hub, groups)
            .await?
            .into_iter()
            .filter(|(_, r)| if r.resolved.is_some() { closed } else { open })
            .filter(|(_, r)| start.is_none_or(|s| r.ts >= s) && end.is_none_or(|e| r.ts <= e))
            .filter(|(_, r)| q.service_code.as_deref().is_none_or(|c| r.category == c))
            .collect();
        found.sort_by(|(ga, a), (gb, b)| b.ts.cmp(&a.ts).then(gb.cmp(ga)).then(b.seq.cmp(&a.seq)));
        found.truncate(limit);
        let window = hub.governance.config.first_response_ms;
        Ok::<_, Refusal>(
            found
                .into_iter()
                .filter_map(|(g, r)| Some(service_request(g, r, names.get(&g)?, window)))
                .collect::<Vec<_>>(),
        )
    }
    .await;
    answer(result)
}

/// `GET /api/v1/requests/{group}-{seq}`: one request, as a one-element list
/// (as Open311 answers).
pub async fn http_request(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let hub = &state.hub;
    let result = async {
        let key = authorize(&state.hub, &headers, ApiRight::Read)?;
        let id = path(id)?;
        let parsed =
            id.split_once('-').and_then(|(g, s)| Some((g.parse::<Id>().ok()?, s.parse::<Seq>().ok()?)));
        let Some((group, seq)) = parsed else {
            return Err(OpError::bad_request("a service_request_id is GROUP-SEQ, e.g. 4-12").into());
        };
        scope_of(hub, &key, Some(&format!("group:{group}")))?;
        hub.serves(group)?;
        let request = read(hub, move |c| Ok(requests_of(c, group)?.remove(&seq))).await?;
        let request = request.ok_or_else(|| OpError::new(ErrorCode::NotFound, "no such request"))?;
        let names = names_of(hub, &[group]);
        let names = names.get(&group).ok_or_else(OpError::no_such_group)?;
        Ok::<_, Refusal>(vec![service_request(
            group,
            request,
            names,
            hub.governance.config.first_response_ms,
        )])
    }
    .await;
    answer(result)
}

/// Query of `/api/v1/services`.
#[derive(Debug, Deserialize)]
pub struct ServicesQuery {
    scope: Option<String>,
}

/// `GET /api/v1/services?scope=`: the request categories, each with how
/// many requests of the scope are filed under it.
pub async fn http_services(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ServicesQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let key = authorize(&state.hub, &headers, ApiRight::Read)?;
        let q = query(q)?;
        let (_, groups) = scope_of(&state.hub, &key, q.scope.as_deref())?;
        let mut counts: HashMap<String, u64> = HashMap::new();
        for (_, r) in requests_in(&state.hub, groups).await? {
            *counts.entry(r.category).or_default() += 1;
        }
        Ok::<_, Refusal>(
            REQUEST_CATEGORIES
                .iter()
                .map(|name| Service {
                    service_code: name.to_string(),
                    service_name: name.to_string(),
                    description: format!("{name}类诉求"),
                    metadata: false,
                    kind: "realtime".into(),
                    keywords: String::new(),
                    group: "requests".into(),
                    requests: counts.get(*name).copied().unwrap_or(0),
                })
                .collect::<Vec<_>>(),
        )
    }
    .await;
    answer(result)
}
