//! `villagehub bench-seed`: many synthetic members for the load generator,
//! written through the log like any other directory change, plus a file of
//! ready tokens so that the generator does not pay an argon2 login per
//! member (it still measures a few real logins itself).

use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use futures_util::future::try_join_all;

use protocol::{GroupKind, Id, Role};

use crate::auth::hash_password;
use crate::directory::DirectoryChange;
use crate::hub::Hub;

pub const BENCH_PASSWORD: &str = "bench1234";

#[derive(Debug, Clone, clap::Args)]
pub struct BenchSeedArgs {
    /// Number of groups to create.
    #[arg(long, default_value_t = 20)]
    pub groups: usize,
    /// Members per group (the first of each group is its secretary).
    #[arg(long, default_value_t = 250)]
    pub members: usize,
    /// Where to write the tokens, one JSON object per line:
    /// {"group","account","phone","token"}.
    #[arg(long)]
    pub tokens_out: PathBuf,
}

/// Phone of bench member `m` of bench group `g` (both 0-based).
pub fn bench_phone(g: usize, m: usize) -> String {
    format!("19{g:04}{m:05}")
}

pub async fn seed(hub: &Hub, args: &BenchSeedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.groups <= 9999 && args.members <= 99999, "at most 9,999 groups of 99,999 members");
    anyhow::ensure!(
        hub.directory.read().unwrap().account_by_phone(&bench_phone(0, 0)).is_none(),
        "this data directory is already seeded; use a fresh one"
    );
    // One hash for every synthetic member: hashing 19,000 passwords would
    // take minutes and prove nothing.
    let password_hash = tokio::task::spawn_blocking(|| hash_password(BENCH_PASSWORD)).await?;
    let district = hub.change_directory(DirectoryChange::DistrictCreated { name: "基准区".into() }).await?;
    let town = hub.change_directory(DirectoryChange::TownCreated { district, name: "基准镇".into() }).await?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.tokens_out)?);
    for g in 0..args.groups {
        let group = hub
            .change_directory(DirectoryChange::GroupCreated {
                town,
                name: format!("基准村{}", g + 1),
                kind: GroupKind::Village,
            })
            .await?;
        // Concurrent appends: the log writer commits them in a few batches.
        let accounts: Vec<Id> = try_join_all((0..args.members).map(|m| {
            hub.change_directory(DirectoryChange::AccountCreated {
                phone: bench_phone(g, m),
                name: format!("成员{}-{}", g + 1, m + 1),
                password_hash: password_hash.clone(),
            })
        }))
        .await?;
        try_join_all(accounts.iter().enumerate().map(|(m, &account)| {
            let role = if m == 0 { Role::Secretary } else { Role::Member };
            hub.change_directory(DirectoryChange::RoleSet { account, group, role })
        }))
        .await?;
        for (m, &account) in accounts.iter().enumerate() {
            let (token, _) = hub.tokens.issue(account, SystemTime::now(), hub.config.token_ttl);
            let line = serde_json::json!({"group": group, "account": account, "phone": bench_phone(g, m), "token": token});
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}
