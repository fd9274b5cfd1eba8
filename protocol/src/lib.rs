//! The villagehub wire protocol: every frame a client may send, every frame
//! the server may send, and the closed list of error codes.
//!
//! This crate owns the *shape* of the JSON on the wire and nothing else: it
//! depends on serde only, so the server, the bench client, the tests and the
//! documentation examples (`README.md`, parsed by `tests/examples.rs`) all
//! share one definition. Behaviour (who may do what, ordering, durability)
//! lives in the server and is described in `README.md`.
//!
//! Conventions: client frames are tagged by `"op"`, server frames by
//! `"type"`; optional fields are left out rather than sent as `null`;
//! unknown fields are ignored so that newer servers and clients interoperate.

use serde::{Deserialize, Serialize};

/// Version announced in the `welcome` reply; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Ids of groups, accounts and every other directory object. Group and
/// account ids are assigned by the directory log and never reused.
pub type Id = u64;

/// Position of an event in its log: gap-free, starting at 1.
pub type Seq = u64;

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

// ---------------------------------------------------------------------------
// Client → server
// ---------------------------------------------------------------------------

/// A frame sent by a client. Every op carries an `id` chosen by the client;
/// the server answers each op with exactly one reply frame carrying the same
/// `id` (a result frame or an `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClientOp {
    /// Authenticate the connection with a token from `POST /api/login`.
    /// Must be the first op, sent within the server's auth timeout.
    Hello {
        id: u64,
        token: String,
        /// Free-form client name and version, for logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Start receiving a group's events. With `since`, first every event with
    /// `seq > since` (in order, exactly once), then live events. Without
    /// `since`, live events only (use `history` for the past).
    Subscribe {
        id: u64,
        group: Id,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Seq>,
    },
    /// Stop receiving a group's events.
    Unsubscribe { id: u64, group: Id },
    /// Post a chat message. `client_key` makes the send idempotent: a retry
    /// with the same key (from the same account) returns the first event's
    /// seq and creates nothing new.
    Send { id: u64, group: Id, channel: Channel, body: MessageBody, client_key: String },
    /// Read a page of a group's past events, newest page first, events in
    /// ascending seq order within the page.
    History {
        id: u64,
        group: Id,
        /// Only events with `seq < before`; absent = up to the newest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Seq>,
        /// At most this many events (server caps it; see `Limits`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

impl ClientOp {
    /// The client-chosen id that the reply will carry.
    pub fn id(&self) -> u64 {
        match self {
            ClientOp::Hello { id, .. }
            | ClientOp::Subscribe { id, .. }
            | ClientOp::Unsubscribe { id, .. }
            | ClientOp::Send { id, .. }
            | ClientOp::History { id, .. } => *id,
        }
    }

    /// The op's name as it appears on the wire, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            ClientOp::Hello { .. } => "hello",
            ClientOp::Subscribe { .. } => "subscribe",
            ClientOp::Unsubscribe { .. } => "unsubscribe",
            ClientOp::Send { .. } => "send",
            ClientOp::History { .. } => "history",
        }
    }
}

/// Every op name the server knows, so that an unknown `op` can be told apart
/// from a known op with bad fields.
pub const OP_NAMES: &[&str] = &["hello", "subscribe", "unsubscribe", "send", "history"];

/// The five channels of a group. Every event belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// 群聊: text messages, replies, likes, moderation.
    Chat,
    /// 公告: cadre notices and read receipts.
    Notices,
    /// 诉求: residents' requests and cadres' responses.
    Requests,
    /// 议事厅: topics, discussion, votes, outcomes.
    Deliberation,
    /// 公益置换: offer / want / claim / hand over.
    Exchange,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Chat => "chat",
            Channel::Notices => "notices",
            Channel::Requests => "requests",
            Channel::Deliberation => "deliberation",
            Channel::Exchange => "exchange",
        }
    }
}

/// The body of a chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    /// The text, at most `Limits::max_text` characters, not blank.
    pub text: String,
    /// The seq of the message in the same group this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Seq>,
}

// ---------------------------------------------------------------------------
// Server → client
// ---------------------------------------------------------------------------

/// A frame sent by the server: a reply to one op (it carries the op's `id`),
/// or a push (`event`) that carries no id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Reply to `hello`: who you are, where you belong, what the limits are.
    Welcome(Welcome),
    /// Reply to `subscribe`. Backfill (if `since` was given) and then live
    /// events follow as `event` pushes.
    Subscribed { id: u64, group: Id, head: Seq },
    /// Reply to `unsubscribe`; no further events of that group follow.
    Unsubscribed { id: u64, group: Id },
    /// Reply to `send`: the message is durable with this seq. `duplicate` is
    /// true when the client_key had been used before and nothing new was made.
    Sent {
        id: u64,
        group: Id,
        seq: Seq,
        #[serde(default, skip_serializing_if = "is_false")]
        duplicate: bool,
    },
    /// Reply to `history`.
    History {
        id: u64,
        group: Id,
        /// Ascending by seq. Each element is an `event` frame.
        events: Vec<Event>,
        /// True when older events exist: ask again with `before` set to the
        /// first event's seq.
        more: bool,
    },
    /// A group event, pushed to every subscriber, exactly once, in seq order.
    Event(Event),
    /// Reply to an op that failed, or (with no `id`) a frame the server could
    /// not attribute to an op, such as malformed JSON.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Reply to `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub id: u64,
    /// `PROTOCOL_VERSION` of the server.
    pub protocol: u32,
    /// Server name and version.
    pub server: String,
    pub account: AccountInfo,
    /// The groups the account may subscribe to, with its role in each.
    pub groups: Vec<GroupInfo>,
    pub limits: Limits,
}

