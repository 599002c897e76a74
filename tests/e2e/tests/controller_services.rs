//! hakube-controller-manager's service-facing controllers against the real API server and
//! etcd, with simulated nodes standing in for kubelets: Endpoints and EndpointSlices following
//! pods, PodDisruptionBudgets guarding evictions, ResourceQuota usage, and PersistentVolume
//! binding and reclaiming.

use std::time::Duration;

use hakube_e2e::components::Component;
use hakube_e2e::simulated::SimulatedNodes;
use hakube_e2e::{eventually, ControlPlane};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

fn controller_manager(cp: &ControlPlane, controllers: &str, extra: &[&str]) -> Component {
    let mut args = vec!["--controllers", controllers, "--leader-elect=false"];
    args.extend_from_slice(extra);
    Component::start(cp, "hakube-controller-manager", &args)
}

/// A pod bound to `node` labelled app=web, serving container port `http` on `port`.
fn web_pod(name: &str, node: &str, port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  nodeName: {node}
  containers:
  - name: app
    image: nginx
    ports:
    - name: http
      containerPort: {port}
"#
    )
}

fn get_opt(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get", "-o", "json"];
    all.extend_from_slice(args);
    let out = cp.kubectl(&all);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn pod_ip(cp: &ControlPlane, name: &str) -> String {
    let mut ip = String::new();
    eventually(&format!("pod {name} has an IP"), WAIT, || {
        ip = cp
            .get_json(&["pod", name])
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        !ip.is_empty()
    });
    ip
}

/// (ready, not ready) addresses of the Endpoints `name`, each as "ip:port".
fn endpoint_addresses(cp: &ControlPlane, name: &str) -> Option<(Vec<String>, Vec<String>)> {
    let endpoints = get_opt(cp, &["endpoints", name])?;
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        for port in subset["ports"].as_array().into_iter().flatten() {
            for (field, out) in [
                ("addresses", &mut ready),
                ("notReadyAddresses", &mut not_ready),
            ] {
                for address in subset[field].as_array().into_iter().flatten() {
                    out.push(format!("{}:{}", address["ip"].as_str()?, port["port"]));
                }
            }
        }
    }
    ready.sort();
    not_ready.sort();
    Some((ready, not_ready))
}

/// The endpoints of the Service's EndpointSlices as "ip:port ready/serving/terminating zone".
fn slice_endpoints(cp: &ControlPlane, service: &str) -> Vec<String> {
    let slices = cp.get_json(&[
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={service}"),
    ]);
    let mut out = Vec::new();
    for slice in slices["items"].as_array().into_iter().flatten() {
        for port in slice["ports"].as_array().into_iter().flatten() {
            for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
                let c = &endpoint["conditions"];
                out.push(format!(
                    "{}:{} {}/{}/{} {}",
                    endpoint["addresses"][0].as_str().unwrap_or(""),
                    port["port"],
                    c["ready"],
                    c["serving"],
                    c["terminating"],
                    endpoint["zone"].as_str().unwrap_or("")
                ));
            }
        }
    }
    out.sort();
    out
}

fn set_ready(cp: &ControlPlane, pod: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = format!(
        r#"{{"status":{{"conditions":[{{"type":"Ready","status":"{status}"}},{{"type":"ContainersReady","status":"{status}"}}]}}}}"#
    );
    let (code, body) = cp.merge_patch(
        &format!("/api/v1/namespaces/default/pods/{pod}/status"),
        &patch,
    );
    assert_eq!(code, 200, "{body}");
}

const WEB_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {tier: front}
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
"#;

