//! HTTP: the routes of one node. `/api/login`, the WebSocket upgrade at
//! `/ws`, health and metrics, and the web client's files at `/`.
//!
//! The upgrade is answered here (RFC 6455 handshake through hyper's upgrade
//! mechanism) and the socket is handed to tokio-tungstenite with our own
//! configuration — small read buffer, bounded write buffer, frame limits —
//! so per-connection memory is ours to decide.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tower_http::services::ServeDir;

use protocol::{
    AccountInfo, AccountStatus, ApiError, ApiStatus, ErrorCode, LoginRequest, LoginResponse, RegisterRequest,
};

use crate::auth::{hash_password, unix_millis, verify_password};
use crate::directory::{DirectoryChange, DirectoryError};
use crate::hub::{Hub, SlotKey};
use crate::log::LogError;
use crate::server::Peer;
use crate::session;

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// Flips to true on shutdown; every session watches it.
    pub shutdown: watch::Receiver<bool>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/register", post(register))
        .route("/api/logout", post(logout))
        .route("/api/stats", get(crate::stats::http_stats))
        .route("/api/needs", get(crate::stats::http_needs))
        .route("/ws", any(ws_upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::governance::routes(state.hub.config.governance.test_clock))
        .merge(crate::images::routes())
        .merge(crate::gov_api::routes())
        .fallback(web_client)
        .with_state(state)
}

/// The web client's files, as they are. Not its development files
/// (node_modules, tests, package manifests), and with `no-cache` so that a
/// browser revalidates its modules after an upgrade instead of mixing old
/// and new ones.
async fn web_client(State(state): State<AppState>, request: Request) -> Response {
    use tower::ServiceExt;
    let path = request.uri().path();
    let hidden = path.split('/').any(|part| {
        matches!(part, "node_modules" | "tests" | "package.json" | "package-lock.json" | "test.sh")
            || part.starts_with('.')
    });
    if hidden || !matches!(*request.method(), Method::GET | Method::HEAD) {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let files = ServeDir::new(&state.hub.config.web_dir);
    let mut response = match files.oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(infallible) => match infallible {},
    };
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub(crate) fn api_error(code: ErrorCode, message: &str) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ApiError { code, message: message.to_string() };
    (status, axum::Json(body)).into_response()
}

/// A valid argon2 hash of a password nobody has, checked when the phone is
/// unknown so that both failures take the same time.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| crate::auth::hash_password("no account has this password"));

/// `POST /api/login`. Limited per source address and per phone
/// (`limiter.rs`); unknown phone and wrong password get the same answer in
/// the same time.
async fn login(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: LoginRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return api_error(ErrorCode::BadRequest, &format!("expected {{phone, password}}: {e}")),
    };
    let hub = state.hub.clone();
    let phone = request.phone.trim().to_string();
    if !hub.login_limiter.attempt(client_address(&hub, peer, &headers), &phone) {
        return api_error(ErrorCode::RateLimited, "too many login attempts; wait and try again");
    }
    let found = {
        let dir = hub.directory.read().unwrap();
        dir.account_by_phone(&phone)
            .map(|a| (a.id, a.name.clone(), a.password_hash.clone(), dir.people.state(a.id).clone()))
    };
    let Ok(_permit) = hub.password_permits.acquire().await else {
        return api_error(ErrorCode::Unavailable, "server is shutting down");
    };
    let checked = tokio::task::spawn_blocking(move || match found {
        Some((id, name, hash, account_state)) => {
            verify_password(&request.password, &hash).then_some((id, name, account_state))
        }
        None => {
            verify_password(&request.password, &DUMMY_HASH);
            None
        }
    })
    .await
    .ok()
    .flatten();
    match checked {
        Some((_, _, account_state)) if account_state.status == AccountStatus::Disabled => {
            api_error(ErrorCode::Forbidden, "the account is disabled")
        }
        Some((id, name, account_state)) => {
            hub.login_limiter.succeeded(&phone);
            let (token, expires_at) = hub.tokens.issue(id, SystemTime::now(), hub.config.token_ttl);
            let account = AccountInfo { id, name, status: account_state.status, party: account_state.party };
            axum::Json(LoginResponse { token, expires_at, account }).into_response()
        }
        None => {
            hub.login_limiter.failed(&phone);
            api_error(ErrorCode::Unauthorized, "phone or password is wrong")
        }
    }
}

/// The client's address for the login limits: the TCP peer, or — when the
/// peer is a trusted reverse proxy — the last address in `X-Forwarded-For`
/// (the one the proxy itself saw).
fn client_address(hub: &Hub, peer: std::net::SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
    if !hub.config.auth.trusted_proxies.contains(&peer.ip()) {
        return peer.ip();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .next_back()
        .unwrap_or(peer.ip())
}

/// The answer to every well-formed registration, whether or not the phone
/// was already registered: the reply never tells.
fn registration_received() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(ApiStatus {
            status: "pending".into(),
            message: "application received; log in with this phone and password to follow it".into(),
        }),
    )
        .into_response()
}

