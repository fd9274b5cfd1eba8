//! Likes: one per person per post, undo allowed, counts shown; only
//! members like, and only posts that exist.

mod common;
#[path = "common/governance.rs"]
mod governance;

use common::*;
use governance::*;
use protocol::{ErrorCode, ServerFrame};
use serde_json::json;

#[tokio::test]
async fn like_once_undo_and_count() {
    let server = Server::start(&LIMITS);
    let (mut p3, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut p4, _) = server.client(&demo_phone(1, 4)).await;
    let (mut officer, _) = server.client(&official_phone(1)).await;
    let (mut stranger, _) = server.client(&demo_phone(2, 3)).await;

    let (message, _) = p3.send_text(group, "今天天气真好", "m-1").await;
    let item = post(&mut p3, group, "item", json!({"mode": "offer", "title": "花盆", "text": "送"})).await;
    post(&mut p4, group, "like", json!({"target": message})).await;
    assert_eq!(refused(&mut p4, group, "like", json!({"target": message})).await, ErrorCode::Conflict);
    post(&mut p3, group, "like", json!({"target": message})).await;
    post(&mut p4, group, "like", json!({"target": item})).await;
    assert_eq!(refused(&mut officer, group, "like", json!({"target": message})).await, ErrorCode::Forbidden);
    assert_eq!(refused(&mut stranger, group, "like", json!({"target": message})).await, ErrorCode::NotFound);
    assert_eq!(refused(&mut p4, group, "like", json!({"target": 99999})).await, ErrorCode::NotFound);
    let like_seq = post(&mut p4, group, "unlike", json!({"target": item})).await;
    // A like is not itself a post.
    assert_eq!(refused(&mut p3, group, "like", json!({"target": like_seq})).await, ErrorCode::NotFound);
    assert_eq!(refused(&mut p4, group, "unlike", json!({"target": item})).await, ErrorCode::Conflict);

    match p4.request(json!({"op": "likes", "group": group, "targets": [message, item]})).await {
        ServerFrame::Likes { counts, .. } => {
            assert_eq!((counts[0].target, counts[0].count, counts[0].mine), (message, 2, true));
            assert_eq!((counts[1].target, counts[1].count, counts[1].mine), (item, 0, false));
        }
        other => panic!("{other:?}"),
    }
    // Officers read the counts; strangers do not.
    assert!(matches!(
        officer.request(json!({"op": "likes", "group": group, "targets": [message]})).await,
        ServerFrame::Likes { .. }
    ));
    assert_eq!(
        stranger.expect_error(json!({"op": "likes", "group": group, "targets": [message]})).await,
        ErrorCode::NotFound
    );
}
