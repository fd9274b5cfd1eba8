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
    /// Cadre or secretary: accept a pending applicant into the group (the
    /// real-name check is done). Reply: `done` with the directory seq.
    Approve { id: u64, group: Id, account: Id },
    /// Cadre or secretary: refuse a pending applicant, with a reason the
    /// applicant sees.
    Reject { id: u64, group: Id, account: Id, reason: String },
    /// The pending applications of a group (cadre, secretary).
    Applications { id: u64, group: Id },
    /// Volunteer, cadre or secretary: hide a chat message, with a reason.
    /// Reply: `done` with the seq of the `hide` event.
    Hide { id: u64, group: Id, seq: Seq, reason: String },
    /// Cadre or secretary: refuse a member's sends until `until` (ms since
    /// the epoch; a time in the past lifts the mute).
    Mute { id: u64, group: Id, account: Id, until: Millis, reason: String },
    /// Cadre or secretary: remove a member from the group.
    Remove { id: u64, group: Id, account: Id, reason: String },
    /// Secretary: make a member a `member`, `volunteer` or `cadre`.
    SetRole {
        id: u64,
        group: Id,
        account: Id,
        role: Role,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Secretary, or a town officer of the group's town: make another member
    /// the secretary (owner); the old secretary becomes a cadre.
    Transfer {
        id: u64,
        group: Id,
        account: Id,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The group's audit log, newest first (secretary, town and district
    /// officers).
    Audit {
        id: u64,
        group: Id,
        /// Only entries with `at < before`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Millis>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Revoke every token of this account issued until now and close all of
    /// its connections (this one after the reply).
    Logout { id: u64 },
    /// Change the password; revokes every earlier token like `logout`.
    ChangePassword { id: u64, old: String, new: String },
    // --- governance (notices, requests, deliberation, exchange, likes) ---
    /// Post an event of a governance channel (`notice`, `notice_read`,
    /// `request`, `request_reply`, …, `like`, `unlike`; see README). Reply:
    /// `sent`. `client_key` makes it idempotent like `send`.
    Post {
        id: u64,
        group: Id,
        event: EventBody,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_key: Option<String>,
    },
    /// Cadre, secretary, officer: read receipts of a notice per household.
    Unread { id: u64, group: Id, notice: Seq },
    /// Anyone who sees the group: check the disclosure hash chain.
    VerifyDisclosures { id: u64, group: Id },
    /// Request and exchange figures of a group, town or district.
    Figures { id: u64, scope: ScopeKind, of: Id },
    /// Like counts of some posts of a group.
    Likes { id: u64, group: Id, targets: Vec<Seq> },
    // --- broadcast, statistics, needs ---
    /// Town or district officer: post one notice into every group of the
    /// scope (`town:T` or `district:D`). Reply: `broadcast_sent`.
    Broadcast { id: u64, scope: String, title: String, text: String },
    /// Figures of a scope (`group:G`, `town:T`, `district:D`) over
    /// `[from, to)` (ms; absent = since the start / until now). Cadres and
    /// secretaries of the group, officers of the scope. Reply: `stats`.
    Stats {
        id: u64,
        scope: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Millis>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Millis>,
    },
    /// The TOP-10 needs of a scope over a period (same rights as `stats`).
    /// Reply: `needs`.
    Needs {
        id: u64,
        scope: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Millis>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Millis>,
    },
    // --- end broadcast, statistics, needs ---
    // --- presence ---
    /// How many members of a group are online (connected to this node);
    /// cadres, the secretary and officers also get who. Reply: `presence`.
    Presence { id: u64, group: Id },
    // --- end presence ---
    // --- early warnings ---
    /// Stored early warnings of a scope (`group:G` for its cadres, `town:T`,
    /// `district:D` for officers), newest first. Reply: `warnings`.
    Warnings {
        id: u64,
        scope: String,
        /// Only warnings with `seq < before`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Seq>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    // --- end early warnings ---
    // --- live statistics ---
    /// Figures of a scope since the start, then a `stats_update` push each
    /// time they change (at most about once a second). Same rights as
    /// `stats`. Reply: `stats`.
    WatchStats { id: u64, scope: String },
    /// Stop the pushes of a `watch_stats`. Reply: `done`.
    UnwatchStats { id: u64, scope: String },
    /// Officers: the escalated requests of a scope (`town:T`, `district:D`;
    /// `group:G` for its cadres), oldest escalation first. Reply: `escalated`.
    Escalated { id: u64, scope: String },
    // --- end live statistics ---
}

impl ClientOp {
    /// The client-chosen id that the reply will carry.
    pub fn id(&self) -> u64 {
        match self {
            ClientOp::Hello { id, .. }
            | ClientOp::Subscribe { id, .. }
            | ClientOp::Unsubscribe { id, .. }
            | ClientOp::Send { id, .. }
            | ClientOp::History { id, .. }
            | ClientOp::Approve { id, .. }
            | ClientOp::Reject { id, .. }
            | ClientOp::Applications { id, .. }
            | ClientOp::Hide { id, .. }
            | ClientOp::Mute { id, .. }
            | ClientOp::Remove { id, .. }
            | ClientOp::SetRole { id, .. }
            | ClientOp::Transfer { id, .. }
            | ClientOp::Audit { id, .. }
            | ClientOp::Logout { id }
            | ClientOp::ChangePassword { id, .. }
            | ClientOp::Post { id, .. }
            | ClientOp::Unread { id, .. }
            | ClientOp::VerifyDisclosures { id, .. }
            | ClientOp::Figures { id, .. }
            | ClientOp::Likes { id, .. }
            | ClientOp::Broadcast { id, .. }
            | ClientOp::Stats { id, .. }
            | ClientOp::Needs { id, .. }
            | ClientOp::Presence { id, .. }
            | ClientOp::Warnings { id, .. }
            | ClientOp::WatchStats { id, .. }
            | ClientOp::UnwatchStats { id, .. }
            | ClientOp::Escalated { id, .. } => *id,
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
            ClientOp::Approve { .. } => "approve",
            ClientOp::Reject { .. } => "reject",
            ClientOp::Applications { .. } => "applications",
            ClientOp::Hide { .. } => "hide",
            ClientOp::Mute { .. } => "mute",
            ClientOp::Remove { .. } => "remove",
            ClientOp::SetRole { .. } => "set_role",
            ClientOp::Transfer { .. } => "transfer",
            ClientOp::Audit { .. } => "audit",
            ClientOp::Logout { .. } => "logout",
            ClientOp::ChangePassword { .. } => "change_password",
            ClientOp::Post { .. } => "post",
            ClientOp::Unread { .. } => "unread",
            ClientOp::VerifyDisclosures { .. } => "verify_disclosures",
            ClientOp::Figures { .. } => "figures",
            ClientOp::Likes { .. } => "likes",
            ClientOp::Broadcast { .. } => "broadcast",
            ClientOp::Stats { .. } => "stats",
            ClientOp::Needs { .. } => "needs",
            ClientOp::Presence { .. } => "presence",
            ClientOp::Warnings { .. } => "warnings",
            ClientOp::WatchStats { .. } => "watch_stats",
            ClientOp::UnwatchStats { .. } => "unwatch_stats",
            ClientOp::Escalated { .. } => "escalated",
        }
    }
}

/// Every op name the server knows, so that an unknown `op` can be told apart
/// from a known op with bad fields.
pub const OP_NAMES: &[&str] = &[
    "hello",
    "subscribe",
    "unsubscribe",
    "send",
    "history",
    "approve",
    "reject",
    "applications",
    "hide",
    "mute",
    "remove",
    "set_role",
    "transfer",
    "audit",
    "logout",
    "change_password",
    // --- governance ---
    "post",
    "unread",
    "verify_disclosures",
    "figures",
    "likes",
    "broadcast",
    "stats",
    "needs",
    "presence",
    "warnings",
    "watch_stats",
    "unwatch_stats",
    "escalated",
];

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
    // --- images ---
    /// Pictures uploaded with `POST /api/images`, by hash; at most
    /// `MAX_IMAGES_PER_POST`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    // --- end images ---
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
    // --- broadcast, statistics, needs ---
    /// Reply to `broadcast`: one `broadcast` event was appended to each of
    /// these groups, all carrying this broadcast id.
    BroadcastSent { id: u64, broadcast: String, groups: Vec<Id> },
    /// Reply to `stats`.
    Stats { id: u64, stats: Stats },
    /// Reply to `needs`: at most ten, most frequent first.
    Needs { id: u64, scope: String, from: Millis, to: Millis, needs: Vec<Need> },
    // --- end broadcast, statistics, needs ---
    // --- early warnings ---
    /// Push to the cadres and officers in charge of a group: an early
    /// warning with its reason and links to the posts behind it.
    Warning(Warning),
    /// Reply to `warnings`: newest first; `more` when older ones exist.
    Warnings { id: u64, warnings: Vec<Warning>, more: bool },
    // --- end early warnings ---
    // --- live statistics ---
    /// Push after `watch_stats`: the scope's figures changed.
    StatsUpdate { stats: Stats },
    /// Reply to `escalated`.
    Escalated { id: u64, requests: Vec<EscalatedRequest> },
    /// Push to a group's subscribers: how many of its members are online
    /// (across every node) changed.
    PresenceUpdate { group: Id, online: u64 },
    // --- end live statistics ---
    // --- presence ---
    /// Reply to `presence`: members online; `who` (account ids) only for
    /// cadres, the secretary and officers.
    Presence {
        id: u64,
        group: Id,
        online: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        who: Option<Vec<Id>>,
    },
    // --- end presence ---
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
    /// Reply to an op that changed something (`approve`, `reject`, `hide`,
    /// `mute`, `remove`, `set_role`, `transfer`, `logout`,
    /// `change_password`): committed, as event `seq` of the directory log
    /// (or, for `hide`, of the group's log).
    Done {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<Seq>,
    },
    /// Reply to `applications`: pending applicants, oldest first.
    Applications { id: u64, group: Id, applications: Vec<ApplicationInfo> },
    /// Reply to `audit`: newest first. `more`: older entries exist (ask with
    /// `before` = the last entry's `at`).
    Audit { id: u64, group: Id, entries: Vec<AuditEntry>, more: bool },
    /// Push to the person concerned when their standing in a group changes:
    /// application approved or rejected, role changed, muted, removed.
    Membership(MembershipNotice),
    /// Push to the cadres and the secretary of a group (connected at the
    /// time) when someone applies to join it.
    Application(ApplicationInfo),
    // --- governance ---
    /// Reply to `unread`.
    Unread { id: u64, receipts: Receipts },
    /// Push to the group's connected cadres and secretary when a read
    /// receipt arrives.
    Receipts(Receipts),
    /// Reply to `verify_disclosures`.
    Disclosures { id: u64, report: ChainReport },
    /// Reply to `figures`.
    Figures { id: u64, figures: Figures },
    /// Reply to `likes`.
    Likes { id: u64, group: Id, counts: Vec<LikeCount> },
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
    /// Posts above the groups (town or district officer, admin).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offices: Vec<Office>,
    /// The account's application to join, while it is pending or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<ApplicationInfo>,
}

/// The authenticated account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    pub id: Id,
    pub name: String,
    /// Omitted when `active`. A `pending` or `rejected` account may log in
    /// and say hello but reads nothing.
    #[serde(default, skip_serializing_if = "AccountStatus::is_active")]
    pub status: AccountStatus,
    /// Party member (党员亮身份).
    #[serde(default, skip_serializing_if = "is_false")]
    pub party: bool,
}

/// Where an account stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    #[default]
    Active,
    /// Registered, waiting for a cadre's real-name check.
    Pending,
    /// The application was refused (see `application.reason`).
    Rejected,
    /// Disabled by an administrator: cannot log in.
    Disabled,
}

