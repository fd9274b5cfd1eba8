//! Likes on any post of a group: one per person per post, undo allowed.
//! A person likes a post when their latest `like`/`unlike` of it is a
//! `like`, so a raced double like still counts once.

use std::collections::HashMap;

use rusqlite::Connection;

use protocol::{EventBody, Id, LikeCount, Seq, ServerFrame};

use super::{conflict, events_of, not_found, read};
use crate::hub::{Account, Hub, OpError};
use crate::store::StoreError;

/// Kinds of events that can be liked.
const POSTS: &[&str] =
    &["message", "notice", "request", "request_reply", "topic", "topic_comment", "item", "project_progress"];

/// (target, person) → likes it now.
fn likes_of(conn: &Connection, group: Id) -> Result<HashMap<(Seq, Id), bool>, StoreError> {
    let mut map = HashMap::new();
    for event in events_of(conn, group, &["like", "unlike"])? {
        match event.body {
            EventBody::Like(l) => map.insert((l.target, event.author.id), true),
            EventBody::Unlike(l) => map.insert((l.target, event.author.id), false),
            _ => None,
        };
    }
    Ok(map)
}

fn is_post(conn: &Connection, group: Id, seq: Seq) -> Result<bool, StoreError> {
    let kind: Option<String> = conn
        .query_row(
            "SELECT kind FROM events WHERE log = ?1 AND seq = ?2",
            rusqlite::params![group as i64, seq as i64],
            |r| r.get(0),
        )
        .ok();
    Ok(kind.is_some_and(|k| POSTS.contains(&k.as_str())))
}

pub async fn check(
    hub: &Hub,
    group: Id,
    by: Id,
    event: EventBody,
    client_key: Option<String>,
) -> Result<(EventBody, Option<String>), OpError> {
    let (like, target) = match &event {
        EventBody::Like(l) => (true, l.target),
        EventBody::Unlike(l) => (false, l.target),
        _ => unreachable!("only likes come here"),
    };
    let (post, likes) = read(hub, move |c| Ok((is_post(c, group, target)?, likes_of(c, group)?))).await?;
    if !post {
        return Err(not_found("no such post to like"));
    }
    let liked = likes.get(&(target, by)).copied().unwrap_or(false);
    if like && liked {
        return Err(conflict("you like this post already"));
    }
    if !like && !liked {
        return Err(conflict("you do not like this post"));
    }
    Ok((event, client_key))
}

/// `likes`: counts of some posts, and whether the asker likes each.
pub async fn likes_op(
    hub: &Hub,
    by: &Account,
    id: u64,
    group: Id,
    targets: Vec<Seq>,
) -> Result<ServerFrame, OpError> {
    hub.sight(by, group)?;
    if targets.len() > 500 {
        return Err(OpError::new(protocol::ErrorCode::TooLarge, "at most 500 targets"));
    }
    let likes = read(hub, move |c| likes_of(c, group)).await?;
    let counts = targets
        .into_iter()
        .map(|target| LikeCount {
            target,
            count: likes.iter().filter(|((t, _), on)| *t == target && **on).count() as u32,
            mine: likes.get(&(target, by.id)).copied().unwrap_or(false),
        })
        .collect();
    Ok(ServerFrame::Likes { id, group, counts })
}
