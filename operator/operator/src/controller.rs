//! The Cluster reconciler: validate → PKI → observe hosts and etcd → plan → ensure → status.
//! Level-triggered and idempotent; a finalizer stops the Cluster's units and removes its files
//! from the hosts when the Cluster is deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use hakube_hostd_api::client::{connect_lazy, ClientOptions, ClientTls};
use hakube_hostd_api::v1::hostd_client::HostdClient;
use hakube_hostd_api::v1::{self as hostd};
use hakube_operator_api::cluster::{
    AuthorityRotationPhase, AuthorityRotationStatus, ClusterStatus, ComponentStatus,
    ControlPlaneHostStatus, EtcdHostStatus, EtcdMemberStatus, FailingHostStatus, RolloutStatus,
};
use hakube_operator_api::host::{HostCapacity, HostStatus};
use hakube_operator_api::validation::{validate, InventoryHost, ValidCluster};
use hakube_operator_api::{Cluster, Host, Topology};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::{mpsc, Mutex};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::authorities::{self, Rotation};
use crate::bundles::{self, Bundle};
use crate::control_plane;
use crate::members::{self, FailureClock, HostCheck, ListedMember};
use crate::membership;
use crate::metrics::Metrics;
use crate::pki::{self, ClusterPki, PkiInputs, SecretsData};
use crate::plan::{self, Check, Observed, ObservedHost, Roles, Step};
use crate::render::{self, DesiredUnit, HostPaths, HostPlan, Program, Readiness};
use crate::rollout;

pub const FINALIZER: &str = "hakube.io/cluster-cleanup";
pub const FIELD_MANAGER: &str = "hakube-operator";
/// Labels every Secret of a Cluster's PKI with the Cluster's name.
pub const CLUSTER_LABEL: &str = "hakube.io/cluster";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// What a host already failing gets to answer: waiting out the full timeouts on a partitioned
/// host in every reconcile would slow its replacement.
const FAILING_HOST_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("PKI: {0}")]
    Pki(#[from] hakube_pki::PkiError),
    #[error("bundles: {0}")]
    Bundles(#[from] bundles::BundleError),
    #[error("hostd on {host}: {message}")]
    Hostd { host: String, message: String },
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("the Cluster has no namespace")]
    NoNamespace,
    #[error("etcd membership: {0}")]
    Etcd(String),
    #[error("the load balancer's host has no address")]
    NoLoadBalancer,
}

impl Error {
    /// The metric label for this kind of error.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Pki(_) => "pki",
            Error::Bundles(_) => "bundles",
            Error::Hostd { .. } => "hostd",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace => "no_namespace",
            Error::Etcd(_) => "etcd",
            Error::NoLoadBalancer => "no_load_balancer",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub reporter: Reporter,
    pub hostd_tls: ClientTls,
    pub bundle_dir: PathBuf,
    bundles: bundles::Catalog,
    /// The base URL hosts fetch bundles from (`https://<operator>:<port>`).
    pub artifact_url: String,
    pub metrics: Metrics,
    /// A host whose hostd or etcd member has failed for longer than this is dead.
    pub host_failure_threshold: Duration,
    /// A host a change rolled through that is not healthy this long after its restart halts
    /// the rollout.
    pub rollout_host_timeout: Duration,
    agents: Mutex<BTreeMap<String, HostdClient<Channel>>>,
    /// Hosts whose status write is in flight: at most one each, so writes land in order.
    host_status_writes: Arc<std::sync::Mutex<BTreeSet<String>>>,
    /// Bundles hosts were asked to fetch ahead of need, by hostd endpoint and version.
    prefetched: Mutex<BTreeSet<(String, String)>>,
    /// The digest of the files each host was last given, and when, by hostd endpoint and the
    /// directory of the Cluster's files there.
    files_given: std::sync::Mutex<BTreeMap<(String, String), (String, Instant)>>,
    /// By Cluster (`<namespace>-<name>`); a new leader resumes them from the status.
    failure_clocks: Mutex<BTreeMap<String, FailureClock>>,
    /// The hostd endpoints each Cluster used at its last reconcile.
    endpoints_of: std::sync::Mutex<HashMap<ObjectRef<Cluster>, BTreeSet<String>>>,
    /// Clusters to reconcile at once: hostd told of a change of one of their units.
    wake: mpsc::UnboundedSender<ObjectRef<Cluster>>,
    /// The other end of `wake`, until [`run`] takes it as a trigger of its controller.
    woken: std::sync::Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<Cluster>>>>,
    /// Hostd endpoints of the known Hosts, whose units are watched while they are known.
    watched: std::sync::Mutex<BTreeSet<String>>,
}

/// A host that runs every unit as planned and was given the same files this recently is not
/// sent them again: in a bring-up each reconcile would otherwise spend ~0.1 s re-sending a
/// dozen files to every host. Later than this they are sent again, so that a file changed on a
/// host is put back within one settled reconcile (15 s).
const FILES_RECHECK: Duration = Duration::from_secs(10);

impl Context {
    pub fn new(
        client: Client,
        hostd_tls: ClientTls,
        bundle_dir: PathBuf,
        artifact_url: String,
        metrics: Metrics,
        host_failure_threshold: Duration,
        rollout_host_timeout: Duration,
    ) -> Context {
        let (wake, woken) = mpsc::unbounded_channel();
        Context {
            client,
            reporter: Reporter {
                controller: FIELD_MANAGER.into(),
                instance: std::env::var("HOSTNAME").ok(),
            },
            hostd_tls,
            bundle_dir,
            bundles: bundles::Catalog::default(),
            artifact_url,
            metrics,
            host_failure_threshold,
            rollout_host_timeout,
            agents: Mutex::default(),
            host_status_writes: Arc::default(),
            prefetched: Mutex::default(),
            files_given: std::sync::Mutex::default(),
            failure_clocks: Mutex::default(),
            endpoints_of: std::sync::Mutex::default(),
            wake,
            woken: std::sync::Mutex::new(Some(woken)),
            watched: std::sync::Mutex::default(),
        }
    }

    /// Whether the host at `endpoint` was given files with this digest under `root` within
    /// [`FILES_RECHECK`].
    fn given_recently(&self, endpoint: &str, root: &str, files_digest: &str) -> bool {
        self.files_given
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(endpoint.to_string(), root.to_string()))
            .is_some_and(|(digest, at)| digest == files_digest && at.elapsed() < FILES_RECHECK)
    }

    /// Reads the version bundles ahead of the first reconcile, which would otherwise wait for
    /// their hashing.
    pub fn read_bundles(&self) {
        if let Err(e) = self.bundles.scan(&self.bundle_dir) {
            tracing::warn!(error = %e, "reading the version bundles");
        }
    }

    /// Drops a Host from `known`; the watch of its units ends.
    fn forget_host(&self, known: &mut BTreeMap<String, HostOutline>, name: &str) {
        if let Some(outline) = known.remove(name) {
            self.watched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&outline.endpoint);
        }
    }

    /// Wakes each Cluster that used the host at `endpoint` at its last reconcile.
    fn wake_clusters_on(&self, endpoint: &str) {
        let endpoints_of = self
            .endpoints_of
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (cluster, endpoints) in endpoints_of.iter() {
            if endpoints.contains(endpoint) {
                let _ = self.wake.send(cluster.clone());
            }
        }
    }

    /// Opens the connection to a host's hostd ahead of need, unless one is open already.
    async fn connect(&self, host: &str, endpoint: &str) {
        if self.agents.lock().await.contains_key(endpoint) {
            return;
        }
        let Ok(mut agent) = self.agent(host, endpoint).await else {
            return;
        };
        // A lazy channel connects on its first call; the facts are what observing asks first.
        let facts = agent.get_facts(hostd::GetFactsRequest {});
        match tokio::time::timeout(CALL_TIMEOUT, facts).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(%host, error = %e, "connecting to hostd ahead of need"),
            Err(_) => tracing::debug!(%host, "connecting to hostd ahead of need timed out"),
        }
    }

    async fn agent(&self, host: &str, endpoint: &str) -> Result<HostdClient<Channel>, Error> {
        let mut agents = self.agents.lock().await;
        if let Some(client) = agents.get(endpoint) {
            return Ok(client.clone());
        }
        let options = ClientOptions {
            connect_timeout: CALL_TIMEOUT,
            request_timeout: Some(Duration::from_secs(120)),
        };
        let client =
            connect_lazy(endpoint, &self.hostd_tls, &options).map_err(|e| Error::Hostd {
                host: host.to_string(),
                message: e.to_string(),
            })?;
        agents.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }
}

