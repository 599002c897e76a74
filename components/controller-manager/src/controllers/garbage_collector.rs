//! garbage-collector-controller: keeps a graph of ownerReferences over every resource type the
//! API serves (metadata-only watches, rediscovered every 30 s so custom resources join) and
//! acts on it as upstream does:
//! - background: an object whose owners are all gone is deleted;
//! - foreground: an owner being deleted with the `foregroundDeletion` finalizer has its
//!   dependents deleted, and loses the finalizer once no dependent blocks it
//!   (`blockOwnerDeletion`);
//! - orphan: an owner being deleted with the `orphan` finalizer has its dependents' references
//!   to it removed, then loses the finalizer.
//!
//! An owner missing from the graph is looked up live before a dependent is judged, so a
//! lagging watch never deletes anything.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::discovery::{verbs, ApiCapabilities, ApiResource, Scope};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

use crate::context::Context;
use crate::controllers::discovery;

const QUEUE_DELETE: &str = "garbage_collector_attempt_to_delete";
const QUEUE_ORPHAN: &str = "garbage_collector_attempt_to_orphan";
pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
const REDISCOVERY: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} {kind} {name}: {source}")]
    Api {
        action: &'static str,
        kind: String,
        name: String,
        source: kube::Error,
    },
}

/// Where an object lives: enough to read, patch and delete it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub name: String,
}

/// One object of the graph.
#[derive(Debug, Clone)]
pub struct GraphNode {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    pub dependents: BTreeSet<String>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl GraphNode {
    fn deleting_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }
}

/// The ownership graph: objects by uid, and for each uid the objects naming it as an owner
/// (whether or not the owner itself has been seen).
#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: HashMap<String, GraphNode>,
    pub dependents: HashMap<String, BTreeSet<String>>,
}

/// The work a graph change calls for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub attempt_to_delete: BTreeSet<String>,
    pub attempt_to_orphan: BTreeSet<String>,
}

impl Graph {
    /// Records an added or changed object; returns the work its change calls for.
    pub fn upsert(&mut self, identity: Identity, meta: &ObjectMeta, synced: bool) -> Work {
        let mut work = Work::default();
        let Some(uid) = meta.uid.clone() else {
            return work;
        };
        let owners = meta.owner_references.clone().unwrap_or_default();
        let deleting = meta.deletion_timestamp.is_some();
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        let previous = self.nodes.get(&uid).cloned();
        let old_owners = previous
            .as_ref()
            .map(|p| p.owners.clone())
            .unwrap_or_default();
        for gone in old_owners
            .iter()
            .filter(|o| !owners.iter().any(|n| n.uid == o.uid))
        {
            if let Some(set) = self.dependents.get_mut(&gone.uid) {
                set.remove(&uid);
            }
            // An owner waiting on this dependent may now be free of it.
            if self
                .nodes
                .get(&gone.uid)
                .is_some_and(GraphNode::deleting_dependents)
            {
                work.attempt_to_delete.insert(gone.uid.clone());
            }
        }
        for owner in &owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(uid.clone());
            let unblocked = old_owners.iter().any(|o| {
                o.uid == owner.uid
                    && o.block_owner_deletion == Some(true)
                    && owner.block_owner_deletion != Some(true)
            });
            if unblocked
                && self
                    .nodes
                    .get(&owner.uid)
                    .is_some_and(GraphNode::deleting_dependents)
            {
                work.attempt_to_delete.insert(owner.uid.clone());
            }
        }
        let node = GraphNode {
            identity,
            owners: owners.clone(),
            dependents: BTreeSet::new(),
            deleting,
            finalizers: finalizers.clone(),
        };
        let was_deleting = previous.as_ref().is_some_and(|p| p.deleting);
        let had = |f: &str| {
            previous
                .as_ref()
                .is_some_and(|p| p.finalizers.iter().any(|x| x == f))
        };
        self.nodes.insert(uid.clone(), node);
        if deleting && finalizers.iter().any(|f| f == ORPHAN) && (!was_deleting || !had(ORPHAN)) {
            work.attempt_to_orphan.insert(uid.clone());
        }
        if deleting
            && finalizers.iter().any(|f| f == FOREGROUND)
            && (!was_deleting || !had(FOREGROUND))
        {
            work.attempt_to_delete.insert(uid.clone());
            work.attempt_to_delete.extend(self.dependents_of(&uid));
        }
        // A dependent whose owner the graph has not seen is judged once the graph is complete
        // (the owner is then looked up live).
        if synced && owners.iter().any(|o| !self.nodes.contains_key(&o.uid)) {
            work.attempt_to_delete.insert(uid);
        }
        work
    }

    /// Forgets a deleted object; its dependents and the owners waiting on it get another look.
    pub fn remove(&mut self, uid: &str) -> Work {
        let mut work = Work::default();
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        work.attempt_to_delete.extend(self.dependents_of(uid));
        for owner in &node.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
            if self
                .nodes
                .get(&owner.uid)
                .is_some_and(GraphNode::deleting_dependents)
            {
                work.attempt_to_delete.insert(owner.uid.clone());
            }
        }
        work
    }

    pub fn dependents_of(&self, uid: &str) -> BTreeSet<String> {
        self.dependents.get(uid).cloned().unwrap_or_default()
    }

    /// Dependents still holding up an owner's foreground deletion.
    pub fn blocking_dependents(&self, owner: &str) -> Vec<String> {
        self.dependents_of(owner)
            .into_iter()
            .filter(|d| {
                self.nodes.get(d).is_some_and(|n| {
                    n.owners
                        .iter()
                        .any(|o| o.uid == owner && o.block_owner_deletion == Some(true))
                })
            })
            .collect()
    }

    /// Objects with an owner the graph has not seen.
    pub fn with_unseen_owners(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.owners.iter().any(|o| !self.nodes.contains_key(&o.uid)))
            .map(|(uid, _)| uid.clone())
            .collect()
    }
}

