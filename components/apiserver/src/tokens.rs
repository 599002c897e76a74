//! ServiceAccount tokens: JWTs signed with `--service-account-signing-key-file` and verified
//! with every `--service-account-key-file`, plus the OIDC discovery documents. As upstream, an
//! RSA key signs RS256 and a P-256 ECDSA key ES256.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::{
    Signature as EcSignature, SigningKey as EcSigningKey, VerifyingKey as EcVerifyingKey,
};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs1v15::{Signature as RsaSignature, SigningKey as RsaSigningKey, VerifyingKey};
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
    #[error("{path} holds no RSA or P-256 ECDSA key in PEM form (PKCS#1, SEC1, PKCS#8 or PKIX)")]
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

enum PrivateKey {
    Rsa(Box<RsaPrivateKey>),
    Ec(EcSigningKey),
}

#[derive(Clone)]
enum PublicKeyMaterial {
    Rsa(RsaPublicKey),
    Ec(EcVerifyingKey),
}

impl PrivateKey {
    fn public(&self) -> PublicKeyMaterial {
        match self {
            PrivateKey::Rsa(key) => PublicKeyMaterial::Rsa(key.to_public_key()),
            PrivateKey::Ec(key) => PublicKeyMaterial::Ec(*key.verifying_key()),
        }
    }

    fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            PrivateKey::Rsa(key) => RsaSigningKey::<Sha256>::new(*key.clone())
                .sign(input)
                .to_vec(),
            // JWS carries an ECDSA signature as r and s, 32 bytes each (RFC 7518 3.4), not DER.
            PrivateKey::Ec(key) => {
                let signature: EcSignature = key.sign(input);
                signature.to_bytes().to_vec()
            }
        }
    }
}

impl PublicKeyMaterial {
    fn algorithm(&self) -> &'static str {
        match self {
            PublicKeyMaterial::Rsa(_) => "RS256",
            PublicKeyMaterial::Ec(_) => "ES256",
        }
    }

    fn verifies(&self, input: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKeyMaterial::Rsa(key) => RsaSignature::try_from(signature).is_ok_and(|s| {
                VerifyingKey::<Sha256>::new(key.clone())
                    .verify(input, &s)
                    .is_ok()
            }),
            PublicKeyMaterial::Ec(key) => {
                EcSignature::from_slice(signature).is_ok_and(|s| key.verify(input, &s).is_ok())
            }
        }
    }

    fn der(&self) -> Result<Vec<u8>, TokenError> {
        let der = match self {
            PublicKeyMaterial::Rsa(key) => key.to_public_key_der(),
            PublicKeyMaterial::Ec(key) => key.to_public_key_der(),
        };
        der.map(|d| d.as_bytes().to_vec())
            .map_err(|e| TokenError::Encode(e.to_string()))
    }

    /// The key as a JWK (RFC 7517): `n` and `e` for RSA, the curve point for ECDSA.
    fn jwk(&self, kid: &str) -> Value {
        match self {
            PublicKeyMaterial::Rsa(key) => json!({
                "use": "sig",
                "kty": "RSA",
                "kid": kid,
                "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            }),
            PublicKeyMaterial::Ec(key) => {
                let point = key.to_encoded_point(false);
                json!({
                    "use": "sig",
                    "kty": "EC",
                    "kid": kid,
                    "alg": "ES256",
                    "crv": "P-256",
                    "x": point.x().map(|x| URL_SAFE_NO_PAD.encode(x)),
                    "y": point.y().map(|y| URL_SAFE_NO_PAD.encode(y)),
                })
            }
        }
    }
}

struct PublicKey {
    key: PublicKeyMaterial,
    kid: String,
}

pub struct TokenIssuer {
    issuer: String,
    audiences: Vec<String>,
    signing: Option<(PrivateKey, String)>,
    verifying: Vec<PublicKey>,
    jwks_uri: String,
}

fn read(path: &str) -> Result<String, TokenError> {
    std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_string(),
        source,
    })
}

fn private_key(pem: &str) -> Option<PrivateKey> {
    RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem))
        .map(|key| PrivateKey::Rsa(Box::new(key)))
        .ok()
        .or_else(|| EcSigningKey::from_pkcs8_pem(pem).ok().map(PrivateKey::Ec))
        .or_else(|| {
            p256::SecretKey::from_sec1_pem(pem)
                .ok()
                .map(|key| PrivateKey::Ec(EcSigningKey::from(key)))
        })
}

fn public_key(pem: &str) -> Option<PublicKeyMaterial> {
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map(PublicKeyMaterial::Rsa)
        .ok()
        .or_else(|| {
            EcVerifyingKey::from_public_key_pem(pem)
                .ok()
                .map(PublicKeyMaterial::Ec)
        })
        .or_else(|| private_key(pem).map(|k| k.public()))
}

