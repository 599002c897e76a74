//! CustomResourceDefinitions through kubectl: established, served with defaults, printer
//! columns, patches, status and scale subresources, watches, schema violations and pruning,
//! several versions, and deletion of the CRD taking its objects and discovery entry along.

use std::time::Duration;

use hakube_e2e::{eventually, ControlPlane};
use serde_json::json;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              color: {type: string, enum: [red, blue], default: red}
              replicas: {type: integer, default: 1}
              tags:
                type: array
                items: {type: string}
                x-kubernetes-list-type: set
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
              ready: {type: boolean}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

fn widget(name: &str, spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec: {spec}\n")
}

fn established(cp: &ControlPlane) {
    cp.ok_stdin(&["apply", "-f", "-"], CRD);
    cp.ok(&[
        "wait",
        "--for",
        "condition=established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
}

#[test]
fn crd_status_and_objects_with_defaults_and_columns() {
    let cp = ControlPlane::start();
    established(&cp);
    let crd = cp.get_json(&["crd", "widgets.example.com"]);
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    assert_eq!(
        crd["metadata"]["finalizers"],
        json!(["customresourcecleanup.apiextensions.k8s.io"])
    );

    let out = cp.ok_stdin(&["apply", "-f", "-"], &widget("w1", "{size: 3}"));
    assert_eq!(out.trim(), "widget.example.com/w1 created");
    let object = cp.get_json(&["widget", "w1"]);
    assert_eq!(
        object["spec"],
        json!({"color": "red", "replicas": 1, "size": 3})
    );
    let header = cp.ok(&["get", "wd"]);
    let lines: Vec<Vec<&str>> = header
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], vec!["NAME", "SIZE", "COLOR", "AGE"]);
    assert_eq!(&lines[1][..3], &["w1", "3", "red"]);
    let wide = cp.ok(&["get", "wd", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("REPLICAS"), "{wide}");
    let all = cp.ok(&["get", "all"]);
    assert!(all.contains("widget.example.com/w1"), "{all}");
    // The same object through the other served version.
    let beta = cp.get_json(&["widgets.v1beta1.example.com", "w1"]);
    assert_eq!(beta["apiVersion"], "example.com/v1beta1");
    assert_eq!(beta["spec"]["size"], 3);
    // Discovery and OpenAPI list the resource.
    let resources = cp.ok(&["api-resources", "--api-group=example.com", "--no-headers"]);
    assert!(
        resources.contains("widgets") && resources.contains("wd"),
        "{resources}"
    );
    let explain = cp.ok(&["explain", "widget.spec"]);
    assert!(explain.contains("size"), "{explain}");
}

#[test]
fn patches_status_scale_and_watch() {
    let cp = ControlPlane::start();
    established(&cp);
    cp.ok_stdin(&["apply", "-f", "-"], &widget("w1", "{size: 3, tags: [a]}"));
    cp.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    cp.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/tags/-","value":"b"}]"#,
    ]);
    let err = cp.fails(&["patch", "wd", "w1", "-p", r#"{"spec":{"size":6}}"#], None);
    assert!(
        err.contains("application/strategic-merge-patch+json is not supported"),
        "{err}"
    );
    let object = cp.get_json(&["wd", "w1"]);
    assert_eq!(object["spec"]["size"], 5);
    assert_eq!(object["spec"]["tags"], json!(["a", "b"]));
    let generation = object["metadata"]["generation"].as_i64().unwrap();

    // The status subresource: status changes only there, and don't bump the generation.
    cp.ok(&[
        "patch",
        "wd",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2,"selector":"app=w1","ready":true}}"#,
    ]);
    cp.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":false}}"#,
    ]);
    let object = cp.get_json(&["wd", "w1"]);
    assert_eq!(
        object["status"],
        json!({"replicas": 2, "selector": "app=w1", "ready": true})
    );
    assert_eq!(
        object["metadata"]["generation"].as_i64().unwrap(),
        generation
    );

    // The scale subresource.
    cp.ok(&["scale", "wd", "w1", "--replicas=4"]);
    assert_eq!(cp.get_json(&["wd", "w1"])["spec"]["replicas"], 4);
    let (code, scale) = cp.curl(
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets/w1/scale",
        "application/json",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(
        scale["status"],
        json!({"replicas": 2, "selector": "app=w1"})
    );

    // Server-side apply on a custom resource.
    let out = cp.ok_stdin(
        &["apply", "--server-side", "--field-manager=ssa", "-f", "-"],
        &widget("w2", "{size: 2}"),
    );
    assert!(out.contains("serverside-applied"), "{out}");

    // kubectl get -w prints a row per change.
    let text = cp.watch_output(&["wd"], || {
        cp.ok(&[
            "patch",
            "wd",
            "w1",
            "--type=merge",
            "-p",
            r#"{"spec":{"size":9}}"#,
        ]);
    });
    assert!(
        text.lines()
            .any(|l| l.starts_with("w1 ") && l.split_whitespace().nth(1) == Some("9")),
        "{text}"
    );
}

