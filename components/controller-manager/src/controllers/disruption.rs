//! disruption-controller: the status of every PodDisruptionBudget — how many of its pods are
//! expected (the scale of their controllers, when the budget is relative), healthy and
//! required healthy, and so how many disruptions the eviction subresource may allow now. The
//! API server's eviction charges the budget by lowering `disruptionsAllowed` and listing the
//! pod in `disruptedPods`; this controller forgets such entries once the pod is gone or after
//! two minutes, as upstream does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::context::Context;

const QUEUE: &str = "disruption";
pub const CONDITION: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";
/// How long a pod the eviction subresource let go may stay before it counts as not deleted.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing the pods of {pdb}: {source}")]
    ListPods { pdb: String, source: kube::Error },
    #[error("reading the controller of pod {pod}: {source}")]
    Controller { pod: String, source: kube::Error },
    #[error("writing the status of {pdb}: {source}")]
    Status { pdb: String, source: kube::Error },
}

/// Why the expected pod count could not be found: shown in the SyncFailed condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CountError {
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
    #[error("invalid value for IntOrString: invalid type: string is not a percentage")]
    NotAPercentage,
    #[error("invalid value {0:?} for a percentage")]
    BadPercentage(String),
}

/// The pods' controllers: each controlled pod's controller, resolved to the workload whose
/// scale counts (the Deployment of a ReplicaSet it owns), with its replicas.
#[derive(Debug, Default, Clone)]
pub struct Scales {
    /// pod name → (workload uid, replicas); pods without a controller are absent.
    pub by_pod: HashMap<String, (String, i32)>,
    /// Pods whose controller is none of the kinds with a known scale.
    pub unresolved: Vec<String>,
}

/// Upstream's GetScaledValueFromIntOrPercent with rounding up.
pub fn scaled_value(value: &IntOrString, total: i32) -> Result<i32, CountError> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent = s.strip_suffix('%').ok_or(CountError::NotAPercentage)?;
            let percent: i64 = percent
                .parse()
                .map_err(|_| CountError::BadPercentage(s.clone()))?;
            let scaled = (percent * i64::from(total) + 99).div_euclid(100);
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

/// The expected pod count: the sum of the pods' controllers' scales. Pods without a
/// controller are returned as unmanaged; a controller of no known kind is an error.
fn expected_scale(pods: &[Pod], scales: &Scales) -> Result<(i32, Vec<String>), CountError> {
    if let Some(pod) = scales.unresolved.first() {
        return Err(CountError::NoController(pod.clone()));
    }
    let mut unmanaged = Vec::new();
    let mut per_controller: BTreeMap<&str, i32> = BTreeMap::new();
    for pod in pods {
        match scales.by_pod.get(&pod.name_any()) {
            Some((uid, replicas)) => {
                per_controller.insert(uid, *replicas);
            }
            None => unmanaged.push(pod.name_any()),
        }
    }
    Ok((per_controller.values().sum(), unmanaged))
}

/// (expected pods, desired healthy, unmanaged pods) as upstream's getExpectedPodCount.
pub fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    scales: &Scales,
) -> Result<(i32, i32, Vec<String>), CountError> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected, unmanaged) = expected_scale(pods, scales)?;
        let max = scaled_value(max_unavailable, expected)?;
        return Ok((expected, (expected - max).max(0), unmanaged));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n, Vec::new())),
        Some(percent @ IntOrString::String(_)) => {
            let (expected, unmanaged) = expected_scale(pods, scales)?;
            Ok((expected, scaled_value(percent, expected)?, unmanaged))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The still-pending entries of `disruptedPods` (pods the eviction let go that are neither
/// deleting nor overdue), the overdue pods, and when the earliest pending entry expires.
pub fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Vec<String>, Option<Timestamp>) {
    let listed = pdb
        .status
        .as_ref()
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let timeout = SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or(SignedDuration::ZERO);
    let mut pending = BTreeMap::new();
    let mut overdue = Vec::new();
    let mut recheck: Option<Timestamp> = None;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(when) = listed.get(&pod.name_any()) else {
            continue;
        };
        let expected_deletion = when.0.checked_add(timeout).unwrap_or(when.0);
        if expected_deletion < now {
            overdue.push(pod.name_any());
        } else {
            recheck = Some(recheck.map_or(expected_deletion, |r| r.min(expected_deletion)));
            pending.insert(pod.name_any(), when.clone());
        }
    }
    (pending, overdue, recheck)
}

