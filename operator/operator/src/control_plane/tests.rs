use std::collections::BTreeSet;

use super::*;

fn list(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

const ALLOWED: [&str; 5] = ["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"];

fn choose(recorded: &[&str], replicas: usize, failing: &[&str], dead: &[&str]) -> Vec<String> {
    hosts(&Inputs {
        recorded: &list(recorded),
        placement: &list(&["cp-1", "cp-2", "cp-3"]),
        allowed: &list(&ALLOWED),
        replicas,
        failing: &set(failing),
        dead: &set(dead),
    })
}

#[test]
fn the_placement_holds_until_something_is_recorded() {
    assert_eq!(choose(&[], 3, &[], &[]), ["cp-1", "cp-2", "cp-3"]);
}

#[test]
fn recorded_hosts_stay_however_the_placement_would_choose_now() {
    assert_eq!(
        choose(&["cp-2", "cp-4", "cp-5"], 3, &[], &[]),
        ["cp-2", "cp-4", "cp-5"]
    );
}

#[test]
fn a_failing_host_stays_until_it_is_dead() {
    let recorded = ["cp-1", "cp-2", "cp-3"];
    assert_eq!(choose(&recorded, 3, &["cp-2"], &[]), recorded);
    assert_eq!(
        choose(&recorded, 3, &["cp-2"], &["cp-2"]),
        ["cp-1", "cp-4", "cp-3"]
    );
}

#[test]
fn a_dead_host_stays_when_no_healthy_spare_is_left() {
    let recorded = ["cp-1", "cp-2", "cp-3"];
    assert_eq!(
        choose(&recorded, 3, &["cp-2", "cp-4", "cp-5"], &["cp-2"]),
        recorded
    );
}

#[test]
fn replicas_grow_with_healthy_spares_and_shrink_failing_hosts_first() {
    let recorded = ["cp-1", "cp-2", "cp-3"];
    assert_eq!(
        choose(&recorded, 5, &["cp-4"], &[]),
        ["cp-1", "cp-2", "cp-3", "cp-5"]
    );
    let five = ["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"];
    assert_eq!(choose(&five, 3, &["cp-2"], &[]), ["cp-1", "cp-3", "cp-4"]);
    assert_eq!(choose(&five, 3, &[], &[]), ["cp-1", "cp-2", "cp-3"]);
}

#[test]
fn hosts_the_cluster_no_longer_selects_leave() {
    assert_eq!(
        choose(&["cp-1", "cp-9", "cp-3"], 3, &[], &[]),
        ["cp-1", "cp-3", "cp-2"]
    );
}
