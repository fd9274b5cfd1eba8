//! The servers under test: seeding and starting villagehub on a scratch data
//! directory, starting the ws@8 peer, and a few real logins over HTTP.
//! Every process started here is stopped by its own pid, nothing else.

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member as written by `villagehub bench-seed --tokens-out`.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub group: u64,
    pub account: u64,
    #[serde(default)]
    pub phone: String,
    pub token: String,
}

/// Members by group, in file order (the first of each group is its
/// secretary).
pub fn load_members(path: &Path) -> Result<BTreeMap<u64, Vec<Member>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut groups: BTreeMap<u64, Vec<Member>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let m: Member = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a member line", path.display(), i + 1))?;
        groups.entry(m.group).or_default().push(m);
    }
    Ok(groups)
}

/// A server this run started (and will stop) or was pointed at.
pub struct Server {
    pub name: &'static str,
    pub pid: u32,
    /// ours: `ws://127.0.0.1:PORT/ws`; peer: `ws://127.0.0.1:PORT`.
    pub ws_url: String,
    pub http_port: u16,
    child: Option<Child>,
}

impl Server {
    /// A server started by someone else.
    pub fn external(name: &'static str, pid: u32, ws_url: String) -> Server {
        let http_port = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .and_then(|hp| hp.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Server { name, pid, ws_url, http_port, child: None }
    }

    /// SIGTERM, then SIGKILL after 5 s; only for a process we started.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

/// SIGTERM `child` (by its own pid), then SIGKILL after 5 s.
fn stop_child(mut child: Child) {
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What every node of a bench cluster shares: the Redis it sequences with
/// and the key that signs tokens (so a token issued by the seeding node is
/// accepted by every node).
#[derive(Debug, Clone)]
pub struct ClusterLink {
    pub redis_url: String,
    pub token_key: String,
}

impl ClusterLink {
    /// `--redis URL` on the command line, the key in the environment (where
    /// villagehub prefers it: not visible in `ps`).
    fn apply(&self, cmd: &mut Command) {
        cmd.arg("--redis").arg(&self.redis_url).env("VILLAGEHUB_TOKEN_KEY", &self.token_key);
    }
}

/// `villagehub bench-seed`: G groups × M members, tokens to `tokens`. With
/// `cluster` the directory changes are sequenced in Redis, so every node of
/// the cluster learns the members from there.
pub fn seed(
    bin: &Path,
    data_dir: &Path,
    groups: usize,
    members: usize,
    cluster: Option<&ClusterLink>,
) -> Result<PathBuf> {
    let tokens = data_dir.join("tokens.jsonl");
    let mut cmd = Command::new(bin);
    cmd.arg("bench-seed").arg("--data-dir").arg(data_dir);
    if let Some(link) = cluster {
        link.apply(&mut cmd);
    }
    let out = cmd
        .arg("--groups")
        .arg(groups.to_string())
        .arg("--members")
        .arg(members.to_string())
        .arg("--tokens-out")
        .arg(&tokens)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} bench-seed", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} bench-seed failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(tokens)
}

/// Start villagehub on `data_dir` (a node of `cluster`, if given) and wait
/// for its "listening on" line.
pub fn start_ours(
    bin: &Path,
    data_dir: &Path,
    extra: &[String],
    cluster: Option<&ClusterLink>,
) -> Result<Server> {
    std::fs::create_dir_all(data_dir)?;
    let log = std::fs::File::create(data_dir.join("server.log"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(data_dir);
    if let Some(link) = cluster {
        link.apply(&mut cmd);
    }
    cmd.args(extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
    let (child, line) = spawn_and_wait_for(cmd, "villagehub listening on http://")?;
    let port = port_at_end(&line)?;
    Ok(Server {
        name: "villagehub",
        pid: child.id(),
        ws_url: format!("ws://127.0.0.1:{port}/ws"),
        http_port: port,
        child: Some(child),
    })
}

/// A `redis-server` this run started on a free port, with its data (the
/// AOF) in a scratch directory.
pub struct RedisServer {
    pub pid: u32,
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start `redis_bin` on a free port with AOF persistence (`appendfsync`:
/// `always`, what docs/DEPLOYMENT.md asks for the durability promise, or
/// `everysec`), and wait until it answers PING.
pub fn start_redis(redis_bin: &str, dir: &Path, appendfsync: &str) -> Result<RedisServer> {
    std::fs::create_dir_all(dir)?;
    // Bind-and-release: another process could take the port in between,
    // which then shows as redis-server failing to start (reported below).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(dir.join("redis.log"))?;
    let mut child = Command::new(redis_bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", appendfsync, "--loglevel", "warning"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {redis_bin} (apt-get install redis-server)"))?;
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{redis_bin} exited at start ({status}); see {}", dir.join("redis.log").display());
        }
        if redis_ping(port) {
            return Ok(RedisServer { pid: child.id(), port, child: Some(child) });
        }
        if started.elapsed() > Duration::from_secs(10) {
            stop_child(child);
            bail!("{redis_bin} did not answer PING within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn redis_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

/// Wait until `GET /readyz` answers 200: a cluster node is caught up with
/// Redis (it knows every seeded member) and may take connections.
pub async fn wait_ready(port: u16, timeout: Duration) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        let probe = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let req = format!("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).await.ok()?;
            Some(String::from_utf8_lossy(&resp).into_owned())
        };
        if let Ok(Some(resp)) = tokio::time::timeout(Duration::from_secs(2), probe).await {
            if resp.lines().next().is_some_and(|l| l.contains(" 200")) {
                return Ok(());
            }
            last = resp.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the node on port {port} was not ready within {timeout:?}: {last}")
}

/// Start `node ws-room-server.js` and wait for its "listening on" line.
pub fn start_peer(script: &Path) -> Result<Server> {
    let dir = script.parent().unwrap_or(Path::new("."));
    if !dir.join("node_modules/ws").is_dir() {
        bail!("the ws peer is not installed: run `npm ci` in {}", dir.display());
    }
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .arg("--port")
        .arg("0")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let (child, line) = spawn_and_wait_for(cmd, "ws-room-server listening on ws://")?;
    let port = port_at_end(&line)?;
    Ok(Server {
        name: "ws@8 peer",
        pid: child.id(),
        ws_url: format!("ws://127.0.0.1:{port}"),
        http_port: port,
        child: Some(child),
    })
}

fn port_at_end(line: &str) -> Result<u16> {
    line.trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("no port in {line:?}"))
}

/// Spawn, read stdout until a line containing `marker` (30 s at most), then
/// keep draining stdout on a thread so the child never blocks on it.
fn spawn_and_wait_for(mut cmd: Command, marker: &str) -> Result<(Child, String)> {
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(&marker) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => Ok((child, line)),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            bail!("{cmd:?} did not print its listening line within 30 s (exit: {status:?})")
        }
    }
}

/// Log in `n` members one after the other through `POST /api/login`,
/// returning each login's wall time in ms.
pub async fn measure_logins(port: u16, phones: &[String], password: &str) -> Result<Vec<f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut times = Vec::new();
    for phone in phones {
        let body = serde_json::to_string(&protocol::LoginRequest {
            phone: phone.clone(),
            password: password.to_string(),
        })?;
        let req = format!(
            "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let t0 = Instant::now();
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        let text = String::from_utf8_lossy(&resp);
        let status = text.lines().next().unwrap_or("");
        if !status.contains(" 200") {
            bail!("login of {phone} failed: {status}");
        }
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        // Chunked bodies would need decoding; the token's presence is enough.
        if !body.contains("\"token\"") {
            bail!("login of {phone}: no token in the reply");
        }
        times.push(ms);
    }
    Ok(times)
}

/// `GET /metrics` (Prometheus text) as name → value; `None` when the
/// server has no such endpoint (the peer) or it cannot be read.
pub async fn scrape_metrics(port: u16) -> Option<BTreeMap<String, f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let req = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.ok()?;
        Some(String::from_utf8_lossy(&resp).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(5), fetch).await.ok()??;
    if !text.lines().next()?.contains(" 200") {
        return None;
    }
    Some(parse_metrics(text.split("\r\n\r\n").nth(1)?))
}

fn parse_metrics(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.trim().rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_text_is_parsed() {
        let m = parse_metrics("# TYPE a counter\na 12\nb_sum 0.5\n");
        assert_eq!(m.get("a"), Some(&12.0));
        assert_eq!(m.get("b_sum"), Some(&0.5));
    }

    use super::*;

    #[test]
    fn ports_are_read_from_listening_lines() {
        assert_eq!(port_at_end("villagehub listening on http://127.0.0.1:40123").unwrap(), 40123);
        assert_eq!(port_at_end("ws-room-server listening on ws://127.0.0.1:555/").unwrap(), 555);
    }

    #[test]
    fn external_server_port_comes_from_its_url() {
        let s = Server::external("x", 1, "ws://127.0.0.1:4242/ws".into());
        assert_eq!(s.http_port, 4242);
    }
}
