//! Filters: whether a pod may run on a node, with upstream's reasons when it may not.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{Taint, Toleration, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::cache::ClusterCache;
use super::framework::{FilterPlugin, Profile};
use super::node::NodeInfo;
use super::pod::PodInfo;
use super::resources::{Resources, CPU, EPHEMERAL_STORAGE, MEMORY};
use super::selectors::{label_selector_matches, node_selector_matches};

pub const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const ERR_TOO_MANY_PODS: &str = "Too many pods";
pub const ERR_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Why a node was refused, and whether removing pods from it (preemption) could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Rejection {
    fn unresolvable(reason: impl Into<String>) -> Rejection {
        Rejection {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }

    fn resolvable(reason: impl Into<String>) -> Rejection {
        Rejection {
            reasons: vec![reason.into()],
            resolvable: true,
        }
    }
}

/// Upstream's toleration match: empty effect tolerates every effect, `Exists` with an empty
/// key tolerates every taint.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = toleration.key.as_deref().unwrap_or("");
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    effect_ok
        && match operator {
            "Exists" => key.is_empty() || key == taint.key,
            "Equal" | "" => {
                key == taint.key
                    && toleration.value.as_deref().unwrap_or("")
                        == taint.value.as_deref().unwrap_or("")
            }
            _ => false,
        }
}

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// nodeSelector and required node affinity.
pub fn node_affinity_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let Some(spec) = pod.spec() else {
        return true;
    };
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selector_ok
        && required
            .is_none_or(|r| node_selector_matches(&r.node_selector_terms, &node.name, &node.labels))
}

fn untolerated_taint<'a>(pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a Taint> {
    node.taints.iter().find(|t| {
        (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(&pod.tolerations, t)
    })
}

fn fits_resources(pod: &PodInfo, node: &NodeInfo, reserved: &Resources) -> Result<(), Rejection> {
    let mut reasons = Vec::new();
    let used = |name: &str| node.requested.get(name) + reserved.get(name);
    if used("pods") + 1 > node.allocatable.pods {
        reasons.push(ERR_TOO_MANY_PODS.to_string());
    }
    for name in [CPU, MEMORY, EPHEMERAL_STORAGE] {
        let want = pod.requests.get(name);
        if want > 0 && used(name) + want > node.allocatable.get(name) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    for (name, want) in &pod.requests.scalar {
        if *want > 0 && used(name) + want > node.allocatable.get(name) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            reasons,
            resolvable: true,
        })
    }
}

/// Per-constraint counts of matching pods by topology value, computed once per cycle.
#[derive(Debug, Default)]
pub struct SpreadState {
    constraints: Vec<SpreadCount>,
}

#[derive(Debug)]
struct SpreadCount {
    topology_key: String,
    max_skew: i32,
    self_match: i32,
    counts: HashMap<String, i32>,
    min: i32,
}

fn spread_selector(c: &TopologySpreadConstraint, pod: &PodInfo) -> LabelSelector {
    let mut selector = c.label_selector.clone().unwrap_or_default();
    // matchLabelKeys narrows the selector to pods sharing this pod's values for those keys.
    for key in c.match_label_keys.iter().flatten() {
        if let Some(value) = pod.labels.get(key) {
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(key.clone(), value.clone());
        }
    }
    selector
}

