//! kubectl apply (client- and server-side), strategic merge patch, explain, dry run, field
//! validation and table output against etcd + hakube-apiserver.

use std::time::Duration;

use hakube_e2e::{eventually, ControlPlane};
use serde_json::{json, Value};

fn deployment(replicas: u32, labels: &str, containers: &[(&str, &str)]) -> String {
    let containers: Vec<String> = containers
        .iter()
        .map(|(n, i)| format!("      - name: {n}\n        image: {i}\n"))
        .collect();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {{{labels}}}\n\
         spec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    \
         metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n{}",
        containers.concat()
    )
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn client_side_apply_round_trip() {
    let cp = ControlPlane::start();
    let apply = ["apply", "-f", "-"];
    let v1 = deployment(
        2,
        "app: web, tier: front",
        &[("nginx", "nginx:1.25"), ("side", "busybox")],
    );
    assert_eq!(
        cp.ok_stdin(&apply, &v1).trim(),
        "deployment.apps/web created"
    );
    let created = cp.get_json(&["deploy", "web"]);
    let last: Value = serde_json::from_str(
        created["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("last-applied annotation"),
    )
    .unwrap();
    assert_eq!(last["spec"]["replicas"], 2);
    assert_eq!(
        cp.ok_stdin(&apply, &v1).trim(),
        "deployment.apps/web unchanged"
    );
    let rv = created["metadata"]["resourceVersion"].clone();
    assert_eq!(
        cp.get_json(&["deploy", "web"])["metadata"]["resourceVersion"],
        rv
    );

    let v2 = deployment(
        3,
        "app: web, tier: front",
        &[("nginx", "nginx:1.25"), ("side", "busybox")],
    );
    assert_eq!(
        cp.ok_stdin(&apply, &v2).trim(),
        "deployment.apps/web configured"
    );
    assert_eq!(cp.get_json(&["deploy", "web"])["spec"]["replicas"], 3);

    // Fields and list members dropped from the manifest go; fields set by others stay.
    cp.ok(&["label", "deploy", "web", "owner=ops"]);
    let v3 = deployment(3, "app: web", &[("nginx", "nginx:1.26")]);
    assert_eq!(
        cp.ok_stdin(&apply, &v3).trim(),
        "deployment.apps/web configured"
    );
    let after = cp.get_json(&["deploy", "web"]);
    assert_eq!(
        after["metadata"]["labels"],
        json!({"app": "web", "owner": "ops"})
    );
    let containers = &after["spec"]["template"]["spec"]["containers"];
    assert_eq!(names(containers), vec!["nginx"]);
    assert_eq!(containers[0]["image"], "nginx:1.26");
    // Server defaults survive the three-way merge.
    assert_eq!(containers[0]["imagePullPolicy"], "IfNotPresent");
}

#[test]
fn server_side_apply_ownership_conflicts_and_force() {
    let cp = ControlPlane::start();
    let cm = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\ndata: {{{data}}}\n")
    };
    let out = cp.ok_stdin(
        &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
        &cm("a: '1', b: '2'"),
    );
    assert_eq!(out.trim(), "configmap/owned serverside-applied");
    // bob sets a field alice owns to another value: a conflict naming the field and manager.
    let err = cp.fails(
        &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
        Some(&cm("a: 'bob'")),
    );
    assert!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "alice" using v1: .data.a"#),
        "{err}"
    );
    assert_eq!(cp.get_json(&["cm", "owned"])["data"]["a"], "1");
    cp.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=bob",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &cm("a: 'bob'"),
    );
    let object = cp.get_json(&["cm", "owned", "--show-managed-fields"]);
    assert_eq!(object["data"], json!({"a": "bob", "b": "2"}));
    let managed = object["metadata"]["managedFields"].as_array().unwrap();
    let fields_of = |manager: &str| {
        managed
            .iter()
            .find(|m| m["manager"] == manager)
            .map(|m| (m["operation"].clone(), m["fieldsV1"].clone()))
    };
    assert_eq!(
        fields_of("alice"),
        Some((json!("Apply"), json!({"f:data": {"f:b": {}}})))
    );
    assert_eq!(
        fields_of("bob"),
        Some((json!("Apply"), json!({"f:data": {"f:a": {}}})))
    );
    // alice stops applying b: nobody else owns it, so it is removed.
    cp.ok_stdin(
        &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
        &cm("c: '3'"),
    );
    assert_eq!(
        cp.get_json(&["cm", "owned"])["data"],
        json!({"a": "bob", "c": "3"})
    );
    // A non-apply write takes ownership of what it changes.
    cp.ok(&[
        "patch",
        "cm",
        "owned",
        "--type=merge",
        "-p",
        r#"{"data":{"c":"edited"}}"#,
    ]);
    let err = cp.fails(
        &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
        Some(&cm("c: '3'")),
    );
    assert!(err.contains(r#"conflict with "kubectl-patch""#), "{err}");
    // Apply without a field manager name is refused.
    let (code, body) = cp.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/owned",
        "application/apply-patch+yaml",
        Some(cm("c: '4'").as_bytes()),
    );
    assert_eq!(code, 400, "{body}");
    // Apply creates, from a JSON body too, and a repeat does not write.
    let (code, created) = cp.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/fresh?fieldManager=tool",
        "application/apply-patch+yaml",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fresh"},"data":{"x":"1"}}"#),
    );
    assert_eq!(code, 201, "{created}");
    let (code, again) = cp.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/fresh?fieldManager=tool",
        "application/apply-patch+yaml",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fresh"},"data":{"x":"1"}}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
}

