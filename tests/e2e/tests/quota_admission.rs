//! ResourceQuota admission in hakube-apiserver, with the controller-manager's resourcequota
//! controller computing usage: creates beyond `hard` are refused with upstream's messages, pods
//! must declare what quota limits, room freed by a deletion is usable once usage is recounted,
//! a Service growing node ports is charged like a new one, and concurrent creates never spend
//! more than the quota holds.

use std::time::Duration;

use hakube_e2e::components::Component;
use hakube_e2e::{eventually, ControlPlane};

const WAIT: Duration = Duration::from_secs(20);

fn quota_controller(cp: &ControlPlane) -> Component {
    Component::start(
        cp,
        "hakube-controller-manager",
        &[
            "--controllers",
            "resourcequota",
            "--leader-elect=false",
            "--resource-quota-sync-period=2s",
        ],
    )
}

fn quota(name: &str, hard: &str) -> String {
    format!("apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: {name}}}\nspec:\n  hard: {{{hard}}}\n")
}

/// A pod with one container `app`, requesting `cpu` when given.
fn pod(name: &str, cpu: Option<&str>) -> String {
    let resources = cpu
        .map(|cpu| format!("\n    resources: {{requests: {{cpu: \"{cpu}\"}}}}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: app\n    image: nginx{resources}\n"
    )
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n")
}

fn used(cp: &ControlPlane, namespace: &str, quota: &str, resource: &str) -> String {
    cp.get_json(&["-n", namespace, "quota", quota])["status"]["used"][resource]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn creates_beyond_the_quota_are_refused_with_upstreams_messages() {
    let cp = ControlPlane::start();
    let kcm = quota_controller(&cp);
    cp.ok(&["create", "namespace", "team"]);
    let create = ["create", "-n", "team", "-f", "-"];
    cp.ok_stdin(
        &create,
        &quota("compute", "pods: \"2\", requests.cpu: \"1\""),
    );
    cp.ok_stdin(&create, &quota("objects", "count/configmaps: \"2\""));
    eventually("the quotas' usage computed", WAIT, || {
        used(&cp, "team", "compute", "pods") == "0"
            && used(&cp, "team", "objects", "count/configmaps") == "0"
    });

    cp.ok_stdin(&create, &pod("a", Some("500m")));
    // A dry run is checked but charges nothing.
    cp.ok_stdin(
        &["create", "-n", "team", "--dry-run=server", "-f", "-"],
        &pod("dry", Some("500m")),
    );
    assert_eq!(used(&cp, "team", "compute", "pods"), "1");
    cp.ok_stdin(&create, &pod("b", Some("500m")));
    let refused = cp.fails(&create, Some(&pod("c", Some("500m"))));
    assert!(
        refused.contains(
            "pods \"c\" is forbidden: exceeded quota: compute, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=1, limited: pods=2,requests.cpu=1"
        ),
        "{refused}"
    );
    assert!(refused.contains("(Forbidden)"), "{refused}");
    let undeclared = cp.fails(&create, Some(&pod("bare", None)));
    assert!(
        undeclared.contains(
            "pods \"bare\" is forbidden: failed quota: compute: must specify requests.cpu for: app"
        ),
        "{undeclared}"
    );

    cp.ok_stdin(&create, &configmap("one"));
    cp.ok_stdin(&create, &configmap("two"));
    let refused = cp.fails(&create, Some(&configmap("three")));
    assert!(
        refused.contains(
            "configmaps \"three\" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"
        ),
        "{refused}"
    );

    // Room freed by a deletion is there once the controller has recounted.
    cp.ok(&[
        "delete",
        "pod",
        "a",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ]);
    eventually("the deleted pod no longer counted", WAIT, || {
        used(&cp, "team", "compute", "pods") == "1"
    });
    cp.ok_stdin(&create, &pod("d", Some("500m")));
    assert_eq!(used(&cp, "team", "compute", "requests.cpu"), "1");
    let pods = cp.ok(&["get", "pods", "-n", "team", "-o", "name"]);
    assert_eq!(pods.lines().collect::<Vec<_>>(), ["pod/b", "pod/d"]);
    assert!(!kcm.log().contains("panicked"));
}

#[test]
fn concurrent_creates_never_exceed_the_quota() {
    let cp = ControlPlane::start();
    let _kcm = quota_controller(&cp);
    cp.ok(&["create", "namespace", "race"]);
    cp.ok_stdin(
        &["create", "-n", "race", "-f", "-"],
        &quota("pods", "pods: \"5\""),
    );
    eventually("the quota's usage computed", WAIT, || {
        used(&cp, "race", "pods", "pods") == "0"
    });

    let outcomes: Vec<(bool, String)> = std::thread::scope(|scope| {
        let creates: Vec<_> = (0..10)
            .map(|i| {
                let cp = &cp;
                scope.spawn(move || {
                    let out = cp.kubectl_as(
                        &cp.admin_kubeconfig(),
                        &["create", "-n", "race", "-f", "-"],
                        Some(&pod(&format!("p{i}"), None)),
                    );
                    (
                        out.status.success(),
                        String::from_utf8_lossy(&out.stderr).into_owned(),
                    )
                })
            })
            .collect();
        creates
            .into_iter()
            .map(|c| c.join().expect("a create thread"))
            .collect()
    });
    let created = outcomes.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(created, 5, "{outcomes:?}");
    for (_, stderr) in outcomes.iter().filter(|(ok, _)| !*ok) {
        assert!(
            stderr
                .contains("exceeded quota: pods, requested: pods=1, used: pods=5, limited: pods=5"),
            "{stderr}"
        );
    }
    let pods = cp.ok(&["get", "pods", "-n", "race", "-o", "name"]);
    assert_eq!(pods.lines().count(), 5, "{pods}");
    assert_eq!(used(&cp, "race", "pods", "pods"), "5");
}

#[test]
fn a_service_growing_node_ports_is_charged_for_them() {
    let cp = ControlPlane::start();
    let _kcm = quota_controller(&cp);
    cp.ok(&["create", "namespace", "team"]);
    let create = ["create", "-n", "team", "-f", "-"];
    cp.ok_stdin(&create, &quota("ports", "services.nodeports: \"1\""));
    eventually("the quota's usage computed", WAIT, || {
        used(&cp, "team", "ports", "services.nodeports") == "0"
    });
    cp.ok_stdin(
        &create,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: a, port: 80}, {name: b, port: 81}]\n",
    );
    // Merge patches, so that `ports` is replaced rather than merged by port.
    let patch = |body: &str| {
        let args = [
            "patch", "service", "web", "-n", "team", "--type", "merge", "-p", body,
        ];
        cp.kubectl(&args)
    };
    let refused = patch(r#"{"spec":{"type":"NodePort"}}"#);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(
                "services \"web\" is forbidden: exceeded quota: ports, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"
            ),
        "{stderr}"
    );
    let one_port = patch(r#"{"spec":{"type":"NodePort","ports":[{"name":"a","port":80}]}}"#);
    assert!(
        one_port.status.success(),
        "{}",
        String::from_utf8_lossy(&one_port.stderr)
    );
    assert_eq!(used(&cp, "team", "ports", "services.nodeports"), "1");
}
