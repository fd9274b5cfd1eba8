//! Statistics and TOP-10 needs per scope and period, over HTTP and the
//! socket, on a fixture of governance events written straight into the
//! group logs (as the notices/requests/deliberation/exchange channels write
//! them), with every expected figure worked out by hand below.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;

use common::*;
use protocol::{ErrorCode, Office, ServerFrame, Stats};
use serde_json::{json, Value};

const LIMITS: [&str; 6] =
    ["--login-attempts-per-address", "1000", "--ops-per-sec", "1000", "--burst", "1000"];

/// The fixture's period: [T0, T0 + 1_000_000).
const T0: i64 = 1_700_000_000_000;

/// Appends events to a group's log directly in SQLite (server stopped):
/// (ts, author, kind, body). Returns their seqs.
fn append(conn: &rusqlite::Connection, group: u64, events: &[(i64, u64, &str, Value)]) -> Vec<u64> {
    let mut seq: u64 = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events WHERE log = ?1", [group as i64], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap() as u64;
    let mut seqs = Vec::new();
    for (ts, author, kind, body) in events {
        seq += 1;
        let frame = json!({"type": "event", "group": group, "seq": seq, "ts": ts,
            "author": {"id": author, "name": format!("居民{author}"), "role": "member"},
            "channel": "requests", "kind": kind, "body": body});
        conn.execute(
            "INSERT INTO events (log, seq, ts, author, client_key, kind, frame) VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6)",
            rusqlite::params![group as i64, seq as i64, ts, *author as i64, kind, frame.to_string()],
        )
        .unwrap();
        seqs.push(seq);
    }
    seqs
}

/// Group 4 (聚源桥村): 20 events in the period and one before it; group 17
/// (宝月尚园, same town): 2; group 30 (南周村, the other town): 1.
fn write_fixture(server: &Server) {
    let conn = rusqlite::Connection::open(server.data_dir.join("villagehub.sqlite3")).unwrap();
    append(&conn, 4, &[(T0 - 1, 901, "request", json!({"category": "停车", "text": "停车位不够"}))]);
    let t = |i: i64| T0 + i * 1000;
    let requests = append(
        &conn,
        4,
        &[
            (t(1), 901, "request", json!({"category": "停车", "text": "小区停车位太少，车辆乱停"})),
            (t(2), 902, "request", json!({"category": "停车", "text": "停车位被外来车辆占用"})),
            (t(3), 903, "request", json!({"category": "环境卫生", "text": "垃圾桶满了没人清理"})),
        ],
    );
    let (r1, r2, r3) = (requests[0], requests[1], requests[2]);
    let rest = append(
        &conn,
        4,
        &[
            (t(4), 904, "request_reply", json!({"request": r1, "text": "马上处理"})),
            (t(5), 904, "request_reply", json!({"request": r1, "text": "已经处理"})),
            (t(6), 904, "request_reply", json!({"request": r2, "text": "已联系物业"})),
            (t(7), 904, "request_resolved", json!({"request": r1, "solved_in_group": true})),
            (t(8), 904, "request_resolved", json!({"request": r2, "solved_in_group": false})),
            (
                t(9),
                904,
                "request_escalated",
                json!({"request": r3, "to": "town", "reason": "逾期", "automatic": true}),
            ),
            (
                t(10),
                905,
                "notice",
                json!({"title": "通知", "text": "周六停水", "category": "announcement", "must_read": true}),
            ),
        ],
    );
    let notice = rest[6];
    append(
        &conn,
        4,
        &[
            (t(11), 901, "like", json!({"target": notice})),
            (t(12), 902, "like", json!({"target": notice})),
            (t(13), 902, "unlike", json!({"target": notice})),
            (
                t(14),
                906,
                "topic",
                json!({"title": "增设停车位", "text": "在村口增设停车位", "vote_until": T0 + 500_000, "voting": "household"}),
            ),
            (
                t(15),
                906,
                "topic_closed",
                json!({"topic": 0, "yes": 5, "no": 1, "abstain": 0, "outcome": "project"}),
            ),
            (
                t(16),
                907,
                "topic",
                json!({"title": "垃圾分类公约", "text": "制定垃圾分类公约", "vote_until": T0 + 500_000, "voting": "person"}),
            ),
            (
                t(17),
                907,
                "topic_closed",
                json!({"topic": 0, "yes": 9, "no": 0, "abstain": 1, "outcome": "convention"}),
            ),
            (t(18), 901, "item", json!({"mode": "offer", "title": "儿童自行车", "text": "九成新"})),
            (t(19), 902, "item_handed_over", json!({"item": 0})),
            (t(20), 901, "message", json!({"text": "大家好"})),
        ],
    );
    append(
        &conn,
        17,
        &[
            (t(1), 908, "request", json!({"category": "停车", "text": "停车位太少"})),
            (
                t(2),
                908,
                "notice",
                json!({"title": "通知", "text": "电梯检修", "category": "announcement", "must_read": false}),
            ),
        ],
    );
    append(
        &conn,
        30,
        &[(t(1), 909, "request", json!({"category": "噪音扰民", "text": "工地夜间施工噪音扰民"}))],
    );
}

