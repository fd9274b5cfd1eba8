//! The deliberation hall (议事厅): topics, comments, a voting window, one
//! vote per household or per person (a group setting), the result, and
//! the progress of projects. A topic closes by a cadre's or the
//! secretary's `topic_closed`, or by the sweeper when its window ends.

use std::collections::{BTreeMap, HashSet};

use rusqlite::Connection;

use protocol::{
    Choice, EventBody, HallSettingsBody, Id, Millis, Outcome, Proposers, Role, Seq, TopicBody,
    TopicClosedBody, Voting,
};

use super::{
    append, check_text, conflict, events_of, forbidden, is_cadre, not_found, read, system_author, MAX_TITLE,
};
use crate::hub::{Hub, OpError};
use crate::membership::Sight;
use crate::store::StoreError;

const KINDS: &[&str] = &["topic", "vote", "topic_closed", "hall_settings"];

#[derive(Debug, Clone)]
pub struct TopicState {
    pub seq: Seq,
    pub body: TopicBody,
    pub closed: Option<Outcome>,
    /// (voter, choice) in log order.
    pub votes: Vec<(Id, Choice)>,
}

pub struct Hall {
    pub settings: HallSettingsBody,
    pub topics: BTreeMap<Seq, TopicState>,
}

pub fn hall_of(conn: &Connection, group: Id) -> Result<Hall, StoreError> {
    let mut hall = Hall {
        settings: HallSettingsBody { proposers: Proposers::Members, voting: Voting::Household },
        topics: BTreeMap::new(),
    };
    for event in events_of(conn, group, KINDS)? {
        match event.body {
            EventBody::Topic(body) => {
                hall.topics
                    .insert(event.seq, TopicState { seq: event.seq, body, closed: None, votes: Vec::new() });
            }
            EventBody::Vote(v) => {
                if let Some(t) = hall.topics.get_mut(&v.topic) {
                    t.votes.push((event.author.id, v.choice));
                }
            }
            EventBody::TopicClosed(c) => {
                if let Some(t) = hall.topics.get_mut(&c.topic) {
                    t.closed.get_or_insert(c.outcome);
                }
            }
            EventBody::HallSettings(s) => hall.settings = s,
            _ => {}
        }
    }
    Ok(hall)
}

/// A voter's unit: their household for household voting (a member without
/// one votes alone), else themselves.
fn unit(hub: &Hub, group: Id, voting: Voting, account: Id) -> (bool, Id) {
    if voting == Voting::Household {
        if let Some(h) = hub.directory.read().unwrap().people.member(account, group).household {
            return (true, h);
        }
    }
    (false, account)
}

/// The tally: the first vote of each unit counts.
fn tally(hub: &Hub, group: Id, topic: &TopicState) -> TopicClosedBody {
    let mut seen = HashSet::new();
    let mut body =
        TopicClosedBody { topic: topic.seq, yes: 0, no: 0, abstain: 0, outcome: Outcome::Rejected };
    for (voter, choice) in &topic.votes {
        if !seen.insert(unit(hub, group, topic.body.voting, *voter)) {
            continue;
        }
        match choice {
            Choice::Yes => body.yes += 1,
            Choice::No => body.no += 1,
            Choice::Abstain => body.abstain += 1,
        }
    }
    if body.yes > body.no {
        body.outcome = topic.body.proposes.unwrap_or(Outcome::Convention);
    }
    body
}

pub async fn check(
    hub: &Hub,
    group: Id,
    sight: &Sight,
    by: Id,
    event: EventBody,
    client_key: Option<String>,
    max_text: usize,
) -> Result<(EventBody, Option<String>), OpError> {
    let hall = read(hub, move |c| hall_of(c, group)).await?;
    let now = hub.governance.now();
    let find = |seq: Seq| hall.topics.get(&seq).cloned().ok_or_else(|| not_found("no such topic"));
    match event {
        EventBody::Topic(mut body) => {
            if hall.settings.proposers == Proposers::Cadres && !is_cadre(sight) {
                return Err(forbidden("in this group only cadres propose topics"));
            }
            check_text(&body.title, "title", MAX_TITLE)?;
            check_text(&body.text, "text", max_text)?;
            if body.vote_until <= now {
                return Err(OpError::bad_request("vote_until must be in the future"));
            }
            if body.proposes == Some(Outcome::Rejected) {
                return Err(OpError::bad_request("a topic proposes a convention or a project"));
            }
            body.voting = hall.settings.voting;
            Ok((EventBody::Topic(body), client_key))
        }
        EventBody::TopicComment(body) => {
            let topic = find(body.topic)?;
            check_text(&body.text, "text", max_text)?;
            let _ = topic;
            Ok((EventBody::TopicComment(body), client_key))
        }
        EventBody::Vote(body) => {
            let topic = find(body.topic)?;
            if topic.closed.is_some() || now >= topic.body.vote_until {
                return Err(conflict("voting on this topic has ended"));
            }
            let mine = unit(hub, group, topic.body.voting, by);
            if topic.votes.iter().any(|(v, _)| unit(hub, group, topic.body.voting, *v) == mine) {
                return Err(conflict(match topic.body.voting {
                    Voting::Household => "your household has voted on this topic already",
                    Voting::Person => "you have voted on this topic already",
                }));
            }
            let key = Some(format!("vote:{}", body.topic));
            Ok((EventBody::Vote(body), key))
        }
        EventBody::TopicClosed(body) => {
            if !is_cadre(sight) {
                return Err(forbidden("only cadres and the secretary close topics"));
            }
            let topic = find(body.topic)?;
            if topic.closed.is_some() {
                return Err(conflict("the topic is closed already"));
            }
            Ok((EventBody::TopicClosed(tally(hub, group, &topic)), Some(format!("closed:{}", body.topic))))
        }
        EventBody::ProjectProgress(body) => {
            if !is_cadre(sight) {
                return Err(forbidden("only cadres and the secretary report project progress"));
            }
            let topic = find(body.topic)?;
            if topic.closed != Some(Outcome::Project) {
                return Err(conflict("progress is reported on topics that became projects"));
            }
            if body.percent > 100 {
                return Err(OpError::bad_request("percent must be 0 to 100"));
            }
            check_text(&body.status, "status", MAX_TITLE)?;
            check_text(&body.note, "note", max_text)?;
            Ok((EventBody::ProjectProgress(body), client_key))
        }
        EventBody::HallSettings(body) => {
            if sight.member != Some(Role::Secretary) {
                return Err(forbidden("only the secretary changes the hall's settings"));
            }
            Ok((EventBody::HallSettings(body), client_key))
        }
        _ => unreachable!("only deliberation events come here"),
    }
}

/// Closes topics whose voting window has ended.
pub async fn sweep_group(hub: &Hub, group: Id, now: Millis) -> Result<(), OpError> {
    let hall = read(hub, move |c| hall_of(c, group)).await?;
    for topic in hall.topics.values() {
        if topic.closed.is_none() && now >= topic.body.vote_until {
            let body = EventBody::TopicClosed(tally(hub, group, topic));
            append(hub, group, system_author(), Some(format!("closed:{}", topic.seq)), body).await?;
        }
    }
    Ok(())
}
