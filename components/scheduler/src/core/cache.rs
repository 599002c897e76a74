//! The scheduler's view of the cluster: nodes with their pods, including pods it has decided
//! to bind but whose binding has not come back through the watch yet ("assumed" pods), so a
//! burst is spread instead of piled on the node that looked emptiest a moment ago.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::node::{NodeInfo, NodeSchedulingView};
use super::pod::PodInfo;

#[derive(Debug, Default)]
pub struct ClusterCache {
    /// Nodes in a stable order, so the scheduler can start each search where the last stopped.
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// The node each cached (bound or assumed) pod is counted on.
    pod_nodes: HashMap<String, String>,
    assumed: HashSet<String>,
    /// Pods nominated to a node by preemption, counted there for pods of lower or equal priority.
    nominated: HashMap<String, (Arc<PodInfo>, String)>,
    /// How many cached pods carry required anti-affinity terms (to skip that check when none do).
    with_required_anti_affinity: usize,
}

impl ClusterCache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Existing nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.exists).count()
    }

    pub fn has_required_anti_affinity_pods(&self) -> bool {
        self.with_required_anti_affinity > 0
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.nodes.push(NodeInfo::new(name));
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    /// Adds or updates a node; returns its previous scheduling view when it existed.
    pub fn set_node(&mut self, name: &str, view: NodeSchedulingView) -> Option<NodeSchedulingView> {
        let node = self.node_mut(name);
        let previous = node.exists.then(|| NodeSchedulingView {
            labels: node.labels.clone(),
            taints: node.taints.clone(),
            unschedulable: node.unschedulable,
            allocatable: node.allocatable.clone(),
        });
        node.set_node(view);
        previous
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if !self.nodes[i].pods.is_empty() {
            // Pods still name it; keep counting them until they go.
            self.nodes[i].exists = false;
            return;
        }
        self.index.remove(name);
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.exists)
            .map(|n| n.name.clone())
            .collect()
    }

    fn count(&mut self, pod: &PodInfo, delta: isize) {
        if !pod.required_anti_affinity.is_empty() {
            self.with_required_anti_affinity = self
                .with_required_anti_affinity
                .saturating_add_signed(delta);
        }
    }

    fn insert(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.count(&pod, 1);
        self.pod_nodes.insert(pod.key.clone(), node.to_string());
        self.node_mut(node).add_pod(pod);
    }

    /// Removes a cached pod; returns whether it was cached.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.assumed.remove(key);
        let Some(node) = self.pod_nodes.remove(key) else {
            return false;
        };
        let Some(&i) = self.index.get(&node) else {
            return false;
        };
        let info = &mut self.nodes[i];
        let pod = info.pods.iter().find(|p| p.key == key).cloned();
        info.remove_pod(key);
        if let Some(pod) = pod {
            self.count(&pod, -1);
        }
        if !self.nodes[i].exists && self.nodes[i].pods.is_empty() {
            self.remove_node(&node);
        }
        true
    }

    /// Counts a pod the scheduler has just chosen a node for, before the binding is stored.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.key);
        self.nominated.remove(&pod.key);
        self.assumed.insert(pod.key.clone());
        self.insert(pod, node);
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains(key)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.pod_nodes.contains_key(key)
    }

    /// Undoes an assumption whose binding failed.
    pub fn forget(&mut self, key: &str) {
        if self.assumed.contains(key) {
            self.remove_pod(key);
        }
    }

    /// A bound pod seen through the watch: confirms an assumption, or adds or updates the pod.
    pub fn add_or_update_bound(&mut self, pod: Arc<PodInfo>) -> bool {
        let Some(node) = pod.node_name.clone() else {
            return false;
        };
        let existed = self.pod_nodes.contains_key(&pod.key);
        self.remove_pod(&pod.key);
        self.nominated.remove(&pod.key);
        self.insert(pod, &node);
        !existed
    }

    /// Records (or clears, with `None`) the node a pending pod was nominated to by preemption.
    pub fn set_nominated(&mut self, pod: Arc<PodInfo>, node: Option<&str>) {
        match node {
            Some(node) => {
                self.nominated
                    .insert(pod.key.clone(), (pod.clone(), node.to_string()));
            }
            None => {
                self.nominated.remove(&pod.key);
            }
        }
    }

    pub fn nominated_node_of(&self, key: &str) -> Option<&str> {
        self.nominated.get(key).map(|(_, node)| node.as_str())
    }

    /// Pods nominated to `node` that `pod` must leave room for: others of at least its priority.
    pub fn nominated_on<'a>(
        &'a self,
        node: &'a str,
        pod: &'a PodInfo,
    ) -> impl Iterator<Item = &'a Arc<PodInfo>> + 'a {
        self.nominated
            .values()
            .filter(move |(n, nominated_to)| {
                n.key != pod.key && n.priority >= pod.priority && nominated_to == node
            })
            .map(|(n, _)| n)
    }

    /// The pod nominated under this key, if any.
    pub fn nominated_pod(&self, key: &str) -> Option<Arc<PodInfo>> {
        self.nominated.get(key).map(|(pod, _)| pod.clone())
    }

    pub fn has_nominations(&self) -> bool {
        !self.nominated.is_empty()
    }

    /// Keys of every cached pod.
    pub fn pod_keys(&self) -> Vec<String> {
        self.pod_nodes.keys().cloned().collect()
    }

    pub fn assumed_count(&self) -> usize {
        self.assumed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::{node_view, pod};

    #[test]
    fn assumed_pods_count_until_forgotten_and_confirmations_do_not_double_count() {
        let mut cache = ClusterCache::default();
        cache.set_node("n1", node_view("4", "8Gi", 110));
        let p = pod("a", "1", "1Gi");
        cache.assume(p.clone(), "n1");
        assert!(cache.is_assumed("default/a"));
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 1000);
        cache.forget("default/a");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 0);

        cache.assume(p, "n1");
        let mut bound = pod("a", "1", "1Gi").pod.clone();
        bound.spec.as_mut().unwrap().node_name = Some("n1".into());
        assert!(!cache.add_or_update_bound(PodInfo::new(bound)));
        assert!(!cache.is_assumed("default/a"));
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 1000);
        assert_eq!(cache.node("n1").unwrap().pods.len(), 1);
    }

    #[test]
    fn removed_nodes_leave_the_order_consistent() {
        let mut cache = ClusterCache::default();
        for n in ["a", "b", "c"] {
            cache.set_node(n, node_view("1", "1Gi", 10));
        }
        cache.remove_node("a");
        assert_eq!(cache.node("c").unwrap().name, "c");
        assert_eq!(cache.node_count(), 2);
        assert!(cache.node("a").is_none());
    }
}