/// How a dependent stands with one owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not deleting its dependents in the foreground.
    Solid,
    /// Gone (or replaced by another object of the same name).
    Dangling,
    /// Being deleted in the foreground: waiting for its dependents to go.
    WaitingForDependents,
    /// Could not be resolved (unknown kind): left alone.
    Unknown,
}

/// What to do with a dependent given its owners' states.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Keep,
    /// Some owner is solid: only drop the references to the gone and waiting owners.
    RemoveOwnerRefs(Vec<String>),
    Delete(PropagationPolicy),
}

/// Upstream's attemptToDeleteItem decision.
pub fn verdict(
    owners: &[(OwnerReference, OwnerState)],
    has_dependents: bool,
    finalizers: &[String],
) -> Verdict {
    if owners.is_empty() || owners.iter().any(|(_, s)| *s == OwnerState::Unknown) {
        return Verdict::Keep;
    }
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    let dropped: Vec<String> = owners
        .iter()
        .filter(|(_, s)| matches!(s, OwnerState::Dangling | OwnerState::WaitingForDependents))
        .map(|(o, _)| o.uid.clone())
        .collect();
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if solid {
        return if dropped.is_empty() {
            Verdict::Keep
        } else {
            Verdict::RemoveOwnerRefs(dropped)
        };
    }
    if waiting && has_dependents {
        return Verdict::Delete(PropagationPolicy::Foreground);
    }
    let policy = if finalizers.iter().any(|f| f == ORPHAN) {
        PropagationPolicy::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    Verdict::Delete(policy)
}

/// Resource types the collector watches: every listable, watchable, deletable one but events.
fn collectable(resource: &ApiResource, caps: &ApiCapabilities) -> bool {
    resource.plural != "events"
        && [verbs::LIST, verbs::WATCH, verbs::DELETE]
            .iter()
            .all(|v| caps.supports_operation(v))
}

/// What discovery says about the API's resource types.
#[derive(Default)]
struct Kinds {
    /// (group, kind) → the resource at its group's preferred version, with its scope.
    by_kind: HashMap<(String, String), Vec<(ApiResource, Scope)>>,
}

impl Kinds {
    fn resolve(&self, api_version: &str, kind: &str) -> Option<(ApiResource, Scope)> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let candidates = self.by_kind.get(&(group.to_string(), kind.to_string()))?;
        candidates
            .iter()
            .find(|(r, _)| r.version == version)
            .or_else(|| candidates.first())
            .cloned()
    }
}

