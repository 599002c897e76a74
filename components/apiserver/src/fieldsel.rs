//! The fields each resource can be selected by, as upstream's field label conversion allows.

use hakube_apimachinery::fields::FieldSelector;
use hakube_apimachinery::status::{self, ApiError};
use serde_json::Value;

use crate::registry::ResourceDef;

const EVERYWHERE: &[&str] = &["metadata.name", "metadata.namespace"];

fn supported(kind: &str) -> &'static [&'static str] {
    match kind {
        "Pod" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Node" => &["spec.unschedulable"],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        "ReplicationController" | "ReplicaSet" => &["status.replicas"],
        "Job" => &["status.successful"],
        "Service" => &["spec.clusterIP", "spec.type"],
        _ => &[],
    }
}

/// What label and field selectors can read of a stored object: its name, namespace and labels
/// and the fields its kind can be selected by. None for an object without a kind.
pub fn selectable(object: &Value) -> Option<Value> {
    let kind = object.get("kind")?.as_str()?;
    let mut projection = Value::Object(serde_json::Map::new());
    let paths = ["metadata.labels"]
        .iter()
        .chain(EVERYWHERE)
        .chain(supported(kind));
    for path in paths {
        // The `source` field selects on `source.component`.
        let path = if *path == "source" {
            "source.component"
        } else {
            path
        };
        if let Some(value) = crate::objects::at(object, path) {
            crate::objects::set_at(&mut projection, path, value.clone());
        }
    }
    Some(projection)
}

/// events.k8s.io names its fields differently; selectors address the stored core/v1 form.
fn storage_field(def: &ResourceDef, field: &str) -> String {
    if !def.is_events_v1() {
        return field.to_string();
    }
    if let Some(rest) = field.strip_prefix("regarding.") {
        return format!("involvedObject.{rest}");
    }
    match field {
        "reportingController" => "reportingComponent".to_string(),
        "deprecatedSource" => "source".to_string(),
        other => other.to_string(),
    }
}

/// A parsed field selector whose every field this resource supports, in storage terms.
pub struct ObjectFieldSelector {
    selector: FieldSelector,
    storage_names: Vec<(String, String)>,
}

impl ObjectFieldSelector {
    pub fn parse(def: &ResourceDef, raw: &str) -> Result<Self, ApiError> {
        let selector = hakube_apimachinery::fields::parse(raw)
            .map_err(|e| status::bad_request(format!("unable to parse fieldSelector: {e}")))?;
        let mut storage_names = Vec::new();
        for field in selector.fields() {
            let stored = storage_field(def, field);
            if !EVERYWHERE.contains(&stored.as_str())
                && !supported(def.kind).contains(&stored.as_str())
            {
                return Err(status::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            storage_names.push((field.to_string(), stored));
        }
        Ok(ObjectFieldSelector {
            selector,
            storage_names,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.selector.matches(|field| {
            let stored = self
                .storage_names
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, s)| s.as_str())
                .unwrap_or(field);
            field_value(object, stored)
        })
    }

    /// The single name this selector pins, so a read can go to one key.
    pub fn exact_name(&self) -> Option<&str> {
        self.selector.exact_value("metadata.name")
    }
}

fn field_value(object: &Value, field: &str) -> String {
    if field == "source" {
        return object
            .pointer("/source/component")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
    }
    let mut current = object;
    for segment in field.split('.') {
        match current.get(segment) {
            Some(v) => current = v,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    #[test]
    fn pods_select_by_node_including_the_empty_node() {
        let pods = lookup("", "v1", "pods").unwrap();
        let unbound = ObjectFieldSelector::parse(pods, "spec.nodeName=").unwrap();
        assert!(unbound.matches(&json!({"spec":{}})));
        assert!(!unbound.matches(&json!({"spec":{"nodeName":"n1"}})));
        let on_n1 =
            ObjectFieldSelector::parse(pods, "spec.nodeName=n1,status.phase!=Failed").unwrap();
        assert!(on_n1.matches(&json!({"spec":{"nodeName":"n1"},"status":{"phase":"Running"}})));
    }

    #[test]
    fn unsupported_fields_are_400_with_upstreams_text() {
        let cms = lookup("", "v1", "configmaps").unwrap();
        let err = ObjectFieldSelector::parse(cms, "data.x=1").err().unwrap();
        assert_eq!(err.code, 400);
        assert_eq!(err.message, "field label not supported: data.x");
    }

    #[test]
    fn events_v1_fields_map_onto_the_stored_form() {
        let ev = lookup("events.k8s.io", "v1", "events").unwrap();
        let sel = ObjectFieldSelector::parse(ev, "regarding.name=p1").unwrap();
        assert!(sel.matches(&json!({"involvedObject":{"name":"p1"}})));
        let nodes = lookup("", "v1", "nodes").unwrap();
        let sel = ObjectFieldSelector::parse(nodes, "spec.unschedulable=true").unwrap();
        assert!(sel.matches(&json!({"spec":{"unschedulable":true}})));
        assert_eq!(
            ObjectFieldSelector::parse(nodes, "metadata.name=n1")
                .unwrap()
                .exact_name(),
            Some("n1")
        );
    }

    /// Each of `selectors` on `def` selects `object`'s projection exactly when it selects
    /// `object`.
    fn assert_selects_alike(def: &ResourceDef, object: &Value, selectors: &[&str]) {
        let projection = selectable(object).unwrap();
        for raw in selectors {
            let selector = ObjectFieldSelector::parse(def, raw).unwrap();
            assert_eq!(
                selector.matches(&projection),
                selector.matches(object),
                "{raw}"
            );
        }
    }

    #[test]
    fn the_selectable_part_of_an_object_selects_as_the_whole_object_does() {
        let pods = lookup("", "v1", "pods").unwrap();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "schedulerName": "default-scheduler", "hostNetwork": false,
                     "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5"},
        });
        let projection = selectable(&pod).unwrap();
        assert!(
            projection.pointer("/spec/containers").is_none(),
            "{projection}"
        );
        assert_selects_alike(
            pods,
            &pod,
            &[
                "spec.nodeName=n1",
                "spec.nodeName=n2",
                "spec.nodeName=",
                "status.phase!=Succeeded,status.phase!=Failed",
                "spec.hostNetwork=false",
                "metadata.name=p,metadata.namespace=ns",
                "spec.schedulerName=other",
                "status.nominatedNodeName=",
            ],
        );
        assert_eq!(
            crate::objects::labels(&projection),
            crate::objects::labels(&pod)
        );

        let events = lookup("", "v1", "events").unwrap();
        let event = json!({"kind": "Event", "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Scheduled",
            "source": {"component": "default-scheduler"}, "message": "m"});
        assert_selects_alike(
            events,
            &event,
            &[
                "source=default-scheduler",
                "involvedObject.name=p",
                "reason=Failed",
            ],
        );
        assert!(selectable(&json!({"metadata": {"name": "no-kind"}})).is_none());
    }
}
