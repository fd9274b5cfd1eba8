//! Live dashboards: `watch_stats` (figures from the maintained view, equal
//! to the figures counted from the events, pushed when they change), the
//! officers' `escalated` queue, and `presence_update` pushes.

mod common;
#[path = "common/governance.rs"]
mod governance;

use std::time::Duration;

use common::*;
use governance::*;
use protocol::{ErrorCode, EscalationLevel, Office, ServerFrame, Stats};
use serde_json::json;

const FLAGS: [&str; 7] =
    ["--login-attempts-per-address", "1000", "--ops-per-sec", "1000", "--burst", "1000", "--test-clock"];

fn stats_of(frame: ServerFrame) -> Stats {
    match frame {
        ServerFrame::Stats { stats, .. } | ServerFrame::StatsUpdate { stats } => stats,
        other => panic!("expected stats, got {other:?}"),
    }
}

/// The figures since the start, counted from the events (`stats` op).
async fn counted(client: &mut Client, scope: &str) -> Stats {
    stats_of(client.request(json!({"op": "stats", "scope": scope})).await)
}

async fn watched(client: &mut Client, scope: &str) -> Stats {
    stats_of(client.request(json!({"op": "watch_stats", "scope": scope})).await)
}

/// Equal but for `to` (each answer is "until now").
fn same(a: &Stats, b: &Stats) {
    assert_eq!(Stats { to: 0, ..a.clone() }, Stats { to: 0, ..b.clone() });
}

/// Activity in every channel of two groups of the first town.
async fn fixture(server: &Server) {
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut neighbour, _) = server.client(&demo_phone(1, 4)).await;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut secretary, _) = server.client(&demo_phone(1, 1)).await;
    let message = member.send_text(group, "大家好", "m1").await.0;
    neighbour.send_text(group, "你好", "m2").await;
    let notice =
        json!({"title": "停水通知", "text": "明天停水", "category": "announcement", "must_read": true});
    let notice = post(&mut cadre, group, "notice", notice).await;
    post(&mut member, group, "like", json!({"target": notice})).await;
    post(&mut neighbour, group, "like", json!({"target": message})).await;
    post(&mut neighbour, group, "unlike", json!({"target": message})).await;
    let first = post(&mut member, group, "request", json!({"category": "停车", "text": "门口乱停车"})).await;
    let second =
        post(&mut neighbour, group, "request", json!({"category": "治安", "text": "夜里有人翻墙"})).await;
    post(&mut member, group, "request", json!({"category": "绿化", "text": "树要修剪"})).await;
    for request in [first, second] {
        post(&mut cadre, group, "request_reply", json!({"request": request, "text": "收到"})).await;
    }
    post(&mut cadre, group, "request_reply", json!({"request": first, "text": "已处理"})).await;
    post(&mut cadre, group, "request_resolved", json!({"request": first})).await;
    let escalate = json!({"request": second, "to": "town", "reason": "需要派出所"});
    post(&mut cadre, group, "request_escalated", escalate).await;
    let until = 4_000_000_000_000i64;
    let topic = json!({"title": "加装路灯", "text": "村口太黑", "vote_until": until, "proposes": "project"});
    let topic = post(&mut member, group, "topic", topic).await;
    post(&mut member, group, "vote", json!({"topic": topic, "choice": "yes"})).await;
    post(&mut secretary, group, "topic_closed", json!({"topic": topic})).await;
    let item =
        post(&mut member, group, "item", json!({"mode": "offer", "title": "自行车", "text": "送"})).await;
    post(&mut neighbour, group, "item_claimed", json!({"item": item})).await;
    post(&mut member, group, "item_handed_over", json!({"item": item})).await;

    let (mut other_member, welcome) = server.client(&demo_phone(2, 3)).await;
    let other = welcome.groups[0].id;
    other_member.send_text(other, "月浦的早上", "o1").await;
    post(&mut other_member, other, "request", json!({"category": "噪音扰民", "text": "工地太吵"})).await;
}

