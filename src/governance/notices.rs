//! Notices (公告): cadre posts, read receipts rolled up per household, and
//! the hash chain of affairs disclosures (村务公开).
//!
//! A disclosure's `hash` is SHA-256 over `canonical` (its content and the
//! previous disclosure's hash), so altering any stored disclosure breaks
//! its own hash, and replacing that too breaks the next one's `prev_hash`.

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use protocol::{
    Author, BrokenLink, ChainReport, EventBody, HouseholdRef, Id, NoticeBody, NoticeCategory, NoticeReadBody,
    Receipts, Seq, ServerFrame,
};

use super::{append, check_text, events_of, forbidden, is_cadre, not_found, read, MAX_TITLE};
use crate::hub::{Account, Hub, OpError};
use crate::membership::Sight;
use crate::presence::Notice;
use crate::store::StoreError;

/// The exact text a disclosure's hash covers, as one JSON array: group,
/// author id, title, text, must_read, amends, prev_hash ("" for the first),
/// and — only when it has pictures, so that earlier chains still verify —
/// the list of picture names (each the SHA-256 of the picture's bytes, so
/// the hash covers the pictures themselves).
pub fn canonical(group: Id, author: Id, notice: &NoticeBody) -> String {
    if !notice.images.is_empty() {
        let value = (
            group,
            author,
            &notice.title,
            &notice.text,
            notice.must_read,
            notice.amends,
            notice.prev_hash.as_deref().unwrap_or(""),
            &notice.images,
        );
        return serde_json::to_string(&value).expect("tuples serialize");
    }
    let value = (
        group,
        author,
        &notice.title,
        &notice.text,
        notice.must_read,
        notice.amends,
        notice.prev_hash.as_deref().unwrap_or(""),
    );
    serde_json::to_string(&value).expect("tuples serialize")
}

pub fn hash_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every notice of a group: (seq, author id, body), ascending.
fn notices_of(conn: &Connection, group: Id) -> Result<Vec<(Seq, Id, NoticeBody)>, StoreError> {
    Ok(events_of(conn, group, &["notice"])?
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Notice(n) => Some((e.seq, e.author.id, n)),
            _ => None,
        })
        .collect())
}

#[allow(clippy::too_many_arguments)]
pub async fn post_notice(
    hub: &Hub,
    id: u64,
    group: Id,
    sight: &Sight,
    author: Author,
    notice: NoticeBody,
    client_key: Option<String>,
    max_text: usize,
) -> Result<ServerFrame, OpError> {
    if !is_cadre(sight) {
        return Err(forbidden("only cadres and the secretary post notices"));
    }
    let (seq, duplicate) = append_notice(hub, group, author, notice, client_key, max_text).await?;
    Ok(ServerFrame::Sent { id, group, seq, duplicate })
}

/// Checks a notice and appends it to the group's log; a disclosure is
/// linked into the group's hash chain first. The caller has checked that
/// the author may post notices there (a cadre's `post`, or a government
/// system's key in `gov_api`). Returns the seq and whether it is a retry.
pub async fn append_notice(
    hub: &Hub,
    group: Id,
    author: Author,
    mut notice: NoticeBody,
    client_key: Option<String>,
    max_text: usize,
) -> Result<(Seq, bool), OpError> {
    check_text(&notice.title, "title", MAX_TITLE)?;
    check_text(&notice.text, "text", max_text)?;
    notice.prev_hash = None;
    notice.hash = None;
    let _chain = if notice.category == NoticeCategory::Affairs {
        Some(hub.governance.chain.lock().await)
    } else {
        None
    };
    let earlier = read(hub, move |c| notices_of(c, group)).await?;
    if let Some(amends) = notice.amends {
        match earlier.iter().find(|(seq, _, _)| *seq == amends) {
            None => return Err(not_found("no such notice to amend")),
            Some((_, _, n)) if n.category != notice.category => {
                return Err(OpError::bad_request("an amendment has the category of the notice it amends"));
            }
            Some(_) => {}
        }
    }
    if notice.category == NoticeCategory::Affairs {
        notice.prev_hash = earlier
            .iter()
            .rev()
            .find(|(_, _, n)| n.category == NoticeCategory::Affairs)
            .and_then(|(_, _, n)| n.hash.clone());
        notice.hash = Some(hash_hex(&canonical(group, author.id, &notice)));
    }
    append(hub, group, author, client_key, EventBody::Notice(notice)).await
}

