//! The flags every control-plane component accepts, with upstream's names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Upstream's duration flags take Go durations (`15s`, `500ms`, `1m`); plain numbers are seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit in {text:?}")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `--leader-elect` and its timings.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionArgs {
    /// Start a leader election client and gain leadership before executing the main loop.
    #[arg(long = "leader-elect", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long non-leader candidates wait after observing a renewal before taking the lease.
    #[arg(long = "leader-elect-lease-duration", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a renewal before it gives up leadership.
    #[arg(long = "leader-elect-renew-deadline", default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    /// How long candidates wait between attempts to acquire or renew.
    #[arg(long = "leader-elect-retry-period", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// The namespace of the Lease object used for locking.
    #[arg(
        long = "leader-elect-resource-namespace",
        default_value = "kube-system"
    )]
    pub resource_namespace: String,
    /// The name of the Lease object used for locking (the component's name when unset).
    #[arg(long = "leader-elect-resource-name")]
    pub resource_name: Option<String>,
}

/// `--bind-address`, `--secure-port` and the serving certificate of `/healthz` and `/metrics`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServingArgs {
    /// The address to serve on.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The HTTPS port for /healthz and /metrics; 0 disables serving (component default when unset).
    #[arg(long = "secure-port")]
    pub secure_port: Option<u16>,
    /// The serving certificate; a self-signed one is generated when unset.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving certificate's private key.
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,
}

/// All flags shared by control-plane components.
#[derive(Debug, Clone, clap::Args)]
pub struct ComponentArgs {
    /// Path to a kubeconfig; in-cluster or the default kubeconfig when unset.
    #[arg(long = "kubeconfig")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    #[command(flatten)]
    pub serving: ServingArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        component: ComponentArgs,
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn upstream_defaults_and_flag_forms() {
        let flags = Flags::parse_from(["c"]);
        let le = &flags.component.leader_election;
        assert!(le.leader_elect);
        assert_eq!(le.lease_duration, Duration::from_secs(15));
        assert_eq!(le.renew_deadline, Duration::from_secs(10));
        assert_eq!(le.retry_period, Duration::from_secs(2));
        assert_eq!(le.resource_namespace, "kube-system");
        let flags = Flags::parse_from(["c", "--leader-elect=false", "--secure-port=0"]);
        assert!(!flags.component.leader_election.leader_elect);
        assert_eq!(flags.component.serving.secure_port, Some(0));
        let flags = Flags::parse_from(["c", "--leader-elect", "--kubeconfig", "/k"]);
        assert!(flags.component.leader_election.leader_elect);
        assert_eq!(flags.component.kubeconfig, Some(PathBuf::from("/k")));
    }
}
