//! `Host`: a machine (or, in local mode, a network namespace) running hakube-hostd.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A host in the inventory. Clusters pick hosts by name or by the Host's labels
/// (`metadata.labels`, so `kubectl label host` and label selectors work as usual).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hakube.io",
    version = "v1alpha1",
    kind = "Host",
    status = "HostStatus",
    category = "hakube",
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".spec.address"}"#,
    printcolumn = r#"{"name":"Reachable","type":"boolean","jsonPath":".status.reachable"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".status.agentVersion"}"#,
    printcolumn = r#"{"name":"Heartbeat","type":"date","jsonPath":".status.lastHeartbeat"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HostSpec {
    /// The address the host's services listen on and peers reach it at.
    pub address: String,
    /// hostd's gRPC endpoint (`host:port`); `<address>:9443` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostd_endpoint: Option<String>,
}

impl HostSpec {
    /// Where the operator reaches this host's hostd.
    pub fn hostd_endpoint(&self) -> String {
        self.hostd_endpoint
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.address, DEFAULT_HOSTD_PORT))
    }
}

/// The port hostd listens on unless a Host says otherwise.
pub const DEFAULT_HOSTD_PORT: u16 = 9443;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    #[serde(default)]
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<HostCapacity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostCapacity {
    pub cpu: Quantity,
    pub memory: Quantity,
    pub disk: Quantity,
}
