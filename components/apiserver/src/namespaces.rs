//! What the admission check needs to know about namespaces (exists? terminating?), kept in
//! memory from a list and watch of etcd, as upstream's NamespaceLifecycle plugin keeps an
//! informer. A name the cache has not seen is looked up in etcd, so a namespace created a
//! moment ago is never refused.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use etcd_client::EventType;

use crate::objects;
use crate::storage::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Active,
    Terminating,
}

#[derive(Default)]
pub struct NamespaceCache {
    phases: RwLock<HashMap<String, Phase>>,
}

fn phase_of(object: &serde_json::Value) -> Phase {
    if objects::is_deleting(object) {
        Phase::Terminating
    } else {
        Phase::Active
    }
}

impl NamespaceCache {
    /// The namespace's phase, or None when it does not exist.
    pub async fn phase(&self, store: &Store, name: &str) -> Result<Option<Phase>, StoreError> {
        let cached = self.phases.read().ok().and_then(|p| p.get(name).copied());
        if let Some(phase) = cached {
            return Ok(Some(phase));
        }
        let live = store.get(&store.key("namespaces", None, name)).await?;
        Ok(live.map(|s| phase_of(&s.object)))
    }

    fn set(&self, name: &str, phase: Option<Phase>) {
        if let Ok(mut phases) = self.phases.write() {
            match phase {
                Some(p) => {
                    phases.insert(name.to_string(), p);
                }
                None => {
                    phases.remove(name);
                }
            }
        }
    }

    /// Lists and then watches namespaces until `stop`; relists after any watch failure.
    pub async fn run(self: Arc<Self>, store: Store, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                result = self.sync(&store) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "namespace cache lost its watch; relisting");
                    }
                }
                _ = crate::stopping(&mut stop) => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = crate::stopping(&mut stop) => return,
            }
        }
    }

    async fn sync(&self, store: &Store) -> Result<(), StoreError> {
        let prefix = store.collection("namespaces", None);
        let page = store.list(&prefix, None, 0, 0, false).await?;
        let fresh: HashMap<String, Phase> = page
            .items
            .iter()
            .filter_map(|s| Some((objects::name(&s.object)?.to_string(), phase_of(&s.object))))
            .collect();
        if let Ok(mut phases) = self.phases.write() {
            *phases = fresh;
        }
        let mut stream = store.watch(&prefix, page.revision + 1).await?;
        while let Some(response) = stream.message().await? {
            if response.canceled() || response.compact_revision() > 0 {
                return Err(StoreError::Compacted);
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let name = key.trim_start_matches(prefix.as_str()).to_string();
                match event.event_type() {
                    EventType::Delete => self.set(&name, None),
                    EventType::Put => {
                        let stored = Store::decode_event(kv)?;
                        self.set(&name, Some(phase_of(&stored.object)));
                    }
                }
            }
        }
        Ok(())
    }
}
