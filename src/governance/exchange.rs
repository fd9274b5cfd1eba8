//! Exchange (公益置换): offer or want an item, claim someone else's, and
//! the item's poster hands it over.

use std::collections::BTreeMap;

use rusqlite::Connection;

use protocol::{EventBody, Id, Seq};

use super::{check_text, conflict, events_of, forbidden, not_found, read, MAX_TITLE};
use crate::hub::{Hub, OpError};
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ItemState {
    pub poster: Id,
    pub claimed_by: Option<Id>,
    pub handed_over: bool,
}

pub fn items_of(conn: &Connection, group: Id) -> Result<BTreeMap<Seq, ItemState>, StoreError> {
    let mut map = BTreeMap::new();
    for event in events_of(conn, group, &["item", "item_claimed", "item_handed_over"])? {
        match event.body {
            EventBody::Item(_) => {
                map.insert(
                    event.seq,
                    ItemState { poster: event.author.id, claimed_by: None, handed_over: false },
                );
            }
            EventBody::ItemClaimed(r) => {
                if let Some(item) = map.get_mut(&r.item) {
                    item.claimed_by.get_or_insert(event.author.id);
                }
            }
            EventBody::ItemHandedOver(r) => {
                if let Some(item) = map.get_mut(&r.item) {
                    item.handed_over = true;
                }
            }
            _ => {}
        }
    }
    Ok(map)
}

pub async fn check(
    hub: &Hub,
    group: Id,
    by: Id,
    event: EventBody,
    client_key: Option<String>,
    max_text: usize,
) -> Result<(EventBody, Option<String>), OpError> {
    let items = read(hub, move |c| items_of(c, group)).await?;
    let find = |seq: Seq| items.get(&seq).cloned().ok_or_else(|| not_found("no such item"));
    match event {
        EventBody::Item(body) => {
            check_text(&body.title, "title", MAX_TITLE)?;
            check_text(&body.text, "text", max_text)?;
            Ok((EventBody::Item(body), client_key))
        }
        EventBody::ItemClaimed(body) => {
            let item = find(body.item)?;
            if item.poster == by {
                return Err(forbidden("you cannot claim your own item"));
            }
            if item.claimed_by.is_some() {
                return Err(conflict("the item is claimed already"));
            }
            let key = Some(format!("claim:{}", body.item));
            Ok((EventBody::ItemClaimed(body), key))
        }
        EventBody::ItemHandedOver(body) => {
            let item = find(body.item)?;
            if item.poster != by {
                return Err(forbidden("only the item's poster hands it over"));
            }
            if item.claimed_by.is_none() {
                return Err(conflict("nobody has claimed the item yet"));
            }
            if item.handed_over {
                return Err(conflict("the item is handed over already"));
            }
            let key = Some(format!("handed_over:{}", body.item));
            Ok((EventBody::ItemHandedOver(body), key))
        }
        _ => unreachable!("only exchange events come here"),
    }
}
