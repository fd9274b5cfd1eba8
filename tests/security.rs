//! OWASP's WebSocket advice: check the Origin, limit connections per
//! account and per address.

mod common;

use common::*;
use protocol::ErrorCode;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

async fn connect_with_origin(server: &Server, origin: Option<&str>) -> Result<(), u16> {
    let mut request = server.ws_url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

#[tokio::test]
async fn only_allowed_origins_may_open_a_websocket() {
    let server = Server::start(&["--allowed-origin", "https://shequtong.example.gov.cn"]);
    let own = format!("http://{}", server.addr);
    assert_eq!(connect_with_origin(&server, Some(&own)).await, Ok(()), "the server's own pages");
    assert_eq!(connect_with_origin(&server, Some("https://shequtong.example.gov.cn")).await, Ok(()));
    assert_eq!(connect_with_origin(&server, Some("HTTPS://SHEQUTONG.example.gov.cn/")).await, Ok(()));
    assert_eq!(connect_with_origin(&server, None).await, Ok(()), "apps and tools send no Origin");
    assert_eq!(connect_with_origin(&server, Some("https://evil.example.com")).await, Err(403));
    assert_eq!(connect_with_origin(&server, Some("null")).await, Err(403));
}

#[tokio::test]
async fn connections_per_account_and_per_address_are_limited() {
    let server = Server::start(&["--max-connections-per-account", "2", "--max-connections-per-ip", "5"]);
    let token = server.token(&demo_phone(1, 3)).await;
    let mut first = server.connect().await;
    first.hello(&token).await;
    let mut second = server.connect().await;
    second.hello(&token).await;
    let mut third = server.connect().await;
    assert_eq!(
        third.expect_error(serde_json::json!({"op": "hello", "token": token})).await,
        ErrorCode::RateLimited
    );
    // Another account on the third connection is fine.
    let other = server.token(&demo_phone(1, 4)).await;
    third.hello(&other).await;
    // Closing one frees its place.
    drop(first);
    let mut fourth = server.connect().await;
    let mut freed = false;
    for _ in 0..50 {
        match fourth.request(serde_json::json!({"op": "hello", "token": token})).await {
            protocol::ServerFrame::Welcome(_) => {
                freed = true;
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    assert!(freed, "a closed connection did not free its place");

    // Five sockets from 127.0.0.1 now (second, third, fourth + two more);
    // the sixth is refused at the upgrade.
    let _a = server.connect().await;
    let _b = server.connect().await;
    assert_eq!(connect_with_origin(&server, None).await, Err(429));
}

#[tokio::test]
async fn the_web_client_is_served_without_its_development_files() {
    let server = Server::start(&[]);
    let (status, body) = http(server.addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"), "{body}");
    for path in
        ["/package.json", "/tests/helpers.js", "/node_modules/playwright-core/package.json", "/test.sh"]
    {
        assert_eq!(http(server.addr, "GET", path, None).await.0, 404, "{path} is served");
    }
    let raw = raw_get(server.addr, "/app.js").await;
    assert!(raw.to_ascii_lowercase().contains("cache-control: no-cache"), "{raw}");
}

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split("\r\n\r\n").next().unwrap().to_string()
    })
    .await
    .unwrap()
}
