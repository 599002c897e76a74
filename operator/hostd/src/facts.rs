//! Host facts for GetFacts: names, addresses, capacity, OS, and the host programs the operator
//! runs from the host's packages (etcd, HAProxy, keepalived).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hakube_hostd_api::v1 as api;

/// The host programs reported, each with the arguments that make it print its version.
const HOST_PROGRAMS: [(&str, &[&str]); 3] = [
    ("etcd", &["--version"]),
    ("haproxy", &["-v"]),
    ("keepalived", &["--version"]),
];
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// GetFacts doubles as the operator's heartbeat; the host programs change only when packages
/// do, so their versions are asked for at most this often.
const PROGRAMS_CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct FactsContext {
    pub host_name: String,
    pub advertise_addresses: Vec<String>,
    pub data_dir: PathBuf,
}

pub struct FactsGatherer {
    context: FactsContext,
    programs: tokio::sync::Mutex<Option<(Instant, Vec<api::HostProgram>)>>,
}

impl FactsGatherer {
    pub fn new(context: FactsContext) -> Self {
        FactsGatherer {
            context,
            programs: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn gather(&self) -> api::Facts {
        facts(&self.context, self.programs().await)
    }

    /// The host programs, asked at once (each is a process to start) unless asked lately.
    /// hostd asks them when it starts, so that the operator's first GetFacts, which comes as
    /// the host joins, does not wait for three processes on every host at once.
    pub async fn programs(&self) -> Vec<api::HostProgram> {
        let mut cached = self.programs.lock().await;
        match &*cached {
            Some((at, programs)) if at.elapsed() < PROGRAMS_CACHE_TTL => programs.clone(),
            _ => {
                let programs = futures::future::join_all(
                    HOST_PROGRAMS
                        .iter()
                        .map(|(name, args)| host_program(name, args)),
                )
                .await;
                *cached = Some((Instant::now(), programs.clone()));
                programs
            }
        }
    }
}

fn facts(context: &FactsContext, programs: Vec<api::HostProgram>) -> api::Facts {
    let (disk_bytes, disk_available_bytes) = disk_space(&context.data_dir);
    api::Facts {
        kernel_hostname: read_trimmed("/proc/sys/kernel/hostname"),
        host_name: context.host_name.clone(),
        addresses: context.advertise_addresses.clone(),
        interface_addresses: interface_addresses(),
        cpu_count: std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(0),
        memory_bytes: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total_bytes(&m))
            .unwrap_or(0),
        disk_bytes,
        disk_available_bytes,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        os: std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|r| os_pretty_name(&r))
            .unwrap_or_else(|| std::env::consts::OS.to_string()),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        architecture: std::env::consts::ARCH.to_string(),
        programs,
        data_dir: context.data_dir.display().to_string(),
    }
}

/// The kernel's host name, for hosts not given one.
pub fn kernel_hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn interface_addresses() -> Vec<api::InterfaceAddress> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut found: Vec<api::InterfaceAddress> = addresses
        .filter_map(|a| {
            let address = a.address?;
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                v4.ip().to_string()
            } else {
                address.as_sockaddr_in6()?.ip().to_string()
            };
            Some(api::InterfaceAddress {
                interface: a.interface_name,
                address: ip,
            })
        })
        .collect();
    found.sort_by(|a, b| (&a.interface, &a.address).cmp(&(&b.interface, &b.address)));
    found
}

fn disk_space(path: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => {
            let fragment = stat.fragment_size();
            (
                stat.blocks().saturating_mul(fragment),
                stat.blocks_available().saturating_mul(fragment),
            )
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "statvfs: {e}");
            (0, 0)
        }
    }
}

pub fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

pub fn os_pretty_name(os_release: &str) -> Option<String> {
    let value = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(value.trim().trim_matches('"').to_string())
}

async fn host_program(name: &str, args: &[&str]) -> api::HostProgram {
    let mut program = api::HostProgram {
        name: name.to_string(),
        ..Default::default()
    };
    let output = tokio::process::Command::new(name)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(VERSION_TIMEOUT, output).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return program,
        Ok(Err(e)) => {
            tracing::warn!(program = name, "asking for its version: {e}");
            program.present = true;
            return program;
        }
        Err(_) => {
            program.present = true;
            program.version_output = format!("no answer within {VERSION_TIMEOUT:?}");
            return program;
        }
    };
    program.present = true;
    // keepalived prints its version on stderr.
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if let Some((version, line)) = parse_version(&text) {
        program.version = version;
        program.version_output = line;
    } else {
        program.version_output = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
    }
    program
}

/// The first version-looking word of the output ("3.4.23", "v2.2.7", "2.6.12-1+deb12u1"),
/// reduced to its upstream part ("3.4.23", "2.2.7", "2.6.12"), with the line it is on.
pub fn parse_version(output: &str) -> Option<(String, String)> {
    for line in output.lines() {
        for word in line.split_whitespace() {
            let word = word.trim_end_matches([',', ';', ')']);
            let candidate = word.strip_prefix('v').unwrap_or(word);
            let upstream = candidate.split(['-', '+', '~']).next().unwrap_or(candidate);
            let looks_like_version = upstream.contains('.')
                && upstream.starts_with(|c: char| c.is_ascii_digit())
                && upstream.chars().all(|c| c.is_ascii_digit() || c == '.');
            if looks_like_version {
                return Some((upstream.to_string(), line.trim().to_string()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_the_host_programs_are_recognised() {
        let etcd = "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8\n";
        assert_eq!(
            parse_version(etcd),
            Some(("3.4.23".into(), "etcd Version: 3.4.23".into()))
        );
        let haproxy = "HAProxy version 2.6.12-1+deb12u1 2023/12/16 - https://haproxy.org/\nStatus: long-term supported branch";
        assert_eq!(parse_version(haproxy).unwrap().0, "2.6.12");
        let keepalived =
            "\nKeepalived v2.2.7 (01/16,2022)\n\nCopyright(C) 2001-2022 Alexandre Cassen";
        assert_eq!(parse_version(keepalived).unwrap().0, "2.2.7");
        assert_eq!(parse_version("no version here 2023/12/16"), None);
    }

    #[test]
    fn meminfo_and_os_release_are_read() {
        assert_eq!(
            mem_total_bytes("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24576000 * 1024)
        );
        assert_eq!(
            os_pretty_name(
                "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"
            ),
            Some("Debian GNU/Linux 12 (bookworm)".into())
        );
    }
}
