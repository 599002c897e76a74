//! Client construction from `--kubeconfig`, as upstream components do it.

use std::path::Path;

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
}

/// A client from the given kubeconfig, or from the environment (in-cluster, `$KUBECONFIG`,
/// `~/.kube/config`) when none is given.
pub async fn build(kubeconfig: Option<&Path>) -> Result<kube::Client, ClientError> {
    Ok(kube::Client::try_from(config(kubeconfig).await?)?)
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
