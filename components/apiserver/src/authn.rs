//! Authentication: client certificates (CN = user, O = groups), static bearer tokens
//! (`--token-auth-file`, upstream's CSV), and ServiceAccount JWTs checked against the live
//! ServiceAccount (and Pod, for bound tokens).

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::storage::Store;
use crate::tokens::TokenIssuer;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: HashMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }

    fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }

    /// `authentication.k8s.io/v1` UserInfo, as SelfSubjectReview returns it.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("reading token file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("token file {path} line {line}: {reason}")]
    TokenFileLine {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Parses upstream's static token CSV: `token,user,uid,"group1,group2"`.
pub fn parse_token_file(path: &str, text: &str) -> Result<HashMap<String, UserInfo>, AuthnError> {
    let mut tokens = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv(line);
        if fields.len() < 3 {
            return Err(AuthnError::TokenFileLine {
                path: path.to_string(),
                line: i + 1,
                reason: "needs at least token,user,uid".into(),
            });
        }
        let groups = fields
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        tokens.insert(
            fields[0].clone(),
            UserInfo {
                name: fields[1].clone(),
                uid: fields[2].clone(),
                groups,
                extra: HashMap::new(),
            },
        );
    }
    Ok(tokens)
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

/// The identity in a verified client certificate: CN is the user, each O a group.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(
        UserInfo {
            name,
            groups,
            ..Default::default()
        }
        .authenticated(),
    )
}

pub struct Authenticator {
    static_tokens: HashMap<String, UserInfo>,
    issuer: Option<TokenIssuer>,
}

impl Authenticator {
    pub fn new(static_tokens: HashMap<String, UserInfo>, issuer: Option<TokenIssuer>) -> Self {
        Authenticator {
            static_tokens,
            issuer,
        }
    }

    pub fn issuer(&self) -> Option<&TokenIssuer> {
        self.issuer.as_ref()
    }

    /// Authenticates a bearer token; `None` means the token is not valid.
    pub async fn token(&self, token: &str, store: &Store) -> Option<UserInfo> {
        if let Some(user) = self.static_tokens.get(token) {
            return Some(user.clone().authenticated());
        }
        let issuer = self.issuer.as_ref()?;
        let claims = issuer.verify(token, chrono::Utc::now().timestamp()).ok()?;
        service_account_user(&claims, store).await
    }
}

/// Upstream's grace: an object deleted less than a minute ago still backs its tokens, so a
/// terminating pod's client can finish (release leases, run preStop hooks).
const DELETION_GRACE_SECONDS: i64 = 60;

/// The object a token claim names, if it still exists with that uid and was not deleted more
/// than a minute ago.
async fn live_object(
    store: &Store,
    segment: &str,
    namespace: Option<&str>,
    claim: &Value,
) -> Option<Value> {
    let name = claim.get("name")?.as_str()?;
    let uid = claim.get("uid")?.as_str()?;
    let stored = store
        .get(&store.key(segment, namespace, name))
        .await
        .ok()??;
    if crate::objects::uid(&stored.object) != Some(uid) {
        return None;
    }
    let deleted_at = crate::objects::meta_str(&stored.object, "deletionTimestamp")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    if let Some(at) = deleted_at {
        let cutoff = chrono::Utc::now() - chrono::TimeDelta::seconds(DELETION_GRACE_SECONDS);
        if at < cutoff {
            return None;
        }
    }
    Some(stored.object)
}

/// Checks a verified token's ServiceAccount (and bound Pod, Secret or Node) still exist with
/// the same uid.
async fn service_account_user(claims: &Value, store: &Store) -> Option<UserInfo> {
    let k8s = claims.get("kubernetes.io")?;
    let namespace = k8s.get("namespace")?.as_str()?;
    let sa_claim = k8s.get("serviceaccount")?;
    let sa_name = sa_claim.get("name")?.as_str()?;
    let sa_uid = sa_claim.get("uid")?.as_str()?;
    live_object(store, "serviceaccounts", Some(namespace), sa_claim).await?;
    let mut extra = HashMap::new();
    if let Some(pod) = k8s.get("pod") {
        live_object(store, "pods", Some(namespace), pod).await?;
        for (key, field) in [("pod-name", "name"), ("pod-uid", "uid")] {
            let value = pod.get(field)?.as_str()?.to_string();
            extra.insert(format!("authentication.kubernetes.io/{key}"), vec![value]);
        }
    }
    if let Some(secret) = k8s.get("secret") {
        live_object(store, "secrets", Some(namespace), secret).await?;
    }
    if let Some(node) = k8s.get("node") {
        live_object(store, "nodes", None, node).await?;
    }
    if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_string(),
            vec![format!("JTI={jti}")],
        );
    }
    Some(
        UserInfo {
            name: format!("system:serviceaccount:{namespace}:{sa_name}"),
            uid: sa_uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
            ],
            extra,
        }
        .authenticated(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_csv_with_quoted_groups() {
        let tokens = parse_token_file(
            "t.csv",
            "# comment\nabc123,alice,u1,\"system:masters,dev\"\nxyz,bob,u2\n",
        )
        .unwrap();
        assert_eq!(tokens["abc123"].name, "alice");
        assert_eq!(tokens["abc123"].groups, vec!["system:masters", "dev"]);
        assert!(tokens["xyz"].groups.is_empty());
        assert!(parse_token_file("t.csv", "onlytoken\n").is_err());
    }

    #[test]
    fn certificate_subject_gives_user_and_groups() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user = user_from_certificate(cert.der()).unwrap();
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.groups, vec!["system:nodes", "system:authenticated"]);
    }
}
