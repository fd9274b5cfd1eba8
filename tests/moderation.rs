//! Moderation: a hidden message shows as a placeholder to members (live,
//! in history and in backfill) and with its text to cadres and officers;
//! mute and remove; every action in the audit log.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use protocol::{AuditAction, ErrorCode, Event, EventBody, MembershipStatus, ServerFrame};
use serde_json::json;

const LIMITS: [&str; 6] =
    ["--login-attempts-per-address", "1000", "--ops-per-sec", "1000", "--burst", "1000"];

fn hidden(event: &Event) -> &protocol::HiddenBody {
    match &event.body {
        EventBody::Hidden(h) => h,
        other => panic!("expected a hidden message, got {other:?}"),
    }
}

fn audit_entries(frame: ServerFrame) -> Vec<protocol::AuditEntry> {
    match frame {
        ServerFrame::Audit { entries, .. } => entries,
        other => panic!("expected an audit page, got {other:?}"),
    }
}

#[tokio::test]
async fn hidden_message_placeholder_for_members_text_for_cadres() {
    let server = Server::start(&LIMITS);
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut volunteer, _) = server.client(&demo_phone(1, 7)).await;
    let (mut officer, _) = server.client(&official_phone(1)).await;
    let (mut poster, _) = server.client(&demo_phone(1, 4)).await;
    for c in [&mut member, &mut cadre, &mut officer] {
        c.subscribe(group, None).await;
    }
    let (bad, _) = poster.send_text(group, "低价出售发票，加微信", "spam-1").await;
    for c in [&mut member, &mut cadre, &mut officer] {
        assert_eq!(c.event().await.seq, bad);
    }

    // A member may not hide; a volunteer may, with a reason.
    assert_eq!(
        member.expect_error(json!({"op": "hide", "group": group, "seq": bad, "reason": "广告"})).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        volunteer.expect_error(json!({"op": "hide", "group": group, "seq": bad, "reason": ""})).await,
        ErrorCode::BadRequest
    );
    let hide_seq =
        match volunteer.request(json!({"op": "hide", "group": group, "seq": bad, "reason": "广告"})).await {
            ServerFrame::Done { seq: Some(seq), .. } => seq,
            other => panic!("{other:?}"),
        };
    assert_eq!(hide_seq, bad + 1, "the hide is the group's next event");
    // Everyone subscribed gets the `hide` event live, in order.
    for c in [&mut member, &mut cadre, &mut officer] {
        let event = c.event().await;
        assert_eq!(event.seq, hide_seq);
        match &event.body {
            EventBody::Hide(h) => assert_eq!((h.seq, h.reason.as_str()), (bad, "广告")),
            other => panic!("{other:?}"),
        }
        assert_eq!(event.author.role, protocol::Role::Volunteer);
    }
    // Hiding twice, hiding a hide, hiding what does not exist.
    assert_eq!(
        cadre.expect_error(json!({"op": "hide", "group": group, "seq": bad, "reason": "x"})).await,
        ErrorCode::Conflict
    );
    assert_eq!(
        cadre.expect_error(json!({"op": "hide", "group": group, "seq": hide_seq, "reason": "x"})).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        cadre.expect_error(json!({"op": "hide", "group": group, "seq": 999_999, "reason": "x"})).await,
        ErrorCode::NotFound
    );

    // History: members read the placeholder, cadres and officers the text.
    let find =
        |events: &[Event]| events.iter().find(|e| e.seq == bad).cloned().expect("the message is in history");
    let for_member = find(&member.full_history(group).await);
    assert_eq!(hidden(&for_member).text, None);
    assert_eq!(hidden(&for_member).hidden_by, hide_seq);
    assert_eq!(for_member.author.name, "陈志强", "the author stays visible");
    assert_eq!(hidden(&find(&cadre.full_history(group).await)).text.as_deref(), Some("低价出售发票，加微信"));
    assert_eq!(
        hidden(&find(&officer.full_history(group).await)).text.as_deref(),
        Some("低价出售发票，加微信")
    );
    // The volunteer moderates but reads like a member.
    assert_eq!(hidden(&find(&volunteer.full_history(group).await)).text, None);

    // Backfill (resume with `since`) gives the same redacted frames.
    let (mut member2, _) = server.client(&demo_phone(1, 5)).await;
    member2.subscribe(group, Some(bad - 1)).await;
    let replayed = member2.event().await;
    assert_eq!((replayed.seq, hidden(&replayed).text.clone()), (bad, None));
    assert_eq!(member2.event().await.seq, hide_seq);
    let (mut cadre2, _) = server.client(&demo_phone(1, 1)).await;
    cadre2.subscribe(group, Some(bad - 1)).await;
    assert_eq!(hidden(&cadre2.event().await).text.as_deref(), Some("低价出售发票，加微信"));

    // The audit log: who, when, what, why.
    let entries = audit_entries(cadre2.request(json!({"op": "audit", "group": group})).await);
    let entry = entries.iter().find(|e| e.action == AuditAction::Hide).expect("the hide is audited");
    assert_eq!(entry.actor.name, "马红梅");
    assert_eq!(entry.target.as_ref().unwrap().name, "陈志强");
    assert_eq!((entry.seq, entry.reason.as_deref()), (Some(bad), Some("广告")));
    assert!(entry.at > 0);
}