#[test]
fn endpoints_and_slices_follow_pod_readiness_with_named_ports_resolved_per_pod() {
    let cp = ControlPlane::start();
    let _nodes = SimulatedNodes::start(&cp, &["node-1"]);
    let kcm = controller_manager(&cp, "endpoint,endpointslice", &[]);
    cp.ok_stdin(&["apply", "-f", "-"], WEB_SERVICE);
    cp.ok_stdin(&["apply", "-f", "-"], &web_pod("web-a", "node-1", 8080));
    cp.ok_stdin(&["apply", "-f", "-"], &web_pod("web-b", "node-1", 9090));
    let a = pod_ip(&cp, "web-a");
    let b = pod_ip(&cp, "web-b");
    let mut both = vec![format!("{a}:8080"), format!("{b}:9090")];
    both.sort();
    eventually("both pods ready in the Endpoints", WAIT, || {
        endpoint_addresses(&cp, "web") == Some((both.clone(), vec![]))
    });
    let endpoints = cp.get_json(&["endpoints", "web"]);
    assert_eq!(
        endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    assert_eq!(endpoints["metadata"]["labels"]["tier"], "front");
    assert!(endpoints["metadata"]["annotations"]
        .get("endpoints.kubernetes.io/last-change-trigger-time")
        .is_some());
    // Different resolved ports: one subset each, each address pointing at its pod and node.
    let subsets = endpoints["subsets"].as_array().unwrap();
    assert_eq!(subsets.len(), 2, "{endpoints}");
    for subset in subsets {
        let address = &subset["addresses"][0];
        assert_eq!(address["nodeName"], "node-1");
        assert_eq!(address["targetRef"]["kind"], "Pod");
        assert_eq!(subset["ports"][0]["name"], "http");
        assert_eq!(subset["ports"][0]["protocol"], "TCP");
    }

    let mut slices_both = vec![
        format!("{a}:8080 true/true/false zone-a"),
        format!("{b}:9090 true/true/false zone-a"),
    ];
    slices_both.sort();
    eventually("both pods ready in the EndpointSlices", WAIT, || {
        slice_endpoints(&cp, "web") == slices_both
    });
    let slices = cp.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let slices = slices["items"].as_array().unwrap();
    // Pods with different resolved ports sit in different slices.
    assert_eq!(slices.len(), 2);
    let slice_names: Vec<String> = slices
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    for slice in slices {
        assert!(slice["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("web-"));
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        let owner = &slice["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["name"].as_str()),
            (Some("Service"), Some("web"))
        );
        assert_eq!(owner["controller"], true);
        assert_eq!(slice["endpoints"][0]["nodeName"], "node-1");
        assert_eq!(slice["endpoints"][0]["targetRef"]["kind"], "Pod");
    }

    set_ready(&cp, "web-a", false);
    eventually("web-a among the not-ready addresses", WAIT, || {
        endpoint_addresses(&cp, "web")
            == Some((vec![format!("{b}:9090")], vec![format!("{a}:8080")]))
    });
    eventually("web-a not ready in its slice", WAIT, || {
        slice_endpoints(&cp, "web").contains(&format!("{a}:8080 false/false/false zone-a"))
    });
    set_ready(&cp, "web-a", true);
    eventually("web-a ready again", WAIT, || {
        endpoint_addresses(&cp, "web") == Some((both.clone(), vec![]))
            && slice_endpoints(&cp, "web") == slices_both
    });
    // Readiness changes rewrote the slices in place.
    let mut now: Vec<String> =
        cp.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
    now.sort();
    let mut before = slice_names.clone();
    before.sort();
    assert_eq!(now, before);

    // A pod relabelled out of the selector leaves; a deleted one too.
    cp.ok(&["label", "pod", "web-b", "app=other", "--overwrite"]);
    eventually("web-b gone from the Endpoints", WAIT, || {
        endpoint_addresses(&cp, "web") == Some((vec![format!("{a}:8080")], vec![]))
    });
    cp.ok(&["delete", "pod", "web-a", "--wait=false"]);
    eventually("no addresses left", WAIT, || {
        endpoint_addresses(&cp, "web") == Some((vec![], vec![]))
            && slice_endpoints(&cp, "web").is_empty()
    });

    cp.ok(&["delete", "service", "web"]);
    eventually(
        "the Endpoints and slices deleted with the Service",
        WAIT,
        || {
            get_opt(&cp, &["endpoints", "web"]).is_none()
                && cp.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"])["items"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
        },
    );
    assert!(!kcm.log().contains("panicked"));
}

/// POST pods/{pod}/eviction: the HTTP status code.
fn evict(cp: &ControlPlane, pod: &str) -> u16 {
    let body = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
    );
    let (code, _) = cp.curl(
        "POST",
        &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
        "application/json",
        Some(body.as_bytes()),
    );
    code
}

fn pdb_status(cp: &ControlPlane) -> Value {
    cp.get_json(&["pdb", "web"])["status"].clone()
}

#[test]
fn disruption_budgets_count_pods_and_gate_evictions() {
    let cp = ControlPlane::start();
    let _nodes = SimulatedNodes::start(&cp, &["node-1"]);
    let kcm = controller_manager(&cp, "disruption", &[]);
    // A ReplicaSet wanting 3 replicas (no replicaset controller runs here), and its pods.
    cp.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: nginx}]}
"#,
    );
    let rs_uid = cp.get_json(&["replicaset", "web"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    for name in ["web-0", "web-1", "web-2"] {
        let pod = web_pod(name, "node-1", 80).replace(
            "  labels: {app: web}\n",
            &format!("  labels: {{app: web}}\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: {rs_uid}, controller: true}}\n"),
        );
        cp.ok_stdin(&["apply", "-f", "-"], &pod);
    }
    cp.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: web}}