/// Ready pods that are neither deleting nor about to be (recently disrupted).
pub fn current_healthy(pods: &[Pod], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| is_ready(p))
        .count() as i32
}

/// apimachinery's SetStatusCondition: the transition time moves only when the status does.
fn set_condition(conditions: &mut Vec<Condition>, mut wanted: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == wanted.type_) {
        Some(existing) => {
            if existing.status != wanted.status {
                existing.status = wanted.status;
                existing.last_transition_time = wanted.last_transition_time;
            }
            existing.reason = wanted.reason;
            existing.message = wanted.message;
            existing.observed_generation = wanted.observed_generation;
        }
        None => {
            wanted.last_transition_time = Time(Timestamp::now());
            conditions.push(wanted);
        }
    }
}

fn allowed_condition(status: &PodDisruptionBudgetStatus) -> Condition {
    let allowed = status.disruptions_allowed > 0;
    Condition {
        type_: CONDITION.into(),
        status: if allowed { "True" } else { "False" }.into(),
        reason: if allowed {
            SUFFICIENT_PODS
        } else {
            INSUFFICIENT_PODS
        }
        .into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// The status a budget should have, or `None` when it already has it.
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    desired_healthy: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
) -> Option<PodDisruptionBudgetStatus> {
    // A budget whose pods are not counted yet must allow nothing.
    let allowed = if expected <= 0 {
        0
    } else {
        (current_healthy - desired_healthy).max(0)
    };
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation;
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    let condition_up_to_date = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == CONDITION)
        .is_some_and(|c| {
            c.observed_generation == generation
                && (c.status == "True") == (old.disruptions_allowed > 0)
        });
    if old.current_healthy == current_healthy
        && old.desired_healthy == desired_healthy
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old_disrupted == disrupted
        && old.observed_generation == generation
        && condition_up_to_date
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: generation,
        conditions: old.conditions,
    };
    let condition = allowed_condition(&status);
    set_condition(status.conditions.get_or_insert_with(Vec::new), condition);
    Some(status)
}

/// Upstream's failSafe: a budget whose status cannot be computed allows no disruption.
pub fn failed_status(pdb: &PodDisruptionBudget, message: String) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let condition = Condition {
        type_: CONDITION.into(),
        status: "False".into(),
        reason: SYNC_FAILED.into(),
        message,
        observed_generation: status.observed_generation,
        last_transition_time: Time(Timestamp::now()),
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), condition);
    status
}

/// A budget's pod selector: policy/v1 reads an empty selector as every pod, a missing one as
/// none.
fn pdb_selector(pdb: &PodDisruptionBudget) -> Option<Selector> {
    let selector = pdb.spec.as_ref()?.selector.clone()?;
    Selector::try_from(selector).ok()
}

fn pdb_selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    pdb.namespace() == pod.namespace() && pdb_selector(pdb).is_some_and(|s| s.matches(pod.labels()))
}

struct Shared {
    ctx: Arc<Context>,
    recorder: Recorder,
}

