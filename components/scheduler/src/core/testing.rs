//! Builders for the core's unit tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::node::NodeSchedulingView;
use super::pod::PodInfo;
use super::resources::Resources;

pub fn node_view(cpu: &str, memory: &str, pods: i64) -> NodeSchedulingView {
    let mut map = BTreeMap::new();
    map.insert("cpu".to_string(), Quantity(cpu.into()));
    map.insert("memory".to_string(), Quantity(memory.into()));
    let mut allocatable = Resources::from_map(&map);
    allocatable.pods = pods;
    NodeSchedulingView {
        labels: BTreeMap::new(),
        taints: Vec::new(),
        unschedulable: false,
        allocatable,
    }
}

pub fn pod_object(name: &str, cpu: &str, memory: &str) -> Pod {
    let mut requests = BTreeMap::new();
    if !cpu.is_empty() {
        requests.insert("cpu".to_string(), Quantity(cpu.into()));
    }
    if !memory.is_empty() {
        requests.insert("memory".to_string(), Quantity(memory.into()));
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

pub fn pod(name: &str, cpu: &str, memory: &str) -> Arc<PodInfo> {
    PodInfo::new(pod_object(name, cpu, memory))
}

/// A pod built from a base with `edit` applied to its object.
pub fn pod_with(name: &str, cpu: &str, memory: &str, edit: impl FnOnce(&mut Pod)) -> Arc<PodInfo> {
    let mut object = pod_object(name, cpu, memory);
    edit(&mut object);
    PodInfo::new(object)
}
