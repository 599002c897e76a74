//! Units: processes hostd runs and supervises for the operator.

pub mod backoff;
pub mod logs;
pub mod probe;
pub mod process;
pub mod spec;
pub mod status;
pub mod store;
mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use hakube_hostd_api::v1 as api;
use tokio::sync::{mpsc, oneshot, watch};

use self::spec::UnitSpec;
use self::status::SharedView;
use self::supervisor::{Command, Supervisor};

#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("unit {0:?} does not exist")]
    NotFound(String),
    #[error("unit {unit}: bundle version {version:?} is not present on this host; fetch it first")]
    BundleMissing { unit: String, version: String },
    #[error("unit {unit}: {program:?} does not exist in bundle {version:?}")]
    BundleProgramMissing {
        unit: String,
        version: String,
        program: PathBuf,
    },
    #[error("unit {unit}: saving its state: {reason}")]
    Persist { unit: String, reason: String },
    #[error("unit {0}: its supervisor ended unexpectedly")]
    SupervisorGone(String),
}

/// What every unit's supervisor needs to know about hostd.
#[derive(Debug, Clone)]
pub struct UnitContext {
    pub units_dir: PathBuf,
    pub bundles_dir: PathBuf,
    /// Default CA of HTTPS readiness probes.
    pub cluster_ca_file: Option<PathBuf>,
    pub log_max_size: u64,
    pub log_max_files: u32,
}

struct UnitHandle {
    commands: mpsc::Sender<Command>,
    view: Arc<SharedView>,
    /// One Ensure/Stop/Remove of this unit at a time; true once the unit is removed, for
    /// callers that waited on the lock of a handle that no longer counts.
    operation: tokio::sync::Mutex<bool>,
}

impl UnitHandle {
    fn status(&self) -> api::UnitStatus {
        self.view.lock().to_api()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

pub struct UnitManager {
    context: Arc<UnitContext>,
    units: Mutex<BTreeMap<String, Arc<UnitHandle>>>,
    /// Announces changes of any unit's state, readiness or process, and removals.
    changes: Arc<watch::Sender<()>>,
}

impl UnitManager {
    /// Brings back the units recorded in the units directory: live processes are adopted,
    /// dead ones restarted, stopped ones stay stopped. Needs a Tokio runtime.
    pub fn start(context: UnitContext) -> Result<Self, std::io::Error> {
        std::fs::create_dir_all(&context.units_dir)?;
        let context = Arc::new(context);
        let changes = Arc::new(watch::Sender::new(()));
        let mut units = BTreeMap::new();
        for record in store::load_all(&context.units_dir) {
            let name = record.spec.name.clone();
            let (supervisor, view) =
                Supervisor::from_record(record, context.clone(), changes.clone());
            units.insert(name, spawn_supervisor(supervisor, view));
        }
        tracing::info!(units = units.len(), "units restored");
        Ok(UnitManager {
            context,
            units: Mutex::new(units),
            changes,
        })
    }

    pub async fn ensure(
        &self,
        spec: UnitSpec,
    ) -> Result<(api::EnsureAction, api::UnitStatus), UnitError> {
        if let Some(version) = &spec.bundle_version {
            let bundle = self.context.bundles_dir.join(version);
            if !bundle.is_dir() {
                return Err(UnitError::BundleMissing {
                    unit: spec.name.clone(),
                    version: version.clone(),
                });
            }
            let program = spec.program(&self.context.bundles_dir);
            if !program.is_file() {
                return Err(UnitError::BundleProgramMissing {
                    unit: spec.name.clone(),
                    version: version.clone(),
                    program,
                });
            }
        }
        loop {
            let handle = {
                let mut units = lock(&self.units);
                units
                    .entry(spec.name.clone())
                    .or_insert_with(|| {
                        let (supervisor, view) = Supervisor::new(
                            spec.clone(),
                            self.context.clone(),
                            self.changes.clone(),
                        );
                        spawn_supervisor(supervisor, view)
                    })
                    .clone()
            };
            let removed = handle.operation.lock().await;
            if *removed {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            let command = Command::Ensure {
                spec: Box::new(spec.clone()),
                reply,
            };
            let action = send(&handle, command, answer, &spec.name).await??;
            return Ok((action, handle.status()));
        }
    }

    pub async fn stop(&self, name: &str) -> Result<api::UnitStatus, UnitError> {
        let handle = self.handle(name)?;
        let removed = handle.operation.lock().await;
        if *removed {
            return Err(UnitError::NotFound(name.to_string()));
        }
        let (reply, answer) = oneshot::channel();
        send(&handle, Command::Stop { reply }, answer, name).await??;
        Ok(handle.status())
    }

    /// False when there was no such unit.
    pub async fn remove(&self, name: &str) -> Result<bool, UnitError> {
        let Ok(handle) = self.handle(name) else {
            return Ok(false);
        };
        let mut removed = handle.operation.lock().await;
        if *removed {
            return Ok(false);
        }
        let (reply, answer) = oneshot::channel();
        send(&handle, Command::Remove { reply }, answer, name).await??;
        *removed = true;
        {
            let mut units = lock(&self.units);
            if units.get(name).is_some_and(|h| Arc::ptr_eq(h, &handle)) {
                units.remove(name);
            }
        }
        self.changes.send_replace(());
        Ok(true)
    }

    pub fn list(&self) -> Vec<api::UnitStatus> {
        lock(&self.units).values().map(|h| h.status()).collect()
    }

    /// Changes whenever a unit starts, stops, exits, turns ready or not ready, or is removed.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }

    pub fn log_file(&self, name: &str) -> Result<PathBuf, UnitError> {
        Ok(self.handle(name)?.view.lock().spec.log_file.clone())
    }

    /// Names of the units whose spec runs from bundle `version`.
    pub fn units_using_bundle(&self, version: &str) -> Vec<String> {
        lock(&self.units)
            .iter()
            .filter(|(_, h)| h.view.lock().spec.bundle_version.as_deref() == Some(version))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn handle(&self, name: &str) -> Result<Arc<UnitHandle>, UnitError> {
        lock(&self.units)
            .get(name)
            .cloned()
            .ok_or_else(|| UnitError::NotFound(name.to_string()))
    }
}

fn spawn_supervisor(supervisor: Supervisor, view: Arc<SharedView>) -> Arc<UnitHandle> {
    let (commands, receiver) = mpsc::channel(8);
    tokio::spawn(supervisor.run(receiver));
    Arc::new(UnitHandle {
        commands,
        view,
        operation: tokio::sync::Mutex::new(false),
    })
}

async fn send<T>(
    handle: &UnitHandle,
    command: Command,
    answer: oneshot::Receiver<T>,
    name: &str,
) -> Result<T, UnitError> {
    handle
        .commands
        .send(command)
        .await
        .map_err(|_| UnitError::SupervisorGone(name.to_string()))?;
    answer
        .await
        .map_err(|_| UnitError::SupervisorGone(name.to_string()))
}