fn in_namespace(
    store: &Store<PodDisruptionBudget>,
    namespace: Option<String>,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    store
        .state()
        .iter()
        .filter(|p| p.namespace() == namespace)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = controller.store();
    let for_pods = store.clone();
    let (rs, deploy, sts, rc) = (store.clone(), store.clone(), store.clone(), store);
    let wc = watcher::Config::default;
    let shared = Arc::new(Shared {
        recorder: ctx.recorder("controllermanager"),
        ctx,
    });
    controller
        .watches(Api::<Pod>::all(client.clone()), wc(), move |pod| {
            for_pods
                .state()
                .iter()
                .filter(|pdb| pdb_selects(pdb, &pod))
                .map(|pdb| ObjectRef::from_obj(pdb.as_ref()))
                .collect::<Vec<_>>()
        })
        // A workload's scale is the budget's expected count: a change of it is a change of
        // every budget of its namespace.
        .watches(Api::<ReplicaSet>::all(client.clone()), wc(), move |o| {
            in_namespace(&rs, o.namespace())
        })
        .watches(Api::<Deployment>::all(client.clone()), wc(), move |o| {
            in_namespace(&deploy, o.namespace())
        })
        .watches(Api::<StatefulSet>::all(client.clone()), wc(), move |o| {
            in_namespace(&sts, o.namespace())
        })
        .watches(
            Api::<ReplicationController>::all(client.clone()),
            wc(),
            move |o| in_namespace(&rc, o.namespace()),
        )
        .run(reconcile, error_policy, shared)
        .for_each(|_| async {})
        .await;
}

fn controller_of(meta: &kube::api::ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// The workload whose scale counts for a pod controlled by `owner`: (uid, replicas), `None`
/// when it is of no known kind or gone.
async fn workload_scale(
    client: &kube::Client,
    namespace: &str,
    owner: &OwnerReference,
) -> Result<Option<(String, i32)>, kube::Error> {
    let group = group_of(&owner.api_version);
    let matches_uid = |meta: &kube::api::ObjectMeta| meta.uid.as_deref() == Some(&owner.uid);
    match (group, owner.kind.as_str()) {
        ("", "ReplicationController") => {
            let api = Api::<ReplicationController>::namespaced(client.clone(), namespace);
            Ok(api
                .get_opt(&owner.name)
                .await?
                .filter(|o| matches_uid(&o.metadata))
                .map(|o| {
                    let replicas = o.spec.and_then(|s| s.replicas).unwrap_or(1);
                    (owner.uid.clone(), replicas)
                }))
        }
        ("apps" | "extensions", "ReplicaSet") => {
            let api = Api::<ReplicaSet>::namespaced(client.clone(), namespace);
            let Some(rs) = api
                .get_opt(&owner.name)
                .await?
                .filter(|o| matches_uid(&o.metadata))
            else {
                return Ok(None);
            };
            // A Deployment's ReplicaSet counts as the Deployment's scale.
            if let Some(parent) = controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
                let api = Api::<Deployment>::namespaced(client.clone(), namespace);
                return Ok(api
                    .get_opt(&parent.name)
                    .await?
                    .filter(|d| d.metadata.uid.as_deref() == Some(&parent.uid))
                    .map(|d| {
                        let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(1);
                        (parent.uid.clone(), replicas)
                    }));
            }
            let replicas = rs.spec.and_then(|s| s.replicas).unwrap_or(1);
            Ok(Some((owner.uid.clone(), replicas)))
        }
        ("apps", "StatefulSet") => {
            let api = Api::<StatefulSet>::namespaced(client.clone(), namespace);
            Ok(api
                .get_opt(&owner.name)
                .await?
                .filter(|o| matches_uid(&o.metadata))
                .map(|o| {
                    let replicas = o.spec.and_then(|s| s.replicas).unwrap_or(1);
                    (owner.uid.clone(), replicas)
                }))
        }
        _ => Ok(None),
    }
}

async fn scales(client: &kube::Client, namespace: &str, pods: &[Pod]) -> Result<Scales, Error> {
    let mut result = Scales::default();
    let mut known: HashMap<String, Option<(String, i32)>> = HashMap::new();
    for pod in pods {
        let Some(owner) = controller_of(&pod.metadata) else {
            continue;
        };
        let found = match known.get(&owner.uid) {
            Some(found) => found.clone(),
            None => {
                let found = workload_scale(client, namespace, owner)
                    .await
                    .map_err(|source| Error::Controller {
                        pod: pod.name_any(),
                        source,
                    })?;
                known.insert(owner.uid.clone(), found.clone());
                found
            }
        };
        match found {
            Some(scale) => {
                result.by_pod.insert(pod.name_any(), scale);
            }
            None => result.unresolved.push(pod.name_any()),
        }
    }
    Ok(result)
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, shared: Arc<Shared>) -> Result<Action, Error> {
    let timer = shared.ctx.metrics.sync(QUEUE);
    let result = sync(&pdb, &shared).await;
    timer.done(result.is_ok());
    result
}

