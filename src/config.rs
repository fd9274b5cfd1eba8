//! Server configuration: command-line flags, `VILLAGEHUB_*` environment
//! variables and an optional TOML file, merged in that order of precedence
//! (flag > environment > file > built-in default).
//!
//! Only plain values live here; nothing is opened or started.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Flags of `villagehub serve` (the default command). Every field is
/// optional so that the config file can fill what the command line leaves
/// out; `ServeArgs::resolve` applies the defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is
    /// printed as `villagehub listening on http://ADDR`).
    #[arg(long, env = "VILLAGEHUB_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding the SQLite file and the token key.
    #[arg(long, env = "VILLAGEHUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML file with any of these settings (same names, `_` for `-`).
    #[arg(long, env = "VILLAGEHUB_CONFIG")]
    pub config: Option<PathBuf>,
    /// Create demo data (district, towns, groups, people) if the data
    /// directory is empty, and print the demo logins.
    #[arg(long)]
    pub demo: bool,
    /// Directory of the web client served at `/`.
    #[arg(long, env = "VILLAGEHUB_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Largest accepted text frame in bytes (`too_large` above it; frames
    /// above 16× this close the connection with 1009).
    #[arg(long)]
    pub max_frame: Option<usize>,
    /// Longest chat message in characters.
    #[arg(long)]
    pub max_text: Option<usize>,
    /// Sustained ops per second per connection.
    #[arg(long)]
    pub ops_per_sec: Option<u32>,
    /// Ops a connection may send at once before the rate applies.
    #[arg(long)]
    pub burst: Option<u32>,
    /// Largest `history` page.
    #[arg(long)]
    pub history_limit: Option<u32>,
    /// Events read from the store per backfill page.
    #[arg(long)]
    pub backfill_page: Option<u32>,
    /// Events a connection's outbox holds before it is marked lagging.
    #[arg(long)]
    pub outbox: Option<usize>,
    /// WebSocket read buffer per connection in bytes.
    #[arg(long)]
    pub read_buffer: Option<usize>,
    /// Seconds a new connection has to send a valid `hello`.
    #[arg(long)]
    pub auth_timeout: Option<u64>,
    /// Seconds a connection may refuse to take bytes before it is closed.
    #[arg(long)]
    pub slow_timeout: Option<u64>,
    /// Lifetime of login tokens in seconds.
    #[arg(long)]
    pub token_ttl: Option<u64>,
    /// Most simultaneous connections (default: the open-file limit less a
    /// reserve for the store and logs).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Most WebSocket connections one account may hold at once (0: no
    /// limit).
    #[arg(long)]
    pub max_connections_per_account: Option<usize>,
    /// Most WebSocket connections from one source address (0: no limit).
    /// Behind a load balancer every client shares its address: limit per
    /// client address at the load balancer instead, and set 0 here.
    #[arg(long)]
    pub max_connections_per_ip: Option<usize>,
    /// Origins (scheme://host[:port]) whose pages may open WebSockets here,
    /// besides the server's own origin; repeat the flag or separate with
    /// commas. Clients that send no Origin (not browsers) are let in.
    #[arg(long = "allowed-origin", env = "VILLAGEHUB_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// SQLite synchronous mode: `full` (fsync every commit: an acked send
    /// survives power loss) or `normal` (survives a process crash only).
    #[arg(long)]
    pub sync: Option<SyncMode>,
    /// Key that signs login tokens (≥ 32 characters). Every node of a
    /// cluster needs the same one; without it an embedded node generates
    /// one in the data directory. Prefer the environment to the command line.
    #[arg(long, env = "VILLAGEHUB_TOKEN_KEY", hide_env_values = true)]
    pub token_key: Option<String>,
    /// Cluster mode: the Redis every node of the cluster shares, e.g.
    /// `redis://127.0.0.1:6379/`. Without it the node runs embedded.
    #[arg(long, env = "VILLAGEHUB_REDIS")]
    pub redis: Option<String>,
    /// Events kept per log in Redis (approximately); a node that falls
    /// further behind must be restored from a backup.
    #[arg(long)]
    pub redis_stream_max: Option<u64>,
    /// Early-warning keyword lexicon: one keyword a line (`warnings.rs`).
    #[arg(long, env = "VILLAGEHUB_WARNING_LEXICON")]
    pub warning_lexicon: Option<PathBuf>,
    /// Spike warnings: the window whose chat messages are counted, minutes
    /// (10).
    #[arg(long)]
    pub spike_window_minutes: Option<f64>,
    /// Spike warnings: hours before the window that give a group's
    /// baseline (24).
    #[arg(long)]
    pub spike_baseline_hours: Option<f64>,
    /// Spike warnings: how many times the baseline per window is a spike (5).
    #[arg(long)]
    pub spike_factor: Option<f64>,
    /// Spike warnings: fewest messages in a window that can be a spike (30).
    #[arg(long)]
    pub spike_min_messages: Option<u64>,
    /// Backlog warnings: unanswered overdue requests of a group that raise
    /// one (3).
    #[arg(long)]
    pub backlog_threshold: Option<usize>,
    /// Events kept in the directory log's stream in Redis.
    #[arg(long)]
    pub redis_directory_stream_max: Option<u64>,
    /// Seconds Redis remembers a client key for idempotent retries.
    #[arg(long)]
    pub redis_key_ttl: Option<u64>,
    /// HS256 key (the shared secret) of the external real-name system whose
    /// JWTs are accepted at `hello` besides our own tokens.
    #[arg(long, env = "VILLAGEHUB_EXTERNAL_JWT_HS256_KEY")]
    pub external_jwt_hs256_key: Option<String>,
    /// File with the RS256 public key (PEM, SPKI or PKCS#1) of the external
    /// real-name system.
    #[arg(long)]
    pub external_jwt_rs256_public_key: Option<PathBuf>,
    /// Required `iss` of external JWTs (without it any `iss` is accepted).
    #[arg(long)]
    pub external_jwt_issuer: Option<String>,
    /// Failed logins allowed per phone per 15 minutes (then `rate_limited`).
    #[arg(long)]
    pub login_failures_per_phone: Option<u32>,
    /// Login and register attempts allowed per source address per minute.
    #[arg(long)]
    pub login_attempts_per_address: Option<u32>,
    /// Address of a reverse proxy (repeatable). For requests from it, the
    /// client address used by the login limits is the last address of
    /// `X-Forwarded-For` — otherwise every login behind the proxy would
    /// count against the proxy's one address.
    #[arg(long = "trusted-proxy")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    // --- governance ---
    /// Hours within which a request must get its first response (15).
    #[arg(long)]
    pub first_response_hours: Option<f64>,
    /// Hours after the first response fell due before an unanswered request
    /// is escalated to the town automatically (9).
    #[arg(long)]
    pub escalate_after_hours: Option<f64>,
    /// How often the deadline sweeper runs, milliseconds (1000).
    #[arg(long)]
    pub sweep_interval_ms: Option<u64>,
    /// Tests only: enable `POST /api/test/clock` to move the governance
    /// clock forward.
    #[arg(long)]
    pub test_clock: bool,
    // --- images ---
    /// Largest picture accepted by `POST /api/images`, in bytes (4 MiB).
    #[arg(long)]
    pub max_image_bytes: Option<usize>,
    /// Pictures one account may upload per minute (30).
    #[arg(long)]
    pub image_uploads_per_minute: Option<u32>,
    /// Cluster mode: seconds a picture stays in Redis for the other nodes
    /// to fetch (7 days); each node keeps its own copy for good.
    #[arg(long)]
    pub redis_image_ttl: Option<u64>,
    // --- end images ---
    // --- government api ---
    /// Requests per minute each API key of the government API may make on
    /// one node (then `429`).
    #[arg(long)]
    pub api_requests_per_minute: Option<u32>,
    // --- end government api ---
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Full,
    Normal,
}