impl AccountStatus {
    pub fn is_active(&self) -> bool {
        *self == AccountStatus::Active
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Pending => "pending",
            AccountStatus::Rejected => "rejected",
            AccountStatus::Disabled => "disabled",
        }
    }
}

/// A post above the groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Office {
    /// Town officer: reads every group of the town (id of the town).
    Town(Id),
    /// District officer: reads every group of the district.
    District(Id),
    /// Administrator: org tree and accounts, no content rights.
    Admin,
}

/// A group the account may see: one it belongs to, or one in the town or
/// district it oversees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: Id,
    pub name: String,
    pub kind: GroupKind,
    /// The town (街镇) the group belongs to.
    pub town: String,
    /// The effective role: the member's role, or `town_officer` /
    /// `district_officer` for a group seen from above.
    pub role: Role,
    /// A migrant resident (外来人口) of this group.
    #[serde(default, skip_serializing_if = "is_false")]
    pub migrant: bool,
    /// The member's household in this group, if registered in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<HouseholdInfo>,
    /// Sends are refused until then (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<Millis>,
}

/// A household (户) of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdInfo {
    pub id: Id,
    pub address: String,
    /// Whether the account is the head of the household.
    #[serde(default, skip_serializing_if = "is_false")]
    pub head: bool,
}

