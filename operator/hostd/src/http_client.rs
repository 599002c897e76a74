//! A minimal HTTP/1.1 client over one connection per request, for the join exchange, bundle
//! downloads and HTTP readiness probes. Each use needs its own TLS settings (join CA, mutual TLS
//! with the cluster CA, a probe's CA or none), which a plain connection per request keeps simple.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("connecting to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("connecting to {address}: timed out after {timeout:?}")]
    ConnectTimeout { address: String, timeout: Duration },
    #[error("TLS handshake with {address}: {source}")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    #[error("https URL {0:?} but no TLS settings")]
    NoTls(String),
    #[error("HTTP exchange with {address}: {source}")]
    Http {
        address: String,
        source: hyper::Error,
    },
    #[error("building the request to {url:?}: {source}")]
    Request { url: String, source: http::Error },
}

/// Where a URL points, taken apart for connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// Without the brackets of an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// The `Host` header value.
    pub authority: String,
    pub path_and_query: String,
}

pub fn parse_url(url: &str) -> Result<Target, HttpError> {
    let invalid = |reason: &str| HttpError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(invalid("the scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    Ok(Target {
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        host,
        authority: authority.as_str().to_string(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".to_string()),
    })
}

#[derive(Clone)]
pub struct HttpClient {
    tls: Option<Arc<ClientConfig>>,
    connect_timeout: Duration,
}

impl HttpClient {
    /// `tls`: the settings for https URLs; `None` allows plain http only.
    pub fn new(tls: Option<Arc<ClientConfig>>, connect_timeout: Duration) -> Self {
        HttpClient {
            tls,
            connect_timeout,
        }
    }

    pub async fn get(&self, url: &str) -> Result<Response<Incoming>, HttpError> {
        self.send(http::Method::GET, url, None).await
    }

    pub async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>, HttpError> {
        self.send(http::Method::POST, url, Some(body)).await
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        json_body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, HttpError> {
        let target = parse_url(url)?;
        let mut builder = Request::builder()
            .method(method)
            .uri(&target.path_and_query)
            .header(header::HOST, &target.authority)
            .header(
                header::USER_AGENT,
                concat!("hakube-hostd/", env!("CARGO_PKG_VERSION")),
            );
        if json_body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(json_body.unwrap_or_default())))
            .map_err(|source| HttpError::Request {
                url: url.to_string(),
                source,
            })?;
        let address = format!("{}:{}", target.host, target.port);
        let tcp = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => return Err(HttpError::Connect { address, source }),
            Err(_) => {
                return Err(HttpError::ConnectTimeout {
                    address,
                    timeout: self.connect_timeout,
                })
            }
        };
        if !target.https {
            return exchange(tcp, request, address).await;
        }
        let config = self
            .tls
            .clone()
            .ok_or_else(|| HttpError::NoTls(url.to_string()))?;
        let server_name =
            ServerName::try_from(target.host.clone()).map_err(|_| HttpError::InvalidUrl {
                url: url.to_string(),
                reason: "the host is not a valid TLS server name".into(),
            })?;
        let tls = match tokio::time::timeout(
            self.connect_timeout,
            TlsConnector::from(config).connect(server_name, tcp),
        )
        .await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(source)) => return Err(HttpError::Tls { address, source }),
            Err(_) => {
                return Err(HttpError::ConnectTimeout {
                    address,
                    timeout: self.connect_timeout,
                })
            }
        };
        exchange(tls, request, address).await
    }
}

async fn exchange<S>(
    stream: S,
    request: Request<Full<Bytes>>,
    address: String,
) -> Result<Response<Incoming>, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| HttpError::Http {
            address: address.clone(),
            source,
        })?;
    // The connection task ends when the response body has been read or dropped.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("HTTP connection ended: {e}");
        }
    });
    sender
        .send_request(request)
        .await
        .map_err(|source| HttpError::Http { address, source })
}

/// Reads a whole response body, at most `limit` bytes of it.
pub async fn read_body_limited(
    response: Response<Incoming>,
    limit: usize,
) -> Result<Bytes, String> {
    use http_body_util::BodyExt;
    http_body_util::Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| format!("reading the response body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart_for_connecting() {
        assert_eq!(
            parse_url("https://10.0.0.1:8443/join").unwrap(),
            Target {
                https: true,
                host: "10.0.0.1".into(),
                port: 8443,
                authority: "10.0.0.1:8443".into(),
                path_and_query: "/join".into(),
            }
        );
        let v6 = parse_url("http://[::1]/healthz?verbose").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.port, 80);
        assert_eq!(v6.path_and_query, "/healthz?verbose");
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("/relative").is_err());
    }
}
