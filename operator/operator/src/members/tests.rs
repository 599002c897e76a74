use super::*;

fn addresses() -> BTreeMap<String, IpAddr> {
    (1..=4)
        .map(|i| (format!("cp-{i}"), IpAddr::from([10, 77, 0, 10 + i])))
        .collect()
}

fn listed(id: u64, host: u8, started: bool, is_learner: bool) -> ListedMember {
    ListedMember {
        id,
        name: if started {
            format!("cp-{host}")
        } else {
            String::new()
        },
        peer_urls: vec![format!("https://10.77.0.{}:2380", 10 + host)],
        is_learner,
    }
}

fn check(reachable: bool, member_healthy: Option<bool>) -> HostCheck {
    HostCheck {
        reachable,
        member_healthy,
    }
}

#[test]
fn members_are_placed_by_peer_address_and_unknown_addresses_keep_their_url() {
    let mut stranger = listed(9, 1, true, false);
    stranger.peer_urls = vec!["https://10.0.0.1:2380".into()];
    assert_eq!(
        member_host(&listed(1, 2, true, false).peer_urls, &addresses()),
        "cp-2"
    );
    assert_eq!(
        member_host(&stranger.peer_urls, &addresses()),
        "https://10.0.0.1:2380"
    );
}

#[test]
fn a_host_fails_while_hostd_is_unreachable_or_its_member_unhealthy_and_the_clock_runs() {
    let members = [
        listed(1, 1, true, false),
        listed(2, 2, true, false),
        listed(3, 3, true, false),
    ];
    let checks: BTreeMap<String, HostCheck> = [
        ("cp-1".to_string(), check(false, Some(false))),
        ("cp-2".to_string(), check(true, Some(false))),
        ("cp-3".to_string(), check(true, Some(true))),
        ("cp-4".to_string(), check(true, None)),
    ]
    .into();
    let mut clock = FailureClock::default();
    let start = SystemTime::now();
    let first = observed(
        &members,
        &addresses(),
        &checks,
        Some(3),
        &[],
        &mut clock,
        start,
    );
    assert_eq!(first.hosts["cp-1"].unhealthy_for, Some(Duration::ZERO));
    assert_eq!(first.hosts["cp-2"].unhealthy_for, Some(Duration::ZERO));
    assert_eq!(first.hosts["cp-3"].unhealthy_for, None);
    assert_eq!(
        first.hosts["cp-4"].unhealthy_for, None,
        "a spare is healthy"
    );
    assert!(!first.members[0].healthy && first.members[2].healthy);
    assert_eq!(first.leader, Some(3));

    let later = observed(
        &members,
        &addresses(),
        &checks,
        Some(3),
        &["cp-4".into()],
        &mut clock,
        start + Duration::from_secs(20),
    );
    assert_eq!(
        later.hosts["cp-1"].unhealthy_for,
        Some(Duration::from_secs(20))
    );
    assert!(later.hosts["cp-4"].fenced);

    // Recovery resets the clock.
    let mut recovered = checks.clone();
    recovered.insert("cp-1".into(), check(true, Some(true)));
    let after = observed(
        &members,
        &addresses(),
        &recovered,
        None,
        &[],
        &mut clock,
        start + Duration::from_secs(30),
    );
    assert_eq!(after.hosts["cp-1"].unhealthy_for, None);
}

#[test]
fn a_resumed_clock_counts_from_the_recorded_failure_and_forgets_unwatched_hosts() {
    let start = SystemTime::now();
    let mut clock = FailureClock::default();
    clock.observe("cp-1", false, start);
    clock.observe("cp-9", false, start);
    let cp_1 = "cp-1".to_string();
    let recorded = clock.failing(&BTreeSet::from([&cp_1]));
    assert_eq!(recorded, [("cp-1".to_string(), start)]);

    let mut resumed = FailureClock::resumed(recorded);
    assert_eq!(
        resumed.observe("cp-1", false, start + Duration::from_secs(30)),
        Some(Duration::from_secs(30))
    );
}

#[test]
fn a_joining_member_is_not_failing_while_it_has_not_answered_yet() {
    let members = [
        listed(2, 2, true, false),
        listed(3, 3, true, false),
        listed(4, 4, false, true),
    ];
    let checks: BTreeMap<String, HostCheck> = [
        ("cp-2".to_string(), check(true, Some(true))),
        ("cp-3".to_string(), check(true, Some(true))),
        ("cp-4".to_string(), check(true, Some(false))),
    ]
    .into();
    let seen = observed(
        &members,
        &addresses(),
        &checks,
        None,
        &[],
        &mut FailureClock::default(),
        SystemTime::now(),
    );
    assert_eq!(seen.hosts["cp-4"].unhealthy_for, None);
    assert!(!seen.members[2].started() && !seen.members[2].healthy);
}

#[test]
fn the_first_members_start_together_and_a_joining_one_into_the_started_members() {
    let first: BTreeMap<String, IpAddr> = addresses()
        .into_iter()
        .filter(|(h, _)| h != "cp-4")
        .collect();
    let records = first_members(&first);
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.initial_cluster_state == "new"
        && r.initial_cluster
            == "cp-1=https://10.77.0.11:2380,cp-2=https://10.77.0.12:2380,cp-3=https://10.77.0.13:2380"));

    let joining = joining_member(
        "cp-4",
        &[
            listed(2, 2, true, false),
            listed(3, 3, true, false),
            listed(4, 4, false, true),
        ],
        &addresses(),
    );
    assert_eq!(joining.initial_cluster_state, "existing");
    assert_eq!(
        joining.initial_cluster,
        "cp-2=https://10.77.0.12:2380,cp-3=https://10.77.0.13:2380,cp-4=https://10.77.0.14:2380"
    );
}
