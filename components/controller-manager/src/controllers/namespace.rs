//! namespace-controller: a namespace being deleted has everything in it deleted — every
//! namespaced resource type the API serves, custom resources included, found through
//! discovery — and once nothing is left its `kubernetes` finalizer is removed through the
//! `finalize` subresource, which lets the API server remove the namespace. Progress shows in
//! upstream's five namespace conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::discovery::{verbs, ApiCapabilities, Scope};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::controllers::discovery;

const QUEUE: &str = "namespace";
const FINALIZER: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating namespace {namespace}: {source}")]
    Update {
        namespace: String,
        source: kube::Error,
    },
}

/// Condition types the namespace controller maintains, with their all-is-well reason and
/// message, as upstream.
const CONDITIONS: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// What one deletion pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub discovery_error: Option<String>,
    pub delete_errors: Vec<String>,
    /// `resource.group` → objects left.
    pub remaining: BTreeMap<String, usize>,
    /// finalizer → objects holding it.
    pub finalizers: BTreeMap<String, usize>,
    /// Seconds the slowest remaining pod may still take.
    pub estimate: i64,
}

impl Outcome {
    pub fn done(&self) -> bool {
        self.discovery_error.is_none() && self.delete_errors.is_empty() && self.remaining.is_empty()
    }
}

/// The failing conditions (type, reason, message) an outcome calls for.
pub fn failures(outcome: &Outcome) -> Vec<(&'static str, &'static str, String)> {
    let mut failing = Vec::new();
    if let Some(error) = &outcome.discovery_error {
        failing.push((
            "NamespaceDeletionDiscoveryFailure",
            "DiscoveryFailed",
            error.clone(),
        ));
    }
    if !outcome.delete_errors.is_empty() {
        let mut errors = outcome.delete_errors.clone();
        errors.sort();
        failing.push((
            "NamespaceDeletionContentFailure",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                errors.len(),
                errors.join(", ")
            ),
        ));
    }
    if !outcome.remaining.is_empty() {
        let parts: Vec<String> = outcome
            .remaining
            .iter()
            .map(|(resource, n)| format!("{resource} has {n} resource instances"))
            .collect();
        failing.push((
            "NamespaceContentRemaining",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        ));
    }
    if !outcome.finalizers.is_empty() {
        let parts: Vec<String> = outcome
            .finalizers
            .iter()
            .map(|(finalizer, n)| format!("{finalizer} in {n} resource instances"))
            .collect();
        failing.push((
            "NamespaceFinalizersRemaining",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            ),
        ));
    }
    failing
}

/// The namespace's conditions updated for `outcome` (each of the five present, failing ones
/// True); `None` when nothing changes.
pub fn updated_conditions(
    current: &[NamespaceCondition],
    outcome: &Outcome,
    now: Timestamp,
) -> Option<Vec<NamespaceCondition>> {
    let failing = failures(outcome);
    let mut conditions = current.to_vec();
    let mut changed = false;
    for (type_, ok_reason, ok_message) in CONDITIONS {
        let (status, reason, message) = match failing.iter().find(|(t, _, _)| *t == type_) {
            Some((_, reason, message)) => ("True", reason.to_string(), message.clone()),
            None => ("False", ok_reason.to_string(), ok_message.to_string()),
        };
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NamespaceCondition {
                    type_: type_.to_string(),
                    status: status.to_string(),
                    reason: Some(reason),
                    message: Some(message),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
            Some(c) => {
                if c.status != status
                    || c.reason.as_deref() != Some(&reason)
                    || c.message.as_deref() != Some(&message)
                {
                    if c.status != status {
                        c.last_transition_time = Some(Time(now));
                    }
                    c.status = status.to_string();
                    c.reason = Some(reason);
                    c.message = Some(message);
                    changed = true;
                }
            }
        }
    }
    changed.then_some(conditions)
}