/// `POST /api/register`: a pending account, approved or rejected by a
/// cadre of the group.
async fn register(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hub = state.hub.clone();
    if !hub.login_limiter.request(client_address(&hub, peer, &headers)) {
        return api_error(ErrorCode::RateLimited, "too many requests; wait and try again");
    }
    let request: RegisterRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(
                ErrorCode::BadRequest,
                &format!(
                    "expected {{name, phone, password, group, household: {{address}} | migrant: true}}: {e}"
                ),
            )
        }
    };
    let phone = request.phone.trim().to_string();
    if !(5..=20).contains(&phone.len()) || !phone.bytes().all(|b| b.is_ascii_digit()) {
        return api_error(ErrorCode::BadRequest, "phone must be 5 to 20 digits");
    }
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 50 {
        return api_error(ErrorCode::BadRequest, "name must be 1 to 50 characters");
    }
    if let Err(e) = crate::hub::check_new_password(&request.password) {
        return api_error(e.code, &e.message);
    }
    let Ok(_permit) = hub.password_permits.acquire().await else {
        return api_error(ErrorCode::Unavailable, "server is shutting down");
    };
    let password = request.password.clone();
    let Ok(password_hash) = tokio::task::spawn_blocking(move || hash_password(&password)).await else {
        return api_error(ErrorCode::Internal, "internal error");
    };
    let change = DirectoryChange::Registered {
        phone,
        name,
        password_hash,
        group: request.group,
        household: request.household.map(|h| h.address),
        migrant: request.migrant,
        at: unix_millis(SystemTime::now()),
    };
    match hub.log.append(crate::log::Append::Directory(change)).await {
        Ok(_) | Err(LogError::Refused(DirectoryError::PhoneTaken)) => registration_received(),
        Err(LogError::Refused(refusal)) => api_error(refusal.code(), &refusal.to_string()),
        Err(LogError::Unavailable(message)) => api_error(ErrorCode::Unavailable, &message),
    }
}

/// `POST /api/logout` with `Authorization: Bearer TOKEN`: revokes every
/// token of the account issued until now and closes its connections.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let account = match state.hub.authenticate(token.trim(), 0) {
        Ok((account, _)) => account,
        Err(e) => return api_error(e.code, &e.message),
    };
    match state.hub.logout(account.id).await {
        Ok(_) => axum::Json(ApiStatus {
            status: "logged_out".into(),
            message: "every token issued until now is revoked".into(),
        })
        .into_response(),
        Err(e) => api_error(e.code, &e.message),
    }
}

