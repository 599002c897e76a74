//! Readiness probes: one check per period; ready after a success, not ready after
//! `failure_threshold` consecutive failures. Until its first success a unit is starting, and
//! it is checked sooner (100 ms, growing by a quarter each time up to the period): whatever
//! waits on it (the next stage of a bring-up) learns it is ready at most a quarter of its
//! start-up time late, where doubling waits could nearly double a stage.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use super::spec::{ProbeCheck, ProbeSpec};
use super::status::SharedView;
use crate::http_client::HttpClient;
use crate::tls::{self, ServerVerification};

/// The first wait between checks of a starting unit.
const STARTING_DELAY: Duration = Duration::from_millis(100);

/// The wait after `delay` while a unit is starting: a quarter longer, so a unit that never
/// starts is not checked ten times a second forever.
fn next_starting_delay(delay: Duration) -> Duration {
    delay + delay / 4
}

/// Runs the probe until aborted, recording results in `view` while `instance` is current.
pub async fn run(
    probe: ProbeSpec,
    view: Arc<SharedView>,
    instance: u64,
    cluster_ca_file: Option<PathBuf>,
) {
    let mut consecutive_failures = 0u32;
    let mut starting = Some(STARTING_DELAY);
    loop {
        let result = match tokio::time::timeout(
            probe.timeout(),
            check(&probe.check, cluster_ca_file.as_deref(), probe.timeout()),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {:?}", probe.timeout())),
        };
        let succeeded = result.is_ok();
        if !record(&view, instance, result, &mut consecutive_failures, &probe) {
            return;
        }
        let delay = match starting {
            Some(delay) if !succeeded => {
                starting = Some(next_starting_delay(delay));
                delay.min(probe.period())
            }
            _ => {
                starting = None;
                probe.period()
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// Records one probe result; false when the process probed is not the unit's current one.
fn record(
    view: &SharedView,
    instance: u64,
    result: Result<(), String>,
    consecutive_failures: &mut u32,
    probe: &ProbeSpec,
) -> bool {
    let mut view = view.lock();
    if view.instance != instance {
        return false;
    }
    match result {
        Ok(()) => {
            *consecutive_failures = 0;
            if !view.ready {
                tracing::info!(unit = %view.name, "ready");
            }
            view.ready = true;
            view.ever_ready = true;
            view.probe_message.clear();
        }
        Err(message) => {
            *consecutive_failures = consecutive_failures.saturating_add(1);
            tracing::debug!(unit = %view.name, "readiness probe failed: {message}");
            if *consecutive_failures >= probe.failure_threshold && view.ready {
                tracing::warn!(unit = %view.name, "not ready any more: {message}");
                view.ready = false;
            }
            view.probe_message = format!("readiness probe: {message}");
        }
    }
    true
}

async fn check(
    check: &ProbeCheck,
    cluster_ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<(), String> {
    match check {
        ProbeCheck::HttpGet {
            url,
            insecure_skip_verify,
            ca_file,
            client_cert_file,
            client_key_file,
        } => {
            let tls_config = if url.starts_with("https://") {
                Some(https_settings(
                    *insecure_skip_verify,
                    ca_file.as_deref().or(cluster_ca_file),
                    client_cert_file.as_deref().zip(client_key_file.as_deref()),
                )?)
            } else {
                None
            };
            let response = HttpClient::new(tls_config, timeout)
                .get(url)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("GET {url}: HTTP {status}"))
            }
        }
        ProbeCheck::TcpConnect { address } => tokio::net::TcpStream::connect(address)
            .await
            .map(|_| ())
            .map_err(|e| format!("connecting to {address}: {e}")),
        ProbeCheck::Exec { command, args } => {
            let status = tokio::process::Command::new(command)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // A probe that outlives its timeout is killed when its future is dropped.
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("running {command:?}: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("{command:?} exited with {status}"))
            }
        }
    }
}

fn https_settings(
    insecure: bool,
    ca_file: Option<&Path>,
    identity_files: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let ca_pem = match (insecure, ca_file) {
        (true, _) => None,
        (false, Some(file)) => Some(tls::read_file(file).map_err(|e| e.to_string())?),
        (false, None) => return Err("no CA to verify the server with".into()),
    };
    let identity = identity_files
        .map(|(cert, key)| Ok::<_, tls::TlsError>((tls::read_file(cert)?, tls::read_file(key)?)))
        .transpose()
        .map_err(|e| e.to_string())?;
    let verification = match &ca_pem {
        Some(pem) => ServerVerification::Ca(pem),
        None => ServerVerification::Insecure,
    };
    tls::client_config(
        verification,
        identity
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice())),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When a unit that has not started is checked, from its start, as `run` waits between
    /// failed checks.
    fn check_times(period: Duration, until: Duration) -> Vec<Duration> {
        let (mut now, mut delay, mut times) = (Duration::ZERO, STARTING_DELAY, vec![]);
        while now <= until {
            times.push(now);
            now += delay.min(period);
            delay = next_starting_delay(delay);
        }
        times
    }

    #[test]
    fn a_starting_unit_is_found_ready_at_most_a_quarter_of_its_start_up_late() {
        let checks = check_times(Duration::from_secs(10), Duration::from_secs(60));
        for ready_ms in (1..30_000).step_by(37) {
            let ready = Duration::from_millis(ready_ms);
            let found = checks.iter().find(|t| **t >= ready).copied();
            let latest = ready + ready / 4 + STARTING_DELAY;
            assert!(
                found.is_some_and(|t| t <= latest),
                "ready at {ready:?}, found at {found:?}, later than {latest:?}"
            );
        }
    }

    #[test]
    fn a_unit_that_never_starts_is_checked_once_a_period_in_the_end() {
        let period = Duration::from_secs(10);
        let checks = check_times(period, Duration::from_secs(300));
        let last_gap = checks[checks.len() - 1] - checks[checks.len() - 2];
        assert_eq!(last_gap, period);
        // Not ten checks a second: about thirty in the first minute.
        let first_minute = checks
            .iter()
            .filter(|t| **t < Duration::from_secs(60))
            .count();
        assert!(
            first_minute < 40,
            "{first_minute} checks in the first minute"
        );
    }
}
