//! hakube-controller-manager's flags: upstream kube-controller-manager's names and defaults.

use std::path::PathBuf;
use std::time::Duration;

use hakube_runtime::options::parse_duration;
use hakube_runtime::ComponentArgs;

/// kube-controller-manager's default secure port.
pub const DEFAULT_SECURE_PORT: u16 = 10257;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "hakube-controller-manager",
    about = "Runs the core control loops that move the cluster towards its declared state"
)]
pub struct Options {
    /// Controllers to enable: '*' enables all on-by-default controllers, 'foo' enables foo,
    /// '-foo' disables foo.
    #[arg(long = "controllers", value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,

    #[command(flatten)]
    pub component: ComponentArgs,

    #[command(flatten)]
    pub concurrency: Concurrency,

    #[command(flatten)]
    pub node: NodeOptions,

    /// The CIDR range of pods in the cluster (node IPAM hands out subnets of it).
    #[arg(long = "cluster-cidr")]
    pub cluster_cidr: Option<String>,
    /// Whether node IPAM allocates each node's podCIDR from `--cluster-cidr`.
    #[arg(long = "allocate-node-cidrs", default_value_t = false, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub allocate_node_cidrs: bool,
    /// The prefix length of each node's podCIDR (default 24 for IPv4, 64 for IPv6).
    #[arg(long = "node-cidr-mask-size")]
    pub node_cidr_mask_size: Option<u8>,
    /// The prefix length of each node's IPv4 podCIDR in a dual-stack cluster.
    #[arg(long = "node-cidr-mask-size-ipv4")]
    pub node_cidr_mask_size_ipv4: Option<u8>,
    /// The prefix length of each node's IPv6 podCIDR in a dual-stack cluster.
    #[arg(long = "node-cidr-mask-size-ipv6")]
    pub node_cidr_mask_size_ipv6: Option<u8>,
    /// The Service cluster IP range (node IPAM never hands it out).
    #[arg(long = "service-cluster-ip-range")]
    pub service_cluster_ip_range: Option<String>,

    /// Terminated pods kept before the pod garbage collector deletes the oldest (0 disables).
    #[arg(long = "terminated-pod-gc-threshold", default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector looks (upstream's fixed 20 s; hidden, for tests).
    #[arg(long = "pod-gc-check-period", default_value = "20s", value_parser = parse_duration, hide = true)]
    pub pod_gc_check_period: Duration,
    /// How long a pod's node must stay missing before its pods are collected (upstream's fixed
    /// 40 s; hidden, for tests).
    #[arg(long = "pod-gc-quarantine-time", default_value = "40s", value_parser = parse_duration, hide = true)]
    pub pod_gc_quarantine_time: Duration,

    /// The cluster CA bundle that the root-ca publisher puts into every namespace's
    /// `kube-root-ca.crt` ConfigMap (the client's CA when unset).
    #[arg(long = "root-ca-file")]
    pub root_ca_file: Option<PathBuf>,

    /// How often the persistent volume binder resyncs volumes and claims.
    #[arg(long = "pvclaimbinder-sync-period", default_value = "15s", value_parser = parse_duration)]
    pub pvclaimbinder_sync_period: Duration,
    /// How often resource quota usage is fully recalculated.
    #[arg(long = "resource-quota-sync-period", default_value = "5m", value_parser = parse_duration)]
    pub resource_quota_sync_period: Duration,
    /// The most endpoints one EndpointSlice holds.
    #[arg(long = "max-endpoints-per-slice", default_value_t = 100)]
    pub max_endpoints_per_slice: usize,
    /// How often namespace lifecycle updates are resynced.
    #[arg(long = "namespace-sync-period", default_value = "5m", value_parser = parse_duration)]
    pub namespace_sync_period: Duration,
}

