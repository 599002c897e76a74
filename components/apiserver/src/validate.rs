//! Validation as upstream does it where users meet it: object metadata, required fields, names
//! of containers and ports, selectors that match their templates, and immutable fields.

use hakube_apimachinery::labels;
use hakube_apimachinery::status::StatusCause;
use hakube_apimachinery::validation::{self, validate_object_meta};
use serde_json::{json, Value};

use crate::objects::at;
use crate::registry::ResourceDef;

/// Validates an object about to be created (or the new state of an update).
pub fn validate(def: &ResourceDef, object: &Value) -> Vec<StatusCause> {
    let mut causes = validate_object_meta(
        object.get("metadata").unwrap_or(&Value::Null),
        def.namespaced,
        def.name_rule,
    );
    if let Some(custom) = def.custom {
        crate::crd::schema::validate(object, &custom.structural, "", &mut causes);
        return causes;
    }
    match def.kind {
        "CustomResourceDefinition" => causes.extend(crate::crd::validate(object)),
        "Pod" => {
            if let Some(spec) = object.get("spec") {
                pod_spec(spec, "spec", &mut causes);
            } else {
                causes.push(StatusCause::required("spec"));
            }
        }
        "ReplicationController" | "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => {
            workload(def.kind, object, &mut causes)
        }
        "Job" => {
            template_spec(object, "spec.template", &mut causes);
            let restart = at(object, "spec.template.spec.restartPolicy").and_then(Value::as_str);
            if !matches!(restart, Some("Never" | "OnFailure")) {
                causes.push(StatusCause::not_supported(
                    "spec.template.spec.restartPolicy",
                    json!(restart.unwrap_or("")),
                    &["OnFailure", "Never"],
                ));
            }
            non_negative(object, "spec.parallelism", &mut causes);
            non_negative(object, "spec.completions", &mut causes);
            non_negative(object, "spec.backoffLimit", &mut causes);
        }
        "CronJob" => {
            if at(object, "spec.schedule")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                causes.push(StatusCause::required("spec.schedule"));
            }
            template_spec(object, "spec.jobTemplate.spec.template", &mut causes);
        }
        "Service" => service(object, &mut causes),
        "ConfigMap" => {
            config_keys(object, &["data", "binaryData"], &mut causes);
            let size = serde_json::to_vec(&object.get("data"))
                .map(|b| b.len())
                .unwrap_or(0)
                + serde_json::to_vec(&object.get("binaryData"))
                    .map(|b| b.len())
                    .unwrap_or(0);
            if size > 1024 * 1024 {
                causes.push(StatusCause::too_long("data", 1024 * 1024));
            }
        }
        "Secret" => config_keys(object, &["data"], &mut causes),
        "Lease" => non_negative(object, "spec.leaseDurationSeconds", &mut causes),
        _ => {}
    }
    causes
}

