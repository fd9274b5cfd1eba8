//! Town and district broadcast: one post by an officer becomes one
//! `broadcast` event in every group of the scope (same broadcast id),
//! pushed live to every subscriber there and nowhere else.

mod common;

use std::time::Duration;

use common::*;
use protocol::{ErrorCode, EventBody, Office, ServerFrame};
use serde_json::json;

const LIMITS: [&str; 6] =
    ["--login-attempts-per-address", "1000", "--ops-per-sec", "1000", "--burst", "1000"];

fn body(event: &protocol::Event) -> &protocol::BroadcastBody {
    match &event.body {
        EventBody::Broadcast(b) => b,
        other => panic!("expected a broadcast, got {other:?}"),
    }
}

#[tokio::test]
async fn a_town_broadcast_reaches_every_group_of_the_town_and_no_other() {
    let server = Server::start(&LIMITS);
    let (mut officer, welcome) = server.client(&official_phone(1)).await;
    let Some(Office::Town(town)) = welcome.offices.first().cloned() else { panic!("{:?}", welcome.offices) };
    // A member of each demo group, subscribed live.
    let mut members = Vec::new();
    for g in 1..=3 {
        let (mut member, welcome) = server.client(&demo_phone(g, 3)).await;
        let group = welcome.groups[0].id;
        member.subscribe(group, None).await;
        members.push((member, group, welcome.groups[0].town.clone()));
    }

    let op = json!({"op": "broadcast", "scope": format!("town:{town}"), "title": "防汛通知", "text": "今晚有暴雨"});
    let (id, groups) = match officer.request(op).await {
        ServerFrame::BroadcastSent { broadcast, groups, .. } => (broadcast, groups),
        other => panic!("{other:?}"),
    };
    let in_town: Vec<u64> = members.iter().filter(|m| m.2 == "月浦镇").map(|m| m.1).collect();
    assert_eq!(groups, in_town);
    for (member, group, town_name) in members.iter_mut() {
        if town_name == "月浦镇" {
            let event = member.event().await;
            assert_eq!(event.group, *group);
            let b = body(&event);
            assert_eq!(
                (b.broadcast.as_str(), b.title.as_str(), b.scope.clone()),
                (id.as_str(), "防汛通知", format!("town:{town}"))
            );
            assert_eq!(event.author.role, protocol::Role::TownOfficer);
        } else {
            member.expect_silence(Duration::from_millis(300)).await;
        }
    }
    // It stays in each group's history.
    let (member, group, _) = &mut members[0];
    let history = member.full_history(*group).await;
    assert!(history.iter().any(|e| matches!(&e.body, EventBody::Broadcast(b) if b.broadcast == id)));

    // Refusals: a member, the other town's officer, a group scope, the
    // district for a town officer, an empty text.
    let (mut member, _) = server.client(&demo_phone(1, 1)).await;
    let op = json!({"op": "broadcast", "scope": format!("town:{town}"), "title": "t", "text": "x"});
    assert_eq!(member.expect_error(op.clone()).await, ErrorCode::Forbidden);
    let (mut other, _) = server.client(&official_phone(2)).await;
    assert_eq!(other.expect_error(op).await, ErrorCode::Forbidden);
    let op = json!({"op": "broadcast", "scope": "group:4", "title": "t", "text": "x"});
    assert_eq!(officer.expect_error(op).await, ErrorCode::BadRequest);
    let op = json!({"op": "broadcast", "scope": "district:1", "title": "t", "text": "x"});
    assert_eq!(officer.expect_error(op).await, ErrorCode::Forbidden);
    let op = json!({"op": "broadcast", "scope": format!("town:{town}"), "title": "t", "text": " "});
    assert_eq!(officer.expect_error(op).await, ErrorCode::BadRequest);
}

#[tokio::test]
async fn a_district_broadcast_reaches_every_group() {
    let server = Server::start(&LIMITS);
    let (mut officer, welcome) = server.client(&official_phone(3)).await;
    let Some(Office::District(district)) = welcome.offices.first().cloned() else { panic!() };
    let (mut member, w) = server.client(&demo_phone(3, 4)).await;
    member.subscribe(w.groups[0].id, None).await;
    let op = json!({"op": "broadcast", "scope": format!("district:{district}"), "title": "我爱宝山", "text": "欢迎参加"});
    match officer.request(op).await {
        ServerFrame::BroadcastSent { groups, .. } => assert_eq!(groups.len(), 3),
        other => panic!("{other:?}"),
    }
    let event = member.event().await;
    assert_eq!(body(&event).title, "我爱宝山");
    assert_eq!(event.author.role, protocol::Role::DistrictOfficer);
}