/// Objects each controller syncs at once (`--concurrent-*-syncs`).
#[derive(Debug, Clone, clap::Args)]
pub struct Concurrency {
    #[arg(long = "concurrent-deployment-syncs", default_value_t = 5)]
    pub deployment: u16,
    #[arg(long = "concurrent-replicaset-syncs", default_value_t = 5)]
    pub replicaset: u16,
    #[arg(long = "concurrent-rc-syncs", default_value_t = 5)]
    pub replicationcontroller: u16,
    #[arg(long = "concurrent-statefulset-syncs", default_value_t = 5)]
    pub statefulset: u16,
    #[arg(long = "concurrent-daemonset-syncs", default_value_t = 2)]
    pub daemonset: u16,
    #[arg(long = "concurrent-job-syncs", default_value_t = 5)]
    pub job: u16,
    #[arg(long = "concurrent-cron-job-syncs", default_value_t = 5)]
    pub cronjob: u16,
    #[arg(long = "concurrent-endpoint-syncs", default_value_t = 5)]
    pub endpoint: u16,
    #[arg(long = "concurrent-service-endpoint-syncs", default_value_t = 5)]
    pub endpointslice: u16,
    #[arg(long = "concurrent-namespace-syncs", default_value_t = 10)]
    pub namespace: u16,
    #[arg(long = "concurrent-gc-syncs", default_value_t = 20)]
    pub garbage_collector: u16,
    #[arg(long = "concurrent-resource-quota-syncs", default_value_t = 5)]
    pub resource_quota: u16,
    #[arg(long = "concurrent-ttl-after-finished-syncs", default_value_t = 5)]
    pub ttl_after_finished: u16,
}

/// Node lifecycle timings and eviction rates.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeOptions {
    /// How often node health is checked.
    #[arg(long = "node-monitor-period", default_value = "5s", value_parser = parse_duration)]
    pub monitor_period: Duration,
    /// How long a node may go without a heartbeat before it is marked unhealthy.
    #[arg(long = "node-monitor-grace-period", default_value = "40s", value_parser = parse_duration)]
    pub monitor_grace_period: Duration,
    /// How long a starting node may be unresponsive before it is marked unhealthy.
    #[arg(long = "node-startup-grace-period", default_value = "1m", value_parser = parse_duration)]
    pub startup_grace_period: Duration,
    /// Nodes per second whose pods are evicted while their zone is healthy.
    #[arg(long = "node-eviction-rate", default_value_t = 0.1)]
    pub eviction_rate: f64,
    /// Nodes per second whose pods are evicted while their zone is unhealthy.
    #[arg(long = "secondary-node-eviction-rate", default_value_t = 0.01)]
    pub secondary_eviction_rate: f64,
    /// Zones with at most this many nodes stop evicting when unhealthy.
    #[arg(long = "large-cluster-size-threshold", default_value_t = 50)]
    pub large_cluster_size_threshold: usize,
    /// The fraction of not-ready nodes at which a zone counts as unhealthy.
    #[arg(long = "unhealthy-zone-threshold", default_value_t = 0.55)]
    pub unhealthy_zone_threshold: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn upstream_defaults() {
        let options = Options::parse_from(["kcm"]);
        assert_eq!(options.controllers, vec!["*"]);
        assert_eq!(options.node.monitor_period, Duration::from_secs(5));
        assert_eq!(options.node.monitor_grace_period, Duration::from_secs(40));
        assert_eq!(options.concurrency.daemonset, 2);
        assert_eq!(options.concurrency.garbage_collector, 20);
        assert_eq!(options.terminated_pod_gc_threshold, 12500);
        assert!(!options.allocate_node_cidrs);
        assert_eq!(options.component.serving.secure_port, None);
    }

    #[test]
    fn flag_forms() {
        let options = Options::parse_from([
            "kcm",
            "--controllers=*,-nodeipam,podgc",
            "--allocate-node-cidrs",
            "--node-monitor-grace-period=8s",
            "--cluster-cidr",
            "10.244.0.0/16",
        ]);
        assert_eq!(options.controllers, vec!["*", "-nodeipam", "podgc"]);
        assert!(options.allocate_node_cidrs);
        assert_eq!(options.node.monitor_grace_period, Duration::from_secs(8));
        assert_eq!(options.cluster_cidr.as_deref(), Some("10.244.0.0/16"));
    }
}
