//! Defaulting as upstream does it where clients and controllers meet the result: pods and pod
//! templates, workloads, services, namespaces, secrets, volumes.

use serde_json::{json, Value};

use crate::objects::{at, default_at, set_at};

/// Applies the defaults for `kind` to an object in its storage form.
pub fn apply(kind: &str, object: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = object.get_mut("spec") {
                pod_spec(spec);
                pod_tolerations(spec);
            }
            default_at(object, "status.phase", json!("Pending"));
            let qos = qos_class(object.get("spec").unwrap_or(&Value::Null));
            default_at(object, "status.qosClass", json!(qos));
        }
        "ReplicationController" => {
            default_at(object, "spec.replicas", json!(1));
            // An RC without a selector selects its template's labels.
            if let Some(labels) = at(object, "spec.template.metadata.labels").cloned() {
                default_at(object, "spec.selector", labels.clone());
                default_at(object, "metadata.labels", labels);
            }
            template(object);
        }
        "Deployment" => {
            default_at(object, "spec.replicas", json!(1));
            if at(object, "spec.strategy.type").is_none_or(Value::is_null) {
                set_at(object, "spec.strategy.type", json!("RollingUpdate"));
            }
            if at(object, "spec.strategy.type").and_then(Value::as_str) == Some("RollingUpdate") {
                default_at(
                    object,
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    json!("25%"),
                );
                default_at(object, "spec.strategy.rollingUpdate.maxSurge", json!("25%"));
            }
            default_at(object, "spec.revisionHistoryLimit", json!(10));
            default_at(object, "spec.progressDeadlineSeconds", json!(600));
            template(object);
        }
        "ReplicaSet" => {
            default_at(object, "spec.replicas", json!(1));
            template(object);
        }
        "StatefulSet" => {
            default_at(object, "spec.replicas", json!(1));
            default_at(object, "spec.podManagementPolicy", json!("OrderedReady"));
            default_at(object, "spec.updateStrategy.type", json!("RollingUpdate"));
            if at(object, "spec.updateStrategy.type").and_then(Value::as_str)
                == Some("RollingUpdate")
            {
                default_at(
                    object,
                    "spec.updateStrategy.rollingUpdate.partition",
                    json!(0),
                );
            }
            default_at(object, "spec.revisionHistoryLimit", json!(10));
            default_at(
                object,
                "spec.persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            template(object);
        }
        "DaemonSet" => {
            default_at(object, "spec.updateStrategy.type", json!("RollingUpdate"));
            if at(object, "spec.updateStrategy.type").and_then(Value::as_str)
                == Some("RollingUpdate")
            {
                default_at(
                    object,
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    json!(1),
                );
                default_at(
                    object,
                    "spec.updateStrategy.rollingUpdate.maxSurge",
                    json!(0),
                );
            }
            default_at(object, "spec.revisionHistoryLimit", json!(10));
            template(object);
        }
        "Job" => job(object),
        "CronJob" => {
            default_at(object, "spec.concurrencyPolicy", json!("Allow"));
            default_at(object, "spec.suspend", json!(false));
            default_at(object, "spec.successfulJobsHistoryLimit", json!(3));
            default_at(object, "spec.failedJobsHistoryLimit", json!(1));
            if let Some(spec) = object.pointer_mut("/spec/jobTemplate/spec") {
                job_spec(spec);
            }
            if let Some(spec) = object.pointer_mut("/spec/jobTemplate/spec/template/spec") {
                pod_spec(spec);
            }
        }
        "Service" => service(object),
        "Namespace" => {
            default_at(object, "spec.finalizers", json!(["kubernetes"]));
            default_at(object, "status.phase", json!("Active"));
            if let Some(name) = at(object, "metadata.name").cloned() {
                let meta = crate::objects::meta_mut(object);
                let labels = meta
                    .entry("labels")
                    .or_insert_with(|| Value::Object(Default::default()));
                if !labels.is_object() {
                    *labels = Value::Object(Default::default());
                }
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), name);
                }
            }
        }
        "Secret" => {
            default_at(object, "type", json!("Opaque"));
            merge_string_data(object);
        }
        "PersistentVolume" => {
            default_at(
                object,
                "spec.persistentVolumeReclaimPolicy",
                json!("Retain"),
            );
            default_at(object, "spec.volumeMode", json!("Filesystem"));
            default_at(object, "status.phase", json!("Pending"));
        }
        "PersistentVolumeClaim" => {
            default_at(object, "spec.volumeMode", json!("Filesystem"));
            default_at(object, "status.phase", json!("Pending"));
        }
        _ => {}
    }
}

fn template(object: &mut Value) {
    if let Some(spec) = object.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
}

