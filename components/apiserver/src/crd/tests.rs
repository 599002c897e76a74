use serde_json::json;

use super::*;

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}},
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                 "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1alpha1", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}
            ]
        }
    })
}

#[test]
fn a_valid_crd_has_no_causes() {
    assert!(validate(&crd()).is_empty(), "{:?}", validate(&crd()));
}

#[test]
fn invalid_crds_name_their_fields() {
    let mut bad = crd();
    bad["metadata"]["name"] = json!("wrong.example.com");
    bad["spec"]["versions"][1]["storage"] = json!(true);
    bad["spec"]["scope"] = json!("Galaxy");
    let fields: Vec<String> = validate(&bad).into_iter().map(|c| c.field).collect();
    assert_eq!(fields, vec!["metadata.name", "spec.scope", "spec.versions"]);
}

#[test]
fn served_versions_become_resource_definitions() {
    let defs = resource_defs(&crd());
    let versions: Vec<&str> = defs.iter().map(|d| d.version).collect();
    assert_eq!(versions, vec!["v1", "v1beta1"]);
    let v1 = defs[0];
    assert_eq!(
        (v1.group, v1.plural, v1.kind, v1.singular),
        ("example.com", "widgets", "Widget", "widget")
    );
    assert!(v1.namespaced);
    assert_eq!(v1.short_names, &["wd"]);
    assert!(v1.has(Subresource::Status) && v1.has(Subresource::Scale));
    assert_eq!(v1.storage, Storage::Etcd("example.com/widgets"));
    let custom = v1.custom.unwrap();
    assert_eq!(custom.storage_api_version, "example.com/v1");
    assert_eq!(custom.definition, "com.example.v1.Widget");
    assert_eq!(custom.columns[0].json_path, ".spec.size");
    assert!(!defs[1].has(Subresource::Status));
}

#[test]
fn prepare_sets_finalizer_names_conditions_and_stored_versions() {
    let mut object = crd();
    prepare(&mut object);
    assert_eq!(object["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
    let status = &object["status"];
    assert_eq!(status["acceptedNames"]["singular"], "widget");
    assert_eq!(status["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(status["storedVersions"], json!(["v1"]));
    let conditions: Vec<(&str, &str)> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        vec![("NamesAccepted", "True"), ("Established", "True")]
    );
    let before = object.clone();
    prepare(&mut object);
    assert_eq!(object, before, "a second pass changes nothing");
}
