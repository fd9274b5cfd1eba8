//! One WebSocket connection: framing, authentication, the per-connection
//! rate limit, its subscriptions and its outbox.
//!
//! Delivery rule (invariant 2): each subscription remembers `last`, the last
//! seq it delivered. An event from the outbox is written only if its seq is
//! exactly `last + 1`; an older one is a duplicate and dropped; a newer one
//! means something was missed (outbox overflow, or backfill still running),
//! so the subscription is marked `behind` and the missing events are read
//! from the store, page by page, before live events are taken again. The
//! fan-out registers a subscriber *before* the store is read, and publishes
//! only committed events, so every event is either in the store read or in
//! the outbox — never neither.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use protocol::{close, ClientOp, ErrorCode, Id, Seq, ServerFrame};

use crate::fanout::{Delivery, Subscriber};
use crate::hub::{Account, Hub, OpError, Slot, SlotKey};
use crate::log::Appended;
use crate::presence::{Notice, NOTICE_QUEUE};
use crate::wire;

pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Server-initiated WebSocket ping interval, and how long a connection may
/// stay silent (no frame, no pong) before it is considered dead.
const PING_EVERY: Duration = Duration::from_secs(30);
const SILENT_LIMIT: Duration = Duration::from_secs(90);

/// Outbox events written per wake-up before the socket is flushed, so one
/// busy connection cannot monopolise its task's turn.
const DRAIN_MAX: usize = 256;

/// Refused ops in a row (beyond `burst`) after which the connection is
/// closed as a flood (4029).
const FLOOD_FACTOR: u32 = 4;

/// Why a session ended; for logs.
#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug, in the log line
enum End {
    PeerClosed,
    Closed(u16),
    Io(String),
}

struct Subscription {
    group: Id,
    /// Last seq delivered to the client.
    last: Seq,
    /// Events after `last` must be read from the store before live ones.
    behind: bool,
    /// Reads hidden messages with their text (cadres, officers); members
    /// read the redacted frame. Refreshed when the directory changes.
    moderator: bool,
}

/// Token bucket: `rate` ops per second, at most `burst` at once.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        Bucket { tokens: burst as f64, rate: rate as f64, burst: burst as f64, at: Instant::now() }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Session {
    hub: Arc<Hub>,
    conn: u64,
    peer: SocketAddr,
    account: Option<Account>,
    /// This connection's place in the per-account limit.
    _account_slot: Option<Slot>,
    subs: Vec<Subscription>,
    /// This connection's entry in the fan-out (holds the outbox sender).
    me: Arc<Subscriber>,
    bucket: Bucket,
    /// Ops refused by the rate limit since the last accepted one.
    strikes: u32,
    last_heard: Instant,
    /// Registered with `fanout.accounts` at `hello`: directory notices for
    /// this account (bounded, see `presence::NOTICE_QUEUE`).
    notice_tx: mpsc::Sender<Notice>,
}

