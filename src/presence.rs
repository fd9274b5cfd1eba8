//! Which connections each account has open on this node, so that a
//! committed directory change can reach the person it concerns: the
//! applicant hears of approval or rejection live, a removed member's
//! subscriptions end, a logout or password change closes the account's
//! connections. Fed by the log writer after each commit (`after_commit`),
//! for local and (in cluster mode) replicated changes alike.
//!
//! This module must not touch sockets or the store.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use tokio::sync::mpsc;

use protocol::{ApplicationInfo, Id, MembershipNotice, MembershipStatus, Millis, Role, Seq};

use crate::directory::{Directory, DirectoryChange};

/// Notices waiting per connection. They are rare (a few per account per
/// day), so a small queue; overflow policy: the notice is dropped and
/// logged, and the connection keeps running — every op still checks the
/// directory, only the live push (and, for a removal, the end of the live
/// stream) is lost.
pub const NOTICE_QUEUE: usize = 32;

/// What a connection is told.
#[derive(Debug, Clone)]
// The payloads are boxed: every connection's notice queue allocates a block
// of slots up front, and unboxed they made it ~6 KiB per idle connection.
pub enum Notice {
    /// Push this to the client, then re-check every subscription against
    /// the directory.
    Membership(Box<MembershipNotice>),
    /// The account's sight may have changed: re-check subscriptions.
    Recheck,
    /// Tokens issued before `at` are revoked: a connection authenticated
    /// with such a token closes (4003).
    Revoked { at: Millis },
    /// A new application to a group this account decides on (cadre,
    /// secretary): push it.
    Application(Box<ApplicationInfo>),
    /// Read receipts of a notice changed (cadres, secretary): push them.
    Receipts(Box<protocol::Receipts>),
    /// An early warning for a group this account is in charge of.
    Warning(Box<protocol::Warning>),
}

/// account → (connection id, notice sender) of each of its connections.
type Conns = HashMap<Id, Vec<(u64, mpsc::Sender<Notice>)>>;

/// account → its connections on this node.
#[derive(Debug, Default)]
pub struct Accounts {
    /// A std mutex: held to push, remove or copy a few senders, never
    /// across an await.
    conns: Mutex<Conns>,
}

impl Accounts {
    pub fn register(&self, account: Id, conn: u64, tx: mpsc::Sender<Notice>) {
        self.conns.lock().unwrap().entry(account).or_default().push((conn, tx));
    }

    pub fn unregister(&self, account: Id, conn: u64) {
        let mut conns = self.conns.lock().unwrap();
        if let Some(list) = conns.get_mut(&account) {
            list.retain(|(c, _)| *c != conn);
            if list.is_empty() {
                conns.remove(&account);
            }
        }
    }

    pub fn notify(&self, account: Id, notice: Notice) {
        let senders: Vec<mpsc::Sender<Notice>> = match self.conns.lock().unwrap().get(&account) {
            Some(list) => list.iter().map(|(_, tx)| tx.clone()).collect(),
            None => return,
        };
        for tx in senders {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(notice.clone()) {
                tracing::warn!(account, "notice queue full; a membership notice was dropped");
            }
        }
    }

    /// Connections open for an account (tests, metrics).
    pub fn connections(&self, account: Id) -> usize {
        self.conns.lock().unwrap().get(&account).map(Vec::len).unwrap_or(0)
    }
}

/// Called by the log writer after each commit (and by any other applier of
/// the directory log after it applies changes): tells the connections of
/// every account concerned by the changes applied since the last call.
/// `Directory::apply` queues them (`People::applied`); this drains it.
pub fn after_commit(accounts: &Accounts, directory: &RwLock<Directory>) {
    // A read lock to look (most batches are chat messages only), the write
    // lock only to take what is there.
    if directory.read().unwrap().people.applied.is_empty() {
        return;
    }
    let applied = std::mem::take(&mut directory.write().unwrap().people.applied);
    for (seq, change) in &applied {
        if let DirectoryChange::Registered { group, .. } = change {
            // A new application: its group's cadres and secretary hear of it.
            let (info, deciders) = {
                let dir = directory.read().unwrap();
                let deciders: Vec<Id> = dir
                    .members_of(*group)
                    .into_iter()
                    .filter(|(_, role)| matches!(role, Role::Cadre | Role::Secretary))
                    .map(|(account, _)| account)
                    .collect();
                (dir.application_info(*seq), deciders)
            };
            if let Some(info) = info {
                for account in deciders {
                    accounts.notify(account, Notice::Application(Box::new(info.clone())));
                }
            }
            continue;
        }
        notify_change(accounts, *seq, change);
    }
}

