use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;

const THRESHOLD: Duration = Duration::from_secs(60);
const BRIEFLY: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(600);

fn healthy_host() -> HostState {
    HostState {
        reachable: true,
        ..Default::default()
    }
}

/// Healthy started voters on `members` (ids 1, 2, … in order), healthy spares, and the
/// members then the spares as the allowed hosts.
fn cluster(members: &[&str], spares: &[&str], replicas: usize) -> (Observed, Desired) {
    let observed = Observed {
        members: members
            .iter()
            .zip(1..)
            .map(|(host, id)| Member {
                id,
                name: host.to_string(),
                host: host.to_string(),
                is_learner: false,
                healthy: true,
            })
            .collect(),
        leader: Some(1),
        hosts: members
            .iter()
            .chain(spares)
            .map(|h| (h.to_string(), healthy_host()))
            .collect(),
    };
    let desired = Desired {
        replicas,
        allowed_hosts: members
            .iter()
            .chain(spares)
            .map(|h| h.to_string())
            .collect(),
        failure_threshold: THRESHOLD,
    };
    (observed, desired)
}

/// The host stops answering and its member with it.
fn fail(observed: &mut Observed, host: &str, since: Duration) {
    for m in observed.members.iter_mut().filter(|m| m.host == host) {
        m.healthy = false;
    }
    observed.hosts.insert(
        host.into(),
        HostState {
            reachable: false,
            unhealthy_for: Some(since),
            fenced: false,
        },
    );
}

fn member_mut(observed: &mut Observed, id: u64) -> &mut Member {
    observed.members.iter_mut().find(|m| m.id == id).unwrap()
}

fn step(observed: &Observed, desired: &Desired) -> Step {
    plan(observed, desired).unwrap().step
}

/// The controller and etcd doing what the step says; new members come up healthy, and waiting
/// lets every unhealthy host pass the failure threshold. Hosts must be known.
fn apply(observed: &mut Observed, step: &Step) {
    match step {
        Step::Fence { host } => observed.hosts.get_mut(host).unwrap().fenced = false,
        Step::AddLearner { host } => {
            // etcd picks ids at random; here a host's place among the hosts, as `cluster` and
            // `world` number their members.
            let id = 1 + observed.hosts.keys().position(|h| h == host).unwrap() as u64;
            observed.members.push(Member {
                id,
                name: String::new(),
                host: host.clone(),
                is_learner: true,
                healthy: false,
            });
        }
        Step::StartMember { id, .. } => {
            let member = member_mut(observed, *id);
            member.name = member.host.clone();
            member.healthy = true;
        }
        Step::PromoteLearner { id } => member_mut(observed, *id).is_learner = false,
        Step::RemoveMember { id, host } => {
            observed.hosts.entry(host.clone()).or_default().fenced = true;
            observed.members.retain(|m| m.id != *id);
            if observed.leader == Some(*id) {
                observed.leader = observed
                    .members
                    .iter()
                    .find(|m| m.healthy_voter())
                    .map(|m| m.id);
            }
        }
        Step::Wait(_) => {
            for state in observed.hosts.values_mut() {
                if state.unhealthy_for.is_some() {
                    state.unhealthy_for = Some(LONG);
                }
            }
        }
        Step::Done => {}
    }
}

/// Steps until `Done` or a wait that waiting does not end, each checked by `check_step`.
fn try_run(observed: &mut Observed, desired: &Desired) -> Result<Vec<Step>, TestCaseError> {
    let mut steps = Vec::new();
    for _ in 0..64 {
        let next = step(observed, desired);
        check_step(observed, desired, &next)?;
        let before = observed.clone();
        apply(observed, &next);
        let stuck = matches!(next, Step::Wait(_)) && *observed == before;
        let done = next == Step::Done;
        steps.push(next);
        if done || stuck {
            break;
        }
    }
    Ok(steps)
}

fn run(observed: &mut Observed, desired: &Desired) -> Vec<Step> {
    try_run(observed, desired).unwrap()
}

fn add(host: &str) -> Step {
    Step::AddLearner { host: host.into() }
}

fn start(id: u64, host: &str) -> Step {
    Step::StartMember {
        id,
        host: host.into(),
    }
}

fn remove(id: u64, host: &str) -> Step {
    Step::RemoveMember {
        id,
        host: host.into(),
    }
}

fn fence(host: &str) -> Step {
    Step::Fence { host: host.into() }
}

