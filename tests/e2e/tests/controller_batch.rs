//! hakube-controller-manager's batch and per-node/stateful workload controllers (job,
//! cronjob, ttl-after-finished, daemonset, statefulset) against the real API server, with
//! hakube-scheduler binding pods to simulated nodes whose stand-in kubelet runs them.

use std::time::Duration;

use hakube_e2e::components::Component;
use hakube_e2e::simulated::SimulatedNodes;
use hakube_e2e::{eventually, ControlPlane};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// A control plane with the scheduler, the controller manager (running `controllers`) and
/// simulated nodes.
struct Cluster {
    cp: ControlPlane,
    scheduler: Component,
    kcm: Component,
    nodes: SimulatedNodes,
}

impl Cluster {
    fn start(controllers: &str, nodes: &[&str]) -> Cluster {
        let cp = ControlPlane::start();
        let nodes = SimulatedNodes::start(&cp, nodes);
        let scheduler = Component::start(&cp, "hakube-scheduler", &[]);
        let kcm = Component::start(
            &cp,
            "hakube-controller-manager",
            &["--controllers", controllers],
        );
        Cluster {
            cp,
            scheduler,
            kcm,
            nodes,
        }
    }

    /// Waits for `check`, printing the components' logs and the objects on a timeout.
    fn wait(&self, what: &str, timeout: Duration, check: impl FnMut() -> bool) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually(what, timeout, check)
        }));
        if let Err(panic) = outcome {
            eprintln!("--- scheduler log:\n{}", self.scheduler.log());
            eprintln!("--- controller manager log:\n{}", self.kcm.log());
            eprintln!(
                "--- objects:\n{}",
                self.cp.ok(&[
                    "get",
                    "jobs,cronjobs,daemonsets,statefulsets,pods,pvc",
                    "-o",
                    "yaml"
                ])
            );
            std::panic::resume_unwind(panic);
        }
    }
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

fn items(cp: &ControlPlane, args: &[&str]) -> Vec<Value> {
    cp.get_json(args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn events(cp: &ControlPlane, name: &str) -> String {
    cp.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "custom-columns=REASON:.reason,MESSAGE:.message",
    ])
}

fn job_manifest(name: &str, exit_code: i32, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
{extra_spec}
  template:
    metadata:
      annotations: {{e2e.hakube.io/exit-code: "{exit_code}"}}
    spec:
      restartPolicy: Never
      containers: [{{name: work, image: busybox}}]
"#
    )
}

#[test]
fn jobs_complete_fail_at_their_backoff_limit_and_run_indexed() {
    let cluster = Cluster::start("job", &["node-1", "node-2"]);
    let cp = &cluster.cp;
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &job_manifest("complete", 0, "  completions: 3\n  parallelism: 2"),
    );
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &job_manifest("failing", 1, "  backoffLimit: 1"),
    );
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &job_manifest(
            "indexed",
            0,
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
        ),
    );

    cluster.wait("the job completes", WAIT, || {
        condition(&cp.get_json(&["job", "complete"]), "Complete").is_some()
    });
    let job = cp.get_json(&["job", "complete"]);
    assert_eq!(job["status"]["succeeded"], 3, "{job}");
    assert!(job["status"]["completionTime"].is_string(), "{job}");
    assert!(job["status"]["startTime"].is_string(), "{job}");
    assert!(condition(&job, "SuccessCriteriaMet").is_some(), "{job}");
    let pods = items(cp, &["pods", "-l", "batch.kubernetes.io/job-name=complete"]);
    assert_eq!(pods.len(), 3, "one pod per completion");
    cluster.wait("tracking finalizers are removed", WAIT, || {
        items(cp, &["pods", "-l", "job-name=complete"])
            .iter()
            .all(|p| {
                p["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty())
            })
    });
    for pod in &pods {
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Job");
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["blockOwnerDeletion"], true);
    }
    let seen = events(cp, "complete");
    assert!(
        seen.contains("SuccessfulCreate") && seen.contains("Created pod: complete-"),
        "{seen}"
    );
    assert!(seen.contains("Completed"), "{seen}");
    assert_eq!(seen.matches("Created pod: complete-").count(), 3, "{seen}");

    cluster.wait("the indexed job completes", WAIT, || {
        condition(&cp.get_json(&["job", "indexed"]), "Complete").is_some()
    });
    let job = cp.get_json(&["job", "indexed"]);
    assert_eq!(job["status"]["completedIndexes"], "0-2", "{job}");
    let mut indexes: Vec<String> = items(cp, &["pods", "-l", "job-name=indexed"])
        .iter()
        .map(|p| {
            let index = &p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"];
            assert_eq!(
                *index,
                p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
            );
            assert_eq!(
                p["spec"]["hostname"],
                format!("indexed-{}", index.as_str().unwrap_or(""))
            );
            index.as_str().unwrap_or("").to_string()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, vec!["0", "1", "2"]);

    // backoffLimit 1: the first failure is replaced after upstream's 10 s backoff, the
    // second fails the Job.
    cluster.wait("the failing job fails", Duration::from_secs(40), || {
        condition(&cp.get_json(&["job", "failing"]), "Failed").is_some()
    });
    let job = cp.get_json(&["job", "failing"]);
    let failed = condition(&job, "Failed").cloned().unwrap_or_default();
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{job}");
    assert!(condition(&job, "FailureTarget").is_some(), "{job}");
    assert_eq!(job["status"]["failed"], 2, "{job}");
    assert!(condition(&job, "Complete").is_none());
    assert_eq!(items(cp, &["pods", "-l", "job-name=failing"]).len(), 2);
    let seen = events(cp, "failing");
    assert!(seen.contains("BackoffLimitExceeded"), "{seen}");
    assert!(cluster
        .kcm
        .get("/metrics")
        .contains("workqueue_adds_total{name=\"job\"}"));
}

