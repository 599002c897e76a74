//! The watch cache: one etcd watch per resource type, its current objects in memory, a bounded
//! history of recent events, and a fan-out to every watch on that type. Each event's JSON line
//! is made once and shared by the watchers that see it unchanged. A watcher that cannot keep up
//! (its queue is full) is cut off alone and told to relist.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::EventType;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::storage::{set_resource_version, Store, StoreError, Stored};

/// An object as the cache keeps it: its JSON (resourceVersion included), parsed only when a
/// conversion needs the value — most watchers and lists just copy the bytes — and what
/// selectors read of it, so that a selective list or watch parses nothing either (upstream's
/// watch cache keeps each object's labels and fields likewise).
pub struct CachedObject {
    pub key: String,
    pub mod_revision: i64,
    pub json: Bytes,
    /// JSON too: a parsed `Value` costs several times its text, for every object cached.
    selectable: Option<Box<[u8]>>,
}

impl CachedObject {
    pub(crate) fn from_stored(stored: Stored) -> CachedObject {
        // Serializing grows its buffer by doubling: a 4.7 KiB Pod ends in an 8 KiB buffer, and
        // the allocator keeps the block when asked to shrink by less than half. The cache holds
        // every object for as long as it lives, so it keeps an exact copy instead.
        let serialized = serde_json::to_vec(&stored.object).unwrap_or_default();
        CachedObject {
            json: Bytes::copy_from_slice(&serialized),
            selectable: crate::fieldsel::selectable(&stored.object)
                .and_then(|projection| serde_json::to_vec(&projection).ok())
                .map(Vec::into_boxed_slice),
            key: stored.key,
            mod_revision: stored.mod_revision,
        }
    }

    /// The object, parsed.
    pub fn object(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// What label and field selectors read of the object: the part kept, else all of it.
    pub fn selectable(&self) -> Value {
        match &self.selectable {
            Some(projection) => serde_json::from_slice(projection).unwrap_or(Value::Null),
            None => self.object(),
        }
    }

    /// The object as etcd's [`Stored`] form, for code that reads either.
    pub fn to_stored(&self) -> Stored {
        Stored {
            key: self.key.clone(),
            object: self.object(),
            mod_revision: self.mod_revision,
        }
    }

    /// A watch line carrying this object unchanged.
    pub fn line(&self, kind: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.json.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        out.extend_from_slice(&self.json);
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }
}

/// Events kept per type for watches that resume from a recent resourceVersion, unless
/// `--default-watch-cache-size` says otherwise.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Events a watcher may have queued before it is cut off: enough for a controller's informer
/// to ride out a burst (a ReplicaSet creating hundreds of pods) while its process waits for a
/// core, as upstream's dispatch budget lets a briefly slow watcher catch up.
pub const WATCHER_QUEUE: usize = 2_000;
/// The bytes of objects a watcher may have queued before it is cut off: a client that stops
/// reading large objects is let go long before it has pinned many of them.
pub const WATCHER_QUEUE_BYTES: usize = 16 << 20;
/// Revisions before its load a cache replays into its history, at most: plenty for a client
/// that listed just before the load (the first watch of a type creates its cache) or watched
/// through another API server, without holding the previous state of every object changed in
/// the last `--default-watch-cache-size` revisions (upstream replays none). A client further
/// behind gets 410 and relists.
const REPLAY_REVISIONS: usize = 1_000;
/// Events whose wire lines and parsed objects stay made: the newest ones, where nearly every
/// watcher being fed is. An event deeper in some watcher's queue is made again for it.
const DERIVED_KEPT: usize = 100;
/// How long a read waits for changes etcd has confirmed to reach the cache before reading
/// etcd instead.
pub const CATCH_UP: Duration = Duration::from_secs(3);
/// How long a read waits for the cache to reach a revision on its own events before asking
/// etcd where the type stands.
const HOT_CATCH_UP: Duration = Duration::from_millis(20);

/// One change, as every watcher of the type sees it.
pub struct CacheEvent {
    pub revision: i64,
    pub key: String,
    /// The object after the change; None for a deletion.
    pub current: Option<Arc<CachedObject>>,
    /// The object before the change, if it existed.
    pub previous: Option<Arc<CachedObject>>,
    /// What is made from the objects for the watchers, kept while the event is among the
    /// newest `DERIVED_KEPT` (where nearly every watcher being fed is) and made again on
    /// demand after that: a parsed object is several times its JSON, and the history would
    /// otherwise hold those of every event for as long as it keeps them.
    derived: Mutex<Derived>,
}

#[derive(Default)]
struct Derived {
    /// The event has left the newest ones: nothing more is kept.
    retired: bool,
    /// The wire lines for watchers that need no conversion: ADDED, MODIFIED, DELETED.
    lines: [Option<Bytes>; 3],
    /// The objects parsed for the watchers that need a conversion: current, previous.
    parsed: [Option<Arc<Value>>; 2],
    /// What selectors read of the objects, parsed for the watchers with one: current, previous.
    selectable: [Option<Arc<Value>>; 2],
}

impl CacheEvent {
    fn new(
        revision: i64,
        key: String,
        current: Option<Arc<CachedObject>>,
        previous: Option<Arc<CachedObject>>,
    ) -> CacheEvent {
        CacheEvent {
            revision,
            key,
            current,
            previous,
            derived: Mutex::default(),
        }
    }

