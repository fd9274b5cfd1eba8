//! `villagehub admin …`: the administrator's command line. Every change
//! goes through the directory log like any other (`Node::open` on the data
//! directory, which takes the data directory lock — so these commands
//! refuse to run while a server holds it).
//!
//! - `org import FILE` — districts, towns, groups and their secretaries
//!   from TOML or CSV (by extension); idempotent by name.
//! - `account create|list|disable`, `password reset`.
//! - `apikey create|list|revoke`: keys of other government systems
//!   (`gov_api`); a new key is printed once and only its hash is kept.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rand::Rng;
use serde::Deserialize;

use protocol::{GroupKind, Id, Office, Role};

use crate::auth::{hash_password, unix_millis};
use crate::directory::DirectoryChange;
use crate::hub::Hub;

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// The org tree: districts, towns, groups, secretaries.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Passwords.
    #[command(subcommand)]
    Password(PasswordCommand),
    /// API keys of other government systems (`/api/v1/`, docs/API.md).
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
}

// --- government api ---
#[derive(Debug, Clone, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key for one system and scope; the key is printed once.
    Create {
        /// The system's name, shown as the author of its notices.
        #[arg(long)]
        system: String,
        /// `group:ID`, `town:ID` or `district:ID`.
        #[arg(long)]
        scope: String,
        /// Comma-separated: `notices` (publish notices), `read` (statistics
        /// and requests).
        #[arg(long, value_delimiter = ',', required = true)]
        rights: Vec<String>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key, on every node.
    Revoke { id: Id },
}

