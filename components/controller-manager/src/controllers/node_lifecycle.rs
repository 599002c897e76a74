//! node-lifecycle-controller: watches every node's heartbeats (its Lease in `kube-node-lease`
//! and its Ready condition), marks the conditions of a node that stopped posting `Unknown`,
//! and taints unhealthy nodes: `NoSchedule` at once, `NoExecute` (which the
//! taint-eviction-controller acts on) at a per-zone rate that slows down when a zone is
//! partially disrupted and stops when every zone is down.
//!
//! Heartbeats are judged by when this controller *saw* them change (upstream's probe
//! timestamp), never by the timestamps they carry, so clock skew between hosts is harmless.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hakube_runtime::token_bucket::TokenBucket;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::context::Context;
use crate::controllers::informer;
use crate::metrics::ZoneLabels;

const QUEUE: &str = "node_lifecycle_controller";
const CONTROLLER: &str = "node-controller";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// How often the rate-limited NoExecute tainting queue is worked (upstream's NodeEvictionPeriod).
const EVICTION_PERIOD: Duration = Duration::from_millis(100);

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
const NO_EXECUTE: &str = "NoExecute";
const NO_SCHEDULE: &str = "NoSchedule";
/// Conditions set to Unknown alongside Ready when the kubelet falls silent.
const OTHER_CONDITIONS: [&str; 3] = ["MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating node {node}: {source}")]
    Update { node: String, source: kube::Error },
    #[error("listing pods on node {node}: {source}")]
    ListPods { node: String, source: kube::Error },
}

/// What this controller remembers of one node's heartbeats.
#[derive(Debug, Clone)]
pub struct Health {
    /// When a heartbeat was last seen to change (this host's clock).
    pub probe: Instant,
    ready_heartbeat: Option<Timestamp>,
    lease_renew: Option<Timestamp>,
    /// The Ready status last observed, to notice the moment a node stops being Ready.
    pub ready: Option<String>,
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The Ready condition's status (`None` when the kubelet never posted one).
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// Folds a fresh look at the node and its Lease into what was known: the probe time moves on
/// when the Ready heartbeat or the Lease renewal changed (or on first sight).
pub fn observe(
    previous: Option<&Health>,
    node: &Node,
    lease: Option<&Lease>,
    now: Instant,
) -> Health {
    let ready_heartbeat = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let lease_renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let ready = ready_status(node).map(str::to_string);
    match previous {
        None => Health {
            probe: now,
            ready_heartbeat,
            lease_renew,
            ready,
        },
        Some(previous) => {
            let heartbeat_changed = ready_heartbeat != previous.ready_heartbeat;
            let renewed = match (lease_renew, previous.lease_renew) {
                (Some(new), Some(old)) => new > old,
                (Some(_), None) => true,
                _ => false,
            };
            Health {
                probe: if heartbeat_changed || renewed {
                    now
                } else {
                    previous.probe
                },
                ready_heartbeat,
                lease_renew,
                ready: previous.ready.clone(),
            }
        }
    }
}

/// The node's conditions once its silence is accounted for: `None` while it is within its grace
/// period (the startup grace period when it never posted Ready) or already marked Unknown.
pub fn silenced_conditions(
    node: &Node,
    health: &Health,
    now: Instant,
    grace: Duration,
    startup_grace: Duration,
    wall_now: Timestamp,
) -> Option<Vec<NodeCondition>> {
    let never_posted = condition(node, "Ready").is_none();
    let period = if never_posted { startup_grace } else { grace };
    if now.duration_since(health.probe) <= period {
        return None;
    }
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let created = node.metadata.creation_timestamp.clone();
    let mut changed = false;
    for type_ in std::iter::once("Ready").chain(OTHER_CONDITIONS) {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(NodeCondition {
                    type_: type_.to_string(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: created.clone(),
                    last_transition_time: Some(Time(wall_now)),
                });
                changed = true;
            }
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(wall_now));
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed.then_some(conditions)
}

/// The NoSchedule taints this controller keeps in line with the node's conditions.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

fn taint(key: &str, effect: &str, added: Option<Timestamp>) -> Taint {
    Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        time_added: added.map(Time),
        value: None,
    }
}

