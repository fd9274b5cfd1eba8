//! Every JSON example in `protocol/README.md` must parse into the protocol
//! types and serialize back to the same JSON, so the document and the code
//! cannot drift apart.

use protocol::{
    ApiError, ApiStatus, ClientOp, ErrorCode, LoginRequest, LoginResponse, RegisterRequest, ServerFrame,
};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// (info string, JSON text) of every fenced block tagged `json …`.
fn examples() -> Vec<(String, String)> {
    let doc = include_str!("../README.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```json") {
            let mut body = String::new();
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            out.push((info.trim().to_string(), body));
        }
    }
    out
}

fn round_trip<T: DeserializeOwned + Serialize>(info: &str, text: &str) -> T {
    let original: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{info}: not JSON: {e}\n{text}"));
    let typed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{info}: does not parse: {e}\n{text}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, original, "{info}: does not round-trip");
    typed
}

#[test]
fn every_example_round_trips() {
    let all = examples();
    assert!(all.len() >= 20, "only {} examples found", all.len());
    let mut ops = Vec::new();
    let mut frames = Vec::new();
    for (info, text) in &all {
        match info.as_str() {
            "client" => ops.push(round_trip::<ClientOp>(info, text)),
            "server" => frames.push(round_trip::<ServerFrame>(info, text)),
            "http:login-request" => drop(round_trip::<LoginRequest>(info, text)),
            "http:login-response" => drop(round_trip::<LoginResponse>(info, text)),
            "http:error" => drop(round_trip::<ApiError>(info, text)),
            "http:register-request" => drop(round_trip::<RegisterRequest>(info, text)),
            "http:status" => drop(round_trip::<ApiStatus>(info, text)),
            // --- images ---
            "http:image-uploaded" => drop(round_trip::<protocol::ImageUploaded>(info, text)),
            // --- end images ---
            other => panic!("example with unknown tag '{other}'"),
        }
    }
    // Every op has an example, and so has every error code.
    for name in protocol::OP_NAMES {
        assert!(ops.iter().any(|op| op.name() == *name), "no example of op {name}");
    }
    for code in ErrorCode::ALL {
        let documented = frames.iter().any(|f| matches!(f, ServerFrame::Error { code: c, .. } if *c == code));
        assert!(documented, "no example of error code {}", code.as_str());
    }
    for kind in [
        "welcome",
        "subscribed",
        "unsubscribed",
        "sent",
        "history",
        "event",
        "error",
        "done",
        "applications",
        "audit",
        "membership",
        "application",
        "unread",
        "receipts",
        "disclosures",
        "figures",
        "likes",
        "broadcast_sent",
        "stats",
        "needs",
        "warning",
        "warnings",
        "stats_update",
        "escalated",
        "presence",
        "presence_update",
    ] {
        let documented = frames
            .iter()
            .any(|f| serde_json::to_value(f).unwrap()["type"] == Value::String(kind.to_string()));
        assert!(documented, "no example of server frame {kind}");
    }
    // Every event kind has an example.
    for kind in [
        "message",
        "hide",
        "hidden",
        "notice",
        "notice_read",
        "request",
        "request_reply",
        "request_resolved",
        "request_escalated",
        "request_overdue",
        "request_rated",
        "topic",
        "topic_comment",
        "vote",
        "topic_closed",
        "project_progress",
        "hall_settings",
        "item",
        "item_claimed",
        "item_handed_over",
        "like",
        "unlike",
        "broadcast",
    ] {
        let documented = frames.iter().any(|f| matches!(f, ServerFrame::Event(e) if e.body.kind() == kind));
        assert!(documented, "no example of event kind {kind}");
    }
    // --- government api ---
    let by_system = frames.iter().any(|f| matches!(f, ServerFrame::Event(e) if e.author.system));
    assert!(by_system, "no example of an event posted by another government system");
    // --- end government api ---
}

#[test]
fn history_elements_may_carry_the_event_type_tag() {
    let text = r#"{"type":"history","id":1,"group":4,"more":false,"events":[
        {"type":"event","group":4,"seq":1,"ts":1,"author":{"id":1,"name":"a","role":"member"},
         "channel":"chat","kind":"message","body":{"text":"x"}}]}"#;
    let frame: ServerFrame = serde_json::from_str(text).unwrap();
    assert!(matches!(frame, ServerFrame::History { ref events, .. } if events.len() == 1));
}

#[test]
fn unknown_fields_are_ignored() {
    let op: ClientOp =
        serde_json::from_str(r#"{"op":"unsubscribe","id":3,"group":4,"future":true}"#).unwrap();
    assert_eq!(op, ClientOp::Unsubscribe { id: 3, group: 4 });
}
