//! Readiness probes: one check per period; ready after a success, not ready after
//! `failure_threshold` consecutive failures. Until its first success a unit is starting, and
//! it is checked sooner (100 ms, doubling up to the period): whatever waits on it (the next
//! stage of a bring-up) is not held up to a whole period.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::spec::{ProbeCheck, ProbeSpec};
use super::status::UnitView;
use crate::http_client::HttpClient;
use crate::tls::{self, ServerVerification};

/// The first wait between checks of a starting unit.
const STARTING_DELAY: Duration = Duration::from_millis(100);

/// Runs the probe until aborted, recording results in `view` while `instance` is current.
pub async fn run(
    probe: ProbeSpec,
    view: Arc<Mutex<UnitView>>,
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
                starting = Some(delay.saturating_mul(2));
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
    view: &Mutex<UnitView>,
    instance: u64,
    result: Result<(), String>,
    consecutive_failures: &mut u32,
    probe: &ProbeSpec,
) -> bool {
    let mut view = match view.lock() {
        Ok(view) => view,
        Err(poisoned) => poisoned.into_inner(),
    };
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
