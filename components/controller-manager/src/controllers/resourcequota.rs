//! resourcequota-controller: every ResourceQuota's status — `hard` as its spec says, and `used`
//! for each resource it limits: object counts (`pods`, `services`, `configmaps`,
//! `count/<resource>.<group>`, ...), the requests and limits of non-terminal pods, node ports
//! and load balancers of Services, and the storage claimed by PersistentVolumeClaims. Pod
//! usage honours the quota's scopes. Usage is recalculated when counted objects change and
//! every `--resource-quota-sync-period`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
    ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::controllers::quantity::Amount;

const QUEUE: &str = "resourcequota_primary";
const COMPUTE: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

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

/// Whether the pod still counts against quota: not finished, and not past its deletion.
pub fn pod_counts(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    match &pod.metadata.deletion_timestamp {
        Some(deleting) => deleting.0 > now,
        None => true,
    }
}

fn container_amounts(container: &Container, limits: bool) -> BTreeMap<String, Amount> {
    let resources = container.resources.clone().unwrap_or_default();
    let mut map: BTreeMap<String, Amount> = BTreeMap::new();
    let limit_map = resources.limits.unwrap_or_default();
    let source = if limits {
        limit_map.clone()
    } else {
        // Requests default to limits, as the API server's defaulting does.
        let mut requests = limit_map;
        requests.extend(resources.requests.unwrap_or_default());
        requests
    };
    for (name, quantity) in source {
        if let Some(amount) = Amount::of(&quantity) {
            map.insert(name, amount);
        }
    }
    map
}

fn add_into(total: &mut BTreeMap<String, Amount>, more: &BTreeMap<String, Amount>) {
    for (name, amount) in more {
        let sum = total.get(name).map_or(*amount, |t| t.plus(*amount));
        total.insert(name.clone(), sum);
    }
}

fn max_into(total: &mut BTreeMap<String, Amount>, more: &BTreeMap<String, Amount>) {
    for (name, amount) in more {
        let max = total.get(name).map_or(*amount, |t| t.max(*amount));
        total.insert(name.clone(), max);
    }
}

/// Upstream's PodRequests/PodLimits: the containers' sum, at least each init container (with
/// the sidecars started before it), plus sidecars, plus the pod overhead.
pub fn pod_resources(pod: &Pod, limits: bool) -> BTreeMap<String, Amount> {
    let Some(spec) = pod.spec.as_ref() else {
        return BTreeMap::new();
    };
    let mut total = BTreeMap::new();
    for container in &spec.containers {
        add_into(&mut total, &container_amounts(container, limits));
    }
    let mut sidecars = BTreeMap::new();
    let mut init_peak = BTreeMap::new();
    for init in spec.init_containers.iter().flatten() {
        let amounts = container_amounts(init, limits);
        if init.restart_policy.as_deref() == Some("Always") {
            add_into(&mut sidecars, &amounts);
            max_into(&mut init_peak, &sidecars);
        } else {
            let mut during = sidecars.clone();
            add_into(&mut during, &amounts);
            max_into(&mut init_peak, &during);
        }
    }
    add_into(&mut total, &sidecars);
    max_into(&mut total, &init_peak);
    let overhead: BTreeMap<String, Amount> = spec
        .overhead
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Amount::of(v)?)))
        .collect();
    add_into(&mut total, &overhead);
    total
}

/// What one counted pod uses, under every name quota may limit it by.
pub fn pod_usage(pod: &Pod) -> BTreeMap<String, Amount> {
    let mut usage = BTreeMap::from([
        ("pods".to_string(), Amount::count(1)),
        ("count/pods".to_string(), Amount::count(1)),
    ]);
    for (name, amount) in pod_resources(pod, false) {
        if COMPUTE.contains(&name.as_str()) || name.starts_with("hugepages-") {
            usage.insert(name.clone(), amount);
        }
        usage.insert(format!("requests.{name}"), amount);
    }
    for (name, amount) in pod_resources(pod, true) {
        if COMPUTE.contains(&name.as_str()) {
            usage.insert(format!("limits.{name}"), amount);
        }
    }
    usage
}

