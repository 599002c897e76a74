//! endpoints-controller: every Service with a selector has an Endpoints object of its name
//! listing the selected pods' addresses (ready ones in `addresses`, the others in
//! `notReadyAddresses`) and the ports each pod serves, repacked into subsets of identical
//! port sets as upstream does. Services without a selector keep hand-made Endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::controllers::service_pods::{self, PodToServices};

const QUEUE: &str = "endpoint";
/// Endpoints objects hold at most this many addresses; upstream truncates beyond it.
pub const MAX_CAPACITY: usize = 1000;
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing the pods of Service {service}: {source}")]
    ListPods {
        service: String,
        source: kube::Error,
    },
    #[error("reading {name}: {source}")]
    Get { name: String, source: kube::Error },
    #[error("writing Endpoints {name}: {source}")]
    Write { name: String, source: kube::Error },
    #[error("deleting Endpoints {name}: {source}")]
    Delete { name: String, source: kube::Error },
}

/// The address of `pod` for `service`: the pod IP of the Service's (first) IP family.
fn address_for(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let ips = service_pods::pod_ips(pod);
    let spec = service.spec.as_ref();
    let want_v6 = match spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        Some(family) => family == "IPv6",
        None => match spec.and_then(|s| s.cluster_ip.as_deref()) {
            Some(ip) if !ip.is_empty() && ip != "None" => service_pods::is_ipv6(ip),
            _ => ips.first().is_some_and(|ip| service_pods::is_ipv6(ip)),
        },
    };
    let ip = ips
        .into_iter()
        .find(|ip| service_pods::is_ipv6(ip) == want_v6)?;
    Some(EndpointAddress {
        ip,
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
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
    })
}

/// One subset per (pod, port) as upstream builds them before repacking.
fn raw_subsets(service: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.unwrap_or_default();
    let mut subsets = Vec::new();
    for pod in pods {
        if !service_pods::should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(address) = address_for(service, pod) else {
            tracing::debug!(pod = %pod.name_any(), "no pod IP of the Service's family");
            continue;
        };
        let ready = tolerate_unready || service_pods::is_pod_ready(pod);
        let subset = |ports: Option<Vec<EndpointPort>>| EndpointSubset {
            addresses: ready.then(|| vec![address.clone()]),
            not_ready_addresses: (!ready).then(|| vec![address.clone()]),
            ports,
        };
        if ports.is_empty() {
            // Headless services may have no ports: their pods are listed all the same.
            if service_pods::is_headless(service) {
                subsets.push(subset(None));
            }
            continue;
        }
        for port in &ports {
            let Some(number) = service_pods::find_port(pod, port) else {
                tracing::debug!(pod = %pod.name_any(), port = ?port.name, "pod lacks the named port");
                continue;
            };
            subsets.push(subset(Some(vec![EndpointPort {
                name: port.name.clone(),
                port: number,
                protocol: port.protocol.clone(),
                app_protocol: port.app_protocol.clone(),
            }])));
        }
    }
    subsets
}

type AddressKey = (String, Option<String>);
type PortKey = (Option<String>, i32, Option<String>, Option<String>);

fn address_key(address: &EndpointAddress) -> AddressKey {
    (
        address.ip.clone(),
        address.target_ref.as_ref().and_then(|r| r.uid.clone()),
    )
}

fn port_key(port: &EndpointPort) -> PortKey {
    (
        port.name.clone(),
        port.port,
        port.protocol.clone(),
        port.app_protocol.clone(),
    )
}