/// An application to join a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicationInfo {
    pub account: Id,
    pub name: String,
    pub phone: String,
    pub group: Id,
    /// The household address given, for a registered resident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub migrant: bool,
    pub status: AccountStatus,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was filed, ms since the epoch.
    pub at: Millis,
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, ms since the epoch.
    pub at: Millis,
    pub action: AuditAction,
    /// Who did it.
    pub actor: Person,
    /// To whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Person>,
    /// The new role (`set_role`, `transfer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The hidden message (`hide`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
    /// Muted until (`mute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An account named in an audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: Id,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Approve,
    Reject,
    SetRole,
    Transfer,
    Hide,
    Mute,
    Remove,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Approve => "approve",
            AuditAction::Reject => "reject",
            AuditAction::SetRole => "set_role",
            AuditAction::Transfer => "transfer",
            AuditAction::Hide => "hide",
            AuditAction::Mute => "mute",
            AuditAction::Remove => "remove",
        }
    }

    pub fn parse(text: &str) -> Option<AuditAction> {
        [
            AuditAction::Approve,
            AuditAction::Reject,
            AuditAction::SetRole,
            AuditAction::Transfer,
            AuditAction::Hide,
            AuditAction::Mute,
            AuditAction::Remove,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }
}

/// Push: the account's standing in a group changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipNotice {
    pub group: Id,
    pub status: MembershipStatus,
    /// The role now held (`approved`, `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Muted until (`muted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipStatus {
    /// The application was accepted: the group can now be subscribed to.
    Approved,
    /// The application was refused.
    Rejected,
    /// The role in the group changed.
    Role,
    Muted,
    /// No longer a member: subscriptions to the group have ended.
    Removed,
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
    /// 党员/团员志愿者: may hide chat messages.
    Volunteer,
    /// 村/居委委员.
    Cadre,
    /// 书记: the group's owner; exactly one per group.
    Secretary,
    /// Not a member: sees the group as an officer of its town.
    TownOfficer,
    /// Not a member: sees the group as an officer of its district.
    DistrictOfficer,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Member,
        Role::Volunteer,
        Role::Cadre,
        Role::Secretary,
        Role::TownOfficer,
        Role::DistrictOfficer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Volunteer => "volunteer",
            Role::Cadre => "cadre",
            Role::Secretary => "secretary",
            Role::TownOfficer => "town_officer",
            Role::DistrictOfficer => "district_officer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
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
    /// Party member: clients show the badge (党员亮身份).
    #[serde(default, skip_serializing_if = "is_false")]
    pub party: bool,
    /// Migrant resident (外来人口): clients show the label.
    #[serde(default, skip_serializing_if = "is_false")]
    pub migrant: bool,
    /// Another government system posted this through the government API
    /// (`docs/API.md`): `name` is the system's name, `id` is 0 (as for the
    /// server's own events: no account), `role` the level of the key's
    /// scope. Clients show it as a system, not a person.
    #[serde(default, skip_serializing_if = "is_false")]
    pub system: bool,
}