#[tokio::test]
async fn live_figures_equal_the_counted_ones_and_are_pushed_when_they_change() {
    let mut server = Server::start(&FLAGS);
    fixture(&server).await;
    let (mut officer, welcome) = server.client(&official_phone(1)).await;
    let Some(Office::Town(town)) = welcome.offices.first().cloned() else { panic!() };
    let (mut district, _) = server.client(&official_phone(3)).await;
    let (mut cadre, welcome) = server.client(&demo_phone(1, 2)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let scopes = [format!("group:{group}"), format!("town:{town}"), "district:1".to_string()];
    for scope in &scopes {
        let asker = if scope.starts_with("group") { &mut cadre } else { &mut district };
        let view = watched(asker, scope).await;
        same(&view, &counted(asker, scope).await);
        assert_eq!(view.from, 0);
    }
    let before = watched(&mut officer, &scopes[1]).await;
    assert!(before.requests >= 4 && before.likes >= 1 && before.projects == 1, "{before:?}");

    // A new message: the watchers of every scope holding the group hear of
    // it, within about a second, with the figures whole.
    let (mut member, _) = server.client(&demo_phone(1, 3)).await;
    member.send_text(group, "路灯装好了", "m3").await;
    let after = stats_of(officer.push().await);
    assert_eq!(after, Stats { interactions: before.interactions + 1, to: after.to, ..before.clone() });
    same(&after, &counted(&mut officer, &scopes[1]).await);
    // The district officer watches the town and the district: one push each.
    let mut pushes = [stats_of(district.push().await), stats_of(district.push().await)];
    pushes.sort_by(|a, b| a.scope.cmp(&b.scope));
    same(&pushes[0], &counted(&mut district, &scopes[2]).await);
    same(&pushes[1], &counted(&mut district, &scopes[1]).await);

    // Unwatched: no more pushes. A group outside the scope: none either.
    match officer.request(json!({"op": "unwatch_stats", "scope": scopes[1]})).await {
        ServerFrame::Done { .. } => {}
        other => panic!("{other:?}"),
    }
    member.send_text(group, "谢谢", "m4").await;
    officer.expect_silence(Duration::from_millis(1_500)).await;
    let (mut group_watcher, _) = server.client(&demo_phone(1, 1)).await;
    watched(&mut group_watcher, &scopes[0]).await;
    let (mut far, welcome) = server.client(&demo_phone(3, 3)).await;
    far.send_text(welcome.groups[0].id, "罗店的消息", "f1").await;
    group_watcher.expect_silence(Duration::from_millis(1_500)).await;

    // Rights are those of `stats`.
    let op = json!({"op": "watch_stats", "scope": format!("group:{group}")});
    assert_eq!(member.expect_error(op).await, ErrorCode::Forbidden);
    let (mut other_town, _) = server.client(&official_phone(2)).await;
    let op = json!({"op": "watch_stats", "scope": scopes[1]});
    assert_eq!(other_town.expect_error(op).await, ErrorCode::Forbidden);

    // A store from before the view: the migration fills it from the events.
    drop((officer, district, cadre, member, far, other_town, group_watcher));
    server.terminate();
    {
        let conn = rusqlite::Connection::open(server.data_dir.join("villagehub.sqlite3")).unwrap();
        conn.execute_batch(
            "DROP TABLE figures; DROP TABLE figure_participants;
             DROP TABLE request_clock; UPDATE meta SET value = '5' WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    server.restart();
    let (mut district, _) = server.client(&official_phone(3)).await;
    for scope in &scopes {
        same(&watched(&mut district, scope).await, &counted(&mut district, scope).await);
    }
    // The request clock was rebuilt too: past the deadline, exactly the two
    // requests nobody answered (one in each group) are overdue.
    advance(server.addr, 16 * HOUR).await;
    let overdue = stored_events(&server.data_dir).into_iter().filter(|e| e.5 == "request_overdue").count();
    assert_eq!(overdue, 2);
}

fn escalated(frame: ServerFrame) -> Vec<protocol::EscalatedRequest> {
    match frame {
        ServerFrame::Escalated { requests, .. } => requests,
        other => panic!("expected escalated, got {other:?}"),
    }
}

#[tokio::test]
async fn officers_see_the_escalated_requests_of_their_scope() {
    let server = Server::start(&FLAGS);
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut officer, welcome) = server.client(&official_phone(1)).await;
    let Some(Office::Town(town)) = welcome.offices.first().cloned() else { panic!() };
    let town_scope = format!("town:{town}");
    let by_hand =
        post(&mut member, group, "request", json!({"category": "治安", "text": "夜里有人翻墙"})).await;
    let forgotten =
        post(&mut member, group, "request", json!({"category": "停车", "text": "门口乱停车"})).await;
    post(&mut member, group, "request", json!({"category": "绿化", "text": "树要修剪"})).await;
    let answered = post(&mut member, group, "request", json!({"category": "绿化", "text": "草坪"})).await;
    post(&mut cadre, group, "request_reply", json!({"request": answered, "text": "好"})).await;
    assert!(escalated(officer.request(json!({"op": "escalated", "scope": town_scope})).await).is_empty());

    let escalate = json!({"request": by_hand, "to": "town", "reason": "需要派出所"});
    post(&mut cadre, group, "request_escalated", escalate).await;
    // 15 + 9 hours later the unanswered ones escalate by themselves.
    advance(server.addr, 25 * HOUR).await;
    let list = escalated(officer.request(json!({"op": "escalated", "scope": town_scope})).await);
    let seen: Vec<_> = list.iter().map(|r| (r.seq, r.automatic, r.to, r.status.as_str())).collect();
    let third = forgotten + 1;
    assert_eq!(
        seen,
        vec![
            (by_hand, false, EscalationLevel::Town, "escalated"),
            (forgotten, true, EscalationLevel::Town, "escalated"),
            (third, true, EscalationLevel::Town, "escalated"),
        ]
    );
    assert_eq!((list[0].category.as_str(), list[0].text.as_str()), ("治安", "夜里有人翻墙"));
    assert!(list[0].escalated_at < list[1].escalated_at && list[0].filed_at < list[0].escalated_at);

    // The town answers one and resolves another.
    post(&mut officer, group, "request_reply", json!({"request": forgotten, "text": "已派人"})).await;
    post(&mut officer, group, "request_resolved", json!({"request": third})).await;
    let (mut district, _) = server.client(&official_phone(3)).await;
    let list = escalated(district.request(json!({"op": "escalated", "scope": "district:1"})).await);
    let status: Vec<_> = list.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(status, ["escalated", "responded", "resolved"]);

    // Residents and another town's officers do not see the queue.
    let op = json!({"op": "escalated", "scope": format!("group:{group}")});
    assert_eq!(member.expect_error(op).await, ErrorCode::Forbidden);
    let (mut other_town, _) = server.client(&official_phone(2)).await;
    let op = json!({"op": "escalated", "scope": town_scope});
    assert_eq!(other_town.expect_error(op).await, ErrorCode::Forbidden);
}

fn online_of(frame: ServerFrame) -> u64 {
    match frame {
        ServerFrame::Presence { online, .. } | ServerFrame::PresenceUpdate { online, .. } => online,
        other => panic!("expected presence, got {other:?}"),
    }
}

#[tokio::test]
async fn presence_updates_go_to_those_who_asked() {
    let server = Server::start(&FLAGS);
    let (mut watcher, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = welcome.groups[0].id;
    let (mut bystander, _) = server.client(&demo_phone(1, 4)).await;
    assert_eq!(online_of(watcher.request(json!({"op": "presence", "group": group})).await), 2);

    let (neighbour, _) = server.client(&demo_phone(1, 5)).await;
    assert_eq!(online_of(watcher.push().await), 3);
    // A second connection of the same person is not another person.
    let (second, _) = server.client(&demo_phone(1, 5)).await;
    drop(neighbour);
    watcher.expect_silence(Duration::from_millis(1_500)).await;
    drop(second);
    assert_eq!(online_of(watcher.push().await), 2);
    // Nobody else asked, so nobody else hears.
    bystander.expect_silence(Duration::from_millis(300)).await;

    // Unsubscribing from the group ends the pushes.
    match watcher.request(json!({"op": "unsubscribe", "group": group})).await {
        ServerFrame::Unsubscribed { .. } => {}
        other => panic!("{other:?}"),
    }
    let (_again, _) = server.client(&demo_phone(1, 5)).await;
    watcher.expect_silence(Duration::from_millis(1_500)).await;
}
