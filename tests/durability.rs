//! Invariant 3: a send is acked only when committed. Restarts (clean or
//! kill -9) keep every acked event, and seq continues where it stopped.

mod common;

use std::time::Duration;

use common::*;
use protocol::ErrorCode;

#[tokio::test]
async fn clean_restart_keeps_history_and_seq_continues() {
    let mut server = Server::start(&[]);
    let (mut c, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let head = c.subscribe(group, None).await;
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(c.send_text(group, &format!("before restart {i}"), &format!("r-{i}")).await.0);
    }
    for _ in 0..10 {
        c.event().await;
    }
    let before = c.full_history(group).await;

    // SIGTERM: the connected client is told to go away (1001).
    server.terminate();
    assert_eq!(c.closed().await, Closed::Code(protocol::close::GOING_AWAY));

    server.restart();
    let (mut c, _) = server.client(&demo_phone(1, 3)).await;
    assert_eq!(c.full_history(group).await, before);
    assert_eq!(c.subscribe(group, None).await, head + 10);
    let (seq, _) = c.send_text(group, "after restart", "r-after").await;
    assert_eq!(seq, head + 11);
    // An old client key still deduplicates after the restart.
    assert_eq!(c.send_text(group, "before restart 3", "r-3").await, (sent[3], true));
}

#[tokio::test]
async fn kill_9_during_acked_sends_loses_nothing_acked() {
    let mut server = Server::start(&["--ops-per-sec", "100000", "--burst", "100000"]);
    let group = {
        let (_, welcome) = server.client(&demo_phone(1, 3)).await;
        group_named(&welcome, "聚源桥村").id
    };
    // Four members send as fast as they are acked; each remembers its acks.
    let mut senders = Vec::new();
    for person in 3..=6 {
        let (mut c, _) = server.client(&demo_phone(1, person)).await;
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let text = format!("{person}-{i}");
                match c.try_send_acked(group, &text, &format!("k9-{person}-{i}")).await {
                    Some(seq) => acked.push((seq, text)),
                    None => return acked,
                }
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(acked.len() > 20, "only {} sends were acked before the kill", acked.len());

    server.restart();
    let (mut c, _) = server.client(&demo_phone(1, 2)).await;
    let history = c.full_history(group).await;
    assert_contiguous(&history.iter().map(|e| e.seq).collect::<Vec<_>>(), 1, history.len() as u64);
    for (seq, text) in &acked {
        let stored = &history[(*seq - 1) as usize];
        assert_eq!(text_of(stored), text, "acked event {seq} is not what was sent");
    }
    // The log goes on from its last committed seq.
    let (next, _) = c.send_text(group, "after the crash", "k9-after").await;
    assert_eq!(next, history.len() as u64 + 1);
}

trait SendAcked {
    /// The seq if acked; None once the connection is gone.
    async fn try_send_acked(&mut self, group: u64, text: &str, key: &str) -> Option<u64>;
}

impl SendAcked for Client {
    async fn try_send_acked(&mut self, group: u64, text: &str, key: &str) -> Option<u64> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let id = self.next_id();
        let op = serde_json::json!({"op": "send", "id": id, "group": group, "channel": "chat",
                                    "body": {"text": text}, "client_key": key});
        self.ws.send(Message::Text(op.to_string().into())).await.ok()?;
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next()).await.ok()??.ok()?;
            if let Message::Text(text) = message {
                match serde_json::from_str::<protocol::ServerFrame>(text.as_str()).unwrap() {
                    protocol::ServerFrame::Sent { id: got, seq, .. } if got == id => return Some(seq),
                    protocol::ServerFrame::Error { code, .. } => {
                        assert_eq!(code, ErrorCode::Unavailable);
                        return None;
                    }
                    _ => continue,
                }
            }
        }
    }
}
