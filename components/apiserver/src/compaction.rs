//! Periodic etcd compaction, as upstream's `--etcd-compaction-interval`. Each tick compacts to
//! the revision seen at the previous tick, so watchers always have at least one interval of
//! history. API servers sharing an etcd take turns through a counter key: a tick only compacts
//! if the key's version is still the one this server saw last, and bumps it in the same
//! transaction, so one server compacts per interval and the others just follow the count.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, KvClient, Txn, TxnOp, TxnOpResponse};

/// The coordination key under the etcd prefix.
pub fn key(prefix: &str) -> String {
    format!("{}/compact_rev_key", prefix.trim_end_matches('/'))
}

/// What the previous tick saw: the key's version and etcd's revision.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    version: i64,
    revision: i64,
}

/// Compacts every `interval` until shutdown; a zero interval disables compaction.
pub async fn run(
    mut kv: KvClient,
    key: String,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if interval.is_zero() {
        return;
    }
    let mut seen = Seen::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crate::stopping(&mut stop) => return,
        }
        seen = tick(&mut kv, &key, seen).await;
    }
}

async fn tick(kv: &mut KvClient, key: &str, seen: Seen) -> Seen {
    let txn = Txn::new()
        .when([Compare::version(key, CompareOp::Equal, seen.version)])
        .and_then([TxnOp::put(key, seen.revision.to_string(), None)])
        .or_else([TxnOp::get(key, None)]);
    let resp = match kv.txn(txn).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(error = %e, "etcd compaction: updating {key}");
            return seen;
        }
    };
    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
    if !resp.succeeded() {
        // Another API server took this interval; compare against its count next time.
        let version = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.version()),
                _ => None,
            })
            .unwrap_or(0);
        tracing::debug!(version, "etcd compaction: another API server compacted");
        return Seen { version, revision };
    }
    let next = Seen {
        version: seen.version + 1,
        revision,
    };
    // The first tick only records a revision: nothing is a full interval old yet.
    if seen.revision == 0 {
        return next;
    }
    match kv.compact(seen.revision, None).await {
        Ok(_) => tracing::info!(revision = seen.revision, "compacted etcd"),
        Err(e) => tracing::warn!(revision = seen.revision, error = %e, "compacting etcd"),
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_lives_under_the_prefix() {
        assert_eq!(key("/registry"), "/registry/compact_rev_key");
        assert_eq!(key("/registry/"), "/registry/compact_rev_key");
    }
}