#[test]
fn strategic_merge_patch_directives() {
    let cp = ControlPlane::start();
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &deployment(
            1,
            "app: web",
            &[("a", "img-a"), ("b", "img-b"), ("c", "img-c")],
        ),
    );
    let containers =
        || cp.get_json(&["deploy", "web"])["spec"]["template"]["spec"]["containers"].clone();
    let patch = |p: Value| {
        cp.ok(&[
            "patch",
            "deploy",
            "web",
            "--type=strategic",
            "-p",
            &p.to_string(),
        ]);
    };
    // Merge by name: b changes, d is added, the rest stay.
    patch(
        json!({"spec":{"template":{"spec":{"containers":[{"name":"b","image":"img-b2"},{"name":"d","image":"img-d"}]}}}}),
    );
    let now = containers();
    assert_eq!(names(&now), vec!["a", "b", "c", "d"]);
    assert_eq!(now[1]["image"], "img-b2");
    // $patch: delete removes one element.
    patch(json!({"spec":{"template":{"spec":{"containers":[{"name":"c","$patch":"delete"}]}}}}));
    assert_eq!(names(&containers()), vec!["a", "b", "d"]);
    // $setElementOrder reorders.
    patch(
        json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"d"},{"name":"b"},{"name":"a"}]}}}}),
    );
    assert_eq!(names(&containers()), vec!["d", "b", "a"]);
    // $patch: replace on the list replaces it whole.
    patch(
        json!({"spec":{"template":{"spec":{"containers":[{"name":"only","image":"img-o"},{"$patch":"replace"}]}}}}),
    );
    assert_eq!(names(&containers()), vec!["only"]);
    // $retainKeys switches the strategy type and drops rollingUpdate.
    patch(json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}}));
    assert_eq!(
        cp.get_json(&["deploy", "web"])["spec"]["strategy"],
        json!({"type": "Recreate"})
    );
    // $patch: replace on an object replaces the whole map.
    patch(json!({"metadata":{"labels":{"$patch":"replace","fresh":"yes"}}}));
    assert_eq!(
        cp.get_json(&["deploy", "web"])["metadata"]["labels"],
        json!({"fresh": "yes"})
    );
    // Primitive lists with a merge strategy: union, then $deleteFromPrimitiveList.
    patch(json!({"metadata":{"finalizers":["x.io/a","x.io/b"]}}));
    patch(json!({"metadata":{"finalizers":["x.io/c"]}}));
    assert_eq!(
        cp.get_json(&["deploy", "web"])["metadata"]["finalizers"],
        json!(["x.io/a", "x.io/b", "x.io/c"])
    );
    patch(json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["x.io/a","x.io/b","x.io/c"]}}));
    let finalizers = &cp.get_json(&["deploy", "web"])["metadata"]["finalizers"];
    assert!(
        finalizers.is_null() || *finalizers == json!([]),
        "{finalizers}"
    );
    // A malformed directive is a 400 naming the problem; nothing changes.
    let err = cp.fails(
        &[
            "patch",
            "deploy",
            "web",
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"image":"no-name"}]}}}}"#,
        ],
        None,
    );
    assert!(err.contains("merge key") && err.contains("name"), "{err}");
    assert_eq!(names(&containers()), vec!["only"]);
}

#[test]
fn explain_and_openapi_documents() {
    let cp = ControlPlane::start();
    let out = cp.ok(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(
        out.contains("FIELD: strategy <DeploymentStrategy>"),
        "{out}"
    );
    assert!(
        out.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{out}"
    );
    let out = cp.ok(&["explain", "pods.spec.containers.ports"]);
    assert!(
        out.contains("containerPort\t<integer> -required-")
            || out.contains("containerPort\t<integer>"),
        "{out}"
    );
    let out = cp.ok(&["explain", "leases"]);
    assert!(out.contains("GROUP:      coordination.k8s.io"), "{out}");

    let (code, index) = cp.curl("GET", "/openapi/v3", "application/json", None);
    assert_eq!(code, 200);
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, doc) = cp.curl("GET", &url, "application/json", None);
    assert_eq!(code, 200);
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    // The same content keeps its hash across restarts of the server.
    let (_, again) = cp.curl("GET", "/openapi/v3", "application/json", None);
    assert_eq!(
        again["paths"]["apis/apps/v1"]["serverRelativeURL"],
        url.as_str()
    );
    let (code, v2) = cp.curl("GET", "/openapi/v2", "application/json", None);
    assert_eq!(code, 200);
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
}

