//! Demo data for `--demo`: Baoshan district with two towns and three groups
//! (two villages, one neighbourhood committee), each with a secretary, a
//! cadre and four members, plus a few chat messages; then every other role:
//! a volunteer (Party member) in each group, households, a migrant resident,
//! a pending and a rejected applicant in 聚源桥村, town officers of 月浦镇
//! and 罗店镇, a district officer and an administrator. The names are
//! invented. Created once: an existing directory is left as it is (a data
//! directory from before the extra roles gets them added).

use std::fmt::Write;

use protocol::{Author, EventBody, GroupKind, Id, MessageBody, Office, Role};

use crate::auth::{hash_password, unix_millis};
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
                let author = Author {
                    id: ids[p],
                    name: people[p].into(),
                    role: role_of(p),
                    party: false,
                    migrant: false,
                    system: false,
                };
                let body = EventBody::Message(MessageBody { text, reply_to: None, images: Vec::new() });
                let client_key = Some(format!("demo-{g}-{i}"));
                hub.log.append(Append::Group { group, author, client_key, body }).await?;
            }
        }
    }
    // Only on the demo's own data (not on a directory imported by admin).
    let extras_missing = {
        let dir = hub.directory.read().unwrap();
        dir.account_by_phone(&official_phone(0)).is_none()
            && dir.account_by_phone(&demo_phone(0, 0)).is_some()
    };
    if extras_missing {
        create_extras(hub).await?;
    }
    Ok(login_table())
}

/// Volunteers (p = 7) of every group, Party members.
const VOLUNTEERS: [&str; 3] = ["马红梅", "钱建新", "许文华"];
/// Households of every group: (address suffix, people by index, head first).
const HOUSEHOLDS: [(&str, [usize; 2]); 3] = [("1组12号", [0, 2]), ("2组5号", [1, 3]), ("3组8号", [4, 5])];
/// Above the groups: phones `138000090{i}`.
const OFFICIALS: [(&str, &str); 4] = [
    ("陶建华", "town officer · 月浦镇"),
    ("范丽君", "town officer · 罗店镇"),
    ("蒋国栋", "district officer · 宝山区"),
    ("韩磊", "admin"),
];
/// 聚源桥村's newcomers: a migrant resident (approved), a pending and a
/// rejected applicant.
const MIGRANT: &str = "邓小川";
const PENDING: &str = "彭玉兰";
const REJECTED: &str = "曹伟";

/// Phone of official `i` (0-based): 13800009001…
pub fn official_phone(i: usize) -> String {
    format!("138000090{:02}", i + 1)
}

fn group_id(hub: &Hub, name: &str) -> Id {
    let dir = hub.directory.read().unwrap();
    dir.groups.values().find(|g| g.name == name).map(|g| g.id).expect("demo group exists")
}

fn account_id(hub: &Hub, phone: &str) -> Id {
    hub.directory.read().unwrap().account_by_phone(phone).map(|a| a.id).expect("demo account exists")
}

async fn demo_hash() -> String {
    tokio::task::spawn_blocking(|| hash_password(DEMO_PASSWORD)).await.expect("hashing does not panic")
}

