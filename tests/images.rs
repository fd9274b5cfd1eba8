//! Pictures: uploaded over HTTP (type and size checked, per-account rate
//! limit, members and officers only), stored content-addressed, served to
//! anyone holding the name with caching headers; carried by chat messages,
//! notices and requests (live and in history); hidden with the message;
//! served by every node of a cluster; kept by backups.

mod common;
#[path = "common/governance.rs"]
mod governance;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use governance::{post, refused, LIMITS};
use protocol::{ApiError, ErrorCode, Event, EventBody, ImageUploaded, ServerFrame};
use serde_json::json;

/// A 1×1 PNG. `tag` bytes after the IEND chunk (which decoders ignore)
/// make pictures with different names.
fn png(tag: u8) -> Vec<u8> {
    let mut bytes = vec![
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00,
        0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01,
        0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];
    bytes.push(tag);
    bytes
}

/// A 1×1 GIF.
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// An HTTP response: status, headers (lowercase names), body bytes.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn error(&self) -> ErrorCode {
        serde_json::from_slice::<ApiError>(&self.body)
            .unwrap_or_else(|e| panic!("not an ApiError ({e}): {}", String::from_utf8_lossy(&self.body)))
            .code
    }
    fn uploaded(&self) -> ImageUploaded {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// One HTTP/1.1 exchange with binary bodies and extra headers.
async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        // The server may answer (413) before reading the whole body.
        let _ = stream.write_all(&bytes);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply { status, headers, body: response[split + 4..].to_vec() }
    })
    .await
    .unwrap()
}

async fn upload(addr: SocketAddr, token: &str, content_type: &str, bytes: &[u8]) -> Reply {
    let bearer = format!("Bearer {token}");
    exchange(
        addr,
        "POST",
        "/api/images",
        &[("Authorization", &bearer), ("Content-Type", content_type)],
        bytes,
    )
    .await
}

/// Uploads a picture that must be accepted; returns its name.
async fn uploaded(addr: SocketAddr, token: &str, bytes: &[u8]) -> String {
    let reply = upload(addr, token, "image/png", bytes).await;
    assert!(matches!(reply.status, 200 | 201), "upload failed: {}", String::from_utf8_lossy(&reply.body));
    reply.uploaded().image
}

async fn fetch(addr: SocketAddr, name: &str, headers: &[(&str, &str)]) -> Reply {
    exchange(addr, "GET", &format!("/api/images/{name}"), headers, b"").await
}

fn images_of(event: &Event) -> Vec<String> {
    match &event.body {
        EventBody::Message(m) => m.images.clone(),
        EventBody::Notice(n) => n.images.clone(),
        EventBody::Request(r) => r.images.clone(),
        EventBody::Hidden(h) => h.images.clone(),
        other => panic!("no pictures in {other:?}"),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

async fn send_with_images(
    client: &mut Client,
    group: u64,
    text: &str,
    images: &[&str],
    key: &str,
) -> ServerFrame {
    client
        .request(json!({"op": "send", "group": group, "channel": "chat",
            "body": {"text": text, "images": images}, "client_key": key}))
        .await
}

#[tokio::test]
async fn an_uploaded_picture_is_served_with_caching_headers_and_revalidates_to_304() {
    let server = Server::start(&LIMITS);
    let token = server.token(&demo_phone(1, 3)).await;
    let bytes = png(1);
    let first = upload(server.addr, &token, "image/png", &bytes).await;
    assert_eq!(first.status, 201, "{}", String::from_utf8_lossy(&first.body));
    let reply = first.uploaded();
    assert_eq!(reply.image, sha256_hex(&bytes));
    assert_eq!((reply.content_type.as_str(), reply.size), ("image/png", bytes.len() as u64));
    let name = reply.image;
    // Stored content-addressed, once.
    let path = server.data_dir.join("images").join(&name[..2]).join(&name);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let again = upload(server.addr, &token, "image/png; charset=binary", &bytes).await;
    assert_eq!(again.status, 200, "the same bytes again: nothing new stored");
    assert_eq!(again.uploaded().image, name);
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    // Anyone with the name may fetch it: no token.
    let got = fetch(server.addr, &name, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, bytes);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(got.header("etag"), Some(format!("\"{name}\"").as_str()));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    assert!(got.header("content-security-policy").is_some_and(|v| v.starts_with("default-src 'none'")));
    let etag = format!("\"{name}\"");
    let cached = fetch(server.addr, &name, &[("If-None-Match", &etag)]).await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));

    // GIF too, with its own type.
    let gif = upload(server.addr, &token, "image/gif", GIF).await;
    assert_eq!(gif.status, 201);
    let gif_name = gif.uploaded().image;
    assert_eq!(fetch(server.addr, &gif_name, &[]).await.header("content-type"), Some("image/gif"));

    // Unknown names, malformed names, no way out of the directory.
    assert_eq!(fetch(server.addr, &"0".repeat(64), &[]).await.status, 404);
    assert_eq!(fetch(server.addr, &name.to_uppercase(), &[]).await.error(), ErrorCode::BadRequest);
    assert_eq!(fetch(server.addr, "abc", &[]).await.status, 400);
    for path in ["..%2F..%2Fvillagehub.sqlite3", "..%2Ftoken.key", "%2E%2E"] {
        let reply = fetch(server.addr, path, &[]).await;
        assert!(matches!(reply.status, 400 | 404), "{path}: {}", reply.status);
    }
    let reply = exchange(server.addr, "GET", "/api/images/../villagehub.sqlite3", &[], b"").await;
    assert!(!reply.body.starts_with(b"SQLite format"), "the store leaked");
}

