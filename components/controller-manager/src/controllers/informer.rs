//! The plumbing the workload controllers share, in the shape of upstream's informers and work
//! queues: a watch kept in a local store whose every change reaches a handler along with the
//! object as it was before, and a queue of keys whose syncs run `--concurrent-*-syncs` at once,
//! one at a time per key, with failed keys retried after a growing delay. Controllers that
//! rescan everything on a period use [`cache`]: a store that wakes them on any change.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::controller::{applier, Action, Config};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// One change seen by a watch.
pub enum Change<K> {
    /// Created (`old` is `None`) or updated.
    Applied {
        old: Option<Arc<K>>,
        new: Arc<K>,
    },
    Deleted(Arc<K>),
}

type Handler<K> = Box<dyn FnMut(Change<K>) + Send>;

/// Watches `api` into a store, calling `handler` for every change once the store holds it.
/// A relist (after a broken watch) is applied at once when complete: its objects arrive as
/// updates, and objects it no longer lists as deletions, so no change is lost to a handler.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    handler: impl FnMut(Change<K>) + Send + 'static,
) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let mut writer = reflector::store::Writer::<K>::default();
    let store = writer.as_reader();
    let reader = store.clone();
    let mut handler: Handler<K> = Box::new(handler);
    tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().boxed();
        let mut relist: Vec<K> = Vec::new();
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    tracing::warn!(kind = K::kind(&()).as_ref(), %error, "watch failed; retrying");
                    continue;
                }
            };
            match event {
                watcher::Event::Init => relist.clear(),
                watcher::Event::InitApply(obj) => relist.push(obj),
                watcher::Event::InitDone => {
                    let before: HashMap<ObjectRef<K>, Arc<K>> = reader
                        .state()
                        .into_iter()
                        .map(|o| (ObjectRef::from_obj(o.as_ref()), o))
                        .collect();
                    let mut listed = HashSet::with_capacity(relist.len());
                    writer.apply_watcher_event(&watcher::Event::Init);
                    for obj in &relist {
                        writer.apply_watcher_event(&watcher::Event::InitApply(obj.clone()));
                    }
                    writer.apply_watcher_event(&watcher::Event::InitDone);
                    for obj in relist.drain(..) {
                        let key = ObjectRef::from_obj(&obj);
                        let old = before.get(&key).cloned();
                        listed.insert(key);
                        handler(Change::Applied {
                            old,
                            new: Arc::new(obj),
                        });
                    }
                    for (key, obj) in before {
                        if !listed.contains(&key) {
                            handler(Change::Deleted(obj));
                        }
                    }
                }
                watcher::Event::Apply(obj) => {
                    let old = reader.get(&ObjectRef::from_obj(&obj));
                    writer.apply_watcher_event(&watcher::Event::Apply(obj.clone()));
                    handler(Change::Applied {
                        old,
                        new: Arc::new(obj),
                    });
                }
                watcher::Event::Delete(obj) => {
                    writer.apply_watcher_event(&watcher::Event::Delete(obj.clone()));
                    handler(Change::Deleted(Arc::new(obj)));
                }
            }
        }
    });
    store
}

/// The sending end of a controller's work queue.
pub struct Queue<K: Resource<DynamicType = ()>> {
    sender: UnboundedSender<ObjectRef<K>>,
}

impl<K: Resource<DynamicType = ()>> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue {
            sender: self.sender.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Queue<K> {
    pub fn new() -> (Queue<K>, UnboundedReceiver<ObjectRef<K>>) {
        let (sender, receiver) = unbounded();
        (Queue { sender }, receiver)
    }

    pub fn add(&self, key: ObjectRef<K>) {
        // Fails only once the controller has stopped, when nothing is left to do.
        let _ = self.sender.unbounded_send(key);
    }

    pub fn add_obj(&self, obj: &K) {
        self.add(ObjectRef::from_obj(obj));
    }
}

/// Failed syncs are retried after 5 ms doubling up to this, as upstream's default rate limiter.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1000);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(5);

struct Retries<K: Resource<DynamicType = ()>, C> {
    inner: Arc<C>,
    failures: Mutex<HashMap<ObjectRef<K>, u32>>,
}

fn retry_delay(failures: u32) -> Duration {
    FIRST_RETRY_DELAY
        .saturating_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .min(MAX_RETRY_DELAY)
}

/// Runs `sync` for every key `keys` yields whose object is in `store`, `concurrency` at once,
/// after every store in `ready` has finished its first list (a sync against a half-filled
/// cache would create what exists already).
pub async fn run<K, C, E, F, Fut>(
    store: Store<K>,
    ready: Vec<futures::future::BoxFuture<'static, ()>>,
    keys: UnboundedReceiver<ObjectRef<K>>,
    concurrency: u16,
    ctx: Arc<C>,
    sync: F,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    ObjectRef<K>: Hash + Eq,
    C: Send + Sync + 'static,
    E: std::error::Error + Send + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
{
    futures::future::join_all(ready).await;
    let retries = Arc::new(Retries {
        inner: ctx,
        failures: Mutex::new(HashMap::new()),
    });
    let reconcile = move |obj: Arc<K>, retries: Arc<Retries<K, C>>| {
        let sync = sync.clone();
        async move {
            let key = ObjectRef::from_obj(obj.as_ref());
            let result = sync(obj, retries.inner.clone()).await;
            if result.is_ok() {
                lock(&retries.failures).remove(&key);
            }
            result
        }
        .boxed()
    };
    let error_policy = |obj: Arc<K>, error: &E, retries: Arc<Retries<K, C>>| {
        let key = ObjectRef::from_obj(obj.as_ref());
        let mut failures = lock(&retries.failures);
        let count = failures.entry(key.clone()).or_insert(0);
        let delay = retry_delay(*count);
        *count += 1;
        tracing::warn!(object = %key, %error, ?delay, "sync failed; retrying");
        Action::requeue(delay)
    };
    applier(
        reconcile,
        error_policy,
        retries,
        store,
        keys.map(Ok::<_, Infallible>),
        Config::default().concurrency(concurrency),
    )
    .for_each(|_| async {})
    .await;
}

/// Waits for a store's first complete list.
pub fn ready<K>(store: &Store<K>) -> futures::future::BoxFuture<'static, ()>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    ObjectRef<K>: Hash + Eq,
{
    let store = store.clone();
    async move {
        // An error means the watch task ended, when nothing will ever be ready.
        if store.wait_until_ready().await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
    .boxed()
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts caching what `api` lists under `config`; `changed` is notified on every event. The
/// store is empty until [`Store::wait_until_ready`] returns.
pub fn cache<K>(api: Api<K>, config: watcher::Config, changed: Arc<Notify>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, config).default_backoff().reflect(writer);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Err(error) = event {
                tracing::debug!(%error, "watch interrupted; retrying");
            }
            changed.notify_one();
        }
    });
    reader
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        assert_eq!(retry_delay(0), Duration::from_millis(5));
        assert_eq!(retry_delay(3), Duration::from_millis(40));
        assert_eq!(retry_delay(40), MAX_RETRY_DELAY);
    }
}
