//! Scores: how much a feasible node suits a pod, each plugin on upstream's 0–100 scale.

use std::collections::HashMap;

use super::cache::ClusterCache;
use super::framework::{Profile, ScorePlugin};
use super::node::NodeInfo;
use super::pod::PodInfo;
use super::selectors::node_selector_term_matches;

pub const MAX_NODE_SCORE: i64 = 100;

/// Fractions of allocatable requested on the node with the pod added, per scored resource.
fn requested_fractions<'a>(
    pod: &'a PodInfo,
    node: &'a NodeInfo,
    resources: &'a [(String, i64)],
) -> impl Iterator<Item = (f64, i64)> + 'a {
    resources.iter().filter_map(move |(name, weight)| {
        let allocatable = node.allocatable.get(name);
        if allocatable <= 0 {
            return None;
        }
        let requested = node.non_zero_requested.get(name) + pod.non_zero_requests.get(name);
        Some((requested as f64 / allocatable as f64, *weight))
    })
}

/// LeastAllocated: the weighted share of each resource left free after placing the pod.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo, resources: &[(String, i64)]) -> i64 {
    let (mut total, mut weights) = (0i64, 0i64);
    for (fraction, weight) in requested_fractions(pod, node, resources) {
        let free = if fraction > 1.0 {
            0
        } else {
            ((1.0 - fraction) * MAX_NODE_SCORE as f64) as i64
        };
        total += free * weight;
        weights += weight;
    }
    if weights == 0 {
        0
    } else {
        total / weights
    }
}

/// BalancedAllocation: nodes whose resources are used in equal proportions score higher
/// (100 × (1 − standard deviation of the requested fractions)).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo, resources: &[(String, i64)]) -> i64 {
    let fractions: Vec<f64> = requested_fractions(pod, node, resources)
        .map(|(f, _)| f.min(1.0))
        .collect();
    if fractions.len() < 2 {
        return MAX_NODE_SCORE;
    }
    let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
    let variance =
        fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / fractions.len() as f64;
    ((1.0 - variance.sqrt()) * MAX_NODE_SCORE as f64) as i64
}

fn preferred_node_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.spec()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|terms| {
            terms
                .iter()
                .filter(|t| node_selector_term_matches(&t.preference, &node.name, &node.labels))
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .unwrap_or(0)
}

fn intolerable_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| {
            !pod.tolerations.iter().any(|tol| {
                tol.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
                    && super::filters::tolerates(tol, t)
            })
        })
        .count() as i64
}

fn node_label(profile: &Profile, node: &NodeInfo) -> i64 {
    let args = &profile.node_label;
    let total = args.present_labels_preference.len() + args.absent_labels_preference.len();
    if total == 0 {
        return 0;
    }
    let matched = args
        .present_labels_preference
        .iter()
        .filter(|l| node.labels.contains_key(*l))
        .count()
        + args
            .absent_labels_preference
            .iter()
            .filter(|l| !node.labels.contains_key(*l))
            .count();
    (matched as i64 * MAX_NODE_SCORE) / total as i64
}

/// Preferred inter-pod (anti-)affinity: weights by topology domain, from every existing pod
/// that matches one of this pod's preferred terms (anti-affinity counts negative).
fn inter_pod_affinity_domains(
    pod: &PodInfo,
    cache: &ClusterCache,
) -> HashMap<(String, String), i64> {
    let mut domains: HashMap<(String, String), i64> = HashMap::new();
    for node in cache.nodes() {
        for existing in &node.pods {
            let terms = pod
                .preferred_affinity
                .iter()
                .map(|t| (t, 1))
                .chain(pod.preferred_anti_affinity.iter().map(|t| (t, -1)));
            for (weighted, sign) in terms {
                let term = &weighted.pod_affinity_term;
                if existing.matches_term(term, &pod.namespace) {
                    if let Some(v) = node.labels.get(&term.topology_key) {
                        *domains
                            .entry((term.topology_key.clone(), v.clone()))
                            .or_insert(0) += sign * i64::from(weighted.weight);
                    }
                }
            }
        }
    }
    domains
}

/// Upstream's DefaultNormalizeScore: scale so the best node gets 100 (reversed: the worst).
fn normalize_by_max(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        if max == 0 {
            *s = if reverse { MAX_NODE_SCORE } else { 0 };
        } else {
            let scaled = MAX_NODE_SCORE * *s / max;
            *s = if reverse {
                MAX_NODE_SCORE - scaled
            } else {
                scaled
            };
        }
    }
}

fn normalize_min_max(scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    let min = scores.iter().copied().min().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = if max == min {
            0
        } else {
            MAX_NODE_SCORE * (*s - min) / (max - min)
        };
    }
}

/// The weighted total score of every feasible node, in the order given.
pub fn score_nodes(
    pod: &PodInfo,
    nodes: &[&NodeInfo],
    cache: &ClusterCache,
    profile: &Profile,
) -> Vec<i64> {
    let mut totals = vec![0i64; nodes.len()];
    let mut plugin_scores = vec![0i64; nodes.len()];
    for (plugin, weight) in &profile.scores {
        match plugin {
            ScorePlugin::NodeResourcesFit => {
                for (s, n) in plugin_scores.iter_mut().zip(nodes) {
                    *s = least_allocated(pod, n, &profile.scored_resources);
                }
            }
            ScorePlugin::NodeResourcesBalancedAllocation => {
                for (s, n) in plugin_scores.iter_mut().zip(nodes) {
                    *s = balanced_allocation(pod, n, &profile.scored_resources);
                }
            }
            ScorePlugin::NodeAffinity => {
                for (s, n) in plugin_scores.iter_mut().zip(nodes) {
                    *s = preferred_node_affinity(pod, n);
                }
                normalize_by_max(&mut plugin_scores, false);
            }
            ScorePlugin::TaintToleration => {
                for (s, n) in plugin_scores.iter_mut().zip(nodes) {
                    *s = intolerable_prefer_no_schedule(pod, n);
                }
                normalize_by_max(&mut plugin_scores, true);
            }
            ScorePlugin::InterPodAffinity => {
                if pod.preferred_affinity.is_empty() && pod.preferred_anti_affinity.is_empty() {
                    continue;
                }
                let domains = inter_pod_affinity_domains(pod, cache);
                for (s, n) in plugin_scores.iter_mut().zip(nodes) {
                    *s = domains
                        .iter()
                        .filter(|((k, v), _)| n.labels.get(k) == Some(v))
                        .map(|(_, w)| *w)
                        .sum();
                }
                normalize_min_max(&mut plugin_scores);
            }
            ScorePlugin::NodeLabel => {
                for (s, n) in plugin_scores.iter_mut().zip(nodes) {
                    *s = node_label(profile, n);
                }
            }
        }
        for (total, s) in totals.iter_mut().zip(&plugin_scores) {
            *total += s * weight;
        }
    }
    totals
}