struct Collector {
    ctx: Arc<Context>,
    graph: Mutex<Graph>,
    kinds: Mutex<Kinds>,
    delete_queue: WorkQueue,
    orphan_queue: WorkQueue,
}

/// A deduplicating queue of uids: an item queued twice before it is worked is worked once.
struct WorkQueue {
    tx: mpsc::UnboundedSender<String>,
    queued: Mutex<HashSet<String>>,
}

impl WorkQueue {
    fn new() -> (WorkQueue, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            WorkQueue {
                tx,
                queued: Mutex::default(),
            },
            rx,
        )
    }

    fn add(&self, uid: String) {
        let fresh = self
            .queued
            .lock()
            .map(|mut q| q.insert(uid.clone()))
            .unwrap_or(true);
        if fresh {
            let _ = self.tx.send(uid);
        }
    }

    fn taken(&self, uid: &str) {
        if let Ok(mut q) = self.queued.lock() {
            q.remove(uid);
        }
    }
}

enum Change {
    Apply(ApiResource, Box<ObjectMeta>),
    Delete(String),
    /// A (re)list of one resource type ended with these uids present.
    Relisted(ApiResource, HashSet<String>),
    /// Discovery now watches this many resource types.
    Watching(usize),
}

pub async fn run(ctx: Arc<Context>) {
    let (delete_queue, delete_rx) = WorkQueue::new();
    let (orphan_queue, orphan_rx) = WorkQueue::new();
    let collector = Arc::new(Collector {
        ctx: ctx.clone(),
        graph: Mutex::default(),
        kinds: Mutex::default(),
        delete_queue,
        orphan_queue,
    });
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    let workers = Arc::new(Semaphore::new(
        ctx.options.concurrency.garbage_collector.max(1) as usize,
    ));
    tokio::spawn(collector.clone().work(delete_rx, workers.clone(), false));
    tokio::spawn(collector.clone().work(orphan_rx, workers, true));
    tokio::spawn(collector.clone().build_graph(changes_rx));
    collector.discover_forever(changes_tx).await;
}

impl Collector {
    fn enqueue(&self, work: Work) {
        for uid in work.attempt_to_delete {
            self.delete_queue.add(uid);
        }
        for uid in work.attempt_to_orphan {
            self.orphan_queue.add(uid);
        }
    }

    /// Watches every collectable resource type, adding new ones as discovery finds them.
    async fn discover_forever(self: Arc<Self>, changes: mpsc::UnboundedSender<(usize, Change)>) {
        let mut watched: HashSet<(String, String)> = HashSet::new();
        let mut total = 0usize;
        loop {
            match discovery::preferred_resources(&self.ctx.client).await {
                Ok(discovered) => {
                    if let Some(message) = discovered.failure_message() {
                        // Owners of the missing groups resolve to Unknown: left alone.
                        tracing::warn!(%message, "garbage collector discovery incomplete");
                    }
                    let mut kinds = Kinds::default();
                    for (resource, caps) in discovered.resources {
                        kinds
                            .by_kind
                            .entry((resource.group.clone(), resource.kind.clone()))
                            .or_default()
                            .push((resource.clone(), caps.scope.clone()));
                        if !collectable(&resource, &caps)
                            || !watched.insert((resource.group.clone(), resource.plural.clone()))
                        {
                            continue;
                        }
                        total += 1;
                        tracing::debug!(resource = %resource.plural, group = %resource.group, "garbage collector watching");
                        tokio::spawn(watch(
                            self.ctx.client.clone(),
                            resource,
                            total,
                            changes.clone(),
                        ));
                    }
                    if let Ok(mut k) = self.kinds.lock() {
                        *k = kinds;
                    }
                    // The graph counts as synced once every watched type has listed once.
                    let _ = changes.send((0, Change::Watching(total)));
                }
                Err(error) => tracing::warn!(%error, "garbage collector discovery failed"),
            }
            tokio::time::sleep(REDISCOVERY).await;
        }
    }