/// The demo accounts are made after the server listens; the admin last.
async fn wait_for_demo(server: &Server) {
    for _ in 0..200 {
        if server.login(&official_phone(4), DEMO_PASSWORD).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the demo data was not made");
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let path = path.to_string();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        // Chunked bodies: keep the JSON between the first '{' and last '}'.
        let body = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) => body[a..=b].to_string(),
            _ => body,
        };
        (status, body)
    })
    .await
    .unwrap()
}

fn period(scope: &str) -> String {
    format!("scope={scope}&from={T0}&to={}", T0 + 1_000_000)
}

fn expected(
    scope: &str,
    groups: u64,
    interactions: u64,
    notices: u64,
    participants: u64,
    requests: u64,
) -> Stats {
    Stats {
        scope: scope.into(),
        from: T0,
        to: T0 + 1_000_000,
        groups,
        notices,
        interactions,
        likes: 1,
        participants,
        topics: 2,
        conventions: 1,
        projects: 1,
        requests,
        requests_answered: 2,
        requests_solved_in_group: 1,
        requests_escalated: 1,
        exchanged_items: 1,
    }
}

#[tokio::test]
async fn figures_per_scope_and_period() {
    let mut server = Server::start(&LIMITS);
    // The demo data is complete once its last accounts log in.
    wait_for_demo(&server).await;
    server.kill9();
    write_fixture(&server);
    server.restart();

    let district_officer = server.token(&official_phone(3)).await;
    let (mut officer, welcome) = server.client(&official_phone(1)).await;
    let Some(Office::Town(town)) = welcome.offices.first().cloned() else { panic!("{:?}", welcome.offices) };
    let (_, other) = server.client(&official_phone(2)).await;
    let Some(Office::Town(other_town)) = other.offices.first().cloned() else { panic!() };
    let district = 1;

    // Group 4 alone: 20 events in the period (the one before it is not
    // counted); notices 1; likes 2 − 1; authors 901..=907; requests 3, of
    // which r1 and r2 answered (r1 twice), r1 solved in the group, r3
    // escalated; topics 2 → a project and a convention; one item handed over.
    let cadre = server.token(&demo_phone(1, 2)).await;
    let (status, body) = get(server.addr, &format!("/api/stats?{}", period("group:4")), Some(&cadre)).await;
    assert_eq!(status, 200, "{body}");
    let stats: Stats = serde_json::from_str(&body).unwrap();
    assert_eq!(stats, expected("group:4", 1, 20, 1, 7, 3));

    // The town adds group 17: 2 events, a notice, author 908, a request.
    let town_scope = format!("town:{town}");
    match officer.request(json!({"op": "stats", "scope": town_scope, "from": T0, "to": T0 + 1_000_000})).await
    {
        ServerFrame::Stats { stats, .. } => assert_eq!(stats, expected(&town_scope, 2, 22, 2, 8, 4)),
        other => panic!("{other:?}"),
    }
    // The district adds group 30: 1 event, author 909, a request.
    let scope = format!("district:{district}");
    let (status, body) =
        get(server.addr, &format!("/api/stats?{}", period(&scope)), Some(&district_officer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Stats>(&body).unwrap(), expected(&scope, 3, 23, 2, 9, 5));

    // A period that ends before the fixture holds only the earlier request.
    let (_, body) = get(server.addr, &format!("/api/stats?scope=group:4&from=0&to={T0}"), Some(&cadre)).await;
    let early: Stats = serde_json::from_str(&body).unwrap();
    assert_eq!((early.requests, early.participants), (1, 1));

    // Refusals: a member, another group, another town, the district for a
    // town officer, no token.
    let member = server.token(&demo_phone(1, 3)).await;
    let (status, body) = get(server.addr, "/api/stats?scope=group:4", Some(&member)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = get(server.addr, "/api/stats?scope=group:17", Some(&cadre)).await;
    assert_eq!(status, 404);
    let (status, _) = get(server.addr, "/api/stats?scope=group:4", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        officer.expect_error(json!({"op": "stats", "scope": format!("town:{other_town}")})).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        officer.expect_error(json!({"op": "stats", "scope": format!("district:{district}")})).await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        officer.expect_error(json!({"op": "stats", "scope": "village:4"})).await,
        ErrorCode::BadRequest
    );
    assert_eq!(
        officer.expect_error(json!({"op": "needs", "scope": format!("town:{other_town}")})).await,
        ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn top_needs_are_segmented_words_and_categories() {
    let mut server = Server::start(&LIMITS);
    // The demo data is complete once its last accounts log in.
    wait_for_demo(&server).await;
    server.kill9();
    write_fixture(&server);
    server.restart();
    let (mut officer, welcome) = server.client(&official_phone(1)).await;
    let Some(Office::Town(town)) = welcome.offices.first().cloned() else { panic!() };

    let needs = match officer
        .request(json!({"op": "needs", "scope": format!("town:{town}"), "from": T0, "to": T0 + 1_000_000}))
        .await
    {
        ServerFrame::Needs { needs, .. } => needs,
        other => panic!("{other:?}"),
    };
    let list: Vec<(String, String, u64)> =
        needs.iter().map(|n| (n.term.clone(), n.source.clone(), n.count)).collect();
    let find =
        |term: &str, source: &str| list.iter().find(|(t, s, _)| t == term && s == source).map(|(_, _, c)| *c);
    // Category 停车: two requests in group 4, one in group 17 (group 30 is
    // another town; the request before the period is not counted).
    assert_eq!(find("停车", "category"), Some(3));
    // The word 停车位: three request texts and the topic's title and text —
    // found as a word by the segmenter, not as a substring of 停车.
    assert_eq!(find("停车位", "word"), Some(5));
    // The whole list, by hand: 停车位 ×5, category 停车 ×3; then ×2 in
    // alphabetical (code point) order: 公约 and 垃圾 + 分类 (twice each in the
    // convention topic), 增设 (title and text), 车辆 (two requests); then ×1.
    let expected: Vec<(&str, &str, u64)> = vec![
        ("停车位", "word", 5),
        ("停车", "category", 3),
        ("公约", "word", 2),
        ("分类", "word", 2),
        ("垃圾", "word", 2),
        ("增设", "word", 2),
        ("车辆", "word", 2),
        ("制定", "word", 1),
        ("占用", "word", 1),
        ("垃圾桶", "word", 1),
    ];
    let got: Vec<(&str, &str, u64)> = list.iter().map(|(t, s, c)| (t.as_str(), s.as_str(), *c)).collect();
    assert_eq!(got, expected);
    assert!(needs.len() <= 10);
    // No stop words, no single characters.
    assert!(list.iter().all(|(t, _, _)| t.chars().count() >= 2 && t != "大家"));
}
