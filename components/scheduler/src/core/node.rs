//! A node with what is running (or assumed to be running) on it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::pod::{HostPort, PodInfo};
use super::resources::Resources;
use super::selectors::Labels;

#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// False while only pods name this node (their node object is not known, or was deleted).
    pub exists: bool,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
}

/// The parts of a Node whose change can make an unschedulable pod fit.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSchedulingView {
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
}

impl NodeSchedulingView {
    pub fn of(node: &Node) -> NodeSchedulingView {
        let spec = node.spec.clone().unwrap_or_default();
        NodeSchedulingView {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable: node
                .status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
                .map(Resources::from_map)
                .unwrap_or_default(),
        }
    }
}

impl NodeInfo {
    pub fn new(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..NodeInfo::default()
        }
    }

    pub fn set_node(&mut self, view: NodeSchedulingView) {
        self.exists = true;
        self.labels = view.labels;
        self.taints = view.taints;
        self.unschedulable = view.unschedulable;
        self.allocatable = view.allocatable;
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    /// Removes the pod with this key; returns whether it was here.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(index) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let pod = self.pods.swap_remove(index);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        true
    }
}
