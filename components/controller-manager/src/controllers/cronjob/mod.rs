//! cronjob-controller: creates a Job named `<cronjob>-<minutes since the epoch>` at each
//! scheduled time (its deterministic name makes a second create for one time fail), honouring
//! `concurrencyPolicy`, `startingDeadlineSeconds`, `suspend` and the time zone; tracks the
//! active Jobs in status and prunes finished Jobs beyond the history limits.

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::ResourceExt;

use crate::context::Context;
use crate::controllers::job::condition_true;
use crate::controllers::pod_control::{self, controller_ref, is_conflict_or_gone, owned_by};
use schedule::Schedule;

const QUEUE: &str = "cronjob";
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream gives up listing missed start times past this many.
const TOO_MANY_MISSED: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status of cronjob {cronjob}: {source}")]
    Status {
        cronjob: String,
        source: kube::Error,
    },
    #[error("creating job {job}: {source}")]
    CreateJob { job: String, source: kube::Error },
    #[error("deleting job {job}: {source}")]
    DeleteJob { job: String, source: kube::Error },
}

struct Shared {
    ctx: Arc<Context>,
    jobs: Store<Job>,
    recorder: Recorder,
}

pub async fn run(ctx: Arc<Context>) {
    let (jobs, job_events) = pod_control::reflect(Api::<Job>::all(ctx.client.clone()));
    let shared = Arc::new(Shared {
        recorder: ctx.recorder("cronjob-controller"),
        jobs,
        ctx: ctx.clone(),
    });
    Controller::new(
        Api::<CronJob>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(job_events)
    .with_config(controller::Config::default().concurrency(ctx.options.concurrency.cronjob))
    .run(reconcile, error_policy, shared)
    .for_each(|_| async {})
    .await;
}

fn error_policy(_: Arc<CronJob>, error: &Error, _: Arc<Shared>) -> Action {
    tracing::warn!(%error, "cronjob sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(cronjob: Arc<CronJob>, shared: Arc<Shared>) -> Result<Action, Error> {
    let timer = shared.ctx.metrics.sync(QUEUE);
    let result = sync(&cronjob, &shared).await;
    timer.done(result.is_ok());
    result
}

/// When the schedule fired last (at or before `now`, after `earliest`), how many times it
/// fired in that span, and when it fires next.
#[derive(Debug, PartialEq)]
pub struct Due {
    pub scheduled: Option<Timestamp>,
    pub missed: usize,
    pub next: Option<Timestamp>,
}

pub fn due(schedule: &Schedule, zone: &TimeZone, earliest: Timestamp, now: Timestamp) -> Due {
    let mut due = Due {
        scheduled: None,
        missed: 0,
        next: None,
    };
    let mut t = earliest;
    // Bounded: a minutely schedule over two years.
    for _ in 0..1_100_000 {
        match schedule.next_after(t, zone) {
            Some(fire) if fire <= now => {
                due.scheduled = Some(fire);
                due.missed += 1;
                t = fire;
            }
            next => {
                due.next = next;
                break;
            }
        }
    }
    due
}

/// The earliest time a missed start may still count from: the last scheduled time (or the
/// creation), moved up to `now - startingDeadlineSeconds`.
pub fn earliest(cronjob: &CronJob, now: Timestamp) -> Timestamp {
    let mut earliest = cronjob
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cronjob.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    if let Some(deadline) = cronjob
        .spec
        .as_ref()
        .and_then(|s| s.starting_deadline_seconds)
    {
        if let Ok(limit) = Timestamp::from_second(now.as_second() - deadline) {
            earliest = earliest.max(limit);
        }
    }
    earliest
}

/// The Job's name for a scheduled time: the CronJob's name and the minutes since the epoch.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job for one scheduled time, from the CronJob's template.
pub fn new_job(cronjob: &CronJob, scheduled: Timestamp, zone: &TimeZone) -> Job {
    let template = cronjob
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cronjob.name_any(), scheduled)),
            namespace: cronjob.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: controller_ref(cronjob).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// "Complete" or "Failed" once a Job has finished.
pub fn finished_as(job: &Job) -> Option<&'static str> {
    let status = job.status.as_ref();
    if condition_true(status, "Complete").is_some() {
        Some("Complete")
    } else if condition_true(status, "Failed").is_some() {
        Some("Failed")
    } else {
        None
    }
}

