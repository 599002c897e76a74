//! The next etcd membership change for a Cluster: replacing dead members, scaling one member at
//! a time, moving members off hosts the Cluster no longer selects and fencing replaced hosts.
//! At most one change is in flight, and no step leaves fewer healthy voting members than quorum.
//! Pure: the controller observes etcd and hostd, takes the one step and plans again.
//!
//! The controller's part:
//! - `AddLearner` is etcd's MemberAdd as a learner; `StartMember` starts etcd on the host with an
//!   empty data dir, `initial-cluster-state=existing` and the member list etcd reports.
//! - Before `RemoveMember` it marks the member's host fenced, so a crash between the two still
//!   ends in the removal: a fenced host that still has a member is a removal in flight.
//! - `Fence` stops etcd on the host and wipes its data dir; then the controller clears the mark
//!   and the host may serve as a spare again.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::plan::quorum;

/// An etcd member as etcd's member list and a health check report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty while the member was added but never started.
    pub name: String,
    /// The host its peer URL names.
    pub host: String,
    pub is_learner: bool,
    /// It answered a health check.
    pub healthy: bool,
}

impl Member {
    pub fn started(&self) -> bool {
        !self.name.is_empty()
    }

    /// Only a started member can answer for its vote.
    fn healthy_voter(&self) -> bool {
        !self.is_learner && self.started() && self.healthy
    }
}

/// A host as the controller sees it through hostd and etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostState {
    /// Its hostd answers.
    pub reachable: bool,
    /// How long hostd or the host's etcd member has failed health checks; `None` while healthy.
    pub unhealthy_for: Option<Duration>,
    /// Its member was removed (replaced or scaled away): its etcd must be stopped and its data
    /// wiped before it may hold a member again.
    pub fenced: bool,
}

/// What the controller observed. Hosts missing from `hosts` count as unreachable, never dead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub members: Vec<Member>,
    /// The leader's member id, when a member reported one.
    pub leader: Option<u64>,
    /// The members' hosts and the spares.
    pub hosts: BTreeMap<String, HostState>,
}

/// What the Cluster asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// `controlPlane.replicas` (Stacked) or `etcd.replicas` (External).
    pub replicas: usize,
    /// The hosts the Cluster selects for etcd, most preferred first; those without a member
    /// are the spares.
    pub allowed_hosts: Vec<String>,
    /// A host unhealthy for longer than this is dead and its member is replaced.
    pub failure_threshold: Duration,
}

/// The one thing to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A replaced host answers again: stop its etcd and wipe its data dir before anything else.
    Fence {
        host: String,
    },
    /// MemberAdd as a learner: it does not vote, so it cannot cost quorum while it catches up.
    AddLearner {
        host: String,
    },
    /// The member was added; start etcd on its host to join the existing cluster.
    StartMember {
        id: u64,
        host: String,
    },
    /// The learner is healthy; make it a voter.
    PromoteLearner {
        id: u64,
    },
    /// MemberRemove; mark the host fenced first.
    RemoveMember {
        id: u64,
        host: String,
    },
    Wait(Wait),
    /// The desired number of healthy voters, all on allowed hosts; nothing in flight.
    Done,
}

/// Why no change can be made now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Fewer healthy voters than quorum: etcd accepts no membership change.
    QuorumLost { healthy: usize, voters: usize },
    /// A member is missing or must be replaced and no allowed host is free and healthy.
    NoSpareHost { missing: usize },
    /// A learner was started but has not answered a health check yet.
    LearnerCatchingUp { id: u64 },
    /// A member was added on a host whose hostd does not answer; it is started once it does.
    HostUnreachable { host: String },
    /// Members are unhealthy but not yet past the failure threshold.
    MembersUnhealthy { ids: Vec<u64> },
    /// Removing any of these members, the ones due to go now, would leave fewer healthy voters
    /// than quorum.
    WouldLoseQuorum { ids: Vec<u64> },
}

