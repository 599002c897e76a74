//! Upstream's Priority admission for pods: `priorityClassName` (or the global default class)
//! resolves to `spec.priority` and `spec.preemptionPolicy`; the two system classes always exist.

use hakube_apimachinery::status::{self, ApiError};
use serde_json::{json, Value};

use crate::objects;
use crate::rest::store_error;
use crate::State;

const SEGMENT: &str = "priorityclasses";

/// The classes every cluster has, with upstream's values.
pub const SYSTEM_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// What a class gives a pod: (class name, priority, preemption policy).
fn from_class(class: &Value) -> (String, i64, String) {
    (
        objects::name(class).unwrap_or("").to_string(),
        class.get("value").and_then(Value::as_i64).unwrap_or(0),
        class
            .get("preemptionPolicy")
            .and_then(Value::as_str)
            .unwrap_or("PreemptLowerPriority")
            .to_string(),
    )
}

/// Upstream picks the global default class with the lowest value when several claim it.
pub fn global_default(classes: &[Value]) -> Option<(String, i64, String)> {
    classes
        .iter()
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .map(from_class)
        .min_by_key(|(_, value, _)| *value)
}

/// Resolves a new pod's priority; `given` is the `spec.priority` the client sent, if any.
pub async fn admit_pod(state: &State, pod: &mut Value, given: Option<i64>) -> Result<(), ApiError> {
    let pod_name = objects::name(pod).unwrap_or("").to_string();
    let class_name = objects::str_at(pod, "spec.priorityClassName")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let classes: Vec<Value> = state
        .cached_objects(SEGMENT, None)
        .await
        .map_err(store_error)?
        .into_iter()
        .map(|s| s.object)
        .collect();
    let resolved = match &class_name {
        Some(name) => {
            let cached = classes
                .iter()
                .find(|c| objects::name(c) == Some(name.as_str()))
                .cloned();
            // A class the cache has not applied yet (created a moment ago) is read from etcd.
            let class = match cached {
                Some(class) => Some(class),
                None => {
                    let key = state.store.key(SEGMENT, None, name);
                    let stored = state.store.get(&key).await.map_err(store_error)?;
                    stored.map(|s| s.object)
                }
            };
            match class {
                Some(class) => Some(from_class(&class)),
                None => match SYSTEM_CLASSES.iter().find(|(n, _, _)| n == name) {
                    Some((n, value, _)) => {
                        Some((n.to_string(), *value, "PreemptLowerPriority".to_string()))
                    }
                    None => {
                        return Err(status::forbidden(format!(
                            "pods \"{pod_name}\" is forbidden: no PriorityClass with name {name} was found"
                        )))
                    }
                },
            }
        }
        None => global_default(&classes),
    };
    let (name, priority, policy) =
        resolved.unwrap_or_else(|| (String::new(), 0, "PreemptLowerPriority".to_string()));
    if let Some(given) = given.filter(|g| *g != priority) {
        return Err(status::forbidden(format!(
            "pods \"{pod_name}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        )));
    }
    if !name.is_empty() {
        objects::set_at(pod, "spec.priorityClassName", json!(name));
    }
    objects::set_at(pod, "spec.priority", json!(priority));
    objects::set_at(pod, "spec.preemptionPolicy", json!(policy));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_global_default_wins() {
        let classes = vec![
            json!({"metadata":{"name":"a"},"value":100,"globalDefault":true}),
            json!({"metadata":{"name":"b"},"value":10,"globalDefault":true,"preemptionPolicy":"Never"}),
            json!({"metadata":{"name":"c"},"value":1}),
        ];
        assert_eq!(
            global_default(&classes),
            Some(("b".to_string(), 10, "Never".to_string()))
        );
        assert_eq!(global_default(&classes[2..]), None);
    }
}