#[test]
fn a_healthy_cluster_of_the_desired_size_is_done() {
    let (observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    let p = plan(&observed, &desired).unwrap();
    assert_eq!(p.step, Step::Done);
    assert_eq!(
        p.summary,
        Summary {
            voters: 3,
            healthy_voters: 3,
            quorum_holds: true,
            dead_members: vec![],
            degraded: None,
        }
    );
}

#[test]
fn a_dead_member_of_three_is_removed_before_its_replacement_is_added() {
    // Promoting first would make 4 voters with quorum 3 while the dead one still counts.
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    fail(&mut observed, "cp-3", LONG);
    let p = plan(&observed, &desired).unwrap();
    assert_eq!(p.summary.dead_members, [3]);
    assert_eq!(p.summary.degraded.as_ref().unwrap().reason, "MemberDead");
    assert_eq!(
        run(&mut observed, &desired),
        [
            remove(3, "cp-3"),
            add("cp-4"),
            start(4, "cp-4"),
            Step::PromoteLearner { id: 4 },
            Step::Done
        ]
    );
}

#[test]
fn a_dead_member_of_five_is_replaced_before_it_is_removed() {
    // 4 healthy of 6 voters still keep quorum if the newcomer fails right after its promotion.
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"], &["cp-6"], 5);
    fail(&mut observed, "cp-5", LONG);
    assert_eq!(
        run(&mut observed, &desired),
        [
            add("cp-6"),
            start(6, "cp-6"),
            Step::PromoteLearner { id: 6 },
            remove(5, "cp-5"),
            Step::Done
        ]
    );
}

#[test]
fn a_dead_member_without_a_spare_is_degraded_and_waits() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &[], 3);
    fail(&mut observed, "cp-3", LONG);
    let p = plan(&observed, &desired).unwrap();
    assert_eq!(p.step, Step::Wait(Wait::NoSpareHost { missing: 1 }));
    let degraded = p.summary.degraded.unwrap();
    assert_eq!(degraded.reason, "NoSpareHost");
    assert_eq!(
        degraded.message,
        "unhealthy for longer than 60s: 3 on cp-3; no healthy spare host to replace them"
    );
}

#[test]
fn a_member_unhealthy_within_the_threshold_is_not_replaced() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    fail(&mut observed, "cp-3", BRIEFLY);
    let p = plan(&observed, &desired).unwrap();
    assert_eq!(p.step, Step::Wait(Wait::MembersUnhealthy { ids: vec![3] }));
    assert_eq!(p.summary.degraded, None);
}

#[test]
fn without_quorum_nothing_changes() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    fail(&mut observed, "cp-2", LONG);
    fail(&mut observed, "cp-3", LONG);
    let p = plan(&observed, &desired).unwrap();
    assert_eq!(
        p.step,
        Step::Wait(Wait::QuorumLost {
            healthy: 1,
            voters: 3
        })
    );
    assert!(!p.summary.quorum_holds);
    let degraded = p.summary.degraded.unwrap();
    assert_eq!(degraded.reason, "QuorumLost");
    assert_eq!(
        degraded.message,
        "1 of 3 voting etcd members healthy, 2 needed"
    );
}

#[test]
fn learners_do_not_count_toward_quorum() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    fail(&mut observed, "cp-3", LONG);
    apply(&mut observed, &remove(3, "cp-3"));
    apply(&mut observed, &add("cp-4"));
    let summary = plan(&observed, &desired).unwrap().summary;
    assert_eq!((summary.voters, summary.healthy_voters), (2, 2));
}

#[test]
fn an_added_member_is_started_before_anything_else() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    fail(&mut observed, "cp-3", LONG);
    apply(&mut observed, &remove(3, "cp-3"));
    apply(&mut observed, &add("cp-4"));
    assert_eq!(step(&observed, &desired), start(4, "cp-4"));
}

#[test]
fn an_added_member_waits_for_its_host_to_answer_then_is_dropped_once_dead() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2"], &["cp-3"], 3);
    apply(&mut observed, &add("cp-3"));
    fail(&mut observed, "cp-3", BRIEFLY);
    assert_eq!(
        step(&observed, &desired),
        Step::Wait(Wait::HostUnreachable {
            host: "cp-3".into()
        })
    );
    fail(&mut observed, "cp-3", LONG);
    assert_eq!(step(&observed, &desired), remove(3, "cp-3"));
}