impl SpreadState {
    fn compute(pod: &PodInfo, cache: &ClusterCache) -> SpreadState {
        let mut constraints = Vec::new();
        for c in &pod.hard_spread {
            let selector = spread_selector(c, pod);
            let honor_affinity = c.node_affinity_policy.as_deref() != Some("Ignore");
            let honor_taints = c.node_taints_policy.as_deref() == Some("Honor");
            let mut counts: HashMap<String, i32> = HashMap::new();
            for node in cache.nodes().iter().filter(|n| n.exists) {
                let Some(value) = node.labels.get(&c.topology_key) else {
                    continue;
                };
                // Upstream counts only nodes carrying every constraint's key.
                if !pod
                    .hard_spread
                    .iter()
                    .all(|o| node.labels.contains_key(&o.topology_key))
                {
                    continue;
                }
                if honor_affinity && !node_affinity_matches(pod, node) {
                    continue;
                }
                if honor_taints && untolerated_taint(pod, node).is_some() {
                    continue;
                }
                let matching = node
                    .pods
                    .iter()
                    .filter(|p| {
                        !p.deleting
                            && p.namespace == pod.namespace
                            && label_selector_matches(&selector, &p.labels)
                    })
                    .count();
                *counts.entry(value.clone()).or_insert(0) +=
                    i32::try_from(matching).unwrap_or(i32::MAX);
            }
            let too_few_domains = c
                .min_domains
                .is_some_and(|m| counts.len() < usize::try_from(m).unwrap_or(0));
            let min = if too_few_domains {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            };
            constraints.push(SpreadCount {
                topology_key: c.topology_key.clone(),
                max_skew: c.max_skew,
                self_match: i32::from(label_selector_matches(&selector, &pod.labels)),
                counts,
                min,
            });
        }
        SpreadState { constraints }
    }

    fn check(&self, node: &NodeInfo) -> Result<(), Rejection> {
        for c in &self.constraints {
            let Some(value) = node.labels.get(&c.topology_key) else {
                return Err(Rejection::unresolvable(ERR_SPREAD_LABEL));
            };
            let count = c.counts.get(value).copied().unwrap_or(0);
            if count + c.self_match - c.min > c.max_skew {
                return Err(Rejection::resolvable(ERR_SPREAD));
            }
        }
        Ok(())
    }
}

/// Topology domains that required (anti-)affinity terms allow or forbid, computed once per cycle.
#[derive(Debug, Default)]
pub struct AffinityState {
    /// (topology key, value) pairs where an existing pod's anti-affinity forbids this pod.
    existing_anti: HashSet<(String, String)>,
    /// Per required affinity term of this pod: the topology values holding a matching pod.
    affinity: Vec<HashSet<String>>,
    /// No pod anywhere matches this pod's affinity terms, but the pod matches them itself.
    first_of_its_group: bool,
    /// Per required anti-affinity term of this pod: the topology values holding a matching pod.
    anti_affinity: Vec<HashSet<String>>,
}

impl AffinityState {
    fn compute(pod: &PodInfo, cache: &ClusterCache) -> AffinityState {
        let mut state = AffinityState {
            affinity: vec![HashSet::new(); pod.required_affinity.len()],
            anti_affinity: vec![HashSet::new(); pod.required_anti_affinity.len()],
            ..AffinityState::default()
        };
        let check_existing = cache.has_required_anti_affinity_pods();
        for node in cache.nodes() {
            for existing in &node.pods {
                if existing.key == pod.key {
                    continue;
                }
                if check_existing {
                    for term in &existing.required_anti_affinity {
                        if pod.matches_term(term, &existing.namespace) {
                            if let Some(v) = node.labels.get(&term.topology_key) {
                                state
                                    .existing_anti
                                    .insert((term.topology_key.clone(), v.clone()));
                            }
                        }
                    }
                }
                for (i, term) in pod.required_affinity.iter().enumerate() {
                    if existing.matches_term(term, &pod.namespace) {
                        if let Some(v) = node.labels.get(&term.topology_key) {
                            state.affinity[i].insert(v.clone());
                        }
                    }
                }
                for (i, term) in pod.required_anti_affinity.iter().enumerate() {
                    if existing.matches_term(term, &pod.namespace) {
                        if let Some(v) = node.labels.get(&term.topology_key) {
                            state.anti_affinity[i].insert(v.clone());
                        }
                    }
                }
            }
        }
        state.first_of_its_group = state.affinity.iter().all(HashSet::is_empty)
            && pod
                .required_affinity
                .iter()
                .all(|t| pod.matches_term(t, &pod.namespace));
        state
    }

