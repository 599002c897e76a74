//! The operator's HTTPS endpoint for hosts: `POST /join` (a host trades its one-time token and
//! a certificate request for its certificate) and `GET /bundles/<version>.tar.zst` or `.tar.gz` (version
//! bundles, only to hosts presenting a certificate from the hosts CA). Also the hosts CA itself
//! and the operator's client identity for hostd.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hakube_hostd_api::join::{JoinErrorResponse, JoinRequest, JoinResponse, CONTENT_TYPE};
use hakube_operator_api::Host;
use hakube_pki::{Authority, KeyAndCert, LeafRequest, Usage};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The Secret (in the operator's namespace) holding the CA of every hostd and of this endpoint.
pub const HOSTS_CA_SECRET: &str = "hakube-hosts-ca";
/// Join tokens are Secrets named `join-<host>` carrying this label, with `token` in their data.
pub const JOIN_TOKEN_LABEL: &str = "hakube.io/join-token";
const HOST_CERT_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
const MAX_JOIN_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HostServiceError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("PKI: {0}")]
    Pki(#[from] hakube_pki::PkiError),
    #[error("TLS settings: {0}")]
    Tls(String),
    #[error("listening on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
}

/// The hosts CA, created in `namespace` on first start and reused after.
pub async fn hosts_ca(client: &Client, namespace: &str) -> Result<Authority, HostServiceError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(secret) = secrets.get_opt(HOSTS_CA_SECRET).await? {
        let data = crate::secrets::string_data(&secret);
        if let (Some(cert), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) {
            return Ok(Authority::from_pem(cert, key)?);
        }
    }
    let ca = Authority::generate("hakube-hosts-ca", Duration::from_secs(10 * 365 * 86_400))?;
    let pem = ca.to_pem()?;
    let secret = crate::secrets::tls_secret(HOSTS_CA_SECRET, namespace, &pem);
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(ca),
        // Another replica made it first: use theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => Box::pin(hosts_ca(client, namespace)).await,
        Err(e) => Err(e.into()),
    }
}

/// The operator's client identity towards hostd.
pub fn operator_identity(ca: &Authority) -> Result<KeyAndCert, HostServiceError> {
    Ok(ca.issue(&LeafRequest::new(
        hakube_hostd_api::OPERATOR_CLIENT_COMMON_NAME,
        Usage::Client,
        HOST_CERT_VALIDITY,
    ))?)
}

/// What the endpoint needs.
pub struct HostService {
    pub client: Client,
    pub namespace: String,
    pub ca: Arc<Authority>,
    pub bundle_dir: PathBuf,
}

/// Serves the endpoint on `address` with a certificate for `names` until the task is dropped.
pub async fn serve(
    service: Arc<HostService>,
    address: &str,
    names: &[IpAddr],
) -> Result<(), HostServiceError> {
    let tls = server_tls(&service.ca, names)?;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| HostServiceError::Listen {
            address: address.to_string(),
            source,
        })?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a host connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake with a host failed");
                    return;
                }
            };
            let authenticated = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let handler = service_fn(move |request| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(route(&service, request, authenticated).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), handler)
                .await
            {
                tracing::debug!(%peer, error = %e, "host connection ended");
            }
        });
    }
}