#[test]
fn a_healthy_learner_is_promoted_and_an_unhealthy_one_waits() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2"], &["cp-3"], 3);
    apply(&mut observed, &add("cp-3"));
    member_mut(&mut observed, 3).name = "cp-3".into();
    assert_eq!(
        step(&observed, &desired),
        Step::Wait(Wait::LearnerCatchingUp { id: 3 })
    );
    member_mut(&mut observed, 3).healthy = true;
    assert_eq!(step(&observed, &desired), Step::PromoteLearner { id: 3 });
}

#[test]
fn no_new_change_starts_while_a_learner_is_in_flight() {
    // A dead member and a spare would call for a change, but the learner comes first.
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4", "cp-5"], 3);
    apply(&mut observed, &add("cp-4"));
    member_mut(&mut observed, 4).name = "cp-4".into();
    fail(&mut observed, "cp-3", LONG);
    assert_eq!(
        step(&observed, &desired),
        Step::Wait(Wait::LearnerCatchingUp { id: 4 })
    );
}

#[test]
fn an_added_member_no_longer_needed_is_removed() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    apply(&mut observed, &add("cp-4"));
    assert_eq!(step(&observed, &desired), remove(4, "cp-4"));
}

#[test]
fn scaling_3_to_5_to_3_goes_one_member_at_a_time_and_back_to_the_same_hosts() {
    let (mut observed, mut desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4", "cp-5"], 5);
    assert_eq!(
        run(&mut observed, &desired),
        [
            add("cp-4"),
            start(4, "cp-4"),
            Step::PromoteLearner { id: 4 },
            add("cp-5"),
            start(5, "cp-5"),
            Step::PromoteLearner { id: 5 },
            Step::Done
        ]
    );
    desired.replicas = 3;
    assert_eq!(
        run(&mut observed, &desired),
        [
            remove(5, "cp-5"),
            fence("cp-5"),
            remove(4, "cp-4"),
            fence("cp-4"),
            Step::Done
        ]
    );
    let hosts: Vec<&str> = observed.members.iter().map(|m| m.host.as_str()).collect();
    assert_eq!(hosts, ["cp-1", "cp-2", "cp-3"]);
}

#[test]
fn scaling_down_keeps_the_leader_while_others_can_go() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"], &[], 3);
    observed.leader = Some(5);
    assert_eq!(
        run(&mut observed, &desired),
        [
            remove(4, "cp-4"),
            fence("cp-4"),
            remove(3, "cp-3"),
            fence("cp-3"),
            Step::Done
        ]
    );
}

#[test]
fn scaling_down_removes_an_unhealthy_member_before_a_healthy_one() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"], &[], 3);
    fail(&mut observed, "cp-1", BRIEFLY);
    assert_eq!(step(&observed, &desired), remove(1, "cp-1"));
}

#[test]
fn the_leader_goes_when_it_is_the_only_member_due_to_go() {
    let (mut observed, mut desired) = cluster(&["cp-1", "cp-2"], &[], 1);
    desired.allowed_hosts = vec!["cp-2".into()];
    assert_eq!(observed.leader, Some(1));
    assert_eq!(step(&observed, &desired), remove(1, "cp-1"));
    observed.hosts.get_mut("cp-1").unwrap().fenced = true;
    observed.members.retain(|m| m.id != 1);
    assert_eq!(step(&observed, &desired), fence("cp-1"));
}