/// The account named by `Authorization: Bearer TOKEN`.
pub(crate) fn bearer_account(
    hub: &Hub,
    headers: &HeaderMap,
) -> Result<crate::hub::Account, crate::hub::OpError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    hub.authenticate(token.trim(), 0).map(|(account, _)| account)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if *state.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    let hub = state.hub.clone();
    let store_ok = tokio::task::spawn_blocking(move || hub.store.read(|c| Ok(c.execute_batch("SELECT 1")?)))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    if !store_ok {
        return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response();
    }
    if let Some(cluster) = state.hub.log.cluster() {
        let status = cluster.status();
        let mut problems = Vec::new();
        if !status.live {
            problems.push(format!(
                "not caught up with Redis: {}",
                status.last_error.as_deref().unwrap_or("connecting")
            ));
        }
        problems.extend(status.stale.values().cloned());
        if !problems.is_empty() {
            return (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n").into_response();
        }
    }
    "ready\n".into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    use std::fmt::Write;
    let hub = &state.hub;
    let m = &hub.metrics;
    let log = hub.log.metrics();
    let mut text = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    metric(
        "villagehub_connections",
        "gauge",
        "Open WebSocket connections.",
        m.connections.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "villagehub_connections_total",
        "counter",
        "WebSocket connections accepted.",
        load(&m.connections_total),
    );
    metric(
        "villagehub_connections_refused_total",
        "counter",
        "TCP connections closed at accept (over --max-connections).",
        load(&m.connections_refused),
    );
    metric(
        "villagehub_subscriptions",
        "gauge",
        "Group subscriptions of this node's connections.",
        hub.fanout.subscriptions().to_string(),
    );
    metric("villagehub_ops_total", "counter", "Client ops handled.", load(&m.ops));
    metric("villagehub_op_errors_total", "counter", "Error replies sent.", load(&m.errors));
    metric(
        "villagehub_events_committed_total",
        "counter",
        "Group events committed to this node's store.",
        load(&log.events_committed),
    );
    metric(
        "villagehub_commit_failures_total",
        "counter",
        "Batches whose commit failed (refused as unavailable).",
        load(&log.commit_failures),
    );
    metric(
        "villagehub_deliveries_total",
        "counter",
        "Events queued on subscribers' outboxes.",
        load(&hub.fanout.deliveries),
    );
    metric(
        "villagehub_outbox_overflows_total",
        "counter",
        "Events not queued because an outbox was full (recovered from the store).",
        load(&hub.fanout.overflows),
    );
    let _ = write!(text, "# HELP villagehub_commit_seconds SQLite group-commit latency.\n# TYPE villagehub_commit_seconds histogram\n");
    let mut cumulative = 0;
    for (bound, count) in crate::log::COMMIT_BUCKETS_MICROS.iter().zip(&log.commit_buckets) {
        cumulative += count.load(Ordering::Relaxed);
        let _ =
            writeln!(text, "villagehub_commit_seconds_bucket{{le=\"{}\"}} {cumulative}", *bound as f64 / 1e6);
    }
    let _ =
        writeln!(text, "villagehub_commit_seconds_bucket{{le=\"+Inf\"}} {}", load(&log.batches_committed));
    let _ = writeln!(
        text,
        "villagehub_commit_seconds_sum {}",
        log.commit_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(text, "villagehub_commit_seconds_count {}", load(&log.batches_committed));
    if let Some(cluster) = hub.log.cluster() {
        let status = cluster.status();
        let directory_head = *hub.log.applied().directory_head.borrow();
        let lag = cluster.replication_lag(|log| {
            if log == crate::store::DIRECTORY_LOG {
                directory_head
            } else {
                hub.fanout.head(log)
            }
        });
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        };
        metric(
            "villagehub_cluster_live",
            "gauge",
            "1 when following Redis and caught up.",
            (status.live as u8).to_string(),
        );
        metric(
            "villagehub_cluster_replication_lag_events",
            "gauge",
            "Events sequenced in Redis not yet applied on this node.",
            lag.to_string(),
        );
        metric(
            "villagehub_cluster_stale_logs",
            "gauge",
            "Logs this node cannot serve until restored from a backup.",
            status.stale.len().to_string(),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

/// The RFC 6455 opening handshake, then the session on its own task.
async fn ws_upgrade(
    State(state): State<AppState>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    mut request: Request,
) -> Response {
    let headers = request.headers();
    if request.method() != Method::GET
        || !header_has(headers, header::CONNECTION, "upgrade")
        || !header_has(headers, header::UPGRADE, "websocket")
    {
        return (StatusCode::UPGRADE_REQUIRED, [(header::UPGRADE, "websocket")], "WebSocket only\n")
            .into_response();
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return (
            StatusCode::BAD_REQUEST,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "WebSocket version 13 only\n",
        )
            .into_response();
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return (StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n").into_response();
    };
    let accept = derive_accept_key(key.as_bytes());
    if *state.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    if !origin_allowed(headers, &state.hub.config.allowed_origins) {
        return (StatusCode::FORBIDDEN, "this page's origin may not connect here\n").into_response();
    }
    let limit = state.hub.config.max_connections_per_ip;
    let Some(address_slot) = state.hub.claim_slot(SlotKey::Address(peer.ip()), limit) else {
        return (StatusCode::TOO_MANY_REQUESTS, "too many connections from your address\n").into_response();
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let hub = state.hub.clone();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(ws_config(&hub.config.limits)),
                )
                .await;
                session::run(hub, ws, peer, shutdown).await;
                drop(address_slot);
            }
            Err(e) => tracing::debug!(%peer, error = %e, "upgrade failed"),
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header"));
    response
}

/// Browsers always send `Origin` on a WebSocket upgrade; a page of another
/// site must not open a socket with the user's token (cross-site WebSocket
/// hijacking). Allowed: the server's own origin (same host as the request),
/// the configured list, and clients without `Origin` (apps, tools).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed.contains(&origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    !host.is_empty() && origin_host == host
}

/// tungstenite's defaults (128 KiB read buffer allocated per connection,
/// unbounded write buffer, 64 MiB messages) are wrong for tens of thousands
/// of mostly idle phones.
pub fn ws_config(limits: &crate::config::Limits) -> WebSocketConfig {
    // Frames up to 16× the soft limit are read and answered `too_large`;
    // beyond that the connection is closed (1009) without reading them.
    let hard = limits.max_frame.saturating_mul(16);
    WebSocketConfig::default()
        .read_buffer_size(limits.read_buffer)
        // Frames are coalesced until a flush (after each outbox drain) or
        // until this much is waiting.
        .write_buffer_size(8 * 1024)
        // A client that does not read makes writes fail with this much
        // queued; the session's slow-timeout closes it.
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard))
}