#[test]
fn schema_violations_pruning_and_bad_crds() {
    let cp = ControlPlane::start();
    established(&cp);
    let err = cp.fails(
        &["apply", "-f", "-"],
        Some(&widget("bad", "{size: 30, color: green, tags: [x, x]}")),
    );
    assert!(
        err.contains(r#"spec.color: Unsupported value: "green": supported values: "red", "blue""#),
        "{err}"
    );
    assert!(
        err.contains(
            "spec.size: Invalid value: 30: spec.size in body should be less than or equal to 10"
        ),
        "{err}"
    );
    assert!(
        err.contains(r#"spec.tags[1]: Duplicate value: "x""#),
        "{err}"
    );
    let err = cp.fails(
        &["apply", "-f", "-"],
        Some(&widget("missing", "{color: red}")),
    );
    assert!(err.contains("spec.size: Required value"), "{err}");
    let err = cp.fails(&["apply", "-f", "-"], Some(&widget("typed", "{size: big}")));
    assert!(
        err.contains("spec.size in body must be of type integer"),
        "{err}"
    );
    // Unknown fields: Strict (kubectl's default) refuses them, otherwise they are pruned.
    let unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: pruned\nspec: {size: 2, unknown: x}\nextra: 1\n";
    let err = cp.fails(&["create", "-f", "-"], Some(unknown));
    assert!(err.contains(r#"unknown field "spec.unknown""#), "{err}");
    cp.ok_stdin(&["create", "--validate=false", "-f", "-"], unknown);
    let object = cp.get_json(&["wd", "pruned"]);
    assert_eq!(
        object["spec"],
        json!({"color": "red", "replicas": 1, "size": 2})
    );
    assert!(object.get("extra").is_none());

    // Invalid CRDs are refused with a cause per field.
    let bad_crd = CRD
        .replace("name: widgets.example.com", "name: gadgets.example.com")
        .replace("storage: false", "storage: true");
    let err = cp.fails(&["apply", "-f", "-"], Some(&bad_crd));
    assert!(err.contains("metadata.name: Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"), "{err}");
    assert!(
        err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
    let unstructured = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"things.example.com"},"spec":{"group":"example.com","scope":"Cluster","names":{"plural":"things","kind":"Thing"},"versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object","properties":{"spec":{"properties":{"a":{"type":"string"}}}}}}}]}}"#;
    let err = cp.fails(&["apply", "-f", "-"], Some(unstructured));
    assert!(
        err.contains(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value"
        ),
        "{err}"
    );
    // A second CRD may not take a plural another CRD serves in the same group.
    let clash = CRD
        .replace("name: widgets.example.com", "name: widgets2.example.com")
        .replace("plural: widgets", "plural: widgets2")
        .replace("shortNames: [wd], ", "");
    cp.ok_stdin(&["apply", "-f", "-"], &clash);
    let status = cp.get_json(&["crd", "widgets2.example.com"])["status"].clone();
    let accepted = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NamesAccepted")
        .cloned()
        .unwrap();
    assert_eq!(accepted["status"], "False", "{status}");
    assert!(accepted["message"]
        .as_str()
        .unwrap()
        .contains("\"Widget\" is already in use"));
}

#[test]
fn deleting_the_crd_deletes_its_objects_and_stops_serving() {
    let cp = ControlPlane::start();
    established(&cp);
    cp.ok_stdin(&["apply", "-f", "-"], &widget("w1", "{size: 1}"));
    cp.ok(&["create", "namespace", "other"]);
    cp.ok_stdin(
        &["apply", "-n", "other", "-f", "-"],
        &widget("w2", "{size: 2}"),
    );
    // An object with a finalizer holds the CRD until the finalizer is removed.
    cp.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    cp.ok(&["delete", "crd", "widgets.example.com", "--wait=false"]);
    eventually("the CRD is terminating", Duration::from_secs(10), || {
        let crd = cp.get_json(&["crd", "widgets.example.com"]);
        crd["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Terminating" && c["status"] == "True")
        })
    });
    eventually("w2 is deleted", Duration::from_secs(10), || {
        cp.kubectl(&["get", "wd", "w2", "-n", "other"])
            .status
            .code()
            == Some(1)
    });
    assert!(cp.get_json(&["wd", "w1"])["metadata"]["deletionTimestamp"].is_string());
    cp.ok(&[
        "patch",
        "wd",
        "w1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the CRD is gone", Duration::from_secs(15), || {
        cp.kubectl(&["get", "crd", "widgets.example.com"])
            .status
            .code()
            == Some(1)
    });
    let (code, _) = cp.curl("GET", "/apis/example.com/v1", "application/json", None);
    assert_eq!(code, 404);
    let (_, groups) = cp.curl("GET", "/apis", "application/json", None);
    assert!(!groups.to_string().contains("example.com"));
    let (_, index) = cp.curl("GET", "/openapi/v3", "application/json", None);
    assert!(index["paths"].get("apis/example.com/v1").is_none());
    let keys = cp
        .etcd
        .run_ctl(&["get", "--prefix", "--keys-only", "/registry/example.com/"]);
    assert!(
        keys.iter().all(u8::is_ascii_whitespace),
        "{}",
        String::from_utf8_lossy(&keys)
    );
}
