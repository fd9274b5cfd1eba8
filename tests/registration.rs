//! Joining with a real name: register → pending (reads nothing) → a cadre
//! approves (the applicant hears it live, then receives the group's live
//! events) or rejects (nothing readable, the reason is shown); households.

mod common;

use std::time::Duration;

use common::*;
use protocol::{AccountStatus, ErrorCode, MembershipStatus, Role, ServerFrame};
use serde_json::json;

const LIMITS: [&str; 2] = ["--login-attempts-per-address", "1000"];

#[tokio::test]
async fn registration_then_approval_then_live_events() {
    let server = Server::start(&LIMITS);
    let (mut cadre, welcome) = server.client(&demo_phone(1, 2)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    cadre.subscribe(group, None).await;

    server.apply("孔繁星", "13912340001", group, Some("  聚源桥村1组12号 ")).await;
    // The connected cadre hears of the application at once.
    let pushed = cadre.application().await;
    assert_eq!(
        (pushed.name.as_str(), pushed.group, pushed.status),
        ("孔繁星", group, AccountStatus::Pending)
    );
    assert_eq!(pushed.household.as_deref(), Some("聚源桥村1组12号"));
    // A pending account may log in and say hello, but reads nothing.
    let (mut applicant, welcome) = server.client("13912340001").await;
    assert_eq!(welcome.account.status, AccountStatus::Pending);
    assert!(welcome.groups.is_empty());
    let application = welcome.application.expect("the application is shown");
    assert_eq!((application.group, application.status), (group, AccountStatus::Pending));
    for op in [
        json!({"op": "subscribe", "group": group, "since": 0}),
        json!({"op": "history", "group": group}),
        json!({"op": "send", "group": group, "channel": "chat", "body": {"text": "我能说话吗"}, "client_key": "p1"}),
    ] {
        assert_eq!(applicant.expect_error(op).await, ErrorCode::NotFound);
    }

    // The cadre sees the application and approves it.
    let account = applicant_id(&mut cadre, group, "13912340001").await;
    assert_eq!(account, welcome.account.id);
    let reply = cadre.request(json!({"op": "approve", "group": group, "account": account})).await;
    assert!(matches!(reply, ServerFrame::Done { seq: Some(_), .. }), "{reply:?}");
    // Approving twice is a conflict; the applicant hears the outcome live.
    assert_eq!(
        cadre.expect_error(json!({"op": "approve", "group": group, "account": account})).await,
        ErrorCode::Conflict
    );
    let notice = applicant.notice().await;
    assert_eq!(
        (notice.group, notice.status, notice.role),
        (group, MembershipStatus::Approved, Some(Role::Member))
    );

    // Now a member: subscribes and receives the group's live events.
    let head = applicant.subscribe(group, Some(0)).await;
    for _ in 0..head {
        applicant.event().await;
    }
    cadre.send_text(group, "欢迎新村民孔繁星！", "welcome-1").await;
    let event = applicant.event().await;
    assert_eq!(text_of(&event), "欢迎新村民孔繁星！");
    applicant.send_text(group, "谢谢大家", "thanks-1").await;

    // Joined the existing household at that address (surrounding spaces ignored).
    let (_, welcome) = server.client("13912340001").await;
    let info = group_named(&welcome, "聚源桥村");
    assert_eq!(info.role, Role::Member);
    let household = info.household.expect("a registered resident has a household");
    assert_eq!(household.address, "聚源桥村1组12号");
    assert!(!household.head, "the household already had a head");
    assert!(welcome.application.is_none());

    // The audit log records the approval.
    let (mut secretary, _) = server.client(&demo_phone(1, 1)).await;
    match secretary.request(json!({"op": "audit", "group": group})).await {
        ServerFrame::Audit { entries, .. } => {
            let approval = entries
                .iter()
                .find(|e| {
                    e.action == protocol::AuditAction::Approve
                        && e.target.as_ref().map(|t| t.id) == Some(account)
                })
                .expect("approval audited");
            assert_eq!(approval.actor.name, "张丽华");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rejection_leaves_nothing_readable() {
    let server = Server::start(&LIMITS);
    let (mut secretary, welcome) = server.client(&demo_phone(2, 1)).await;
    let group = group_named(&welcome, "宝月尚园").id;
    server.apply("邱明", "13912340002", group, None).await;
    let (mut applicant, _) = server.client("13912340002").await;
    let account = applicant_id(&mut secretary, group, "13912340002").await;

    // A reason is required.
    assert_eq!(
        secretary
            .expect_error(json!({"op": "reject", "group": group, "account": account, "reason": " "}))
            .await,
        ErrorCode::BadRequest
    );
    let reply = secretary
        .request(
            json!({"op": "reject", "group": group, "account": account, "reason": "手机号与身份证登记不符"}),
        )
        .await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    let notice = applicant.notice().await;
    assert_eq!(notice.status, MembershipStatus::Rejected);
    assert_eq!(notice.reason.as_deref(), Some("手机号与身份证登记不符"));

    for op in [
        json!({"op": "subscribe", "group": group, "since": 0}),
        json!({"op": "history", "group": group}),
        json!({"op": "send", "group": group, "channel": "chat", "body": {"text": "x"}, "client_key": "r1"}),
        json!({"op": "audit", "group": group}),
    ] {
        assert_eq!(applicant.expect_error(op).await, ErrorCode::NotFound);
    }
    secretary.send_text(group, "只给成员看", "members-only").await;
    applicant.expect_silence(Duration::from_millis(300)).await;

    // Logging in again shows the rejection and its reason.
    let (_, welcome) = server.client("13912340002").await;
    assert_eq!(welcome.account.status, AccountStatus::Rejected);
    assert_eq!(welcome.application.unwrap().reason.as_deref(), Some("手机号与身份证登记不符"));
    // It is no longer pending.
    match secretary.request(json!({"op": "applications", "group": group})).await {
        ServerFrame::Applications { applications, .. } => {
            assert!(applications.iter().all(|a| a.account != account))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn registration_never_tells_whether_a_phone_is_registered() {
    let server = Server::start(&LIMITS);
    let request = |phone: &str| json!({"name": "测试", "phone": phone, "password": "secret-123", "group": 4, "household": {"address": "1号"}});
    let fresh = server.register(&request("13912340003")).await;
    let taken = server.register(&request(&demo_phone(1, 3))).await;
    assert_eq!(fresh, taken);
    assert_eq!(fresh.0, 202);
    // The existing account keeps its password.
    server.login(&demo_phone(1, 3), DEMO_PASSWORD).await.unwrap();
    assert_eq!(server.login(&demo_phone(1, 3), "secret-123").await.unwrap_err().0, 401);

    // Malformed requests are refused before the phone is looked at.
    for (bad, status) in [
        (json!({"name": "a", "phone": "12", "password": "secret-123", "group": 4, "migrant": true}), 400),
        (json!({"name": "a", "phone": "13912340004", "password": "short", "group": 4, "migrant": true}), 400),
        (json!({"name": "a", "phone": "13912340004", "password": "secret-123", "group": 4}), 400),
        (
            json!({"name": "a", "phone": "13912340004", "password": "secret-123", "group": 4, "migrant": true,
                   "household": {"address": "1号"}}),
            400,
        ),
        (
            json!({"name": "a", "phone": demo_phone(1, 3), "password": "secret-123", "group": 999_999, "migrant": true}),
            404,
        ),
        (
            json!({"name": "a", "phone": "13912340004", "password": "secret-123", "group": 999_999, "migrant": true}),
            404,
        ),
    ] {
        let (got, body) = server.register(&bad).await;
        assert_eq!(got, status, "{bad} → {body}");
    }
}

#[tokio::test]
async fn the_first_resident_of_a_new_address_heads_its_household() {
    let server = Server::start(&LIMITS);
    let (mut cadre, welcome) = server.client(&demo_phone(3, 2)).await;
    let group = group_named(&welcome, "南周村").id;
    for (name, phone) in [("沈一", "13912340005"), ("沈二", "13912340006")] {
        server.apply(name, phone, group, Some("南周村7组3号")).await;
        let account = applicant_id(&mut cadre, group, phone).await;
        let reply = cadre.request(json!({"op": "approve", "group": group, "account": account})).await;
        assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    }
    let (_, first) = server.client("13912340005").await;
    let (_, second) = server.client("13912340006").await;
    let h1 = first.groups[0].household.clone().unwrap();
    let h2 = second.groups[0].household.clone().unwrap();
    assert_eq!(h1.id, h2.id);
    assert!(h1.head && !h2.head);
}
