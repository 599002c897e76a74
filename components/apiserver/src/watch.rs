//! Watch, served straight from etcd: one etcd watch per request on the collection's key prefix,
//! each change turned into ADDED/MODIFIED/DELETED for the request's selectors (an object that
//! stops matching is DELETED), bookmarks, the streaming-list start, timeouts, and the in-stream
//! 410 `Expired` for a resourceVersion etcd has compacted away.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hakube_apimachinery::status::{self, ApiError};
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cache::{self, line, Cache, CacheEvent};
use crate::metrics::LatencyLabels;
use crate::response::{query_bool, Body};
use crate::rest::{to_wire, Selectors, Target};
use crate::table::{self, IncludeObject};
use crate::State;

/// How often an idle watch with `allowWatchBookmarks` gets a bookmark.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

struct WatchRequest {
    target: Target,
    selectors: Selectors,
    start: Start,
    bookmarks: bool,
    timeout: Option<Duration>,
    /// Objects are sent as one-row Tables (`kubectl get -w`).
    table: Option<IncludeObject>,
    /// Tables carry their column definitions in the first event only, as upstream's do.
    columns_sent: AtomicBool,
}

impl WatchRequest {
    /// Whether this watcher sends objects exactly as stored, so it can share the lines the
    /// cache makes once per event.
    fn shared_lines(&self) -> bool {
        let def = self.target.def;
        self.table.is_none() && !def.is_events_v1() && def.custom.is_none()
    }

    /// An event line for an object (in storage form).
    fn event(&self, event_type: &str, object: Value) -> Bytes {
        let t = &self.target;
        let object = to_wire(t.def, object);
        let Some(include) = self.table else {
            return line(event_type, &object);
        };
        let metadata = json!({"resourceVersion": object.pointer("/metadata/resourceVersion")});
        let mut rendered = table::table_for(
            t.def,
            std::slice::from_ref(&object),
            &metadata,
            include,
            chrono::Utc::now(),
        );
        if self.columns_sent.swap(true, Ordering::Relaxed) {
            rendered["columnDefinitions"] = json!([]);
        }
        line(event_type, &rendered)
    }
}

enum Start {
    /// Send the current state as ADDED, then changes; `initial_events_end` marks the end with
    /// a bookmark (streaming lists).
    FromNow { initial_events_end: bool },
    /// Changes after this revision.
    After(i64),
    /// Changes from now on, with no initial state (`sendInitialEvents=false`).
    Latest,
}

