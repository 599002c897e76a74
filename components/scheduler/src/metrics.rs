//! The scheduler's metrics, with upstream's names and labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::core::queue::PendingCounts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptsLabels {
    pub attempts: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

pub struct Metrics {
    pub schedule_attempts: Family<ResultLabels, Counter>,
    pub attempt_duration: Family<ResultLabels, Histogram>,
    pub algorithm_duration: Histogram,
    pub pod_scheduling_sli_duration: Family<AttemptsLabels, Histogram>,
    pub pod_scheduling_attempts: Histogram,
    pub pending_pods: Family<QueueLabels, Gauge>,
    pub preemption_attempts: Counter,
    pub preemption_victims: Histogram,
    pub binding_duration: Histogram,
    pub api_errors: Family<OperationLabels, Counter>,
    pub is_leader: Gauge,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 15)
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            schedule_attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            algorithm_duration: Histogram::new(latency_buckets()),
            pod_scheduling_sli_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 20))
            }),
            pod_scheduling_attempts: Histogram::new(exponential_buckets(1.0, 2.0, 5)),
            pending_pods: Family::default(),
            preemption_attempts: Counter::default(),
            preemption_victims: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            binding_duration: Histogram::new(latency_buckets()),
            api_errors: Family::default(),
            is_leader: Gauge::default(),
        };
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            metrics.schedule_attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            metrics.attempt_duration.clone(),
        );
        registry.register(
            "scheduler_scheduling_algorithm_duration_seconds",
            "Scheduling algorithm latency in seconds",
            metrics.algorithm_duration.clone(),
        );
        registry.register(
            "scheduler_pod_scheduling_sli_duration_seconds",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue until it is bound.",
            metrics.pod_scheduling_sli_duration.clone(),
        );
        registry.register(
            "scheduler_pod_scheduling_attempts",
            "Number of attempts to successfully schedule a pod.",
            metrics.pod_scheduling_attempts.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type.",
            metrics.pending_pods.clone(),
        );
        registry.register(
            "scheduler_preemption_attempts",
            "Total preemption attempts in the cluster till now",
            metrics.preemption_attempts.clone(),
        );
        registry.register(
            "scheduler_preemption_victims",
            "Number of selected preemption victims",
            metrics.preemption_victims.clone(),
        );
        registry.register(
            "scheduler_binding_duration_seconds",
            "Binding latency in seconds",
            metrics.binding_duration.clone(),
        );
        registry.register(
            "scheduler_api_errors",
            "Failed requests to the API server, by operation.",
            metrics.api_errors.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "Whether this replica currently leads (1) or not (0).",
            metrics.is_leader.clone(),
        );
        metrics
    }

    pub fn attempt(&self, result: &str, profile: &str, seconds: f64) {
        let labels = ResultLabels {
            result: result.to_string(),
            profile: profile.to_string(),
        };
        self.schedule_attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(seconds);
    }

    pub fn set_pending(&self, counts: PendingCounts) {
        for (queue, count) in [
            ("active", counts.active),
            ("backoff", counts.backoff),
            ("unschedulable", counts.unschedulable),
            ("gated", 0),
        ] {
            self.pending_pods
                .get_or_create(&QueueLabels {
                    queue: queue.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    pub fn api_error(&self, operation: &str) {
        self.api_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }
}
