//! What the endpoints and endpointslice controllers share: which pods a Service selects,
//! which of them belong in its endpoints, the port a service port resolves to on one pod, and
//! which Services to sync when a pod changes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

/// A Service's pod selector; `None` for Services without one, whose endpoints are managed by
/// hand (an empty selector selects nothing either, as upstream).
pub fn service_selector(service: &Service) -> Option<Selector> {
    let selector = service.spec.as_ref()?.selector.as_ref()?;
    if selector.is_empty() {
        return None;
    }
    Some(
        selector
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// Whether `service` selects `pod` (same namespace, selector matches its labels).
pub fn selects(service: &Service, pod: &Pod) -> bool {
    service.namespace() == pod.namespace()
        && service_selector(service).is_some_and(|s| s.matches(pod.labels()))
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod's IPs, primary first.
pub fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if let Some(primary) = status.pod_ip.as_ref().filter(|ip| !ip.is_empty()) {
        if !ips.contains(primary) {
            ips.insert(0, primary.clone());
        }
    }
    ips
}

/// Upstream's ShouldPodBeInEndpoints: not finished, has an IP, and not terminating unless
/// terminating pods are wanted.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !is_pod_terminal(pod)
        && !pod_ips(pod).is_empty()
        && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// Upstream's ShouldSetHostname: the pod names itself inside the Service's subdomain.
pub fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.as_deref() == Some(service.name_any().as_str())
        && pod.namespace() == service.namespace()
}

/// The port number a service port's targetPort means on `pod`: a named targetPort is the
/// container port of that name and protocol (sidecars included), a number is itself, and a
/// missing one is the service port. `None` when the pod has no such named port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        Some(IntOrString::String(name)) => {
            if let Ok(number) = name.parse::<i32>() {
                return Some(number);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
        Some(IntOrString::Int(number)) if *number != 0 => Some(*number),
        _ => Some(port.port),
    }
}

pub fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| ip == "None")
}

pub fn is_ipv6(ip: &str) -> bool {
    ip.contains(':')
}

/// The pods in the Service's namespace its selector picks, read from the API server so a sync
/// always sees at least the change that triggered it.
pub async fn selected_pods(
    client: &kube::Client,
    service: &Service,
) -> Result<Vec<Pod>, kube::Error> {
    let Some(selector) = service_selector(service) else {
        return Ok(Vec::new());
    };
    let namespace = service.namespace().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), &namespace);
    Ok(pods
        .list(&ListParams::default().labels_from(&selector))
        .await?
        .items)
}

/// Maps a changed pod to the Services that select it now and those that selected it when last
/// seen, so a pod whose labels no longer match still leaves its old Services' endpoints.
type LastMapped = Arc<Mutex<HashMap<(String, String), HashSet<ObjectRef<Service>>>>>;

#[derive(Clone)]
pub struct PodToServices {
    services: Store<Service>,
    last: LastMapped,
}

impl PodToServices {
    pub fn new(services: Store<Service>) -> PodToServices {
        PodToServices {
            services,
            last: Arc::default(),
        }
    }

    pub fn map(&self, pod: &Pod) -> Vec<ObjectRef<Service>> {
        let now: HashSet<ObjectRef<Service>> = self
            .services
            .state()
            .iter()
            .filter(|s| selects(s, pod))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect();
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        let mut last = match self.last.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = if now.is_empty() {
            last.remove(&key).unwrap_or_default()
        } else {
            last.insert(key, now.clone()).unwrap_or_default()
        };
        now.union(&before).cloned().collect()
    }
}

/// The Service a controller's trigger named but that no longer exists (deleted, or never
/// there for a leftover object): its namespace and name.
pub fn missing_service<T, E: std::error::Error>(
    result: &Result<T, kube::runtime::controller::Error<E, kube::runtime::watcher::Error>>,
) -> Option<(String, String)> {
    match result {
        Err(kube::runtime::controller::Error::ObjectNotFound(object)) => {
            Some((object.namespace.clone()?, object.name.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    pub fn service(name: &str, selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ports: Some(ports),
                cluster_ip: Some("10.96.0.10".into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    pub fn service_port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }
    }

    /// A running pod labelled app=web with container port `http` = `http_port`.
    pub fn pod(name: &str, ip: &str, ready: bool, http_port: i32) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: http_port,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let named = service_port("web", 80, IntOrString::String("http".into()));
        assert_eq!(
            find_port(&pod("a", "10.0.0.1", true, 8080), &named),
            Some(8080)
        );
        assert_eq!(
            find_port(&pod("b", "10.0.0.2", true, 9090), &named),
            Some(9090)
        );
        let missing = service_port("x", 80, IntOrString::String("metrics".into()));
        assert_eq!(find_port(&pod("a", "10.0.0.1", true, 8080), &missing), None);
        let numeric = service_port("n", 80, IntOrString::Int(7000));
        assert_eq!(
            find_port(&pod("a", "10.0.0.1", true, 8080), &numeric),
            Some(7000)
        );
    }

    #[test]
    fn terminal_terminating_and_ipless_pods_stay_out() {
        let running = pod("a", "10.0.0.1", true, 80);
        assert!(should_pod_be_in_endpoints(&running, false));
        let mut done = running.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!should_pod_be_in_endpoints(&done, true));
        let mut terminating = running.clone();
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(!should_pod_be_in_endpoints(&terminating, false));
        assert!(should_pod_be_in_endpoints(&terminating, true));
        let mut no_ip = running;
        no_ip.status.as_mut().unwrap().pod_ip = None;
        no_ip.status.as_mut().unwrap().pod_ips = None;
        assert!(!should_pod_be_in_endpoints(&no_ip, false));
    }

    #[test]
    fn selection_needs_a_non_empty_selector_and_the_same_namespace() {
        let web = service("web", &[("app", "web")], vec![]);
        let p = pod("a", "10.0.0.1", true, 80);
        assert!(selects(&web, &p));
        assert!(!selects(&service("all", &[], vec![]), &p));
        let mut elsewhere = p;
        elsewhere.metadata.namespace = Some("other".into());
        assert!(!selects(&web, &elsewhere));
    }
}
