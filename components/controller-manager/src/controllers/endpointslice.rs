//! endpointslice-controller: the EndpointSlices of every Service with a selector. Each slice
//! holds endpoints of one address type that resolve to one set of ports, at most
//! `--max-endpoints-per-slice` of them; updates change existing slices in place and fill
//! slices that are being written anyway before creating new ones, as upstream's reconciler
//! does, so that a change to one pod rewrites one slice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use crate::context::Context;
use crate::controllers::endpoints::{HEADLESS_LABEL, TRIGGER_TIME_ANNOTATION};
use crate::controllers::service_pods::{self, PodToServices};

const QUEUE: &str = "endpoint_slice";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing the pods of Service {service}: {source}")]
    ListPods {
        service: String,
        source: kube::Error,
    },
    #[error("listing the EndpointSlices of Service {service}: {source}")]
    ListSlices {
        service: String,
        source: kube::Error,
    },
    #[error("writing an EndpointSlice of Service {service}: {source}")]
    Write {
        service: String,
        source: kube::Error,
    },
}

/// The address types a Service's slices carry: its IP families, else its cluster IP's, else
/// (headless without families) those of its pods.
fn address_types(service: &Service, pods: &[Pod]) -> BTreeSet<&'static str> {
    let family = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
    let spec = service.spec.as_ref();
    if let Some(families) = spec.and_then(|s| s.ip_families.as_ref()) {
        if !families.is_empty() {
            return families.iter().map(|f| family(f == "IPv6")).collect();
        }
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() && ip != "None" => {
            BTreeSet::from([family(service_pods::is_ipv6(ip))])
        }
        _ => pods
            .iter()
            .flat_map(service_pods::pod_ips)
            .map(|ip| family(service_pods::is_ipv6(&ip)))
            .collect(),
    }
}

/// The ports `pod` serves for `service`, each named targetPort resolved on this pod; ports the
/// pod lacks are left out.
fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|port| {
            let number = service_pods::find_port(pod, port)?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: port.protocol.clone(),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// Upstream's podToEndpoint: ready = serving and not terminating (or publishNotReadyAddresses).
fn pod_endpoint(service: &Service, pod: &Pod, ip: String, zone: Option<String>) -> Endpoint {
    let serving = service_pods::is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let publish_not_ready = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish_not_ready || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        zone,
        hostname: service_pods::should_set_hostname(pod, service)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.namespace(),
            name: Some(pod.name_any()),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

/// Endpoints that share an address type and a port set belong in the same slices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SliceKey {
    address_type: String,
    ports: String,
}

fn slice_key(address_type: &str, ports: &[EndpointPort]) -> SliceKey {
    let mut ports: Vec<String> = ports
        .iter()
        .map(|p| serde_json::to_string(p).unwrap_or_default())
        .collect();
    ports.sort();
    SliceKey {
        address_type: address_type.to_string(),
        ports: ports.join(","),
    }
}

/// An endpoint's identity within its slice group: its pod, else its address.
fn endpoint_key(endpoint: &Endpoint) -> String {
    match endpoint.target_ref.as_ref().and_then(|r| r.uid.as_deref()) {
        Some(uid) => format!("pod/{uid}/{}", endpoint.addresses.join(",")),
        None => endpoint.addresses.join(","),
    }
}

/// Every endpoint the Service should have, grouped by slice key. `zone_of` answers a node's
/// zone, `None` when the node is unknown; such pods wait (upstream retries them later).
pub struct Desired {
    pub groups: BTreeMap<SliceKey, (Vec<EndpointPort>, BTreeMap<String, Endpoint>)>,
    pub unknown_nodes: bool,
}

pub fn desired_endpoints(
    service: &Service,
    pods: &[Pod],
    zone_of: impl Fn(&str) -> Option<Option<String>>,
) -> Desired {
    let mut groups: BTreeMap<SliceKey, (Vec<EndpointPort>, BTreeMap<String, Endpoint>)> =
        BTreeMap::new();
    let mut unknown_nodes = false;
    let types = address_types(service, pods);
    let headless_without_ports = service_pods::is_headless(service)
        && service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_none_or(Vec::is_empty);
    for pod in pods {
        // Terminating pods stay, marked terminating, so consumers can drain them.
        if !service_pods::should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let zone = match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(node) if !node.is_empty() => match zone_of(node) {
                Some(zone) => zone,
                None => {
                    unknown_nodes = true;
                    continue;
                }
            },
            _ => None,
        };
        let ports = endpoint_ports(service, pod);
        if ports.is_empty() && !headless_without_ports {
            continue;
        }
        for address_type in &types {
            let want_v6 = *address_type == "IPv6";
            let Some(ip) = service_pods::pod_ips(pod)
                .into_iter()
                .find(|ip| service_pods::is_ipv6(ip) == want_v6)
            else {
                continue;
            };
            let endpoint = pod_endpoint(service, pod, ip, zone.clone());
            let group = groups
                .entry(slice_key(address_type, &ports))
                .or_insert_with(|| (ports.clone(), BTreeMap::new()));
            group.1.insert(endpoint_key(&endpoint), endpoint);
        }
    }
    Desired {
        groups,
        unknown_nodes,
    }
}

