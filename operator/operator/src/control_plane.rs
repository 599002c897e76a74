//! Which hosts run the API server, scheduler and controller-manager in the External topology,
//! where they hold no etcd member: the hosts recorded in the Cluster's status stay (placement is
//! sticky), a host failing past the threshold gives way to a healthy spare, and the count
//! follows `controlPlane.replicas`. Stacked control-plane hosts follow their etcd members
//! instead (see `membership`). Pure: the controller observes and records.

use std::collections::BTreeSet;

/// What the choice depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inputs<'a> {
    /// The hosts the status records as the control plane; empty before the first bring-up.
    pub recorded: &'a [String],
    /// The hosts validation placed the control plane on, used until something is recorded.
    pub placement: &'a [String],
    /// Every host the Cluster selects for the control plane, most preferred first.
    pub allowed: &'a [String],
    pub replicas: usize,
    /// Hosts failing now (hostd unreachable or components not ready).
    pub failing: &'a BTreeSet<String>,
    /// Hosts failing for longer than the failure threshold.
    pub dead: &'a BTreeSet<String>,
}

/// The control-plane hosts, in the order recorded.
pub fn hosts(inputs: &Inputs<'_>) -> Vec<String> {
    if inputs.recorded.is_empty() {
        return inputs.placement.to_vec();
    }
    let mut hosts: Vec<String> = inputs
        .recorded
        .iter()
        .filter(|h| inputs.allowed.contains(h))
        .cloned()
        .collect();
    let mut spares = inputs
        .allowed
        .iter()
        .filter(|h| !hosts.contains(h) && !inputs.failing.contains(*h))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter();
    for host in hosts.iter_mut() {
        if inputs.dead.contains(host) {
            match spares.next() {
                Some(spare) => *host = spare,
                None => break,
            }
        }
    }
    for spare in spares {
        if hosts.len() >= inputs.replicas {
            break;
        }
        hosts.push(spare);
    }
    // Scaling down gives up failing hosts first, then the last ones recorded.
    while hosts.len() > inputs.replicas.max(1) {
        let index = hosts
            .iter()
            .rposition(|h| inputs.failing.contains(h))
            .unwrap_or(hosts.len() - 1);
        hosts.remove(index);
    }
    hosts
}

#[cfg(test)]
mod tests;
