//! Prometheus metrics with upstream's names: requests by verb, resource and code, request
//! latency, long-running (watch) requests, max-in-flight usage and rejections, and etcd latency.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LongRunningLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub scope: String,
    pub component: String,
}

/// `readOnly` or `mutating`, the in-flight limit a request counts against.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InflightLabels {
    pub request_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EtcdLabels {
    pub operation: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<LatencyLabels>,
    long_running: Family<LongRunningLabels, Gauge>,
    inflight: Family<InflightLabels, Gauge>,
    dropped: Family<InflightLabels, Counter>,
    etcd_latency: HistogramFamily<EtcdLabels>,
}

fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn etcd_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily<LatencyLabels> = Family::new_with_constructor(request_buckets);
        let long_running = Family::<LongRunningLabels, Gauge>::default();
        let inflight = Family::<InflightLabels, Gauge>::default();
        let dropped = Family::<InflightLabels, Counter>::default();
        let etcd_latency: HistogramFamily<EtcdLabels> = Family::new_with_constructor(etcd_buckets);
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component.",
            latency.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component.",
            long_running.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Requests being served now that count against the max-in-flight limit of their kind (readOnly or mutating).",
            inflight.clone(),
        );
        registry.register(
            "apiserver_dropped_requests",
            "Requests answered 429 because the max-in-flight limit of their kind (readOnly or mutating) was reached.",
            dropped.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation.",
            etcd_latency.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            long_running,
            inflight,
            dropped,
            etcd_latency,
        }
    }

    pub fn observe_request(&self, labels: &LatencyLabels, code: u16, elapsed: Duration) {
        let counter_labels = RequestLabels {
            verb: labels.verb.clone(),
            group: labels.group.clone(),
            version: labels.version.clone(),
            resource: labels.resource.clone(),
            subresource: labels.subresource.clone(),
            scope: labels.scope.clone(),
            component: labels.component.clone(),
            code: code.to_string(),
        };
        self.requests.get_or_create(&counter_labels).inc();
        self.latency
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an open watch until the returned guard drops.
    pub fn watch_opened(self: &std::sync::Arc<Self>, labels: &LatencyLabels) -> WatchGuard {
        let labels = LongRunningLabels {
            verb: "WATCH".to_string(),
            group: labels.group.clone(),
            version: labels.version.clone(),
            resource: labels.resource.clone(),
            scope: labels.scope.clone(),
            component: labels.component.clone(),
        };
        self.long_running.get_or_create(&labels).inc();
        WatchGuard {
            metrics: self.clone(),
            labels,
        }
    }

    /// Counts a request against its in-flight kind until the returned guard drops.
    pub fn inflight_started(self: &std::sync::Arc<Self>, request_kind: &str) -> InflightGuard {
        let labels = InflightLabels {
            request_kind: request_kind.to_string(),
        };
        self.inflight.get_or_create(&labels).inc();
        InflightGuard {
            metrics: self.clone(),
            labels,
        }
    }

    pub fn request_dropped(&self, request_kind: &str) {
        self.dropped
            .get_or_create(&InflightLabels {
                request_kind: request_kind.to_string(),
            })
            .inc();
    }

    pub fn observe_etcd(&self, operation: &str, elapsed: Duration) {
        self.etcd_latency
            .get_or_create(&EtcdLabels {
                operation: operation.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

pub struct WatchGuard {
    metrics: std::sync::Arc<Metrics>,
    labels: LongRunningLabels,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.metrics.long_running.get_or_create(&self.labels).dec();
    }
}

pub struct InflightGuard {
    metrics: std::sync::Arc<Metrics>,
    labels: InflightLabels,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.metrics.inflight.get_or_create(&self.labels).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn requests_and_open_watches_are_exposed() {
        let m = Arc::new(Metrics::new());
        let labels = LatencyLabels {
            verb: "LIST".into(),
            group: "".into(),
            version: "v1".into(),
            resource: "pods".into(),
            subresource: "".into(),
            scope: "namespace".into(),
            component: "apiserver".into(),
        };
        m.observe_request(&labels, 200, Duration::from_millis(3));
        let guard = m.watch_opened(&labels);
        let text = m.render();
        assert!(
            text.contains("apiserver_request_total{verb=\"LIST\""),
            "{text}"
        );
        assert!(text.contains("code=\"200\"} 1"), "{text}");
        assert!(text.contains("apiserver_longrunning_requests{verb=\"WATCH\""));
        assert!(text.contains("} 1\n"));
        drop(guard);
        assert!(m.render().contains("apiserver_longrunning_requests{verb=\"WATCH\",group=\"\",version=\"v1\",resource=\"pods\",scope=\"namespace\",component=\"apiserver\"} 0"));
    }
}