async fn publish(
    shared: &Shared,
    pdb: &PodDisruptionBudget,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(error) = shared.recorder.publish(&event, &pdb.object_ref(&())).await {
        tracing::debug!(%error, "recording an event failed");
    }
}

async fn sync(pdb: &PodDisruptionBudget, shared: &Shared) -> Result<Action, Error> {
    let ctx = &shared.ctx;
    let namespace = pdb.namespace().unwrap_or_default();
    let key = format!("{namespace}/{}", pdb.name_any());
    let api = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &namespace);
    let pods = match pdb_selector(pdb) {
        Some(selector) => {
            Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
                .list(&ListParams::default().labels_from(&selector))
                .await
                .map_err(|source| Error::ListPods {
                    pdb: key.clone(),
                    source,
                })?
                .items
        }
        None => Vec::new(),
    };
    if pods.is_empty() {
        publish(
            shared,
            pdb,
            EventType::Normal,
            "NoPods",
            "No matching pods found".into(),
        )
        .await;
    }
    let scales = scales(&ctx.client, &namespace, &pods).await?;
    let write = |status: PodDisruptionBudgetStatus| {
        let mut updated = pdb.clone();
        updated.status = Some(status);
        let api = api.clone();
        let name = pdb.name_any();
        async move {
            api.replace_status(&name, &PostParams::default(), &updated)
                .await
        }
    };
    let status_error = |source| Error::Status {
        pdb: key.clone(),
        source,
    };
    let (expected, desired, unmanaged) = match expected_and_desired(pdb, &pods, &scales) {
        Ok(counts) => counts,
        Err(error) => {
            publish(
                shared,
                pdb,
                EventType::Warning,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {error}"),
            )
            .await;
            write(failed_status(pdb, error.to_string()))
                .await
                .map_err(status_error)?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    };
    if !unmanaged.is_empty() {
        tracing::debug!(pdb = %key, ?unmanaged, "pods without a controller");
        publish(shared, pdb, EventType::Warning, "UnmanagedPods", format!(
            "Pods selected by this PodDisruptionBudget (selector: {:?}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
            pdb_selector(pdb).map(|s| s.to_string()).unwrap_or_default()
        )).await;
    }
    let now = Timestamp::now();
    let (disrupted, overdue, recheck) = disrupted_pods(pdb, &pods, now);
    for pod in overdue {
        tracing::info!(pdb = %key, %pod, "pod was expected to be deleted but it wasn't");
    }
    let healthy = current_healthy(&pods, &disrupted);
    if let Some(status) = desired_status(pdb, healthy, desired, expected, disrupted) {
        write(status).await.map_err(status_error)?;
    }
    Ok(match recheck {
        Some(at) => {
            let wait = now.duration_until(at).unsigned_abs();
            Action::requeue(wait + Duration::from_millis(100))
        }
        None => Action::await_change(),
    })
}