/// The node's taints with the NoSchedule ones this controller owns matching its conditions
/// (and `spec.unschedulable`); `None` when nothing changes.
pub fn no_schedule_taints(node: &Node) -> Option<Vec<Taint>> {
    let mut wanted: BTreeSet<&str> = CONDITION_TAINTS
        .iter()
        .filter(|(type_, status, _)| condition(node, type_).is_some_and(|c| c.status == *status))
        .map(|(_, _, key)| *key)
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.insert(TAINT_UNSCHEDULABLE);
    }
    let managed = |key: &str| {
        key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key)
    };
    let current = taints(node);
    let mut result: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !(t.effect == NO_SCHEDULE && managed(&t.key) && !wanted.contains(t.key.as_str()))
        })
        .cloned()
        .collect();
    for key in wanted {
        if !result
            .iter()
            .any(|t| t.effect == NO_SCHEDULE && t.key == key)
        {
            result.push(taint(key, NO_SCHEDULE, None));
        }
    }
    (result != current).then_some(result)
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

/// What to do about a node's NoExecute taints given its Ready status.
#[derive(Debug, PartialEq)]
pub enum NoExecute {
    /// Healthy: remove any unreachable/not-ready NoExecute taint, stop waiting to add one.
    Clear,
    /// Already tainted as it should be.
    Keep,
    /// Tainted for the other kind of trouble: swap the taint now (no rate limit, as upstream).
    Swap(Vec<Taint>),
    /// Not tainted yet: wait for the zone's rate limiter.
    Enqueue,
}

/// The NoExecute taint a node with this Ready status should carry.
fn no_execute_key(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("False") => Some(TAINT_NOT_READY),
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => None,
    }
}

pub fn no_execute_decision(node: &Node, wall_now: Timestamp) -> NoExecute {
    let Some(status) = ready_status(node) else {
        return NoExecute::Keep;
    };
    let current = taints(node);
    let has = |key: &str| {
        current
            .iter()
            .any(|t| t.effect == NO_EXECUTE && t.key == key)
    };
    match no_execute_key(Some(status)) {
        None => NoExecute::Clear,
        Some(want) => {
            let other = if want == TAINT_NOT_READY {
                TAINT_UNREACHABLE
            } else {
                TAINT_NOT_READY
            };
            if has(want) {
                NoExecute::Keep
            } else if has(other) {
                let mut swapped: Vec<Taint> = current
                    .into_iter()
                    .filter(|t| !(t.effect == NO_EXECUTE && t.key == other))
                    .collect();
                swapped.push(taint(want, NO_EXECUTE, Some(wall_now)));
                NoExecute::Swap(swapped)
            } else {
                NoExecute::Enqueue
            }
        }
    }
}

/// The node's taints with its unreachable/not-ready NoExecute taints gone; `None` if it had none.
pub fn without_no_execute(node: &Node) -> Option<Vec<Taint>> {
    let current = taints(node);
    let kept: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !(t.effect == NO_EXECUTE && (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY))
        })
        .cloned()
        .collect();
    (kept.len() != current.len()).then_some(kept)
}

