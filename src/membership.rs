//! Real-name membership, households, roles and the hierarchy of sight.
//!
//! This module owns the rules: who may see a group (members; the officers
//! of its town and district), who may do what there, and how each
//! membership change of the directory log is checked and applied — to the
//! in-memory `Directory` and to the SQLite views. The rules are checked in
//! `Directory::check`, inside the log writer, just before a change is
//! sequenced, so an op can never act on a state that changed since it was
//! read. Applying never reads a clock or draws a random number: times come
//! from the change (`at`, set by the service before sequencing).
//!
//! It does not touch sockets; sessions learn of changes through
//! `after_commit`, which the log writer calls for every committed change.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use protocol::{AccountStatus, ApplicationInfo, AuditAction, HouseholdInfo, Id, Millis, Office, Role, Seq};

use crate::directory::{Directory, DirectoryChange, DirectoryError};

/// Longest reason, name or address accepted, in characters.
pub const MAX_REASON: usize = 500;

/// Standing of an account beyond its phone, name and password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountState {
    pub status: AccountStatus,
    pub party: bool,
    /// Tokens issued before this (ms since the epoch) are refused.
    pub tokens_valid_after: Millis,
    pub offices: Vec<Office>,
}

/// Flags of one membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberState {
    pub migrant: bool,
    pub muted_until: Option<Millis>,
    pub household: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdRecord {
    pub id: Id,
    pub group: Id,
    pub address: String,
    pub head: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRecord {
    pub group: Id,
    pub household: Option<String>,
    pub migrant: bool,
    pub status: AccountStatus,
    pub reason: Option<String>,
    pub at: Millis,
}

/// The membership part of the directory, in memory.
#[derive(Debug, Default)]
pub struct People {
    /// Accounts absent here are active, not in the Party, with no office.
    pub states: HashMap<Id, AccountState>,
    /// (account, group) → flags; present for every member with a flag set.
    pub members: HashMap<(Id, Id), MemberState>,
    pub households: HashMap<Id, HouseholdRecord>,
    /// (group, address) → household, so that residents of one address share
    /// one household.
    pub household_by_address: HashMap<(Id, String), Id>,
    /// account → its application (kept after approval or rejection).
    pub applications: HashMap<Id, ApplicationRecord>,
    /// Changes applied since the last `presence::after_commit`, which
    /// drains it after every commit. Bounded: an applier that never drains
    /// loses the oldest notices, never memory.
    pub applied: Vec<(Seq, DirectoryChange)>,
}

/// Most changes kept for `presence::after_commit` between two drains.
const MAX_APPLIED: usize = 4096;

impl People {
    /// Queues a change that concerns connected people (see `presence.rs`).
    pub fn note_applied(&mut self, seq: Seq, change: &DirectoryChange) {
        if crate::presence::concerns_a_connection(change) {
            if self.applied.len() >= MAX_APPLIED {
                self.applied.remove(0);
            }
            self.applied.push((seq, change.clone()));
        }
    }

    /// The account's standing (the default — active, no office — for most).
    pub fn state(&self, account: Id) -> &AccountState {
        static DEFAULT: AccountState = AccountState {
            status: AccountStatus::Active,
            party: false,
            tokens_valid_after: 0,
            offices: Vec::new(),
        };
        self.states.get(&account).unwrap_or(&DEFAULT)
    }

    fn state_mut(&mut self, account: Id) -> &mut AccountState {
        self.states.entry(account).or_default()
    }

    pub fn member(&self, account: Id, group: Id) -> MemberState {
        self.members.get(&(account, group)).cloned().unwrap_or_default()
    }

    pub fn insert_household(&mut self, household: HouseholdRecord) {
        self.household_by_address.insert((household.group, household.address.clone()), household.id);
        self.households.insert(household.id, household);
    }
}

/// How an account sees one group: as a member (with a role), from above (as
/// a town or district officer), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sight {
    pub member: Option<Role>,
    /// `TownOfficer` or `DistrictOfficer`.
    pub officer: Option<Role>,
}

impl Sight {
    /// The role shown in `welcome` and on posts.
    pub fn role(&self) -> Role {
        self.member.or(self.officer).unwrap_or(Role::Member)
    }
    fn member_at_least(&self, role: Role) -> bool {
        self.member.is_some_and(|r| r >= role && r <= Role::Secretary)
    }
    /// Sees hidden messages' text: cadres, the secretary and officers.
    pub fn sees_hidden(&self) -> bool {
        self.officer.is_some() || self.member_at_least(Role::Cadre)
    }
    pub fn may_send(&self) -> bool {
        self.member.is_some()
    }
    pub fn may_approve(&self) -> bool {
        self.member_at_least(Role::Cadre)
    }
    pub fn may_hide(&self) -> bool {
        self.member_at_least(Role::Volunteer)
    }
    pub fn may_mute_or_remove(&self) -> bool {
        self.member_at_least(Role::Cadre)
    }
    pub fn may_set_role(&self) -> bool {
        self.member == Some(Role::Secretary)
    }
    pub fn may_read_audit(&self) -> bool {
        self.member == Some(Role::Secretary) || self.officer.is_some()
    }
}

