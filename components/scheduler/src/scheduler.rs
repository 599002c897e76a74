//! The scheduler process: informers over pods and nodes feed the cache and the queue (in every
//! replica, so a new leader starts warm); the leader pops pods, runs the algorithm, assumes the
//! choice, and binds concurrently; failures get upstream's condition, event and preemption.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use prometheus_client::registry::Registry;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, Notify, Semaphore};

use crate::config::{ConfigError, SchedulerConfig};
use crate::core::algorithm::{Algorithm, FitError};
use crate::core::cache::ClusterCache;
use crate::core::framework::Profile;
use crate::core::node::NodeSchedulingView;
use crate::core::pod::{pod_key, PodInfo};
use crate::core::preemption::{self, Candidate};
use crate::core::queue::{QueuedPod, SchedulingQueue};
use crate::metrics::Metrics;
use crate::options::{Options, DEFAULT_SECURE_PORT};
use hakube_runtime::token_bucket::TokenBucket;

const COMPONENT: &str = "kube-scheduler";
/// Upstream's event broadcaster queue: events beyond it are dropped rather than slowing binds.
const MAX_QUEUED_EVENTS: usize = 1000;
const EVENT_WRITERS: usize = 4;
/// Events are written at most this often, with this burst: upstream's default
/// `clientConnection` qps and burst, which hold its scheduler's event client. A burst of
/// bindings then does not share the API server with as many Event writes; events beyond the
/// queue are dropped, as upstream's broadcaster drops them.
const EVENT_QPS: f64 = 50.0;
const EVENT_BURST: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] hakube_runtime::client::ClientError),
    #[error(transparent)]
    Serving(#[from] hakube_runtime::serving::ServingError),
    #[error(transparent)]
    LeaderElection(#[from] hakube_runtime::leader_election::LeaderElectionError),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An event to record about a pod.
struct EventRecord {
    pod: Arc<PodInfo>,
    type_: &'static str,
    reason: &'static str,
    action: &'static str,
    note: String,
}

struct Scheduler {
    client: kube::Client,
    profiles: HashMap<String, Profile>,
    cache: Mutex<ClusterCache>,
    queue: Mutex<SchedulingQueue>,
    queue_changed: Notify,
    pods_synced: AtomicBool,
    nodes_synced: AtomicBool,
    synced_changed: Notify,
    bind_slots: Arc<Semaphore>,
    events: mpsc::Sender<EventRecord>,
    metrics: Metrics,
    identity: String,
}

/// Runs the scheduler until it fails or, with leader election, loses its lease.
pub async fn run(options: Options) -> Result<(), SchedulerError> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting hakube-scheduler"
    );
    let config = match &options.config {
        Some(path) => SchedulerConfig::load(path)?,
        None => SchedulerConfig::default(),
    };
    let kubeconfig = options
        .component
        .kubeconfig
        .clone()
        .or_else(|| config.kubeconfig.clone().map(Into::into));
    let client = hakube_runtime::client::build(kubeconfig.as_deref()).await?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    hakube_runtime::serving::start(
        &options.component.serving,
        DEFAULT_SECURE_PORT,
        COMPONENT,
        Arc::new(registry),
    )
    .await?;
    let identity = hakube_runtime::leader_election::default_identity();
    let (events_tx, events_rx) = mpsc::channel(MAX_QUEUED_EVENTS);
    let scheduler = Arc::new(Scheduler {
        client: client.clone(),
        profiles: config
            .profiles
            .iter()
            .map(|p| (p.scheduler_name.clone(), p.clone()))
            .collect(),
        cache: Mutex::default(),
        queue: Mutex::default(),
        queue_changed: Notify::new(),
        pods_synced: AtomicBool::new(false),
        nodes_synced: AtomicBool::new(false),
        synced_changed: Notify::new(),
        bind_slots: Arc::new(Semaphore::new(config.parallelism)),
        events: events_tx,
        metrics,
        identity: identity.clone(),
    });
    tokio::spawn(scheduler.clone().watch_pods());
    tokio::spawn(scheduler.clone().watch_nodes());
    tokio::spawn(scheduler.clone().write_events(events_rx));
    let election = &options.component.leader_election;
    if election.leader_elect {
        let elector = hakube_runtime::leader_election::LeaderElector::new(
            client, election, COMPONENT, identity,
        )?;
        let leading = scheduler.clone();
        elector
            .run(async move {
                leading.metrics.is_leader.set(1);
                leading.schedule_forever().await;
            })
            .await?;
    } else {
        scheduler.schedule_forever().await;
    }
    Ok(())
}