fn error_policy(_: Arc<PodDisruptionBudget>, error: &Error, _: Arc<Shared>) -> Action {
    tracing::warn!(%error, "disruption sync failed");
    Action::requeue(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::api::ObjectMeta;

    fn pod(name: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }
    }

    fn managed(pods: &[Pod], replicas: i32) -> Scales {
        Scales {
            by_pod: pods
                .iter()
                .map(|p| (p.name_any(), ("rs-uid".to_string(), replicas)))
                .collect(),
            unresolved: Vec::new(),
        }
    }

    #[test]
    fn percentages_round_up() {
        let half = IntOrString::String("50%".into());
        assert_eq!(scaled_value(&half, 3), Ok(2));
        assert_eq!(scaled_value(&half, 4), Ok(2));
        assert_eq!(scaled_value(&IntOrString::Int(3), 10), Ok(3));
        assert_eq!(
            scaled_value(&IntOrString::String("3".into()), 10),
            Err(CountError::NotAPercentage)
        );
    }

    #[test]
    fn min_available_integer_counts_the_pods() {
        let pods = vec![pod("a", true), pod("b", true), pod("c", false)];
        let budget = pdb(Some(IntOrString::Int(2)), None);
        let (expected, desired, _) =
            expected_and_desired(&budget, &pods, &Scales::default()).unwrap();
        assert_eq!((expected, desired), (3, 2));
        let healthy = current_healthy(&pods, &BTreeMap::new());
        let status = desired_status(&budget, healthy, desired, expected, BTreeMap::new()).unwrap();
        assert_eq!(status.disruptions_allowed, 0);
        assert_eq!(status.observed_generation, Some(2));
        let condition = &status.conditions.unwrap()[0];
        assert_eq!(
            (
                condition.type_.as_str(),
                condition.status.as_str(),
                condition.reason.as_str()
            ),
            (CONDITION, "False", INSUFFICIENT_PODS)
        );
    }

    #[test]
    fn max_unavailable_uses_the_controller_scale() {
        // Four replicas wanted, three pods exist and are ready.
        let pods = vec![pod("a", true), pod("b", true), pod("c", true)];
        let budget = pdb(None, Some(IntOrString::String("25%".into())));
        let (expected, desired, unmanaged) =
            expected_and_desired(&budget, &pods, &managed(&pods, 4)).unwrap();
        assert_eq!((expected, desired), (4, 3));
        assert!(unmanaged.is_empty());
        let status = desired_status(&budget, 3, desired, expected, BTreeMap::new()).unwrap();
        assert_eq!(status.disruptions_allowed, 0);
        let status = desired_status(&budget, 4, desired, expected, BTreeMap::new()).unwrap();
        assert_eq!(status.disruptions_allowed, 1);
        assert_eq!(status.conditions.unwrap()[0].reason, SUFFICIENT_PODS);
        // A pod with a controller of unknown kind fails the sync.
        let unknown = Scales {
            unresolved: vec!["a".into()],
            ..Scales::default()
        };
        assert_eq!(
            expected_and_desired(&budget, &pods, &unknown),
            Err(CountError::NoController("a".into()))
        );
        let failed = failed_status(&budget, "boom".into());
        assert_eq!(failed.conditions.unwrap()[0].reason, SYNC_FAILED);
    }

    #[test]
    fn disrupted_pods_are_not_healthy_until_overdue_and_are_then_forgotten() {
        let pods = vec![pod("a", true), pod("b", true)];
        let mut budget = pdb(Some(IntOrString::Int(1)), None);
        let now = Timestamp::now();
        let recent = Time(now - SignedDuration::from_secs(30));
        let old = Time(now - SignedDuration::from_secs(180));
        budget.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([
                ("a".to_string(), recent.clone()),
                ("b".to_string(), old),
                ("gone".to_string(), recent.clone()),
            ])),
            ..PodDisruptionBudgetStatus::default()
        });
        let (pending, overdue, recheck) = disrupted_pods(&budget, &pods, now);
        assert_eq!(pending, BTreeMap::from([("a".to_string(), recent.clone())]));
        assert_eq!(overdue, vec!["b".to_string()]);
        assert_eq!(
            recheck,
            Some(recent.0 + SignedDuration::try_from(DELETION_TIMEOUT).unwrap())
        );
        assert_eq!(current_healthy(&pods, &pending), 1);
    }

    #[test]
    fn an_up_to_date_status_is_not_rewritten() {
        let mut budget = pdb(Some(IntOrString::Int(1)), None);
        let status = desired_status(&budget, 2, 1, 2, BTreeMap::new()).unwrap();
        assert_eq!(status.disruptions_allowed, 1);
        budget.status = Some(status);
        assert!(desired_status(&budget, 2, 1, 2, BTreeMap::new()).is_none());
        assert!(desired_status(&budget, 1, 1, 2, BTreeMap::new()).is_some());
    }
}
