//! Pod facts the workload controllers share (upstream's podutil and controller_utils): active,
//! ready, available; pods made from a template; which pods go first when scaling down.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = phase(pod);
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod last became Ready, if it is Ready now.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) < now,
    }
}

/// The generateName prefix of an owner's pods: its name and a dash, as upstream's
/// getPodsPrefix (trimmed to what a name may hold, leaving room for the random suffix).
pub fn name_prefix(owner: &str) -> String {
    let mut prefix = format!("{owner}-");
    if prefix.len() > 58 {
        prefix.truncate(58);
    }
    prefix
}

/// Creates copies of one pod whose name the API server generates: the pod is serialized once
/// for all its copies, and only the name of each is read back, as a burst of hundreds spends
/// the controller's time on nothing else.
pub struct Copies {
    client: kube::Client,
    request: kube::core::Request,
    body: Vec<u8>,
}

impl Copies {
    pub fn new(client: kube::Client, pod: &Pod) -> Result<Self, kube::Error> {
        use kube::Resource;
        let namespace = pod.metadata.namespace.as_deref();
        Ok(Self {
            client,
            request: kube::core::Request::new(Pod::url_path(&(), namespace)),
            body: serde_json::to_vec(pod).map_err(kube::Error::SerdeError)?,
        })
    }

    /// Creates one copy; its generated name.
    pub async fn create(&self, params: &kube::api::PostParams) -> Result<String, kube::Error> {
        let mut request = self
            .request
            .create(params, self.body.clone())
            .map_err(kube::Error::BuildRequest)?;
        request.extensions_mut().insert("create");
        let made: kube::core::PartialObjectMeta<Pod> = self.client.request(request).await?;
        Ok(made.metadata.name.unwrap_or_default())
    }
}

/// A pod to create from `template` for `owner` (upstream's GetPodFromTemplate).
pub fn from_template(template: &PodTemplateSpec, owner: &OwnerReference, namespace: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(name_prefix(&owner.name)),
            namespace: Some(namespace.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST_ANNOTATION))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .chain(status.and_then(|s| s.init_container_statuses.as_ref()))
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// Upstream's logarithmic bucket of an age: pods whose ages are within a factor of two of
/// each other count as the same age, so scale-down does not always pick the very newest.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let age = now.duration_since(t).as_nanos();
    if age > 0 {
        (age as f64).log2() as i64
    } else {
        -1
    }
}

/// Orders times newer first (an unknown time first), in logarithmic buckets; ties by uid.
fn newer_first(
    a: Option<Timestamp>,
    b: Option<Timestamp>,
    now: Timestamp,
    a_uid: &str,
    b_uid: &str,
) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) if a == b => Ordering::Equal,
        (Some(a), Some(b)) => match log_rank(a, now).cmp(&log_rank(b, now)) {
            Ordering::Equal => a_uid.cmp(b_uid),
            other => other,
        },
    }
}

/// A pod to rank for deletion, with how many related pods share its node.
pub struct Ranked<'a> {
    pub pod: &'a Pod,
    pub rank: usize,
}

/// Upstream's ActivePodsWithRanks order, the pods to delete first first: unscheduled before
/// scheduled; Pending, Unknown, then Running; not ready before ready; lower deletion cost;
/// more pods doubled up on the node; ready for less time; more restarts; newer.
pub fn deletion_order(a: &Ranked, b: &Ranked, now: Timestamp) -> Ordering {
    let (pa, pb) = (a.pod, b.pod);
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let (na, nb) = (node(pa), node(pb));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    phase_ordinal(pa)
        .cmp(&phase_ordinal(pb))
        .then_with(|| is_ready(pa).cmp(&is_ready(pb)))
        .then_with(|| deletion_cost(pa).cmp(&deletion_cost(pb)))
        .then_with(|| b.rank.cmp(&a.rank))
        .then_with(|| match (ready_since(pa), ready_since(pb)) {
            (Some(ra), Some(rb)) => newer_first(ra, rb, now, &uid(pa), &uid(pb)),
            _ => Ordering::Equal,
        })
        .then_with(|| max_restarts(pb).cmp(&max_restarts(pa)))
        .then_with(|| newer_first(created(pa), created(pb), now, &uid(pa), &uid(pb)))
}

/// The `count` pods of `pods` to delete, ranked against `related` pods (those of the owner's
/// siblings too) on the same nodes.
pub fn to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    count: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node(pod)).or_default() += 1;
    }
    let mut ranked: Vec<Ranked> = pods
        .iter()
        .map(|pod| Ranked {
            pod,
            rank: on_node.get(node(pod)).copied().unwrap_or(0),
        })
        .collect();
    ranked.sort_by(|a, b| deletion_order(a, b, now));
    ranked.into_iter().take(count).map(|r| r.pod).collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// A pod for tests: `node` empty for unscheduled; `ready_for` seconds Ready (None: not).
    pub fn pod(name: &str, node: &str, phase: &str, ready_for: Option<i64>, age: i64) -> Pod {
        let now = Timestamp::now();
        let ago = |s: i64| Time(now - SignedDuration::from_secs(s));
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(ago(age)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_for.map(|s| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(ago(s)),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn scale_down_prefers_unscheduled_pending_unready_then_newer() {
        let old_ready = pod("old-ready", "n1", "Running", Some(5000), 6000);
        let new_ready = pod("new-ready", "n2", "Running", Some(10), 20);
        let unready = pod("unready", "n1", "Running", None, 7000);
        let pending = pod("pending", "n2", "Pending", None, 9000);
        let unscheduled = pod("unscheduled", "", "Pending", None, 9000);
        let all = [&old_ready, &new_ready, &unready, &pending, &unscheduled];
        let now = Timestamp::now();
        assert_eq!(
            names(&to_delete(&all, &[], 4, now)),
            ["unscheduled", "pending", "unready", "new-ready"]
        );
        assert_eq!(names(&to_delete(&all, &[], 9, now)).len(), 5);
    }

    #[test]
    fn doubled_up_nodes_lose_pods_first() {
        let a = pod("a", "n1", "Running", Some(100), 100);
        let b = pod("b", "n2", "Running", Some(100), 100);
        let c = pod("c", "n2", "Running", Some(100), 100);
        let related = [&a, &b, &c];
        let chosen = to_delete(&[&a, &b], &related, 1, Timestamp::now());
        assert_eq!(names(&chosen), ["b"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = Timestamp::now();
        let p = pod("p", "n1", "Running", Some(5), 10);
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 3, now));
        assert!(!is_available(&p, 10, now));
        assert!(!is_available(&pod("q", "n1", "Running", None, 10), 0, now));
    }

    #[test]
    fn template_pods_carry_the_owner_and_a_name_prefix() {
        let template: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "a"}, "annotations": {"x": "y"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap();
        let owner = OwnerReference {
            name: "web".into(),
            uid: "u".into(),
            controller: Some(true),
            ..OwnerReference::default()
        };
        let pod = from_template(&template, &owner, "ns");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(pod.metadata.labels.unwrap()["app"], "a");
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "u");
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(name_prefix(&"x".repeat(70)).len(), 58);
    }
}
