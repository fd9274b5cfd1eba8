//! Chat in one group: members see each other in one order, outsiders and
//! bad tokens are refused, sends are idempotent, history pages back.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use protocol::{ErrorCode, ServerFrame};
use serde_json::json;

#[tokio::test]
async fn two_members_see_each_others_messages_in_one_order() {
    let server = Server::start(&["--ops-per-sec", "1000", "--burst", "1000"]);
    let (mut a, welcome_a) = server.client(&demo_phone(1, 3)).await;
    let (mut b, welcome_b) = server.client(&demo_phone(1, 4)).await;
    let village = group_named(&welcome_a, "聚源桥村");
    assert_eq!(group_named(&welcome_b, "聚源桥村").id, village.id);
    assert_eq!(welcome_a.groups.len(), 1, "a member sees only their own group");

    let head = a.subscribe(village.id, None).await;
    assert_eq!(b.subscribe(village.id, None).await, head);

    // Both send interleaved; both must see all of it, in the same order.
    for i in 0..20 {
        a.send_text(village.id, &format!("a{i}"), &format!("a-{i}")).await;
        b.send_text(village.id, &format!("b{i}"), &format!("b-{i}")).await;
    }
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..40 {
        let ea = a.event().await;
        let eb = b.event().await;
        seen_a.push((ea.seq, text_of(&ea).to_string(), ea.author.id));
        seen_b.push((eb.seq, text_of(&eb).to_string(), eb.author.id));
    }
    assert_eq!(seen_a, seen_b);
    let seqs: Vec<u64> = seen_a.iter().map(|e| e.0).collect();
    assert_contiguous(&seqs, head + 1, head + 40);
    assert!(seen_a.iter().any(|(_, text, author)| text == "b7" && *author == welcome_b.account.id));
    a.expect_silence(Duration::from_millis(200)).await;

    // Stored history is the same sequence.
    let history = a.full_history(village.id).await;
    let stored: Vec<(u64, String, u64)> = history
        .iter()
        .filter(|e| e.seq > head)
        .map(|e| (e.seq, text_of(e).to_string(), e.author.id))
        .collect();
    assert_eq!(stored, seen_a);
    assert_contiguous(&history.iter().map(|e| e.seq).collect::<Vec<_>>(), 1, head + 40);
}