/// Runs the Cluster controller until the process stops.
pub async fn run(ctx: Arc<Context>) {
    let (inventory_changed, inventory_changes) = mpsc::unbounded_channel();
    tokio::spawn(follow_hosts(ctx.clone(), inventory_changed));
    let clusters: Api<Cluster> = Api::all(ctx.client.clone());
    let secrets: Api<Secret> = Api::all(ctx.client.clone());
    let woken = ctx
        .woken
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let mut controller = Controller::new(clusters, watcher::Config::default())
        .owns(secrets, watcher::Config::default().labels(CLUSTER_LABEL))
        // A new Host, or a changed address or labels, may matter to any Cluster (validation,
        // placement); Host status, which reconciles write, matters to none.
        .reconcile_all_on(UnboundedReceiverStream::new(inventory_changes));
    if let Some(woken) = woken {
        controller = controller.reconcile_on(UnboundedReceiverStream::new(woken));
    }
    controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// Follows the Host inventory. For each Host, as soon as it is known: opens the connection to
/// its hostd, so that a Cluster's first reconcile finds it open (the TLS handshakes with seven
/// hosts, under the load of a bring-up, took most of that reconcile's observation, ~0.2 s), and
/// watches its units, so that a Cluster waiting on one of them is reconciled when it changes
/// rather than at its next poll. Sends on `inventory_changed` when, after the initial listing,
/// a Host appears or its endpoint or labels change, or its spec does (a new generation).
async fn follow_hosts(ctx: Arc<Context>, inventory_changed: mpsc::UnboundedSender<()>) {
    let hosts: Api<Host> = Api::all(ctx.client.clone());
    let mut known: BTreeMap<String, HostOutline> = BTreeMap::new();
    let mut listed = false;
    // The Hosts of a (re)listing in progress: one deleted while the watch was down gets no
    // Delete event, only its absence from the next listing.
    let mut listing: BTreeSet<String> = BTreeSet::new();
    let mut events =
        std::pin::pin!(watcher::watcher(hosts, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitDone => {
                let gone: Vec<String> = known
                    .keys()
                    .filter(|name| !listing.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    ctx.forget_host(&mut known, &name);
                }
                listed = true;
            }
            watcher::Event::Apply(host) | watcher::Event::InitApply(host) => {
                let name = host.name_any();
                listing.insert(name.clone());
                let endpoint = host.spec.hostd_endpoint();
                let outline = HostOutline {
                    generation: host.metadata.generation,
                    labels: host.labels().clone(),
                    endpoint: endpoint.clone(),
                };
                if known.get(&name).is_some_and(|o| o.endpoint != endpoint) {
                    ctx.forget_host(&mut known, &name);
                }
                let changed = known.insert(name.clone(), outline.clone()) != Some(outline);
                if changed && listed {
                    let _ = inventory_changed.send(());
                }
                let fresh = ctx
                    .watched
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(endpoint.clone());
                if fresh {
                    tokio::spawn(watch_units(ctx.clone(), name, endpoint));
                }
            }
            watcher::Event::Delete(host) => ctx.forget_host(&mut known, &host.name_any()),
        }
    }
}

/// What of a Host matters to Clusters.
#[derive(Clone, PartialEq)]
struct HostOutline {
    generation: Option<i64>,
    labels: BTreeMap<String, String>,
    endpoint: String,
}

/// A watch of a host's units that broke off is opened again after this.
const UNIT_WATCH_RETRY: Duration = Duration::from_secs(2);

/// Watches a host's units while its Host is known, and wakes the Clusters that use the host
/// when what they wait on changes (see [`units_news`]).
async fn watch_units(ctx: Arc<Context>, host: String, endpoint: String) {
    ctx.connect(&host, &endpoint).await;
    let still_known = || {
        ctx.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&endpoint)
    };
    while still_known() {
        if let Ok(mut agent) = ctx.agent(&host, &endpoint).await {
            if let Ok(response) = agent.watch_units(hostd::WatchUnitsRequest {}).await {
                let mut changes = response.into_inner();
                let mut known = None;
                while let Ok(Some(list)) = changes.message().await {
                    let outline = units_outline(&list.units);
                    if known
                        .as_ref()
                        .is_some_and(|known| units_news(known, &outline))
                    {
                        ctx.wake_clusters_on(&endpoint);
                    }
                    known = Some(outline);
                }
            }
        }
        tokio::time::sleep(UNIT_WATCH_RETRY).await;
    }
}

/// Each unit's readiness and whether hostd keeps it running, by name.
fn units_outline(units: &[hostd::UnitStatus]) -> BTreeMap<String, (bool, bool)> {
    units
        .iter()
        .map(|u| {
            let running = matches!(
                hostd::UnitState::try_from(u.state),
                Ok(hostd::UnitState::Starting
                    | hostd::UnitState::Running
                    | hostd::UnitState::Ready)
            );
            (u.name.clone(), (u.ready, running))
        })
        .collect()
}

/// Whether a reconcile waits on what changed: a unit turning ready or not ready, exiting, or
/// disappearing. A unit merely starting is the reconcile's own doing, and waking on it would
/// only add reconciles while components start.
fn units_news(
    before: &BTreeMap<String, (bool, bool)>,
    now: &BTreeMap<String, (bool, bool)>,
) -> bool {
    before
        .iter()
        .any(|(name, (ready, running))| match now.get(name) {
            None => true,
            Some((ready_now, running_now)) => ready_now != ready || (*running && !running_now),
        })
        || now
            .iter()
            .any(|(name, (ready, _))| *ready && !before.contains_key(name))
}

