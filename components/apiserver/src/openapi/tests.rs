use serde_json::{json, Value};

use super::*;

fn document(key: &str) -> Value {
    let doc = spec().v3(key).map(|d| d.body.clone()).unwrap_or_default();
    serde_json::from_slice(&doc).unwrap_or(Value::Null)
}

#[test]
fn index_points_at_every_group_version_with_its_hash() {
    let index: Value = serde_json::from_slice(&spec().v3_index().body).unwrap();
    let core = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap();
    let hash = &spec().v3("api/v1").unwrap().hash;
    assert_eq!(core, format!("/openapi/v3/api/v1?hash={hash}"));
    for key in [
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/coordination.k8s.io/v1",
    ] {
        assert!(
            index["paths"][key]["serverRelativeURL"].is_string(),
            "{key}"
        );
    }
}

#[test]
fn hashes_are_stable_for_the_same_content() {
    let again = OpenApi::build();
    for (key, doc) in &spec().v3 {
        assert_eq!(again.v3(key).map(|d| &d.hash), Some(&doc.hash), "{key}");
    }
    assert_eq!(again.v2().hash, spec().v2().hash);
}

#[test]
fn kinds_carry_their_group_version_kind_and_patch_metadata() {
    let apps = document("apis/apps/v1");
    let schemas = &apps["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    assert_eq!(
        strategy["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
    );
    assert!(schemas["io.k8s.api.apps.v1.DeploymentStrategy"]["description"].is_string());
}

#[test]
fn patch_operations_advertise_field_validation() {
    let core = document("api/v1");
    let patch = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(names.contains(&"fieldValidation"), "{names:?}");
    assert!(names.contains(&"force"));
    let scale = &document("apis/apps/v1")["paths"]
        ["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    let nodes = &core["paths"]["/api/v1/nodes/{name}"]["get"];
    assert_eq!(nodes["operationId"], "readCoreV1Node");
}

#[test]
fn documents_are_self_contained() {
    for (key, doc) in &spec().v3 {
        let doc: Value = serde_json::from_slice(&doc.body).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in paths::referenced(&doc) {
            assert!(
                schemas.contains_key(&name),
                "{key} references missing {name}"
            );
        }
    }
}

#[test]
fn v2_uses_definitions_and_body_parameters() {
    let v2: Value = serde_json::from_slice(&spec().v2().body).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    let text = v2.to_string();
    assert!(!text.contains("#/components/schemas/"));
    let create = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
    let body = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["in"] == "body")
        .unwrap();
    assert_eq!(
        body["schema"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    assert!(
        v2["definitions"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"].is_array()
    );
}

#[test]
fn unknown_fields_are_named_by_path() {
    let deployment = spec().kind("apps/v1", "Deployment").unwrap();
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "labels": {"any": "thing"}, "bogus": 1},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                {"name": "c", "image": "i", "imagePullPolicyy": "Always",
                 "ports": [{"containerPort": 80, "extra": true}],
                 "resources": {"limits": {"cpu": "1"}}}
            ]}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}
        },
        "status": {"unknownStatus": 1}
    });
    assert_eq!(
        deployment.unknown_fields(&object),
        vec![
            "metadata.bogus",
            "spec.template.spec.containers[0].imagePullPolicyy",
            "spec.template.spec.containers[0].ports[0].extra",
            "status.unknownStatus",
        ]
    );
}

#[test]
fn schema_nodes_expose_patch_strategies() {
    let pod = spec().kind("v1", "Pod").unwrap();
    let spec_node = pod.property("spec").unwrap();
    let volumes = spec_node.property("volumes").unwrap();
    let s = PatchSchema::strategy(&volumes);
    assert!(s.merge && s.retain_keys);
    assert_eq!(s.merge_key.as_deref(), Some("name"));
    let tolerations = spec_node.property("tolerations").unwrap();
    assert_eq!(
        PatchSchema::strategy(&tolerations),
        FieldStrategy::default()
    );
    let labels = pod
        .property("metadata")
        .unwrap()
        .property("labels")
        .unwrap();
    assert!(labels.property("anything").is_some());
    let finalizers = pod
        .property("metadata")
        .unwrap()
        .property("finalizers")
        .unwrap();
    assert!(PatchSchema::strategy(&finalizers).merge);
    assert_eq!(
        finalizers.field_meta().and_then(|m| m.list_type.as_deref()),
        Some("set")
    );
}

#[test]
fn a_property_named_ref_is_not_a_reference() {
    let ext = document("apis/apiextensions.k8s.io/v1");
    let props = &ext["components"]["schemas"]
        ["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"]["properties"];
    assert_eq!(props["$ref"], json!({"type": "string"}));
    assert!(props.get("allOf").is_some_and(|a| a.is_object()));
}
