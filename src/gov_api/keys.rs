//! API keys of other government systems: one per system and scope, with
//! rights. A key is made and revoked by the admin command line as a change
//! of the directory log (`ApiKeyCreated`, `ApiKeyRevoked`), so every node
//! of a cluster knows it; only the SHA-256 of the key is in the log.
//!
//! Keys have no view table: the directory load replays the two kinds of
//! change from the directory log itself (`load`), which keeps the store's
//! schema as it is.

use std::collections::HashMap;

use rand::RngCore;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use protocol::{Id, Millis, Role};

use crate::directory::{Directory, DirectoryChange, DirectoryError};
use crate::stats::Scope;
use crate::store::DIRECTORY_LOG;

/// Every key starts so, which makes a leaked key easy to recognise (and to
/// scan for in repositories).
pub const KEY_PREFIX: &str = "vhk_";

/// Longest system name, in characters.
pub const MAX_SYSTEM_NAME: usize = 100;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRight {
    /// Publish notices into the groups of its scope.
    Notices,
    /// Read statistics and requests of its scope.
    Read,
}

impl ApiRight {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRight::Notices => "notices",
            ApiRight::Read => "read",
        }
    }

    pub fn parse(text: &str) -> Option<ApiRight> {
        match text.trim() {
            "notices" => Some(ApiRight::Notices),
            "read" => Some(ApiRight::Read),
            _ => None,
        }
    }
}

/// One key as the directory holds it.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// The seq of its `ApiKeyCreated`; it namespaces the system's client
    /// keys.
    pub id: Id,
    /// The external system's name, shown as the author of its notices.
    pub system: String,
    pub scope: Scope,
    pub rights: Vec<ApiRight>,
    /// SHA-256 of the key.
    pub hash: [u8; 32],
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

impl ApiKeyRecord {
    pub fn may(&self, right: ApiRight) -> bool {
        self.rights.contains(&right)
    }

    /// The role its posts carry: the level of its scope.
    pub fn role(&self) -> Role {
        match self.scope {
            Scope::Group(_) => Role::Cadre,
            Scope::Town(_) => Role::TownOfficer,
            Scope::District(_) => Role::DistrictOfficer,
        }
    }
}

/// The keys known to the directory, revoked ones included (so that their
/// ids are never reused and `list` shows them).
#[derive(Debug, Default)]
pub struct ApiKeys {
    pub keys: HashMap<Id, ApiKeyRecord>,
}

/// A new random key (shown once) and the hash to store.
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    use base64::Engine;
    let key = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_hex(&key);
    (key, hash)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn hash_hex(key: &str) -> String {
    digest(key).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    /// The active key whose hash is the presented key's. Every stored hash
    /// is compared, in constant time and without stopping at a match, so
    /// the time taken says nothing about which key (if any) matched; an
    /// unknown and a revoked key get the same `None`.
    pub fn find(&self, presented: &str) -> Option<&ApiKeyRecord> {
        let wanted = digest(presented);
        let mut found = None;
        for record in self.keys.values() {
            if bool::from(record.hash.ct_eq(&wanted)) {
                found = Some(record);
            }
        }
        found.filter(|r| r.revoked_at.is_none())
    }

    /// Records, by id.
    pub fn sorted(&self) -> Vec<&ApiKeyRecord> {
        let mut list: Vec<_> = self.keys.values().collect();
        list.sort_by_key(|r| r.id);
        list
    }
}

/// `Directory::check` for key changes.
pub fn check(dir: &Directory, change: &DirectoryChange) -> Result<(), DirectoryError> {
    match change {
        DirectoryChange::ApiKeyCreated { system, scope, rights, key_hash, .. } => {
            if system.trim().is_empty() || system.chars().count() > MAX_SYSTEM_NAME {
                return Err(DirectoryError::Invalid("the system's name must be 1 to 100 characters"));
            }
            if rights.is_empty() {
                return Err(DirectoryError::Invalid("a key needs at least one right"));
            }
            if parse_hash(key_hash).is_none() {
                return Err(DirectoryError::Invalid("key_hash must be a SHA-256 in hex"));
            }
            if dir.api_keys.keys.values().any(|k| k.hash == parse_hash(key_hash).unwrap_or_default()) {
                return Err(DirectoryError::Conflict("that key exists already"));
            }
            let scope = Scope::parse(scope).map_err(|_| DirectoryError::Invalid("bad scope"))?;
            let exists = match scope {
                Scope::Group(g) => dir.groups.contains_key(&g),
                Scope::Town(t) => dir.towns.contains_key(&t),
                Scope::District(d) => dir.districts.contains_key(&d),
            };
            exists.then_some(()).ok_or(DirectoryError::Missing("group, town or district"))
        }
        DirectoryChange::ApiKeyRevoked { key, .. } => match dir.api_keys.keys.get(key) {
            None => Err(DirectoryError::Missing("API key")),
            Some(k) if k.revoked_at.is_some() => Err(DirectoryError::Conflict("the key is revoked already")),
            Some(_) => Ok(()),
        },
        _ => unreachable!("only key changes come here"),
    }
}