fn normalize_address(address: &str) -> String {
    address.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn check_text(text: &str, what: &'static str) -> Result<(), DirectoryError> {
    if text.trim().is_empty() {
        return Err(DirectoryError::Invalid(what));
    }
    if text.chars().count() > MAX_REASON {
        return Err(DirectoryError::Invalid("text is longer than 500 characters"));
    }
    Ok(())
}

impl Directory {
    /// How `account` sees `group`, or None if it may not see it at all. Only
    /// active accounts see anything.
    pub fn sight(&self, account: Id, group: Id) -> Option<Sight> {
        let g = self.groups.get(&group)?;
        let state = self.people.state(account);
        if state.status != AccountStatus::Active {
            return None;
        }
        let member = self.role(account, group);
        let district = self.towns.get(&g.town).map(|t| t.district);
        let officer = if state.offices.contains(&Office::Town(g.town)) {
            Some(Role::TownOfficer)
        } else if district.is_some_and(|d| state.offices.contains(&Office::District(d))) {
            Some(Role::DistrictOfficer)
        } else {
            None
        };
        (member.is_some() || officer.is_some()).then_some(Sight { member, officer })
    }

    /// Sight, or `not_found` for a group the account cannot see (so ids
    /// cannot be probed).
    fn sight_or_missing(&self, account: Id, group: Id) -> Result<Sight, DirectoryError> {
        self.sight(account, group).ok_or(DirectoryError::Missing("group"))
    }

    /// Every group the account can see, with its effective role and flags,
    /// ordered by id.
    pub fn visible_groups(&self, account: Id) -> Vec<protocol::GroupInfo> {
        let state = self.people.state(account);
        if state.status != AccountStatus::Active {
            return Vec::new();
        }
        let mut ids: Vec<Id> = self.memberships(account).iter().map(|(g, _)| *g).collect();
        if !state.offices.is_empty() {
            ids.extend(self.groups.keys().copied().filter(|g| self.sight(account, *g).is_some()));
        }
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|group| {
                let sight = self.sight(account, group)?;
                let mut info = self.group_info(group, sight.role())?;
                let flags = self.people.member(account, group);
                info.migrant = flags.migrant;
                info.muted_until = flags.muted_until;
                info.household = flags.household.and_then(|h| self.people.households.get(&h)).map(|h| {
                    HouseholdInfo { id: h.id, address: h.address.clone(), head: h.head == Some(account) }
                });
                Some(info)
            })
            .collect()
    }

    /// The account's application, as the wire shows it.
    pub fn application_info(&self, account: Id) -> Option<ApplicationInfo> {
        let app = self.people.applications.get(&account)?;
        let record = self.accounts.get(&account)?;
        Some(ApplicationInfo {
            account,
            name: record.name.clone(),
            phone: record.phone.clone(),
            group: app.group,
            household: app.household.clone(),
            migrant: app.migrant,
            status: app.status,
            reason: app.reason.clone(),
            at: app.at,
        })
    }

    /// Pending applications to a group, oldest first.
    pub fn pending_applications(&self, group: Id) -> Vec<ApplicationInfo> {
        let mut list: Vec<ApplicationInfo> = self
            .people
            .applications
            .iter()
            .filter(|(_, a)| a.group == group && a.status == AccountStatus::Pending)
            .filter_map(|(account, _)| self.application_info(*account))
            .collect();
        list.sort_by_key(|a| (a.at, a.account));
        list
    }

    fn pending_application(&self, account: Id, group: Id) -> Result<&ApplicationRecord, DirectoryError> {
        match self.people.applications.get(&account) {
            Some(app) if app.group == group && app.status == AccountStatus::Pending => Ok(app),
            Some(app) if app.group == group => {
                Err(DirectoryError::Conflict("the application is no longer pending"))
            }
            _ => Err(DirectoryError::Missing("application")),
        }
    }

    /// The target of a moderation op must be a member of the group.
    fn member_role(&self, account: Id, group: Id) -> Result<Role, DirectoryError> {
        self.role(account, group).ok_or(DirectoryError::Missing("member"))
    }

    /// The membership half of `Directory::check`.
    pub(crate) fn check_membership(&self, change: &DirectoryChange) -> Result<(), DirectoryError> {
        use DirectoryChange as C;
        match change {
            C::Registered { phone, name, group, household, migrant, .. } => {
                // The phone last: every other refusal must come first, so
                // that the answer never tells whether a phone is registered.
                if !self.groups.contains_key(group) {
                    return Err(DirectoryError::Missing("group"));
                }
                check_text(name, "name is blank")?;
                match (household, migrant) {
                    (Some(address), false) => check_text(address, "household address is blank")?,
                    (None, true) => {}
                    _ => {
                        return Err(DirectoryError::Invalid(
                            "give a household address (registered resident) or migrant: true, not both",
                        ))
                    }
                }
                if self.account_by_phone(phone).is_some() {
                    return Err(DirectoryError::PhoneTaken);
                }
                Ok(())
            }
            C::JoinApproved { account, group, by, .. } => {
                if !self.sight_or_missing(*by, *group)?.may_approve() {
                    return Err(DirectoryError::Forbidden("only a cadre or the secretary may approve"));
                }
                self.pending_application(*account, *group).map(|_| ())
            }
            C::JoinRejected { account, group, by, reason, .. } => {
                if !self.sight_or_missing(*by, *group)?.may_approve() {
                    return Err(DirectoryError::Forbidden("only a cadre or the secretary may reject"));
                }
                self.pending_application(*account, *group)?;
                check_text(reason, "give a reason")
            }
            C::RoleChanged { account, group, role, by, reason, .. } => {
                if !self.sight_or_missing(*by, *group)?.may_set_role() {
                    return Err(DirectoryError::Forbidden("only the secretary may appoint"));
                }
                if !matches!(role, Role::Member | Role::Volunteer | Role::Cadre) {
                    return Err(DirectoryError::Invalid(
                        "role must be member, volunteer or cadre (the secretary changes by transfer)",
                    ));
                }
                if self.member_role(*account, *group)? == Role::Secretary {
                    return Err(DirectoryError::Conflict("the secretary's role changes only by transfer"));
                }
                if let Some(reason) = reason {
                    check_text(reason, "reason is blank")?;
                }
                Ok(())
            }
            C::OwnershipTransferred { group, to, by, reason, .. } => {
                let sight = self.sight_or_missing(*by, *group)?;
                if !(sight.member == Some(Role::Secretary) || sight.officer == Some(Role::TownOfficer)) {
                    return Err(DirectoryError::Forbidden(
                        "only the secretary or a town officer of the town may transfer ownership",
                    ));
                }
                if self.member_role(*to, *group)? == Role::Secretary {
                    return Err(DirectoryError::Conflict("already the secretary"));
                }
                if let Some(reason) = reason {
                    check_text(reason, "reason is blank")?;
                }
                Ok(())
            }
            C::MemberMuted { account, group, by, reason, .. }
            | C::MemberRemoved { account, group, by, reason, .. } => {
                let sight = self.sight_or_missing(*by, *group)?;
                if !sight.may_mute_or_remove() {
                    return Err(DirectoryError::Forbidden(
                        "only a cadre or the secretary may mute or remove",
                    ));
                }
                let target = self.member_role(*account, *group)?;
                if Some(target) >= sight.member {
                    return Err(DirectoryError::Forbidden(
                        "only members of a lower role can be muted or removed",
                    ));
                }
                check_text(reason, "give a reason")
            }
            C::HouseholdCreated { group, address } => {
                if !self.groups.contains_key(group) {
                    return Err(DirectoryError::Missing("group"));
                }
                check_text(address, "household address is blank")?;
                if self.people.household_by_address.contains_key(&(*group, normalize_address(address))) {
                    return Err(DirectoryError::Conflict(
                        "the group already has a household at that address",
                    ));
                }
                Ok(())
            }
            C::HouseholdJoined { account, household, .. } => {
                let h = self.people.households.get(household).ok_or(DirectoryError::Missing("household"))?;
                self.member_role(*account, h.group)?;
                Ok(())
            }
            C::OfficeGranted { account, office } => {
                if !self.accounts.contains_key(account) {
                    return Err(DirectoryError::Missing("account"));
                }
                match office {
                    Office::Town(t) if !self.towns.contains_key(t) => Err(DirectoryError::Missing("town")),
                    Office::District(d) if !self.districts.contains_key(d) => {
                        Err(DirectoryError::Missing("district"))
                    }
                    _ => Ok(()),
                }
            }
            C::PartySet { account, .. }
            | C::AccountDisabled { account, .. }
            | C::PasswordSet { account, .. }
            | C::TokensRevoked { account, .. } => {
                self.accounts.contains_key(account).then_some(()).ok_or(DirectoryError::Missing("account"))
            }
            C::DistrictCreated { .. }
            | C::TownCreated { .. }
            | C::GroupCreated { .. }
            | C::AccountCreated { .. }
            | C::RoleSet { .. }
            | C::WarningRaised { .. }
            | C::ApiKeyCreated { .. }
            | C::ApiKeyRevoked { .. } => unreachable!("checked in directory.rs"),
        }
    }

    /// The membership half of `Directory::apply`.
    pub(crate) fn apply_membership(&mut self, seq: Seq, change: &DirectoryChange) {
        use DirectoryChange as C;
        match change.clone() {
            C::Registered { phone, name, password_hash, group, household, migrant, at } => {
                self.insert_account(crate::directory::AccountRecord { id: seq, phone, name, password_hash });
                self.people.state_mut(seq).status = AccountStatus::Pending;
                self.people.applications.insert(
                    seq,
                    ApplicationRecord {
                        group,
                        household: household.map(|a| normalize_address(&a)),
                        migrant,
                        status: AccountStatus::Pending,
                        reason: None,
                        at,
                    },
                );
            }
            C::JoinApproved { account, group, .. } => {
                let Some(app) = self.people.applications.get_mut(&account) else { return };
                app.status = AccountStatus::Active;
                let (address, migrant) = (app.household.clone(), app.migrant);
                self.people.state_mut(account).status = AccountStatus::Active;
                self.set_role(account, group, Role::Member);
                let household = address.map(|address| {
                    match self.people.household_by_address.get(&(group, address.clone())) {
                        Some(id) => *id,
                        None => {
                            self.people.insert_household(HouseholdRecord {
                                id: seq,
                                group,
                                address,
                                head: Some(account),
                            });
                            seq
                        }
                    }
                });
                self.people
                    .members
                    .insert((account, group), MemberState { migrant, muted_until: None, household });
            }
            C::JoinRejected { account, reason, .. } => {
                if let Some(app) = self.people.applications.get_mut(&account) {
                    app.status = AccountStatus::Rejected;
                    app.reason = Some(reason);
                }
                self.people.state_mut(account).status = AccountStatus::Rejected;
            }
            C::RoleChanged { account, group, role, .. } => self.set_role(account, group, role),
            C::OwnershipTransferred { group, to, .. } => {
                if let Some(old) = self.secretary_of(group) {
                    self.set_role(old, group, Role::Cadre);
                }
                self.set_role(to, group, Role::Secretary);
            }
            C::MemberMuted { account, group, until, .. } => {
                self.people.members.entry((account, group)).or_default().muted_until = Some(until);
            }
            C::MemberRemoved { account, group, .. } => self.remove_member(account, group),
            C::HouseholdCreated { group, address } => {
                self.people.insert_household(HouseholdRecord {
                    id: seq,
                    group,
                    address: normalize_address(&address),
                    head: None,
                });
            }
            C::HouseholdJoined { account, household, head } => {
                let Some(h) = self.people.households.get_mut(&household) else { return };
                if head {
                    h.head = Some(account);
                }
                let group = h.group;
                self.people.members.entry((account, group)).or_default().household = Some(household);
            }
            C::OfficeGranted { account, office } => {
                let offices = &mut self.people.state_mut(account).offices;
                if !offices.contains(&office) {
                    offices.push(office);
                }
            }
            C::PartySet { account, party } => self.people.state_mut(account).party = party,
            C::AccountDisabled { account, at } => {
                let state = self.people.state_mut(account);
                state.status = AccountStatus::Disabled;
                state.tokens_valid_after = state.tokens_valid_after.max(at);
            }
            C::PasswordSet { account, password_hash, at } => {
                if let Some(record) = self.accounts.get_mut(&account) {
                    record.password_hash = password_hash;
                }
                let state = self.people.state_mut(account);
                state.tokens_valid_after = state.tokens_valid_after.max(at);
            }
            C::TokensRevoked { account, at } => {
                let state = self.people.state_mut(account);
                state.tokens_valid_after = state.tokens_valid_after.max(at);
            }
            C::DistrictCreated { .. }
            | C::TownCreated { .. }
            | C::GroupCreated { .. }
            | C::AccountCreated { .. }
            | C::RoleSet { .. }
            | C::WarningRaised { .. }
            | C::ApiKeyCreated { .. }
            | C::ApiKeyRevoked { .. } => unreachable!("applied in directory.rs"),
        }
    }
}