/// Whether a change concerns a connected person (so `Directory::apply`
/// queues it for `after_commit`).
pub fn concerns_a_connection(change: &DirectoryChange) -> bool {
    use DirectoryChange as C;
    matches!(
        change,
        C::Registered { .. }
            | C::JoinApproved { .. }
            | C::JoinRejected { .. }
            | C::RoleChanged { .. }
            | C::OwnershipTransferred { .. }
            | C::MemberMuted { .. }
            | C::MemberRemoved { .. }
            | C::RoleSet { .. }
            | C::OfficeGranted { .. }
            | C::AccountDisabled { .. }
            | C::PasswordSet { .. }
            | C::TokensRevoked { .. }
    )
}

fn notify_change(accounts: &Accounts, _seq: Seq, change: &DirectoryChange) {
    use DirectoryChange as C;
    let notice = |group, status, role, until, reason: Option<&String>| {
        Notice::Membership(Box::new(MembershipNotice { group, status, role, until, reason: reason.cloned() }))
    };
    match change {
        C::JoinApproved { account, group, .. } => accounts
            .notify(*account, notice(*group, MembershipStatus::Approved, Some(Role::Member), None, None)),
        C::JoinRejected { account, group, reason, .. } => {
            accounts.notify(*account, notice(*group, MembershipStatus::Rejected, None, None, Some(reason)))
        }
        C::RoleChanged { account, group, role, reason, .. } => accounts
            .notify(*account, notice(*group, MembershipStatus::Role, Some(*role), None, reason.as_ref())),
        C::OwnershipTransferred { group, to, reason, .. } => accounts.notify(
            *to,
            notice(*group, MembershipStatus::Role, Some(Role::Secretary), None, reason.as_ref()),
        ),
        C::MemberMuted { account, group, until, reason, .. } => accounts
            .notify(*account, notice(*group, MembershipStatus::Muted, None, Some(*until), Some(reason))),
        C::MemberRemoved { account, group, reason, .. } => {
            accounts.notify(*account, notice(*group, MembershipStatus::Removed, None, None, Some(reason)))
        }
        C::RoleSet { account, .. } | C::OfficeGranted { account, .. } => {
            accounts.notify(*account, Notice::Recheck)
        }
        C::AccountDisabled { account, at }
        | C::PasswordSet { account, at, .. }
        | C::TokensRevoked { account, at } => accounts.notify(*account, Notice::Revoked { at: *at }),
        C::DistrictCreated { .. }
        | C::TownCreated { .. }
        | C::GroupCreated { .. }
        | C::AccountCreated { .. }
        | C::Registered { .. }
        | C::HouseholdCreated { .. }
        | C::HouseholdJoined { .. }
        | C::PartySet { .. }
        | C::ApiKeyCreated { .. }
        | C::ApiKeyRevoked { .. } => {}
    }
}

/// `presence`: the members of `group` with a connection open on this node.
/// Cadres, the secretary and officers also learn who. Not yet counted
/// across nodes in cluster mode (each node answers for its own
/// connections).
pub fn online(
    hub: &crate::hub::Hub,
    account: &crate::hub::Account,
    id: u64,
    group: Id,
) -> Result<protocol::ServerFrame, crate::hub::OpError> {
    let sight = hub.sight(account, group)?;
    let mut who: Vec<Id> = hub
        .directory
        .read()
        .unwrap()
        .members_of(group)
        .into_iter()
        .map(|(member, _)| member)
        .filter(|member| hub.fanout.accounts.connections(*member) > 0)
        .collect();
    who.sort_unstable();
    let may_see_who = sight.officer.is_some() || matches!(sight.member, Some(Role::Cadre | Role::Secretary));
    Ok(protocol::ServerFrame::Presence {
        id,
        group,
        online: who.len() as u64,
        who: may_see_who.then_some(who),
    })
}
