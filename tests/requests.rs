//! Requests: who may file, reply, resolve, escalate and rate; the 15-hour
//! clock with an injected clock (overdue alert, automatic escalation to
//! the town, whose officers may then reply); figures per scope.

mod common;
#[path = "common/governance.rs"]
mod governance;

use std::time::Duration;

use common::*;
use governance::*;
use protocol::{ErrorCode, EscalationLevel, EventBody, Figures, ServerFrame};
use serde_json::json;

const FLAGS: [&str; 11] = [
    "--login-attempts-per-address",
    "1000",
    "--ops-per-sec",
    "1000",
    "--burst",
    "1000",
    "--test-clock",
    "--first-response-hours",
    "15",
    "--escalate-after-hours",
    "9",
];

fn figures(frame: ServerFrame) -> Figures {
    match frame {
        ServerFrame::Figures { figures, .. } => figures,
        other => panic!("expected figures, got {other:?}"),
    }
}

#[tokio::test]
async fn file_reply_resolve_rate_and_the_deadline_clock() {
    let server = Server::start(&FLAGS);
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut neighbour, _) = server.client(&demo_phone(1, 4)).await;
    let (mut migrant, _) = server.client(&demo_phone(1, 8)).await;
    let (mut town, _) = server.client(&official_phone(1)).await;
    let (mut district, _) = server.client(&official_phone(3)).await;
    let (mut other_town, _) = server.client(&official_phone(2)).await;

    // Filing: members (migrants too); a known category; officers do not file.
    assert_eq!(
        refused(&mut member, group, "request", json!({"category": "火星", "text": "x"})).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        refused(&mut town, group, "request", json!({"category": "停车", "text": "x"})).await,
        ErrorCode::Forbidden
    );
    post(&mut migrant, group, "request", json!({"category": "就业帮扶", "text": "想找保洁工作"})).await;
    let first = post(&mut member, group, "request", json!({"category": "停车", "text": "门口乱停车"})).await;

    // Replies: cadres; not members, not officers before escalation.
    let reply = json!({"request": first, "text": "已联系物业"});
    assert_eq!(refused(&mut neighbour, group, "request_reply", reply.clone()).await, ErrorCode::Forbidden);
    assert_eq!(refused(&mut town, group, "request_reply", reply.clone()).await, ErrorCode::Forbidden);
    assert_eq!(refused(&mut other_town, group, "request_reply", reply.clone()).await, ErrorCode::NotFound);
    post(&mut cadre, group, "request_reply", reply).await;
    // Rating waits for resolution; resolution is the cadre's.
    assert_eq!(
        refused(&mut member, group, "request_rated", json!({"request": first, "stars": 5})).await,
        ErrorCode::Conflict
    );
    assert_eq!(
        refused(&mut member, group, "request_resolved", json!({"request": first})).await,
        ErrorCode::Forbidden
    );
    post(&mut cadre, group, "request_resolved", json!({"request": first})).await;
    assert_eq!(
        refused(&mut cadre, group, "request_resolved", json!({"request": first})).await,
        ErrorCode::Conflict
    );
    assert_eq!(
        refused(&mut neighbour, group, "request_rated", json!({"request": first, "stars": 5})).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(&mut member, group, "request_rated", json!({"request": first, "stars": 6})).await,
        ErrorCode::BadRequest
    );
    post(&mut member, group, "request_rated", json!({"request": first, "stars": 5, "comment": "很及时"}))
        .await;
    assert_eq!(
        refused(&mut member, group, "request_rated", json!({"request": first, "stars": 4})).await,
        ErrorCode::Conflict
    );
    // Only the server marks overdue.
    assert_eq!(
        refused(&mut cadre, group, "request_overdue", json!({"request": first})).await,
        ErrorCode::Forbidden
    );

    // The clock: a second request nobody answers.
    cadre.subscribe(group, None).await;
    let second =
        post(&mut member, group, "request", json!({"category": "噪音扰民", "text": "夜里施工"})).await;
    assert_eq!(cadre.event().await.seq, second);
    advance(server.addr, 14 * HOUR).await;
    cadre.expect_silence(Duration::from_millis(300)).await;
    advance(server.addr, 2 * HOUR).await;
    // Both unanswered requests (the migrant's and this one) are overdue.
    let mut overdue = Vec::new();
    for _ in 0..2 {
        let event = cadre.event().await;
        match event.body {
            EventBody::RequestOverdue(b) => overdue.push(b.request),
            other => panic!("expected request_overdue, got {other:?}"),
        }
    }
    assert!(overdue.contains(&second));
    // A further sweep does not repeat the alert.
    advance(server.addr, HOUR).await;
    cadre.expect_silence(Duration::from_millis(300)).await;
    advance(server.addr, 8 * HOUR).await;
    let mut escalated = Vec::new();
    for _ in 0..2 {
        let event = cadre.event().await;
        match event.body {
            EventBody::RequestEscalated(b) => {
                assert!(b.automatic);
                assert_eq!(b.to, EscalationLevel::Town);
                escalated.push(b.request);
            }
            other => panic!("expected request_escalated, got {other:?}"),
        }
    }
    assert!(escalated.contains(&second));
    // Now the town's officer may reply and escalate on to the district;
    // a cadre may not escalate to the district.
    post(&mut town, group, "request_reply", json!({"request": second, "text": "镇里已派人核查"})).await;
    assert_eq!(
        refused(
            &mut cadre,
            group,
            "request_escalated",
            json!({"request": second, "to": "district", "reason": "x"})
        )
        .await,
        ErrorCode::Forbidden
    );
    post(
        &mut town,
        group,
        "request_escalated",
        json!({"request": second, "to": "district", "reason": "需区里协调"}),
    )
    .await;
    post(&mut district, group, "request_resolved", json!({"request": second})).await;

    // Figures: 3 requests, 2 answered (one on time, one after it was overdue).
    let f = figures(cadre.request(json!({"op": "figures", "scope": "group", "of": group})).await);
    assert_eq!((f.requests, f.responded, f.resolved, f.escalations, f.overdue), (3, 2, 2, 2, 2));
    assert_eq!(f.reply_rate, 666);
    assert_eq!(f.on_time_rate, 333);
    assert_eq!(f.solved_in_group_rate, 500);
    assert!(f.median_first_response_ms.is_some());
    // Members do not read figures; a town officer reads the town's over HTTP.
    assert_eq!(
        member.expect_error(json!({"op": "figures", "scope": "group", "of": group})).await,
        ErrorCode::Forbidden
    );
    let token = server.token(&official_phone(1)).await;
    let (status, body) =
        http_as(server.addr, "GET", "/api/requests/figures?scope=group&of=4", &token, "").await;
    assert_eq!(status, 200, "{body}");
    let f: Figures = serde_json::from_str(&body).unwrap();
    assert_eq!(f.requests, 3);
    let member_token = server.token(&demo_phone(1, 3)).await;
    let (status, _) =
        http_as(server.addr, "GET", "/api/requests/figures?scope=district&of=1", &member_token, "").await;
    assert_eq!(status, 403);
    let (status, _) =
        http_as(server.addr, "GET", "/api/requests/figures?scope=group&of=4", "forged", "").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_test_clock_exists_only_with_its_flag() {
    let server = Server::start(&LIMITS);
    let (status, _) = http(server.addr, "POST", "/api/test/clock", Some(r#"{"advance_ms": 1}"#)).await;
    assert_ne!(status, 200);
}
