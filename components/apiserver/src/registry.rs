//! The table of served resources: names, scope, subresources, and the typed codec that checks
//! every object against its Kubernetes schema (k8s-openapi) before anything else touches it.

use hakube_apimachinery::validation::NameRule;
use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authn, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    events::v1 as events, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::crd::CustomResource;
use std::sync::{OnceLock, RwLock};

/// Decodes an object into its typed form and back: wrong types fail here, unknown fields drop.
pub type Codec = fn(Value) -> Result<Value, serde_json::Error>;

/// Registers a kind's OpenAPI schema (and everything it references) and returns a `$ref` to it.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn typed<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, serde_json::Error> {
    let object: T = serde_json::from_value(v)?;
    serde_json::to_value(object)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Eviction,
    Token,
    Finalize,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Token => "token",
            Subresource::Finalize => "finalize",
        }
    }

    /// The (group, version, kind) a subresource speaks, when it differs from its parent's.
    pub fn kind(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
            Subresource::Binding => Some(("", "v1", "Binding")),
            Subresource::Eviction => Some(("policy", "v1", "Eviction")),
            Subresource::Token => Some(("authentication.k8s.io", "v1", "TokenRequest")),
            Subresource::Status | Subresource::Finalize => None,
        }
    }

    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Finalize => &["update"],
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
        }
    }
}

/// How a resource is stored and served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Objects kept in etcd under `<prefix>/<segment>/...`.
    Etcd(&'static str),
    /// Create-only reviews answered from the request, never stored.
    Review,
}

#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    pub storage: Storage,
    pub name_rule: NameRule,
    pub codec: Codec,
    pub schema: SchemaFn,
    /// Set for the resources a CustomResourceDefinition serves.
    pub custom: Option<&'static CustomResource>,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn subresource(&self, name: &str) -> Option<Subresource> {
        self.subresources.iter().copied().find(|s| s.name() == name)
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        match self.storage {
            Storage::Review => &["create"],
            // Deleting every namespace at once is not offered upstream.
            Storage::Etcd("namespaces") => &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ],
            Storage::Etcd(_) => &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        }
    }

    /// The events.k8s.io view of events is stored in core/v1 form.
    pub fn is_events_v1(&self) -> bool {
        self.group == "events.k8s.io"
    }
}

const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
const NONE: &[Subresource] = &[];
const ALL: &[&str] = &["all"];

macro_rules! def {
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $ty:ty,
     namespaced: $ns:expr, short: $short:expr, cat: $cat:expr, sub: $sub:expr,
     names: $rule:expr $(, storage: $storage:expr)?) => {
        ResourceDef {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            storage: def!(@storage $plural $(, $storage)?),
            name_rule: $rule,
            codec: typed::<$ty>,
            schema: schema_of::<$ty>,
            custom: None,
        }
    };
    (@storage $plural:expr) => { Storage::Etcd($plural) };
    (@storage $plural:expr, $storage:expr) => { $storage };
}

use NameRule::{Label, PathSegment, Subdomain};

