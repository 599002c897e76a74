//! The HTTPS endpoint of a control-plane component: `/healthz` (and `/livez`, `/readyz`) and
//! `/metrics` in the Prometheus text format, on `--bind-address:--secure-port`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::options::ServingArgs;

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("--tls-cert-file and --tls-private-key-file must be given together")]
    HalfPair,
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, ServingError> {
    std::fs::read(path).map_err(|source| ServingError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The serving certificate and key: from files, or self-signed for `localhost` like upstream's
/// components do when given none.
fn certificate(
    args: &ServingArgs,
    component: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServingError> {
    match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(cert), Some(key)) => {
            let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                return Err(ServingError::Empty {
                    path: cert.clone(),
                    what: "PEM certificate",
                });
            }
            let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
                .ok()
                .flatten()
                .ok_or_else(|| ServingError::Empty {
                    path: key.clone(),
                    what: "PEM private key",
                })?;
            Ok((certs, key_der))
        }
        (None, None) => {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
            params
                .subject_alt_names
                .push(rcgen::SanType::IpAddress(args.bind_address));
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("{component}@localhost"));
            let key = rcgen::KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            let key_der = PrivateKeyDer::try_from(key.serialize_der())
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            Ok((vec![cert.der().clone()], key_der))
        }
        _ => Err(ServingError::HalfPair),
    }
}

fn tls_config(args: &ServingArgs, component: &str) -> Result<Arc<ServerConfig>, ServingError> {
    let (certs, key) = certificate(args, component)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn respond(request: &Request<hyper::body::Incoming>, metrics: &Registry) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    };
    match request.uri().path() {
        "/healthz" | "/livez" | "/readyz" => {
            text(StatusCode::OK, "text/plain; charset=utf-8", "ok".into())
        }
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, metrics) {
                Ok(()) => text(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(_) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "encoding metrics failed".into(),
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found".into(),
        ),
    }
}

/// Binds the secure port (component default when `--secure-port` is unset) and serves until the
/// process ends. Returns `Ok(None)` when serving is disabled (`--secure-port=0`), otherwise the
/// bound address; binding errors surface before anything is spawned.
pub async fn start(
    args: &ServingArgs,
    default_port: u16,
    component: &str,
    metrics: Arc<Registry>,
) -> Result<Option<SocketAddr>, ServingError> {
    let port = args.secure_port.unwrap_or(default_port);
    if port == 0 {
        return Ok(None);
    }
    let tls = TlsAcceptor::from(tls_config(args, component)?);
    let addr = SocketAddr::new(args.bind_address, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServingError::Listen { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(address = %bound, "serving securely /healthz and /metrics");
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection");
                    continue;
                }
            };
            let tls = tls.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let stream = match tls.accept(stream).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(&request, &metrics);
                    async move { Ok::<_, Infallible>(response) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "serving a connection");
                }
            });
        }
    });
    Ok(Some(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_builds_a_tls_config() {
        let args = ServingArgs {
            bind_address: "127.0.0.1".parse().unwrap(),
            secure_port: None,
            tls_cert_file: None,
            tls_private_key_file: None,
        };
        let config = tls_config(&args, "test").unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
    }

    #[test]
    fn half_a_certificate_pair_is_refused() {
        let args = ServingArgs {
            bind_address: "127.0.0.1".parse().unwrap(),
            secure_port: None,
            tls_cert_file: Some("/x.crt".into()),
            tls_private_key_file: None,
        };
        assert!(matches!(
            tls_config(&args, "t"),
            Err(ServingError::HalfPair)
        ));
    }
}