impl Scheduler {
    fn ours(&self, pod: &PodInfo) -> bool {
        self.profiles.contains_key(&pod.scheduler_name)
    }

    fn update_pending(&self, queue: &SchedulingQueue) {
        self.metrics.set_pending(queue.pending());
    }

    /// A cluster change that may let waiting pods fit.
    fn move_unschedulable(&self, may_help: impl Fn(&PodInfo) -> bool) {
        let mut queue = lock(&self.queue);
        queue.move_unschedulable(Instant::now(), may_help);
        self.update_pending(&queue);
        drop(queue);
        self.queue_changed.notify_one();
    }

    fn on_pod(&self, pod: Pod) {
        let info = PodInfo::new(pod);
        if info.node_name.is_some() {
            let newly_bound = lock(&self.cache).add_or_update_bound(info.clone());
            {
                let mut queue = lock(&self.queue);
                queue.delete(&info.key);
                self.update_pending(&queue);
            }
            // A new pod on a node may satisfy a waiting pod's required affinity.
            if newly_bound {
                self.move_unschedulable(|p| !p.required_affinity.is_empty());
            }
            return;
        }
        if !self.ours(&info) {
            return;
        }
        {
            let mut cache = lock(&self.cache);
            if cache.is_assumed(&info.key) {
                // Its binding is in flight; the bound version will come through the watch.
                return;
            }
            let nominated = info.nominated_node_name.clone();
            cache.set_nominated(info.clone(), nominated.as_deref());
        }
        let mut queue = lock(&self.queue);
        if info.deleting {
            queue.delete(&info.key);
        } else {
            queue.add_or_update(info, Instant::now());
        }
        self.update_pending(&queue);
        drop(queue);
        self.queue_changed.notify_one();
    }

    fn on_pod_deleted(&self, key: &str) {
        let was_cached = {
            let mut cache = lock(&self.cache);
            if let Some(info) = cache.nominated_pod(key) {
                cache.set_nominated(info, None);
            }
            cache.remove_pod(key)
        };
        {
            let mut queue = lock(&self.queue);
            queue.delete(key);
            self.update_pending(&queue);
        }
        if was_cached {
            self.move_unschedulable(|_| true);
        }
    }

