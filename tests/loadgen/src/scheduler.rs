//! The scheduler benchmark, in the shape of upstream's scheduler_perf "SchedulingBasic":
//! Ready nodes (no heartbeats), pending pods with small requests created beforehand, and
//! pods bound per second end to end through hakube-apiserver and etcd by a real
//! hakube-scheduler, beside the limit measured in the same run: the same number of Bindings
//! posted straight to the API server at the same concurrency. Also the algorithm's cost per
//! pod in process, over the same number of nodes with the adaptive percentageOfNodesToScore.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hakube_scheduler::core::algorithm::Algorithm;
use hakube_scheduler::core::cache::ClusterCache;
use hakube_scheduler::core::framework::Profile;
use hakube_scheduler::core::node::NodeSchedulingView;
use hakube_scheduler::core::pod::PodInfo;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use rand::SeedableRng;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::watchcache::Api;
use crate::{percentile, ApiTarget, LoadError};

const JSON: &str = "application/json";
const DIRECT_NAMESPACE: &str = "bench-direct";
const SCHEDULED_NAMESPACE: &str = "bench-sched";
/// Pods of the limit run name a scheduler nobody runs, so hakube-scheduler leaves them alone.
const DIRECT_SCHEDULER: &str = "bench-direct-binder";

pub struct Plan {
    pub nodes: usize,
    pub pods: usize,
    pub concurrency: usize,
    pub scheduler_bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub work_dir: PathBuf,
}

fn node(i: usize) -> Value {
    let name = format!("node-{i:05}");
    let resources =
        json!({"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {"capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
    })
}

fn pod(i: usize, scheduler: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i:05}"), "labels": {"app": "bench"}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}],
        },
    })
}

/// Runs `op(i)` for `i` in `0..count` on `concurrency` tasks; returns the time it took.
pub(crate) async fn for_each<F, Fut>(
    count: usize,
    concurrency: usize,
    op: F,
) -> Result<Duration, LoadError>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), LoadError>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (op, next) = (op.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, LoadError>(());
                }
                op(i).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| LoadError::Unexpected(format!("a task failed: {e}")))??;
    }
    Ok(start.elapsed())
}

pub(crate) async fn post(api: &Api, path: &str, body: &Value) -> Result<(), LoadError> {
    let bytes = Bytes::from(serde_json::to_vec(body)?);
    api.call(Method::POST, path, Some(JSON), bytes, StatusCode::CREATED)
        .await
        .map(|_| ())
}

pub(crate) async fn create_namespace(api: &Api, name: &str) -> Result<(), LoadError> {
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    match post(api, "/api/v1/namespaces", &body).await {
        Err(LoadError::Status { code: 409, .. }) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn create_pods(
    api: &Api,
    namespace: &str,
    count: usize,
    scheduler: &str,
) -> Result<Duration, LoadError> {
    let path: Arc<str> = format!("/api/v1/namespaces/{namespace}/pods").into();
    let scheduler: Arc<str> = scheduler.into();
    let api = api.clone();
    for_each(count, 64, move |i| {
        let (api, path, scheduler) = (api.clone(), path.clone(), scheduler.clone());
        async move { post(&api, &path, &pod(i, &scheduler)).await }
    })
    .await
}

/// The limit: every pod's Binding posted straight to the API server, timed as the scheduler
/// run is: until a watch of the namespace has seen every pod bound (so the API server also
/// keeps the pods' watch cache, as it does while a scheduler watches them).
async fn direct_bindings(api: &Api, plan: &Plan) -> Result<Duration, LoadError> {
    let watch = spawn_bound_watch(api, DIRECT_NAMESPACE, plan.pods).await?;
    let started = Instant::now();
    let (api, nodes) = (api.clone(), plan.nodes);
    for_each(plan.pods, plan.concurrency, move |i| {
        let api = api.clone();
        async move {
            let name = format!("pod-{i:05}");
            let binding = json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": DIRECT_NAMESPACE},
                "target": {"apiVersion": "v1", "kind": "Node", "name": format!("node-{:05}", i % nodes)}});
            post(&api, &format!("/api/v1/namespaces/{DIRECT_NAMESPACE}/pods/{name}/binding"), &binding).await
        }
    })
    .await?;
    let (_, last, _) = watch
        .await
        .map_err(|e| LoadError::Unexpected(format!("the watch task failed: {e}")))??;
    Ok(last.duration_since(started))
}