    /// Applies watch events to the graph, in order, and queues the work they call for.
    async fn build_graph(self: Arc<Self>, mut changes: mpsc::UnboundedReceiver<(usize, Change)>) {
        let mut expected = usize::MAX;
        let mut listed: HashSet<usize> = HashSet::new();
        let mut synced = false;
        while let Some((source, change)) = changes.recv().await {
            let work = match change {
                Change::Watching(total) => {
                    expected = total;
                    Work::default()
                }
                Change::Apply(resource, meta) => {
                    let identity = Identity {
                        resource,
                        namespace: meta.namespace.clone(),
                        name: meta.name.clone().unwrap_or_default(),
                    };
                    match self.graph.lock() {
                        Ok(mut graph) => graph.upsert(identity, &meta, synced),
                        Err(_) => Work::default(),
                    }
                }
                Change::Delete(uid) => match self.graph.lock() {
                    Ok(mut graph) => graph.remove(&uid),
                    Err(_) => Work::default(),
                },
                Change::Relisted(resource, present) => {
                    listed.insert(source);
                    // Objects of this type missing from the fresh list were deleted unseen.
                    let mut work = Work::default();
                    if let Ok(mut graph) = self.graph.lock() {
                        let vanished: Vec<String> = graph
                            .nodes
                            .iter()
                            .filter(|(uid, n)| {
                                n.identity.resource.group == resource.group
                                    && n.identity.resource.plural == resource.plural
                                    && !present.contains(*uid)
                            })
                            .map(|(uid, _)| uid.clone())
                            .collect();
                        for uid in vanished {
                            let w = graph.remove(&uid);
                            work.attempt_to_delete.extend(w.attempt_to_delete);
                        }
                    }
                    work
                }
            };
            self.enqueue(work);
            if !synced && expected != usize::MAX && listed.len() >= expected {
                synced = true;
                tracing::info!("garbage collector graph synced");
                let unseen = self
                    .graph
                    .lock()
                    .map(|g| g.with_unseen_owners())
                    .unwrap_or_default();
                self.enqueue(Work {
                    attempt_to_delete: unseen.into_iter().collect(),
                    attempt_to_orphan: BTreeSet::new(),
                });
            }
        }
    }

