//! The directory: org tree (district → town → group), accounts and
//! memberships. It changes only through events of the directory log
//! (`DirectoryChange`), applied by the log writer both to SQLite (the views)
//! and to the in-memory copy that every op is checked against.
//!
//! The id of every object created by a change is the seq of that change in
//! the directory log, so ids are gap-free, never reused and the same on
//! every node that applies the log.

use std::collections::HashMap;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use protocol::{GroupKind, Id, Millis, Office, Role};

use crate::membership::People;

/// One change of the directory log. Serialized as the event's frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum DirectoryChange {
    DistrictCreated {
        name: String,
    },
    TownCreated {
        district: Id,
        name: String,
    },
    GroupCreated {
        town: Id,
        name: String,
        kind: GroupKind,
    },
    AccountCreated {
        phone: String,
        name: String,
        password_hash: String,
    },
    /// Adds a member or changes an existing member's role (system: demo,
    /// admin command line, bench seed; not audited).
    RoleSet {
        account: Id,
        group: Id,
        role: Role,
    },
    // Membership (see `membership.rs`). Changes made by a person carry `by`
    // (the acting account) and `at` (ms since the epoch, taken by the
    // service before sequencing), so that applying the log never reads a
    // clock: every node derives the same views from the same events.
    /// `POST /api/register`: a new account (id = seq), pending approval by a
    /// cadre of `group`.
    Registered {
        phone: String,
        name: String,
        password_hash: String,
        group: Id,
        /// Household address, for a registered resident.
        household: Option<String>,
        migrant: bool,
        at: Millis,
    },
    /// The applicant becomes a member. A registered resident joins the
    /// household of the group with the address given, which is created
    /// (id = this seq, the applicant its head) if there is none.
    JoinApproved {
        account: Id,
        group: Id,
        by: Id,
        at: Millis,
    },
    JoinRejected {
        account: Id,
        group: Id,
        by: Id,
        at: Millis,
        reason: String,
    },
    /// The secretary sets a member's role (member, volunteer, cadre).
    RoleChanged {
        account: Id,
        group: Id,
        role: Role,
        by: Id,
        at: Millis,
        reason: Option<String>,
    },
    /// `to` becomes the secretary; the previous secretary becomes a cadre.
    OwnershipTransferred {
        group: Id,
        to: Id,
        by: Id,
        at: Millis,
        reason: Option<String>,
    },
    /// Sends refused until `until`.
    MemberMuted {
        account: Id,
        group: Id,
        until: Millis,
        by: Id,
        at: Millis,
        reason: String,
    },
    MemberRemoved {
        account: Id,
        group: Id,
        by: Id,
        at: Millis,
        reason: String,
    },
    /// A household of a group (id = seq).
    HouseholdCreated {
        group: Id,
        address: String,
    },
    /// A member joins a household of their group (as its head, or not).
    HouseholdJoined {
        account: Id,
        household: Id,
        head: bool,
    },
    /// A post above the groups (system).
    OfficeGranted {
        account: Id,
        office: Office,
    },
    /// Party membership, shown as a badge on the person's posts (system).
    PartySet {
        account: Id,
        party: bool,
    },
    /// The account can no longer log in; its tokens are revoked.
    AccountDisabled {
        account: Id,
        at: Millis,
    },
    /// New password hash; tokens issued before `at` are revoked.
    PasswordSet {
        account: Id,
        password_hash: String,
        at: Millis,
    },
    /// Logout: tokens issued before `at` are revoked.
    TokensRevoked {
        account: Id,
        at: Millis,
    },
    /// An early warning (see `warnings.rs`). `key` names what it is about
    /// (`spike:4:2941…`); a second change with a key already applied is
    /// a no-op, so every node of a cluster may raise the same warning.
    WarningRaised {
        key: String,
        group: Id,
        reason: String,
        detail: String,
        links: Vec<protocol::WarningLink>,
        at: Millis,
    },
    // --- government api ---
    /// An API key of another government system (admin command line; id =
    /// seq). Only the key's SHA-256 (hex) is in the log.
    ApiKeyCreated {
        system: String,
        /// `group:G`, `town:T` or `district:D`.
        scope: String,
        rights: Vec<crate::gov_api::keys::ApiRight>,
        key_hash: String,
        at: Millis,
    },
    /// The key is refused from now on, on every node.
    ApiKeyRevoked {
        key: Id,
        at: Millis,
    },
    // --- end government api ---
}