/// The same settings as read from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    web_dir: Option<PathBuf>,
    max_frame: Option<usize>,
    max_text: Option<usize>,
    ops_per_sec: Option<u32>,
    burst: Option<u32>,
    history_limit: Option<u32>,
    backfill_page: Option<u32>,
    outbox: Option<usize>,
    read_buffer: Option<usize>,
    auth_timeout: Option<u64>,
    slow_timeout: Option<u64>,
    token_ttl: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_account: Option<usize>,
    max_connections_per_ip: Option<usize>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    sync: Option<SyncMode>,
    redis: Option<String>,
    redis_stream_max: Option<u64>,
    redis_directory_stream_max: Option<u64>,
    redis_key_ttl: Option<u64>,
    /// Token signing key (at least 32 characters). Without it a random key
    /// is generated once and kept in the data directory.
    token_key: Option<String>,
    external_jwt_hs256_key: Option<String>,
    /// The PEM text itself (the flag takes a file).
    external_jwt_rs256_public_key_pem: Option<String>,
    external_jwt_issuer: Option<String>,
    login_failures_per_phone: Option<u32>,
    login_attempts_per_address: Option<u32>,
    trusted_proxies: Option<Vec<std::net::IpAddr>>,
    max_image_bytes: Option<usize>,
    image_uploads_per_minute: Option<u32>,
    redis_image_ttl: Option<u64>,
    api_requests_per_minute: Option<u32>,
}

