//! The client's frames as text: parsing (with a precise error for every
//! way a frame can be wrong) and the checks of an op that need no state —
//! sizes, keys, channels, ranges. Pure functions, so that fuzzing exercises
//! exactly what the server runs (`fuzz/`, replayed by `tests/fuzz_corpus.rs`).

use protocol::{Channel, ClientOp, ErrorCode, EventBody, NoticeBody, RequestBody, OP_NAMES};

use crate::config::Limits;
use crate::hub::OpError;

/// Longest token accepted in `hello` (ours are ~150 bytes; external
/// real-name systems' JWTs are longer, but not this long).
pub const MAX_TOKEN: usize = 8 * 1024;

/// Parses a client frame, or says precisely what is wrong with it.
pub fn parse_op(text: &str, max_frame: usize) -> Result<ClientOp, (Option<u64>, OpError)> {
    if text.len() > max_frame {
        return Err((
            probe_id(text),
            OpError::new(ErrorCode::TooLarge, format!("frame is larger than {max_frame} bytes")),
        ));
    }
    serde_json::from_str::<ClientOp>(text).map_err(|e| {
        #[derive(serde::Deserialize)]
        struct Probe {
            id: Option<serde_json::Value>,
            op: Option<serde_json::Value>,
        }
        match serde_json::from_str::<Probe>(text) {
            Err(_) => (None, OpError::bad_request(format!("not valid JSON: {e}"))),
            Ok(probe) => {
                let id = probe.id.as_ref().and_then(|v| v.as_u64());
                match probe.op {
                    None => (id, OpError::bad_request("missing 'op'")),
                    Some(serde_json::Value::String(op)) if !OP_NAMES.contains(&op.as_str()) => {
                        (id, OpError::new(ErrorCode::UnknownOp, format!("unknown op '{op}'")))
                    }
                    Some(_) => (id, OpError::bad_request(format!("bad op: {e}"))),
                }
            }
        }
    })
}

pub fn probe_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Probe {
        id: Option<serde_json::Value>,
    }
    serde_json::from_str::<Probe>(text).ok()?.id?.as_u64()
}

/// Everything about an op that can be checked without the directory or the
/// store.
pub fn validate_op(op: &ClientOp, limits: &Limits) -> Result<(), OpError> {
    match op {
        ClientOp::Hello { token, .. } if token.is_empty() || token.len() > MAX_TOKEN => {
            Err(OpError::new(ErrorCode::Unauthorized, "token is not valid"))
        }
        ClientOp::Send { channel, body, client_key, .. } => {
            if *channel != Channel::Chat {
                return Err(OpError::bad_request(format!(
                    "send posts chat messages only, not to '{}'",
                    channel.as_str()
                )));
            }
            if client_key.is_empty()
                || client_key.chars().count() > 64
                || client_key.chars().any(char::is_control)
            {
                return Err(OpError::bad_request(
                    "client_key must be 1 to 64 characters, none of them control characters",
                ));
            }
            if body.text.trim().is_empty() {
                return Err(OpError::bad_request("text is empty"));
            }
            if body.text.chars().count() > limits.max_text {
                return Err(OpError::new(
                    ErrorCode::TooLarge,
                    format!("text is longer than {} characters", limits.max_text),
                ));
            }
            if body.reply_to == Some(0) {
                return Err(OpError::bad_request("reply_to names no event of this group"));
            }
            crate::images::check_names(&body.images)
        }
        // --- images ---
        ClientOp::Post { event: EventBody::Notice(NoticeBody { images, .. }), .. }
        | ClientOp::Post { event: EventBody::Request(RequestBody { images, .. }), .. } => {
            crate::images::check_names(images)
        }
        // --- end images ---
        ClientOp::History { limit: Some(0), .. } | ClientOp::Audit { limit: Some(0), .. } => {
            Err(OpError::bad_request("limit must be at least 1"))
        }
        ClientOp::Reject { reason, .. }
        | ClientOp::Hide { reason, .. }
        | ClientOp::Mute { reason, .. }
        | ClientOp::Remove { reason, .. } => check_reason(reason),
        ClientOp::SetRole { reason: Some(reason), .. } | ClientOp::Transfer { reason: Some(reason), .. } => {
            check_reason(reason)
        }
        ClientOp::ChangePassword { new, .. } => crate::hub::check_new_password(new),
        _ => Ok(()),
    }
}

/// A moderation reason: not blank, at most `membership::MAX_REASON`
/// characters.
fn check_reason(reason: &str) -> Result<(), OpError> {
    if reason.trim().is_empty() {
        return Err(OpError::bad_request("give a reason"));
    }
    if reason.chars().count() > crate::membership::MAX_REASON {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!("reason is longer than {} characters", crate::membership::MAX_REASON),
        ));
    }
    Ok(())
}

