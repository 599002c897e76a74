//! persistentvolume-binder-controller: binds pending PersistentVolumeClaims to Available
//! PersistentVolumes (the smallest that fits, with the fewest extra access modes; class,
//! selector and volume mode must match; `volumeName`/`claimRef` pre-bindings are honoured),
//! and releases volumes whose claim is gone, then reclaims them by their policy: Retain keeps
//! them Released, Delete deletes the PersistentVolume object (there is no storage behind it
//! here), Recycle fails as it does upstream without a recycler plugin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hakube_quota::Amount;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::context::Context;

pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what}: {source}")]
    Read { what: String, source: kube::Error },
    #[error("writing {what}: {source}")]
    Write { what: String, source: kube::Error },
}

pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    claim
        .annotations()
        .get(BETA_STORAGE_CLASS)
        .cloned()
        .or_else(|| {
            claim
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
        })
        .unwrap_or_default()
}

pub fn volume_class(volume: &PersistentVolume) -> String {
    volume
        .annotations()
        .get(BETA_STORAGE_CLASS)
        .cloned()
        .or_else(|| {
            volume
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
        })
        .unwrap_or_default()
}

fn volume_phase(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn claim_ref(volume: &PersistentVolume) -> Option<&ObjectReference> {
    volume.spec.as_ref()?.claim_ref.as_ref()
}

/// Upstream's IsVolumeBoundToClaim: the claimRef names the claim (and its uid, once set).
pub fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    claim_ref(volume).is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && r.uid
                .as_deref()
                .is_none_or(|uid| uid.is_empty() || Some(uid) == claim.metadata.uid.as_deref())
    })
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map_or("Filesystem", String::as_str)
}

fn requested_storage(claim: &PersistentVolumeClaim) -> Amount {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(Amount::of)
        .unwrap_or_else(Amount::zero)
}

fn capacity(volume: &PersistentVolume) -> Amount {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(Amount::of)
        .unwrap_or_else(Amount::zero)
}

fn access_modes_of_claim(claim: &PersistentVolumeClaim) -> Vec<String> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
}

fn access_modes_of_volume(volume: &PersistentVolume) -> Vec<String> {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
}

