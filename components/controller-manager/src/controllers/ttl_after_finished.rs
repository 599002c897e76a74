//! ttl-after-finished-controller: deletes a finished Job (with foreground propagation, as
//! upstream, so its pods go first) once `ttlSecondsAfterFinished` has passed since it
//! finished; an unexpired Job is looked at again when it expires.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::controllers::job::condition_true;

const QUEUE: &str = "ttl_jobs_to_delete";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deleting expired job {job}: {source}")]
    Delete { job: String, source: kube::Error },
}

/// When a Job finished: the transition time of its `Complete` or `Failed` condition.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref();
    let condition =
        condition_true(status, "Complete").or_else(|| condition_true(status, "Failed"))?;
    condition.last_transition_time.map(|t| t.0)
}

/// What to do with a Job at `now`: `None` when it is not (or not yet) ours to delete,
/// `Some(ZERO)` when it has expired, otherwise how long until it does.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finished_at(job)?;
    let expires = finished.as_millisecond() + i64::from(ttl) * 1000;
    Some(Duration::from_millis(
        (expires - now.as_millisecond()).max(0) as u64,
    ))
}

pub async fn run(ctx: Arc<Context>) {
    Controller::new(
        Api::<Job>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .with_config(
        controller::Config::default().concurrency(ctx.options.concurrency.ttl_after_finished),
    )
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
}

fn error_policy(_: Arc<Job>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "ttl-after-finished sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.sync(QUEUE);
    let result = expire(&job, &ctx).await;
    timer.done(result.is_ok());
    result
}

async fn expire(job: &Job, ctx: &Context) -> Result<Action, Error> {
    let Some(left) = time_left(job, Timestamp::now()) else {
        return Ok(Action::await_change());
    };
    if !left.is_zero() {
        return Ok(Action::requeue(left));
    }
    let name = job.name_any();
    let api = Api::<Job>::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    // The cached Job may be stale: the TTL may have been changed since; check the live one.
    let fresh = match api.get_opt(&name).await {
        Ok(Some(fresh)) => fresh,
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => return Err(Error::Delete { job: name, source }),
    };
    match time_left(&fresh, Timestamp::now()) {
        Some(left) if left.is_zero() => {}
        Some(left) => return Ok(Action::requeue(left)),
        None => return Ok(Action::await_change()),
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            resource_version: fresh.resource_version(),
            uid: fresh.uid(),
        }),
        ..DeleteParams::default()
    };
    tracing::info!(job = %name, "deleting a job whose ttlSecondsAfterFinished expired");
    match api.delete(&name, &params).await {
        Ok(_) => Ok(Action::await_change()),
        // Gone, or changed meanwhile (the change brings the next sync).
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(source) => Err(Error::Delete { job: name, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(ttl: Option<i32>, finished: Option<i64>) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..JobSpec::default()
            }),
            status: Some(JobStatus {
                conditions: finished.map(|at| {
                    vec![JobCondition {
                        type_: "Complete".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn only_finished_jobs_with_a_ttl_expire() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(time_left(&job(None, Some(900)), now), None);
        assert_eq!(time_left(&job(Some(10), None), now), None);
        assert_eq!(
            time_left(&job(Some(150), Some(900)), now),
            Some(Duration::from_secs(50))
        );
        assert_eq!(
            time_left(&job(Some(100), Some(900)), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            time_left(&job(Some(0), Some(999)), now),
            Some(Duration::ZERO)
        );
    }
}
