//! The operator's Prometheus metrics and its `/metrics` + `/healthz` endpoint.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hakube_operator_api::cluster::ClusterStatus;
use hakube_operator_api::Cluster;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    namespace: String,
    cluster: String,
    condition: String,
    status: String,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciliations: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    conditions: Family<ConditionLabels, Gauge>,
    /// 1 while this replica holds the operator's lease.
    pub is_leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciliations = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let conditions = Family::<ConditionLabels, Gauge>::default();
        let is_leader = Gauge::default();
        registry.register(
            "hakube_operator_reconciliations",
            "Cluster reconciliations run",
            reconciliations.clone(),
        );
        registry.register(
            "hakube_operator_reconcile_errors",
            "Failed Cluster reconciliations, by kind of error",
            errors.clone(),
        );
        registry.register(
            "hakube_operator_reconcile_duration_seconds",
            "How long a Cluster reconciliation took",
            duration.clone(),
        );
        registry.register(
            "hakube_operator_cluster_condition",
            "1 for each Cluster condition's current status",
            conditions.clone(),
        );
        registry.register(
            "leader_election_master_status",
            "Whether this replica leads (1) or stands by (0)",
            is_leader.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciliations,
            errors,
            duration,
            conditions,
            is_leader,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, took: Duration) {
        self.reconciliations.inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn error(&self, kind: &str) {
        self.errors
            .get_or_create(&ErrorLabels { error: kind.into() })
            .inc();
    }

    /// One gauge per condition and status: 1 for the status it has, 0 for the others.
    pub fn conditions(&self, cluster: &Cluster, status: &ClusterStatus) {
        for condition in &status.conditions {
            for value in ["True", "False", "Unknown"] {
                let labels = ConditionLabels {
                    namespace: cluster.namespace().unwrap_or_default(),
                    cluster: cluster.name_any(),
                    condition: condition.type_.clone(),
                    status: value.into(),
                };
                self.conditions
                    .get_or_create(&labels)
                    .set(i64::from(condition.status == value));
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` over plain HTTP on `listener`.
pub async fn serve(metrics: Metrics, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let handler = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let (status, body) = match request.uri().path() {
                        "/metrics" => (StatusCode::OK, metrics.encode()),
                        "/healthz" | "/readyz" => (StatusCode::OK, "ok".to_string()),
                        _ => (StatusCode::NOT_FOUND, "not found".to_string()),
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), handler)
                .await;
        });
    }
}