/// The kinds of group events, each with its own body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum EventBody {
    /// A chat message.
    Message(MessageBody),
    /// A moderator hid the chat message `seq`.
    Hide(HideBody),
    /// A message that has been hidden, as stored history and backfill show
    /// it (the event keeps its seq, ts and author): members get no `text`,
    /// cadres and officers get the text as well.
    Hidden(HiddenBody),
    // --- notices ---
    Notice(NoticeBody),
    NoticeRead(NoticeReadBody),
    // --- requests ---
    Request(RequestBody),
    RequestReply(RequestReplyBody),
    RequestResolved(RequestResolvedBody),
    RequestEscalated(RequestEscalatedBody),
    RequestOverdue(RequestOverdueBody),
    RequestRated(RequestRatedBody),
    // --- deliberation ---
    Topic(TopicBody),
    TopicComment(TopicCommentBody),
    Vote(VoteBody),
    TopicClosed(TopicClosedBody),
    ProjectProgress(ProjectProgressBody),
    HallSettings(HallSettingsBody),
    // --- exchange ---
    Item(ItemBody),
    ItemClaimed(ItemRefBody),
    ItemHandedOver(ItemRefBody),
    // --- likes ---
    Like(LikeBody),
    Unlike(LikeBody),
    /// A town or district broadcast, as it shows in each group of its scope.
    Broadcast(BroadcastBody),
}

// --- broadcast ---
/// Body of a `broadcast` event: one such event is appended to the log of
/// every group in the scope, all with the same `broadcast` id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastBody {
    /// Shared by every copy of the broadcast.
    pub broadcast: String,
    /// `town:T` or `district:D`.
    pub scope: String,
    pub title: String,
    pub text: String,
}
// --- end broadcast ---

// --- statistics and needs ---
/// The figures of a scope over a period, computed from the group logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub scope: String,
    pub from: Millis,
    pub to: Millis,
    /// Groups in the scope.
    pub groups: u64,
    /// `notice` and `broadcast` events.
    pub notices: u64,
    /// Every event.
    pub interactions: u64,
    /// `like` events minus `unlike` events.
    pub likes: i64,
    /// Distinct authors.
    pub participants: u64,
    pub topics: u64,
    /// `topic_closed` with outcome `convention`.
    pub conventions: u64,
    /// `topic_closed` with outcome `project`.
    pub projects: u64,
    /// Requests filed.
    pub requests: u64,
    /// Distinct requests that got a `request_reply`.
    pub requests_answered: u64,
    /// `request_resolved` with `solved_in_group`.
    pub requests_solved_in_group: u64,
    /// Distinct requests escalated.
    pub requests_escalated: u64,
    /// `item_handed_over` events.
    pub exchanged_items: u64,
}