/// The labels of a Service's slices: the Service's own, the service name and the manager.
fn slice_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), service.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    if service_pods::is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

fn owner_reference(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.name_any(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The writes that bring the existing slices to the desired endpoints.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

fn new_slice(service: &Service, key: &SliceKey, ports: &[EndpointPort]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", service.name_any())),
            namespace: service.namespace(),
            owner_references: Some(vec![owner_reference(service)]),
            ..ObjectMeta::default()
        },
        address_type: key.address_type.clone(),
        ports: Some(ports.to_vec()),
        endpoints: Vec::new(),
    }
}

/// Upstream's reconcile: keep each endpoint in the slice it is in (updating it there when it
/// changed), drop the ones no longer wanted, put new ones first into slices that are written
/// anyway, then into an unchanged slice they all fit in, and only then into new slices; a
/// slice that would be deleted while another is created is reused instead.
pub fn plan(
    service: &Service,
    desired: &Desired,
    existing: Vec<EndpointSlice>,
    max_per_slice: usize,
) -> Plan {
    let max = max_per_slice.max(1);
    let labels = slice_labels(service);
    let mut result = Plan::default();
    let mut existing_by_key: BTreeMap<SliceKey, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        let key = slice_key(
            &slice.address_type,
            slice.ports.as_deref().unwrap_or_default(),
        );
        if desired.groups.contains_key(&key) {
            existing_by_key.entry(key).or_default().push(slice);
        } else {
            result.delete.push(slice);
        }
    }
    for (key, (ports, wanted)) in &desired.groups {
        let mut remaining = wanted.clone();
        let mut to_update: Vec<EndpointSlice> = Vec::new();
        let mut unchanged: Vec<EndpointSlice> = Vec::new();
        for mut slice in existing_by_key.remove(key).unwrap_or_default() {
            let before = slice.endpoints.len();
            let mut changed = false;
            let mut kept = Vec::with_capacity(before);
            for endpoint in std::mem::take(&mut slice.endpoints) {
                match remaining.remove(&endpoint_key(&endpoint)) {
                    Some(wanted) => {
                        changed |= wanted != endpoint;
                        kept.push(wanted);
                    }
                    None => changed = true,
                }
            }
            slice.endpoints = kept;
            if slice.endpoints.is_empty() {
                result.delete.push(slice);
            } else if changed || slice.labels() != &labels {
                to_update.push(slice);
            } else {
                unchanged.push(slice);
            }
        }
        // Fill the slices being written anyway, fullest first.
        to_update.sort_by_key(|s| std::cmp::Reverse(s.endpoints.len()));
        for slice in &mut to_update {
            while slice.endpoints.len() < max {
                let Some((_, endpoint)) = remaining.pop_first() else {
                    break;
                };
                slice.endpoints.push(endpoint);
            }
        }
        // What is left fits into one unchanged slice? Then that one, the fullest that fits.
        if !remaining.is_empty() {
            let fits = unchanged
                .iter()
                .enumerate()
                .filter(|(_, s)| s.endpoints.len() + remaining.len() <= max)
                .max_by_key(|(_, s)| s.endpoints.len())
                .map(|(i, _)| i);
            if let Some(index) = fits {
                let mut slice = unchanged.swap_remove(index);
                slice
                    .endpoints
                    .extend(std::mem::take(&mut remaining).into_values());
                to_update.push(slice);
            }
        }
        let mut creates = Vec::new();
        while !remaining.is_empty() {
            let mut slice = new_slice(service, key, ports);
            while slice.endpoints.len() < max {
                let Some((_, endpoint)) = remaining.pop_first() else {
                    break;
                };
                slice.endpoints.push(endpoint);
            }
            creates.push(slice);
        }
        result.update.extend(to_update);
        result.create.extend(creates);
    }
    // Leftover slices of a key that is no longer wanted: deleted, unless one can carry a
    // slice that would be created.
    for slices in existing_by_key.into_values() {
        result.delete.extend(slices);
    }
    let mut reusable = Vec::new();
    while let Some(create) = result.create.pop() {
        match result.delete.pop() {
            Some(mut old) => {
                old.address_type = create.address_type;
                old.ports = create.ports;
                old.endpoints = create.endpoints;
                reusable.push(old);
            }
            None => {
                result.create.push(create);
                break;
            }
        }
    }
    result.update.extend(reusable);
    for slice in result.create.iter_mut().chain(result.update.iter_mut()) {
        slice.metadata.labels = Some(labels.clone());
        let owners = slice.metadata.owner_references.get_or_insert_with(Vec::new);
        if !owners.iter().any(|o| o.controller == Some(true)) {
            owners.push(owner_reference(service));
        }
    }
    result
}

