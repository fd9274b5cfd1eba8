//! Test harness: the real `villagehub` binary on 127.0.0.1:0 with its
//! SQLite file in a temp dir, and a small JSON-over-WebSocket client that
//! speaks the protocol crate's types.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use protocol::{
    ApiError, ErrorCode, Event, GroupInfo, LoginResponse, MembershipNotice, ServerFrame, Welcome,
};

pub const DEMO_PASSWORD: &str = "demo1234";
/// Demo phones: `1380000{g}{p:03}`; p = 1 secretary, 2 cadre, 3..=6 members.
pub fn demo_phone(group: usize, person: usize) -> String {
    format!("1380000{group}{person:03}")
}

/// How long any single expected frame may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How to start the server process, beyond its flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// RLIMIT_NOFILE for the server process.
    pub open_files: Option<u64>,
    /// Write the server's stderr (its logs) to this file.
    pub stderr: Option<PathBuf>,
    /// Extra environment, e.g. VILLAGEHUB_LOG.
    pub env: Vec<(String, String)>,
}

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    args: Vec<String>,
    options: Options,
    /// Keeps the temp dir alive as long as the server value.
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh data directory with demo data, plus `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        let temp = tempfile::tempdir().unwrap();
        let mut server = Server::start_in(temp.path(), extra);
        server._temp = Some(temp);
        server
    }

    /// Starts on an existing data directory (demo data created if empty).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_with(data_dir, extra, Options::default())
    }

    pub fn start_with(data_dir: &Path, extra: &[&str], options: Options) -> Server {
        let mut args: Vec<String> =
            vec!["--data-dir".into(), data_dir.display().to_string(), "--demo".into()];
        // Tests send bursts that are spikes by the default thresholds; the
        // warnings would reach the cadres and officers those tests use.
        // Only the tests of spikes themselves set the thresholds.
        if !extra.iter().any(|a| a.starts_with("--spike-")) {
            args.extend(["--spike-min-messages".into(), "1000000".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, addr) = spawn(&args, "127.0.0.1:0", &options);
        Server { child: Some(child), addr, data_dir: data_dir.to_path_buf(), args, options, _temp: None }
    }

    /// Starts the same binary again on the same data dir and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        let (child, addr) = spawn(&self.args, &self.addr.to_string(), &self.options);
        assert_eq!(addr, self.addr);
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// `POST /api/login`.
    pub async fn login(&self, phone: &str, password: &str) -> Result<LoginResponse, (u16, ApiError)> {
        let body = json!({"phone": phone, "password": password}).to_string();
        let (status, body) = http(self.addr, "POST", "/api/login", Some(&body)).await;
        if status == 200 {
            Ok(serde_json::from_str(&body).unwrap())
        } else {
            Err((
                status,
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad error body {body}: {e}")),
            ))
        }
    }

    pub async fn token(&self, phone: &str) -> String {
        self.login(phone, DEMO_PASSWORD).await.unwrap().token
    }

    /// `POST /api/register`; returns the HTTP status and body.
    pub async fn register(&self, request: &Value) -> (u16, String) {
        http(self.addr, "POST", "/api/register", Some(&request.to_string())).await
    }

    /// Registers a resident (`household` given) or a migrant (`None`) and
    /// checks the uniform 202 answer.
    pub async fn apply(&self, name: &str, phone: &str, group: u64, household: Option<&str>) {
        let mut request = json!({"name": name, "phone": phone, "password": DEMO_PASSWORD, "group": group});
        match household {
            Some(address) => request["household"] = json!({"address": address}),
            None => request["migrant"] = json!(true),
        }
        let (status, body) = self.register(&request).await;
        assert_eq!(status, 202, "register failed: {body}");
    }

    /// An unauthenticated connection.
    pub async fn connect(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url()).await.unwrap();
        Client {
            ws,
            next_id: 1,
            events: VecDeque::new(),
            notices: VecDeque::new(),
            applications: VecDeque::new(),
            receipts: VecDeque::new(),
            pushes: VecDeque::new(),
        }
    }

    /// Logged in and said hello.
    pub async fn client(&self, phone: &str) -> (Client, Welcome) {
        self.client_with_password(phone, DEMO_PASSWORD).await
    }

    pub async fn client_with_password(&self, phone: &str, password: &str) -> (Client, Welcome) {
        let token = self.login(phone, password).await.unwrap().token;
        let mut client = self.connect().await;
        let welcome = client.hello(&token).await;
        (client, welcome)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(args: &[String], listen: &str, options: &Options) -> (Child, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_villagehub"));
    command.args(args).args(["--listen", listen]).env("VILLAGEHUB_LOG", "warn").stdout(Stdio::piped());
    for (key, value) in &options.env {
        command.env(key, value);
    }
    match &options.stderr {
        Some(path) => command.stderr(std::fs::File::create(path).unwrap()),
        None => command.stderr(Stdio::inherit()),
    };
    if let Some(limit) = options.open_files {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between
        // fork and exec here.
        unsafe {
            command.pre_exec(move || {
                let rlim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("start villagehub");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().unwrap_or_else(|| panic!("villagehub exited before listening")).unwrap();
        if let Some(url) = line.strip_prefix("villagehub listening on http://") {
            break url.trim().parse().unwrap();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// A minimal HTTP/1.1 request (tests only; the server uses hyper).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let body = body.unwrap_or("").to_string();
    let method = method.to_string();
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events that arrived while waiting for a reply.
    events: VecDeque<Event>,
    /// Membership pushes that arrived while waiting for something else.
    pub notices: VecDeque<MembershipNotice>,
    /// Application pushes (to cadres), likewise.
    pub applications: VecDeque<protocol::ApplicationInfo>,
    /// Read-receipt pushes (to cadres), likewise.
    pub receipts: VecDeque<protocol::Receipts>,
    /// `stats_update`, `presence_update` and `warning` pushes, likewise.
    pub pushes: VecDeque<ServerFrame>,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    Code(u16),
    NoCloseFrame,
}

impl Client {
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.ws.send(Message::Text(value.to_string().into())).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// The next server frame, whatever it is.
    pub async fn frame(&mut self) -> ServerFrame {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection closed")
                .expect("websocket error");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).unwrap_or_else(|e| {
                        panic!("server sent a frame the protocol does not know: {e}: {text}")
                    });
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Sends an op (its `id` filled in) and returns the reply with that id;
    /// events arriving meanwhile are kept for `event()`.
    pub async fn request(&mut self, mut op: Value) -> ServerFrame {
        let id = self.next_id();
        op["id"] = json!(id);
        self.send_json(&op).await;
        self.reply(id).await
    }

    pub async fn reply(&mut self, id: u64) -> ServerFrame {
        loop {
            let frame = self.frame().await;
            if let Some(frame) = self.keep(frame) {
                assert_eq!(reply_id(&frame), Some(id), "reply out of order: {frame:?}");
                return frame;
            }
        }
    }

    /// Queues a pushed frame for whoever waits for its kind; returns any
    /// other frame (a reply).
    fn keep(&mut self, frame: ServerFrame) -> Option<ServerFrame> {
        match frame {
            ServerFrame::Event(event) => self.events.push_back(event),
            ServerFrame::Membership(notice) => self.notices.push_back(notice),
            ServerFrame::Application(application) => self.applications.push_back(application),
            ServerFrame::Receipts(receipts) => self.receipts.push_back(receipts),
            push @ (ServerFrame::StatsUpdate { .. }
            | ServerFrame::PresenceUpdate { .. }
            | ServerFrame::Warning(_)) => self.pushes.push_back(push),
            other => return Some(other),
        }
        None
    }

    /// Waits until `take` finds what it wants among the queued pushes,
    /// keeping every other push that arrives meanwhile.
    async fn wait_for<T>(&mut self, what: &str, take: impl Fn(&mut Self) -> Option<T>) -> T {
        loop {
            if let Some(found) = take(self) {
                return found;
            }
            let frame = self.frame().await;
            if let Some(other) = self.keep(frame) {
                panic!("expected {what}, got {other:?}");
            }
        }
    }

    pub async fn hello(&mut self, token: &str) -> Welcome {
        match self.request(json!({"op": "hello", "token": token})).await {
            ServerFrame::Welcome(welcome) => welcome,
            other => panic!("hello failed: {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, group: u64, since: Option<u64>) -> u64 {
        let mut op = json!({"op": "subscribe", "group": group});
        if let Some(since) = since {
            op["since"] = json!(since);
        }
        match self.request(op).await {
            ServerFrame::Subscribed { head, .. } => head,
            other => panic!("subscribe failed: {other:?}"),
        }
    }

    /// Sends a chat message; returns (seq, duplicate).
    pub async fn send_text(&mut self, group: u64, text: &str, key: &str) -> (u64, bool) {
        match self.try_send_text(group, text, key).await {
            Ok(sent) => sent,
            Err(e) => panic!("send failed: {e:?}"),
        }
    }

    pub async fn try_send_text(
        &mut self,
        group: u64,
        text: &str,
        key: &str,
    ) -> Result<(u64, bool), (ErrorCode, String)> {
        let op = json!({"op": "send", "group": group, "channel": "chat", "body": {"text": text}, "client_key": key});
        match self.request(op).await {
            ServerFrame::Sent { seq, duplicate, .. } => Ok((seq, duplicate)),
            ServerFrame::Error { code, message, .. } => Err((code, message)),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    /// The error code of an op's reply (panics if it succeeded).
    pub async fn expect_error(&mut self, op: Value) -> ErrorCode {
        match self.request(op).await {
            ServerFrame::Error { code, .. } => code,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The next pushed event.
    pub async fn event(&mut self) -> Event {
        self.wait_for("an event", |c| c.events.pop_front()).await
    }

    /// The next application push (other pushes arriving meanwhile are kept).
    pub async fn application(&mut self) -> protocol::ApplicationInfo {
        self.wait_for("an application push", |c| c.applications.pop_front()).await
    }

    /// The next membership push (events arriving meanwhile are kept).
    pub async fn notice(&mut self) -> MembershipNotice {
        self.wait_for("a membership push", |c| c.notices.pop_front()).await
    }

    /// The next read-receipt push (events arriving meanwhile are kept).
    pub async fn receipts_push(&mut self) -> protocol::Receipts {
        self.wait_for("a receipts push", |c| c.receipts.pop_front()).await
    }

    /// The next `stats_update`, `presence_update` or `warning` push (one
    /// that arrived while waiting for a reply first).
    pub async fn push(&mut self) -> ServerFrame {
        self.wait_for("a push", |c| c.pushes.pop_front()).await
    }

    /// Asserts that nothing but pings arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        assert!(self.events.is_empty(), "unread events: {:?}", self.events);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Waits for the server to close the connection and returns how.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next()).await.expect("connection not closed in time")
            {
                Some(Ok(Message::Close(Some(CloseFrame { code, .. })))) => return Closed::Code(code.into()),
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return Closed::NoCloseFrame,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Every event of a group via `history`, paging back to seq 1.
    pub async fn full_history(&mut self, group: u64) -> Vec<Event> {
        let mut all = Vec::new();
        let mut before: Option<u64> = None;
        loop {
            let mut op = json!({"op": "history", "group": group, "limit": 200});
            if let Some(b) = before {
                op["before"] = json!(b);
            }
            match self.request(op).await {
                ServerFrame::History { events, more, .. } => {
                    before = events.first().map(|e| e.seq);
                    let mut page = events;
                    page.append(&mut all);
                    all = page;
                    if !more {
                        return all;
                    }
                }
                other => panic!("history failed: {other:?}"),
            }
        }
    }
}

/// The account id of a pending applicant, as a cadre of the group sees it.
pub async fn applicant_id(cadre: &mut Client, group: u64, phone: &str) -> u64 {
    match cadre.request(json!({"op": "applications", "group": group})).await {
        ServerFrame::Applications { applications, .. } => {
            applications
                .iter()
                .find(|a| a.phone == phone)
                .unwrap_or_else(|| panic!("no pending application from {phone}: {applications:?}"))
                .account
        }
        other => panic!("applications failed: {other:?}"),
    }
}

/// Phones of the demo's officials: 13800009001 town officer of 月浦镇,
/// …002 town officer of 罗店镇, …003 district officer, …004 admin.
pub fn official_phone(i: usize) -> String {
    format!("138000090{i:02}")
}

pub fn reply_id(frame: &ServerFrame) -> Option<u64> {
    match frame {
        ServerFrame::Welcome(w) => Some(w.id),
        ServerFrame::Subscribed { id, .. }
        | ServerFrame::Unsubscribed { id, .. }
        | ServerFrame::Sent { id, .. }
        | ServerFrame::History { id, .. }
        | ServerFrame::Done { id, .. }
        | ServerFrame::Applications { id, .. }
        | ServerFrame::Audit { id, .. }
        | ServerFrame::Unread { id, .. }
        | ServerFrame::Disclosures { id, .. }
        | ServerFrame::Figures { id, .. }
        | ServerFrame::Likes { id, .. }
        | ServerFrame::BroadcastSent { id, .. }
        | ServerFrame::Stats { id, .. }
        | ServerFrame::Needs { id, .. }
        | ServerFrame::Presence { id, .. }
        | ServerFrame::Warnings { id, .. }
        | ServerFrame::Escalated { id, .. } => Some(*id),
        ServerFrame::Error { id, .. } => *id,
        ServerFrame::Event(_)
        | ServerFrame::Membership(_)
        | ServerFrame::Application(_)
        | ServerFrame::Receipts(_)
        | ServerFrame::Warning(_)
        | ServerFrame::StatsUpdate { .. }
        | ServerFrame::PresenceUpdate { .. } => None,
    }
}

pub fn group_named(welcome: &Welcome, name: &str) -> GroupInfo {
    welcome
        .groups
        .iter()
        .find(|g| g.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("not a member of {name}"))
}

/// The text of a chat event.
pub fn text_of(event: &Event) -> &str {
    match &event.body {
        protocol::EventBody::Message(m) => &m.text,
        protocol::EventBody::Hidden(h) => h.text.as_deref().unwrap_or(""),
        protocol::EventBody::Broadcast(b) => &b.text,
        _ => "",
    }
}

/// Asserts that `seqs` is exactly `from..=to`.
pub fn assert_contiguous(seqs: &[u64], from: u64, to: u64) {
    let expected: Vec<u64> = (from..=to).collect();
    if seqs != expected.as_slice() {
        let dups = seqs.windows(2).filter(|w| w[0] == w[1]).count();
        panic!(
            "expected seqs {from}..={to} ({} events), got {} events ({} duplicates), first differences: {:?}",
            expected.len(),
            seqs.len(),
            dups,
            seqs.iter().zip(&expected).filter(|(a, b)| a != b).take(5).collect::<Vec<_>>()
        );
    }
}

/// A real `redis-server` on a free port, with its data in a temp dir and
/// every write fsynced (appendfsync always), as a cluster deployment needs.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Redis { child: None, port, dir: tempfile::tempdir().unwrap() };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port and data dir.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let started = std::time::Instant::now();
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The token key every node of a test cluster shares.
pub const CLUSTER_TOKEN_KEY: &str = "cluster-test-key-0123456789abcdef";

/// A cluster node on `redis` (demo data is created once, by the first node).
pub fn cluster_node(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str(), "--token-key", CLUSTER_TOKEN_KEY];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A row of the events table: log, seq, ts, author, client_key, kind, frame.
pub type StoredRow = (i64, i64, i64, i64, Option<String>, String, String);

/// Every stored event of a node's SQLite file, in log and seq order.
pub fn stored_events(data_dir: &Path) -> Vec<StoredRow> {
    let conn = rusqlite::Connection::open(data_dir.join("villagehub.sqlite3")).unwrap();
    let mut stmt = conn
        .prepare("SELECT log, seq, ts, author, client_key, kind, frame FROM events ORDER BY log, seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Runs a `villagehub` subcommand to completion; returns its stdout.
pub fn run_command(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_villagehub")).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "villagehub {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