fn modes_match(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    volume_mode(claim.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
        == volume_mode(volume.spec.as_ref().and_then(|s| s.volume_mode.as_ref()))
}

/// Upstream's checkVolumeSatisfyClaim, for claims that name their volume.
pub fn check_volume_satisfies_claim(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), String> {
    let requested = requested_storage(claim);
    if capacity(volume).value_cmp(&requested).is_lt() {
        return Err("requested PV is too small".into());
    }
    if volume_class(volume) != claim_class(claim) {
        return Err("storageClassName does not match".into());
    }
    if !modes_match(volume, claim) {
        return Err("incompatible volumeMode".into());
    }
    let offered = access_modes_of_volume(volume);
    if !access_modes_of_claim(claim)
        .iter()
        .all(|m| offered.contains(m))
    {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// Upstream's findBestMatchForClaim: a volume pre-bound to the claim wins; otherwise the
/// Available volumes of the claim's class, volume mode and selector offering all its access
/// modes, preferring the fewest modes, then the smallest capacity that holds the request.
pub fn find_best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [PersistentVolume],
) -> Option<&'a PersistentVolume> {
    let wanted_modes = access_modes_of_claim(claim);
    let requested = requested_storage(claim);
    let class = claim_class(claim);
    let selector = claim
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .map(Selector::try_from);
    let selector = match selector {
        Some(Ok(selector)) => Some(selector),
        // A selector that cannot be read selects nothing.
        Some(Err(_)) => return None,
        None => None,
    };
    let mut best: Option<&PersistentVolume> = None;
    for volume in volumes {
        if !modes_match(volume, claim) || volume.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if is_bound_to(volume, claim) {
            return Some(volume);
        }
        if claim_ref(volume).is_some() || volume_phase(volume) != "Available" {
            continue;
        }
        if selector
            .as_ref()
            .is_some_and(|s| !s.matches(volume.labels()))
        {
            continue;
        }
        let offered = access_modes_of_volume(volume);
        if volume_class(volume) != class
            || !wanted_modes.iter().all(|m| offered.contains(m))
            || capacity(volume).value_cmp(&requested).is_lt()
        {
            continue;
        }
        let better = best.is_none_or(|b| {
            let (fewer, same) = (
                access_modes_of_volume(volume).len(),
                access_modes_of_volume(b).len(),
            );
            fewer < same || (fewer == same && capacity(volume).value_cmp(&capacity(b)).is_lt())
        });
        if better {
            best = Some(volume);
        }
    }
    best
}

/// What a volume needs given its claim (`None`: the claim it names is gone or was replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeAction {
    Nothing,
    SetPhase(&'static str),
    /// The claim is gone: Released first, then reclaimed by policy.
    Reclaim(ReclaimPolicy),
    /// The claim went to another volume: the binding this controller made is undone.
    Unbind {
        clear_ref: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReclaimPolicy {
    Retain,
    Delete,
    Recycle,
}

fn reclaim_policy(volume: &PersistentVolume) -> ReclaimPolicy {
    match volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
    {
        Some("Delete") => ReclaimPolicy::Delete,
        Some("Recycle") => ReclaimPolicy::Recycle,
        _ => ReclaimPolicy::Retain,
    }
}

fn bound_by_controller(meta: &kube::api::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(BOUND_BY_CONTROLLER))
}

/// Upstream's syncVolume, as a decision.
pub fn volume_action(
    volume: &PersistentVolume,
    claim: Option<&PersistentVolumeClaim>,
) -> VolumeAction {
    let phase = volume_phase(volume);
    let set = |wanted: &'static str| {
        if phase == wanted {
            VolumeAction::Nothing
        } else {
            VolumeAction::SetPhase(wanted)
        }
    };
    let Some(reference) = claim_ref(volume) else {
        return set("Available");
    };
    let uid = reference.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        // Pre-bound by a user, waiting for its claim.
        return set("Available");
    }
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
    let Some(claim) = claim else {
        return match phase {
            "Failed" => VolumeAction::Nothing,
            "Released" if reclaim_policy(volume) == ReclaimPolicy::Retain => VolumeAction::Nothing,
            _ => VolumeAction::Reclaim(reclaim_policy(volume)),
        };
    };
    match claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
        // The claim's side of the binding is still to be written by its sync.
        None | Some("") => set("Bound"),
        Some(name) if Some(name) == volume.metadata.name.as_deref() => set("Bound"),
        Some(_) => VolumeAction::Unbind {
            clear_ref: bound_by_controller(&volume.metadata),
        },
    }
}

