//! The role × op × scope matrix: every role tries every op on its own group
//! (聚源桥村, 月浦镇), another group of the same town (宝月尚园) and a group of
//! another town (南周村, 罗店镇); every allow and deny is asserted.

mod common;

use std::fmt;

use common::*;
use protocol::{ErrorCode, ServerFrame};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Pending,
    Rejected,
    Member,
    Migrant,
    Volunteer,
    Cadre,
    Secretary,
    TownOfficer,
    OtherTownOfficer,
    DistrictOfficer,
    Admin,
}

const EVERYONE: [Who; 12] = [
    Who::Anonymous,
    Who::Pending,
    Who::Rejected,
    Who::Member,
    Who::Migrant,
    Who::Volunteer,
    Who::Cadre,
    Who::Secretary,
    Who::TownOfficer,
    Who::OtherTownOfficer,
    Who::DistrictOfficer,
    Who::Admin,
];

impl Who {
    fn phone(self) -> Option<String> {
        Some(match self {
            Who::Anonymous => return None,
            Who::Secretary => demo_phone(1, 1),
            Who::Cadre => demo_phone(1, 2),
            Who::Member => demo_phone(1, 3),
            Who::Volunteer => demo_phone(1, 7),
            Who::Migrant => demo_phone(1, 8),
            Who::Pending => demo_phone(1, 9),
            Who::Rejected => demo_phone(1, 10),
            Who::TownOfficer => official_phone(1),
            Who::OtherTownOfficer => official_phone(2),
            Who::DistrictOfficer => official_phone(3),
            Who::Admin => official_phone(4),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Subscribe,
    History,
    Send,
    Approve,
    Reject,
    Hide,
    Mute,
    Remove,
    SetRole,
    Transfer,
    Audit,
}

/// Transfer last: an allowed transfer is undone before the next role.
const EVERY_OP: [Op; 11] = [
    Op::Subscribe,
    Op::History,
    Op::Send,
    Op::Approve,
    Op::Reject,
    Op::Hide,
    Op::Mute,
    Op::Remove,
    Op::SetRole,
    Op::Audit,
    Op::Transfer,
];

/// The three groups, as seen from 聚源桥村.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Own,
    SameTown,
    OtherTown,
}

const SCOPES: [Scope; 3] = [Scope::Own, Scope::SameTown, Scope::OtherTown];

impl Scope {
    /// Demo group number (1-based, as in the demo phones).
    fn demo_group(self) -> usize {
        match self {
            Scope::Own => 1,
            Scope::SameTown => 2,
            Scope::OtherTown => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Refused(ErrorCode),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Allowed => f.write_str("allowed"),
            Outcome::Refused(code) => f.write_str(code.as_str()),
        }
    }
}

/// The rule book (DESIGN.md, "People, scope and rights").
fn expected(who: Who, op: Op, scope: Scope) -> Outcome {
    use Outcome::*;
    let visible = match who {
        Who::Anonymous => return Refused(ErrorCode::Unauthorized),
        Who::Pending | Who::Rejected | Who::Admin => false,
        Who::Member | Who::Migrant | Who::Volunteer | Who::Cadre | Who::Secretary => scope == Scope::Own,
        Who::TownOfficer => scope != Scope::OtherTown,
        Who::OtherTownOfficer => scope == Scope::OtherTown,
        Who::DistrictOfficer => true,
    };
    if !visible {
        return Refused(ErrorCode::NotFound);
    }
    let member = matches!(who, Who::Member | Who::Migrant | Who::Volunteer | Who::Cadre | Who::Secretary);
    let officer = matches!(who, Who::TownOfficer | Who::OtherTownOfficer | Who::DistrictOfficer);
    let allowed = match op {
        Op::Subscribe | Op::History => true,
        Op::Send => member,
        Op::Approve | Op::Reject | Op::Mute | Op::Remove => matches!(who, Who::Cadre | Who::Secretary),
        Op::Hide => matches!(who, Who::Volunteer | Who::Cadre | Who::Secretary),
        Op::SetRole => who == Who::Secretary,
        Op::Transfer => matches!(who, Who::Secretary | Who::TownOfficer | Who::OtherTownOfficer),
        Op::Audit => who == Who::Secretary || officer,
    };
    if allowed {
        Allowed
    } else {
        Refused(ErrorCode::Forbidden)
    }
}

struct Group {
    id: u64,
    /// The secretary (restores state between cells), a member who posts the
    /// messages that get hidden, the town officer of its town.
    secretary: Client,
    poster: Client,
    town_officer: Client,
    secretary_id: u64,
    /// Standing targets: an applicant nobody approves, a member to mute, a
    /// member nobody removes, a member whose role is set, a member who
    /// receives ownership.
    standing_applicant: u64,
    mute_target: u64,
    remove_target: u64,
    role_target: u64,
    heir: u64,
}

struct Fixture {
    server: Server,
    groups: Vec<Group>,
    fresh: usize,
}

impl Fixture {
    fn phone(&mut self) -> String {
        self.fresh += 1;
        format!("1399000{:04}", self.fresh)
    }

    /// A new pending applicant of group `g`.
    async fn applicant(&mut self, g: usize) -> u64 {
        let phone = self.phone();
        let group = self.groups[g].id;
        self.server.apply("新申请人", &phone, group, Some(&format!("新村{}号", self.fresh))).await;
        applicant_id(&mut self.groups[g].secretary, group, &phone).await
    }

    /// A new member of group `g`, approved by its secretary.
    async fn member(&mut self, g: usize) -> u64 {
        let account = self.applicant(g).await;
        let group = self.groups[g].id;
        let reply = self.groups[g]
            .secretary
            .request(json!({"op": "approve", "group": group, "account": account}))
            .await;
        assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
        account
    }

    /// The op to try, with a valid target (fresh where an allowed op would
    /// use it up).
    async fn op(&mut self, op: Op, g: usize, allowed: bool) -> Value {
        let group = self.groups[g].id;
        match op {
            Op::Subscribe => json!({"op": "subscribe", "group": group, "since": 0}),
            Op::History => json!({"op": "history", "group": group}),
            Op::Send => json!({"op": "send", "group": group, "channel": "chat", "body": {"text": "矩阵测试"},
                               "client_key": format!("m-{}", self.phone())}),
            Op::Approve | Op::Reject => {
                let account =
                    if allowed { self.applicant(g).await } else { self.groups[g].standing_applicant };
                if op == Op::Approve {
                    json!({"op": "approve", "group": group, "account": account})
                } else {
                    json!({"op": "reject", "group": group, "account": account, "reason": "信息不符"})
                }
            }
            Op::Hide => {
                let key = format!("h-{}", self.phone());
                let (seq, _) = self.groups[g].poster.send_text(group, "要被隐藏的消息", &key).await;
                json!({"op": "hide", "group": group, "seq": seq, "reason": "广告"})
            }
            Op::Mute => json!({"op": "mute", "group": group, "account": self.groups[g].mute_target,
                               "until": 4_102_444_800_000i64, "reason": "刷屏"}),
            Op::Remove => {
                let account = if allowed { self.member(g).await } else { self.groups[g].remove_target };
                json!({"op": "remove", "group": group, "account": account, "reason": "已搬离"})
            }
            Op::SetRole => json!({"op": "set_role", "group": group, "account": self.groups[g].role_target,
                                  "role": "volunteer"}),
            Op::Transfer => json!({"op": "transfer", "group": group, "account": self.groups[g].heir}),
            Op::Audit => json!({"op": "audit", "group": group}),
        }
    }

    /// After an allowed transfer: the town officer gives ownership back.
    async fn restore_secretary(&mut self, g: usize) {
        let group = &mut self.groups[g];
        let reply = group
            .town_officer
            .request(
                json!({"op": "transfer", "group": group.id, "account": group.secretary_id, "reason": "复原"}),
            )
            .await;
        assert!(matches!(reply, ServerFrame::Done { .. }), "restoring the secretary failed: {reply:?}");
    }
}

fn outcome(frame: &ServerFrame) -> Outcome {
    match frame {
        ServerFrame::Error { code, .. } => Outcome::Refused(*code),
        ServerFrame::Subscribed { .. }
        | ServerFrame::History { .. }
        | ServerFrame::Sent { .. }
        | ServerFrame::Done { .. }
        | ServerFrame::Audit { .. } => Outcome::Allowed,
        other => panic!("unexpected reply {other:?}"),
    }
}

#[tokio::test]
async fn every_role_every_op_every_scope() {
    let server =
        Server::start(&["--ops-per-sec", "5000", "--burst", "5000", "--login-attempts-per-address", "10000"]);
    let (_, district) = server.client(&official_phone(3)).await;
    let ids: Vec<u64> =
        ["聚源桥村", "宝月尚园", "南周村"].iter().map(|n| group_named(&district, n).id).collect();
    let mut groups = Vec::new();
    for (i, scope) in SCOPES.iter().enumerate() {
        let g = scope.demo_group();
        let (secretary, welcome) = server.client(&demo_phone(g, 1)).await;
        let (poster, _) = server.client(&demo_phone(g, 3)).await;
        let town = if *scope == Scope::OtherTown { 2 } else { 1 };
        let (town_officer, _) = server.client(&official_phone(town)).await;
        let (_, w4) = server.client(&demo_phone(g, 4)).await;
        let (_, w5) = server.client(&demo_phone(g, 5)).await;
        let (_, w6) = server.client(&demo_phone(g, 6)).await;
        groups.push(Group {
            id: ids[i],
            secretary,
            poster,
            town_officer,
            secretary_id: welcome.account.id,
            standing_applicant: 0,
            mute_target: w6.account.id,
            remove_target: w5.account.id,
            role_target: w4.account.id,
            heir: w5.account.id,
        });
    }
    let mut fx = Fixture { server, groups, fresh: 0 };
    for g in 0..3 {
        fx.groups[g].standing_applicant = fx.applicant(g).await;
    }

    let mut table = String::new();
    let mut failures = Vec::new();
    for who in EVERYONE {
        let mut client = fx.server.connect().await;
        if let Some(phone) = who.phone() {
            let token = fx.server.token(&phone).await;
            client.hello(&token).await;
        }
        for op in EVERY_OP {
            for (g, scope) in SCOPES.iter().enumerate() {
                let want = expected(who, op, *scope);
                let request = fx.op(op, g, want == Outcome::Allowed).await;
                let reply = client.request(request.clone()).await;
                let got = outcome(&reply);
                table.push_str(&format!("{who:?} {op:?} {scope:?}: {got}\n"));
                if got != want {
                    failures.push(format!(
                        "{who:?} × {op:?} × {scope:?}: expected {want}, got {reply:?} for {request}"
                    ));
                }
                if op == Op::Transfer && got == Outcome::Allowed {
                    fx.restore_secretary(g).await;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}\n\nfull table:\n{table}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn welcome_lists_every_visible_group_with_its_effective_role() {
    let server = Server::start(&["--login-attempts-per-address", "1000"]);
    let names = |w: &protocol::Welcome| w.groups.iter().map(|g| (g.name.clone(), g.role)).collect::<Vec<_>>();
    use protocol::Role::*;
    let (_, w) = server.client(&demo_phone(1, 2)).await;
    assert_eq!(names(&w), vec![("聚源桥村".to_string(), Cadre)]);
    let (_, w) = server.client(&official_phone(1)).await;
    assert_eq!(names(&w), vec![("聚源桥村".to_string(), TownOfficer), ("宝月尚园".to_string(), TownOfficer)]);
    assert_eq!(w.offices.len(), 1);
    let (_, w) = server.client(&official_phone(2)).await;
    assert_eq!(names(&w), vec![("南周村".to_string(), TownOfficer)]);
    let (_, w) = server.client(&official_phone(3)).await;
    assert_eq!(w.groups.len(), 3);
    assert!(w.groups.iter().all(|g| g.role == DistrictOfficer));
    let (_, w) = server.client(&official_phone(4)).await;
    assert!(w.groups.is_empty(), "the admin has no content rights");
    assert_eq!(w.offices, vec![protocol::Office::Admin]);
    // The volunteer and the secretary carry the Party badge; the migrant
    // resident the label; a registered resident their household.
    let (_, w) = server.client(&demo_phone(1, 7)).await;
    assert!(w.account.party);
    assert_eq!(w.groups[0].role, Volunteer);
    let (_, w) = server.client(&demo_phone(1, 8)).await;
    assert!(w.groups[0].migrant && w.groups[0].household.is_none());
    let (_, w) = server.client(&demo_phone(1, 3)).await;
    let household = w.groups[0].household.clone().expect("a registered resident has a household");
    assert_eq!(household.address, "聚源桥村1组12号");
    assert!(!household.head);
    let (_, w) = server.client(&demo_phone(1, 1)).await;
    assert!(w.groups[0].household.as_ref().unwrap().head);
    // Pending and rejected: they may say hello and see their application.
    let (_, w) = server.client(&demo_phone(1, 9)).await;
    assert_eq!(w.account.status, protocol::AccountStatus::Pending);
    assert!(w.groups.is_empty());
    assert_eq!(w.application.unwrap().household.as_deref(), Some("聚源桥村4组21号"));
    let (_, w) = server.client(&demo_phone(1, 10)).await;
    assert_eq!(w.account.status, protocol::AccountStatus::Rejected);
    assert!(w.application.unwrap().reason.is_some());
}

#[tokio::test]
async fn badges_and_labels_appear_on_posts() {
    let server = Server::start(&["--login-attempts-per-address", "1000"]);
    let (mut volunteer, w) = server.client(&demo_phone(1, 7)).await;
    let group = w.groups[0].id;
    let (mut migrant, _) = server.client(&demo_phone(1, 8)).await;
    let (mut member, _) = server.client(&demo_phone(1, 3)).await;
    member.subscribe(group, None).await;
    volunteer.send_text(group, "我是党员志愿者", "badge-1").await;
    migrant.send_text(group, "我是新村民", "badge-2").await;
    let first = member.event().await;
    assert!(first.author.party && !first.author.migrant);
    assert_eq!(first.author.role, protocol::Role::Volunteer);
    let second = member.event().await;
    assert!(second.author.migrant && !second.author.party);
    // And on the wire: `party` / `migrant` only when true.
    let plain = member.send_text(group, "普通村民", "badge-3").await;
    let history = member.full_history(group).await;
    let last = history.iter().find(|e| e.seq == plain.0).unwrap();
    let json = serde_json::to_value(last).unwrap();
    assert!(json["author"].get("party").is_none() && json["author"].get("migrant").is_none());
}
