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
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: later}\nvalue: 1000\n",
    );
    eventually(
        "pods made and the condition cleared",
        Duration::from_secs(30),
        || {
            let s = cp.get_json(&["rs", "web"]);
            s["status"]["conditions"].is_null() && s["status"]["readyReplicas"] == 3
        },
    );
    // The template carries no priority of its own: each pod gets its class's.
    assert!(cp.get_json(&["rs", "web"])["spec"]["template"]["spec"]["priority"].is_null());
    for pod in live_pods(cp, "app=web") {
        assert_eq!(pod["spec"]["priority"], 1000, "{pod}");
        assert_eq!(
            pod["spec"]["preemptionPolicy"], "PreemptLowerPriority",
            "{pod}"
        );
    }
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

fn deployment(name: &str, replicas: u32, strategy: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy: {strategy}
{extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: "nginx:1"}}]}}
"#
    )
}

/// The deployment's ReplicaSets (controller reference to it), by revision.
fn replica_sets(cp: &ControlPlane, name: &str) -> Vec<Value> {
    let uid = cp.get_json(&["deploy", name])["metadata"]["uid"].clone();
    let mut sets: Vec<Value> = cp.get_json(&["rs", "-l", &format!("app={name}")])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|rs| rs["metadata"]["ownerReferences"][0]["uid"] == uid)
        .collect();
    sets.sort_by_key(|rs| {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .as_str()
            .and_then(|r| r.parse::<u32>().ok())
    });
    sets
}

fn annotation(obj: &Value, key: &str) -> String {
    obj["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn condition(obj: &Value, type_: &str) -> (String, String) {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .unwrap_or_default()
}

fn rollout_status(cp: &ControlPlane, name: &str) -> String {
    cp.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=40s",
    ])
}

#[test]
fn deployment_rolls_out_updates_and_rolls_back() {
    let c = cluster("replicaset,deployment");
    let cp = &c.cp;
    let strategy = "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";
    cp.ok_stdin(&["apply", "-f", "-"], &deployment("app", 3, strategy, ""));
    assert!(rollout_status(cp, "app").contains("successfully rolled out"));
    let first = replica_sets(cp, "app");
    assert_eq!(first.len(), 1);
    let rs = &first[0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs["metadata"]["name"], format!("app-{hash}"));
    assert!(hash
        .chars()
        .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/revision"), "1");
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/desired-replicas"),
        "3"
    );
    assert_eq!(annotation(rs, "deployment.kubernetes.io/max-replicas"), "4");
    let d = cp.get_json(&["deploy", "app"]);
    assert_eq!(d["status"]["readyReplicas"], 3);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(
        condition(&d, "Available"),
        ("True".into(), "MinimumReplicasAvailable".into())
    );
    eventually(
        "Progressing reports the new ReplicaSet available",
        WAIT,
        || {
            let d = cp.get_json(&["deploy", "app"]);
            condition(&d, "Progressing") == ("True".into(), "NewReplicaSetAvailable".into())
        },
    );
    let first_name = rs["metadata"]["name"].as_str().unwrap().to_string();
    assert!(events(cp, "app")
        .iter()
        .any(|(r, n)| r == "ScalingReplicaSet"
            && n == &format!("Scaled up replica set {first_name} from 0 to 3")));

    // A rolling update to a new template.
    cp.ok(&["set", "image", "deployment/app", "c=nginx:2"]);
    assert!(rollout_status(cp, "app").contains("successfully rolled out"));
    let sets = replica_sets(cp, "app");
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["spec"]["replicas"], 0);
    assert_eq!(sets[1]["spec"]["replicas"], 3);
    assert_eq!(
        annotation(&sets[1], "deployment.kubernetes.io/revision"),
        "2"
    );
    let d = cp.get_json(&["deploy", "app"]);
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), "2");
    let history = cp.ok(&["rollout", "history", "deployment/app"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    assert!(events(cp, "app")
        .iter()
        .any(|(r, n)| r == "ScalingReplicaSet" && n.starts_with("Scaled down replica set ")));

    // Undo returns to the first template, reusing its ReplicaSet under revision 3.
    cp.ok(&["rollout", "undo", "deployment/app"]);
    assert!(rollout_status(cp, "app").contains("successfully rolled out"));
    let d = cp.get_json(&["deploy", "app"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    let sets = replica_sets(cp, "app");
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["spec"]["replicas"], 0);
    assert_eq!(sets[1]["metadata"]["name"], first_name);
    assert_eq!(sets[1]["spec"]["replicas"], 3);
    assert_eq!(
        annotation(&sets[1], "deployment.kubernetes.io/revision"),
        "3"
    );
    assert_eq!(
        annotation(&sets[1], "deployment.kubernetes.io/revision-history"),
        "1"
    );
    let pods = live_pods(cp, "app=app");
    assert_eq!(pods.len(), 3);
    assert!(pods
        .iter()
        .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1"));
}

#[test]
fn deployment_recreate_stops_old_pods_before_starting_new() {
    let c = cluster("replicaset,deployment");
    let cp = &c.cp;
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("re", 2, "{type: Recreate}", ""),
    );
    rollout_status(cp, "re");
    cp.ok(&["set", "image", "deployment/re", "c=nginx:2"]);
    // Never old and new pods at once.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let images: std::collections::BTreeSet<String> = live_pods(cp, "app=re")
            .iter()
            .filter_map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(String::from)
            })
            .collect();
        assert!(images.len() <= 1, "old and new pods together: {images:?}");
    }
    assert!(rollout_status(cp, "re").contains("successfully rolled out"));
    let sets = replica_sets(cp, "re");
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0]["spec"]["replicas"], 0);
    assert_eq!(sets[1]["status"]["readyReplicas"], 2);
    let notes: Vec<String> = events(cp, "re").into_iter().map(|(_, n)| n).collect();
    let old = sets[0]["metadata"]["name"].as_str().unwrap();
    let new = sets[1]["metadata"]["name"].as_str().unwrap();
    assert!(notes.contains(&format!("Scaled down replica set {old} from 2 to 0")));
    assert!(notes.contains(&format!("Scaled up replica set {new} from 0 to 2")));
}

