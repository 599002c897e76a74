//! resourcequota-controller: every ResourceQuota's status — `hard` as its spec says, and `used`
//! for each resource it limits, counted by the rules of `hakube_quota` from what the namespace
//! holds. Usage is recalculated when counted objects change and every
//! `--resource-quota-sync-period`, which also corrects charges the API server's quota admission
//! made for objects whose write then failed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hakube_quota::{source_of, usage, Amount, Observed, Source};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
    ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;

const QUEUE: &str = "resourcequota_primary";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing {what} in {namespace}: {source}")]
    List {
        what: String,
        namespace: String,
        source: kube::Error,
    },
    #[error("finding the API of {resource}: {source}")]
    Discovery {
        resource: String,
        source: kube::Error,
    },
    #[error("writing the status of ResourceQuota {name}: {source}")]
    Status { name: String, source: kube::Error },
}

fn same_amounts(a: &BTreeMap<String, Quantity>, b: &BTreeMap<String, Quantity>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|w| {
                Amount::of(v).map(|x| x.canonical()) == Amount::of(w).map(|x| x.canonical())
            })
        })
}

/// The status to write, or `None` when the quota already shows it.
pub fn desired_status(
    quota: &ResourceQuota,
    used: BTreeMap<String, Quantity>,
) -> Option<ResourceQuotaStatus> {
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let current = quota.status.clone().unwrap_or_default();
    if same_amounts(&current.hard.unwrap_or_default(), &hard)
        && same_amounts(&current.used.unwrap_or_default(), &used)
    {
        return None;
    }
    Some(ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    })
}

fn in_namespace(
    store: &Store<ResourceQuota>,
    namespace: Option<String>,
) -> Vec<ObjectRef<ResourceQuota>> {
    store
        .state()
        .iter()
        .filter(|q| q.namespace() == namespace)
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<ResourceQuota>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let wc = watcher::Config::default;
    let mapper = move |store: Store<ResourceQuota>| {
        move |namespace: Option<String>| in_namespace(&store, namespace)
    };
    let (pods, services, claims, maps, secrets, rcs, quotas) = (
        mapper(store.clone()),
        mapper(store.clone()),
        mapper(store.clone()),
        mapper(store.clone()),
        mapper(store.clone()),
        mapper(store.clone()),
        mapper(store),
    );
    let concurrency = ctx.options.concurrency.resource_quota;
    controller
        .watches(Api::<Pod>::all(client.clone()), wc(), move |o| {
            pods(o.namespace())
        })
        .watches(Api::<Service>::all(client.clone()), wc(), move |o| {
            services(o.namespace())
        })
        .watches(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            wc(),
            move |o| claims(o.namespace()),
        )
        .watches(Api::<ConfigMap>::all(client.clone()), wc(), move |o| {
            maps(o.namespace())
        })
        .watches(Api::<Secret>::all(client.clone()), wc(), move |o| {
            secrets(o.namespace())
        })
        .watches(
            Api::<ReplicationController>::all(client.clone()),
            wc(),
            move |o| rcs(o.namespace()),
        )
        // Another quota of the namespace counts under `resourcequotas`.
        .watches(Api::<ResourceQuota>::all(client.clone()), wc(), move |o| {
            quotas(o.namespace())
        })
        .with_config(
            Config::default()
                .concurrency(concurrency)
                .debounce(Duration::from_millis(200)),
        )
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.sync(QUEUE);
    let result = sync(&quota, &ctx).await;
    timer.done(result.is_ok());
    result.map(|()| Action::requeue(ctx.options.resource_quota_sync_period))
}

/// The API resource to count `plural` of `group` by, found through discovery.
async fn api_resource(
    client: &kube::Client,
    group: &str,
    plural: &str,
) -> Result<Option<ApiResource>, kube::Error> {
    if group.is_empty() {
        return Ok(Some(ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: String::new(),
            plural: plural.into(),
        }));
    }
    let api_group = match kube::discovery::group(client, group).await {
        Ok(found) => found,
        // A group the server does not serve: nothing of it to count.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(api_group
        .recommended_resources()
        .into_iter()
        .map(|(resource, _)| resource)
        .find(|r| r.plural == plural))
}

