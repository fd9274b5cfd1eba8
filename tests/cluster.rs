//! Cluster mode on a real redis-server: Redis sequences, every node applies
//! every event (invariants 3 and 5).

mod common;

use std::time::Duration;

use common::*;
use protocol::ErrorCode;

const FAST: [&str; 4] = ["--ops-per-sec", "100000", "--burst", "100000"];

/// The group's history once the node has applied up to `seq`.
async fn applied_history(client: &mut Client, group: u64, seq: u64) -> Vec<protocol::Event> {
    for _ in 0..100 {
        let history = client.full_history(group).await;
        if history.last().is_some_and(|e| e.seq >= seq) {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("seq {seq} was never applied");
}

/// A subscribed reader on node `a` (and the group's head when it
/// subscribed), and a member on node `b` sending 300 messages, `pause`
/// apart.
async fn reader_on_a_sender_on_b(
    a: &Server,
    b: &Server,
    group: u64,
    tag: &'static str,
    pause: Duration,
) -> (Client, u64, tokio::task::JoinHandle<()>) {
    let (mut reader, _) = a.client(&demo_phone(1, 2)).await;
    let head = reader.subscribe(group, None).await;
    let (mut sender, _) = b.client(&demo_phone(1, 3)).await;
    let sending = tokio::spawn(async move {
        for n in 0..300 {
            sender.send_text(group, &format!("m{n}"), &format!("{tag}-{n}")).await;
            tokio::time::sleep(pause).await;
        }
    });
    (reader, head, sending)
}

async fn village(server: &Server) -> u64 {
    let (_, welcome) = server.client(&demo_phone(1, 3)).await;
    group_named(&welcome, "聚源桥村").id
}

#[tokio::test]
async fn three_nodes_one_order_identical_replicas() {
    let redis = Redis::start();
    let mut nodes =
        vec![cluster_node(&redis, &FAST), cluster_node(&redis, &FAST), cluster_node(&redis, &FAST)];
    let group = village(&nodes[0]).await;
    // A directory made on node 1 is there on nodes 2 and 3: people log in
    // anywhere.
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (mut c, _) = node.client(&demo_phone(1, 3 + i)).await;
        c.subscribe(group, None).await;
        clients.push(c);
    }
    let head = nodes[0].client(&demo_phone(1, 6)).await.0.subscribe(group, None).await;
    let mut tasks = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let (mut c, _) = node.client(&demo_phone(1, 3 + i)).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..30 {
                c.send_text(group, &format!("node{i} #{n}"), &format!("c-{i}-{n}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seen = Vec::new();
    for c in &mut clients {
        let mut events = Vec::new();
        for _ in 0..90 {
            let e = c.event().await;
            events.push((e.seq, text_of(&e).to_string(), e.ts));
        }
        assert_contiguous(&events.iter().map(|e| e.0).collect::<Vec<_>>(), head + 1, head + 90);
        seen.push(events);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);

    // Every node's SQLite holds the same logs, byte for byte.
    for node in &mut nodes {
        node.terminate();
    }
    let replicas: Vec<_> = nodes.iter().map(|n| stored_events(&n.data_dir)).collect();
    assert!(replicas[0].len() > 90);
    assert_eq!(replicas[0], replicas[1]);
    assert_eq!(replicas[1], replicas[2]);
}

#[tokio::test]
async fn clients_of_a_killed_node_resume_on_another() {
    let redis = Redis::start();
    let mut a = cluster_node(&redis, &FAST);
    let b = cluster_node(&redis, &FAST);
    let group = village(&a).await;
    let (mut reader, head, sending) = reader_on_a_sender_on_b(&a, &b, group, "kill", Duration::ZERO).await;
    let mut seqs = Vec::new();
    for _ in 0..50 {
        seqs.push(reader.event().await.seq);
    }
    a.kill9();
    // The client moves to node b, logs in there and resumes.
    let (mut reader, _) = b.client(&demo_phone(1, 2)).await;
    reader.subscribe(group, seqs.last().copied()).await;
    while *seqs.last().unwrap() < head + 300 {
        seqs.push(reader.event().await.seq);
    }
    sending.await.unwrap();
    assert_contiguous(&seqs, head + 1, head + 300);
    reader.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn redis_down_refuses_sends_loses_nothing_acked_and_nodes_converge() {
    let mut redis = Redis::start();
    let mut a = cluster_node(&redis, &FAST);
    let mut b = cluster_node(&redis, &FAST);
    let group = village(&a).await;
    let (mut sender, _) = a.client(&demo_phone(1, 3)).await;
    let mut acked = Vec::new();
    for n in 0..20 {
        acked.push((
            sender.send_text(group, &format!("before {n}"), &format!("rd-{n}")).await.0,
            format!("before {n}"),
        ));
    }
    redis.kill9();
    // Refused at once with `unavailable`, never hanging.
    let mut refusals = 0;
    for n in 0..5 {
        let started = std::time::Instant::now();
        match sender.try_send_text(group, "during", &format!("rd-down-{n}")).await {
            Err((ErrorCode::Unavailable, _)) => refusals += 1,
            other => panic!("expected unavailable while Redis is down, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3), "a send hung while Redis was down");
    }
    assert_eq!(refusals, 5);
    // History still works from the local store.
    assert!(sender.full_history(group).await.len() >= 20);

    redis.restart();
    // Retrying with the same keys after Redis is back: accepted.
    let mut after = 0;
    for attempt in 0..100 {
        match sender.try_send_text(group, &format!("after {after}"), &format!("rd-after-{after}")).await {
            Ok((seq, _)) => {
                acked.push((seq, format!("after {after}")));
                after += 1;
                if after == 10 {
                    break;
                }
            }
            Err((ErrorCode::Unavailable, _)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(other) => panic!("attempt {attempt}: {other:?}"),
        }
    }
    assert_eq!(after, 10, "sends never recovered after Redis came back");

    // Both nodes converge on the same log holding every acked event.
    let last = acked.iter().map(|(seq, _)| *seq).max().unwrap();
    let (mut on_b, _) = b.client(&demo_phone(1, 4)).await;
    let history_a = applied_history(&mut sender, group, last).await;
    let history_b = applied_history(&mut on_b, group, last).await;
    assert_eq!(history_a, history_b);
    for (seq, text) in &acked {
        assert_eq!(text_of(&history_a[(*seq - 1) as usize]), text);
    }
    a.terminate();
    b.terminate();
    assert_eq!(stored_events(&a.data_dir), stored_events(&b.data_dir));
}

#[tokio::test]
async fn a_late_node_catches_up_before_it_serves() {
    let redis = Redis::start();
    let a = cluster_node(&redis, &FAST);
    let group = village(&a).await;
    let (mut sender, _) = a.client(&demo_phone(1, 3)).await;
    let mut last = 0;
    for n in 0..150 {
        last = sender.send_text(group, &format!("early {n}"), &format!("late-{n}")).await.0;
    }
    // `sent` means accepted by Redis; node a applies it a moment later.
    let history = applied_history(&mut sender, group, last).await;

    // A node started now has everything by the time it listens.
    let mut late = cluster_node(&redis, &FAST);
    let (status, body) = http(late.addr, "GET", "/readyz", None).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (mut reader, _) = late.client(&demo_phone(1, 4)).await;
    assert_eq!(reader.full_history(group).await, history);

    // A node that was down while events happened catches up on restart.
    late.terminate();
    for n in 0..40 {
        last = sender.send_text(group, &format!("while away {n}"), &format!("away-{n}")).await.0;
    }
    late.restart();
    let (mut reader, _) = late.client(&demo_phone(1, 4)).await;
    assert_eq!(reader.full_history(group).await, applied_history(&mut sender, group, last).await);
}

#[tokio::test]
async fn a_node_too_far_behind_the_stream_says_so_and_serves_nothing_of_it() {
    let redis = Redis::start();
    // Streams keep only ~100 events (MAXLEN ~ trims whole nodes of 100).
    let a =
        cluster_node(&redis, &["--ops-per-sec", "100000", "--burst", "100000", "--redis-stream-max", "10"]);
    let mut b = cluster_node(&redis, &FAST);
    let group = village(&a).await;
    b.terminate();
    let (mut sender, _) = a.client(&demo_phone(1, 3)).await;
    for n in 0..400 {
        sender.send_text(group, &format!("m{n}"), &format!("trim-{n}")).await;
    }
    b.restart();
    let (status, body) = http(b.addr, "GET", "/readyz", None).await;
    assert_eq!(status, 503);
    assert!(body.contains(&format!("log {group}")) && body.contains("backup"), "{body}");
    let (mut c, _) = b.client(&demo_phone(1, 4)).await;
    let op = serde_json::json!({"op": "subscribe", "group": group, "since": 0});
    assert_eq!(c.expect_error(op).await, ErrorCode::Unavailable);
    // Another group of the same node is still served.
    let (mut other, welcome) = b.client(&demo_phone(3, 3)).await;
    other.subscribe(group_named(&welcome, "南周村").id, Some(0)).await;
    drop((c, other));

    // The documented cure: back up a healthy node while it runs, restore the
    // copy into the stale node, start it; it catches up the rest from Redis.
    let backup = tempfile::tempdir().unwrap();
    let file = backup.path().join("a.sqlite3");
    let printed =
        run_command(&["backup", "--data-dir", a.data_dir.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert!(printed.contains("backed up"), "{printed}");
    let mut last = 0;
    for n in 0..20 {
        last = sender.send_text(group, &format!("after backup {n}"), &format!("trim-after-{n}")).await.0;
    }
    b.terminate();
    run_command(&["restore", "--data-dir", b.data_dir.to_str().unwrap(), "--from", file.to_str().unwrap()]);
    b.restart();
    let (status, body) = http(b.addr, "GET", "/readyz", None).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let (mut reader, _) = b.client(&demo_phone(1, 4)).await;
    assert_eq!(reader.full_history(group).await, applied_history(&mut sender, group, last).await);
}

#[tokio::test]
async fn a_draining_node_sends_its_clients_to_another_without_loss() {
    let redis = Redis::start();
    let mut a = cluster_node(&redis, &FAST);
    let b = cluster_node(&redis, &FAST);
    let group = village(&a).await;
    let (mut reader, head, sending) =
        reader_on_a_sender_on_b(&a, &b, group, "drain", Duration::from_millis(2)).await;
    let mut seqs = Vec::new();
    for _ in 0..30 {
        seqs.push(reader.event().await.seq);
    }
    // SIGTERM: a stops accepting, delivers what it applied, says 1001.
    let terminating = tokio::task::spawn_blocking(move || {
        a.terminate();
        a
    });
    loop {
        match tokio::time::timeout(PATIENCE, futures_util::StreamExt::next(&mut reader.ws)).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                if let protocol::ServerFrame::Event(e) = serde_json::from_str(text.as_str()).unwrap() {
                    seqs.push(e.seq);
                }
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), protocol::close::GOING_AWAY);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a 1001 close, got {other:?}"),
        }
    }
    let _a = terminating.await.unwrap();
    let (mut reader, _) = b.client(&demo_phone(1, 2)).await;
    reader.subscribe(group, seqs.last().copied()).await;
    while *seqs.last().unwrap() < head + 300 {
        seqs.push(reader.event().await.seq);
    }
    sending.await.unwrap();
    assert_contiguous(&seqs, head + 1, head + 300);

    let (_, metrics) = http(b.addr, "GET", "/metrics", None).await;
    assert!(metrics.contains("villagehub_cluster_live 1"), "{metrics}");
    assert!(metrics.contains("villagehub_cluster_replication_lag_events 0"), "{metrics}");
}
