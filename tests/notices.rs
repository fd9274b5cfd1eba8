//! Notices: who may post, read receipts rolled up per household (a reply
//! and a live push to cadres), and the affairs disclosure hash chain —
//! verified by the op and the CLI, and broken by a row altered in SQLite.

mod common;
#[path = "common/governance.rs"]
mod governance;

use common::*;
use governance::*;
use protocol::{ErrorCode, EventBody, ServerFrame};
use serde_json::json;

fn unread_addresses(frame: ServerFrame) -> (u32, Vec<String>) {
    match frame {
        ServerFrame::Unread { receipts, .. } => {
            (receipts.read_households, receipts.unread.into_iter().map(|h| h.address).collect())
        }
        other => panic!("expected receipts, got {other:?}"),
    }
}

#[tokio::test]
async fn cadres_post_members_read_cadres_see_unread_households_live() {
    let server = Server::start(&LIMITS);
    let (mut cadre, welcome) = server.client(&demo_phone(1, 2)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut member, _) = server.client(&demo_phone(1, 3)).await;
    let (mut secretary, _) = server.client(&demo_phone(1, 1)).await;
    let (mut volunteer, _) = server.client(&demo_phone(1, 7)).await;
    let (mut officer, _) = server.client(&official_phone(1)).await;
    let (mut other_town, _) = server.client(&official_phone(2)).await;

    let notice = json!({"title": "停水通知", "text": "明天9点到12点停水", "category": "announcement", "must_read": true});
    for c in [&mut member, &mut volunteer, &mut officer] {
        assert_eq!(refused(c, group, "notice", notice.clone()).await, ErrorCode::Forbidden);
    }
    assert_eq!(refused(&mut other_town, group, "notice", notice.clone()).await, ErrorCode::NotFound);
    assert_eq!(
        refused(&mut cadre, group, "notice", json!({"title": " ", "text": "x", "category": "party"})).await,
        ErrorCode::BadRequest
    );
    let seq = post(&mut cadre, group, "notice", notice).await;

    let (read, unread) =
        unread_addresses(cadre.request(json!({"op": "unread", "group": group, "notice": seq})).await);
    assert_eq!(read, 0);
    for address in ["聚源桥村1组12号", "聚源桥村2组5号", "聚源桥村3组8号"] {
        assert!(unread.contains(&address.to_string()), "{address} missing from {unread:?}");
    }
    // Members do not see receipts; another town's officer does not see the group.
    assert_eq!(
        member.expect_error(json!({"op": "unread", "group": group, "notice": seq})).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        other_town.expect_error(json!({"op": "unread", "group": group, "notice": seq})).await,
        ErrorCode::NotFound
    );

    // A member of 1组12号 reads it: the cadre is told live.
    post(&mut member, group, "notice_read", json!({"notice": seq})).await;
    let push = cadre.receipts_push().await;
    assert_eq!((push.notice, push.read_people, push.read_households), (seq, 1, 1));
    assert!(!push.unread.iter().any(|h| h.address == "聚源桥村1组12号"));
    assert!(push.unread.iter().any(|h| h.address == "聚源桥村2组5号"));
    let push = secretary.receipts_push().await;
    assert_eq!(push.read_households, 1);

    // Reading again changes nothing (a duplicate of the first receipt).
    match member
        .request(
            json!({"op": "post", "group": group, "event": {"kind": "notice_read", "body": {"notice": seq}}}),
        )
        .await
    {
        ServerFrame::Sent { duplicate, .. } => assert!(duplicate),
        other => panic!("{other:?}"),
    }
    // The other member of the household reading keeps one household read.
    post(&mut secretary, group, "notice_read", json!({"notice": seq})).await;
    let push = cadre.receipts_push().await;
    assert_eq!((push.read_people, push.read_households), (2, 1));
    // The town officer of the group's town sees the same roll-up.
    let (read, unread) =
        unread_addresses(officer.request(json!({"op": "unread", "group": group, "notice": seq})).await);
    assert_eq!(read, 1);
    assert!(unread.contains(&"聚源桥村3组8号".to_string()));
    // A receipt for a notice that does not exist.
    assert_eq!(
        refused(&mut member, group, "notice_read", json!({"notice": 99999})).await,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn pending_accounts_see_and_post_nothing() {
    let server = Server::start(&LIMITS);
    let (mut pending, _) = server.client(&demo_phone(1, 9)).await;
    let (_, welcome) = server.client(&demo_phone(1, 2)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    assert_eq!(refused(&mut pending, group, "notice_read", json!({"notice": 1})).await, ErrorCode::NotFound);
    assert_eq!(
        refused(&mut pending, group, "request", json!({"category": "停车", "text": "车位"})).await,
        ErrorCode::NotFound
    );
    assert_eq!(
        pending.expect_error(json!({"op": "verify_disclosures", "group": group})).await,
        ErrorCode::NotFound
    );
}

fn report(frame: ServerFrame) -> protocol::ChainReport {
    match frame {
        ServerFrame::Disclosures { report, .. } => report,
        other => panic!("expected a chain report, got {other:?}"),
    }
}

#[tokio::test]
async fn disclosure_chain_verifies_and_names_the_altered_link() {
    let mut server = Server::start(&LIMITS);
    let (mut cadre, welcome) = server.client(&demo_phone(1, 2)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut member, _) = server.client(&demo_phone(1, 3)).await;

    let affairs = |title: &str, text: &str| json!({"title": title, "text": text, "category": "affairs"});
    let first =
        post(&mut cadre, group, "notice", affairs("2026年第三季度财务公开", "收入12万元，支出8万元")).await;
    // Something else in between is not part of the chain.
    post(&mut cadre, group, "notice", json!({"title": "党课", "text": "周五党课", "category": "party"}))
        .await;
    let second =
        post(&mut cadre, group, "notice", affairs("道路修缮招标结果", "中标单位：某某公司，金额30万元"))
            .await;
    let mut amendment = affairs("更正：第三季度财务公开", "支出应为8.5万元");
    amendment["amends"] = json!(first);
    // A client-sent hash is ignored: the server computes the chain.
    amendment["hash"] = json!("00");
    let third = post(&mut cadre, group, "notice", amendment).await;
    assert_eq!(
        refused(
            &mut cadre,
            group,
            "notice",
            json!({"title": "x", "text": "y", "category": "affairs", "amends": 99999})
        )
        .await,
        ErrorCode::NotFound
    );

    let events = member.full_history(group).await;
    let bodies: Vec<protocol::NoticeBody> = [first, second, third]
        .iter()
        .map(|seq| match &events.iter().find(|e| e.seq == *seq).unwrap().body {
            EventBody::Notice(n) => n.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bodies[0].prev_hash, None);
    assert_eq!(bodies[1].prev_hash, bodies[0].hash);
    assert_eq!(bodies[2].prev_hash, bodies[1].hash);
    assert_eq!(bodies[2].amends, Some(first));
    assert_eq!(bodies[2].hash.as_ref().unwrap().len(), 64);

    let ok = report(member.request(json!({"op": "verify_disclosures", "group": group})).await);
    assert!(ok.ok && ok.broken.is_none());
    assert_eq!(ok.checked, 3);

    // Alter the second disclosure's amount directly in SQLite, server stopped.
    drop(cadre);
    drop(member);
    server.terminate();
    let data_dir = server.data_dir.display().to_string();
    let cli_ok =
        run_command(&["disclosures", "verify", "--data-dir", &data_dir, "--group", &group.to_string()]);
    assert!(cli_ok.contains(r#""ok":true"#), "{cli_ok}");
    {
        let conn = rusqlite::Connection::open(server.data_dir.join("villagehub.sqlite3")).unwrap();
        let changed = conn
            .execute(
                "UPDATE events SET frame = replace(frame, '30万元', '3万元') WHERE log = ?1 AND seq = ?2",
                rusqlite::params![group as i64, second as i64],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_villagehub"))
        .args(["disclosures", "verify", "--data-dir", &data_dir, "--group", &group.to_string()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let cli: protocol::ChainReport = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!cli.ok);
    assert_eq!(cli.broken.as_ref().unwrap().seq, second);

    server.restart();
    let (mut member, _) = server.client(&demo_phone(1, 3)).await;
    let broken = report(member.request(json!({"op": "verify_disclosures", "group": group})).await);
    assert!(!broken.ok);
    let link = broken.broken.unwrap();
    assert_eq!(link.seq, second);
    assert!(link.reason.contains("hash"), "{}", link.reason);

    // A forger who also rewrites the stored hash breaks the next link.
    drop(member);
    server.terminate();
    {
        let conn = rusqlite::Connection::open(server.data_dir.join("villagehub.sqlite3")).unwrap();
        let old = bodies[1].hash.clone().unwrap();
        let forged: String = {
            let mut n = bodies[1].clone();
            n.text = n.text.replace("30万元", "3万元");
            n.hash = None;
            let canonical = serde_json::to_string(&(
                group,
                events.iter().find(|e| e.seq == second).unwrap().author.id,
                &n.title,
                &n.text,
                n.must_read,
                n.amends,
                n.prev_hash.as_deref().unwrap_or(""),
            ))
            .unwrap();
            use sha2::Digest;
            sha2::Sha256::digest(canonical.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
        };
        conn.execute(
            "UPDATE events SET frame = replace(frame, ?3, ?4) WHERE log = ?1 AND seq = ?2",
            rusqlite::params![group as i64, second as i64, old, forged],
        )
        .unwrap();
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_villagehub"))
        .args(["disclosures", "verify", "--data-dir", &data_dir, "--group", &group.to_string()])
        .output()
        .unwrap();
    let cli: protocol::ChainReport = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(cli.broken.unwrap().seq, third);
}