"#,
    );
    eventually("the budget counts 3 healthy pods", WAIT, || {
        let s = pdb_status(&cp);
        s["currentHealthy"] == 3 && s["observedGeneration"] == 1
    });
    let status = pdb_status(&cp);
    assert_eq!(
        (
            &status["expectedPods"],
            &status["desiredHealthy"],
            &status["disruptionsAllowed"]
        ),
        (&Value::from(3), &Value::from(3), &Value::from(0))
    );
    let condition = &status["conditions"][0];
    assert_eq!(condition["type"], "DisruptionAllowed");
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "InsufficientPods");
    assert_eq!(evict(&cp, "web-0"), 429);

    // maxUnavailable 1 of the ReplicaSet's 3: one disruption allowed, then none.
    cp.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/minAvailable"},{"op":"add","path":"/spec/maxUnavailable","value":1}]"#,
    ]);
    eventually("one disruption allowed", WAIT, || {
        let s = pdb_status(&cp);
        s["disruptionsAllowed"] == 1 && s["observedGeneration"] == 2
    });
    let status = pdb_status(&cp);
    assert_eq!(status["expectedPods"], 3);
    assert_eq!(status["desiredHealthy"], 2);
    assert_eq!(status["conditions"][0]["reason"], "SufficientPods");
    assert_eq!(evict(&cp, "web-0"), 201);
    assert_eq!(evict(&cp, "web-1"), 429);
    eventually("web-0 gone and the budget recounted", WAIT, || {
        let s = pdb_status(&cp);
        get_opt(&cp, &["pod", "web-0"]).is_none()
            && s["currentHealthy"] == 2
            && s["disruptionsAllowed"] == 0
            && s.get("disruptedPods")
                .is_none_or(|d| d.get("web-0").is_none())
    });
    assert_eq!(evict(&cp, "web-1"), 429);

    // Percentages of the controller's scale: 50% of 3 rounds up to 2 required.
    cp.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/maxUnavailable"},{"op":"add","path":"/spec/minAvailable","value":"50%"}]"#,
    ]);
    eventually("50% of the scale required", WAIT, || {
        let s = pdb_status(&cp);
        s["observedGeneration"] == 3 && s["desiredHealthy"] == 2 && s["expectedPods"] == 3
    });
    // The ReplicaSet scaled down to 2: one of the two pods may go.
    cp.ok(&["scale", "replicaset", "web", "--replicas=2"]);
    eventually("the new scale counted", WAIT, || {
        let s = pdb_status(&cp);
        s["expectedPods"] == 2 && s["desiredHealthy"] == 1 && s["disruptionsAllowed"] == 1
    });
    assert_eq!(evict(&cp, "web-1"), 201);
    assert!(!kcm.log().contains("panicked"));
}

#[test]
fn quota_usage_counts_the_namespace() {
    let cp = ControlPlane::start();
    let _nodes = SimulatedNodes::start(&cp, &["node-1"]);
    let kcm = controller_manager(&cp, "resourcequota", &["--resource-quota-sync-period=2s"]);
    cp.ok(&["create", "namespace", "team"]);
    cp.ok_stdin(
        &["apply", "-n", "team", "-f", "-"],
        r#"
apiVersion: v1
kind: ResourceQuota
metadata: {name: compute}
spec:
  hard:
    pods: "10"
    requests.cpu: "2"
    requests.memory: 1Gi
    limits.cpu: "4"
    services: "5"
    services.nodeports: "5"
    configmaps: "10"
    count/deployments.apps: "3"
    persistentvolumeclaims: "5"
    requests.storage: 10Gi
"#,
    );
    let used = |key: &str| -> String {
        cp.get_json(&["-n", "team", "quota", "compute"])["status"]["used"][key]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    eventually("an empty namespace's usage", WAIT, || {
        used("pods") == "0" && used("requests.cpu") == "0" && used("configmaps") == "0"
    });
    let hard = cp.get_json(&["-n", "team", "quota", "compute"])["status"]["hard"].clone();
    assert_eq!(hard["requests.memory"], "1Gi");

    for (name, cpu, memory, exit) in [
        ("a", "500m", "256Mi", ""),
        ("b", "250m", "128Mi", ""),
        (
            "done",
            "1",
            "512Mi",
            "\n  annotations: {e2e.hakube.io/exit-code: \"0\"}",
        ),
    ] {
        cp.ok_stdin(
            &["apply", "-n", "team", "-f", "-"],
            &format!(
                r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}{exit}
spec:
  nodeName: node-1
  containers:
  - name: app
    image: nginx
    resources:
      requests: {{cpu: "{cpu}", memory: "{memory}"}}
      limits: {{cpu: "{cpu}", memory: "{memory}"}}
"#
            ),
        );
    }
    cp.ok_stdin(
        &["apply", "-n", "team", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: a, port: 80}, {name: b, port: 81}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: nginx}]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