fn error_policy(cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), %error, "reconcile failed");
    ctx.metrics.error(error.kind());
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = cluster.namespace().ok_or(Error::NoNamespace)?;
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &namespace);
    // The watch may not have delivered our last status write yet; acting on an older status
    // would take a recorded step (a fence, a removal) a second time.
    let Some(cluster) = api.get_opt(&cluster.name_any()).await? else {
        return Ok(Action::await_change());
    };
    let result = finalizer(&api, FINALIZER, Arc::new(cluster), |event| async {
        match event {
            Finalizer::Apply(cluster) => apply(&cluster, &ctx).await,
            Finalizer::Cleanup(cluster) => cleanup(&cluster, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    ctx.metrics.reconciled(started.elapsed());
    result
}

/// Everything resolved about a valid Cluster.
struct Resolved {
    valid: ValidCluster,
    addresses: BTreeMap<String, IpAddr>,
    endpoints: BTreeMap<String, String>,
    /// The status each of the Cluster's Hosts had, for what a new observation keeps of it.
    host_status: BTreeMap<String, HostStatus>,
    bundle: Bundle,
}

async fn resolve(cluster: &Cluster, ctx: &Context) -> Result<Result<Resolved, String>, Error> {
    let hosts: Api<Host> = Api::all(ctx.client.clone());
    let inventory = hosts.list(&ListParams::default()).await?.items;
    let known: Vec<InventoryHost> = inventory
        .iter()
        .map(|h| InventoryHost {
            name: h.name_any(),
            labels: h.labels().clone(),
        })
        .collect();
    // Reading a new archive takes a moment; the other reconciles go on meanwhile.
    let mut bundles = tokio::task::block_in_place(|| ctx.bundles.scan(&ctx.bundle_dir))?;
    let versions: Vec<String> = bundles.keys().cloned().collect();
    let valid = match validate(&cluster.spec, &known, &versions) {
        Ok(v) => v,
        Err(invalid) => return Ok(Err(invalid.to_string())),
    };
    let Some(bundle) = bundles.remove(&cluster.spec.version) else {
        return Ok(Err(format!(
            "spec.version: no bundle for {}",
            cluster.spec.version
        )));
    };
    let mut addresses = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    let mut host_status = BTreeMap::new();
    let used: BTreeSet<&String> = valid
        .placement
        .control_plane
        .iter()
        .chain(&valid.placement.etcd)
        .chain(&valid.placement.control_plane_spares)
        .chain(&valid.placement.etcd_spares)
        .chain(&valid.placement.load_balancers)
        .collect();
    for host in inventory.iter().filter(|h| used.contains(&h.name_any())) {
        match host.spec.address.parse::<IpAddr>() {
            Ok(ip) => {
                addresses.insert(host.name_any(), ip);
                endpoints.insert(host.name_any(), host.spec.hostd_endpoint());
                if let Some(status) = &host.status {
                    host_status.insert(host.name_any(), status.clone());
                }
            }
            Err(_) => {
                return Ok(Err(format!(
                    "Host {:?}: spec.address {:?} is not an IP address",
                    host.name_any(),
                    host.spec.address
                )))
            }
        }
    }
    Ok(Ok(Resolved {
        valid,
        addresses,
        endpoints,
        host_status,
        bundle,
    }))
}

/// What hostd said about one host.
struct HostView {
    observed: ObservedHost,
    /// The spec each of the Cluster's units runs with, by unit name.
    specs: BTreeMap<String, hostd::UnitSpec>,
    /// The Cluster's units hostd keeps running (not stopped, not given up on).
    live: BTreeSet<String>,
    /// Where this Cluster's files live on the host.
    root: Option<String>,
    facts: Option<hostd::Facts>,
}

impl HostView {
    fn unreachable() -> HostView {
        HostView {
            observed: ObservedHost::default(),
            specs: BTreeMap::new(),
            live: BTreeSet::new(),
            root: None,
            facts: None,
        }
    }
}

async fn observe_host(ctx: &Context, cluster: &Cluster, host: &str, endpoint: &str) -> HostView {
    let unreachable = HostView::unreachable();
    let Ok(mut agent) = ctx.agent(host, endpoint).await else {
        return unreachable;
    };
    let facts =
        tokio::time::timeout(CALL_TIMEOUT, agent.get_facts(hostd::GetFactsRequest {})).await;
    let Ok(Ok(facts)) = facts else {
        return unreachable;
    };
    let facts = facts.into_inner();
    let units = match tokio::time::timeout(
        CALL_TIMEOUT,
        agent.list_units(hostd::ListUnitsRequest {}),
    )
    .await
    {
        Ok(Ok(list)) => list.into_inner().units,
        _ => return unreachable,
    };
    let prefix = unit_prefix(cluster);
    HostView {
        observed: ObservedHost {
            reachable: true,
            units: units
                .iter()
                .filter_map(|u| Some((u.name.strip_prefix(&prefix)?.to_string(), u.ready)))
                .collect(),
        },
        specs: units
            .iter()
            .filter_map(|u| Some((u.name.strip_prefix(&prefix)?.to_string(), u.spec.clone()?)))
            .collect(),
        live: units
            .iter()
            .filter(|u| {
                !matches!(
                    hostd::UnitState::try_from(u.state),
                    Ok(hostd::UnitState::Stopped | hostd::UnitState::Failed)
                )
            })
            .filter_map(|u| Some(u.name.strip_prefix(&prefix)?.to_string()))
            .collect(),
        root: Some(format!(
            "{}/clusters/{}",
            facts.data_dir.trim_end_matches('/'),
            cluster_key(cluster)
        )),
        facts: Some(facts),
    }
}

/// `<namespace>-<name>`: unique per Cluster, used for unit names and directories on hosts.
fn cluster_key(cluster: &Cluster) -> String {
    format!(
        "{}-{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

/// hostd units are named `<namespace>-<name>.<component>` so clusters sharing hosts never clash.
fn unit_prefix(cluster: &Cluster) -> String {
    format!("{}.", cluster_key(cluster))
}

async fn apply(cluster: &Cluster, ctx: &Context) -> Result<Action, Error> {
    let namespace = cluster.namespace().ok_or(Error::NoNamespace)?;
    let mut status = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    let resolved = match resolve(cluster, ctx).await? {
        Ok(r) => r,
        Err(message) => {
            let already = condition_is(&status, "Valid", "False", &message);
            set_condition(
                &mut status,
                "Valid",
                false,
                "InvalidSpec",
                &message,
                generation,
            );
            set_condition(
                &mut status,
                "Available",
                false,
                "InvalidSpec",
                "the spec is invalid; nothing was changed",
                generation,
            );
            set_condition(
                &mut status,
                "Progressing",
                false,
                "InvalidSpec",
                "waiting for a valid spec",
                generation,
            );
            status.phase = Some("Invalid".into());
            status.observed_generation = generation;
            if !already {
                publish(ctx, cluster, EventType::Warning, "InvalidSpec", &message).await;
            }
            write_status(ctx, cluster, &status).await?;
            ctx.metrics.conditions(cluster, &status);
            return Ok(Action::await_change());
        }
    };
    ctx.endpoints_of
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(
            ObjectRef::from_obj(cluster),
            resolved.endpoints.values().cloned().collect(),
        );
    set_condition(
        &mut status,
        "Valid",
        true,
        "Valid",
        "the spec is valid",
        generation,
    );
    // The control-plane hosts fetch the version's bundle while the certificates are issued and
    // etcd forms, so that their stage starts with it at hand (as a pre-pull of images would).
    if !cluster.spec.paused {
        for host in &resolved.valid.placement.control_plane {
            prefetch_bundle(ctx, &resolved, host, &resolved.bundle).await;
        }
    }
    // The endpoint: the virtual IP two load-balancer hosts share, or the one host's address.
    let lb_ip = match resolved.valid.placement.virtual_ip {
        Some(vip) => vip,
        None => {
            let first = resolved.valid.placement.load_balancers.first();
            match first.and_then(|host| resolved.addresses.get(host)) {
                Some(ip) => *ip,
                None => return Err(Error::NoLoadBalancer),
            }
        }
    };
    let endpoint = format!(
        "https://{}:{}",
        render::url_host(lb_ip),
        cluster.spec.load_balancer.port
    );
    status.endpoint = Some(endpoint.clone());

    // The PKI, at the stage the recorded certificate-authority rotation is in.
    let rotation = status.authority_rotation.as_ref().map(|r| Rotation {
        request: r.request.clone(),
        phase: r.phase,
    });
    let pick = |names: &[String]| -> BTreeMap<String, IpAddr> {
        names
            .iter()
            .filter_map(|n| Some((n.clone(), *resolved.addresses.get(n)?)))
            .collect()
    };
    let topology = cluster.spec.topology;
    let allowed_etcd = allowed_etcd_hosts(topology, &resolved.valid);
    let allowed_control_plane = match topology {
        Topology::Stacked => allowed_etcd.clone(),
        Topology::External => resolved
            .valid
            .placement
            .control_plane
            .iter()
            .chain(&resolved.valid.placement.control_plane_spares)
            .cloned()
            .collect(),
    };
    // Certificates for every host the Cluster may place a member or an API server on, spares
    // included: a replacement then re-issues nothing and restarts nothing on the other hosts.
    let control_plane_sans = pick(&allowed_control_plane);
    let etcd_certified = pick(&allowed_etcd);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let owned = secrets
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={}", cluster.name_any())))
        .await?;
    let existing: SecretsData = owned
        .items
        .iter()
        .map(|s| (s.name_any(), crate::secrets::string_data(s)))
        .collect();
    let inputs = PkiInputs {
        cluster: &cluster.name_any(),
        cluster_domain: &cluster.spec.network.cluster_domain,
        api_service_ip: resolved.valid.network.api_service_ip,
        endpoint: &endpoint,
        load_balancer: lb_ip,
        control_plane: &control_plane_sans,
        etcd: &etcd_certified,
        validity: resolved.valid.certificate_validity,
        renew_before: resolved.valid.renew_before,
        stage: authorities::stage(rotation.as_ref()),
    };
    let (pki, changed) = pki::ensure(&inputs, &existing)?;
    // Observe.
    let failing: BTreeSet<String> = status
        .failing_hosts
        .iter()
        .map(|f| f.host.clone())
        .collect();
    // All hosts at once: a partitioned host costs its timeout once, not once per host.
    let observe = futures::future::join_all(resolved.endpoints.iter().map(
        |(host, hostd_endpoint)| async {
            let observing = observe_host(ctx, cluster, host, hostd_endpoint);
            let view = if failing.contains(host) {
                tokio::time::timeout(FAILING_HOST_TIMEOUT, observing)
                    .await
                    .unwrap_or_else(|_| HostView::unreachable())
            } else {
                observing.await
            };
            let status = host_status(
                resolved.host_status.get(host),
                &view,
                hostd_endpoint,
                Time(k8s_openapi::jiff::Timestamp::now()),
            );
            record_host(ctx, host, status);
            (host.clone(), view)
        },
    ));
    // The Secrets are stored while the hosts are observed, which needs none of them; together,
    // as a new Cluster's first reconcile writes some twenty.
    let store = async {
        futures::future::try_join_all(changed.written.iter().map(|(name, data)| {
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {
                    "name": name, "namespace": namespace,
                    "labels": {CLUSTER_LABEL: cluster.name_any()},
                    "ownerReferences": [owner(cluster)],
                },
                "stringData": data,
            });
            let secrets = &secrets;
            async move {
                secrets
                    .patch(
                        name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&secret),
                    )
                    .await
            }
        }))
        .await?;
        for name in &changed.removed {
            match secrets.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok::<(), Error>(())
    };
    let (views, stored) = futures::future::join(observe, store).await;
    stored?;
    let views: BTreeMap<String, HostView> = views.into_iter().collect();
    if !changed.written.is_empty() {
        publish(
            ctx,
            cluster,
            EventType::Normal,
            "CertificatesIssued",
            &format!("issued or renewed {} secrets", changed.written.len()),
        )
        .await;
    }
    set_condition(
        &mut status,
        "CertificatesReady",
        true,
        "Issued",
        "every certificate is issued and valid",
        generation,
    );
    status.certificates_expire = pki
        .earliest_expiry
        .map(|t| Time(k8s_openapi::jiff::Timestamp::try_from(t).unwrap_or_default()));
    status.admin_kubeconfig_secret =
        Some(pki::secret_name(&cluster.name_any(), "admin-kubeconfig"));

    // Sticky placement: the members recorded once the Cluster was first available, or the
    // placement's hosts, started together, until then.
    let recorded = !status.etcd_hosts.is_empty();
    let mut etcd_hosts = if recorded {
        status.etcd_hosts.clone()
    } else {
        members::first_members(&pick(&resolved.valid.placement.etcd))
    };
    let health = etcd_health(&pki, &pick(&record_hosts(&etcd_hosts)), &failing).await;

    // Membership: once the Cluster has been up, one quorum-safe change per reconcile.
    let mut membership_plan = None;
    let mut listed = None;
    if recorded {
        listed = member_list(&pki, &health, &resolved.addresses).await;
    }
    if let Some(listed) = &listed {
        let addresses = &resolved.addresses;
        // A member removed (or never started) is no longer a recorded one.
        etcd_hosts.retain(|r| {
            listed
                .iter()
                .any(|m| members::member_host(&m.peer_urls, addresses) == r.host)
        });
        let checks: BTreeMap<String, HostCheck> = allowed_etcd
            .iter()
            .map(|host| {
                let check = HostCheck {
                    reachable: views.get(host).is_some_and(|v| v.observed.reachable),
                    member_healthy: health.iter().find(|m| &m.host == host).map(|m| m.healthy),
                };
                (host.clone(), check)
            })
            .collect();
        let leader = health
            .iter()
            .find(|m| m.leader)
            .and_then(|m| u64::from_str_radix(m.id.as_deref()?, 16).ok());
        let observed = {
            let mut clocks = ctx.failure_clocks.lock().await;
            let clock = failure_clock(&mut clocks, cluster, &status);
            members::observed(
                listed,
                addresses,
                &checks,
                leader,
                &status.fenced_hosts,
                clock,
                SystemTime::now(),
            )
        };
        let desired = membership::Desired {
            replicas: resolved.valid.placement.etcd.len(),
            allowed_hosts: allowed_etcd.clone(),
            failure_threshold: ctx.host_failure_threshold,
        };
        match membership::plan(&observed, &desired) {
            Ok(planned) => membership_plan = Some(planned),
            Err(e) => tracing::warn!(cluster = %cluster.name_any(), error = %e, "etcd membership"),
        }
    }
    if let (Some(planned), Some(listed), false) = (&membership_plan, &listed, cluster.spec.paused) {
        let change = MembershipChange {
            ctx,
            cluster,
            resolved: &resolved,
            views: &views,
            pki: &pki,
            health: &health,
            listed,
        };
        change
            .take(&planned.step, &mut status, &mut etcd_hosts)
            .await?;
    }

    let etcd_roles = record_hosts(&etcd_hosts);
    let mut roles = Roles {
        control_plane: match topology {
            // An API server reads its own member: only a voter serves reads.
            Topology::Stacked => etcd_roles
                .iter()
                .filter(|host| {
                    listed.as_ref().is_none_or(|listed| {
                        listed.iter().any(|m| {
                            !m.is_learner
                                && !m.name.is_empty()
                                && members::member_host(&m.peer_urls, &resolved.addresses) == **host
                        })
                    })
                })
                .cloned()
                .collect(),
            Topology::External => {
                external_control_plane(
                    ctx,
                    cluster,
                    &status,
                    &resolved,
                    &views,
                    &allowed_control_plane,
                    recorded,
                )
                .await
            }
        },
        etcd: etcd_roles,
        load_balancers: resolved.valid.placement.load_balancers.clone(),
        control_plane_units: control_plane_units(&resolved.bundle),
        rolling: None,
    };
    let etcd = pick(&roles.etcd);
    let control_plane = pick(&roles.control_plane);

    // What each reachable host should run, rendered once: compared with what it runs, then
    // ensured where the rollout allows.
    let mut etcd_plans = BTreeMap::new();
    for joined in &etcd_hosts {
        if let Ok(paths) = host_paths(&resolved, &views, &joined.host) {
            let plan = render::etcd_member(
                &cluster.spec,
                &cluster.uid().unwrap_or_default(),
                &joined.host,
                &paths,
                joined,
                &pki,
            );
            etcd_plans.insert(joined.host.clone(), plan);
        }
    }
    let mut control_plane_plans = BTreeMap::new();
    for host in &roles.control_plane {
        if let Ok(paths) = host_paths(&resolved, &views, host) {
            let servers = etcd_servers(&topology, &etcd, &resolved.addresses[host]);
            let plan = render::control_plane_host(
                &cluster.spec,
                &resolved.valid,
                host,
                &paths,
                &servers,
                &pki,
                &resolved.bundle.binaries,
            );
            control_plane_plans.insert(host.clone(), plan);
        }
    }
    let rollout_hosts: Vec<rollout::Host> = roles
        .control_plane
        .iter()
        .chain(
            roles
                .etcd
                .iter()
                .filter(|h| !roles.control_plane.contains(h)),
        )
        .map(|host| {
            let plans: Vec<(&HostPlan, Option<&Bundle>)> = [
                etcd_plans.get(host).map(|p| (p, None)),
                control_plane_plans
                    .get(host)
                    .map(|p| (p, Some(&resolved.bundle))),
            ]
            .into_iter()
            .flatten()
            .collect();
            let view = views.get(host).filter(|v| v.observed.reachable);
            rollout::Host {
                name: host.clone(),
                current: view.is_some_and(|v| {
                    plans
                        .iter()
                        .all(|(plan, bundle)| host_runs(cluster, v, plan, *bundle))
                }),
                serving: view.is_some_and(|v| {
                    plans.iter().all(|(plan, _)| {
                        plan.units
                            .iter()
                            .all(|u| v.observed.units.get(&u.name) == Some(&true))
                    })
                }),
                behind_load_balancer: roles.control_plane.contains(host),
            }
        })
        .collect();
    let mut rolled = rollout::plan(
        &rollout_hosts,
        status.rollout.as_ref().map(rollout_record).as_ref(),
        generation.unwrap_or_default(),
        SystemTime::now(),
        ctx.rollout_host_timeout,
    );
    let balanced: BTreeMap<String, IpAddr> = control_plane
        .iter()
        .filter(|(host, _)| rolled.drained.as_ref() != Some(*host))
        .map(|(host, ip)| (host.clone(), *ip))
        .collect();
    let lb_plans: BTreeMap<String, HostPlan> = roles
        .load_balancers
        .iter()
        .filter_map(|host| {
            let paths = host_paths(&resolved, &views, host).ok()?;
            let vrrp = load_balancer_vrrp(cluster, &resolved, &views, host);
            let plan = render::load_balancer(&cluster.spec, &paths, &balanced, vrrp.as_ref());
            Some((host.clone(), plan))
        })
        .collect();
    if let Some(host) = rolled.restart_when_drained.clone() {
        // HAProxy reloaded without the host in an earlier reconcile, on every load-balancer
        // host that answers: no new request reaches it.
        let drained = rolled.drained.is_none()
            || (!lb_plans.is_empty()
                && lb_plans.iter().all(|(lb, plan)| {
                    views
                        .get(lb)
                        .is_some_and(|view| host_runs(cluster, view, plan, None))
                }));
        if drained && !cluster.spec.paused {
            rolled.held.remove(&host);
            if let Some(record) = rolled.record.as_mut() {
                record.restarted_at = Some(SystemTime::now());
            }
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "RollingHost",
                &format!("restarting {host} with the Cluster's change"),
            )
            .await;
        }
    }
    roles.rolling = rolled.rolling().map(str::to_string);
    let members: Vec<EtcdMemberStatus> = roles
        .etcd
        .iter()
        .map(|host| {
            health
                .iter()
                .find(|m| &m.host == host)
                .cloned()
                .unwrap_or_else(|| EtcdMemberStatus {
                    name: host.clone(),
                    host: host.clone(),
                    ..Default::default()
                })
        })
        .collect();
    let lb_port = u16::try_from(cluster.spec.load_balancer.port).unwrap_or(6443);
    let endpoint_ready = endpoint_ready(&pki.admin_kubeconfig, (lb_ip, lb_port)).await;
    let observed = Observed {
        hosts: views
            .iter()
            .map(|(h, v)| (h.clone(), v.observed.clone()))
            .collect(),
        etcd_healthy: members
            .iter()
            .map(|m| (m.host.clone(), m.healthy))
            .collect(),
        endpoint_ready,
    };
    let planned = plan::plan(&roles, &observed);

    // Act, unless paused, while the status (which says what was observed, not what acting
    // did) is written: a bring-up's last stage is reported without waiting on no-op ensures.
    let act = async {
        if cluster.spec.paused {
            return Ok::<(), Error>(());
        }
        // Each step was planned from what this reconcile observed (the control plane only once
        // etcd has quorum, and so on), so the planned steps go together: none waits on another's
        // effect within one reconcile.
        let unplanned = BTreeMap::new();
        let if_planned = |step: Step, plans| {
            if planned.steps.contains(&step) {
                plans
            } else {
                &unplanned
            }
        };
        let ensure = |plans, held, bundle| {
            ensure_hosts(ctx, cluster, &resolved, &views, plans, held, bundle)
        };
        let holds_none = BTreeSet::new();
        futures::future::try_join3(
            ensure(
                if_planned(Step::EnsureEtcd, &etcd_plans),
                &rolled.held,
                None,
            ),
            ensure(
                if_planned(Step::EnsureControlPlane, &control_plane_plans),
                &rolled.held,
                Some(&resolved.bundle),
            ),
            ensure(
                if_planned(Step::EnsureLoadBalancer, &lb_plans),
                &holds_none,
                None,
            ),
        )
        .await?;
        // A host the External control plane gave up (replaced or scaled away) stops serving
        // it once it answers; it holds no state, so nothing else needs wiping.
        if topology == Topology::External {
            for host in allowed_control_plane
                .iter()
                .filter(|h| !roles.control_plane.contains(h))
            {
                let Some(view) = views.get(host).filter(|v| v.observed.reachable) else {
                    continue;
                };
                let running: Vec<&String> = roles
                    .control_plane_units
                    .iter()
                    .filter(|u| view.observed.units.contains_key(*u))
                    .collect();
                if running.is_empty() {
                    continue;
                }
                remove_units(ctx, cluster, &resolved, host, &running).await?;
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "ControlPlaneRemoved",
                    &format!(
                        "stopped the control plane on {host}, which no longer serves the Cluster"
                    ),
                )
                .await;
            }
        }
        Ok(())
    };

    // Status.
    let unreachable: Vec<String> = planned
        .steps
        .iter()
        .find_map(|s| match s {
            Step::WaitForHosts(h) => Some(h.clone()),
            _ => None,
        })
        .unwrap_or_default();
    condition_from(&mut status, "EtcdQuorum", &planned.etcd_quorum, generation);
    condition_from(
        &mut status,
        "ControlPlaneReady",
        &planned.control_plane_ready,
        generation,
    );
    condition_from(
        &mut status,
        "LoadBalancerReady",
        &planned.load_balancer_ready,
        generation,
    );
    let was_available = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True");
    let waiting = [
        &planned.etcd_quorum,
        &planned.control_plane_ready,
        &planned.load_balancer_ready,
    ]
    .into_iter()
    .find(|c| !c.ok)
    .map(|c| c.message.clone())
    .unwrap_or_default();
    if planned.available {
        set_condition(
            &mut status,
            "Available",
            true,
            "ClusterAvailable",
            &format!("the API answers at {endpoint}"),
            generation,
        );
    } else {
        set_condition(
            &mut status,
            "Available",
            false,
            "NotAvailable",
            &waiting,
            generation,
        );
    }
    if planned.complete {
        set_condition(
            &mut status,
            "Progressing",
            false,
            "Stable",
            "every component is up",
            generation,
        );
    } else {
        set_progressing(
            &mut status,
            cluster.spec.paused,
            "BringingUp",
            &waiting,
            generation,
        );
    }
    let unhealthy_members = members.iter().filter(|m| !m.healthy).count();
    // Once the Cluster has been complete, anything missing degrades it, served or not.
    let incomplete = recorded && !planned.complete;
    if !unreachable.is_empty()
        || incomplete
        || (was_available && !planned.available)
        || (planned.available && unhealthy_members > 0)
    {
        let message = if !unreachable.is_empty() {
            format!("hosts not reachable: {}", unreachable.join(", "))
        } else if unhealthy_members > 0 {
            format!("{unhealthy_members} etcd member(s) unhealthy")
        } else {
            waiting.clone()
        };
        set_condition(
            &mut status,
            "Degraded",
            true,
            "ComponentsUnhealthy",
            &message,
            generation,
        );
    } else {
        set_condition(
            &mut status,
            "Degraded",
            false,
            "AsExpected",
            "nothing is degraded",
            generation,
        );
    }
    if let Some(halt) = &rolled.halted {
        let already = condition_is(&status, "Progressing", "False", &halt.message);
        set_condition(
            &mut status,
            "Progressing",
            false,
            "RolloutHalted",
            &halt.message,
            generation,
        );
        set_condition(
            &mut status,
            "Degraded",
            true,
            "RolloutHalted",
            &halt.message,
            generation,
        );
        if !already {
            publish(
                ctx,
                cluster,
                EventType::Warning,
                "RolloutHalted",
                &halt.message,
            )
            .await;
        }
    } else if let Some(host) = rolled.rolling() {
        set_progressing(
            &mut status,
            cluster.spec.paused,
            "RollingUpdate",
            &format!(
                "rolling the Cluster's change through {host}; {} more host(s) wait their turn",
                rolled.held.iter().filter(|h| *h != host).count()
            ),
            generation,
        );
    }
    status.rollout = rolled.record.as_ref().map(rollout_status);
    let membership_done = membership_plan
        .as_ref()
        .is_none_or(|p| p.step == membership::Step::Done);
    if let Some(rotation) = rotation
        .as_ref()
        .filter(|r| r.phase != AuthorityRotationPhase::Completed)
    {
        if rolled.halted.is_none() {
            set_progressing(
                &mut status,
                cluster.spec.paused,
                "RotatingAuthorities",
                &format!(
                    "certificate-authority rotation {:?}: {}",
                    rotation.request,
                    rotation_stage_text(rotation.phase)
                ),
                generation,
            );
        }
    }
    // The next phase is recorded here and acted on from the next reconcile, so a new leader
    // resumes from what the status says the PKI is doing.
    let progress = authorities::Progress {
        settled: planned.complete
            && changed.is_empty()
            && membership_done
            && rolled.record.is_none()
            && rolled.halted.is_none()
            && rollout_hosts.iter().all(|h| h.current && h.serving),
        bringing_up: !recorded,
    };
    if let Some(next) = authorities::advance(
        cluster.spec.certificates.authority_rotation.as_deref(),
        rotation.as_ref(),
        progress,
    ) {
        publish(
            ctx,
            cluster,
            EventType::Normal,
            if next.phase == AuthorityRotationPhase::Completed {
                "AuthoritiesRotated"
            } else {
                "RotatingAuthorities"
            },
            &format!(
                "certificate-authority rotation {:?}: {}",
                next.request,
                rotation_stage_text(next.phase)
            ),
        )
        .await;
        status.authority_rotation = Some(AuthorityRotationStatus {
            request: next.request,
            phase: next.phase,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        });
    }
    let rotating = status
        .authority_rotation
        .as_ref()
        .is_some_and(|r| r.phase != AuthorityRotationPhase::Completed);
    {
        let watched: BTreeSet<&String> =
            allowed_etcd.iter().chain(&allowed_control_plane).collect();
        let mut clocks = ctx.failure_clocks.lock().await;
        status.failing_hosts = failure_clock(&mut clocks, cluster, &status)
            .failing(&watched)
            .into_iter()
            .filter_map(|(host, since)| {
                Some(FailingHostStatus {
                    host,
                    since: Time(k8s_openapi::jiff::Timestamp::try_from(since).ok()?),
                })
            })
            .collect();
    }
    let membership_degraded = membership_plan
        .as_ref()
        .and_then(|p| p.summary.degraded.as_ref());
    if let Some(degraded) = membership_degraded {
        set_condition(
            &mut status,
            "Degraded",
            true,
            degraded.reason,
            &degraded.message,
            generation,
        );
    }
    if let Some(replacing) = membership_plan
        .as_ref()
        .and_then(|p| replacement_progress(&p.step))
    {
        set_progressing(
            &mut status,
            cluster.spec.paused,
            "ReplacingMember",
            &replacing,
            generation,
        );
    }
    if planned.available && !was_available {
        publish(
            ctx,
            cluster,
            EventType::Normal,
            "Available",
            &format!("the cluster answers at {endpoint}"),
        )
        .await;
    }
    status.phase = Some(
        if planned.complete
            && unhealthy_members == 0
            && unreachable.is_empty()
            && membership_degraded.is_none()
            && rolled.halted.is_none()
        {
            "Running"
        } else if recorded {
            "Degraded"
        } else {
            "Provisioning"
        }
        .into(),
    );
    status.etcd_members = members;
    // Placement is recorded once every member and control-plane host has come up together.
    if recorded || planned.complete {
        status.etcd_hosts = etcd_hosts;
    }
    status.control_plane = roles
        .control_plane
        .iter()
        .map(|host| ControlPlaneHostStatus {
            host: host.clone(),
            components: roles
                .control_plane_units
                .iter()
                .map(|unit| ComponentStatus {
                    name: unit.clone(),
                    // The bundle it runs from, which a rollout changes host by host.
                    version: views
                        .get(host)
                        .and_then(|v| v.specs.get(unit))
                        .map(|spec| spec.bundle_version.clone())
                        .filter(|v| !v.is_empty()),
                    ready: observed
                        .hosts
                        .get(host)
                        .and_then(|o| o.units.get(unit))
                        .copied()
                        .unwrap_or(false),
                })
                .collect(),
        })
        .collect();
    status.observed_generation = generation;
    let (acted, written) = futures::future::join(act, write_status(ctx, cluster, &status)).await;
    acted?;
    written?;
    ctx.metrics.conditions(cluster, &status);
    let settled =
        membership_done && !rotating && (rolled.record.is_none() || rolled.halted.is_some());
    // A cluster coming up or a failing host is watched closely: each stage of a bring-up
    // waits on the one before (and a Cluster that serves nobody yet is looked at most often),
    // and a failure threshold runs out between reconciles.
    Ok(Action::requeue(if planned.complete && settled {
        Duration::from_secs(15)
    } else if !planned.available {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(250)
    }))
}

/// The hosts the Cluster may hold etcd members on, most preferred first: stacked, the selected
/// control-plane hosts and their spares; external, the selected etcd hosts and their spares.
fn allowed_etcd_hosts(topology: Topology, valid: &ValidCluster) -> Vec<String> {
    match topology {
        Topology::Stacked => valid
            .placement
            .control_plane
            .iter()
            .chain(&valid.placement.control_plane_spares)
            .cloned()
            .collect(),
        Topology::External => valid
            .placement
            .etcd
            .iter()
            .chain(&valid.placement.etcd_spares)
            .cloned()
            .collect(),
    }
}

/// The External topology's control-plane hosts: the recorded ones, a host dead past the
/// failure threshold (once the Cluster has been up) replaced by a healthy spare.
async fn external_control_plane(
    ctx: &Context,
    cluster: &Cluster,
    status: &ClusterStatus,
    resolved: &Resolved,
    views: &BTreeMap<String, HostView>,
    allowed: &[String],
    replaces: bool,
) -> Vec<String> {
    let units = control_plane_units(&resolved.bundle);
    let rolling = status.rollout.as_ref().map(|r| r.host.as_str());
    let recorded: Vec<String> = status
        .control_plane
        .iter()
        .map(|c| c.host.clone())
        .collect();
    let mut failing = BTreeSet::new();
    let mut dead = BTreeSet::new();
    let mut clocks = ctx.failure_clocks.lock().await;
    let clock = failure_clock(&mut clocks, cluster, status);
    for host in allowed {
        // A recorded host fails when hostd or its components do not answer (the host a change
        // rolls through excepted: the rollout has its own timeout); a spare when hostd does not.
        let healthy = views
            .get(host)
            .filter(|v| v.observed.reachable)
            .is_some_and(|v| {
                !recorded.contains(host)
                    || rolling == Some(host.as_str())
                    || units.iter().all(|u| v.observed.units.get(u) == Some(&true))
            });
        if let Some(failed_for) = clock.observe(host, healthy, SystemTime::now()) {
            failing.insert(host.clone());
            if replaces && failed_for > ctx.host_failure_threshold {
                dead.insert(host.clone());
            }
        }
    }
    control_plane::hosts(&control_plane::Inputs {
        recorded: &recorded,
        placement: &resolved.valid.placement.control_plane,
        allowed,
        replicas: usize::try_from(cluster.spec.control_plane.replicas).unwrap_or(1),
        failing: &failing,
        dead: &dead,
    })
}

/// This Cluster's failure clock; a leader that has none yet resumes the one the status recorded.
fn failure_clock<'a>(
    clocks: &'a mut BTreeMap<String, FailureClock>,
    cluster: &Cluster,
    status: &ClusterStatus,
) -> &'a mut FailureClock {
    clocks.entry(cluster_key(cluster)).or_insert_with(|| {
        FailureClock::resumed(
            status
                .failing_hosts
                .iter()
                .map(|f| (f.host.clone(), SystemTime::from(f.since.0))),
        )
    })
}

