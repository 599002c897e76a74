//! A pod as the scheduler sees it: the API object plus what every cycle needs, computed once.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Pod, PodAffinityTerm, Toleration, TopologySpreadConstraint, WeightedPodAffinityTerm,
};

use super::resources::{pod_requests, Resources};
use super::selectors::Labels;

/// A host port a container asks for: (hostIP, protocol, port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Upstream: two host ports conflict when protocol and port agree and either IP is a wildcard.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || wildcard(&self.ip) || wildcard(&other.ip))
    }
}

#[derive(Debug)]
pub struct PodInfo {
    pub pod: Pod,
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    pub priority: i32,
    pub preempt_never: bool,
    pub scheduler_name: String,
    pub node_name: Option<String>,
    pub nominated_node_name: Option<String>,
    pub deleting: bool,
    pub requests: Resources,
    /// Requests with upstream's scoring defaults for containers that request nothing.
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub required_affinity: Vec<PodAffinityTerm>,
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_affinity: Vec<WeightedPodAffinityTerm>,
    pub preferred_anti_affinity: Vec<WeightedPodAffinityTerm>,
    pub hard_spread: Vec<TopologySpreadConstraint>,
    /// Seconds since the epoch when the pod started, for preemption's tie-break.
    pub start_time: i64,
}

pub fn pod_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl PodInfo {
    pub fn new(pod: Pod) -> Arc<PodInfo> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let affinity = spec.affinity.clone().unwrap_or_default();
        let pod_affinity = affinity.pod_affinity.unwrap_or_default();
        let pod_anti_affinity = affinity.pod_anti_affinity.unwrap_or_default();
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                p.host_port.filter(|hp| *hp > 0).map(|port| HostPort {
                    ip: p.host_ip.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                })
            })
            .collect();
        let status = pod.status.as_ref();
        let start_time = status
            .and_then(|s| s.start_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0.as_second())
            .unwrap_or(0);
        Arc::new(PodInfo {
            key: pod_key(&namespace, &name),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            preempt_never: spec.preemption_policy.as_deref() == Some("Never"),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            nominated_node_name: status
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            requests: pod_requests(&spec, false),
            non_zero_requests: pod_requests(&spec, true),
            host_ports,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            required_affinity: pod_affinity
                .required_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            preferred_affinity: pod_affinity
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            required_anti_affinity: pod_anti_affinity
                .required_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            preferred_anti_affinity: pod_anti_affinity
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            hard_spread: spec
                .topology_spread_constraints
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
                .collect(),
            namespace,
            name,
            start_time,
            pod,
        })
    }

    pub fn spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.pod.spec.as_ref()
    }

    /// Whether an affinity term of a pod in `term_namespace` selects this pod. Terms name their
    /// namespaces, or mean the owner's namespace; an empty namespaceSelector means all of them.
    pub fn matches_term(&self, term: &PodAffinityTerm, term_namespace: &str) -> bool {
        let namespaces = term.namespaces.as_deref().unwrap_or_default();
        let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
        });
        let namespace_ok = all_namespaces
            || namespaces.contains(&self.namespace)
            || (namespaces.is_empty() && self.namespace == term_namespace);
        namespace_ok
            && term
                .label_selector
                .as_ref()
                .is_some_and(|s| super::selectors::label_selector_matches(s, &self.labels))
    }
}