impl DirectoryChange {
    pub fn kind(&self) -> &'static str {
        match self {
            DirectoryChange::DistrictCreated { .. } => "district_created",
            DirectoryChange::TownCreated { .. } => "town_created",
            DirectoryChange::GroupCreated { .. } => "group_created",
            DirectoryChange::AccountCreated { .. } => "account_created",
            DirectoryChange::RoleSet { .. } => "role_set",
            DirectoryChange::Registered { .. } => "registered",
            DirectoryChange::JoinApproved { .. } => "join_approved",
            DirectoryChange::JoinRejected { .. } => "join_rejected",
            DirectoryChange::RoleChanged { .. } => "role_changed",
            DirectoryChange::OwnershipTransferred { .. } => "ownership_transferred",
            DirectoryChange::MemberMuted { .. } => "member_muted",
            DirectoryChange::MemberRemoved { .. } => "member_removed",
            DirectoryChange::HouseholdCreated { .. } => "household_created",
            DirectoryChange::HouseholdJoined { .. } => "household_joined",
            DirectoryChange::OfficeGranted { .. } => "office_granted",
            DirectoryChange::PartySet { .. } => "party_set",
            DirectoryChange::AccountDisabled { .. } => "account_disabled",
            DirectoryChange::PasswordSet { .. } => "password_set",
            DirectoryChange::TokensRevoked { .. } => "tokens_revoked",
            DirectoryChange::ApiKeyCreated { .. } => "api_key_created",
            DirectoryChange::ApiKeyRevoked { .. } => "api_key_revoked",
            DirectoryChange::WarningRaised { .. } => "warning_raised",
        }
    }
}

