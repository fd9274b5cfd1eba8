//! Requests (诉求): a member files one, cadres reply (a timeline), resolve
//! or escalate; the sweeper raises `request_overdue` when the first
//! response is late and escalates automatically after a further while;
//! the filer rates the resolution. Figures per group, town or district.

use std::collections::BTreeMap;

use rusqlite::Connection;

use protocol::{
    EscalationLevel, EventBody, Figures, Id, ItemMode, Millis, RequestEscalatedBody, RequestOverdueBody,
    ScopeKind, Seq, ServerFrame, REQUEST_CATEGORIES,
};

use super::{append, check_text, conflict, events_of, forbidden, is_cadre, not_found, read, system_author};
use crate::hub::{Account, Hub, OpError};
use crate::membership::Sight;
use crate::stats::{readable_groups, Scope};
use crate::store::StoreError;

const KINDS: &[&str] = &[
    "request",
    "request_reply",
    "request_resolved",
    "request_escalated",
    "request_overdue",
    "request_rated",
];

/// One request as its events tell it.
#[derive(Debug, Clone)]
pub struct RequestState {
    pub seq: Seq,
    pub ts: Millis,
    pub filer: Id,
    pub first_reply: Option<Millis>,
    /// `Some(solved_in_group)` once resolved.
    pub resolved: Option<bool>,
    pub escalated: Option<EscalationLevel>,
    /// When the latest escalation was made, and whether by the server.
    pub escalated_at: Option<Millis>,
    pub escalated_automatically: bool,
    /// A reply came after the latest escalation.
    pub replied_since_escalation: bool,
    pub overdue: bool,
    pub rated: bool,
    // What the government API shows (`gov_api`).
    pub category: String,
    pub text: String,
    pub replies: u32,
    /// The latest reply's text.
    pub last_reply: Option<String>,
    /// The filer's stars, once rated.
    pub rating: Option<u8>,
    /// The latest event of the request (its filing, at first).
    pub updated: Millis,
}

pub fn requests_of(conn: &Connection, group: Id) -> Result<BTreeMap<Seq, RequestState>, StoreError> {
    let mut map: BTreeMap<Seq, RequestState> = BTreeMap::new();
    for event in events_of(conn, group, KINDS)? {
        let (request, ts) = (event.seq, event.ts);
        match event.body {
            EventBody::Request(body) => {
                map.insert(
                    request,
                    RequestState {
                        seq: request,
                        ts,
                        filer: event.author.id,
                        first_reply: None,
                        resolved: None,
                        escalated: None,
                        escalated_at: None,
                        escalated_automatically: false,
                        replied_since_escalation: false,
                        overdue: false,
                        rated: false,
                        category: body.category,
                        text: body.text,
                        replies: 0,
                        last_reply: None,
                        rating: None,
                        updated: ts,
                    },
                );
            }
            EventBody::RequestReply(b) => {
                if let Some(r) = map.get_mut(&b.request) {
                    r.first_reply.get_or_insert(ts);
                    r.replied_since_escalation = r.escalated.is_some();
                    r.replies += 1;
                    r.last_reply = Some(b.text);
                    r.updated = ts;
                }
            }
            EventBody::RequestResolved(b) => {
                if let Some(r) = map.get_mut(&b.request) {
                    r.resolved.get_or_insert(b.solved_in_group);
                    r.updated = ts;
                }
            }
            EventBody::RequestEscalated(b) => {
                if let Some(r) = map.get_mut(&b.request) {
                    if r.escalated != Some(EscalationLevel::District) {
                        r.escalated = Some(b.to);
                    }
                    r.escalated_at = Some(ts);
                    r.escalated_automatically = b.automatic;
                    r.replied_since_escalation = false;
                    r.updated = ts;
                }
            }
            EventBody::RequestOverdue(b) => {
                if let Some(r) = map.get_mut(&b.request) {
                    r.overdue = true;
                    r.updated = ts;
                }
            }
            EventBody::RequestRated(b) => {
                if let Some(r) = map.get_mut(&b.request) {
                    r.rated = true;
                    r.rating.get_or_insert(b.stars);
                    r.updated = ts;
                }
            }
            _ => {}
        }
    }
    Ok(map)
}

