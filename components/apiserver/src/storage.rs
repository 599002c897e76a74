//! etcd v3 storage: objects as JSON under `<prefix>/<resource>/<namespace>/<name>`, the object's
//! `resourceVersion` is its etcd `mod_revision`, and every write is a transaction that compares
//! revisions so concurrent writers cannot lose each other's changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest etcd response accepted: a whole collection is one range response (10,000 Pods are
/// ~48 MB) and a watch may batch many events. etcd-client's default is 4 MiB; etcd's Go client,
/// which kube-apiserver uses, accepts up to 2 GiB.
const MAX_MESSAGE: usize = i32::MAX as usize;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, SortOrder, SortTarget,
    TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd request failed: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the object was modified concurrently")]
    Conflict,
    #[error("key {0} already exists")]
    KeyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("the requested revision has been compacted")]
    Compacted,
    #[error("stored object at {key} is not valid JSON: {source}")]
    Decode {
        key: String,
        source: serde_json::Error,
    },
    #[error("reading TLS file {path}: {source}")]
    TlsFile {
        path: String,
        source: std::io::Error,
    },
}

impl StoreError {
    fn from_etcd(e: etcd_client::Error) -> Self {
        if e.to_string()
            .contains("required revision has been compacted")
        {
            StoreError::Compacted
        } else {
            StoreError::Etcd(e)
        }
    }
}

/// One stored object with the revision it was last written at.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    pub object: Value,
    pub mod_revision: i64,
}

/// The newest state of a key range, from `Store::latest_change`.
#[derive(Debug)]
pub struct LatestChange {
    pub revision: i64,
    /// The highest modification revision of any key in the range (0 when it is empty).
    pub newest_modification: i64,
    pub count: i64,
}

/// One page of a range read.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Stored>,
    pub revision: i64,
    pub more: bool,
    /// How many keys remain after this page (only when asked for).
    pub remaining: Option<i64>,
}

/// Keys written or removed in the same transaction as an object, and the lease it is put with.
#[derive(Debug, Default, Clone)]
pub struct Extras {
    pub create: Vec<(String, String)>,
    pub delete: Vec<String>,
    pub lease: Option<i64>,
}

/// TLS material for talking to etcd (`--etcd-cafile/--etcd-certfile/--etcd-keyfile`).
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
    prefix: String,
    metrics: Arc<Metrics>,
    event_lease: Arc<Mutex<Option<(i64, Instant)>>>,
}

/// Events expire after this long, as upstream's `--event-ttl` default.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// Events written within this window share one etcd lease.
const EVENT_LEASE_WINDOW: Duration = Duration::from_secs(60);

fn read_file(path: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::TlsFile {
        path: path.to_string(),
        source,
    })
}

impl Store {
    pub async fn connect(
        servers: &[String],
        prefix: &str,
        tls: &EtcdTls,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if tls.ca_file.is_some() || tls.cert_file.is_some() {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca_file {
                t = t.ca_certificate(etcd_client::Certificate::from_pem(read_file(ca)?));
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                t = t.identity(etcd_client::Identity::from_pem(
                    read_file(cert)?,
                    read_file(key)?,
                ));
            }
            options = options.with_tls(t);
        }
        let client = Client::connect(servers, Some(options)).await?;
        Ok(Store {
            client,
            prefix: prefix.trim_end_matches('/').to_string(),
            metrics,
            event_lease: Arc::new(Mutex::new(None)),
        })
    }

    /// The key of one object.
    pub fn key(&self, segment: &str, namespace: Option<&str>, name: &str) -> String {
        object_key(&self.prefix, segment, namespace, name)
    }

    /// The prefix under which a collection lives (all namespaces when `namespace` is None).
    pub fn collection(&self, segment: &str, namespace: Option<&str>) -> String {
        collection_prefix(&self.prefix, segment, namespace)
    }

    /// A bookkeeping key outside any resource, e.g. address allocations.
    pub fn range_key(&self, range: &str, item: &str) -> String {
        format!("{}/ranges/{}/{}", self.prefix, range, item)
    }

