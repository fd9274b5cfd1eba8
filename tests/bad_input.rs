//! Invariant 8: every malformed, oversized, binary, forbidden or flooding
//! input gets its documented error or close code, the connection carries on
//! where the protocol says it does, and the node keeps serving.

mod common;

use std::time::Duration;

use common::*;
use protocol::{close, ErrorCode, ServerFrame};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// The reply to a raw text frame.
async fn reply_to_raw(c: &mut Client, text: &str) -> ServerFrame {
    c.send_raw(Message::Text(text.to_string().into())).await;
    c.frame().await
}

fn code_and_id(frame: ServerFrame) -> (ErrorCode, Option<u64>) {
    match frame {
        ServerFrame::Error { code, id, .. } => (code, id),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_carries_on() {
    let server = Server::start(&["--ops-per-sec", "1000", "--burst", "1000", "--max-frame", "4096"]);
    let (mut c, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let head = c.subscribe(group, None).await;

    let cases: &[(&str, ErrorCode, Option<u64>)] = &[
        ("not json at all", ErrorCode::BadRequest, None),
        ("{\"op\": \"send\", \"id\": 5,", ErrorCode::BadRequest, None),
        ("[1, 2, 3]", ErrorCode::BadRequest, None),
        ("\"a string\"", ErrorCode::BadRequest, None),
        ("{}", ErrorCode::BadRequest, None),
        (r#"{"id": 11}"#, ErrorCode::BadRequest, Some(11)),
        (r#"{"id": 12, "op": "shout"}"#, ErrorCode::UnknownOp, Some(12)),
        (r#"{"id": 13, "op": 42}"#, ErrorCode::BadRequest, Some(13)),
        (r#"{"id": 14, "op": "subscribe", "group": "four"}"#, ErrorCode::BadRequest, Some(14)),
        (r#"{"id": 15, "op": "subscribe"}"#, ErrorCode::BadRequest, Some(15)),
        (r#"{"id": 16, "op": "subscribe", "group": -1}"#, ErrorCode::BadRequest, Some(16)),
        (r#"{"id": -1, "op": "subscribe", "group": 4}"#, ErrorCode::BadRequest, None),
        (
            r#"{"id": 17, "op": "send", "group": 4, "channel": "chat", "body": "text", "client_key": "k"}"#,
            ErrorCode::BadRequest,
            Some(17),
        ),
        (
            r#"{"id": 18, "op": "send", "group": 4, "channel": "gossip", "body": {"text": "x"}, "client_key": "k"}"#,
            ErrorCode::BadRequest,
            Some(18),
        ),
        (r#"{"id": 19, "op": "history", "group": 4, "limit": "ten"}"#, ErrorCode::BadRequest, Some(19)),
    ];
    for (text, code, id) in cases {
        assert_eq!(code_and_id(reply_to_raw(&mut c, text).await), (*code, *id), "case {text}");
    }

    // Valid JSON, invalid values.
    let send = |text: &str, key: &str| json!({"op": "send", "group": group, "channel": "chat", "body": {"text": text}, "client_key": key});
    assert_eq!(c.expect_error(send("   ", "k1")).await, ErrorCode::BadRequest);
    assert_eq!(c.expect_error(send(&"长".repeat(2001), "k2")).await, ErrorCode::TooLarge);
    assert_eq!(c.expect_error(send("ok", "")).await, ErrorCode::BadRequest);
    assert_eq!(c.expect_error(send("ok", &"k".repeat(65))).await, ErrorCode::BadRequest);
    let notices = json!({"op": "send", "group": group, "channel": "notices", "body": {"text": "x"}, "client_key": "k3"});
    assert_eq!(c.expect_error(notices).await, ErrorCode::BadRequest);
    let bad_reply = json!({"op": "send", "group": group, "channel": "chat", "body": {"text": "x", "reply_to": 99999}, "client_key": "k4"});
    assert_eq!(c.expect_error(bad_reply).await, ErrorCode::BadRequest);

    // Binary frames.
    c.send_raw(Message::Binary(vec![0, 159, 146, 150].into())).await;
    assert_eq!(code_and_id(c.frame().await), (ErrorCode::BadRequest, None));

    // A frame over --max-frame but under the hard limit: too_large, and the
    // connection goes on.
    let big = json!({"op": "send", "id": 77, "group": group, "channel": "chat",
                     "body": {"text": "x".repeat(10_000)}, "client_key": "big"});
    assert_eq!(code_and_id(reply_to_raw(&mut c, &big.to_string()).await), (ErrorCode::TooLarge, Some(77)));

    // Nothing above was committed, and the connection still works.
    let (seq, _) = c.send_text(group, "still here", "after-bad").await;
    assert_eq!(seq, head + 1);
    assert_eq!(c.event().await.seq, head + 1);

    // A frame beyond the hard limit (16 × max-frame) closes with 1009.
    let huge = "x".repeat(4096 * 16 + 1);
    c.send_raw(Message::Text(huge.into())).await;
    assert_eq!(c.closed().await, Closed::Code(close::MESSAGE_TOO_BIG));

    // The node is fine.
    let (mut d, _) = server.client(&demo_phone(1, 4)).await;
    assert_eq!(d.subscribe(group, Some(head)).await, head + 1);
    assert_eq!(text_of(&d.event().await), "still here");
}

#[tokio::test]
async fn no_hello_in_time_closes_with_4001() {
    let server = Server::start(&["--auth-timeout", "1"]);
    let mut c = server.connect().await;
    assert_eq!(c.expect_error(json!({"op": "history", "group": 4})).await, ErrorCode::Unauthorized);
    assert_eq!(c.closed().await, Closed::Code(close::AUTH_TIMEOUT));
    // Saying hello in time keeps the connection open past the timeout.
    let (mut ok, _) = server.client(&demo_phone(1, 3)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(
        ok.request(json!({"op": "unsubscribe", "group": 4})).await,
        ServerFrame::Unsubscribed { .. }
    ));
}

#[tokio::test]
async fn flooding_is_rate_limited_then_closed() {
    let server = Server::start(&["--ops-per-sec", "5", "--burst", "5"]);
    let (mut c, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    // hello took one token; four more pass, then rate_limited.
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(match c.request(json!({"op": "history", "group": group, "limit": 1})).await {
            ServerFrame::History { .. } => None,
            ServerFrame::Error { code, .. } => Some(code),
            other => panic!("{other:?}"),
        });
    }
    assert_eq!(codes[..4], [None, None, None, None]);
    assert_eq!(codes[5], Some(ErrorCode::RateLimited));
    // After a pause the connection may go on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(
        c.request(json!({"op": "history", "group": group, "limit": 1})).await,
        ServerFrame::History { .. }
    ));

    // Ignoring rate_limited replies ends with 4029; malformed frames count.
    for _ in 0..100 {
        if c.ws_send_ignoring_errors(Message::Text("{}".into())).await.is_err() {
            break;
        }
    }
    assert_eq!(c.closed().await, Closed::Code(close::FLOOD));
    // Others are unaffected.
    let (mut d, _) = server.client(&demo_phone(1, 4)).await;
    d.send_text(group, "没事", "flood-after").await;
}

#[tokio::test]
async fn non_upgrade_requests_to_ws_are_refused_cleanly() {
    let server = Server::start(&[]);
    let (status, _) = http(server.addr, "GET", "/ws", None).await;
    assert_eq!(status, 426);
    let (status, body) = http(server.addr, "GET", "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

trait RawSend {
    async fn ws_send_ignoring_errors(&mut self, m: Message) -> Result<(), ()>;
}

impl RawSend for Client {
    async fn ws_send_ignoring_errors(&mut self, m: Message) -> Result<(), ()> {
        use futures_util::SinkExt;
        self.ws.send(m).await.map_err(|_| ())
    }
}
