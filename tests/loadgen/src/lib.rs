//! Write load for the API-server benchmark: N concurrent creators of 1 KiB ConfigMaps over one
//! HTTP/2 connection to hakube-apiserver, and the same keys and sizes put straight into etcd at
//! the same concurrency, so the two rates come from one run on one machine. The watch-cache
//! benchmarks (lists, watch fan-out, memory) live in [`watchcache`].
#![forbid(unsafe_code)]

pub mod deployment;
pub mod pod;
pub mod scheduler;
pub mod watchcache;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} holds no usable PEM data")]
    Pem(String),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP/2: {0}")]
    Http(#[from] hyper::Error),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the server answered {code}: {body}")]
    Status { code: u16, body: String },
    #[error("the server did not negotiate HTTP/2")]
    NoHttp2,
    #[error("building a request: {0}")]
    Request(#[from] http::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Unexpected(String),
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency of every successful write.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn empty() -> Self {
        Outcome::default()
    }

    /// Two runs (rounds) as one.
    pub fn merge(mut self, other: Outcome) -> Outcome {
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self
    }

    pub fn writes(&self) -> u64 {
        self.latencies.len() as u64
    }

    pub fn rate(&self) -> f64 {
        self.writes() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

/// The `p` quantile (0..=1) of `samples`, nearest rank; zero when there are none.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The ConfigMap both sides write: 1 KiB of data.
pub fn configmap(name: &str, size: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "bench"},
        "data": {"payload": "x".repeat(size)},
    }))
    .unwrap_or_default()
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })
}

pub struct ApiTarget<'a> {
    pub host: &'a str,
    pub port: u16,
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// HTTP/2 flow-control windows a connection grants the server, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    pub stream: u32,
    pub connection: u32,
}

impl Windows {
    /// The write load's: answers are small (the connection window is hyper's default).
    pub const WRITES: Windows = Windows {
        stream: 1 << 20,
        connection: 5 << 20,
    };
    /// Go's HTTP/2 client's (so client-go's), for lists of tens of MiB and many watches.
    pub const READS: Windows = Windows {
        stream: 4 << 20,
        connection: 1 << 30,
    };
}

pub(crate) type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

pub(crate) async fn connect(target: &ApiTarget<'_>, windows: Windows) -> Result<Sender, LoadError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut read(target.ca)?.as_slice()).filter_map(Result::ok) {
        roots.add(cert)?;
    }
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(target.cert)?.as_slice())
        .filter_map(Result::ok)
        .collect();
    let key = rustls_pemfile::private_key(&mut read(target.key)?.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| LoadError::Pem(target.key.display().to_string()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect((target.host, target.port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(target.host.to_string())
        .map_err(|_| LoadError::Pem(format!("server name {}", target.host)))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(LoadError::NoHttp2);
    }
    let (sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(windows.stream)
            .initial_connection_window_size(windows.connection)
            .handshake(TokioIo::new(tls))
            .await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Creates `namespace` so the ConfigMaps have somewhere to go (409 if it exists is fine).
pub(crate) async fn ensure_namespace(
    sender: &mut Sender,
    authority: &str,
) -> Result<(), LoadError> {
    let body = br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench"}}"#;
    let req = http::Request::post(format!("https://{authority}/api/v1/namespaces"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body)))
        .map_err(|e| LoadError::Status {
            code: 0,
            body: e.to_string(),
        })?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let code = resp.status().as_u16();
    if code != 201 && code != 409 {
        let body = resp.into_body().collect().await?.to_bytes();
        return Err(LoadError::Status {
            code,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(())
}

async fn drive<F, Fut>(concurrency: usize, duration: Duration, op: F) -> Outcome
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let op = op.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(worker, n).await {
                    latencies.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies.extend(l);
        }
    }
    Outcome {
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies,
    }
}

/// Creates ConfigMaps through the API server with `concurrency` streams on one connection.
pub async fn run_apiserver(
    target: &ApiTarget<'_>,
    concurrency: usize,
    duration: Duration,
    size: usize,
    run_id: &str,
) -> Result<Outcome, LoadError> {
    let mut sender = connect(target, Windows::WRITES).await?;
    let authority = format!("{}:{}", target.host, target.port);
    ensure_namespace(&mut sender, &authority).await?;
    let url = Arc::new(format!(
        "https://{authority}/api/v1/namespaces/bench/configmaps"
    ));
    let run_id = Arc::new(run_id.to_string());
    Ok(drive(concurrency, duration, move |worker, n| {
        let mut sender = sender.clone();
        let url = url.clone();
        let body = configmap(&format!("{run_id}-w{worker}-{n}"), size);
        async move {
            let Ok(req) = http::Request::post(url.as_str())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
            else {
                return false;
            };
            if sender.ready().await.is_err() {
                return false;
            }
            match sender.send_request(req).await {
                Ok(resp) => {
                    let ok = resp.status().as_u16() == 201;
                    let _ = resp.into_body().collect().await;
                    ok
                }
                Err(_) => false,
            }
        }
    })
    .await)
}

/// How the raw etcd side writes each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdWrite {
    /// A plain put.
    Put,
    /// A transaction that puts only if the key does not exist: the API server's create.
    CreateTxn,
}

/// Writes the same keys and sizes straight into etcd with `concurrency` concurrent writers.
pub async fn run_etcd(
    endpoint: &str,
    mode: EtcdWrite,
    concurrency: usize,
    duration: Duration,
    size: usize,
    run_id: &str,
) -> Result<Outcome, LoadError> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let run_id = Arc::new(format!("{run_id}-{mode:?}"));
    Ok(drive(concurrency, duration, move |worker, n| {
        let mut kv = client.kv_client();
        let name = format!("{run_id}-w{worker}-{n}");
        let key = format!("/raw/configmaps/bench/{name}");
        let value = configmap(&name, size);
        async move {
            match mode {
                EtcdWrite::Put => kv.put(key, value, None).await.is_ok(),
                EtcdWrite::CreateTxn => {
                    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key.as_str(), value, None)]);
                    kv.txn(txn).await.is_ok_and(|r| r.succeeded())
                }
            }
        }
    })
    .await)
}