/// What the scheduler run measured.
pub struct SchedulerRun {
    /// From starting the scheduler process to the last pod seen bound.
    pub total: Duration,
    /// From the first pod seen bound to the last.
    pub binding_phase: Duration,
    pub per_node_max: usize,
}

/// Reads the watch at `path` event by event until `done` says so; an ended watch is an error.
pub(crate) async fn follow_watch(
    api: &Api,
    path: &str,
    mut done: impl FnMut(&Value) -> bool,
) -> Result<(), LoadError> {
    let resp = api.send(Method::GET, path, None, Bytes::new()).await?;
    if resp.status() != StatusCode::OK {
        return Err(LoadError::Status {
            code: resp.status().as_u16(),
            body: "watch refused".into(),
        });
    }
    let mut body = resp.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let Some(frame) = body.frame().await else {
            return Err(LoadError::Unexpected("the watch ended early".into()));
        };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if done(&event) {
                return Ok(());
            }
        }
    }
}

/// When the first and the last pod were seen bound, and how many went to each node.
type BoundWatch = (Instant, Instant, BTreeMap<String, usize>);

/// Counts pods seen bound on a watch of `namespace` until all `count` are.
async fn watch_until_bound(
    api: &Api,
    namespace: &str,
    resource_version: &str,
    count: usize,
) -> Result<BoundWatch, LoadError> {
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods?watch=true&resourceVersion={resource_version}&allowWatchBookmarks=false"
    );
    let mut bound: HashSet<String> = HashSet::new();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut first = None;
    follow_watch(api, &path, |event| {
        let object = &event["object"];
        if let (Some(name), Some(node)) = (
            object.pointer("/metadata/name").and_then(Value::as_str),
            object
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty()),
        ) {
            if bound.insert(name.to_string()) {
                first.get_or_insert_with(Instant::now);
                *per_node.entry(node.to_string()).or_insert(0) += 1;
            }
        }
        bound.len() >= count
    })
    .await?;
    let now = Instant::now();
    Ok((first.unwrap_or(now), now, per_node))
}

/// [`watch_until_bound`] from `namespace`'s current version, started before the bindings are.
async fn spawn_bound_watch(
    api: &Api,
    namespace: &'static str,
    count: usize,
) -> Result<tokio::task::JoinHandle<Result<BoundWatch, LoadError>>, LoadError> {
    let rv = list_resource_version(api, namespace).await?;
    let api = api.clone();
    Ok(tokio::spawn(async move {
        watch_until_bound(&api, namespace, &rv, count).await
    }))
}

pub(crate) async fn list_resource_version(api: &Api, namespace: &str) -> Result<String, LoadError> {
    let body = api
        .get(&format!("/api/v1/namespaces/{namespace}/pods?limit=1"))
        .await?;
    let list: Value = serde_json::from_slice(&body)?;
    list.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| LoadError::Unexpected("a list without a resourceVersion".into()))
}

async fn scheduler_run(api: &Api, plan: &Plan) -> Result<SchedulerRun, LoadError> {
    let config = plan.work_dir.join("scheduler-config.yaml");
    std::fs::write(
        &config,
        format!("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nparallelism: {}\n", plan.concurrency),
    )?;
    let log = std::fs::File::create(plan.work_dir.join("scheduler.log"))?;
    let watch = spawn_bound_watch(api, SCHEDULED_NAMESPACE, plan.pods).await?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&plan.scheduler_bin)
        .arg("--kubeconfig")
        .arg(&plan.kubeconfig)
        .arg("--config")
        .arg(&config)
        .args(["--secure-port=0", "--leader-elect=false"])
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()?;
    let outcome = watch
        .await
        .map_err(|e| LoadError::Unexpected(format!("the watch task failed: {e}")))?;
    let _ = child.kill().await;
    let (first, last, per_node) = outcome?;
    Ok(SchedulerRun {
        total: last.duration_since(started),
        binding_phase: last.duration_since(first),
        per_node_max: per_node.values().copied().max().unwrap_or(0),
    })
}

