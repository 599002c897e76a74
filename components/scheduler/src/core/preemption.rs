//! Upstream's DefaultPreemption: when no node fits, find the node where evicting the fewest,
//! least important lower-priority pods makes room, and name those pods.

use std::sync::Arc;

use super::algorithm::FitError;
use super::cache::ClusterCache;
use super::filters::{run_filters, CycleState};
use super::framework::Profile;
use super::node::NodeInfo;
use super::pod::PodInfo;

#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

fn fits(
    pod: &PodInfo,
    node: &NodeInfo,
    cache: &ClusterCache,
    profile: &Profile,
    state: &CycleState,
) -> bool {
    run_filters(pod, node, cache, profile, state).is_ok()
}

/// Upstream's selectVictimsOnNode: remove every lower-priority pod; if the pod then fits, put
/// back as many as possible, most important first.
fn victims_on(
    pod: &PodInfo,
    node: &NodeInfo,
    cache: &ClusterCache,
    profile: &Profile,
    state: &CycleState,
) -> Option<Vec<Arc<PodInfo>>> {
    let mut trial = node.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority && !p.deleting)
        .cloned()
        .collect();
    if potential.is_empty() {
        return None;
    }
    for p in &potential {
        trial.remove_pod(&p.key);
    }
    if !fits(pod, &trial, cache, profile, state) {
        return None;
    }
    potential.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.start_time.cmp(&b.start_time))
    });
    let mut victims = Vec::new();
    for p in potential {
        trial.add_pod(p.clone());
        if !fits(pod, &trial, cache, profile, state) {
            trial.remove_pod(&p.key);
            victims.push(p);
        }
    }
    (!victims.is_empty()).then_some(victims)
}

/// Whether the pod may preempt at all; the message upstream reports when it may not.
pub fn eligible(pod: &PodInfo, cache: &ClusterCache) -> Result<(), String> {
    if pod.preempt_never {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    // A pod already nominated waits while lower-priority victims on that node terminate.
    if let Some(node) = pod
        .nominated_node_name
        .as_deref()
        .or(cache.nominated_node_of(&pod.key))
    {
        if let Some(info) = cache.node(node) {
            if info
                .pods
                .iter()
                .any(|p| p.deleting && p.priority < pod.priority)
            {
                return Err("not eligible due to a terminating pod on the nominated node.".into());
            }
        }
    }
    Ok(())
}

/// Picks a node and victims, or says why there is none (upstream's postfilter message).
pub fn preempt(
    pod: &PodInfo,
    cache: &ClusterCache,
    profile: &Profile,
    fit_error: &FitError,
) -> Result<Candidate, String> {
    eligible(pod, cache)?;
    let state = CycleState::prepare(pod, cache, profile);
    let mut candidates = Vec::new();
    let (mut not_helpful, mut no_victims) = (0usize, 0usize);
    for node in cache.nodes().iter().filter(|n| n.exists) {
        let resolvable = fit_error
            .rejections
            .get(&node.name)
            .is_none_or(|r| r.resolvable);
        if !resolvable {
            not_helpful += 1;
            continue;
        }
        match victims_on(pod, node, cache, profile, &state) {
            Some(victims) => candidates.push(Candidate {
                node: node.name.clone(),
                victims,
            }),
            None => no_victims += 1,
        }
    }
    // Upstream's pickOneNodeForPreemption: lowest highest-victim priority, then lowest sum
    // of priorities, then fewest victims.
    let key = |c: &Candidate| {
        let highest = c
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        (highest, sum, c.victims.len())
    };
    if let Some(best) = candidates.iter().min_by_key(|c| key(c)) {
        return Ok(best.clone());
    }
    let mut parts = Vec::new();
    if not_helpful > 0 {
        parts.push(format!("{not_helpful} {NOT_HELPFUL}"));
    }
    if no_victims > 0 {
        parts.push(format!("{no_victims} {NO_VICTIMS}"));
    }
    parts.sort();
    Err(format!(
        "0/{} nodes are available: {}.",
        cache.node_count(),
        parts.join(", ")
    ))
}
