//! What every controller gets: the client, the flags, the shared metrics, and an event
//! recorder in its own name.

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};

use crate::metrics::Metrics;
use crate::options::Options;

pub struct Context {
    pub client: kube::Client,
    pub options: Arc<Options>,
    pub metrics: Arc<Metrics>,
    /// This replica's leader-election identity, reported as the events' instance.
    pub identity: String,
    /// The cluster CA bundle (PEM) to publish in every namespace.
    pub root_ca: Option<String>,
}

impl Context {
    /// A recorder whose events name `controller` (upstream's component name for it, such as
    /// `replicaset-controller`) and this replica.
    pub fn recorder(&self, controller: &str) -> Recorder {
        Recorder::new(
            self.client.clone(),
            Reporter {
                controller: controller.to_string(),
                instance: Some(self.identity.clone()),
            },
        )
    }
}
