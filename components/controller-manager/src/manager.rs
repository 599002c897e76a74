//! The process: client, `/healthz` + `/metrics`, leader election, then every enabled
//! controller on the leader. Losing the lease ends the process, as upstream's does, so a
//! restarted replica starts again from a clean slate.

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::context::Context;
use crate::controllers::{self, SelectionError};
use crate::metrics::Metrics;
use crate::options::{Options, DEFAULT_SECURE_PORT};

const COMPONENT: &str = "kube-controller-manager";

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("--controllers: {0}")]
    Controllers(#[from] SelectionError),
    #[error("reading --root-ca-file {path}: {source}")]
    RootCa {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] hakube_runtime::client::ClientError),
    #[error(transparent)]
    Serving(#[from] hakube_runtime::serving::ServingError),
    #[error(transparent)]
    LeaderElection(#[from] hakube_runtime::leader_election::LeaderElectionError),
}

/// Runs the enabled controllers until leadership is lost (with `--leader-elect`) or forever.
pub async fn run(options: Options) -> Result<(), ManagerError> {
    let known = controllers::all();
    let enabled: Vec<_> = controllers::select(&known, &options.controllers)?
        .into_iter()
        .map(|d| (d.name, d.run))
        .collect();
    let config = hakube_runtime::client::config(options.component.kubeconfig.as_deref()).await?;
    let root_ca = match &options.root_ca_file {
        Some(path) => {
            Some(
                std::fs::read_to_string(path).map_err(|source| ManagerError::RootCa {
                    path: path.display().to_string(),
                    source,
                })?,
            )
        }
        None => config
            .root_cert
            .as_deref()
            .map(controllers::root_ca::pem_bundle),
    };
    let client = hakube_runtime::client::from_config(config)?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    hakube_runtime::serving::start(
        &options.component.serving,
        DEFAULT_SECURE_PORT,
        COMPONENT,
        Arc::new(registry),
    )
    .await?;
    let identity = hakube_runtime::leader_election::default_identity();
    let election = options.component.leader_election.clone();
    let ctx = Arc::new(Context {
        client: client.clone(),
        options: Arc::new(options),
        metrics,
        identity: identity.clone(),
        root_ca,
    });
    let leading = {
        let ctx = ctx.clone();
        async move {
            ctx.metrics.is_leader.set(1);
            let running = enabled.into_iter().map(|(name, run)| {
                tracing::info!(controller = name, "starting controller");
                tokio::spawn(run(ctx.clone()))
            });
            futures::future::join_all(running.collect::<Vec<_>>()).await;
        }
    };
    if election.leader_elect {
        hakube_runtime::leader_election::LeaderElector::new(
            client, &election, COMPONENT, identity,
        )?
        .run(leading)
        .await?;
    } else {
        leading.await;
    }
    Ok(())
}
