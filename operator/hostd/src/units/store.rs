//! Desired units on disk, one JSON file per unit in `<data-dir>/units/`, so that a restarted
//! hostd knows what to run and which running processes are already its units.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::backoff::ExitOutcome;
use super::spec::UnitSpec;
use crate::files::{self, FileError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Desired {
    /// Running, or to be restarted.
    Run,
    /// Stopped by StopUnit.
    Stopped,
    /// Exited under a policy that does not restart it.
    Finished { failed: bool },
}

/// A process as recorded when it started: pid and start time together name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    pub start_time_ticks: u64,
    pub start_time_unix_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub spec: UnitSpec,
    pub desired: Desired,
    pub process: Option<ProcessRecord>,
    pub restart_count: u32,
    pub last_exit: Option<ExitOutcome>,
}

fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

pub fn save(dir: &Path, record: &UnitRecord) -> Result<(), FileError> {
    let path = record_path(dir, &record.spec.name);
    let json = serde_json::to_vec_pretty(record).map_err(|e| FileError::Io {
        action: "encoding",
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    files::write_atomically(&path, &json, 0o600).map(|_| ())
}

pub fn delete(dir: &Path, name: &str) -> Result<(), FileError> {
    files::remove_path(&record_path(dir, name)).map(|_| ())
}

/// Every readable record; unreadable ones are logged and left in place for a human.
pub fn load_all(dir: &Path) -> Vec<UnitRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<UnitRecord>(&bytes).map_err(|e| e.to_string())
            }) {
            Ok(record) if path.file_stem() == Some(record.spec.name.as_ref()) => {
                records.push(record)
            }
            Ok(_) => {
                tracing::warn!(path = %path.display(), "unit record names another unit; ignored")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "unreadable unit record, ignored: {e}")
            }
        }
    }
    records.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    records
}
