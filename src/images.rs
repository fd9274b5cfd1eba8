//! Pictures (images) carried by chat messages, notices and requests.
//!
//! A picture is uploaded once over HTTP (`POST /api/images`), checked (its
//! magic bytes must say JPEG, PNG, WebP or GIF and agree with the
//! `Content-Type`; at most `--max-image-bytes`), and stored
//! content-addressed: its name is the SHA-256 of its bytes, kept at
//! `<data-dir>/images/<first 2 hex>/<hash>`, written to a temp file and
//! renamed so that a reader never sees half a picture. Events carry only
//! the names; `GET /api/images/<hash>` serves the bytes to anyone who knows
//! the name (an `<img>` cannot send a bearer header), with headers that let
//! every cache keep them forever — the bytes behind a name never change.
//!
//! Cluster mode: the uploading node also puts the picture in Redis
//! (`vh:img:<hash>`, with a TTL); any node that lacks a picture — named by
//! a replicated event, by a post, or by a GET — fetches it from there and
//! keeps its own copy, so every node ends up holding every picture, like
//! its SQLite replica.
//!
//! Nothing here touches the log or the store: a post names pictures, and
//! the service layer asks `Hub::check_images` whether this node has them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};

use protocol::{is_image_hash, ApiError, ErrorCode, Id, ImageUploaded, MAX_IMAGES_PER_POST};

use crate::http::{api_error, bearer_account, AppState};
use crate::hub::{Hub, OpError};
use crate::limiter::Counter;

/// Upload limits (`--max-image-bytes`, `--image-uploads-per-minute`).
#[derive(Debug, Clone)]
pub struct ImagesConfig {
    /// Largest accepted picture in bytes (413 `too_large` above it).
    pub max_bytes: usize,
    /// Uploads one account may make per minute (429 `rate_limited` above).
    pub uploads_per_minute: u32,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig { max_bytes: 4 * 1024 * 1024, uploads_per_minute: 30 }
    }
}

/// The window of `uploads_per_minute`.
const UPLOAD_WINDOW: Duration = Duration::from_secs(60);

/// This node's pictures on disk, and the upload limiter.
pub struct Images {
    /// `<data-dir>/images`.
    dir: PathBuf,
    pub config: ImagesConfig,
    /// Uploads per account in the current minute (in memory, per node).
    uploads: Counter<Id>,
}

/// The type a picture's first bytes announce, if one of the four accepted.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// The picture's name: SHA-256 of its bytes, lowercase hex.
pub fn name_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the picture names of one post without the node's state: at most
/// `MAX_IMAGES_PER_POST`, each well-formed.
pub fn check_names(images: &[String]) -> Result<(), OpError> {
    if images.len() > MAX_IMAGES_PER_POST {
        return Err(OpError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_IMAGES_PER_POST} images per post"),
        ));
    }
    if let Some(bad) = images.iter().find(|name| !is_image_hash(name)) {
        let shown: String = bad.chars().take(80).collect();
        return Err(OpError::bad_request(format!(
            "'{shown}' is not an image name (64 lowercase hex digits from POST /api/images)"
        )));
    }
    Ok(())
}

impl Images {
    pub fn new(data_dir: &Path, config: ImagesConfig) -> Images {
        let uploads = Counter::new(UPLOAD_WINDOW, config.uploads_per_minute);
        Images { dir: data_dir.join("images"), config, uploads }
    }

    /// Where a picture lives. Only ever called with a checked name, so the
    /// path cannot leave the images directory.
    fn path(&self, name: &str) -> PathBuf {
        debug_assert!(is_image_hash(name));
        self.dir.join(&name[..2]).join(name)
    }

    /// Whether this node holds the picture.
    pub fn has(&self, name: &str) -> bool {
        is_image_hash(name) && self.path(name).is_file()
    }