    /// Works queued uids, at most `--concurrent-gc-syncs` at once across both queues.
    async fn work(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<String>,
        workers: Arc<Semaphore>,
        orphan: bool,
    ) {
        while let Some(uid) = rx.recv().await {
            let Ok(permit) = workers.clone().acquire_owned().await else {
                return;
            };
            let collector = self.clone();
            tokio::spawn(async move {
                let queue = if orphan {
                    &collector.orphan_queue
                } else {
                    &collector.delete_queue
                };
                queue.taken(&uid);
                let timer =
                    collector
                        .ctx
                        .metrics
                        .sync(if orphan { QUEUE_ORPHAN } else { QUEUE_DELETE });
                let result = if orphan {
                    collector.attempt_to_orphan(&uid).await
                } else {
                    collector.attempt_to_delete(&uid).await
                };
                timer.done(result.is_ok());
                drop(permit);
                if let Err(error) = result {
                    tracing::warn!(%error, "garbage collection of {uid} failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    queue.add(uid);
                }
            });
        }
    }

    fn node(&self, uid: &str) -> Option<GraphNode> {
        self.graph.lock().ok()?.nodes.get(uid).cloned()
    }

    fn api(&self, identity: &Identity) -> Api<DynamicObject> {
        match &identity.namespace {
            Some(ns) => Api::namespaced_with(self.ctx.client.clone(), ns, &identity.resource),
            None => Api::all_with(self.ctx.client.clone(), &identity.resource),
        }
    }

    fn error(identity: &Identity, action: &'static str, source: kube::Error) -> Error {
        Error::Api {
            action,
            kind: identity.resource.kind.clone(),
            name: identity.name.clone(),
            source,
        }
    }

    /// The live object, if it is still the one the graph knows.
    async fn live(&self, identity: &Identity, uid: &str) -> Result<Option<ObjectMeta>, Error> {
        match self.api(identity).get_metadata_opt(&identity.name).await {
            Ok(Some(object)) if object.metadata.uid.as_deref() == Some(uid) => {
                Ok(Some(object.metadata))
            }
            Ok(_) => Ok(None),
            Err(source) => Err(Self::error(identity, "reading", source)),
        }
    }

    /// How a dependent in `namespace` stands with `owner`: the graph first, else a live read.
    async fn owner_state(
        &self,
        owner: &OwnerReference,
        namespace: Option<&str>,
    ) -> Result<OwnerState, Error> {
        if let Some(node) = self.node(&owner.uid) {
            return Ok(if node.deleting_dependents() {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            });
        }
        let resolved = self
            .kinds
            .lock()
            .ok()
            .and_then(|k| k.resolve(&owner.api_version, &owner.kind));
        let Some((resource, scope)) = resolved else {
            tracing::debug!(kind = %owner.kind, "owner kind not served; leaving its dependents alone");
            return Ok(OwnerState::Unknown);
        };
        let identity = Identity {
            resource,
            namespace: match scope {
                Scope::Namespaced => namespace.map(str::to_string),
                Scope::Cluster => None,
            },
            name: owner.name.clone(),
        };
        if matches!(scope, Scope::Namespaced) && namespace.is_none() {
            // A cluster-scoped object cannot be owned by a namespaced one.
            return Ok(OwnerState::Dangling);
        }
        Ok(match self.live(&identity, &owner.uid).await? {
            None => OwnerState::Dangling,
            Some(meta) => {
                let foreground = meta
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| f.iter().any(|f| f == FOREGROUND));
                if meta.deletion_timestamp.is_some() && foreground {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                }
            }
        })
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.node(uid) else {
            return Ok(());
        };
        let identity = node.identity.clone();
        let Some(latest) = self.live(&identity, uid).await? else {
            return Ok(());
        };
        let finalizers = latest.finalizers.clone().unwrap_or_default();
        if latest.deletion_timestamp.is_some() {
            if finalizers.iter().any(|f| f == FOREGROUND) {
                return self.process_deleting_dependents(uid, &identity).await;
            }
            return Ok(());
        }
        let owners = latest.owner_references.clone().unwrap_or_default();
        let mut states = Vec::new();
        for owner in owners {
            let state = self
                .owner_state(&owner, identity.namespace.as_deref())
                .await?;
            states.push((owner, state));
        }
        let has_dependents = self
            .graph
            .lock()
            .map(|g| !g.dependents_of(uid).is_empty())
            .unwrap_or(false);
        match verdict(&states, has_dependents, &finalizers) {
            Verdict::Keep => Ok(()),
            Verdict::RemoveOwnerRefs(gone) => {
                tracing::info!(kind = %identity.resource.kind, name = %identity.name, "removing references to deleted owners");
                self.remove_owner_refs(&identity, uid, &gone).await
            }
            Verdict::Delete(policy) => {
                tracing::info!(kind = %identity.resource.kind, name = %identity.name, ?policy, "deleting an object whose owners are gone");
                let params = DeleteParams {
                    propagation_policy: Some(policy),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_string()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.api(&identity).delete(&identity.name, &params).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                    Err(source) => Err(Self::error(&identity, "deleting", source)),
                }
            }
        }
    }

