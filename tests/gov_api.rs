//! The API for other government systems (`/api/v1/`, docs/API.md): keys
//! made and revoked by the admin command line, notices published into the
//! groups of a key's scope (live on residents' sockets, in history, with
//! the disclosure chain kept), statistics and requests read back in
//! Open311 shape, every refusal as JSON with its status; a per-key rate
//! limit; keys known to every node of a cluster.

mod common;
#[path = "common/governance.rs"]
mod governance;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use governance::{post, LIMITS};
use protocol::{
    ApiError, ApiNoticePosted, ApiNoticeRequest, ErrorCode, Event, EventBody, RequestStage, ServerFrame,
    Service, ServiceRequest, ServiceRequestStatus, Stats,
};
use serde_json::{json, Value};
use villagehub::gov_api::time::rfc3339;

/// `villagehub admin --data-dir DIR ARGS…` (extra flags before the
/// subcommand); its stdout.
fn admin(data_dir: &Path, flags: &[&str], args: &[&str]) -> String {
    let mut all = vec!["admin", "--data-dir", data_dir.to_str().unwrap()];
    all.extend_from_slice(flags);
    all.extend_from_slice(args);
    run_command(&all)
}

/// `admin apikey create`; returns (id, key).
fn create_key(data_dir: &Path, flags: &[&str], system: &str, scope: &str, rights: &str) -> (u64, String) {
    let out = admin(
        data_dir,
        flags,
        &["apikey", "create", "--system", system, "--scope", scope, "--rights", rights],
    );
    let id = out.split("created API key ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    let key = out.split_whitespace().find(|w| w.starts_with("vhk_")).unwrap_or_else(|| panic!("{out}"));
    (id, key.to_string())
}

/// How the key is presented.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Header(&'a str),
}

/// An HTTP/1.1 request with the key; (status, body).
async fn api(addr: SocketAddr, method: &str, path: &str, auth: Auth<'_>, body: &str) -> (u16, String) {
    let auth = match auth {
        Auth::None => String::new(),
        Auth::Bearer(key) => format!("Authorization: Bearer {key}\r\n"),
        Auth::Header(key) => format!("X-Api-Key: {key}\r\n"),
    };
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let response = String::from_utf8(response).unwrap();
        let status = response[9..12].parse().unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
        (status, body.to_string())
    })
    .await
    .unwrap()
}

/// The status line and headers of a GET.
async fn api_head(addr: SocketAddr, path: &str, key: &str) -> String {
    let (path, key) = (path.to_string(), key.to_string());
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Api-Key: {key}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split_once("\r\n\r\n").unwrap().0.to_string()
    })
    .await
    .unwrap()
}

async fn get(addr: SocketAddr, path: &str, key: &str) -> (u16, String) {
    api(addr, "GET", path, Auth::Bearer(key), "").await
}

/// A refusal: its status and JSON `ApiError`.
async fn refused(addr: SocketAddr, method: &str, path: &str, auth: Auth<'_>, body: &str) -> (u16, ApiError) {
    let (status, text) = api(addr, method, path, auth, body).await;
    let error: ApiError =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not an ApiError: {e}: {text}"));
    assert_eq!(status, error.code.http_status(), "{text}");
    (status, error)
}

