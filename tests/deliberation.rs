//! The deliberation hall: proposing (members, or cadres only), comments,
//! one vote per household or per person, the window, the tally at close
//! (by a cadre or by the clock), and project progress.

mod common;
#[path = "common/governance.rs"]
mod governance;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use governance::*;
use protocol::{ErrorCode, EventBody, Outcome};
use serde_json::json;

const FLAGS: [&str; 7] =
    ["--login-attempts-per-address", "1000", "--ops-per-sec", "1000", "--burst", "1000", "--test-clock"];

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn topics_votes_per_household_close_and_progress() {
    let server = Server::start(&FLAGS);
    let (mut p3, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut p1, _) = server.client(&demo_phone(1, 1)).await; // secretary, household of p3
    let (mut p4, _) = server.client(&demo_phone(1, 4)).await;
    let (mut p5, _) = server.client(&demo_phone(1, 5)).await;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut officer, _) = server.client(&official_phone(1)).await;

    let until = now_ms() + 2 * HOUR;
    let topic =
        json!({"title": "村口加装路灯", "text": "晚上太黑", "vote_until": until, "proposes": "project"});
    assert_eq!(refused(&mut officer, group, "topic", topic.clone()).await, ErrorCode::Forbidden);
    assert_eq!(
        refused(&mut p3, group, "topic", json!({"title": "t", "text": "x", "vote_until": 1})).await,
        ErrorCode::BadRequest
    );
    let t = post(&mut p3, group, "topic", topic).await;
    post(&mut p4, group, "topic_comment", json!({"topic": t, "text": "赞成"})).await;

    // One vote per household: p3 votes, p1 (same household) may not.
    post(&mut p3, group, "vote", json!({"topic": t, "choice": "yes"})).await;
    assert_eq!(
        refused(&mut p1, group, "vote", json!({"topic": t, "choice": "no"})).await,
        ErrorCode::Conflict
    );
    assert_eq!(
        refused(&mut p3, group, "vote", json!({"topic": t, "choice": "no"})).await,
        ErrorCode::Conflict
    );
    post(&mut p4, group, "vote", json!({"topic": t, "choice": "yes"})).await;
    post(&mut p5, group, "vote", json!({"topic": t, "choice": "no"})).await;
    assert_eq!(
        refused(&mut officer, group, "vote", json!({"topic": t, "choice": "no"})).await,
        ErrorCode::Forbidden
    );

    // Members do not close; the cadre does, and the server counts.
    assert_eq!(refused(&mut p3, group, "topic_closed", json!({"topic": t})).await, ErrorCode::Forbidden);
    assert_eq!(
        refused(
            &mut cadre,
            group,
            "project_progress",
            json!({"topic": t, "status": "s", "percent": 1, "note": "n"})
        )
        .await,
        ErrorCode::Conflict
    );
    let closed =
        post(&mut cadre, group, "topic_closed", json!({"topic": t, "yes": 100, "outcome": "rejected"})).await;
    let events = p3.full_history(group).await;
    match &events.iter().find(|e| e.seq == closed).unwrap().body {
        EventBody::TopicClosed(c) => {
            assert_eq!((c.yes, c.no, c.abstain, c.outcome), (2, 1, 0, Outcome::Project));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused(&mut p5, group, "vote", json!({"topic": t, "choice": "yes"})).await,
        ErrorCode::Conflict
    );
    // Progress: cadres only, on a project.
    assert_eq!(
        refused(
            &mut p3,
            group,
            "project_progress",
            json!({"topic": t, "status": "施工中", "percent": 40, "note": "n"})
        )
        .await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(
            &mut cadre,
            group,
            "project_progress",
            json!({"topic": t, "status": "施工中", "percent": 140, "note": "n"})
        )
        .await,
        ErrorCode::BadRequest
    );
    post(
        &mut cadre,
        group,
        "project_progress",
        json!({"topic": t, "status": "施工中", "percent": 40, "note": "已安装8盏"}),
    )
    .await;

    // Settings: the secretary makes proposing cadres-only and voting per person.
    let settings = json!({"proposers": "cadres", "voting": "person"});
    assert_eq!(refused(&mut cadre, group, "hall_settings", settings.clone()).await, ErrorCode::Forbidden);
    post(&mut p1, group, "hall_settings", settings).await;
    let second = json!({"title": "禁放烟花公约", "text": "春节期间禁放", "vote_until": now_ms() + HOUR});
    assert_eq!(refused(&mut p3, group, "topic", second.clone()).await, ErrorCode::Forbidden);
    let t2 = post(&mut cadre, group, "topic", second).await;
    // Per person: both members of one household vote.
    post(&mut p3, group, "vote", json!({"topic": t2, "choice": "no"})).await;
    post(&mut p1, group, "vote", json!({"topic": t2, "choice": "no"})).await;
    post(&mut p4, group, "vote", json!({"topic": t2, "choice": "yes"})).await;

    // The window ends: the server closes it with the tally.
    p4.subscribe(group, None).await;
    advance(server.addr, 2 * HOUR).await;
    let event = p4.event().await;
    match event.body {
        EventBody::TopicClosed(c) => {
            assert_eq!(c.topic, t2);
            assert_eq!((c.yes, c.no, c.outcome), (1, 2, Outcome::Rejected));
        }
        other => panic!("expected topic_closed, got {other:?}"),
    }
    assert_eq!(event.author.id, 0);
}
