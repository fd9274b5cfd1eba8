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
    /// Figures of a watched scope changed (`watch_stats`).
    Stats(Box<protocol::Stats>),
    /// The number of members online in a watched group changed: (group,
    /// online). Boxed like the others, to keep `Notice` two words.
    Presence(Box<(Id, u64)>),
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

    /// Accounts with at least one connection open on this node.
    pub fn online_accounts(&self) -> Vec<Id> {
        self.conns.lock().unwrap().keys().copied().collect()
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
        | C::WarningRaised { .. }
        | C::ApiKeyCreated { .. }
        | C::ApiKeyRevoked { .. } => {}
    }
}

/// How often online counts are recomputed and pushed.
pub const PRESENCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Online members across nodes (cluster mode; see `cluster.rs`), shared by
/// the presence task and the `presence` op.
#[derive(Debug)]
pub struct Presence {
    /// This node's name in Redis: random per start, so a restarted node
    /// never inherits a dead one's sets.
    pub node: String,
    /// Nodes counted at the last round. A std mutex: copied out.
    nodes: Mutex<Vec<String>>,
    /// group → the connections here that asked `presence` for it and get
    /// its `presence_update` pushes (opt-in: most residents never look,
    /// and a push to every member whenever someone comes or goes would
    /// cost their phones data and the server a delivery each).
    /// Each with the count it was last told.
    watchers: Mutex<HashMap<Id, Vec<Watcher>>>,
}

impl Default for Presence {
    fn default() -> Self {
        let node = format!("{:016x}", rand::random::<u64>());
        Presence { node, nodes: Mutex::new(Vec::new()), watchers: Mutex::new(HashMap::new()) }
    }
}

#[derive(Debug)]
struct Watcher {
    conn: u64,
    tx: mpsc::Sender<Notice>,
    told: u64,
}

impl Presence {
    /// `conn` gets the group's changes from now on; it was told `online`.
    fn watch(&self, group: Id, conn: u64, tx: mpsc::Sender<Notice>, online: u64) {
        let mut watchers = self.watchers.lock().unwrap();
        let list = watchers.entry(group).or_default();
        match list.iter_mut().find(|w| w.conn == conn) {
            Some(w) => w.told = online,
            None => list.push(Watcher { conn, tx, told: online }),
        }
    }

    /// Ends a connection's presence pushes (it closed, or unsubscribed
    /// from `group`; `None`: every group).
    pub fn forget(&self, conn: u64, group: Option<Id>) {
        let mut watchers = self.watchers.lock().unwrap();
        watchers.retain(|g, list| {
            if group.is_none_or(|only| only == *g) {
                list.retain(|w| w.conn != conn);
            }
            !list.is_empty()
        });
    }

    fn watched(&self) -> Vec<Id> {
        self.watchers.lock().unwrap().keys().copied().collect()
    }

    /// Tells the group's watchers its count, unless they know it already.
    fn tell(&self, group: Id, online: u64) {
        let mut watchers = self.watchers.lock().unwrap();
        for w in watchers.get_mut(&group).into_iter().flatten().filter(|w| w.told != online) {
            // try_send never waits, so the lock is not held across a wait.
            // A full queue drops this count; the next change sends it again.
            if w.tx.try_send(Notice::Presence(Box::new((group, online)))).is_ok() {
                w.told = online;
            }
        }
    }
}

/// Members of each group with a connection open on this node.
fn local_online(hub: &crate::hub::Hub) -> HashMap<Id, Vec<Id>> {
    let mut online = hub.fanout.accounts.online_accounts();
    online.sort_unstable();
    let dir = hub.directory.read().unwrap();
    let mut groups: HashMap<Id, Vec<Id>> = HashMap::new();
    for account in online {
        for (group, _) in dir.memberships(account) {
            groups.entry(*group).or_default().push(account);
        }
    }
    groups
}