async fn publish(addr: SocketAddr, key: &str, request: Value) -> ApiNoticePosted {
    let (status, body) = api(addr, "POST", "/api/v1/notices", Auth::Bearer(key), &request.to_string()).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn requests(body: &str) -> Vec<ServiceRequest> {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The demo is complete once its admin account exists.
async fn wait_for_demo(server: &Server) {
    for _ in 0..200 {
        if server.login(&official_phone(4), DEMO_PASSWORD).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the demo data was not made");
}

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn government_systems_publish_notices_and_read_requests_within_their_scope() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    // Logs at trace level, to show that no key is ever logged.
    let log = temp.path().join("server.log");
    let options = Options {
        stderr: Some(log.clone()),
        env: vec![("VILLAGEHUB_LOG".into(), "trace".into())],
        ..Options::default()
    };
    let mut server = Server::start_with(&dir, &LIMITS, options);
    wait_for_demo(&server).await;
    server.terminate();

    // Keys, made while no server holds the directory. Demo: town 2 (月浦镇)
    // holds groups 4 and 17; group 30 is in town 3; district 1 holds all.
    let (_, hotline) = create_key(&dir, &[], "12345热线", "town:2", "notices,read");
    let (_, media) = create_key(&dir, &[], "区融媒体中心", "group:30", "read");
    let (old_id, old) = create_key(&dir, &[], "旧系统", "district:1", "notices,read");
    // A right or a scope that does not exist makes no key.
    for (scope, rights) in [("town:2", "notices,write"), ("town:99", "read"), ("village:4", "read")] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_villagehub"))
            .args(["admin", "--data-dir", dir.to_str().unwrap(), "apikey", "create", "--system", "x"])
            .args(["--scope", scope, "--rights", rights])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{scope} {rights}");
    }
    let listed = admin(&dir, &[], &["apikey", "list"]);
    assert!(
        listed.contains("12345热线") && listed.contains("town:2") && listed.contains("notices,read"),
        "{listed}"
    );
    assert!(listed.contains("区融媒体中心") && listed.contains("group:30"), "{listed}");
    assert!(!listed.contains("vhk_") && !listed.contains(&hotline[4..]), "the list shows no key: {listed}");
    // Only the hash is stored.
    let stored = stored_events(&dir);
    assert!(stored.iter().all(|row| !row.6.contains(&hotline[4..])), "the key itself is stored");
    server.restart();
    let addr = server.addr;

    let t0 = now_ms();
    let (mut resident, welcome) = server.client(&demo_phone(1, 3)).await;
    let village = group_named(&welcome, "聚源桥村").id;
    assert_eq!(village, 4);
    resident.subscribe(4, None).await;
    let (mut neighbour, _) = server.client(&demo_phone(2, 3)).await;
    neighbour.subscribe(17, None).await;
    let (mut far, _) = server.client(&demo_phone(3, 3)).await;
    far.subscribe(30, None).await;

    // Publish into every group of the town: live on both sockets, labelled
    // as the system, in history; not in the other town's group.
    let notice = json!({"kind": "announcement", "title": "停水通知", "text": "明日9:00-12:00停水。",
                        "must_read": true, "client_key": "n-1"});
    let posted = publish(addr, &hotline, notice.clone()).await;
    let places: Vec<(u64, bool)> = posted.groups.iter().map(|p| (p.group, p.duplicate)).collect();
    assert_eq!(places, vec![(4, false), (17, false)]);
    let check = |event: &Event, group: u64| {
        assert_eq!(
            (event.group, event.seq),
            (group, posted.groups.iter().find(|p| p.group == group).unwrap().seq)
        );
        assert!(event.author.system && event.author.id == 0, "{event:?}");
        assert_eq!(event.author.name, "12345热线");
        assert_eq!(event.author.role, protocol::Role::TownOfficer);
        match &event.body {
            EventBody::Notice(n) => {
                assert_eq!((n.title.as_str(), n.must_read), ("停水通知", true));
                assert_eq!(n.category, protocol::NoticeCategory::Announcement);
            }
            other => panic!("expected a notice, got {other:?}"),
        }
    };
    check(&resident.event().await, 4);
    check(&neighbour.event().await, 17);
    far.expect_silence(Duration::from_millis(200)).await;
    check(resident.full_history(4).await.last().unwrap(), 4);

    // A retry with the same client_key: the same events, nothing new.
    let again = publish(addr, &hotline, notice.clone()).await;
    assert_eq!(
        again.groups.iter().map(|p| (p.group, p.seq, p.duplicate)).collect::<Vec<_>>(),
        posted.groups.iter().map(|p| (p.group, p.seq, true)).collect::<Vec<_>>()
    );
    resident.expect_silence(Duration::from_millis(200)).await;

    // A disclosure joins the group's hash chain, and a cadre's next one
    // links to it: the chain verifies.
    let disclosure = publish(
        addr,
        &hotline,
        json!({"groups": [4], "kind": "disclosure", "title": "2025年三季度村级财务公开", "text": "收入12万元，支出9万元。"}),
    )
    .await;
    let system_disclosure = resident.event().await;
    assert_eq!(system_disclosure.seq, disclosure.groups[0].seq);
    let EventBody::Notice(body) = &system_disclosure.body else { panic!("{system_disclosure:?}") };
    assert!(body.hash.is_some(), "{body:?}");
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    post(&mut cadre, 4, "notice", json!({"title": "更正", "text": "支出为9.2万元。", "category": "affairs"}))
        .await;
    let cadre_disclosure = resident.event().await;
    let EventBody::Notice(cadre_body) = &cadre_disclosure.body else { panic!("{cadre_disclosure:?}") };
    assert_eq!(cadre_body.prev_hash, body.hash);
    match resident.request(json!({"op": "verify_disclosures", "group": 4})).await {
        ServerFrame::Disclosures { report, .. } => assert!(report.ok && report.checked >= 2, "{report:?}"),
        other => panic!("{other:?}"),
    }

    // Refusals: out of scope (403, nothing posted anywhere), no right (403),
    // bad input (400), keys unknown, missing or malformed (401).
    let body = |groups: Value| {
        json!({"groups": groups, "kind": "announcement", "title": "t", "text": "x"}).to_string()
    };
    for groups in [json!([30]), json!([4, 30]), json!([999])] {
        let (status, e) =
            refused(addr, "POST", "/api/v1/notices", Auth::Bearer(&hotline), &body(groups)).await;
        assert_eq!((status, e.code), (403, ErrorCode::Forbidden), "{}", e.message);
    }
    let (status, e) =
        refused(addr, "POST", "/api/v1/notices", Auth::Bearer(&media), &body(json!([30]))).await;
    assert_eq!(status, 403, "{}", e.message);
    assert!(e.message.contains("notices"), "{}", e.message);
    for bad in [
        "{".to_string(),
        "[]".to_string(),
        json!({"kind": "announcement", "title": 5, "text": "x"}).to_string(),
        json!({"kind": "gossip", "title": "t", "text": "x"}).to_string(),
        json!({"kind": "announcement", "title": "t"}).to_string(),
        json!({"group": 4, "kind": "announcement", "title": "t", "text": "x"}).to_string(),
        json!({"groups": "4", "kind": "announcement", "title": "t", "text": "x"}).to_string(),
        json!({"groups": [], "kind": "announcement", "title": "t", "text": "x"}).to_string(),
        json!({"kind": "announcement", "title": " ", "text": "x"}).to_string(),
        json!({"kind": "announcement", "title": "t", "text": "x", "client_key": ""}).to_string(),
    ] {
        let (status, e) = refused(addr, "POST", "/api/v1/notices", Auth::Bearer(&hotline), &bad).await;
        assert_eq!((status, e.code), (400, ErrorCode::BadRequest), "{bad}: {}", e.message);
    }
    let unknown = format!("vhk_{}", "A".repeat(43));
    let (status, missing) = refused(addr, "GET", "/api/v1/stats", Auth::None, "").await;
    assert_eq!(status, 401, "{}", missing.message);
    let (_, wrong) = refused(addr, "GET", "/api/v1/stats", Auth::Bearer(&unknown), "").await;
    let (_, garbage) = refused(addr, "GET", "/api/v1/stats", Auth::Header("hello"), "").await;
    assert_eq!(wrong, garbage, "a wrong key and garbage get the same answer");
    assert!(!wrong.message.contains(&unknown), "{}", wrong.message);
    resident.expect_silence(Duration::from_millis(200)).await;
    far.expect_silence(Duration::from_millis(10)).await;
    // X-Api-Key works as well as the bearer header.
    let (status, _) = api(addr, "GET", "/api/v1/services", Auth::Header(&hotline), "").await;
    assert_eq!(status, 200);

    // A small fixture of requests: A (停车) answered, resolved and rated;
    // B (环境卫生) untouched; C in group 30 (another town).
    let (mut filer, _) = server.client(&demo_phone(1, 4)).await;
    let a = post(&mut resident, 4, "request", json!({"category": "停车", "text": "门口乱停车"})).await;
    let b = post(&mut filer, 4, "request", json!({"category": "环境卫生", "text": "垃圾桶满了"})).await;
    post(&mut cadre, 4, "request_reply", json!({"request": a, "text": "已联系物业"})).await;
    post(&mut cadre, 4, "request_resolved", json!({"request": a})).await;
    post(&mut resident, 4, "request_rated", json!({"request": a, "stars": 4})).await;
    let c = post(&mut far, 30, "request", json!({"category": "噪音扰民", "text": "夜间施工"})).await;
    let events: Vec<Event> = resident.full_history(4).await.into_iter().filter(|e| e.seq >= a).collect();
    let ts = |seq: u64| events.iter().find(|e| e.seq == seq).unwrap().ts;
    let (a_ts, b_ts, reply_ts, rated_ts) = (ts(a), ts(b), ts(a + 2), ts(a + 4));
    assert_eq!(
        events.iter().map(|e| e.body.kind()).collect::<Vec<_>>(),
        ["request", "request", "request_reply", "request_resolved", "request_rated"]
    );

    let (status, text) = get(addr, "/api/v1/requests", &hotline).await;
    assert_eq!(status, 200, "{text}");
    let list = requests(&text);
    assert_eq!(
        list.iter().map(|r| r.service_request_id.clone()).collect::<Vec<_>>(),
        [format!("4-{b}"), format!("4-{a}")],
        "newest first, only town 2"
    );
    let want_a = ServiceRequest {
        service_request_id: format!("4-{a}"),
        status: ServiceRequestStatus::Closed,
        status_notes: Some("已联系物业".into()),
        service_code: "停车".into(),
        service_name: "停车".into(),
        description: "门口乱停车".into(),
        agency_responsible: "聚源桥村".into(),
        requested_datetime: rfc3339(a_ts),
        updated_datetime: rfc3339(rated_ts),
        expected_datetime: rfc3339(a_ts + 15 * HOUR),
        group: 4,
        stage: RequestStage::Resolved,
        escalated_to: None,
        rating: Some(4),
        replies: 1,
        first_response_datetime: Some(rfc3339(reply_ts)),
        overdue: false,
    };
    let want_b = ServiceRequest {
        service_request_id: format!("4-{b}"),
        status: ServiceRequestStatus::Open,
        status_notes: None,
        service_code: "环境卫生".into(),
        service_name: "环境卫生".into(),
        description: "垃圾桶满了".into(),
        agency_responsible: "聚源桥村".into(),
        requested_datetime: rfc3339(b_ts),
        updated_datetime: rfc3339(b_ts),
        expected_datetime: rfc3339(b_ts + 15 * HOUR),
        group: 4,
        stage: RequestStage::Filed,
        escalated_to: None,
        rating: None,
        replies: 0,
        first_response_datetime: None,
        overdue: false,
    };
    assert_eq!(list, vec![want_b.clone(), want_a.clone()]);
    let hotline_key: &str = &hotline;
    let only = |path: String| async move {
        let (status, text) = get(addr, &path, hotline_key).await;
        assert_eq!(status, 200, "{path}: {text}");
        requests(&text).into_iter().map(|r| r.service_request_id).collect::<Vec<_>>()
    };
    assert_eq!(only("/api/v1/requests?status=open".into()).await, [format!("4-{b}")]);
    assert_eq!(only("/api/v1/requests?status=closed&scope=group:4".into()).await, [format!("4-{a}")]);
    assert_eq!(only(format!("/api/v1/requests?service_code={}", percent("停车"))).await, [format!("4-{a}")]);
    assert_eq!(only(format!("/api/v1/requests?limit=1&end_date={}", b_ts)).await, [format!("4-{b}")]);
    assert!(only(format!("/api/v1/requests?start_date={}", rfc3339(b_ts + 2000))).await.is_empty());
    assert!(only("/api/v1/requests?end_date=2000-01-01".into()).await.is_empty());
    let (status, text) = get(addr, &format!("/api/v1/requests/4-{a}"), &hotline).await;
    assert_eq!((status, requests(&text)), (200, vec![want_a]));
    // The group-30 key reads its own group only.
    let (status, text) = get(addr, "/api/v1/requests", &media).await;
    assert_eq!(status, 200, "{text}");
    let theirs = requests(&text);
    assert_eq!(theirs.len(), 1);
    assert_eq!(
        (theirs[0].service_request_id.as_str(), theirs[0].agency_responsible.as_str()),
        (format!("30-{c}").as_str(), "南周村")
    );
    for (path, key, status) in [
        (format!("/api/v1/requests/4-{a}"), &media, 403),
        ("/api/v1/requests?scope=group:30".to_string(), &hotline, 403),
        ("/api/v1/requests?scope=district:1".to_string(), &hotline, 403),
        ("/api/v1/requests/4-99999".to_string(), &hotline, 404),
        ("/api/v1/requests/30-1".to_string(), &hotline, 403),
        ("/api/v1/requests/four".to_string(), &hotline, 400),
        ("/api/v1/requests?status=lost".to_string(), &hotline, 400),
        ("/api/v1/requests?start_date=yesterday".to_string(), &hotline, 400),
        ("/api/v1/requests?limit=0".to_string(), &hotline, 400),
        ("/api/v1/requests?scope=village:4".to_string(), &hotline, 400),
        ("/api/v1/stats?scope=town:3".to_string(), &hotline, 403),
        ("/api/v1/stats?scope=town:2".to_string(), &media, 403),
        ("/api/v1/stats?from=soon".to_string(), &hotline, 400),
        ("/api/v1/nothing".to_string(), &hotline, 404),
    ] {
        let (got, e) = refused(addr, "GET", &path, Auth::Bearer(key), "").await;
        assert_eq!(got, status, "{path}: {}", e.message);
    }

    // Services: every category, with the town's counts.
    let (status, text) = get(addr, "/api/v1/services", &hotline).await;
    assert_eq!(status, 200, "{text}");
    let services: Vec<Service> = serde_json::from_str(&text).unwrap();
    assert_eq!(services.len(), protocol::REQUEST_CATEGORIES.len());
    let count = |code: &str| services.iter().find(|s| s.service_code == code).unwrap().requests;
    assert_eq!((count("停车"), count("环境卫生"), count("噪音扰民")), (1, 1, 0));

    // Statistics: the `stats` op's figures, and by hand for what happened
    // since t0 in town 2: notices 2 (announcement) + 1 (system disclosure)
    // + 1 (cadre disclosure); 2 requests, 1 answered, 1 solved in the
    // group; interactions = 4 notices + 5 request events; participants:
    // the cadre and two residents (the system is not a participant).
    let t1 = now_ms() + 1000;
    let (status, text) = get(addr, &format!("/api/v1/stats?scope=town:2&from={t0}&to={t1}"), &hotline).await;
    assert_eq!(status, 200, "{text}");
    let stats: Stats = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (stats.scope.as_str(), stats.groups, stats.notices, stats.interactions, stats.participants),
        ("town:2", 2, 4, 9, 3)
    );
    assert_eq!((stats.requests, stats.requests_answered, stats.requests_solved_in_group), (2, 1, 1));
    let (mut officer, _) = server.client(&official_phone(1)).await;
    match officer.request(json!({"op": "stats", "scope": "town:2", "from": t0, "to": t1})).await {
        ServerFrame::Stats { stats: by_op, .. } => assert_eq!(by_op, stats),
        other => panic!("{other:?}"),
    }
    // The key's own scope is the default; RFC 3339 bounds work too.
    let (status, text) =
        get(addr, &format!("/api/v1/stats?from={}&to={}", percent(&rfc3339(t0 - 1000)), t1), &hotline).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Stats>(&text).unwrap().requests, 2);

    // The district key works until it is revoked; then it gets the very
    // answer of a key that never existed.
    let (status, text) = get(addr, "/api/v1/requests?scope=group:30", &old).await;
    assert_eq!((status, requests(&text).len()), (200, 1));
    drop((resident, neighbour, far, cadre, filer, officer));
    server.terminate();
    let never_logged = |log: &Path| {
        let text = std::fs::read_to_string(log).unwrap();
        for key in [&hotline, &media, &old] {
            assert!(!text.contains(&key[4..]), "a key is in the log");
        }
    };
    never_logged(&log);
    let out = admin(&dir, &[], &["apikey", "revoke", &old_id.to_string()]);
    assert!(out.contains("revoked"), "{out}");
    assert!(admin(&dir, &[], &["apikey", "list"]).contains("revoked"));
    server.restart();
    let (status, revoked) = refused(addr, "GET", "/api/v1/stats", Auth::Bearer(&old), "").await;
    assert_eq!((status, &revoked), (401, &wrong));
    let (status, _) = get(addr, "/api/v1/stats", &hotline).await;
    assert_eq!(status, 200);
    server.terminate();
    never_logged(&log);
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::start_in(&dir, &["--api-requests-per-minute", "3"]);
    wait_for_demo(&server).await;
    server.terminate();
    let (_, first) = create_key(&dir, &[], "甲系统", "group:4", "read");
    let (_, second) = create_key(&dir, &[], "乙系统", "group:4", "read");
    server.restart();
    for _ in 0..3 {
        assert_eq!(get(server.addr, "/api/v1/services", &first).await.0, 200);
    }
    let (status, e) = refused(server.addr, "GET", "/api/v1/services", Auth::Bearer(&first), "").await;
    assert_eq!((status, e.code), (429, ErrorCode::RateLimited), "{}", e.message);
    let head = api_head(server.addr, "/api/v1/services", &first).await;
    assert!(head.to_ascii_lowercase().contains("retry-after: "), "{head}");
    assert_eq!(get(server.addr, "/api/v1/services", &second).await.0, 200);
}