fn parse(
    t: &Target,
    query: &HashMap<String, String>,
    table: Option<IncludeObject>,
) -> Result<WatchRequest, ApiError> {
    let selectors = Selectors::parse(t.def, query)?;
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let bookmarks = query_bool(query, "allowWatchBookmarks");
    let send_initial = query.get("sendInitialEvents").map(|v| v == "true");
    let start = match send_initial {
        Some(true) => {
            if query.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan") {
                return Err(status::invalid(
                    "meta.k8s.io",
                    "ListOptions",
                    "",
                    vec![hakube_apimachinery::status::StatusCause::forbidden(
                        "sendInitialEvents",
                        "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
                    )],
                ));
            }
            Start::FromNow {
                initial_events_end: bookmarks,
            }
        }
        Some(false) if rv.is_empty() || rv == "0" => Start::Latest,
        _ if rv.is_empty() || rv == "0" => Start::FromNow {
            initial_events_end: false,
        },
        _ => Start::After(
            rv.parse::<i64>()
                .map_err(|_| status::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let timeout = match query.get("timeoutSeconds").filter(|s| !s.is_empty()) {
        Some(s) => Some(Duration::from_secs(s.parse::<u64>().map_err(|_| {
            status::bad_request(format!("invalid timeoutSeconds: {s}"))
        })?)),
        None => None,
    };
    Ok(WatchRequest {
        target: t.clone(),
        selectors,
        start,
        bookmarks,
        timeout,
        table,
        columns_sent: AtomicBool::new(false),
    })
}

fn bookmark(t: &Target, revision: i64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": t.def.kind, "apiVersion": t.def.api_version(), "metadata": metadata}),
    )
}

fn expired(message: String) -> Bytes {
    line("ERROR", &status::expired(&message).to_status())
}

/// Starts a watch; errors found before streaming are ordinary HTTP errors.
pub async fn serve(
    state: Arc<State>,
    t: &Target,
    query: &HashMap<String, String>,
    table: Option<IncludeObject>,
    labels: LatencyLabels,
) -> Result<Response<Body>, ApiError> {
    let request = parse(t, query, table)?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let prefix = state.store.collection(t.segment(), t.namespace.as_deref());
    let cache = state
        .caches
        .get(&state.store, &state.store.collection(t.segment(), None));
    let guard = state.metrics.watch_opened(&labels);
    tokio::spawn(async move {
        let _guard = guard;
        let mut shutdown = state.shutdown.clone();
        let stream = run(cache, &prefix, &request, &tx);
        let timeout = async {
            match request.timeout {
                Some(d) => tokio::time::sleep(d).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            result = stream => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "watch ended");
                }
            }
            _ = timeout => {}
            // The client hung up: stop the etcd watch now, not at the next event.
            _ = tx.closed() => {}
            _ = crate::stopping(&mut shutdown) => {}
        }
    });
    let body =
        StreamBody::new(ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut resp = Response::new(BodyExt::boxed(body));
    *resp.status_mut() = StatusCode::OK;
    let content_type = if table.is_some() {
        table::CONTENT_TYPE
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

#[derive(Debug, thiserror::Error)]
enum WatchEnd {
    #[error("client went away")]
    ClientGone,
    #[error("the watch fell behind and was cut off")]
    CutOff,
    #[error("storage: {0}")]
    Store(String),
}

async fn send(tx: &mpsc::Sender<Bytes>, bytes: Bytes) -> Result<(), WatchEnd> {
    tx.send(bytes).await.map_err(|_| WatchEnd::ClientGone)
}

/// Sends a line unless the cache cuts this watcher off first (its client stopped reading).
async fn send_or_cut(
    tx: &mpsc::Sender<Bytes>,
    cut: &mut tokio::sync::watch::Receiver<()>,
    bytes: Bytes,
) -> Result<(), WatchEnd> {
    tokio::select! {
        sent = tx.send(bytes) => sent.map_err(|_| WatchEnd::ClientGone),
        _ = cut.changed() => Err(WatchEnd::CutOff),
    }
}

async fn run(
    cache: Arc<Cache>,
    prefix: &str,
    request: &WatchRequest,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), WatchEnd> {
    if !cache.wait_for(0, cache::CATCH_UP).await {
        return Err(WatchEnd::Store("the watch cache is not loaded yet".into()));
    }
    let t = &request.target;
    let (from, after) = match request.start {
        Start::After(rv) => (cache::From::After(rv), rv),
        Start::Latest => (cache::From::Latest, 0),
        Start::FromNow { .. } => (cache::From::Now, 0),
    };
    let mut subscription = match cache.subscribe(prefix, from) {
        Ok(s) => s,
        Err(e) => {
            send(tx, expired(e.to_string())).await?;
            return Ok(());
        }
    };
    let mut cut = subscription.cut.clone();
    let everything = request.selectors.is_everything();
    for item in std::mem::take(&mut subscription.initial) {
        if !everything && !request.selectors.matches(&item.selectable()) {
            continue;
        }
        let line = if request.shared_lines() {
            item.line("ADDED")
        } else {
            request.event("ADDED", item.object())
        };
        send_or_cut(tx, &mut cut, line).await?;
    }
    if let Start::FromNow {
        initial_events_end: true,
    } = request.start
    {
        send_or_cut(tx, &mut cut, bookmark(t, subscription.revision, true)).await?;
    }
    let mut revision = subscription.revision.max(after);
    for event in std::mem::take(&mut subscription.replay) {
        if let Some(bytes) = translate(request, &event) {
            send_or_cut(tx, &mut cut, bytes).await?;
        }
        revision = revision.max(event.revision);
    }
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            event = subscription.next_event() => {
                let Some(event) = event else {
                    // The cache cut this watcher off (it fell behind, or the cache reloaded).
                    let message = format!("too old resource version: {revision} (the watch fell behind)");
                    let _ = tx.try_send(expired(message));
                    return Ok(());
                };
                if event.revision <= after {
                    continue;
                }
                revision = revision.max(event.revision);
                if let Some(bytes) = translate(request, &event) {
                    send_or_cut(tx, &mut cut, bytes).await?;
                }
            }
            _ = ticker.tick(), if request.bookmarks => {
                // Read the cache's revision before looking at the queue: once the queue is
                // empty, every event up to that revision has reached this watcher.
                let current = cache.delivered();
                if subscription.caught_up() {
                    revision = revision.max(current);
                }
                send_or_cut(tx, &mut cut, bookmark(t, revision, false)).await?;
            }
        }
    }
}

