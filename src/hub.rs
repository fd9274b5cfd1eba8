//! The hub: the state one node shares between its connections (directory,
//! fan-out, log, store, token key) and the service layer that checks each
//! op against the directory and turns it into an append, a store read or a
//! refusal. Nothing here touches a socket; `session.rs` does the framing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use protocol::{
    AccountInfo, AccountStatus, ApplicationInfo, AuditEntry, Author, ErrorCode, EventBody, HideBody, Id,
    MessageBody, Millis, Role, Seq, Welcome, PROTOCOL_VERSION,
};

use crate::auth::{unix_millis, TokenError, TokenKey};
use crate::config::Config;
use crate::directory::{Directory, DirectoryChange};
use crate::external::ExternalKeys;
use crate::fanout::Fanout;
use crate::limiter::LoginLimiter;
use crate::log::{Append, Appended, Log, LogError};
use crate::membership::{Sight, MAX_REASON};
use crate::store::{Store, StoreError, StoredEvent};

/// A refused op: a wire error code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OpError {
        OpError { code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> OpError {
        OpError::new(ErrorCode::BadRequest, message)
    }
    pub fn no_such_group() -> OpError {
        OpError::new(ErrorCode::NotFound, "no such group")
    }
}

impl From<LogError> for OpError {
    fn from(e: LogError) -> OpError {
        match e {
            LogError::Unavailable(message) => OpError::new(ErrorCode::Unavailable, message),
            LogError::Refused(refusal) => OpError::new(refusal.code(), refusal.to_string()),
        }
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> OpError {
        tracing::error!(error = %e, "store read failed");
        OpError::new(ErrorCode::Unavailable, "the store cannot be read right now")
    }
}

/// Node-wide counters for /metrics (the log and fan-out keep their own).
#[derive(Debug, Default)]
pub struct HubMetrics {
    pub connections: AtomicI64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub ops: AtomicU64,
    pub errors: AtomicU64,
}

/// The authenticated side of a connection.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Id,
    pub name: String,
    /// When the connection's token was issued (ms): a revocation after this
    /// closes the connection.
    pub issued_ms: Millis,
}

pub struct Hub {
    pub config: Config,
    pub store: Arc<Store>,
    /// Read on every op, written only by the log writer. A std RwLock: held
    /// for a lookup and never across an await.
    pub directory: Arc<RwLock<Directory>>,
    pub fanout: Arc<Fanout>,
    pub log: Log,
    pub tokens: TokenKey,
    pub metrics: HubMetrics,
    /// Password hashes in progress at once. Each costs ~19 MiB and ~20 ms of
    /// a core, so a login flood queues here instead of exhausting memory.
    pub password_permits: tokio::sync::Semaphore,
    /// Keys of the external real-name system's tokens (`external.rs`).
    pub external: ExternalKeys,
    /// Login and register attempts per phone and source address.
    pub login_limiter: LoginLimiter,
    /// Live WebSocket connections per account and per source address, for
    /// `--max-connections-per-account` / `--max-connections-per-ip`.
    connection_counts: Mutex<HashMap<SlotKey, usize>>,
    next_conn: AtomicU64,
    /// The governance clock and the disclosure chain's lock.
    pub governance: crate::governance::Governance,
    /// This node's pictures (`images.rs`); shared with the cluster feed.
    pub images: Arc<crate::images::Images>,
    /// Requests per API key of the government API (`gov_api`).
    pub api_limiter: crate::gov_api::KeyLimiter,
    /// This node's name and the nodes counted for presence.
    pub presence: crate::presence::Presence,
}

/// What a connection slot is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKey {
    Account(Id),
    Address(IpAddr),
}

