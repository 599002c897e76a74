//! `Cluster`: one HA Kubernetes control plane, declared.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes control plane on named hosts: etcd (stacked on the control-plane hosts or on
/// hosts of its own), API servers behind HAProxy, and a leader-elected scheduler and
/// controller-manager on every control-plane host.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hakube.io",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "hkc",
    category = "hakube",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Topology","type":"string","jsonPath":".spec.topology"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The hakube release bundle the cluster runs (for example `v1.33.0-hakube.1`).
    pub version: String,
    /// Where etcd runs: on the control-plane hosts (`Stacked`) or on hosts of its own.
    #[serde(default)]
    pub topology: Topology,
    pub control_plane: ControlPlaneSpec,
    #[serde(default)]
    pub etcd: EtcdSpec,
    pub load_balancer: LoadBalancerSpec,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub components: ComponentsSpec,
    #[serde(default)]
    pub certificates: CertificatesSpec,
    /// While true the operator observes and reports but changes nothing.
    #[serde(default)]
    pub paused: bool,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Topology {
    /// One etcd member on every control-plane host.
    #[default]
    Stacked,
    /// etcd members on hosts of their own; every API server uses all of them.
    External,
}

/// Which hosts to use: the named ones, or those whose labels match the selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostSelection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneSpec {
    /// Control-plane hosts: 1, 3 or 5.
    pub replicas: i32,
    pub hosts: HostSelection,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdSpec {
    /// External topology only: etcd members, 1, 3 or 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// External topology only: the etcd hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<HostSelection>,
    /// etcd's `--quota-backend-bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_backend_bytes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_compaction: Option<AutoCompaction>,
}

/// etcd's `--auto-compaction-mode` and `--auto-compaction-retention`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoCompaction {
    pub mode: AutoCompactionMode,
    /// A duration (`1h`, `30m`) for `Periodic`, a revision count for `Revision`.
    pub retention: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AutoCompactionMode {
    Periodic,
    Revision,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// The host HAProxy runs on; the endpoint is its address. Give this or `hosts`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// One or two hosts running HAProxy. With two, keepalived runs VRRP between them and the
    /// endpoint is `virtualIP`, which moves to the other host when the active one dies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The address that moves between two load-balancer hosts; required with two.
    #[serde(default, rename = "virtualIP", skip_serializing_if = "Option::is_none")]
    pub virtual_ip: Option<String>,
    /// The port clients reach the API on.
    #[serde(default = "default_api_port")]
    pub port: i32,
}

fn default_api_port() -> i32 {
    6443
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    #[serde(rename = "podCIDR", default = "default_pod_cidr")]
    pub pod_cidr: String,
    #[serde(rename = "serviceCIDR", default = "default_service_cidr")]
    pub service_cidr: String,
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// The cluster DNS Service's address; the tenth address of the service range by default.
    #[serde(
        rename = "dnsServiceIP",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dns_service_ip: Option<String>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            pod_cidr: default_pod_cidr(),
            service_cidr: default_service_cidr(),
            cluster_domain: default_cluster_domain(),
            dns_service_ip: None,
        }
    }
}

fn default_pod_cidr() -> String {
    "10.244.0.0/16".into()
}

fn default_service_cidr() -> String {
    "10.96.0.0/12".into()
}

fn default_cluster_domain() -> String {
    "cluster.local".into()
}

/// Per component, flags merged over what the operator renders (as kubeadm's `extraArgs`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentsSpec {
    #[serde(default, skip_serializing_if = "ComponentSpec::is_empty")]
    pub etcd: ComponentSpec,
    #[serde(default, skip_serializing_if = "ComponentSpec::is_empty")]
    pub apiserver: ComponentSpec,
    #[serde(default, skip_serializing_if = "ComponentSpec::is_empty")]
    pub scheduler: ComponentSpec,
    #[serde(default, skip_serializing_if = "ComponentSpec::is_empty")]
    pub controller_manager: ComponentSpec,
    #[serde(default, skip_serializing_if = "ComponentSpec::is_empty")]
    pub haproxy: ComponentSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Flag name (without `--`) to value; these win over the rendered flags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_args: BTreeMap<String, String>,
}