    /// An owner deleted in the foreground: its blocking dependents are deleted; once none is
    /// left its `foregroundDeletion` finalizer goes.
    async fn process_deleting_dependents(
        &self,
        uid: &str,
        identity: &Identity,
    ) -> Result<(), Error> {
        let blocking = self
            .graph
            .lock()
            .map(|g| g.blocking_dependents(uid))
            .unwrap_or_default();
        if blocking.is_empty() {
            tracing::info!(kind = %identity.resource.kind, name = %identity.name, "dependents gone; removing the foregroundDeletion finalizer");
            return self.remove_finalizer(identity, uid, FOREGROUND).await;
        }
        for dependent in blocking {
            if !self
                .node(&dependent)
                .is_some_and(|n| n.deleting_dependents())
            {
                self.delete_queue.add(dependent);
            }
        }
        Ok(())
    }

    /// An owner deleted with the orphan policy: its dependents forget it, then it goes.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.node(uid) else {
            return Ok(());
        };
        let dependents = self
            .graph
            .lock()
            .map(|g| g.dependents_of(uid))
            .unwrap_or_default();
        for dependent in dependents {
            let Some(dep) = self.node(&dependent) else {
                continue;
            };
            self.remove_owner_refs(&dep.identity, &dependent, &[uid.to_string()])
                .await?;
        }
        tracing::info!(kind = %node.identity.resource.kind, name = %node.identity.name, "dependents orphaned; removing the orphan finalizer");
        self.remove_finalizer(&node.identity, uid, ORPHAN).await
    }

    async fn remove_owner_refs(
        &self,
        identity: &Identity,
        uid: &str,
        owners: &[String],
    ) -> Result<(), Error> {
        let Some(latest) = self.live(identity, uid).await? else {
            return Ok(());
        };
        let refs = latest.owner_references.unwrap_or_default();
        let kept: Vec<&OwnerReference> = refs.iter().filter(|o| !owners.contains(&o.uid)).collect();
        if kept.len() == refs.len() {
            return Ok(());
        }
        let patch = json!({"metadata": {"ownerReferences": kept, "resourceVersion": latest.resource_version}});
        self.patch(identity, &patch, "removing owner references from")
            .await
    }

    async fn remove_finalizer(
        &self,
        identity: &Identity,
        uid: &str,
        finalizer: &str,
    ) -> Result<(), Error> {
        let Some(latest) = self.live(identity, uid).await? else {
            return Ok(());
        };
        let finalizers = latest.finalizers.unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch =
            json!({"metadata": {"finalizers": kept, "resourceVersion": latest.resource_version}});
        self.patch(identity, &patch, "removing a finalizer from")
            .await
    }

    async fn patch(
        &self,
        identity: &Identity,
        patch: &serde_json::Value,
        action: &'static str,
    ) -> Result<(), Error> {
        match self
            .api(identity)
            .patch(
                &identity.name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(Self::error(identity, action, source)),
        }
    }
}