/// One counted connection; gives its place back when dropped.
pub struct Slot {
    hub: Arc<Hub>,
    key: SlotKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.hub.connection_counts.lock().unwrap();
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

impl Hub {
    pub fn new(
        config: Config,
        store: Arc<Store>,
        directory: Arc<RwLock<Directory>>,
        fanout: Arc<Fanout>,
        log: Log,
        tokens: TokenKey,
    ) -> Hub {
        let external =
            ExternalKeys::from_config(&config.auth).expect("external keys are checked by the config");
        let login_limiter =
            LoginLimiter::new(config.auth.login_failures_per_phone, config.auth.login_attempts_per_address);
        Hub {
            api_limiter: crate::gov_api::KeyLimiter::new(config.api_requests_per_minute),
            governance: crate::governance::Governance::new(config.governance.clone()),
            images: Arc::new(crate::images::Images::new(&config.data_dir, config.images.clone())),
            presence: crate::presence::Presence::default(),
            external,
            login_limiter,
            config,
            store,
            directory,
            fanout,
            log,
            tokens,
            metrics: HubMetrics::default(),
            password_permits: tokio::sync::Semaphore::new(2),
            connection_counts: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Takes one connection slot for `key`, unless `limit` (0: none) are
    /// taken already.
    pub fn claim_slot(self: &Arc<Self>, key: SlotKey, limit: usize) -> Option<Slot> {
        let mut counts = self.connection_counts.lock().unwrap();
        let n = counts.entry(key).or_insert(0);
        if limit > 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot { hub: self.clone(), key })
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// `hello`: the token (ours, or the external real-name system's) names
    /// an account that is not disabled, and was issued after the account's
    /// last logout or password change.
    pub fn authenticate(&self, token: &str, op_id: u64) -> Result<(Account, Welcome), OpError> {
        let now = SystemTime::now();
        let refused = |e: TokenError| {
            let message = match e {
                TokenError::Expired => "token has expired; log in again",
                TokenError::Malformed | TokenError::BadSignature => "token is not valid",
            };
            OpError::new(ErrorCode::Unauthorized, message)
        };
        let invalid = || OpError::new(ErrorCode::Unauthorized, "token is not valid");
        // Ours first; a token that is not ours may be the external system's.
        let (subject, issued_ms) = match self.tokens.verify(token, now) {
            Ok(claims) => (Subject::Account(claims.sub), claims.issued_ms()),
            Err(TokenError::Expired) => return Err(refused(TokenError::Expired)),
            Err(e) if !self.external.enabled() => return Err(refused(e)),
            Err(_) => {
                let claims = self.external.verify(token, now).map_err(refused)?;
                (Subject::Person { phone: claims.phone, name: claims.name }, claims.iat.saturating_mul(1000))
            }
        };
        let dir = self.directory.read().unwrap();
        let record = match &subject {
            Subject::Account(id) => dir.accounts.get(id).ok_or_else(invalid)?,
            Subject::Person { phone, name } => {
                let record = dir.account_by_phone(phone).ok_or_else(invalid)?;
                if record.name != *name {
                    return Err(OpError::new(
                        ErrorCode::Unauthorized,
                        "the token's name does not match the account",
                    ));
                }
                record
            }
        };
        let state = dir.people.state(record.id).clone();
        if state.status == AccountStatus::Disabled {
            return Err(OpError::new(ErrorCode::Unauthorized, "the account is disabled"));
        }
        if issued_ms < state.tokens_valid_after {
            return Err(OpError::new(ErrorCode::Unauthorized, "token has been revoked; log in again"));
        }
        let account = Account { id: record.id, name: record.name.clone(), issued_ms };
        let welcome = Welcome {
            id: op_id,
            protocol: PROTOCOL_VERSION,
            server: concat!("villagehub/", env!("CARGO_PKG_VERSION")).to_string(),
            account: AccountInfo {
                id: account.id,
                name: account.name.clone(),
                status: state.status,
                party: state.party,
            },
            groups: dir.visible_groups(account.id),
            limits: self.config.limits.to_wire(),
            offices: state.offices.clone(),
            application: (state.status != AccountStatus::Active)
                .then(|| dir.application_info(account.id))
                .flatten(),
        };
        Ok((account, welcome))
    }

    /// How the account sees a group. A group it may not see gets the same
    /// answer as one that does not exist, so ids cannot be probed.
    pub fn sight(&self, account: &Account, group: Id) -> Result<Sight, OpError> {
        let sight =
            self.directory.read().unwrap().sight(account.id, group).ok_or_else(OpError::no_such_group)?;
        self.serves(group)?;
        Ok(sight)
    }

    /// The account's effective role in a group it may read.
    pub fn role_in(&self, account: &Account, group: Id) -> Result<Role, OpError> {
        self.sight(account, group).map(|s| s.role())
    }

    /// Cluster mode: a node missing events of a group that Redis no longer
    /// holds serves nothing of it until restored from a backup.
    pub fn serves(&self, group: Id) -> Result<(), OpError> {
        match self.log.cluster() {
            Some(cluster) if !cluster.serves(group) => Err(OpError::new(
                ErrorCode::Unavailable,
                "this node is missing events of this group; connect to another node",
            )),
            _ => Ok(()),
        }
    }

    /// `send` on the chat channel: validate, then append durably.
    pub async fn send_message(
        &self,
        account: &Account,
        group: Id,
        body: MessageBody,
        client_key: String,
    ) -> Result<Appended, OpError> {
        // Sizes and keys were checked by `wire::validate_op`; what needs the
        // directory and the log is checked here.
        let author = {
            let dir = self.directory.read().unwrap();
            let sight = dir.sight(account.id, group).ok_or_else(OpError::no_such_group)?;
            if !sight.may_send() {
                return Err(OpError::new(ErrorCode::Forbidden, "only members of the group post in its chat"));
            }
            let flags = dir.people.member(account.id, group);
            if let Some(until) = flags.muted_until.filter(|u| *u > unix_millis(SystemTime::now())) {
                return Err(OpError::new(
                    ErrorCode::Forbidden,
                    format!("you are muted in this group until {until} (ms since the epoch)"),
                ));
            }
            Author {
                id: account.id,
                name: account.name.clone(),
                role: sight.role(),
                party: dir.people.state(account.id).party,
                migrant: flags.migrant,
                system: false,
            }
        };
        self.serves(group)?;
        // Only a message with pictures pays for looking them up.
        if !body.images.is_empty() {
            self.check_images(&body.images).await?;
        }
        if let Some(target) = body.reply_to {
            if target == 0 || target > self.fanout.head(group) {
                return Err(OpError::bad_request("reply_to names no event of this group"));
            }
        }
        let append =
            Append::Group { group, author, client_key: Some(client_key), body: EventBody::Message(body) };
        Ok(self.log.append(append).await?)
    }

    /// `history`: a page of stored frames, oldest first.
    pub async fn history(
        self: &Arc<Self>,
        account: &Account,
        group: Id,
        before: Option<Seq>,
        limit: Option<u32>,
    ) -> Result<(Vec<StoredEvent>, bool), OpError> {
        let moderator = self.sight(account, group)?.sees_hidden();
        let cap = self.config.limits.history_limit;
        let limit = limit.unwrap_or(cap).clamp(1, cap);
        let hub = self.clone();
        tokio::task::spawn_blocking(move || hub.store.history_as(group, before, limit, moderator))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
            .map_err(OpError::from)
    }

    /// Events of a group after `after`, for backfill and lag recovery;
    /// hidden messages as a member (or, `moderator`, a cadre) reads them.
    pub async fn events_after(
        self: &Arc<Self>,
        group: Id,
        after: Seq,
        moderator: bool,
    ) -> Result<Vec<StoredEvent>, OpError> {
        let hub = self.clone();
        let page = self.config.limits.backfill_page;
        tokio::task::spawn_blocking(move || hub.store.events_after_as(group, after, page, moderator))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
            .map_err(OpError::from)
    }

    /// Appends a directory change and returns the new object's id (its seq).
    pub async fn change_directory(&self, change: DirectoryChange) -> Result<Id, OpError> {
        match self.log.append(Append::Directory(change)).await? {
            Appended::Directory { seq } => Ok(seq),
            Appended::Group { .. } => unreachable!("directory appends answer with a directory seq"),
        }
    }
}

/// Whom a token names.
enum Subject {
    /// Our own token: the account id.
    Account(Id),
    /// An external token: the person's phone and real name.
    Person { phone: String, name: String },
}

fn now_ms() -> Millis {
    unix_millis(SystemTime::now())
}

fn check_reason(reason: &str) -> Result<(), OpError> {
    if reason.trim().is_empty() {
        return Err(OpError::bad_request("give a reason"));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!("reason is longer than {MAX_REASON} characters"),
        ));
    }
    Ok(())
}

/// Membership and moderation ops. Each directory change carries the actor
/// (`by`) and the time (`at`); who may do what is checked by
/// `Directory::check` in the log writer, just before the change is
/// sequenced (see `membership.rs`).
impl Hub {
    pub async fn approve(&self, by: &Account, group: Id, account: Id) -> Result<Seq, OpError> {
        self.change_directory(DirectoryChange::JoinApproved { account, group, by: by.id, at: now_ms() }).await
    }