/// Upstream's key id: the unpadded base64url SHA-256 of the PKIX public key.
fn key_id(key: &PublicKeyMaterial) -> Result<String, TokenError> {
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(key.der()?)))
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
                let kid = key_id(&key.public())?;
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
                    key: key.public(),
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
        let header = json!({"alg": key.public().algorithm(), "kid": kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key.sign(signing_input.as_bytes());
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
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
        let Some(algorithm) = header.get("alg").and_then(Value::as_str) else {
            return Err(TokenError::Malformed);
        };
        if !matches!(algorithm, "RS256" | "ES256") {
            return Err(TokenError::Malformed);
        }
        let signature = decode(s)?;
        let signing_input = format!("{h}.{c}");
        let kid = header.get("kid").and_then(Value::as_str);
        // The header's algorithm must be the key's: an RS256 token never checks against an
        // ECDSA key, nor the other way round.
        let verified = self
            .verifying
            .iter()
            .filter(|k| kid.is_none_or(|kid| kid == k.kid))
            .filter(|k| k.key.algorithm() == algorithm)
            .any(|k| k.key.verifies(signing_input.as_bytes(), &signature));
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
        let keys: Vec<Value> = self.verifying.iter().map(|k| k.key.jwk(&k.kid)).collect();
        json!({ "keys": keys })
    }

    /// The algorithms of the keys tokens are verified with, each once.
    fn algorithms(&self) -> Vec<&'static str> {
        let mut algorithms: Vec<&'static str> =
            self.verifying.iter().map(|k| k.key.algorithm()).collect();
        algorithms.sort_unstable();
        algorithms.dedup();
        algorithms
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": self.algorithms(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    fn issuer_with_key() -> (TokenIssuer, tempfile::TempDir) {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        issuer_with_pem(&key.to_pkcs8_pem(LineEnding::LF).unwrap())
    }

    /// An issuer whose signing key is `pem`, verifying with the same file (as a private key
    /// file may serve both flags upstream).
    fn issuer_with_pem(pem: &str) -> (TokenIssuer, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.key");
        std::fs::write(&path, pem).unwrap();
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

    fn header(token: &str) -> Value {
        let encoded = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
    }

    const CLAIMS_EXPIRY: i64 = 2_000_000_000;

    fn claims() -> Value {
        json!({"sub":"system:serviceaccount:default:sa","aud":["https://kubernetes.default.svc"],"exp": CLAIMS_EXPIRY})
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let (issuer, _dir) = issuer_with_key();
        let token = issuer.sign(claims()).unwrap();
        let claims = issuer.verify(&token, 1_700_000_000).unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:default:sa");
        assert!(matches!(
            issuer.verify(&token, CLAIMS_EXPIRY + 1),
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

    #[test]
    fn an_ecdsa_key_signs_es256_tokens_that_its_public_key_alone_verifies() {
        let key = EcSigningKey::random(&mut rsa::rand_core::OsRng);
        let (issuer, dir) = issuer_with_pem(&key.to_pkcs8_pem(LineEnding::LF).unwrap());
        let token = issuer.sign(claims()).unwrap();
        assert_eq!(header(&token)["alg"], "ES256");
        // r and s, 32 bytes each: the JWS form, not DER.
        let signature = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap();
        assert_eq!(signature.len(), 64);
        assert_eq!(
            issuer.verify(&token, 1_700_000_000).unwrap()["sub"],
            "system:serviceaccount:default:sa"
        );

        // Another API server holding only the public key (`--service-account-key-file`).
        let public = dir.path().join("sa.pub");
        std::fs::write(
            &public,
            key.verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
        let verifier = TokenIssuer::load(
            "https://kubernetes.default.svc",
            &[],
            None,
            &[public.to_str().unwrap().to_string()],
            "https://127.0.0.1:6443/openid/v1/jwks".into(),
        )
        .unwrap();
        assert!(verifier.verify(&token, 1_700_000_000).is_ok());
        assert!(matches!(
            verifier.sign(claims()),
            Err(TokenError::NoSigningKey)
        ));

        let mut tampered: Vec<u8> = token.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            verifier.verify(&String::from_utf8(tampered).unwrap(), 1_700_000_000),
            Err(TokenError::BadSignature)
        ));
    }

    #[test]
    fn a_sec1_ecdsa_key_is_read_and_published_as_a_p256_jwk() {
        let secret = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
        let (issuer, _dir) = issuer_with_pem(&secret.to_sec1_pem(LineEnding::LF).unwrap());
        let jwks = issuer.jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        let point = secret.public_key().to_encoded_point(false);
        assert_eq!(jwk["x"], URL_SAFE_NO_PAD.encode(point.x().unwrap()));
        assert_eq!(jwk["y"], URL_SAFE_NO_PAD.encode(point.y().unwrap()));
        assert_eq!(
            issuer.discovery()["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
    }

    #[test]
    fn a_token_whose_algorithm_is_not_its_keys_is_refused() {
        let ec = EcSigningKey::random(&mut rsa::rand_core::OsRng);
        let (ec_issuer, _ec_dir) = issuer_with_pem(&ec.to_pkcs8_pem(LineEnding::LF).unwrap());
        let token = ec_issuer.sign(claims()).unwrap();
        // The same signature under a header that claims RS256 (kid kept).
        let mut parts = token.splitn(3, '.');
        let (h, c, s) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let mut forged_header = header(&token);
        forged_header["alg"] = json!("RS256");
        let forged = format!(
            "{}.{c}.{s}",
            URL_SAFE_NO_PAD.encode(forged_header.to_string())
        );
        assert!(h != forged.split('.').next().unwrap());
        assert!(matches!(
            ec_issuer.verify(&forged, 1_700_000_000),
            Err(TokenError::BadSignature)
        ));
        let mut none_header = header(&token);
        none_header["alg"] = json!("none");
        let unsigned = format!("{}.{c}.", URL_SAFE_NO_PAD.encode(none_header.to_string()));
        assert!(matches!(
            ec_issuer.verify(&unsigned, 1_700_000_000),
            Err(TokenError::Malformed)
        ));
    }
}