struct Shared {
    ctx: Arc<Context>,
    nodes: Store<Node>,
}

pub async fn run(ctx: Arc<Context>) {
    let (nodes, writer) = reflector::store();
    let node_events = reflector::reflector(
        writer,
        watcher(
            Api::<Node>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| async {});
    tokio::spawn(node_events);
    if nodes.wait_until_ready().await.is_err() {
        tracing::error!("the node cache stopped before it was filled");
        return;
    }
    let services = Api::<Service>::all(ctx.client.clone());
    let pods = Api::<Pod>::all(ctx.client.clone());
    let slices = Api::<EndpointSlice>::all(ctx.client.clone());
    let controller = Controller::new(services, watcher::Config::default());
    let mapper = PodToServices::new(controller.store());
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let concurrency = ctx.options.concurrency.endpointslice;
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        nodes,
    });
    controller
        .watches(pods, watcher::Config::default(), move |pod| {
            mapper.map(&pod)
        })
        .watches(slices, managed, |slice| {
            let service = slice.labels().get(SERVICE_NAME_LABEL)?.clone();
            Some(ObjectRef::<Service>::new(&service).within(&slice.namespace()?))
        })
        .with_config(
            Config::default()
                .concurrency(concurrency)
                .debounce(Duration::from_millis(100)),
        )
        .run(reconcile, error_policy, shared)
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                // The Service is gone: so are its slices (as the garbage collector would).
                if let Some((namespace, name)) = service_pods::missing_service(&result) {
                    if let Err(error) = delete_slices(&ctx, &namespace, &name).await {
                        tracing::warn!(%error, "endpointslice cleanup failed");
                    }
                }
            }
        })
        .await;
}

async fn managed_slices(
    ctx: &Context,
    namespace: &str,
    service: &str,
) -> Result<Vec<EndpointSlice>, Error> {
    let api = Api::<EndpointSlice>::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={MANAGED_BY}");
    api.list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .map_err(|source| Error::ListSlices {
            service: format!("{namespace}/{service}"),
            source,
        })
}

async fn delete_slices(ctx: &Context, namespace: &str, service: &str) -> Result<(), Error> {
    let api = Api::<EndpointSlice>::namespaced(ctx.client.clone(), namespace);
    for slice in managed_slices(ctx, namespace, service).await? {
        match api
            .delete(&slice.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(source) => {
                return Err(Error::Write {
                    service: format!("{namespace}/{service}"),
                    source,
                })
            }
        }
    }
    Ok(())
}

