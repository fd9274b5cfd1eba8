//! Statistics and TOP-10 needs of a scope (a group, a town, a district)
//! over a period, computed from the group logs themselves.
//!
//! Both read the `events` table (log, ts, author, kind, frame) of every
//! group in the scope, by primary key per group and filtered on `ts`, and
//! look at each frame's `body`: no view is kept, so nothing here runs at
//! apply time and the figures are the same on every node (each holds every
//! log). A scan costs one pass over the period's events of the scope; a
//! materialised per-day rollup is the next step once a district's history
//! makes that pass slow.
//!
//! Who may read: cadres and the secretary of a group (its own scope), town
//! officers (their town and its groups), district officers (their district,
//! its towns and groups). Everyone else is refused.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jieba_rs::Jieba;
use rusqlite::{params, Connection};
use serde_json::Value;

use protocol::{AccountStatus, ErrorCode, Id, Millis, Need, Office, Role, Stats};

use crate::auth::unix_millis;
use crate::directory::Directory;
use crate::http::{api_error, bearer_account, AppState};
use crate::hub::{Account, Hub, OpError};
use crate::store::StoreError;

/// The TOP-N of `needs`.
pub const TOP_NEEDS: usize = 10;

/// A scope of statistics, broadcasts and warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Group(Id),
    Town(Id),
    District(Id),
}

impl Scope {
    /// `group:4`, `town:2`, `district:1`.
    pub fn parse(text: &str) -> Result<Scope, OpError> {
        let bad = || OpError::bad_request("scope is group:ID, town:ID or district:ID");
        let (kind, id) = text.split_once(':').ok_or_else(bad)?;
        let id: Id = id.parse().map_err(|_| bad())?;
        match kind {
            "group" => Ok(Scope::Group(id)),
            "town" => Ok(Scope::Town(id)),
            "district" => Ok(Scope::District(id)),
            _ => Err(bad()),
        }
    }

    pub fn to_wire(self) -> String {
        match self {
            Scope::Group(id) => format!("group:{id}"),
            Scope::Town(id) => format!("town:{id}"),
            Scope::District(id) => format!("district:{id}"),
        }
    }
}

/// The groups of `scope` if `account` may read its figures. An unknown
/// group, town or district is `not_found`; a known one outside the
/// account's office is `forbidden`.
pub fn readable_groups(dir: &Directory, account: Id, scope: Scope) -> Result<Vec<Id>, OpError> {
    let state = dir.people.state(account);
    let active = state.status == AccountStatus::Active;
    let offices = &state.offices;
    let forbidden = || {
        OpError::new(
            ErrorCode::Forbidden,
            "figures are for the cadres of the group and the officers of its town and district",
        )
    };
    let mut groups: Vec<Id> = match scope {
        Scope::Group(group) => {
            let sight = dir.sight(account, group).ok_or_else(OpError::no_such_group)?;
            let allowed =
                sight.officer.is_some() || matches!(sight.member, Some(Role::Cadre) | Some(Role::Secretary));
            if !allowed {
                return Err(forbidden());
            }
            vec![group]
        }
        Scope::Town(town) => {
            let record =
                dir.towns.get(&town).ok_or_else(|| OpError::new(ErrorCode::NotFound, "no such town"))?;
            let allowed =
                offices.contains(&Office::Town(town)) || offices.contains(&Office::District(record.district));
            if !active || !allowed {
                return Err(forbidden());
            }
            dir.groups.values().filter(|g| g.town == town).map(|g| g.id).collect()
        }
        Scope::District(district) => {
            if !dir.districts.contains_key(&district) {
                return Err(OpError::new(ErrorCode::NotFound, "no such district"));
            }
            if !active || !offices.contains(&Office::District(district)) {
                return Err(forbidden());
            }
            dir.groups
                .values()
                .filter(|g| dir.towns.get(&g.town).is_some_and(|t| t.district == district))
                .map(|g| g.id)
                .collect()
        }
    };
    groups.sort_unstable();
    Ok(groups)
}

/// The period `[from, to)`: absent bounds are the epoch and now.
pub fn period(from: Option<Millis>, to: Option<Millis>) -> Result<(Millis, Millis), OpError> {
    let from = from.unwrap_or(0);
    let to = to.unwrap_or_else(|| unix_millis(SystemTime::now()) + 1);
    if to < from {
        return Err(OpError::bad_request("`to` is before `from`"));
    }
    Ok((from, to))
}

