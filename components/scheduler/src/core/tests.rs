//! Unit tests of the whole algorithm over an in-memory cluster.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Affinity, ContainerPort, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PodAffinityTerm, PodAntiAffinity, PodStatus, Taint, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::algorithm::Algorithm;
use super::cache::ClusterCache;
use super::filters::*;
use super::framework::{NodeLabelArgs, Profile, ScorePlugin};
use super::pod::PodInfo;
use super::preemption;
use super::queue::{backoff_duration, SchedulingQueue};
use super::testing::{node_view, pod, pod_with};

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn cluster(nodes: &[(&str, &str, &str)]) -> ClusterCache {
    let mut cache = ClusterCache::default();
    for (name, cpu, memory) in nodes {
        cache.set_node(name, node_view(cpu, memory, 110));
    }
    cache
}

fn schedule(cache: &ClusterCache, p: &PodInfo, profile: &Profile) -> Result<String, String> {
    Algorithm::default()
        .schedule(p, cache, profile, &mut rng())
        .map(|r| r.node)
        .map_err(|e| e.message())
}

fn default_profile() -> Profile {
    Profile::default_named("default-scheduler")
}

fn only_score(plugin: ScorePlugin) -> Profile {
    let mut profile = default_profile();
    profile.scores = vec![(plugin, 1)];
    profile
}

#[test]
fn least_requested_prefers_the_emptier_node() {
    let mut cache = cluster(&[("a", "4", "8Gi"), ("b", "4", "8Gi")]);
    let mut bound = pod("x", "3", "1Gi").pod.clone();
    bound.spec.as_mut().unwrap().node_name = Some("a".into());
    cache.add_or_update_bound(PodInfo::new(bound));
    let p = pod("p", "500m", "512Mi");
    assert_eq!(
        schedule(&cache, &p, &only_score(ScorePlugin::NodeResourcesFit)),
        Ok("b".into())
    );
}

#[test]
fn balanced_allocation_prefers_the_balanced_node() {
    // On "cpu-heavy" the pod would leave cpu 75% used and memory 12.5%; on "even" both 50%.
    let mut cache = cluster(&[("cpu-heavy", "4", "8Gi"), ("even", "4", "8Gi")]);
    let mut a = pod("a", "2", "0").pod.clone();
    a.spec.as_mut().unwrap().node_name = Some("cpu-heavy".into());
    cache.add_or_update_bound(PodInfo::new(a));
    let mut b = pod("b", "1", "3Gi").pod.clone();
    b.spec.as_mut().unwrap().node_name = Some("even".into());
    cache.add_or_update_bound(PodInfo::new(b));
    let p = pod("p", "1", "1Gi");
    assert_eq!(
        schedule(
            &cache,
            &p,
            &only_score(ScorePlugin::NodeResourcesBalancedAllocation)
        ),
        Ok("even".into())
    );
}

#[test]
fn node_label_priority_works_both_ways() {
    let mut cache = ClusterCache::default();
    let mut ssd = node_view("4", "8Gi", 110);
    ssd.labels = labels(&[("disk", "ssd")]);
    cache.set_node("with", ssd);
    cache.set_node("without", node_view("4", "8Gi", 110));
    let mut present = only_score(ScorePlugin::NodeLabel);
    present.node_label = NodeLabelArgs {
        present_labels_preference: vec!["disk".into()],
        absent_labels_preference: vec![],
    };
    let mut absent = only_score(ScorePlugin::NodeLabel);
    absent.node_label = NodeLabelArgs {
        present_labels_preference: vec![],
        absent_labels_preference: vec!["disk".into()],
    };
    for _ in 0..10 {
        assert_eq!(
            schedule(&cache, &pod("p", "1", ""), &present),
            Ok("with".into())
        );
        assert_eq!(
            schedule(&cache, &pod("p", "1", ""), &absent),
            Ok("without".into())
        );
    }
}