/// The fuzz target for client frames: whatever the bytes, parsing and
/// validation answer without panicking, every refusal has a message, and an
/// op that parses serializes back to itself.
pub fn fuzz_client_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = Limits::default();
    match parse_op(text, limits.max_frame) {
        Ok(op) => {
            if let Err(e) = validate_op(&op, &limits) {
                assert!(!e.message.is_empty());
            }
            let again = serde_json::to_string(&op).expect("ops serialize");
            assert_eq!(parse_op(&again, usize::MAX).expect("a serialized op parses"), op);
        }
        Err((_, e)) => assert!(!e.message.is_empty()),
    }
}

/// The fuzz target for tokens: any string given to `hello` is judged
/// without panicking, and only a correctly signed, unexpired token passes.
pub fn fuzz_token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let key = crate::auth::TokenKey::new(b"fuzzing key, thirty-two bytes long".to_vec());
    let now = std::time::SystemTime::now();
    if let Ok(claims) = key.verify(text, now) {
        let (reissued, _) = key.issue(
            claims.sub,
            now,
            std::time::Duration::from_secs((claims.exp - claims.iat).max(1) as u64),
        );
        assert!(key.verify(&reissued, now).is_ok());
    }
}

/// The fuzz target for raw socket bytes after the upgrade: the WebSocket
/// layer with the server's configuration reads them without panicking, and
/// every text message it yields goes through `fuzz_client_frame`.
pub fn fuzz_ws_bytes(data: &[u8]) {
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
    use tokio_tungstenite::tungstenite::Message;

    /// Reads the fuzzer's bytes, swallows what the server writes.
    struct Wire<'a> {
        input: &'a [u8],
    }
    impl std::io::Read for Wire<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::io::Read::read(&mut self.input, buf)
        }
    }
    impl std::io::Write for Wire<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // A small frame limit keeps the hard limit (16×) small, for speed.
    let limits = Limits { max_frame: 4096, ..Limits::default() };
    let config = crate::http::ws_config(&limits);
    let mut ws = WebSocket::from_raw_socket(Wire { input: data }, Role::Server, Some(config));
    for _ in 0..64 {
        match ws.read() {
            Ok(Message::Text(text)) => fuzz_client_frame(text.as_bytes()),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_are_classified() {
        let max = 1024;
        let code = |text: &str| parse_op(text, max).unwrap_err().1.code;
        assert_eq!(code("not json"), ErrorCode::BadRequest);
        assert_eq!(code("[1,2]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"id":1}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"id":1,"op":"shout"}"#), ErrorCode::UnknownOp);
        assert_eq!(code(r#"{"id":1,"op":"subscribe","group":"four"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"id":1,"op":7}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(&format!(r#"{{"id":1,"op":"hello","token":"{}"}}"#, "x".repeat(2000))),
            ErrorCode::TooLarge
        );
        assert_eq!(parse_op(r#"{"id":9,"op":"shout"}"#, max).unwrap_err().0, Some(9));
        assert!(parse_op(r#"{"id":1,"op":"unsubscribe","group":4}"#, max).is_ok());
    }

    #[test]
    fn stateless_checks() {
        let limits = Limits::default();
        let op = |json: &str| parse_op(json, 1 << 20).unwrap();
        let code = |json: &str| validate_op(&op(json), &limits).unwrap_err().code;
        assert_eq!(
            code(
                r#"{"op":"send","id":1,"group":4,"channel":"notices","body":{"text":"x"},"client_key":"k"}"#
            ),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(
                r#"{"op":"send","id":1,"group":4,"channel":"chat","body":{"text":"x"},"client_key":"a\nb"}"#
            ),
            ErrorCode::BadRequest
        );
        assert_eq!(code(r#"{"op":"hello","id":1,"token":""}"#), ErrorCode::Unauthorized);
        // --- images ---
        assert_eq!(
            code(
                r#"{"op":"send","id":1,"group":4,"channel":"chat","body":{"text":"x","images":["../x"]},"client_key":"k"}"#
            ),
            ErrorCode::BadRequest
        );
        let ten = vec!["a".repeat(64); 10];
        let request = serde_json::json!({"op": "post", "id": 1, "group": 4,
            "event": {"kind": "request", "body": {"category": "其他", "text": "x", "images": ten}}});
        assert_eq!(code(&request.to_string()), ErrorCode::TooLarge);
        // --- end images ---
        assert_eq!(code(r#"{"op":"history","id":1,"group":4,"limit":0}"#), ErrorCode::BadRequest);
        assert!(validate_op(&op(r#"{"op":"history","id":1,"group":4,"limit":5}"#), &limits).is_ok());
    }
}