/// One of the TOP-10 needs: a request category (`category`) or a word of
/// requests and topics (`word`), with how often it occurs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    pub term: String,
    /// `category` or `word`.
    pub source: String,
    pub count: u64,
}
// --- end statistics and needs ---

// --- early warnings ---
/// An early warning: an event of the directory log (its `seq` there),
/// pushed live and listed by `warnings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Its seq in the directory log: the warning's id.
    pub seq: Seq,
    /// When it was raised (ms since the epoch).
    pub at: Millis,
    pub group: Id,
    /// `keyword` (a word of the lexicon), `spike` (message volume against
    /// the group's own recent baseline) or `overdue_backlog` (unanswered
    /// overdue requests).
    pub reason: String,
    /// For people: what was found.
    pub detail: String,
    /// The posts behind the warning.
    pub links: Vec<WarningLink>,
}

/// A post a warning points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarningLink {
    pub group: Id,
    pub seq: Seq,
}
// --- end early warnings ---

// --- live statistics ---
/// An escalated request, as officers list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalatedRequest {
    pub group: Id,
    /// The seq of the `request` event.
    pub seq: Seq,
    pub category: String,
    pub text: String,
    pub filed_at: Millis,
    pub escalated_at: Millis,
    /// `town` or `district`: the latest escalation's level.
    pub to: EscalationLevel,
    pub automatic: bool,
    /// `escalated` (nobody answered since), `responded` or `resolved`.
    pub status: String,
}
// --- end live statistics ---

/// Body of a `hide` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HideBody {
    /// The hidden message.
    pub seq: Seq,
    pub reason: String,
}

/// Body of a hidden message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HiddenBody {
    /// The seq of the `hide` event.
    pub hidden_by: Seq,
    pub reason: String,
    /// The original text; only for cadres, the secretary and officers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Seq>,
    // --- images ---
    /// The original pictures; like `text`, only for cadres, the secretary
    /// and officers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    // --- end images ---
}

impl EventBody {
    pub fn channel(&self) -> Channel {
        match self {
            EventBody::Message(_) | EventBody::Hide(_) | EventBody::Hidden(_) => Channel::Chat,
            EventBody::Notice(_) | EventBody::NoticeRead(_) => Channel::Notices,
            EventBody::Request(_)
            | EventBody::RequestReply(_)
            | EventBody::RequestResolved(_)
            | EventBody::RequestEscalated(_)
            | EventBody::RequestOverdue(_)
            | EventBody::RequestRated(_) => Channel::Requests,
            EventBody::Topic(_)
            | EventBody::TopicComment(_)
            | EventBody::Vote(_)
            | EventBody::TopicClosed(_)
            | EventBody::ProjectProgress(_)
            | EventBody::HallSettings(_) => Channel::Deliberation,
            EventBody::Item(_) | EventBody::ItemClaimed(_) | EventBody::ItemHandedOver(_) => {
                Channel::Exchange
            }
            // A like belongs to the channel of chat-wide interactions.
            EventBody::Like(_) | EventBody::Unlike(_) => Channel::Chat,
            EventBody::Broadcast(_) => Channel::Notices,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Message(_) => "message",
            EventBody::Hide(_) => "hide",
            EventBody::Hidden(_) => "hidden",
            EventBody::Notice(_) => "notice",
            EventBody::NoticeRead(_) => "notice_read",
            EventBody::Request(_) => "request",
            EventBody::RequestReply(_) => "request_reply",
            EventBody::RequestResolved(_) => "request_resolved",
            EventBody::RequestEscalated(_) => "request_escalated",
            EventBody::RequestOverdue(_) => "request_overdue",
            EventBody::RequestRated(_) => "request_rated",
            EventBody::Topic(_) => "topic",
            EventBody::TopicComment(_) => "topic_comment",
            EventBody::Vote(_) => "vote",
            EventBody::TopicClosed(_) => "topic_closed",
            EventBody::ProjectProgress(_) => "project_progress",
            EventBody::HallSettings(_) => "hall_settings",
            EventBody::Item(_) => "item",
            EventBody::ItemClaimed(_) => "item_claimed",
            EventBody::ItemHandedOver(_) => "item_handed_over",
            EventBody::Like(_) => "like",
            EventBody::Unlike(_) => "unlike",
            EventBody::Broadcast(_) => "broadcast",
        }
    }
}