#[tokio::test]
async fn uploads_are_checked_for_type_size_account_and_rate() {
    let server = Server::start(&[
        "--login-attempts-per-address",
        "1000",
        "--max-image-bytes",
        "2048",
        "--image-uploads-per-minute",
        "3",
    ]);
    let addr = server.addr;
    let member = server.token(&demo_phone(1, 3)).await;
    // The header and the bytes must agree, and be one of the four types.
    let mismatch = upload(addr, &member, "image/gif", &png(2)).await;
    assert_eq!((mismatch.status, mismatch.error()), (415, ErrorCode::BadRequest));
    let not_an_image = upload(addr, &member, "image/png", b"<svg onload=alert(1)></svg>").await;
    assert_eq!((not_an_image.status, not_an_image.error()), (415, ErrorCode::BadRequest));
    let svg = upload(addr, &server.token(&demo_phone(1, 4)).await, "image/svg+xml", b"<svg/>").await;
    assert_eq!((svg.status, svg.error()), (415, ErrorCode::BadRequest));
    // Over --max-image-bytes.
    let mut big = png(3);
    big.resize(4096, 0);
    let other = server.token(&demo_phone(1, 5)).await;
    let too_large = upload(addr, &other, "image/png", &big).await;
    assert_eq!((too_large.status, too_large.error()), (413, ErrorCode::TooLarge));

    // No token, a bad token.
    let anonymous = exchange(addr, "POST", "/api/images", &[("Content-Type", "image/png")], &png(4)).await;
    assert_eq!((anonymous.status, anonymous.error()), (401, ErrorCode::Unauthorized));
    assert_eq!(upload(addr, "forged", "image/png", &png(4)).await.status, 401);

    // A pending applicant may log in but not upload.
    server.apply("新来的", "13900000001", 4, Some("聚源桥村9组1号")).await;
    let pending = server.token("13900000001").await;
    let refused_upload = upload(addr, &pending, "image/png", &png(5)).await;
    assert_eq!((refused_upload.status, refused_upload.error()), (403, ErrorCode::Forbidden));
    // Officers may.
    let officer = server.token(&official_phone(1)).await;
    assert_eq!(upload(addr, &officer, "image/png", &png(6)).await.status, 201);

    // Three a minute per account: refused attempts count too.
    assert_eq!(upload(addr, &member, "image/png", &png(8)).await.status, 201);
    let limited = upload(addr, &member, "image/png", &png(7)).await;
    assert_eq!((limited.status, limited.error()), (429, ErrorCode::RateLimited));
    let secretary = server.token(&demo_phone(1, 1)).await;
    assert_eq!(upload(addr, &secretary, "image/png", &png(7)).await.status, 201, "per account");
}

