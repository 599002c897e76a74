//! What the workload controllers of this module family share: watching pods through a
//! reflector store, upstream's controller expectations (so a stale cache never makes a
//! controller create or delete twice), pod predicates, pods from templates, and status patches.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde_json::Value;

/// How long an unfulfilled expectation blocks syncs before it is given up on (upstream's
/// ExpectationsTimeout).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A reflector store of every object of kind `K`, and the stream that keeps it current; the
/// stream yields each changed or deleted object after the store has taken it in, so a
/// controller triggered by it reads a store at least that new.
pub fn reflect<K>(api: Api<K>) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    (reader, stream)
}

#[derive(Default)]
struct Pending {
    /// (namespace/name, uid) of created objects not yet seen in the store.
    creates: Vec<(ObjectRef<Pod>, String)>,
    /// (namespace/name, uid) of deleted objects still in the store without a deletion mark.
    deletes: Vec<(ObjectRef<Pod>, String)>,
    /// (namespace/name, uid, finalizer) of objects whose finalizer was removed.
    unfinalized: Vec<(ObjectRef<Pod>, String, String)>,
    since: Option<Instant>,
}

/// Upstream's UID-tracking controller expectations, keyed by owner (`namespace/name`): what a
/// controller created or deleted and has not yet observed in its pod store.
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Pending>) -> T) -> T {
        let mut guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn expect_create(&self, owner: &str, pod: &Pod) {
        if let Some(key) = pod_key(pod) {
            self.with(|all| {
                let pending = all.entry(owner.to_string()).or_default();
                pending.since.get_or_insert_with(Instant::now);
                pending.creates.push(key);
            });
        }
    }

    pub fn expect_delete(&self, owner: &str, pod: &Pod) {
        if let Some(key) = pod_key(pod) {
            self.with(|all| {
                let pending = all.entry(owner.to_string()).or_default();
                pending.since.get_or_insert_with(Instant::now);
                pending.deletes.push(key);
            });
        }
    }

    pub fn expect_finalizer_removed(&self, owner: &str, pod: &Pod, finalizer: &str) {
        if let Some((key, uid)) = pod_key(pod) {
            self.with(|all| {
                let pending = all.entry(owner.to_string()).or_default();
                pending.since.get_or_insert_with(Instant::now);
                pending.unfinalized.push((key, uid, finalizer.to_string()));
            });
        }
    }

    /// Whether the store has caught up with everything `owner`'s controller did (or the
    /// expectations timed out); a controller syncs only then.
    pub fn satisfied(&self, owner: &str, store: &Store<Pod>) -> bool {
        self.with(|all| {
            let Some(pending) = all.get_mut(owner) else {
                return true;
            };
            pending.creates.retain(|(key, uid)| {
                store
                    .get(key)
                    .is_none_or(|p| p.metadata.uid.as_deref() != Some(uid))
            });
            pending.deletes.retain(|(key, uid)| {
                store.get(key).is_some_and(|p| {
                    p.metadata.uid.as_deref() == Some(uid)
                        && p.metadata.deletion_timestamp.is_none()
                })
            });
            pending.unfinalized.retain(|(key, uid, finalizer)| {
                store.get(key).is_some_and(|p| {
                    p.metadata.uid.as_deref() == Some(uid)
                        && p.metadata
                            .finalizers
                            .iter()
                            .flatten()
                            .any(|f| f == finalizer)
                })
            });
            let expired = pending
                .since
                .is_some_and(|since| since.elapsed() > EXPECTATIONS_TIMEOUT);
            if expired
                || (pending.creates.is_empty()
                    && pending.deletes.is_empty()
                    && pending.unfinalized.is_empty())
            {
                all.remove(owner);
                true
            } else {
                false
            }
        })
    }

    /// Forgets `owner` (it was deleted).
    pub fn forget(&self, owner: &str) {
        self.with(|all| all.remove(owner));
    }
}

fn pod_key(pod: &Pod) -> Option<(ObjectRef<Pod>, String)> {
    let name = pod.metadata.name.as_deref()?;
    let namespace = pod.metadata.namespace.as_deref()?;
    let uid = pod.metadata.uid.clone()?;
    Some((ObjectRef::new(name).within(namespace), uid))
}

/// `namespace/name` of an object, the key of its expectations.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// The controller reference a created object carries (`controller` and
/// `blockOwnerDeletion` set, as upstream's).
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    let mut reference = owner.controller_owner_ref(&())?;
    reference.block_owner_deletion = Some(true);
    Some(reference)
}

