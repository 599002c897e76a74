//! serviceaccount-controller: every active namespace has a `default` ServiceAccount; one that
//! is deleted comes back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;

const QUEUE: &str = "serviceaccount";
const DEFAULT_ACCOUNT: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating the default ServiceAccount in {namespace}: {source}")]
    Create {
        namespace: String,
        source: kube::Error,
    },
}

/// Whether a namespace should have its default account: not while it is being deleted.
pub fn wants_default_account(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_none()
        && namespace
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|phase| phase != "Terminating")
}

pub async fn run(ctx: Arc<Context>) {
    let namespaces = Api::<Namespace>::all(ctx.client.clone());
    let accounts = Api::<ServiceAccount>::all(ctx.client.clone());
    let default_accounts =
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT_ACCOUNT}"));
    Controller::new(namespaces, watcher::Config::default())
        .watches(accounts, default_accounts, |account| {
            account
                .namespace()
                .map(|namespace| ObjectRef::<Namespace>::new(&namespace))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.sync(QUEUE);
    let result = ensure_default_account(&namespace, &ctx).await;
    timer.done(result.is_ok());
    result.map(|()| Action::await_change())
}

async fn ensure_default_account(namespace: &Namespace, ctx: &Context) -> Result<(), Error> {
    if !wants_default_account(namespace) {
        return Ok(());
    }
    let name = namespace.name_any();
    let api = Api::<ServiceAccount>::namespaced(ctx.client.clone(), &name);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_ACCOUNT.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => {
            tracing::info!(namespace = %name, "created the default ServiceAccount");
            Ok(())
        }
        // Already there, or the namespace began terminating meanwhile: nothing to do.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => Ok(()),
        Err(source) => Err(Error::Create {
            namespace: name,
            source,
        }),
    }
}

fn error_policy(_: Arc<Namespace>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "serviceaccount sync failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    #[test]
    fn terminating_namespaces_get_no_account() {
        let active = Namespace::default();
        assert!(wants_default_account(&active));
        let terminating = Namespace {
            status: Some(NamespaceStatus {
                phase: Some("Terminating".into()),
                ..NamespaceStatus::default()
            }),
            ..Namespace::default()
        };
        assert!(!wants_default_account(&terminating));
    }
}