    fn timed(&self, operation: &'static str, start: Instant) {
        self.metrics.observe_etcd(operation, start.elapsed());
    }

    fn decode(key: &[u8], value: &[u8], mod_revision: i64) -> Result<Stored, StoreError> {
        let key = String::from_utf8_lossy(key).into_owned();
        let mut object: Value =
            serde_json::from_slice(value).map_err(|source| StoreError::Decode {
                key: key.clone(),
                source,
            })?;
        set_resource_version(&mut object, mod_revision);
        Ok(Stored {
            key,
            object,
            mod_revision,
        })
    }

    fn encode(object: &Value) -> Vec<u8> {
        let mut object = object.clone();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        serde_json::to_vec(&object).unwrap_or_default()
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let start = Instant::now();
        let resp = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(key, None)
            .await
            .map_err(StoreError::from_etcd)?;
        self.timed("get", start);
        match resp.kvs().first() {
            Some(kv) => Ok(Some(Self::decode(kv.key(), kv.value(), kv.mod_revision())?)),
            None => Ok(None),
        }
    }

    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        let resp = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(
                format!("{}/", self.prefix),
                Some(GetOptions::new().with_count_only().with_limit(1)),
            )
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Where the keys under `prefix` stand now: etcd's current revision, the newest
    /// modification among them, and how many there are. A cache that has applied every change
    /// up to that modification and holds as many keys has exactly etcd's current contents,
    /// without relying on watch progress notifications (which etcd before 3.4.31 may send ahead
    /// of the events they vouch for).
    pub async fn latest_change(&self, prefix: &str) -> Result<LatestChange, StoreError> {
        let begin = Instant::now();
        let resp = self
            .client
            .kv_client()
            .get(
                prefix,
                Some(
                    GetOptions::new()
                        .with_range(prefix_end(prefix))
                        .with_keys_only()
                        .with_sort(SortTarget::Mod, SortOrder::Descend)
                        .with_limit(1),
                ),
            )
            .await
            .map_err(StoreError::from_etcd)?;
        self.timed("latest_change", begin);
        Ok(LatestChange {
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
            newest_modification: resp.kvs().first().map(|kv| kv.mod_revision()).unwrap_or(0),
            count: resp.count(),
        })
    }

