//! Client construction from `--kubeconfig`, as upstream components do it: every request and
//! watch of a component shares one HTTP/2 connection to the API server (client-go's transport),
//! with HTTP/2 pings to notice a server that went away silently.

use std::path::Path;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;
use tower::ServiceBuilder;

/// How often an idle connection is pinged, and how long a ping may go unanswered before the
/// connection is dropped and the next request dials again (client-go's `ReadIdleTimeout` and
/// `PingTimeout`).
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// Flow-control windows as client-go's: a stream may run 4 MiB ahead of its reader, so a large
/// list arrives without waiting on window updates; the connection's window is wide enough for
/// every stream at once.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("inferring a client configuration: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the client: {0}")]
    Build(#[from] kube::Error),
    #[error("tls-server-name {name:?} is not a valid server name: {source}")]
    ServerName {
        name: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
}

/// A client from the given kubeconfig, or from the environment (in-cluster, `$KUBECONFIG`,
/// `~/.kube/config`) when none is given.
pub async fn build(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    from_config(config(kubeconfig).await?)
}

/// The client configuration [`build`] uses.
pub async fn config(kubeconfig: Option<&Path>) -> Result<kube::Config, ClientError> {
    Ok(match kubeconfig {
        Some(path) => {
            let kubeconfig_error = |source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?
        }
        None => kube::Config::infer().await?,
    })
}

/// A kube client over HTTP/2 for `config`: its TLS identity and trust, its bearer token or
/// exec credentials, its default namespace, and kube's retries of 429, 503 and 504.
pub fn from_config(config: kube::Config) -> Result<kube::Client, ClientError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    let tls = match &config.tls_server_name {
        Some(name) => {
            let server_name =
                rustls::pki_types::ServerName::try_from(name.clone()).map_err(|source| {
                    ClientError::ServerName {
                        name: name.clone(),
                        source,
                    }
                })?;
            tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(server_name))
        }
        None => tls,
    };
    let connector = tls.enable_http2().wrap_connector(http);
    let http_client = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_INTERVAL)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(connector);
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::server::conn::auto;

    use super::*;

    /// What the test server saw: connections accepted, and each request's version, path and
    /// Authorization header.
    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        requests: Mutex<Vec<(http::Version, String, Option<String>)>>,
    }

    /// A TLS server on a free port offering h2 and HTTP/1.1, as the API server does; answers
    /// every request with an empty JSON list after a short pause, so requests overlap.
    async fn server(seen: Arc<Seen>) -> (std::net::SocketAddr, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = cert.pem();
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                seen.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let auth = req
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        seen.requests.lock().unwrap().push((
                            req.version(),
                            req.uri().path().to_string(),
                            auth,
                        ));
                        async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let body = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{},"items":[]}"#;
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, ca_pem)
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_http2_connection_with_the_configs_credentials() {
        let seen = Arc::new(Seen::default());
        let (addr, ca_pem) = server(seen.clone()).await;
        let mut config = kube::Config::new(format!("https://{addr}").parse().unwrap());
        config.root_cert = Some(vec![rustls_pemfile::certs(&mut ca_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()]);
        config.auth_info.token = Some("sekret".to_string().into());
        config.default_namespace = "team-a".to_string();
        let client = from_config(config).unwrap();

        let api = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::default_namespaced(client);
        let params = kube::api::ListParams::default();
        let lists = (0..32).map(|_| api.list(&params));
        for listed in futures::future::join_all(lists).await {
            assert!(listed.unwrap().items.is_empty());
        }

        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
        let requests = seen.requests.lock().unwrap();
        assert_eq!(requests.len(), 32);
        for (version, path, auth) in requests.iter() {
            assert_eq!(*version, http::Version::HTTP_2);
            assert_eq!(path, "/api/v1/namespaces/team-a/configmaps");
            assert_eq!(auth.as_deref(), Some("Bearer sekret"));
        }
    }

    #[test]
    fn an_invalid_tls_server_name_is_a_clear_error() {
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        config.tls_server_name = Some("not a name!".to_string());
        let Err(error) = from_config(config) else {
            panic!("a client for an invalid tls-server-name");
        };
        assert!(matches!(error, ClientError::ServerName { .. }), "{error}");
    }
}