/// BestEffort QoS: no container asks for or is limited in cpu or memory.
fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let resources = c.resources.clone().unwrap_or_default();
            let has = |map: Option<BTreeMap<String, Quantity>>| {
                map.unwrap_or_default().iter().any(|(name, q)| {
                    (name == "cpu" || name == "memory")
                        && Amount::of(q).is_some_and(|a| !a.is_zero())
                })
            };
            !has(resources.requests) && !has(resources.limits)
        })
}

/// Whether `pod` is in one scope of a quota (`values` for PriorityClass selectors).
fn in_scope(pod: &Pod, scope: &str, operator: &str, values: &[String]) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    match scope {
        "Terminating" => spec.active_deadline_seconds.is_some_and(|s| s >= 0),
        "NotTerminating" => spec.active_deadline_seconds.is_none_or(|s| s < 0),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = spec.priority_class_name.unwrap_or_default();
            match operator {
                "In" => values.contains(&class),
                "NotIn" => !values.contains(&class),
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => {
            let affinity = spec.affinity.unwrap_or_default();
            let terms = affinity
                .pod_affinity
                .map(|a| {
                    let required = a
                        .required_during_scheduling_ignored_during_execution
                        .unwrap_or_default();
                    let preferred = a
                        .preferred_during_scheduling_ignored_during_execution
                        .unwrap_or_default()
                        .into_iter()
                        .map(|w| w.pod_affinity_term);
                    required.into_iter().chain(preferred).collect::<Vec<_>>()
                })
                .unwrap_or_default()
                .into_iter()
                .chain(
                    affinity
                        .pod_anti_affinity
                        .map(|a| {
                            let required = a
                                .required_during_scheduling_ignored_during_execution
                                .unwrap_or_default();
                            let preferred = a
                                .preferred_during_scheduling_ignored_during_execution
                                .unwrap_or_default()
                                .into_iter()
                                .map(|w| w.pod_affinity_term);
                            required.into_iter().chain(preferred).collect::<Vec<_>>()
                        })
                        .unwrap_or_default(),
                );
            let mut terms = terms;
            terms.any(|t| {
                t.namespace_selector.is_some() || t.namespaces.is_some_and(|n| !n.is_empty())
            })
        }
        _ => false,
    }
}

/// Whether the pod falls under every scope of the quota (`spec.scopes` and the scope selector).
pub fn pod_matches_scopes(pod: &Pod, quota: &ResourceQuota) -> bool {
    let spec = quota.spec.clone().unwrap_or_default();
    let plain = spec
        .scopes
        .iter()
        .flatten()
        .all(|scope| in_scope(pod, scope, "Exists", &[]));
    let selected = spec
        .scope_selector
        .and_then(|s| s.match_expressions)
        .unwrap_or_default()
        .iter()
        .all(|e| {
            let values = e.values.clone().unwrap_or_default();
            let inside = in_scope(pod, &e.scope_name, &e.operator, &values);
            // Only PriorityClass reads the operator itself; the others take Exists/DoesNotExist.
            if e.scope_name != "PriorityClass" && e.operator == "DoesNotExist" {
                !inside
            } else {
                inside
            }
        });
    plain && selected
}

fn service_usage(service: &Service) -> BTreeMap<String, Amount> {
    let spec = service.spec.clone().unwrap_or_default();
    let ports = spec.ports.clone().unwrap_or_default();
    let mut usage = BTreeMap::from([
        ("services".to_string(), Amount::count(1)),
        ("count/services".to_string(), Amount::count(1)),
    ]);
    match spec.type_.as_deref() {
        Some("NodePort") => {
            usage.insert(
                "services.nodeports".into(),
                Amount::count(ports.len() as i64),
            );
        }
        Some("LoadBalancer") => {
            // Without node port allocation only explicitly requested node ports count.
            let node_ports = if spec.allocate_load_balancer_node_ports == Some(false) {
                ports
                    .iter()
                    .filter(|p| p.node_port.is_some_and(|n| n != 0))
                    .count()
            } else {
                ports.len()
            };
            usage.insert(
                "services.nodeports".into(),
                Amount::count(node_ports as i64),
            );
            usage.insert("services.loadbalancers".into(), Amount::count(1));
        }
        _ => {}
    }
    usage
}