impl ComponentSpec {
    fn is_empty(&self) -> bool {
        self.extra_args.is_empty()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatesSpec {
    /// How long leaf certificates are valid (a duration such as `8760h`).
    #[serde(default = "default_validity")]
    pub validity: String,
    /// Leaf certificates are re-issued this long before they expire.
    #[serde(default = "default_renew_before")]
    pub renew_before: String,
    /// Set to a new value (a date, a ticket number) to rotate the cluster, etcd and
    /// front-proxy certificate authorities in stages: the new authorities are trusted
    /// everywhere first, then every leaf is re-issued by them, then the old ones are dropped.
    /// `status.authorityRotation` follows the stages; the admin kubeconfig Secret is updated
    /// at each of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_rotation: Option<String>,
}

impl Default for CertificatesSpec {
    fn default() -> Self {
        CertificatesSpec {
            validity: default_validity(),
            renew_before: default_renew_before(),
            authority_rotation: None,
        }
    }
}

fn default_validity() -> String {
    "8760h".into()
}

fn default_renew_before() -> String {
    "720h".into()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Pending, Provisioning, Running, Degraded, Invalid or Deleting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The API endpoint clients use (`https://<load balancer>:<port>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcd_members: Vec<EtcdMemberStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_plane: Vec<ControlPlaneHostStatus>,
    /// The hosts holding etcd members and the flags each member was started with. Recorded once
    /// the Cluster is first available and changed one member at a time: placement is sticky,
    /// and a running member's flags never change when another member comes or goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etcd_hosts: Vec<EtcdHostStatus>,
    /// Hosts whose etcd member was removed: when they answer again, their etcd is stopped and
    /// its data wiped before they may serve the Cluster again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fenced_hosts: Vec<String>,
    /// Hosts failing their health checks and since when: past `--host-failure-threshold` they
    /// are replaced, and a new operator leader counts from the recorded time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_hosts: Vec<FailingHostStatus>,
    /// The host a change (a new version, renewed certificates, new flags) is rolling through,
    /// one serving host at a time; absent when every host runs what the spec asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The last certificate-authority rotation `spec.certificates.authorityRotation` asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_rotation: Option<AuthorityRotationStatus>,
    /// When the first of the cluster's certificates expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates_expire: Option<Time>,
    /// The Secret (in the Cluster's namespace) holding the admin kubeconfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_kubeconfig_secret: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdMemberStatus {
    pub name: String,
    pub host: String,
    /// The member ID in hex, as etcdctl prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub healthy: bool,
    #[serde(default)]
    pub leader: bool,
}

/// A host holding an etcd member, with the membership the member was started into.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdHostStatus {
    pub host: String,
    /// etcd's `--initial-cluster` for this member (`name=peerURL,…`).
    pub initial_cluster: String,
    /// etcd's `--initial-cluster-state`: `new` for the first members, `existing` for later ones.
    pub initial_cluster_state: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailingHostStatus {
    pub host: String,
    pub since: Time,
}

/// A change rolling through the Cluster's hosts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The host taking the change now: drained from the load balancer, then restarted.
    pub host: String,
    /// When its units were restarted with the change; absent while it is being drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<Time>,
    /// The spec generation whose rollout halted because the host did not become healthy in
    /// time; a spec change resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted_generation: Option<i64>,
}

/// A staged rotation of the certificate authorities.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthorityRotationStatus {
    /// The `spec.certificates.authorityRotation` value this rotation answers.
    pub request: String,
    pub phase: AuthorityRotationPhase,
    pub last_transition_time: Time,
}

/// The stages of a certificate-authority rotation, each rolled through every host before the
/// next begins.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthorityRotationPhase {
    /// New authorities made; every component trusts both the old and the new.
    TrustingNew,
    /// Every leaf certificate re-issued by the new authorities; both still trusted.
    ReissuingLeaves,
    /// The old authorities dropped; only the new are trusted.
    DroppingOld,
    Completed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneHostStatus {
    pub host: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub ready: bool,
}