#[test]
fn resources_fit_counts_every_resource_and_reports_upstreams_text() {
    let mut cache = cluster(&[("small", "1", "1Gi"), ("big", "8", "1Gi")]);
    let p = pod("p", "2", "2Gi");
    assert_eq!(
        schedule(&cache, &p, &default_profile()),
        Err("0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory.".into())
    );
    let mut full = node_view("8", "8Gi", 0);
    full.allocatable.set("example.com/gpu", 1);
    cache.set_node("small", full);
    let gpu = pod_with("g", "1", "", |p| {
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        let requests = c.resources.as_mut().unwrap().requests.as_mut().unwrap();
        requests.insert(
            "example.com/gpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        );
    });
    assert_eq!(
        schedule(&cache, &gpu, &default_profile()),
        Err("0/2 nodes are available: 1 Insufficient example.com/gpu, 1 Too many pods.".into())
    );
}

#[test]
fn unschedulable_node_name_selector_affinity_and_ports_refuse() {
    let mut cache = ClusterCache::default();
    let mut cordoned = node_view("4", "8Gi", 110);
    cordoned.unschedulable = true;
    cache.set_node("cordoned", cordoned);
    let mut zone_a = node_view("4", "8Gi", 110);
    zone_a.labels = labels(&[("zone", "a")]);
    cache.set_node("a", zone_a);
    let profile = default_profile();
    assert_eq!(
        schedule(&cache, &pod("p", "1", ""), &profile),
        Ok("a".into())
    );

    let named = pod_with("n", "1", "", |p| {
        p.spec.as_mut().unwrap().node_name = Some("zzz".into())
    });
    assert_eq!(
        schedule(&cache, &named, &profile),
        Err(format!(
            "0/2 nodes are available: 1 {ERR_NODE_NAME}, 1 {ERR_UNSCHEDULABLE}."
        ))
    );
    let selected = pod_with("s", "1", "", |p| {
        p.spec.as_mut().unwrap().node_selector = Some(labels(&[("zone", "b")]))
    });
    assert_eq!(
        schedule(&cache, &selected, &profile),
        Err(format!(
            "0/2 nodes are available: 1 {ERR_NODE_AFFINITY}, 1 {ERR_UNSCHEDULABLE}."
        ))
    );
    let affinity = pod_with("f", "1", "", |p| {
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "NotIn".into(),
                            values: Some(vec!["a".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    assert!(schedule(&cache, &affinity, &profile).is_err());

    let with_port = |name: &str| {
        pod_with(name, "100m", "", |p| {
            p.spec.as_mut().unwrap().containers[0].ports = Some(vec![ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }])
        })
    };
    cache.assume(with_port("first"), "a");
    assert_eq!(
        schedule(&cache, &with_port("second"), &profile),
        Err(format!(
            "0/2 nodes are available: 1 {ERR_NODE_PORTS}, 1 {ERR_UNSCHEDULABLE}."
        ))
    );
}

#[test]
fn taints_refuse_pods_without_tolerations() {
    let mut cache = ClusterCache::default();
    let mut tainted = node_view("4", "8Gi", 110);
    tainted.taints = vec![Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: "NoSchedule".into(),
        ..Default::default()
    }];
    cache.set_node("t", tainted);
    let profile = default_profile();
    assert_eq!(
        schedule(&cache, &pod("p", "1", ""), &profile),
        Err("0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.".into())
    );
    let tolerating = pod_with("q", "1", "", |p| {
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("gpu".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }])
    });
    assert_eq!(schedule(&cache, &tolerating, &profile), Ok("t".into()));
    let exists_all = pod_with("r", "1", "", |p| {
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }])
    });
    assert_eq!(schedule(&cache, &exists_all, &profile), Ok("t".into()));
}

#[test]
fn prefer_no_schedule_taints_are_avoided_when_possible() {
    let mut cache = ClusterCache::default();
    let mut soft = node_view("4", "8Gi", 110);
    soft.taints = vec![Taint {
        key: "k".into(),
        effect: "PreferNoSchedule".into(),
        ..Default::default()
    }];
    cache.set_node("soft", soft);
    cache.set_node("clean", node_view("4", "8Gi", 110));
    for _ in 0..10 {
        assert_eq!(
            schedule(
                &cache,
                &pod("p", "1", ""),
                &only_score(ScorePlugin::TaintToleration)
            ),
            Ok("clean".into())
        );
    }
}