impl Wait {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Wait::QuorumLost { .. } => "QuorumLost",
            Wait::NoSpareHost { .. } => "NoSpareHost",
            Wait::LearnerCatchingUp { .. } => "LearnerCatchingUp",
            Wait::HostUnreachable { .. } => "HostUnreachable",
            Wait::MembersUnhealthy { .. } => "MembersUnhealthy",
            Wait::WouldLoseQuorum { .. } => "WouldLoseQuorum",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Wait::QuorumLost { healthy, voters } => format!(
                "{healthy} of {voters} voting etcd members healthy, {} needed",
                quorum(*voters)
            ),
            Wait::NoSpareHost { missing } => {
                format!("{missing} etcd member(s) missing and no healthy spare host selected")
            }
            Wait::LearnerCatchingUp { id } => {
                format!("learner {id:x} has not answered a health check yet")
            }
            Wait::HostUnreachable { host } => {
                format!("the member added on {host} waits for the host to answer")
            }
            Wait::MembersUnhealthy { ids } => format!(
                "unhealthy, not yet past the failure threshold: {}",
                hex_ids(ids)
            ),
            Wait::WouldLoseQuorum { ids } => format!(
                "removing any of {} would leave fewer healthy voters than quorum",
                hex_ids(ids)
            ),
        }
    }
}

/// A `Degraded` condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Degraded {
    pub reason: &'static str,
    pub message: String,
}

/// How the membership stands, for status conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Voting members, started or not.
    pub voters: usize,
    pub healthy_voters: usize,
    pub quorum_holds: bool,
    /// Members whose hosts are past the failure threshold.
    pub dead_members: Vec<u64>,
    /// `None` while quorum holds and no member is dead.
    pub degraded: Option<Degraded>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipPlan {
    pub step: Step,
    pub summary: Summary,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("the desired etcd member count is 0")]
    NoReplicas,
    /// Steps name hosts, so a host may hold one member only.
    #[error("members {first:x} and {second:x} are both on host {host}")]
    SharedHost {
        host: String,
        first: u64,
        second: u64,
    },
}

/// Voting members and how many of them are healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Votes {
    voters: usize,
    healthy: usize,
}

impl Votes {
    fn of(members: &[Member]) -> Votes {
        Votes {
            voters: members.iter().filter(|m| !m.is_learner).count(),
            healthy: members.iter().filter(|m| m.healthy_voter()).count(),
        }
    }

    /// An empty cluster has no quorum to keep.
    fn holds(self) -> bool {
        self.voters > 0 && self.healthy >= quorum(self.voters)
    }

    fn without(self, member: &Member) -> Votes {
        if member.is_learner {
            return self;
        }
        Votes {
            voters: self.voters - 1,
            healthy: self.healthy - usize::from(member.healthy_voter()),
        }
    }
}

pub fn plan(observed: &Observed, desired: &Desired) -> Result<MembershipPlan, MembershipError> {
    if desired.replicas == 0 {
        return Err(MembershipError::NoReplicas);
    }
    let mut by_host: BTreeMap<&str, u64> = BTreeMap::new();
    for m in &observed.members {
        if let Some(first) = by_host.insert(&m.host, m.id) {
            return Err(MembershipError::SharedHost {
                host: m.host.clone(),
                first,
                second: m.id,
            });
        }
    }
    let view = View {
        observed,
        desired,
        votes: Votes::of(&observed.members),
    };
    let step = view.next_step();
    let summary = view.summary(&step);
    Ok(MembershipPlan { step, summary })
}

struct View<'a> {
    observed: &'a Observed,
    desired: &'a Desired,
    votes: Votes,
}

