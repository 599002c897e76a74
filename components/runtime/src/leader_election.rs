//! Leader election through a `coordination.k8s.io/v1` Lease with upstream client-go semantics:
//! a candidate takes the lease when it is absent, already its own, or has not changed for the
//! lease duration as measured on the candidate's own clock; writes use the object's
//! resourceVersion so two candidates never both win; a leader that cannot renew within the
//! renew deadline gives up, and the component exits so that it restarts as a candidate.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use crate::options::LeaderElectionArgs;

#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    #[error("leader election lost: lease {namespace}/{name} not renewed within {deadline:?}")]
    Lost {
        namespace: String,
        name: String,
        deadline: Duration,
    },
    #[error("invalid leader election configuration: {0}")]
    Config(String),
}

/// What a candidate does after reading the lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No lease exists: create this one.
    Create(LeaseSpec),
    /// Write this spec over the observed lease (renewal or takeover).
    Update(LeaseSpec),
    /// Another holder's lease has not expired yet.
    Wait { holder: String },
}

/// The part of a lease record whose change counts as a sign of life from its holder.
#[derive(Debug, Clone, PartialEq)]
struct RecordIdentity {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
}

impl RecordIdentity {
    fn of(spec: &LeaseSpec) -> Self {
        RecordIdentity {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.clone(),
            transitions: spec.lease_transitions,
        }
    }
}

/// When this candidate last saw the lease record change, on its own monotonic clock: expiry is
/// judged from that, never from the holder's timestamps, so clock skew between hosts is harmless.
#[derive(Debug, Default)]
pub struct Observer {
    last: Option<(RecordIdentity, Instant)>,
}

impl Observer {
    /// Records a read of the lease at `now`; returns how long the record has been unchanged.
    pub fn observe(&mut self, spec: &LeaseSpec, now: Instant) -> Duration {
        let identity = RecordIdentity::of(spec);
        match &self.last {
            Some((seen, at)) if *seen == identity => now.saturating_duration_since(*at),
            _ => {
                self.last = Some((identity, now));
                Duration::ZERO
            }
        }
    }
}

/// Upstream's tryAcquireOrRenew as a pure decision over the current lease (if any), how long
/// it has been unchanged, and this candidate's identity.
pub fn decide(
    current: Option<&LeaseSpec>,
    unchanged_for: Duration,
    identity: &str,
    now: Timestamp,
    lease_duration: Duration,
) -> Decision {
    let duration_seconds = i32::try_from(lease_duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(current) = current else {
        return Decision::Create(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
    };
    let holder = current.holder_identity.as_deref().unwrap_or("");
    let is_holder = holder == identity;
    let held_for = current
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(lease_duration);
    if !holder.is_empty() && !is_holder && unchanged_for < held_for {
        return Decision::Wait {
            holder: holder.to_string(),
        };
    }
    let transitions = current.lease_transitions.unwrap_or(0);
    let (acquire_time, lease_transitions) = if is_holder {
        (
            current.acquire_time.clone().or(Some(MicroTime(now))),
            transitions,
        )
    } else {
        (Some(MicroTime(now)), transitions.saturating_add(1))
    };
    Decision::Update(LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(duration_seconds),
        acquire_time,
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(lease_transitions),
        ..current.clone()
    })
}

/// Upstream's identity: the host name plus a unique suffix, so two replicas on one host differ.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// A candidate for one lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    observer: Observer,
}