/// Every built-in resource this server serves, in discovery order.
pub static RESOURCES: &[ResourceDef] = &[
    def!("", "v1", "namespaces", "namespace", "Namespace", core::Namespace, namespaced: false,
        short: &["ns"], cat: NONE_STR, sub: &[Subresource::Status, Subresource::Finalize], names: Label),
    def!("", "v1", "pods", "pod", "Pod", core::Pod, namespaced: true, short: &["po"], cat: ALL,
        sub: &[Subresource::Status, Subresource::Binding, Subresource::Eviction], names: Subdomain),
    def!("", "v1", "nodes", "node", "Node", core::Node, namespaced: false, short: &["no"],
        cat: NONE_STR, sub: STATUS, names: Subdomain),
    def!("", "v1", "services", "service", "Service", core::Service, namespaced: true,
        short: &["svc"], cat: ALL, sub: STATUS, names: NameRule::Dns1035Label),
    def!("", "v1", "endpoints", "endpoints", "Endpoints", core::Endpoints, namespaced: true,
        short: &["ep"], cat: NONE_STR, sub: NONE, names: Subdomain),
    def!("", "v1", "configmaps", "configmap", "ConfigMap", core::ConfigMap, namespaced: true,
        short: &["cm"], cat: NONE_STR, sub: NONE, names: Subdomain),
    def!("", "v1", "secrets", "secret", "Secret", core::Secret, namespaced: true, short: NONE_STR,
        cat: NONE_STR, sub: NONE, names: Subdomain),
    def!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", core::ServiceAccount,
        namespaced: true, short: &["sa"], cat: NONE_STR, sub: &[Subresource::Token], names: Subdomain),
    def!("", "v1", "events", "event", "Event", core::Event, namespaced: true, short: &["ev"],
        cat: NONE_STR, sub: NONE, names: Subdomain),
    def!("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController",
        core::ReplicationController, namespaced: true, short: &["rc"], cat: ALL, sub: STATUS_SCALE,
        names: Subdomain),
    def!("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume",
        core::PersistentVolume, namespaced: false, short: &["pv"], cat: NONE_STR, sub: STATUS,
        names: Subdomain),
    def!("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim",
        core::PersistentVolumeClaim, namespaced: true, short: &["pvc"], cat: NONE_STR, sub: STATUS,
        names: Subdomain),
    def!("", "v1", "limitranges", "limitrange", "LimitRange", core::LimitRange, namespaced: true,
        short: &["limits"], cat: NONE_STR, sub: NONE, names: Subdomain),
    def!("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", core::ResourceQuota,
        namespaced: true, short: &["quota"], cat: NONE_STR, sub: STATUS, names: Subdomain),
    def!("apps", "v1", "deployments", "deployment", "Deployment", apps::Deployment,
        namespaced: true, short: &["deploy"], cat: ALL, sub: STATUS_SCALE, names: Subdomain),
    def!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", apps::ReplicaSet,
        namespaced: true, short: &["rs"], cat: ALL, sub: STATUS_SCALE, names: Subdomain),
    def!("apps", "v1", "statefulsets", "statefulset", "StatefulSet", apps::StatefulSet,
        namespaced: true, short: &["sts"], cat: ALL, sub: STATUS_SCALE, names: Subdomain),
    def!("apps", "v1", "daemonsets", "daemonset", "DaemonSet", apps::DaemonSet, namespaced: true,
        short: &["ds"], cat: ALL, sub: STATUS, names: Subdomain),
    def!("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision",
        apps::ControllerRevision, namespaced: true, short: NONE_STR, cat: NONE_STR, sub: NONE,
        names: Subdomain),
    def!("batch", "v1", "jobs", "job", "Job", batch::Job, namespaced: true, short: NONE_STR,
        cat: ALL, sub: STATUS, names: Subdomain),
    def!("batch", "v1", "cronjobs", "cronjob", "CronJob", batch::CronJob, namespaced: true,
        short: &["cj"], cat: ALL, sub: STATUS, names: Subdomain),
    def!("coordination.k8s.io", "v1", "leases", "lease", "Lease", coordination::Lease,
        namespaced: true, short: NONE_STR, cat: NONE_STR, sub: NONE, names: Subdomain),
    def!("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice",
        discovery::EndpointSlice, namespaced: true, short: NONE_STR, cat: NONE_STR, sub: NONE,
        names: Subdomain),
    def!("events.k8s.io", "v1", "events", "event", "Event", events::Event, namespaced: true,
        short: &["ev"], cat: NONE_STR, sub: NONE, names: Subdomain, storage: Storage::Etcd("events")),
    def!("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget",
        policy::PodDisruptionBudget, namespaced: true, short: &["pdb"], cat: NONE_STR, sub: STATUS,
        names: Subdomain),
    def!("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole",
        rbac::ClusterRole, namespaced: false, short: NONE_STR, cat: NONE_STR, sub: NONE,
        names: PathSegment),
    def!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding",
        "ClusterRoleBinding", rbac::ClusterRoleBinding, namespaced: false, short: NONE_STR,
        cat: NONE_STR, sub: NONE, names: PathSegment),
    def!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", rbac::Role, namespaced: true,
        short: NONE_STR, cat: NONE_STR, sub: NONE, names: PathSegment),
    def!("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding",
        rbac::RoleBinding, namespaced: true, short: NONE_STR, cat: NONE_STR, sub: NONE,
        names: PathSegment),
    def!("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass",
        scheduling::PriorityClass, namespaced: false, short: &["pc"], cat: NONE_STR, sub: NONE,
        names: Subdomain),
    def!("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
        "CustomResourceDefinition", apiextensions::CustomResourceDefinition, namespaced: false,
        short: &["crd", "crds"], cat: &["api-extensions"], sub: STATUS, names: Subdomain),
    def!("apiregistration.k8s.io", "v1", "apiservices", "apiservice", "APIService",
        apiregistration::APIService, namespaced: false, short: NONE_STR, cat: NONE_STR, sub: STATUS,
        names: PathSegment),
    def!("authentication.k8s.io", "v1", "selfsubjectreviews", "selfsubjectreview",
        "SelfSubjectReview", authn::SelfSubjectReview, namespaced: false, short: NONE_STR,
        cat: NONE_STR, sub: NONE, names: PathSegment, storage: Storage::Review),
];