/// One cached change as the watch event this client should see, if any.
fn translate(request: &WatchRequest, event: &CacheEvent) -> Option<Bytes> {
    let selectors = &request.selectors;
    let everything = selectors.is_everything();
    let old_matches = event.previous.is_some()
        && (everything
            || event
                .previous_selectable()
                .is_some_and(|o| selectors.matches(&o)));
    let new_matches = event.current.is_some()
        && (everything
            || event
                .current_selectable()
                .is_some_and(|c| selectors.matches(&c)));
    let kind = match (old_matches, new_matches) {
        (true, true) => "MODIFIED",
        (false, true) => "ADDED",
        // An object that stops matching leaves this watcher's view.
        (true, false) => "DELETED",
        (false, false) => return None,
    };
    if request.shared_lines() {
        return event.shared_line(kind);
    }
    let object = match kind {
        "DELETED" => event.deleted_object()?,
        _ => event.current_object()?.as_ref().clone(),
    };
    Some(request.event(kind, object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    fn target() -> Target {
        Target {
            def: lookup("", "v1", "pods").unwrap(),
            namespace: Some("default".into()),
            name: None,
            sub: None,
            field_manager: None,
        }
    }

    #[test]
    fn bookmarks_carry_kind_and_the_initial_events_marker() {
        let b = bookmark(&target(), 42, true);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "BOOKMARK");
        assert_eq!(v["object"]["kind"], "Pod");
        assert_eq!(v["object"]["apiVersion"], "v1");
        assert_eq!(v["object"]["metadata"]["resourceVersion"], "42");
        assert_eq!(
            v["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
        assert!(b.ends_with(b"\n"));
    }

    #[test]
    fn streaming_lists_need_not_older_than() {
        let q: HashMap<String, String> =
            [("sendInitialEvents".to_string(), "true".to_string())].into();
        assert_eq!(parse(&target(), &q, None).err().unwrap().code, 422);
        let mut q = q;
        q.insert("resourceVersionMatch".into(), "NotOlderThan".into());
        q.insert("allowWatchBookmarks".into(), "true".into());
        assert!(matches!(
            parse(&target(), &q, None).unwrap().start,
            Start::FromNow {
                initial_events_end: true
            }
        ));
    }

    #[test]
    fn send_initial_events_false_starts_at_the_latest_revision() {
        let q: HashMap<String, String> =
            [("sendInitialEvents".to_string(), "false".to_string())].into();
        assert!(matches!(
            parse(&target(), &q, None).unwrap().start,
            Start::Latest
        ));
        let q: HashMap<String, String> = [("resourceVersion".to_string(), "7".to_string())].into();
        assert!(matches!(
            parse(&target(), &q, None).unwrap().start,
            Start::After(7)
        ));
    }

    #[test]
    fn expired_is_an_in_stream_status() {
        let v: Value =
            serde_json::from_slice(&expired("too old resource version: 1 (5)".into())).unwrap();
        assert_eq!(v["type"], "ERROR");
        assert_eq!(v["object"]["code"], 410);
        assert_eq!(v["object"]["reason"], "Expired");
    }
}
