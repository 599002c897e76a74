//! Events as upstream's controllers record them: one Event per occurrence with its own note
//! ("Created pod: web-x7k2p"), so distinct notes under one reason are all kept. kube's
//! Recorder folds every event of one reason about one object into a series that keeps only
//! the first note.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Resource;

/// Who records: the controller's name and this replica's identity.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
}

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

impl Events {
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Events {
        Events {
            client,
            controller: controller.into(),
            instance: instance.into(),
        }
    }

    /// Records an event about `regarding` in the background (a lost event is only logged).
    pub fn record(
        &self,
        regarding: &impl Resource<DynamicType = ()>,
        kind: Kind,
        reason: &str,
        note: String,
    ) {
        let event = build(
            &self.controller,
            &self.instance,
            regarding.object_ref(&()),
            kind,
            reason,
            note,
            Timestamp::now(),
        );
        let api = Api::<Event>::namespaced(
            self.client.clone(),
            event.metadata.namespace.as_deref().unwrap_or("default"),
        );
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, "recording an event failed");
            }
        });
    }
}

fn build(
    controller: &str,
    instance: &str,
    regarding: ObjectReference,
    kind: Kind,
    reason: &str,
    note: String,
    now: Timestamp,
) -> Event {
    let name = format!(
        "{}.{:x}",
        regarding.name.as_deref().unwrap_or(controller),
        now.as_nanosecond()
    );
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: regarding.namespace.clone(),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(reason.into()),
        reason: Some(reason.into()),
        note: Some(note),
        type_: Some(format!("{kind:?}")),
        reporting_controller: Some(controller.into()),
        reporting_instance: Some(instance.into()),
        regarding: Some(regarding),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_note_and_reporter() {
        let regarding = ObjectReference {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            ..ObjectReference::default()
        };
        let e = build(
            "replicaset-controller",
            "me",
            regarding,
            Kind::Warning,
            "FailedCreate",
            "Error creating: x".into(),
            Timestamp::now(),
        );
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.note.as_deref(), Some("Error creating: x"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns"));
        assert!(e.metadata.name.unwrap().starts_with("web."));
        assert_eq!(
            e.reporting_controller.as_deref(),
            Some("replicaset-controller")
        );
    }
}
