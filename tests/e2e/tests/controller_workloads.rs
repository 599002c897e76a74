//! The workload controllers of hakube-controller-manager (ReplicaSet, ReplicationController,
//! Deployment) against the real API server, with hakube-scheduler binding their pods to
//! simulated nodes whose stand-in kubelet makes them Running and Ready.

use std::time::Duration;

use hakube_e2e::components::Component;
use hakube_e2e::simulated::SimulatedNodes;
use hakube_e2e::{eventually, ControlPlane};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    kcm: Component,
    scheduler: Component,
    _nodes: SimulatedNodes,
    cp: ControlPlane,
}

fn cluster(controllers: &str) -> Cluster {
    let cp = ControlPlane::start();
    let nodes = SimulatedNodes::start(&cp, &["node-1", "node-2"]);
    let scheduler = Component::start(&cp, "hakube-scheduler", &[]);
    eventually("the scheduler leads", WAIT, || scheduler.is_leading());
    // A node update makes the scheduler look at its nodes again, should its first watch of
    // them have been cut short (seen as "node watch failed" at start).
    std::thread::sleep(Duration::from_secs(1));
    cp.ok(&["label", "nodes", "--all", "e2e.hakube.io/touched=1"]);
    let kcm = Component::start(
        &cp,
        "hakube-controller-manager",
        &["--controllers", controllers],
    );
    Cluster {
        kcm,
        scheduler,
        _nodes: nodes,
        cp,
    }
}

impl Drop for Cluster {
    /// A failed test shows what the components said and where the pods were.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- controller-manager log ---\n{}", self.kcm.log());
            eprintln!("--- scheduler log (tail) ---");
            let log = self.scheduler.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("{}", lines[lines.len().saturating_sub(30)..].join("\n"));
            let nodes = self
                .cp
                .kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].status}"]);
            eprintln!("{}", String::from_utf8_lossy(&nodes.stdout));
            let pods = self.cp.kubectl(&["get", "pods,rs,deploy", "-o", "wide"]);
            eprintln!("{}", String::from_utf8_lossy(&pods.stdout));
        }
    }
}

