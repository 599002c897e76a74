//! The watch-cache benchmarks: lists served from the cache beside the in-process cost of
//! serializing the same objects, write-to-receipt latency and lost events with many watchers,
//! and the API server's memory while they are open.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{connect, ensure_namespace, pod, ApiTarget, LoadError, Sender, Windows};

const PODS: &str = "/api/v1/namespaces/bench/pods";
const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";
/// The annotation each update sets to its send time (ns since the epoch); `CANARY` marks the
/// update that shows every watcher is registered before the measured ones start.
const SENT: &str = "bench/sent";
const CANARY: &str = "canary";

/// One HTTP/2 connection to the API server; clones share it.
#[derive(Clone)]
pub struct Api {
    sender: Sender,
    authority: Arc<str>,
}

impl Api {
    pub async fn connect(target: &ApiTarget<'_>) -> Result<Api, LoadError> {
        Ok(Api {
            sender: connect(target, Windows::READS).await?,
            authority: format!("{}:{}", target.host, target.port).into(),
        })
    }

    /// Sends a request and returns the response with its body unread.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, LoadError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority));
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req.body(Full::new(body))?;
        let mut sender = self.sender.clone();
        sender.ready().await?;
        Ok(sender.send_request(req).await?)
    }

    /// Sends a request and reads the whole answer, which must have status `expect`.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
        expect: StatusCode,
    ) -> Result<Bytes, LoadError> {
        let resp = self.send(method, path, content_type, body).await?;
        let code = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if code != expect {
            return Err(LoadError::Status {
                code: code.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(body)
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Bytes, LoadError> {
        self.call(Method::GET, path, None, Bytes::new(), StatusCode::OK)
            .await
    }

    pub(crate) async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Bytes, LoadError> {
        let body = Bytes::from(serde_json::to_vec(patch)?);
        self.call(Method::PATCH, path, Some(MERGE_PATCH), body, StatusCode::OK)
            .await
    }
}

/// Creates Pods `0..count` in `bench` (`size` bytes of JSON each) with `concurrency` streams
/// on one connection, writing each one's status after it, as its kubelet would. Returns the
/// time it took.
pub async fn create_pods(
    target: &ApiTarget<'_>,
    count: usize,
    size: usize,
    concurrency: usize,
) -> Result<Duration, LoadError> {
    let api = Api::connect(target).await?;
    ensure_namespace(&mut api.sender.clone(), &api.authority).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut creators = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (api, next) = (api.clone(), next.clone());
        creators.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, LoadError>(());
                }
                let body = Bytes::from(serde_json::to_vec(&pod::pod(i, size))?);
                api.call(Method::POST, PODS, Some(JSON), body, StatusCode::CREATED)
                    .await?;
                let path = format!("{PODS}/{}/status", pod::name(i));
                api.merge_patch(&path, &json!({"status": pod::status(i)}))
                    .await?;
            }
        });
    }
    while let Some(done) = creators.join_next().await {
        done.map_err(|e| LoadError::Unexpected(format!("a creator task failed: {e}")))??;
    }
    Ok(start.elapsed())
}

/// What the list benchmark measured: each list's time to its whole body, and the floor.
pub struct Lists {
    pub items: usize,
    /// The size of one list's body.
    pub bytes: usize,
    pub floor: Vec<Duration>,
    pub cached: Vec<Duration>,
    pub consistent: Vec<Duration>,
}

/// Lists the Pods in `bench` `rounds` times each with `resourceVersion=0` and consistently, one
/// request at a time, and in each round serializes a parsed list in process: the floor.
pub async fn lists(target: &ApiTarget<'_>, rounds: usize) -> Result<Lists, LoadError> {
    let api = Api::connect(target).await?;
    let any = format!("{PODS}?resourceVersion=0");
    // The first lists start the Pods' cache and wait for it to load: not measured.
    api.get(&any).await?;
    let body = api.get(PODS).await?;
    let list: Value = serde_json::from_slice(&body)?;
    let items = list["items"].as_array().map_or(0, Vec::len);
    let mut measured = Lists {
        items,
        bytes: body.len(),
        floor: Vec::new(),
        cached: Vec::new(),
        consistent: Vec::new(),
    };
    // The floor writes into one buffer of the right size, so it is serialization alone, with
    // no allocation or page faults.
    let mut buffer = Vec::with_capacity(body.len());
    // Taken in turn, so noise from other tenants falls on all three alike.
    for _ in 0..rounds {
        let t = Instant::now();
        api.get(&any).await?;
        measured.cached.push(t.elapsed());
        let t = Instant::now();
        api.get(PODS).await?;
        measured.consistent.push(t.elapsed());
        buffer.clear();
        let t = Instant::now();
        serde_json::to_writer(&mut buffer, &list)?;
        measured.floor.push(t.elapsed());
        std::hint::black_box(&buffer);
    }
    Ok(measured)
}

