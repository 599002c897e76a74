//! Unit processes: started in their own process group with output to a file, so they outlive
//! hostd; recognised again by pid and start time from /proc; signalled as a group.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::spec::UnitSpec;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("opening log file {path:?}: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting {program:?}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("started {program:?} but could not read /proc/{pid}/stat")]
    NoProcStat { program: PathBuf, pid: u32 },
}

/// What /proc/<pid>/stat says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub process_group: i32,
    /// Clock ticks after boot; with the pid it names one process for the whole uptime.
    pub start_time_ticks: u64,
}

impl ProcStat {
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses /proc/<pid>/stat. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from the last ')'.
pub fn parse_proc_stat(stat: &str) -> Option<ProcStat> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, pgrp field 5, starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        process_group: fields.get(2)?.parse().ok()?,
        start_time_ticks: fields.get(19)?.parse().ok()?,
    })
}

pub fn read_proc_stat(pid: u32) -> Option<ProcStat> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .as_deref()
        .and_then(parse_proc_stat)
}

/// Whether the process started at `start_time_ticks` with this pid still runs.
pub fn is_running(pid: u32, start_time_ticks: u64) -> bool {
    read_proc_stat(pid)
        .is_some_and(|stat| stat.is_live() && stat.start_time_ticks == start_time_ticks)
}

/// Whether any process other than a zombie is in process group `group`. (Zombies cannot be
/// signalled away, and under an init that does not reap they stay.)
pub fn group_has_live_members(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
            .and_then(read_proc_stat)
            .is_some_and(|stat| stat.is_live() && stat.process_group == group as i32)
    })
}

/// Sends `signal` to every process in group `group`; a group already gone is not an error.
pub fn signal_group(group: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(group) else {
        return;
    };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(group, %signal, "signalling process group: {e}"),
    }
}

/// Sends `signal` to the process `pid` alone; a process already gone is not an error.
pub fn signal_process(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, %signal, "signalling a process: {e}"),
    }
}

/// A started unit process.
pub struct Spawned {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub start_time_ticks: u64,
}

/// Starts the unit's program as the leader of a new process group, with only the spec's
/// environment, stdin from /dev/null, stdout and stderr appended to its log file (appending,
/// so that log rotation can truncate the file under it).
pub fn spawn(spec: &UnitSpec, bundles_dir: &Path) -> Result<Spawned, SpawnError> {
    let program = spec.program(bundles_dir);
    if let Some(dir) = spec.log_file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SpawnError::LogFile {
            path: spec.log_file.clone(),
            source,
        })?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&spec.log_file)
        .map_err(|source| SpawnError::LogFile {
            path: spec.log_file.clone(),
            source,
        })?;
    let log_for_stderr = log.try_clone().map_err(|source| SpawnError::LogFile {
        path: spec.log_file.clone(),
        source,
    })?;
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_stderr))
        .process_group(0)
        // The process must survive hostd: dropping its handle does not kill it.
        .kill_on_drop(false);
    let child = command.spawn().map_err(|source| SpawnError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id().ok_or_else(|| SpawnError::NoProcStat {
        program: program.clone(),
        pid: 0,
    })?;
    // The child exists until it is reaped through `child`, so its stat is readable now.
    let stat = read_proc_stat(pid).ok_or(SpawnError::NoProcStat { program, pid })?;
    Ok(Spawned {
        child,
        pid,
        start_time_ticks: stat.start_time_ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_proc_stat(line),
            Some(ProcStat {
                state: 'S',
                process_group: 4242,
                start_time_ticks: 987654,
            })
        );
        assert_eq!(parse_proc_stat("garbage"), None);
        assert_eq!(parse_proc_stat("1 (x) S 1"), None);
    }

    #[test]
    fn our_own_process_is_running_and_a_wrong_start_time_is_not() {
        let pid = std::process::id();
        let stat = read_proc_stat(pid).unwrap();
        assert!(stat.is_live());
        assert!(is_running(pid, stat.start_time_ticks));
        assert!(!is_running(pid, stat.start_time_ticks + 1));
    }
}