/// Validates what an update may not change.
pub fn validate_update(def: &ResourceDef, old: &Value, new: &Value) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    if crate::objects::is_deleting(old) {
        let before = crate::objects::finalizers(old);
        if crate::objects::finalizers(new)
            .iter()
            .any(|f| !before.contains(f))
        {
            causes.push(StatusCause::forbidden(
                "metadata.finalizers",
                "no new finalizers can be added if the object is being deleted",
            ));
        }
    }
    let immutable = |path: &str, causes: &mut Vec<StatusCause>| {
        let (a, b) = (at(old, path), at(new, path));
        if a != b {
            causes.push(StatusCause::invalid(
                path,
                b.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    };
    if def.custom.is_some() {
        return causes;
    }
    match def.kind {
        "CustomResourceDefinition" => causes.extend(crate::crd::validate_update(old, new)),
        "Pod" => pod_update(old, new, &mut causes),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            immutable("spec.selector", &mut causes);
            if def.kind == "Job" {
                immutable("spec.completions", &mut causes);
                immutable("spec.completionMode", &mut causes);
            }
        }
        "Service" => {
            let cleared = at(new, "spec.clusterIP").is_none_or(|v| v.as_str() == Some(""));
            if !cleared && at(old, "spec.type").and_then(Value::as_str) != Some("ExternalName") {
                immutable("spec.clusterIP", &mut causes);
            }
        }
        "PersistentVolumeClaim" => {
            immutable("spec.storageClassName", &mut causes);
            // Binding sets volumeName once (upstream allows that); after that it stays.
            if at(old, "spec.volumeName").is_some_and(|v| v.as_str() != Some("")) {
                immutable("spec.volumeName", &mut causes);
            }
            immutable("spec.accessModes", &mut causes);
        }
        "Secret" | "ConfigMap" if at(old, "immutable").and_then(Value::as_bool) == Some(true) => {
            for path in ["data", "binaryData", "stringData", "immutable"] {
                if at(old, path) != at(new, path) {
                    causes.push(StatusCause::forbidden(
                        path,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        _ => {}
    }
    causes
}

fn non_negative(object: &Value, path: &str, causes: &mut Vec<StatusCause>) {
    if let Some(v) = at(object, path).and_then(Value::as_i64) {
        if v < 0 {
            causes.push(StatusCause::invalid(
                path,
                json!(v),
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn template_spec(object: &Value, path: &str, causes: &mut Vec<StatusCause>) {
    match at(object, &format!("{path}.spec")) {
        Some(spec) => pod_spec(spec, &format!("{path}.spec"), causes),
        None => causes.push(StatusCause::required(format!("{path}.spec"))),
    }
}

fn workload(kind: &str, object: &Value, causes: &mut Vec<StatusCause>) {
    non_negative(object, "spec.replicas", causes);
    let template_labels = at(object, "spec.template.metadata.labels").and_then(Value::as_object);
    let selector = if kind == "ReplicationController" {
        // An RC's selector is a plain map.
        at(object, "spec.selector")
            .and_then(Value::as_object)
            .map(|m| labels::from_label_selector_json(&json!({ "matchLabels": m })))
    } else {
        match at(object, "spec.selector") {
            Some(sel) if !sel.is_null() => Some(labels::from_label_selector_json(sel)),
            _ => {
                causes.push(StatusCause::required("spec.selector"));
                None
            }
        }
    };
    match selector {
        Some(Ok(sel)) if sel.is_empty() => causes.push(StatusCause::invalid(
            "spec.selector",
            at(object, "spec.selector").unwrap_or(&Value::Null),
            "empty selector is invalid for deployment",
        )),
        Some(Ok(sel)) if !sel.matches(template_labels) => {
            causes.push(StatusCause::invalid(
                "spec.template.metadata.labels",
                template_labels
                    .cloned()
                    .map(Value::Object)
                    .unwrap_or(Value::Null),
                "`selector` does not match template `labels`",
            ));
        }
        Some(Ok(_)) => {}
        Some(Err(e)) => causes.push(StatusCause::invalid(
            "spec.selector",
            at(object, "spec.selector").unwrap_or(&Value::Null),
            e.to_string(),
        )),
        None => {}
    }
    template_spec(object, "spec.template", causes);
    if kind != "StatefulSet" && kind != "ReplicationController" {
        let restart = at(object, "spec.template.spec.restartPolicy").and_then(Value::as_str);
        if restart.is_some_and(|r| r != "Always") {
            causes.push(StatusCause::not_supported(
                "spec.template.spec.restartPolicy",
                json!(restart),
                &["Always"],
            ));
        }
    }
    if kind == "StatefulSet" && at(object, "spec.serviceName").is_some_and(|v| !v.is_string()) {
        causes.push(StatusCause::invalid(
            "spec.serviceName",
            at(object, "spec.serviceName").unwrap_or(&Value::Null),
            "must be a string",
        ));
    }
}

fn pod_spec(spec: &Value, path: &str, causes: &mut Vec<StatusCause>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        Some(c) if !c.is_empty() => {}
        _ => causes.push(StatusCause::required(format!("{path}.containers"))),
    }
    let mut names: Vec<&str> = Vec::new();
    for list in ["initContainers", "containers"] {
        let Some(items) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in items.iter().enumerate() {
            let field = format!("{path}.{list}[{i}]");
            match c
                .get("name")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                None => causes.push(StatusCause::required(format!("{field}.name"))),
                Some(name) => {
                    for msg in validation::dns1123_label(name) {
                        causes.push(StatusCause::invalid(
                            format!("{field}.name"),
                            json!(name),
                            &msg,
                        ));
                    }
                    if names.contains(&name) {
                        causes.push(StatusCause::duplicate(format!("{field}.name"), json!(name)));
                    }
                    names.push(name);
                }
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                causes.push(StatusCause::required(format!("{field}.image")));
            }
            if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                for (j, p) in ports.iter().enumerate() {
                    let pf = format!("{field}.ports[{j}]");
                    port_number(
                        p.get("containerPort"),
                        &format!("{pf}.containerPort"),
                        true,
                        causes,
                    );
                    port_number(p.get("hostPort"), &format!("{pf}.hostPort"), false, causes);
                }
            }
        }
    }
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !matches!(policy, "Always" | "OnFailure" | "Never") {
            causes.push(StatusCause::not_supported(
                format!("{path}.restartPolicy"),
                json!(policy),
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    if let Some(policy) = spec.get("dnsPolicy").and_then(Value::as_str) {
        const DNS: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !DNS.contains(&policy) {
            causes.push(StatusCause::not_supported(
                format!("{path}.dnsPolicy"),
                json!(policy),
                DNS,
            ));
        }
    }
}

fn port_number(v: Option<&Value>, field: &str, required: bool, causes: &mut Vec<StatusCause>) {
    match v.and_then(Value::as_i64) {
        None if required => causes.push(StatusCause::required(field)),
        None => {}
        Some(0) if !required => {}
        Some(p) if !(1..=65535).contains(&p) => causes.push(StatusCause::invalid(
            field,
            json!(p),
            "must be between 1 and 65535, inclusive",
        )),
        Some(_) => {}
    }
}

/// Upstream allows only images, activeDeadlineSeconds, added tolerations and a few more
/// fields of a pod's spec to change.
fn pod_update(old: &Value, new: &Value, causes: &mut Vec<StatusCause>) {
    let mutable_cleared = |pod: &Value| -> Value {
        let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in items {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("image");
                    }
                }
            }
        }
        if let Some(map) = spec.as_object_mut() {
            map.remove("activeDeadlineSeconds");
            map.remove("tolerations");
            map.remove("terminationGracePeriodSeconds");
            map.remove("schedulingGates");
        }
        spec
    };
    if mutable_cleared(old) != mutable_cleared(new) {
        causes.push(StatusCause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    let old_tolerations = at(old, "spec.tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_tolerations = at(new, "spec.tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if old_tolerations.iter().any(|t| !new_tolerations.contains(t)) {
        causes.push(StatusCause::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
}

fn service(object: &Value, causes: &mut Vec<StatusCause>) {
    let ty = at(object, "spec.type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !TYPES.contains(&ty) {
        causes.push(StatusCause::not_supported("spec.type", json!(ty), TYPES));
        return;
    }
    let headless = at(object, "spec.clusterIP").and_then(Value::as_str) == Some("None");
    let ports = at(object, "spec.ports").and_then(Value::as_array);
    if ty == "ExternalName" {
        if at(object, "spec.externalName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push(StatusCause::required("spec.externalName"));
        }
    } else if ports.is_none_or(Vec::is_empty) && !headless {
        causes.push(StatusCause::required("spec.ports"));
    }
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let many = ports.is_some_and(|p| p.len() > 1);
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let field = format!("spec.ports[{i}]");
        port_number(p.get("port"), &format!("{field}.port"), true, causes);
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if many && name.is_empty() {
            causes.push(StatusCause::required(format!("{field}.name")));
        } else if !name.is_empty() && names.contains(&name) {
            causes.push(StatusCause::duplicate(format!("{field}.name"), json!(name)));
        }
        names.push(name);
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            causes.push(StatusCause::not_supported(
                format!("{field}.protocol"),
                json!(protocol),
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if let Some(port) = p.get("port").and_then(Value::as_i64) {
            let key = (port, protocol.to_string());
            if seen.contains(&key) {
                causes.push(StatusCause::duplicate(
                    field.to_string(),
                    json!({"port": port, "protocol": protocol}),
                ));
            }
            seen.push(key);
        }
        if p.get("nodePort")
            .and_then(Value::as_i64)
            .is_some_and(|n| n != 0)
            && ty == "ClusterIP"
        {
            causes.push(StatusCause::forbidden(
                format!("{field}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
}

/// ConfigMap and Secret keys: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn config_keys(object: &Value, fields: &[&str], causes: &mut Vec<StatusCause>) {
    for field in fields {
        let Some(map) = object.get(*field).and_then(Value::as_object) else {
            continue;
        };
        for key in map.keys() {
            let valid_chars = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid_chars || key.len() > 253 || key == "." || key == ".." {
                causes.push(StatusCause::invalid(
                    format!("{field}[{key}]"),
                    json!(key),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    fn fields(causes: &[StatusCause]) -> Vec<String> {
        causes.iter().map(|c| c.field.clone()).collect()
    }

    #[test]
    fn pods_need_named_containers_with_images() {
        let def = lookup("", "v1", "pods").unwrap();
        let pod = json!({"metadata":{"name":"p","namespace":"default"},"spec":{"containers":[{"name":"Bad_Name"},{"name":"Bad_Name","image":"x"}]}});
        let f = fields(&validate(def, &pod));
        assert!(f.contains(&"spec.containers[0].name".to_string()), "{f:?}");
        assert!(f.contains(&"spec.containers[0].image".to_string()), "{f:?}");
        assert!(f.contains(&"spec.containers[1].name".to_string()), "{f:?}");
        let empty = json!({"metadata":{"name":"p","namespace":"default"},"spec":{}});
        assert_eq!(fields(&validate(def, &empty)), vec!["spec.containers"]);
    }

    #[test]
    fn bad_names_are_rejected_on_metadata_name() {
        let def = lookup("", "v1", "configmaps").unwrap();
        let cm = json!({"metadata":{"name":"Not_Valid","namespace":"default"}});
        assert_eq!(fields(&validate(def, &cm)), vec!["metadata.name"]);
    }

    #[test]
    fn workload_selector_must_match_template() {
        let def = lookup("apps", "v1", "deployments").unwrap();
        let d = json!({"metadata":{"name":"d","namespace":"default"},"spec":{"selector":{"matchLabels":{"app":"a"}},"template":{"metadata":{"labels":{"app":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}});
        assert_eq!(
            fields(&validate(def, &d)),
            vec!["spec.template.metadata.labels"]
        );
    }

    #[test]
    fn selectors_and_pod_specs_are_immutable() {
        let def = lookup("apps", "v1", "deployments").unwrap();
        let a = json!({"spec":{"selector":{"matchLabels":{"app":"a"}}}});
        let b = json!({"spec":{"selector":{"matchLabels":{"app":"b"}}}});
        assert_eq!(fields(&validate_update(def, &a, &b)), vec!["spec.selector"]);
        let pods = lookup("", "v1", "pods").unwrap();
        let p1 = json!({"spec":{"containers":[{"name":"c","image":"a"}],"nodeName":"n1"}});
        let image_only = json!({"spec":{"containers":[{"name":"c","image":"b"}],"nodeName":"n1"}});
        assert!(validate_update(pods, &p1, &image_only).is_empty());
        let moved = json!({"spec":{"containers":[{"name":"c","image":"a"}],"nodeName":"n2"}});
        assert_eq!(fields(&validate_update(pods, &p1, &moved)), vec!["spec"]);
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let def = lookup("", "v1", "configmaps").unwrap();
        let old =
            json!({"metadata":{"deletionTimestamp":"2024-01-01T00:00:00Z","finalizers":["a"]}});
        let added =
            json!({"metadata":{"deletionTimestamp":"2024-01-01T00:00:00Z","finalizers":["a","b"]}});
        assert_eq!(
            fields(&validate_update(def, &old, &added)),
            vec!["metadata.finalizers"]
        );
        let removed =
            json!({"metadata":{"deletionTimestamp":"2024-01-01T00:00:00Z","finalizers":[]}});
        assert!(validate_update(def, &old, &removed).is_empty());
    }

    #[test]
    fn services_need_ports_with_valid_numbers() {
        let def = lookup("", "v1", "services").unwrap();
        let s = json!({"metadata":{"name":"s","namespace":"default"},"spec":{"type":"ClusterIP"}});
        assert_eq!(fields(&validate(def, &s)), vec!["spec.ports"]);
        let s = json!({"metadata":{"name":"s","namespace":"default"},"spec":{"ports":[{"port":70000}]}});
        assert_eq!(fields(&validate(def, &s)), vec!["spec.ports[0].port"]);
    }

    #[test]
    fn config_keys_are_checked() {
        let def = lookup("", "v1", "configmaps").unwrap();
        let cm = json!({"metadata":{"name":"c","namespace":"default"},"data":{"ok.key":"1","bad key":"2"}});
        assert_eq!(fields(&validate(def, &cm)), vec!["data[bad key]"]);
    }
}
