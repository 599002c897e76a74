//! The next step for a Cluster, from what was observed: bring-up goes etcd → quorum →
//! control plane and load balancer → endpoint, never past a stage whose health is not there yet.
//! Every ensure is idempotent (hostd leaves identical units alone), so taking a step again
//! is safe. Pure: conditions and phase come out of here too.

use std::collections::BTreeMap;

/// One host as observed through its hostd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedHost {
    pub reachable: bool,
    /// Units present on the host and whether each is ready.
    pub units: BTreeMap<String, bool>,
}

/// The world as the reconciler saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub hosts: BTreeMap<String, ObservedHost>,
    /// etcd members that answered a health check, by host.
    pub etcd_healthy: BTreeMap<String, bool>,
    /// `/readyz` through the load balancer answered 200.
    pub endpoint_ready: bool,
}

/// Which hosts do what, and the units each stage must have ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roles {
    pub etcd: Vec<String>,
    pub control_plane: Vec<String>,
    /// One host, or two sharing a virtual IP.
    pub load_balancers: Vec<String>,
    /// The units every control-plane host must run (the bundle's components).
    pub control_plane_units: Vec<String>,
    /// The host a change is rolling through: drained from the load balancer while it
    /// restarts, so its readiness does not count against the control plane's.
    pub rolling: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Some hosts the Cluster needs do not answer; nothing can proceed on them.
    WaitForHosts(Vec<String>),
    /// Ensure etcd's files and unit on every etcd host (members form the cluster together).
    EnsureEtcd,
    /// Ensure control-plane files and units on every control-plane host.
    EnsureControlPlane,
    EnsureLoadBalancer,
    /// Nothing to change: the Cluster is up.
    Done,
}

/// What the reconciler should do now, and how the Cluster stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Steps to take now, in order.
    pub steps: Vec<Step>,
    pub etcd_quorum: Check,
    pub control_plane_ready: Check,
    pub load_balancer_ready: Check,
    /// The API answers through the load balancer, backed by an etcd quorum and at least one
    /// control-plane host with every component ready: clients are served, even while a
    /// failing host waits to be replaced.
    pub available: bool,
    /// Available with every control-plane host ready: nothing is missing.
    pub complete: bool,
}

/// A condition's status with its reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Check {
    fn pass(reason: &'static str, message: String) -> Check {
        Check {
            ok: true,
            reason,
            message,
        }
    }

    fn fail(reason: &'static str, message: String) -> Check {
        Check {
            ok: false,
            reason,
            message,
        }
    }
}

/// The quorum of an etcd cluster of `members`.
pub fn quorum(members: usize) -> usize {
    members / 2 + 1
}

pub fn plan(roles: &Roles, observed: &Observed) -> Plan {
    let mut needed: Vec<&String> = roles
        .etcd
        .iter()
        .chain(&roles.control_plane)
        .chain(&roles.load_balancers)
        .collect();
    needed.sort();
    needed.dedup();
    let unreachable: Vec<String> = needed
        .iter()
        .filter(|h| !observed.hosts.get(**h).is_some_and(|o| o.reachable))
        .map(|h| h.to_string())
        .collect();

    let healthy = roles
        .etcd
        .iter()
        .filter(|h| observed.etcd_healthy.get(*h).copied().unwrap_or(false))
        .count();
    let needed_quorum = quorum(roles.etcd.len());
    let etcd_quorum = if healthy >= needed_quorum {
        Check::pass(
            "QuorumHealthy",
            format!("{healthy} of {} etcd members healthy", roles.etcd.len()),
        )
    } else {
        Check::fail(
            "QuorumLost",
            format!(
                "{healthy} of {} etcd members healthy, {needed_quorum} needed",
                roles.etcd.len()
            ),
        )
    };

    let host_ready = |host: &String| {
        roles.control_plane_units.iter().all(|unit| {
            observed
                .hosts
                .get(host)
                .and_then(|o| o.units.get(unit))
                .copied()
                .unwrap_or(false)
        })
    };
    let serving = roles.control_plane.iter().any(host_ready);
    let not_ready: Vec<String> = roles
        .control_plane
        .iter()
        .filter(|host| roles.rolling.as_ref() != Some(*host))
        .flat_map(|host| {
            roles.control_plane_units.iter().filter_map(move |unit| {
                let ready = observed
                    .hosts
                    .get(host)
                    .and_then(|o| o.units.get(unit))
                    .copied()
                    .unwrap_or(false);
                (!ready).then(|| format!("{unit} on {host}"))
            })
        })
        .collect();
    let control_plane_ready = if not_ready.is_empty() {
        Check::pass(
            "ComponentsReady",
            format!(
                "every component ready on {} hosts",
                roles.control_plane.len()
            ),
        )
    } else {
        Check::fail(
            "ComponentsNotReady",
            format!("not ready: {}", not_ready.join(", ")),
        )
    };

    // One HAProxy answering is enough: with two hosts the virtual IP goes to the one that does.
    let haproxy_ready = roles.load_balancers.iter().any(|host| {
        observed
            .hosts
            .get(host)
            .and_then(|o| o.units.get(crate::render::HAPROXY))
            .copied()
            .unwrap_or(false)
    });
    let load_balancer_ready = match (haproxy_ready, observed.endpoint_ready) {
        (true, true) => Check::pass(
            "EndpointReady",
            "the API answers /readyz through the load balancer".into(),
        ),
        (true, false) => Check::fail(
            "EndpointNotReady",
            "HAProxy runs but /readyz through it does not answer 200".into(),
        ),
        (false, _) => Check::fail(
            "HAProxyNotReady",
            format!(
                "HAProxy is not ready on {}",
                roles.load_balancers.join(" or ")
            ),
        ),
    };

    let mut steps = Vec::new();
    if !unreachable.is_empty() {
        steps.push(Step::WaitForHosts(unreachable.clone()));
    }
    let reachable = |hosts: &[String]| hosts.iter().all(|h| !unreachable.contains(h));
    // etcd first: its members can only form the cluster together.
    if reachable(&roles.etcd) {
        steps.push(Step::EnsureEtcd);
        if etcd_quorum.ok && reachable(&roles.control_plane) {
            steps.push(Step::EnsureControlPlane);
            // Where HAProxy runs nowhere yet, it goes in beside the control plane: its checks
            // take each API server in once ready, so the endpoint answers as soon as one is.
            // Once it runs it changes only with a ready control plane, as a reload starts every
            // listed server as up until its checks fail.
            if (control_plane_ready.ok || !haproxy_ready)
                && roles
                    .load_balancers
                    .iter()
                    .any(|h| !unreachable.contains(h))
            {
                steps.push(Step::EnsureLoadBalancer);
            }
        }
    }
    let available = etcd_quorum.ok && serving && load_balancer_ready.ok;
    let complete = available && control_plane_ready.ok;
    if complete && unreachable.is_empty() {
        steps.push(Step::Done);
    }
    Plan {
        steps,
        etcd_quorum,
        control_plane_ready,
        load_balancer_ready,
        available,
        complete,
    }
}

#[cfg(test)]
mod tests;
