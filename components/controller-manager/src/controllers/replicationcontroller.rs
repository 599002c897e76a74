//! replicationcontroller-controller: the core/v1 ReplicationController, run by the very same
//! logic as ReplicaSets ([`super::replicaset`]); only how its fields are read differs.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSetStatus;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use kube::core::Selector;

use super::replicaset::{self, ReplicaOwner};
use crate::context::Context;
use crate::options::Options;

impl ReplicaOwner for ReplicationController {
    const CONTROLLER: &'static str = "replication-controller";
    const QUEUE: &'static str = "replicationmanager";

    fn selector(&self) -> Result<Option<Selector>, String> {
        // An unset selector defaults to the template's labels in the API server; an empty
        // one selects every pod, as upstream's labels.Set(...).AsSelector().
        Ok(self
            .spec
            .as_ref()
            .map(|s| s.selector.clone().unwrap_or_default().into_iter().collect()))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn replica_status(&self) -> ReplicaSetStatus {
        // The two statuses have the same fields under the same names.
        self.status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    fn concurrency(options: &Options) -> u16 {
        options.concurrency.replicationcontroller
    }
}

pub async fn run(ctx: Arc<Context>) {
    replicaset::run_for::<ReplicationController>(ctx).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::SelectorExt;
    use std::collections::BTreeMap;

    #[test]
    fn reads_selector_template_and_status_like_a_replica_set() {
        let rc: ReplicationController = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rc", "namespace": "ns"},
            "spec": {"replicas": 2, "selector": {"app": "a"},
                     "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}},
            "status": {"replicas": 1, "readyReplicas": 1, "conditions": [
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}]}
        }))
        .unwrap();
        let selector = rc.selector().unwrap().unwrap();
        assert!(selector.matches(&BTreeMap::from([("app".into(), "a".into())])));
        assert!(!selector.matches(&BTreeMap::new()));
        assert_eq!(rc.replicas(), 2);
        let status = rc.replica_status();
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(
            status.conditions.unwrap()[0].reason.as_deref(),
            Some("FailedCreate")
        );
    }
}
