use std::time::{Duration, SystemTime};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(30);

fn host(name: &str, current: bool, serving: bool) -> Host {
    Host {
        name: name.into(),
        current,
        serving,
        behind_load_balancer: true,
    }
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
}

fn names(hosts: &BTreeSet<String>) -> Vec<&str> {
    hosts.iter().map(String::as_str).collect()
}

#[test]
fn a_cluster_coming_up_takes_every_change_at_once() {
    let hosts = [
        host("cp-1", false, false),
        host("cp-2", false, false),
        host("cp-3", false, false),
    ];
    let plan = plan(&hosts, None, 1, at(0), TIMEOUT);
    assert!(plan.held.is_empty());
    assert_eq!(plan.drained, None);
    assert_eq!(plan.record, None);
}

#[test]
fn a_change_to_serving_hosts_drains_and_restarts_the_first_and_holds_the_rest() {
    let hosts = [
        host("cp-1", false, true),
        host("cp-2", false, true),
        host("cp-3", false, true),
    ];
    let plan = plan(&hosts, None, 2, at(0), TIMEOUT);
    assert_eq!(names(&plan.held), ["cp-1", "cp-2", "cp-3"]);
    assert_eq!(plan.drained.as_deref(), Some("cp-1"));
    assert_eq!(plan.restart_when_drained.as_deref(), Some("cp-1"));
    assert_eq!(plan.rolling(), Some("cp-1"));
    assert_eq!(plan.halted, None);
}

#[test]
fn the_next_host_waits_until_the_restarted_one_serves_again() {
    let record = Record {
        host: "cp-1".into(),
        restarted_at: Some(at(0)),
        halted_generation: None,
    };
    let restarting = [
        host("cp-1", true, false),
        host("cp-2", false, true),
        host("cp-3", false, true),
    ];
    let waiting = plan(&restarting, Some(&record), 2, at(10), TIMEOUT);
    assert_eq!(names(&waiting.held), ["cp-2", "cp-3"]);
    assert_eq!(waiting.drained.as_deref(), Some("cp-1"));
    assert_eq!(waiting.restart_when_drained, None);
    assert_eq!(waiting.record, Some(record.clone()));

    let back = [
        host("cp-1", true, true),
        host("cp-2", false, true),
        host("cp-3", false, true),
    ];
    let next = plan(&back, Some(&record), 2, at(12), TIMEOUT);
    assert_eq!(next.drained.as_deref(), Some("cp-2"));
    assert_eq!(next.restart_when_drained.as_deref(), Some("cp-2"));
    assert_eq!(names(&next.held), ["cp-2", "cp-3"]);

    let done = [
        host("cp-1", true, true),
        host("cp-2", true, true),
        host("cp-3", true, true),
    ];
    let finished = plan(
        &done,
        Some(&Record {
            host: "cp-3".into(),
            restarted_at: Some(at(30)),
            halted_generation: None,
        }),
        2,
        at(40),
        TIMEOUT,
    );
    assert_eq!(finished, Plan::default());
}

#[test]
fn no_host_is_taken_while_another_does_not_serve() {
    let hosts = [
        host("cp-1", false, true),
        host("cp-2", false, true),
        host("cp-3", true, false),
    ];
    let plan = plan(&hosts, None, 2, at(0), TIMEOUT);
    assert_eq!(names(&plan.held), ["cp-1", "cp-2"]);
    assert_eq!(plan.drained, None);
    assert_eq!(plan.restart_when_drained, None);
}

#[test]
fn a_host_not_healthy_within_the_timeout_halts_the_rollout_until_the_spec_changes() {
    let record = Record {
        host: "cp-1".into(),
        restarted_at: Some(at(0)),
        halted_generation: None,
    };
    let hosts = [
        host("cp-1", true, false),
        host("cp-2", false, true),
        host("cp-3", false, true),
    ];
    let halted = plan(&hosts, Some(&record), 2, at(31), TIMEOUT);
    assert_eq!(
        halted.halted.as_ref().map(|h| h.host.as_str()),
        Some("cp-1")
    );
    assert_eq!(names(&halted.held), ["cp-2", "cp-3"]);
    assert_eq!(halted.drained.as_deref(), Some("cp-1"));
    let kept = halted.record.clone().unwrap();
    assert_eq!(kept.halted_generation, Some(2));

    // Still halted later in the same generation, even should the host come up after all.
    let recovered = [
        host("cp-1", true, true),
        host("cp-2", false, true),
        host("cp-3", false, true),
    ];
    let still = plan(&recovered, Some(&kept), 2, at(300), TIMEOUT);
    assert!(still.halted.is_some());
    assert_eq!(still.restart_when_drained, None);
    assert_eq!(names(&still.held), ["cp-2", "cp-3"]);

    // A new spec (the version set back) rolls the halted host first.
    let reverted = [
        host("cp-1", false, false),
        host("cp-2", true, true),
        host("cp-3", true, true),
    ];
    let resumed = plan(&reverted, Some(&kept), 3, at(301), TIMEOUT);
    assert_eq!(resumed.halted, None);
    assert_eq!(resumed.restart_when_drained.as_deref(), Some("cp-1"));
    assert!(resumed.held.contains("cp-1"));
}

#[test]
fn a_host_changed_again_while_it_restarts_is_drained_and_restarted_again() {
    let record = Record {
        host: "cp-1".into(),
        restarted_at: Some(at(0)),
        halted_generation: None,
    };
    let hosts = [host("cp-1", false, false), host("cp-2", false, true)];
    let plan = plan(&hosts, Some(&record), 3, at(5), TIMEOUT);
    assert_eq!(plan.restart_when_drained.as_deref(), Some("cp-1"));
    assert_eq!(plan.record.as_ref().and_then(|r| r.restarted_at), None);
}

#[test]
fn hosts_outside_the_load_balancer_restart_without_a_drain() {
    let mut etcd = host("etcd-1", false, true);
    etcd.behind_load_balancer = false;
    let plan = plan(
        &[etcd, host("etcd-2", false, true)],
        None,
        1,
        at(0),
        TIMEOUT,
    );
    assert_eq!(plan.drained, None);
    assert_eq!(plan.restart_when_drained.as_deref(), Some("etcd-1"));
}

#[test]
fn a_host_that_went_away_mid_rollout_is_forgotten() {
    let record = Record {
        host: "cp-1".into(),
        restarted_at: Some(at(0)),
        halted_generation: None,
    };
    let hosts = [host("cp-2", false, true), host("cp-4", true, true)];
    let plan = plan(&hosts, Some(&record), 1, at(5), TIMEOUT);
    assert_eq!(plan.rolling(), Some("cp-2"));
    assert_eq!(names(&plan.held), ["cp-2"]);
}