/// The membership half of `directory::apply_to_views`: the same change, on
/// the SQLite views, in the writer's transaction.
pub fn apply_to_views(conn: &Connection, seq: Seq, change: &DirectoryChange) -> rusqlite::Result<()> {
    use DirectoryChange as C;
    let id = seq as i64;
    let audit = |group: Id,
                 at: Millis,
                 action: AuditAction,
                 actor: Id,
                 target: Option<Id>,
                 role: Option<Role>,
                 until: Option<Millis>,
                 reason: Option<&str>|
     -> rusqlite::Result<()> {
        conn.prepare_cached(
            r#"INSERT INTO audit (log, seq, "group", at, action, actor, target, role, target_seq, until, reason)
               VALUES (0, ?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, ?9)"#,
        )?
        .execute(params![
            id,
            group as i64,
            at,
            action.as_str(),
            actor as i64,
            target.map(|t| t as i64),
            role.map(|r| r.as_str()),
            until,
            reason
        ])?;
        Ok(())
    };
    let ensure_state = |account: Id| -> rusqlite::Result<()> {
        conn.prepare_cached("INSERT INTO account_state (account) VALUES (?1) ON CONFLICT DO NOTHING")?
            .execute(params![account as i64])?;
        Ok(())
    };
    let set_role = |account: Id, group: Id, role: Role| -> rusqlite::Result<()> {
        conn.prepare_cached(
            r#"INSERT INTO memberships (account, "group", role) VALUES (?1, ?2, ?3)
               ON CONFLICT (account, "group") DO UPDATE SET role = excluded.role"#,
        )?
        .execute(params![account as i64, group as i64, role.as_str()])?;
        Ok(())
    };
    match change {
        C::Registered { phone, name, password_hash, group, household, migrant, at } => {
            conn.prepare_cached(
                "INSERT INTO accounts (id, phone, name, password_hash) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, phone, name, password_hash])?;
            conn.prepare_cached("INSERT INTO account_state (account, status) VALUES (?1, 'pending')")?
                .execute(params![id])?;
            conn.prepare_cached(
                r#"INSERT INTO applications (account, "group", household, migrant, status, reason, at)
                   VALUES (?1, ?2, ?3, ?4, 'pending', NULL, ?5)"#,
            )?
            .execute(params![
                id,
                *group as i64,
                household.as_deref().map(normalize_address),
                migrant,
                at
            ])?;
        }
        C::JoinApproved { account, group, by, at } => {
            let app: Option<(Option<String>, bool)> = conn
                .prepare_cached("SELECT household, migrant FROM applications WHERE account = ?1")?
                .query_row(params![*account as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((address, migrant)) = app else { return Ok(()) };
            conn.prepare_cached("UPDATE applications SET status = 'active' WHERE account = ?1")?
                .execute(params![*account as i64])?;
            ensure_state(*account)?;
            conn.prepare_cached("UPDATE account_state SET status = 'active' WHERE account = ?1")?
                .execute(params![*account as i64])?;
            set_role(*account, *group, Role::Member)?;
            let household = match address {
                None => None,
                Some(address) => {
                    let found: Option<i64> = conn
                        .prepare_cached(r#"SELECT id FROM households WHERE "group" = ?1 AND address = ?2"#)?
                        .query_row(params![*group as i64, address], |r| r.get(0))
                        .optional()?;
                    match found {
                        Some(h) => Some(h),
                        None => {
                            conn.prepare_cached(
                                r#"INSERT INTO households (id, "group", address, head) VALUES (?1, ?2, ?3, ?4)"#,
                            )?
                            .execute(params![id, *group as i64, address, *account as i64])?;
                            Some(id)
                        }
                    }
                }
            };
            conn.prepare_cached(
                r#"INSERT INTO member_state (account, "group", migrant, muted_until, household)
                   VALUES (?1, ?2, ?3, NULL, ?4)
                   ON CONFLICT (account, "group") DO UPDATE SET migrant = excluded.migrant,
                       household = excluded.household"#,
            )?
            .execute(params![*account as i64, *group as i64, migrant, household])?;
            audit(*group, *at, AuditAction::Approve, *by, Some(*account), None, None, None)?;
        }
        C::JoinRejected { account, group, by, at, reason } => {
            conn.prepare_cached(
                "UPDATE applications SET status = 'rejected', reason = ?2 WHERE account = ?1",
            )?
            .execute(params![*account as i64, reason])?;
            ensure_state(*account)?;
            conn.prepare_cached("UPDATE account_state SET status = 'rejected' WHERE account = ?1")?
                .execute(params![*account as i64])?;
            audit(*group, *at, AuditAction::Reject, *by, Some(*account), None, None, Some(reason))?;
        }
        C::RoleChanged { account, group, role, by, at, reason } => {
            set_role(*account, *group, *role)?;
            audit(
                *group,
                *at,
                AuditAction::SetRole,
                *by,
                Some(*account),
                Some(*role),
                None,
                reason.as_deref(),
            )?;
        }
        C::OwnershipTransferred { group, to, by, at, reason } => {
            conn.prepare_cached(
                r#"UPDATE memberships SET role = 'cadre' WHERE "group" = ?1 AND role = 'secretary'"#,
            )?
            .execute(params![*group as i64])?;
            set_role(*to, *group, Role::Secretary)?;
            audit(
                *group,
                *at,
                AuditAction::Transfer,
                *by,
                Some(*to),
                Some(Role::Secretary),
                None,
                reason.as_deref(),
            )?;
        }
        C::MemberMuted { account, group, until, by, at, reason } => {
            conn.prepare_cached(
                r#"INSERT INTO member_state (account, "group", migrant, muted_until) VALUES (?1, ?2, 0, ?3)
                   ON CONFLICT (account, "group") DO UPDATE SET muted_until = excluded.muted_until"#,
            )?
            .execute(params![*account as i64, *group as i64, until])?;
            audit(*group, *at, AuditAction::Mute, *by, Some(*account), None, Some(*until), Some(reason))?;
        }
        C::MemberRemoved { account, group, by, at, reason } => {
            conn.prepare_cached(r#"DELETE FROM memberships WHERE account = ?1 AND "group" = ?2"#)?
                .execute(params![*account as i64, *group as i64])?;
            conn.prepare_cached(r#"DELETE FROM member_state WHERE account = ?1 AND "group" = ?2"#)?
                .execute(params![*account as i64, *group as i64])?;
            audit(*group, *at, AuditAction::Remove, *by, Some(*account), None, None, Some(reason))?;
        }
        C::HouseholdCreated { group, address } => {
            conn.prepare_cached(
                r#"INSERT INTO households (id, "group", address, head) VALUES (?1, ?2, ?3, NULL)"#,
            )?
            .execute(params![id, *group as i64, normalize_address(address)])?;
        }
        C::HouseholdJoined { account, household, head } => {
            let group: i64 = conn
                .prepare_cached(r#"SELECT "group" FROM households WHERE id = ?1"#)?
                .query_row(params![*household as i64], |r| r.get(0))?;
            if *head {
                conn.prepare_cached("UPDATE households SET head = ?2 WHERE id = ?1")?
                    .execute(params![*household as i64, *account as i64])?;
            }
            conn.prepare_cached(
                r#"INSERT INTO member_state (account, "group", migrant, muted_until, household)
                   VALUES (?1, ?2, 0, NULL, ?3)
                   ON CONFLICT (account, "group") DO UPDATE SET household = excluded.household"#,
            )?
            .execute(params![*account as i64, group, *household as i64])?;
        }
        C::OfficeGranted { account, office } => {
            let (kind, scope) = office_columns(*office);
            conn.prepare_cached(
                "INSERT INTO offices (account, kind, scope) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?
            .execute(params![*account as i64, kind, scope])?;
        }
        C::PartySet { account, party } => {
            ensure_state(*account)?;
            conn.prepare_cached("UPDATE account_state SET party = ?2 WHERE account = ?1")?
                .execute(params![*account as i64, party])?;
        }
        C::AccountDisabled { account, at } => {
            ensure_state(*account)?;
            conn.prepare_cached(
                "UPDATE account_state SET status = 'disabled',
                     tokens_valid_after = MAX(tokens_valid_after, ?2) WHERE account = ?1",
            )?
            .execute(params![*account as i64, at])?;
        }
        C::PasswordSet { account, password_hash, at } => {
            conn.prepare_cached("UPDATE accounts SET password_hash = ?2 WHERE id = ?1")?
                .execute(params![*account as i64, password_hash])?;
            ensure_state(*account)?;
            conn.prepare_cached(
                "UPDATE account_state SET tokens_valid_after = MAX(tokens_valid_after, ?2) WHERE account = ?1",
            )?
            .execute(params![*account as i64, at])?;
        }
        C::TokensRevoked { account, at } => {
            ensure_state(*account)?;
            conn.prepare_cached(
                "UPDATE account_state SET tokens_valid_after = MAX(tokens_valid_after, ?2) WHERE account = ?1",
            )?
            .execute(params![*account as i64, at])?;
        }
        C::DistrictCreated { .. }
        | C::TownCreated { .. }
        | C::GroupCreated { .. }
        | C::AccountCreated { .. }
        | C::RoleSet { .. }
        | C::WarningRaised { .. }
        | C::ApiKeyCreated { .. }
        | C::ApiKeyRevoked { .. } => unreachable!("applied in directory.rs"),
    }
    Ok(())
}

pub fn office_columns(office: Office) -> (&'static str, i64) {
    match office {
        Office::Town(t) => ("town", t as i64),
        Office::District(d) => ("district", d as i64),
        Office::Admin => ("admin", 0),
    }
}

pub fn parse_office(kind: &str, scope: i64) -> Option<Office> {
    match kind {
        "town" => Some(Office::Town(scope as Id)),
        "district" => Some(Office::District(scope as Id)),
        "admin" => Some(Office::Admin),
        _ => None,
    }
}

pub fn parse_status(text: &str) -> Option<AccountStatus> {
    [AccountStatus::Active, AccountStatus::Pending, AccountStatus::Rejected, AccountStatus::Disabled]
        .into_iter()
        .find(|s| s.as_str() == text)
}

/// Loads the membership views into `dir` (after accounts and memberships).
pub fn load(c: &Connection, dir: &mut Directory) -> rusqlite::Result<()> {
    let mut stmt = c.prepare("SELECT account, status, party, tokens_valid_after FROM account_state")?;
    for row in stmt.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, i64>(3)?))
    })? {
        let (account, status, party, after) = row?;
        let state = dir.people.state_mut(account as Id);
        state.status = parse_status(&status).unwrap_or(AccountStatus::Disabled);
        state.party = party;
        state.tokens_valid_after = after;
    }
    let mut stmt = c.prepare("SELECT account, kind, scope FROM offices")?;
    for row in
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?
    {
        let (account, kind, scope) = row?;
        if let Some(office) = parse_office(&kind, scope) {
            dir.people.state_mut(account as Id).offices.push(office);
        }
    }
    let mut stmt = c.prepare(r#"SELECT id, "group", address, head FROM households"#)?;
    for row in stmt.query_map([], |r| {
        Ok(HouseholdRecord {
            id: r.get::<_, i64>(0)? as Id,
            group: r.get::<_, i64>(1)? as Id,
            address: r.get(2)?,
            head: r.get::<_, Option<i64>>(3)?.map(|h| h as Id),
        })
    })? {
        dir.people.insert_household(row?);
    }
    let mut stmt =
        c.prepare(r#"SELECT account, "group", migrant, muted_until, household FROM member_state"#)?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as Id,
            r.get::<_, i64>(1)? as Id,
            MemberState {
                migrant: r.get(2)?,
                muted_until: r.get(3)?,
                household: r.get::<_, Option<i64>>(4)?.map(|h| h as Id),
            },
        ))
    })? {
        let (account, group, state) = row?;
        dir.people.members.insert((account, group), state);
    }
    let mut stmt =
        c.prepare(r#"SELECT account, "group", household, migrant, status, reason, at FROM applications"#)?;
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as Id,
            ApplicationRecord {
                group: r.get::<_, i64>(1)? as Id,
                household: r.get(2)?,
                migrant: r.get(3)?,
                status: parse_status(&r.get::<_, String>(4)?).unwrap_or(AccountStatus::Rejected),
                reason: r.get(5)?,
                at: r.get(6)?,
            },
        ))
    })? {
        let (account, app) = row?;
        dir.people.applications.insert(account, app);
    }
    Ok(())
}

