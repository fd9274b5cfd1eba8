//! Membership in cluster mode: a change made on one node takes effect on
//! every node — the applicant connected elsewhere hears the approval, a
//! message hidden on one node is redacted in history on another, a logout
//! closes connections everywhere — and every node derives the same views
//! from the same logs.

mod common;

use std::time::Duration;

use common::*;
use protocol::{AuditAction, EventBody, MembershipStatus, ServerFrame};
use serde_json::json;

const FAST: [&str; 6] =
    ["--ops-per-sec", "100000", "--burst", "100000", "--login-attempts-per-address", "10000"];

/// The membership views of a node's store, for comparison between nodes.
fn views(data_dir: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(data_dir.join("villagehub.sqlite3")).unwrap();
    let mut out = Vec::new();
    for (table, order) in [
        ("account_state", "account"),
        ("offices", "account, kind, scope"),
        ("member_state", "account, \"group\""),
        ("households", "id"),
        ("applications", "account"),
        ("audit", "log, seq"),
        ("redactions", "log, seq"),
        ("memberships", "account, \"group\""),
    ] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY {order}")).unwrap();
        let columns = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut row = Vec::new();
                for i in 0..columns {
                    row.push(format!("{:?}", r.get_ref(i)?));
                }
                Ok(format!("{table}: {}", row.join(" | ")))
            })
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        out.extend(rows);
    }
    out
}

#[tokio::test]
async fn membership_changes_take_effect_on_every_node() {
    let redis = Redis::start();
    let mut a = cluster_node(&redis, &FAST);
    let mut b = cluster_node(&redis, &FAST);
    let (mut cadre, welcome) = a.client(&demo_phone(1, 2)).await;
    let group = group_named(&welcome, "聚源桥村").id;

    // Register through node B, stay connected to B; the cadre approves on A.
    b.apply("严冬", "13912345678", group, Some("聚源桥村5组6号")).await;
    let mut applicant = None;
    for _ in 0..100 {
        if let Ok(login) = b.login("13912345678", DEMO_PASSWORD).await {
            applicant = Some(login.token);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut on_b = b.connect().await;
    on_b.hello(&applicant.expect("the registration reached node B")).await;
    let account = applicant_id(&mut cadre, group, "13912345678").await;
    let reply = cadre.request(json!({"op": "approve", "group": group, "account": account})).await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    assert_eq!(on_b.notice().await.status, MembershipStatus::Approved);
    on_b.subscribe(group, None).await;

    // A message posted on B, hidden by the volunteer on A: B's members read
    // the placeholder, B's cadres the text.
    let (seq, _) = on_b.send_text(group, "出售二手电动车，价格私聊", "cm-1").await;
    let (mut volunteer, _) = a.client(&demo_phone(1, 7)).await;
    let hide =
        match volunteer.request(json!({"op": "hide", "group": group, "seq": seq, "reason": "广告"})).await {
            ServerFrame::Done { seq: Some(s), .. } => s,
            other => panic!("{other:?}"),
        };
    loop {
        let event = on_b.event().await;
        if event.seq == hide {
            break;
        }
    }
    let history = on_b.full_history(group).await;
    match &history.iter().find(|e| e.seq == seq).unwrap().body {
        EventBody::Hidden(h) => assert_eq!(h.text, None),
        other => panic!("{other:?}"),
    }
    let (mut cadre_b, _) = b.client(&demo_phone(1, 1)).await;
    let history = cadre_b.full_history(group).await;
    match &history.iter().find(|e| e.seq == seq).unwrap().body {
        EventBody::Hidden(h) => assert_eq!(h.text.as_deref(), Some("出售二手电动车，价格私聊")),
        other => panic!("{other:?}"),
    }
    match cadre_b.request(json!({"op": "audit", "group": group})).await {
        ServerFrame::Audit { entries, .. } => {
            let actions: Vec<AuditAction> = entries.iter().map(|e| e.action).collect();
            assert!(actions.starts_with(&[AuditAction::Hide, AuditAction::Approve]), "{actions:?}");
        }
        other => panic!("{other:?}"),
    }

    // Logout on A closes the same account's connection on B.
    let (mut same_on_a, _) = a.client("13912345678").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let reply = same_on_a.request(json!({"op": "logout"})).await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    assert_eq!(on_b.closed().await, Closed::Code(protocol::close::REVOKED));

    // Both nodes derived the same views from the same logs.
    a.terminate();
    b.terminate();
    let (va, vb) = (views(&a.data_dir), views(&b.data_dir));
    assert!(va.iter().any(|r| r.starts_with("redactions")) && va.iter().any(|r| r.starts_with("audit")));
    assert_eq!(va, vb);
}