fn list_revision(list: &Value) -> Result<&str, LoadError> {
    list.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| LoadError::Unexpected("a list without metadata.resourceVersion".into()))
}

/// The resident set of process `pid`, in bytes.
pub fn rss(pid: u32) -> Result<u64, LoadError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
        path: path.clone(),
        source,
    })?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| LoadError::Unexpected(format!("no VmRSS in {path}")))
}

/// CPU time process `pid` ("self" for this one) has used so far.
pub fn cpu_time(pid: &str) -> Result<Duration, LoadError> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
        path: path.clone(),
        source,
    })?;
    // utime and stime are fields 14 and 15; the name (field 2) may hold spaces, so count from
    // its closing parenthesis. /proc counts in USER_HZ, 100 on Linux.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Ok(Duration::from_millis((user + system) * 10)),
        _ => Err(LoadError::Unexpected(format!("no CPU times in {path}"))),
    }
}

/// How a fan-out run is set up.
pub struct FanOutPlan {
    pub watchers: usize,
    pub connections: usize,
    /// Pods `0..pods` exist and are updated in turn.
    pub pods: usize,
    pub updates_per_second: u32,
    pub duration: Duration,
    /// The API server's pid, whose memory is sampled while the watchers are open.
    pub apiserver_pid: Option<u32>,
}

/// What a fan-out run measured.
#[derive(Default)]
pub struct FanOut {
    pub watchers: usize,
    /// Updates the server accepted: the MODIFIED events each watcher should receive.
    pub updates: u64,
    pub failed_updates: u64,
    pub first_failure: Option<String>,
    /// Send to receipt of every measured event at every watcher.
    pub latencies: Vec<Duration>,
    /// Each accepted update's PATCH round trip.
    pub update_latencies: Vec<Duration>,
    pub received: u64,
    /// Events expected but not received, summed over watchers.
    pub lost: u64,
    /// Events received more than once, summed over watchers.
    pub extra: u64,
    /// Watchers whose stream ended or failed early, and the first one's reason.
    pub ended: usize,
    pub first_end: Option<String>,
    /// Until every watcher was open and had received the canary update.
    pub open_time: Duration,
    /// The API server's resident set once all watchers were open, and its peak while they
    /// received the updates.
    pub rss_open: Option<u64>,
    pub rss_peak: Option<u64>,
    /// From the first update until every event arrived (or the grace period ended), and the
    /// CPU time the API server and this load generator used in it.
    pub window: Duration,
    pub apiserver_cpu: Option<Duration>,
    pub loadgen_cpu: Duration,
}

/// What one watcher saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    received: u64,
    ended: Option<String>,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Opens `plan.watchers` watches on the Pods in `bench`, makes sure all are registered, then
