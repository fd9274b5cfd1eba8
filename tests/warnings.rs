//! Early warnings: a keyword of the lexicon in a post is pushed live, with
//! a link to the post, to the cadres of the group and the officers of its
//! town and district — and to nobody else.

mod common;

use std::time::Duration;

use common::*;
use protocol::{ServerFrame, WarningLink};

const LIMITS: [&str; 6] =
    ["--login-attempts-per-address", "1000", "--ops-per-sec", "1000", "--burst", "1000"];

#[tokio::test]
async fn a_lexicon_keyword_warns_the_people_in_charge() {
    let dir = tempfile::tempdir().unwrap();
    let lexicon = dir.path().join("lexicon.txt");
    std::fs::write(&lexicon, "# 预警词\n上访\n\n群体事件\n").unwrap();
    let lexicon = lexicon.display().to_string();
    let mut flags = LIMITS.to_vec();
    flags.extend(["--warning-lexicon", lexicon.as_str()]);
    let server = Server::start(&flags);

    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut officer, _) = server.client(&official_phone(1)).await;
    let (mut district, _) = server.client(&official_phone(3)).await;
    let (mut other_town, _) = server.client(&official_phone(2)).await;
    let (mut bystander, _) = server.client(&demo_phone(1, 4)).await;
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = welcome.groups[0].id;

    member.send_text(group, "今天天气很好", "w1").await;
    let (seq, _) = member.send_text(group, "有人说明天要去上访", "w2").await;
    for who in [&mut cadre, &mut officer, &mut district] {
        match tokio::time::timeout(PATIENCE, who.frame()).await.unwrap() {
            ServerFrame::Warning(w) => {
                assert_eq!((w.group, w.reason.as_str()), (group, "keyword"));
                assert!(w.detail.contains("上访"), "{}", w.detail);
                assert_eq!(w.links, vec![WarningLink { group, seq }]);
            }
            other => panic!("expected a warning, got {other:?}"),
        }
    }
    other_town.expect_silence(Duration::from_millis(300)).await;
    bystander.expect_silence(Duration::from_millis(100)).await;
    member.expect_silence(Duration::from_millis(100)).await;
}

fn warning(frame: ServerFrame) -> protocol::Warning {
    match frame {
        ServerFrame::Warning(w) => w,
        other => panic!("expected a warning, got {other:?}"),
    }
}

fn listed(frame: ServerFrame) -> (Vec<protocol::Warning>, bool) {
    match frame {
        ServerFrame::Warnings { warnings, more, .. } => (warnings, more),
        other => panic!("expected warnings, got {other:?}"),
    }
}

/// Moves the server's clock (and runs a sweep before answering).
async fn advance(server: &Server, ms: i64) {
    let body = serde_json::json!({ "advance_ms": ms }).to_string();
    let (status, text) = http(server.addr, "POST", "/api/test/clock", Some(&body)).await;
    assert_eq!(status, 200, "{text}");
}

const MINUTE: i64 = 60_000;

#[tokio::test]
async fn warnings_are_stored_listed_and_only_for_the_people_in_charge() {
    let dir = tempfile::tempdir().unwrap();
    let lexicon = dir.path().join("lexicon.txt");
    std::fs::write(&lexicon, "上访\n").unwrap();
    let lexicon = lexicon.display().to_string();
    let mut flags = LIMITS.to_vec();
    flags.extend(["--warning-lexicon", lexicon.as_str()]);
    let mut server = Server::start(&flags);

    let (mut officer, welcome) = server.client(&official_phone(1)).await;
    let Some(protocol::Office::Town(town)) = welcome.offices.first().cloned() else { panic!() };
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = welcome.groups[0].id;
    let (first, _) = member.send_text(group, "我要去上访", "k1").await;
    let (second, _) = member.send_text(group, "真的要去上访", "k2").await;
    let pushed = [warning(officer.frame().await), warning(officer.frame().await)];
    assert_eq!(pushed.clone().map(|w| w.links[0].seq), [first, second]);
    assert!(pushed[0].seq < pushed[1].seq && pushed[0].at > 0);

    // A retried send (same client key) raises nothing new.
    member.send_text(group, "我要去上访", "k1").await;
    officer.expect_silence(Duration::from_millis(300)).await;

    // Listed newest first, paged with `before`; the same after a restart.
    let town_scope = format!("town:{town}");
    let (all, more) =
        listed(officer.request(serde_json::json!({"op": "warnings", "scope": town_scope})).await);
    assert_eq!((all.clone(), more), (vec![pushed[1].clone(), pushed[0].clone()], false));
    let page = serde_json::json!({"op": "warnings", "scope": town_scope, "limit": 1});
    let (newest, more) = listed(officer.request(page).await);
    assert_eq!((newest, more), (vec![pushed[1].clone()], true));
    let older = serde_json::json!({"op": "warnings", "scope": town_scope, "before": pushed[1].seq});
    assert_eq!(listed(officer.request(older).await).0, vec![pushed[0].clone()]);

    server.terminate();
    server.restart();
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut district, _) = server.client(&official_phone(3)).await;
    let group_scope = format!("group:{group}");
    assert_eq!(
        listed(cadre.request(serde_json::json!({"op": "warnings", "scope": group_scope})).await).0,
        all
    );
    let district_scope = serde_json::json!({"op": "warnings", "scope": "district:1"});
    assert_eq!(listed(district.request(district_scope).await).0, all);

    // Residents, and officers of another town, may not list them.
    let (mut member, _) = server.client(&demo_phone(1, 3)).await;
    let (mut other_town, _) = server.client(&official_phone(2)).await;
    let op = serde_json::json!({"op": "warnings", "scope": group_scope});
    assert_eq!(member.expect_error(op).await, protocol::ErrorCode::Forbidden);
    let op = serde_json::json!({"op": "warnings", "scope": town_scope});
    assert_eq!(other_town.expect_error(op).await, protocol::ErrorCode::Forbidden);
    let op = serde_json::json!({"op": "warnings", "scope": "village:1"});
    assert_eq!(cadre.expect_error(op).await, protocol::ErrorCode::BadRequest);
}

