//! Command-line flags, with upstream kube-apiserver's names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "hakube-apiserver",
    version,
    about = "The hakube Kubernetes API server"
)]
pub struct Options {
    /// Comma-separated etcd endpoints.
    #[arg(long = "etcd-servers", value_delimiter = ',', required = true)]
    pub etcd_servers: Vec<String>,
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    pub etcd_prefix: String,
    /// Events of history the watch cache keeps per resource type, for watches that resume
    /// from a recent resourceVersion (upstream's default is 100, grown dynamically; a fixed,
    /// larger window serves the same purpose here).
    #[arg(long = "default-watch-cache-size", default_value_t = crate::cache::DEFAULT_HISTORY)]
    pub default_watch_cache_size: usize,
    #[arg(long = "etcd-cafile")]
    pub etcd_cafile: Option<String>,
    #[arg(long = "etcd-certfile")]
    pub etcd_certfile: Option<String>,
    #[arg(long = "etcd-keyfile")]
    pub etcd_keyfile: Option<String>,
    /// How often etcd's history is compacted, as a Go duration (`5m0s`, `30s`); 0 disables.
    #[arg(
        long = "etcd-compaction-interval",
        default_value = "5m0s",
        value_parser = parse_duration
    )]
    pub etcd_compaction_interval: Duration,
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The address published in the `kubernetes` endpoints; defaults to the bind address, or
    /// 127.0.0.1 when binding to all interfaces.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Where a self-signed serving certificate is generated when none is given.
    #[arg(long = "cert-dir", default_value = "/var/run/kubernetes")]
    pub cert_dir: PathBuf,
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Static tokens: `token,user,uid,"group1,group2"` per line.
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<String>,
    #[arg(
        long = "service-account-issuer",
        default_value = "https://kubernetes.default.svc.cluster.local"
    )]
    pub service_account_issuer: String,
    /// Public (or private) keys that verify ServiceAccount tokens; repeatable.
    #[arg(long = "service-account-key-file")]
    pub service_account_key_file: Vec<String>,
    #[arg(long = "service-account-signing-key-file")]
    pub service_account_signing_key_file: Option<String>,
    /// Audiences the API accepts in tokens; defaults to the issuer.
    #[arg(long = "api-audiences", value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    #[arg(long = "service-cluster-ip-range", default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,
    #[arg(long = "authorization-mode", default_value = "AlwaysAllow")]
    pub authorization_mode: String,
    /// Lets unauthenticated clients read the health, version and OIDC discovery endpoints.
    #[arg(long = "anonymous-auth", default_value_t = true, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// Read-only requests served at once; more are answered 429. 0 means no limit.
    #[arg(long = "max-requests-inflight", default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Mutating requests served at once; more are answered 429. 0 means no limit.
    #[arg(long = "max-mutating-requests-inflight", default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// Streams one client may have open at once on an HTTP/2 connection: a component's watches
    /// and requests all share one connection.
    #[arg(long = "http2-max-streams-per-connection", default_value_t = 1000)]
    pub http2_max_streams_per_connection: u32,
    /// Log verbosity, as upstream's -v: 0-1 info, 2-4 debug, 5+ trace.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("negative duration {0:?}")]
    Negative(String),
    #[error("duration {0:?} is too long")]
    TooLong(String),
}

/// Parses a duration as Go's `time.ParseDuration` does: decimal numbers, each with a unit
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), as in `5m0s` or `1.5h`; a bare `0` needs none.
/// Negative durations mean nothing for an interval and are refused.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(input.to_string());
    let too_long = || DurationError::TooLong(input.to_string());
    let unsigned = input.strip_prefix('+').unwrap_or(input);
    if unsigned.starts_with('-') {
        return Err(DurationError::Negative(input.to_string()));
    }
    if unsigned == "0" {
        return Ok(Duration::ZERO);
    }
    if unsigned.is_empty() {
        return Err(invalid());
    }
    let mut rest = unsigned;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(invalid());
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "" => return Err(DurationError::MissingUnit(input.to_string())),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: input.to_string(),
                })
            }
        };
        // Only digits are left, so a failed parse can only be an overflow.
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_long())?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
        // Digits past the 18th are below a nanosecond even in hours; like Go, they are dropped.
        let kept = &fraction[..fraction.len().min(18)];
        if !kept.is_empty() {
            let digits: u128 = kept.parse().map_err(|_| invalid())?;
            nanos += digits * unit_nanos / 10u128.pow(kept.len() as u32);
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(too_long)?;
        rest = next;
    }
    // Go's durations are signed 64-bit nanoseconds.
    if total_nanos > i64::MAX as u128 {
        return Err(too_long());
    }
    u64::try_from(total_nanos)
        .map(Duration::from_nanos)
        .map_err(|_| too_long())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let secs = Duration::from_secs;
        assert_eq!(parse_duration("5m0s"), Ok(secs(300)));
        assert_eq!(parse_duration("5m"), Ok(secs(300)));
        assert_eq!(parse_duration("30s"), Ok(secs(30)));
        assert_eq!(parse_duration("1m30s"), Ok(secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+2s"), Ok(secs(2)));
        assert_eq!(parse_duration("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.s"), Ok(secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("1h2m3s4ms5us6ns"),
            Ok(Duration::new(3723, 4_005_006))
        );
        assert_eq!(parse_duration("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(
            parse_duration("0.1234567891234567891234s"),
            Ok(Duration::from_nanos(123_456_789))
        );
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in ["", "+", "s", ".s", "1.2.3s", "h5"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_duration("5"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_duration("5m0"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_duration("5d"),
            Err(DurationError::UnknownUnit { unit, .. }) if unit == "d"
        ));
        assert!(matches!(
            parse_duration("-5s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_duration("3000000h"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn flags_have_upstream_defaults() {
        let opts = Options::try_parse_from(["hakube-apiserver", "--etcd-servers=x"])
            .expect("the defaults parse");
        assert_eq!(opts.etcd_compaction_interval, Duration::from_secs(300));
        assert_eq!(opts.max_requests_inflight, 400);
        assert_eq!(opts.http2_max_streams_per_connection, 1000);
        assert_eq!(opts.max_mutating_requests_inflight, 200);
        let opts = Options::try_parse_from([
            "hakube-apiserver",
            "--etcd-servers=x",
            "--etcd-compaction-interval=0",
            "--max-requests-inflight=0",
        ])
        .expect("the flags parse");
        assert!(opts.etcd_compaction_interval.is_zero());
        assert_eq!(opts.max_requests_inflight, 0);
        assert!(Options::try_parse_from([
            "hakube-apiserver",
            "--etcd-servers=x",
            "--etcd-compaction-interval=5",
        ])
        .is_err());
    }
}