/// What a claim needs.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimAction {
    Nothing,
    /// Bind to this volume (by name).
    Bind(String),
    /// Stay Pending, with an event (type, reason, message) when there is something to say.
    Pending(Option<(EventType, &'static str, String)>),
    /// The bound volume is lost: phase Lost with this event.
    Lost(&'static str, &'static str),
    /// Make sure the status says Bound.
    Bound(String),
}

/// Upstream's syncClaim for everything but provisioning, which needs the storage class.
pub fn claim_action(claim: &PersistentVolumeClaim, volumes: &[PersistentVolume]) -> ClaimAction {
    let bind_completed = claim.annotations().contains_key(BIND_COMPLETED);
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let named = volumes
        .iter()
        .find(|v| v.metadata.name.as_deref() == Some(volume_name.as_str()));
    if bind_completed {
        if volume_name.is_empty() {
            return ClaimAction::Lost(
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            );
        }
        let Some(volume) = named else {
            return ClaimAction::Lost(
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            );
        };
        return match claim_ref(volume) {
            None => ClaimAction::Bind(volume_name),
            Some(_) if is_bound_to(volume, claim) => {
                if claim_phase(claim) == "Bound" {
                    ClaimAction::Nothing
                } else {
                    ClaimAction::Bound(volume_name)
                }
            }
            Some(_) => ClaimAction::Lost(
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            ),
        };
    }
    if volume_name.is_empty() {
        return match find_best_match(claim, volumes) {
            Some(volume) => ClaimAction::Bind(volume.name_any()),
            None => ClaimAction::Pending(None),
        };
    }
    let Some(volume) = named else {
        // The named volume may still come.
        return ClaimAction::Pending(None);
    };
    match claim_ref(volume) {
        None => match check_volume_satisfies_claim(volume, claim) {
            Ok(()) => ClaimAction::Bind(volume_name),
            Err(message) => {
                ClaimAction::Pending(Some((EventType::Warning, "VolumeMismatch", message)))
            }
        },
        Some(_) if is_bound_to(volume, claim) => ClaimAction::Bind(volume_name),
        Some(_) => ClaimAction::Pending(Some((
            EventType::Warning,
            "FailedBinding",
            format!("volume {volume_name:?} already bound to a different claim."),
        ))),
    }
}

struct Shared {
    ctx: Arc<Context>,
    recorder: Recorder,
}

pub async fn run(ctx: Arc<Context>) {
    let shared = Arc::new(Shared {
        recorder: ctx.recorder("persistentvolume-controller"),
        ctx: ctx.clone(),
    });
    let client = ctx.client.clone();
    let period = ctx.options.pvclaimbinder_sync_period;
    let claims = Controller::new(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let claim_store = claims.store();
    let claims = claims
        .watches(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
            move |volume| {
                // The volume's own claim, and every claim still waiting for a volume.
                let mut refs: Vec<ObjectRef<PersistentVolumeClaim>> = claim_store
                    .state()
                    .iter()
                    .filter(|c| {
                        c.spec
                            .as_ref()
                            .and_then(|s| s.volume_name.as_deref())
                            .is_none_or(str::is_empty)
                    })
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect();
                if let Some(r) = claim_ref(&volume) {
                    if let (Some(name), Some(namespace)) = (&r.name, &r.namespace) {
                        refs.push(ObjectRef::new(name).within(namespace));
                    }
                }
                refs
            },
        )
        .run(
            move |claim, shared: Arc<Shared>| async move {
                let timer = shared.ctx.metrics.sync("claims");
                let result = sync_claim(&claim, &shared).await;
                timer.done(result.is_ok());
                result.map(|()| Action::requeue(period))
            },
            |_, error: &Error, _| {
                tracing::warn!(%error, "claim sync failed");
                Action::requeue(Duration::from_secs(1))
            },
            shared.clone(),
        )
        .for_each(|_| async {});
    let volumes = Controller::new(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    );
    let volume_store = volumes.store();
    let volumes = volumes
        .watches(
            Api::<PersistentVolumeClaim>::all(client),
            watcher::Config::default(),
            move |claim| {
                // The volume the claim names and any volume claiming it (deletions included).
                let mut refs: Vec<ObjectRef<PersistentVolume>> = volume_store
                    .state()
                    .iter()
                    .filter(|v| {
                        claim_ref(v).is_some_and(|r| {
                            r.name == claim.metadata.name && r.namespace == claim.metadata.namespace
                        })
                    })
                    .map(|v| ObjectRef::from_obj(v.as_ref()))
                    .collect();
                if let Some(name) = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
                    if !name.is_empty() {
                        refs.push(ObjectRef::new(name));
                    }
                }
                refs
            },
        )
        .run(
            move |volume, shared: Arc<Shared>| async move {
                let timer = shared.ctx.metrics.sync("volumes");
                let result = sync_volume(&volume, &shared).await;
                timer.done(result.is_ok());
                result.map(|()| Action::requeue(period))
            },
            |_, error: &Error, _| {
                tracing::warn!(%error, "volume sync failed");
                Action::requeue(Duration::from_secs(1))
            },
            shared,
        )
        .for_each(|_| async {});
    tokio::join!(claims, volumes);
}

async fn publish<K: Resource<DynamicType = ()>>(
    shared: &Shared,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Sync".into(),
        secondary: None,
    };
    if let Err(error) = shared
        .recorder
        .publish(&event, &object.object_ref(&()))
        .await
    {
        tracing::debug!(%error, "recording an event failed");
    }
}

