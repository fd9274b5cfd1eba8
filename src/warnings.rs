//! Early warnings: a keyword of the configured lexicon in a post pushes a
//! `warning` frame, with its reason and a link (group, seq) to the post, to
//! the cadres and secretary of the group and to the officers of its town
//! and district who are connected.
//!
//! Detection runs in the log writer on every committed group event, local
//! or replicated, so in cluster mode every node warns its own connections
//! and each officer hears of it once per connection wherever connected. It
//! reads only the event and the lexicon (no clock, no randomness); every
//! node must be given the same lexicon. Warnings are pushes, not events:
//! they are not stored, and an officer who was offline sees the posts in
//! the group's history. Message-volume spikes and the overdue-request
//! backlog (which need a clock) are not built yet.

use std::path::Path;
use std::sync::{OnceLock, RwLock};

use serde_json::Value;

use protocol::{Id, Office, Role, Seq, Warning, WarningLink};

use crate::directory::Directory;
use crate::presence::{Accounts, Notice};

/// The keyword lexicon, set once at start-up (`--warning-lexicon FILE`).
static LEXICON: OnceLock<Vec<String>> = OnceLock::new();

/// Reads the lexicon: one keyword a line; blank lines and `#` comments are
/// skipped.
pub fn load_lexicon(path: &Path) -> std::io::Result<usize> {
    let text = std::fs::read_to_string(path)?;
    let words: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let n = words.len();
    let _ = LEXICON.set(words);
    Ok(n)
}

/// The warning a committed group event raises, if any: the first lexicon
/// keyword found in its body's `text` or `title`.
pub fn check_frame(group: Id, seq: Seq, frame: &str) -> Option<Warning> {
    let lexicon = LEXICON.get().filter(|l| !l.is_empty())?;
    let value: Value = serde_json::from_str(frame).ok()?;
    let body = value.get("body")?;
    let texts = ["text", "title"].map(|f| body.get(f).and_then(Value::as_str).unwrap_or(""));
    let hit = lexicon.iter().find(|word| texts.iter().any(|t| t.contains(word.as_str())))?;
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("event");
    Some(Warning {
        group,
        reason: "keyword".into(),
        detail: format!("「{hit}」 in a {kind}"),
        links: vec![WarningLink { group, seq }],
    })
}

/// After the commit: pushes each warning to the connected people in charge.
pub fn push(accounts: &Accounts, directory: &RwLock<Directory>, warnings: Vec<Warning>) {
    for warning in warnings {
        let in_charge: Vec<Id> = {
            let dir = directory.read().unwrap();
            let Some(group) = dir.groups.get(&warning.group) else { continue };
            let district = dir.towns.get(&group.town).map(|t| t.district);
            let mut people: Vec<Id> = dir
                .members_of(warning.group)
                .into_iter()
                .filter(|(_, role)| matches!(role, Role::Cadre | Role::Secretary))
                .map(|(account, _)| account)
                .collect();
            people.extend(dir.people.states.iter().filter_map(|(account, state)| {
                let officer = state.offices.iter().any(|o| {
                    *o == Office::Town(group.town) || district.is_some_and(|d| *o == Office::District(d))
                });
                officer.then_some(*account)
            }));
            people
        };
        for account in in_charge {
            accounts.notify(account, Notice::Warning(Box::new(warning.clone())));
        }
    }
}
