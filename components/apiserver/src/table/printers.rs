//! One function per resource turning an object into its row's cells, as upstream's printers do
//! with `-o wide` (the server always prints every column; clients hide the wide ones).

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::format::{
    access_modes, condition, containers, int, is_true, label_selector, labels, len, list, or_none,
    or_unset, selector, since, storage_class, text, time,
};
use super::human_duration;
use super::quantity::canonical;

type Now = DateTime<Utc>;

fn name(obj: &Value) -> Value {
    text(&obj["metadata"]["name"]).into()
}

fn age(obj: &Value, now: Now) -> Value {
    since(time(&obj["metadata"]["creationTimestamp"]), now).into()
}

fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// The registry's default printer: name and creation time (RFC 3339, Go's zero time if unset).
pub(super) fn default(obj: &Value, _now: Now) -> Vec<Value> {
    let created = time(&obj["metadata"]["creationTimestamp"]).map_or_else(
        || "0001-01-01T00:00:00Z".to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    vec![name(obj), created.into()]
}

/// Why a container stopped, as the pod's Status column words it.
fn terminated_reason(terminated: &Value, prefix: &str) -> String {
    match text(&terminated["reason"]) {
        "" if int(&terminated["signal"]) != 0 => {
            format!("{prefix}Signal:{}", int(&terminated["signal"]))
        }
        "" => format!("{prefix}ExitCode:{}", int(&terminated["exitCode"])),
        reason => format!("{prefix}{reason}"),
    }
}

pub(super) fn pod(pod: &Value, now: Now) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let phase = text(&status["phase"]);
    let mut reason = match text(&status["reason"]) {
        "" => phase,
        r => r,
    }
    .to_string();
    if list(&status["conditions"])
        .iter()
        .any(|c| text(&c["type"]) == "PodScheduled" && text(&c["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    // Sidecars (restartable init containers) count as the pod's containers.
    let init_specs = list(&spec["initContainers"]);
    let sidecar = |c: &Value| text(&c["restartPolicy"]) == "Always";
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .any(|c| text(&c["name"]) == name && sidecar(c))
    };
    let total = list(&spec["containers"]).len() + init_specs.iter().filter(|c| sidecar(c)).count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart = None;
    let mut sidecar_restarts = 0;
    let mut last_sidecar_restart = None;

    let mut initializing = false;
    for (i, c) in list(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&c["restartCount"]);
        let finished = time(&c["lastState"]["terminated"]["finishedAt"]);
        restarts += count;
        last_restart = last_restart.max(finished);
        let restartable = is_sidecar(text(&c["name"]));
        if restartable {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = &c["state"]["terminated"];
        let waiting = text(&c["state"]["waiting"]["reason"]);
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if restartable && is_true(&c["started"]) {
            if is_true(&c["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            terminated_reason(terminated, "Init:")
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition(&status["conditions"], "Initialized") == Some("True") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // The first container's state wins, so walk them backwards.
        for c in list(&status["containerStatuses"]).iter().rev() {
            restarts += int(&c["restartCount"]);
            last_restart = last_restart.max(time(&c["lastState"]["terminated"]["finishedAt"]));
            let waiting = text(&c["state"]["waiting"]["reason"]);
            let terminated = &c["state"]["terminated"];
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if terminated.is_object() {
                reason = terminated_reason(terminated, "");
            } else if is_true(&c["ready"]) && c["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod with a finished container but another still running is not "Completed".
        if reason == "Completed" && has_running {
            let pod_ready = list(&status["conditions"])
                .iter()
                .any(|c| text(&c["type"]) == "Ready" && text(&c["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    if deleting(pod) && text(&status["reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting(pod) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };
    // Decoding fills podIPs from podIP when only the latter is set.
    let ip = match list(&status["podIPs"]).first() {
        Some(first) => text(&first["ip"]),
        None => text(&status["podIP"]),
    };
    let gates = list(&spec["readinessGates"]);
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = gates
            .iter()
            .filter(|g| condition(&status["conditions"], text(&g["conditionType"])) == Some("True"))
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts.into(),
        age(pod, now),
        or_none(ip).into(),
        or_none(text(&spec["nodeName"])).into(),
        or_none(text(&status["nominatedNodeName"])).into(),
        gates.into(),
    ]
}

/// Upstream marks finished pods' rows as Completed.
pub(super) fn pod_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match text(&pod["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// Desired replicas; decoding defaults an unset count to 1.
fn replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

pub(super) fn deployment(obj: &Value, now: Now) -> Vec<Value> {
    let status = &obj["status"];
    let [names, images] = containers(&obj["spec"]["template"]);
    // Unlike the other workloads, upstream prints this selector bare: "" when it has none.
    let selector = selector(&obj["spec"]["selector"]).unwrap_or_else(|()| "<invalid>".into());
    vec![
        name(obj),
        format!("{}/{}", int(&status["readyReplicas"]), replicas(obj)).into(),
        int(&status["updatedReplicas"]).into(),
        int(&status["availableReplicas"]).into(),
        age(obj, now),
        names,
        images,
        selector.into(),
    ]
}

pub(super) fn replica_set(obj: &Value, now: Now) -> Vec<Value> {
    let status = &obj["status"];
    let [names, images] = containers(&obj["spec"]["template"]);
    vec![
        name(obj),
        replicas(obj).into(),
        int(&status["replicas"]).into(),
        int(&status["readyReplicas"]).into(),
        age(obj, now),
        names,
        images,
        label_selector(&obj["spec"]["selector"]).into(),
    ]
}

pub(super) fn stateful_set(obj: &Value, now: Now) -> Vec<Value> {
    let [names, images] = containers(&obj["spec"]["template"]);
    vec![
        name(obj),
        format!("{}/{}", int(&obj["status"]["readyReplicas"]), replicas(obj)).into(),
        age(obj, now),
        names,
        images,
    ]
}

pub(super) fn daemon_set(obj: &Value, now: Now) -> Vec<Value> {
    let status = &obj["status"];
    let template = &obj["spec"]["template"];
    let [names, images] = containers(template);
    vec![
        name(obj),
        int(&status["desiredNumberScheduled"]).into(),
        int(&status["currentNumberScheduled"]).into(),
        int(&status["numberReady"]).into(),
        int(&status["updatedNumberScheduled"]).into(),
        int(&status["numberAvailable"]).into(),
        labels(&template["spec"]["nodeSelector"]).into(),
        age(obj, now),
        names,
        images,
        label_selector(&obj["spec"]["selector"]).into(),
    ]
}

pub(super) fn job(obj: &Value, now: Now) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (time(&status["startTime"]), time(&status["completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let has = |kind: &str| condition(&status["conditions"], kind) == Some("True");
    let state = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if deleting(obj) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let [names, images] = containers(&spec["template"]);
    vec![
        name(obj),
        state.into(),
        completions.into(),
        duration.into(),
        age(obj, now),
        names,
        images,
        label_selector(&spec["selector"]).into(),
    ]
}

pub(super) fn cron_job(obj: &Value, now: Now) -> Vec<Value> {
    let spec = &obj["spec"];
    let last_schedule = match time(&obj["status"]["lastScheduleTime"]) {
        Some(t) => since(Some(t), now),
        None => "<none>".to_string(),
    };
    let suspend = match spec["suspend"].as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let [names, images] = containers(&job_spec["template"]);
    vec![
        name(obj),
        text(&spec["schedule"]).into(),
        spec["timeZone"].as_str().unwrap_or("<none>").into(),
        suspend.into(),
        len(&obj["status"]["active"]).into(),
        last_schedule.into(),
        age(obj, now),
        names,
        images,
        label_selector(&job_spec["selector"]).into(),
    ]
}

/// The External-IP cell (upstream's wide form: load balancer addresses are not clipped).
fn service_external_ip(svc: &Value) -> String {
    let spec = &svc["spec"];
    let external: Vec<&str> = list(&spec["externalIPs"]).iter().map(text).collect();
    match text(&spec["type"]) {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = list(&svc["status"]["loadBalancer"]["ingress"])
                .iter()
                .map(|i| match text(&i["ip"]) {
                    "" => text(&i["hostname"]),
                    ip => ip,
                })
                .filter(|a| !a.is_empty())
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external).collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(&spec["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

pub(super) fn service(svc: &Value, now: Now) -> Vec<Value> {
    let spec = &svc["spec"];
    // Decoding fills clusterIPs from clusterIP when only the latter is set.
    let cluster_ip = match list(&spec["clusterIPs"]).first() {
        Some(ip) => text(ip),
        None => text(&spec["clusterIP"]),
    };
    let ports: Vec<String> = list(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            match int(&p["nodePort"]) {
                n if n > 0 => format!("{}:{n}/{protocol}", int(&p["port"])),
                _ => format!("{}/{protocol}", int(&p["port"])),
            }
        })
        .collect();
    vec![
        name(svc),
        text(&spec["type"]).into(),
        or_none(cluster_ip).into(),
        service_external_ip(svc).into(),
        or_none(&ports.join(",")).into(),
        age(svc, now),
        labels(&spec["selector"]).into(),
    ]
}

/// Upstream's formatEndpoints: the first three addresses (with each port), then a count of the
/// rest.
fn format_endpoints(endpoints: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(&endpoints["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = list(&subset["addresses"]);
        let ports = list(&subset["ports"]);
        // Headless services may have addresses without ports.
        let ports: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(int(&p["port"]))).collect()
        };
        for port in ports {
            count += addresses.len();
            for address in addresses.iter().take(MAX.saturating_sub(shown.len())) {
                let ip = text(&address["ip"]);
                shown.push(match port {
                    None => ip.to_string(),
                    Some(port) if ip.contains(':') => format!("[{ip}]:{port}"),
                    Some(port) => format!("{ip}:{port}"),
                });
            }
        }
    }
    let joined = shown.join(",");
    if count > shown.len() {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

pub(super) fn endpoints(obj: &Value, now: Now) -> Vec<Value> {
    vec![name(obj), format_endpoints(obj).into(), age(obj, now)]
}

pub(super) fn node(node: &Value, now: Now) -> Vec<Value> {
    let status = &node["status"];
    // Only the Ready condition is shown; the last one listed wins, as in upstream's map.
    let ready = list(&status["conditions"])
        .iter()
        .rev()
        .find(|c| text(&c["type"]) == "Ready");
    let mut state = vec![match ready {
        Some(c) if text(&c["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if is_true(&node["spec"]["unschedulable"]) {
        state.push("SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if k == "kubernetes.io/role" => Some(text(v)),
            None => None,
        })
        .filter(|role| !role.is_empty())
        .collect();
    let address = |kind: &str| {
        list(&status["addresses"])
            .iter()
            .find(|a| text(&a["type"]) == kind)
            .map_or("<none>", |a| text(&a["address"]))
    };
    let info = &status["nodeInfo"];
    let known = |field: &str| match text(&info[field]) {
        "" => "<unknown>",
        v => v,
    };
    vec![
        name(node),
        state.join(",").into(),
        or_none(&roles.into_iter().collect::<Vec<_>>().join(",")).into(),
        age(node, now),
        text(&info["kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        known("osImage").into(),
        known("kernelVersion").into(),
        known("containerRuntimeVersion").into(),
    ]
}

pub(super) fn namespace(obj: &Value, now: Now) -> Vec<Value> {
    vec![
        name(obj),
        text(&obj["status"]["phase"]).into(),
        age(obj, now),
    ]
}

pub(super) fn config_map(obj: &Value, now: Now) -> Vec<Value> {
    let data = len(&obj["data"]) + len(&obj["binaryData"]);
    vec![name(obj), data.into(), age(obj, now)]
}

pub(super) fn secret(obj: &Value, now: Now) -> Vec<Value> {
    vec![
        name(obj),
        text(&obj["type"]).into(),
        len(&obj["data"]).into(),
        age(obj, now),
    ]
}

/// The field named `a`, else the one named `b`.
fn either<'a>(obj: &'a Value, a: &str, b: &str) -> &'a Value {
    match &obj[a] {
        Value::Null => &obj[b],
        v => v,
    }
}

/// Events in core/v1 or events.k8s.io/v1 form (the latter renames several fields).
pub(super) fn event(ev: &Value, now: Now) -> Vec<Value> {
    let field = |core: &str, events: &str| either(ev, core, events);
    let first = match time(field("firstTimestamp", "deprecatedFirstTimestamp")) {
        Some(t) => since(Some(t), now),
        None => since(time(&ev["eventTime"]), now),
    };
    let mut last = match time(field("lastTimestamp", "deprecatedLastTimestamp")) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int(field("count", "deprecatedCount"));
    let series = &ev["series"];
    if series.is_object() {
        last = since(time(&series["lastObservedTime"]), now);
        count = int(&series["count"]);
    } else if count == 0 {
        // Singleton events don't have a count in the new API.
        count = 1;
    }
    let regarding = field("involvedObject", "regarding");
    let kind = text(&regarding["kind"]).to_lowercase();
    let target = match text(&regarding["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let source = field("source", "deprecatedSource");
    let first_set = |a: &'static str, b: &'static str| match text(&source[a]) {
        "" => text(&ev[b]),
        v => v,
    };
    let component = first_set("component", "reportingController");
    let source = match first_set("host", "reportingInstance") {
        "" => component.to_string(),
        host => format!("{component}, {host}"),
    };
    vec![
        last.into(),
        text(&ev["type"]).into(),
        text(&ev["reason"]).into(),
        target.into(),
        text(&regarding["fieldPath"]).into(),
        source.into(),
        text(field("message", "note")).trim().into(),
        first.into(),
        count.into(),
        name(ev),
    ]
}

pub(super) fn lease(obj: &Value, now: Now) -> Vec<Value> {
    vec![
        name(obj),
        text(&obj["spec"]["holderIdentity"]).into(),
        age(obj, now),
    ]
}

/// A storage quantity's canonical spelling, "0" when unset.
fn storage(resources: &Value) -> String {
    match &resources["storage"] {
        Value::String(q) => canonical(q),
        // Go also accepts a bare JSON number for a quantity.
        Value::Number(n) => canonical(&n.to_string()),
        _ => "0".to_string(),
    }
}

pub(super) fn persistent_volume(pv: &Value, now: Now) -> Vec<Value> {
    let spec = &pv["spec"];
    let claim = &spec["claimRef"];
    let claim = if claim.is_object() {
        format!("{}/{}", text(&claim["namespace"]), text(&claim["name"]))
    } else {
        String::new()
    };
    let phase = if deleting(pv) {
        "Terminating"
    } else {
        text(&pv["status"]["phase"])
    };
    vec![
        name(pv),
        storage(&spec["capacity"]).into(),
        access_modes(&spec["accessModes"]).into(),
        text(&spec["persistentVolumeReclaimPolicy"]).into(),
        phase.into(),
        claim.into(),
        storage_class(pv).into(),
        or_unset(&spec["volumeAttributesClassName"]).into(),
        text(&pv["status"]["reason"]).into(),
        age(pv, now),
        or_unset(&spec["volumeMode"]).into(),
    ]
}

pub(super) fn persistent_volume_claim(pvc: &Value, now: Now) -> Vec<Value> {
    let spec = &pvc["spec"];
    let status = &pvc["status"];
    let phase = if deleting(pvc) {
        "Terminating"
    } else {
        text(&status["phase"])
    };
    let volume = text(&spec["volumeName"]);
    // Capacity and modes are the bound volume's, so blank until bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            storage(&status["capacity"]),
            access_modes(&status["accessModes"]),
        )
    };
    vec![
        name(pvc),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(pvc).into(),
        or_unset(&spec["volumeAttributesClassName"]).into(),
        age(pvc, now),
        or_unset(&spec["volumeMode"]).into(),
    ]
}