const NONE_STR: &[&str] = &[];

/// The resources served for CustomResourceDefinitions, in the order they were registered.
fn custom() -> &'static RwLock<Vec<&'static ResourceDef>> {
    static CUSTOM: OnceLock<RwLock<Vec<&'static ResourceDef>>> = OnceLock::new();
    CUSTOM.get_or_init(RwLock::default)
}

/// Replaces what one CRD serves (an empty list stops serving it).
pub fn set_custom(crd_name: &str, defs: Vec<&'static ResourceDef>) {
    if let Ok(mut list) = custom().write() {
        list.retain(|d| d.custom.is_none_or(|c| c.crd_name != crd_name));
        list.extend(defs);
    }
}

/// What one CRD serves.
pub fn custom_defs(crd_name: &str) -> Vec<&'static ResourceDef> {
    custom()
        .read()
        .map(|list| {
            list.iter()
                .filter(|d| d.custom.is_some_and(|c| c.crd_name == crd_name))
                .copied()
                .collect()
        })
        .unwrap_or_default()
}

/// Every served resource: the built-in ones, then those of CRDs.
pub fn all() -> Vec<&'static ResourceDef> {
    let mut out: Vec<&'static ResourceDef> = RESOURCES.iter().collect();
    if let Ok(list) = custom().read() {
        out.extend(list.iter().copied());
    }
    out
}

/// Finds the served resource for a group, version and plural name.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    let matches = |d: &&ResourceDef| d.group == group && d.version == version && d.plural == plural;
    RESOURCES.iter().find(matches).or_else(|| {
        custom()
            .read()
            .ok()
            .and_then(|list| list.iter().copied().find(|d| matches(d)))
    })
}

/// A served custom resource by apiVersion and kind.
pub fn custom_by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    custom().read().ok().and_then(|list| {
        list.iter()
            .copied()
            .find(|d| d.kind == kind && d.api_version() == api_version)
    })
}

/// The served group versions, core first, each with its resources.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for d in all() {
        if !out.contains(&(d.group, d.version)) {
            out.push((d.group, d.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resource_has_a_unique_name_in_its_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} served twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn codec_rejects_wrong_types_and_drops_unknown_fields() {
        let d = lookup("", "v1", "configmaps").unwrap();
        let ok = (d.codec)(serde_json::json!({"metadata":{"name":"a"},"data":{"k":"v"},"bogus":1}))
            .unwrap();
        assert_eq!(ok["data"]["k"], "v");
        assert!(ok.get("bogus").is_none());
        assert!((d.codec)(serde_json::json!({"metadata":{"name":"a"},"data":{"k":1}})).is_err());
    }

    #[test]
    fn scale_subresource_speaks_autoscaling_v1() {
        assert_eq!(
            Subresource::Scale.kind(),
            Some(("autoscaling", "v1", "Scale"))
        );
        assert!(lookup("apps", "v1", "deployments")
            .unwrap()
            .has(Subresource::Scale));
    }

    #[test]
    fn both_event_apis_share_core_storage() {
        let core = lookup("", "v1", "events").unwrap();
        let v1 = lookup("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(core.storage, v1.storage);
    }
}