/// May this officer act on a request escalated to `level`?
fn officer_may(sight: &Sight, level: Option<EscalationLevel>) -> bool {
    matches!(
        (sight.officer, level),
        (Some(protocol::Role::TownOfficer), Some(EscalationLevel::Town))
            | (Some(protocol::Role::DistrictOfficer), Some(_))
    )
}

/// Checks a request event; returns the body to append and its client key.
pub async fn check(
    hub: &Hub,
    group: Id,
    sight: &Sight,
    by: Id,
    event: EventBody,
    client_key: Option<String>,
    max_text: usize,
) -> Result<(EventBody, Option<String>), OpError> {
    let map = read(hub, move |c| requests_of(c, group)).await?;
    let find = |seq: Seq| map.get(&seq).cloned().ok_or_else(|| not_found("no such request"));
    match event {
        EventBody::Request(body) => {
            if !REQUEST_CATEGORIES.contains(&body.category.as_str()) {
                return Err(OpError::bad_request("unknown request category"));
            }
            check_text(&body.text, "text", max_text)?;
            Ok((EventBody::Request(body), client_key))
        }
        EventBody::RequestReply(body) => {
            let r = find(body.request)?;
            if !is_cadre(sight) && !officer_may(sight, r.escalated) {
                return Err(forbidden("only the group's cadres (or officers, once escalated) reply"));
            }
            check_text(&body.text, "text", max_text)?;
            Ok((EventBody::RequestReply(body), client_key))
        }
        EventBody::RequestResolved(mut body) => {
            let r = find(body.request)?;
            if !is_cadre(sight) && !officer_may(sight, r.escalated) {
                return Err(forbidden("only the group's cadres (or officers, once escalated) resolve"));
            }
            if r.resolved.is_some() {
                return Err(conflict("the request is resolved already"));
            }
            body.solved_in_group = r.escalated.is_none();
            let key = Some(format!("resolved:{}", body.request));
            Ok((EventBody::RequestResolved(body), key))
        }
        EventBody::RequestEscalated(mut body) => {
            let r = find(body.request)?;
            check_text(&body.reason, "reason", crate::membership::MAX_REASON)?;
            if r.resolved.is_some() {
                return Err(conflict("the request is resolved already"));
            }
            let allowed = match body.to {
                EscalationLevel::Town => is_cadre(sight) && r.escalated.is_none(),
                EscalationLevel::District => {
                    r.escalated == Some(EscalationLevel::Town)
                        && sight.officer == Some(protocol::Role::TownOfficer)
                }
            };
            if !allowed {
                return Err(forbidden(
                    "cadres escalate to the town; the town's officers escalate on to the district",
                ));
            }
            body.automatic = false;
            Ok((EventBody::RequestEscalated(body), client_key))
        }
        EventBody::RequestOverdue(_) => Err(forbidden("only the server marks a request overdue")),
        EventBody::RequestRated(body) => {
            let r = find(body.request)?;
            if r.filer != by {
                return Err(forbidden("only the resident who filed the request rates it"));
            }
            if r.resolved.is_none() {
                return Err(conflict("a request is rated after it is resolved"));
            }
            if r.rated {
                return Err(conflict("the request is rated already"));
            }
            if !(1..=5).contains(&body.stars) {
                return Err(OpError::bad_request("stars must be 1 to 5"));
            }
            if let Some(comment) = &body.comment {
                check_text(comment, "comment", max_text)?;
            }
            let key = Some(format!("rated:{}", body.request));
            Ok((EventBody::RequestRated(body), key))
        }
        _ => unreachable!("only request events come here"),
    }
}

