//! Demo data for `--demo`: Baoshan district with two towns and three groups
//! (two villages, one neighbourhood committee), each with a secretary, a
//! cadre and four members, plus a few chat messages. The names are
//! invented. Created once: an existing directory is left as it is.

use std::fmt::Write;

use protocol::{Author, EventBody, GroupKind, Id, MessageBody, Role};

use crate::auth::hash_password;
use crate::directory::DirectoryChange;
use crate::hub::{Hub, OpError};
use crate::log::Append;

pub const DEMO_PASSWORD: &str = "demo1234";

/// (group, kind, town index, people: secretary, cadre, members...)
const GROUPS: [(&str, GroupKind, usize, [&str; 6]); 3] = [
    ("聚源桥村", GroupKind::Village, 0, ["李建国", "张丽华", "王秀英", "陈志强", "刘桂兰", "赵明"]),
    ("宝月尚园", GroupKind::Neighbourhood, 0, ["周国华", "吴晓梅", "孙立新", "郑芳", "冯建平", "何雨"]),
    ("南周村", GroupKind::Village, 1, ["黄德明", "林秀珍", "高志远", "罗美玲", "梁永强", "宋佳"]),
];
const TOWNS: [&str; 2] = ["月浦镇", "罗店镇"];

/// Phone of demo person `person` (0-based) of demo group `group` (0-based):
/// `1380000{g}{p:03}` with 1-based g and p, e.g. 13800001001.
pub fn demo_phone(group: usize, person: usize) -> String {
    format!("1380000{}{:03}", group + 1, person + 1)
}

fn role_of(person: usize) -> Role {
    match person {
        0 => Role::Secretary,
        1 => Role::Cadre,
        _ => Role::Member,
    }
}

/// Creates the demo data if the directory is empty; returns the login table.
pub async fn create(hub: &Hub) -> Result<String, OpError> {
    let empty = hub.directory.read().unwrap().districts.is_empty();
    // In a cluster, another node may have made the directory already; this
    // node may just not have it (yet).
    let made_elsewhere = hub.log.cluster().is_some_and(|c| c.directory_exists());
    if empty && !made_elsewhere {
        let district =
            hub.change_directory(DirectoryChange::DistrictCreated { name: "宝山区".into() }).await?;
        let mut towns = Vec::new();
        for name in TOWNS {
            towns.push(
                hub.change_directory(DirectoryChange::TownCreated { district, name: name.into() }).await?,
            );
        }
        for (g, (name, kind, town, people)) in GROUPS.iter().enumerate() {
            let group = hub
                .change_directory(DirectoryChange::GroupCreated {
                    town: towns[*town],
                    name: (*name).into(),
                    kind: *kind,
                })
                .await?;
            let mut ids: Vec<Id> = Vec::new();
            for (p, person) in people.iter().enumerate() {
                let password_hash = tokio::task::spawn_blocking(|| hash_password(DEMO_PASSWORD))
                    .await
                    .expect("hashing does not panic");
                let account = hub
                    .change_directory(DirectoryChange::AccountCreated {
                        phone: demo_phone(g, p),
                        name: (*person).into(),
                        password_hash,
                    })
                    .await?;
                hub.change_directory(DirectoryChange::RoleSet { account, group, role: role_of(p) }).await?;
                ids.push(account);
            }
            let greetings = [
                (0, format!("欢迎大家加入{name}议事群！有事请在群里说，村（居）委会15小时内一定回复。")),
                (2, "书记好！以后有事就在这里说了。".to_string()),
                (1, "本周六上午九点在活动室开展垃圾分类宣传，欢迎参加。".to_string()),
            ];
            for (i, (p, text)) in greetings.into_iter().enumerate() {
                let author = Author { id: ids[p], name: people[p].into(), role: role_of(p) };
                let body = EventBody::Message(MessageBody { text, reply_to: None });
                let client_key = Some(format!("demo-{g}-{i}"));
                hub.log.append(Append::Group { group, author, client_key, body }).await?;
            }
        }
    }
    Ok(login_table())
}

fn login_table() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Demo logins (password for all: {DEMO_PASSWORD}):");
    for (g, (name, _, town, people)) in GROUPS.iter().enumerate() {
        let _ = writeln!(out, "  {} · {}", TOWNS[*town], name);
        for (p, person) in people.iter().enumerate() {
            let _ = writeln!(out, "    {}  {:<10} {}", demo_phone(g, p), role_of(p).as_str(), person);
        }
    }
    out
}