/// Upstream's RepackSubsets: addresses that offer exactly the same ports share one subset; an
/// address both ready and not ready for a port counts as ready. The result is sorted.
pub fn repack(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    // A port-less subset keeps its addresses under a sentinel port.
    const NO_PORT: PortKey = (None, -1, None, None);
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut ports: BTreeMap<PortKey, EndpointPort> = BTreeMap::new();
    let mut by_port: BTreeMap<PortKey, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    for subset in subsets {
        let keys: Vec<PortKey> = match subset.ports.as_deref() {
            None | Some([]) => vec![NO_PORT],
            Some(list) => list
                .iter()
                .map(|p| {
                    let key = port_key(p);
                    ports.insert(key.clone(), p.clone());
                    key
                })
                .collect(),
        };
        let ready = subset.addresses.into_iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .into_iter()
            .flatten()
            .map(|a| (a, false));
        for (address, is_ready) in ready.chain(not_ready) {
            let key = address_key(&address);
            addresses.entry(key.clone()).or_insert(address);
            for port in &keys {
                let entry = by_port
                    .entry(port.clone())
                    .or_default()
                    .entry(key.clone())
                    .or_insert(is_ready);
                *entry |= is_ready;
            }
        }
    }
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, set) in by_port {
        let group = groups.entry(set.into_iter().collect()).or_default();
        if port != NO_PORT {
            group.push(port);
        }
    }
    let mut repacked: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(set, port_keys)| {
            let pick = |want: bool| {
                let list: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, ready)| *ready == want)
                    .filter_map(|(key, _)| addresses.get(key).cloned())
                    .collect();
                (!list.is_empty()).then_some(list)
            };
            let port_list: Vec<EndpointPort> = port_keys
                .iter()
                .filter_map(|k| ports.get(k).cloned())
                .collect();
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!port_list.is_empty()).then_some(port_list),
            }
        })
        .collect();
    repacked.sort_by_key(subset_sort_key);
    repacked
}

fn subset_sort_key(subset: &EndpointSubset) -> String {
    serde_json::to_string(subset).unwrap_or_default()
}

/// Upstream's truncateEndpoints: keeps at most [`MAX_CAPACITY`] addresses, ready ones first,
/// each subset keeping its share. Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = ready > MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for subset in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            count(&subset.addresses)
        } else {
            count(&subset.not_ready_addresses)
        };
        // Shares round up, so the last subsets may get fewer than their share.
        let share = (in_subset * max).div_ceil(total).min(room);
        if truncate_ready {
            if let Some(list) = subset.addresses.as_mut() {
                list.truncate(share);
            }
            subset.not_ready_addresses = None;
        } else if let Some(list) = subset.not_ready_addresses.as_mut() {
            list.truncate(share);
        }
        room -= if truncate_ready {
            count(&subset.addresses)
        } else {
            count(&subset.not_ready_addresses)
        };
    }
    true
}

/// The latest change among the Service and its pods that this sync reflects: a pod's Ready
/// transition (or creation), or the Service's creation.
fn trigger_time(service: &Service, pods: &[Pod]) -> Option<Time> {
    let pod_times = pods.iter().filter_map(|pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| pod.metadata.creation_timestamp.clone())
    });
    pod_times
        .chain(service.metadata.creation_timestamp.clone())
        .max_by_key(|t| t.0)
}

/// The labels the Endpoints object carries: the Service's, plus skip-mirror (these Endpoints
/// already have slices of their own) and the headless marker for headless Services.
fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    labels.insert(SKIP_MIRROR_LABEL.into(), "true".into());
    if service_pods::is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// What the Service's Endpoints should become given the selected pods and what exists now;