fn server_tls(ca: &Authority, names: &[IpAddr]) -> Result<rustls::ServerConfig, HostServiceError> {
    let tls = |e: &dyn std::fmt::Display| HostServiceError::Tls(e.to_string());
    let mut request = LeafRequest::new("hakube-operator", Usage::Server, HOST_CERT_VALIDITY);
    request.ip_addresses = names.to_vec();
    request.dns_names = vec!["localhost".into()];
    let leaf = ca.issue(&request)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut leaf.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&e))?;
    let key = rustls_pemfile::private_key(&mut leaf.key_pem.as_bytes())
        .map_err(|e| tls(&e))?
        .ok_or_else(|| HostServiceError::Tls("no private key".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.cert_pem()?.as_bytes()) {
        roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    // Joining hosts have no certificate yet; bundles are only served to those with one.
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

type Body = Full<Bytes>;

async fn route(
    service: &HostService,
    request: Request<Incoming>,
    authenticated: bool,
) -> Response<Body> {
    let path = request.uri().path().to_string();
    match (request.method(), path.as_str()) {
        (&Method::POST, "/join") => match join(service, request).await {
            Ok(answer) => json(StatusCode::OK, &answer),
            Err((status, message)) => {
                tracing::info!(%message, "join refused");
                json(status, &JoinErrorResponse { message })
            }
        },
        (&Method::GET, p) if p.starts_with("/bundles/") => {
            if !authenticated {
                return text(StatusCode::UNAUTHORIZED, "a host certificate is required");
            }
            bundle(service, &p["/bundles/".len()..]).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn join(
    service: &HostService,
    request: Request<Incoming>,
) -> Result<JoinResponse, (StatusCode, String)> {
    let body = Limited::new(request.into_body(), MAX_JOIN_BODY)
        .collect()
        .await
        .map_err(|e| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("reading the request: {e}"),
            )
        })?
        .to_bytes();
    let join: JoinRequest = serde_json::from_slice(&body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("malformed join request: {e}"),
        )
    })?;
    let unavailable = |e: kube::Error| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("kubernetes API: {e}"),
        )
    };
    let secrets: Api<Secret> = Api::namespaced(service.client.clone(), &service.namespace);
    let token_name = format!("join-{}", join.host_name);
    let forbidden = || {
        (
            StatusCode::FORBIDDEN,
            format!("no valid join token for host {:?}", join.host_name),
        )
    };
    let secret = secrets
        .get_opt(&token_name)
        .await
        .map_err(unavailable)?
        .ok_or_else(forbidden)?;
    let labelled = secret
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(JOIN_TOKEN_LABEL));
    let data = crate::secrets::string_data(&secret);
    let matches = data
        .get("token")
        .is_some_and(|t| constant_time_eq(t.as_bytes(), join.token.as_bytes()));
    if !labelled || !matches {
        return Err(forbidden());
    }
    let hosts: Api<Host> = Api::all(service.client.clone());
    let host = hosts
        .get_opt(&join.host_name)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("no Host {:?} in the inventory", join.host_name),
            )
        })?;
    let address: IpAddr = host.spec.address.parse().map_err(|_| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Host {:?} has no IP address", join.host_name),
        )
    })?;
    let mut leaf = LeafRequest::new(&join.host_name, Usage::ServerAndClient, HOST_CERT_VALIDITY);
    leaf.ip_addresses = vec![address];
    leaf.dns_names = vec![join.host_name.clone()];
    let certificate = service
        .ca
        .sign_request(join.csr.as_bytes(), &leaf)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("certificate request: {e}")))?;
    // One time: the token goes once it has been used.
    secrets
        .delete(&token_name, &DeleteParams::default())
        .await
        .map_err(unavailable)?;
    let ca_certificate = service
        .ca
        .cert_pem()
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(host = %join.host_name, "host joined");
    Ok(JoinResponse {
        certificate,
        ca_certificate,
    })
}

async fn bundle(service: &HostService, file: &str) -> Response<Body> {
    let Some(version) = hakube_hostd_api::bundle::version_of(file) else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    if !crate::bundles::is_version_name(version) {
        return text(StatusCode::BAD_REQUEST, "invalid version");
    }
    match tokio::fs::read(service.bundle_dir.join(file)).await {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(hakube_hostd_api::bundle::content_type(file)),
            );
            response
        }
        Err(_) => text(
            StatusCode::NOT_FOUND,
            &format!("no bundle for version {version}"),
        ),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_string())));
    *response.status_mut() = status;
    response
}

/// Join tokens for hosts, as `hakube up` (or an administrator) creates them.
pub fn join_token_secret(namespace: &str, host: &str, token: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("join-{host}")),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                JOIN_TOKEN_LABEL.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([
            ("token".to_string(), token.to_string()),
            ("host".to_string(), host.to_string()),
        ])),
        ..Default::default()
    }
}