fn read_error(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Read { what, source }
}

fn write_error(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Write { what, source }
}

async fn set_claim_phase(
    api: &Api<PersistentVolumeClaim>,
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Result<(), Error> {
    let mut status = claim.status.clone().unwrap_or_default();
    let (modes, capacity) = match volume {
        Some(v) => (
            v.spec.as_ref().and_then(|s| s.access_modes.clone()),
            v.spec.as_ref().and_then(|s| s.capacity.clone()),
        ),
        None => (status.access_modes.clone(), status.capacity.clone()),
    };
    if status.phase.as_deref() == Some(phase)
        && status.access_modes == modes
        && status.capacity == capacity
    {
        return Ok(());
    }
    status = PersistentVolumeClaimStatus {
        phase: Some(phase.into()),
        access_modes: modes,
        capacity,
        ..status
    };
    let mut updated = claim.clone();
    updated.status = Some(status);
    api.replace_status(&claim.name_any(), &PostParams::default(), &updated)
        .await
        .map(|_| ())
        .map_err(write_error(format!(
            "the status of claim {}",
            claim.name_any()
        )))
}

async fn set_volume_phase(
    api: &Api<PersistentVolume>,
    volume: &PersistentVolume,
    phase: &str,
    message: Option<String>,
) -> Result<PersistentVolume, Error> {
    let mut updated = volume.clone();
    updated.status = Some(PersistentVolumeStatus {
        phase: Some(phase.into()),
        message,
        last_phase_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        )),
        ..volume.status.clone().unwrap_or_default()
    });
    api.replace_status(&volume.name_any(), &PostParams::default(), &updated)
        .await
        .map_err(write_error(format!(
            "the status of volume {}",
            volume.name_any()
        )))
}

/// Writes both sides of a binding, volume first (as upstream), each step only when needed so
/// that a retry after a partial failure finishes the job.
async fn bind(
    shared: &Shared,
    claim: &PersistentVolumeClaim,
    mut volume: PersistentVolume,
) -> Result<(), Error> {
    let client = &shared.ctx.client;
    let namespace = claim.namespace().unwrap_or_default();
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace);
    let volume_name = volume.name_any();
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.namespace(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..ObjectReference::default()
    };
    let current = claim_ref(&volume).cloned();
    let needs_ref = current
        .as_ref()
        .is_none_or(|r| r.uid.as_deref().is_none_or(str::is_empty) || r.name != reference.name);
    if needs_ref {
        let spec = volume.spec.get_or_insert_with(Default::default);
        if current.is_none() {
            volume
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        let spec_ref = spec.claim_ref.get_or_insert_with(Default::default);
        *spec_ref = reference;
        volume = volumes
            .replace(&volume_name, &PostParams::default(), &volume)
            .await
            .map_err(write_error(format!("volume {volume_name}")))?;
    }
    if volume_phase(&volume) != "Bound" {
        volume = set_volume_phase(&volumes, &volume, "Bound", None).await?;
    }
    let mut claim = claim.clone();
    let annotations = claim.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    let spec = claim.spec.get_or_insert_with(Default::default);
    if spec.volume_name.as_deref() != Some(volume_name.as_str()) {
        spec.volume_name = Some(volume_name.clone());
        annotations.insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        changed = true;
    }
    if annotations.get(BIND_COMPLETED).map(String::as_str) != Some("yes") {
        annotations.insert(BIND_COMPLETED.into(), "yes".into());
        changed = true;
    }
    if changed {
        claim = claims
            .replace(&claim.name_any(), &PostParams::default(), &claim)
            .await
            .map_err(write_error(format!(
                "claim {namespace}/{}",
                claim.name_any()
            )))?;
    }
    set_claim_phase(&claims, &claim, "Bound", Some(&volume)).await?;
    tracing::info!(claim = %format!("{namespace}/{}", claim.name_any()), volume = %volume_name, "bound");
    Ok(())
}