/// The node's taints with the NoExecute taint its Ready status calls for added (stamped now);
/// `None` when it needs none or has it.
pub fn with_no_execute(node: &Node, wall_now: Timestamp) -> Option<Vec<Taint>> {
    let want = no_execute_key(ready_status(node))?;
    let mut current = taints(node);
    if current
        .iter()
        .any(|t| t.effect == NO_EXECUTE && t.key == want)
    {
        return None;
    }
    current.retain(|t| {
        !(t.effect == NO_EXECUTE && (t.key == TAINT_UNREACHABLE || t.key == TAINT_NOT_READY))
    });
    current.push(taint(want, NO_EXECUTE, Some(wall_now)));
    Some(current)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// A zone's state from its nodes' Ready statuses (anything but True counts as not ready).
pub fn zone_state(ready: &[Option<&str>], unhealthy_threshold: f64) -> (usize, ZoneState) {
    let ready_nodes = ready.iter().filter(|r| **r == Some("True")).count();
    let not_ready = ready.len() - ready_nodes;
    let state = if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / ready.len() as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// The tainting rate for a zone in `state` with `size` nodes: the secondary rate for a
/// partially disrupted large zone, none for a small one, the normal rate otherwise (a zone
/// that is entirely down while others are up is evicted normally, as upstream).
pub fn zone_rate(state: ZoneState, size: usize, options: &crate::options::NodeOptions) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > options.large_cluster_size_threshold => {
            options.secondary_eviction_rate
        }
        ZoneState::PartialDisruption => 0.0,
        ZoneState::Normal | ZoneState::FullDisruption => options.eviction_rate,
    }
}

/// One zone's nodes waiting for their NoExecute taint, and how fast they may get it.
struct ZoneQueue {
    state: ZoneState,
    /// Upstream's eviction limiter: a burst of 1.
    limiter: TokenBucket,
    pending: VecDeque<String>,
}

fn zone_of(node: &Node) -> String {
    node.labels().get(ZONE_LABEL).cloned().unwrap_or_default()
}

struct Lifecycle {
    ctx: Arc<Context>,
    nodes: Api<Node>,
    recorder: Recorder,
    health: HashMap<String, Health>,
    zones: BTreeMap<String, ZoneQueue>,
    /// Every zone is fully disrupted: evictions stop and taints are lifted (upstream's
    /// master disruption mode).
    all_disrupted: bool,
}