    async fn watch_pods(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = cache_list(
            watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
        );
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut listed: Option<HashSet<String>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(pod)) => {
                    if let Some(keys) = listed.as_mut() {
                        keys.insert(key_of(&pod.metadata));
                    }
                    self.on_pod(pod);
                }
                Ok(watcher::Event::InitDone) => {
                    // Pods that vanished while the watch was down.
                    if let Some(keys) = listed.take() {
                        let mut known = lock(&self.cache).pod_keys();
                        known.extend(lock(&self.queue).keys());
                        for key in known.into_iter().filter(|k| !keys.contains(k)) {
                            self.on_pod_deleted(&key);
                        }
                    }
                    tracing::debug!("pods listed");
                    self.pods_synced.store(true, Ordering::SeqCst);
                    self.synced_changed.notify_waiters();
                }
                Ok(watcher::Event::Apply(pod)) => self.on_pod(pod),
                Ok(watcher::Event::Delete(pod)) => self.on_pod_deleted(&key_of(&pod.metadata)),
                Err(error) => tracing::warn!(%error, "pod watch failed; retrying"),
            }
        }
    }

    fn on_node(&self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let view = NodeSchedulingView::of(node);
        let previous = lock(&self.cache).set_node(&name, view.clone());
        // Heartbeats change only conditions; anything that may let pods fit moves them.
        if previous.as_ref() != Some(&view) {
            self.move_unschedulable(|_| true);
        }
    }

    async fn watch_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut stream = watcher(api, cache_list(watcher::Config::default()))
            .default_backoff()
            .boxed();
        let mut listed: Option<HashSet<String>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(node)) => {
                    if let (Some(keys), Some(name)) = (listed.as_mut(), &node.metadata.name) {
                        keys.insert(name.clone());
                    }
                    self.on_node(&node);
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(keys) = listed.take() {
                        let mut cache = lock(&self.cache);
                        for name in cache.node_names() {
                            if !keys.contains(&name) {
                                cache.remove_node(&name);
                            }
                        }
                    }
                    tracing::debug!("nodes listed");
                    self.nodes_synced.store(true, Ordering::SeqCst);
                    self.synced_changed.notify_waiters();
                }
                Ok(watcher::Event::Apply(node)) => self.on_node(&node),
                Ok(watcher::Event::Delete(node)) => {
                    if let Some(name) = &node.metadata.name {
                        lock(&self.cache).remove_node(name);
                    }
                }
                Err(error) => tracing::warn!(%error, "node watch failed; retrying"),
            }
        }
    }

    async fn wait_for_sync(&self) {
        loop {
            let changed = self.synced_changed.notified();
            if self.pods_synced.load(Ordering::SeqCst) && self.nodes_synced.load(Ordering::SeqCst) {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
        }
    }

    /// The next pod to schedule, waiting for one to become active.
    async fn next_pod(&self) -> QueuedPod {
        loop {
            let wakeup = {
                let mut queue = lock(&self.queue);
                let now = Instant::now();
                let next_backoff = queue.flush(now);
                let popped = queue.pop();
                self.update_pending(&queue);
                if let Some(popped) = popped {
                    return popped;
                }
                next_backoff
                    .map(|t| t.saturating_duration_since(now))
                    .unwrap_or(Duration::from_secs(1))
                    // The unschedulable pods' 5-minute timeout is checked at least this often.
                    .min(Duration::from_secs(1))
            };
            let _ = tokio::time::timeout(wakeup, self.queue_changed.notified()).await;
        }
    }

    async fn schedule_forever(self: Arc<Self>) {
        self.wait_for_sync().await;
        tracing::info!("caches synced; scheduling");
        let mut algorithm = Algorithm::default();
        let mut rng = StdRng::from_os_rng();
        loop {
            let popped = self.next_pod().await;
            self.schedule_one(&mut algorithm, &mut rng, popped).await;
        }
    }

    async fn schedule_one(
        self: &Arc<Self>,
        algorithm: &mut Algorithm,
        rng: &mut StdRng,
        popped: QueuedPod,
    ) {
        let pod = popped.pod.clone();
        let Some(profile) = self.profiles.get(&pod.scheduler_name) else {
            lock(&self.queue).done(&pod.key);
            return;
        };
        let started = Instant::now();
        let outcome = {
            let mut cache = lock(&self.cache);
            if cache.contains(&pod.key) {
                drop(cache);
                lock(&self.queue).done(&pod.key);
                return;
            }
            match algorithm.schedule(&pod, &cache, profile, rng) {
                Ok(result) => {
                    cache.assume(pod.clone(), &result.node);
                    Ok(result.node)
                }
                Err(fit) => {
                    let preemption = profile
                        .preemption
                        .then(|| preemption::preempt(&pod, &cache, profile, &fit));
                    if let Some(Ok(candidate)) = &preemption {
                        cache.set_nominated(pod.clone(), Some(&candidate.node));
                    }
                    Err((fit, preemption))
                }
            }
        };
        self.metrics
            .algorithm_duration
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(node) => {
                {
                    let mut queue = lock(&self.queue);
                    queue.done(&pod.key);
                    self.update_pending(&queue);
                }
                // At most `parallelism` bindings in flight; the loop waits for a free slot.
                let Ok(permit) = self.bind_slots.clone().acquire_owned().await else {
                    return;
                };
                let this = self.clone();
                let profile_name = profile.scheduler_name.clone();
                tokio::spawn(async move {
                    this.bind(&popped, &node, &profile_name, started).await;
                    drop(permit);
                });
            }
            Err((fit, preemption)) => {
                self.metrics.attempt(
                    "unschedulable",
                    &profile.scheduler_name,
                    started.elapsed().as_secs_f64(),
                );
                {
                    let mut queue = lock(&self.queue);
                    queue.add_unschedulable(&popped, Instant::now());
                    self.update_pending(&queue);
                }
                self.handle_unschedulable(&pod, &fit, preemption);
            }
        }
    }

    fn handle_unschedulable(
        self: &Arc<Self>,
        pod: &Arc<PodInfo>,
        fit: &FitError,
        preemption: Option<Result<Candidate, String>>,
    ) {
        let mut message = fit.message();
        let mut nominate = None;
        match preemption {
            Some(Ok(candidate)) => {
                self.metrics.preemption_attempts.inc();
                self.metrics
                    .preemption_victims
                    .observe(candidate.victims.len() as f64);
                nominate = Some(candidate.node.clone());
                let this = self.clone();
                let preemptor = pod.clone();
                tokio::spawn(async move { this.evict_victims(&preemptor, candidate).await });
            }
            Some(Err(reason)) => {
                self.metrics.preemption_attempts.inc();
                message = format!("{message} preemption: {reason}");
            }
            None => {}
        }
        tracing::info!(pod = %pod.key, %message, "unable to schedule pod");
        self.record(
            pod.clone(),
            "Warning",
            "FailedScheduling",
            "Scheduling",
            message.clone(),
        );
        let this = self.clone();
        let pod = pod.clone();
        tokio::spawn(async move { this.mark_unschedulable(&pod, &message, nominate).await });
    }

    async fn bind(&self, popped: &QueuedPod, node: &str, profile: &str, started: Instant) {
        let pod = &popped.pod;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..ObjectReference::default()
            },
        };
        let bind_started = Instant::now();
        let result = api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &pod.name,
                &PostParams::default(),
                &binding,
            )
            .await;
        self.metrics
            .binding_duration
            .observe(bind_started.elapsed().as_secs_f64());
        match result {
            Ok(_) => {
                self.metrics
                    .attempt("scheduled", profile, started.elapsed().as_secs_f64());
                self.metrics
                    .pod_scheduling_sli_duration
                    .get_or_create(&crate::metrics::AttemptsLabels {
                        attempts: popped.attempts.to_string(),
                    })
                    .observe(popped.initial_attempt.elapsed().as_secs_f64());
                self.metrics
                    .pod_scheduling_attempts
                    .observe(f64::from(popped.attempts));
                self.record(
                    pod.clone(),
                    "Normal",
                    "Scheduled",
                    "Binding",
                    format!("Successfully assigned {} to {node}", pod.key),
                );
            }
            Err(error) => {
                self.metrics
                    .attempt("error", profile, started.elapsed().as_secs_f64());
                self.metrics.api_error("bind");
                lock(&self.cache).forget(&pod.key);
                let gone = matches!(&error, kube::Error::Api(s) if s.code == 404 || s.code == 409);
                tracing::warn!(pod = %pod.key, %node, %error, "binding failed");
                if !gone {
                    let mut queue = lock(&self.queue);
                    queue.add_backoff(pod.clone(), Instant::now());
                    self.update_pending(&queue);
                    drop(queue);
                    self.record(
                        pod.clone(),
                        "Warning",
                        "FailedScheduling",
                        "Scheduling",
                        format!("Binding rejected: {error}"),
                    );
                }
            }
        }
    }

    /// Upstream's PodScheduled=False condition, with the nominated node when preempting.
    async fn mark_unschedulable(&self, pod: &PodInfo, message: &str, nominated: Option<String>) {
        let status = pod.pod.status.as_ref();
        let same_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .is_some_and(|c| {
                c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
                    && c.message.as_deref() == Some(message)
            });
        if same_condition && (nominated.is_none() || nominated == pod.nominated_node_name) {
            return;
        }
        let mut patch = serde_json::json!({
            "status": {
                "conditions": [{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastProbeTime": null,
                    "lastTransitionTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                }]
            }
        });
        if let Some(node) = nominated {
            patch["status"]["nominatedNodeName"] = serde_json::json!(node);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        if let Err(error) = api
            .patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            self.metrics.api_error("patch_status");
            tracing::warn!(pod = %pod.key, %error, "updating the PodScheduled condition failed");
        }
    }

    async fn evict_victims(&self, preemptor: &PodInfo, candidate: Candidate) {
        for victim in &candidate.victims {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &victim.namespace);
            match api.delete(&victim.name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(victim = %victim.key, preemptor = %preemptor.key, node = %candidate.node, "preempting");
                    self.record(
                        victim.clone(),
                        "Normal",
                        "Preempted",
                        "Preempting",
                        format!(
                            "Preempted by pod {} on node {}",
                            preemptor.uid, candidate.node
                        ),
                    );
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(error) => {
                    self.metrics.api_error("delete");
                    tracing::warn!(victim = %victim.key, %error, "deleting a preemption victim failed");
                }
            }
        }
    }

    /// Queues an event; drops it when the writers are too far behind, as upstream does.
    fn record(
        &self,
        pod: Arc<PodInfo>,
        type_: &'static str,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) {
        let record = EventRecord {
            pod,
            type_,
            reason,
            action,
            note,
        };
        if self.events.try_send(record).is_err() {
            tracing::debug!("event queue full; dropping an event");
        }
    }

    async fn write_events(self: Arc<Self>, events: mpsc::Receiver<EventRecord>) {
        let mut bucket = TokenBucket::new(EVENT_QPS, EVENT_BURST, tokio::time::Instant::now());
        tokio_stream_from(events)
            .then(move |record| {
                let wait = bucket.reserve(tokio::time::Instant::now());
                async move {
                    tokio::time::sleep(wait).await;
                    record
                }
            })
            .for_each_concurrent(EVENT_WRITERS, |record| {
                let this = self.clone();
                async move { this.write_event(record).await }
            })
            .await;
    }

    async fn write_event(&self, record: EventRecord) {
        let pod = &record.pod;
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    pod.name,
                    now.as_nanosecond().unsigned_abs() ^ u128::from(rand::random::<u32>())
                )),
                namespace: Some(pod.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(record.type_.to_string()),
            reason: Some(record.reason.to_string()),
            action: Some(record.action.to_string()),
            note: Some(record.note),
            reporting_controller: Some(pod.scheduler_name.clone()),
            reporting_instance: Some(format!("{}-{}", pod.scheduler_name, self.identity)),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                resource_version: pod.pod.metadata.resource_version.clone(),
                ..ObjectReference::default()
            }),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            self.metrics.api_error("create_event");
            tracing::debug!(%error, "writing an event failed");
        }
    }
}

fn tokio_stream_from<T>(mut receiver: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

fn key_of(meta: &ObjectMeta) -> String {
    pod_key(
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// `config` listing from the API server's watch cache (`resourceVersion=0`), whole, as
/// upstream's reflectors start: kube sends `resourceVersion=0` only for an unpaged list, and
/// a paged one is read page by page from etcd.
fn cache_list(config: watcher::Config) -> watcher::Config {
    let mut config = config.any_semantic();
    config.page_size = None;
    config
}