/// One resource type's metadata watch, feeding the graph builder.
async fn watch(
    client: kube::Client,
    resource: ApiResource,
    source: usize,
    changes: mpsc::UnboundedSender<(usize, Change)>,
) {
    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client, &resource);
    let events = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut listing: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        let change = match event {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(object)) => {
                listing.extend(object.metadata.uid.clone());
                Change::Apply(resource.clone(), Box::new(object.metadata))
            }
            Ok(watcher::Event::InitDone) => {
                Change::Relisted(resource.clone(), std::mem::take(&mut listing))
            }
            Ok(watcher::Event::Apply(object)) => {
                Change::Apply(resource.clone(), Box::new(object.metadata))
            }
            Ok(watcher::Event::Delete(object)) => match object.metadata.uid {
                Some(uid) => Change::Delete(uid),
                None => continue,
            },
            Err(error) => {
                tracing::debug!(%error, resource = %resource.plural, "garbage collector watch interrupted");
                continue;
            }
        };
        if changes.send((source, change)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(block),
        }
    }

    fn meta(
        uid: &str,
        owners: Vec<OwnerReference>,
        finalizers: &[&str],
        deleting: bool,
    ) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            name: Some(uid.into()),
            namespace: Some("default".into()),
            owner_references: (!owners.is_empty()).then_some(owners),
            finalizers: (!finalizers.is_empty())
                .then(|| finalizers.iter().map(|f| f.to_string()).collect()),
            deletion_timestamp: deleting.then(|| {
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                )
            }),
            ..ObjectMeta::default()
        }
    }

    fn id<K: kube::Resource<DynamicType = ()>>(name: &str) -> Identity {
        Identity {
            resource: ApiResource::erase::<K>(&()),
            namespace: Some("default".into()),
            name: name.into(),
        }
    }

    #[test]
    fn graph_tracks_dependents_and_queues_work() {
        let mut graph = Graph::default();
        graph.upsert(
            id::<ReplicaSet>("rs"),
            &meta("rs", vec![], &[], false),
            true,
        );
        let work = graph.upsert(
            id::<Pod>("p1"),
            &meta("p1", vec![owner("rs", true)], &[], false),
            true,
        );
        assert!(work.attempt_to_delete.is_empty(), "its owner is known");
        graph.upsert(
            id::<Pod>("p2"),
            &meta("p2", vec![owner("rs", false)], &[], false),
            true,
        );
        assert_eq!(graph.dependents_of("rs").len(), 2);
        assert_eq!(graph.blocking_dependents("rs"), vec!["p1".to_string()]);

        // Foreground deletion of the owner: it and its dependents are looked at.
        let work = graph.upsert(
            id::<ReplicaSet>("rs"),
            &meta("rs", vec![], &[FOREGROUND], true),
            true,
        );
        assert_eq!(
            work.attempt_to_delete,
            BTreeSet::from(["rs".into(), "p1".into(), "p2".into()])
        );
        // A dependent going away gives the waiting owner another look.
        let work = graph.remove("p1");
        assert!(work.attempt_to_delete.contains("rs"));

        // Orphan deletion queues the owner for orphaning.
        let work = graph.upsert(
            id::<ReplicaSet>("rs"),
            &meta("rs", vec![], &[ORPHAN], true),
            true,
        );
        assert_eq!(work.attempt_to_orphan, BTreeSet::from(["rs".into()]));

        // The owner gone: its dependents are looked at.
        let work = graph.remove("rs");
        assert_eq!(work.attempt_to_delete, BTreeSet::from(["p2".into()]));
        // A dependent of an owner never seen is looked at once synced.
        let work = graph.upsert(
            id::<Pod>("p3"),
            &meta("p3", vec![owner("nowhere", true)], &[], false),
            true,
        );
        assert!(work.attempt_to_delete.contains("p3"));
    }

    #[test]
    fn verdicts_follow_upstream() {
        let a = owner("a", true);
        let b = owner("b", true);
        assert_eq!(
            verdict(&[(a.clone(), OwnerState::Solid)], false, &[]),
            Verdict::Keep
        );
        assert_eq!(
            verdict(
                &[
                    (a.clone(), OwnerState::Solid),
                    (b.clone(), OwnerState::Dangling)
                ],
                false,
                &[]
            ),
            Verdict::RemoveOwnerRefs(vec!["b".into()])
        );
        assert_eq!(
            verdict(&[(a.clone(), OwnerState::Dangling)], false, &[]),
            Verdict::Delete(PropagationPolicy::Background)
        );
        assert_eq!(
            verdict(&[(a.clone(), OwnerState::WaitingForDependents)], true, &[]),
            Verdict::Delete(PropagationPolicy::Foreground)
        );
        assert_eq!(
            verdict(
                &[(a.clone(), OwnerState::Dangling)],
                false,
                &[ORPHAN.to_string()]
            ),
            Verdict::Delete(PropagationPolicy::Orphan)
        );
        assert_eq!(
            verdict(&[(a, OwnerState::Unknown)], false, &[]),
            Verdict::Keep
        );
        assert_eq!(verdict(&[], false, &[]), Verdict::Keep);
    }
}