    fn derived(&self) -> std::sync::MutexGuard<'_, Derived> {
        self.derived
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value in `slot`, made by `make` unless it is kept already. Made outside the lock,
    /// as making a DELETED line takes the parsed previous object.
    fn derive<T: Clone>(
        &self,
        slot: fn(&mut Derived) -> &mut Option<T>,
        make: impl FnOnce() -> T,
    ) -> T {
        if let Some(kept) = slot(&mut self.derived()).clone() {
            return kept;
        }
        let made = make();
        let mut derived = self.derived();
        if !derived.retired {
            *slot(&mut derived) = Some(made.clone());
        }
        made
    }

    /// The bytes of the objects this event holds, as counted against a watcher's queue.
    fn size(&self) -> usize {
        [&self.current, &self.previous]
            .into_iter()
            .flatten()
            .map(|o| o.json.len())
            .sum()
    }

    /// Lets go of what was made for the live watchers.
    fn retire(&self) {
        *self.derived() = Derived {
            retired: true,
            ..Derived::default()
        };
    }

    /// The watch line for this event as `kind` ("ADDED", "MODIFIED", "DELETED"), made once
    /// while the event is recent.
    pub fn shared_line(&self, kind: &str) -> Option<Bytes> {
        Some(match kind {
            "ADDED" => {
                let current = self.current.as_ref()?;
                self.derive(|d| &mut d.lines[0], || current.line(kind))
            }
            "MODIFIED" => {
                let current = self.current.as_ref()?;
                self.derive(|d| &mut d.lines[1], || current.line(kind))
            }
            _ => {
                let deleted = self.deleted_object()?;
                self.derive(|d| &mut d.lines[2], || line(kind, &deleted))
            }
        })
    }

    /// The object after the change, parsed once while the event is recent.
    pub fn current_object(&self) -> Option<Arc<Value>> {
        let current = self.current.as_ref()?;
        Some(self.derive(|d| &mut d.parsed[0], || Arc::new(current.object())))
    }

    /// The object before the change, parsed once while the event is recent.
    pub fn previous_object(&self) -> Option<Arc<Value>> {
        let previous = self.previous.as_ref()?;
        Some(self.derive(|d| &mut d.parsed[1], || Arc::new(previous.object())))
    }

    /// What selectors read of the object after the change, parsed once while the event is
    /// recent.
    pub fn current_selectable(&self) -> Option<Arc<Value>> {
        let current = self.current.as_ref()?;
        Some(self.derive(|d| &mut d.selectable[0], || Arc::new(current.selectable())))
    }