impl LeaderElector {
    pub fn new(
        client: kube::Client,
        args: &LeaderElectionArgs,
        default_name: &str,
        identity: String,
    ) -> Result<Self, LeaderElectionError> {
        // Upstream's validation: the leader must give up before others may take over.
        if args.lease_duration <= args.renew_deadline {
            return Err(LeaderElectionError::Config(
                "leaseDuration must be greater than renewDeadline".into(),
            ));
        }
        if args.renew_deadline.as_secs_f64() <= 1.2 * args.retry_period.as_secs_f64() {
            return Err(LeaderElectionError::Config(
                "renewDeadline must be greater than retryPeriod*1.2".into(),
            ));
        }
        let name = args
            .resource_name
            .clone()
            .unwrap_or_else(|| default_name.to_string());
        Ok(LeaderElector {
            api: Api::namespaced(client, &args.resource_namespace),
            namespace: args.resource_namespace.clone(),
            name,
            identity,
            lease_duration: args.lease_duration,
            renew_deadline: args.renew_deadline,
            retry_period: args.retry_period,
            observer: Observer::default(),
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this candidate holds the lease, then runs `leading` while renewing it.
    /// Returns when `leading` finishes, or with [`LeaderElectionError::Lost`] when a renewal
    /// missed its deadline (`leading` is dropped then).
    pub async fn run<F: Future<Output = ()>>(
        mut self,
        leading: F,
    ) -> Result<(), LeaderElectionError> {
        tracing::info!(lease = %format!("{}/{}", self.namespace, self.name), identity = %self.identity,
            "attempting to acquire leader lease");
        loop {
            if self.try_acquire_or_renew().await {
                break;
            }
            tokio::time::sleep(jittered(self.retry_period)).await;
        }
        tracing::info!(lease = %format!("{}/{}", self.namespace, self.name), identity = %self.identity,
            "successfully acquired lease");
        tokio::select! {
            () = leading => Ok(()),
            lost = self.renew_until_lost() => Err(lost),
        }
    }

    async fn renew_until_lost(&mut self) -> LeaderElectionError {
        loop {
            tokio::time::sleep(self.retry_period).await;
            let deadline = Instant::now() + self.renew_deadline;
            let renewed = loop {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break false;
                }
                match tokio::time::timeout(remaining, self.try_acquire_or_renew()).await {
                    Ok(true) => break true,
                    Ok(false) => {}
                    Err(_) => break false,
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(self.retry_period.min(remaining)).await;
            };
            if !renewed {
                tracing::error!(identity = %self.identity, "failed to renew lease {}/{}", self.namespace, self.name);
                return LeaderElectionError::Lost {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    deadline: self.renew_deadline,
                };
            }
        }
    }

    /// One read-decide-write round; true when this candidate holds the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let current = match self.api.get_opt(&self.name).await {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(%error, "error retrieving lease {}/{}", self.namespace, self.name);
                return false;
            }
        };
        let spec = current.as_ref().map(|l| l.spec.clone().unwrap_or_default());
        let unchanged_for = spec
            .as_ref()
            .map(|s| self.observer.observe(s, Instant::now()))
            .unwrap_or_default();
        let decision = decide(
            spec.as_ref(),
            unchanged_for,
            &self.identity,
            Timestamp::now(),
            self.lease_duration,
        );
        let written = match decision {
            Decision::Wait { holder } => {
                tracing::debug!(%holder, "lease is held by another candidate and has not yet expired");
                return false;
            }
            Decision::Create(spec) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Decision::Update(spec) => {
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                // The resourceVersion read above makes this a compare-and-swap.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                if let Some(spec) = &lease.spec {
                    self.observer.observe(spec, Instant::now());
                }
                true
            }
            Err(error) => {
                tracing::debug!(%error, "lease write lost a race or failed");
                false
            }
        }
    }
}

/// Upstream waits retryPeriod plus up to 20% jitter between acquisition attempts.
fn jittered(period: Duration) -> Duration {
    period.mul_f64(1.0 + 0.2 * rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(15);

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(Timestamp::from_second(1_600_000_000).unwrap())),
            renew_time: Some(MicroTime(Timestamp::from_second(1_699_999_990).unwrap())),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn absent_lease_is_created_with_zero_transitions() {
        let Decision::Create(spec) = decide(None, Duration::ZERO, "me", now(), DURATION) else {
            panic!("expected create");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.acquire_time, Some(MicroTime(now())));
        assert_eq!(spec.renew_time, Some(MicroTime(now())));
        assert_eq!(spec.lease_transitions, Some(0));
    }

    #[test]
    fn unexpired_lease_of_another_holder_is_left_alone() {
        let d = decide(
            Some(&held_by("other", 3)),
            Duration::from_secs(14),
            "me",
            now(),
            DURATION,
        );
        assert_eq!(
            d,
            Decision::Wait {
                holder: "other".into()
            }
        );
    }

    #[test]
    fn expired_lease_is_taken_over_with_a_new_transition() {
        let Decision::Update(spec) = decide(
            Some(&held_by("other", 3)),
            Duration::from_secs(15),
            "me",
            now(),
            DURATION,
        ) else {
            panic!("expected takeover");
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(now())));
    }

    #[test]
    fn own_lease_is_renewed_keeping_acquire_time_and_transitions() {
        let old = held_by("me", 3);
        let Decision::Update(spec) = decide(Some(&old), Duration::ZERO, "me", now(), DURATION)
        else {
            panic!("expected renewal");
        };
        assert_eq!(spec.acquire_time, old.acquire_time);
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.renew_time, Some(MicroTime(now())));
    }

    #[test]
    fn released_lease_is_taken_at_once() {
        let mut released = held_by("other", 1);
        released.holder_identity = Some(String::new());
        assert!(matches!(
            decide(Some(&released), Duration::ZERO, "me", now(), DURATION),
            Decision::Update(_)
        ));
    }

    #[test]
    fn record_duration_overrides_the_candidates_own() {
        let mut long = held_by("other", 0);
        long.lease_duration_seconds = Some(60);
        assert!(matches!(
            decide(Some(&long), Duration::from_secs(30), "me", now(), DURATION),
            Decision::Wait { .. }
        ));
    }

    #[test]
    fn observer_measures_time_since_the_record_last_changed() {
        let mut observer = Observer::default();
        let start = Instant::now();
        let lease = held_by("other", 0);
        assert_eq!(observer.observe(&lease, start), Duration::ZERO);
        assert_eq!(
            observer.observe(&lease, start + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        let mut renewed = lease.clone();
        renewed.renew_time = Some(MicroTime(now()));
        assert_eq!(
            observer.observe(&renewed, start + Duration::from_secs(6)),
            Duration::ZERO
        );
        assert_eq!(
            observer.observe(&renewed, start + Duration::from_secs(20)),
            Duration::from_secs(14)
        );
    }
}