"#,
    );
    // The finished pod no longer counts.
    eventually("the namespace's objects counted", WAIT, || {
        used("pods") == "2"
            && used("requests.cpu") == "750m"
            && used("limits.cpu") == "750m"
            && used("requests.memory") == "384Mi"
            && used("services") == "1"
            && used("services.nodeports") == "2"
            && used("configmaps") == "1"
            && used("count/deployments.apps") == "1"
            && used("persistentvolumeclaims") == "1"
            && used("requests.storage") == "2Gi"
    });
    let described = cp.ok(&["describe", "quota", "compute", "-n", "team"]);
    assert!(
        described.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words == ["requests.cpu", "750m", "2"]
        }),
        "{described}"
    );
    cp.ok(&["delete", "pod", "a", "-n", "team", "--wait=false"]);
    cp.ok(&["delete", "configmap", "settings", "-n", "team"]);
    eventually("deletions counted", WAIT, || {
        used("pods") == "1" && used("requests.cpu") == "250m" && used("configmaps") == "0"
    });
    assert!(!kcm.log().contains("panicked"));
}

fn volume(name: &str, size: &str, policy: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: {size}}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: {policy}
  hostPath: {{path: /tmp/{name}}}
"#
    )
}

fn claim(name: &str, size: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  resources: {{requests: {{storage: {size}}}}}
"#
    )
}

fn phase(cp: &ControlPlane, args: &[&str]) -> String {
    get_opt(cp, args)
        .and_then(|o| o["status"]["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn claims_bind_to_matching_volumes_which_are_reclaimed_by_policy() {
    let cp = ControlPlane::start();
    let kcm = controller_manager(
        &cp,
        "persistentvolume-binder",
        &["--pvclaimbinder-sync-period=2s"],
    );
    cp.ok_stdin(&["apply", "-f", "-"], &volume("pv-small", "1Gi", "Retain"));
    cp.ok_stdin(&["apply", "-f", "-"], &volume("pv-big", "5Gi", "Delete"));
    cp.ok_stdin(&["apply", "-f", "-"], &volume("pv-mid", "2Gi", "Retain"));
    eventually("the volumes Available", WAIT, || {
        ["pv-small", "pv-big", "pv-mid"]
            .iter()
            .all(|v| phase(&cp, &["pv", v]) == "Available")
    });
    // The smallest volume that holds the request.
    cp.ok_stdin(&["apply", "-f", "-"], &claim("data", "1500Mi"));
    eventually("data bound", WAIT, || {
        phase(&cp, &["pvc", "data"]) == "Bound"
    });
    let pvc = cp.get_json(&["pvc", "data"]);
    assert_eq!(pvc["spec"]["volumeName"], "pv-mid");
    assert_eq!(pvc["status"]["capacity"]["storage"], "2Gi");
    assert_eq!(pvc["status"]["accessModes"][0], "ReadWriteOnce");
    assert_eq!(
        pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    assert_eq!(
        pvc["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    let pv = cp.get_json(&["pv", "pv-mid"]);
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(pv["spec"]["claimRef"]["name"], "data");
    assert_eq!(pv["spec"]["claimRef"]["namespace"], "default");
    assert_eq!(pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"]);
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );

    cp.ok_stdin(&["apply", "-f", "-"], &claim("scratch", "3Gi"));
    eventually("scratch bound to the big volume", WAIT, || {
        phase(&cp, &["pvc", "scratch"]) == "Bound"
            && cp.get_json(&["pvc", "scratch"])["spec"]["volumeName"] == "pv-big"
    });
    // Nothing fits: Pending, and an event says why.
    cp.ok_stdin(&["apply", "-f", "-"], &claim("huge", "100Gi"));
    eventually("huge's FailedBinding event", WAIT, || {
        let text = "no persistent volumes available for this claim and no storage class is set";
        cp.ok(&["get", "events", "-o", "json"]).contains(text)
            || cp
                .ok(&["get", "events.events.k8s.io", "-o", "json"])
                .contains(text)
    });
    assert_eq!(phase(&cp, &["pvc", "huge"]), "Pending");

    // Retain: the volume stays, Released. Delete: the volume goes.
    cp.ok(&["delete", "pvc", "data"]);
    eventually("pv-mid released", WAIT, || {
        phase(&cp, &["pv", "pv-mid"]) == "Released"
    });
    cp.ok(&["delete", "pvc", "scratch"]);
    eventually("pv-big deleted", WAIT, || {
        get_opt(&cp, &["pv", "pv-big"]).is_none()
    });
    // A released volume is not offered again.
    cp.ok_stdin(&["apply", "-f", "-"], &claim("again", "1500Mi"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(phase(&cp, &["pvc", "again"]), "Pending");
    assert_eq!(phase(&cp, &["pv", "pv-mid"]), "Released");
    assert!(!kcm.log().contains("panicked"));
}