/// Calls `f(author, kind, body)` for every event of `groups` in the period.
fn each_event(
    conn: &Connection,
    groups: &[Id],
    from: Millis,
    to: Millis,
    mut f: impl FnMut(Id, &str, &Value),
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT author, kind, frame FROM events WHERE log = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY seq",
    )?;
    for group in groups {
        let mut rows = stmt.query(params![*group as i64, from, to])?;
        while let Some(row) = rows.next()? {
            let author: i64 = row.get(0)?;
            let kind: String = row.get(1)?;
            let frame: String = row.get(2)?;
            let body = serde_json::from_str::<Value>(&frame)
                .ok()
                .and_then(|mut v| v.get_mut("body").map(Value::take))
                .unwrap_or(Value::Null);
            f(author as Id, &kind, &body);
        }
    }
    Ok(())
}

/// The figures of `groups` over `[from, to)`.
pub fn compute_stats(
    conn: &Connection,
    scope: &str,
    groups: &[Id],
    from: Millis,
    to: Millis,
) -> Result<Stats, StoreError> {
    let mut stats = Stats {
        scope: scope.to_string(),
        from,
        to,
        groups: groups.len() as u64,
        notices: 0,
        interactions: 0,
        likes: 0,
        participants: 0,
        topics: 0,
        conventions: 0,
        projects: 0,
        requests: 0,
        requests_answered: 0,
        requests_solved_in_group: 0,
        requests_escalated: 0,
        exchanged_items: 0,
    };
    let mut participants = HashSet::new();
    // Request references are per group: (group index, request).
    let mut answered = HashSet::new();
    let mut escalated = HashSet::new();
    for (i, group) in groups.iter().enumerate() {
        each_event(conn, std::slice::from_ref(group), from, to, |author, kind, body| {
            stats.interactions += 1;
            if author != 0 {
                participants.insert(author);
            }
            match kind {
                "notice" | "broadcast" => stats.notices += 1,
                "like" => stats.likes += 1,
                "unlike" => stats.likes -= 1,
                "topic" => stats.topics += 1,
                "topic_closed" => match body.get("outcome").and_then(Value::as_str) {
                    Some("convention") => stats.conventions += 1,
                    Some("project") => stats.projects += 1,
                    _ => {}
                },
                "request" => stats.requests += 1,
                "request_reply" => {
                    answered.insert((i, body.get("request").cloned().unwrap_or(Value::Null).to_string()));
                }
                "request_resolved" if body.get("solved_in_group").and_then(Value::as_bool) == Some(true) => {
                    stats.requests_solved_in_group += 1
                }
                "request_escalated" => {
                    escalated.insert((i, body.get("request").cloned().unwrap_or(Value::Null).to_string()));
                }
                "item_handed_over" => stats.exchanged_items += 1,
                _ => {}
            }
        })?;
    }
    stats.participants = participants.len() as u64;
    stats.requests_answered = answered.len() as u64;
    stats.requests_escalated = escalated.len() as u64;
    Ok(stats)
}

/// The segmenter, with its built-in dictionary; loaded once, on first use.
fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

/// Words that say nothing about a need (function words, politeness,
/// pronouns, vague verbs). Single characters are dropped before this list.
const STOP_WORDS: &[&str] = &[
    "我们",
    "你们",
    "他们",
    "她们",
    "大家",
    "自己",
    "这个",
    "那个",
    "这些",
    "那些",
    "这里",
    "那里",
    "什么",
    "怎么",
    "怎么办",
    "如何",
    "为什么",
    "请问",
    "希望",
    "能否",
    "是否",
    "可以",
    "能够",
    "需要",
    "已经",
    "因为",
    "所以",
    "但是",
    "如果",
    "还是",
    "或者",
    "而且",
    "然后",
    "现在",
    "今天",
    "昨天",
    "明天",
    "一下",
    "一直",
    "一个",
    "非常",
    "比较",
    "特别",
    "问题",
    "情况",
    "没有",
    "不是",
    "就是",
    "还有",
    "有没有",
    "一些",
    "有关",
    "关于",
    "谢谢",
    "麻烦",
    "您好",
    "你好",
    "帮忙",
    "解决",
    "反映",
    "建议",
    "经常",
    "每天",
    "晚上",
    "早上",
    "时候",
    "目前",
    "最近",
    "很多",
    "太多",
    "不能",
    "不要",
    "应该",
];

/// The words of a text that may name a need: segmented by jieba (with its
/// HMM for unknown words), at least two characters, letters only (CJK or
/// alphanumeric), not a stop word.
pub fn need_words(text: &str) -> Vec<String> {
    jieba()
        .cut(text, true)
        .into_iter()
        .map(|token| token.word)
        .filter(|w| w.chars().count() >= 2)
        .filter(|w| w.chars().all(char::is_alphanumeric))
        .filter(|w| !STOP_WORDS.contains(w))
        .map(str::to_string)
        .collect()
}

