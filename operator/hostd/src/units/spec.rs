//! A unit's desired state as hostd keeps it: the protocol's `UnitSpec` validated, with defaults
//! filled in and paths resolved, so that two specs meaning the same thing compare equal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hakube_hostd_api::v1 as api;
use serde::{Deserialize, Serialize};

use crate::paths::AllowedPaths;

const DEFAULT_STOP_GRACE_SECONDS: u32 = 10;
const DEFAULT_PROBE_PERIOD_SECONDS: u32 = 2;
const DEFAULT_PROBE_FAILURE_THRESHOLD: u32 = 3;
const DEFAULT_PROBE_TIMEOUT_SECONDS: u32 = 2;
/// Unit names are file names of their records (`<name>.json`), within the usual 255 bytes.
const MAX_UNIT_NAME_LENGTH: usize = 200;
/// The PATH of a unit that sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("unit name {0:?} must match [a-z0-9][a-z0-9._-]* and have at most 200 characters")]
    Name(String),
    #[error("unit {0}: the command is empty")]
    EmptyCommand(String),
    #[error("unit {unit}: bundle version {version:?} is not a valid version name")]
    BundleVersion { unit: String, version: String },
    #[error("unit {unit}: a bundle command must be a relative path without '..', not {command:?}")]
    BundleCommand { unit: String, command: String },
    #[error("unit {unit}: invalid environment variable name {name:?}")]
    EnvName { unit: String, name: String },
    #[error("unit {unit}: {field} contains a NUL byte")]
    Nul { unit: String, field: &'static str },
    #[error("unit {unit}: working directory {dir:?} is not absolute")]
    WorkingDir { unit: String, dir: String },
    #[error("unit {unit}: log file: {reason}")]
    LogFile { unit: String, reason: String },
    #[error("unit {unit}: readiness probe: {reason}")]
    Probe { unit: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeCheck {
    HttpGet {
        url: String,
        insecure_skip_verify: bool,
        ca_file: Option<PathBuf>,
        client_cert_file: Option<PathBuf>,
        client_key_file: Option<PathBuf>,
    },
    TcpConnect {
        address: String,
    },
    Exec {
        command: String,
        args: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub check: ProbeCheck,
    pub period_seconds: u32,
    pub failure_threshold: u32,
    pub timeout_seconds: u32,
}

impl ProbeSpec {
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_seconds.into())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds.into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitSpec {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    /// Ordered, so that the same variables in another order are the same spec.
    pub env: BTreeMap<String, String>,
    pub working_dir: PathBuf,
    pub restart_policy: RestartPolicy,
    pub readiness_probe: Option<ProbeSpec>,
    pub log_file: PathBuf,
    pub bundle_version: Option<String>,
    pub stop_grace_period_seconds: u32,
    /// Sent to the main process to apply a change of `reload_digest` alone (records written
    /// before reloads existed have neither).
    #[serde(default)]
    pub reload_signal: Option<ReloadSignal>,
    #[serde(default)]
    pub reload_digest: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReloadSignal {
    Hangup,
    User1,
    User2,
}

impl ReloadSignal {
    pub fn signal(self) -> nix::sys::signal::Signal {
        match self {
            ReloadSignal::Hangup => nix::sys::signal::Signal::SIGHUP,
            ReloadSignal::User1 => nix::sys::signal::Signal::SIGUSR1,
            ReloadSignal::User2 => nix::sys::signal::Signal::SIGUSR2,
        }
    }
}

/// What a spec's defaults and checks depend on.
pub struct SpecContext<'a> {
    pub data_dir: &'a Path,
    pub allowed_paths: &'a AllowedPaths,
}

pub fn valid_unit_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() <= MAX_UNIT_NAME_LENGTH
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// Bundle versions are directory names: [A-Za-z0-9][A-Za-z0-9._+-]*, at most 128 characters.
pub fn valid_bundle_version(version: &str) -> bool {
    let mut chars = version.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && version.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && !name.contains('\0')
}

impl UnitSpec {
    pub fn from_api(spec: &api::UnitSpec, context: &SpecContext<'_>) -> Result<Self, SpecError> {
        let name = spec.name.clone();
        if !valid_unit_name(&name) {
            return Err(SpecError::Name(name));
        }
        let nul = |field| SpecError::Nul {
            unit: name.clone(),
            field,
        };
        if spec.command.is_empty() {
            return Err(SpecError::EmptyCommand(name));
        }
        if spec.command.contains('\0') {
            return Err(nul("the command"));
        }
        if spec.args.iter().any(|a| a.contains('\0')) {
            return Err(nul("an argument"));
        }
        let bundle_version = if spec.bundle_version.is_empty() {
            None
        } else {
            if !valid_bundle_version(&spec.bundle_version) {
                return Err(SpecError::BundleVersion {
                    unit: name,
                    version: spec.bundle_version.clone(),
                });
            }
            let command = Path::new(&spec.command);
            if command.is_absolute() || spec.command.split('/').any(|s| s == "..") {
                return Err(SpecError::BundleCommand {
                    unit: name,
                    command: spec.command.clone(),
                });
            }
            Some(spec.bundle_version.clone())
        };
        let mut env = BTreeMap::new();
        for (key, value) in &spec.env {
            if !valid_env_name(key) {
                return Err(SpecError::EnvName {
                    unit: name,
                    name: key.clone(),
                });
            }
            if value.contains('\0') {
                return Err(nul("an environment value"));
            }
            env.insert(key.clone(), value.clone());
        }
        env.entry("PATH".to_string())
            .or_insert_with(|| DEFAULT_PATH.to_string());
        let working_dir = if spec.working_dir.is_empty() {
            context.data_dir.to_path_buf()
        } else if Path::new(&spec.working_dir).is_absolute() && !spec.working_dir.contains('\0') {
            PathBuf::from(&spec.working_dir)
        } else {
            return Err(SpecError::WorkingDir {
                unit: name,
                dir: spec.working_dir.clone(),
            });
        };
        let log_file = if spec.log_file.is_empty() {
            context.data_dir.join("logs").join(format!("{name}.log"))
        } else {
            context
                .allowed_paths
                .check(&spec.log_file)
                .map_err(|e| SpecError::LogFile {
                    unit: name.clone(),
                    reason: e.to_string(),
                })?
        };
        let readiness_probe = spec
            .readiness_probe
            .as_ref()
            .map(|probe| probe_from_api(probe, &name))
            .transpose()?;
        Ok(UnitSpec {
            command: spec.command.clone(),
            args: spec.args.clone(),
            env,
            working_dir,
            restart_policy: match api::RestartPolicy::try_from(spec.restart_policy) {
                Ok(api::RestartPolicy::OnFailure) => RestartPolicy::OnFailure,
                Ok(api::RestartPolicy::Never) => RestartPolicy::Never,
                _ => RestartPolicy::Always,
            },
            readiness_probe,
            log_file,
            bundle_version,
            stop_grace_period_seconds: if spec.stop_grace_period_seconds == 0 {
                DEFAULT_STOP_GRACE_SECONDS
            } else {
                spec.stop_grace_period_seconds
            },
            reload_signal: match api::ReloadSignal::try_from(spec.reload_signal) {
                Ok(api::ReloadSignal::Sighup) => Some(ReloadSignal::Hangup),
                Ok(api::ReloadSignal::Sigusr1) => Some(ReloadSignal::User1),
                Ok(api::ReloadSignal::Sigusr2) => Some(ReloadSignal::User2),
                _ => None,
            },
            reload_digest: spec.reload_digest.clone(),
            name,
        })
    }

    pub fn to_api(&self) -> api::UnitSpec {
        api::UnitSpec {
            name: self.name.clone(),
            command: self.command.clone(),
            args: self.args.clone(),
            env: self.env.clone().into_iter().collect(),
            working_dir: self.working_dir.display().to_string(),
            restart_policy: match self.restart_policy {
                RestartPolicy::Always => api::RestartPolicy::Always,
                RestartPolicy::OnFailure => api::RestartPolicy::OnFailure,
                RestartPolicy::Never => api::RestartPolicy::Never,
            } as i32,
            readiness_probe: self.readiness_probe.as_ref().map(probe_to_api),
            log_file: self.log_file.display().to_string(),
            bundle_version: self.bundle_version.clone().unwrap_or_default(),
            stop_grace_period_seconds: self.stop_grace_period_seconds,
            reload_signal: match self.reload_signal {
                None => api::ReloadSignal::None,
                Some(ReloadSignal::Hangup) => api::ReloadSignal::Sighup,
                Some(ReloadSignal::User1) => api::ReloadSignal::Sigusr1,
                Some(ReloadSignal::User2) => api::ReloadSignal::Sigusr2,
            } as i32,
            reload_digest: self.reload_digest.clone(),
        }
    }

    pub fn stop_grace_period(&self) -> Duration {
        Duration::from_secs(self.stop_grace_period_seconds.into())
    }

    /// The program to execute: the command inside its bundle when it has one.
    pub fn program(&self, bundles_dir: &Path) -> PathBuf {
        match &self.bundle_version {
            Some(version) => bundles_dir.join(version).join(&self.command),
            None => PathBuf::from(&self.command),
        }
    }
}

fn optional_path(path: &str) -> Option<PathBuf> {
    (!path.is_empty()).then(|| PathBuf::from(path))
}

fn probe_from_api(probe: &api::ReadinessProbe, unit: &str) -> Result<ProbeSpec, SpecError> {
    let invalid = |reason: String| SpecError::Probe {
        unit: unit.to_string(),
        reason,
    };
    let check = match &probe.check {
        Some(api::readiness_probe::Check::HttpGet(http)) => {
            crate::http_client::parse_url(&http.url).map_err(|e| invalid(e.to_string()))?;
            ProbeCheck::HttpGet {
                url: http.url.clone(),
                insecure_skip_verify: http.insecure_skip_verify,
                ca_file: optional_path(&http.ca_file),
                client_cert_file: optional_path(&http.client_cert_file),
                client_key_file: optional_path(&http.client_key_file),
            }
        }
        Some(api::readiness_probe::Check::TcpConnect(tcp)) => {
            if !tcp.address.contains(':') {
                return Err(invalid(format!(
                    "TCP address {:?} is not host:port",
                    tcp.address
                )));
            }
            ProbeCheck::TcpConnect {
                address: tcp.address.clone(),
            }
        }
        Some(api::readiness_probe::Check::Exec(exec)) => {
            if exec.command.is_empty() {
                return Err(invalid("the exec command is empty".into()));
            }
            ProbeCheck::Exec {
                command: exec.command.clone(),
                args: exec.args.clone(),
            }
        }
        None => return Err(invalid("no check (httpGet, tcpConnect or exec)".into())),
    };
    let or_default = |value: u32, default: u32| if value == 0 { default } else { value };
    Ok(ProbeSpec {
        check,
        period_seconds: or_default(probe.period_seconds, DEFAULT_PROBE_PERIOD_SECONDS),
        failure_threshold: or_default(probe.failure_threshold, DEFAULT_PROBE_FAILURE_THRESHOLD),
        timeout_seconds: or_default(probe.timeout_seconds, DEFAULT_PROBE_TIMEOUT_SECONDS),
    })
}

fn probe_to_api(probe: &ProbeSpec) -> api::ReadinessProbe {
    let path_string = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let check = match &probe.check {
        ProbeCheck::HttpGet {
            url,
            insecure_skip_verify,
            ca_file,
            client_cert_file,
            client_key_file,
        } => api::readiness_probe::Check::HttpGet(api::HttpGetProbe {
            url: url.clone(),
            insecure_skip_verify: *insecure_skip_verify,
            ca_file: path_string(ca_file),
            client_cert_file: path_string(client_cert_file),
            client_key_file: path_string(client_key_file),
        }),
        ProbeCheck::TcpConnect { address } => {
            api::readiness_probe::Check::TcpConnect(api::TcpConnectProbe {
                address: address.clone(),
            })
        }
        ProbeCheck::Exec { command, args } => api::readiness_probe::Check::Exec(api::ExecProbe {
            command: command.clone(),
            args: args.clone(),
        }),
    };
    api::ReadinessProbe {
        check: Some(check),
        period_seconds: probe.period_seconds,
        failure_threshold: probe.failure_threshold,
        timeout_seconds: probe.timeout_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_paths() -> (PathBuf, AllowedPaths) {
        let data_dir = PathBuf::from("/var/lib/hostd-test");
        let allowed = AllowedPaths::new(std::slice::from_ref(&data_dir), &[]);
        (data_dir, allowed)
    }

    fn api_spec() -> api::UnitSpec {
        api::UnitSpec {
            name: "etcd".into(),
            command: "/usr/bin/etcd".into(),
            args: vec!["--name".into(), "cp-1".into()],
            env: [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        }
    }

    fn convert(spec: &api::UnitSpec) -> Result<UnitSpec, SpecError> {
        let (data_dir, allowed) = context_paths();
        UnitSpec::from_api(
            spec,
            &SpecContext {
                data_dir: &data_dir,
                allowed_paths: &allowed,
            },
        )
    }

    #[test]
    fn defaults_are_filled_in() {
        let spec = convert(&api_spec()).unwrap();
        assert_eq!(spec.restart_policy, RestartPolicy::Always);
        assert_eq!(spec.stop_grace_period_seconds, 10);
        assert_eq!(spec.working_dir, PathBuf::from("/var/lib/hostd-test"));
        assert_eq!(
            spec.log_file,
            PathBuf::from("/var/lib/hostd-test/logs/etcd.log")
        );
        assert_eq!(spec.env.get("PATH").map(String::as_str), Some(DEFAULT_PATH));
    }

    #[test]
    fn specs_meaning_the_same_compare_equal() {
        let mut explicit = api_spec();
        explicit.restart_policy = api::RestartPolicy::Always as i32;
        explicit.stop_grace_period_seconds = 10;
        explicit.log_file = "/var/lib/hostd-test/logs/etcd.log".into();
        explicit.env.insert("PATH".into(), DEFAULT_PATH.into());
        assert_eq!(convert(&api_spec()).unwrap(), convert(&explicit).unwrap());

        let mut probe_defaults = api_spec();
        probe_defaults.readiness_probe = Some(api::ReadinessProbe {
            check: Some(api::readiness_probe::Check::TcpConnect(
                api::TcpConnectProbe {
                    address: "127.0.0.1:2379".into(),
                },
            )),
            ..Default::default()
        });
        let mut probe_explicit = probe_defaults.clone();
        if let Some(probe) = probe_explicit.readiness_probe.as_mut() {
            probe.period_seconds = 2;
            probe.failure_threshold = 3;
            probe.timeout_seconds = 2;
        }
        assert_eq!(
            convert(&probe_defaults).unwrap(),
            convert(&probe_explicit).unwrap()
        );
    }

    #[test]
    fn specs_differing_in_what_runs_compare_unequal() {
        let base = convert(&api_spec()).unwrap();
        let mut other_arg = api_spec();
        other_arg.args.push("--debug".into());
        assert_ne!(base, convert(&other_arg).unwrap());
        let mut other_env = api_spec();
        other_env.env.insert("B".into(), "3".into());
        assert_ne!(base, convert(&other_env).unwrap());
        let mut other_policy = api_spec();
        other_policy.restart_policy = api::RestartPolicy::Never as i32;
        assert_ne!(base, convert(&other_policy).unwrap());
    }

    #[test]
    fn the_api_form_round_trips() {
        let spec = convert(&api_spec()).unwrap();
        assert_eq!(convert(&spec.to_api()).unwrap(), spec);
    }

    #[test]
    fn invalid_specs_are_refused() {
        let mut bad_name = api_spec();
        bad_name.name = "Etcd".into();
        assert!(matches!(convert(&bad_name), Err(SpecError::Name(_))));
        let mut escaping_bundle_command = api_spec();
        escaping_bundle_command.bundle_version = "v1.33.0".into();
        escaping_bundle_command.command = "../../bin/sh".into();
        assert!(matches!(
            convert(&escaping_bundle_command),
            Err(SpecError::BundleCommand { .. })
        ));
        let mut log_outside = api_spec();
        log_outside.log_file = "/etc/evil.log".into();
        assert!(matches!(
            convert(&log_outside),
            Err(SpecError::LogFile { .. })
        ));
        let mut bad_env = api_spec();
        bad_env.env.insert("A=B".into(), "x".into());
        assert!(matches!(convert(&bad_env), Err(SpecError::EnvName { .. })));
        let mut no_check = api_spec();
        no_check.readiness_probe = Some(api::ReadinessProbe::default());
        assert!(matches!(convert(&no_check), Err(SpecError::Probe { .. })));
    }

    #[test]
    fn bundle_commands_resolve_inside_their_bundle() {
        let mut spec = api_spec();
        spec.bundle_version = "v1.33.0-hakube.1".into();
        spec.command = "bin/hakube-apiserver".into();
        let spec = convert(&spec).unwrap();
        assert_eq!(
            spec.program(Path::new("/data/bundles")),
            PathBuf::from("/data/bundles/v1.33.0-hakube.1/bin/hakube-apiserver")
        );
    }

    #[test]
    fn names_follow_the_rules() {
        assert!(valid_unit_name("kube-apiserver"));
        assert!(valid_unit_name("etcd.cp-1_a"));
        assert!(!valid_unit_name(""));
        assert!(!valid_unit_name("-x"));
        assert!(!valid_unit_name("a/b"));
        assert!(valid_unit_name(&"a".repeat(200)));
        assert!(!valid_unit_name(&"a".repeat(201)));
        assert!(valid_bundle_version("1.33.0+build.7"));
        assert!(!valid_bundle_version(".hidden"));
        assert!(!valid_bundle_version("a/b"));
    }
}