fn pvc_usage(claim: &PersistentVolumeClaim) -> BTreeMap<String, Amount> {
    let spec = claim.spec.clone().unwrap_or_default();
    let mut usage = BTreeMap::from([
        ("persistentvolumeclaims".to_string(), Amount::count(1)),
        ("count/persistentvolumeclaims".to_string(), Amount::count(1)),
    ]);
    let class = spec.storage_class_name.unwrap_or_default();
    if !class.is_empty() {
        usage.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Amount::count(1),
        );
    }
    let storage = spec
        .resources
        .and_then(|r| r.requests)
        .and_then(|r| r.get("storage").and_then(Amount::of));
    if let Some(storage) = storage {
        usage.insert("requests.storage".into(), storage);
        if !class.is_empty() {
            usage.insert(
                format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                storage,
            );
        }
    }
    usage
}

/// Which source a limited resource name is counted from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Pods,
    Services,
    Claims,
    /// Objects counted by their API resource: (group, plural).
    Objects(String, String),
}

pub fn source_of(resource: &str) -> Option<Source> {
    let objects = |group: &str, plural: &str| Some(Source::Objects(group.into(), plural.into()));
    match resource {
        "pods" | "count/pods" => Some(Source::Pods),
        "services" | "count/services" | "services.loadbalancers" | "services.nodeports" => {
            Some(Source::Services)
        }
        "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage" => {
            Some(Source::Claims)
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            objects("", resource)
        }
        r if r.contains(STORAGE_CLASS_SUFFIX) => Some(Source::Claims),
        r if COMPUTE.contains(&r) || r.starts_with("requests.") || r.starts_with("limits.") => {
            Some(Source::Pods)
        }
        r if r.starts_with("hugepages-") => Some(Source::Pods),
        r => {
            let counted = r.strip_prefix("count/")?;
            match counted.split_once('.') {
                Some((plural, group)) => objects(group, plural),
                None => objects("", counted),
            }
        }
    }
}

/// What the namespace holds of everything the quota limits.
#[derive(Debug, Default)]
pub struct Observed {
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub object_counts: BTreeMap<(String, String), i64>,
}