async fn observe(ctx: &Context, namespace: &str, quota: &ResourceQuota) -> Result<Observed, Error> {
    let client = &ctx.client;
    let sources: Vec<Source> = {
        let mut s: Vec<Source> = quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .into_iter()
            .flat_map(|h| h.keys())
            .filter_map(|k| source_of(k))
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let list_error = |what: &str| {
        let what = what.to_string();
        let namespace = namespace.to_string();
        move |source| Error::List {
            what,
            namespace,
            source,
        }
    };
    let mut observed = Observed::default();
    let mut apis: HashMap<(String, String), Option<ApiResource>> = HashMap::new();
    for source in sources {
        match source {
            Source::Pods => {
                observed.pods = Api::<Pod>::namespaced(client.clone(), namespace)
                    .list(&ListParams::default())
                    .await
                    .map_err(list_error("pods"))?
                    .items;
            }
            Source::Services => {
                observed.services = Api::<Service>::namespaced(client.clone(), namespace)
                    .list(&ListParams::default())
                    .await
                    .map_err(list_error("services"))?
                    .items;
            }
            Source::Claims => {
                observed.claims =
                    Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
                        .list(&ListParams::default())
                        .await
                        .map_err(list_error("persistentvolumeclaims"))?
                        .items;
            }
            Source::Objects(group, plural) => {
                let key = (group.clone(), plural.clone());
                if !apis.contains_key(&key) {
                    let found = api_resource(client, &group, &plural)
                        .await
                        .map_err(|source| Error::Discovery {
                            resource: format!("{plural}.{group}"),
                            source,
                        })?;
                    apis.insert(key.clone(), found);
                }
                let Some(Some(resource)) = apis.get(&key) else {
                    continue;
                };
                let api =
                    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, resource);
                let count = api
                    .list_metadata(&ListParams::default())
                    .await
                    .map_err(list_error(&plural))?
                    .items
                    .len();
                observed.object_counts.insert(key, count as i64);
            }
        }
    }
    Ok(observed)
}

async fn sync(quota: &ResourceQuota, ctx: &Context) -> Result<(), Error> {
    let namespace = quota.namespace().unwrap_or_default();
    let observed = observe(ctx, &namespace, quota).await?;
    let used = usage(quota, &observed, k8s_openapi::jiff::Timestamp::now());
    let Some(status) = desired_status(quota, used) else {
        return Ok(());
    };
    let mut updated = quota.clone();
    updated.status = Some(status);
    let api = Api::<ResourceQuota>::namespaced(ctx.client.clone(), &namespace);
    api.replace_status(&quota.name_any(), &PostParams::default(), &updated)
        .await
        .map(|_| ())
        .map_err(|source| Error::Status {
            name: format!("{namespace}/{}", quota.name_any()),
            source,
        })
}

fn error_policy(_: Arc<ResourceQuota>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "resource quota sync failed");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceQuotaSpec;
    use kube::api::ObjectMeta;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    fn quota(hard: &[(&str, &str)]) -> ResourceQuota {
        ResourceQuota {
            metadata: ObjectMeta {
                name: Some("q".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ResourceQuotaSpec {
                hard: Some(hard.iter().map(|(k, v)| (k.to_string(), q(v))).collect()),
                ..ResourceQuotaSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn an_unchanged_status_is_not_rewritten() {
        let mut quota = quota(&[("pods", "10")]);
        let status =
            desired_status(&quota, BTreeMap::from([("pods".to_string(), q("2"))])).unwrap();
        quota.status = Some(status);
        assert!(desired_status(&quota, BTreeMap::from([("pods".to_string(), q("2"))])).is_none());
        assert!(desired_status(&quota, BTreeMap::from([("pods".to_string(), q("3"))])).is_some());
    }
}