/// Recounts, once per `PRESENCE_EVERY`, the groups whose online members
/// changed (on any node) and pushes `presence_update` to the connections
/// here that watch them; in cluster mode also publishes this node's part.
pub async fn run(hub: std::sync::Arc<crate::hub::Hub>) {
    let mut tick = tokio::time::interval(PRESENCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published: HashMap<Id, Vec<Id>> = HashMap::new();
    let mut last_change = String::new();
    let mut rounds: u64 = 0;
    loop {
        tick.tick().await;
        rounds += 1;
        let local = local_online(&hub);
        let mut changed: Vec<(Id, Vec<Id>)> = local
            .iter()
            .filter(|(group, online)| published.get(group) != Some(online))
            .map(|(group, online)| (*group, online.clone()))
            .collect();
        changed.extend(published.keys().filter(|g| !local.contains_key(g)).map(|g| (*g, Vec::new())));
        let watched = hub.presence.watched();
        // A watcher added since the last round was told a count that
        // included every change made before; later ones are in `changed`
        // (here) or in the changes stream (other nodes).
        let mut recount: Vec<Id> = changed.iter().map(|(g, _)| *g).collect();
        let counts: HashMap<Id, u64> = match hub.log.cluster() {
            None => recount.iter().map(|g| (*g, local.get(g).map_or(0, Vec::len) as u64)).collect(),
            Some(cluster) => {
                // TTLs are refreshed every fifth round (the TTL is four
                // node timeouts, far longer).
                let refresh: Vec<Id> =
                    if rounds.is_multiple_of(5) { local.keys().copied().collect() } else { Vec::new() };
                let node = &hub.presence.node;
                let now = crate::clock::now();
                let round = match cluster.presence_round(node, &changed, &refresh, &last_change, now).await {
                    Ok(round) => round,
                    Err(e) => {
                        tracing::warn!(error = %e, "presence round failed; retried next round");
                        continue;
                    }
                };
                let nodes_changed = *hub.presence.nodes.lock().unwrap() != round.nodes;
                if nodes_changed || last_change.is_empty() {
                    recount.extend(watched.iter().copied());
                }
                recount.extend(round.changed);
                last_change = round.last;
                *hub.presence.nodes.lock().unwrap() = round.nodes.clone();
                recount.retain(|g| watched.contains(g));
                recount.sort_unstable();
                recount.dedup();
                match cluster.online_in(&round.nodes, &recount).await {
                    Ok(online) => recount.iter().zip(online).map(|(g, o)| (*g, o.len() as u64)).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "presence count failed; retried next round");
                        continue;
                    }
                }
            }
        };
        for (group, online) in changed {
            if online.is_empty() {
                published.remove(&group);
            } else {
                published.insert(group, online);
            }
        }
        for (group, count) in counts {
            hub.presence.tell(group, count);
        }
    }
}

/// `presence`: the members of `group` with a connection open on any node
/// (this node's counted now, other nodes' as of their last round, at most
/// `PRESENCE_EVERY` old). Cadres, the secretary and officers also learn
/// who. The connection then gets `presence_update` pushes for the group
/// until it unsubscribes from it or closes.
pub async fn online(
    hub: &crate::hub::Hub,
    account: &crate::hub::Account,
    conn: (u64, mpsc::Sender<Notice>),
    id: u64,
    group: Id,
) -> Result<protocol::ServerFrame, crate::hub::OpError> {
    let sight = hub.sight(account, group)?;
    let mut who: Vec<Id> = local_online(hub).remove(&group).unwrap_or_default();
    if let Some(cluster) = hub.log.cluster() {
        let nodes: Vec<String> =
            hub.presence.nodes.lock().unwrap().iter().filter(|n| **n != hub.presence.node).cloned().collect();
        match cluster.online_in(&nodes, &[group]).await {
            Ok(mut remote) => who.extend(remote.pop().unwrap_or_default()),
            Err(e) => tracing::warn!(error = %e, "presence on other nodes unknown"),
        }
    }
    who.sort_unstable();
    who.dedup();
    hub.presence.watch(group, conn.0, conn.1, who.len() as u64);
    let may_see_who = sight.officer.is_some() || matches!(sight.member, Some(Role::Cadre | Role::Secretary));
    Ok(protocol::ServerFrame::Presence {
        id,
        group,
        online: who.len() as u64,
        who: may_see_who.then_some(who),
    })
}

#[cfg(test)]
mod tests {
    /// Every connection's notice queue allocates its slots up front, so the
    /// size of a notice is paid per idle connection.
    #[test]
    fn a_notice_is_two_words() {
        assert_eq!(std::mem::size_of::<super::Notice>(), 16);
    }
}
