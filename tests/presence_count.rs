//! `presence`: how many members of a group are online; who, for cadres.

mod common;

use common::*;
use protocol::{ErrorCode, ServerFrame};
use serde_json::json;

const LIMITS: [&str; 6] =
    ["--login-attempts-per-address", "1000", "--ops-per-sec", "1000", "--burst", "1000"];

#[tokio::test]
async fn members_online_and_who_for_cadres() {
    let server = Server::start(&LIMITS);
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = welcome.groups[0].id;
    let me = welcome.account.id;
    let (mut cadre, w) = server.client(&demo_phone(1, 2)).await;
    let cadre_id = w.account.id;
    match member.request(json!({"op": "presence", "group": group})).await {
        ServerFrame::Presence { online, who, .. } => assert_eq!((online, who), (2, None)),
        other => panic!("{other:?}"),
    }
    let mut both = vec![me, cadre_id];
    both.sort_unstable();
    match cadre.request(json!({"op": "presence", "group": group})).await {
        ServerFrame::Presence { online, who, .. } => assert_eq!((online, who), (2, Some(both))),
        other => panic!("{other:?}"),
    }
    drop(member);
    let (mut other, _) = server.client(&demo_phone(3, 3)).await;
    assert_eq!(other.expect_error(json!({"op": "presence", "group": group})).await, ErrorCode::NotFound);
}