fn zones(cache: &mut ClusterCache) {
    for (node, zone) in [("n1", "a"), ("n2", "b"), ("n3", "c")] {
        let mut view = node_view("8", "16Gi", 110);
        view.labels = labels(&[("zone", zone)]);
        cache.set_node(node, view);
    }
}

fn app_selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(&[("app", "web")])),
        match_expressions: None,
    }
}

#[test]
fn topology_spread_keeps_skew_within_max_across_zones() {
    let mut cache = ClusterCache::default();
    zones(&mut cache);
    let spread = |name: &str| {
        pod_with(name, "100m", "", |p| {
            p.metadata.labels = Some(labels(&[("app", "web")]));
            p.spec.as_mut().unwrap().topology_spread_constraints =
                Some(vec![TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: "zone".into(),
                    when_unsatisfiable: "DoNotSchedule".into(),
                    label_selector: Some(app_selector()),
                    ..Default::default()
                }])
        })
    };
    let mut algorithm = Algorithm::default();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let p = spread(&format!("w{i}"));
        let node = algorithm
            .schedule(&p, &cache, &only_score(ScorePlugin::NodeLabel), &mut rng())
            .unwrap()
            .node;
        *per_node.entry(node.clone()).or_default() += 1;
        cache.assume(p, &node);
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    // A node without the topology key can never take such a pod.
    let mut unlabelled = ClusterCache::default();
    unlabelled.set_node("bare", node_view("8", "16Gi", 110));
    assert_eq!(
        schedule(&unlabelled, &spread("x"), &default_profile()),
        Err(format!("0/1 nodes are available: 1 {ERR_SPREAD_LABEL}."))
    );
    // Zone b is empty but cordoned: a third pod in zone a would make the skew 2 > 1.
    let mut skewed = ClusterCache::default();
    let mut a = node_view("8", "16Gi", 110);
    a.labels = labels(&[("zone", "a")]);
    skewed.set_node("a1", a);
    let mut b = node_view("8", "16Gi", 110);
    b.labels = labels(&[("zone", "b")]);
    b.unschedulable = true;
    skewed.set_node("b1", b);
    skewed.assume(spread("w0"), "a1");
    assert_eq!(
        schedule(&skewed, &spread("y"), &default_profile()),
        Err(format!(
            "0/2 nodes are available: 1 {ERR_SPREAD}, 1 {ERR_UNSCHEDULABLE}."
        ))
    );
}

#[test]
fn required_anti_affinity_puts_one_pod_per_zone() {
    let mut cache = ClusterCache::default();
    zones(&mut cache);
    let anti = |name: &str| {
        pod_with(name, "100m", "", |p| {
            p.metadata.labels = Some(labels(&[("app", "web")]));
            p.spec.as_mut().unwrap().affinity = Some(Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            label_selector: Some(app_selector()),
                            topology_key: "zone".into(),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            })
        })
    };
    let mut used = Vec::new();
    for i in 0..3 {
        let p = anti(&format!("a{i}"));
        let node = schedule(&cache, &p, &default_profile()).unwrap();
        assert!(!used.contains(&node));
        used.push(node.clone());
        cache.assume(p, &node);
    }
    assert_eq!(
        schedule(&cache, &anti("a3"), &default_profile()),
        Err(format!("0/3 nodes are available: 3 {ERR_ANTI_AFFINITY}."))
    );
    // A pod without its own terms is still kept away by the existing pods' anti-affinity.
    let plain = pod_with("plain", "100m", "", |p| {
        p.metadata.labels = Some(labels(&[("app", "web")]))
    });
    assert_eq!(
        schedule(&cache, &plain, &default_profile()),
        Err(format!(
            "0/3 nodes are available: 3 {ERR_EXISTING_ANTI_AFFINITY}."
        ))
    );
}