    /// Upstream's order: the pod's affinity, its anti-affinity, then existing pods' anti-affinity.
    fn check(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if !self.first_of_its_group {
            for (term, values) in pod.required_affinity.iter().zip(&self.affinity) {
                let ok = node
                    .labels
                    .get(&term.topology_key)
                    .is_some_and(|v| values.contains(v));
                if !ok {
                    return Err(Rejection::unresolvable(ERR_AFFINITY));
                }
            }
        } else if pod
            .required_affinity
            .iter()
            .any(|t| !node.labels.contains_key(&t.topology_key))
        {
            return Err(Rejection::unresolvable(ERR_AFFINITY));
        }
        for (term, values) in pod.required_anti_affinity.iter().zip(&self.anti_affinity) {
            if node
                .labels
                .get(&term.topology_key)
                .is_some_and(|v| values.contains(v))
            {
                return Err(Rejection::resolvable(ERR_ANTI_AFFINITY));
            }
        }
        if self
            .existing_anti
            .iter()
            .any(|(k, v)| node.labels.get(k) == Some(v))
        {
            return Err(Rejection::resolvable(ERR_EXISTING_ANTI_AFFINITY));
        }
        Ok(())
    }
}

/// What the filters of one scheduling cycle share.
#[derive(Debug, Default)]
pub struct CycleState {
    spread: Option<SpreadState>,
    affinity: Option<AffinityState>,
}

impl CycleState {
    /// Upstream's PreFilter: the cluster-wide counts only pods with such constraints need.
    pub fn prepare(pod: &PodInfo, cache: &ClusterCache, profile: &Profile) -> CycleState {
        let spread = (profile.has_filter(FilterPlugin::PodTopologySpread)
            && !pod.hard_spread.is_empty())
        .then(|| SpreadState::compute(pod, cache));
        let needs_affinity = !pod.required_affinity.is_empty()
            || !pod.required_anti_affinity.is_empty()
            || cache.has_required_anti_affinity_pods();
        let affinity = (profile.has_filter(FilterPlugin::InterPodAffinity) && needs_affinity)
            .then(|| AffinityState::compute(pod, cache));
        CycleState { spread, affinity }
    }
}

/// Runs the profile's filters in order; the first refusal decides, as upstream.
pub fn run_filters(
    pod: &PodInfo,
    node: &NodeInfo,
    cache: &ClusterCache,
    profile: &Profile,
    state: &CycleState,
) -> Result<(), Rejection> {
    for plugin in &profile.filters {
        match plugin {
            FilterPlugin::NodeUnschedulable => {
                let taint = Taint {
                    key: "node.kubernetes.io/unschedulable".into(),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                };
                if node.unschedulable && !tolerated(&pod.tolerations, &taint) {
                    return Err(Rejection::unresolvable(ERR_UNSCHEDULABLE));
                }
            }
            FilterPlugin::NodeName => {
                if let Some(wanted) = pod.spec().and_then(|s| s.node_name.as_deref()) {
                    if !wanted.is_empty() && wanted != node.name {
                        return Err(Rejection::unresolvable(ERR_NODE_NAME));
                    }
                }
            }
            FilterPlugin::TaintToleration => {
                if let Some(taint) = untolerated_taint(pod, node) {
                    return Err(Rejection::unresolvable(format!(
                        "node(s) had untolerated taint {{{}: {}}}",
                        taint.key,
                        taint.value.as_deref().unwrap_or("")
                    )));
                }
            }
            FilterPlugin::NodeAffinity => {
                if !node_affinity_matches(pod, node) {
                    return Err(Rejection::unresolvable(ERR_NODE_AFFINITY));
                }
            }
            FilterPlugin::NodePorts => {
                let conflict = pod
                    .host_ports
                    .iter()
                    .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
                if conflict {
                    return Err(Rejection::resolvable(ERR_NODE_PORTS));
                }
            }
            FilterPlugin::NodeResourcesFit => {
                let mut reserved = Resources::default();
                if cache.has_nominations() {
                    for nominated in cache.nominated_on(&node.name, pod) {
                        reserved.add(&nominated.requests);
                    }
                }
                fits_resources(pod, node, &reserved)?;
            }
            FilterPlugin::PodTopologySpread => {
                if let Some(spread) = &state.spread {
                    spread.check(node)?;
                }
            }
            FilterPlugin::InterPodAffinity => {
                if let Some(affinity) = &state.affinity {
                    affinity.check(pod, node)?;
                }
            }
        }
    }
    Ok(())
}