fn job(object: &mut Value) {
    if let Some(spec) = object.get_mut("spec") {
        job_spec(spec);
    }
    // Upstream generates a selector on the job's uid unless the user chose one.
    let manual = at(object, "spec.manualSelector").and_then(Value::as_bool) == Some(true);
    let uid = at(object, "metadata.uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = at(object, "metadata.name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let (false, Some(uid), Some(name)) = (manual, uid, name) {
        if at(object, "spec.selector").is_none_or(Value::is_null) {
            set_at(
                object,
                "spec.selector",
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
            );
            let labels = json!({
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            });
            match object
                .pointer_mut("/spec/template/metadata/labels")
                .and_then(Value::as_object_mut)
            {
                Some(existing) => {
                    if let Some(add) = labels.as_object() {
                        for (k, v) in add {
                            existing.insert(k.clone(), v.clone());
                        }
                    }
                }
                None => set_at(object, "spec.template.metadata.labels", labels),
            }
        }
    }
    template(object);
}

fn job_spec(spec: &mut Value) {
    let completions_unset = spec.get("completions").is_none_or(Value::is_null);
    let parallelism_unset = spec.get("parallelism").is_none_or(Value::is_null);
    if completions_unset && parallelism_unset {
        default_at(spec, "completions", json!(1));
    }
    default_at(spec, "parallelism", json!(1));
    default_at(spec, "backoffLimit", json!(6));
    default_at(spec, "completionMode", json!("NonIndexed"));
    default_at(spec, "suspend", json!(false));
    default_at(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    default_at(spec, "manualSelector", Value::Null);
    if let Some(map) = spec.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
}

/// Defaults shared by pods and pod templates. `priority` and `preemptionPolicy` are not among
/// them: Priority admission sets both on each new pod from its class, and refuses a pod whose
/// given priority differs, so a template must not carry them.
pub fn pod_spec(spec: &mut Value) {
    default_at(spec, "restartPolicy", json!("Always"));
    default_at(spec, "terminationGracePeriodSeconds", json!(30));
    default_at(spec, "dnsPolicy", json!("ClusterFirst"));
    default_at(spec, "schedulerName", json!("default-scheduler"));
    default_at(spec, "securityContext", json!({}));
    default_at(spec, "serviceAccountName", json!("default"));
    if let Some(sa) = spec.get("serviceAccountName").cloned() {
        default_at(spec, "serviceAccount", sa);
    }
    default_at(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers {
                container(c);
            }
        }
    }
}

fn container(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    default_at(c, "imagePullPolicy", json!(pull_policy(image)));
    default_at(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_at(c, "terminationMessagePolicy", json!("File"));
    default_at(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            default_at(p, "protocol", json!("TCP"));
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` for everything else.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Upstream's DefaultTolerationSeconds admission: 300 s for not-ready and unreachable.
fn pod_tolerations(spec: &mut Value) {
    let keys = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ];
    let existing = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        existing.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (t_key == key || (t_key.is_empty() && op == "Exists"))
        })
    };
    let mut tolerations = existing.clone();
    for key in keys {
        if !tolerates(key) {
            tolerations.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
    if tolerations.len() != existing.len() {
        set_at(spec, "tolerations", Value::Array(tolerations));
    }
}

/// The pod's QoS class from its containers' requests and limits, as upstream computes it.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut containers: Vec<&Value> = Vec::new();
    for list in ["containers", "initContainers"] {
        if let Some(a) = spec.get(list).and_then(Value::as_array) {
            containers.extend(a.iter());
        }
    }
    let mut any_set = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        let relevant =
            |m: Option<&serde_json::Map<String, Value>>, r: &str| m.and_then(|m| m.get(r)).cloned();
        for r in ["cpu", "memory"] {
            let req = relevant(requests, r);
            let lim = relevant(limits, r);
            if req.is_some() || lim.is_some() {
                any_set = true;
            }
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn service(object: &mut Value) {
    default_at(object, "spec.type", json!("ClusterIP"));
    default_at(object, "spec.sessionAffinity", json!("None"));
    let ty = at(object, "spec.type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        default_at(object, "spec.ipFamilies", json!(["IPv4"]));
        default_at(object, "spec.ipFamilyPolicy", json!("SingleStack"));
        default_at(object, "spec.internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        default_at(object, "spec.externalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = object
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    {
        for p in ports {
            default_at(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default_at(p, "targetPort", port);
            }
        }
    }
    default_at(object, "status.loadBalancer", json!({}));
}

/// `stringData` is write-only: upstream folds it into base64 `data`.
fn merge_string_data(object: &mut Value) {
    use base64::Engine;
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Default::default()));
    if !data.is_object() {
        *data = Value::Object(Default::default());
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            if let Some(s) = v.as_str() {
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_upstream_defaults_and_default_tolerations() {
        let mut pod =
            json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"busybox"}]}});
        apply("Pod", &mut pod);
        assert_eq!(pod["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        let tol = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tol.len(), 2);
        assert_eq!(tol[1]["key"], "node.kubernetes.io/unreachable");
        assert_eq!(tol[1]["tolerationSeconds"], 300);
    }

    #[test]
    fn an_existing_toleration_is_not_doubled() {
        let mut pod = json!({"spec":{"containers":[],"tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":10}]}});
        apply("Pod", &mut pod);
        let tol = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tol.len(), 2);
        assert_eq!(tol[0]["tolerationSeconds"], 10);
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(pull_policy("localhost:5000/nginx:1"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn qos_classes() {
        let guaranteed =
            json!({"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]});
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burstable = json!({"containers":[{"resources":{"requests":{"cpu":"1"}}}]});
        assert_eq!(qos_class(&burstable), "Burstable");
    }

    #[test]
    fn deployments_get_strategy_and_history_defaults() {
        let mut d =
            json!({"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x:1"}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn jobs_get_a_generated_selector() {
        let mut j = json!({"metadata":{"name":"j","uid":"u1"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[]}}}});
        apply("Job", &mut j);
        assert_eq!(
            j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
    }

    #[test]
    fn services_default_ports_and_policies() {
        let mut s = json!({"spec":{"ports":[{"port":80}]}});
        apply("Service", &mut s);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["sessionAffinity"], "None");
    }

    #[test]
    fn namespaces_get_their_name_label_and_finalizer() {
        let mut n = json!({"metadata":{"name":"team-a"}});
        apply("Namespace", &mut n);
        assert_eq!(
            n["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        assert_eq!(n["spec"]["finalizers"][0], "kubernetes");
        assert_eq!(n["status"]["phase"], "Active");
        assert_eq!(n["metadata"]["labels"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let mut s = json!({"stringData":{"password":"hunter2"}});
        apply("Secret", &mut s);
        assert_eq!(s["data"]["password"], "aHVudGVyMg==");
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
    }
}