#[test]
fn a_cronjob_fires_and_finished_jobs_expire() {
    let cluster = Cluster::start("job,cronjob,ttl-after-finished", &["node-1"]);
    let cp = &cluster.cp;
    cp.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    metadata:
      labels: {app: tick}
    spec:
      template:
        metadata:
          annotations: {e2e.hakube.io/exit-code: "0"}
        spec:
          restartPolicy: Never
          containers: [{name: work, image: busybox}]
"#,
    );
    cp.ok_stdin(
        &["apply", "-f", "-"],
        &job_manifest("short-lived", 0, "  ttlSecondsAfterFinished: 2"),
    );

    // A finished Job with a TTL is deleted (foreground: marked for deletion; without the
    // garbage collector here its foregroundDeletion finalizer keeps it visible).
    cluster.wait("the expired job is deleted", WAIT, || {
        let out = cp.kubectl(&["get", "job", "short-lived", "-o", "json"]);
        !out.status.success()
            || serde_json::from_slice::<Value>(&out.stdout)
                .is_ok_and(|j| j["metadata"]["deletionTimestamp"].is_string())
    });

    // The first minute boundary fires the schedule.
    cluster.wait("the cronjob creates a job", Duration::from_secs(65), || {
        !items(cp, &["jobs", "-l", "app=tick"]).is_empty()
    });
    let job = items(cp, &["jobs", "-l", "app=tick"]).remove(0);
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let scheduled = job["metadata"]["annotations"]
        ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let minutes: i64 = name
        .trim_start_matches("tick-")
        .parse()
        .expect("minutes in the name");
    let at: k8s_openapi::jiff::Timestamp = scheduled.parse().expect("an RFC 3339 timestamp");
    assert_eq!(minutes * 60, at.as_second(), "{name} vs {scheduled}");
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    let cronjob = cp.get_json(&["cronjob", "tick"]);
    assert_eq!(cronjob["status"]["lastScheduleTime"], scheduled.as_str());

    cluster.wait("the cronjob sees its job complete", WAIT, || {
        cp.get_json(&["cronjob", "tick"])["status"]["lastSuccessfulTime"].is_string()
    });
    let cronjob = cp.get_json(&["cronjob", "tick"]);
    assert!(
        cronjob["status"]["active"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{cronjob}"
    );
    let seen = events(cp, "tick");
    assert!(seen.contains(&format!("Created job {name}")), "{seen}");
    assert!(seen.contains("SawCompletedJob"), "{seen}");
}

fn pods_by_node(cp: &ControlPlane, selector: &str) -> Vec<(String, String)> {
    let mut pods: Vec<(String, String)> = items(cp, &["pods", "-l", selector])
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    pods.sort();
    pods
}