pub async fn run(ctx: Arc<Context>) {
    let changed = Arc::new(Notify::new());
    let nodes = informer::cache(
        Api::<Node>::all(ctx.client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    let leases = informer::cache(
        Api::<Lease>::namespaced(ctx.client.clone(), LEASE_NAMESPACE),
        watcher::Config::default(),
        changed,
    );
    if nodes.wait_until_ready().await.is_err() || leases.wait_until_ready().await.is_err() {
        return;
    }
    let mut lifecycle = Lifecycle {
        nodes: Api::all(ctx.client.clone()),
        recorder: ctx.recorder(CONTROLLER),
        ctx: ctx.clone(),
        health: HashMap::new(),
        zones: BTreeMap::new(),
        all_disrupted: false,
    };
    let mut monitor = tokio::time::interval(ctx.options.node.monitor_period);
    let mut eviction = tokio::time::interval(EVICTION_PERIOD);
    loop {
        tokio::select! {
            _ = monitor.tick() => {
                let timer = ctx.metrics.sync(QUEUE);
                let snapshot: Vec<Arc<Node>> = nodes.state();
                let leases: HashMap<String, Arc<Lease>> =
                    leases.state().into_iter().map(|l| (l.name_any(), l)).collect();
                let result = lifecycle.monitor(&snapshot, &leases).await;
                if let Err(error) = &result {
                    tracing::warn!(%error, "node health pass failed");
                }
                timer.done(result.is_ok());
            }
            _ = eviction.tick() => lifecycle.taint_pass().await,
        }
    }
}

impl Lifecycle {
    async fn monitor(
        &mut self,
        nodes: &[Arc<Node>],
        leases: &HashMap<String, Arc<Lease>>,
    ) -> Result<(), Error> {
        let now = Instant::now();
        let options = self.ctx.options.node.clone();
        let names: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        let gone: Vec<String> = self
            .health
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.health.remove(&name);
            for zone in self.zones.values_mut() {
                zone.pending.retain(|n| *n != name);
            }
            self.event_for_name(
                &name,
                "RemovingNode",
                format!("Node {name} event: Removing Node {name} from Controller"),
            )
            .await;
        }
        let mut first_error = None;
        let mut ready_by_zone: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for node in nodes {
            let name = node.name_any();
            let first_sight = !self.health.contains_key(&name);
            let mut health = observe(
                self.health.get(&name),
                node,
                leases.get(&name).map(Arc::as_ref),
                now,
            );
            if first_sight {
                self.event(
                    node,
                    "RegisteredNode",
                    format!("Node {name} event: Registered Node {name} in Controller"),
                )
                .await;
            }
            let mut current = (**node).clone();
            if let Some(conditions) = silenced_conditions(
                node,
                &health,
                now,
                options.monitor_grace_period,
                options.startup_grace_period,
                Timestamp::now(),
            ) {
                tracing::info!(node = %name, "node stopped posting status; marking it Unknown");
                current
                    .status
                    .get_or_insert_with(Default::default)
                    .conditions = Some(conditions);
                match self
                    .nodes
                    .replace_status(&name, &PostParams::default(), &current)
                    .await
                {
                    Ok(updated) => current = updated,
                    Err(source) => {
                        first_error.get_or_insert(Error::Update {
                            node: name.clone(),
                            source,
                        });
                        current = (**node).clone();
                    }
                }
            }
            let status_now = ready_status(&current).map(str::to_string);
            if health.ready.as_deref() == Some("True") && status_now.as_deref() != Some("True") {
                self.event(
                    &current,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
                if let Err(error) = self.mark_pods_not_ready(&name).await {
                    first_error.get_or_insert(error);
                }
            }
            health.ready = status_now.clone();
            self.health.insert(name.clone(), health);
            ready_by_zone
                .entry(zone_of(&current))
                .or_default()
                .push(status_now);
            if let Err(error) = self.taint_for_conditions(&current).await {
                first_error.get_or_insert(error);
            }
        }
        self.handle_disruption(&ready_by_zone, nodes, now).await;
        first_error.map_or(Ok(()), Err)
    }

    /// NoSchedule taints follow the conditions at once; NoExecute ones are swapped, cleared or
    /// queued for the zone's rate limiter.
    async fn taint_for_conditions(&mut self, node: &Node) -> Result<(), Error> {
        let name = node.name_any();
        let mut node = node.clone();
        if no_schedule_taints(&node).is_some() {
            match self.update_taints(&name, no_schedule_taints).await? {
                Some(updated) => node = updated,
                None => return Ok(()),
            }
        }
        if self.all_disrupted {
            return Ok(());
        }
        match no_execute_decision(&node, Timestamp::now()) {
            NoExecute::Keep => {}
            NoExecute::Swap(_) => {
                self.update_taints(&name, |n| match no_execute_decision(n, Timestamp::now()) {
                    NoExecute::Swap(taints) => Some(taints),
                    _ => None,
                })
                .await?;
            }
            NoExecute::Clear => {
                for zone in self.zones.values_mut() {
                    zone.pending.retain(|n| *n != name);
                }
                if without_no_execute(&node).is_some() {
                    self.update_taints(&name, |n| match no_execute_decision(n, Timestamp::now()) {
                        NoExecute::Clear => without_no_execute(n),
                        _ => None,
                    })
                    .await?;
                }
            }
            NoExecute::Enqueue => {
                let zone = zone_of(&node);
                let queue = self.zones.entry(zone).or_insert_with(|| ZoneQueue {
                    state: ZoneState::Normal,
                    limiter: TokenBucket::new(
                        self.ctx.options.node.eviction_rate,
                        1,
                        Instant::now(),
                    ),
                    pending: VecDeque::new(),
                });
                if !queue.pending.contains(&name) {
                    queue.pending.push_back(name);
                }
            }
        }
        Ok(())
    }

    /// Rewrites the node's taints with `change` applied to its latest version (read afresh, and
    /// again on a conflict), so a stale cache never undoes someone else's write.
    async fn update_taints(
        &self,
        name: &str,
        change: impl Fn(&Node) -> Option<Vec<Taint>>,
    ) -> Result<Option<Node>, Error> {
        let error = |source| Error::Update {
            node: name.to_string(),
            source,
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(mut node) = self.nodes.get_opt(name).await.map_err(error)? else {
                return Ok(None);
            };
            let Some(taints) = change(&node) else {
                return Ok(Some(node));
            };
            node.spec.get_or_insert_with(Default::default).taints =
                (!taints.is_empty()).then_some(taints);
            match self
                .nodes
                .replace(name, &PostParams::default(), &node)
                .await
            {
                Ok(updated) => return Ok(Some(updated)),
                Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => continue,
                Err(source) => return Err(error(source)),
            }
        }
    }

    /// Zone states, metrics and rates; entering and leaving the all-zones-down mode.
    async fn handle_disruption(
        &mut self,
        ready_by_zone: &BTreeMap<String, Vec<Option<String>>>,
        nodes: &[Arc<Node>],
        now: Instant,
    ) {
        let options = self.ctx.options.node.clone();
        let metrics = &self.ctx.metrics.node_collector;
        let mut states = BTreeMap::new();
        for (zone, ready) in ready_by_zone {
            let ready: Vec<Option<&str>> = ready.iter().map(Option::as_deref).collect();
            let (unhealthy, state) = zone_state(&ready, options.unhealthy_zone_threshold);
            let labels = ZoneLabels { zone: zone.clone() };
            let size = ready.len();
            metrics.zone_size.get_or_create(&labels).set(size as i64);
            metrics
                .unhealthy_nodes
                .get_or_create(&labels)
                .set(unhealthy as i64);
            let healthy = if size == 0 {
                100.0
            } else {
                100.0 * (size - unhealthy) as f64 / size as f64
            };
            metrics.zone_health.get_or_create(&labels).set(healthy);
            states.insert(zone.clone(), (state, size));
        }
        self.zones.retain(|zone, _| states.contains_key(zone));
        let all_down = !states.is_empty()
            && states
                .values()
                .all(|(s, _)| *s == ZoneState::FullDisruption);
        if all_down && !self.all_disrupted {
            tracing::warn!(
                "every zone is fully disrupted: stopping evictions and lifting NoExecute taints"
            );
            self.all_disrupted = true;
            for node in nodes.iter().filter(|n| without_no_execute(n).is_some()) {
                if let Err(error) = self
                    .update_taints(&node.name_any(), without_no_execute)
                    .await
                {
                    tracing::warn!(%error, "lifting a NoExecute taint failed");
                }
            }
            for zone in self.zones.values_mut() {
                zone.pending.clear();
                zone.limiter = TokenBucket::new(0.0, 1, now);
            }
            return;
        }
        if !all_down && self.all_disrupted {
            tracing::info!("some zone is healthy again: evictions resume");
            self.all_disrupted = false;
            // Heartbeats missed while everything was down are forgiven, as upstream does.
            for health in self.health.values_mut() {
                health.probe = now;
            }
            for zone in self.zones.values_mut() {
                zone.state = ZoneState::Normal;
                zone.limiter = TokenBucket::new(options.eviction_rate, 1, now);
            }
        }
        if self.all_disrupted {
            return;
        }
        for (zone, (state, size)) in states {
            let queue = self.zones.entry(zone).or_insert_with(|| ZoneQueue {
                state,
                limiter: TokenBucket::new(zone_rate(state, size, &options), 1, now),
                pending: VecDeque::new(),
            });
            if queue.state != state {
                queue.state = state;
                queue.limiter = TokenBucket::new(zone_rate(state, size, &options), 1, now);
            }
        }
    }

    /// Taints queued nodes as each zone's rate allows.
    async fn taint_pass(&mut self) {
        if self.all_disrupted {
            return;
        }
        let now = Instant::now();
        let zones: Vec<String> = self.zones.keys().cloned().collect();
        for zone in zones {
            while let Some(queue) = self.zones.get_mut(&zone) {
                let Some(name) = queue.pending.front().cloned() else {
                    break;
                };
                if !queue.limiter.try_accept(now) {
                    break;
                }
                queue.pending.pop_front();
                match self
                    .update_taints(&name, |n| with_no_execute(n, Timestamp::now()))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(node = %name, "tainted NoExecute");
                        self.ctx
                            .metrics
                            .node_collector
                            .evictions
                            .get_or_create(&ZoneLabels { zone: zone.clone() })
                            .inc();
                    }
                    Err(error) => {
                        tracing::warn!(%error, "NoExecute tainting failed; retrying");
                        if let Some(queue) = self.zones.get_mut(&zone) {
                            queue.pending.push_back(name);
                        }
                    }
                }
            }
        }
    }

    /// Every pod on the node is no longer Ready (upstream's MarkPodsNotReady).
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), Error> {
        let pods = Api::<Pod>::all(self.ctx.client.clone());
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(|source| Error::ListPods {
                node: node.to_string(),
                source,
            })?;
        for pod in list {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            if !ready {
                continue;
            }
            let Some(namespace) = pod.namespace() else {
                continue;
            };
            let api = Api::<Pod>::namespaced(self.ctx.client.clone(), &namespace);
            let patch = json!({"status": {"conditions": [{
                "type": "Ready", "status": "False",
                "lastTransitionTime": Timestamp::now().to_string(),
            }]}});
            if let Err(error) = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                tracing::warn!(%error, pod = %pod.name_any(), "marking a pod not ready failed");
                continue;
            }
            self.publish(
                &pod,
                EventType::Warning,
                "NodeNotReady",
                "Node is not ready".into(),
            )
            .await;
        }
        Ok(())
    }

    async fn event(&self, node: &Node, reason: &str, note: String) {
        self.publish(node, EventType::Normal, reason, note).await;
    }

    async fn event_for_name(&self, name: &str, reason: &str, note: String) {
        let mut node = Node::default();
        node.metadata.name = Some(name.to_string());
        self.event(&node, reason, note).await;
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::debug!(%error, "publishing an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn node(ready: Option<(&str, i64)>) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: ready.map(|(status, beat)| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        last_heartbeat_time: Some(Time(Timestamp::from_second(beat).unwrap())),
                        ..NodeCondition::default()
                    }]
                }),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(Timestamp::from_second(renew).unwrap())),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn probe_moves_only_when_a_heartbeat_changes() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        let first = observe(None, &node(Some(("True", 100))), Some(&lease(100)), t0);
        assert_eq!(first.probe, t0);
        // Same heartbeats, whatever the clocks say: no progress.
        let same = observe(
            Some(&first),
            &node(Some(("True", 100))),
            Some(&lease(100)),
            t1,
        );
        assert_eq!(same.probe, t0);
        // A renewed lease counts even if its time is in the past of our clock.
        let renewed = observe(
            Some(&first),
            &node(Some(("True", 100))),
            Some(&lease(101)),
            t1,
        );
        assert_eq!(renewed.probe, t1);
        let posted = observe(
            Some(&first),
            &node(Some(("True", 50))),
            Some(&lease(100)),
            t1,
        );
        assert_eq!(posted.probe, t1);
    }

    #[test]
    fn silence_past_the_grace_period_marks_conditions_unknown() {
        let t0 = Instant::now();
        let n = node(Some(("True", 100)));
        let health = observe(None, &n, None, t0);
        let grace = Duration::from_secs(4);
        let startup = Duration::from_secs(60);
        let wall = Timestamp::now();
        assert!(silenced_conditions(
            &n,
            &health,
            t0 + Duration::from_secs(3),
            grace,
            startup,
            wall
        )
        .is_none());
        let conditions = silenced_conditions(
            &n,
            &health,
            t0 + Duration::from_secs(5),
            grace,
            startup,
            wall,
        )
        .unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(
            conditions.len(),
            4,
            "pressure conditions are added as Unknown"
        );
        // Already Unknown: nothing more to write.
        let mut marked = n.clone();
        marked.status.as_mut().unwrap().conditions = Some(conditions);
        assert!(silenced_conditions(
            &marked,
            &health,
            t0 + Duration::from_secs(9),
            grace,
            startup,
            wall
        )
        .is_none());
        // A node that never posted gets the startup grace period.
        let fresh = node(None);
        let health = observe(None, &fresh, None, t0);
        assert!(silenced_conditions(
            &fresh,
            &health,
            t0 + Duration::from_secs(5),
            grace,
            startup,
            wall
        )
        .is_none());
        let never = silenced_conditions(
            &fresh,
            &health,
            t0 + Duration::from_secs(61),
            grace,
            startup,
            wall,
        )
        .unwrap();
        assert_eq!(never[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let unknown = node(Some(("Unknown", 1)));
        let taints = no_schedule_taints(&unknown).unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(taints[0].key, TAINT_UNREACHABLE);
        assert_eq!(
            no_execute_decision(&unknown, Timestamp::now()),
            NoExecute::Enqueue
        );
        let tainted = with_no_execute(&unknown, Timestamp::now()).unwrap();
        assert_eq!(tainted[0].effect, NO_EXECUTE);
        assert!(tainted[0].time_added.is_some());

        // The kubelet reports NotReady while the node has the unreachable taint: swapped.
        let mut not_ready = node(Some(("False", 2)));
        not_ready.spec = Some(NodeSpec {
            taints: Some(tainted),
            ..NodeSpec::default()
        });
        match no_execute_decision(&not_ready, Timestamp::now()) {
            NoExecute::Swap(t) => {
                assert_eq!(t.len(), 1);
                assert_eq!(t[0].key, TAINT_NOT_READY);
            }
            other => panic!("{other:?}"),
        }

        // Recovered: NoSchedule and NoExecute taints go, others stay.
        let mut recovered = node(Some(("True", 3)));
        recovered.spec = Some(NodeSpec {
            taints: Some(vec![
                taint(TAINT_UNREACHABLE, NO_SCHEDULE, None),
                taint(TAINT_UNREACHABLE, NO_EXECUTE, Some(Timestamp::now())),
                taint("example.com/mine", NO_SCHEDULE, None),
            ]),
            ..NodeSpec::default()
        });
        assert_eq!(
            no_execute_decision(&recovered, Timestamp::now()),
            NoExecute::Clear
        );
        assert_eq!(without_no_execute(&recovered).unwrap().len(), 2);
        let left = no_schedule_taints(&recovered).unwrap();
        assert_eq!(left.len(), 2);
        assert!(left
            .iter()
            .all(|t| t.key != TAINT_UNREACHABLE || t.effect == NO_EXECUTE));
    }

    #[test]
    fn zone_states_and_rates() {
        let options = crate::options::NodeOptions {
            monitor_period: Duration::from_secs(5),
            monitor_grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        };
        let t = Some("True");
        let u = Some("Unknown");
        assert_eq!(zone_state(&[t, u], 0.55), (1, ZoneState::Normal));
        assert_eq!(zone_state(&[u, u], 0.55), (2, ZoneState::FullDisruption));
        assert_eq!(
            zone_state(&[t, u, u, u], 0.55),
            (3, ZoneState::PartialDisruption)
        );
        assert_eq!(zone_rate(ZoneState::Normal, 2, &options), 0.1);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 10, &options), 0.0);
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 100, &options), 0.01);
        assert_eq!(zone_rate(ZoneState::FullDisruption, 3, &options), 0.1);
    }
}