#[test]
fn required_affinity_follows_the_matching_pod() {
    let mut cache = ClusterCache::default();
    zones(&mut cache);
    let db = pod_with("db", "100m", "", |p| {
        p.metadata.labels = Some(labels(&[("app", "db")]))
    });
    cache.assume(db, "n2");
    let follower = pod_with("f", "100m", "", |p| {
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(k8s_openapi::api::core::v1::PodAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(labels(&[("app", "db")])),
                        match_expressions: None,
                    }),
                    topology_key: "zone".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    for _ in 0..5 {
        assert_eq!(
            schedule(&cache, &follower, &default_profile()),
            Ok("n2".into())
        );
    }
}

#[test]
fn assumed_pods_spread_a_burst() {
    let mut cache = ClusterCache::default();
    for i in 0..10 {
        cache.set_node(&format!("n{i}"), node_view("4", "8Gi", 110));
    }
    let mut algorithm = Algorithm::default();
    let mut rng = rng();
    for i in 0..100 {
        let p = pod(&format!("p{i}"), "100m", "128Mi");
        let node = algorithm
            .schedule(&p, &cache, &default_profile(), &mut rng)
            .unwrap()
            .node;
        cache.assume(p, &node);
    }
    for node in cache.nodes() {
        assert_eq!(node.pods.len(), 10, "{} has {}", node.name, node.pods.len());
    }
}

#[test]
fn large_clusters_evaluate_the_adaptive_share_and_rotate() {
    let mut cache = ClusterCache::default();
    for i in 0..1000 {
        cache.set_node(&format!("n{i:04}"), node_view("4", "8Gi", 110));
    }
    let mut algorithm = Algorithm::default();
    let first = algorithm
        .schedule(&pod("p", "1", ""), &cache, &default_profile(), &mut rng())
        .unwrap();
    assert_eq!(first.evaluated_nodes, 420);
    let second = algorithm
        .schedule(&pod("q", "1", ""), &cache, &default_profile(), &mut rng())
        .unwrap();
    assert_eq!(second.evaluated_nodes, 420);
    // The second search started where the first stopped, so it chose from other nodes.
    assert!(
        second.node.as_str() >= "n0420" && second.node.as_str() < "n0840",
        "{}",
        second.node
    );
}

fn with_priority(name: &str, cpu: &str, priority: i32) -> std::sync::Arc<PodInfo> {
    pod_with(name, cpu, "", |p| {
        p.spec.as_mut().unwrap().priority = Some(priority)
    })
}

#[test]
fn preemption_picks_the_node_with_the_least_important_victims() {
    let mut cache = cluster(&[("n1", "2", "4Gi"), ("n2", "2", "4Gi")]);
    let mut bind = |p: std::sync::Arc<PodInfo>, node: &str| {
        let mut object = p.pod.clone();
        object.spec.as_mut().unwrap().node_name = Some(node.into());
        cache.add_or_update_bound(PodInfo::new(object));
    };
    bind(with_priority("low-1", "1", 10), "n1");
    bind(with_priority("low-2", "1", 10), "n1");
    bind(with_priority("mid", "2", 50), "n2");
    let high = with_priority("high", "2", 100);
    let profile = default_profile();
    let fit = Algorithm::default()
        .schedule(&high, &cache, &profile, &mut rng())
        .unwrap_err();
    let candidate = preemption::preempt(&high, &cache, &profile, &fit).unwrap();
    assert_eq!(candidate.node, "n1");
    let mut victims: Vec<_> = candidate.victims.iter().map(|v| v.name.clone()).collect();
    victims.sort();
    assert_eq!(victims, vec!["low-1", "low-2"]);

    // Only as many victims as needed: a 1-cpu pod evicts one.
    let small = with_priority("small", "1", 100);
    let candidate = preemption::preempt(&small, &cache, &profile, &fit).unwrap();
    assert_eq!(candidate.victims.len(), 1);

    // Nothing of lower priority to evict.
    let low = with_priority("low", "2", 5);
    let fit = Algorithm::default()
        .schedule(&low, &cache, &profile, &mut rng())
        .unwrap_err();
    assert_eq!(
        preemption::preempt(&low, &cache, &profile, &fit).unwrap_err(),
        "0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    let never = pod_with("never", "2", "", |p| {
        let spec = p.spec.as_mut().unwrap();
        spec.priority = Some(1000);
        spec.preemption_policy = Some("Never".into());
    });
    assert_eq!(
        preemption::preempt(&never, &cache, &profile, &fit).unwrap_err(),
        "not eligible due to preemptionPolicy=Never."
    );
}

