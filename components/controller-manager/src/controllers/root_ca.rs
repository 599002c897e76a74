//! root-ca-certificate-publisher-controller: every active namespace holds the
//! `kube-root-ca.crt` ConfigMap with the cluster's CA bundle, put back when changed or deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::controllers::serviceaccount::wants_default_account as is_active;

const QUEUE: &str = "root_ca_cert_publisher";
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {namespace}/{CONFIG_MAP}: {source}")]
    Write {
        namespace: String,
        source: kube::Error,
    },
}

struct Publisher {
    ctx: Arc<Context>,
    bundle: String,
}

/// The ConfigMap every namespace should hold.
pub fn desired(bundle: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.into()),
            annotations: Some(BTreeMap::from([(
                DESCRIPTION_ANNOTATION.to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), bundle.to_string())])),
        ..ConfigMap::default()
    }
}

pub async fn run(ctx: Arc<Context>) {
    let Some(bundle) = ctx.root_ca.clone() else {
        tracing::warn!(
            "no root CA (--root-ca-file, or the kubeconfig's CA): not publishing {CONFIG_MAP}"
        );
        return;
    };
    let namespaces = Api::<Namespace>::all(ctx.client.clone());
    let config_maps = Api::<ConfigMap>::all(ctx.client.clone());
    let ours = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}"));
    let publisher = Arc::new(Publisher { ctx, bundle });
    Controller::new(namespaces, watcher::Config::default())
        .watches(config_maps, ours, |config_map| {
            config_map
                .namespace()
                .map(|namespace| ObjectRef::<Namespace>::new(&namespace))
        })
        .run(reconcile, error_policy, publisher)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, publisher: Arc<Publisher>) -> Result<Action, Error> {
    let timer = publisher.ctx.metrics.sync(QUEUE);
    let result = publish(&namespace, &publisher).await;
    timer.done(result.is_ok());
    result.map(|()| Action::await_change())
}

async fn publish(namespace: &Namespace, publisher: &Publisher) -> Result<(), Error> {
    if !is_active(namespace) {
        return Ok(());
    }
    let name = namespace.name_any();
    let api = Api::<ConfigMap>::namespaced(publisher.ctx.client.clone(), &name);
    let write_error = |source| Error::Write {
        namespace: name.clone(),
        source,
    };
    let wanted = desired(&publisher.bundle);
    match api.get_opt(CONFIG_MAP).await.map_err(write_error)? {
        None => match api.create(&PostParams::default(), &wanted).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => Ok(()),
            Err(source) => Err(write_error(source)),
        },
        Some(current) if current.data == wanted.data => Ok(()),
        Some(mut current) => {
            // Only the data is ours to correct; a conflict means a newer version to look at.
            current.data = wanted.data;
            current
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            api.replace(CONFIG_MAP, &PostParams::default(), &current)
                .await
                .map(|_| ())
                .map_err(write_error)
        }
    }
}

fn error_policy(_: Arc<Namespace>, error: &Error, _: Arc<Publisher>) -> Action {
    tracing::warn!(%error, "root CA publish failed");
    Action::requeue(Duration::from_secs(5))
}

/// PEM text of DER certificates, as a CA bundle.
pub fn pem_bundle(certificates: &[Vec<u8>]) -> String {
    use base64::Engine;
    let mut pem = String::new();
    for der in certificates {
        let encoded = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_map_holds_the_bundle_under_ca_crt() {
        let config_map = desired("PEM");
        assert_eq!(config_map.metadata.name.as_deref(), Some(CONFIG_MAP));
        assert_eq!(config_map.data.unwrap()["ca.crt"], "PEM");
    }

    #[test]
    fn der_certificates_become_wrapped_pem() {
        let pem = pem_bundle(&[vec![0u8; 60], vec![1u8; 3]]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
        assert_eq!(lines[5], "AQEB");
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
    }
}