/// Why a directory change cannot be applied. Checked before the change is
/// given a seq, so a refused change leaves no event behind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("phone already registered")]
    PhoneTaken,
    #[error("no such {0}")]
    Missing(&'static str),
    #[error("group already has a secretary")]
    SecretaryTaken,
    /// The acting account may see the group but not do this there.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The change is malformed (an impossible role, a blank reason).
    #[error("{0}")]
    Invalid(&'static str),
    /// The change contradicts the state (not pending any more, already so).
    #[error("{0}")]
    Conflict(&'static str),
}

impl DirectoryError {
    /// The wire error code for a refused change.
    pub fn code(&self) -> protocol::ErrorCode {
        use protocol::ErrorCode;
        match self {
            DirectoryError::Missing(_) => ErrorCode::NotFound,
            DirectoryError::Forbidden(_) => ErrorCode::Forbidden,
            DirectoryError::Invalid(_) => ErrorCode::BadRequest,
            DirectoryError::PhoneTaken | DirectoryError::SecretaryTaken | DirectoryError::Conflict(_) => {
                ErrorCode::Conflict
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct TownRecord {
    pub id: Id,
    pub district: Id,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub id: Id,
    pub town: Id,
    pub name: String,
    pub kind: GroupKind,
}

#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub id: Id,
    pub phone: String,
    pub name: String,
    pub password_hash: String,
}

/// In-memory copy of the directory views. Readers take a short read lock
/// (`RwLock<Directory>` in `Hub`) and copy out what they need.
#[derive(Debug, Default)]
pub struct Directory {
    pub districts: HashMap<Id, String>,
    pub towns: HashMap<Id, TownRecord>,
    pub groups: HashMap<Id, GroupRecord>,
    pub accounts: HashMap<Id, AccountRecord>,
    phones: HashMap<String, Id>,
    /// account → (group, role), a handful per account.
    memberships: HashMap<Id, Vec<(Id, Role)>>,
    /// Account standing, offices, households, applications, member flags.
    pub people: People,
    /// API keys of other government systems (`gov_api`).
    pub api_keys: crate::gov_api::keys::ApiKeys,
}

impl Directory {
    pub fn insert_account(&mut self, account: AccountRecord) {
        self.phones.insert(account.phone.clone(), account.id);
        self.accounts.insert(account.id, account);
    }

    pub fn set_role(&mut self, account: Id, group: Id, role: Role) {
        let list = self.memberships.entry(account).or_default();
        match list.iter_mut().find(|(g, _)| *g == group) {
            Some(entry) => entry.1 = role,
            None => list.push((group, role)),
        }
    }

    /// Ends a membership (the member's flags go with it).
    pub fn remove_member(&mut self, account: Id, group: Id) {
        if let Some(list) = self.memberships.get_mut(&account) {
            list.retain(|(g, _)| *g != group);
            if list.is_empty() {
                self.memberships.remove(&account);
            }
        }
        self.people.members.remove(&(account, group));
    }

    /// Members of a group with their roles (a scan: for rare operations).
    pub fn members_of(&self, group: Id) -> Vec<(Id, Role)> {
        self.memberships
            .iter()
            .filter_map(|(account, list)| list.iter().find(|(g, _)| *g == group).map(|(_, r)| (*account, *r)))
            .collect()
    }

    pub fn account_by_phone(&self, phone: &str) -> Option<&AccountRecord> {
        self.phones.get(phone).and_then(|id| self.accounts.get(id))
    }

    /// The account's role in the group, if it is a member.
    pub fn role(&self, account: Id, group: Id) -> Option<Role> {
        self.memberships
            .get(&account)
            .and_then(|list| list.iter().find(|(g, _)| *g == group))
            .map(|(_, role)| *role)
    }

    pub fn memberships(&self, account: Id) -> &[(Id, Role)] {
        self.memberships.get(&account).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn secretary_of(&self, group: Id) -> Option<Id> {
        self.memberships.iter().find_map(|(account, list)| {
            list.iter().any(|(g, r)| *g == group && *r == Role::Secretary).then_some(*account)
        })
    }

    /// The group as the wire describes it to one of its members.
    pub fn group_info(&self, group: Id, role: Role) -> Option<protocol::GroupInfo> {
        let g = self.groups.get(&group)?;
        let town = self.towns.get(&g.town).map(|t| t.name.clone()).unwrap_or_default();
        Some(protocol::GroupInfo {
            id: g.id,
            name: g.name.clone(),
            kind: g.kind,
            town,
            role,
            migrant: false,
            household: None,
            muted_until: None,
        })
    }

    /// Checks that `change` can be applied now. `pending` holds phones taken
    /// by earlier changes of the same, not yet applied, batch.
    pub fn check(&self, change: &DirectoryChange) -> Result<(), DirectoryError> {
        match change {
            DirectoryChange::DistrictCreated { .. } => Ok(()),
            DirectoryChange::TownCreated { district, .. } => {
                self.districts.contains_key(district).then_some(()).ok_or(DirectoryError::Missing("district"))
            }
            DirectoryChange::GroupCreated { town, .. } => {
                self.towns.contains_key(town).then_some(()).ok_or(DirectoryError::Missing("town"))
            }
            DirectoryChange::AccountCreated { phone, .. } => {
                if self.phones.contains_key(phone) {
                    Err(DirectoryError::PhoneTaken)
                } else {
                    Ok(())
                }
            }
            DirectoryChange::RoleSet { account, group, role } => {
                if !self.accounts.contains_key(account) {
                    return Err(DirectoryError::Missing("account"));
                }
                if !self.groups.contains_key(group) {
                    return Err(DirectoryError::Missing("group"));
                }
                if *role == Role::Secretary {
                    if let Some(owner) = self.secretary_of(*group) {
                        if owner != *account {
                            return Err(DirectoryError::SecretaryTaken);
                        }
                    }
                }
                Ok(())
            }
            DirectoryChange::ApiKeyCreated { .. } | DirectoryChange::ApiKeyRevoked { .. } => {
                crate::gov_api::keys::check(self, change)
            }
            DirectoryChange::WarningRaised { group, .. } => {
                self.groups.contains_key(group).then_some(()).ok_or(DirectoryError::Missing("group"))
            }
            other => self.check_membership(other),
        }
    }

    /// Applies a checked change, committed as directory seq `seq`, to memory.
    pub fn apply(&mut self, seq: u64, change: &DirectoryChange) {
        self.people.note_applied(seq, change);
        match change.clone() {
            DirectoryChange::DistrictCreated { name } => {
                self.districts.insert(seq, name);
            }
            DirectoryChange::TownCreated { district, name } => {
                self.towns.insert(seq, TownRecord { id: seq, district, name });
            }
            DirectoryChange::GroupCreated { town, name, kind } => {
                self.groups.insert(seq, GroupRecord { id: seq, town, name, kind });
            }
            DirectoryChange::AccountCreated { phone, name, password_hash } => {
                self.insert_account(AccountRecord { id: seq, phone, name, password_hash });
            }
            DirectoryChange::RoleSet { account, group, role } => self.set_role(account, group, role),
            DirectoryChange::ApiKeyCreated { .. } | DirectoryChange::ApiKeyRevoked { .. } => {
                crate::gov_api::keys::apply(self, seq, change)
            }
            // Stored as a view only (`warnings` table); nothing in memory.
            DirectoryChange::WarningRaised { .. } => {}
            other => self.apply_membership(seq, &other),
        }
    }
}

/// Applies a change to the SQLite views, inside the writer's transaction.
pub fn apply_to_views(conn: &Connection, seq: u64, change: &DirectoryChange) -> rusqlite::Result<()> {
    let id = seq as i64;
    match change {
        DirectoryChange::DistrictCreated { name } => {
            conn.prepare_cached("INSERT INTO districts (id, name) VALUES (?1, ?2)")?
                .execute(params![id, name])?;
        }
        DirectoryChange::TownCreated { district, name } => {
            conn.prepare_cached("INSERT INTO towns (id, district, name) VALUES (?1, ?2, ?3)")?
                .execute(params![id, *district as i64, name])?;
        }
        DirectoryChange::GroupCreated { town, name, kind } => {
            conn.prepare_cached(r#"INSERT INTO "groups" (id, town, name, kind) VALUES (?1, ?2, ?3, ?4)"#)?
                .execute(params![id, *town as i64, name, kind.as_str()])?;
        }
        DirectoryChange::AccountCreated { phone, name, password_hash } => {
            conn.prepare_cached(
                "INSERT INTO accounts (id, phone, name, password_hash) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, phone, name, password_hash])?;
        }
        DirectoryChange::RoleSet { account, group, role } => {
            conn.prepare_cached(
                r#"INSERT INTO memberships (account, "group", role) VALUES (?1, ?2, ?3)
                   ON CONFLICT (account, "group") DO UPDATE SET role = excluded.role"#,
            )?
            .execute(params![*account as i64, *group as i64, role.as_str()])?;
        }
        // No view: `gov_api::keys::load` replays them from the log.
        DirectoryChange::ApiKeyCreated { .. } | DirectoryChange::ApiKeyRevoked { .. } => {}
        // Stored by the writer, which also pushes it (see `log.rs`).
        DirectoryChange::WarningRaised { .. } => {}
        other => crate::membership::apply_to_views(conn, seq, other)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_secretary_per_group() {
        let mut dir = Directory::default();
        dir.apply(1, &DirectoryChange::DistrictCreated { name: "宝山区".into() });
        dir.apply(2, &DirectoryChange::TownCreated { district: 1, name: "月浦镇".into() });
        dir.apply(
            3,
            &DirectoryChange::GroupCreated { town: 2, name: "聚源桥村".into(), kind: GroupKind::Village },
        );
        for (seq, phone) in [(4, "1"), (5, "2")] {
            let change = DirectoryChange::AccountCreated {
                phone: phone.into(),
                name: "x".into(),
                password_hash: "h".into(),
            };
            dir.check(&change).unwrap();
            dir.apply(seq, &change);
        }
        let first = DirectoryChange::RoleSet { account: 4, group: 3, role: Role::Secretary };
        dir.check(&first).unwrap();
        dir.apply(6, &first);
        let second = DirectoryChange::RoleSet { account: 5, group: 3, role: Role::Secretary };
        assert_eq!(dir.check(&second), Err(DirectoryError::SecretaryTaken));
        assert_eq!(dir.secretary_of(3), Some(4));
        assert_eq!(
            dir.check(&DirectoryChange::AccountCreated {
                phone: "1".into(),
                name: "y".into(),
                password_hash: "h".into()
            }),
            Err(DirectoryError::PhoneTaken)
        );
    }
}
