//! What is known about a unit right now, shared between its supervisor, its readiness probe
//! and the readers of ListUnits.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use hakube_hostd_api::v1 as api;
use tokio::sync::watch;

use super::backoff::ExitOutcome;
use super::spec::UnitSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    BackingOff,
    Stopped,
    Failed,
}

#[derive(Debug, Clone)]
pub struct UnitView {
    pub name: String,
    pub spec: UnitSpec,
    pub phase: Phase,
    /// Counts started processes; a probe of an older instance must not touch the view.
    pub instance: u64,
    pub pid: u32,
    pub restart_count: u32,
    pub last_exit: Option<ExitOutcome>,
    pub start_time_unix_ms: i64,
    pub ready: bool,
    /// The readiness probe passed at least once since the process started.
    pub ever_ready: bool,
    pub adopted: bool,
    /// Why the unit is not running, when something went wrong.
    pub message: String,
    pub probe_message: String,
}

impl UnitView {
    pub fn new(spec: UnitSpec) -> Self {
        UnitView {
            name: spec.name.clone(),
            spec,
            phase: Phase::Stopped,
            instance: 0,
            pid: 0,
            restart_count: 0,
            last_exit: None,
            start_time_unix_ms: 0,
            ready: false,
            ever_ready: false,
            adopted: false,
            message: String::new(),
            probe_message: String::new(),
        }
    }

    pub fn state(&self) -> api::UnitState {
        match self.phase {
            Phase::Running if self.spec.readiness_probe.is_none() => api::UnitState::Running,
            Phase::Running if self.ready => api::UnitState::Ready,
            Phase::Running if self.ever_ready => api::UnitState::Running,
            Phase::Running => api::UnitState::Starting,
            Phase::BackingOff => api::UnitState::BackingOff,
            Phase::Stopped => api::UnitState::Stopped,
            Phase::Failed => api::UnitState::Failed,
        }
    }

    /// What a watcher of the host's units cares about: state, readiness and process.
    fn outline(&self) -> (api::UnitState, bool, u32) {
        (self.state(), self.is_ready(), self.pid)
    }

    /// Without a probe, a running unit counts as ready.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Running && (self.spec.readiness_probe.is_none() || self.ready)
    }

    pub fn to_api(&self) -> api::UnitStatus {
        let message = if self.phase == Phase::Running && !self.is_ready() {
            self.probe_message.clone()
        } else {
            self.message.clone()
        };
        api::UnitStatus {
            name: self.name.clone(),
            state: self.state() as i32,
            pid: self.pid,
            restart_count: self.restart_count,
            last_exit_code: match self.last_exit {
                Some(ExitOutcome::Code(code)) => Some(code),
                _ => None,
            },
            last_exit_signal: match self.last_exit {
                Some(ExitOutcome::Signal(signal)) => Some(signal),
                _ => None,
            },
            start_time_unix_ms: self.start_time_unix_ms,
            ready: self.is_ready(),
            message,
            adopted: self.adopted,
            spec: Some(self.spec.to_api()),
        }
    }
}

/// A unit's view as its supervisor, its probe and the readers share it. Whoever changes what
/// the unit's life looks like from outside (its state, readiness or process) announces it on
/// `changes`, which every unit of the host shares: WatchUnits sends the units again then.
pub struct SharedView {
    view: Mutex<UnitView>,
    changes: Arc<watch::Sender<()>>,
}

impl SharedView {
    pub fn new(view: UnitView, changes: Arc<watch::Sender<()>>) -> Self {
        SharedView {
            view: Mutex::new(view),
            changes,
        }
    }

    pub fn lock(&self) -> ViewGuard<'_> {
        let view = super::lock(&self.view);
        let before = view.outline();
        ViewGuard {
            view,
            before,
            changes: &self.changes,
        }
    }
}

/// The view, locked; announces a change of the unit's outline when released.
pub struct ViewGuard<'a> {
    view: MutexGuard<'a, UnitView>,
    before: (api::UnitState, bool, u32),
    changes: &'a watch::Sender<()>,
}

impl Deref for ViewGuard<'_> {
    type Target = UnitView;

    fn deref(&self) -> &UnitView {
        &self.view
    }
}

impl DerefMut for ViewGuard<'_> {
    fn deref_mut(&mut self) -> &mut UnitView {
        &mut self.view
    }
}

impl Drop for ViewGuard<'_> {
    fn drop(&mut self) {
        if self.view.outline() != self.before {
            self.changes.send_replace(());
        }
    }
}
