//! Hostd's TLS identity: given by flags, or obtained once by joining and kept in the data
//! directory (`pki/host.key`, `pki/host.crt`, `pki/ca.crt`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hakube_hostd_api::join::{JoinErrorResponse, JoinRequest, JoinResponse};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509ReqBuilder, X509};

use crate::files::{self, FileError};
use crate::http_client::{self, HttpClient, HttpError};
use crate::tls::{self, ServerVerification, TlsError};

/// Largest join response accepted (a certificate chain and a CA).
const MAX_JOIN_RESPONSE_BYTES: usize = 1024 * 1024;

/// PEM material hostd serves and fetches bundles with.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The CA of hostd's clients and of the operator's artifact endpoint.
    pub ca_pem: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("creating the key and certificate request: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    #[error("no certificate in {pki_dir:?} and no --join-url to get one")]
    NoIdentity { pki_dir: PathBuf },
    #[error("joining needs --{0}")]
    MissingJoinFlag(&'static str),
    #[error("the join endpoint refused: {message} (HTTP {status})")]
    Refused { status: u16, message: String },
    #[error("joining at {url}: gave up after {elapsed:?}; last error: {last_error}")]
    GaveUp {
        url: String,
        elapsed: Duration,
        last_error: String,
    },
    #[error("the join endpoint answered {0}")]
    BadResponse(String),
    #[error("invalid join URL: {0}")]
    Url(#[from] HttpError),
}

/// Where a joined hostd keeps its identity.
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl PkiPaths {
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("pki");
        PkiPaths {
            cert: dir.join("host.crt"),
            key: dir.join("host.key"),
            ca: dir.join("ca.crt"),
            dir,
        }
    }

    fn load(&self) -> Result<Identity, IdentityError> {
        Ok(Identity {
            cert_pem: tls::read_file(&self.cert)?,
            key_pem: tls::read_file(&self.key)?,
            ca_pem: tls::read_file(&self.ca)?,
        })
    }

    /// The certificate goes last: its presence says the identity is complete.
    fn store(&self, identity: &Identity) -> Result<(), IdentityError> {
        files::create_dir_with_mode(&self.dir, 0o700)?;
        files::write_atomically(&self.key, &identity.key_pem, 0o600)?;
        files::write_atomically(&self.ca, &identity.ca_pem, 0o644)?;
        files::write_atomically(&self.cert, &identity.cert_pem, 0o644)?;
        Ok(())
    }
}

/// How to join when there is no identity yet.
#[derive(Clone)]
pub struct JoinSettings {
    pub url: String,
    pub token: String,
    pub ca_file: PathBuf,
    pub host_name: String,
    pub addresses: Vec<String>,
    pub timeout: Duration,
}

/// The files named by flags, else the stored identity, else one obtained by joining now.
pub async fn obtain(
    flag_files: Option<(PathBuf, PathBuf, PathBuf)>,
    pki: &PkiPaths,
    join: Option<JoinSettings>,
) -> Result<Identity, IdentityError> {
    if let Some((cert, key, ca)) = flag_files {
        return Ok(Identity {
            cert_pem: tls::read_file(&cert)?,
            key_pem: tls::read_file(&key)?,
            ca_pem: tls::read_file(&ca)?,
        });
    }
    if pki.cert.exists() {
        tracing::info!(dir = %pki.dir.display(), "using the stored host certificate");
        return pki.load();
    }
    let join = join.ok_or_else(|| IdentityError::NoIdentity {
        pki_dir: pki.dir.clone(),
    })?;
    let identity = join_cluster(&join).await?;
    pki.store(&identity)?;
    tracing::info!(host = %join.host_name, dir = %pki.dir.display(), "joined; certificate stored");
    Ok(identity)
}

/// Generates a key and CSR, trades them with the token for a certificate.
async fn join_cluster(join: &JoinSettings) -> Result<Identity, IdentityError> {
    let key = generate_key()?;
    let csr_pem = certificate_request(&key, &join.host_name, &join.addresses)?;
    let join_ca = tls::read_file(&join.ca_file)?;
    let client = HttpClient::new(
        Some(tls::client_config(ServerVerification::Ca(&join_ca), None)?),
        Duration::from_secs(10),
    );
    http_client::parse_url(&join.url)?;
    let body = serde_json::to_vec(&JoinRequest {
        token: join.token.clone(),
        host_name: join.host_name.clone(),
        csr: String::from_utf8_lossy(&csr_pem).into_owned(),
    })
    .map_err(|e| IdentityError::BadResponse(format!("encoding the request: {e}")))?;
    let started = Instant::now();
    let mut delay = Duration::from_secs(1);
    let response = loop {
        let last_error = match post_join(&client, &join.url, &body).await {
            Ok(response) => break response,
            Err(JoinAttempt::Final(e)) => return Err(e),
            Err(JoinAttempt::Retry(message)) => message,
        };
        if started.elapsed() + delay > join.timeout {
            return Err(IdentityError::GaveUp {
                url: join.url.clone(),
                elapsed: started.elapsed(),
                last_error,
            });
        }
        tracing::warn!(url = %join.url, "join failed, retrying in {delay:?}: {last_error}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    };
    let key_pem = key.private_key_to_pem_pkcs8()?;
    check_response(&key, &response)?;
    Ok(Identity {
        cert_pem: response.certificate.into_bytes(),
        key_pem,
        ca_pem: response.ca_certificate.into_bytes(),
    })
}

enum JoinAttempt {
    Retry(String),
    Final(IdentityError),
}

async fn post_join(
    client: &HttpClient,
    url: &str,
    body: &[u8],
) -> Result<JoinResponse, JoinAttempt> {
    let response = client
        .post_json(url, body.to_vec())
        .await
        .map_err(|e| JoinAttempt::Retry(e.to_string()))?;
    let status = response.status();
    let bytes = http_client::read_body_limited(response, MAX_JOIN_RESPONSE_BYTES)
        .await
        .map_err(JoinAttempt::Retry)?;
    if status.is_success() {
        return serde_json::from_slice::<JoinResponse>(&bytes).map_err(|e| {
            JoinAttempt::Final(IdentityError::BadResponse(format!(
                "a body that is not a join response: {e}"
            )))
        });
    }
    let message = serde_json::from_slice::<JoinErrorResponse>(&bytes)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned());
    if status.is_server_error() {
        return Err(JoinAttempt::Retry(format!("HTTP {status}: {message}")));
    }
    Err(JoinAttempt::Final(IdentityError::Refused {
        status: status.as_u16(),
        message,
    }))
}

/// The certificate must be for our key, and both PEM blocks must parse.
fn check_response(key: &PKey<Private>, response: &JoinResponse) -> Result<(), IdentityError> {
    let chain = X509::stack_from_pem(response.certificate.as_bytes())
        .map_err(|e| IdentityError::BadResponse(format!("an unreadable certificate: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| IdentityError::BadResponse("no certificate".into()))?;
    if !leaf.public_key()?.public_eq(key) {
        return Err(IdentityError::BadResponse(
            "a certificate for another key".into(),
        ));
    }
    let cas = X509::stack_from_pem(response.ca_certificate.as_bytes())
        .map_err(|e| IdentityError::BadResponse(format!("an unreadable CA certificate: {e}")))?;
    if cas.is_empty() {
        return Err(IdentityError::BadResponse("no CA certificate".into()));
    }
    Ok(())
}

pub fn generate_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

/// PEM CSR with CN = `host_name` and the addresses as SANs (IP SANs for IP addresses).
pub fn certificate_request(
    key: &PKey<Private>,
    host_name: &str,
    addresses: &[String],
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let mut request = X509ReqBuilder::new()?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, host_name)?;
    request.set_subject_name(&name.build())?;
    request.set_pubkey(key)?;
    if !addresses.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for address in addresses {
            if address.parse::<IpAddr>().is_ok() {
                san.ip(address);
            } else {
                san.dns(address);
            }
        }
        let mut extensions = Stack::new()?;
        extensions.push(san.build(&request.x509v3_context(None))?)?;
        request.add_extensions(&extensions)?;
    }
    request.sign(key, MessageDigest::sha256())?;
    request.build().to_pem()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::x509::X509Req;

    #[test]
    fn the_request_names_the_host_and_its_addresses() {
        let key = generate_key().unwrap();
        let pem = certificate_request(
            &key,
            "cp-1",
            &["10.0.0.2".to_string(), "cp-1.local".to_string()],
        )
        .unwrap();
        let request = X509Req::from_pem(&pem).unwrap();
        assert!(request.verify(&key).unwrap());
        let cn = request
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap()
            .data()
            .to_string()
            .unwrap();
        assert_eq!(cn, "cp-1");
        let extensions = request.extensions().unwrap();
        assert_eq!(extensions.len(), 1);
        let text = String::from_utf8(request.to_text().unwrap()).unwrap();
        assert!(text.contains("IP Address:10.0.0.2"), "{text}");
        assert!(text.contains("DNS:cp-1.local"), "{text}");
    }
}