#[tokio::test]
async fn messages_notices_and_requests_carry_pictures_live_and_in_history() {
    let server = Server::start(&LIMITS);
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let (mut reader, _) = server.client(&demo_phone(1, 4)).await;
    reader.subscribe(group, None).await;
    let token = server.token(&demo_phone(1, 3)).await;
    let a = uploaded(server.addr, &token, &png(10)).await;
    let b = uploaded(server.addr, &token, &png(11)).await;

    let seq = match send_with_images(&mut member, group, "河边的垃圾", &[&a, &b], "img-1").await {
        ServerFrame::Sent { seq, .. } => seq,
        other => panic!("{other:?}"),
    };
    let live = reader.event().await;
    assert_eq!(live.seq, seq);
    assert_eq!(images_of(&live), vec![a.clone(), b.clone()]);
    // A message without pictures has no `images` field at all.
    let (plain, _) = member.send_text(group, "没有图片", "img-2").await;
    let event = reader.event().await;
    assert_eq!(event.seq, plain);
    assert!(images_of(&event).is_empty());

    let cadre_token = server.token(&demo_phone(1, 2)).await;
    let c = uploaded(server.addr, &cadre_token, &png(12)).await;
    let notice = post(
        &mut cadre,
        group,
        "notice",
        json!({"title": "村务公开：修路", "text": "费用明细见图", "category": "affairs", "images": [c]}),
    )
    .await;
    assert_eq!(images_of(&reader.event().await), vec![c.clone()]);
    let request = post(
        &mut member,
        group,
        "request",
        json!({"category": "道路交通", "text": "路灯坏了", "images": [a]}),
    )
    .await;
    assert_eq!(images_of(&reader.event().await), vec![a.clone()]);

    let history = reader.full_history(group).await;
    let find = |seq: u64| history.iter().find(|e| e.seq == seq).unwrap();
    assert_eq!(images_of(find(seq)), vec![a.clone(), b.clone()]);
    assert_eq!(images_of(find(notice)), vec![c.clone()]);
    assert_eq!(images_of(find(request)), vec![a.clone()]);
    // The disclosure's hash covers its pictures, and the chain verifies.
    match reader.request(json!({"op": "verify_disclosures", "group": group})).await {
        ServerFrame::Disclosures { report, .. } => assert!(report.ok && report.checked == 1, "{report:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn posts_naming_unknown_malformed_or_too_many_pictures_are_refused() {
    let server = Server::start(&LIMITS);
    let (mut member, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let token = server.token(&demo_phone(1, 3)).await;
    let known = uploaded(server.addr, &token, &png(20)).await;
    let unknown = "ab".repeat(32);

    let code = |frame: ServerFrame| match frame {
        ServerFrame::Error { code, message, .. } => (code, message),
        other => panic!("expected an error, got {other:?}"),
    };
    let (c, message) = code(send_with_images(&mut member, group, "x", &[&known, &unknown], "u-1").await);
    assert_eq!(c, ErrorCode::BadRequest);
    assert!(message.contains("unknown image"), "{message}");
    let (c, _) = code(send_with_images(&mut member, group, "x", &["../../etc/passwd"], "u-2").await);
    assert_eq!(c, ErrorCode::BadRequest);
    let ten: Vec<&str> = std::iter::repeat_n(known.as_str(), 10).collect();
    let (c, _) = code(send_with_images(&mut member, group, "x", &ten, "u-3").await);
    assert_eq!(c, ErrorCode::TooLarge);
    let nine: Vec<&str> = std::iter::repeat_n(known.as_str(), 9).collect();
    assert!(matches!(
        send_with_images(&mut member, group, "九张", &nine, "u-4").await,
        ServerFrame::Sent { .. }
    ));

    let notice = json!({"title": "t", "text": "x", "category": "announcement", "images": [unknown]});
    assert_eq!(refused(&mut cadre, group, "notice", notice).await, ErrorCode::BadRequest);
    let request = json!({"category": "其他", "text": "x", "images": ten});
    assert_eq!(refused(&mut member, group, "request", request).await, ErrorCode::TooLarge);
    let request = json!({"category": "其他", "text": "x", "images": ["NOT-HEX"]});
    assert_eq!(refused(&mut member, group, "request", request).await, ErrorCode::BadRequest);
    // Nothing refused was stored.
    let history = member.full_history(group).await;
    assert!(!history.iter().any(|e| e.body.kind() == "notice" || e.body.kind() == "request"));
}

#[tokio::test]
async fn a_hidden_message_shows_members_no_pictures() {
    let server = Server::start(&LIMITS);
    let (mut poster, welcome) = server.client(&demo_phone(1, 4)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut member, _) = server.client(&demo_phone(1, 3)).await;
    let (mut cadre, _) = server.client(&demo_phone(1, 2)).await;
    let token = server.token(&demo_phone(1, 4)).await;
    let picture = uploaded(server.addr, &token, &png(30)).await;
    let seq = match send_with_images(&mut poster, group, "广告图", &[&picture], "h-1").await {
        ServerFrame::Sent { seq, .. } => seq,
        other => panic!("{other:?}"),
    };
    match cadre.request(json!({"op": "hide", "group": group, "seq": seq, "reason": "广告"})).await {
        ServerFrame::Done { .. } => {}
        other => panic!("{other:?}"),
    }
    let as_member = member.full_history(group).await;
    let hidden = as_member.iter().find(|e| e.seq == seq).unwrap();
    assert_eq!(hidden.body.kind(), "hidden");
    assert!(images_of(hidden).is_empty(), "a member's placeholder names no picture: {hidden:?}");
    let as_cadre = cadre.full_history(group).await;
    assert_eq!(images_of(as_cadre.iter().find(|e| e.seq == seq).unwrap()), vec![picture.clone()]);
    // Backfill after a resubscribe is the member's view too.
    member.subscribe(group, Some(seq - 1)).await;
    let backfilled = member.event().await;
    assert_eq!(backfilled.seq, seq);
    assert!(images_of(&backfilled).is_empty());
}

#[tokio::test]
async fn a_backup_carries_the_pictures() {
    let server = Server::start(&LIMITS);
    let token = server.token(&demo_phone(1, 3)).await;
    let name = uploaded(server.addr, &token, &png(40)).await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("backup.sqlite3");
    run_command(&[
        "backup",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    let copy = out.path().join("backup.sqlite3.images").join(&name[..2]).join(&name);
    assert_eq!(std::fs::read(copy).unwrap(), png(40));
    // A restore into an empty directory brings them back.
    let restored = tempfile::tempdir().unwrap();
    run_command(&[
        "restore",
        "--data-dir",
        restored.path().to_str().unwrap(),
        "--from",
        file.to_str().unwrap(),
    ]);
    let back = restored.path().join("images").join(&name[..2]).join(&name);
    assert_eq!(std::fs::read(back).unwrap(), png(40));
}

#[tokio::test]
async fn cluster_a_picture_uploaded_and_posted_on_one_node_is_served_by_another() {
    let redis = Redis::start();
    let a = cluster_node(&redis, &LIMITS);
    let b = cluster_node(&redis, &LIMITS);
    let (mut poster, welcome) = a.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let (mut reader, _) = b.client(&demo_phone(1, 4)).await;
    reader.subscribe(group, None).await;

    let token = a.token(&demo_phone(1, 3)).await;
    let picture = uploaded(a.addr, &token, &png(50)).await;
    let seq = match send_with_images(&mut poster, group, "来自A", &[&picture], "c-1").await {
        ServerFrame::Sent { seq, .. } => seq,
        other => panic!("{other:?}"),
    };
    let event = reader.event().await;
    assert_eq!((event.seq, images_of(&event)), (seq, vec![picture.clone()]));
    // B serves it at once (fetching it from Redis if its feed has not yet).
    let got = fetch(b.addr, &picture, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, png(50));
    assert_eq!(got.header("content-type"), Some("image/png"));
    // And keeps its own copy.
    let on_b = b.data_dir.join("images").join(&picture[..2]).join(&picture);
    assert_eq!(std::fs::read(&on_b).unwrap(), png(50));

    // Uploaded on A, posted on B: B fetches it to check the post.
    let second = uploaded(a.addr, &token, &png(51)).await;
    let (mut on_b_poster, _) = b.client(&demo_phone(1, 5)).await;
    let notice_like = json!({"category": "环境卫生", "text": "照片在A上传", "images": [second]});
    post(&mut on_b_poster, group, "request", notice_like).await;
    // A replicated event makes the other node fetch what it lacks by
    // itself, without any GET.
    let third = uploaded(b.addr, &b.token(&demo_phone(1, 5)).await, &png(52)).await;
    send_with_images(&mut on_b_poster, group, "来自B", &[&third], "c-2").await;
    let on_a = a.data_dir.join("images").join(&third[..2]).join(&third);
    for _ in 0..250 {
        if on_a.is_file() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read(&on_a).unwrap(), png(52), "node A fetched the picture of a replicated event");
    // Unknown everywhere: 404 on both nodes.
    assert_eq!(fetch(b.addr, &"cd".repeat(32), &[]).await.status, 404);
}
