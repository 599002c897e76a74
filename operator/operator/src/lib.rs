//! hakube-operator: reconciles `Cluster` objects into running HA control planes on the hosts
//! their spec names, through each host's hakube-hostd. The decisions are pure (`render`,
//! `pki`, `plan`, `membership`); the controller reads the world, asks them for the next step,
//! takes it and reports status.
#![forbid(unsafe_code)]

pub mod authorities;
pub mod bundles;
pub mod control_plane;
pub mod controller;
pub mod hostsvc;
pub mod members;
pub mod membership;
pub mod metrics;
pub mod pki;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod secrets;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hakube_hostd_api::client::ClientTls;
use hakube_runtime::leader_election::{default_identity, LeaderElectionError, LeaderElector};
use hakube_runtime::options::LeaderElectionArgs;

/// The operator's flags.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "hakube-operator", version)]
pub struct Options {
    /// Kubeconfig of the management API; in-cluster or the default kubeconfig when unset.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The operator's namespace: the hosts CA and join tokens live here.
    #[arg(long, default_value = "hakube-system")]
    pub namespace: String,
    /// Where hosts reach the join and bundle endpoint.
    #[arg(long, default_value = "0.0.0.0:9444")]
    pub host_endpoint_bind_address: String,
    /// The addresses hosts use to reach the operator (in its serving certificate and in the
    /// bundle URLs hostd is given); the first is used for URLs.
    #[arg(long = "advertise-address", required = true)]
    pub advertise_addresses: Vec<IpAddr>,
    /// The directory of version bundles, `<version>.tar.gz`.
    #[arg(long)]
    pub bundle_dir: PathBuf,
    /// `/metrics` and `/healthz`, plain HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub metrics_bind_address: String,
    /// A control-plane or etcd host whose hostd does not answer or whose etcd member fails
    /// health checks for longer than this is dead, and its member is replaced from a spare.
    #[arg(long, default_value = "40s", value_parser = hakube_operator_api::validation::parse_duration)]
    pub host_failure_threshold: std::time::Duration,
    /// A host a change (a new version, renewed certificates, new flags) rolls through that is
    /// not healthy this long after its restart halts the rollout; the other hosts keep what
    /// they run.
    #[arg(long, default_value = "5m", value_parser = hakube_operator_api::validation::parse_duration)]
    pub rollout_host_timeout: std::time::Duration,
    /// Replicas elect one leader through a Lease (`hakube-operator` unless named); only it
    /// reconciles. Every replica serves the host endpoint.
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error(transparent)]
    HostService(#[from] hostsvc::HostServiceError),
    #[error(transparent)]
    LeaderElection(#[from] LeaderElectionError),
    #[error("metrics endpoint {address}: {source}")]
    Metrics {
        address: String,
        source: std::io::Error,
    },
}

/// Runs the operator until SIGTERM/SIGINT.
pub async fn run(options: Options) -> Result<(), RunError> {
    let config = match &options.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunError::Kubeconfig(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| RunError::Kubeconfig(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| RunError::Kubeconfig(e.to_string()))?,
    };
    let client = kube::Client::try_from(config).map_err(|e| RunError::Kubeconfig(e.to_string()))?;
    let ca = Arc::new(hostsvc::hosts_ca(&client, &options.namespace).await?);
    let identity = hostsvc::operator_identity(&ca)?;
    let hostd_tls = ClientTls {
        ca_pem: ca
            .cert_pem()
            .map_err(hostsvc::HostServiceError::from)?
            .into_bytes(),
        cert_pem: identity.cert_pem.into_bytes(),
        key_pem: identity.key_pem.into_bytes(),
        server_name: None,
    };
    let metrics = metrics::Metrics::default();
    let listener = tokio::net::TcpListener::bind(&options.metrics_bind_address)
        .await
        .map_err(|source| RunError::Metrics {
            address: options.metrics_bind_address.clone(),
            source,
        })?;
    tokio::spawn(metrics::serve(metrics.clone(), listener));

    let service = Arc::new(hostsvc::HostService {
        client: client.clone(),
        namespace: options.namespace.clone(),
        ca,
        bundle_dir: options.bundle_dir.clone(),
    });
    let bind = options.host_endpoint_bind_address.clone();
    let names = options.advertise_addresses.clone();
    let port = bind.rsplit(':').next().unwrap_or("9444").to_string();
    let host_endpoint = tokio::spawn(async move { hostsvc::serve(service, &bind, &names).await });
    let artifact_url = format!(
        "https://{}:{port}",
        render::url_host(options.advertise_addresses[0])
    );
    let ctx = Arc::new(controller::Context::new(
        client.clone(),
        hostd_tls,
        options.bundle_dir,
        artifact_url,
        metrics.clone(),
        options.host_failure_threshold,
        options.rollout_host_timeout,
    ));
    let reading = ctx.clone();
    tokio::task::spawn_blocking(move || reading.read_bundles());
    tracing::info!("hakube-operator running");
    let election = &options.leader_election;
    // A replica that loses its lease exits, as upstream controllers do: the next leader
    // starts from the observed state, and this one restarts as a candidate.
    let reconcile = async move {
        if !election.leader_elect {
            controller::run(ctx).await;
            return Ok(());
        }
        let elector = LeaderElector::new(client, election, "hakube-operator", default_identity())?;
        elector
            .run(async move {
                metrics.is_leader.set(1);
                controller::run(ctx).await;
            })
            .await
    };
    tokio::select! {
        led = reconcile => led.map_err(RunError::from),
        served = host_endpoint => match served {
            Ok(Err(e)) => Err(e.into()),
            _ => Ok(()),
        },
    }
}
