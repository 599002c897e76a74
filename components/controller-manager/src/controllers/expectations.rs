//! Upstream's ControllerExpectations: after creating or deleting pods a controller waits until
//! its watch has shown it all of them before it decides again, so a cache that lags behind
//! its own writes never makes it create or delete twice. A record too old (5 minutes, as
//! upstream) is no longer trusted, in case an event was lost.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::informer::lock;

const TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Record {
    adds: i64,
    deletes: HashSet<String>,
    set_at: Instant,
}

/// Outstanding creations and deletions per controller key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    records: Mutex<HashMap<String, Record>>,
}

impl Expectations {
    /// Whether the controller may sync `key`: all it did has been observed, or too long ago.
    pub fn satisfied(&self, key: &str) -> bool {
        self.satisfied_at(key, Instant::now())
    }

    fn satisfied_at(&self, key: &str, now: Instant) -> bool {
        match lock(&self.records).get(key) {
            None => true,
            Some(r) => {
                (r.adds <= 0 && r.deletes.is_empty()) || now.duration_since(r.set_at) > TIMEOUT
            }
        }
    }

    /// `count` pods are about to be created for `key`.
    pub fn expect_creations(&self, key: &str, count: usize) {
        self.set(key, count as i64, HashSet::new());
    }

    /// These pods (by `namespace/name`) are about to be deleted for `key`.
    pub fn expect_deletions(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        self.set(key, 0, pods.into_iter().collect());
    }

    fn set(&self, key: &str, adds: i64, deletes: HashSet<String>) {
        lock(&self.records).insert(
            key.to_string(),
            Record {
                adds,
                deletes,
                set_at: Instant::now(),
            },
        );
    }

    /// A pod created for `key` was seen, or will never be (its creation failed or was skipped).
    pub fn creation_observed(&self, key: &str) {
        if let Some(r) = lock(&self.records).get_mut(key) {
            r.adds -= 1;
        }
    }

    /// The pod `pod` of `key` was seen going away, or its deletion failed.
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(r) = lock(&self.records).get_mut(key) {
            r.deletes.remove(pod);
        }
    }

    /// The controller object itself is gone.
    pub fn forget(&self, key: &str) {
        lock(&self.records).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_must_all_be_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a"));
        e.expect_creations("ns/a", 2);
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(e.satisfied("ns/a"));
    }

    #[test]
    fn deletions_are_tracked_by_pod_so_repeats_count_once() {
        let e = Expectations::default();
        e.expect_deletions("ns/a", ["ns/p1".to_string(), "ns/p2".to_string()]);
        e.deletion_observed("ns/a", "ns/p1");
        e.deletion_observed("ns/a", "ns/p1");
        assert!(!e.satisfied("ns/a"));
        e.deletion_observed("ns/a", "ns/p2");
        assert!(e.satisfied("ns/a"));
    }

    #[test]
    fn old_records_expire() {
        let e = Expectations::default();
        e.expect_creations("ns/a", 1);
        assert!(!e.satisfied_at("ns/a", Instant::now()));
        assert!(e.satisfied_at("ns/a", Instant::now() + TIMEOUT + Duration::from_secs(1)));
        e.forget("ns/a");
        assert!(e.satisfied("ns/a"));
    }
}