    /// The picture's bytes, if this node holds it.
    pub fn load(&self, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_image_hash(name) {
            return Ok(None);
        }
        match std::fs::read(self.path(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores a picture under its name (the caller has checked that the
    /// name is the bytes' hash); false if it was there already. Temp file,
    /// fsync, rename: a crash leaves either nothing or the whole picture.
    pub fn store(&self, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
        let path = self.path(name);
        if path.is_file() {
            return Ok(false);
        }
        let shard = path.parent().expect("a picture's path has a parent");
        std::fs::create_dir_all(shard)?;
        let temp = shard.join(format!(".{name}.{}.tmp", rand::random::<u64>()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map(|_| true)
    }

    /// Counts one upload of `account`; false once over the limit.
    pub fn may_upload(&self, account: Id) -> bool {
        self.uploads.count(&account, Instant::now())
    }

    /// Stores bytes that came from Redis, after checking that they are what
    /// their name says (Redis is trusted for order, not for content).
    fn store_fetched(&self, name: &str, bytes: &[u8]) -> std::io::Result<bool> {
        if name_of(bytes) != name || sniff(bytes).is_none() {
            return Err(std::io::Error::other("the bytes in Redis do not match the picture's name"));
        }
        self.store(name, bytes)
    }
}

impl Hub {
    /// Makes sure this node holds every picture a post names: locally, or
    /// (cluster mode) fetched from Redis now. Refuses `bad_request
    /// "unknown image"` otherwise. Called only for posts with pictures.
    pub async fn check_images(&self, names: &[String]) -> Result<(), OpError> {
        check_names(names)?;
        for name in names {
            if !self.fetch_image(name).await? {
                return Err(OpError::bad_request(format!(
                    "unknown image {name}: upload it with POST /api/images first"
                )));
            }
        }
        Ok(())
    }

    /// Whether this node holds the picture, fetching it from Redis first in
    /// cluster mode if need be.
    pub async fn fetch_image(&self, name: &str) -> Result<bool, OpError> {
        let images = self.images.clone();
        let owned = name.to_string();
        if blocking(move || Ok(images.has(&owned))).await? {
            return Ok(true);
        }
        fetch_into(self.log.cluster(), &self.images, name).await
    }
}

/// Cluster mode: copies a picture this node lacks from Redis into
/// `images`; false if Redis does not have it (or there is no Redis).
pub async fn fetch_into(
    cluster: Option<&Arc<crate::cluster::Cluster>>,
    images: &Arc<Images>,
    name: &str,
) -> Result<bool, OpError> {
    let Some(cluster) = cluster else { return Ok(false) };
    let bytes = match cluster.get_image(name).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(false),
        Err(e) => return Err(OpError::new(ErrorCode::Unavailable, e)),
    };
    let images = images.clone();
    let owned = name.to_string();
    blocking(move || images.store_fetched(&owned, &bytes)).await?;
    Ok(true)
}

/// Cluster mode, on applying a replicated event: fetches the pictures it
/// names that this node lacks, in the background (a GET or a post for one
/// of them fetches it on demand meanwhile).
pub fn fetch_missing_later(cluster: Arc<crate::cluster::Cluster>, images: Arc<Images>, names: Vec<String>) {
    tokio::spawn(async move {
        for name in names {
            if images.has(&name) {
                continue;
            }
            if let Err(e) = fetch_into(Some(&cluster), &images, &name).await {
                tracing::warn!(image = %name, error = %e.message, "could not fetch a replicated picture");
            }
        }
    });
}

/// The picture names in a stored event frame, for events of the kinds
/// that carry them. A frame without `"images":[` is passed over after one
/// substring test: the key cannot occur inside a JSON string, where quotes
/// are escaped.
pub fn names_in_frame(kind: &str, frame: &str) -> Vec<String> {
    if !matches!(kind, "message" | "notice" | "request") || !frame.contains(r#""images":["#) {
        return Vec::new();
    }
    #[derive(serde::Deserialize)]
    struct Frame {
        body: Body_,
    }
    #[derive(serde::Deserialize)]
    struct Body_ {
        #[serde(default)]
        images: Vec<String>,
    }
    serde_json::from_str::<Frame>(frame)
        .map(|f| f.body.images.into_iter().filter(|n| is_image_hash(n)).collect())
        .unwrap_or_default()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, OpError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| OpError::new(ErrorCode::Internal, "internal error"))?
        .map_err(|e| {
            tracing::error!(error = %e, "images directory");
            OpError::new(ErrorCode::Unavailable, "the images directory cannot be used right now")
        })
}

/// `POST /api/images` and `GET /api/images/{hash}`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/images", post(upload)).route("/api/images/{name}", get(serve))
}

fn refuse(e: OpError) -> Response {
    api_error(e.code, &e.message)
}

/// 415: the bytes are not one of the accepted types, or not the type the
/// header says. The code stays `bad_request` (the closed list has no other
/// fit); the status tells the type apart from other bad requests.
fn unsupported(message: &str) -> Response {
    let body = ApiError { code: ErrorCode::BadRequest, message: message.to_string() };
    (StatusCode::UNSUPPORTED_MEDIA_TYPE, axum::Json(body)).into_response()
}

/// Whether the account may upload: active, and a member of some group or
/// an officer of a town or district (pending applicants and bare admins
/// may not).
fn may_post_pictures(hub: &Hub, account: Id) -> bool {
    let dir = hub.directory.read().unwrap();
    let state = dir.people.state(account);
    state.status == protocol::AccountStatus::Active
        && (!dir.memberships(account).is_empty()
            || state.offices.iter().any(|o| !matches!(o, protocol::Office::Admin)))
}

/// `POST /api/images` with `Authorization: Bearer TOKEN`, the picture's
/// bytes as the body and its type as `Content-Type`.
async fn upload(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let hub = state.hub.clone();
    let account = match bearer_account(&hub, &headers) {
        Ok(account) => account,
        Err(e) => return refuse(e),
    };
    if !may_post_pictures(&hub, account.id) {
        return api_error(ErrorCode::Forbidden, "only approved members and officers upload pictures");
    }
    if !hub.images.may_upload(account.id) {
        let n = hub.images.config.uploads_per_minute;
        return api_error(ErrorCode::RateLimited, &format!("more than {n} pictures a minute; wait a little"));
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !protocol::IMAGE_TYPES.contains(&declared.as_str()) {
        return unsupported("Content-Type must be image/jpeg, image/png, image/webp or image/gif");
    }
    let max = hub.images.config.max_bytes;
    let too_large = || api_error(ErrorCode::TooLarge, &format!("a picture may have at most {max} bytes"));
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let bytes: Bytes = match axum::body::to_bytes(body, max).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(),
    };
    if bytes.is_empty() {
        return api_error(ErrorCode::BadRequest, "the body is empty; send the picture's bytes");
    }
    let Some(sniffed) = sniff(&bytes) else {
        return unsupported("the bytes are not a JPEG, PNG, WebP or GIF picture");
    };
    if sniffed != declared {
        return unsupported(&format!("the bytes are {sniffed}, not {declared}"));
    }
    let name = name_of(&bytes);
    let images = hub.images.clone();
    let (stored_name, stored_bytes) = (name.clone(), bytes.clone());
    let created = match blocking(move || images.store(&stored_name, &stored_bytes)).await {
        Ok(created) => created,
        Err(e) => return refuse(e),
    };
    // Other nodes fetch it from Redis; a picture they cannot fetch would
    // break posts that name it there, so the upload fails without Redis.
    if let Some(cluster) = hub.log.cluster() {
        if let Err(e) = cluster.put_image(&name, &bytes).await {
            return api_error(ErrorCode::Unavailable, &e);
        }
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    let reply = ImageUploaded { image: name, content_type: sniffed.to_string(), size: bytes.len() as u64 };
    (status, axum::Json(reply)).into_response()
}

/// `GET /api/images/{hash}`: no token (the name is the capability).
async fn serve(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !is_image_hash(&name) {
        return api_error(ErrorCode::BadRequest, "an image name is 64 lowercase hex digits");
    }
    let etag = format!("\"{name}\"");
    let fixed = |response: &mut Response| {
        let h = response.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
        h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header"));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    };
    // The bytes behind a name never change: a cache holding the name holds
    // the picture.
    let revalidating = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().trim_start_matches("W/"))
        .any(|v| v == etag || v == "*");
    let hub = state.hub.clone();
    let images = hub.images.clone();
    let wanted = name.clone();
    let mut bytes = match blocking(move || images.load(&wanted)).await {
        Ok(bytes) => bytes,
        Err(e) => return refuse(e),
    };
    if bytes.is_none() {
        match fetch_into(hub.log.cluster(), &hub.images, &name).await {
            Ok(true) => {
                let images = hub.images.clone();
                let wanted = name.clone();
                bytes = match blocking(move || images.load(&wanted)).await {
                    Ok(bytes) => bytes,
                    Err(e) => return refuse(e),
                };
            }
            Ok(false) => {}
            Err(e) => return refuse(e),
        }
    }
    let Some(bytes) = bytes else {
        return api_error(ErrorCode::NotFound, "no such image");
    };
    if revalidating {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        fixed(&mut response);
        return response;
    }
    let content_type = sniff(&bytes).unwrap_or("application/octet-stream");
    let mut response = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    fixed(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_knows_the_four_types_and_nothing_else() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(b"GIF89a...."), Some("image/gif"));
        assert_eq!(sniff(b"GIF87a...."), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"RIFF\x10\x00\x00\x00WAVEfmt "), None);
        assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), None);
        assert_eq!(sniff(b"\x89PN"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn names_are_checked_before_any_lookup() {
        let good = "a".repeat(64);
        assert!(check_names(&[]).is_ok());
        assert!(check_names(&vec![good.clone(); MAX_IMAGES_PER_POST]).is_ok());
        assert_eq!(check_names(&vec![good.clone(); 10]).unwrap_err().code, ErrorCode::TooLarge);
        for bad in ["A".repeat(64), "a".repeat(63), "../".repeat(21) + "a", "g".repeat(64)] {
            assert_eq!(check_names(&[bad]).unwrap_err().code, ErrorCode::BadRequest);
        }
    }

    #[test]
    fn stored_pictures_are_found_by_name_and_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::new(dir.path(), ImagesConfig::default());
        let bytes = b"GIF89a picture".to_vec();
        let name = name_of(&bytes);
        assert!(!images.has(&name));
        assert!(images.store(&name, &bytes).unwrap());
        assert!(!images.store(&name, &bytes).unwrap(), "stored once");
        assert!(images.has(&name));
        assert_eq!(images.load(&name).unwrap(), Some(bytes.clone()));
        assert_eq!(images.load("../../etc/passwd").unwrap(), None);
        assert!(images.store_fetched(&"0".repeat(64), &bytes).is_err(), "bytes that are not their name");
        let shard = dir.path().join("images").join(&name[..2]);
        assert_eq!(std::fs::read_dir(shard).unwrap().count(), 1, "no temp file left behind");
    }

    #[test]
    fn frames_name_their_pictures_and_only_those() {
        let name = "b".repeat(64);
        let with = format!(
            r#"{{"type":"event","group":4,"seq":9,"ts":1,"author":{{"id":1,"name":"a","role":"member"}},"channel":"chat","kind":"message","body":{{"text":"x","images":["{name}"]}}}}"#
        );
        assert_eq!(names_in_frame("message", &with), vec![name.clone()]);
        assert!(names_in_frame("like", &with).is_empty(), "other kinds carry no pictures");
        let quoted = r#"{"type":"event","group":4,"seq":9,"ts":1,"author":{"id":1,"name":"a","role":"member"},"channel":"chat","kind":"message","body":{"text":"\"images\":[\"x\"]"}}"#;
        assert!(names_in_frame("message", quoted).is_empty());
    }
}