async fn apikey(hub: &Hub, command: ApiKeyCommand) -> anyhow::Result<String> {
    use crate::gov_api::keys::{self, ApiRight};
    match command {
        ApiKeyCommand::Create { system, scope, rights } => {
            let rights = rights
                .iter()
                .map(|r| ApiRight::parse(r).with_context(|| format!("right {r:?} is not notices or read")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let scope = crate::stats::Scope::parse(&scope)
                .map_err(|_| anyhow::anyhow!("scope must be group:ID, town:ID or district:ID"))?
                .to_wire();
            let (key, key_hash) = keys::generate();
            let change = DirectoryChange::ApiKeyCreated {
                system: system.clone(),
                scope: scope.clone(),
                rights: rights.clone(),
                key_hash,
                at: now(),
            };
            let id = hub.change_directory(change).await?;
            let rights: Vec<&str> = rights.iter().map(|r| r.as_str()).collect();
            Ok(format!(
                "created API key {id} for {system} ({scope}; rights: {})\n\
                 key (shown only now; keep it secret): {key}\n",
                rights.join(",")
            ))
        }
        ApiKeyCommand::List => {
            let dir = hub.directory.read().unwrap();
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{:>6}  {:<16} {:<12} {:<14} {:<21} status",
                "id", "system", "scope", "rights", "created"
            );
            for k in dir.api_keys.sorted() {
                let rights: Vec<&str> = k.rights.iter().map(|r| r.as_str()).collect();
                let status = match k.revoked_at {
                    Some(at) => format!("revoked {}", crate::gov_api::time::rfc3339(at)),
                    None => "active".to_string(),
                };
                let _ = writeln!(
                    out,
                    "{:>6}  {:<16} {:<12} {:<14} {:<21} {status}",
                    k.id,
                    k.system,
                    k.scope.to_wire(),
                    rights.join(","),
                    crate::gov_api::time::rfc3339(k.created_at)
                );
            }
            Ok(out)
        }
        ApiKeyCommand::Revoke { id } => {
            hub.change_directory(DirectoryChange::ApiKeyRevoked { key: id, at: now() }).await?;
            Ok(format!("revoked API key {id}\n"))
        }
    }
}
// --- end government api ---

#[derive(Debug, Clone, Subcommand)]
pub enum OrgCommand {
    /// Import districts, towns, groups and secretaries from a `.toml` or
    /// `.csv` file. Existing objects (same name under the same parent) are
    /// kept; new secretaries get a generated password, printed once.
    Import { file: PathBuf },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AccountCommand {
    /// Create an active account, optionally a member of a group, an officer
    /// or an administrator.
    Create(CreateArgs),
    /// List accounts with their status, offices and memberships.
    List {
        /// Only members of this group.
        #[arg(long)]
        group: Option<Id>,
    },
    /// Disable an account: it can no longer log in, its tokens are revoked
    /// and its connections closed.
    Disable {
        #[arg(long)]
        phone: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub phone: String,
    /// Real name.
    #[arg(long)]
    pub name: String,
    /// Password (8–128 characters); generated and printed when absent.
    #[arg(long)]
    pub password: Option<String>,
    /// Group to join (with `--role`, default `member`).
    #[arg(long)]
    pub group: Option<Id>,
    /// member, volunteer, cadre or secretary.
    #[arg(long, requires = "group")]
    pub role: Option<String>,
    /// `town:ID`, `district:ID` or `admin`.
    #[arg(long)]
    pub office: Option<String>,
    /// Party member (badge on posts).
    #[arg(long)]
    pub party: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum PasswordCommand {
    /// Set a new password (generated and printed when `--password` is
    /// absent); every earlier token of the account is revoked.
    Reset {
        #[arg(long)]
        phone: String,
        #[arg(long)]
        password: Option<String>,
    },
}

/// Runs one admin command; what it did goes to stdout.
pub async fn run(hub: &Hub, command: AdminCommand) -> anyhow::Result<String> {
    match command {
        AdminCommand::Org(OrgCommand::Import { file }) => import(hub, &file).await,
        AdminCommand::Account(AccountCommand::Create(args)) => create(hub, args).await,
        AdminCommand::Account(AccountCommand::List { group }) => Ok(list(hub, group)),
        AdminCommand::Account(AccountCommand::Disable { phone }) => {
            let account = account_by_phone(hub, &phone)?;
            hub.change_directory(DirectoryChange::AccountDisabled { account, at: now() }).await?;
            Ok(format!("disabled account {account} ({phone})\n"))
        }
        AdminCommand::Password(PasswordCommand::Reset { phone, password }) => {
            let account = account_by_phone(hub, &phone)?;
            let (password, shown) = password_or_generated(password)?;
            let password_hash = hash(password).await?;
            hub.change_directory(DirectoryChange::PasswordSet { account, password_hash, at: now() }).await?;
            Ok(format!("password of account {account} ({phone}) reset{shown}; earlier tokens are revoked\n"))
        }
        AdminCommand::Apikey(command) => apikey(hub, command).await,
    }
}

fn now() -> i64 {
    unix_millis(SystemTime::now())
}

fn account_by_phone(hub: &Hub, phone: &str) -> anyhow::Result<Id> {
    hub.directory
        .read()
        .unwrap()
        .account_by_phone(phone)
        .map(|a| a.id)
        .with_context(|| format!("no account {phone}"))
}

fn generate_password() -> String {
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..12).map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char).collect()
}

/// The password to set and how to report it (a generated one is printed).
fn password_or_generated(password: Option<String>) -> anyhow::Result<(String, String)> {
    match password {
        Some(p) => {
            crate::hub::check_new_password(&p).map_err(|e| anyhow::anyhow!(e.message))?;
            Ok((p, String::new()))
        }
        None => {
            let p = generate_password();
            let shown = format!(" (password: {p})");
            Ok((p, shown))
        }
    }
}

async fn hash(password: String) -> anyhow::Result<String> {
    Ok(tokio::task::spawn_blocking(move || hash_password(&password)).await?)
}

fn parse_office(text: &str) -> anyhow::Result<Office> {
    match text.split_once(':') {
        None if text == "admin" => Ok(Office::Admin),
        Some(("town", id)) => Ok(Office::Town(id.parse().context("town:ID")?)),
        Some(("district", id)) => Ok(Office::District(id.parse().context("district:ID")?)),
        _ => bail!("office must be town:ID, district:ID or admin"),
    }
}

async fn create(hub: &Hub, args: CreateArgs) -> anyhow::Result<String> {
    let role = match &args.role {
        Some(r) => match Role::parse(r) {
            Some(role @ (Role::Member | Role::Volunteer | Role::Cadre | Role::Secretary)) => Some(role),
            _ => bail!("role must be member, volunteer, cadre or secretary"),
        },
        None => args.group.map(|_| Role::Member),
    };
    let office = args.office.as_deref().map(parse_office).transpose()?;
    let (password, shown) = password_or_generated(args.password)?;
    let password_hash = hash(password).await?;
    let account = hub
        .change_directory(DirectoryChange::AccountCreated {
            phone: args.phone.clone(),
            name: args.name.clone(),
            password_hash,
        })
        .await?;
    if let (Some(group), Some(role)) = (args.group, role) {
        hub.change_directory(DirectoryChange::RoleSet { account, group, role }).await?;
    }
    if let Some(office) = office {
        hub.change_directory(DirectoryChange::OfficeGranted { account, office }).await?;
    }
    if args.party {
        hub.change_directory(DirectoryChange::PartySet { account, party: true }).await?;
    }
    Ok(format!("created account {account} ({}, {}){shown}\n", args.phone, args.name))
}

fn list(hub: &Hub, group: Option<Id>) -> String {
    let dir = hub.directory.read().unwrap();
    let mut accounts: Vec<_> = dir.accounts.values().collect();
    accounts.sort_by_key(|a| a.id);
    let mut out = String::new();
    let _ = writeln!(out, "{:>6}  {:<12} {:<10} {:<9} {:<5} where", "id", "phone", "name", "status", "party");
    for a in accounts {
        let memberships = dir.memberships(a.id);
        if group.is_some_and(|g| !memberships.iter().any(|(mg, _)| *mg == g)) {
            continue;
        }
        let state = dir.people.state(a.id);
        let mut places: Vec<String> = memberships
            .iter()
            .map(|(g, role)| {
                let name = dir.groups.get(g).map(|g| g.name.as_str()).unwrap_or("?");
                let migrant = if dir.people.member(a.id, *g).migrant { ", migrant" } else { "" };
                format!("{name}#{g}:{}{migrant}", role.as_str())
            })
            .collect();
        places.extend(state.offices.iter().map(|o| match o {
            Office::Town(t) => {
                format!("town officer of {}#{t}", dir.towns.get(t).map(|t| t.name.as_str()).unwrap_or("?"))
            }
            Office::District(d) => {
                format!("district officer of {}#{d}", dir.districts.get(d).map(String::as_str).unwrap_or("?"))
            }
            Office::Admin => "admin".to_string(),
        }));
        if let Some(app) = dir.people.applications.get(&a.id).filter(|_| !state.status.is_active()) {
            places.push(format!("applied to #{}", app.group));
        }
        let _ = writeln!(
            out,
            "{:>6}  {:<12} {:<10} {:<9} {:<5} {}",
            a.id,
            a.phone,
            a.name,
            state.status.as_str(),
            if state.party { "yes" } else { "" },
            places.join("; ")
        );
    }
    out
}

/// One group row of an org file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    pub district: String,
    pub town: String,
    pub group: String,
    pub kind: GroupKind,
    /// (name, phone)
    pub secretary: Option<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgFile {
    district: Vec<DistrictEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DistrictEntry {
    name: String,
    #[serde(default)]
    town: Vec<TownEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TownEntry {
    name: String,
    #[serde(default)]
    group: Vec<GroupEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    name: String,
    kind: GroupKind,
    secretary: Option<SecretaryEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretaryEntry {
    name: String,
    phone: String,
}

/// Reads an org file: TOML (`[[district]]`, `[[district.town]]`,
/// `[[district.town.group]]` with `name`, `kind`, optional
/// `secretary = {name, phone}`) or CSV (header
/// `district,town,group,kind,secretary_name,secretary_phone`, no quoting).
pub fn parse_org(path: &Path) -> anyhow::Result<Vec<OrgRow>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let file: OrgFile =
                toml::from_str(&text).with_context(|| format!("bad org file {}", path.display()))?;
            for d in file.district {
                for t in d.town {
                    for g in t.group {
                        rows.push(OrgRow {
                            district: d.name.clone(),
                            town: t.name.clone(),
                            group: g.name,
                            kind: g.kind,
                            secretary: g.secretary.map(|s| (s.name, s.phone)),
                        });
                    }
                }
            }
        }
        Some("csv") => {
            for (n, line) in text.lines().enumerate().skip(1) {
                if line.trim().is_empty() {
                    continue;
                }
                let cells: Vec<&str> = line.split(',').map(str::trim).collect();
                let [district, town, group, kind, secretary_name, secretary_phone] = cells[..] else {
                    bail!("{}:{}: expected 6 columns, got {}", path.display(), n + 1, cells.len());
                };
                let kind = match kind {
                    "village" => GroupKind::Village,
                    "neighbourhood" => GroupKind::Neighbourhood,
                    other => {
                        bail!("{}:{}: kind {other:?} is not village or neighbourhood", path.display(), n + 1)
                    }
                };
                let secretary = (!secretary_phone.is_empty())
                    .then(|| (secretary_name.to_string(), secretary_phone.to_string()));
                rows.push(OrgRow {
                    district: district.into(),
                    town: town.into(),
                    group: group.into(),
                    kind,
                    secretary,
                });
            }
        }
        _ => bail!("org file must end in .toml or .csv"),
    }
    for row in &rows {
        if row.district.is_empty() || row.town.is_empty() || row.group.is_empty() {
            bail!("every row needs a district, a town and a group name");
        }
    }
    Ok(rows)
}

async fn import(hub: &Hub, path: &Path) -> anyhow::Result<String> {
    let rows = parse_org(path)?;
    let mut out = String::new();
    let mut created = (0, 0, 0, 0);
    for row in rows {
        let district = match find(hub, |d| {
            d.districts.iter().find(|(_, n)| **n == row.district).map(|(id, _)| *id)
        }) {
            Some(id) => id,
            None => {
                created.0 += 1;
                hub.change_directory(DirectoryChange::DistrictCreated { name: row.district.clone() }).await?
            }
        };
        let town = match find(hub, |d| {
            d.towns.values().find(|t| t.district == district && t.name == row.town).map(|t| t.id)
        }) {
            Some(id) => id,
            None => {
                created.1 += 1;
                hub.change_directory(DirectoryChange::TownCreated { district, name: row.town.clone() })
                    .await?
            }
        };
        let group = match find(hub, |d| {
            d.groups.values().find(|g| g.town == town && g.name == row.group).map(|g| g.id)
        }) {
            Some(id) => id,
            None => {
                created.2 += 1;
                let id = hub
                    .change_directory(DirectoryChange::GroupCreated {
                        town,
                        name: row.group.clone(),
                        kind: row.kind,
                    })
                    .await?;
                let _ = writeln!(out, "group {id}: {} · {} · {}", row.district, row.town, row.group);
                id
            }
        };
        let Some((name, phone)) = row.secretary else { continue };
        let existing = find(hub, |d| d.account_by_phone(&phone).map(|a| a.id));
        let account = match existing {
            Some(id) => id,
            None => {
                created.3 += 1;
                let password = generate_password();
                let password_hash = hash(password.clone()).await?;
                let id = hub
                    .change_directory(DirectoryChange::AccountCreated {
                        phone: phone.clone(),
                        name: name.clone(),
                        password_hash,
                    })
                    .await?;
                let _ = writeln!(out, "secretary {id}: {name} {phone} (password: {password})");
                id
            }
        };
        let current = find(hub, |d| d.secretary_of(group));
        match current {
            Some(s) if s == account => {}
            Some(s) => {
                let _ = writeln!(
                    out,
                    "warning: {} already has secretary {s}; {phone} not made secretary",
                    row.group
                );
            }
            None => {
                hub.change_directory(DirectoryChange::RoleSet { account, group, role: Role::Secretary })
                    .await?;
            }
        }
    }
    let _ = writeln!(
        out,
        "imported: {} districts, {} towns, {} groups, {} secretary accounts created",
        created.0, created.1, created.2, created.3
    );
    Ok(out)
}

fn find<T>(hub: &Hub, f: impl FnOnce(&crate::directory::Directory) -> Option<T>) -> Option<T> {
    f(&hub.directory.read().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offices_parse() {
        assert_eq!(parse_office("town:2").unwrap(), Office::Town(2));
        assert_eq!(parse_office("district:1").unwrap(), Office::District(1));
        assert_eq!(parse_office("admin").unwrap(), Office::Admin);
        assert!(parse_office("mayor").is_err());
    }

    #[test]
    fn csv_and_toml_give_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("org.csv");
        std::fs::write(
            &csv,
            "district,town,group,kind,secretary_name,secretary_phone\n\
             宝山区,顾村镇,刘行村,village,王一,13700000001\n\
             宝山区,顾村镇,菊泉新城,neighbourhood,,\n",
        )
        .unwrap();
        let toml_path = dir.path().join("org.toml");
        std::fs::write(
            &toml_path,
            r#"
[[district]]
name = "宝山区"
[[district.town]]
name = "顾村镇"
[[district.town.group]]
name = "刘行村"
kind = "village"
secretary = { name = "王一", phone = "13700000001" }
[[district.town.group]]
name = "菊泉新城"
kind = "neighbourhood"
"#,
        )
        .unwrap();
        let rows = parse_org(&csv).unwrap();
        assert_eq!(rows, parse_org(&toml_path).unwrap());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].secretary, Some(("王一".into(), "13700000001".into())));
        assert_eq!(rows[1].secretary, None);
    }
}