/// keepalived's settings on load-balancer `host` when two share a virtual IP: the first host
/// named takes the address first.
fn load_balancer_vrrp(
    cluster: &Cluster,
    resolved: &Resolved,
    views: &BTreeMap<String, HostView>,
    host: &str,
) -> Option<render::Vrrp> {
    use sha2::{Digest, Sha256};
    let virtual_ip = resolved.valid.placement.virtual_ip?;
    let hosts = &resolved.valid.placement.load_balancers;
    let own = *resolved.addresses.get(host)?;
    let peer = hosts
        .iter()
        .filter(|h| h.as_str() != host)
        .find_map(|h| resolved.addresses.get(h))?;
    let interface = views
        .get(host)?
        .facts
        .as_ref()?
        .interface_addresses
        .iter()
        .find(|a| a.address.parse::<IpAddr>().ok() == Some(own))?
        .interface
        .clone();
    let uid = cluster.uid().unwrap_or_default();
    let router_id = Sha256::digest(uid.as_bytes())[0].max(1);
    Some(render::Vrrp {
        virtual_ip,
        interface,
        peer: *peer,
        priority: if hosts.first().map(String::as_str) == Some(host) {
            150
        } else {
            100
        },
        router_id,
    })
}

fn record_hosts(records: &[EtcdHostStatus]) -> Vec<String> {
    records.iter().map(|r| r.host.clone()).collect()
}