/// The SQL of the membership views, appended to the store's schema.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS account_state (
    account            INTEGER PRIMARY KEY,
    status             TEXT NOT NULL DEFAULT 'active',
    party              INTEGER NOT NULL DEFAULT 0,
    tokens_valid_after INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS offices (
    account INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    scope   INTEGER NOT NULL,
    PRIMARY KEY (account, kind, scope)
);
CREATE TABLE IF NOT EXISTS member_state (
    account     INTEGER NOT NULL,
    "group"     INTEGER NOT NULL,
    migrant     INTEGER NOT NULL DEFAULT 0,
    muted_until INTEGER,
    household   INTEGER,
    PRIMARY KEY (account, "group")
);
CREATE TABLE IF NOT EXISTS households (
    id      INTEGER PRIMARY KEY,
    "group" INTEGER NOT NULL,
    address TEXT NOT NULL,
    head    INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS households_address ON households ("group", address);
CREATE TABLE IF NOT EXISTS applications (
    account   INTEGER PRIMARY KEY,
    "group"   INTEGER NOT NULL,
    household TEXT,
    migrant   INTEGER NOT NULL,
    status    TEXT NOT NULL,
    reason    TEXT,
    at        INTEGER NOT NULL
);
-- One row per audited event: (log, seq) is the event (log 0 for directory
-- changes, the group's log for `hide`).
CREATE TABLE IF NOT EXISTS audit (
    log        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    "group"    INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    action     TEXT NOT NULL,
    actor      INTEGER NOT NULL,
    target     INTEGER,
    role       TEXT,
    target_seq INTEGER,
    until      INTEGER,
    reason     TEXT,
    PRIMARY KEY (log, seq)
);
CREATE INDEX IF NOT EXISTS audit_by_group ON audit ("group", at);
-- A hidden message's replacement frames: what members read, and what
-- cadres and officers read, in history and backfill.
CREATE TABLE IF NOT EXISTS redactions (
    log             INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    member_frame    TEXT NOT NULL,
    moderator_frame TEXT NOT NULL,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use protocol::GroupKind;

    /// The views in SQLite, loaded back, equal the directory in memory after
    /// the same changes: a node rebuilt from its store (or from the log)
    /// decides exactly as the node that applied the changes live.
    #[test]
    fn views_and_memory_agree() {
        let temp = tempfile::tempdir().unwrap();
        let store = Store::open(temp.path()).unwrap();
        let mut conn = store.open_writer(crate::config::SyncMode::Normal).unwrap();
        let mut dir = Directory::default();
        use DirectoryChange as C;
        let account = |phone: &str, name: &str| C::AccountCreated {
            phone: phone.into(),
            name: name.into(),
            password_hash: "h".into(),
        };
        let registered = |phone: &str, household: Option<&str>| C::Registered {
            phone: phone.into(),
            name: "申请人".into(),
            password_hash: "h".into(),
            group: 3,
            household: household.map(String::from),
            migrant: household.is_none(),
            at: 1000,
        };
        let changes = vec![
            C::DistrictCreated { name: "宝山区".into() },          // 1
            C::TownCreated { district: 1, name: "月浦镇".into() }, // 2
            C::GroupCreated { town: 2, name: "聚源桥村".into(), kind: GroupKind::Village }, // 3
            account("1", "书记"),                                  // 4
            C::RoleSet { account: 4, group: 3, role: Role::Secretary }, // 5
            account("2", "委员"),                                  // 6
            C::RoleSet { account: 6, group: 3, role: Role::Cadre }, // 7
            registered("3", Some("1组1号")),                       // 8
            registered("4", Some(" 1组1号")),                      // 9
            registered("5", None),                                 // 10
            registered("6", Some("2组2号")),                       // 11
            C::JoinApproved { account: 8, group: 3, by: 6, at: 2000 }, // 12
            C::JoinApproved { account: 9, group: 3, by: 4, at: 2001 }, // 13
            C::JoinApproved { account: 10, group: 3, by: 6, at: 2002 }, // 14
            C::JoinRejected { account: 11, group: 3, by: 6, at: 2003, reason: "查无此人".into() }, // 15
            C::RoleChanged { account: 9, group: 3, role: Role::Volunteer, by: 4, at: 2004, reason: None }, // 16
            C::MemberMuted { account: 10, group: 3, until: 9999, by: 6, at: 2005, reason: "刷屏".into() }, // 17
            C::OwnershipTransferred { group: 3, to: 6, by: 4, at: 2006, reason: Some("换届".into()) }, // 18
            C::MemberRemoved { account: 10, group: 3, by: 6, at: 2007, reason: "迁出".into() },        // 19
            C::HouseholdCreated { group: 3, address: "3组3号".into() },                                // 20
            C::HouseholdJoined { account: 4, household: 20, head: true },                              // 21
            account("7", "镇干部"),                                                                    // 22
            C::OfficeGranted { account: 22, office: Office::Town(2) },                                 // 23
            C::PartySet { account: 4, party: true },                                                   // 24
            C::TokensRevoked { account: 8, at: 3000 },                                                 // 25
            C::PasswordSet { account: 9, password_hash: "h2".into(), at: 3001 },                       // 26
            C::AccountDisabled { account: 6, at: 3002 },                                               // 27
        ];
        let tx = conn.transaction().unwrap();
        for (i, change) in changes.iter().enumerate() {
            let seq = i as u64 + 1;
            dir.check(change).unwrap_or_else(|e| panic!("change {seq} refused: {e}"));
            crate::directory::apply_to_views(&tx, seq, change).unwrap();
            dir.apply(seq, change);
        }
        tx.commit().unwrap();
        let loaded = store.load_directory().unwrap();
        for account in 1..=27 {
            assert_eq!(loaded.people.state(account), dir.people.state(account), "state of {account}");
            assert_eq!(loaded.memberships(account), dir.memberships(account), "memberships of {account}");
            assert_eq!(loaded.people.member(account, 3), dir.people.member(account, 3), "member {account}");
            assert_eq!(
                loaded.people.applications.get(&account),
                dir.people.applications.get(&account),
                "application of {account}"
            );
        }
        assert_eq!(loaded.people.households, dir.people.households);
        assert_eq!(loaded.people.household_by_address, dir.people.household_by_address);
        // And what they mean: residents of one address share the household
        // created by the first approval; the transfer left one secretary.
        assert_eq!(dir.people.member(9, 3).household, Some(12));
        assert_eq!(dir.people.households[&12].head, Some(8));
        assert_eq!(dir.secretary_of(3), Some(6));
        assert_eq!(dir.role(4, 3), Some(Role::Cadre));
        assert_eq!(dir.role(10, 3), None);
        assert_eq!(dir.people.state(11).status, AccountStatus::Rejected);
        assert!(dir.sight(22, 3).is_some_and(|s| s.officer == Some(Role::TownOfficer)));
        assert!(dir.sight(6, 3).is_none(), "a disabled account sees nothing");
    }
}