    pub async fn reject(&self, by: &Account, group: Id, account: Id, reason: String) -> Result<Seq, OpError> {
        check_reason(&reason)?;
        self.change_directory(DirectoryChange::JoinRejected {
            account,
            group,
            by: by.id,
            at: now_ms(),
            reason,
        })
        .await
    }

    pub fn applications(&self, by: &Account, group: Id) -> Result<Vec<ApplicationInfo>, OpError> {
        let dir = self.directory.read().unwrap();
        let sight = dir.sight(by.id, group).ok_or_else(OpError::no_such_group)?;
        if !sight.may_approve() {
            return Err(OpError::new(ErrorCode::Forbidden, "only cadres and the secretary see applications"));
        }
        Ok(dir.pending_applications(group))
    }

    pub async fn mute(
        &self,
        by: &Account,
        group: Id,
        account: Id,
        until: Millis,
        reason: String,
    ) -> Result<Seq, OpError> {
        check_reason(&reason)?;
        let change = DirectoryChange::MemberMuted { account, group, until, by: by.id, at: now_ms(), reason };
        self.change_directory(change).await
    }

    pub async fn remove(&self, by: &Account, group: Id, account: Id, reason: String) -> Result<Seq, OpError> {
        check_reason(&reason)?;
        self.change_directory(DirectoryChange::MemberRemoved {
            account,
            group,
            by: by.id,
            at: now_ms(),
            reason,
        })
        .await
    }

