//! Passwords and tokens.
//!
//! Passwords are stored only as argon2id hashes. Login tokens are HS256 JWTs
//! (`{"sub": account, "iat": s, "exp": s}`) signed with a key from the
//! config file or, failing that, one generated once and kept in the data
//! directory (`token.key`, mode 0600), so tokens survive restarts. The key
//! is never logged.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use protocol::{Id, Millis};

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature is wrong")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

/// Claims of a villagehub token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account id.
    pub sub: Id,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// Issued at in milliseconds, so that a logout revokes exactly the
    /// tokens issued before it, even within the same second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<Millis>,
}

impl Claims {
    /// When the token was issued, ms since the epoch.
    pub fn issued_ms(&self) -> Millis {
        self.iat_ms.unwrap_or(self.iat.saturating_mul(1000))
    }
}

/// Signs and checks tokens. The key bytes never leave this struct.
pub struct TokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl TokenKey {
    pub fn new(key: impl Into<Vec<u8>>) -> TokenKey {
        TokenKey { key: key.into() }
    }

    /// The configured key, or the one kept in `data_dir/token.key`
    /// (generated on first start).
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> std::io::Result<TokenKey> {
        if let Some(key) = configured {
            return Ok(TokenKey::new(key.as_bytes()));
        }
        let path = data_dir.join("token.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(TokenKey::new(text.trim().as_bytes())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut bytes);
                let text = URL_SAFE_NO_PAD.encode(bytes);
                write_private(&path, &text)?;
                Ok(TokenKey::new(text.as_bytes()))
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    pub fn issue(&self, account: Id, now: SystemTime, ttl: Duration) -> (String, Millis) {
        let iat = unix_secs(now);
        let exp = iat + ttl.as_secs() as i64;
        let claims = Claims { sub: account, iat, exp, iat_ms: Some(unix_millis(now)) };
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{signing_input}.{sig}"), exp * 1000)
    }

    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        let (signing_input, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
        let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?;
        #[derive(Deserialize)]
        struct Header {
            alg: String,
        }
        let header: Header = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
        // Only HS256: a token claiming "none" or another algorithm is refused
        // outright rather than checked some other way.
        if header.alg != "HS256" {
            return Err(TokenError::BadSignature);
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= unix_secs(now) {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn unix_millis(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// Argon2id hash in PHC format. Slow on purpose (~20 ms): call it off the
/// async threads.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default params cannot fail")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip_and_refusals() {
        let key = TokenKey::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let now = SystemTime::now();
        let (token, exp) = key.issue(42, now, Duration::from_secs(60));
        assert!(exp > unix_millis(now));
        assert_eq!(key.verify(&token, now).unwrap().sub, 42);

        let later = now + Duration::from_secs(61);
        assert_eq!(key.verify(&token, later), Err(TokenError::Expired));

        let other = TokenKey::new(b"another key, just as long as the first".to_vec());
        assert_eq!(other.verify(&token, now), Err(TokenError::BadSignature));

        // A forged payload with the original signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":1,"iat":0,"exp":{}}}"#, unix_secs(now) + 3600));
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(key.verify(&forged, now), Err(TokenError::BadSignature));

        let none_alg = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), parts[1]);
        assert_eq!(key.verify(&none_alg, now), Err(TokenError::BadSignature));
        assert_eq!(key.verify("garbage", now), Err(TokenError::Malformed));
    }

    #[test]
    fn password_hash_verifies() {
        let hash = hash_password("demo1234");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("demo1234", &hash));
        assert!(!verify_password("demo12345", &hash));
        assert!(!verify_password("demo1234", "not a hash"));
    }
}