// ===========================================================================
// Governance channels (notices, requests, deliberation, exchange, likes)
// ===========================================================================

// --- notices ---

/// Kind of a notice (公告).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeCategory {
    Announcement,
    /// 村务公开: hash-chained, never edited, only amended.
    Affairs,
    /// Party building (党建).
    Party,
    Election,
}

/// Body of a `notice` event. For `affairs`, the server fills `prev_hash`
/// (the group's previous disclosure's hash, absent for the first) and
/// `hash` = SHA-256 (hex) of the canonical content (see README) — anything a client
/// sends in those two fields is replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeBody {
    pub title: String,
    pub text: String,
    pub category: NoticeCategory,
    #[serde(default)]
    pub must_read: bool,
    /// The earlier disclosure this one amends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amends: Option<Seq>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    // --- images ---
    /// Pictures, by hash (see `MessageBody::images`); covered by a
    /// disclosure's hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    // --- end images ---
}

/// Body of a `notice_read` receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeReadBody {
    pub notice: Seq,
}

/// Read receipts of one notice, rolled up per household (reply to
/// `unread`, and pushed to the group's connected cadres on each receipt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipts {
    pub group: Id,
    pub notice: Seq,
    /// Distinct members who have read it.
    pub read_people: u32,
    /// Households with at least one reader.
    pub read_households: u32,
    /// Households of the group none of whose members has read it.
    pub unread: Vec<HouseholdRef>,
}

/// A household named in `Receipts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdRef {
    pub id: Id,
    pub address: String,
}

/// Result of `verify_disclosures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub group: Id,
    /// Disclosures checked, in seq order.
    pub checked: u32,
    pub ok: bool,
    /// The first broken link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<BrokenLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenLink {
    /// Seq of the disclosure whose link is broken.
    pub seq: Seq,
    pub reason: String,
}

// --- requests ---

/// Body of a `request` (诉求).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBody {
    /// One of `REQUEST_CATEGORIES`.
    pub category: String,
    pub text: String,
    // --- images ---
    /// Pictures, by hash (see `MessageBody::images`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    // --- end images ---
}

/// Request categories (from the reference deployment).
pub const REQUEST_CATEGORIES: &[&str] = &[
    "环境卫生",
    "垃圾分类",
    "停车",
    "物业服务",
    "房屋修缮",
    "危房改造",
    "治安",
    "噪音扰民",
    "违章搭建",
    "道路交通",
    "绿化",
    "水电燃气",
    "养老服务",
    "医疗卫生",
    "就业帮扶",
    "邻里纠纷",
    "文体活动",
    "其他",
];

/// Body of a `request_reply`: one entry of a request's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestReplyBody {
    pub request: Seq,
    pub text: String,
}

/// Body of `request_resolved`. `solved_in_group` is set by the server
/// (false once the request was escalated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestResolvedBody {
    pub request: Seq,
    #[serde(default)]
    pub solved_in_group: bool,
}

/// Where a request is escalated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationLevel {
    Town,
    District,
}

/// Body of `request_escalated`; `automatic` is set by the server only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEscalatedBody {
    pub request: Seq,
    pub to: EscalationLevel,
    pub reason: String,
    #[serde(default)]
    pub automatic: bool,
}

/// Body of `request_overdue` (appended by the server only) and of other
/// events naming one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOverdueBody {
    pub request: Seq,
}

/// Body of `request_rated`: the filer's satisfaction after resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRatedBody {
    pub request: Seq,
    /// 1 to 5.
    pub stars: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Levels at which figures are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Group,
    Town,
    District,
}

/// Request and exchange figures of one scope (reply to `figures`, and the
/// body of `GET /api/requests/figures`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub scope: ScopeKind,
    /// The group, town or district id.
    pub of: Id,
    pub requests: u32,
    /// Requests with at least one reply.
    pub responded: u32,
    /// `responded / requests`, per mille (1000 when there are none).
    pub reply_rate: u32,
    /// Requests first answered within the first-response window, per mille
    /// of all requests.
    pub on_time_rate: u32,
    /// Median time to first response, ms (absent without responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_first_response_ms: Option<i64>,
    pub resolved: u32,
    /// Resolved requests solved without escalation, per mille of resolved.
    pub solved_in_group_rate: u32,
    pub escalations: u32,
    pub overdue: u32,
    pub offers: u32,
    pub wants: u32,
    pub claimed: u32,
    pub handed_over: u32,
}

// --- deliberation ---

/// How votes are counted on a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Voting {
    /// One vote per household (the latest vote of any of its members).
    #[default]
    Household,
    Person,
}

/// Who may propose topics in a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proposers {
    #[default]
    Members,
    Cadres,
}