    /// Reads up to `limit` objects (0 = all) under `prefix`, starting at `start` (inclusive), at
    /// `revision` (0 = now).
    pub async fn list(
        &self,
        prefix: &str,
        start: Option<&str>,
        revision: i64,
        limit: i64,
        count_remaining: bool,
    ) -> Result<Page, StoreError> {
        let begin = Instant::now();
        let end = prefix_end(prefix);
        let from = start.unwrap_or(prefix).to_string();
        let mut options = GetOptions::new()
            .with_range(end.clone())
            .with_revision(revision);
        if limit > 0 {
            options = options.with_limit(limit);
        }
        let resp = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(from, Some(options))
            .await
            .map_err(StoreError::from_etcd)?;
        self.timed("list", begin);
        // A read at a past revision reports the store's current one in its header.
        let revision = if revision > 0 {
            revision
        } else {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        };
        let mut items = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            items.push(Self::decode(kv.key(), kv.value(), kv.mod_revision())?);
        }
        let more = resp.more();
        let remaining = if count_remaining && more {
            let next = items
                .last()
                .map(|s| format!("{}\x00", s.key))
                .unwrap_or_else(|| prefix.to_string());
            let count = self
                .client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .get(
                    next,
                    Some(
                        GetOptions::new()
                            .with_range(end)
                            .with_revision(revision)
                            .with_count_only(),
                    ),
                )
                .await
                .map_err(StoreError::from_etcd)?;
            Some(count.count())
        } else {
            None
        };
        Ok(Page {
            items,
            revision,
            more,
            remaining,
        })
    }

    /// Every object under `prefix` now, each turned into `T` as soon as it is decoded (so a
    /// whole type is never held as parsed values at once), and the revision they are current
    /// at.
    pub async fn list_each<T>(
        &self,
        prefix: &str,
        mut each: impl FnMut(Stored) -> T,
    ) -> Result<(Vec<T>, i64), StoreError> {
        let begin = Instant::now();
        let resp = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(
                prefix,
                Some(GetOptions::new().with_range(prefix_end(prefix))),
            )
            .await
            .map_err(StoreError::from_etcd)?;
        self.timed("list", begin);
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut items = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            items.push(each(Self::decode(kv.key(), kv.value(), kv.mod_revision())?));
        }
        Ok((items, revision))
    }

    /// Creates `key`, failing if it (or any of `extras.create`) exists.
    pub async fn create(
        &self,
        key: &str,
        object: &Value,
        extras: &Extras,
    ) -> Result<i64, StoreError> {
        let start = Instant::now();
        let compare = Compare::create_revision(key, CompareOp::Equal, 0);
        let put_options = extras.lease.map(|l| PutOptions::new().with_lease(l));
        let put = TxnOp::put(key, Self::encode(object), put_options);
        let result = self.write(key, compare, put, extras).await;
        self.timed("create", start);
        result
    }

    /// Replaces `key` if it is still at `expected_revision`, claiming and releasing `extras`.
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        expected_revision: i64,
        extras: &Extras,
    ) -> Result<i64, StoreError> {
        let start = Instant::now();
        let compare = Compare::mod_revision(key, CompareOp::Equal, expected_revision);
        let put_options = extras.lease.map(|l| PutOptions::new().with_lease(l));
        let put = TxnOp::put(key, Self::encode(object), put_options);
        let result = self.write(key, compare, put, extras).await;
        self.timed("update", start);
        result
    }

    /// Deletes `key` if it is still at `expected_revision`, releasing `extras.delete`.
    pub async fn delete(
        &self,
        key: &str,
        expected_revision: i64,
        extras: &Extras,
    ) -> Result<i64, StoreError> {
        let start = Instant::now();
        let compare = Compare::mod_revision(key, CompareOp::Equal, expected_revision);
        let result = self
            .write(key, compare, TxnOp::delete(key, None), extras)
            .await;
        self.timed("delete", start);
        result
    }

    /// One transaction: `compare` on the object key and absence of every key to claim, then
    /// `op` with the claims and releases. On failure it reports which condition failed.
    async fn write(
        &self,
        key: &str,
        compare: Compare,
        op: TxnOp,
        extras: &Extras,
    ) -> Result<i64, StoreError> {
        let mut compares = vec![compare];
        let mut ops = vec![op];
        let mut on_failure = Vec::new();
        for (k, v) in &extras.create {
            compares.push(Compare::create_revision(k.as_str(), CompareOp::Equal, 0));
            ops.push(TxnOp::put(k.as_str(), v.as_str(), None));
            on_failure.push(TxnOp::get(k.as_str(), None));
        }
        for k in &extras.delete {
            ops.push(TxnOp::delete(k.as_str(), None));
        }
        on_failure.push(TxnOp::get(key, None));
        let txn = Txn::new().when(compares).and_then(ops).or_else(on_failure);
        let resp = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .txn(txn)
            .await?;
        if resp.succeeded() {
            return Ok(resp.header().map(|h| h.revision()).unwrap_or(0));
        }
        for (op, (k, _)) in resp.op_responses().into_iter().zip(&extras.create) {
            if let TxnOpResponse::Get(g) = op {
                if !g.kvs().is_empty() {
                    return Err(StoreError::KeyExists(k.clone()));
                }
            }
        }
        Err(StoreError::Conflict)
    }

    /// Keys under a bookkeeping range, e.g. every allocated service address.
    pub async fn range_keys(&self, range: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}/ranges/{}/", self.prefix, range);
        let resp = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key())[prefix.len()..].to_string())
            .collect())
    }

    /// Opens an etcd watch on everything under `prefix` from `start_revision` (inclusive).
    pub async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<WatchStream, StoreError> {
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(start_revision)
            .with_prev_key()
            .with_progress_notify();
        Ok(self
            .client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .watch(prefix, Some(options))
            .await?)
    }

    /// A lease shared by the events written in the same minute, so they expire after the TTL.
    pub async fn event_lease(&self) -> Result<i64, StoreError> {
        let mut current = self.event_lease.lock().await;
        if let Some((id, granted)) = *current {
            if granted.elapsed() < EVENT_LEASE_WINDOW {
                return Ok(id);
            }
        }
        let ttl = (EVENT_TTL + EVENT_LEASE_WINDOW).as_secs() as i64;
        let lease = self.client.lease_client().grant(ttl, None).await?;
        *current = Some((lease.id(), Instant::now()));
        Ok(lease.id())
    }

    /// Records this API server as live for `ttl` seconds (the key moves to a fresh lease each
    /// time, so the previous lease simply expires empty).
    pub async fn hold_master_lease(&self, address: &str, ttl: i64) -> Result<(), StoreError> {
        let lease = self.client.lease_client().grant(ttl, None).await?;
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .put(
                format!("{}/masterleases/{address}", self.prefix),
                address,
                Some(PutOptions::new().with_lease(lease.id())),
            )
            .await?;
        Ok(())
    }

    pub async fn release_master_lease(&self, address: &str) -> Result<(), StoreError> {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .delete(format!("{}/masterleases/{address}", self.prefix), None)
            .await?;
        Ok(())
    }

    /// The addresses of every live API server.
    pub async fn master_leases(&self) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}/masterleases/", self.prefix);
        let resp = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            .collect())
    }

    /// Checks etcd answers, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.current_revision().await.map(|_| ())
    }

    pub fn decode_event(kv: &etcd_client::KeyValue) -> Result<Stored, StoreError> {
        Self::decode(kv.key(), kv.value(), kv.mod_revision())
    }

    /// The etcd client, for maintenance outside the object store (compaction).
    pub fn etcd(&self) -> &Client {
        &self.client
    }
}

