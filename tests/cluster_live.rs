//! Live governance across nodes: a warning raised by one node reaches the
//! officers connected to another and is stored on both; presence counts
//! members connected to any node, and forgets a node that died.

mod common;

use std::time::Duration;

use common::*;
use protocol::{ServerFrame, WarningLink};
use serde_json::json;

const FAST: [&str; 6] =
    ["--ops-per-sec", "100000", "--burst", "100000", "--login-attempts-per-address", "10000"];

#[tokio::test]
async fn a_warning_raised_on_one_node_reaches_officers_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let lexicon = dir.path().join("lexicon.txt");
    std::fs::write(&lexicon, "上访\n").unwrap();
    let lexicon = lexicon.display().to_string();
    let mut flags = FAST.to_vec();
    flags.extend(["--warning-lexicon", lexicon.as_str()]);
    let redis = Redis::start();
    let a = cluster_node(&redis, &flags);
    let b = cluster_node(&redis, &flags);

    let (mut officer, _) = b.client(&official_phone(1)).await;
    let (mut cadre, _) = a.client(&demo_phone(1, 2)).await;
    let (mut member, welcome) = a.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (seq, _) = member.send_text(group, "明天一起去上访", "w1").await;
    for who in [&mut officer, &mut cadre] {
        match who.frame().await {
            ServerFrame::Warning(w) => assert_eq!(w.links, vec![WarningLink { group, seq }]),
            other => panic!("expected a warning, got {other:?}"),
        }
    }
    // Raised once (by the node that took the post), listed on both nodes.
    let op = json!({"op": "warnings", "scope": format!("group:{group}")});
    let on_a = cadre.request(op.clone()).await;
    let (mut cadre_b, _) = b.client(&demo_phone(1, 2)).await;
    assert_eq!(cadre_b.request(op).await, on_a);
    match on_a {
        ServerFrame::Warnings { warnings, .. } => assert_eq!(warnings.len(), 1),
        other => panic!("{other:?}"),
    }
    officer.expect_silence(Duration::from_millis(500)).await;
}

fn online_of(frame: ServerFrame) -> (u64, Option<Vec<u64>>) {
    match frame {
        ServerFrame::Presence { online, who, .. } => (online, who),
        ServerFrame::PresenceUpdate { online, .. } => (online, None),
        other => panic!("expected presence, got {other:?}"),
    }
}

#[tokio::test]
async fn presence_counts_members_on_every_node() {
    let redis = Redis::start();
    let a = cluster_node(&redis, &FAST);
    let mut b = cluster_node(&redis, &FAST);
    let (mut watcher, welcome) = a.client(&demo_phone(1, 3)).await;
    let me = welcome.account.id;
    let group = group_named(&welcome, "聚源桥村").id;
    assert_eq!(online_of(watcher.request(json!({"op": "presence", "group": group})).await).0, 1);

    // A neighbour connects to node B: node A's watcher hears of it, and a
    // cadre on node B sees both.
    let (_neighbour, welcome) = b.client(&demo_phone(1, 4)).await;
    let neighbour = welcome.account.id;
    assert_eq!(online_of(watcher.push().await).0, 2);
    let (mut cadre, welcome) = b.client(&demo_phone(1, 2)).await;
    let mut who = vec![me, neighbour, welcome.account.id];
    who.sort_unstable();
    assert_eq!(online_of(watcher.push().await).0, 3);
    assert_eq!(online_of(cadre.request(json!({"op": "presence", "group": group})).await), (3, Some(who)));

    // Node B dies without a word: within its timeout (15 s) it is no longer
    // counted.
    b.kill9();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while online_of(watcher.request(json!({"op": "presence", "group": group})).await).0 != 1 {
        assert!(tokio::time::Instant::now() < deadline, "node B still counted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The watcher was told as well.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let told: Vec<u64> = watcher.pushes.drain(..).map(|p| online_of(p).0).collect();
    assert_eq!(told.last(), Some(&1), "{told:?}");
}