    /// What selectors read of the object before the change, parsed once while the event is
    /// recent.
    pub fn previous_selectable(&self) -> Option<Arc<Value>> {
        let previous = self.previous.as_ref()?;
        Some(self.derive(|d| &mut d.selectable[1], || Arc::new(previous.selectable())))
    }

    /// The last state of an object that left, stamped with the revision it left at.
    pub fn deleted_object(&self) -> Option<Value> {
        let previous = self.previous_object()?;
        let mut last = Value::clone(&previous);
        set_resource_version(&mut last, self.revision);
        Some(last)
    }
}

pub fn line(event_type: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

struct Watcher {
    id: u64,
    /// The key prefix it watches (a namespace, or the whole type).
    prefix: String,
    /// It has every change up to this revision already (from its initial state, its replay or
    /// the client's own list): only newer ones are sent.
    after: i64,
    tx: mpsc::Sender<Arc<CacheEvent>>,
    /// Bytes of objects sent and not yet taken by the subscription.
    queued_bytes: Arc<AtomicUsize>,
    /// Dropped when the cache cuts the watcher off, which its subscription sees at once even
    /// while it waits on a client that stopped reading.
    _alive: watch::Sender<()>,
}

#[derive(Default)]
struct State {
    ready: bool,
    /// Everything up to this revision has been applied and dispatched.
    revision: i64,
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Watches may resume from any resourceVersion at or after this one.
    history_start: i64,
    /// While the changes from before the load are still arriving from etcd (until the first
    /// newer change shows they are all in): the newest of them so far. A watch that resumes
    /// from before the load has every change up to here.
    replayed: Option<i64>,
    /// While the changes from before the load arrive: each key's newest object among them, so
    /// the next change's previous object is shared rather than decoded again.
    replay_latest: HashMap<String, Arc<CachedObject>>,
    watchers: Vec<Watcher>,
}

/// A watch registered with the cache.
pub struct Subscription {
    /// Objects to send first (ADDED), for watches that start with the current state.
    pub initial: Vec<Arc<CachedObject>>,
    /// Events to replay first, for watches resuming from a resourceVersion.
    pub replay: Vec<Arc<CacheEvent>>,
    /// The revision `initial` (or the replay) brings the watcher up to.
    pub revision: i64,
    events: mpsc::Receiver<Arc<CacheEvent>>,
    queued_bytes: Arc<AtomicUsize>,
    /// Changes (with an error) when the cache has cut this watcher off.
    pub cut: watch::Receiver<()>,
    id: u64,
    cache: Arc<Cache>,
}

impl Subscription {
    /// The next change for this watcher; None once the cache has cut it off.
    pub async fn next_event(&mut self) -> Option<Arc<CacheEvent>> {
        let event = self.events.recv().await?;
        self.queued_bytes.fetch_sub(event.size(), Ordering::Relaxed);
        Some(event)
    }

    /// Whether every change sent to this watcher has been taken.
    pub fn caught_up(&self) -> bool {
        self.events.is_empty()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cache.unsubscribe(self.id);
    }
}

/// Where a watch starts.
pub enum From {
    /// The current state first.
    Now,
    /// Changes after this revision.
    After(i64),
    /// Only changes from now on.
    Latest,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: i64, oldest: i64 },
}

pub struct Cache {
    prefix: String,
    capacity: usize,
    state: RwLock<State>,
    revision: watch::Sender<i64>,
    next_id: AtomicU64,
}

impl Cache {
    fn new(prefix: String, capacity: usize) -> Arc<Cache> {
        Arc::new(Cache {
            prefix,
            capacity: capacity.max(1),
            state: RwLock::default(),
            revision: watch::Sender::new(0),
            next_id: AtomicU64::new(1),
        })
    }

    /// The revision up to which every change has reached every watcher that needs it: what a
    /// bookmark may carry.
    pub fn delivered(&self) -> i64 {
        self.state
            .read()
            .map(|s| s.replayed.unwrap_or(s.revision))
            .unwrap_or(0)
    }