/// The `Progressing` message while a membership change is under way.
fn replacement_progress(step: &membership::Step) -> Option<String> {
    use membership::{Step as M, Wait};
    Some(match step {
        M::Fence { host } => format!("fencing {host}, whose member was replaced"),
        M::AddLearner { host } => format!("adding an etcd learner on {host}"),
        M::StartMember { id, host } => format!("starting etcd member {id:x} on {host}"),
        M::PromoteLearner { id } => format!("promoting etcd learner {id:x}"),
        M::RemoveMember { id, host } => format!("removing etcd member {id:x} on {host}"),
        M::Wait(wait @ (Wait::LearnerCatchingUp { .. } | Wait::HostUnreachable { .. })) => {
            wait.message()
        }
        M::Wait(_) | M::Done => return None,
    })
}

/// The client URL of the member on `address`.
fn etcd_client_url(address: IpAddr) -> String {
    format!(
        "https://{}:{}",
        render::url_host(address),
        render::ETCD_CLIENT_PORT
    )
}

/// An etcd client with the health-check client certificate: etcd runs without auth, so any
/// certificate of the etcd CA may call the cluster RPCs.
async fn etcd_client(
    pki: &ClusterPki,
    urls: &[String],
    timeout: Duration,
) -> Result<etcd_client::Client, String> {
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(
            pki.etcd_ca_bundle.clone(),
        ))
        .identity(etcd_client::Identity::from_pem(
            pki.etcd_healthcheck_client.cert_pem.clone(),
            pki.etcd_healthcheck_client.key_pem.clone(),
        ));
    let options = etcd_client::ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(timeout);
    etcd_client::Client::connect(urls, Some(options))
        .await
        .map_err(|e| e.to_string())
}

