//! Max-in-flight flow control, as upstream's `--max-requests-inflight` and
//! `--max-mutating-requests-inflight`: read-only and mutating requests each take a slot of their
//! own pool while they are served, and a request finding its pool full is answered 429 at once
//! rather than queued. Watches, health checks and metrics never take a slot.

use std::sync::Arc;

use hakube_apimachinery::status::{self, ApiError};
use http::{Method, Uri};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::metrics::{InflightGuard, Metrics};
use crate::response::{parse_query, query_bool};

/// What a rejected client is told to wait, in seconds (upstream's value).
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    ReadOnly,
    Mutating,
}

impl RequestKind {
    /// The `request_kind` label of the in-flight metrics.
    pub fn label(self) -> &'static str {
        match self {
            RequestKind::ReadOnly => "readOnly",
            RequestKind::Mutating => "mutating",
        }
    }
}

/// The pool a request counts against, or `None` for requests that are never limited: probes and
/// scrapes, which must answer even under load, and watches, which stay open for minutes.
pub fn classify(method: &Method, uri: &Uri) -> Option<RequestKind> {
    let first = uri.path().trim_start_matches('/').split('/').next();
    if matches!(first, Some("healthz" | "livez" | "readyz" | "metrics")) {
        return None;
    }
    if matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return Some(RequestKind::Mutating);
    }
    if query_bool(&parse_query(uri.query()), "watch") {
        return None;
    }
    Some(RequestKind::ReadOnly)
}

pub struct Limiter {
    /// `None` when the flag is 0: no limit.
    read_only: Option<Semaphore>,
    mutating: Option<Semaphore>,
    metrics: Arc<Metrics>,
}

/// A request's slot, given back when it drops.
pub struct Permit<'a> {
    _slot: SemaphorePermit<'a>,
    _counted: InflightGuard,
}

fn pool(limit: usize) -> Option<Semaphore> {
    // Semaphore::new panics above MAX_PERMITS; any such limit is no limit in practice.
    (limit > 0).then(|| Semaphore::new(limit.min(Semaphore::MAX_PERMITS)))
}

impl Limiter {
    pub fn new(max_read_only: usize, max_mutating: usize, metrics: Arc<Metrics>) -> Self {
        Limiter {
            read_only: pool(max_read_only),
            mutating: pool(max_mutating),
            metrics,
        }
    }

    /// Takes a slot for the request, to hold while it is served: `Ok(None)` when it is not
    /// limited, 429 TooManyRequests when its pool is full.
    pub fn admit(&self, method: &Method, uri: &Uri) -> Result<Option<Permit<'_>>, ApiError> {
        let Some(kind) = classify(method, uri) else {
            return Ok(None);
        };
        let pool = match kind {
            RequestKind::ReadOnly => &self.read_only,
            RequestKind::Mutating => &self.mutating,
        };
        let Some(pool) = pool else {
            return Ok(None);
        };
        match pool.try_acquire() {
            Ok(slot) => Ok(Some(Permit {
                _slot: slot,
                _counted: self.metrics.inflight_started(kind.label()),
            })),
            Err(_) => {
                self.metrics.request_dropped(kind.label());
                Err(status::too_many_requests(
                    "Too many requests, please try again later.",
                    RETRY_AFTER_SECONDS,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn requests_are_classified_by_method_and_watches_and_probes_are_exempt() {
        let list = uri("/api/v1/namespaces/default/pods?limit=5");
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_eq!(classify(&m, &list), Some(RequestKind::ReadOnly), "{m}");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(classify(&m, &list), Some(RequestKind::Mutating), "{m}");
        }
        for watch in [
            "/api/v1/pods?watch=true",
            "/apis/apps/v1/deployments?watch=1",
        ] {
            assert_eq!(classify(&Method::GET, &uri(watch)), None, "{watch}");
        }
        assert_eq!(
            classify(&Method::GET, &uri("/api/v1/pods?watch=false")),
            Some(RequestKind::ReadOnly)
        );
        for exempt in ["/healthz", "/livez", "/readyz", "/readyz/etcd", "/metrics"] {
            assert_eq!(classify(&Method::GET, &uri(exempt)), None, "{exempt}");
        }
        assert_eq!(
            classify(&Method::GET, &uri("/version")),
            Some(RequestKind::ReadOnly)
        );
    }

    #[test]
    fn a_full_pool_answers_429_until_a_slot_is_given_back() {
        let metrics = Arc::new(Metrics::new());
        let limiter = Limiter::new(1, 1, metrics.clone());
        let list = uri("/api/v1/pods");
        let held = limiter.admit(&Method::GET, &list).unwrap();
        assert!(held.is_some());
        assert!(metrics
            .render()
            .contains("apiserver_current_inflight_requests{request_kind=\"readOnly\"} 1"));

        let err = limiter.admit(&Method::GET, &list).err().unwrap();
        assert_eq!(
            err.to_status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429})
        );
        let resp = crate::response::error(&err);
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[http::header::RETRY_AFTER], "1");
        assert!(metrics
            .render()
            .contains("apiserver_dropped_requests_total{request_kind=\"readOnly\"} 1"));

        // The pools are separate, and watches take no slot.
        assert!(limiter.admit(&Method::POST, &list).unwrap().is_some());
        let watch = uri("/api/v1/pods?watch=true");
        assert!(limiter.admit(&Method::GET, &watch).unwrap().is_none());

        drop(held);
        assert!(metrics
            .render()
            .contains("apiserver_current_inflight_requests{request_kind=\"readOnly\"} 0"));
        assert!(limiter.admit(&Method::GET, &list).unwrap().is_some());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = Limiter::new(0, 0, Arc::new(Metrics::new()));
        let list = uri("/api/v1/pods");
        let held: Vec<_> = (0..1000)
            .map(|_| limiter.admit(&Method::GET, &list).unwrap())
            .collect();
        assert!(held.iter().all(Option::is_none));
        assert!(limiter.admit(&Method::DELETE, &list).unwrap().is_none());
    }

    #[test]
    fn limits_past_the_semaphore_maximum_do_not_panic() {
        let limiter = Limiter::new(usize::MAX, usize::MAX, Arc::new(Metrics::new()));
        assert!(limiter
            .admit(&Method::GET, &uri("/api/v1/pods"))
            .unwrap()
            .is_some());
    }
}
