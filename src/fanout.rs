//! Fan-out: which connections of this node subscribe to which group, and
//! the hand-off of each committed event to their outboxes.
//!
//! The event is serialized once (by the log writer); every subscriber gets
//! an `Arc` of the same `Delivery`, so a delivery costs one refcount and one
//! non-blocking queue push — no allocation, no copy, no await. The fan-out
//! never waits for a connection: a full outbox marks the connection lagging
//! and the connection re-reads what it missed from the store (see
//! `session.rs`). This module must not touch sockets or the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use protocol::{Id, Seq};

/// One committed event on its way to subscribers: the encoded `event` frame
/// plus the group and seq that the connection uses to drop duplicates and
/// detect gaps.
#[derive(Debug)]
pub struct Delivery {
    pub group: Id,
    pub seq: Seq,
    pub frame: Utf8Bytes,
}

/// A connection's end of the fan-out. One per connection, shared by all of
/// its subscriptions.
#[derive(Debug)]
pub struct Subscriber {
    pub conn: u64,
    /// Bounded outbox (capacity `--outbox`, default 1,024 events). Overflow
    /// policy: the event is not queued and `lagged` is set; the connection
    /// then recovers the missing events from the store in order. So memory
    /// per connection is bounded by the capacity × one pointer, and the
    /// frames themselves are shared with every other subscriber.
    pub outbox: mpsc::Sender<Arc<Delivery>>,
    pub lagged: AtomicBool,
}

/// Subscribers of one group, and the last seq handed to them.
#[derive(Default)]
struct GroupEntry {
    head: Seq,
    subscribers: Vec<Arc<Subscriber>>,
}

/// Shards so that subscribing in one group never waits for a big fan-out in
/// another. A shard lock is taken once per event, never per delivery.
const SHARDS: usize = 16;

pub struct Fanout {
    shards: [Mutex<HashMap<Id, GroupEntry>>; SHARDS],
    /// Deliveries queued, outbox overflows — read by /metrics.
    pub deliveries: AtomicU64,
    pub overflows: AtomicU64,
    /// Account → connections, for directory notices (`presence.rs`).
    pub accounts: crate::presence::Accounts,
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            deliveries: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            accounts: Default::default(),
        }
    }
}

impl Fanout {
    fn shard(&self, group: Id) -> &Mutex<HashMap<Id, GroupEntry>> {
        &self.shards[(group as usize) % SHARDS]
    }

    /// Raises the head of a group: at start-up from the store, and by the
    /// log writer at each commit, before it acks — so a client that got
    /// `sent` for seq S finds S within the head (reply_to, hide) even if
    /// the fan-out task has not published it yet.
    pub fn set_head(&self, group: Id, head: Seq) {
        let mut shard = self.shard(group).lock().unwrap();
        let entry = shard.entry(group).or_default();
        entry.head = entry.head.max(head);
    }

    pub fn head(&self, group: Id) -> Seq {
        self.shard(group).lock().unwrap().get(&group).map(|e| e.head).unwrap_or(0)
    }

    /// Adds `sub` to the group (once) and returns the group's head at that
    /// moment: every event after it will be offered to `sub`.
    pub fn subscribe(&self, group: Id, sub: &Arc<Subscriber>) -> Seq {
        let mut shard = self.shard(group).lock().unwrap();
        let entry = shard.entry(group).or_default();
        if !entry.subscribers.iter().any(|s| s.conn == sub.conn) {
            entry.subscribers.push(sub.clone());
        }
        entry.head
    }

    pub fn unsubscribe(&self, group: Id, conn: u64) {
        let mut shard = self.shard(group).lock().unwrap();
        if let Some(entry) = shard.get_mut(&group) {
            if let Some(i) = entry.subscribers.iter().position(|s| s.conn == conn) {
                entry.subscribers.swap_remove(i);
            }
        }
    }

    /// Hands one committed event to every local subscriber of its group.
    /// Called by the log writer in commit order, so heads only grow.
    pub fn publish(&self, delivery: Delivery) {
        let group = delivery.group;
        let delivery = Arc::new(delivery);
        let mut shard = self.shard(group).lock().unwrap();
        let entry = shard.entry(group).or_default();
        entry.head = entry.head.max(delivery.seq);
        let mut queued = 0u64;
        let mut overflowed = 0u64;
        for sub in &entry.subscribers {
            match sub.outbox.try_send(delivery.clone()) {
                Ok(()) => queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.lagged.store(true, Ordering::Release);
                    overflowed += 1;
                }
                // The connection is going away; it unsubscribes itself.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        drop(shard);
        self.deliveries.fetch_add(queued, Ordering::Relaxed);
        if overflowed > 0 {
            self.overflows.fetch_add(overflowed, Ordering::Relaxed);
        }
    }

    /// Number of (group, connection) subscriptions; for tests and metrics.
    pub fn subscriptions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().values().map(|e| e.subscribers.len()).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(group: Id, seq: Seq) -> Delivery {
        Delivery { group, seq, frame: Utf8Bytes::from_static("{}") }
    }

    #[tokio::test]
    async fn full_outbox_marks_lagging_and_never_blocks() {
        let fanout = Fanout::default();
        let (tx, mut rx) = mpsc::channel(2);
        let sub = Arc::new(Subscriber { conn: 1, outbox: tx, lagged: AtomicBool::new(false) });
        assert_eq!(fanout.subscribe(7, &sub), 0);
        for seq in 1..=5 {
            fanout.publish(delivery(7, seq));
        }
        assert!(sub.lagged.load(Ordering::Acquire));
        assert_eq!(rx.recv().await.unwrap().seq, 1);
        assert_eq!(rx.recv().await.unwrap().seq, 2);
        assert!(rx.try_recv().is_err());
        assert_eq!(fanout.head(7), 5);
        assert_eq!(fanout.overflows.load(Ordering::Relaxed), 3);
        fanout.unsubscribe(7, 1);
        assert_eq!(fanout.subscriptions(), 0);
    }

    #[tokio::test]
    async fn one_frame_shared_by_all_subscribers() {
        let fanout = Fanout::default();
        let mut outboxes = Vec::new();
        for conn in 0..3 {
            let (tx, rx) = mpsc::channel(4);
            let sub = Arc::new(Subscriber { conn, outbox: tx, lagged: AtomicBool::new(false) });
            fanout.subscribe(1, &sub);
            outboxes.push((sub, rx));
        }
        fanout.publish(delivery(1, 1));
        let mut got = Vec::new();
        for (_, rx) in &mut outboxes {
            got.push(rx.recv().await.unwrap());
        }
        assert!(Arc::ptr_eq(&got[0], &got[1]) && Arc::ptr_eq(&got[1], &got[2]));
    }
}