/// etcd's member list, asked of the healthy members; `None` when none answers.
async fn member_list(
    pki: &ClusterPki,
    health: &[EtcdMemberStatus],
    addresses: &BTreeMap<String, IpAddr>,
) -> Option<Vec<ListedMember>> {
    let urls: Vec<String> = health
        .iter()
        .filter(|m| m.healthy)
        .filter_map(|m| Some(etcd_client_url(*addresses.get(&m.host)?)))
        .collect();
    if urls.is_empty() {
        return None;
    }
    let listed = async {
        let mut client = etcd_client(pki, &urls, CALL_TIMEOUT).await?;
        client.member_list().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(CALL_TIMEOUT, listed).await {
        Ok(Ok(response)) => Some(
            response
                .members()
                .iter()
                .map(|m| ListedMember {
                    id: m.id(),
                    name: m.name().to_string(),
                    peer_urls: m.peer_urls().to_vec(),
                    is_learner: m.is_learner(),
                })
                .collect(),
        ),
        Ok(Err(error)) => {
            tracing::debug!(%error, "etcd member list");
            None
        }
        Err(_) => {
            tracing::debug!("etcd member list timed out");
            None
        }
    }
}

/// Takes the membership planner's step; see [`membership`] for what each one asks.
struct MembershipChange<'a> {
    ctx: &'a Context,
    cluster: &'a Cluster,
    resolved: &'a Resolved,
    views: &'a BTreeMap<String, HostView>,
    pki: &'a ClusterPki,
    health: &'a [EtcdMemberStatus],
    listed: &'a [ListedMember],
}

impl MembershipChange<'_> {
    async fn client(&self) -> Result<etcd_client::Client, Error> {
        let urls: Vec<String> = self
            .health
            .iter()
            .filter(|m| m.healthy)
            .filter_map(|m| Some(etcd_client_url(*self.resolved.addresses.get(&m.host)?)))
            .collect();
        etcd_client(self.pki, &urls, CALL_TIMEOUT)
            .await
            .map_err(Error::Etcd)
    }

    async fn event(&self, reason: &str, note: &str) {
        tracing::info!(cluster = %self.cluster.name_any(), reason, note, "etcd membership");
        publish(self.ctx, self.cluster, EventType::Normal, reason, note).await;
    }

    async fn take(
        &self,
        step: &membership::Step,
        status: &mut ClusterStatus,
        etcd_hosts: &mut Vec<EtcdHostStatus>,
    ) -> Result<(), Error> {
        let etcd_error = |e: etcd_client::Error| Error::Etcd(e.to_string());
        match step {
            membership::Step::Fence { host } => {
                self.fence(host).await?;
                status.fenced_hosts.retain(|h| h != host);
                self.event(
                    "HostFenced",
                    &format!("stopped the replaced member's etcd on {host} and wiped its data"),
                )
                .await;
            }
            membership::Step::AddLearner { host } => {
                let address = self.resolved.addresses.get(host).ok_or_else(|| {
                    Error::Etcd(format!("{host} has no address for its peer URL"))
                })?;
                let added = self
                    .client()
                    .await?
                    .member_add(
                        [render::etcd_peer_url(*address)],
                        Some(etcd_client::MemberAddOptions::new().with_is_learner()),
                    )
                    .await
                    .map_err(etcd_error)?;
                let id = added.member().map(|m| m.id()).unwrap_or_default();
                self.event(
                    "MemberAdded",
                    &format!("added etcd member {id:x} on {host} as a learner"),
                )
                .await;
            }
            membership::Step::StartMember { host, .. } => {
                // Recorded here, not at MemberAdd: an add whose record was lost is started
                // all the same. The etcd ensure that follows starts the unit.
                if !etcd_hosts.iter().any(|r| &r.host == host) {
                    etcd_hosts.push(members::joining_member(
                        host,
                        self.listed,
                        &self.resolved.addresses,
                    ));
                }
            }
            membership::Step::PromoteLearner { id } => {
                self.client()
                    .await?
                    .member_promote(*id)
                    .await
                    .map_err(etcd_error)?;
                self.event("MemberPromoted", &format!("etcd learner {id:x} votes now"))
                    .await;
            }
            membership::Step::RemoveMember { id, host } => {
                // Fenced first and written down: should the removal be cut short, the mark
                // finishes it, and the host never rejoins with its old data.
                if !status.fenced_hosts.contains(host) {
                    status.fenced_hosts.push(host.clone());
                    write_status(self.ctx, self.cluster, status).await?;
                }
                self.client()
                    .await?
                    .member_remove(*id)
                    .await
                    .map_err(etcd_error)?;
                etcd_hosts.retain(|r| &r.host != host);
                self.event(
                    "MemberRemoved",
                    &format!("removed etcd member {id:x} on {host}"),
                )
                .await;
            }
            membership::Step::Wait(_) | membership::Step::Done => {}
        }
        Ok(())
    }

    /// Stops every unit of the Cluster on `host` and removes its etcd data.
    async fn fence(&self, host: &str) -> Result<(), Error> {
        let view = self.views.get(host);
        let root = view
            .and_then(|v| v.root.clone())
            .ok_or_else(|| Error::Hostd {
                host: host.to_string(),
                message: "not reachable".into(),
            })?;
        let units: Vec<&String> = view.iter().flat_map(|v| v.observed.units.keys()).collect();
        remove_units(self.ctx, self.cluster, self.resolved, host, &units).await?;
        let mut agent = self.ctx.agent(host, &self.resolved.endpoints[host]).await?;
        agent
            .remove_path(hostd::RemovePathRequest {
                path: format!("{root}/etcd"),
            })
            .await
            .map_err(hostd_error(host))?;
        Ok(())
    }
}

