//! Helpers shared by the governance tests (notices, requests,
//! deliberation, exchange, likes).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;

use protocol::{ErrorCode, ServerFrame};
use serde_json::{json, Value};

use super::common::Client;

pub const LIMITS: [&str; 6] =
    ["--login-attempts-per-address", "1000", "--ops-per-sec", "1000", "--burst", "1000"];

/// `post` one governance event; returns its seq.
pub async fn post(client: &mut Client, group: u64, kind: &str, body: Value) -> u64 {
    match client.request(json!({"op": "post", "group": group, "event": {"kind": kind, "body": body}})).await {
        ServerFrame::Sent { seq, .. } => seq,
        other => panic!("post {kind} failed: {other:?}"),
    }
}

/// `post` that must fail; returns the error code.
pub async fn refused(client: &mut Client, group: u64, kind: &str, body: Value) -> ErrorCode {
    client.expect_error(json!({"op": "post", "group": group, "event": {"kind": kind, "body": body}})).await
}

/// An HTTP request with a bearer token.
pub async fn http_as(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let (method, path, token, body) =
        (method.to_string(), path.to_string(), token.to_string(), body.to_string());
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
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

/// Moves the server's governance clock (needs `--test-clock`); the server
/// runs one sweep before it answers.
pub async fn advance(addr: SocketAddr, ms: i64) {
    let (status, body) =
        super::common::http(addr, "POST", "/api/test/clock", Some(&json!({"advance_ms": ms}).to_string()))
            .await;
    assert_eq!(status, 200, "{body}");
}

pub const HOUR: i64 = 3_600_000;
