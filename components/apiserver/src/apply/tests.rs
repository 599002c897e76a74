use serde_json::json;

use super::*;
use crate::openapi;

fn deployment_schema() -> Option<SchemaNode<'static>> {
    openapi::spec().kind("apps/v1", "Deployment")
}

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        api_version: "apps/v1",
        scope: Scope::Main,
    }
}

fn config(replicas: i64, image: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}
            }
        }
    })
}

fn entry<'a>(object: &'a Value, manager: &str) -> &'a Value {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap()
}

#[test]
fn apply_records_fields_v1_like_upstream() {
    let out = apply(
        None,
        &config(2, "nginx:1", json!({"a": "1"})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap();
    let e = entry(&out, "m1");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert_eq!(
        e["fieldsV1"],
        json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                }
            }
        })
    );
    assert_eq!(from_fields_v1(&e["fieldsV1"]), managers(&out)[0].fields);
}

#[test]
fn conflicts_name_fields_and_managers_unless_forced() {
    let first = apply(
        None,
        &config(2, "nginx:1", json!({})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap();
    // Same values: shared ownership, no conflict.
    let shared = apply(
        Some(&first),
        &config(2, "nginx:1", json!({})),
        deployment_schema(),
        &writer("m2"),
        false,
    )
    .unwrap();
    assert_eq!(managers(&shared).len(), 2);
    let err = apply(
        Some(&shared),
        &config(3, "nginx:2", json!({})),
        deployment_schema(),
        &writer("m2"),
        false,
    )
    .unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(
        err.message,
        "Apply failed with 2 conflicts: conflicts with \"m1\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
    let causes = &err.details.as_ref().unwrap().causes;
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".spec.replicas");
    let forced = apply(
        Some(&shared),
        &config(3, "nginx:2", json!({})),
        deployment_schema(),
        &writer("m2"),
        true,
    )
    .unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let m1 = managers(&forced)
        .into_iter()
        .find(|m| m.manager == "m1")
        .unwrap();
    assert!(!m1.fields.contains(&to_path(&["f:spec", "f:replicas"])));
    assert!(m1.fields.contains(&to_path(&["f:spec", "f:selector"])));
}

#[test]
fn dropped_fields_are_removed_unless_someone_else_owns_them() {
    let first = apply(
        None,
        &config(2, "nginx:1", json!({"a": "1", "b": "2"})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap();
    let mut second_config = config(2, "nginx:1", json!({"b": "2"}));
    second_config["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "nginx", "image": "nginx:1"}, {"name": "side", "image": "s"}]);
    let other = apply(
        Some(&first),
        &second_config,
        deployment_schema(),
        &writer("m2"),
        false,
    )
    .unwrap();
    // m1 stops applying both labels and the sidecar it never had: a goes, b stays (m2 owns it).
    let third = apply(
        Some(&other),
        &config(2, "nginx:1", json!({})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap();
    assert_eq!(third["metadata"]["labels"], json!({"b": "2"}));
    let names: Vec<&Value> = third["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(names, vec!["nginx", "side"]);
}

#[test]
fn a_map_whose_every_field_was_dropped_goes_with_them() {
    let status = |rollout: Value| {
        json!({"apiVersion": "v1", "kind": "Thing", "metadata": {"name": "x"},
               "status": {"phase": "Running", "rollout": rollout}})
    };
    let status_writer = Writer {
        manager: "operator",
        api_version: "v1",
        scope: Scope::Status,
    };
    let created = apply(None, &status(Value::Null), None, &writer("cli"), false).unwrap();
    let first = apply(
        Some(&created),
        &status(json!({"host": "cp-3", "restartedAt": "2026-11-22T14:39:58Z"})),
        None,
        &status_writer,
        false,
    )
    .unwrap();
    assert_eq!(first["status"]["rollout"]["host"], "cp-3");
    let mut without = status(Value::Null);
    without["status"].as_object_mut().unwrap().remove("rollout");
    let second = apply(Some(&first), &without, None, &status_writer, false).unwrap();
    assert_eq!(second["status"], json!({"phase": "Running"}));
}

#[test]
fn a_repeated_apply_changes_nothing() {
    let first = apply(
        None,
        &config(2, "nginx:1", json!({})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap();
    let again = apply(
        Some(&first),
        &config(2, "nginx:1", json!({})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap();
    assert_eq!(first, again);
}

#[test]
fn updates_take_ownership_of_what_they_change() {
    let first = apply(
        None,
        &config(2, "nginx:1", json!({})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap();
    let mut edited = first.clone();
    edited["spec"]["replicas"] = json!(5);
    record_update(
        Some(&first),
        &mut edited,
        deployment_schema(),
        &writer("kubectl-edit"),
    );
    let list = managers(&edited);
    let edit = list.iter().find(|m| m.manager == "kubectl-edit").unwrap();
    assert_eq!(edit.operation, "Update");
    assert_eq!(
        edit.fields,
        FieldSet::from([to_path(&["f:spec", "f:replicas"])])
    );
    let m1 = list.iter().find(|m| m.manager == "m1").unwrap();
    assert!(!m1.fields.contains(&to_path(&["f:spec", "f:replicas"])));
    // m1 applying its old value again now conflicts with the editor.
    let err = apply(
        Some(&edited),
        &config(2, "nginx:1", json!({})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap_err();
    assert!(
        err.message
            .contains("conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"),
        "{}",
        err.message
    );
    // An update that changes nothing leaves managedFields alone.
    let mut same = edited.clone();
    record_update(
        Some(&edited),
        &mut same,
        deployment_schema(),
        &writer("other"),
    );
    assert_eq!(same, edited);
}

#[test]
fn status_applies_own_only_status() {
    let first = apply(
        None,
        &config(2, "nginx:1", json!({})),
        deployment_schema(),
        &writer("m1"),
        false,
    )
    .unwrap();
    let mut status_config = config(9, "ignored", json!({}));
    status_config["status"] =
        json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
    let status_writer = Writer {
        manager: "ctrl",
        api_version: "apps/v1",
        scope: Scope::Status,
    };
    let out = apply(
        Some(&first),
        &status_config,
        deployment_schema(),
        &status_writer,
        false,
    )
    .unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(out["status"]["replicas"], 2);
    let e = entry(&out, "ctrl");
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:conditions": {"k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
    );
}

#[test]
fn sets_are_owned_per_value() {
    let pod = openapi::spec().kind("v1", "Pod");
    let object = json!({"metadata": {"finalizers": ["a", "b"]}});
    let flat = flatten(&object, pod);
    assert!(flat.contains_key(&to_path(&["f:metadata", "f:finalizers", "v:\"a\""])));
    assert_eq!(
        display_path(&to_path(&["f:metadata", "f:finalizers", "v:\"a\""])),
        ".metadata.finalizers[=\"a\"]"
    );
}
