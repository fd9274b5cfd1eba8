//! Tokens from outside: JWTs issued by an external real-name system,
//! accepted at `hello` besides our own tokens.
//!
//! Accepted algorithms: HS256 (shared key `external_jwt_hs256_key`) and
//! RS256 (public key `external_jwt_rs256_public_key_pem`); anything else,
//! `none` included, is refused. Claims (all required unless noted):
//!
//! | claim | meaning |
//! |---|---|
//! | `iss` | issuer; must equal `external_jwt_issuer` when that is set |
//! | `phone` | the person's phone: names the villagehub account |
//! | `name` | the person's real name: must equal the account's name |
//! | `iat` | issued at, seconds; tokens issued before a logout or password change are refused |
//! | `exp` | expires at, seconds |
//! | `nbf` | optional: not before, seconds |
//!
//! This module checks signatures and claims only; mapping to an account is
//! the hub's.

use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use serde::Deserialize;
use sha2::Sha256;

use crate::auth::{unix_secs, TokenError};
use crate::config::AuthConfig;

/// The person an external token names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExternalClaims {
    pub iss: String,
    pub phone: String,
    pub name: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
}

/// The configured keys of the external system. The key bytes are never
/// logged.
#[derive(Default)]
pub struct ExternalKeys {
    hs256: Option<Vec<u8>>,
    rs256: Option<VerifyingKey<Sha256>>,
    issuer: Option<String>,
}

impl std::fmt::Debug for ExternalKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalKeys")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Parses an RSA public key in PEM: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1
/// (`BEGIN RSA PUBLIC KEY`).
pub fn parse_rsa_public_pem(pem: &str) -> anyhow::Result<rsa::RsaPublicKey> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    rsa::RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| anyhow::anyhow!("external_jwt_rs256_public_key is not an RSA public key in PEM: {e}"))
}

impl ExternalKeys {
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<ExternalKeys> {
        let rs256 = match &config.external_rs256_public_key_pem {
            Some(pem) => Some(VerifyingKey::<Sha256>::new(parse_rsa_public_pem(pem)?)),
            None => None,
        };
        Ok(ExternalKeys {
            hs256: config.external_hs256_key.as_ref().map(|k| k.as_bytes().to_vec()),
            rs256,
            issuer: config.external_issuer.clone(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.hs256.is_some() || self.rs256.is_some()
    }

    /// Checks an external token's signature, issuer and times.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<ExternalClaims, TokenError> {
        let (signing_input, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
        #[derive(Deserialize)]
        struct Header {
            alg: String,
        }
        let header: Header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenError::Malformed)?;
        match header.alg.as_str() {
            "HS256" => {
                let key = self.hs256.as_ref().ok_or(TokenError::BadSignature)?;
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                mac.update(signing_input.as_bytes());
                mac.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
            }
            "RS256" => {
                let key = self.rs256.as_ref().ok_or(TokenError::BadSignature)?;
                let sig = Signature::try_from(sig.as_slice()).map_err(|_| TokenError::BadSignature)?;
                key.verify(signing_input.as_bytes(), &sig).map_err(|_| TokenError::BadSignature)?;
            }
            _ => return Err(TokenError::BadSignature),
        }
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: ExternalClaims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if self.issuer.as_ref().is_some_and(|iss| *iss != claims.iss) {
            return Err(TokenError::BadSignature);
        }
        let now = unix_secs(now);
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(TokenError::Malformed);
        }
        Ok(claims)
    }
}

/// Signs claims as an HS256 JWT (for tests and tools that stand in for the
/// external system).
pub fn sign_hs256(key: &[u8], claims: &serde_json::Value) -> String {
    let input = signing_input("HS256", claims);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Signs claims as an RS256 JWT with a PKCS#8 PEM private key (tests).
pub fn sign_rs256(private_pem: &str, claims: &serde_json::Value) -> anyhow::Result<String> {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem.trim())?;
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key);
    let input = signing_input("RS256", claims);
    let sig = signer.sign(input.as_bytes());
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes())))
}

fn signing_input(alg: &str, claims: &serde_json::Value) -> String {
    let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
    format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims.to_string()))
}