/// Body of a `topic` (议事厅). `voting` is set by the server from the
/// group's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicBody {
    pub title: String,
    pub text: String,
    /// End of the voting window, ms since the epoch.
    pub vote_until: Millis,
    #[serde(default)]
    pub voting: Voting,
    /// What a passed topic becomes (default `convention`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposes: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicCommentBody {
    pub topic: Seq,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    Yes,
    No,
    Abstain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteBody {
    pub topic: Seq,
    pub choice: Choice,
}

/// The outcome of a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 公约.
    Convention,
    /// 项目: progress is tracked with `project_progress`.
    Project,
    #[default]
    Rejected,
}

/// Body of `topic_closed`. The server counts the votes and decides the
/// outcome (more yes than no: the topic's `proposes`; else rejected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicClosedBody {
    pub topic: Seq,
    #[serde(default)]
    pub yes: u32,
    #[serde(default)]
    pub no: u32,
    #[serde(default)]
    pub abstain: u32,
    #[serde(default)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectProgressBody {
    pub topic: Seq,
    pub status: String,
    /// 0 to 100.
    pub percent: u8,
    pub note: String,
}

/// Body of `hall_settings`: the group's deliberation settings (secretary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HallSettingsBody {
    pub proposers: Proposers,
    pub voting: Voting,
}

// --- exchange ---

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemMode {
    Offer,
    Want,
}

/// Body of an `item` (公益置换).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemBody {
    pub mode: ItemMode,
    pub title: String,
    pub text: String,
}

/// Body of `item_claimed` and `item_handed_over`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRefBody {
    pub item: Seq,
}

// --- likes ---

/// Body of `like` and `unlike`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeBody {
    pub target: Seq,
}

/// Likes of one post (reply to `likes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LikeCount {
    pub target: Seq,
    pub count: u32,
    /// The asking account likes it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub mine: bool,
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
    /// The account's tokens were revoked (logout, password change, account
    /// disabled): log in again.
    pub const REVOKED: u16 = 4003;
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

/// `POST /api/register` request body: a new account, pending until a cadre
/// of `group` approves it. A registered resident (户籍) gives `household`;
/// a migrant resident (外来人口) sets `migrant` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Real name.
    pub name: String,
    pub phone: String,
    pub password: String,
    pub group: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<HouseholdRequest>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub migrant: bool,
}

/// The household a registering resident lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdRequest {
    /// Address or household number, e.g. "聚源桥村12组38号".
    pub address: String,
}

/// Body of a 2xx `/api` response that carries no data (`register`,
/// `logout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiStatus {
    pub status: String,
    pub message: String,
}

// --- images ---

/// Most pictures one message, notice or request may carry.
pub const MAX_IMAGES_PER_POST: usize = 9;

/// The picture types `POST /api/images` accepts (checked against the
/// bytes themselves).
pub const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp", "image/gif"];

/// Body of the `POST /api/images` response: the picture's name (SHA-256 of
/// its bytes, 64 lowercase hex digits), its type and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUploaded {
    pub image: String,
    #[serde(rename = "type")]
    pub content_type: String,
    pub size: u64,
}

/// Whether `text` is a well-formed picture name: 64 lowercase hex digits.
pub fn is_image_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// --- end images ---

/// Body of every non-2xx `/api` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

// --- government api ---
// The HTTP API for other government systems under `/api/v1/`
// (`docs/API.md`): authenticated by an API key, not by an account.

/// `POST /api/v1/notices` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiNoticeRequest {
    /// Groups to post into; absent: every group of the key's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Id>>,
    pub kind: ApiNoticeKind,
    pub title: String,
    pub text: String,
    #[serde(default)]
    pub must_read: bool,
    /// Makes retries idempotent: the same key (from the same API key) never
    /// posts twice into a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

/// The kind of a notice posted through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiNoticeKind {
    Announcement,
    /// An affairs disclosure (村务公开): hash-chained like a cadre's.
    #[serde(alias = "affairs")]
    Disclosure,
    Party,
    Election,
}

impl ApiNoticeKind {
    pub fn category(self) -> NoticeCategory {
        match self {
            ApiNoticeKind::Announcement => NoticeCategory::Announcement,
            ApiNoticeKind::Disclosure => NoticeCategory::Affairs,
            ApiNoticeKind::Party => NoticeCategory::Party,
            ApiNoticeKind::Election => NoticeCategory::Election,
        }
    }
}

/// `201` answer to `POST /api/v1/notices`: where the notice landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiNoticePosted {
    pub groups: Vec<ApiNoticePlaced>,
}