/// `<prefix>/<resource>/<namespace>/<name>`, or `<prefix>/<resource>/<name>` cluster-wide.
pub fn object_key(prefix: &str, segment: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{prefix}/{segment}/{ns}/{name}"),
        None => format!("{prefix}/{segment}/{name}"),
    }
}

/// Ends in `/`, so a namespace's prefix never matches a longer namespace name.
pub fn collection_prefix(prefix: &str, segment: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{prefix}/{segment}/{ns}/"),
        None => format!("{prefix}/{segment}/"),
    }
}

/// Sets `metadata.resourceVersion` to a revision.
pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".to_string(),
            Value::String(revision.to_string()),
        );
    }
}

/// The first key after every key with this prefix.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_is_prefix_resource_namespace_name() {
        assert_eq!(
            object_key("/registry", "pods", Some("default"), "p1"),
            "/registry/pods/default/p1"
        );
        assert_eq!(
            object_key("/registry", "nodes", None, "n1"),
            "/registry/nodes/n1"
        );
        let ns = collection_prefix("/registry", "pods", Some("team"));
        assert!(object_key("/registry", "pods", Some("team"), "p").starts_with(&ns));
        assert!(!object_key("/registry", "pods", Some("team-b"), "p").starts_with(&ns));
        assert_eq!(
            collection_prefix("/registry", "pods", None),
            "/registry/pods/"
        );
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn stored_json_never_carries_a_resource_version() {
        let bytes =
            Store::encode(&serde_json::json!({"metadata":{"name":"a","resourceVersion":"5"}}));
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(back["metadata"].get("resourceVersion").is_none());
        let stored = Store::decode(b"/registry/configmaps/default/a", &bytes, 42).unwrap();
        assert_eq!(stored.object["metadata"]["resourceVersion"], "42");
    }
}
