//! Events as upstream's controllers record them: one Event per occurrence with its own note
//! ("Created pod: web-x7k2p"), so distinct notes under one reason are all kept. kube's
//! Recorder folds every event of one reason about one object into a series that keeps only
//! the first note. Like upstream's recorder, a token bucket per object and type (25 at once,
//! then one per 5 minutes) keeps a controller creating a thousand pods from writing a
//! thousand Events beside them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Resource;

/// Upstream's event spam filter: burst and refill interval per object and type.
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Objects whose buckets are remembered (upstream's LRU size).
const SPAM_KEYS: usize = 4096;

/// Who records: the controller's name and this replica's identity.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
    buckets: Arc<Mutex<SpamFilter>>,
}

/// A token bucket per (object, type).
#[derive(Default)]
struct SpamFilter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl SpamFilter {
    /// Whether an event under `key` may be written at `now`; takes a token if so.
    fn allow(&mut self, key: String, now: Instant) -> bool {
        if self.buckets.len() >= SPAM_KEYS && !self.buckets.contains_key(&key) {
            // Forget the object heard from longest ago, as upstream's LRU does.
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| k.clone())
            {
                self.buckets.remove(&oldest);
            }
        }
        let (tokens, last) = self.buckets.entry(key).or_insert((SPAM_BURST, now));
        let refilled = now.duration_since(*last).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        *tokens = (*tokens + refilled).min(SPAM_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
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
            buckets: Arc::default(),
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
        let reference = regarding.object_ref(&());
        let key = format!(
            "{}/{}/{}/{}/{kind:?}",
            reference.kind.as_deref().unwrap_or(""),
            reference.namespace.as_deref().unwrap_or(""),
            reference.name.as_deref().unwrap_or(""),
            reference.uid.as_deref().unwrap_or(""),
        );
        let allowed = self
            .buckets
            .lock()
            .map(|mut filter| filter.allow(key, Instant::now()))
            .unwrap_or(true);
        if !allowed {
            tracing::debug!(reason, %note, "event dropped by the spam filter");
            return;
        }
        let event = build(
            &self.controller,
            &self.instance,
            reference,
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
    fn the_spam_filter_lets_25_through_then_one_per_five_minutes() {
        let mut filter = SpamFilter::default();
        let start = Instant::now();
        let key = || "ReplicaSet/ns/web/uid/Normal".to_string();
        let allowed = (0..100).filter(|_| filter.allow(key(), start)).count();
        assert_eq!(allowed, 25);
        assert!(filter.allow("ReplicaSet/ns/web/uid/Warning".into(), start));
        assert!(!filter.allow(key(), start + Duration::from_secs(299)));
        assert!(filter.allow(key(), start + Duration::from_secs(301)));
        assert!(!filter.allow(key(), start + Duration::from_secs(302)));
    }

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