/// The algorithm alone: `pods` decisions over `nodes` nodes, each pod assumed after its
/// decision as the scheduler does. Returns each decision's time and the nodes evaluated.
pub fn algorithm_cost(nodes: usize, pods: usize) -> Result<(Vec<Duration>, usize), LoadError> {
    let mut cache = ClusterCache::default();
    for i in 0..nodes {
        let object: k8s_openapi::api::core::v1::Node = serde_json::from_value(node(i))?;
        let name = object.metadata.name.clone().unwrap_or_default();
        cache.set_node(&name, NodeSchedulingView::of(&object));
    }
    let profile = Profile::default_named("default-scheduler");
    let mut algorithm = Algorithm::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut times = Vec::with_capacity(pods);
    let mut evaluated = 0;
    for i in 0..pods {
        let mut object = pod(i, "default-scheduler");
        object["metadata"]["namespace"] = json!(SCHEDULED_NAMESPACE);
        let info = PodInfo::new(serde_json::from_value::<Pod>(object)?);
        let start = Instant::now();
        let result = algorithm
            .schedule(&info, &cache, &profile, &mut rng)
            .map_err(|e| LoadError::Unexpected(e.message()))?;
        cache.assume(info, &result.node);
        times.push(start.elapsed());
        evaluated = result.evaluated_nodes;
    }
    Ok((times, evaluated))
}

/// The whole benchmark, printed as it goes.
pub async fn run(target: &ApiTarget<'_>, plan: &Plan) -> Result<(), LoadError> {
    let (times, evaluated) = algorithm_cost(plan.nodes, plan.pods)?;
    let total: Duration = times.iter().sum();
    println!(
        "algorithm in process: {} pods over {} nodes (evaluating {} a pod): mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs a pod",
        plan.pods,
        plan.nodes,
        evaluated,
        total.as_secs_f64() * 1e6 / plan.pods.max(1) as f64,
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
    );

    let api = Api::connect(target).await?;
    let nodes_took = {
        let api = api.clone();
        for_each(plan.nodes, 64, move |i| {
            let api = api.clone();
            async move { post(&api, "/api/v1/nodes", &node(i)).await }
        })
        .await?
    };
    println!(
        "created {} Ready nodes in {:.1} s",
        plan.nodes,
        nodes_took.as_secs_f64()
    );

    create_namespace(&api, DIRECT_NAMESPACE).await?;
    let took = create_pods(&api, DIRECT_NAMESPACE, plan.pods, DIRECT_SCHEDULER).await?;
    println!(
        "limit: created {} pending pods in {:.1} s",
        plan.pods,
        took.as_secs_f64()
    );
    let direct = direct_bindings(&api, plan).await?;
    let direct_rate = plan.pods as f64 / direct.as_secs_f64();
    println!(
        "limit: {} Bindings posted straight to the API server, {} concurrent, until a watch saw them all: {:.1} s, {:.0} pods/s",
        plan.pods,
        plan.concurrency,
        direct.as_secs_f64(),
        direct_rate
    );

    create_namespace(&api, SCHEDULED_NAMESPACE).await?;
    let took = create_pods(&api, SCHEDULED_NAMESPACE, plan.pods, "default-scheduler").await?;
    println!(
        "scheduler: created {} pending pods in {:.1} s",
        plan.pods,
        took.as_secs_f64()
    );
    let run = scheduler_run(&api, plan).await?;
    let end_to_end = plan.pods as f64 / run.total.as_secs_f64();
    let binding = plan.pods as f64 / run.binding_phase.as_secs_f64();
    println!(
        "scheduler: {} pods bound by hakube-scheduler (parallelism {}): {:.1} s from process start ({:.0} pods/s), {:.1} s from the first binding ({:.0} pods/s); at most {} pods on a node",
        plan.pods,
        plan.concurrency,
        run.total.as_secs_f64(),
        end_to_end,
        run.binding_phase.as_secs_f64(),
        binding,
        run.per_node_max,
    );
    println!(
        "ratio scheduler/direct bindings: {:.2} from process start, {:.2} from the first binding (goal >= 0.70: {})",
        end_to_end / direct_rate,
        binding / direct_rate,
        if binding / direct_rate >= 0.7 { "met" } else { "NOT met" }
    );
    Ok(())
}