/// The authenticated account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub id: Id,
    pub name: String,
}

/// A group the account belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: Id,
    pub name: String,
    pub kind: GroupKind,
    /// The town (街镇) the group belongs to.
    pub town: String,
    pub role: Role,
}

/// Village (村) or neighbourhood committee (居委).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    Village,
    Neighbourhood,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Village => "village",
            GroupKind::Neighbourhood => "neighbourhood",
        }
    }
}

/// A member's role inside one group, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Cadre,
    /// 书记: the group's owner; exactly one per group.
    Secretary,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Cadre => "cadre",
            Role::Secretary => "secretary",
        }
    }
}

/// Limits the server enforces, announced so that clients can respect them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest accepted text frame in bytes; larger ones get `too_large`.
    pub max_frame: u32,
    /// Longest message text in characters.
    pub max_text: u32,
    /// Sustained ops per second per connection; bursts up to `burst`.
    pub ops_per_sec: u32,
    pub burst: u32,
    /// Largest `history` page.
    pub history_limit: u32,
}

/// One event of a group's log as pushed to clients and returned by `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub group: Id,
    pub seq: Seq,
    /// Commit time, milliseconds since the epoch; never decreases within a
    /// group.
    pub ts: Millis,
    pub author: Author,
    pub channel: Channel,
    /// `kind` names the event and `body` holds its fields.
    #[serde(flatten)]
    pub body: EventBody,
}

/// Who made an event, as they were when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub id: Id,
    pub name: String,
    pub role: Role,
}

/// The kinds of group events, each with its own body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum EventBody {
    /// A chat message.
    Message(MessageBody),
}

impl EventBody {
    pub fn channel(&self) -> Channel {
        match self {
            EventBody::Message(_) => Channel::Chat,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Message(_) => "message",
        }
    }
}

/// The closed list of error codes. Each error frame carries one, plus a
/// human-readable message that clients may show but must not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON, lacks a field, has a field of the wrong
    /// type, or a value out of range; also binary frames.
    BadRequest,
    /// The `op` is not one the server knows.
    UnknownOp,
    /// No valid `hello` yet, or the token is missing, forged or expired.
    Unauthorized,
    /// Authenticated, but not allowed to do this here.
    Forbidden,
    /// The group (or other object) does not exist or is not visible to you.
    NotFound,
    /// The frame or a field exceeds a limit.
    TooLarge,
    /// Too many ops; wait and retry.
    RateLimited,
    /// The op conflicts with the current state (e.g. `hello` twice).
    Conflict,
    /// The server cannot accept writes right now (shutting down, store or
    /// sequencer unavailable); retry, on another node if need be.
    Unavailable,
    /// A bug or an unexpected failure on the server; nothing was committed.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status the same condition gets on `/api`.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::UnknownOp => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Conflict => 409,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// WebSocket close codes the server uses.
pub mod close {
    /// Server shutting down or draining: reconnect (to any node) and resume
    /// with `since`.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame larger than the hard frame limit; the connection cannot be
    /// resynchronised.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// No successful `hello` within the auth timeout.
    pub const AUTH_TIMEOUT: u16 = 4001;
    /// The client did not read its events fast enough for too long.
    pub const TOO_SLOW: u16 = 4008;
    /// The client kept flooding after `rate_limited` replies.
    pub const FLOOD: u16 = 4029;
}

// ---------------------------------------------------------------------------
// HTTP API (/api)
// ---------------------------------------------------------------------------

/// `POST /api/login` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub phone: String,
    pub password: String,
}

/// `POST /api/login` response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Bearer token for `hello` (and for `Authorization: Bearer` on /api).
    pub token: String,
    /// When the token stops being accepted, ms since the epoch.
    pub expires_at: Millis,
    pub account: AccountInfo,
}

/// Body of every non-2xx `/api` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_names_match_serde() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn op_names_cover_every_op() {
        let ops = [
            r#"{"op":"hello","id":1,"token":"t"}"#,
            r#"{"op":"subscribe","id":1,"group":1}"#,
            r#"{"op":"unsubscribe","id":1,"group":1}"#,
            r#"{"op":"send","id":1,"group":1,"channel":"chat","body":{"text":"x"},"client_key":"k"}"#,
            r#"{"op":"history","id":1,"group":1}"#,
        ];
        assert_eq!(ops.len(), OP_NAMES.len());
        for (json, name) in ops.iter().zip(OP_NAMES) {
            let op: ClientOp = serde_json::from_str(json).unwrap();
            assert_eq!(op.name(), *name);
        }
    }
}