/// Turns hostd's answer into an error naming the host.
fn hostd_error(host: &str) -> impl Fn(tonic::Status) -> Error + Copy + '_ {
    move |e| Error::Hostd {
        host: host.to_string(),
        message: e.message().to_string(),
    }
}

/// Stops and removes the Cluster's `units` on `host`.
async fn remove_units(
    ctx: &Context,
    cluster: &Cluster,
    resolved: &Resolved,
    host: &str,
    units: &[&String],
) -> Result<(), Error> {
    let mut agent = ctx.agent(host, &resolved.endpoints[host]).await?;
    for unit in units {
        agent
            .remove_unit(hostd::RemoveUnitRequest {
                name: format!("{}{unit}", unit_prefix(cluster)),
            })
            .await
            .map_err(hostd_error(host))?;
    }
    Ok(())
}

fn control_plane_units(bundle: &Bundle) -> Vec<String> {
    let mut units = Vec::new();
    for (binary, unit) in [
        (render::APISERVER_BINARY, render::APISERVER),
        (render::SCHEDULER_BINARY, render::SCHEDULER),
        (
            render::CONTROLLER_MANAGER_BINARY,
            render::CONTROLLER_MANAGER,
        ),
    ] {
        if bundle.binaries.iter().any(|b| b == binary) {
            units.push(unit.to_string());
        }
    }
    units
}

fn etcd_servers(topology: &Topology, etcd: &BTreeMap<String, IpAddr>, own: &IpAddr) -> Vec<String> {
    match topology {
        // kubeadm's stacked layout: each API server talks to its own member.
        Topology::Stacked => vec![format!(
            "https://{}:{}",
            render::url_host(*own),
            render::ETCD_CLIENT_PORT
        )],
        Topology::External => etcd
            .values()
            .map(|ip| {
                format!(
                    "https://{}:{}",
                    render::url_host(*ip),
                    render::ETCD_CLIENT_PORT
                )
            })
            .collect(),
    }
}

fn host_paths(
    resolved: &Resolved,
    views: &BTreeMap<String, HostView>,
    host: &str,
) -> Result<HostPaths, Error> {
    let root = views
        .get(host)
        .and_then(|v| v.root.clone())
        .ok_or_else(|| Error::Hostd {
            host: host.to_string(),
            message: "not reachable".into(),
        })?;
    Ok(HostPaths {
        address: resolved.addresses[host],
        root,
    })
}

/// What hostd needs to fetch `bundle` from the operator's artifact endpoint and check it.
fn bundle_request(ctx: &Context, bundle: &Bundle) -> hostd::FetchBundleRequest {
    hostd::FetchBundleRequest {
        version: bundle.version.clone(),
        url: format!("{}/bundles/{}", ctx.artifact_url, bundle.file_name),
        sha256: bundle.sha256.clone(),
    }
}

/// Has `host` fetch and check `bundle` (hostd keeps it; a second fetch of a kept version
/// returns at once).
async fn fetch_bundle(
    ctx: &Context,
    resolved: &Resolved,
    host: &str,
    bundle: &Bundle,
) -> Result<(), Error> {
    let mut agent = ctx.agent(host, &resolved.endpoints[host]).await?;
    agent
        .fetch_bundle(bundle_request(ctx, bundle))
        .await
        .map_err(hostd_error(host))?;
    Ok(())
}

/// Starts `host` fetching `bundle`, once per host and version, without waiting: hostd fetches
/// one bundle at a time, so a later [`fetch_bundle`] waits for this one to finish. A failed
/// prefetch only costs that later fetch its head start; it reports its own error.
async fn prefetch_bundle(ctx: &Context, resolved: &Resolved, host: &str, bundle: &Bundle) {
    let Some(endpoint) = resolved.endpoints.get(host) else {
        return;
    };
    let first = ctx
        .prefetched
        .lock()
        .await
        .insert((endpoint.clone(), bundle.version.clone()));
    if !first {
        return;
    }
    let mut agent = match ctx.agent(host, endpoint).await {
        Ok(agent) => agent,
        Err(e) => {
            tracing::debug!(%host, error = %e, "prefetching a bundle");
            return;
        }
    };
    let request = bundle_request(ctx, bundle);
    let host = host.to_string();
    tokio::spawn(async move {
        if let Err(e) = agent.fetch_bundle(request).await {
            tracing::debug!(%host, error = %e, "prefetching a bundle");
        }
    });
}

/// Ensures each plan on its host, all at once, but on the hosts the rollout `held`: members
/// of a new Cluster must all start to form a quorum, and hosts fetching the bundle one after
/// another would add up.
async fn ensure_hosts(
    ctx: &Context,
    cluster: &Cluster,
    resolved: &Resolved,
    views: &BTreeMap<String, HostView>,
    plans: &BTreeMap<String, HostPlan>,
    held: &BTreeSet<String>,
    bundle: Option<&Bundle>,
) -> Result<(), Error> {
    futures::future::try_join_all(
        plans
            .iter()
            .filter(|(host, _)| !held.contains(*host))
            .map(|(host, plan)| ensure_host(ctx, cluster, resolved, views, host, plan, bundle)),
    )
    .await?;
    Ok(())
}

async fn ensure_host(
    ctx: &Context,
    cluster: &Cluster,
    resolved: &Resolved,
    views: &BTreeMap<String, HostView>,
    host: &str,
    plan: &HostPlan,
    bundle: Option<&Bundle>,
) -> Result<(), Error> {
    let paths = host_paths(resolved, views, host)?;
    let hostd_error = hostd_error(host);
    let endpoint = &resolved.endpoints[host];
    let files_digest = plan.files_digest(&paths.root);
    let runs_the_plan = views.get(host).is_some_and(|view| {
        host_runs(cluster, view, plan, bundle)
            && plan.units.iter().all(|unit| view.live.contains(&unit.name))
    });
    if runs_the_plan && ctx.given_recently(endpoint, &paths.root, &files_digest) {
        return Ok(());
    }
    if let Some(bundle) = bundle {
        fetch_bundle(ctx, resolved, host, bundle).await?;
    }
    let agent = ctx.agent(host, endpoint).await?;
    // Each file and then each unit goes in its own request at once: on one HTTP/2 connection
    // a host's dozen files cost one round trip, not twelve.
    futures::future::try_join_all(plan.files.iter().map(|file| {
        let mut agent = agent.clone();
        let request = hostd::WriteFileRequest {
            path: format!("{}/{}", paths.root, file.path),
            content: file.content.clone(),
            mode: file.mode,
        };
        async move { agent.write_file(request).await }
    }))
    .await
    .map_err(hostd_error)?;
    ctx.files_given
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(
            (endpoint.clone(), paths.root.clone()),
            (files_digest, Instant::now()),
        );
    let actions = futures::future::try_join_all(plan.units.iter().map(|unit| {
        let mut agent = agent.clone();
        let request = hostd::EnsureUnitRequest {
            spec: Some(unit_spec(
                cluster,
                unit,
                &paths.root,
                bundle,
                plan.inputs_digest(unit, &paths.root),
            )),
        };
        async move {
            let response = agent.ensure_unit(request).await?.into_inner();
            Ok((unit, response.action))
        }
    }))
    .await
    .map_err(hostd_error)?;
    for (unit, action) in actions {
        let action =
            hostd::EnsureAction::try_from(action).unwrap_or(hostd::EnsureAction::Unspecified);
        let verb = match action {
            hostd::EnsureAction::Created => Some("Started"),
            hostd::EnsureAction::Restarted => Some("Restarted"),
            hostd::EnsureAction::Reloaded => Some("Reloaded"),
            _ => None,
        };
        if let Some(verb) = verb {
            publish(
                ctx,
                cluster,
                EventType::Normal,
                verb,
                &format!("{verb} {} on {host}", unit.name),
            )
            .await;
        }
    }
    Ok(())
}

/// Whether every unit of `plan` runs on the host with the spec [`ensure_host`] would give it.
fn host_runs(cluster: &Cluster, view: &HostView, plan: &HostPlan, bundle: Option<&Bundle>) -> bool {
    let Some(root) = &view.root else {
        return false;
    };
    plan.units.iter().all(|unit| {
        let desired = unit_spec(cluster, unit, root, bundle, plan.inputs_digest(unit, root));
        view.specs
            .get(&unit.name)
            .is_some_and(|running| runs_as(running, &desired))
    })
}

/// hostd fills in what the operator leaves out (defaults, `PATH`); what the operator sets must
/// be what runs.
fn runs_as(running: &hostd::UnitSpec, desired: &hostd::UnitSpec) -> bool {
    running.command == desired.command
        && running.args == desired.args
        && running.bundle_version == desired.bundle_version
        && running.reload_digest == desired.reload_digest
        && desired
            .env
            .iter()
            .all(|(name, value)| running.env.get(name) == Some(value))
}

fn rollout_record(status: &RolloutStatus) -> rollout::Record {
    rollout::Record {
        host: status.host.clone(),
        restarted_at: status.restarted_at.as_ref().map(|t| SystemTime::from(t.0)),
        halted_generation: status.halted_generation,
    }
}

fn rollout_status(record: &rollout::Record) -> RolloutStatus {
    RolloutStatus {
        host: record.host.clone(),
        restarted_at: record
            .restarted_at
            .and_then(|t| k8s_openapi::jiff::Timestamp::try_from(t).ok())
            .map(Time),
        halted_generation: record.halted_generation,
    }
}

