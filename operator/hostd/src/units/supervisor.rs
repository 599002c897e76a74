//! One task per unit: starts its process, watches it exit, restarts it with back-off, probes
//! its readiness, rotates its log, and carries out Ensure, Stop and Remove one at a time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hakube_hostd_api::v1::EnsureAction;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::backoff::{should_restart, Backoff, ExitOutcome};
use super::spec::UnitSpec;
use super::status::{Phase, SharedView, UnitView, ViewGuard};
use super::store::{self, Desired, ProcessRecord, UnitRecord};
use super::{logs, probe, process, UnitContext, UnitError};

/// How often an adopted process (not our child, so no exit notification) is looked at.
const ADOPTED_POLL: Duration = Duration::from_millis(500);
/// How often stopping looks whether the process group is gone.
const STOP_POLL: Duration = Duration::from_millis(100);
/// How long to wait for a process group to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(1);

pub enum Command {
    Ensure {
        spec: Box<UnitSpec>,
        reply: oneshot::Sender<Result<EnsureAction, UnitError>>,
    },
    Stop {
        reply: oneshot::Sender<Result<(), UnitError>>,
    },
    Remove {
        reply: oneshot::Sender<Result<(), UnitError>>,
    },
}

struct RunningProcess {
    pid: u32,
    start_time_ticks: u64,
    started_at: SystemTime,
    /// `None` for a process adopted from an earlier hostd.
    child: Option<tokio::process::Child>,
    probe: Option<JoinHandle<()>>,
}

impl RunningProcess {
    fn record(&self) -> ProcessRecord {
        ProcessRecord {
            pid: self.pid,
            start_time_ticks: self.start_time_ticks,
            start_time_unix_ms: unix_ms(self.started_at),
        }
    }

    fn stop_probe(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
    }

    /// Resolves when the process has exited (cancel-safe).
    async fn exited(&mut self) -> ExitOutcome {
        match &mut self.child {
            Some(child) => match child.wait().await {
                Ok(status) => exit_outcome(status),
                Err(e) => {
                    tracing::warn!(pid = self.pid, "waiting for the process: {e}");
                    ExitOutcome::Unknown
                }
            },
            None => loop {
                if !process::is_running(self.pid, self.start_time_ticks) {
                    return ExitOutcome::Unknown;
                }
                tokio::time::sleep(ADOPTED_POLL).await;
            },
        }
    }