    /// Waits up to `limit` until the cache has applied every change up to `revision` (0: until
    /// it has loaded).
    pub async fn wait_for(&self, revision: i64, limit: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let ready = |state: &Cache| {
            state
                .state
                .read()
                .map(|s| s.ready && s.revision >= revision)
                .unwrap_or(false)
        };
        let wait = async {
            while !ready(self) {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok() && ready(self)
    }

    /// The objects under `prefix` as of `revision` or later, and the revision they are current
    /// at; None when the cache cannot vouch for that in time (the caller reads etcd instead).
    /// A type that was written last catches up through its own events; for any other, etcd's
    /// newest modification and key count under `prefix` show whether the cache already holds
    /// what etcd holds now.
    pub async fn snapshot_at_least(
        &self,
        store: &Store,
        prefix: &str,
        revision: i64,
    ) -> Result<Option<(Vec<Arc<CachedObject>>, i64)>, StoreError> {
        if revision == 0 {
            let loaded = self.wait_for(0, CATCH_UP).await;
            return Ok(loaded.then(|| self.snapshot(prefix)));
        }
        if self.wait_for(revision, HOT_CATCH_UP).await {
            return Ok(Some(self.snapshot(prefix)));
        }
        let latest = store.latest_change(prefix).await?;
        if !self.wait_for(latest.newest_modification, CATCH_UP).await {
            return Ok(None);
        }
        let (items, applied) = self.snapshot(prefix);
        // Every change after `applied` is still on its way. None of them can be a write to a
        // key that exists now (its modification would be newer than the newest one), so they
        // can only remove keys, or add keys that are gone again; equal counts mean none did.
        if applied >= latest.revision || items.len() as i64 == latest.count {
            return Ok(Some((items, applied.max(latest.revision))));
        }
        Ok(None)
    }

    /// The cached copy of `key`, once the cache has loaded; it may trail etcd.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.state.read().ok()?;
        if !state.ready {
            return None;
        }
        state.objects.get(key).cloned()
    }

    /// The objects under `prefix` and the revision they are current at.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Arc<CachedObject>>, i64) {
        let Ok(state) = self.state.read() else {
            return (Vec::new(), 0);
        };
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, state.revision)
    }

    /// Registers a watch on keys under `prefix` (which must lie within this cache's prefix).
    pub fn subscribe(
        self: &Arc<Self>,
        prefix: &str,
        from: From,
    ) -> Result<Subscription, CacheError> {
        let (tx, rx) = mpsc::channel(WATCHER_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut initial = Vec::new();
        let mut replay = Vec::new();
        let mut revision = state.revision;
        let mut after = state.revision;
        match from {
            From::Now => {
                initial = state
                    .objects
                    .range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone())
                    .collect();
            }
            From::After(rv) => {
                if rv < state.history_start {
                    return Err(CacheError::TooOld {
                        requested: rv,
                        oldest: state.history_start,
                    });
                }
                replay = state
                    .history
                    .iter()
                    .filter(|e| e.revision > rv && e.key.starts_with(prefix))
                    .cloned()
                    .collect();
                // A watch from before the load while etcd is still replaying that time: the
                // rest of the replay is sent to it as it arrives (`remember`).
                if let Some(replayed) = state.replayed.filter(|_| rv < state.revision) {
                    revision = rv.max(replayed);
                }
                after = rv;
            }
            From::Latest => {}
        }
        let (alive, cut) = watch::channel(());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        state.watchers.push(Watcher {
            id,
            prefix: prefix.to_string(),
            after,
            tx,
            queued_bytes: queued_bytes.clone(),
            _alive: alive,
        });
        drop(state);
        Ok(Subscription {
            initial,
            replay,
            revision,
            events: rx,
            queued_bytes,
            cut,
            id,
            cache: self.clone(),
        })
    }

    fn unsubscribe(&self, id: u64) {
        if let Ok(mut state) = self.state.write() {
            state.watchers.retain(|w| w.id != id);
        }
    }