/// Polls until `path` answers `status` on `server`.
async fn until_status(server: &Server, path: &str, key: &str, status: u16) {
    for _ in 0..200 {
        if get(server.addr, path, key).await.0 == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never answered {status}");
}

#[tokio::test]
async fn keys_made_by_the_admin_work_on_every_node_of_a_cluster() {
    let redis = Redis::start();
    let a = cluster_node(&redis, &LIMITS);
    let b = cluster_node(&redis, &LIMITS);
    wait_for_demo(&a).await;
    // The admin command joins the cluster with a directory of its own.
    let admin_dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let flags = ["--redis", url.as_str(), "--token-key", CLUSTER_TOKEN_KEY];
    let (id, key) = create_key(admin_dir.path(), &flags, "12345热线", "town:2", "notices,read");
    until_status(&a, "/api/v1/stats", &key, 200).await;
    until_status(&b, "/api/v1/stats", &key, 200).await;
    // A notice published on node b reaches a resident connected to node a.
    let (mut resident, _) = a.client(&demo_phone(1, 3)).await;
    resident.subscribe(4, None).await;
    let posted = publish(
        b.addr,
        &key,
        json!({"groups": [4], "kind": "party", "title": "主题党日", "text": "周五下午活动。"}),
    )
    .await;
    let event = resident.event().await;
    assert_eq!((event.seq, event.author.system), (posted.groups[0].seq, true));
    admin(admin_dir.path(), &flags, &["apikey", "revoke", &id.to_string()]);
    until_status(&a, "/api/v1/stats", &key, 401).await;
    until_status(&b, "/api/v1/stats", &key, 401).await;
}

/// Every JSON example of docs/API.md is the real type's JSON: it parses
/// and serializes back unchanged.
#[test]
fn the_documented_examples_are_the_real_types() {
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(tag: &str, text: &str) {
        let original: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{tag}: not JSON: {e}\n{text}"));
        let typed: T =
            serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{tag}: {e}\n{text}"));
        assert_eq!(serde_json::to_value(&typed).unwrap(), original, "{tag}: does not round-trip");
    }
    let doc = include_str!("../docs/API.md");
    let mut lines = doc.lines();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(line) = lines.next() {
        let Some(tag) = line.strip_prefix("```json") else { continue };
        let tag = tag.trim().to_string();
        let text: String =
            lines.by_ref().take_while(|l| !l.starts_with("```")).map(|l| format!("{l}\n")).collect();
        match tag.as_str() {
            "api:notice-request" => round_trip::<ApiNoticeRequest>(&tag, &text),
            "api:notice-posted" => round_trip::<ApiNoticePosted>(&tag, &text),
            "api:stats" => round_trip::<Stats>(&tag, &text),
            "api:requests" => round_trip::<Vec<ServiceRequest>>(&tag, &text),
            "api:services" => round_trip::<Vec<Service>>(&tag, &text),
            "api:error" => round_trip::<ApiError>(&tag, &text),
            "api:event" => round_trip::<ServerFrame>(&tag, &text),
            other => panic!("example with unknown tag '{other}'"),
        }
        seen.insert(tag);
    }
    for tag in
        ["api:notice-request", "api:notice-posted", "api:stats", "api:requests", "api:services", "api:error"]
    {
        assert!(seen.contains(tag), "docs/API.md has no {tag} example");
    }
}