    /// SIGTERM to the process group; SIGKILL to what is left of it after `grace`.
    async fn terminate(&mut self, grace: Duration) -> ExitOutcome {
        self.stop_probe();
        process::signal_group(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while process::group_has_live_members(self.pid) && Instant::now() < deadline {
            self.reap();
            tokio::time::sleep(STOP_POLL).await;
        }
        if process::group_has_live_members(self.pid) {
            tracing::warn!(
                pid = self.pid,
                "process group still running {grace:?} after SIGTERM; sending SIGKILL"
            );
            process::signal_group(self.pid, Signal::SIGKILL);
            let deadline = Instant::now() + KILL_WAIT;
            while process::group_has_live_members(self.pid) && Instant::now() < deadline {
                self.reap();
                tokio::time::sleep(STOP_POLL).await;
            }
        }
        match &mut self.child {
            Some(child) => match tokio::time::timeout(KILL_WAIT, child.wait()).await {
                Ok(Ok(status)) => exit_outcome(status),
                _ => ExitOutcome::Unknown,
            },
            None => ExitOutcome::Unknown,
        }
    }

    /// Reaps our child if it exited, so that it stops counting as a group member.
    fn reap(&mut self) {
        if let Some(child) = &mut self.child {
            // An error here means there is nothing to reap.
            let _ = child.try_wait();
        }
    }
}

fn exit_outcome(status: std::process::ExitStatus) -> ExitOutcome {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitOutcome::Code(code),
        (None, Some(signal)) => ExitOutcome::Signal(signal),
        (None, None) => ExitOutcome::Unknown,
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

enum State {
    /// Created by EnsureUnit; starts on its first Ensure command.
    New,
    Running(Box<RunningProcess>),
    BackingOff {
        until: Instant,
    },
    Stopped,
    Finished {
        failed: bool,
    },
}

enum Event {
    Exited(ExitOutcome),
    Housekeeping,
    RestartDue,
    Command(Option<Command>),
}

pub struct Supervisor {
    spec: UnitSpec,
    state: State,
    backoff: Backoff,
    restart_count: u32,
    last_exit: Option<ExitOutcome>,
    view: Arc<SharedView>,
    context: Arc<UnitContext>,
}

impl Supervisor {
    /// A unit EnsureUnit just asked for; it starts on the Ensure command that follows.
    pub fn new(
        spec: UnitSpec,
        context: Arc<UnitContext>,
        changes: Arc<watch::Sender<()>>,
    ) -> (Self, Arc<SharedView>) {
        let view = Arc::new(SharedView::new(UnitView::new(spec.clone()), changes));
        let supervisor = Supervisor {
            spec,
            state: State::New,
            backoff: Backoff::default(),
            restart_count: 0,
            last_exit: None,
            view: view.clone(),
            context,
        };
        (supervisor, view)
    }

    /// A unit recorded by an earlier hostd: its live process is adopted, a dead one restarted.
    pub fn from_record(
        record: UnitRecord,
        context: Arc<UnitContext>,
        changes: Arc<watch::Sender<()>>,
    ) -> (Self, Arc<SharedView>) {
        let (mut supervisor, view) = Supervisor::new(record.spec, context, changes);
        supervisor.restart_count = record.restart_count;
        supervisor.last_exit = record.last_exit;
        match record.desired {
            Desired::Stopped => supervisor.enter_stopped(),
            Desired::Finished { failed } => supervisor.enter_finished(failed),
            Desired::Run => match record.process {
                Some(recorded) if process::is_running(recorded.pid, recorded.start_time_ticks) => {
                    supervisor.adopt(recorded)
                }
                recorded => {
                    tracing::info!(
                        unit = %supervisor.spec.name,
                        "not running when hostd started; starting it"
                    );
                    if recorded.is_some() {
                        supervisor.restart_count = supervisor.restart_count.saturating_add(1);
                    }
                    supervisor.start();
                }
            },
        }
        (supervisor, view)
    }

    fn view(&self) -> ViewGuard<'_> {
        self.view.lock()
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_PERIOD);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = match &mut self.state {
                State::Running(running) => tokio::select! {
                    outcome = running.exited() => Event::Exited(outcome),
                    _ = housekeeping.tick() => Event::Housekeeping,
                    command = commands.recv() => Event::Command(command),
                },
                State::BackingOff { until } => {
                    let until = *until;
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => Event::RestartDue,
                        command = commands.recv() => Event::Command(command),
                    }
                }
                State::New | State::Stopped | State::Finished { .. } => {
                    Event::Command(commands.recv().await)
                }
            };
            match event {
                Event::Exited(outcome) => self.on_exit(outcome),
                Event::Housekeeping => self.rotate_log(),
                Event::RestartDue => {
                    self.restart_count = self.restart_count.saturating_add(1);
                    self.start();
                }
                // hostd is shutting down: the process keeps running, to be adopted later.
                Event::Command(None) => return,
                Event::Command(Some(command)) => {
                    if self.handle(command).await {
                        return;
                    }
                }
            }
        }
    }

    /// Carries out a command; true when the unit is removed and the task should end.
    async fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Ensure { spec, reply } => {
                let action = self.ensure(*spec).await;
                let result = self.persist().map(|()| action);
                // The caller may have gone away; the unit is ensured regardless.
                let _ = reply.send(result);
                false
            }
            Command::Stop { reply } => {
                self.stop_process().await;
                self.enter_stopped();
                let _ = reply.send(self.persist());
                false
            }
            Command::Remove { reply } => {
                self.stop_process().await;
                let result = store::delete(&self.context.units_dir, &self.spec.name).map_err(|e| {
                    UnitError::Persist {
                        unit: self.spec.name.clone(),
                        reason: e.to_string(),
                    }
                });
                tracing::info!(unit = %self.spec.name, "removed");
                let _ = reply.send(result);
                true
            }
        }
    }

    async fn ensure(&mut self, spec: UnitSpec) -> EnsureAction {
        if matches!(self.state, State::New) {
            self.spec = spec;
            tracing::info!(unit = %self.spec.name, "created");
            self.start();
            return EnsureAction::Created;
        }
        if spec == self.spec {
            if matches!(self.state, State::Stopped) {
                self.backoff = Backoff::default();
                self.start();
                return EnsureAction::Started;
            }
            return EnsureAction::Unchanged;
        }
        if let (Some(signal), State::Running(running)) =
            (reload_signal(&self.spec, &spec), &self.state)
        {
            tracing::info!(unit = %self.spec.name, %signal, "configuration changed; reloading");
            process::signal_process(running.pid, signal);
            self.spec = spec;
            self.view().spec = self.spec.clone();
            self.persist_or_log();
            return EnsureAction::Reloaded;
        }
        tracing::info!(unit = %self.spec.name, "spec changed; restarting");
        self.stop_process().await;
        self.spec = spec;
        self.view().spec = self.spec.clone();
        self.backoff = Backoff::default();
        self.restart_count = 0;
        self.last_exit = None;
        self.start();
        EnsureAction::Restarted
    }

    fn start(&mut self) {
        let instance = {
            let mut view = self.view();
            view.instance += 1;
            view.instance
        };
        match process::spawn(&self.spec, &self.context.bundles_dir) {
            Ok(spawned) => {
                tracing::info!(unit = %self.spec.name, pid = spawned.pid, "started");
                let running = RunningProcess {
                    pid: spawned.pid,
                    start_time_ticks: spawned.start_time_ticks,
                    started_at: SystemTime::now(),
                    child: Some(spawned.child),
                    probe: None,
                };
                self.enter_running(running, instance, false);
            }
            Err(e) => {
                tracing::warn!(unit = %self.spec.name, "{e}");
                self.view().message = e.to_string();
                self.after_exit(ExitOutcome::Unknown, Duration::ZERO);
            }
        }
        self.persist_or_log();
    }

    fn adopt(&mut self, recorded: ProcessRecord) {
        tracing::info!(unit = %self.spec.name, pid = recorded.pid, "adopted running process");
        let instance = {
            let mut view = self.view();
            view.instance += 1;
            view.instance
        };
        let started_at = UNIX_EPOCH
            + Duration::from_millis(u64::try_from(recorded.start_time_unix_ms).unwrap_or(0));
        let running = RunningProcess {
            pid: recorded.pid,
            start_time_ticks: recorded.start_time_ticks,
            started_at,
            child: None,
            probe: None,
        };
        self.enter_running(running, instance, true);
    }

    fn enter_running(&mut self, mut running: RunningProcess, instance: u64, adopted: bool) {
        if let Some(probe_spec) = self.spec.readiness_probe.clone() {
            running.probe = Some(tokio::spawn(probe::run(
                probe_spec,
                self.view.clone(),
                instance,
                self.context.cluster_ca_file.clone(),
            )));
        }
        {
            let mut view = self.view();
            view.phase = Phase::Running;
            view.pid = running.pid;
            view.start_time_unix_ms = unix_ms(running.started_at);
            view.restart_count = self.restart_count;
            view.last_exit = self.last_exit;
            view.ready = false;
            view.ever_ready = false;
            view.adopted = adopted;
            view.message.clear();
            view.probe_message = "readiness probe has not passed yet".into();
        }
        self.state = State::Running(Box::new(running));
    }

    fn on_exit(&mut self, outcome: ExitOutcome) {
        let State::Running(mut running) = std::mem::replace(&mut self.state, State::Stopped) else {
            return;
        };
        running.stop_probe();
        // Whatever the unit left behind in its group would hold ports and files of the next run.
        if process::group_has_live_members(running.pid) {
            process::signal_group(running.pid, Signal::SIGKILL);
        }
        let ran_for = running.started_at.elapsed().unwrap_or(Duration::ZERO);
        tracing::warn!(unit = %self.spec.name, pid = running.pid, ?outcome, ?ran_for, "exited");
        self.last_exit = Some(outcome);
        {
            let mut view = self.view();
            view.last_exit = Some(outcome);
            view.message = match outcome {
                ExitOutcome::Unknown => "exited; exit status unknown (adopted process)".into(),
                _ => String::new(),
            };
        }
        self.after_exit(outcome, ran_for);
        self.persist_or_log();
    }

    /// Back-off or a final state, by the restart policy.
    fn after_exit(&mut self, outcome: ExitOutcome, ran_for: Duration) {
        {
            let mut view = self.view();
            view.pid = 0;
            view.ready = false;
            view.adopted = false;
            view.restart_count = self.restart_count;
        }
        if should_restart(self.spec.restart_policy, outcome) {
            let delay = self.backoff.delay_after_exit(ran_for);
            tracing::info!(unit = %self.spec.name, "restarting in {delay:?}");
            self.state = State::BackingOff {
                until: Instant::now() + delay,
            };
            self.view().phase = Phase::BackingOff;
        } else {
            self.enter_finished(!outcome.succeeded());
        }
    }

    fn enter_stopped(&mut self) {
        self.state = State::Stopped;
        let mut view = self.view();
        view.phase = Phase::Stopped;
        view.pid = 0;
        view.ready = false;
        view.adopted = false;
        view.restart_count = self.restart_count;
        view.last_exit = self.last_exit;
    }

    fn enter_finished(&mut self, failed: bool) {
        self.state = State::Finished { failed };
        let mut view = self.view();
        view.phase = if failed {
            Phase::Failed
        } else {
            Phase::Stopped
        };
        view.pid = 0;
        view.ready = false;
        view.restart_count = self.restart_count;
        view.last_exit = self.last_exit;
    }

    /// Stops the running process, if any, gracefully.
    async fn stop_process(&mut self) {
        if let State::Running(running) = &mut self.state {
            tracing::info!(unit = %self.spec.name, pid = running.pid, "stopping");
            let outcome = running.terminate(self.spec.stop_grace_period()).await;
            self.last_exit = Some(outcome);
            self.view().last_exit = Some(outcome);
        }
        // Stopping also ends a back-off: nothing is to be restarted now.
        self.state = State::Stopped;
        let mut view = self.view();
        view.pid = 0;
        view.ready = false;
        view.adopted = false;
    }

    fn rotate_log(&self) {
        match logs::rotate_if_larger(
            &self.spec.log_file,
            self.context.log_max_size,
            self.context.log_max_files,
        ) {
            Ok(true) => tracing::debug!(unit = %self.spec.name, "log rotated"),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                unit = %self.spec.name,
                log = %self.spec.log_file.display(),
                "rotating the log: {e}"
            ),
        }
    }

    fn record(&self) -> UnitRecord {
        let (desired, process) = match &self.state {
            State::New | State::BackingOff { .. } => (Desired::Run, None),
            State::Running(running) => (Desired::Run, Some(running.record())),
            State::Stopped => (Desired::Stopped, None),
            State::Finished { failed } => (Desired::Finished { failed: *failed }, None),
        };
        UnitRecord {
            spec: self.spec.clone(),
            desired,
            process,
            restart_count: self.restart_count,
            last_exit: self.last_exit,
        }
    }

    fn persist(&self) -> Result<(), UnitError> {
        store::save(&self.context.units_dir, &self.record()).map_err(|e| UnitError::Persist {
            unit: self.spec.name.clone(),
            reason: e.to_string(),
        })
    }

    fn persist_or_log(&self) {
        if let Err(e) = self.persist() {
            tracing::error!("{e}");
            self.view().message = e.to_string();
        }
    }
}

/// The signal that applies `next` to a process running `current`, when they differ only in
/// their reload digest and the unit has a reload signal.
fn reload_signal(current: &UnitSpec, next: &UnitSpec) -> Option<Signal> {
    let signal = next.reload_signal?.signal();
    let same_otherwise = UnitSpec {
        reload_digest: next.reload_digest.clone(),
        ..current.clone()
    } == *next;
    same_otherwise.then_some(signal)
}