/// A read receipt; reading twice is a duplicate of the first receipt.
pub async fn post_read(
    hub: &Hub,
    id: u64,
    group: Id,
    author: Author,
    receipt: NoticeReadBody,
) -> Result<ServerFrame, OpError> {
    let notice = receipt.notice;
    let exists = read(hub, move |c| Ok(notices_of(c, group)?.iter().any(|(s, _, _)| *s == notice))).await?;
    if !exists {
        return Err(not_found("no such notice"));
    }
    let key = Some(format!("notice_read:{notice}"));
    let (seq, duplicate) = append(hub, group, author, key, EventBody::NoticeRead(receipt)).await?;
    if !duplicate {
        let receipts = receipts(hub, group, notice).await?;
        let cadres: Vec<Id> = {
            let dir = hub.directory.read().unwrap();
            dir.members_of(group)
                .into_iter()
                .filter(|(_, role)| matches!(role, protocol::Role::Cadre | protocol::Role::Secretary))
                .map(|(a, _)| a)
                .collect()
        };
        for cadre in cadres {
            hub.fanout.accounts.notify(cadre, Notice::Receipts(Box::new(receipts.clone())));
        }
    }
    Ok(ServerFrame::Sent { id, group, seq, duplicate })
}

/// Read receipts of a notice, rolled up per household of the group.
pub async fn receipts(hub: &Hub, group: Id, notice: Seq) -> Result<Receipts, OpError> {
    let readers: Vec<Id> = read(hub, move |c| {
        Ok(events_of(c, group, &["notice_read"])?
            .into_iter()
            .filter(|e| matches!(&e.body, EventBody::NoticeRead(r) if r.notice == notice))
            .map(|e| e.author.id)
            .collect())
    })
    .await?;
    let dir = hub.directory.read().unwrap();
    let mut people: Vec<Id> = readers.clone();
    people.sort_unstable();
    people.dedup();
    let mut read_households: Vec<Id> =
        people.iter().filter_map(|a| dir.people.member(*a, group).household).collect();
    read_households.sort_unstable();
    read_households.dedup();
    let mut households: Vec<Id> =
        dir.members_of(group).iter().filter_map(|(a, _)| dir.people.member(*a, group).household).collect();
    households.sort_unstable();
    households.dedup();
    let unread = households
        .into_iter()
        .filter(|h| read_households.binary_search(h).is_err())
        .filter_map(|h| dir.people.households.get(&h))
        .map(|h| HouseholdRef { id: h.id, address: h.address.clone() })
        .collect();
    Ok(Receipts {
        group,
        notice,
        read_people: people.len() as u32,
        read_households: read_households.len() as u32,
        unread,
    })
}

/// `unread`: cadres, the secretary and officers.
pub async fn unread(
    hub: &Hub,
    by: &Account,
    id: u64,
    group: Id,
    notice: Seq,
) -> Result<ServerFrame, OpError> {
    let sight = hub.sight(by, group)?;
    if !is_cadre(&sight) && sight.officer.is_none() {
        return Err(forbidden("only cadres, the secretary and officers see read receipts"));
    }
    let exists = read(hub, move |c| Ok(notices_of(c, group)?.iter().any(|(s, _, _)| *s == notice))).await?;
    if !exists {
        return Err(not_found("no such notice"));
    }
    Ok(ServerFrame::Unread { id, receipts: receipts(hub, group, notice).await? })
}

/// Checks a group's disclosure chain; names the first broken link.
pub fn verify(conn: &Connection, group: Id) -> Result<ChainReport, StoreError> {
    let mut previous: Option<String> = None;
    let mut checked = 0;
    for (seq, author, notice) in notices_of(conn, group)? {
        if notice.category != NoticeCategory::Affairs {
            continue;
        }
        checked += 1;
        let broken = |reason: &str| ChainReport {
            group,
            checked,
            ok: false,
            broken: Some(BrokenLink { seq, reason: reason.to_string() }),
        };
        if notice.prev_hash != previous {
            return Ok(broken("prev_hash does not match the previous disclosure's hash"));
        }
        if notice.hash.as_deref() != Some(hash_hex(&canonical(group, author, &notice)).as_str()) {
            return Ok(broken("the content does not match its hash"));
        }
        previous = notice.hash;
    }
    Ok(ChainReport { group, checked, ok: true, broken: None })
}

/// `verify_disclosures`: anyone who sees the group.
pub async fn verify_op(hub: &Hub, by: &Account, id: u64, group: Id) -> Result<ServerFrame, OpError> {
    hub.sight(by, group)?;
    let report = read(hub, move |c| verify(c, group)).await?;
    Ok(ServerFrame::Disclosures { id, report })
}
