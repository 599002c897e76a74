//! What objects use of the resources a ResourceQuota limits: object counts (`pods`,
//! `services`, `configmaps`, `count/<resource>.<group>`, ...), the requests and limits of
//! non-terminal pods under the quota's scopes, node ports and load balancers of Services, and the
//! storage claimed by PersistentVolumeClaims.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, PodAffinityTerm, ResourceQuota, Service,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::Amount;

const COMPUTE: [&str; 3] = ["cpu", "memory", "ephemeral-storage"];
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// Whether the pod still counts against quota: not finished, and not past its deletion.
fn pod_counts(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> bool {
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
fn pod_resources(pod: &Pod, limits: bool) -> BTreeMap<String, Amount> {
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
pub(crate) fn pod_usage(pod: &Pod) -> BTreeMap<String, Amount> {
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
/// The required and preferred terms of a pod (anti-)affinity, in one list.
fn affinity_terms(
    required: Option<Vec<PodAffinityTerm>>,
    preferred: Option<Vec<WeightedPodAffinityTerm>>,
) -> impl Iterator<Item = PodAffinityTerm> {
    required
        .into_iter()
        .flatten()
        .chain(preferred.into_iter().flatten().map(|w| w.pod_affinity_term))
}

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
            let mut terms = affinity
                .pod_affinity
                .map(|a| {
                    affinity_terms(
                        a.required_during_scheduling_ignored_during_execution,
                        a.preferred_during_scheduling_ignored_during_execution,
                    )
                })
                .into_iter()
                .flatten()
                .chain(
                    affinity
                        .pod_anti_affinity
                        .map(|a| {
                            affinity_terms(
                                a.required_during_scheduling_ignored_during_execution,
                                a.preferred_during_scheduling_ignored_during_execution,
                            )
                        })
                        .into_iter()
                        .flatten(),
                );
            terms.any(|t| {
                t.namespace_selector.is_some() || t.namespaces.is_some_and(|n| !n.is_empty())
            })
        }
        _ => false,
    }
}

/// Whether the pod falls under every scope of the quota (`spec.scopes` and the scope selector).
pub(crate) fn pod_matches_scopes(pod: &Pod, quota: &ResourceQuota) -> bool {
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

pub(crate) fn service_usage(service: &Service) -> BTreeMap<String, Amount> {
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

pub(crate) fn pvc_usage(claim: &PersistentVolumeClaim) -> BTreeMap<String, Amount> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PodSpec, PodStatus, ResourceQuotaSpec, ResourceRequirements, ScopeSelector,
        ScopedResourceSelectorRequirement, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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
    fn cross_namespace_affinity_counts_required_and_preferred_terms_of_both_kinds() {
        use k8s_openapi::api::core::v1::{
            Affinity, PodAffinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
        };
        let mut cross = quota(&[("pods", "10")]);
        cross.spec.as_mut().unwrap().scopes = Some(vec!["CrossNamespacePodAffinity".into()]);
        let term = |namespaces: Option<Vec<String>>| PodAffinityTerm {
            namespaces,
            topology_key: "zone".into(),
            ..PodAffinityTerm::default()
        };
        let with = |affinity: Affinity| {
            let mut p = pod("a", None, None, "Running");
            p.spec.as_mut().unwrap().affinity = Some(affinity);
            p
        };
        let required = with(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(Some(vec![
                    "other".into(),
                ]))]),
                ..PodAffinity::default()
            }),
            ..Affinity::default()
        });
        let preferred_anti = with(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 1,
                        pod_affinity_term: term(Some(vec!["other".into()])),
                    },
                ]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        });
        let same_namespace = with(Affinity {
            pod_affinity: Some(PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term(None)]),
                ..PodAffinity::default()
            }),
            ..Affinity::default()
        });
        assert!(pod_matches_scopes(&required, &cross));
        assert!(pod_matches_scopes(&preferred_anti, &cross));
        assert!(!pod_matches_scopes(&same_namespace, &cross));
        assert!(!pod_matches_scopes(
            &pod("b", None, None, "Running"),
            &cross
        ));
    }
}