#[tokio::test]
async fn outsiders_are_refused_and_see_nothing() {
    let server = Server::start(&[]);
    let (mut villager, welcome) = server.client(&demo_phone(1, 3)).await;
    let village = group_named(&welcome, "聚源桥村");
    let (mut outsider, outsider_welcome) = server.client(&demo_phone(3, 3)).await;
    let other = group_named(&outsider_welcome, "南周村");
    villager.subscribe(village.id, None).await;
    outsider.subscribe(other.id, None).await;

    // A member of another village: no subscribe, no history, no send.
    for op in [
        json!({"op": "subscribe", "group": village.id, "since": 0}),
        json!({"op": "history", "group": village.id}),
        json!({"op": "send", "group": village.id, "channel": "chat", "body": {"text": "x"}, "client_key": "k"}),
    ] {
        assert_eq!(outsider.expect_error(op).await, ErrorCode::NotFound);
    }
    // A group that does not exist looks the same.
    assert_eq!(
        outsider.expect_error(json!({"op": "subscribe", "group": 999_999})).await,
        ErrorCode::NotFound
    );

    villager.send_text(village.id, "只给本村看", "v-1").await;
    assert_eq!(text_of(&villager.event().await), "只给本村看");
    outsider.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn forged_expired_and_missing_tokens_are_refused() {
    let server = Server::start(&[]);
    let good = server.token(&demo_phone(1, 3)).await;

    let mut c = server.connect().await;
    // Ops before hello.
    assert_eq!(c.expect_error(json!({"op": "subscribe", "group": 4})).await, ErrorCode::Unauthorized);
    // A forged signature.
    let mut forged = good.clone();
    forged.pop();
    forged.push(if good.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(c.expect_error(json!({"op": "hello", "token": forged})).await, ErrorCode::Unauthorized);
    // Signed with another key.
    let other_key = villagehub::auth::TokenKey::new(b"not the key of this server, but long".to_vec());
    let (wrong_key, _) = other_key.issue(9, SystemTime::now(), Duration::from_secs(60));
    assert_eq!(c.expect_error(json!({"op": "hello", "token": wrong_key})).await, ErrorCode::Unauthorized);
    // Expired, signed with the server's own key.
    let key = std::fs::read_to_string(server.data_dir.join("token.key")).unwrap();
    let own_key = villagehub::auth::TokenKey::new(key.trim().as_bytes().to_vec());
    let (expired, _) =
        own_key.issue(9, SystemTime::now() - Duration::from_secs(7200), Duration::from_secs(3600));
    assert_eq!(c.expect_error(json!({"op": "hello", "token": expired})).await, ErrorCode::Unauthorized);
    // A token for an account that does not exist.
    let (ghost, _) = own_key.issue(424_242, SystemTime::now(), Duration::from_secs(60));
    assert_eq!(c.expect_error(json!({"op": "hello", "token": ghost})).await, ErrorCode::Unauthorized);
    // The connection is still usable: the good token works.
    let welcome = c.hello(&good).await;
    assert_eq!(welcome.protocol, protocol::PROTOCOL_VERSION);
    assert_eq!(c.expect_error(json!({"op": "hello", "token": good})).await, ErrorCode::Conflict);

    // Wrong password and unknown phone get the same answer.
    let wrong = server.login(&demo_phone(1, 3), "wrong").await.unwrap_err();
    let unknown = server.login("19999999999", "wrong").await.unwrap_err();
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown);
    // A malformed login body.
    let (status, body) = http(server.addr, "POST", "/api/login", Some("{nope")).await;
    assert_eq!(status, 400);
    assert!(body.contains("bad_request"));
}

#[tokio::test]
async fn a_retried_send_makes_one_event() {
    let server = Server::start(&[]);
    let (mut c, welcome) = server.client(&demo_phone(2, 3)).await;
    let group = group_named(&welcome, "宝月尚园").id;
    let (seq, duplicate) = c.send_text(group, "请问电梯什么时候修好？", "retry-1").await;
    assert!(!duplicate);
    // Same key on the same connection.
    assert_eq!(c.send_text(group, "请问电梯什么时候修好？", "retry-1").await, (seq, true));
    // Same key after a reconnect, even with another text.
    drop(c);
    let (mut c, _) = server.client(&demo_phone(2, 3)).await;
    assert_eq!(c.send_text(group, "changed", "retry-1").await, (seq, true));
    // Another member may use the same key: keys are per account.
    let (mut d, _) = server.client(&demo_phone(2, 4)).await;
    let (other, dup) = d.send_text(group, "同问", "retry-1").await;
    assert!(!dup);
    assert_eq!(other, seq + 1);

    let history = c.full_history(group).await;
    let copies = history.iter().filter(|e| text_of(e) == "请问电梯什么时候修好？").count();
    assert_eq!(copies, 1);
    assert!(history.iter().all(|e| text_of(e) != "changed"));
    assert_contiguous(&history.iter().map(|e| e.seq).collect::<Vec<_>>(), 1, seq + 1);
}

#[tokio::test]
async fn retries_racing_in_one_batch_make_one_event() {
    let server = Server::start(&["--ops-per-sec", "1000", "--burst", "1000"]);
    let token = server.token(&demo_phone(1, 5)).await;
    // Eight connections of one account (the most it may hold) send the same
    // key at once.
    let mut first = server.connect().await;
    let welcome = first.hello(&token).await;
    let group = group_named(&welcome, "聚源桥村").id;
    let mut connections = vec![first];
    for _ in 1..8 {
        let mut c = server.connect().await;
        c.hello(&token).await;
        connections.push(c);
    }
    let mut tasks = Vec::new();
    for mut c in connections {
        tasks.push(tokio::spawn(async move { c.send_text(group, "同一条", "same-key").await }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let seq = results[0].0;
    assert!(results.iter().all(|(s, _)| *s == seq));
    assert_eq!(results.iter().filter(|(_, dup)| !dup).count(), 1);
}

#[tokio::test]
async fn history_pages_back_to_the_first_event() {
    let server = Server::start(&["--ops-per-sec", "1000", "--burst", "1000", "--history-limit", "7"]);
    let (mut c, welcome) = server.client(&demo_phone(3, 4)).await;
    let group = group_named(&welcome, "南周村").id;
    for i in 0..30 {
        c.send_text(group, &format!("m{i}"), &format!("h-{i}")).await;
    }
    match c.request(json!({"op": "history", "group": group, "limit": 500})).await {
        ServerFrame::History { events, more, .. } => {
            assert_eq!(events.len(), 7, "the limit is capped at --history-limit");
            assert!(more);
            assert_eq!(text_of(events.last().unwrap()), "m29");
        }
        other => panic!("{other:?}"),
    }
    match c.request(json!({"op": "history", "group": group, "before": 3})).await {
        ServerFrame::History { events, more, .. } => {
            assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
            assert!(!more);
        }
        other => panic!("{other:?}"),
    }
    let all = c.full_history(group).await;
    assert_contiguous(&all.iter().map(|e| e.seq).collect::<Vec<_>>(), 1, 33);
    assert_eq!(
        c.expect_error(json!({"op": "history", "group": group, "limit": 0})).await,
        ErrorCode::BadRequest
    );
}