/// Raises `request_overdue`, automatic escalations and backlog warnings
/// that are due, for every group this node serves: one indexed query of
/// the request clock (`live.rs`) finds the requests past their deadline.
pub async fn sweep(hub: &Hub, now: Millis) -> Result<(), OpError> {
    let config = &hub.governance.config;
    let due_by = now - config.first_response_ms;
    let waiting = read(hub, move |c| Ok(crate::live::FigureDeltas::waiting(c, due_by)?)).await?;
    let mut by_group: BTreeMap<Id, Vec<(Seq, Millis, bool, bool)>> = BTreeMap::new();
    for (group, request, filed_at, overdue, escalated) in waiting {
        by_group.entry(group).or_default().push((request, filed_at, overdue, escalated));
    }
    for (group, requests) in by_group {
        if hub.serves(group).is_err() {
            continue;
        }
        for &(request, filed_at, overdue, escalated) in &requests {
            if !overdue {
                let body = EventBody::RequestOverdue(RequestOverdueBody { request });
                append(hub, group, system_author(), Some(format!("overdue:{request}")), body).await?;
            }
            if !escalated && now >= filed_at + config.first_response_ms + config.escalate_after_ms {
                let hours = (config.first_response_ms + config.escalate_after_ms) as f64 / 3_600_000.0;
                let body = EventBody::RequestEscalated(RequestEscalatedBody {
                    request,
                    to: EscalationLevel::Town,
                    reason: format!("no response within {hours} hours"),
                    automatic: true,
                });
                append(hub, group, system_author(), Some(format!("escalated:{request}")), body).await?;
            }
        }
        let backlog = requests.iter().map(|(request, ..)| *request).collect();
        crate::warnings::check_backlog(hub, group, backlog, now).await;
    }
    Ok(())
}

fn per_mille(part: u32, whole: u32) -> u32 {
    if whole == 0 {
        1000
    } else {
        (part as u64 * 1000 / whole as u64) as u32
    }
}

/// Request and exchange figures of a scope.
pub async fn figures(hub: &Hub, by: &Account, scope: ScopeKind, of: Id) -> Result<Figures, OpError> {
    let readable = match scope {
        ScopeKind::Group => Scope::Group(of),
        ScopeKind::Town => Scope::Town(of),
        ScopeKind::District => Scope::District(of),
    };
    let groups = readable_groups(&hub.directory.read().unwrap(), by.id, readable)?;
    let window = hub.governance.config.first_response_ms;
    read(hub, move |c| {
        let mut f = Figures {
            scope,
            of,
            requests: 0,
            responded: 0,
            reply_rate: 1000,
            on_time_rate: 1000,
            median_first_response_ms: None,
            resolved: 0,
            solved_in_group_rate: 1000,
            escalations: 0,
            overdue: 0,
            offers: 0,
            wants: 0,
            claimed: 0,
            handed_over: 0,
        };
        let (mut on_time, mut solved, mut delays) = (0, 0, Vec::new());
        for group in groups {
            for r in requests_of(c, group)?.values() {
                f.requests += 1;
                if let Some(at) = r.first_reply {
                    f.responded += 1;
                    delays.push(at - r.ts);
                    // An `overdue` mark is the log's own word that the
                    // window passed (the sweeper's clock may run ahead of
                    // the events' commit times).
                    if at - r.ts <= window && !r.overdue {
                        on_time += 1;
                    }
                }
                if let Some(in_group) = r.resolved {
                    f.resolved += 1;
                    solved += in_group as u32;
                }
                f.escalations += r.escalated.is_some() as u32;
                f.overdue += r.overdue as u32;
            }
            for event in events_of(c, group, &["item", "item_claimed", "item_handed_over"])? {
                match event.body {
                    EventBody::Item(item) if item.mode == ItemMode::Offer => f.offers += 1,
                    EventBody::Item(_) => f.wants += 1,
                    EventBody::ItemClaimed(_) => f.claimed += 1,
                    EventBody::ItemHandedOver(_) => f.handed_over += 1,
                    _ => {}
                }
            }
        }
        f.reply_rate = per_mille(f.responded, f.requests);
        f.on_time_rate = per_mille(on_time, f.requests);
        f.solved_in_group_rate = per_mille(solved, f.resolved);
        delays.sort_unstable();
        f.median_first_response_ms = match delays.len() {
            0 => None,
            n if n % 2 == 1 => Some(delays[n / 2]),
            n => Some((delays[n / 2 - 1] + delays[n / 2]) / 2),
        };
        Ok(f)
    })
    .await
}

pub async fn figures_op(
    hub: &Hub,
    by: &Account,
    id: u64,
    scope: ScopeKind,
    of: Id,
) -> Result<ServerFrame, OpError> {
    Ok(ServerFrame::Figures { id, figures: figures(hub, by, scope, of).await? })
}
