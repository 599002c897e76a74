//! Command-line flags of hakube-hostd.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "hakube-hostd",
    version,
    about = "The per-host agent of hakube-operator: files, supervised units, bundles, host facts"
)]
pub struct Options {
    /// Address the gRPC service listens on, e.g. 10.0.0.2:9443.
    #[arg(long)]
    pub listen_address: SocketAddr,

    /// Where hostd keeps its key and certificates, desired units, bundles and unit logs.
    #[arg(long, default_value = "/var/lib/hakube-hostd")]
    pub data_dir: PathBuf,

    /// Serving (and bundle-fetching) certificate. Without it, hostd uses the one it got by
    /// joining, stored in the data directory, and joins if it has none yet.
    #[arg(long, requires_all = ["tls_private_key_file", "client_ca_file"])]
    pub tls_cert_file: Option<PathBuf>,

    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,

    /// CA whose client certificates are accepted; also the CA of the operator's artifact
    /// endpoint and the default CA of HTTPS readiness probes.
    #[arg(long, requires = "tls_cert_file")]
    pub client_ca_file: Option<PathBuf>,

    /// Common name a client certificate must have (repeatable).
    #[arg(
        long = "authorized-client-cn",
        default_value = hakube_hostd_api::OPERATOR_CLIENT_COMMON_NAME
    )]
    pub authorized_client_cns: Vec<String>,

    /// The operator's join endpoint, e.g. https://10.0.0.1:8443/join.
    #[arg(long, requires_all = ["join_token", "join_ca_file"])]
    pub join_url: Option<String>,

    /// One-time join token.
    #[arg(long, env = "HAKUBE_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,

    /// CA to verify the join endpoint with.
    #[arg(long)]
    pub join_ca_file: Option<PathBuf>,

    /// How long to keep retrying the join endpoint while it is unreachable or answers 5xx.
    #[arg(long, default_value_t = 300)]
    pub join_timeout_seconds: u64,

    /// This host's name (the Host object's name, the certificate's CN); default: the kernel's
    /// host name.
    #[arg(long)]
    pub host_name: Option<String>,

    /// An address of this host, put in the certificate request and reported in facts
    /// (repeatable); default: the listen address unless it is unspecified (0.0.0.0, ::).
    #[arg(long = "advertise-address")]
    pub advertise_addresses: Vec<String>,

    /// Absolute path prefix under which files may be written and removed (repeatable);
    /// default: the data directory.
    #[arg(long = "allowed-path")]
    pub allowed_paths: Vec<PathBuf>,

    /// Size in bytes at which a unit's log file is rotated.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub log_max_size: u64,

    /// How many rotated log files to keep per unit (<log>.1 is the newest).
    #[arg(long, default_value_t = 5)]
    pub log_max_files: u32,

    /// Log verbosity: 0-1 info, 2-4 debug, 5+ trace (RUST_LOG overrides).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}
