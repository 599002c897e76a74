//! hakube-apiserver: the Kubernetes REST and watch API over etcd.
#![forbid(unsafe_code)]
// Handlers return the Kubernetes Status they answer with; it is large by nature and only built
// on the error path.
#![allow(clippy::result_large_err)]

pub mod allocator;
pub mod apply;
pub mod authn;
pub mod bootstrap;
pub mod cache;
pub mod compaction;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod events;
pub mod fieldsel;
pub mod fieldvalidation;
pub mod inflight;
pub mod metrics;
pub mod namespaces;
pub mod objects;
pub mod openapi;
pub mod options;
pub mod priority;
pub mod quota;
pub mod registry;
pub mod response;
pub mod rest;
pub mod server;
pub mod storage;
pub mod subresources;
pub mod table;
pub mod tls;
pub mod tokens;
pub mod validate;
pub mod watch;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::allocator::ServiceRanges;
use crate::authn::Authenticator;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::storage::{EtcdTls, Store};

/// Everything a request handler needs.
pub struct State {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub authn: Authenticator,
    pub service_ranges: ServiceRanges,
    /// `host:port` clients are told to use, in `/api`'s serverAddressByClientCIDRs.
    pub server_address: String,
    pub anonymous_auth: bool,
    pub namespaces: Arc<namespaces::NamespaceCache>,
    /// The max-in-flight limits (`--max-requests-inflight`, `--max-mutating-requests-inflight`).
    pub inflight: inflight::Limiter,
    /// One watch cache per resource type, started on first use.
    pub caches: cache::Caches,
    /// Becomes true when the server starts shutting down; open watches end.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Whether the default namespaces, Service and PriorityClasses exist; until then the
    /// server is live but not ready.
    pub defaults_created: std::sync::atomic::AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid --{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Tokens(#[from] tokens::TokenError),
    #[error(transparent)]
    Authn(#[from] authn::AuthnError),
    #[error("connecting to etcd: {0}")]
    Store(#[from] storage::StoreError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl State {
    /// The objects of `segment` (in `namespace`, else all), from the watch cache, as upstream's
    /// admission plugins read their informers: no etcd read on every write. An object written a
    /// moment ago may be missing for as long as the cache takes to apply its event
    /// (milliseconds). etcd is read when the cache has not loaded in time.
    pub async fn cached_objects(
        &self,
        segment: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<storage::Stored>, storage::StoreError> {
        let prefix = self.store.collection(segment, namespace);
        let cache = self
            .caches
            .get(&self.store, &self.store.collection(segment, None));
        if cache.wait_for(0, cache::CATCH_UP).await {
            return Ok(cache
                .snapshot(&prefix)
                .0
                .iter()
                .map(|cached| cached.to_stored())
                .collect());
        }
        Ok(self.store.list(&prefix, None, 0, 0, false).await?.items)
    }
}

/// Resolves once the shutdown flag is set.
pub async fn stopping(rx: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any caller's next await.
    let _ = rx.wait_for(|stopping| *stopping).await.is_ok();
}

fn flag(flag: &'static str, reason: impl ToString) -> StartError {
    StartError::Flag {
        flag,
        reason: reason.to_string(),
    }
}

fn parse_port_range(raw: &str) -> Result<(u16, u16), StartError> {
    let (lo, hi) = raw
        .split_once('-')
        .ok_or_else(|| flag("service-node-port-range", "expected LOW-HIGH"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .map_err(|e| flag("service-node-port-range", e))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .map_err(|e| flag("service-node-port-range", e))?;
    if lo > hi {
        return Err(flag("service-node-port-range", "LOW is above HIGH"));
    }
    Ok((lo, hi))
}

/// Runs the server until `stop` fires (SIGTERM/SIGINT in the binary).
pub async fn run(
    opts: Options,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    if opts.authorization_mode != "AlwaysAllow" {
        return Err(flag(
            "authorization-mode",
            "only AlwaysAllow is implemented so far",
        ));
    }
    let cluster_ips: ipnet::Ipv4Net = opts
        .service_cluster_ip_range
        .parse()
        .map_err(|e| flag("service-cluster-ip-range", e))?;
    if cluster_ips.prefix_len() > 30 {
        return Err(flag("service-cluster-ip-range", "the range is too small"));
    }
    let service_ranges = ServiceRanges {
        cluster_ips,
        node_ports: parse_port_range(&opts.service_node_port_range)?,
    };
    let advertise = opts
        .advertise_address
        .unwrap_or(if opts.bind_address.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            opts.bind_address
        });
    let (cert, key) = match (&opts.tls_cert_file, &opts.tls_private_key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let names = [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ]
            .map(str::to_string);
            let ips = [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                advertise,
                IpAddr::V4(service_ranges.first_ip()),
            ];
            tls::ensure_self_signed(&opts.cert_dir, &names, &ips)?
        }
        _ => {
            return Err(flag(
                "tls-cert-file",
                "--tls-cert-file and --tls-private-key-file go together",
            ))
        }
    };
    let tls_config = tls::server_config(&cert, &key, opts.client_ca_file.as_deref())?;
    let static_tokens = match &opts.token_auth_file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| authn::AuthnError::TokenFile {
                    path: path.clone(),
                    source,
                })?;
            authn::parse_token_file(path, &text)?
        }
        None => Default::default(),
    };
    let issuer = if opts.service_account_signing_key_file.is_some()
        || !opts.service_account_key_file.is_empty()
    {
        Some(tokens::TokenIssuer::load(
            &opts.service_account_issuer,
            &opts.api_audiences,
            opts.service_account_signing_key_file.as_deref(),
            &opts.service_account_key_file,
            format!(
                "https://{}/openid/v1/jwks",
                SocketAddr::new(advertise, opts.secure_port)
            ),
        )?)
    } else {
        None
    };
    let metrics = Arc::new(Metrics::new());
    let etcd_tls = EtcdTls {
        ca_file: opts.etcd_cafile.clone(),
        cert_file: opts.etcd_certfile.clone(),
        key_file: opts.etcd_keyfile.clone(),
    };
    let store = Store::connect(
        &opts.etcd_servers,
        &opts.etcd_prefix,
        &etcd_tls,
        metrics.clone(),
    )
    .await?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let inflight = inflight::Limiter::new(
        opts.max_requests_inflight,
        opts.max_mutating_requests_inflight,
        metrics.clone(),
    );
    let state = Arc::new(State {
        store,
        metrics,
        authn: Authenticator::new(static_tokens, issuer),
        service_ranges,
        server_address: SocketAddr::new(advertise, opts.secure_port).to_string(),
        anonymous_auth: opts.anonymous_auth,
        namespaces: Arc::default(),
        inflight,
        caches: cache::Caches::new(opts.default_watch_cache_size),
        shutdown: shutdown_rx.clone(),
        defaults_created: Default::default(),
    });
    tokio::spawn(
        state
            .namespaces
            .clone()
            .run(state.store.clone(), shutdown_rx.clone()),
    );
    tokio::spawn(crd::run(state.clone()));
    tokio::spawn(compaction::run(
        state.store.etcd().kv_client(),
        compaction::key(&opts.etcd_prefix),
        opts.etcd_compaction_interval,
        shutdown_rx.clone(),
    ));
    let addr = SocketAddr::new(opts.bind_address, opts.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    tracing::info!(%addr, "serving");
    let reconciler = tokio::spawn(bootstrap::run(
        state.clone(),
        advertise.to_string(),
        opts.secure_port,
    ));
    let server = tokio::spawn(server::serve(
        state.clone(),
        listener,
        tls_config,
        opts.http2_max_streams_per_connection,
        shutdown_rx,
    ));
    stop.await;
    tracing::info!("shutdown requested");
    let _ = shutdown_tx.send(true);
    let _ = reconciler.await;
    let _ = server.await;
    Ok(())
}
