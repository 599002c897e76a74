//! hakube-hostd: the per-host agent of hakube-operator.
//!
//! It serves `hakube.hostd.v1.Hostd` over mutual TLS, joins the cluster with a one-time token
//! to get its certificate, writes files, supervises units (which outlive hostd and are adopted
//! again when it restarts), fetches bundles and reports host facts. It runs nothing the
//! operator did not ask for.
#![forbid(unsafe_code)]

pub mod bundles;
pub mod facts;
pub mod files;
pub mod http_client;
pub mod identity;
pub mod options;
pub mod paths;
pub mod service;
pub mod tls;
pub mod units;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hakube_hostd_api::client::MAX_MESSAGE_BYTES;
use hakube_hostd_api::v1::hostd_server::HostdServer;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity as TonicIdentity, Server, ServerTlsConfig};

use crate::bundles::BundleStore;
use crate::facts::{FactsContext, FactsGatherer};
use crate::http_client::HttpClient;
use crate::identity::{IdentityError, JoinSettings, PkiPaths};
use crate::options::Options;
use crate::paths::AllowedPaths;
use crate::service::{ClientAuthorizer, HostdService};
use crate::units::{UnitContext, UnitManager};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("data directory {path:?}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Files(#[from] files::FileError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Bundles(#[from] bundles::BundleError),
    #[error("TLS settings: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("gRPC TLS settings: {0}")]
    ServerTls(tonic::transport::Error),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving gRPC: {0}")]
    Serve(tonic::transport::Error),
}

/// Runs hostd until `shutdown` resolves. Units keep running after it returns.
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let data_dir = std::path::absolute(&options.data_dir).map_err(|source| Error::DataDir {
        path: options.data_dir.clone(),
        source,
    })?;
    files::create_dir_with_mode(&data_dir, 0o755)?;
    let host_name = options
        .host_name
        .clone()
        .unwrap_or_else(facts::kernel_hostname);
    let advertise_addresses = if options.advertise_addresses.is_empty()
        && !options.listen_address.ip().is_unspecified()
    {
        vec![options.listen_address.ip().to_string()]
    } else {
        options.advertise_addresses.clone()
    };

    // The host programs' versions are asked now, while the host joins.
    let facts = Arc::new(FactsGatherer::new(FactsContext {
        host_name: host_name.clone(),
        advertise_addresses: advertise_addresses.clone(),
        data_dir: data_dir.clone(),
    }));
    tokio::spawn({
        let facts = facts.clone();
        async move { facts.programs().await }
    });

    let pki = PkiPaths::in_data_dir(&data_dir);
    let flag_files = match (
        &options.tls_cert_file,
        &options.tls_private_key_file,
        &options.client_ca_file,
    ) {
        (Some(cert), Some(key), Some(ca)) => Some((cert.clone(), key.clone(), ca.clone())),
        _ => None,
    };
    let cluster_ca_file = flag_files
        .as_ref()
        .map(|(_, _, ca)| ca.clone())
        .unwrap_or_else(|| pki.ca.clone());
    let join = match (
        &options.join_url,
        &options.join_token,
        &options.join_ca_file,
    ) {
        (Some(url), Some(token), Some(ca_file)) => Some(JoinSettings {
            url: url.clone(),
            token: token.clone(),
            ca_file: ca_file.clone(),
            host_name: host_name.clone(),
            addresses: advertise_addresses.clone(),
            timeout: Duration::from_secs(options.join_timeout_seconds),
        }),
        (Some(_), None, _) => return Err(IdentityError::MissingJoinFlag("join-token").into()),
        (Some(_), _, None) => return Err(IdentityError::MissingJoinFlag("join-ca-file").into()),
        _ => None,
    };
    let identity = identity::obtain(flag_files, &pki, join).await?;

    let units_dir = data_dir.join("units");
    let bundles_dir = data_dir.join("bundles");
    let allowed_prefixes = if options.allowed_paths.is_empty() {
        vec![data_dir.clone()]
    } else {
        options.allowed_paths.clone()
    };
    let allowed_paths = AllowedPaths::new(
        &allowed_prefixes,
        &[pki.dir.clone(), units_dir.clone(), bundles_dir.clone()],
    );

    let bundle_client = HttpClient::new(
        Some(tls::client_config(
            tls::ServerVerification::Ca(&identity.ca_pem),
            Some((&identity.cert_pem, &identity.key_pem)),
        )?),
        Duration::from_secs(10),
    );
    let bundles = Arc::new(BundleStore::open(bundles_dir.clone(), bundle_client)?);
    let units = Arc::new(
        UnitManager::start(UnitContext {
            units_dir,
            bundles_dir,
            cluster_ca_file: Some(cluster_ca_file),
            log_max_size: options.log_max_size,
            log_max_files: options.log_max_files,
        })
        .map_err(|source| Error::DataDir {
            path: data_dir.clone(),
            source,
        })?,
    );
    // Watches of the units end when hostd stops serving: a graceful shutdown waits for every
    // open stream.
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    let service = HostdService {
        data_dir,
        allowed_paths,
        units,
        bundles,
        facts,
        stopping: stopped,
    };
    let shutdown = async move {
        shutdown.await;
        let _ = stopping.send(true);
    };

    let server_tls = ServerTlsConfig::new()
        .identity(TonicIdentity::from_pem(
            &identity.cert_pem,
            &identity.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&identity.ca_pem));
    let incoming = TcpIncoming::bind(options.listen_address).map_err(|source| Error::Listen {
        address: options.listen_address,
        source,
    })?;
    tracing::info!(
        address = %options.listen_address,
        host = %host_name,
        authorized_clients = ?options.authorized_client_cns,
        "serving"
    );
    Server::builder()
        .tls_config(server_tls)
        .map_err(Error::ServerTls)?
        .add_service(InterceptedService::new(
            HostdServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ClientAuthorizer::new(options.authorized_client_cns.clone()),
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(Error::Serve)?;
    tracing::info!("stopped serving; units keep running");
    Ok(())
}