/// `Directory::apply` for key changes (checked already).
pub fn apply(dir: &mut Directory, seq: u64, change: &DirectoryChange) {
    match change {
        DirectoryChange::ApiKeyCreated { system, scope, rights, key_hash, at } => {
            let (Ok(scope), Some(hash)) = (Scope::parse(scope), parse_hash(key_hash)) else {
                return;
            };
            let mut rights = rights.clone();
            rights.sort_unstable();
            rights.dedup();
            dir.api_keys.keys.insert(
                seq,
                ApiKeyRecord {
                    id: seq,
                    system: system.clone(),
                    scope,
                    rights,
                    hash,
                    created_at: *at,
                    revoked_at: None,
                },
            );
        }
        DirectoryChange::ApiKeyRevoked { key, at } => {
            if let Some(k) = dir.api_keys.keys.get_mut(key) {
                k.revoked_at.get_or_insert(*at);
            }
        }
        _ => unreachable!("only key changes come here"),
    }
}

/// Replays the key changes of the directory log into a freshly loaded
/// directory.
pub fn load(conn: &Connection, dir: &mut Directory) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT seq, frame FROM events WHERE log = ?1 AND kind IN ('api_key_created', 'api_key_revoked')
         ORDER BY seq",
    )?;
    let rows =
        stmt.query_map(params![DIRECTORY_LOG as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (seq, frame) = row?;
        match serde_json::from_str::<DirectoryChange>(&frame) {
            Ok(change) => apply(dir, seq as u64, &change),
            Err(e) => tracing::error!(seq, error = %e, "API key change this version cannot read; skipped"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_hash_and_revoked_keys_are_not() {
        let (key, hash) = generate();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 43, "{key}");
        let mut dir = Directory::default();
        dir.apply(1, &DirectoryChange::DistrictCreated { name: "宝山区".into() });
        let created = DirectoryChange::ApiKeyCreated {
            system: "12345热线".into(),
            scope: "district:1".into(),
            rights: vec![ApiRight::Read, ApiRight::Notices, ApiRight::Read],
            key_hash: hash.clone(),
            at: 5,
        };
        dir.check(&created).unwrap();
        dir.apply(2, &created);
        assert_eq!(dir.check(&created), Err(DirectoryError::Conflict("that key exists already")));
        let found = dir.api_keys.find(&key).unwrap();
        assert_eq!((found.id, found.rights.as_slice()), (2, &[ApiRight::Notices, ApiRight::Read][..]));
        assert!(dir.api_keys.find("vhk_wrong").is_none());
        let revoked = DirectoryChange::ApiKeyRevoked { key: 2, at: 9 };
        dir.check(&revoked).unwrap();
        dir.apply(3, &revoked);
        assert!(dir.api_keys.find(&key).is_none());
        assert!(dir.check(&revoked).is_err());
        assert!(dir.check(&DirectoryChange::ApiKeyRevoked { key: 7, at: 9 }).is_err());
    }

    #[test]
    fn a_key_for_a_missing_town_or_without_rights_is_refused() {
        let dir = Directory::default();
        let change = |scope: &str, rights: Vec<ApiRight>| DirectoryChange::ApiKeyCreated {
            system: "x".into(),
            scope: scope.into(),
            rights,
            key_hash: "00".repeat(32),
            at: 0,
        };
        assert_eq!(
            dir.check(&change("town:2", vec![ApiRight::Read])),
            Err(DirectoryError::Missing("group, town or district"))
        );
        assert!(dir.check(&change("town:2", vec![])).is_err());
        assert!(dir.check(&change("village:2", vec![ApiRight::Read])).is_err());
    }
}