/// updates `plan.updates_per_second` Pods a second for `plan.duration` and counts what each
/// watcher receives.
pub async fn fan_out(target: &ApiTarget<'_>, plan: &FanOutPlan) -> Result<FanOut, LoadError> {
    let mut connections = Vec::new();
    for _ in 0..plan.connections.clamp(1, plan.watchers.max(1)) {
        connections.push(Api::connect(target).await?);
    }
    let writer = Api::connect(target).await?;
    // The watches start at the current state, as an informer's after its list: a one-item page
    // carries the latest resourceVersion without moving every Pod.
    let page: Value = serde_json::from_slice(&writer.get(&format!("{PODS}?limit=1")).await?)?;
    let revision = list_revision(&page)?;
    let path: Arc<str> =
        format!("{PODS}?watch=true&resourceVersion={revision}&allowWatchBookmarks=false").into();
    let canaries = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let start = Instant::now();
    let mut watchers = JoinSet::new();
    for i in 0..plan.watchers {
        let api = connections[i % connections.len()].clone();
        let (path, canaries, received, stopped, ended) = (
            path.clone(),
            canaries.clone(),
            received.clone(),
            stopped.clone(),
            ended.clone(),
        );
        watchers.spawn(async move {
            let mut seen = Seen::default();
            if let Err(e) = read_watch(&api, &path, &canaries, &received, stopped, &mut seen).await
            {
                seen.ended.get_or_insert(e.to_string());
            }
            if seen.ended.is_some() {
                ended.fetch_add(1, Ordering::Relaxed);
            }
            seen
        });
    }

    // Headers come back before the server registers a watch, so an update every watcher must
    // see shows they are all registered; watches opened late would still replay it, only later.
    update(writer.clone(), 0, CANARY.to_string()).await?;
    let open_deadline = Instant::now() + Duration::from_secs(60);
    // A watcher that ended before the first update will not see the rest: no point waiting.
    while canaries.load(Ordering::Relaxed) < plan.watchers
        && ended.load(Ordering::Relaxed) == 0
        && Instant::now() < open_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut result = FanOut {
        watchers: plan.watchers,
        open_time: start.elapsed(),
        ..FanOut::default()
    };
    let opened = canaries.load(Ordering::Relaxed);
    if opened >= plan.watchers {
        result.rss_open = plan.apiserver_pid.map(rss).transpose()?;
        result.rss_peak = result.rss_open;
        let pid = plan.apiserver_pid.map(|p| p.to_string());
        let cpu_before = (pid.as_deref().map(cpu_time).transpose()?, cpu_time("self")?);
        let updating = Instant::now();
        let total = u64::from(plan.updates_per_second) * plan.duration.as_secs();
        let mut tick =
            tokio::time::interval(Duration::from_secs(1) / plan.updates_per_second.max(1));
        let mut sampled = Instant::now();
        let mut updates = JoinSet::new();
        for n in 0..total {
            tick.tick().await;
            // Each update is its own task, so a slow one does not hold up the next.
            let (writer, index) = (writer.clone(), n as usize % plan.pods.max(1));
            updates.spawn(async move { update(writer, index, now_nanos().to_string()).await });
            if let Some(pid) = plan
                .apiserver_pid
                .filter(|_| sampled.elapsed() >= Duration::from_secs(1))
            {
                sampled = Instant::now();
                result.rss_peak = result.rss_peak.max(Some(rss(pid)?));
            }
        }
        while let Some(done) = updates.join_next().await {
            match done.map_err(|e| LoadError::Unexpected(e.to_string())) {
                Ok(Ok(took)) => result.update_latencies.push(took),
                Ok(Err(e)) | Err(e) => {
                    result.failed_updates += 1;
                    result.first_failure.get_or_insert(e.to_string());
                }
            }
        }
        if let Some(pid) = plan.apiserver_pid {
            result.rss_peak = result.rss_peak.max(Some(rss(pid)?));
        }
        result.updates = result.update_latencies.len() as u64;
        // Late events still count; lost ones are those not here after a grace period.
        let expected = result.updates * plan.watchers as u64;
        let grace = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) < expected && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        result.window = updating.elapsed();
        result.loadgen_cpu = cpu_time("self")?.saturating_sub(cpu_before.1);
        if let (Some(pid), Some(before)) = (pid.as_deref(), cpu_before.0) {
            result.apiserver_cpu = Some(cpu_time(pid)?.saturating_sub(before));
        }
    }
    let _ = stop.send(true);
    while let Some(seen) = watchers.join_next().await {
        let seen =
            seen.map_err(|e| LoadError::Unexpected(format!("a watcher task failed: {e}")))?;
        result.received += seen.received;
        result.lost += result.updates.saturating_sub(seen.received);
        result.extra += seen.received.saturating_sub(result.updates);
        result.latencies.extend(seen.latencies);
        if let Some(why) = seen.ended {
            result.ended += 1;
            result.first_end.get_or_insert(why);
        }
    }
    if opened < plan.watchers {
        return Err(LoadError::Unexpected(format!(
            "only {opened} of {} watchers received the first update ({} ended first; the first: {})",
            plan.watchers,
            result.ended,
            result.first_end.as_deref().unwrap_or("none, but 60 s passed")
        )));
    }
    Ok(result)
}