/// The TOP-10 needs of `groups` over `[from, to)`: request categories and
/// the words of request texts and topic titles and texts, most frequent
/// first (ties by term, so the list is stable).
pub fn compute_needs(
    conn: &Connection,
    groups: &[Id],
    from: Millis,
    to: Millis,
) -> Result<Vec<Need>, StoreError> {
    let mut counts: HashMap<(&'static str, String), u64> = HashMap::new();
    each_event(conn, groups, from, to, |_, kind, body| {
        let text = |field: &str| body.get(field).and_then(Value::as_str).unwrap_or("").to_string();
        let words = match kind {
            "request" => {
                let category = text("category");
                if !category.trim().is_empty() {
                    *counts.entry(("category", category.trim().to_string())).or_default() += 1;
                }
                need_words(&text("text"))
            }
            "topic" => need_words(&format!("{} {}", text("title"), text("text"))),
            _ => return,
        };
        for word in words {
            *counts.entry(("word", word)).or_default() += 1;
        }
    })?;
    let mut needs: Vec<Need> = counts
        .into_iter()
        .map(|((source, term), count)| Need { term, source: source.to_string(), count })
        .collect();
    needs.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| a.term.cmp(&b.term)).then(a.source.cmp(&b.source))
    });
    needs.truncate(TOP_NEEDS);
    Ok(needs)
}

/// `stats` (socket) and `GET /api/stats`.
pub async fn stats(
    hub: &Arc<Hub>,
    account: &Account,
    scope: &str,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Result<Stats, OpError> {
    let parsed = Scope::parse(scope)?;
    let groups = readable_groups(&hub.directory.read().unwrap(), account.id, parsed)?;
    stats_of(hub, parsed, groups, from, to).await
}

/// The figures of `groups` (those of `scope`, already checked) over a period.
pub async fn stats_of(
    hub: &Hub,
    scope: Scope,
    groups: Vec<Id>,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Result<Stats, OpError> {
    let (from, to) = period(from, to)?;
    let scope = scope.to_wire();
    let store = hub.store.clone();
    tokio::task::spawn_blocking(move || store.read(|c| compute_stats(c, &scope, &groups, from, to)))
        .await
        .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
        .map_err(OpError::from)
}

/// `needs` (socket) and `GET /api/needs`.
pub async fn needs(
    hub: &Arc<Hub>,
    account: &Account,
    scope: &str,
    from: Option<Millis>,
    to: Option<Millis>,
) -> Result<(String, Millis, Millis, Vec<Need>), OpError> {
    let parsed = Scope::parse(scope)?;
    let groups = readable_groups(&hub.directory.read().unwrap(), account.id, parsed)?;
    let (from, to) = period(from, to)?;
    let store = hub.store.clone();
    let needs = tokio::task::spawn_blocking(move || store.read(|c| compute_needs(c, &groups, from, to)))
        .await
        .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
        .map_err(OpError::from)?;
    Ok((parsed.to_wire(), from, to, needs))
}

/// Query of `GET /api/stats` and `GET /api/needs`.
#[derive(Debug, serde::Deserialize)]
pub struct PeriodQuery {
    pub scope: String,
    pub from: Option<Millis>,
    pub to: Option<Millis>,
}

/// `GET /api/stats?scope=town:2&from=&to=` with `Authorization: Bearer TOKEN`.
pub async fn http_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let account = match bearer_account(&state.hub, &headers) {
        Ok(account) => account,
        Err(e) => return api_error(e.code, &e.message),
    };
    match stats(&state.hub, &account, &query.scope, query.from, query.to).await {
        Ok(stats) => axum::Json(stats).into_response(),
        Err(e) => api_error(e.code, &e.message),
    }
}

/// `GET /api/needs?scope=…`: `{"scope":…,"from":…,"to":…,"needs":[…]}`.
pub async fn http_needs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let account = match bearer_account(&state.hub, &headers) {
        Ok(account) => account,
        Err(e) => return api_error(e.code, &e.message),
    };
    match needs(&state.hub, &account, &query.scope, query.from, query.to).await {
        Ok((scope, from, to, needs)) => {
            axum::Json(serde_json::json!({"scope": scope, "from": from, "to": to, "needs": needs}))
                .into_response()
        }
        Err(e) => api_error(e.code, &e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        assert_eq!(Scope::parse("town:2").unwrap(), Scope::Town(2));
        assert_eq!(Scope::parse("group:17").unwrap().to_wire(), "group:17");
        assert!(Scope::parse("village:1").is_err());
        assert!(Scope::parse("town:x").is_err());
    }

    #[test]
    fn words_are_segmented_not_matched() {
        let words = need_words("我们小区停车位太少了，希望解决停车难问题");
        assert!(words.contains(&"停车位".to_string()), "{words:?}");
        assert!(!words.iter().any(|w| STOP_WORDS.contains(&w.as_str())), "{words:?}");
        assert!(words.iter().all(|w| w.chars().count() >= 2), "{words:?}");
    }
}
