//! Town and district broadcast: an officer posts once, every group of the
//! scope shows it.
//!
//! How it sits in the logs: one `broadcast` event (notices channel) is
//! appended to the log of every group in the scope, all carrying the same
//! broadcast id, which is also each append's client key — so a retried
//! broadcast never doubles in any group, and backfill, history, resume and
//! cluster replication work exactly as for any other event. Every
//! connection subscribed to a group of the scope receives it live. The
//! appends are issued together, so the embedded writer commits them in one
//! batch (usually one transaction); they are not atomic across groups — a
//! failure names the groups that did get it, and a retry with the same id
//! completes the rest.

use std::sync::Arc;

use futures_util::future::join_all;
use rand::Rng;

use protocol::{Author, BroadcastBody, ErrorCode, EventBody, Id, Office, Role};

use crate::hub::{Account, Hub, OpError};
use crate::log::{Append, Appended};
use crate::stats::Scope;

/// Longest broadcast title and text, in characters.
pub const MAX_TITLE: usize = 200;
pub const MAX_TEXT: usize = 5000;

/// `broadcast`: returns the broadcast id and the groups that received it.
pub async fn broadcast(
    hub: &Arc<Hub>,
    account: &Account,
    scope: &str,
    title: String,
    text: String,
    broadcast_id: Option<String>,
) -> Result<(String, Vec<Id>), OpError> {
    if title.trim().is_empty() || text.trim().is_empty() {
        return Err(OpError::bad_request("a broadcast has a title and a text"));
    }
    if title.chars().count() > MAX_TITLE || text.chars().count() > MAX_TEXT {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!("a broadcast's title has at most {MAX_TITLE} characters, its text {MAX_TEXT}"),
        ));
    }
    let parsed = Scope::parse(scope)?;
    let (groups, role, party) = {
        let dir = hub.directory.read().unwrap();
        let state = dir.people.state(account.id);
        let (allowed, role) = match parsed {
            Scope::Group(_) => {
                return Err(OpError::bad_request(
                    "a broadcast goes to a town or a district; post a notice in a group",
                ))
            }
            Scope::Town(town) => {
                let record =
                    dir.towns.get(&town).ok_or_else(|| OpError::new(ErrorCode::NotFound, "no such town"))?;
                if state.offices.contains(&Office::Town(town)) {
                    (true, Role::TownOfficer)
                } else {
                    (state.offices.contains(&Office::District(record.district)), Role::DistrictOfficer)
                }
            }
            Scope::District(district) => {
                if !dir.districts.contains_key(&district) {
                    return Err(OpError::new(ErrorCode::NotFound, "no such district"));
                }
                (state.offices.contains(&Office::District(district)), Role::DistrictOfficer)
            }
        };
        if !allowed || state.status != protocol::AccountStatus::Active {
            return Err(OpError::new(
                ErrorCode::Forbidden,
                "only officers of the town or district broadcast to it",
            ));
        }
        let groups = crate::stats::readable_groups(&dir, account.id, parsed)?;
        (groups, role, state.party)
    };
    let id = broadcast_id.unwrap_or_else(|| format!("b{:016x}", rand::thread_rng().gen::<u64>()));
    let body = BroadcastBody { broadcast: id.clone(), scope: parsed.to_wire(), title, text };
    let author =
        Author { id: account.id, name: account.name.clone(), role, party, migrant: false, system: false };
    let appends = groups.iter().map(|group| {
        hub.log.append(Append::Group {
            group: *group,
            author: author.clone(),
            client_key: Some(id.clone()),
            body: EventBody::Broadcast(body.clone()),
        })
    });
    let results = join_all(appends).await;
    let mut reached = Vec::with_capacity(groups.len());
    let mut failure = None;
    for result in results {
        match result {
            Ok(Appended::Group { group, .. }) => reached.push(group),
            Ok(Appended::Directory { .. }) => unreachable!("broadcasts append to groups"),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        let e = OpError::from(e);
        return Err(OpError::new(
            e.code,
            format!("{}; broadcast {id} reached groups {reached:?} — retry with the same id", e.message),
        ));
    }
    Ok((id, reached))
}