#[test]
fn a_daemonset_runs_on_every_eligible_node_and_rolls_out() {
    let cluster = Cluster::start("daemonset", &["node-1", "node-2"]);
    let cp = &cluster.cp;
    cp.ok(&["taint", "nodes", "node-2", "dedicated=infra:NoSchedule"]);
    let manifest = |image: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec:
      containers: [{{name: agent, image: "{image}"}}]
"#
        )
    };
    cp.ok_stdin(&["apply", "-f", "-"], &manifest("agent:1"));
    cluster.wait("a pod on the untainted node", WAIT, || {
        let ds = cp.get_json(&["daemonset", "agent"]);
        ds["status"]["numberReady"] == 1 && ds["status"]["desiredNumberScheduled"] == 1
    });
    assert_eq!(
        pods_by_node(cp, "app=agent"),
        vec![("node-1".to_string(), "agent:1".to_string())]
    );
    let pod = items(cp, &["pods", "-l", "app=agent"]).remove(0);
    let term = &pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
    assert_eq!(term["matchFields"][0]["values"][0], "node-1", "{pod}");
    assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string());
    assert!(!items(cp, &["controllerrevisions"]).is_empty());

    cluster
        .nodes
        .add(hakube_e2e::simulated::NodeTemplate::new("node-3", "zone-a"));
    cluster.wait("a pod on the new node", WAIT, || {
        cp.get_json(&["daemonset", "agent"])["status"]["numberAvailable"] == 2
    });
    assert_eq!(
        pods_by_node(cp, "app=agent"),
        vec![
            ("node-1".to_string(), "agent:1".to_string()),
            ("node-3".to_string(), "agent:1".to_string())
        ]
    );

    cp.ok_stdin(&["apply", "-f", "-"], &manifest("agent:2"));
    cp.ok(&["rollout", "status", "daemonset/agent", "--timeout=30s"]);
    cluster.wait("every pod runs the new template", WAIT, || {
        pods_by_node(cp, "app=agent")
            == vec![
                ("node-1".to_string(), "agent:2".to_string()),
                ("node-3".to_string(), "agent:2".to_string()),
            ]
    });
    let ds = cp.get_json(&["daemonset", "agent"]);
    assert_eq!(ds["status"]["updatedNumberScheduled"], 2, "{ds}");
    assert_eq!(
        ds["status"]["observedGeneration"],
        ds["metadata"]["generation"]
    );
    assert_eq!(items(cp, &["controllerrevisions"]).len(), 2);
    let seen = events(cp, "agent");
    assert!(
        seen.contains("SuccessfulCreate") && seen.contains("SuccessfulDelete"),
        "{seen}"
    );
}

fn pod_names(cp: &ControlPlane, selector: &str) -> Vec<String> {
    let mut names: Vec<String> = items(cp, &["pods", "-l", selector])
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn a_statefulset_starts_in_order_keeps_claims_and_updates_above_the_partition() {
    let cluster = Cluster::start("statefulset", &["node-1", "node-2"]);
    let cp = &cluster.cp;
    let manifest = |replicas: u32, image: &str, partition: u32| {
        format!(
            r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  updateStrategy: {{type: RollingUpdate, rollingUpdate: {{partition: {partition}}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "{image}"}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"#
        )
    };
    cp.ok_stdin(&["apply", "-f", "-"], &manifest(3, "web:1", 0));
    cluster.wait("three ready replicas", WAIT, || {
        cp.get_json(&["statefulset", "web"])["status"]["readyReplicas"] == 3
    });
    assert_eq!(pod_names(cp, "app=web"), vec!["web-0", "web-1", "web-2"]);
    // Ordered: each pod was created after its predecessor became ready.
    let created = |name: &str| {
        let pod = cp.get_json(&["pod", name]);
        let created: k8s_openapi::jiff::Timestamp = pod["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .expect("a time");
        created
    };
    assert!(created("web-0") <= created("web-1") && created("web-1") <= created("web-2"));
    let pod = cp.get_json(&["pod", "web-1"]);
    assert_eq!(pod["spec"]["hostname"], "web-1");
    assert_eq!(pod["spec"]["subdomain"], "web");
    assert_eq!(
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-1"
    );
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "1"
    );
    let claims: Vec<String> = items(cp, &["pvc"])
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(claims, vec!["data-web-0", "data-web-1", "data-web-2"]);
    cp.ok(&["rollout", "status", "statefulset/web", "--timeout=20s"]);

    // Scale down: the highest ordinal goes; claims stay (Retain).
    cp.ok_stdin(&["apply", "-f", "-"], &manifest(2, "web:1", 0));
    cluster.wait("web-2 is removed", WAIT, || {
        pod_names(cp, "app=web") == vec!["web-0", "web-1"]
    });
    assert_eq!(items(cp, &["pvc"]).len(), 3);

    // A new template with partition 1: only web-1 is replaced.
    cp.ok_stdin(&["apply", "-f", "-"], &manifest(2, "web:2", 1));
    cluster.wait("web-1 runs the new template", WAIT, || {
        let set = cp.get_json(&["statefulset", "web"]);
        set["status"]["updatedReplicas"] == 1 && set["status"]["readyReplicas"] == 2
    });
    let image = |name: &str| cp.get_json(&["pod", name])["spec"]["containers"][0]["image"].clone();
    assert_eq!(image("web-0"), "web:1");
    assert_eq!(image("web-1"), "web:2");
    let set = cp.get_json(&["statefulset", "web"]);
    assert_ne!(
        set["status"]["currentRevision"], set["status"]["updateRevision"],
        "{set}"
    );
    assert_eq!(set["status"]["currentReplicas"], 1, "{set}");
    let seen = events(cp, "web");
    assert!(
        seen.contains("create Pod web-0 in StatefulSet web successful"),
        "{seen}"
    );
    assert!(
        seen.contains("create Claim data-web-0 Pod web-0 in StatefulSet web success"),
        "{seen}"
    );
    assert!(
        seen.contains("delete Pod web-2 in StatefulSet web successful"),
        "{seen}"
    );
}