/// The resolved configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub web_dir: PathBuf,
    pub demo: bool,
    pub limits: Limits,
    pub token_ttl: Duration,
    pub token_key: Option<String>,
    pub max_connections: usize,
    pub max_connections_per_account: usize,
    pub max_connections_per_ip: usize,
    pub allowed_origins: Vec<String>,
    pub sync: SyncMode,
    pub redis: Option<crate::cluster::RedisConfig>,
    /// External tokens and login limits.
    pub auth: AuthConfig,
    /// Request deadlines and the sweeper (`governance`).
    pub governance: crate::governance::GovernanceConfig,
    /// Picture uploads (`images`).
    pub images: crate::images::ImagesConfig,
    /// Requests per minute per API key (`gov_api`).
    pub api_requests_per_minute: u32,
    /// Spike and backlog thresholds of the early warnings.
    pub warnings: crate::warnings::WarningConfig,
}

/// Settings of `external.rs` and `limiter.rs`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub external_hs256_key: Option<String>,
    pub external_rs256_public_key_pem: Option<String>,
    pub external_issuer: Option<String>,
    pub login_failures_per_phone: u32,
    pub login_attempts_per_address: u32,
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            external_hs256_key: None,
            external_rs256_public_key_pem: None,
            external_issuer: None,
            login_failures_per_phone: 5,
            login_attempts_per_address: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Per-connection limits; announced to clients in `welcome`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_frame: usize,
    pub max_text: usize,
    pub ops_per_sec: u32,
    pub burst: u32,
    pub history_limit: u32,
    pub backfill_page: u32,
    pub outbox: usize,
    pub read_buffer: usize,
    pub auth_timeout: Duration,
    pub slow_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: 64 * 1024,
            max_text: 2000,
            ops_per_sec: 20,
            burst: 40,
            history_limit: 200,
            backfill_page: 500,
            outbox: 1024,
            read_buffer: 1024,
            auth_timeout: Duration::from_secs(10),
            slow_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    pub fn to_wire(&self) -> protocol::Limits {
        protocol::Limits {
            max_frame: self.max_frame as u32,
            max_text: self.max_text as u32,
            ops_per_sec: self.ops_per_sec,
            burst: self.burst,
            history_limit: self.history_limit,
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "data";

impl ServeArgs {
    /// Merges flags/env with the config file (if any) and the defaults.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| anyhow::anyhow!("bad config file {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let d = Limits::default();
        let limits = Limits {
            max_frame: self.max_frame.or(file.max_frame).unwrap_or(d.max_frame),
            max_text: self.max_text.or(file.max_text).unwrap_or(d.max_text),
            ops_per_sec: self.ops_per_sec.or(file.ops_per_sec).unwrap_or(d.ops_per_sec),
            burst: self.burst.or(file.burst).unwrap_or(d.burst),
            history_limit: self.history_limit.or(file.history_limit).unwrap_or(d.history_limit),
            backfill_page: self.backfill_page.or(file.backfill_page).unwrap_or(d.backfill_page),
            outbox: self.outbox.or(file.outbox).unwrap_or(d.outbox),
            read_buffer: self.read_buffer.or(file.read_buffer).unwrap_or(d.read_buffer),
            auth_timeout: self
                .auth_timeout
                .or(file.auth_timeout)
                .map(Duration::from_secs)
                .unwrap_or(d.auth_timeout),
            slow_timeout: self
                .slow_timeout
                .or(file.slow_timeout)
                .map(Duration::from_secs)
                .unwrap_or(d.slow_timeout),
        };
        anyhow::ensure!(limits.max_frame >= 1024, "max_frame must be at least 1024");
        anyhow::ensure!(limits.ops_per_sec >= 1 && limits.burst >= 1, "rate limits must be ≥ 1");
        anyhow::ensure!(limits.outbox >= 16, "outbox must be at least 16");
        anyhow::ensure!(limits.backfill_page >= 1 && limits.history_limit >= 1, "pages must be ≥ 1");
        let token_key = self.token_key.or(file.token_key);
        if let Some(key) = &token_key {
            anyhow::ensure!(key.len() >= 32, "token_key must be at least 32 characters");
        }
        let redis = self.redis.or(file.redis);
        anyhow::ensure!(
            redis.is_none() || token_key.is_some(),
            "cluster mode (--redis) needs token_key (config file or VILLAGEHUB_TOKEN_KEY), the same on every node"
        );
        let auth_defaults = AuthConfig::default();
        let rs256_pem = match &self.external_jwt_rs256_public_key {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            ),
            None => file.external_jwt_rs256_public_key_pem,
        };
        let auth = AuthConfig {
            external_hs256_key: self.external_jwt_hs256_key.or(file.external_jwt_hs256_key),
            external_rs256_public_key_pem: rs256_pem,
            external_issuer: self.external_jwt_issuer.or(file.external_jwt_issuer),
            login_failures_per_phone: self
                .login_failures_per_phone
                .or(file.login_failures_per_phone)
                .unwrap_or(auth_defaults.login_failures_per_phone),
            login_attempts_per_address: self
                .login_attempts_per_address
                .or(file.login_attempts_per_address)
                .unwrap_or(auth_defaults.login_attempts_per_address),
            trusted_proxies: if self.trusted_proxies.is_empty() {
                file.trusted_proxies.unwrap_or_default()
            } else {
                self.trusted_proxies
            },
        };
        if let Some(key) = &auth.external_hs256_key {
            anyhow::ensure!(key.len() >= 32, "external_jwt_hs256_key must be at least 32 characters");
        }
        if let Some(pem) = &auth.external_rs256_public_key_pem {
            crate::external::parse_rsa_public_pem(pem)?;
        }
        anyhow::ensure!(
            auth.login_failures_per_phone >= 1 && auth.login_attempts_per_address >= 1,
            "login limits must be ≥ 1"
        );
        let hours = |h: f64| (h * 3_600_000.0) as i64;
        let defaults = crate::warnings::WarningConfig::default();
        let warnings = crate::warnings::WarningConfig {
            spike_window_ms: self
                .spike_window_minutes
                .map(|m| (m * 60_000.0) as i64)
                .unwrap_or(defaults.spike_window_ms),
            spike_baseline_ms: self.spike_baseline_hours.map(hours).unwrap_or(defaults.spike_baseline_ms),
            spike_factor: self.spike_factor.unwrap_or(defaults.spike_factor),
            spike_min_messages: self.spike_min_messages.unwrap_or(defaults.spike_min_messages),
            backlog_threshold: self.backlog_threshold.unwrap_or(defaults.backlog_threshold),
        };
        anyhow::ensure!(
            warnings.spike_window_ms >= 60_000
                && warnings.spike_baseline_ms >= warnings.spike_window_ms
                && warnings.spike_factor > 0.0
                && warnings.backlog_threshold >= 1,
            "spike window ≥ 1 minute, baseline ≥ window, factor > 0, backlog threshold ≥ 1"
        );
        let governance = crate::governance::GovernanceConfig {
            first_response_ms: hours(self.first_response_hours.unwrap_or(15.0)),
            escalate_after_ms: hours(self.escalate_after_hours.unwrap_or(9.0)),
            sweep_every: Duration::from_millis(self.sweep_interval_ms.unwrap_or(1000).max(10)),
            test_clock: self.test_clock,
        };
        anyhow::ensure!(
            governance.first_response_ms > 0 && governance.escalate_after_ms >= 0,
            "--first-response-hours must be > 0 and --escalate-after-hours ≥ 0"
        );
        let image_defaults = crate::images::ImagesConfig::default();
        let images = crate::images::ImagesConfig {
            max_bytes: self.max_image_bytes.or(file.max_image_bytes).unwrap_or(image_defaults.max_bytes),
            uploads_per_minute: self
                .image_uploads_per_minute
                .or(file.image_uploads_per_minute)
                .unwrap_or(image_defaults.uploads_per_minute),
        };
        anyhow::ensure!(
            images.max_bytes >= 1024 && images.uploads_per_minute >= 1,
            "--max-image-bytes must be ≥ 1024 and --image-uploads-per-minute ≥ 1"
        );
        let api_requests_per_minute =
            self.api_requests_per_minute.or(file.api_requests_per_minute).unwrap_or(600);
        anyhow::ensure!(api_requests_per_minute >= 1, "api_requests_per_minute must be ≥ 1");
        Ok(Config {
            images,
            api_requests_per_minute,
            warnings,
            governance,
            auth,
            listen: self.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().unwrap()),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            web_dir: self.web_dir.or(file.web_dir).unwrap_or_else(default_web_dir),
            demo: self.demo,
            limits,
            token_ttl: Duration::from_secs(self.token_ttl.or(file.token_ttl).unwrap_or(86_400)),
            token_key,
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or_else(default_max_connections),
            max_connections_per_account: self
                .max_connections_per_account
                .or(file.max_connections_per_account)
                .unwrap_or(8),
            max_connections_per_ip: self
                .max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(2000),
            allowed_origins: if self.allowed_origins.is_empty() {
                file.allowed_origins
            } else {
                self.allowed_origins
            }
            .into_iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect(),
            sync: self.sync.or(file.sync).unwrap_or(SyncMode::Full),
            redis: redis.map(|url| crate::cluster::RedisConfig {
                url,
                stream_max: self.redis_stream_max.or(file.redis_stream_max).unwrap_or(1_000_000),
                directory_stream_max: self
                    .redis_directory_stream_max
                    .or(file.redis_directory_stream_max)
                    .unwrap_or(10_000_000),
                key_ttl: self.redis_key_ttl.or(file.redis_key_ttl).unwrap_or(7 * 86_400),
                image_ttl: self.redis_image_ttl.or(file.redis_image_ttl).unwrap_or(7 * 86_400).max(1),
            }),
        })
    }
}

/// `client-web/` next to the binary's source tree when run from a checkout,
/// otherwise `client-web/` in the working directory.
fn default_web_dir() -> PathBuf {
    let in_checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("client-web");
    if in_checkout.is_dir() {
        in_checkout
    } else {
        PathBuf::from("client-web")
    }
}

/// The soft open-file limit less a reserve for SQLite, the listener and
/// logs, so that the server refuses connections itself instead of failing
/// `accept` with EMFILE.
fn default_max_connections() -> usize {
    const RESERVE: usize = 64;
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<usize>().ok()))
        })
        .unwrap_or(1024);
    soft.saturating_sub(RESERVE).max(16)
}
