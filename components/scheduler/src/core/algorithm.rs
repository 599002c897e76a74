//! One scheduling decision: find feasible nodes (a share of them in large clusters, starting
//! where the previous search stopped), score them, and pick the best, ties broken at random.

use std::collections::BTreeMap;

use rand::Rng;

use super::cache::ClusterCache;
use super::filters::{run_filters, CycleState, Rejection};
use super::framework::{feasible_nodes_to_find, Profile};
use super::node::NodeInfo;
use super::pod::PodInfo;
use super::scores::score_nodes;

/// Why no node fits: the number of nodes and each node's refusal.
#[derive(Debug, Clone, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub rejections: BTreeMap<String, Rejection>,
}

impl FitError {
    /// Upstream's message: "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were unschedulable."
    pub fn message(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for rejection in self.rejections.values() {
            for reason in &rejection.reasons {
                *counts.entry(reason.as_str()).or_insert(0) += 1;
            }
        }
        let mut parts: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
        parts.sort();
        if parts.is_empty() {
            format!("0/{} nodes are available.", self.num_all_nodes)
        } else {
            format!(
                "0/{} nodes are available: {}.",
                self.num_all_nodes,
                parts.join(", ")
            )
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// The scheduling state kept between decisions: where the next search starts.
#[derive(Debug, Default)]
pub struct Algorithm {
    next_start_node_index: usize,
}

impl Algorithm {
    pub fn schedule(
        &mut self,
        pod: &PodInfo,
        cache: &ClusterCache,
        profile: &Profile,
        rng: &mut impl Rng,
    ) -> Result<ScheduleResult, FitError> {
        let all = cache.nodes();
        let num_all_nodes = cache.node_count();
        let state = CycleState::prepare(pod, cache, profile);
        // A pod nominated by an earlier preemption tries that node first, as upstream does.
        if let Some(nominated) = cache
            .nominated_node_of(&pod.key)
            .or(pod.nominated_node_name.as_deref())
        {
            if let Some(node) = cache.node(nominated).filter(|n| n.exists) {
                if run_filters(pod, node, cache, profile, &state).is_ok() {
                    return Ok(ScheduleResult {
                        node: node.name.clone(),
                        evaluated_nodes: 1,
                        feasible_nodes: 1,
                    });
                }
            }
        }
        let wanted = feasible_nodes_to_find(profile.percentage_of_nodes_to_score, num_all_nodes);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(wanted.min(all.len()));
        let mut rejections = BTreeMap::new();
        let mut processed = 0;
        let start = if all.is_empty() {
            0
        } else {
            self.next_start_node_index % all.len()
        };
        for offset in 0..all.len() {
            if feasible.len() >= wanted {
                break;
            }
            processed += 1;
            let node = &all[(start + offset) % all.len()];
            if !node.exists {
                continue;
            }
            match run_filters(pod, node, cache, profile, &state) {
                Ok(()) => feasible.push(node),
                Err(rejection) => {
                    rejections.insert(node.name.clone(), rejection);
                }
            }
        }
        if !all.is_empty() {
            self.next_start_node_index = (start + processed) % all.len();
        }
        let evaluated_nodes = feasible.len() + rejections.len();
        match feasible.len() {
            0 => Err(FitError {
                num_all_nodes,
                rejections,
            }),
            1 => Ok(ScheduleResult {
                node: feasible[0].name.clone(),
                evaluated_nodes,
                feasible_nodes: 1,
            }),
            n => {
                let scores = score_nodes(pod, &feasible, cache, profile);
                let mut best = 0;
                let mut ties = 1;
                for i in 1..n {
                    if scores[i] > scores[best] {
                        best = i;
                        ties = 1;
                    } else if scores[i] == scores[best] {
                        // Reservoir sampling: each of the tied nodes is equally likely.
                        ties += 1;
                        if rng.random_range(0..ties) == 0 {
                            best = i;
                        }
                    }
                }
                Ok(ScheduleResult {
                    node: feasible[best].name.clone(),
                    evaluated_nodes,
                    feasible_nodes: n,
                })
            }
        }
    }
}