#[test]
fn dry_run_and_field_validation() {
    let cp = ControlPlane::start();
    let out = cp.ok(&[
        "create",
        "deployment",
        "dry",
        "--image=nginx",
        "--dry-run=server",
        "-o",
        "json",
    ]);
    let object: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    cp.fails(&["get", "deploy", "dry"], None);
    cp.ok(&["create", "cm", "keep", "--from-literal=a=b"]);
    cp.ok(&["delete", "cm", "keep", "--dry-run=server"]);
    cp.ok(&["label", "cm", "keep", "x=y", "--dry-run=server"]);
    let kept = cp.get_json(&["cm", "keep"]);
    assert!(kept["metadata"]["labels"].is_null());

    let bad =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n  bogus: 1\ndataa:\n  a: b\n";
    let err = cp.fails(&["create", "-f", "-"], Some(bad));
    assert!(
        err.contains(r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "dataa", unknown field "metadata.bogus""#),
        "{err}"
    );
    cp.fails(&["get", "cm", "typo"], None);
    let out = cp.kubectl_as(
        &cp.admin_kubeconfig(),
        &["create", "--validate=warn", "-f", "-"],
        Some(bad),
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"Warning: unknown field "dataa""#),
        "{stderr}"
    );
    cp.ok(&["delete", "cm", "typo"]);
    let out = cp.kubectl_as(
        &cp.admin_kubeconfig(),
        &["create", "--validate=false", "-f", "-"],
        Some(bad),
    );
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Warning"));

    // Duplicate fields in a JSON body.
    let (code, body) = cp.curl(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        "application/json",
        Some(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}"#),
    );
    assert_eq!(code, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(r#"duplicate field "data.a""#),
        "{body}"
    );
    // Strict on a patch: the unknown field comes from the patch.
    let (code, body) = cp.curl(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/keep?fieldValidation=Strict",
        "application/strategic-merge-patch+json",
        Some(br#"{"spec":{"x":1}}"#),
    );
    assert_eq!(code, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(r#"unknown field "spec""#),
        "{body}"
    );
}

#[test]
fn table_output_matches_upstream_columns() {
    let cp = ControlPlane::start();
    cp.ok(&["run", "p1", "--image=nginx", "--labels=app=p"]);
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &deployment(2, "app: web", &[("nginx", "nginx")]),
    );
    cp.ok(&["create", "service", "clusterip", "svc", "--tcp=80:8080"]);
    let header = |args: &[&str]| {
        let out = cp.ok(args);
        let first = out.lines().next().unwrap_or("").to_string();
        first.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert_eq!(header(&["get", "pods"]), "NAME READY STATUS RESTARTS AGE");
    assert_eq!(
        header(&["get", "pods", "-o", "wide"]),
        "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES"
    );
    assert_eq!(
        header(&["get", "deploy"]),
        "NAME READY UP-TO-DATE AVAILABLE AGE"
    );
    assert_eq!(
        header(&["get", "svc"]),
        "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE"
    );
    assert_eq!(header(&["get", "ns"]), "NAME STATUS AGE");
    let pods = cp.ok(&["get", "pods"]);
    let row: Vec<&str> = pods.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], &["p1", "0/1", "Pending", "0"]);
    let svc = cp.ok(&["get", "svc", "svc", "--no-headers"]);
    assert!(svc.contains("ClusterIP") && svc.contains("80/TCP"), "{svc}");
    // Every page is followed: 3 config maps listed two at a time.
    for i in 0..3 {
        cp.ok(&["create", "cm", &format!("page{i}")]);
    }
    let out = cp.ok(&["get", "cm", "--chunk-size=2", "--no-headers"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("page")).count(),
        3,
        "{out}"
    );

    // get -w prints a row per change.
    let text = cp.watch_output(&["pods"], || {
        cp.ok(&["run", "p2", "--image=busybox"]);
        eventually("p2 is listed", Duration::from_secs(10), || {
            cp.get_json(&["pod", "p2"])["metadata"]["name"] == "p2"
        });
    });
    assert!(
        text.lines()
            .any(|l| l.starts_with("p2 ") && l.contains("Pending")),
        "{text}"
    );
}