/// Sets Pod `index`'s `bench/sent` annotation to `sent`; returns the PATCH's round trip.
async fn update(writer: Api, index: usize, sent: String) -> Result<Duration, LoadError> {
    let path = format!("{PODS}/{}", pod::name(index));
    let t = Instant::now();
    writer
        .merge_patch(&path, &json!({"metadata": {"annotations": {SENT: sent}}}))
        .await?;
    Ok(t.elapsed())
}

/// A watch event as a watcher reads it. serde_json parses and validates every byte of the line,
/// but keeps only these fields and allocates nothing for the rest: with 1,000 watchers in one
/// process, building a `Value` per event made the load generator, not the server, the limit.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    object: EventObject<'a>,
}

#[derive(Deserialize)]
struct EventObject<'a> {
    #[serde(borrow)]
    metadata: Option<Metadata<'a>>,
    /// An ERROR event's Status.
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    annotations: Option<Annotations<'a>>,
}

#[derive(Deserialize)]
struct Annotations<'a> {
    #[serde(rename = "bench/sent", borrow)]
    sent: Option<Cow<'a, str>>,
}

/// Reads one watch stream, parsing every line, until `stop` or the stream's end.
async fn read_watch(
    api: &Api,
    path: &str,
    canaries: &AtomicUsize,
    received: &AtomicU64,
    mut stop: watch::Receiver<bool>,
    seen: &mut Seen,
) -> Result<(), LoadError> {
    let resp = api.send(Method::GET, path, None, Bytes::new()).await?;
    let code = resp.status();
    let mut body = resp.into_body();
    if code != StatusCode::OK {
        let body = body.collect().await?.to_bytes();
        return Err(LoadError::Status {
            code: code.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.changed() => return Ok(()),
        };
        let Some(frame) = frame else {
            seen.ended
                .get_or_insert("the server ended the stream".into());
            return Ok(());
        };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        // A line counts as received when its last bytes arrive, before it is parsed.
        let arrived = now_nanos();
        let mut rest: &[u8] = &data;
        // Lines mostly come one to a frame; only one split across frames is copied.
        while let Some(n) = rest.iter().position(|&b| b == b'\n') {
            if pending.is_empty() {
                on_line(&rest[..n], arrived, canaries, received, seen)?;
            } else {
                pending.extend_from_slice(&rest[..n]);
                on_line(&pending, arrived, canaries, received, seen)?;
                pending.clear();
            }
            rest = &rest[n + 1..];
        }
        pending.extend_from_slice(rest);
    }
}

/// Parses one watch line received at `arrived` (ns since the epoch) and records it.
fn on_line(
    line: &[u8],
    arrived: u128,
    canaries: &AtomicUsize,
    received: &AtomicU64,
    seen: &mut Seen,
) -> Result<(), LoadError> {
    let event: Event = serde_json::from_slice(line)?;
    match &*event.kind {
        "MODIFIED" => {
            let sent = event
                .object
                .metadata
                .and_then(|m| m.annotations)
                .and_then(|a| a.sent)
                .ok_or_else(|| LoadError::Unexpected(format!("a MODIFIED event without {SENT}")))?;
            if sent == CANARY {
                canaries.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let sent: u128 = sent
                .parse()
                .map_err(|_| LoadError::Unexpected(format!("{SENT} is {sent:?}, not a time")))?;
            let nanos = u64::try_from(arrived.saturating_sub(sent)).unwrap_or(u64::MAX);
            seen.latencies.push(Duration::from_nanos(nanos));
            seen.received += 1;
            received.fetch_add(1, Ordering::Relaxed);
        }
        "ERROR" => {
            let message = event.object.message.unwrap_or_default();
            seen.ended.get_or_insert(format!("ERROR event: {message}"));
        }
        other => {
            return Err(LoadError::Unexpected(format!(
                "an unexpected {other:?} event"
            )))
        }
    }
    Ok(())
}