#[test]
fn members_on_hosts_no_longer_allowed_move_off_one_at_a_time() {
    let (mut observed, mut desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4", "cp-5"], 3);
    desired.allowed_hosts = ["cp-1", "cp-4", "cp-5"].map(String::from).to_vec();
    assert_eq!(
        run(&mut observed, &desired),
        [
            add("cp-4"),
            start(4, "cp-4"),
            Step::PromoteLearner { id: 4 },
            remove(2, "cp-2"),
            fence("cp-2"),
            add("cp-5"),
            start(5, "cp-5"),
            Step::PromoteLearner { id: 5 },
            remove(3, "cp-3"),
            fence("cp-3"),
            Step::Done
        ]
    );
}

#[test]
fn a_single_member_moves_by_adding_its_successor_first() {
    // Removing the only member first would leave no cluster at all.
    let (mut observed, mut desired) = cluster(&["cp-1"], &["cp-2"], 1);
    desired.allowed_hosts = vec!["cp-2".into()];
    assert_eq!(
        run(&mut observed, &desired),
        [
            add("cp-2"),
            start(2, "cp-2"),
            Step::PromoteLearner { id: 2 },
            remove(1, "cp-1"),
            fence("cp-1"),
            Step::Done
        ]
    );
}

#[test]
fn a_removal_that_would_leave_too_few_healthy_voters_waits() {
    let (mut observed, mut desired) = cluster(&["cp-1", "cp-2", "cp-3"], &[], 2);
    desired.allowed_hosts = ["cp-2", "cp-3"].map(String::from).to_vec();
    fail(&mut observed, "cp-3", BRIEFLY);
    let next = step(&observed, &desired);
    assert_eq!(next, Step::Wait(Wait::WouldLoseQuorum { ids: vec![1] }));
    let Step::Wait(wait) = next else {
        unreachable!()
    };
    assert_eq!(wait.reason(), "WouldLoseQuorum");
    assert_eq!(
        wait.message(),
        "removing any of 1 would leave fewer healthy voters than quorum"
    );
}

#[test]
fn a_replaced_host_that_returns_is_fenced_before_anything_else() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4", "cp-5"], 3);
    fail(&mut observed, "cp-3", LONG);
    run(&mut observed, &desired);
    assert!(observed.hosts["cp-3"].fenced);
    // The partition heals while another change is in flight.
    observed.hosts.insert(
        "cp-3".into(),
        HostState {
            fenced: true,
            ..healthy_host()
        },
    );
    fail(&mut observed, "cp-2", LONG);
    apply(&mut observed, &remove(2, "cp-2"));
    apply(&mut observed, &add("cp-5"));
    assert_eq!(step(&observed, &desired), fence("cp-3"));
}

#[test]
fn a_fenced_host_is_never_a_spare() {
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    observed.hosts.insert(
        "cp-4".into(),
        HostState {
            fenced: true,
            ..Default::default()
        },
    );
    fail(&mut observed, "cp-3", LONG);
    assert_eq!(
        step(&observed, &desired),
        Step::Wait(Wait::NoSpareHost { missing: 1 })
    );
}

#[test]
fn a_member_on_a_fenced_host_is_a_removal_in_flight_and_finished_first() {
    // Adding first would be the order for a healthy member; the removal was already decided.
    let (mut observed, desired) = cluster(&["cp-1", "cp-2", "cp-3"], &["cp-4"], 3);
    observed.hosts.get_mut("cp-3").unwrap().fenced = true;
    assert_eq!(step(&observed, &desired), remove(3, "cp-3"));
}

#[test]
fn members_sharing_a_host_or_no_replicas_are_errors() {
    let (mut observed, mut desired) = cluster(&["cp-1", "cp-2"], &[], 2);
    observed.members[1].host = "cp-1".into();
    assert_eq!(
        plan(&observed, &desired).unwrap_err().to_string(),
        "members 1 and 2 are both on host cp-1"
    );
    desired.replicas = 0;
    assert_eq!(plan(&observed, &desired), Err(MembershipError::NoReplicas));
}

// Property test: generated member states, every step checked, and a simulated run to the end.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Healthy,
    Briefly,
    Dead,
}

#[derive(Clone, Debug)]
struct GeneratedHost {
    health: Health,
    allowed: bool,
    fenced: bool,
    /// Members only: started, a learner.
    started: bool,
    learner: bool,
}

fn generated_host(fenced_chance: f64) -> impl Strategy<Value = GeneratedHost> {
    (
        prop_oneof![6 => Just(Health::Healthy), 1 => Just(Health::Briefly), 2 => Just(Health::Dead)],
        prop::bool::weighted(0.85),
        prop::bool::weighted(fenced_chance),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(health, allowed, fenced, started, learner)| GeneratedHost {
                health,
                allowed,
                fenced,
                started,
                learner,
            },
        )
}

fn world(
    members: &[GeneratedHost],
    spares: &[GeneratedHost],
    replicas: usize,
    leader_pick: usize,
) -> (Observed, Desired) {
    let mut observed = Observed::default();
    let mut desired = Desired {
        replicas,
        allowed_hosts: vec![],
        failure_threshold: THRESHOLD,
    };
    let named = members
        .iter()
        .enumerate()
        .map(|(i, g)| (format!("m{i}"), g, true))
        .chain(
            spares
                .iter()
                .enumerate()
                .map(|(i, g)| (format!("s{i}"), g, false)),
        );
    for ((host, g, is_member), id) in named.zip(1..) {
        observed.hosts.insert(
            host.clone(),
            HostState {
                reachable: g.health == Health::Healthy,
                unhealthy_for: match g.health {
                    Health::Healthy => None,
                    Health::Briefly => Some(BRIEFLY),
                    Health::Dead => Some(LONG),
                },
                fenced: g.fenced,
            },
        );
        if g.allowed {
            desired.allowed_hosts.push(host.clone());
        }
        if is_member {
            observed.members.push(Member {
                id,
                name: if g.started {
                    host.clone()
                } else {
                    String::new()
                },
                host,
                is_learner: g.learner,
                healthy: g.started && g.health == Health::Healthy,
            });
        }
    }
    let voters: Vec<u64> = observed
        .members
        .iter()
        .filter(|m| m.healthy_voter())
        .map(|m| m.id)
        .collect();
    observed.leader = (!voters.is_empty()).then(|| voters[leader_pick % voters.len()]);
    (observed, desired)
}