/// The notice's event in one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiNoticePlaced {
    pub group: Id,
    pub seq: Seq,
    /// A retry with the same `client_key`: this is the earlier event.
    #[serde(default, skip_serializing_if = "is_false")]
    pub duplicate: bool,
}

/// Open311 status of a request: `closed` once resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceRequestStatus {
    Open,
    Closed,
}

/// Where a request stands in villagehub's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStage {
    /// Filed, no reply yet.
    Filed,
    /// At least one reply, not resolved.
    Responded,
    /// Escalated to the town or district, not resolved.
    Escalated,
    Resolved,
}

/// One request (诉求) in Open311 GeoReport v2 shape, plus villagehub's
/// own fields. Datetimes are RFC 3339 (UTC); absent fields are unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequest {
    /// `GROUP-SEQ`, e.g. `4-12`.
    pub service_request_id: String,
    pub status: ServiceRequestStatus,
    /// The latest reply's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_notes: Option<String>,
    /// The request category (one of the categories of `/api/v1/services`).
    pub service_code: String,
    pub service_name: String,
    pub description: String,
    /// The group, or the town or district it was escalated to.
    pub agency_responsible: String,
    pub requested_datetime: String,
    /// The latest event of the request.
    pub updated_datetime: String,
    /// When the first response is (or was) due.
    pub expected_datetime: String,
    // villagehub's own fields
    pub group: Id,
    pub stage: RequestStage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_to: Option<EscalationLevel>,
    /// The filer's rating, 1 to 5 stars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    /// Replies so far.
    pub replies: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_response_datetime: Option<String>,
    /// The first response came (or is still missing) after it was due.
    #[serde(default, skip_serializing_if = "is_false")]
    pub overdue: bool,
}

/// One request category in Open311 service-list shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub service_code: String,
    pub service_name: String,
    pub description: String,
    /// Always false: a request has no attributes beyond its text.
    pub metadata: bool,
    /// Always `realtime`.
    #[serde(rename = "type")]
    pub kind: String,
    pub keywords: String,
    /// The channel: `requests`.
    pub group: String,
    /// Requests of this category in the scope (villagehub's own field).
    pub requests: u64,
}
// --- end government api ---

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
    fn roles_are_ordered_and_named() {
        assert!(
            Role::Member < Role::Volunteer && Role::Volunteer < Role::Cadre && Role::Cadre < Role::Secretary
        );
        for role in Role::ALL {
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{}\"", role.as_str()));
            assert_eq!(Role::parse(role.as_str()), Some(role));
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
            r#"{"op":"approve","id":1,"group":1,"account":2}"#,
            r#"{"op":"reject","id":1,"group":1,"account":2,"reason":"r"}"#,
            r#"{"op":"applications","id":1,"group":1}"#,
            r#"{"op":"hide","id":1,"group":1,"seq":2,"reason":"r"}"#,
            r#"{"op":"mute","id":1,"group":1,"account":2,"until":0,"reason":"r"}"#,
            r#"{"op":"remove","id":1,"group":1,"account":2,"reason":"r"}"#,
            r#"{"op":"set_role","id":1,"group":1,"account":2,"role":"volunteer"}"#,
            r#"{"op":"transfer","id":1,"group":1,"account":2}"#,
            r#"{"op":"audit","id":1,"group":1}"#,
            r#"{"op":"logout","id":1}"#,
            r#"{"op":"change_password","id":1,"old":"a","new":"b"}"#,
            r#"{"op":"post","id":1,"group":1,"event":{"kind":"like","body":{"target":3}}}"#,
            r#"{"op":"unread","id":1,"group":1,"notice":3}"#,
            r#"{"op":"verify_disclosures","id":1,"group":1}"#,
            r#"{"op":"figures","id":1,"scope":"town","of":1}"#,
            r#"{"op":"likes","id":1,"group":1,"targets":[3]}"#,
            r#"{"op":"broadcast","id":1,"scope":"town:2","title":"t","text":"x"}"#,
            r#"{"op":"stats","id":1,"scope":"group:4"}"#,
            r#"{"op":"needs","id":1,"scope":"group:4"}"#,
            r#"{"op":"presence","id":1,"group":4}"#,
            r#"{"op":"warnings","id":1,"scope":"group:4"}"#,
            r#"{"op":"watch_stats","id":1,"scope":"group:4"}"#,
            r#"{"op":"unwatch_stats","id":1,"scope":"group:4"}"#,
            r#"{"op":"escalated","id":1,"scope":"town:2"}"#,
        ];
        assert_eq!(ops.len(), OP_NAMES.len());
        for (json, name) in ops.iter().zip(OP_NAMES) {
            let op: ClientOp = serde_json::from_str(json).unwrap();
            assert_eq!(op.name(), *name);
        }
    }
}
