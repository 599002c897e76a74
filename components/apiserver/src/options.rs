//! Command-line flags, with upstream kube-apiserver's names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;

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
    #[arg(long = "etcd-cafile")]
    pub etcd_cafile: Option<String>,
    #[arg(long = "etcd-certfile")]
    pub etcd_certfile: Option<String>,
    #[arg(long = "etcd-keyfile")]
    pub etcd_keyfile: Option<String>,
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
    /// Log verbosity, as upstream's -v: 0-1 info, 2-4 debug, 5+ trace.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}