async fn sync_claim(claim: &PersistentVolumeClaim, shared: &Shared) -> Result<(), Error> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let client = &shared.ctx.client;
    let namespace = claim.namespace().unwrap_or_default();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace);
    // Fresh volumes: a cache could offer one another claim took a moment ago.
    let volumes = Api::<PersistentVolume>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(read_error("persistent volumes".into()))?
        .items;
    match claim_action(claim, &volumes) {
        ClaimAction::Nothing => Ok(()),
        ClaimAction::Bind(name) | ClaimAction::Bound(name) => {
            let Some(volume) = volumes.into_iter().find(|v| v.name_any() == name) else {
                return Ok(());
            };
            bind(shared, claim, volume).await
        }
        ClaimAction::Lost(reason, message) => {
            publish(shared, claim, EventType::Warning, reason, message.into()).await;
            set_claim_phase(&claims, claim, "Lost", None).await
        }
        ClaimAction::Pending(Some((type_, reason, message))) => {
            publish(shared, claim, type_, reason, message).await;
            set_claim_phase(&claims, claim, "Pending", None).await
        }
        ClaimAction::Pending(None) => {
            if claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .is_none_or(str::is_empty)
            {
                wait_or_provision(shared, claim).await?;
            }
            set_claim_phase(&claims, claim, "Pending", None).await
        }
    }
}

/// No volume fits: say why, as upstream does — no class, a class whose provisioner is to
/// create the volume, one that waits for a consumer, or one that does not exist.
async fn wait_or_provision(shared: &Shared, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    let class = claim_class(claim);
    if class.is_empty() {
        publish(
            shared,
            claim,
            EventType::Normal,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        )
        .await;
        return Ok(());
    }
    let classes = Api::<StorageClass>::all(shared.ctx.client.clone());
    let Some(storage_class) = classes
        .get_opt(&class)
        .await
        .map_err(read_error(format!("storage class {class}")))?
    else {
        publish(
            shared,
            claim,
            EventType::Warning,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class:?} not found"),
        )
        .await;
        return Ok(());
    };
    let waits = storage_class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer");
    if waits && !claim.annotations().contains_key(SELECTED_NODE) {
        publish(
            shared,
            claim,
            EventType::Normal,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding".into(),
        )
        .await;
        return Ok(());
    }
    let provisioner = storage_class.provisioner.clone();
    if claim.annotations().get(STORAGE_PROVISIONER) != Some(&provisioner) {
        let mut updated = claim.clone();
        let annotations = updated
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        annotations.insert(STORAGE_PROVISIONER.into(), provisioner.clone());
        annotations.insert(BETA_STORAGE_PROVISIONER.into(), provisioner.clone());
        let namespace = claim.namespace().unwrap_or_default();
        Api::<PersistentVolumeClaim>::namespaced(shared.ctx.client.clone(), &namespace)
            .replace(&claim.name_any(), &PostParams::default(), &updated)
            .await
            .map_err(write_error(format!(
                "claim {namespace}/{}",
                claim.name_any()
            )))?;
    }
    publish(
        shared,
        claim,
        EventType::Normal,
        "ExternalProvisioning",
        format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."),
    )
    .await;
    Ok(())
}

