//! ServiceAccount tokens: RS256 JWTs signed with `--service-account-signing-key-file` and
//! verified with every `--service-account-key-file`, plus the OIDC discovery documents.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no RSA key in PEM form (PKCS#1 or PKCS#8)")]
    NoKey { path: String },
    #[error("no --service-account-signing-key-file was given")]
    NoSigningKey,
    #[error("encoding the public key: {0}")]
    Encode(String),
    #[error("malformed token")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token issuer {0} is not accepted")]
    WrongIssuer(String),
    #[error("token audiences {0:?} are not accepted")]
    WrongAudience(Vec<String>),
}

struct PublicKey {
    key: RsaPublicKey,
    kid: String,
}

pub struct TokenIssuer {
    issuer: String,
    audiences: Vec<String>,
    signing: Option<(RsaPrivateKey, String)>,
    verifying: Vec<PublicKey>,
    jwks_uri: String,
}

fn read(path: &str) -> Result<String, TokenError> {
    std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_string(),
        source,
    })
}

fn private_key(pem: &str) -> Option<RsaPrivateKey> {
    RsaPrivateKey::from_pkcs1_pem(pem)
        .ok()
        .or_else(|| RsaPrivateKey::from_pkcs8_pem(pem).ok())
}

fn public_key(pem: &str) -> Option<RsaPublicKey> {
    RsaPublicKey::from_public_key_pem(pem)
        .ok()
        .or_else(|| RsaPublicKey::from_pkcs1_pem(pem).ok())
        .or_else(|| private_key(pem).map(|k| k.to_public_key()))
}

/// Upstream's key id: the unpadded base64url SHA-256 of the PKIX public key.
fn key_id(key: &RsaPublicKey) -> Result<String, TokenError> {
    let der = key
        .to_public_key_der()
        .map_err(|e| TokenError::Encode(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(der.as_bytes())))
}

impl TokenIssuer {
    pub fn load(
        issuer: &str,
        audiences: &[String],
        signing_key_file: Option<&str>,
        key_files: &[String],
        jwks_uri: String,
    ) -> Result<Self, TokenError> {
        let signing = match signing_key_file {
            Some(path) => {
                let key = private_key(&read(path)?).ok_or_else(|| TokenError::NoKey {
                    path: path.to_string(),
                })?;
                let kid = key_id(&key.to_public_key())?;
                Some((key, kid))
            }
            None => None,
        };
        let mut verifying = Vec::new();
        for path in key_files {
            let key =
                public_key(&read(path)?).ok_or_else(|| TokenError::NoKey { path: path.clone() })?;
            let kid = key_id(&key)?;
            verifying.push(PublicKey { key, kid });
        }
        if let Some((key, kid)) = &signing {
            if !verifying.iter().any(|k| &k.kid == kid) {
                verifying.push(PublicKey {
                    key: key.to_public_key(),
                    kid: kid.clone(),
                });
            }
        }
        let audiences = if audiences.is_empty() {
            vec![issuer.to_string()]
        } else {
            audiences.to_vec()
        };
        Ok(TokenIssuer {
            issuer: issuer.to_string(),
            audiences,
            signing,
            verifying,
            jwks_uri,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Signs claims; `iss` is added.
    pub fn sign(&self, mut claims: Value) -> Result<String, TokenError> {
        let (key, kid) = self.signing.as_ref().ok_or(TokenError::NoSigningKey)?;
        if let Some(map) = claims.as_object_mut() {
            map.insert("iss".into(), json!(self.issuer));
        }
        let header = json!({"alg": "RS256", "kid": kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signer = SigningKey::<Sha256>::new(key.clone());
        let signature = signer.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }

    /// Checks signature, issuer, audience and time; returns the claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Value, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed);
        let header: Value =
            serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(TokenError::Malformed);
        }
        let signature =
            Signature::try_from(decode(s)?.as_slice()).map_err(|_| TokenError::BadSignature)?;
        let signing_input = format!("{h}.{c}");
        let kid = header.get("kid").and_then(Value::as_str);
        let verified = self
            .verifying
            .iter()
            .filter(|k| kid.is_none_or(|kid| kid == k.kid))
            .any(|k| {
                VerifyingKey::<Sha256>::new(k.key.clone())
                    .verify(signing_input.as_bytes(), &signature)
                    .is_ok()
            });
        if !verified {
            return Err(TokenError::BadSignature);
        }
        let claims: Value =
            serde_json::from_slice(&decode(c)?).map_err(|_| TokenError::Malformed)?;
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if iss != self.issuer {
            return Err(TokenError::WrongIssuer(iss.to_string()));
        }
        let audiences: Vec<String> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        if !audiences.iter().any(|a| self.audiences.contains(a)) {
            return Err(TokenError::WrongAudience(audiences));
        }
        if claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|exp| exp < now)
        {
            return Err(TokenError::Expired);
        }
        if claims
            .get("nbf")
            .and_then(Value::as_i64)
            .is_some_and(|nbf| nbf > now + 60)
        {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .verifying
            .iter()
            .map(|k| {
                json!({
                    "use": "sig",
                    "kty": "RSA",
                    "kid": k.kid,
                    "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(k.key.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(k.key.e().to_bytes_be()),
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    fn issuer_with_key() -> (TokenIssuer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let path = dir.path().join("sa.key");
        std::fs::write(&path, key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
        let p = path.to_str().unwrap().to_string();
        let issuer = TokenIssuer::load(
            "https://kubernetes.default.svc",
            &[],
            Some(&p),
            std::slice::from_ref(&p),
            "https://127.0.0.1:6443/openid/v1/jwks".into(),
        )
        .unwrap();
        (issuer, dir)
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let (issuer, _dir) = issuer_with_key();
        let token = issuer
            .sign(json!({"sub":"system:serviceaccount:default:sa","aud":["https://kubernetes.default.svc"],"exp": 2_000_000_000}))
            .unwrap();
        let claims = issuer.verify(&token, 1_700_000_000).unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:default:sa");
        assert!(matches!(
            issuer.verify(&token, 2_000_000_001),
            Err(TokenError::Expired)
        ));
        let mut tampered = token.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(issuer.verify(&tampered, 1_700_000_000).is_err());
        let other = issuer
            .sign(json!({"aud":["someone-else"],"exp": 2_000_000_000}))
            .unwrap();
        assert!(matches!(
            issuer.verify(&other, 1_700_000_000),
            Err(TokenError::WrongAudience(_))
        ));
    }

    #[test]
    fn jwks_publishes_the_key_by_its_id() {
        let (issuer, _dir) = issuer_with_key();
        let jwks = issuer.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        assert_eq!(
            issuer.discovery()["issuer"],
            "https://kubernetes.default.svc"
        );
    }
}