    pub async fn set_role(
        &self,
        by: &Account,
        group: Id,
        account: Id,
        role: Role,
        reason: Option<String>,
    ) -> Result<Seq, OpError> {
        if let Some(reason) = &reason {
            check_reason(reason)?;
        }
        let change = DirectoryChange::RoleChanged { account, group, role, by: by.id, at: now_ms(), reason };
        self.change_directory(change).await
    }

    pub async fn transfer(
        &self,
        by: &Account,
        group: Id,
        to: Id,
        reason: Option<String>,
    ) -> Result<Seq, OpError> {
        if let Some(reason) = &reason {
            check_reason(reason)?;
        }
        self.change_directory(DirectoryChange::OwnershipTransferred {
            group,
            to,
            by: by.id,
            at: now_ms(),
            reason,
        })
        .await
    }

    /// `hide`: a `hide` event in the group's chat channel.
    pub async fn hide(&self, by: &Account, group: Id, seq: Seq, reason: String) -> Result<Seq, OpError> {
        check_reason(&reason)?;
        let author = {
            let dir = self.directory.read().unwrap();
            let sight = dir.sight(by.id, group).ok_or_else(OpError::no_such_group)?;
            if !sight.may_hide() {
                return Err(OpError::new(
                    ErrorCode::Forbidden,
                    "only volunteers, cadres and the secretary may hide messages",
                ));
            }
            Author {
                id: by.id,
                name: by.name.clone(),
                role: sight.role(),
                party: dir.people.state(by.id).party,
                migrant: dir.people.member(by.id, group).migrant,
                system: false,
            }
        };
        self.serves(group)?;
        if seq == 0 || seq > self.fanout.head(group) {
            return Err(OpError::new(ErrorCode::NotFound, "no such message"));
        }
        let store = self.store.clone();
        let found = tokio::task::spawn_blocking(move || store.event_kind(group, seq))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))??;
        match found {
            None => return Err(OpError::new(ErrorCode::NotFound, "no such message")),
            Some((kind, _)) if kind != "message" => {
                return Err(OpError::bad_request("only chat messages can be hidden"));
            }
            Some((_, true)) => {
                return Err(OpError::new(ErrorCode::Conflict, "the message is already hidden"))
            }
            Some(_) => {}
        }
        let body = EventBody::Hide(HideBody { seq, reason });
        match self.log.append(Append::Group { group, author, client_key: None, body }).await? {
            Appended::Group { seq, .. } => Ok(seq),
            Appended::Directory { .. } => unreachable!("hide appends to a group"),
        }
    }

    pub async fn audit(
        self: &Arc<Self>,
        by: &Account,
        group: Id,
        before: Option<Millis>,
        limit: Option<u32>,
    ) -> Result<(Vec<AuditEntry>, bool), OpError> {
        if !self.sight(by, group)?.may_read_audit() {
            return Err(OpError::new(
                ErrorCode::Forbidden,
                "the audit log is for the secretary and the town and district officers",
            ));
        }
        let cap = self.config.limits.history_limit;
        let limit = match limit {
            Some(0) => return Err(OpError::bad_request("limit must be at least 1")),
            Some(n) => n.min(cap),
            None => cap,
        };
        let hub = self.clone();
        tokio::task::spawn_blocking(move || hub.store.audit(group, before, limit))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
            .map_err(OpError::from)
    }

    /// Revokes every token of the account issued until now.
    pub async fn logout(&self, account: Id) -> Result<Seq, OpError> {
        self.change_directory(DirectoryChange::TokensRevoked { account, at: now_ms() }).await
    }

    /// Checks the old password, stores the new one's hash and revokes every
    /// token issued until now.
    pub async fn change_password(&self, account: &Account, old: String, new: String) -> Result<Seq, OpError> {
        check_new_password(&new)?;
        let hash = self
            .directory
            .read()
            .unwrap()
            .accounts
            .get(&account.id)
            .map(|a| a.password_hash.clone())
            .ok_or_else(|| OpError::new(ErrorCode::Unauthorized, "no such account"))?;
        let _permit = self
            .password_permits
            .acquire()
            .await
            .map_err(|_| OpError::new(ErrorCode::Unavailable, "server is shutting down"))?;
        let new_hash = tokio::task::spawn_blocking(move || {
            crate::auth::verify_password(&old, &hash).then(|| crate::auth::hash_password(&new))
        })
        .await
        .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
        .ok_or_else(|| OpError::new(ErrorCode::Forbidden, "the old password is wrong"))?;
        self.change_directory(DirectoryChange::PasswordSet {
            account: account.id,
            password_hash: new_hash,
            at: now_ms(),
        })
        .await
    }
}

/// Passwords: 8 to 128 characters.
pub fn check_new_password(password: &str) -> Result<(), OpError> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(OpError::bad_request("a password has 8 to 128 characters"));
    }
    Ok(())
}