fn has_finalizer(namespace: &Namespace) -> bool {
    namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// Whether the namespace controller deletes objects of this type: namespaced, listable and
/// deletable.
pub fn namespaced_content(caps: &ApiCapabilities) -> bool {
    caps.scope == Scope::Namespaced
        && caps.supports_operation(verbs::LIST)
        && caps.supports_operation(verbs::DELETE)
}

pub async fn run(ctx: Arc<Context>) {
    let namespaces = Api::<Namespace>::all(ctx.client.clone());
    let config = controller::Config::default().concurrency(ctx.options.concurrency.namespace);
    Controller::new(namespaces, watcher::Config::default())
        .with_config(config)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if namespace.metadata.deletion_timestamp.is_none() || !has_finalizer(&namespace) {
        // Looked at again every --namespace-sync-period, as upstream's resync does.
        return Ok(Action::requeue(ctx.options.namespace_sync_period));
    }
    let timer = ctx.metrics.sync(QUEUE);
    let result = delete_namespace(&namespace, &ctx).await;
    timer.done(result.is_ok());
    result
}

async fn delete_namespace(namespace: &Namespace, ctx: &Context) -> Result<Action, Error> {
    let name = namespace.name_any();
    let outcome = delete_content(&ctx.client, &name).await;
    let api = Api::<Namespace>::all(ctx.client.clone());
    let update = |source| Error::Update {
        namespace: name.clone(),
        source,
    };
    let current = namespace
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(conditions) = updated_conditions(&current, &outcome, Timestamp::now()) {
        let mut updated = namespace.clone();
        updated
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(conditions);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(source) => return Err(update(source)),
        }
    }
    if !outcome.done() {
        let wait = Duration::from_secs((outcome.estimate / 2 + 1).clamp(1, 30) as u64);
        tracing::info!(namespace = %name, ?wait, remaining = ?outcome.remaining, "content remains; checking again");
        return Ok(Action::requeue(wait));
    }
    // Read afresh: the finalize call replaces the whole finalizer list.
    let Some(latest) = api.get_opt(&name).await.map_err(update)? else {
        return Ok(Action::await_change());
    };
    let mut finalized = latest.clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(
            spec.finalizers
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect(),
        );
    }
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace content gone; finalized");
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(source) => Err(update(source)),
    }
}

/// Deletes every namespaced object in `namespace` and counts what is left.
async fn delete_content(client: &kube::Client, namespace: &str) -> Outcome {
    let mut outcome = Outcome::default();
    // What discovery found is deleted even when some groups failed; the failure is reported
    // and keeps the namespace from being finalized.
    let discovered = match discovery::preferred_resources(client).await {
        Ok(discovered) => discovered,
        Err(error) => {
            outcome.discovery_error = Some(error.to_string());
            return outcome;
        }
    };
    outcome.discovery_error = discovered.failure_message();
    let resources = discovered
        .resources
        .into_iter()
        .filter(|(_, caps)| namespaced_content(caps));
    for (resource, caps) in resources {
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource);
        let label = format!("{}.{}", resource.plural, resource.group);
        let deleted = if caps.supports_operation(verbs::DELETE_COLLECTION) {
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await
                .map(|_| ())
        } else {
            delete_each(&api).await
        };
        if let Err(error) = deleted {
            outcome.delete_errors.push(format!("{label}: {error}"));
        }
        match api.list_metadata(&ListParams::default()).await {
            Ok(left) if !left.items.is_empty() => {
                outcome.remaining.insert(label, left.items.len());
                for item in &left.items {
                    for finalizer in item.finalizers() {
                        *outcome.finalizers.entry(finalizer.clone()).or_default() += 1;
                    }
                    let grace = item.metadata.deletion_grace_period_seconds.unwrap_or(0);
                    outcome.estimate = outcome.estimate.max(grace);
                }
            }
            Ok(_) => {}
            Err(error) => outcome.delete_errors.push(format!("{label}: {error}")),
        }
    }
    outcome
}

async fn delete_each(api: &Api<DynamicObject>) -> Result<(), kube::Error> {
    for item in api.list_metadata(&ListParams::default()).await?.items {
        match api
            .delete(&item.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn error_policy(_: Arc<Namespace>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "namespace sync failed");
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_content_shows_in_the_conditions() {
        let outcome = Outcome {
            remaining: BTreeMap::from([
                ("pods.".to_string(), 2),
                ("widgets.example.com".to_string(), 1),
            ]),
            finalizers: BTreeMap::from([("example.com/hold".to_string(), 1)]),
            ..Outcome::default()
        };
        assert!(!outcome.done());
        let conditions = updated_conditions(&[], &outcome, Timestamp::now()).unwrap();
        assert_eq!(conditions.len(), 5);
        let remaining = conditions
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .unwrap();
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances")
        );
        let finalizers = conditions
            .iter()
            .find(|c| c.type_ == "NamespaceFinalizersRemaining")
            .unwrap();
        assert_eq!(
            finalizers.message.as_deref(),
            Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        );
        let discovered = conditions
            .iter()
            .find(|c| c.type_ == "NamespaceDeletionDiscoveryFailure")
            .unwrap();
        assert_eq!(
            (discovered.status.as_str(), discovered.reason.as_deref()),
            ("False", Some("ResourcesDiscovered"))
        );
        // The same outcome again changes nothing; an empty one flips them to False.
        assert!(updated_conditions(&conditions, &outcome, Timestamp::now()).is_none());
        let cleared =
            updated_conditions(&conditions, &Outcome::default(), Timestamp::now()).unwrap();
        assert!(cleared.iter().all(|c| c.status == "False"));
    }

    #[test]
    fn delete_errors_are_summed_up() {
        let outcome = Outcome {
            delete_errors: vec!["b: no".into(), "a: denied".into()],
            ..Outcome::default()
        };
        let failing = failures(&outcome);
        assert_eq!(
            failing[0].2,
            "Failed to delete all resource types, 2 remaining: a: denied, b: no"
        );
    }
}
