//! The controller-manager benchmark: a Deployment scaled from 0 to N replicas, timed from the
//! scale until a watch has seen all N pods, beside the limit measured in the same run — the same
//! N pods created straight through the API server by a load generator at the same concurrency,
//! timed the same way. The two take turns for a few rounds, and the medians are compared, as
//! one round of each is a fraction of a second on a shared machine.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::scheduler::{create_namespace, follow_watch, for_each, list_resource_version, post};
use crate::watchcache::Api;
use crate::{percentile, ApiTarget, LoadError};

const DEPLOYMENT: &str = "bench";
const SETTLE: Duration = Duration::from_secs(30);

pub struct Plan {
    pub replicas: usize,
    pub concurrency: usize,
    pub rounds: u32,
    pub controller_manager_bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub work_dir: PathBuf,
}

fn template() -> Value {
    json!({
        "metadata": {"labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })
}

/// The limit: `replicas` pods like the Deployment's, posted straight to the API server into
/// `namespace`, until a watch has seen them all.
async fn direct(api: &Api, plan: &Plan, namespace: &str) -> Result<Duration, LoadError> {
    create_namespace(api, namespace).await?;
    let watch = spawn_created_watch(api, namespace, plan.replicas).await?;
    let started = Instant::now();
    let poster = api.clone();
    let pods = format!("/api/v1/namespaces/{namespace}/pods");
    for_each(plan.replicas, plan.concurrency, move |i| {
        let (api, pods) = (poster.clone(), pods.clone());
        async move {
            let mut pod = template();
            pod["apiVersion"] = json!("v1");
            pod["kind"] = json!("Pod");
            pod["metadata"]["name"] = json!(format!("direct-{i:05}"));
            post(&api, &pods, &pod).await
        }
    })
    .await?;
    let seen = watch
        .await
        .map_err(|e| LoadError::Unexpected(format!("the watch task failed: {e}")))??;
    Ok(seen
        .last()
        .map_or_else(|| started.elapsed(), |t| t.duration_since(started)))
}

/// A watch of `namespace`'s pods from now, until `count` were added; when each tenth was seen.
async fn spawn_created_watch(
    api: &Api,
    namespace: &str,
    count: usize,
) -> Result<tokio::task::JoinHandle<Result<Vec<Instant>, LoadError>>, LoadError> {
    let rv = list_resource_version(api, namespace).await?;
    let (api, namespace) = (api.clone(), namespace.to_string());
    Ok(tokio::spawn(async move {
        watch_until_created(&api, &namespace, &rv, count).await
    }))
}

/// Counts pods added in the namespace on a watch from `resource_version` until `count` exist;
/// when each tenth of them had been seen.
async fn watch_until_created(
    api: &Api,
    namespace: &str,
    resource_version: &str,
    count: usize,
) -> Result<Vec<Instant>, LoadError> {
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods?watch=true&resourceVersion={resource_version}"
    );
    let mut created: HashSet<String> = HashSet::new();
    let mut tenths = Vec::with_capacity(10);
    follow_watch(api, &path, |event| {
        if event["type"] == "ADDED" {
            if let Some(name) = event
                .pointer("/object/metadata/name")
                .and_then(Value::as_str)
            {
                created.insert(name.to_string());
            }
        }
        while tenths.len() < 10 && created.len() * 10 >= count * (tenths.len() + 1) {
            tenths.push(Instant::now());
        }
        created.len() >= count
    })
    .await?;
    Ok(tenths)
}

/// Waits until the Deployment's ReplicaSet exists and the replicaset controller has synced
/// it (its status observed its generation), so the measured time starts with both controllers
/// warm: a controller manager started beside earlier rounds' pods may still be listing them
/// when the deployment controller has already made the ReplicaSet.
async fn wait_for_replica_set(api: &Api, namespace: &str) -> Result<(), LoadError> {
    let deadline = Instant::now() + SETTLE;
    let path = format!("/apis/apps/v1/namespaces/{namespace}/replicasets");
    while Instant::now() < deadline {
        let list: Value = serde_json::from_slice(&api.get(&path).await?)?;
        let synced = |rs: &Value| {
            let generation = rs.pointer("/metadata/generation").and_then(Value::as_i64);
            let observed = rs
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64);
            generation.is_some() && observed >= generation
        };
        if list["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty() && items.iter().all(synced))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(LoadError::Unexpected(
        "no ReplicaSet of the Deployment was synced (is the controller manager running?)".into(),
    ))
}

/// The Deployment run: from the scale to 'replicas' until each tenth of the pods existed.
async fn scale_up(api: &Api, plan: &Plan, namespace: &str) -> Result<Vec<Duration>, LoadError> {
    create_namespace(api, namespace).await?;
    let log = std::fs::File::create(plan.work_dir.join("controller-manager.log"))?;
    let mut child = tokio::process::Command::new(&plan.controller_manager_bin)
        .arg("--kubeconfig")
        .arg(&plan.kubeconfig)
        .args([
            "--controllers=replicaset,deployment",
            "--secure-port=0",
            "--leader-elect=false",
        ])
        .env(
            "RUST_LOG",
            std::env::var("BENCH_KCM_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "bench"}}, "template": template()},
    });
    post(
        api,
        &format!("/apis/apps/v1/namespaces/{namespace}/deployments"),
        &deployment,
    )
    .await?;
    wait_for_replica_set(api, namespace).await?;
    let watch = spawn_created_watch(api, namespace, plan.replicas).await?;
    let started = Instant::now();
    api.merge_patch(
        &format!("/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT}"),
        &json!({"spec": {"replicas": plan.replicas}}),
    )
    .await?;
    let tenths = watch
        .await
        .map_err(|e| LoadError::Unexpected(format!("the watch task failed: {e}")))??;
    let _ = child.kill().await;
    Ok(tenths.iter().map(|t| t.duration_since(started)).collect())
}

/// The whole benchmark, printed as it goes.
pub async fn run(target: &ApiTarget<'_>, plan: &Plan) -> Result<(), LoadError> {
    let api = Api::connect(target).await?;
    let (mut limits, mut deployments) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds.max(1) {
        let limit = direct(&api, plan, &format!("bench-direct-{round}")).await?;
        println!(
            "round {round}: limit: {} pods created straight through the API server, {} concurrent: {:.2} s ({:.0} pods/s)",
            plan.replicas,
            plan.concurrency,
            limit.as_secs_f64(),
            plan.replicas as f64 / limit.as_secs_f64()
        );
        let tenths = scale_up(&api, plan, &format!("bench-deploy-{round}")).await?;
        let deployment = tenths.last().copied().unwrap_or_default();
        let milestones: Vec<String> = tenths
            .iter()
            .map(|t| format!("{:.0}", t.as_secs_f64() * 1000.0))
            .collect();
        println!(
            "round {round}: deployment: scaled 0 -> {} by hakube-controller-manager: {:.2} s ({:.0} pods/s); each tenth seen after (ms): {}",
            plan.replicas,
            deployment.as_secs_f64(),
            plan.replicas as f64 / deployment.as_secs_f64(),
            milestones.join(", ")
        );
        limits.push(limit);
        deployments.push(deployment);
    }
    let (limit, deployment) = (percentile(&limits, 0.5), percentile(&deployments, 0.5));
    println!(
        "median of {} rounds: limit {:.2} s, deployment {:.2} s (each until a watch saw every pod)",
        plan.rounds.max(1),
        limit.as_secs_f64(),
        deployment.as_secs_f64()
    );
    let ratio = deployment.as_secs_f64() / limit.as_secs_f64();
    println!(
        "ratio deployment/limit: {ratio:.2} (goal <= 1.5: {})",
        if ratio <= 1.5 { "met" } else { "NOT met" }
    );
    Ok(())
}