impl View<'_> {
    fn host(&self, name: &str) -> HostState {
        self.observed.hosts.get(name).cloned().unwrap_or_default()
    }

    fn preference(&self, host: &str) -> Option<usize> {
        self.desired.allowed_hosts.iter().position(|h| h == host)
    }

    fn dead(&self, member: &Member) -> bool {
        !member.healthy
            && self
                .host(&member.host)
                .unhealthy_for
                .is_some_and(|d| d > self.desired.failure_threshold)
    }

    /// A member that should stay: alive, on an allowed host, not being removed.
    fn keeper(&self, member: &Member) -> bool {
        self.preference(&member.host).is_some()
            && !self.dead(member)
            && !self.host(&member.host).fenced
    }

    fn settled_keepers(&self) -> usize {
        self.observed
            .members
            .iter()
            .filter(|m| !m.is_learner && m.started() && self.keeper(m))
            .count()
    }

    /// An added member is still worth finishing: the settled voters are short of the desired count.
    fn wanted(&self, member: &Member) -> bool {
        self.keeper(member) && self.settled_keepers() < self.desired.replicas
    }

    fn spare(&self) -> Option<&str> {
        self.desired
            .allowed_hosts
            .iter()
            .find(|h| {
                let state = self.host(h);
                state.reachable
                    && state.unhealthy_for.is_none()
                    && !state.fenced
                    && !self.observed.members.iter().any(|m| &m.host == *h)
            })
            .map(String::as_str)
    }

    fn remove(&self, member: &Member) -> Step {
        Step::RemoveMember {
            id: member.id,
            host: member.host.clone(),
        }
    }

    /// The first candidate whose removal keeps quorum.
    fn remove_first_safe(&self, candidates: &[&Member]) -> Step {
        if !self.votes.holds() {
            return self.quorum_lost();
        }
        match candidates.iter().find(|m| self.votes.without(m).holds()) {
            Some(member) => self.remove(member),
            None => Step::Wait(Wait::WouldLoseQuorum {
                ids: candidates.iter().map(|m| m.id).collect(),
            }),
        }
    }

    fn quorum_lost(&self) -> Step {
        Step::Wait(Wait::QuorumLost {
            healthy: self.votes.healthy,
            voters: self.votes.voters,
        })
    }

    /// Removal order: dead members, then unhealthy ones (removing them raises the margin over
    /// quorum), then the leader last (removing it forces an election), then hosts the Cluster no
    /// longer selects and the least preferred. Spares are added in preference order, so the least
    /// preferred host is the member scaling up added last and 3 → 5 → 3 returns to the same hosts.
    fn removal_order<'m>(&self, mut members: Vec<&'m Member>) -> Vec<&'m Member> {
        members.sort_by_key(|m| {
            (
                !self.dead(m),
                m.healthy,
                self.observed.leader == Some(m.id),
                std::cmp::Reverse(self.preference(&m.host).unwrap_or(usize::MAX)),
            )
        });
        members
    }

    fn next_step(&self) -> Step {
        let members = &self.observed.members;
        // A replaced host that answers again is fenced first: whatever it runs holds data the
        // cluster has moved past. Its member is gone, so stopping it costs no vote.
        if let Some((host, _)) = self.observed.hosts.iter().find(|(host, state)| {
            state.fenced && state.reachable && !members.iter().any(|m| &m.host == *host)
        }) {
            return Step::Fence { host: host.clone() };
        }

        // Changes in flight are finished (or abandoned) before any new one.
        let removing: Vec<&Member> = members
            .iter()
            .filter(|m| self.host(&m.host).fenced)
            .collect();
        if !removing.is_empty() {
            return self.remove_first_safe(&self.removal_order(removing));
        }
        if let Some(added) = members.iter().find(|m| !m.started()) {
            if !self.wanted(added) {
                return self.remove_first_safe(&[added]);
            }
            if !self.host(&added.host).reachable {
                return Step::Wait(Wait::HostUnreachable {
                    host: added.host.clone(),
                });
            }
            // Starting needs no quorum, and an added voter's start is what restores it.
            return Step::StartMember {
                id: added.id,
                host: added.host.clone(),
            };
        }
        if let Some(learner) = members.iter().find(|m| m.is_learner) {
            if !self.wanted(learner) {
                return self.remove_first_safe(&[learner]);
            }
            if !learner.healthy {
                return Step::Wait(Wait::LearnerCatchingUp { id: learner.id });
            }
            // With quorum holding, a healthy new voter keeps it: healthy + 1 >= quorum(voters + 1).
            if !self.votes.holds() {
                return self.quorum_lost();
            }
            return Step::PromoteLearner { id: learner.id };
        }

        if !self.votes.holds() {
            return self.quorum_lost();
        }
        let (keepers, outgoing): (Vec<&Member>, Vec<&Member>) =
            members.iter().partition(|m| self.keeper(m));
        let outgoing = self.removal_order(outgoing);
        // One more voter is needed when the keepers are short and no replacement added earlier
        // is waiting for its outgoing member's removal (one move at a time).
        if keepers.len() < self.desired.replicas && self.votes.voters <= self.desired.replicas {
            let Some(spare) = self.spare() else {
                // A dead member stays listed: if its host comes back it is the best replacement.
                return Step::Wait(Wait::NoSpareHost {
                    missing: self.desired.replicas - keepers.len(),
                });
            };
            // Replacing: adding first keeps the outgoing vote while the newcomer catches up as a
            // learner, but its promotion raises quorum while the outgoing member still counts.
            // Add first only when quorum would survive losing the newcomer right after its
            // promotion (healthy >= quorum(voters + 1)); otherwise (3 voters, 1 dead) remove the
            // outgoing member first, which never raises quorum. Add first anyway when that
            // removal itself would lose quorum (a single member on a host no longer selected).
            if let Some(first_out) = outgoing.first() {
                let add_first = self.votes.healthy >= quorum(self.votes.voters + 1)
                    || !self.votes.without(first_out).holds();
                if !add_first {
                    return self.remove(first_out);
                }
            }
            return Step::AddLearner {
                host: spare.to_string(),
            };
        }
        if !outgoing.is_empty() {
            return self.remove_first_safe(&outgoing);
        }
        if keepers.len() > self.desired.replicas {
            return self.remove_first_safe(&self.removal_order(keepers));
        }
        let unhealthy: Vec<u64> = keepers
            .iter()
            .filter(|m| !m.healthy)
            .map(|m| m.id)
            .collect();
        if !unhealthy.is_empty() {
            return Step::Wait(Wait::MembersUnhealthy { ids: unhealthy });
        }
        Step::Done
    }

    fn summary(&self, step: &Step) -> Summary {
        let dead: Vec<&Member> = self
            .observed
            .members
            .iter()
            .filter(|m| self.dead(m))
            .collect();
        let quorum_holds = self.votes.holds();
        let degraded = if !quorum_holds {
            Some(Degraded {
                reason: "QuorumLost",
                message: Wait::QuorumLost {
                    healthy: self.votes.healthy,
                    voters: self.votes.voters,
                }
                .message(),
            })
        } else if dead.is_empty() {
            None
        } else {
            let names: Vec<String> = dead
                .iter()
                .map(|m| format!("{:x} on {}", m.id, m.host))
                .collect();
            let no_spare = matches!(step, Step::Wait(Wait::NoSpareHost { .. }));
            Some(Degraded {
                reason: if no_spare {
                    "NoSpareHost"
                } else {
                    "MemberDead"
                },
                message: format!(
                    "unhealthy for longer than {:?}: {}{}",
                    self.desired.failure_threshold,
                    names.join(", "),
                    if no_spare {
                        "; no healthy spare host to replace them"
                    } else {
                        ""
                    }
                ),
            })
        };
        Summary {
            voters: self.votes.voters,
            healthy_voters: self.votes.healthy,
            quorum_holds,
            dead_members: dead.iter().map(|m| m.id).collect(),
            degraded,
        }
    }
}

fn hex_ids(ids: &[u64]) -> String {
    ids.iter()
        .map(|id| format!("{id:x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