#[tokio::test]
async fn mute_refuses_sends_until_the_time_and_remove_ends_the_stream() {
    let server = Server::start(&LIMITS);
    let (mut secretary, welcome) = server.client(&demo_phone(3, 1)).await;
    let group = group_named(&welcome, "南周村").id;
    let (mut cadre, _) = server.client(&demo_phone(3, 2)).await;
    let (mut member, w) = server.client(&demo_phone(3, 4)).await;
    let member_id = w.account.id;
    let (mut leaver, w) = server.client(&demo_phone(3, 5)).await;
    let leaver_id = w.account.id;

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let reply = cadre
        .request(json!({"op": "mute", "group": group, "account": member_id, "until": now + 60_000, "reason": "刷屏"}))
        .await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    let notice = member.notice().await;
    assert_eq!((notice.status, notice.until), (MembershipStatus::Muted, Some(now + 60_000)));
    let (code, message) = member.try_send_text(group, "我还能说话吗", "muted-1").await.unwrap_err();
    assert_eq!(code, ErrorCode::Forbidden);
    assert!(message.contains("muted"), "{message}");
    // A cadre cannot mute the secretary or another cadre.
    let (_, sw) = server.client(&demo_phone(3, 1)).await;
    assert_eq!(
        cadre
            .expect_error(json!({"op": "mute", "group": group, "account": sw.account.id, "until": now + 1, "reason": "x"}))
            .await,
        ErrorCode::Forbidden
    );
    // Unmute: a time in the past.
    let reply = cadre
        .request(
            json!({"op": "mute", "group": group, "account": member_id, "until": now - 1, "reason": "解除"}),
        )
        .await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    member.notice().await;
    member.send_text(group, "谢谢解除禁言", "muted-2").await;

    // Remove: the member's live stream ends and the group disappears.
    leaver.subscribe(group, None).await;
    let reply = secretary
        .request(json!({"op": "remove", "group": group, "account": leaver_id, "reason": "已迁出本村"}))
        .await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    let notice = leaver.notice().await;
    assert_eq!((notice.status, notice.reason.as_deref()), (MembershipStatus::Removed, Some("已迁出本村")));
    secretary.send_text(group, "移除之后的消息", "after-remove").await;
    leaver.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(leaver.expect_error(json!({"op": "history", "group": group})).await, ErrorCode::NotFound);
    let (_, w) = server.client(&demo_phone(3, 5)).await;
    assert!(w.groups.is_empty());

    // Role change and ownership transfer, then the whole audit page.
    let reply = secretary
        .request(json!({"op": "set_role", "group": group, "account": member_id, "role": "volunteer", "reason": "党员"}))
        .await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    assert_eq!(member.notice().await.role, Some(protocol::Role::Volunteer));
    assert_eq!(
        secretary
            .expect_error(
                json!({"op": "set_role", "group": group, "account": member_id, "role": "secretary"})
            )
            .await,
        ErrorCode::BadRequest
    );
    let reply = secretary
        .request(json!({"op": "transfer", "group": group, "account": member_id, "reason": "换届"}))
        .await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    assert_eq!(member.notice().await.role, Some(protocol::Role::Secretary));
    // The old secretary is now a cadre and may no longer read the audit log;
    // the new one may.
    assert_eq!(secretary.expect_error(json!({"op": "audit", "group": group})).await, ErrorCode::Forbidden);
    let entries = audit_entries(member.request(json!({"op": "audit", "group": group})).await);
    let actions: Vec<AuditAction> = entries.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::Transfer,
            AuditAction::SetRole,
            AuditAction::Remove,
            AuditAction::Mute,
            AuditAction::Mute
        ],
        "newest first"
    );
    assert_eq!(entries[2].reason.as_deref(), Some("已迁出本村"));
    assert_eq!(entries[4].until, Some(now + 60_000));
    // Paging: `before` the oldest `at` shown, `more` when there is more.
    match member.request(json!({"op": "audit", "group": group, "limit": 2})).await {
        ServerFrame::Audit { entries, more, .. } => {
            assert_eq!(entries.len(), 2);
            assert!(more);
        }
        other => panic!("{other:?}"),
    }
}