async fn reconcile(service: Arc<Service>, shared: Arc<Shared>) -> Result<Action, Error> {
    let timer = shared.ctx.metrics.sync(QUEUE);
    let result = sync(&service, &shared).await;
    timer.done(result.is_ok());
    result
}

async fn sync(service: &Service, shared: &Shared) -> Result<Action, Error> {
    let ctx = &shared.ctx;
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    // Services without a selector get their slices from elsewhere (the mirroring controller
    // or their owner); a Service being deleted loses them to the garbage collector.
    if service_pods::service_selector(service).is_none()
        || service.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let pods = service_pods::selected_pods(&ctx.client, service)
        .await
        .map_err(|source| Error::ListPods {
            service: key.clone(),
            source,
        })?;
    let desired = desired_endpoints(service, &pods, |node| {
        shared
            .nodes
            .get(&ObjectRef::new(node))
            .map(|n| n.labels().get(ZONE_LABEL).cloned())
    });
    // Read from the API server, not a cache: a slice created by the last sync is always seen,
    // so none is ever created twice.
    let existing = managed_slices(ctx, &namespace, &name).await?;
    let max = ctx.options.max_endpoints_per_slice;
    let mut plan = plan(service, &desired, existing, max);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let api = Api::<EndpointSlice>::namespaced(ctx.client.clone(), &namespace);
    let write_error = |source| Error::Write {
        service: key.clone(),
        source,
    };
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        slice
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(TRIGGER_TIME_ANNOTATION.into(), now.clone());
    }
    for slice in &plan.update {
        api.replace(&slice.name_any(), &PostParams::default(), slice)
            .await
            .map_err(write_error)?;
    }
    for slice in &plan.create {
        match api.create(&PostParams::default(), slice).await {
            Ok(_) => {}
            // The namespace is going away.
            Err(kube::Error::Api(s)) if s.code == 403 => return Ok(Action::await_change()),
            Err(source) => return Err(write_error(source)),
        }
    }
    for slice in &plan.delete {
        match api
            .delete(&slice.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(write_error(source)),
        }
    }
    if desired.unknown_nodes {
        // Some pods sit on nodes not yet seen: try them again shortly.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Service>, error: &Error, _: Arc<Shared>) -> Action {
    tracing::warn!(%error, "endpointslice sync failed");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::service_pods::tests::{pod, service, service_port};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn zone_a(_: &str) -> Option<Option<String>> {
        Some(Some("zone-a".into()))
    }

    fn web() -> Service {
        service(
            "web",
            &[("app", "web")],
            vec![service_port("http", 80, IntOrString::String("http".into()))],
        )
    }

    fn pods(n: usize, port: i32) -> Vec<Pod> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{port}-{i}"),
                    &format!("10.{}.0.{i}", port % 250),
                    true,
                    port,
                )
            })
            .collect()
    }

    /// Applies a plan to the slices, naming created ones, as the API server would.
    fn apply(existing: Vec<EndpointSlice>, plan: Plan) -> Vec<EndpointSlice> {
        let mut all: BTreeMap<String, EndpointSlice> =
            existing.into_iter().map(|s| (s.name_any(), s)).collect();
        for s in &plan.delete {
            all.remove(&s.name_any());
        }
        for s in plan.update {
            all.insert(s.name_any(), s);
        }
        for (i, mut s) in plan.create.into_iter().enumerate() {
            let name = format!("web-{}-{i}", all.len());
            s.metadata.name = Some(name.clone());
            all.insert(name, s);
        }
        all.into_values().collect()
    }

    #[test]
    fn pods_with_different_resolved_ports_go_to_different_slices() {
        let svc = web();
        let mut all = pods(2, 8080);
        all.extend(pods(1, 9090));
        let desired = desired_endpoints(&svc, &all, zone_a);
        let plan = plan(&svc, &desired, vec![], 100);
        assert_eq!(plan.create.len(), 2);
        let slice = plan
            .create
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == Some(8080))
            .unwrap();
        assert_eq!(slice.endpoints.len(), 2);
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Service", Some(true))
        );
        let endpoint = &slice.endpoints[0];
        assert_eq!(endpoint.zone.as_deref(), Some("zone-a"));
        assert_eq!(endpoint.node_name.as_deref(), Some("node-1"));
        assert_eq!(endpoint.conditions.as_ref().unwrap().ready, Some(true));
    }

    #[test]
    fn slices_hold_at_most_the_maximum_and_changes_touch_one_slice() {
        let svc = web();
        let mut all = pods(25, 8080);
        let desired = desired_endpoints(&svc, &all, zone_a);
        let first = plan(&svc, &desired, vec![], 10);
        assert_eq!(first.create.len(), 3);
        let slices = apply(vec![], first);
        // One pod turns unready: only its slice is rewritten.
        all[3] = pod("p8080-3", "10.80.0.3", false, 8080);
        let desired = desired_endpoints(&svc, &all, zone_a);
        let second = plan(&svc, &desired, slices.clone(), 10);
        assert_eq!(
            (
                second.create.len(),
                second.update.len(),
                second.delete.len()
            ),
            (0, 1, 0)
        );
        let updated = &second.update[0];
        let changed = updated
            .endpoints
            .iter()
            .find(|e| e.addresses[0] == "10.80.0.3")
            .unwrap();
        assert_eq!(changed.conditions.as_ref().unwrap().ready, Some(false));
        assert_eq!(changed.conditions.as_ref().unwrap().serving, Some(false));
        // Nothing changed: nothing written.
        let slices = apply(slices, second);
        let third = plan(&svc, &desired, slices.clone(), 10);
        assert!(third.create.is_empty() && third.update.is_empty() && third.delete.is_empty());
        // A new pod goes into an existing slice with room rather than a new one.
        all.push(pod("new", "10.80.1.1", true, 8080));
        let desired = desired_endpoints(&svc, &all, zone_a);
        let fourth = plan(&svc, &desired, slices, 10);
        assert!(fourth.create.is_empty());
        assert_eq!(fourth.update.len(), 1);
        assert!(fourth.update[0].endpoints.len() <= 10);
    }

    #[test]
    fn emptied_slices_are_deleted_or_reused() {
        let svc = web();
        let desired = desired_endpoints(&svc, &pods(2, 8080), zone_a);
        let slices = apply(vec![], plan(&svc, &desired, vec![], 100));
        let none = desired_endpoints(&svc, &[], zone_a);
        let gone = plan(&svc, &none, slices.clone(), 100);
        assert_eq!(gone.delete.len(), 1);
        // The pods now serve another port: the old slice is rewritten, not replaced.
        let moved = desired_endpoints(&svc, &pods(2, 9090), zone_a);
        let reused = plan(&svc, &moved, slices, 100);
        assert_eq!(
            (
                reused.create.len(),
                reused.update.len(),
                reused.delete.len()
            ),
            (0, 1, 0)
        );
        assert_eq!(reused.update[0].ports.as_ref().unwrap()[0].port, Some(9090));
    }

    #[test]
    fn terminating_pods_stay_as_terminating_and_unknown_nodes_wait() {
        let svc = web();
        let mut p = pod("a", "10.0.0.1", true, 80);
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        let desired = desired_endpoints(&svc, std::slice::from_ref(&p), zone_a);
        let (_, endpoints) = desired.groups.values().next().unwrap();
        let conditions = endpoints
            .values()
            .next()
            .unwrap()
            .conditions
            .clone()
            .unwrap();
        assert_eq!(
            (conditions.ready, conditions.serving, conditions.terminating),
            (Some(false), Some(true), Some(true))
        );
        let waiting = desired_endpoints(&svc, &[p], |_| None);
        assert!(waiting.groups.is_empty() && waiting.unknown_nodes);
    }

    #[test]
    fn ipv6_pods_make_ipv6_slices() {
        let mut svc = web();
        svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into()]);
        let desired = desired_endpoints(&svc, &[pod("a", "fd00::1", true, 80)], zone_a);
        let created = plan(&svc, &desired, vec![], 100).create;
        assert_eq!(created[0].address_type, "IPv6");
        assert_eq!(created[0].endpoints[0].addresses, vec!["fd00::1"]);
    }
}
