//! Running it for years: migrations, backups under load, the open-file
//! limit, a full disk, logs without secrets.

mod common;

use std::time::Duration;

use common::*;
use protocol::ErrorCode;

const FAST: [&str; 4] = ["--ops-per-sec", "100000", "--burst", "100000"];

#[tokio::test]
async fn an_older_data_directory_is_migrated_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let hash = villagehub::auth::hash_password("old-password");
    let sql = include_str!("fixtures/store-v1.sql").replace("PASSWORD_HASH", &hash);
    let conn = rusqlite::Connection::open(dir.path().join("villagehub.sqlite3")).unwrap();
    conn.execute_batch(&sql).unwrap();
    drop(conn);

    let server = Server::start_in(dir.path(), &[]);
    let (mut c, welcome) = server.client_with_password("13900000001", "old-password").await;
    let group = group_named(&welcome, "聚源桥村").id;
    let history = c.full_history(group).await;
    assert_eq!(history.len(), 1);
    assert_eq!(text_of(&history[0]), "旧版本写的消息");
    // The old event's client key still deduplicates…
    assert_eq!(c.send_text(group, "again", "old-key").await, (1, true));
    // …and the log goes on.
    assert_eq!(c.send_text(group, "新消息", "new-key").await, (2, false));
    drop(c);
    let conn = rusqlite::Connection::open(dir.path().join("villagehub.sqlite3")).unwrap();
    assert_eq!(villagehub::store::schema_version(&conn).unwrap(), Some(villagehub::store::SCHEMA_VERSION));
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_every_acked_event() {
    let server = Server::start(&FAST);
    let (_, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let mut senders = Vec::new();
    for person in 3..=6 {
        let (mut c, _) = server.client(&demo_phone(1, person)).await;
        senders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..150 {
                let text = format!("{person}-{n}");
                let seq = c.send_text(group, &text, &format!("bk-{person}-{n}")).await.0;
                acked.push((seq, text, std::time::Instant::now()));
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("backup.sqlite3");
    run_command(&[
        "backup",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    let before_backup: Vec<_> = acked.iter().filter(|(_, _, at)| *at < started).collect();
    assert!(!before_backup.is_empty(), "the backup did not run under load");

    let fresh = tempfile::tempdir().unwrap();
    run_command(&["restore", "--data-dir", fresh.path().to_str().unwrap(), "--from", file.to_str().unwrap()]);
    let restored = Server::start_in(fresh.path(), &[]);
    let (mut c, _) = restored.client(&demo_phone(1, 3)).await;
    let history = c.full_history(group).await;
    assert_contiguous(&history.iter().map(|e| e.seq).collect::<Vec<_>>(), 1, history.len() as u64);
    for (seq, text, _) in before_backup {
        assert_eq!(text_of(&history[(*seq - 1) as usize]), text);
    }
}

#[tokio::test]
async fn connections_past_the_open_file_limit_are_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // 200 open files: the server takes 200 - 64 = 136 connections.
    let options = Options { open_files: Some(200), ..Options::default() };
    let server = Server::start_with(dir.path(), &FAST, options);
    let (mut first, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    first.subscribe(group, None).await;
    let token = server.token(&demo_phone(1, 4)).await;

    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(server.ws_url())).await {
            Ok(Ok((ws, _))) => open.push(ws),
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("a connection attempt hung instead of being refused"),
        }
    }
    assert!(refused > 0, "nothing was refused");
    assert!(open.len() >= 100, "only {} connections were accepted", open.len());

    // Existing connections are unaffected.
    let (seq, _) = first.send_text(group, "still fine", "flood-1").await;
    assert_eq!(first.event().await.seq, seq);
    // And once some close, new ones are accepted again.
    open.truncate(open.len() - 20);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = server.connect().await;
    again.hello(&token).await;
    let (_, metrics) = http(server.addr, "GET", "/metrics", None).await;
    let refused_counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("villagehub_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no refused counter in {metrics}"));
    assert!(refused_counted >= refused as u64, "{refused} refused, {refused_counted} counted");
}

#[tokio::test]
async fn a_full_disk_refuses_sends_and_the_node_recovers() {
    let mount = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8M", "tmpfs"])
        .arg(mount.path())
        .status()
        .expect("mount (the tests run as root)");
    assert!(status.success(), "could not mount a tmpfs: this test needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.path().to_path_buf());

    let server = Server::start_in(
        mount.path(),
        &["--ops-per-sec", "100000", "--burst", "100000", "--max-text", "2000"],
    );
    let (mut c, welcome) = server.client(&demo_phone(1, 3)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let mut acked = vec![(
        c.send_text(group, "before the disk fills", "df-0").await.0,
        "before the disk fills".to_string(),
    )];

    // Fill the disk to the last byte.
    let filler = mount.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
    }
    // Sends are refused with a clear error once SQLite cannot grow.
    let big = "满".repeat(2000);
    let mut refusal = None;
    for n in 0..2000 {
        match c.try_send_text(group, &big, &format!("df-full-{n}")).await {
            Ok((seq, _)) => acked.push((seq, big.clone())),
            Err((code, message)) => {
                refusal = Some((code, message));
                break;
            }
        }
    }
    let (code, message) = refusal.expect("the full disk never refused a send");
    assert_eq!(code, ErrorCode::Unavailable);
    assert!(message.contains("full"), "{message}");
    // The node is up and still reads.
    assert_eq!(http(server.addr, "GET", "/healthz", None).await.0, 200);
    assert!(!c.full_history(group).await.is_empty());

    // Space again: sends work again, and nothing acked is missing.
    std::fs::remove_file(&filler).unwrap();
    let mut recovered = false;
    for n in 0..50 {
        if let Ok((seq, _)) = c.try_send_text(group, "after", &format!("df-after-{n}")).await {
            acked.push((seq, "after".into()));
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "sends did not recover after space was freed");
    let history = c.full_history(group).await;
    for (seq, text) in &acked {
        assert_eq!(text_of(&history[(*seq - 1) as usize]), text);
    }
}

#[tokio::test]
async fn logs_never_contain_passwords_tokens_or_the_token_key() {
    let dir = tempfile::tempdir().unwrap();
    let log_file = dir.path().join("server.log");
    let data = dir.path().join("data");
    let options = Options {
        stderr: Some(log_file.clone()),
        env: vec![("VILLAGEHUB_LOG".into(), "trace".into())],
        ..Options::default()
    };
    let server = Server::start_with(&data, &[], options);
    let login = server.login(&demo_phone(1, 3), DEMO_PASSWORD).await.unwrap();
    let _ = server.login(&demo_phone(1, 3), "a-wrong-password").await;
    let mut c = server.connect().await;
    c.hello(&login.token).await;
    let _ = c.expect_error(serde_json::json!({"op": "hello", "token": login.token})).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = std::fs::read_to_string(&log_file).unwrap();
    assert!(logs.len() > 100, "trace logging produced almost nothing: {logs}");
    let key = std::fs::read_to_string(data.join("token.key")).unwrap();
    for secret in [DEMO_PASSWORD, "a-wrong-password", login.token.as_str(), key.trim()] {
        if let Some(at) = logs.find(secret) {
            let from = logs[..at].char_indices().rev().nth(300).map(|(i, _)| i).unwrap_or(0);
            panic!("the logs contain a secret {secret}: …{}", &logs[from..at]);
        }
    }
    // Not even the token's signature alone.
    let signature = login.token.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature));
}
