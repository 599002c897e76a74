//! Rolling changes through a Cluster's serving hosts one at a time: a new version, renewed
//! certificates or new flags reach a host that serves only once every other host serves, an API
//! server leaves the load balancer before it restarts, and a host that is not healthy again
//! within the timeout halts the rollout with the rest left as they were. Hosts that serve
//! nothing yet (coming up, or replacing a dead one) take their change at once.
//! Pure: the controller compares each host's units with what it would ensure, acts on the
//! result and keeps [`Record`] in the Cluster's status.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// One host the Cluster runs units on, as observed this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// Every unit the host should run is running with the spec the controller would ensure.
    pub current: bool,
    /// Reachable, and every unit it should run is ready.
    pub serving: bool,
    /// It runs an API server behind the load balancer, which must drain it before a restart.
    pub behind_load_balancer: bool,
}

/// The rollout's state between reconciles, as kept in the Cluster's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub host: String,
    /// When its units were ensured with the change; `None` while it is drained first.
    pub restarted_at: Option<SystemTime>,
    /// The spec generation whose rollout halted on this host; a new generation resumes.
    pub halted_generation: Option<i64>,
}

/// What the controller does this reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Hosts whose units must be left alone now: they serve and wait for their turn.
    pub held: BTreeSet<String>,
    /// The host the load balancer leaves out.
    pub drained: Option<String>,
    /// The host to ensure once the load balancer runs without it; held until then.
    pub restart_when_drained: Option<String>,
    pub record: Option<Record>,
    pub halted: Option<Halt>,
}

/// Why a rollout stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    pub host: String,
    pub message: String,
}

impl Plan {
    /// The host being rolled now, whose readiness the Cluster's conditions excuse.
    pub fn rolling(&self) -> Option<&str> {
        self.record.as_ref().map(|r| r.host.as_str())
    }
}

/// The rollout step for `hosts` (in rollout order) given the last reconcile's `previous` record.
pub fn plan(
    hosts: &[Host],
    previous: Option<&Record>,
    generation: i64,
    now: SystemTime,
    timeout: Duration,
) -> Plan {
    let waiting: BTreeSet<String> = hosts
        .iter()
        .filter(|h| h.serving && !h.current)
        .map(|h| h.name.clone())
        .collect();
    let mut plan = Plan {
        held: waiting.clone(),
        ..Plan::default()
    };
    let in_progress = previous.and_then(|record| {
        let host = hosts.iter().find(|h| h.name == record.host)?;
        let halted_now = record.halted_generation == Some(generation);
        if host.current && host.serving && !halted_now {
            // Its change took; the rollout goes on with the next host.
            return None;
        }
        Some((host, record, halted_now))
    });
    match in_progress {
        Some((host, record, true)) => {
            plan.drained = host.behind_load_balancer.then(|| host.name.clone());
            plan.record = Some(record.clone());
            plan.halted = Some(halt(record));
        }
        Some((host, record, false)) => {
            plan.drained = host.behind_load_balancer.then(|| host.name.clone());
            match record.restarted_at {
                Some(restarted) if host.current => {
                    let waited = now.duration_since(restarted).unwrap_or_default();
                    let mut kept = record.clone();
                    if waited > timeout {
                        kept.halted_generation = Some(generation);
                        plan.halted = Some(halt(&kept));
                    }
                    plan.record = Some(kept);
                }
                // Drained but not restarted yet, or changed again while it restarted.
                _ => {
                    start(&mut plan, host);
                }
            }
        }
        None => {
            // Only once every other host serves: a rollout never takes a second host away.
            let next = hosts.iter().find(|h| waiting.contains(&h.name));
            if let Some(next) = next {
                if hosts.iter().all(|h| h.name == next.name || h.serving) {
                    start(&mut plan, next);
                }
            }
        }
    }
    plan
}

/// Drains `host` (when it is behind the load balancer) and restarts it once drained.
fn start(plan: &mut Plan, host: &Host) {
    plan.drained = host.behind_load_balancer.then(|| host.name.clone());
    plan.restart_when_drained = Some(host.name.clone());
    plan.held.insert(host.name.clone());
    plan.record = Some(Record {
        host: host.name.clone(),
        restarted_at: None,
        halted_generation: None,
    });
}

fn halt(record: &Record) -> Halt {
    Halt {
        host: record.host.clone(),
        message: format!(
            "{} did not become healthy after its change; the other hosts keep what they run",
            record.host
        ),
    }
}

#[cfg(test)]
mod tests;
