//! Invariant 2: a client that (re)subscribes with `since = S` gets every
//! event after S exactly once, in order, then live events — across the
//! backfill → live switch, across large gaps, and across outbox overflow.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use protocol::ServerFrame;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const FAST: [&str; 4] = ["--ops-per-sec", "100000", "--burst", "100000"];

/// Four members send `per_sender` messages each, as fast as acks come back.
async fn spawn_senders(
    server: &Server,
    group: u64,
    per_sender: usize,
    tag: &str,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut senders = Vec::new();
    for person in 3..=6 {
        let (mut c, _) = server.client(&demo_phone(1, person)).await;
        let tag = tag.to_string();
        senders.push(tokio::spawn(async move {
            for i in 0..per_sender {
                c.send_text(group, &format!("{tag} {person}-{i}"), &format!("{tag}-{person}-{i}")).await;
            }
        }));
    }
    senders
}

#[tokio::test]
async fn resume_after_absence_while_others_keep_sending() {
    let server = Server::start(&FAST);
    let (mut reader, welcome) = server.client(&demo_phone(1, 2)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let head = reader.subscribe(group, None).await;

    let senders = spawn_senders(&server, group, 250, "resume").await;
    // Read a little live, then vanish mid-stream.
    let mut seqs = Vec::new();
    for _ in 0..100 {
        seqs.push(reader.event().await.seq);
    }
    let last = *seqs.last().unwrap();
    drop(reader);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Come back while the senders are still at it.
    let (mut reader, _) = server.client(&demo_phone(1, 2)).await;
    reader.subscribe(group, Some(last)).await;
    let end = head + 1000;
    while *seqs.last().unwrap() < end {
        seqs.push(reader.event().await.seq);
    }
    for s in senders {
        s.await.unwrap();
    }
    assert_contiguous(&seqs, head + 1, end);
    reader.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_large_gap_is_paged_without_loss() {
    let server = Server::start(&[
        "--ops-per-sec",
        "100000",
        "--burst",
        "100000",
        "--backfill-page",
        "50",
        "--sync",
        "normal",
    ]);
    let (mut reader, welcome) = server.client(&demo_phone(1, 2)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    for s in spawn_senders(&server, group, 150, "gap").await {
        s.await.unwrap();
    }
    // 3 demo messages + 600 sent; the backfill takes 13 pages.
    let senders = spawn_senders(&server, group, 25, "live").await;
    let head = reader.subscribe(group, Some(0)).await;
    assert!(head >= 603);
    let mut seqs = Vec::new();
    while seqs.len() < 703 {
        seqs.push(reader.event().await.seq);
    }
    for s in senders {
        s.await.unwrap();
    }
    assert_contiguous(&seqs, 1, 703);
    reader.expect_silence(Duration::from_millis(300)).await;
}

/// A tiny outbox so that a stalled client overflows quickly; big texts so
/// that the kernel's socket buffers fill too.
const STALL: [&str; 10] = [
    "--ops-per-sec",
    "100000",
    "--burst",
    "100000",
    "--outbox",
    "16",
    "--sync",
    "normal",
    "--max-text",
    "2000",
];

#[tokio::test]
async fn a_client_that_stops_reading_neither_slows_the_group_nor_loses_events() {
    let server = Server::start(&STALL);
    let (mut stalled, welcome) = server.client(&demo_phone(1, 1)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let head = stalled.subscribe(group, None).await;
    let (mut lively, _) = server.client(&demo_phone(1, 2)).await;
    lively.subscribe(group, None).await;

    let big = "村".repeat(1900); // ~5.7 KB per event
    let count = 1200u64; // ~7 MB in all, more than the socket buffers hold
    let mut senders = Vec::new();
    for person in 3..=6 {
        let (mut c, _) = server.client(&demo_phone(1, person)).await;
        let big = big.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..count / 4 {
                c.send_text(group, &format!("{person}-{i} {big}"), &format!("slow-{person}-{i}")).await;
            }
        }));
    }
    // The lively member gets everything live while the other reads nothing.
    let mut lively_seqs = Vec::new();
    for _ in 0..count {
        lively_seqs.push(lively.event().await.seq);
    }
    for s in senders {
        s.await.unwrap();
    }
    assert_contiguous(&lively_seqs, head + 1, head + count);

    let (_, metrics) = http(server.addr, "GET", "/metrics", None).await;
    let overflows: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("villagehub_outbox_overflows_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(overflows > 0, "the stalled client's outbox never overflowed; the test proves nothing");
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    eprintln!("server RSS after the stall: {rss_kb} kB");
    assert!(rss_kb < 64 * 1024, "server RSS {rss_kb} kB: memory is not bounded");

    // Now the stalled client reads: everything, once, in order.
    let mut stalled_seqs = Vec::new();
    for _ in 0..count {
        stalled_seqs.push(stalled.event().await.seq);
    }
    assert_contiguous(&stalled_seqs, head + 1, head + count);
    stalled.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn resubscribing_and_unsubscribing() {
    let server = Server::start(&[]);
    let (mut c, welcome) = server.client(&demo_phone(2, 3)).await;
    let group = group_named(&welcome, "宝月尚园").id;
    let head = c.subscribe(group, Some(0)).await;
    let first: Vec<u64> = [c.event().await.seq, c.event().await.seq, c.event().await.seq].into();
    assert_contiguous(&first, 1, head);
    // Subscribing again with an older since replays from there.
    c.subscribe(group, Some(1)).await;
    assert_eq!(c.event().await.seq, 2);
    assert_eq!(c.event().await.seq, 3);
    // A since beyond the head is treated as the head.
    assert_eq!(c.subscribe(group, Some(10_000)).await, head);
    c.expect_silence(Duration::from_millis(200)).await;

    let id = c.next_id();
    c.send_json(&json!({"op": "unsubscribe", "id": id, "group": group})).await;
    assert!(matches!(c.reply(id).await, protocol::ServerFrame::Unsubscribed { .. }));
    let (mut other, _) = server.client(&demo_phone(2, 4)).await;
    other.send_text(group, "after unsubscribe", "u-1").await;
    c.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_client_that_takes_nothing_for_the_slow_timeout_is_closed_and_resumes_without_loss() {
    let mut flags = STALL.to_vec();
    flags.extend(["--slow-timeout", "2"]);
    let server = Server::start(&flags);
    let (mut stalled, welcome) = server.client(&demo_phone(1, 1)).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let head = stalled.subscribe(group, None).await;
    let big = "村".repeat(1900);
    let count = 1200u64; // ~7 MB: more than the socket buffers hold
    let (mut sender, _) = server.client(&demo_phone(1, 3)).await;
    for i in 0..count {
        sender.send_text(group, &format!("{i} {big}"), &format!("s-{i}")).await;
    }
    // Taking nothing for longer than the slow timeout…
    tokio::time::sleep(Duration::from_secs(4)).await;
    // …the connection is closed (4008, or cut if even the close frame does
    // not fit) after what was already in the buffers.
    let mut seqs = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, stalled.ws.next()).await.expect("the connection stays open") {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()).unwrap() {
                ServerFrame::Event(event) => seqs.push(event.seq),
                // The secretary hears of the spike these sends make.
                ServerFrame::Warning(_) => {}
                other => panic!("unexpected {other:?}"),
            },
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(4008));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!((seqs.len() as u64) < count, "all {count} events fitted: the test proves nothing");
    // Resuming from the last event read gives the rest, once, in order.
    let last = seqs.last().copied().unwrap_or(head);
    let (mut resumed, _) = server.client(&demo_phone(1, 1)).await;
    resumed.subscribe(group, Some(last)).await;
    for _ in last..head + count {
        seqs.push(resumed.event().await.seq);
    }
    assert_contiguous(&seqs, head + 1, head + count);
    resumed.expect_silence(Duration::from_millis(300)).await;
}
