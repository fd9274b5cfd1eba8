//! Exchange: offer / want, claim (not your own, once), hand over (the
//! poster, once claimed); counts in the figures.

mod common;
#[path = "common/governance.rs"]
mod governance;

use common::*;
use governance::*;
use protocol::{ErrorCode, ServerFrame};
use serde_json::json;

#[tokio::test]
async fn offer_claim_hand_over_and_counts() {
    let server = Server::start(&LIMITS);
    let (mut p3, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut p4, _) = server.client(&demo_phone(1, 4)).await;
    let (mut p5, _) = server.client(&demo_phone(1, 5)).await;
    let (mut officer, officer_welcome) = server.client(&official_phone(1)).await;
    let town_id = match officer_welcome.offices[0] {
        protocol::Office::Town(id) => id,
        other => panic!("{other:?}"),
    };

    let offer = json!({"mode": "offer", "title": "儿童自行车", "text": "九成新"});
    assert_eq!(refused(&mut officer, group, "item", offer.clone()).await, ErrorCode::Forbidden);
    assert_eq!(
        refused(&mut p3, group, "item", json!({"mode": "lend", "title": "x", "text": "y"})).await,
        ErrorCode::BadRequest
    );
    let item = post(&mut p3, group, "item", offer).await;
    post(&mut p5, group, "item", json!({"mode": "want", "title": "旧书架", "text": "求一个"})).await;

    assert_eq!(refused(&mut p3, group, "item_claimed", json!({"item": item})).await, ErrorCode::Forbidden);
    assert_eq!(refused(&mut p3, group, "item_handed_over", json!({"item": item})).await, ErrorCode::Conflict);
    post(&mut p4, group, "item_claimed", json!({"item": item})).await;
    assert_eq!(refused(&mut p5, group, "item_claimed", json!({"item": item})).await, ErrorCode::Conflict);
    assert_eq!(
        refused(&mut p4, group, "item_handed_over", json!({"item": item})).await,
        ErrorCode::Forbidden
    );
    post(&mut p3, group, "item_handed_over", json!({"item": item})).await;
    assert_eq!(refused(&mut p3, group, "item_handed_over", json!({"item": item})).await, ErrorCode::Conflict);
    assert_eq!(refused(&mut p4, group, "item_claimed", json!({"item": 99999})).await, ErrorCode::NotFound);

    let town = officer.request(json!({"op": "figures", "scope": "town", "of": town_id})).await;
    match town {
        ServerFrame::Figures { figures, .. } => {
            assert_eq!((figures.offers, figures.wants, figures.claimed, figures.handed_over), (1, 1, 1, 1));
        }
        other => panic!("{other:?}"),
    }
}