/// The pods matching `selector` that are not being deleted.
fn live_pods(cp: &ControlPlane, selector: &str) -> Vec<Value> {
    let list = cp.get_json(&["pods", "-l", selector]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn names(pods: &[Value]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect()
}

fn controller_uid(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str().map(String::from))
}

fn owned_by(cp: &ControlPlane, selector: &str, uid: &str) -> Vec<Value> {
    live_pods(cp, selector)
        .into_iter()
        .filter(|p| controller_uid(p).as_deref() == Some(uid))
        .collect()
}

fn events(cp: &ControlPlane, name: &str) -> Vec<(String, String)> {
    let list = cp.get_json(&["events.events.k8s.io"]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["regarding"]["name"] == name)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                e["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

const REPLICA_SET: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec: {containers: [{name: c, image: nginx}]}
"#;

const ORPHAN: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: orphan, labels: {app: web}}
spec: {containers: [{name: c, image: nginx}]}
"#;

#[test]
fn replica_set_creates_replaces_scales_adopts_and_releases() {
    let c = cluster("replicaset");
    let cp = &c.cp;
    cp.ok_stdin(&["apply", "-f", "-"], ORPHAN);
    cp.ok_stdin(&["apply", "-f", "-"], REPLICA_SET);
    let rs = cp.get_json(&["rs", "web"]);
    let uid = rs["metadata"]["uid"].as_str().unwrap().to_string();

    // The matching orphan is adopted, and two pods are made to reach three.
    eventually("three pods owned, the orphan among them", WAIT, || {
        let owned = owned_by(cp, "app=web", &uid);
        owned.len() == 3 && names(&owned).contains(&"orphan".to_string())
    });
    let adopted = cp.get_json(&["pod", "orphan"]);
    assert_eq!(
        adopted["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
        true
    );
    let made = live_pods(cp, "app=web,tier=front");
    assert_eq!(made.len(), 2, "two pods from the template");
    assert!(names(&made).iter().all(|n| n.starts_with("web-")));
    eventually("status reports three ready and available", WAIT, || {
        let s = cp.get_json(&["rs", "web"]);
        s["status"]["replicas"] == 3
            && s["status"]["readyReplicas"] == 3
            && s["status"]["availableReplicas"] == 3
            && s["status"]["fullyLabeledReplicas"] == 2
            && s["status"]["observedGeneration"] == s["metadata"]["generation"]
    });
    let reasons = events(cp, "web");
    assert!(
        reasons
            .iter()
            .any(|(r, n)| r == "SuccessfulCreate" && n.starts_with("Created pod: web-")),
        "{reasons:?}"
    );

    // A deleted pod is replaced.
    let victim = names(&made)[0].clone();
    cp.ok(&["delete", "pod", &victim, "--wait=false"]);
    eventually("the deleted pod replaced", WAIT, || {
        let owned = owned_by(cp, "app=web", &uid);
        owned.len() == 3 && !names(&owned).contains(&victim)
    });

    // Scaling up and down.
    cp.ok(&["scale", "rs", "web", "--replicas=5"]);
    eventually("five pods", WAIT, || {
        owned_by(cp, "app=web", &uid).len() == 5
    });
    cp.ok(&["scale", "rs", "web", "--replicas=2"]);
    eventually("two pods, status caught up", WAIT, || {
        let s = cp.get_json(&["rs", "web"]);
        owned_by(cp, "app=web", &uid).len() == 2
            && s["status"]["replicas"] == 2
            && s["status"]["readyReplicas"] == 2
    });
    assert!(events(cp, "web")
        .iter()
        .any(|(r, n)| r == "SuccessfulDelete" && n.starts_with("Deleted pod: ")));

    // A pod relabelled out of the selector is released and replaced.
    let kept = names(&owned_by(cp, "app=web", &uid))[0].clone();
    cp.ok(&["label", "pod", &kept, "app=elsewhere", "--overwrite"]);
    eventually("the relabelled pod released and replaced", WAIT, || {
        let released = cp.get_json(&["pod", &kept]);
        controller_uid(&released).is_none() && owned_by(cp, "app=web", &uid).len() == 2
    });
}

#[test]
fn replica_set_reports_create_failures_and_never_overshoots() {
    let c = cluster("replicaset");
    let cp = &c.cp;
    // Pods naming a PriorityClass that does not exist are refused at admission.
    let template = REPLICA_SET.replace(
        "spec: {containers:",
        "spec: {priorityClassName: later, containers:",
    );
    cp.ok_stdin(&["apply", "-f", "-"], &template);
    eventually("a ReplicaFailure condition", WAIT, || {
        let s = cp.get_json(&["rs", "web"]);
        s["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["type"] == "ReplicaFailure"
                    && c["status"] == "True"
                    && c["reason"] == "FailedCreate"
            })
        })
    });
    assert!(events(cp, "web")
        .iter()
        .any(|(r, n)| r == "FailedCreate" && n.starts_with("Error creating: ")));
    assert!(live_pods(cp, "app=web").is_empty());
    cp.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: later}\nvalue: 0\n",
    );
    eventually(
        "pods made and the condition cleared",
        Duration::from_secs(30),
        || {
            let s = cp.get_json(&["rs", "web"]);
            s["status"]["conditions"].is_null() && s["status"]["readyReplicas"] == 3
        },
    );
    // A large scale-up lands exactly: expectations keep a lagging cache from doubling it.
    cp.ok(&["scale", "rs", "web", "--replicas=60"]);
    eventually("sixty pods", WAIT, || live_pods(cp, "app=web").len() == 60);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(live_pods(cp, "app=web").len(), 60);
    cp.ok(&["scale", "rs", "web", "--replicas=0"]);
    eventually("no pods", WAIT, || live_pods(cp, "app=web").is_empty());
}

#[test]
fn replication_controller_scales() {
    let c = cluster("replicationcontroller");
    let cp = &c.cp;
    cp.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy}
spec:
  replicas: 2
  selector: {app: legacy}
  template:
    metadata: {labels: {app: legacy}}
    spec: {containers: [{name: c, image: nginx}]}
"#,
    );
    let uid = cp.get_json(&["rc", "legacy"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    eventually("two pods ready", WAIT, || {
        let s = cp.get_json(&["rc", "legacy"]);
        owned_by(cp, "app=legacy", &uid).len() == 2 && s["status"]["readyReplicas"] == 2
    });
    cp.ok(&["scale", "rc", "legacy", "--replicas=4"]);
    eventually("four pods ready", WAIT, || {
        let s = cp.get_json(&["rc", "legacy"]);
        owned_by(cp, "app=legacy", &uid).len() == 4
            && s["status"]["readyReplicas"] == 4
            && s["status"]["availableReplicas"] == 4
    });
    cp.ok(&["scale", "rc", "legacy", "--replicas=1"]);
    eventually("one pod", WAIT, || {
        let s = cp.get_json(&["rc", "legacy"]);
        owned_by(cp, "app=legacy", &uid).len() == 1
            && s["status"]["replicas"] == 1
            && s["status"]["observedGeneration"] == s["metadata"]["generation"]
    });
    let pod = &owned_by(cp, "app=legacy", &uid)[0];
    assert!(pod["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("legacy-"));
}