/// Runs one connection to its end.
pub async fn run(hub: Arc<Hub>, mut ws: Ws, peer: SocketAddr, mut shutdown: watch::Receiver<bool>) {
    let conn = hub.next_conn_id();
    let limits = hub.config.limits.clone();
    let (tx, mut outbox) = mpsc::channel(limits.outbox);
    let me = Arc::new(Subscriber { conn, outbox: tx, lagged: AtomicBool::new(false) });
    let (notice_tx, mut notices) = mpsc::channel(NOTICE_QUEUE);
    let mut session = Session {
        notice_tx,
        hub: hub.clone(),
        conn,
        peer,
        account: None,
        _account_slot: None,
        subs: Vec::new(),
        me,
        bucket: Bucket::new(limits.ops_per_sec, limits.burst),
        strikes: 0,
        last_heard: Instant::now(),
    };
    hub.metrics.connections.fetch_add(1, Ordering::Relaxed);
    hub.metrics.connections_total.fetch_add(1, Ordering::Relaxed);

    let end = session.serve(&mut ws, &mut outbox, &mut notices, &mut shutdown).await;
    tracing::debug!(conn, peer = %session.peer, ?end, "connection ended");

    for sub in &session.subs {
        hub.fanout.unsubscribe(sub.group, conn);
    }
    if let Some(account) = &session.account {
        hub.fanout.accounts.unregister(account.id, conn);
    }
    hub.log.applied().live.forget(conn);
    hub.presence.forget(conn, None);
    hub.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

impl Session {
    async fn serve(
        &mut self,
        ws: &mut Ws,
        outbox: &mut mpsc::Receiver<Arc<Delivery>>,
        notices: &mut mpsc::Receiver<Notice>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let auth_deadline = tokio::time::sleep(self.hub.config.limits.auth_timeout);
        tokio::pin!(auth_deadline);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        if *shutdown.borrow_and_update() {
            return self.close(ws, close::GOING_AWAY, "server is shutting down").await;
        }
        // One future for the whole connection, not a new one (and a new
        // waiter registration) on every wake-up.
        let shutting_down = shutdown.changed();
        tokio::pin!(shutting_down);
        loop {
            if self.subs.iter().any(|s| s.behind) {
                if let Err(end) = Box::pin(self.catch_up(ws)).await {
                    return end;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = &mut shutting_down => {
                    // Deliver what is already committed and queued, then ask
                    // the client to reconnect (elsewhere) and resume.
                    while let Ok(delivery) = outbox.try_recv() {
                        if self.write_delivery(ws, &delivery).await.is_err() {
                            break;
                        }
                    }
                    return self.close(ws, close::GOING_AWAY, "server is shutting down").await;
                }
                Some(delivery) = outbox.recv() => {
                    if let Err(end) = self.drain_outbox(ws, outbox, delivery).await {
                        return end;
                    }
                }
                Some(notice) = notices.recv() => {
                    if let Err(end) = Box::pin(self.on_notice(ws, notice)).await {
                        return end;
                    }
                }
                frame = ws.next() => {
                    let result = match frame {
                        None => return End::PeerClosed,
                        // Boxed: an op's future (a store read, an append) is large,
                        // and an idle connection should not carry its space.
                        Some(Ok(message)) => Box::pin(self.on_message(ws, message)).await,
                        Some(Err(WsError::Capacity(e))) => {
                            return self.close(ws, close::MESSAGE_TOO_BIG, &format!("frame too large: {e}")).await;
                        }
                        Some(Err(e)) => return End::Io(e.to_string()),
                    };
                    if let Err(end) = result {
                        return end;
                    }
                }
                _ = &mut auth_deadline, if self.account.is_none() => {
                    return self.close(ws, close::AUTH_TIMEOUT, "no valid hello in time").await;
                }
                _ = ping.tick() => {
                    if self.last_heard.elapsed() > SILENT_LIMIT {
                        return End::Io("silent for too long".into());
                    }
                    if let Err(end) = self.write(ws, Message::Ping(Default::default())).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Writes the outbox's ready events (coalesced into few socket writes),
    /// giving up on a client that takes none of them for `--slow-timeout`.
    /// One timer for the whole drain, not one per event and one per flush.
    async fn drain_outbox(
        &mut self,
        ws: &mut Ws,
        outbox: &mut mpsc::Receiver<Arc<Delivery>>,
        first: Arc<Delivery>,
    ) -> Result<(), End> {
        let slow = self.hub.config.limits.slow_timeout;
        match tokio::time::timeout(slow, self.drain_untimed(ws, outbox, first)).await {
            Ok(result) => result,
            Err(_) => Err(End::Closed(close::TOO_SLOW)),
        }
    }

    async fn drain_untimed(
        &mut self,
        ws: &mut Ws,
        outbox: &mut mpsc::Receiver<Arc<Delivery>>,
        first: Arc<Delivery>,
    ) -> Result<(), End> {
        if let Some(message) = self.offer_message(&first) {
            ws.feed(message).await.map_err(io_end)?;
        }
        for _ in 1..DRAIN_MAX {
            match outbox.try_recv() {
                Ok(delivery) => {
                    if let Some(message) = self.offer_message(&delivery) {
                        ws.feed(message).await.map_err(io_end)?;
                    }
                }
                Err(_) => break,
            }
        }
        if self.me.lagged.swap(false, Ordering::AcqRel) {
            for sub in &mut self.subs {
                sub.behind = true;
            }
        }
        ws.flush().await.map_err(io_end)
    }

    /// Applies the delivery rule to one live event (see the module doc):
    /// the message to write, if any.
    fn offer_message(&mut self, delivery: &Delivery) -> Option<Message> {
        let sub = self.subs.iter_mut().find(|s| s.group == delivery.group)?; // unsubscribed meanwhile
        if sub.behind || delivery.seq <= sub.last {
            return None;
        }
        if delivery.seq != sub.last + 1 {
            sub.behind = true;
            return None;
        }
        sub.last = delivery.seq;
        Some(Message::Text(delivery.frame.clone()))
    }

    /// `offer_message`, written (with the usual timeout).
    async fn offer(&mut self, ws: &mut Ws, delivery: &Delivery) -> Result<(), End> {
        match self.offer_message(delivery) {
            Some(message) => self.feed(ws, message).await,
            None => Ok(()),
        }
    }

    async fn write_delivery(&mut self, ws: &mut Ws, delivery: &Delivery) -> Result<(), End> {
        self.offer(ws, delivery).await?;
        self.flush(ws).await
    }

    /// Reads one page of missed events for the first subscription that is
    /// behind, and writes it.
    async fn catch_up(&mut self, ws: &mut Ws) -> Result<(), End> {
        let Some(index) = self.subs.iter().position(|s| s.behind) else { return Ok(()) };
        let (group, after) = (self.subs[index].group, self.subs[index].last);
        let moderator = self.subs[index].moderator;
        let page = self.hub.config.limits.backfill_page as usize;
        let events = match self.hub.events_after(group, after, moderator).await {
            Ok(events) => events,
            Err(e) => {
                // The store cannot be read now: tell the client and drop the
                // subscription; it resubscribes with `since` later.
                self.subs.remove(index);
                self.hub.fanout.unsubscribe(group, self.conn);
                self.send_frame(ws, &ServerFrame::Error { id: None, code: e.code, message: e.message })
                    .await?;
                return Ok(());
            }
        };
        let complete = events.len() < page;
        // The subscription may have been dropped while the page was read.
        let Some(sub) = self.subs.iter_mut().find(|s| s.group == group) else { return Ok(()) };
        if sub.last != after {
            return Ok(()); // re-subscribed meanwhile with another `since`
        }
        for event in events {
            debug_assert_eq!(event.seq, sub.last + 1, "the store has a gap");
            sub.last = event.seq;
            feed(ws, Message::Text(Utf8Bytes::from(event.frame)), self.hub.config.limits.slow_timeout)
                .await?;
        }
        if complete {
            sub.behind = false;
        }
        self.flush(ws).await
    }

    async fn on_message(&mut self, ws: &mut Ws, message: Message) -> Result<(), End> {
        self.last_heard = Instant::now();
        match message {
            Message::Text(text) => {
                // Every frame costs a token, malformed ones too.
                if !self.rate_ok() {
                    return match self.rate_limited_reply(Some(&text)) {
                        Some(reply) => self.send_frame(ws, &reply).await,
                        None => Err(self.close(ws, close::FLOOD, "flooding").await),
                    };
                }
                let reply = match wire::parse_op(text.as_str(), self.hub.config.limits.max_frame) {
                    Err(error) => error_frame(error.0, error.1),
                    Ok(op) => {
                        self.hub.metrics.ops.fetch_add(1, Ordering::Relaxed);
                        let id = op.id();
                        match self.dispatch(op).await {
                            Ok(Reply::Frame(frame)) => frame,
                            Ok(Reply::Raw(json)) => return self.write(ws, Message::Text(json.into())).await,
                            Err(e) => error_frame(Some(id), e),
                        }
                    }
                };
                if let ServerFrame::Error { .. } = reply {
                    self.hub.metrics.errors.fetch_add(1, Ordering::Relaxed);
                }
                self.send_frame(ws, &reply).await
            }
            Message::Binary(_) => {
                let reply = if self.rate_ok() {
                    error_frame(None, OpError::bad_request("binary frames are not accepted; send JSON text"))
                } else {
                    match self.rate_limited_reply(None) {
                        Some(reply) => reply,
                        None => return Err(self.close(ws, close::FLOOD, "flooding").await),
                    }
                };
                self.send_frame(ws, &reply).await
            }
            // tungstenite queues the pong itself; flushing sends it.
            Message::Ping(_) => self.flush(ws).await,
            Message::Pong(_) | Message::Frame(_) => Ok(()),
            Message::Close(_) => Err(End::PeerClosed),
        }
    }

    fn rate_ok(&mut self) -> bool {
        if self.bucket.take() {
            self.strikes = 0;
            true
        } else {
            false
        }
    }

    /// The `rate_limited` reply, or None for a connection that keeps on
    /// flooding regardless and is to be closed.
    fn rate_limited_reply(&mut self, text: Option<&Utf8Bytes>) -> Option<ServerFrame> {
        self.strikes += 1;
        if self.strikes > FLOOD_FACTOR * self.hub.config.limits.burst {
            return None;
        }
        let id = text.and_then(|t| wire::probe_id(t.as_str()));
        let message = format!("more than {} ops per second", self.hub.config.limits.ops_per_sec);
        Some(error_frame(id, OpError::new(ErrorCode::RateLimited, message)))
    }

    /// Runs one op and returns its reply (or its error reply).
    async fn dispatch(&mut self, op: ClientOp) -> Result<Reply, OpError> {
        let account = match (&op, &self.account) {
            (ClientOp::Hello { id, token, .. }, None) => {
                wire::validate_op(&op, &self.hub.config.limits)?;
                let (account, welcome) = self.hub.authenticate(token, *id)?;
                let limit = self.hub.config.max_connections_per_account;
                let slot = self.hub.claim_slot(SlotKey::Account(account.id), limit).ok_or_else(|| {
                    OpError::new(
                        ErrorCode::RateLimited,
                        format!("this account already has {limit} connections open; close one first"),
                    )
                })?;
                self._account_slot = Some(slot);
                self.hub.fanout.accounts.register(account.id, self.conn, self.notice_tx.clone());
                self.account = Some(account);
                return Ok(Reply::Frame(ServerFrame::Welcome(welcome)));
            }
            (ClientOp::Hello { .. }, Some(_)) => {
                return Err(OpError::new(ErrorCode::Conflict, "already authenticated"));
            }
            (_, None) => {
                return Err(OpError::new(ErrorCode::Unauthorized, "send hello with a valid token first"));
            }
            (_, Some(account)) => account.clone(),
        };
        wire::validate_op(&op, &self.hub.config.limits)?;
        let frame = match op {
            ClientOp::Hello { .. } => unreachable!("handled above"),
            ClientOp::Subscribe { id, group, since } => {
                let head = self.subscribe(&account, group, since)?;
                ServerFrame::Subscribed { id, group, head }
            }
            ClientOp::Unsubscribe { id, group } => {
                if let Some(i) = self.subs.iter().position(|s| s.group == group) {
                    self.subs.remove(i);
                    self.hub.fanout.unsubscribe(group, self.conn);
                }
                self.hub.presence.forget(self.conn, Some(group));
                ServerFrame::Unsubscribed { id, group }
            }
            ClientOp::Send { id, group, channel: _, body, client_key } => {
                match self.hub.send_message(&account, group, body, client_key).await? {
                    Appended::Group { group, seq, duplicate } => {
                        ServerFrame::Sent { id, group, seq, duplicate }
                    }
                    Appended::Directory { .. } => unreachable!("chat sends append to a group"),
                }
            }
            ClientOp::History { id, group, before, limit } => {
                let (events, more) = self.hub.history(&account, group, before, limit).await?;
                // The stored frames are spliced in as they are: never parsed
                // and re-encoded.
                let mut json =
                    format!(r#"{{"type":"history","id":{id},"group":{group},"more":{more},"events":["#);
                for (i, event) in events.iter().enumerate() {
                    if i > 0 {
                        json.push(',');
                    }
                    json.push_str(&event.frame);
                }
                json.push_str("]}");
                return Ok(Reply::Raw(json));
            }
            ClientOp::Approve { id, group, account: applicant } => {
                let seq = self.hub.approve(&account, group, applicant).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            ClientOp::Reject { id, group, account: applicant, reason } => {
                let seq = self.hub.reject(&account, group, applicant, reason).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            ClientOp::Applications { id, group } => {
                let applications = self.hub.applications(&account, group)?;
                ServerFrame::Applications { id, group, applications }
            }
            ClientOp::Hide { id, group, seq, reason } => {
                let seq = self.hub.hide(&account, group, seq, reason).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            ClientOp::Mute { id, group, account: member, until, reason } => {
                let seq = self.hub.mute(&account, group, member, until, reason).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            ClientOp::Remove { id, group, account: member, reason } => {
                let seq = self.hub.remove(&account, group, member, reason).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            ClientOp::SetRole { id, group, account: member, role, reason } => {
                let seq = self.hub.set_role(&account, group, member, role, reason).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            ClientOp::Transfer { id, group, account: member, reason } => {
                let seq = self.hub.transfer(&account, group, member, reason).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            ClientOp::Audit { id, group, before, limit } => {
                let (entries, more) = self.hub.audit(&account, group, before, limit).await?;
                ServerFrame::Audit { id, group, entries, more }
            }
            ClientOp::Logout { id } => {
                let seq = self.hub.logout(account.id).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            ClientOp::ChangePassword { id, old, new } => {
                let seq = self.hub.change_password(&account, old, new).await?;
                ServerFrame::Done { id, seq: Some(seq) }
            }
            // --- governance ---
            ClientOp::Post { id, group, event, client_key } => {
                crate::governance::post(&self.hub, &account, id, group, event, client_key).await?
            }
            ClientOp::Unread { id, group, notice } => {
                crate::governance::notices::unread(&self.hub, &account, id, group, notice).await?
            }
            ClientOp::VerifyDisclosures { id, group } => {
                crate::governance::notices::verify_op(&self.hub, &account, id, group).await?
            }
            ClientOp::Figures { id, scope, of } => {
                crate::governance::requests::figures_op(&self.hub, &account, id, scope, of).await?
            }
            ClientOp::Likes { id, group, targets } => {
                crate::governance::likes::likes_op(&self.hub, &account, id, group, targets).await?
            }
            // --- broadcast, statistics, needs, presence ---
            ClientOp::Broadcast { id, scope, title, text } => {
                let (broadcast, groups) =
                    crate::broadcast::broadcast(&self.hub, &account, &scope, title, text, None).await?;
                ServerFrame::BroadcastSent { id, broadcast, groups }
            }
            ClientOp::Stats { id, scope, from, to } => ServerFrame::Stats {
                id,
                stats: crate::stats::stats(&self.hub, &account, &scope, from, to).await?,
            },
            ClientOp::Presence { id, group } => {
                let conn = (self.conn, self.notice_tx.clone());
                crate::presence::online(&self.hub, &account, conn, id, group).await?
            }
            ClientOp::Needs { id, scope, from, to } => {
                let (scope, from, to, needs) =
                    crate::stats::needs(&self.hub, &account, &scope, from, to).await?;
                ServerFrame::Needs { id, scope, from, to, needs }
            }
            ClientOp::Warnings { id, scope, before, limit } => {
                crate::warnings::list(&self.hub, &account, id, &scope, before, limit).await?
            }
            ClientOp::WatchStats { id, scope } => {
                let tx = self.notice_tx.clone();
                crate::live::watch(&self.hub, &account, self.conn, tx, id, &scope).await?
            }
            ClientOp::UnwatchStats { id, scope } => crate::live::unwatch(&self.hub, self.conn, id, &scope)?,
            ClientOp::Escalated { id, scope } => {
                crate::live::escalated(&self.hub, &account, id, &scope).await?
            }
        };
        Ok(Reply::Frame(frame))
    }

    /// A directory change concerning this account was committed.
    async fn on_notice(&mut self, ws: &mut Ws, notice: Notice) -> Result<(), End> {
        let Some(account) = self.account.clone() else { return Ok(()) };
        match notice {
            Notice::Revoked { at } if account.issued_ms < at => {
                Err(self.close(ws, close::REVOKED, "tokens revoked; log in again").await)
            }
            Notice::Revoked { .. } => Ok(()),
            Notice::Recheck => {
                self.recheck(&account);
                Ok(())
            }
            Notice::Membership(notice) => {
                self.recheck(&account);
                self.send_frame(ws, &ServerFrame::Membership(*notice)).await
            }
            Notice::Application(application) => {
                self.send_frame(ws, &ServerFrame::Application(*application)).await
            }
            Notice::Receipts(receipts) => self.send_frame(ws, &ServerFrame::Receipts(*receipts)).await,
            Notice::Warning(warning) => self.send_frame(ws, &ServerFrame::Warning(*warning)).await,
            Notice::Stats(stats) => self.send_frame(ws, &ServerFrame::StatsUpdate { stats: *stats }).await,
            Notice::Presence(presence) => {
                let (group, online) = *presence;
                self.send_frame(ws, &ServerFrame::PresenceUpdate { group, online }).await
            }
        }
    }

    /// Ends subscriptions to groups the account may no longer see, and
    /// refreshes how hidden messages are shown.
    fn recheck(&mut self, account: &Account) {
        let mut ended = Vec::new();
        {
            let dir = self.hub.directory.read().unwrap();
            self.subs.retain_mut(|sub| match dir.sight(account.id, sub.group) {
                Some(sight) => {
                    sub.moderator = sight.sees_hidden();
                    true
                }
                None => {
                    ended.push(sub.group);
                    false
                }
            });
        }
        for group in ended {
            self.hub.fanout.unsubscribe(group, self.conn);
        }
    }

    fn subscribe(&mut self, account: &Account, group: Id, since: Option<Seq>) -> Result<Seq, OpError> {
        let moderator = self.hub.sight(account, group)?.sees_hidden();
        // Register first, read the head under the same lock: every event
        // after `head` reaches the outbox, every event up to it is stored.
        let head = self.hub.fanout.subscribe(group, &self.me);
        let last = since.map(|s| s.min(head)).unwrap_or(head);
        let sub = Subscription { group, last, behind: last < head, moderator };
        match self.subs.iter_mut().find(|s| s.group == group) {
            Some(existing) => *existing = sub,
            None => self.subs.push(sub),
        }
        Ok(head)
    }

    async fn send_frame(&mut self, ws: &mut Ws, frame: &ServerFrame) -> Result<(), End> {
        let json = serde_json::to_string(frame).expect("server frames serialize");
        self.write(ws, Message::Text(json.into())).await
    }

    async fn write(&mut self, ws: &mut Ws, message: Message) -> Result<(), End> {
        self.feed(ws, message).await?;
        self.flush(ws).await
    }

    async fn feed(&self, ws: &mut Ws, message: Message) -> Result<(), End> {
        feed(ws, message, self.hub.config.limits.slow_timeout).await
    }

    /// Flushes, giving up on a client that takes no bytes for
    /// `--slow-timeout`.
    async fn flush(&mut self, ws: &mut Ws) -> Result<(), End> {
        match tokio::time::timeout(self.hub.config.limits.slow_timeout, ws.flush()).await {
            Ok(result) => result.map_err(io_end),
            Err(_) => Err(End::Closed(close::TOO_SLOW)),
        }
    }

    async fn close(&mut self, ws: &mut Ws, code: u16, reason: &str) -> End {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() };
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
        End::Closed(code)
    }
}

/// A reply ready to write: a typed frame, or JSON built by hand (history
/// splices stored frames without parsing them).
// A reply lives for one op and is written at once: boxing the frame would
// cost an allocation per op to save stack bytes nobody keeps.
#[allow(clippy::large_enum_variant)]
enum Reply {
    Frame(ServerFrame),
    Raw(String),
}

/// Queues a frame for writing; tungstenite writes out when its buffer is
/// full, which waits on a client that does not read — for at most
/// `slow_timeout`.
async fn feed(ws: &mut Ws, message: Message, slow_timeout: Duration) -> Result<(), End> {
    match tokio::time::timeout(slow_timeout, ws.feed(message)).await {
        Ok(result) => result.map_err(io_end),
        Err(_) => Err(End::Closed(close::TOO_SLOW)),
    }
}

fn io_end(e: WsError) -> End {
    End::Io(e.to_string())
}

fn error_frame(id: Option<u64>, e: OpError) -> ServerFrame {
    ServerFrame::Error { id, code: e.code, message: e.message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut bucket = Bucket::new(10, 3);
        assert!(bucket.take() && bucket.take() && bucket.take());
        assert!(!bucket.take());
        bucket.at -= Duration::from_millis(200);
        assert!(bucket.take() && bucket.take());
        assert!(!bucket.take());
    }
}