    /// Loads the type, then follows its etcd watch; on any break it reloads, and every open
    /// watch is closed so its client relists.
    async fn run(self: Arc<Self>, store: Store) {
        loop {
            if let Err(e) = self.follow(&store).await {
                tracing::warn!(prefix = %self.prefix, error = %e, "watch cache reloading");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn follow(&self, store: &Store) -> Result<(), StoreError> {
        let (items, loaded) = store
            .list_each(&self.prefix, |s| {
                (s.key.clone(), Arc::new(CachedObject::from_stored(s)))
            })
            .await?;
        // The watch starts in the past so the history also covers recent changes from before
        // the load: clients resume from resourceVersions they got earlier (from etcd, or from
        // another API server). Changes up to `loaded` only fill the history, and reach the
        // watches that resume from before them.
        let replayed = self.capacity.min(REPLAY_REVISIONS) as i64;
        let mut from = (loaded - replayed + 1).max(1);
        {
            let mut state = self
                .state
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.objects = items.into_iter().collect();
            state.history.clear();
            state.replay_latest.clear();
            // A client that listed just before this load (the first watch of a type creates
            // its cache) resumes from before it: that must not be refused as too old.
            state.history_start = from - 1;
            state.replayed = Some(from - 1);
            state.revision = loaded;
            state.ready = true;
            // Watches opened before a reload may have missed changes: they end, and relist.
            state.watchers.clear();
        }
        self.revision.send_replace(loaded);
        'open: loop {
            let mut stream = store.watch(&self.prefix, from).await?;
            let mut primed = false;
            while let Some(response) = stream.message().await? {
                let compacted = response.compact_revision();
                if compacted > 0 {
                    if !primed && compacted <= loaded + 1 && compacted > from {
                        from = compacted;
                        self.compacted_before(from);
                        continue 'open;
                    }
                    return Err(StoreError::Compacted);
                }
                if response.canceled() {
                    return Err(StoreError::Compacted);
                }
                // Progress notifications are not trusted: etcd before 3.4.31 may send them
                // ahead of the events they vouch for. The replay before the load counts as
                // complete once a newer change arrives.
                for event in response.events() {
                    let revision = event.kv().map(|kv| kv.mod_revision()).unwrap_or(0);
                    if revision <= loaded {
                        self.remember(event)?;
                        continue;
                    }
                    primed = true;
                    self.apply(event)?;
                }
            }
            return Ok(());
        }
    }

    /// etcd compacted the changes before `from` away before replaying them: watches that
    /// resume from before it may have missed some, and end (their clients relist).
    fn compacted_before(&self, from: i64) {
        if let Ok(mut state) = self.state.write() {
            let oldest = from - 1;
            state.history_start = state.history_start.max(oldest);
            state.replayed = state.replayed.map(|r| r.max(oldest));
            state.watchers.retain(|w| w.after >= oldest);
        }
    }

    /// Records a change from before the load in the history (the load already has it), and
    /// sends it to the watches that resume from before it.
    fn remember(&self, event: &etcd_client::Event) -> Result<(), StoreError> {
        let Some(kv) = event.kv() else { return Ok(()) };
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The objects of these changes are mostly the loaded ones, or each other's (a change's
        // previous object is the one before it): they are shared, as `apply` shares them, so
        // the history does not hold a second copy of every object.
        let known = |state: &State, revision: i64| {
            [state.objects.get(&key), state.replay_latest.get(&key)]
                .into_iter()
                .flatten()
                .find(|o| o.mod_revision == revision)
                .cloned()
        };
        let current = match event.event_type() {
            EventType::Put => Some(match known(&state, kv.mod_revision()) {
                Some(shared) => shared,
                None => Arc::new(CachedObject::from_stored(Store::decode_event(kv)?)),
            }),
            EventType::Delete => None,
        };
        let previous = match event.prev_kv() {
            Some(prev) => Some(match known(&state, prev.mod_revision()) {
                Some(shared) => shared,
                None => Arc::new(CachedObject::from_stored(Store::decode_event(prev)?)),
            }),
            None => None,
        };
        match &current {
            Some(c) => state.replay_latest.insert(key.clone(), c.clone()),
            None => state.replay_latest.remove(&key),
        };
        let event = Arc::new(CacheEvent::new(kv.mod_revision(), key, current, previous));
        state.replayed = state.replayed.map(|r| r.max(event.revision));
        self.record(&mut state, event);
        Ok(())
    }

    /// Appends a change to the history and sends it to the watchers that need it.
    fn record(&self, state: &mut State, event: Arc<CacheEvent>) {
        state.history.push_back(event.clone());
        // A watcher further behind than its queue has been cut off: older events are only
        // replayed from here on.
        if let Some(old) = state
            .history
            .len()
            .checked_sub(DERIVED_KEPT + 1)
            .and_then(|i| state.history.get(i))
        {
            old.retire();
        }
        while state.history.len() > self.capacity {
            if let Some(old) = state.history.pop_front() {
                state.history_start = state.history_start.max(old.revision);
            }
        }
        // A watcher whose queue is full (in events or bytes) is dropped here: its stream ends
        // with 410 and it relists, while everyone else keeps receiving.
        let size = event.size();
        state.watchers.retain(|w| {
            if event.revision <= w.after || !event.key.starts_with(&w.prefix) {
                return true;
            }
            if w.queued_bytes.load(Ordering::Relaxed) + size > WATCHER_QUEUE_BYTES {
                tracing::debug!(watcher = w.id, "watcher fell behind by bytes; closing it");
                return false;
            }
            match w.tx.try_send(event.clone()) {
                Ok(()) => {
                    w.queued_bytes.fetch_add(size, Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(watcher = w.id, "watcher fell behind; closing it");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    fn apply(&self, event: &etcd_client::Event) -> Result<(), StoreError> {
        let Some(kv) = event.kv() else { return Ok(()) };
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let revision = kv.mod_revision();
        let current = match event.event_type() {
            EventType::Put => Some(Arc::new(CachedObject::from_stored(Store::decode_event(
                kv,
            )?))),
            EventType::Delete => None,
        };
        let mut state = self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = match &current {
            Some(c) => state.objects.insert(key.clone(), c.clone()),
            None => state.objects.remove(&key),
        };
        let event = Arc::new(CacheEvent::new(revision, key, current, previous));
        // A change after the load: the replay of the time before it is complete.
        state.replayed = None;
        state.replay_latest = HashMap::new();
        self.record(&mut state, event);
        state.revision = state.revision.max(revision);
        let now = state.revision;
        drop(state);
        self.revision.send_replace(now);
        Ok(())
    }
}

/// The watch caches, one per resource type, started on first use.
pub struct Caches {
    capacity: usize,
    caches: Mutex<HashMap<String, Arc<Cache>>>,
}

impl Default for Caches {
    fn default() -> Self {
        Caches::new(DEFAULT_HISTORY)
    }
}

impl Caches {
    /// Caches keeping `capacity` events of history per type.
    pub fn new(capacity: usize) -> Caches {
        Caches {
            capacity,
            caches: Mutex::default(),
        }
    }

    /// The cache for everything under `prefix`, if a reader has started one.
    pub fn existing(&self, prefix: &str) -> Option<Arc<Cache>> {
        let caches = self
            .caches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        caches.get(prefix).cloned()
    }

    /// The cache for everything under `prefix` (`<etcd prefix>/<resource>/`).
    pub fn get(&self, store: &Store, prefix: &str) -> Arc<Cache> {
        let mut caches = self
            .caches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        caches
            .entry(prefix.to_string())
            .or_insert_with(|| {
                let cache = Cache::new(prefix.to_string(), self.capacity);
                tokio::spawn(cache.clone().run(store.clone()));
                cache
            })
            .clone()
    }
}
