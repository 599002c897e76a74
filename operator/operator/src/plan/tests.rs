use super::*;

fn roles() -> Roles {
    Roles {
        etcd: vec!["cp-1".into(), "cp-2".into(), "cp-3".into()],
        control_plane: vec!["cp-1".into(), "cp-2".into(), "cp-3".into()],
        load_balancers: vec!["lb".into()],
        control_plane_units: vec!["kube-apiserver".into(), "kube-scheduler".into()],
        rolling: None,
    }
}

fn reachable(units: &[(&str, bool)]) -> ObservedHost {
    ObservedHost {
        reachable: true,
        units: units.iter().map(|(u, r)| (u.to_string(), *r)).collect(),
    }
}

fn fresh() -> Observed {
    Observed {
        hosts: ["cp-1", "cp-2", "cp-3", "lb"]
            .iter()
            .map(|h| (h.to_string(), reachable(&[])))
            .collect(),
        ..Default::default()
    }
}

fn healthy(observed: &mut Observed, members: &[&str]) {
    for m in members {
        observed.etcd_healthy.insert(m.to_string(), true);
    }
}

fn control_plane_up(observed: &mut Observed) {
    for h in ["cp-1", "cp-2", "cp-3"] {
        observed.hosts.insert(
            h.into(),
            reachable(&[
                ("etcd", true),
                ("kube-apiserver", true),
                ("kube-scheduler", true),
            ]),
        );
    }
}

fn unit_not_ready(observed: &mut Observed, host: &str, unit: &str) {
    if let Some(host) = observed.hosts.get_mut(host) {
        host.units.insert(unit.into(), false);
    }
}

#[test]
fn a_fresh_cluster_starts_with_etcd_only() {
    let p = plan(&roles(), &fresh());
    assert_eq!(p.steps, [Step::EnsureEtcd]);
    assert!(!p.etcd_quorum.ok && !p.available);
    assert_eq!(
        p.etcd_quorum.message,
        "0 of 3 etcd members healthy, 2 needed"
    );
}

#[test]
fn the_control_plane_waits_for_quorum_not_for_every_member() {
    let mut observed = fresh();
    healthy(&mut observed, &["cp-1"]);
    assert_eq!(plan(&roles(), &observed).steps, [Step::EnsureEtcd]);
    healthy(&mut observed, &["cp-2"]);
    let p = plan(&roles(), &observed);
    assert_eq!(
        p.steps,
        [
            Step::EnsureEtcd,
            Step::EnsureControlPlane,
            Step::EnsureLoadBalancer
        ]
    );
    assert!(p.etcd_quorum.ok);
}

#[test]
fn the_load_balancer_goes_in_with_the_control_plane_once_etcd_has_quorum() {
    let mut observed = fresh();
    healthy(&mut observed, &["cp-1"]);
    assert!(!plan(&roles(), &observed)
        .steps
        .contains(&Step::EnsureLoadBalancer));
    healthy(&mut observed, &["cp-2"]);
    let p = plan(&roles(), &observed);
    assert_eq!(
        p.steps,
        [
            Step::EnsureEtcd,
            Step::EnsureControlPlane,
            Step::EnsureLoadBalancer
        ]
    );
    assert_eq!(p.load_balancer_ready.reason, "HAProxyNotReady");
    control_plane_up(&mut observed);
    unit_not_ready(&mut observed, "cp-2", "kube-scheduler");
    let p = plan(&roles(), &observed);
    assert_eq!(
        p.control_plane_ready.message,
        "not ready: kube-scheduler on cp-2"
    );
    assert!(p.steps.contains(&Step::EnsureLoadBalancer));

    // Once HAProxy runs, its configuration changes only with every component ready.
    observed
        .hosts
        .insert("lb".into(), reachable(&[("haproxy", true)]));
    let p = plan(&roles(), &observed);
    assert!(!p.steps.contains(&Step::EnsureLoadBalancer));
    control_plane_up(&mut observed);
    let p = plan(&roles(), &observed);
    assert!(p.steps.contains(&Step::EnsureLoadBalancer));
}

#[test]
fn the_host_a_change_rolls_through_does_not_count_against_the_control_plane() {
    let mut observed = fresh();
    healthy(&mut observed, &["cp-1", "cp-2", "cp-3"]);
    control_plane_up(&mut observed);
    unit_not_ready(&mut observed, "cp-2", "kube-apiserver");
    let rolling = Roles {
        rolling: Some("cp-2".into()),
        ..roles()
    };
    let p = plan(&rolling, &observed);
    assert!(p.control_plane_ready.ok);
    assert!(p.steps.contains(&Step::EnsureLoadBalancer));
    let p = plan(&roles(), &observed);
    assert!(!p.control_plane_ready.ok);
}

#[test]
fn available_needs_the_endpoint_through_haproxy() {
    let mut observed = fresh();
    healthy(&mut observed, &["cp-1", "cp-2", "cp-3"]);
    control_plane_up(&mut observed);
    observed
        .hosts
        .insert("lb".into(), reachable(&[("haproxy", true)]));
    let p = plan(&roles(), &observed);
    assert!(!p.available);
    assert_eq!(p.load_balancer_ready.reason, "EndpointNotReady");
    observed.endpoint_ready = true;
    let p = plan(&roles(), &observed);
    assert!(p.available && p.complete);
    assert_eq!(p.steps.last(), Some(&Step::Done));
}

#[test]
fn a_failing_control_plane_host_leaves_the_cluster_available_but_not_complete() {
    let mut observed = fresh();
    healthy(&mut observed, &["cp-1", "cp-3"]);
    control_plane_up(&mut observed);
    observed
        .hosts
        .insert("cp-2".into(), ObservedHost::default());
    observed
        .hosts
        .insert("lb".into(), reachable(&[("haproxy", true)]));
    observed.endpoint_ready = true;
    let p = plan(&roles(), &observed);
    assert!(p.available && !p.complete);
    assert!(!p.control_plane_ready.ok);
    assert!(!p.steps.contains(&Step::Done));
    assert_eq!(
        p.steps.first(),
        Some(&Step::WaitForHosts(vec!["cp-2".into()]))
    );

    // Served by no host with every component ready, the cluster is not available.
    for host in ["cp-1", "cp-3"] {
        unit_not_ready(&mut observed, host, "kube-scheduler");
    }
    let p = plan(&roles(), &observed);
    assert!(!p.available && !p.complete);
}

#[test]
fn unreachable_hosts_hold_back_only_the_stages_that_need_them() {
    let mut observed = fresh();
    observed.hosts.insert("lb".into(), ObservedHost::default());
    healthy(&mut observed, &["cp-1", "cp-2", "cp-3"]);
    control_plane_up(&mut observed);
    let p = plan(&roles(), &observed);
    assert_eq!(
        p.steps,
        [
            Step::WaitForHosts(vec!["lb".into()]),
            Step::EnsureEtcd,
            Step::EnsureControlPlane
        ]
    );
    observed.hosts.remove("cp-3");
    let p = plan(&roles(), &observed);
    assert_eq!(
        p.steps,
        [Step::WaitForHosts(vec!["cp-3".into(), "lb".into()])]
    );
}

#[test]
fn quorum_is_a_majority() {
    assert_eq!([1, 2, 3, 4, 5].map(quorum), [1, 2, 2, 3, 3]);
}
