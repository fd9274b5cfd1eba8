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
    AccountInfo, Author, ErrorCode, EventBody, Id, MessageBody, Role, Seq, Welcome, PROTOCOL_VERSION,
};

use crate::auth::{TokenError, TokenKey};
use crate::config::Config;
use crate::directory::{Directory, DirectoryChange};
use crate::fanout::Fanout;
use crate::log::{Append, Appended, Log, LogError};
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
            LogError::Refused(refusal) => OpError::new(ErrorCode::Conflict, refusal.to_string()),
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
    /// Live WebSocket connections per account and per source address, for
    /// `--max-connections-per-account` / `--max-connections-per-ip`.
    connection_counts: Mutex<HashMap<SlotKey, usize>>,
    next_conn: AtomicU64,
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
        Hub {
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

    /// `hello`: the token names a live account.
    pub fn authenticate(&self, token: &str, op_id: u64) -> Result<(Account, Welcome), OpError> {
        let claims = self.tokens.verify(token, SystemTime::now()).map_err(|e| {
            let message = match e {
                TokenError::Expired => "token has expired; log in again",
                TokenError::Malformed | TokenError::BadSignature => "token is not valid",
            };
            OpError::new(ErrorCode::Unauthorized, message)
        })?;
        let dir = self.directory.read().unwrap();
        let record = dir
            .accounts
            .get(&claims.sub)
            .ok_or_else(|| OpError::new(ErrorCode::Unauthorized, "token is not valid"))?;
        let account = Account { id: record.id, name: record.name.clone() };
        let groups = dir
            .memberships(account.id)
            .iter()
            .filter_map(|(group, role)| dir.group_info(*group, *role))
            .collect();
        let welcome = Welcome {
            id: op_id,
            protocol: PROTOCOL_VERSION,
            server: concat!("villagehub/", env!("CARGO_PKG_VERSION")).to_string(),
            account: AccountInfo { id: account.id, name: account.name.clone() },
            groups,
            limits: self.config.limits.to_wire(),
        };
        Ok((account, welcome))
    }

    /// The account's role in a group it may read. Non-members get the same
    /// answer as for a group that does not exist, so ids cannot be probed.
    pub fn role_in(&self, account: &Account, group: Id) -> Result<Role, OpError> {
        let role =
            self.directory.read().unwrap().role(account.id, group).ok_or_else(OpError::no_such_group)?;
        self.serves(group)?;
        Ok(role)
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
        let role = self.role_in(account, group)?;
        if let Some(target) = body.reply_to {
            if target == 0 || target > self.fanout.head(group) {
                return Err(OpError::bad_request("reply_to names no event of this group"));
            }
        }
        let author = Author { id: account.id, name: account.name.clone(), role };
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
        self.role_in(account, group)?;
        let cap = self.config.limits.history_limit;
        let limit = limit.unwrap_or(cap).clamp(1, cap);
        let hub = self.clone();
        tokio::task::spawn_blocking(move || hub.store.history(group, before, limit))
            .await
            .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
            .map_err(OpError::from)
    }

    /// Events of a group after `after`, for backfill and lag recovery.
    pub async fn events_after(self: &Arc<Self>, group: Id, after: Seq) -> Result<Vec<StoredEvent>, OpError> {
        let hub = self.clone();
        let page = self.config.limits.backfill_page;
        tokio::task::spawn_blocking(move || hub.store.events_after(group, after, page))
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