#[test]
fn deployment_pause_resume_scale_and_restart() {
    let c = cluster("replicaset,deployment");
    let cp = &c.cp;
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("pz", 2, "{type: RollingUpdate}", ""),
    );
    rollout_status(cp, "pz");
    cp.ok(&["rollout", "pause", "deployment/pz"]);
    eventually("Progressing says paused", WAIT, || {
        let d = cp.get_json(&["deploy", "pz"]);
        condition(&d, "Progressing") == ("Unknown".into(), "DeploymentPaused".into())
    });
    cp.ok(&["set", "image", "deployment/pz", "c=nginx:2"]);
    cp.ok(&["scale", "deployment/pz", "--replicas=4"]);
    eventually("the paused deployment scales its ReplicaSet", WAIT, || {
        let sets = replica_sets(cp, "pz");
        sets.len() == 1 && sets[0]["status"]["readyReplicas"] == 4
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(replica_sets(cp, "pz").len(), 1, "no rollout while paused");
    cp.ok(&["rollout", "resume", "deployment/pz"]);
    assert!(rollout_status(cp, "pz").contains("successfully rolled out"));
    let sets = replica_sets(cp, "pz");
    assert_eq!(sets.len(), 2);
    assert_eq!(
        sets[1]["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert_eq!(sets[1]["status"]["readyReplicas"], 4);

    // A restart is a template change: a third ReplicaSet.
    cp.ok(&["rollout", "restart", "deployment/pz"]);
    assert!(rollout_status(cp, "pz").contains("successfully rolled out"));
    let sets = replica_sets(cp, "pz");
    assert_eq!(sets.len(), 3);
    assert!(!annotation(
        &sets[2]["spec"]["template"],
        "kubectl.kubernetes.io/restartedAt"
    )
    .is_empty());
    let d = cp.get_json(&["deploy", "pz"]);
    assert_eq!(annotation(&d, "deployment.kubernetes.io/revision"), "3");
}

#[test]
fn deployment_reports_an_exceeded_progress_deadline() {
    let c = cluster("replicaset,deployment");
    let cp = &c.cp;
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &deployment(
            "slow",
            2,
            "{type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}",
            "  progressDeadlineSeconds: 3",
        ),
    );
    rollout_status(cp, "slow");
    // New pods that no node can take stay Pending: no progress.
    cp.ok(&[
        "patch",
        "deployment/slow",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"nowhere":"true"}}}}}"#,
    ]);
    eventually("ProgressDeadlineExceeded", WAIT, || {
        let d = cp.get_json(&["deploy", "slow"]);
        condition(&d, "Progressing") == ("False".into(), "ProgressDeadlineExceeded".into())
    });
    let out = cp.kubectl(&["rollout", "status", "deployment/slow", "--timeout=10s"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeded its progress deadline"));
    // The old pods still serve: maxUnavailable 0.
    let d = cp.get_json(&["deploy", "slow"]);
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(condition(&d, "Available").0, "True");
}
