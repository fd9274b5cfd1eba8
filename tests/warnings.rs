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