/// `None` when the existing object is already right.
pub fn desired_endpoints(
    service: &Service,
    pods: &[Pod],
    current: Option<&Endpoints>,
) -> Option<Endpoints> {
    let mut subsets = repack(raw_subsets(service, pods));
    let over_capacity = truncate(&mut subsets);
    let labels = desired_labels(service);
    if let Some(current) = current {
        let current_over = current
            .annotations()
            .get(OVER_CAPACITY_ANNOTATION)
            .is_some_and(|v| v == "truncated");
        let current_subsets = current.subsets.clone().unwrap_or_default();
        if current_subsets == subsets
            && current.labels() == &labels
            && current_over == over_capacity
        {
            return None;
        }
    }
    let mut meta = current
        .map(|c| c.metadata.clone())
        .unwrap_or_else(|| ObjectMeta {
            name: Some(service.name_any()),
            namespace: service.namespace(),
            ..ObjectMeta::default()
        });
    let annotations = meta.annotations.get_or_insert_with(BTreeMap::new);
    match trigger_time(service, pods) {
        Some(time) => annotations.insert(TRIGGER_TIME_ANNOTATION.into(), time.0.to_string()),
        None => annotations.remove(TRIGGER_TIME_ANNOTATION),
    };
    if over_capacity {
        annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    meta.labels = Some(labels);
    Some(Endpoints {
        metadata: meta,
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

/// Whether Endpoints without a Service (or whose Service lost its selector) are ours to
/// delete: the ones this controller wrote, marked skip-mirror.
pub fn is_managed(endpoints: &Endpoints) -> bool {
    endpoints
        .labels()
        .get(SKIP_MIRROR_LABEL)
        .is_some_and(|v| v == "true")
}

pub async fn run(ctx: Arc<Context>) {
    let services = Api::<Service>::all(ctx.client.clone());
    let pods = Api::<Pod>::all(ctx.client.clone());
    let endpoints = Api::<Endpoints>::all(ctx.client.clone());
    let controller = Controller::new(services.clone(), watcher::Config::default());
    let mapper = PodToServices::new(controller.store());
    controller
        // The main watch ignores deletions; this one makes a deleted Service's Endpoints go.
        .watches(services, watcher::Config::default(), |service| {
            Some(ObjectRef::from_obj(&service))
        })
        .watches(pods, watcher::Config::default(), move |pod| {
            mapper.map(&pod)
        })
        .watches(endpoints, watcher::Config::default(), |e| {
            Some(ObjectRef::<Service>::new(&e.name_any()).within(&e.namespace()?))
        })
        .with_config(
            Config::default()
                .concurrency(ctx.options.concurrency.endpoint)
                .debounce(Duration::from_millis(100)),
        )
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                // A trigger for a Service that no longer exists: its Endpoints go with it.
                if let Some((namespace, name)) = service_pods::missing_service(&result) {
                    if let Err(error) = delete_managed(&ctx, &namespace, &name).await {
                        tracing::warn!(%error, "endpoints cleanup failed");
                    }
                }
            }
        })
        .await;
}

async fn delete_managed(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error> {
    let api = Api::<Endpoints>::namespaced(ctx.client.clone(), namespace);
    let key = format!("{namespace}/{name}");
    let current = api.get_opt(name).await.map_err(|source| Error::Get {
        name: key.clone(),
        source,
    })?;
    if let Some(current) = current.filter(is_managed) {
        match api
            .delete(&current.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => tracing::info!(endpoints = %key, "deleted Endpoints"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(Error::Delete { name: key, source }),
        }
    }
    Ok(())
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.sync(QUEUE);
    let result = sync(&service, &ctx).await;
    timer.done(result.is_ok());
    result.map(|()| Action::await_change())
}

async fn sync(service: &Service, ctx: &Context) -> Result<(), Error> {
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    // The cached Service may be one whose deletion the cache has not seen yet.
    let live = Api::<Service>::namespaced(ctx.client.clone(), &namespace)
        .get_opt(&name)
        .await
        .map_err(|source| Error::Get {
            name: format!("{namespace}/{name}"),
            source,
        })?;
    if live.is_none_or(|s| s.metadata.uid != service.metadata.uid)
        || service.metadata.deletion_timestamp.is_some()
        || service_pods::service_selector(service).is_none()
    {
        return delete_managed(ctx, &namespace, &name).await;
    }
    let api = Api::<Endpoints>::namespaced(ctx.client.clone(), &namespace);
    let key = format!("{namespace}/{name}");
    let current = api.get_opt(&name).await.map_err(|source| Error::Get {
        name: key.clone(),
        source,
    })?;
    let pods = service_pods::selected_pods(&ctx.client, service)
        .await
        .map_err(|source| Error::ListPods {
            service: key.clone(),
            source,
        })?;
    let Some(wanted) = desired_endpoints(service, &pods, current.as_ref()) else {
        return Ok(());
    };
    let written = if current.is_some() {
        api.replace(&name, &PostParams::default(), &wanted).await
    } else {
        api.create(&PostParams::default(), &wanted).await
    };
    match written {
        Ok(_) => Ok(()),
        // The namespace is going away: nothing more to keep in it.
        Err(kube::Error::Api(s)) if s.code == 403 && s.reason == "Forbidden" => Ok(()),
        Err(source) => Err(Error::Write { name: key, source }),
    }
}

fn error_policy(_: Arc<Service>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "endpoints sync failed");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::service_pods::tests::{pod, service, service_port};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::collections::BTreeSet;

    fn all_addresses(endpoints: &Endpoints) -> BTreeSet<String> {
        endpoints
            .subsets
            .iter()
            .flatten()
            .flat_map(|s| {
                s.addresses
                    .iter()
                    .flatten()
                    .chain(s.not_ready_addresses.iter().flatten())
            })
            .map(|a| a.ip.clone())
            .collect()
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        list.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_share_a_subset_per_port_set() {
        let svc = service(
            "web",
            &[("app", "web")],
            vec![service_port("http", 80, IntOrString::String("http".into()))],
        );
        let pods = vec![
            pod("a", "10.0.0.1", true, 8080),
            pod("b", "10.0.0.2", false, 8080),
            pod("c", "10.0.0.3", true, 9090),
        ];
        let eps = desired_endpoints(&svc, &pods, None).unwrap();
        let subsets = eps.subsets.unwrap();
        assert_eq!(subsets.len(), 2);
        let on_8080 = subsets
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == 8080)
            .unwrap();
        assert_eq!(ips(&on_8080.addresses), vec!["10.0.0.1"]);
        assert_eq!(ips(&on_8080.not_ready_addresses), vec!["10.0.0.2"]);
        let on_9090 = subsets
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == 9090)
            .unwrap();
        assert_eq!(ips(&on_9090.addresses), vec!["10.0.0.3"]);
        let address = &on_9090.addresses.as_ref().unwrap()[0];
        assert_eq!(address.node_name.as_deref(), Some("node-1"));
        assert_eq!(
            address.target_ref.as_ref().unwrap().name.as_deref(),
            Some("c")
        );
        assert_eq!(eps.metadata.labels.unwrap()[SKIP_MIRROR_LABEL], "true");
    }

    #[test]
    fn two_ports_on_the_same_pods_make_one_subset() {
        let svc = service(
            "web",
            &[("app", "web")],
            vec![
                service_port("http", 80, IntOrString::String("http".into())),
                service_port("admin", 81, IntOrString::Int(9000)),
            ],
        );
        let pods = vec![
            pod("a", "10.0.0.1", true, 8080),
            pod("b", "10.0.0.2", true, 8080),
        ];
        let subsets = desired_endpoints(&svc, &pods, None)
            .unwrap()
            .subsets
            .unwrap();
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].ports.as_ref().unwrap().len(), 2);
        assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn publish_not_ready_lists_every_pod_as_ready_and_hostnames_follow_subdomains() {
        let mut svc = service(
            "db",
            &[("app", "web")],
            vec![service_port("p", 5432, IntOrString::Int(5432))],
        );
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let mut p = pod("a", "10.0.0.1", false, 80);
        p.spec.as_mut().unwrap().hostname = Some("db-0".into());
        p.spec.as_mut().unwrap().subdomain = Some("db".into());
        let subsets = desired_endpoints(&svc, &[p], None)
            .unwrap()
            .subsets
            .unwrap();
        let address = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(address.hostname.as_deref(), Some("db-0"));
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn headless_services_without_ports_list_addresses() {
        let mut svc = service("h", &[("app", "web")], vec![]);
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let eps = desired_endpoints(&svc, &[pod("a", "10.0.0.1", true, 80)], None).unwrap();
        let subsets = eps.subsets.as_ref().unwrap();
        assert_eq!(ips(&subsets[0].addresses), vec!["10.0.0.1"]);
        assert!(subsets[0].ports.is_none());
        assert!(eps.metadata.labels.unwrap().contains_key(HEADLESS_LABEL));
    }

    #[test]
    fn unchanged_endpoints_are_not_rewritten() {
        let svc = service(
            "web",
            &[("app", "web")],
            vec![service_port("http", 80, IntOrString::Int(80))],
        );
        let pods = vec![pod("a", "10.0.0.1", true, 80)];
        let first = desired_endpoints(&svc, &pods, None).unwrap();
        assert!(desired_endpoints(&svc, &pods, Some(&first)).is_none());
        let changed = vec![pod("a", "10.0.0.1", false, 80)];
        assert!(desired_endpoints(&svc, &changed, Some(&first)).is_some());
    }

    #[test]
    fn more_than_a_thousand_addresses_are_truncated_and_annotated() {
        let svc = service(
            "big",
            &[("app", "web")],
            vec![service_port("http", 80, IntOrString::Int(80))],
        );
        let pods: Vec<Pod> = (0..1100)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    i % 2 == 0,
                    80,
                )
            })
            .collect();
        let eps = desired_endpoints(&svc, &pods, None).unwrap();
        assert_eq!(all_addresses(&eps).len(), MAX_CAPACITY);
        let subset = &eps.subsets.as_ref().unwrap()[0];
        assert_eq!(subset.addresses.as_ref().unwrap().len(), 550);
        assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 450);
        assert_eq!(
            eps.metadata.annotations.unwrap()[OVER_CAPACITY_ANNOTATION],
            "truncated"
        );
    }
}