/// `used` for every resource of `hard` that quota tracks (untracked names are left out).
pub fn usage(
    quota: &ResourceQuota,
    observed: &Observed,
    now: k8s_openapi::jiff::Timestamp,
) -> BTreeMap<String, Quantity> {
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let mut totals: BTreeMap<String, Amount> = BTreeMap::new();
    for pod in &observed.pods {
        if pod_counts(pod, now) && pod_matches_scopes(pod, quota) {
            add_into(&mut totals, &pod_usage(pod));
        }
    }
    for service in &observed.services {
        add_into(&mut totals, &service_usage(service));
    }
    for claim in &observed.claims {
        add_into(&mut totals, &pvc_usage(claim));
    }
    hard.keys()
        .filter_map(|name| {
            let amount = match source_of(name)? {
                Source::Objects(group, plural) => {
                    Amount::count(*observed.object_counts.get(&(group, plural))?)
                }
                _ => totals.get(name).copied().unwrap_or_else(Amount::zero),
            };
            Some((name.clone(), amount.quantity()))
        })
        .collect()
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
    use k8s_openapi::api::core::v1::{
        PodSpec, PodStatus, ResourceQuotaSpec, ResourceRequirements, ScopeSelector,
        ScopedResourceSelectorRequirement, ServicePort, ServiceSpec,
    };
    use kube::api::ObjectMeta;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    fn pod(name: &str, cpu: Option<&str>, memory: Option<&str>, phase: &str) -> Pod {
        let mut requests = BTreeMap::new();
        let mut limits = BTreeMap::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".to_string(), q(cpu));
            limits.insert("cpu".to_string(), q(cpu));
        }
        if let Some(memory) = memory {
            requests.insert("memory".to_string(), q(memory));
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(requests),
                        limits: Some(limits),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        }
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

    fn used(quota: &ResourceQuota, observed: &Observed) -> BTreeMap<String, String> {
        usage(quota, observed, k8s_openapi::jiff::Timestamp::now())
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }

    #[test]
    fn non_terminal_pods_add_up_their_requests_and_limits() {
        let observed = Observed {
            pods: vec![
                pod("a", Some("100m"), Some("64Mi"), "Running"),
                pod("b", Some("1"), Some("64Mi"), "Pending"),
                pod("done", Some("4"), Some("1Gi"), "Succeeded"),
            ],
            ..Observed::default()
        };
        let quota = quota(&[
            ("pods", "10"),
            ("requests.cpu", "4"),
            ("cpu", "4"),
            ("limits.cpu", "4"),
            ("requests.memory", "1Gi"),
            ("limits.memory", "1Gi"),
            ("no-such-resource", "1"),
        ]);
        let used = used(&quota, &observed);
        assert_eq!(used["pods"], "2");
        assert_eq!(used["requests.cpu"], "1100m");
        assert_eq!(used["cpu"], "1100m");
        assert_eq!(used["limits.cpu"], "1100m");
        assert_eq!(used["requests.memory"], "128Mi");
        assert_eq!(used["limits.memory"], "0");
        assert!(!used.contains_key("no-such-resource"));
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let service = |type_: &str, ports: usize| Service {
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                ports: Some(vec![ServicePort::default(); ports]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let observed = Observed {
            services: vec![
                service("ClusterIP", 1),
                service("NodePort", 2),
                service("LoadBalancer", 1),
            ],
            ..Observed::default()
        };
        let quota = quota(&[
            ("services", "10"),
            ("services.nodeports", "10"),
            ("services.loadbalancers", "10"),
        ]);
        let used = used(&quota, &observed);
        assert_eq!(
            (
                used["services"].as_str(),
                used["services.nodeports"].as_str(),
                used["services.loadbalancers"].as_str()
            ),
            ("3", "3", "1")
        );
    }

    #[test]
    fn object_counts_come_from_their_api_resources() {
        assert_eq!(
            source_of("count/deployments.apps"),
            Some(Source::Objects("apps".into(), "deployments".into()))
        );
        assert_eq!(
            source_of("count/secrets"),
            Some(Source::Objects("".into(), "secrets".into()))
        );
        assert_eq!(
            source_of("configmaps"),
            Some(Source::Objects("".into(), "configmaps".into()))
        );
        assert_eq!(source_of("requests.storage"), Some(Source::Claims));
        assert_eq!(source_of("requests.nvidia.com/gpu"), Some(Source::Pods));
        let observed = Observed {
            object_counts: BTreeMap::from([(("apps".to_string(), "deployments".to_string()), 2)]),
            ..Observed::default()
        };
        let used = used(&quota(&[("count/deployments.apps", "5")]), &observed);
        assert_eq!(used["count/deployments.apps"], "2");
    }

    #[test]
    fn scopes_pick_the_pods_that_count() {
        let best_effort = pod("be", None, None, "Running");
        let burstable = pod("b", Some("100m"), None, "Running");
        let mut scoped = quota(&[("pods", "10")]);
        scoped.spec.as_mut().unwrap().scopes = Some(vec!["BestEffort".into()]);
        assert!(pod_matches_scopes(&best_effort, &scoped));
        assert!(!pod_matches_scopes(&burstable, &scoped));
        let mut by_class = quota(&[("pods", "10")]);
        by_class.spec.as_mut().unwrap().scope_selector = Some(ScopeSelector {
            match_expressions: Some(vec![ScopedResourceSelectorRequirement {
                scope_name: "PriorityClass".into(),
                operator: "In".into(),
                values: Some(vec!["high".into()]),
            }]),
        });
        let mut high = burstable.clone();
        high.spec.as_mut().unwrap().priority_class_name = Some("high".into());
        assert!(pod_matches_scopes(&high, &by_class));
        assert!(!pod_matches_scopes(&burstable, &by_class));
        let mut terminating = quota(&[("pods", "10")]);
        terminating.spec.as_mut().unwrap().scopes = Some(vec!["Terminating".into()]);
        let mut deadline = burstable.clone();
        deadline.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        assert!(pod_matches_scopes(&deadline, &terminating));
        assert!(!pod_matches_scopes(&burstable, &terminating));
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