/// Whether `meta`'s controller is the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The objects in `store` within `namespace` whose controller is `uid`.
pub fn owned_by<K>(store: &Store<K>, namespace: &str, uid: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut owned: Vec<Arc<K>> = store
        .state()
        .into_iter()
        .filter(|o| {
            o.meta().namespace.as_deref() == Some(namespace) && is_controlled_by(o.meta(), uid)
        })
        .collect();
    owned.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    owned
}

/// Whether `labels` fall under `selector` (an invalid or missing selector selects nothing,
/// as upstream's controllers treat it).
pub fn selects(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let Ok(selector) = Selector::try_from(selector.clone()) else {
        return false;
    };
    if selector.selects_all() {
        return false;
    }
    selector.matches(labels.unwrap_or(&BTreeMap::new()))
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Neither finished nor being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod last became Ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        condition
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        min_ready_seconds <= 0
            || since.as_second() + i64::from(min_ready_seconds) <= now.as_second()
    })
}

/// A pod made from `template`: its labels, annotations and spec, owned by `owner`.
pub fn pod_from_template(template: &PodTemplateSpec, owner: Option<OwnerReference>) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// A merge patch `{"status": ...}` that turns `old` into `new`, with nulls for fields `new`
/// drops (a plain merge patch would keep them).
pub fn status_patch<T: serde::Serialize>(old: Option<&T>, new: &T) -> Value {
    let mut new = serde_json::to_value(new).unwrap_or(Value::Null);
    let old = old
        .and_then(|o| serde_json::to_value(o).ok())
        .unwrap_or(Value::Null);
    if let (Some(new), Some(old)) = (new.as_object_mut(), old.as_object()) {
        for key in old.keys() {
            new.entry(key.clone()).or_insert(Value::Null);
        }
    }
    serde_json::json!({ "status": new })
}

/// Whether a write failed only because the object is gone or was changed meanwhile (the next
/// sync sees the newer state).
pub fn is_conflict_or_gone(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404 || status.code == 409)
}

/// Records an event about `owner`; `related` names the object it concerns (kube's recorder
/// merges events of one reason about one object into a series, so each pod or job is named).
pub async fn publish_event<K: Resource<DynamicType = ()>>(
    recorder: &kube::runtime::events::Recorder,
    owner: &K,
    type_: kube::runtime::events::EventType,
    reason: &str,
    note: String,
    related: Option<k8s_openapi::api::core::v1::ObjectReference>,
) {
    let event = kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: related,
    };
    if let Err(error) = recorder.publish(&event, &owner.object_ref(&())).await {
        tracing::debug!(%error, "publishing an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, phase: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.then(|| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(100).unwrap())),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn expectations_wait_for_the_store() {
        let (store, mut writer) = reflector::store::<Pod>();
        let expectations = Expectations::default();
        let created = pod("a", "Pending", false);
        expectations.expect_create("ns/job", &created);
        assert!(!expectations.satisfied("ns/job", &store));
        writer.apply_watcher_event(&watcher::Event::Apply(created.clone()));
        assert!(expectations.satisfied("ns/job", &store));
        expectations.expect_delete("ns/job", &created);
        assert!(!expectations.satisfied("ns/job", &store));
        writer.apply_watcher_event(&watcher::Event::Delete(created));
        assert!(expectations.satisfied("ns/job", &store));
    }

    #[test]
    fn availability_counts_min_ready_seconds() {
        let ready = pod("a", "Running", true);
        let at = |s| Timestamp::from_second(s).unwrap();
        assert!(is_available(&ready, 0, at(100)));
        assert!(!is_available(&ready, 10, at(105)));
        assert!(is_available(&ready, 10, at(110)));
        assert!(!is_available(&pod("b", "Running", false), 0, at(200)));
    }

    #[test]
    fn status_patches_null_dropped_fields() {
        let old = serde_json::json!({"active": 1, "ready": 1});
        let new = serde_json::json!({"ready": 0});
        let patch = status_patch(Some(&old), &new);
        assert_eq!(
            patch,
            serde_json::json!({"status": {"active": null, "ready": 0}})
        );
    }

    #[test]
    fn selectors_need_labels_and_never_select_all() {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "x".into())])),
            ..LabelSelector::default()
        };
        let labels = BTreeMap::from([("app".to_string(), "x".to_string())]);
        assert!(selects(Some(&selector), Some(&labels)));
        assert!(!selects(Some(&selector), None));
        assert!(!selects(Some(&LabelSelector::default()), Some(&labels)));
    }
}