#[test]
fn nominated_pods_keep_their_room_and_try_their_node_first() {
    let mut cache = cluster(&[("n1", "2", "4Gi"), ("n2", "2", "4Gi")]);
    let high = pod_with("high", "2", "", |p| {
        p.spec.as_mut().unwrap().priority = Some(100);
        p.status = Some(PodStatus {
            nominated_node_name: Some("n2".into()),
            ..Default::default()
        });
    });
    cache.set_nominated(high.clone(), Some("n2"));
    // A lower-priority pod may not take the room kept for the nominated one.
    for _ in 0..5 {
        assert_eq!(
            schedule(&cache, &with_priority("low", "1", 0), &default_profile()),
            Ok("n1".into())
        );
    }
    assert_eq!(schedule(&cache, &high, &default_profile()), Ok("n2".into()));
}

#[test]
fn queue_orders_by_priority_then_age() {
    let mut queue = SchedulingQueue::default();
    let now = Instant::now();
    queue.add_or_update(with_priority("old-low", "1", 0), now);
    queue.add_or_update(
        with_priority("high", "1", 10),
        now + Duration::from_millis(1),
    );
    queue.add_or_update(
        with_priority("new-low", "1", 0),
        now + Duration::from_millis(2),
    );
    let order: Vec<String> = std::iter::from_fn(|| queue.pop())
        .map(|p| p.pod.name.clone())
        .collect();
    assert_eq!(order, vec!["high", "old-low", "new-low"]);
}

#[test]
fn backoff_doubles_from_one_second_to_ten() {
    assert_eq!(backoff_duration(1), Duration::from_secs(1));
    assert_eq!(backoff_duration(2), Duration::from_secs(2));
    assert_eq!(backoff_duration(4), Duration::from_secs(8));
    assert_eq!(backoff_duration(5), Duration::from_secs(10));
    assert_eq!(backoff_duration(50), Duration::from_secs(10));
}

#[test]
fn unschedulable_pods_wait_for_an_event_then_back_off() {
    let mut queue = SchedulingQueue::default();
    let t0 = Instant::now();
    queue.add_or_update(pod("p", "1", ""), t0);
    let popped = queue.pop().unwrap();
    queue.add_unschedulable(&popped, t0);
    assert_eq!(queue.pending().unschedulable, 1);
    assert!(queue.flush(t0 + Duration::from_secs(60)).is_none());
    assert!(queue.pop().is_none());

    // A cluster event moves it; still inside its 1s backoff, it waits there first.
    queue.move_unschedulable(t0 + Duration::from_millis(500), |_| true);
    assert_eq!(queue.pending().backoff, 1);
    assert!(queue.pop().is_none());
    let next = queue.flush(t0 + Duration::from_millis(600));
    assert_eq!(next, Some(t0 + Duration::from_secs(1)));
    queue.flush(t0 + Duration::from_secs(1));
    let again = queue.pop().unwrap();
    assert_eq!(again.attempts, 2);

    // An event during the attempt sends it to backoff rather than unschedulable.
    queue.move_unschedulable(t0 + Duration::from_secs(2), |_| true);
    queue.add_unschedulable(&again, t0 + Duration::from_secs(2));
    assert_eq!(queue.pending().backoff, 1);
    queue.flush(t0 + Duration::from_secs(4));
    assert_eq!(queue.pending().active, 1);
}

#[test]
fn unschedulable_pods_are_retried_after_five_minutes_anyway() {
    let mut queue = SchedulingQueue::default();
    let t0 = Instant::now();
    queue.add_or_update(pod("p", "1", ""), t0);
    let popped = queue.pop().unwrap();
    queue.add_unschedulable(&popped, t0);
    queue.flush(t0 + Duration::from_secs(301));
    assert_eq!(queue.pending().active, 1);
}

#[test]
fn deleted_pods_leave_the_queue() {
    let mut queue = SchedulingQueue::default();
    let t0 = Instant::now();
    queue.add_or_update(pod("p", "1", ""), t0);
    queue.delete("default/p");
    assert!(queue.pop().is_none());
    assert_eq!(queue.pending().active, 0);
}