/// The step keeps quorum, starts nothing new while a change is in flight, and names a member
/// or host it may act on.
fn check_step(observed: &Observed, desired: &Desired, step: &Step) -> Result<(), TestCaseError> {
    let before = Votes::of(&observed.members);
    let member = |id: u64| observed.members.iter().find(|m| m.id == id);
    let after = match step {
        Step::RemoveMember { id, .. } => {
            let removed = member(*id);
            prop_assert!(removed.is_some(), "removes unknown member {id}");
            removed.map_or(before, |m| before.without(m))
        }
        Step::PromoteLearner { id } => {
            let promoted = member(*id);
            prop_assert!(
                promoted.is_some_and(|m| m.is_learner && m.started() && m.healthy),
                "promotes {id}, not a healthy started learner"
            );
            Votes {
                voters: before.voters + 1,
                healthy: before.healthy + 1,
            }
        }
        Step::AddLearner { host } => {
            let state = observed.hosts.get(host).cloned().unwrap_or_default();
            prop_assert!(
                state.reachable && state.unhealthy_for.is_none() && !state.fenced,
                "adds a learner on {host}: {state:?}"
            );
            prop_assert!(!observed.members.iter().any(|m| &m.host == host));
            prop_assert!(desired.allowed_hosts.contains(host));
            before
        }
        _ => before,
    };
    if before.holds() {
        prop_assert!(
            after.holds(),
            "{step:?} loses quorum: {before:?} -> {after:?}"
        );
    } else {
        prop_assert!(
            matches!(
                step,
                Step::Fence { .. } | Step::StartMember { .. } | Step::Wait(_)
            ),
            "{step:?} without quorum"
        );
    }

    let fenced = |host: &str| observed.hosts.get(host).is_some_and(|s| s.fenced);
    let in_flight: Vec<u64> = observed
        .members
        .iter()
        .filter(|m| !m.started() || m.is_learner || fenced(&m.host))
        .map(|m| m.id)
        .collect();
    let fence_due = observed.hosts.iter().any(|(host, state)| {
        state.fenced && state.reachable && !observed.members.iter().any(|m| &m.host == host)
    });
    if !in_flight.is_empty() || fence_due {
        match step {
            Step::Fence { .. } | Step::Wait(_) => {}
            Step::StartMember { id, .. }
            | Step::PromoteLearner { id }
            | Step::RemoveMember { id, .. } => prop_assert!(
                in_flight.contains(id),
                "{step:?} while {in_flight:?} in flight"
            ),
            Step::AddLearner { .. } | Step::Done => {
                prop_assert!(false, "{step:?} while {in_flight:?} in flight")
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn steps_keep_quorum_go_one_at_a_time_and_reach_the_desired_size(
        members in prop::collection::vec(generated_host(0.05), 1..=7),
        spares in prop::collection::vec(generated_host(0.2), 0..=4),
        replicas in prop::sample::select(vec![1usize, 3, 5]),
        leader_pick in any::<usize>(),
    ) {
        let (mut observed, desired) = world(&members, &spares, replicas, leader_pick);
        let quorum_at_start = Votes::of(&observed.members).holds();
        // A fenced host with a member means a removal the controller decided earlier; only a
        // consistent state is promised an end.
        let consistent = !members.iter().any(|g| g.fenced);
        let usable_hosts = members
            .iter()
            .chain(&spares)
            .filter(|g| g.allowed && g.health == Health::Healthy)
            .count();

        let steps = try_run(&mut observed, &desired)?;

        if quorum_at_start && consistent && usable_hosts >= replicas {
            prop_assert_eq!(steps.last(), Some(&Step::Done), "{:#?}", observed);
            prop_assert_eq!(observed.members.len(), replicas);
            prop_assert!(observed.members.iter().all(|m| m.healthy_voter()
                && desired.allowed_hosts.contains(&m.host)));
        }
    }
}