/// The finished Jobs to delete so at most `limit` remain, oldest first.
pub fn beyond_history(jobs: &[&Job], limit: i32) -> Vec<String> {
    let mut sorted: Vec<&&Job> = jobs.iter().collect();
    sorted.sort_by_key(|j| {
        (
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0),
            j.metadata.creation_timestamp.as_ref().map(|t| t.0),
            j.name_any(),
        )
    });
    let excess = sorted.len().saturating_sub(limit.max(0) as usize);
    sorted.iter().take(excess).map(|j| j.name_any()).collect()
}

/// A reference to the CronJob's Job `name`.
fn job_reference(cronjob: &CronJob, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(name.into()),
        namespace: cronjob.namespace(),
        ..ObjectReference::default()
    }
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

async fn publish(shared: &Shared, cronjob: &CronJob, type_: EventType, reason: &str, note: String) {
    publish_related(shared, cronjob, type_, reason, note, None).await;
}

/// Records an event about the owner; `related` names the object it concerns (events about
/// different objects are then kept apart instead of merged into one series).
async fn publish_related(
    shared: &Shared,
    cronjob: &CronJob,
    type_: EventType,
    reason: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    super::pod_control::publish_event(&shared.recorder, cronjob, type_, reason, note, related)
        .await;
}

fn requeue_at(next: Option<Timestamp>, now: Timestamp) -> Action {
    match next {
        Some(next) => {
            let millis = (next.as_millisecond() - now.as_millisecond()).max(0) as u64;
            // A little past the minute, so the schedule has fired when the sync runs.
            Action::requeue(Duration::from_millis(millis + 100))
        }
        None => Action::await_change(),
    }
}

async fn sync(cronjob: &CronJob, shared: &Shared) -> Result<Action, Error> {
    let name = cronjob.name_any();
    let namespace = cronjob.namespace().unwrap_or_default();
    let uid = cronjob.uid().unwrap_or_default();
    let job_api = Api::<Job>::namespaced(shared.ctx.client.clone(), &namespace);
    let api = Api::<CronJob>::namespaced(shared.ctx.client.clone(), &namespace);
    let Some(spec) = cronjob.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let now = Timestamp::now();
    let children = owned_by(&shared.jobs, &namespace, &uid);
    let old_status = cronjob.status.clone().unwrap_or_default();
    let mut status = old_status.clone();

    // The active list follows the Jobs: finished ones leave it, running ones join it.
    let mut active = status.active.clone().unwrap_or_default();
    active.retain(|r| {
        children
            .iter()
            .any(|j| j.metadata.uid == r.uid && finished_as(j).is_none())
    });
    for job in &children {
        let listed = old_status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid == job.metadata.uid);
        match finished_as(job) {
            None if !active.iter().any(|r| r.uid == job.metadata.uid) => {
                active.push(reference(job))
            }
            Some(outcome) if listed => {
                publish(
                    shared,
                    cronjob,
                    EventType::Normal,
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {outcome}",
                        job.name_any()
                    ),
                )
                .await;
            }
            _ => {}
        }
        if finished_as(job) == Some("Complete") {
            if let Some(done) = job.status.as_ref().and_then(|s| s.completion_time.clone()) {
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| t.0 < done.0)
                {
                    status.last_successful_time = Some(done);
                }
            }
        }
    }
    status.active = Some(active);

    let mut action = Action::await_change();
    if cronjob.metadata.deletion_timestamp.is_none() {
        action = schedule_jobs(cronjob, spec, shared, &job_api, &mut status, now).await?;
    }

    // History limits.
    let finished: Vec<&Job> = children
        .iter()
        .map(|j| j.as_ref())
        .filter(|j| finished_as(j).is_some())
        .collect();
    let succeeded: Vec<&Job> = finished
        .iter()
        .copied()
        .filter(|j| finished_as(j) == Some("Complete"))
        .collect();
    let failed: Vec<&Job> = finished
        .iter()
        .copied()
        .filter(|j| finished_as(j) == Some("Failed"))
        .collect();
    let mut prune = Vec::new();
    if let Some(limit) = spec.successful_jobs_history_limit {
        prune.extend(beyond_history(&succeeded, limit));
    }
    if let Some(limit) = spec.failed_jobs_history_limit {
        prune.extend(beyond_history(&failed, limit));
    }
    for job in prune {
        delete_job(shared, cronjob, &job_api, &job).await?;
    }

    if status != old_status {
        let patch = pod_control::status_patch(Some(&old_status), &status);
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict_or_gone(&e) => {
                return Ok(Action::requeue(Duration::from_secs(1)))
            }
            Err(source) => {
                return Err(Error::Status {
                    cronjob: format!("{namespace}/{name}"),
                    source,
                })
            }
        }
    }
    Ok(action)
}

