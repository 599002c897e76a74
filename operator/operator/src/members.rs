//! Between etcd and the membership planner: etcd's member list, health checks and hostd's
//! answers translated into [`membership::Observed`], how long each host has been failing, and
//! the membership a joining member is started into. Pure: the controller does the calls.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use hakube_operator_api::cluster::EtcdHostStatus;

use crate::membership::{self, HostState, Member};
use crate::render;

/// A member as etcd's MemberList reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMember {
    pub id: u64,
    /// Empty until the member has started.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
}

/// A host as hostd and the etcd health checks saw it in this reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCheck {
    pub reachable: bool,
    /// Its etcd member answered a health check; `None` when it holds no member.
    pub member_healthy: Option<bool>,
}

impl HostCheck {
    /// A learner or an unstarted member has not answered yet while it joins: only hostd counts.
    fn healthy(&self, joining: bool) -> bool {
        self.reachable && (joining || self.member_healthy != Some(false))
    }
}

/// The host a member's peer URL names, by address; the URL itself for an address the Cluster
/// does not know, so the planner treats it as a host it no longer selects.
pub fn member_host(peer_urls: &[String], addresses: &BTreeMap<String, IpAddr>) -> String {
    addresses
        .iter()
        .find(|(_, ip)| peer_urls.contains(&render::etcd_peer_url(**ip)))
        .map(|(host, _)| host.clone())
        .unwrap_or_else(|| peer_urls.join(","))
}

/// When each host started failing, so "dead" means failing for longer than a threshold. Kept
/// in the Cluster's status too, so a new operator leader counts from the first failure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureClock {
    failing_since: BTreeMap<String, SystemTime>,
}

impl FailureClock {
    /// A clock resumed from the failures a status recorded.
    pub fn resumed(failing_since: impl IntoIterator<Item = (String, SystemTime)>) -> FailureClock {
        FailureClock {
            failing_since: failing_since.into_iter().collect(),
        }
    }

    /// Records this reconcile's verdict on `host`; how long it has been failing, `None` if healthy.
    pub fn observe(&mut self, host: &str, healthy: bool, now: SystemTime) -> Option<Duration> {
        if healthy {
            self.failing_since.remove(host);
            return None;
        }
        let since = *self.failing_since.entry(host.to_string()).or_insert(now);
        Some(now.duration_since(since).unwrap_or_default())
    }

    /// The failing hosts among `hosts` and since when; hosts no longer watched are forgotten.
    pub fn failing(&mut self, hosts: &BTreeSet<&String>) -> Vec<(String, SystemTime)> {
        self.failing_since.retain(|host, _| hosts.contains(host));
        self.failing_since
            .iter()
            .map(|(host, since)| (host.clone(), *since))
            .collect()
    }
}

/// What the planner needs: the members with their hosts and health, and every host checked
/// (the members' and the spares') with how long it has failed and whether it is fenced.
pub fn observed(
    listed: &[ListedMember],
    addresses: &BTreeMap<String, IpAddr>,
    checks: &BTreeMap<String, HostCheck>,
    leader: Option<u64>,
    fenced: &[String],
    clock: &mut FailureClock,
    now: SystemTime,
) -> membership::Observed {
    let members: Vec<Member> = listed
        .iter()
        .map(|m| {
            let host = member_host(&m.peer_urls, addresses);
            let started = !m.name.is_empty();
            Member {
                id: m.id,
                name: m.name.clone(),
                healthy: started
                    && checks
                        .get(&host)
                        .is_some_and(|c| c.member_healthy == Some(true)),
                host,
                is_learner: m.is_learner,
            }
        })
        .collect();
    let hosts = checks
        .iter()
        .map(|(host, check)| {
            let joining = members
                .iter()
                .any(|m| &m.host == host && (m.is_learner || !m.started()));
            let state = HostState {
                reachable: check.reachable,
                unhealthy_for: clock.observe(host, check.healthy(joining), now),
                fenced: fenced.contains(host),
            };
            (host.clone(), state)
        })
        .collect();
    membership::Observed {
        members,
        leader,
        hosts,
    }
}

/// The members started together when the Cluster came up.
pub fn first_members(etcd: &BTreeMap<String, IpAddr>) -> Vec<EtcdHostStatus> {
    let initial_cluster = render::initial_cluster(etcd);
    etcd.keys()
        .map(|host| EtcdHostStatus {
            host: host.clone(),
            initial_cluster: initial_cluster.clone(),
            initial_cluster_state: "new".into(),
        })
        .collect()
}

/// The membership a member added on `host` starts into: the started members and itself, as
/// etcd requires of `--initial-cluster` with `--initial-cluster-state=existing`.
pub fn joining_member(
    host: &str,
    listed: &[ListedMember],
    addresses: &BTreeMap<String, IpAddr>,
) -> EtcdHostStatus {
    let mut initial: Vec<String> = listed
        .iter()
        .filter_map(|m| {
            let member_host = member_host(&m.peer_urls, addresses);
            let name = if m.name.is_empty() {
                // Only the joining member may be unnamed in its own list.
                (member_host == host).then_some(member_host)?
            } else {
                m.name.clone()
            };
            Some(format!("{name}={}", m.peer_urls.first()?))
        })
        .collect();
    initial.sort();
    EtcdHostStatus {
        host: host.to_string(),
        initial_cluster: initial.join(","),
        initial_cluster_state: "existing".into(),
    }
}

#[cfg(test)]
mod tests;