/// Carries [`HostPlan::inputs_digest`] in the spec of a unit that restarts for new files.
const INPUTS_DIGEST_ENV: &str = "HAKUBE_INPUTS_SHA256";

fn unit_spec(
    cluster: &Cluster,
    unit: &DesiredUnit,
    root: &str,
    bundle: Option<&Bundle>,
    inputs_digest: String,
) -> hostd::UnitSpec {
    let (command, bundle_version) = match &unit.program {
        Program::Bundle(binary) => (
            binary.clone(),
            bundle.map(|b| b.version.clone()).unwrap_or_default(),
        ),
        Program::System(program) => (program.clone(), String::new()),
    };
    let check = match &unit.readiness {
        Readiness::HttpGet(url) => Some(hostd::readiness_probe::Check::HttpGet(
            hostd::HttpGetProbe {
                url: url.clone(),
                insecure_skip_verify: true,
                ..Default::default()
            },
        )),
        Readiness::Tcp(address) => Some(hostd::readiness_probe::Check::TcpConnect(
            hostd::TcpConnectProbe {
                address: address.clone(),
            },
        )),
        Readiness::Running => None,
    };
    let mut spec = hostd::UnitSpec {
        name: format!("{}{}", unit_prefix(cluster), unit.name),
        command,
        args: unit.args.clone(),
        working_dir: root.to_string(),
        restart_policy: hostd::RestartPolicy::Always as i32,
        readiness_probe: check.map(|check| hostd::ReadinessProbe {
            check: Some(check),
            period_seconds: 1,
            ..Default::default()
        }),
        log_file: format!("{root}/logs/{}.log", unit.name),
        bundle_version,
        ..Default::default()
    };
    if unit.reloads_on_sigusr2 {
        spec.reload_signal = hostd::ReloadSignal::Sigusr2 as i32;
        spec.reload_digest = inputs_digest;
    } else {
        spec.env = [(INPUTS_DIGEST_ENV.to_string(), inputs_digest)].into();
    }
    spec
}

/// Each etcd member's health, asked over TLS with the health-check client certificate.
async fn etcd_health(
    pki: &ClusterPki,
    members: &BTreeMap<String, IpAddr>,
    failing: &BTreeSet<String>,
) -> Vec<EtcdMemberStatus> {
    futures::future::join_all(members.iter().map(|(host, ip)| async move {
        let urls = [etcd_client_url(*ip)];
        let status = async {
            let mut client = etcd_client(pki, &urls, Duration::from_secs(2)).await.ok()?;
            client.status().await.ok()
        };
        let budget = if failing.contains(host) {
            FAILING_HOST_TIMEOUT
        } else {
            Duration::from_secs(3)
        };
        let status = tokio::time::timeout(budget, status).await.ok().flatten();
        let member_id = status
            .as_ref()
            .and_then(|s| s.header())
            .map(|h| h.member_id());
        EtcdMemberStatus {
            name: host.clone(),
            host: host.clone(),
            id: member_id.map(|id| format!("{id:x}")),
            healthy: status.is_some(),
            leader: status
                .as_ref()
                .is_some_and(|s| Some(s.leader()) == member_id),
        }
    }))
    .await
}

/// `/readyz` through the load balancer, with the admin kubeconfig.
async fn endpoint_ready(admin_kubeconfig: &str, address: (IpAddr, u16)) -> bool {
    // Nothing listening yet is the common case during bring-up: no client for that.
    let listening = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(address),
    )
    .await;
    if !matches!(listening, Ok(Ok(_))) {
        return false;
    }
    let ready = async {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(admin_kubeconfig).ok()?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .ok()?;
        let client = Client::try_from(config).ok()?;
        let request = http::Request::get("/readyz").body(Vec::new()).ok()?;
        client.request_text(request).await.ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), ready).await, Ok(Some(body)) if body.trim() == "ok")
}

/// A Host's status after an observation. A host that answered gets a heartbeat and the facts
/// its hostd reported; one that did not keeps its last heartbeat and facts, as a node's last
/// heartbeat stays when its kubelet goes silent. The `Reachable` condition keeps its
/// `lastTransitionTime` while its status holds.
fn host_status(
    previous: Option<&HostStatus>,
    view: &HostView,
    hostd_endpoint: &str,
    now: Time,
) -> HostStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.reachable = view.observed.reachable;
    let (reason, message) = match &view.facts {
        Some(facts) => {
            status.last_heartbeat = Some(now.clone());
            status.agent_version = Some(facts.agent_version.clone());
            status.capacity = Some(HostCapacity {
                cpu: Quantity(facts.cpu_count.to_string()),
                memory: Quantity(facts.memory_bytes.to_string()),
                disk: Quantity(facts.disk_bytes.to_string()),
            });
            (
                "HostdAnswered",
                format!("hakube-hostd answered at {hostd_endpoint}"),
            )
        }
        None => (
            "HostdUnreachable",
            format!("hakube-hostd did not answer at {hostd_endpoint}"),
        ),
    };
    put_condition(
        &mut status.conditions,
        "Reachable",
        view.facts.is_some(),
        reason,
        &message,
        None,
        now,
    );
    status
}

/// Writes a Host's status beside the reconcile (which does not read it back). A host whose
/// previous write is still in flight skips this one: writes then land in the order they were
/// made, and the next reconcile reports again.
fn record_host(ctx: &Context, host: &str, status: HostStatus) {
    let patch = json!({"apiVersion": "hakube.io/v1alpha1", "kind": "Host", "status": status});
    let writes = ctx.host_status_writes.clone();
    if !writes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(host.to_string())
    {
        return;
    }
    let hosts: Api<Host> = Api::all(ctx.client.clone());
    let host = host.to_string();
    tokio::spawn(async move {
        if let Err(e) = hosts
            .patch_status(
                &host,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            tracing::debug!(%host, error = %e, "recording host status");
        }
        writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&host);
    });
}

async fn cleanup(cluster: &Cluster, ctx: &Context) -> Result<Action, Error> {
    ctx.endpoints_of
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&ObjectRef::from_obj(cluster));
    let Ok(resolved) = resolve(cluster, ctx).await? else {
        // An invalid Cluster never started anything.
        return Ok(Action::await_change());
    };
    for (host, endpoint) in &resolved.endpoints {
        let view = observe_host(ctx, cluster, host, endpoint).await;
        let Some(root) = view.root else {
            tracing::warn!(%host, "host unreachable while deleting its cluster; its units stay");
            continue;
        };
        let mut agent = ctx.agent(host, endpoint).await?;
        let hostd_error = hostd_error(host);
        for unit in view.observed.units.keys() {
            agent
                .remove_unit(hostd::RemoveUnitRequest {
                    name: format!("{}{unit}", unit_prefix(cluster)),
                })
                .await
                .map_err(hostd_error)?;
        }
        agent
            .remove_path(hostd::RemovePathRequest { path: root })
            .await
            .map_err(hostd_error)?;
    }
    publish(
        ctx,
        cluster,
        EventType::Normal,
        "Deleted",
        "stopped every unit and removed the cluster's files",
    )
    .await;
    Ok(Action::await_change())
}

fn owner(cluster: &Cluster) -> OwnerReference {
    OwnerReference {
        api_version: Cluster::api_version(&()).into_owned(),
        kind: Cluster::kind(&()).into_owned(),
        name: cluster.name_any(),
        uid: cluster.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn rotation_stage_text(phase: AuthorityRotationPhase) -> &'static str {
    match phase {
        AuthorityRotationPhase::TrustingNew => {
            "new authorities made; every host is brought to trust both old and new"
        }
        AuthorityRotationPhase::ReissuingLeaves => {
            "every leaf certificate is re-issued by the new authorities"
        }
        AuthorityRotationPhase::DroppingOld => {
            "the old authorities are dropped; only the new are trusted"
        }
        AuthorityRotationPhase::Completed => "completed",
    }
}

async fn write_status(
    ctx: &Context,
    cluster: &Cluster,
    status: &ClusterStatus,
) -> Result<(), Error> {
    let api: Api<Cluster> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "hakube.io/v1alpha1", "kind": "Cluster", "status": status});
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn publish(ctx: &Context, cluster: &Cluster, type_: EventType, reason: &str, note: &str) {
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::debug!(error = %e, "publishing an event");
    }
}

fn condition_is(status: &ClusterStatus, type_: &str, value: &str, message: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == value && c.message == message)
}

fn condition_from(status: &mut ClusterStatus, type_: &str, check: &Check, generation: Option<i64>) {
    set_condition(
        status,
        type_,
        check.ok,
        check.reason,
        &check.message,
        generation,
    );
}

/// `Progressing` for work under way: `True` with `reason`, or `False` with `Paused` while the
/// Cluster is paused.
fn set_progressing(
    status: &mut ClusterStatus,
    paused: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let reason = if paused { "Paused" } else { reason };
    set_condition(status, "Progressing", !paused, reason, message, generation);
}

/// Sets one of a Cluster's conditions, keeping its `lastTransitionTime` unless its status
/// changes.
pub fn set_condition(
    status: &mut ClusterStatus,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    put_condition(
        &mut status.conditions,
        type_,
        ok,
        reason,
        message,
        generation,
        now,
    );
}

/// Sets a condition in a list, keeping its `lastTransitionTime` unless its status changes.
fn put_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Time,
) {
    let value = if ok { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now;
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: value.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: generation,
        }),
    }
}

#[cfg(test)]
mod tests;