async fn sync_volume(volume: &PersistentVolume, shared: &Shared) -> Result<(), Error> {
    let client = &shared.ctx.client;
    let volumes = Api::<PersistentVolume>::all(client.clone());
    let claim = match claim_ref(volume) {
        Some(reference) => {
            let namespace = reference.namespace.clone().unwrap_or_default();
            let name = reference.name.clone().unwrap_or_default();
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace)
                .get_opt(&name)
                .await
                .map_err(read_error(format!("claim {namespace}/{name}")))?
        }
        None => None,
    };
    let name = volume.name_any();
    match volume_action(volume, claim.as_ref()) {
        VolumeAction::Nothing => Ok(()),
        VolumeAction::SetPhase(phase) => set_volume_phase(&volumes, volume, phase, None)
            .await
            .map(|_| ()),
        VolumeAction::Unbind { clear_ref } => {
            let mut updated = volume.clone();
            if let Some(spec) = updated.spec.as_mut() {
                if clear_ref {
                    spec.claim_ref = None;
                } else if let Some(r) = spec.claim_ref.as_mut() {
                    r.uid = None;
                    r.resource_version = None;
                }
            }
            if let Some(annotations) = updated.metadata.annotations.as_mut() {
                annotations.remove(BOUND_BY_CONTROLLER);
            }
            let updated = volumes
                .replace(&name, &PostParams::default(), &updated)
                .await
                .map_err(write_error(format!("volume {name}")))?;
            set_volume_phase(&volumes, &updated, "Available", None)
                .await
                .map(|_| ())
        }
        VolumeAction::Reclaim(policy) => {
            let released = if volume_phase(volume) == "Released" {
                volume.clone()
            } else {
                set_volume_phase(&volumes, volume, "Released", None).await?
            };
            match policy {
                ReclaimPolicy::Retain => {
                    tracing::info!(volume = %name, "released; reclaim policy Retain keeps it");
                    Ok(())
                }
                ReclaimPolicy::Recycle => {
                    let message = "No recycler plugin found for the volume!".to_string();
                    publish(
                        shared,
                        &released,
                        EventType::Warning,
                        "VolumeFailedRecycle",
                        message.clone(),
                    )
                    .await;
                    set_volume_phase(&volumes, &released, "Failed", Some(message))
                        .await
                        .map(|_| ())
                }
                ReclaimPolicy::Delete => {
                    let external = released
                        .annotations()
                        .get(PROVISIONED_BY)
                        .filter(|p| !p.starts_with("kubernetes.io/"));
                    if let Some(provisioner) = external {
                        // Its provisioner deletes the storage and then the object.
                        publish(
                            shared,
                            &released,
                            EventType::Normal,
                            "ExternalDeleting",
                            format!("waiting for an external provisioner {provisioner:?} to delete the volume"),
                        )
                        .await;
                        return Ok(());
                    }
                    match volumes.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {
                            tracing::info!(volume = %name, "released and deleted");
                            Ok(())
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                        Err(source) => Err(Error::Write {
                            what: format!("volume {name}"),
                            source,
                        }),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeSpec, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::api::ObjectMeta;

    fn volume(name: &str, size: &str, modes: &[&str], class: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(size.into()),
                )])),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                storage_class_name: (!class.is_empty()).then(|| class.to_string()),
                ..PersistentVolumeSpec::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some("Available".into()),
                ..PersistentVolumeStatus::default()
            }),
        }
    }

    fn claim(name: &str, size: &str, modes: &[&str], class: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(size.into()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                storage_class_name: (!class.is_empty()).then(|| class.to_string()),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }
    }

    const RWO: &str = "ReadWriteOnce";
    const RWX: &str = "ReadWriteMany";

    #[test]
    fn the_smallest_fitting_volume_of_the_class_wins() {
        let volumes = vec![
            volume("big", "10Gi", &[RWO], ""),
            volume("small", "1Gi", &[RWO], ""),
            volume("fits", "2Gi", &[RWO], ""),
            volume("other-class", "2Gi", &[RWO], "fast"),
            volume("many-modes", "2Gi", &[RWO, RWX], ""),
        ];
        let wanted = claim("c", "1500Mi", &[RWO], "");
        assert_eq!(
            find_best_match(&wanted, &volumes).unwrap().name_any(),
            "fits"
        );
        let fast = claim("c", "1Gi", &[RWO], "fast");
        assert_eq!(
            find_best_match(&fast, &volumes).unwrap().name_any(),
            "other-class"
        );
        let shared = claim("c", "1Gi", &[RWX], "");
        assert_eq!(
            find_best_match(&shared, &volumes).unwrap().name_any(),
            "many-modes"
        );
        let huge = claim("c", "20Gi", &[RWO], "");
        assert!(find_best_match(&huge, &volumes).is_none());
    }

    #[test]
    fn selectors_bound_volumes_and_pre_bindings() {
        let mut labelled = volume("labelled", "5Gi", &[RWO], "");
        labelled.metadata.labels = Some(BTreeMap::from([("tier".into(), "gold".into())]));
        let mut taken = volume("taken", "1Gi", &[RWO], "");
        taken.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("someone-else".into()),
            namespace: Some("default".into()),
            uid: Some("x".into()),
            ..ObjectReference::default()
        });
        let volumes = vec![volume("plain", "1Gi", &[RWO], ""), labelled, taken];
        let mut gold = claim("c", "1Gi", &[RWO], "");
        gold.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("tier".into(), "gold".into())])),
            ..LabelSelector::default()
        });
        assert_eq!(
            find_best_match(&gold, &volumes).unwrap().name_any(),
            "labelled"
        );
        // The volume whose claimRef names a claim goes to that claim only.
        let someone = claim("someone-else", "1Gi", &[RWO], "");
        let mut someone = someone;
        someone.metadata.uid = Some("x".into());
        assert_eq!(
            find_best_match(&someone, &volumes).unwrap().name_any(),
            "taken"
        );
        // A claim naming its volume binds to it when it satisfies the claim.
        let mut named = claim("n", "1Gi", &[RWO], "");
        named.spec.as_mut().unwrap().volume_name = Some("plain".into());
        assert_eq!(
            claim_action(&named, &volumes),
            ClaimAction::Bind("plain".into())
        );
        named.spec.as_mut().unwrap().volume_name = Some("taken".into());
        assert!(matches!(
            claim_action(&named, &volumes),
            ClaimAction::Pending(Some((_, "FailedBinding", _)))
        ));
    }

    #[test]
    fn volumes_are_released_and_reclaimed_by_policy() {
        let mut bound = volume("v", "1Gi", &[RWO], "");
        bound.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("c".into()),
            namespace: Some("default".into()),
            uid: Some("uid-c".into()),
            ..ObjectReference::default()
        });
        bound.status.as_mut().unwrap().phase = Some("Bound".into());
        let mut c = claim("c", "1Gi", &[RWO], "");
        c.spec.as_mut().unwrap().volume_name = Some("v".into());
        assert_eq!(volume_action(&bound, Some(&c)), VolumeAction::Nothing);
        assert_eq!(
            volume_action(&bound, None),
            VolumeAction::Reclaim(ReclaimPolicy::Retain)
        );
        let mut released = bound.clone();
        released.status.as_mut().unwrap().phase = Some("Released".into());
        assert_eq!(volume_action(&released, None), VolumeAction::Nothing);
        bound
            .spec
            .as_mut()
            .unwrap()
            .persistent_volume_reclaim_policy = Some("Delete".into());
        assert_eq!(
            volume_action(&bound, None),
            VolumeAction::Reclaim(ReclaimPolicy::Delete)
        );
        // A claim of the same name but another uid is a new claim: the old one is gone.
        let mut newer = c.clone();
        newer.metadata.uid = Some("other".into());
        assert_eq!(
            volume_action(&bound, Some(&newer)),
            VolumeAction::Reclaim(ReclaimPolicy::Delete)
        );
        let unused = volume("u", "1Gi", &[RWO], "");
        assert_eq!(volume_action(&unused, None), VolumeAction::Nothing);
    }

    #[test]
    fn a_bound_claim_without_its_volume_is_lost() {
        let mut c = claim("c", "1Gi", &[RWO], "");
        c.metadata.annotations = Some(BTreeMap::from([(BIND_COMPLETED.into(), "yes".into())]));
        c.spec.as_mut().unwrap().volume_name = Some("gone".into());
        assert_eq!(
            claim_action(&c, &[]),
            ClaimAction::Lost(
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
            )
        );
    }
}