#[tokio::test]
async fn a_message_spike_against_the_groups_own_baseline() {
    // The demo's own chat messages of the group count too (posted at start).
    let probe = Server::start(&LIMITS);
    let (mut member, welcome) = probe.client(&demo_phone(1, 3)).await;
    let group = welcome.groups[0].id;
    let history = member.full_history(group).await;
    let demo: Vec<u64> = history.iter().filter(|e| e.body.kind() == "message").map(|e| e.seq).collect();
    drop(probe);
    let min = (demo.len() + 5).to_string();

    let mut flags = LIMITS.to_vec();
    flags.extend([
        "--test-clock",
        // Only the test's clock moves run sweeps, so a spike is judged
        // where the test says, not midway through its sends.
        "--sweep-interval-ms",
        "3600000",
        "--spike-window-minutes",
        "10",
        "--spike-baseline-hours",
        "1",
        "--spike-factor",
        "3",
        "--spike-min-messages",
        min.as_str(),
    ]);
    let server = Server::start(&flags);
    let (mut officer, _) = server.client(&official_phone(1)).await;
    let (mut member, _) = server.client(&demo_phone(1, 3)).await;

    // Below the minimum: no spike.
    let mut seqs = demo.clone();
    for i in 0..4 {
        seqs.push(member.send_text(group, &format!("早上好 {i}"), &format!("a{i}")).await.0);
    }
    advance(&server, 0).await;
    officer.expect_silence(Duration::from_millis(300)).await;

    // Thirty more in one window of a group that was quiet: a spike, once.
    for i in 0..30 {
        seqs.push(member.send_text(group, &format!("停电了 {i}"), &format!("b{i}")).await.0);
    }
    advance(&server, 0).await;
    let spike = warning(officer.frame().await);
    assert_eq!((spike.group, spike.reason.as_str()), (group, "spike"));
    let (first, last) = (seqs[0], *seqs.last().unwrap());
    assert_eq!(spike.links, vec![WarningLink { group, seq: first }, WarningLink { group, seq: last }]);
    let total = seqs.len();
    assert!(spike.detail.starts_with(&format!("{total} messages in 10 minutes")), "{}", spike.detail);
    advance(&server, 0).await;
    advance(&server, MINUTE).await;
    officer.expect_silence(Duration::from_millis(300)).await;

    // A quarter of an hour later those are the baseline: `total` an hour is
    // total/6 a window, so a spike needs three times that, total/2.
    advance(&server, 15 * MINUTE).await;
    let needed = total.div_ceil(2);
    for i in 0..needed - 1 {
        member.send_text(group, &format!("来电了吗 {i}"), &format!("c{i}")).await;
    }
    advance(&server, 0).await;
    officer.expect_silence(Duration::from_millis(300)).await;
    member.send_text(group, "还没来电", "d").await;
    advance(&server, 0).await;
    let second = warning(officer.frame().await);
    assert_eq!(second.reason, "spike");
    let usual = format!("{needed} messages in 10 minutes; usually {:.1}", total as f64 / 6.0);
    assert!(second.detail.starts_with(&usual), "{} vs {usual}", second.detail);

    // Stored once each, although every sweep looked again.
    let op = serde_json::json!({"op": "warnings", "scope": format!("group:{group}")});
    let (cadre_view, _) = listed(server.client(&demo_phone(1, 2)).await.0.request(op).await);
    assert_eq!(cadre_view, vec![second, spike]);
    let raised = stored_events(&server.data_dir).into_iter().filter(|e| e.5 == "warning_raised").count();
    assert_eq!(raised, 2);
}

#[tokio::test]
async fn a_backlog_of_overdue_requests() {
    let mut flags = LIMITS.to_vec();
    flags.extend(["--test-clock", "--backlog-threshold", "2", "--first-response-hours", "15"]);
    let server = Server::start(&flags);
    let (mut officer, _) = server.client(&official_phone(1)).await;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = welcome.groups[0].id;
    let mut requests = Vec::new();
    for text in ["路灯坏了", "垃圾没人收", "下水道堵了"] {
        let op = serde_json::json!({"op": "post", "group": group,
            "event": {"kind": "request", "body": {"category": "其他", "text": text}}});
        match member.request(op).await {
            ServerFrame::Sent { seq, .. } => requests.push(seq),
            other => panic!("{other:?}"),
        }
    }
    // One is answered in time; two are not.
    let op = serde_json::json!({"op": "post", "group": group,
        "event": {"kind": "request_reply", "body": {"request": requests[0], "text": "明天修"}}});
    assert!(matches!(cadre.request(op).await, ServerFrame::Sent { .. }));
    advance(&server, 14 * 3_600_000).await;
    officer.expect_silence(Duration::from_millis(300)).await;
    advance(&server, 2 * 3_600_000).await;
    let backlog = warning(officer.frame().await);
    assert_eq!((backlog.group, backlog.reason.as_str()), (group, "overdue_backlog"));
    assert_eq!(
        backlog.links,
        requests[1..].iter().map(|&seq| WarningLink { group, seq }).collect::<Vec<_>>()
    );
    assert!(backlog.detail.starts_with("2 requests"), "{}", backlog.detail);
    // Once a day, however often the sweeper looks.
    advance(&server, 3_600_000).await;
    officer.expect_silence(Duration::from_millis(300)).await;
}