async fn delete_job(
    shared: &Shared,
    cronjob: &CronJob,
    api: &Api<Job>,
    name: &str,
) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            publish_related(
                shared,
                cronjob,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted job {name}"),
                Some(job_reference(cronjob, name)),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteJob {
            job: name.to_string(),
            source,
        }),
    }
}

/// Starts the Job for the latest scheduled time if it is due; returns when to look again.
async fn schedule_jobs(
    cronjob: &CronJob,
    spec: &k8s_openapi::api::batch::v1::CronJobSpec,
    shared: &Shared,
    job_api: &Api<Job>,
    status: &mut CronJobStatus,
    now: Timestamp,
) -> Result<Action, Error> {
    let parsed = match Schedule::parse(&spec.schedule) {
        Ok(parsed) => parsed,
        Err(error) => {
            publish(
                shared,
                cronjob,
                EventType::Warning,
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {error}", spec.schedule),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let zone = match schedule::time_zone(spec.time_zone.as_deref(), &parsed) {
        Ok(zone) => zone,
        Err(error) => {
            publish(
                shared,
                cronjob,
                EventType::Warning,
                "UnknownTimeZone",
                error.to_string(),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    if spec.suspend == Some(true) {
        return Ok(Action::await_change());
    }
    let due = due(&parsed, &zone, earliest(cronjob, now), now);
    if due.missed > TOO_MANY_MISSED {
        publish(shared, cronjob, EventType::Warning, "TooManyMissedTimes", format!("too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew", due.missed)).await;
    }
    let requeue = requeue_at(due.next, now);
    let Some(scheduled) = due.scheduled else {
        return Ok(requeue);
    };
    if let Some(deadline) = spec.starting_deadline_seconds {
        if scheduled.as_second() + deadline < now.as_second() {
            publish(
                shared,
                cronjob,
                EventType::Warning,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled
                        .to_zoned(zone.clone())
                        .strftime("%a, %d %b %Y %H:%M:%S %z")
                ),
            )
            .await;
            return Ok(requeue);
        }
    }
    let name = job_name(&cronjob.name_any(), scheduled);
    let active = status.active.get_or_insert_with(Vec::new);
    let already = active.iter().any(|r| r.name.as_deref() == Some(&name))
        || status
            .last_schedule_time
            .as_ref()
            .is_some_and(|t| t.0 == scheduled);
    if already {
        return Ok(requeue);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            publish(shared, cronjob, EventType::Normal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid".into()).await;
            return Ok(requeue);
        }
        Some("Replace") => {
            for running in std::mem::take(active) {
                if let Some(job) = running.name.as_deref() {
                    delete_job(shared, cronjob, job_api, job).await?;
                }
            }
        }
        _ => {}
    }
    let job = new_job(cronjob, scheduled, &zone);
    let created = match job_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            publish_related(
                shared,
                cronjob,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {name}"),
                Some(job_reference(cronjob, &name)),
            )
            .await;
            created
        }
        // Created before (by an earlier sync whose status write was lost): take it.
        Err(kube::Error::Api(s)) if s.code == 409 => match job_api.get_opt(&name).await {
            Ok(Some(existing))
                if existing
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| Some(&r.uid) == cronjob.metadata.uid.as_ref()) =>
            {
                existing
            }
            _ => return Ok(requeue),
        },
        Err(source) => {
            publish(
                shared,
                cronjob,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {source}"),
            )
            .await;
            return Err(Error::CreateJob { job: name, source });
        }
    };
    if !active.iter().any(|r| r.uid == created.metadata.uid) {
        active.push(reference(&created));
    }
    status.last_schedule_time = Some(Time(scheduled));
    Ok(requeue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobCondition, JobStatus, JobTemplateSpec};
    use std::collections::BTreeMap;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn cronjob(deadline: Option<i64>, last: Option<&str>) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                namespace: Some("ns".into()),
                uid: Some("cj-uid".into()),
                creation_timestamp: Some(Time(at("2024-03-01T10:00:30Z"))),
                ..ObjectMeta::default()
            },
            spec: Some(CronJobSpec {
                schedule: "*/5 * * * *".into(),
                starting_deadline_seconds: deadline,
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "hello".into())])),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                },
                ..CronJobSpec::default()
            }),
            status: Some(CronJobStatus {
                last_schedule_time: last.map(|l| Time(at(l))),
                ..CronJobStatus::default()
            }),
        }
    }

    #[test]
    fn the_latest_missed_time_is_due() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let cj = cronjob(None, None);
        let now = at("2024-03-01T10:17:00Z");
        let due = due(&s, &TimeZone::UTC, earliest(&cj, now), now);
        assert_eq!(due.scheduled, Some(at("2024-03-01T10:15:00Z")));
        assert_eq!(due.missed, 3);
        assert_eq!(due.next, Some(at("2024-03-01T10:20:00Z")));
    }

    #[test]
    fn nothing_is_due_right_after_the_last_run() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let cj = cronjob(None, Some("2024-03-01T10:15:00Z"));
        let now = at("2024-03-01T10:17:00Z");
        let due = due(&s, &TimeZone::UTC, earliest(&cj, now), now);
        assert_eq!(due.scheduled, None);
        assert_eq!(due.next, Some(at("2024-03-01T10:20:00Z")));
    }

    #[test]
    fn the_starting_deadline_bounds_the_look_back() {
        let cj = cronjob(Some(60), None);
        let now = at("2024-03-01T10:17:00Z");
        assert_eq!(earliest(&cj, now), at("2024-03-01T10:16:00Z"));
        let s = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(
            due(&s, &TimeZone::UTC, earliest(&cj, now), now).scheduled,
            None
        );
    }

    #[test]
    fn jobs_are_named_by_minutes_and_annotated() {
        let cj = cronjob(None, None);
        let job = new_job(&cj, at("2024-03-01T10:15:00Z"), &TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("hello-28488135"));
        assert_eq!(
            job.annotations()[SCHEDULED_TIMESTAMP],
            "2024-03-01T10:15:00Z"
        );
        assert_eq!(job.labels()["app"], "hello");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CronJob", Some(true))
        );
    }

    #[test]
    fn history_keeps_the_newest() {
        let job = |name: &str, started: &str| Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: Some(Time(at(started))),
                conditions: Some(vec![JobCondition {
                    type_: "Complete".into(),
                    status: "True".into(),
                    ..JobCondition::default()
                }]),
                ..JobStatus::default()
            }),
        };
        let (a, b, c) = (
            job("a", "2024-03-01T10:00:00Z"),
            job("b", "2024-03-01T10:05:00Z"),
            job("c", "2024-03-01T10:10:00Z"),
        );
        assert_eq!(finished_as(&a), Some("Complete"));
        assert_eq!(beyond_history(&[&c, &a, &b], 1), vec!["a", "b"]);
        assert!(beyond_history(&[&c, &a, &b], 3).is_empty());
        assert_eq!(beyond_history(&[&c, &a, &b], 0).len(), 3);
    }
}
