//! Tokens: JWTs from the external real-name system (HS256 and RS256) are
//! accepted with the right key and claims and refused otherwise; logout and
//! a password change revoke earlier tokens and close live connections;
//! logins are rate limited per phone and per source address.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use protocol::{close, ErrorCode, ServerFrame};
use serde_json::{json, Value};
use villagehub::external::{sign_hs256, sign_rs256};

const HS_KEY: &str = "the external real-name system's shared key";
const ISSUER: &str = "realname.example";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(phone: &str, name: &str) -> Value {
    json!({"iss": ISSUER, "phone": phone, "name": name, "iat": now(), "exp": now() + 600})
}

fn start() -> Server {
    let public = fixture("external_rs256_public.pem");
    Server::start(&[
        "--external-jwt-hs256-key",
        HS_KEY,
        "--external-jwt-rs256-public-key",
        &public,
        "--external-jwt-issuer",
        ISSUER,
        "--login-attempts-per-address",
        "1000",
    ])
}

async fn hello_error(server: &Server, token: &str) -> ErrorCode {
    server.connect().await.expect_error(json!({"op": "hello", "token": token})).await
}

#[tokio::test]
async fn external_jwts_with_the_right_key_and_claims_are_accepted() {
    let server = start();
    let private = std::fs::read_to_string(fixture("external_rs256_private.pem")).unwrap();
    let other_private = std::fs::read_to_string(fixture("other_rs256_private.pem")).unwrap();
    let phone = demo_phone(1, 3);

    // HS256 and RS256, both naming 王秀英 by phone and real name.
    for token in [
        sign_hs256(HS_KEY.as_bytes(), &claims(&phone, "王秀英")),
        sign_rs256(&private, &claims(&phone, "王秀英")).unwrap(),
    ] {
        let welcome = server.connect().await.hello(&token).await;
        assert_eq!(welcome.account.name, "王秀英");
        assert_eq!(group_named(&welcome, "聚源桥村").role, protocol::Role::Member);
    }

    let expired = {
        let mut c = claims(&phone, "王秀英");
        c["iat"] = json!(now() - 7200);
        c["exp"] = json!(now() - 3600);
        c
    };
    let mut wrong_issuer = claims(&phone, "王秀英");
    wrong_issuer["iss"] = json!("someone.else");
    let mut no_phone = claims(&phone, "王秀英");
    no_phone.as_object_mut().unwrap().remove("phone");
    let refused = [
        ("wrong HS256 key", sign_hs256(b"not the external system's key at all", &claims(&phone, "王秀英"))),
        ("wrong RS256 key", sign_rs256(&other_private, &claims(&phone, "王秀英")).unwrap()),
        ("expired", sign_hs256(HS_KEY.as_bytes(), &expired)),
        ("wrong issuer", sign_hs256(HS_KEY.as_bytes(), &wrong_issuer)),
        ("name does not match", sign_hs256(HS_KEY.as_bytes(), &claims(&phone, "王秀"))),
        ("unknown phone", sign_hs256(HS_KEY.as_bytes(), &claims("13999999999", "王秀英"))),
        ("no phone claim", sign_hs256(HS_KEY.as_bytes(), &no_phone)),
    ];
    for (why, token) in refused {
        assert_eq!(hello_error(&server, &token).await, ErrorCode::Unauthorized, "{why}");
    }
    // A pending applicant's external token works like their own login: hello
    // succeeds, nothing is readable.
    let pending = sign_hs256(HS_KEY.as_bytes(), &claims(&demo_phone(1, 9), "彭玉兰"));
    let welcome = server.connect().await.hello(&pending).await;
    assert_eq!(welcome.account.status, protocol::AccountStatus::Pending);
    assert!(welcome.groups.is_empty());
    // `alg: none` and an RS256 token re-labelled HS256 are refused.
    let good = sign_rs256(&private, &claims(&phone, "王秀英")).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!("{}.{}.", b64.encode(r#"{"alg":"none"}"#), parts[1]);
    let relabelled = format!("{}.{}.{}", b64.encode(r#"{"alg":"HS256"}"#), parts[1], parts[2]);
    for token in [none, relabelled] {
        assert_eq!(hello_error(&server, &token).await, ErrorCode::Unauthorized);
    }
}

#[tokio::test]
async fn logout_revokes_earlier_tokens_and_closes_connections() {
    let server = start();
    let phone = demo_phone(2, 3);
    let token = server.token(&phone).await;
    let external = sign_hs256(HS_KEY.as_bytes(), &claims(&phone, "孙立新"));
    let mut first = server.connect().await;
    first.hello(&token).await;
    let mut second = server.connect().await;
    second.hello(&external).await;
    let mut other = server.client(&demo_phone(2, 4)).await.0;

    // Tokens are stamped in milliseconds: wait a moment so that the logout
    // is strictly later than both.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let reply = first.request(json!({"op": "logout"})).await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    assert_eq!(first.closed().await, Closed::Code(close::REVOKED));
    assert_eq!(second.closed().await, Closed::Code(close::REVOKED));
    // Another account's connection is untouched.
    assert!(matches!(
        other.request(json!({"op": "history", "group": 17})).await,
        ServerFrame::History { .. }
    ));

    // The old tokens, ours and the external one, are refused …
    assert_eq!(hello_error(&server, &token).await, ErrorCode::Unauthorized);
    assert_eq!(hello_error(&server, &external).await, ErrorCode::Unauthorized);
    // … a fresh login works at once.
    let (_, welcome) = server.client(&phone).await;
    assert_eq!(welcome.account.name, "孙立新");

    // POST /api/logout with a bearer token does the same.
    let fresh = server.token(&phone).await;
    let mut live = server.connect().await;
    live.hello(&fresh).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (status, body) = http_with_auth(&server, "/api/logout", &fresh).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(live.closed().await, Closed::Code(close::REVOKED));
    assert_eq!(hello_error(&server, &fresh).await, ErrorCode::Unauthorized);
    let (status, _) = http_with_auth(&server, "/api/logout", &fresh).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_password_change_revokes_earlier_tokens() {
    let server = start();
    let phone = demo_phone(3, 6);
    let token = server.token(&phone).await;
    let mut c = server.connect().await;
    c.hello(&token).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        c.expect_error(json!({"op": "change_password", "old": "wrong-password", "new": "new-password-1"}))
            .await,
        ErrorCode::Forbidden
    );
    assert_eq!(
        c.expect_error(json!({"op": "change_password", "old": DEMO_PASSWORD, "new": "short"})).await,
        ErrorCode::BadRequest
    );
    let reply =
        c.request(json!({"op": "change_password", "old": DEMO_PASSWORD, "new": "new-password-1"})).await;
    assert!(matches!(reply, ServerFrame::Done { .. }), "{reply:?}");
    assert_eq!(c.closed().await, Closed::Code(close::REVOKED));
    assert_eq!(hello_error(&server, &token).await, ErrorCode::Unauthorized);
    assert_eq!(server.login(&phone, DEMO_PASSWORD).await.unwrap_err().0, 401);
    let fresh = server.login(&phone, "new-password-1").await.unwrap().token;
    server.connect().await.hello(&fresh).await;
}

#[tokio::test]
async fn logins_are_limited_per_phone_and_per_address() {
    let server = Server::start(&["--login-failures-per-phone", "3", "--login-attempts-per-address", "12"]);
    let phone = demo_phone(1, 4);
    for _ in 0..3 {
        assert_eq!(server.login(&phone, "wrong").await.unwrap_err().0, 401);
    }
    // Locked: even the right password gets 429 now.
    let (status, error) = server.login(&phone, DEMO_PASSWORD).await.unwrap_err();
    assert_eq!((status, error.code), (429, ErrorCode::RateLimited));
    // An unknown phone behaves exactly the same, so the limit reveals nothing.
    for _ in 0..3 {
        assert_eq!(server.login("13999990000", "wrong").await.unwrap_err().0, 401);
    }
    assert_eq!(server.login("13999990000", DEMO_PASSWORD).await.unwrap_err().0, 429);
    // Other phones still log in, until the address has used its 12.
    server.login(&demo_phone(1, 5), DEMO_PASSWORD).await.unwrap();
    for _ in 0..3 {
        let _ = server.login(&demo_phone(1, 6), DEMO_PASSWORD).await;
    }
    let (status, _) = server.login(&demo_phone(1, 6), DEMO_PASSWORD).await.unwrap_err();
    assert_eq!(status, 429);
    let (status, _) = server
        .register(&json!({"name": "x", "phone": "13912349999", "password": "secret-123", "group": 4, "migrant": true}))
        .await;
    assert_eq!(status, 429, "registration counts against the address too");
}

async fn http_with_auth(server: &Server, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = server.addr;
    let path = path.to_string();
    let token = token.to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).unwrap().parse().unwrap();
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

/// `POST /api/login` as relayed by a proxy for client `forwarded_for`.
async fn login_via_proxy(server: &Server, forwarded_for: &str, phone: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = server.addr;
    let body = json!({"phone": phone, "password": DEMO_PASSWORD}).to_string();
    let forwarded_for = forwarded_for.to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nX-Forwarded-For: {forwarded_for}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split(' ').nth(1).unwrap().parse().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_limit_is_per_client_address() {
    let server = Server::start(&["--login-attempts-per-address", "2", "--trusted-proxy", "127.0.0.1"]);
    let phone = demo_phone(1, 3);
    assert_eq!(login_via_proxy(&server, "10.0.0.1", &phone).await, 200);
    assert_eq!(login_via_proxy(&server, "10.0.0.1", &phone).await, 200);
    assert_eq!(login_via_proxy(&server, "10.0.0.1", &phone).await, 429);
    // Another client behind the same proxy has its own allowance; the last
    // address of the header is the one the proxy saw.
    assert_eq!(login_via_proxy(&server, "10.0.0.1, 10.0.0.2", &phone).await, 200);

    // Without --trusted-proxy the header is ignored: everyone is 127.0.0.1.
    let direct = Server::start(&["--login-attempts-per-address", "2"]);
    assert_eq!(login_via_proxy(&direct, "10.0.0.1", &phone).await, 200);
    assert_eq!(login_via_proxy(&direct, "10.0.0.2", &phone).await, 200);
    assert_eq!(login_via_proxy(&direct, "10.0.0.3", &phone).await, 429);
}