async fn create_extras(hub: &Hub) -> Result<(), OpError> {
    let now = unix_millis(std::time::SystemTime::now());
    let (district, towns) = {
        let dir = hub.directory.read().unwrap();
        let district =
            dir.districts.iter().find(|(_, n)| *n == "宝山区").map(|(id, _)| *id).expect("demo district");
        let town = |name: &str| dir.towns.values().find(|t| t.name == name).map(|t| t.id).expect("demo town");
        (district, [town(TOWNS[0]), town(TOWNS[1])])
    };
    for (g, (name, _, _, _)) in GROUPS.iter().enumerate() {
        let group = group_id(hub, name);
        let account = hub
            .change_directory(DirectoryChange::AccountCreated {
                phone: demo_phone(g, 6),
                name: VOLUNTEERS[g].into(),
                password_hash: demo_hash().await,
            })
            .await?;
        hub.change_directory(DirectoryChange::RoleSet { account, group, role: Role::Volunteer }).await?;
        for party in [account, account_id(hub, &demo_phone(g, 0))] {
            hub.change_directory(DirectoryChange::PartySet { account: party, party: true }).await?;
        }
        for (suffix, people) in HOUSEHOLDS {
            let household = hub
                .change_directory(DirectoryChange::HouseholdCreated {
                    group,
                    address: format!("{name}{suffix}"),
                })
                .await?;
            for (i, p) in people.into_iter().enumerate() {
                let account = account_id(hub, &demo_phone(g, p));
                hub.change_directory(DirectoryChange::HouseholdJoined { account, household, head: i == 0 })
                    .await?;
            }
        }
    }
    // 聚源桥村: a migrant resident approved by the cadre; a pending and a
    // rejected applicant, all through the real registration path.
    let village = group_id(hub, GROUPS[0].0);
    let cadre = account_id(hub, &demo_phone(0, 1));
    for (p, name, household) in
        [(7, MIGRANT, None), (8, PENDING, Some("聚源桥村4组21号")), (9, REJECTED, Some("聚源桥村9组1号"))]
    {
        let account = hub
            .change_directory(DirectoryChange::Registered {
                phone: demo_phone(0, p),
                name: name.into(),
                password_hash: demo_hash().await,
                group: village,
                household: household.map(String::from),
                migrant: household.is_none(),
                at: now,
            })
            .await?;
        match p {
            7 => {
                hub.change_directory(DirectoryChange::JoinApproved {
                    account,
                    group: village,
                    by: cadre,
                    at: now,
                })
                .await?
            }
            9 => {
                let reason = "村里没有这个门牌号，请核对后重新申请。".to_string();
                hub.change_directory(DirectoryChange::JoinRejected {
                    account,
                    group: village,
                    by: cadre,
                    at: now,
                    reason,
                })
                .await?
            }
            _ => 0,
        };
    }
    let offices = [
        Some(Office::Town(towns[0])),
        Some(Office::Town(towns[1])),
        Some(Office::District(district)),
        Some(Office::Admin),
    ];
    for (i, ((name, _), office)) in OFFICIALS.iter().zip(offices).enumerate() {
        let account = hub
            .change_directory(DirectoryChange::AccountCreated {
                phone: official_phone(i),
                name: (*name).into(),
                password_hash: demo_hash().await,
            })
            .await?;
        if let Some(office) = office {
            hub.change_directory(DirectoryChange::OfficeGranted { account, office }).await?;
        }
        if i < 3 {
            hub.change_directory(DirectoryChange::PartySet { account, party: true }).await?;
        }
    }
    Ok(())
}

fn login_table() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Demo logins (password for all: {DEMO_PASSWORD}):");
    for (g, (name, _, town, people)) in GROUPS.iter().enumerate() {
        let _ = writeln!(out, "  {} · {}", TOWNS[*town], name);
        for (p, person) in people.iter().enumerate() {
            let role = if p == 0 { "secretary (Party)" } else { role_of(p).as_str() };
            let _ = writeln!(out, "    {}  {:<18} {}", demo_phone(g, p), role, person);
        }
        let _ = writeln!(out, "    {}  {:<18} {}", demo_phone(g, 6), "volunteer (Party)", VOLUNTEERS[g]);
        if g == 0 {
            let _ = writeln!(out, "    {}  {:<18} {}", demo_phone(g, 7), "member (migrant)", MIGRANT);
            let _ = writeln!(out, "    {}  {:<18} {}", demo_phone(g, 8), "pending applicant", PENDING);
            let _ = writeln!(out, "    {}  {:<18} {}", demo_phone(g, 9), "rejected applicant", REJECTED);
        }
    }
    let _ = writeln!(out, "  Above the groups");
    for (i, (name, role)) in OFFICIALS.iter().enumerate() {
        let _ = writeln!(out, "    {}  {:<18} {}", official_phone(i), role, name);
    }
    let _ =
        writeln!(out, "  Households: {} (head first), in every group", HOUSEHOLDS.map(|h| h.0).join(", "));
    out
}
