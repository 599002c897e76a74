//! The scheduling queue with upstream's three parts: `active` (ready now, highest priority
//! first, then oldest), `backoff` (failed recently, waiting 1s, 2s, 4s … up to 10s by attempt),
//! and `unschedulable` (waiting for a cluster change that may let them fit, or 5 minutes).

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pod::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's podMaxInUnschedulablePodsDuration.
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled; not in any queue.
    InFlight,
}

/// A pod handed out by [`SchedulingQueue::pop`].
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<PodInfo>,
    pub attempts: u32,
    /// When the pod first entered the queue (for end-to-end latency).
    pub initial_attempt: Instant,
    /// The scheduling cycle this pod was popped in.
    pub cycle: u64,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<PodInfo>,
    place: Place,
    attempts: u32,
    /// Orders pods of equal priority in the active queue (upstream: the enqueue timestamp).
    enqueued: Instant,
    initial_attempt: Instant,
    /// When the last attempt failed; backoff and the unschedulable timeout count from here.
    failed_at: Instant,
    sequence: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    enqueued: Instant,
    sequence: u64,
    key: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.enqueued.cmp(&self.enqueued))
            .then_with(|| other.sequence.cmp(&self.sequence))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Pending-pod counts by queue, for `scheduler_pending_pods`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCounts {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    /// Stale heap keys (the pod moved or changed) are skipped on pop by their sequence.
    active: BinaryHeap<ActiveKey>,
    backoff: BTreeSet<(Instant, u64, String)>,
    sequence: u64,
    scheduling_cycle: u64,
    /// The cycle of the last cluster event that could make pods schedulable.
    move_request_cycle: u64,
    counts: PendingCounts,
}

/// Upstream's backoff: 1s doubled per earlier attempt, at most 10s.
pub fn backoff_duration(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

impl SchedulingQueue {
    pub fn pending(&self) -> PendingCounts {
        self.counts
    }

    /// Keys of every pod the queue knows.
    pub fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    fn count(&mut self, place: Place, delta: isize) {
        let slot = match place {
            Place::Active => &mut self.counts.active,
            Place::Backoff => &mut self.counts.backoff,
            Place::Unschedulable => &mut self.counts.unschedulable,
            Place::InFlight => return,
        };
        *slot = slot.saturating_add_signed(delta);
    }

    fn place(&mut self, key: &str, place: Place, now: Instant) {
        let sequence = self.next_sequence();
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let old = entry.place;
        entry.place = place;
        entry.sequence = sequence;
        match place {
            Place::Active => {
                entry.enqueued = now;
                self.active.push(ActiveKey {
                    priority: entry.pod.priority,
                    enqueued: now,
                    sequence,
                    key: key.to_string(),
                });
            }
            Place::Backoff => {
                let expiry = entry.failed_at + backoff_duration(entry.attempts);
                self.backoff.insert((expiry, sequence, key.to_string()));
            }
            Place::Unschedulable | Place::InFlight => {}
        }
        self.count(old, -1);
        self.count(place, 1);
    }

    /// A new pending pod, or a new version of one already known.
    pub fn add_or_update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let key = pod.key.clone();
        if let Some(entry) = self.entries.get_mut(&key) {
            let changed = entry.pod.pod.spec != pod.pod.spec
                || entry.pod.pod.metadata.labels != pod.pod.metadata.labels;
            entry.pod = pod;
            // An update may make an unschedulable pod fit (upstream: isPodUpdated).
            if entry.place == Place::Unschedulable && changed {
                self.move_out_of_unschedulable(&key, now);
            }
            return;
        }
        self.entries.insert(
            key.clone(),
            Entry {
                pod,
                place: Place::InFlight,
                attempts: 0,
                enqueued: now,
                initial_attempt: now,
                failed_at: now,
                sequence: 0,
            },
        );
        self.place(&key, Place::Active, now);
    }

    pub fn delete(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.count(entry.place, -1);
        }
    }

    /// The next pod to schedule, if any is active.
    pub fn pop(&mut self) -> Option<QueuedPod> {
        while let Some(top) = self.active.pop() {
            let Some(entry) = self.entries.get_mut(&top.key) else {
                continue;
            };
            if entry.place != Place::Active || entry.sequence != top.sequence {
                continue;
            }
            entry.place = Place::InFlight;
            entry.attempts += 1;
            self.scheduling_cycle += 1;
            let popped = QueuedPod {
                pod: entry.pod.clone(),
                attempts: entry.attempts,
                initial_attempt: entry.initial_attempt,
                cycle: self.scheduling_cycle,
            };
            self.count(Place::Active, -1);
            return Some(popped);
        }
        None
    }

    /// The pod was scheduled (or is gone): the queue forgets it.
    pub fn done(&mut self, key: &str) {
        self.delete(key);
    }

    /// The attempt found no node. If something changed in the cluster while it was being
    /// scheduled, it goes to backoff at once (the change may help); otherwise it waits in
    /// the unschedulable pods until a change moves it.
    pub fn add_unschedulable(&mut self, popped: &QueuedPod, now: Instant) {
        let key = popped.pod.key.clone();
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if entry.place != Place::InFlight {
            return;
        }
        entry.failed_at = now;
        let place = if self.move_request_cycle >= popped.cycle {
            Place::Backoff
        } else {
            Place::Unschedulable
        };
        self.place(&key, place, now);
    }

    /// The attempt failed for another reason (an API error, a failed binding): retry after backoff.
    pub fn add_backoff(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let key = pod.key.clone();
        match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.pod = pod;
                entry.failed_at = now;
                if entry.attempts == 0 {
                    entry.attempts = 1;
                }
            }
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        pod,
                        place: Place::InFlight,
                        attempts: 1,
                        enqueued: now,
                        initial_attempt: now,
                        failed_at: now,
                        sequence: 0,
                    },
                );
            }
        }
        self.place(&key, Place::Backoff, now);
    }

    fn move_out_of_unschedulable(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let backing_off = entry.failed_at + backoff_duration(entry.attempts) > now;
        self.place(
            key,
            if backing_off {
                Place::Backoff
            } else {
                Place::Active
            },
            now,
        );
    }

    /// A cluster event that may make pods schedulable: every unschedulable pod the event may
    /// help (all of them when `may_help` says so) moves to backoff or active.
    pub fn move_unschedulable(&mut self, now: Instant, may_help: impl Fn(&PodInfo) -> bool) {
        self.move_request_cycle = self.scheduling_cycle;
        let keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable && may_help(&e.pod))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.move_out_of_unschedulable(&key, now);
        }
    }

    /// Moves pods whose backoff has expired to active, and pods unschedulable for longer than
    /// upstream's 5 minutes to backoff or active. Returns when the next backoff expires.
    pub fn flush(&mut self, now: Instant) -> Option<Instant> {
        while let Some((expiry, sequence, key)) = self.backoff.first().cloned() {
            if expiry > now {
                break;
            }
            self.backoff.pop_first();
            let current = self
                .entries
                .get(&key)
                .is_some_and(|e| e.place == Place::Backoff && e.sequence == sequence);
            if current {
                self.place(&key, Place::Active, now);
            }
        }
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.place == Place::Unschedulable
                    && now.duration_since(e.failed_at) > MAX_UNSCHEDULABLE_DURATION
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.move_out_of_unschedulable(&key, now);
        }
        self.backoff.first().map(|(expiry, _, _)| *expiry)
    }

    /// Whether any pod is ready to pop.
    pub fn has_active(&self) -> bool {
        self.counts.active > 0
    }
}
