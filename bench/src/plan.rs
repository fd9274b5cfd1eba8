//! What the coordinator tells a worker (its plan, then commands) and what a
//! worker reports back. Between processes these travel as JSON lines: the
//! plan and commands on the worker's stdin, reports on its stdout.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Which server a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// villagehub, through the real protocol (hello, subscribe, send).
    Ours,
    /// The ws@8 room server in `bench/peers/`, in raw relay mode: the
    /// generator sends the same event JSON villagehub would push and the
    /// peer relays it to the room.
    Peer,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::Peer => "peer",
        }
    }
}

/// Everything one worker process needs: the first line on its stdin.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerPlan {
    pub worker: usize,
    pub target: Target,
    /// ours: `ws://HOST:PORT/ws`; peer: `ws://HOST:PORT` (the worker
    /// appends `/room/GROUP`).
    pub url: String,
    /// Local address to bind before connecting when the connection names
    /// none.
    pub source_ip: Option<Ipv4Addr>,
    pub conns: Vec<ConnPlan>,
    /// Length of each message text in bytes (the send timestamp included).
    pub text_bytes: usize,
    /// Handshakes (TCP + WebSocket + hello + subscribe) in flight at once.
    pub connect_concurrency: usize,
    /// Decode every frame with `protocol::ServerFrame` (slower, stricter)
    /// instead of only the fields the measures need.
    pub strict: bool,
}

/// One synthetic member's connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnPlan {
    pub group: u64,
    pub account: u64,
    /// Bench token from `villagehub bench-seed` (unused for the peer).
    pub token: String,
    /// Local address to bind before connecting: connections are spread
    /// over 127.0.0.2, 127.0.0.3, … so that no address runs short of
    /// ephemeral ports or exceeds the server's per-address connection limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<Ipv4Addr>,
    /// The node this member connects to (`ws://HOST:PORT/ws`) when it is
    /// not the worker's `url`: in the cluster scenario members are spread
    /// over the nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Subscribe to `group` and check every event it pushes.
    pub subscribe: bool,
    /// Post to `group` on a schedule.
    pub send: Option<SendPlan>,
}

/// When a sender posts: at `start + phase_us + k * period_us` until the end
/// of the run, with at most `window` sends waiting for their ack (ours) —
/// `period_us == 0` means "as fast as the window allows" (ingest).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SendPlan {
    pub period_us: u64,
    pub phase_us: u64,
    pub window: usize,
}

/// Coordinator → worker, after the plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Cmd {
    /// Senders start at `at_ns` (CLOCK_REALTIME) and stop `duration_ms`
    /// later; when every sender of the worker has its acks, the worker
    /// reports `send_done`.
    Start { at_ns: i64, duration_ms: u64 },
    /// Reconnect storm: every connection drops its socket at once,
    /// reconnects and resubscribes with `since` = its last seq.
    Drop,
    /// The run is over: every subscriber waits until it has seen
    /// `final_seq[group]` (or the timeout), then the worker reports `result`.
    Drain {
        /// (group, seq) pairs: JSON maps with integer keys do not survive
        /// serde's internally tagged enums.
        final_seq: Vec<(u64, u64)>,
        timeout_ms: u64,
    },
    /// Close everything and exit.
    Exit,
}

/// Worker → coordinator.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Report {
    /// Every connection is up (or gave up): the run may start.
    Ready {
        worker: usize,
        connected: u64,
        failed: u64,
        connect_ms: u64,
    },
    /// Once a second while running.
    Progress(Progress),
    /// Every sender has stopped and has its acks. `final_seq` is, per group,
    /// the highest seq a sender of this worker saw acked (ours) or assigned
    /// (peer).
    SendDone {
        worker: usize,
        final_seq: Vec<(u64, u64)>,
    },
    /// After `drop`: every connection has resubscribed (`resubscribed_ms`)
    /// and has caught up to the head it was told (`caught_up_ms`).
    Resumed {
        worker: usize,
        resubscribed_ms: u64,
        caught_up_ms: u64,
        failed: u64,
    },
    Result(Box<WorkerResult>),
    /// The worker cannot go on.
    Fatal {
        worker: usize,
        message: String,
    },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub worker: usize,
    pub connected: u64,
    pub delivered: u64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
}

/// Everything a worker measured. Histograms travel as (value, count) pairs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub worker: usize,
    pub connected: u64,
    pub failed_connects: u64,
    /// Distinct events received with seq in (first head, final seq].
    pub delivered: u64,
    /// Sum over subscribers of `final_seq[group] - first head`.
    pub expected: u64,
    /// Events received twice (seq not above the last one seen).
    pub duplicates: u64,
    /// Seqs skipped inside the stream (an event arrived after a gap).
    pub gaps: u64,
    /// Posts sent / acked (`sent` reply) / acked with `duplicate: true`.
    pub sent: u64,
    pub acked: u64,
    pub duplicate_acks: u64,
    /// Sends scheduled while the ack window was full, sent late.
    pub late_sends: u64,
    pub frames: u64,
    pub bytes: u64,
    /// Error frames by code.
    pub errors: BTreeMap<String, u64>,
    /// Anything the protocol does not allow (unparseable frame, reply to an
    /// unknown id, event of another group, unexpected close, …) by kind.
    pub violations: BTreeMap<String, u64>,
    /// Delivery latency in µs: receive time − send time (CLOCK_REALTIME).
    pub latency: Vec<(u64, u64)>,
    /// Send → `sent` ack latency in µs (ours only).
    pub ack_latency: Vec<(u64, u64)>,
    /// The worker process's own CPU over the whole run, µs.
    pub own_user_us: u64,
    pub own_sys_us: u64,
}
