//! Metrics shared by every controller, with upstream's workqueue names: each controller's
//! syncs are timed and its retries counted under its queue name.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub name: String,
}

/// The node lifecycle controller's per-zone figures (upstream's `node_collector` subsystem).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoneLabels {
    pub zone: String,
}

#[derive(Default)]
pub struct NodeCollectorMetrics {
    pub zone_health: Family<ZoneLabels, Gauge<f64, AtomicU64>>,
    pub zone_size: Family<ZoneLabels, Gauge>,
    pub unhealthy_nodes: Family<ZoneLabels, Gauge>,
    pub evictions: Family<ZoneLabels, Counter>,
}

impl NodeCollectorMetrics {
    fn register(&self, registry: &mut Registry) {
        let collector = registry.sub_registry_with_prefix("node_collector");
        collector.register(
            "zone_health",
            "Gauge measuring percentage of healthy nodes per zone.",
            self.zone_health.clone(),
        );
        collector.register(
            "zone_size",
            "Gauge measuring number of registered Nodes per zones.",
            self.zone_size.clone(),
        );
        collector.register(
            "unhealthy_nodes_in_zone",
            "Gauge measuring number of not Ready Nodes per zones.",
            self.unhealthy_nodes.clone(),
        );
        collector.register(
            "evictions",
            "Number of Node evictions that happened since current instance of NodeController started.",
            self.evictions.clone(),
        );
    }
}

pub struct Metrics {
    pub node_collector: NodeCollectorMetrics,
    pub adds: Family<QueueLabels, Counter>,
    pub work_duration: Family<QueueLabels, Histogram>,
    pub retries: Family<QueueLabels, Counter>,
    pub is_leader: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            node_collector: NodeCollectorMetrics::default(),
            adds: Family::default(),
            work_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_01, 10.0, 10))
            }),
            retries: Family::default(),
            is_leader: Gauge::default(),
        };
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            metrics.adds.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            metrics.work_duration.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            metrics.retries.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master.",
            metrics.is_leader.clone(),
        );
        metrics.node_collector.register(registry);
        metrics
    }

    /// Starts timing one sync of `queue`'s item.
    pub fn sync(&self, queue: &str) -> SyncTimer<'_> {
        let labels = QueueLabels {
            name: queue.to_string(),
        };
        self.adds.get_or_create(&labels).inc();
        SyncTimer {
            metrics: self,
            labels,
            started: Instant::now(),
        }
    }
}

/// One sync in progress; [`SyncTimer::done`] records how it went.
pub struct SyncTimer<'a> {
    metrics: &'a Metrics,
    labels: QueueLabels,
    started: Instant,
}

impl SyncTimer<'_> {
    /// Records the sync's duration, and a retry when it failed.
    pub fn done(self, succeeded: bool) {
        self.metrics
            .work_duration
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
        if !succeeded {
            self.metrics.retries.get_or_create(&self.labels).inc();
        }
    }
}
