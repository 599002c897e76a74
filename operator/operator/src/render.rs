//! What each host of a valid Cluster runs: the files (certificates, kubeconfigs, HAProxy's
//! configuration) and the units (etcd, API server, scheduler, controller-manager, HAProxy),
//! rendered as upstream's flags with the spec's `extraArgs` merged over them. Pure: the
//! reconciler hands the result to hostd.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hakube_operator_api::cluster::{
    AutoCompactionMode, ClusterSpec, ComponentSpec, EtcdHostStatus,
};
use hakube_operator_api::validation::ValidCluster;

use crate::pki::ClusterPki;

/// A file on a host; `path` is relative to the host's hakube directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// Where a unit's program comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// A binary of the Cluster's version bundle.
    Bundle(String),
    /// A program from the host's packages (etcd, HAProxy).
    System(String),
}

/// How hostd tells that a unit is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// An HTTP(S) GET answering 200 (TLS not verified: the probe runs on the host itself).
    HttpGet(String),
    Tcp(String),
    /// Ready while it runs: it serves nothing a probe could ask.
    Running,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredUnit {
    pub name: String,
    pub program: Program,
    pub args: Vec<String>,
    pub readiness: Readiness,
    /// Whether the program re-reads its files on SIGUSR2 (HAProxy's master-worker mode), so
    /// new files need no restart.
    pub reloads_on_sigusr2: bool,
}

/// Everything one host runs for the Cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPlan {
    pub files: Vec<DesiredFile>,
    pub units: Vec<DesiredUnit>,
}

impl HostPlan {
    /// A digest of the files `unit` reads — those whose path under `root` one of its flags
    /// names (certificates, keys, kubeconfigs, configuration). It goes into the unit's spec, so
    /// a re-issued certificate or a new configuration restarts exactly the units that use it.
    pub fn inputs_digest(&self, unit: &DesiredUnit, root: &str) -> String {
        self.digest(root, |path| unit.args.iter().any(|arg| arg.contains(path)))
    }

    /// A digest of every file of the plan: what the host was given.
    pub fn files_digest(&self, root: &str) -> String {
        self.digest(root, |_| true)
    }

    fn digest(&self, root: &str, include: impl Fn(&str) -> bool) -> String {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for file in &self.files {
            let path = format!("{root}/{}", file.path);
            if include(&path) {
                digest.update(path.as_bytes());
                digest.update([0]);
                digest.update(&file.content);
                digest.update(file.mode.to_be_bytes());
            }
        }
        crate::bundles::hex(&digest.finalize())
    }
}

/// A host as rendering needs it: its address and the directory hakube's files live under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPaths {
    pub address: IpAddr,
    pub root: String,
}

pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
const ETCD_METRICS_PORT: u16 = 2381;
pub const APISERVER_PORT: u16 = 6443;
const SCHEDULER_PORT: u16 = 10259;
const CONTROLLER_MANAGER_PORT: u16 = 10257;

pub const ETCD: &str = "etcd";
pub const APISERVER: &str = "kube-apiserver";
pub const SCHEDULER: &str = "kube-scheduler";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const HAPROXY: &str = "haproxy";
pub const KEEPALIVED: &str = "keepalived";

/// The bundle binaries each control-plane component runs from.
pub const APISERVER_BINARY: &str = "hakube-apiserver";
pub const SCHEDULER_BINARY: &str = "hakube-scheduler";
pub const CONTROLLER_MANAGER_BINARY: &str = "hakube-controller-manager";

/// A member's peer URL.
pub fn etcd_peer_url(address: IpAddr) -> String {
    format!("https://{}:{ETCD_PEER_PORT}", url_host(address))
}

/// etcd's `--initial-cluster` for members started together (name → address).
pub fn initial_cluster(members: &BTreeMap<String, IpAddr>) -> String {
    let initial: Vec<String> = members
        .iter()
        .map(|(name, ip)| format!("{name}={}", etcd_peer_url(*ip)))
        .collect();
    initial.join(",")
}

/// The etcd member on `host`, started into the membership `joined` records.
pub fn etcd_member(
    spec: &ClusterSpec,
    cluster_token: &str,
    host: &str,
    paths: &HostPaths,
    joined: &EtcdHostStatus,
    pki: &ClusterPki,
) -> HostPlan {
    let dir = |f: &str| format!("{}/{f}", paths.root);
    let a = url_host(paths.address);
    let mut flags = vec![
        ("name", host.to_string()),
        ("data-dir", dir("etcd/data")),
        (
            "listen-client-urls",
            format!("https://{a}:{ETCD_CLIENT_PORT},https://127.0.0.1:{ETCD_CLIENT_PORT}"),
        ),
        (
            "advertise-client-urls",
            format!("https://{a}:{ETCD_CLIENT_PORT}"),
        ),
        ("listen-peer-urls", format!("https://{a}:{ETCD_PEER_PORT}")),
        (
            "initial-advertise-peer-urls",
            format!("https://{a}:{ETCD_PEER_PORT}"),
        ),
        ("initial-cluster", joined.initial_cluster.clone()),
        (
            "initial-cluster-state",
            joined.initial_cluster_state.clone(),
        ),
        ("initial-cluster-token", cluster_token.to_string()),
        (
            "listen-metrics-urls",
            format!("http://127.0.0.1:{ETCD_METRICS_PORT}"),
        ),
        ("client-cert-auth", "true".into()),
        ("trusted-ca-file", dir("pki/etcd/ca.crt")),
        ("cert-file", dir("pki/etcd/server.crt")),
        ("key-file", dir("pki/etcd/server.key")),
        ("peer-client-cert-auth", "true".into()),
        ("peer-trusted-ca-file", dir("pki/etcd/ca.crt")),
        ("peer-cert-file", dir("pki/etcd/peer.crt")),
        ("peer-key-file", dir("pki/etcd/peer.key")),
        ("snapshot-count", "10000".into()),
    ];
    if let Some(quota) = spec.etcd.quota_backend_bytes {
        flags.push(("quota-backend-bytes", quota.to_string()));
    }
    if let Some(compaction) = &spec.etcd.auto_compaction {
        let mode = match compaction.mode {
            AutoCompactionMode::Periodic => "periodic",
            AutoCompactionMode::Revision => "revision",
        };
        flags.push(("auto-compaction-mode", mode.into()));
        flags.push(("auto-compaction-retention", compaction.retention.clone()));
    }
    let member = pki.etcd_members.get(host);
    let mut files = vec![file("pki/etcd/ca.crt", &pki.etcd_ca_bundle, 0o644)];
    if let Some(m) = member {
        files.extend([
            file("pki/etcd/server.crt", &m.server.cert_pem, 0o644),
            file("pki/etcd/server.key", &m.server.key_pem, 0o600),
            file("pki/etcd/peer.crt", &m.peer.cert_pem, 0o644),
            file("pki/etcd/peer.key", &m.peer.key_pem, 0o600),
        ]);
    }
    HostPlan {
        files,
        units: vec![DesiredUnit {
            name: ETCD.into(),
            program: Program::System("etcd".into()),
            args: merge_flags(flags, &spec.components.etcd),
            readiness: Readiness::HttpGet(format!("http://127.0.0.1:{ETCD_METRICS_PORT}/health")),
            reloads_on_sigusr2: false,
        }],
    }
}

/// The API server, scheduler and controller-manager on a control-plane host. `etcd_servers`
/// are the client URLs it uses: its local member when stacked, every member when external.
/// Only components the version's bundle contains are rendered.
pub fn control_plane_host(
    spec: &ClusterSpec,
    valid: &ValidCluster,
    host: &str,
    paths: &HostPaths,
    etcd_servers: &[String],
    pki: &ClusterPki,
    bundle_binaries: &[String],
) -> HostPlan {
    let dir = |f: &str| format!("{}/{f}", paths.root);
    let has = |binary: &str| bundle_binaries.iter().any(|b| b == binary);
    let mut plan = HostPlan {
        files: vec![
            file("pki/ca.crt", &pki.ca_bundle, 0o644),
            file("pki/etcd/ca.crt", &pki.etcd_ca_bundle, 0o644),
            file(
                "pki/apiserver-etcd-client.crt",
                &pki.apiserver_etcd_client.cert_pem,
                0o644,
            ),
            file(
                "pki/apiserver-etcd-client.key",
                &pki.apiserver_etcd_client.key_pem,
                0o600,
            ),
            file("pki/sa.key", &pki.service_account_key, 0o600),
            file("pki/sa.pub", &pki.service_account_public, 0o644),
        ],
        units: Vec::new(),
    };
    if let Some(serving) = pki.apiservers.get(host) {
        plan.files
            .push(file("pki/apiserver.crt", &serving.cert_pem, 0o644));
        plan.files
            .push(file("pki/apiserver.key", &serving.key_pem, 0o600));
    }
    if has(APISERVER_BINARY) {
        let flags = vec![
            ("advertise-address", paths.address.to_string()),
            ("secure-port", APISERVER_PORT.to_string()),
            ("etcd-servers", etcd_servers.join(",")),
            ("etcd-cafile", dir("pki/etcd/ca.crt")),
            ("etcd-certfile", dir("pki/apiserver-etcd-client.crt")),
            ("etcd-keyfile", dir("pki/apiserver-etcd-client.key")),
            ("tls-cert-file", dir("pki/apiserver.crt")),
            ("tls-private-key-file", dir("pki/apiserver.key")),
            ("client-ca-file", dir("pki/ca.crt")),
            ("service-account-key-file", dir("pki/sa.pub")),
            ("service-account-signing-key-file", dir("pki/sa.key")),
            (
                "service-account-issuer",
                format!(
                    "https://kubernetes.default.svc.{}",
                    spec.network.cluster_domain
                ),
            ),
            (
                "service-cluster-ip-range",
                valid.network.service_cidr.to_string(),
            ),
        ];
        plan.units.push(DesiredUnit {
            name: APISERVER.into(),
            program: Program::Bundle(APISERVER_BINARY.into()),
            args: merge_flags(flags, &spec.components.apiserver),
            readiness: Readiness::HttpGet(format!("https://127.0.0.1:{APISERVER_PORT}/readyz")),
            reloads_on_sigusr2: false,
        });
    }
    for (unit, binary, port, kubeconfig, leaf, extra) in [
        (
            SCHEDULER,
            SCHEDULER_BINARY,
            SCHEDULER_PORT,
            "scheduler.conf",
            &pki.scheduler_kubeconfig,
            &spec.components.scheduler,
        ),
        (
            CONTROLLER_MANAGER,
            CONTROLLER_MANAGER_BINARY,
            CONTROLLER_MANAGER_PORT,
            "controller-manager.conf",
            &pki.controller_manager_kubeconfig,
            &spec.components.controller_manager,
        ),
    ] {
        if !has(binary) {
            continue;
        }
        plan.files.push(file(kubeconfig, leaf, 0o600));
        let mut flags = vec![
            ("kubeconfig", dir(kubeconfig)),
            ("leader-elect", "true".into()),
            ("bind-address", "127.0.0.1".into()),
            ("secure-port", port.to_string()),
        ];
        if unit == CONTROLLER_MANAGER {
            flags.push(("allocate-node-cidrs", "true".into()));
            flags.push(("cluster-cidr", valid.network.pod_cidr.to_string()));
            flags.push((
                "service-cluster-ip-range",
                valid.network.service_cidr.to_string(),
            ));
            flags.push(("root-ca-file", dir("pki/ca.crt")));
        }
        plan.units.push(DesiredUnit {
            name: unit.into(),
            program: Program::Bundle(binary.into()),
            args: merge_flags(flags, extra),
            readiness: Readiness::HttpGet(format!("https://127.0.0.1:{port}/healthz")),
            reloads_on_sigusr2: false,
        });
    }
    plan
}

/// HAProxy on the load-balancer host: TCP to every API server, each checked on `/readyz` every
/// second; two failed checks take a server out (2 s detection), one success brings it back.
/// Two load-balancer hosts sharing the endpoint's virtual IP through keepalived (VRRP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vrrp {
    pub virtual_ip: IpAddr,
    /// The interface holding this host's address, where the virtual IP goes.
    pub interface: String,
    /// The other load-balancer host's address (VRRP adverts go to it directly, so no
    /// multicast is needed between them).
    pub peer: IpAddr,
    /// Higher on the host that takes the address first.
    pub priority: u8,
    /// The same on both hosts; distinct for each Cluster sharing a network.
    pub router_id: u8,
}

pub fn load_balancer(
    spec: &ClusterSpec,
    paths: &HostPaths,
    apiservers: &BTreeMap<String, IpAddr>,
    vrrp: Option<&Vrrp>,
) -> HostPlan {
    let port = spec.load_balancer.port;
    // With a virtual IP HAProxy listens on every address, the virtual one whenever it is here.
    let bind = match vrrp.map(|v| v.virtual_ip) {
        None => format!("{}:{port}", url_host(paths.address)),
        Some(IpAddr::V4(_)) => format!("0.0.0.0:{port}"),
        Some(IpAddr::V6(_)) => format!(":::{port} v4v6"),
    };
    // A server that is down is checked five times a second, so an API server that was not
    // ready yet when HAProxy started (or came back) is taken in 200 ms after it is, not a
    // whole `inter` later; kubeadm's HA guide sets `downinter` too.
    let mut config = format!(
        "# Rendered by hakube-operator.\n\
         global\n  maxconn 4000\n\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n  timeout check 1s\n\n\
         frontend kube-apiserver\n  bind {}\n  default_backend kube-apiservers\n\n\
         backend kube-apiservers\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  \
         default-server check check-ssl verify none inter 1s downinter 200ms fall 2 rise 1\n",
        bind
    );
    for (name, ip) in apiservers {
        config.push_str(&format!(
            "  server {name} {}:{APISERVER_PORT}\n",
            url_host(*ip)
        ));
    }
    // Master-worker mode in the foreground: SIGUSR2 reloads the configuration without
    // dropping established connections.
    let mut args = vec![
        "-W".to_string(),
        "-db".to_string(),
        "-f".to_string(),
        format!("{}/haproxy/haproxy.cfg", paths.root),
    ];
    for (flag, value) in &spec.components.haproxy.extra_args {
        args.push(format!("-{flag}"));
        if !value.is_empty() {
            args.push(value.clone());
        }
    }
    let mut plan = HostPlan {
        files: vec![DesiredFile {
            path: "haproxy/haproxy.cfg".into(),
            content: config.into_bytes(),
            mode: 0o644,
        }],
        units: vec![DesiredUnit {
            name: HAPROXY.into(),
            program: Program::System("haproxy".into()),
            args,
            readiness: Readiness::Tcp(format!("{}:{port}", url_host(paths.address))),
            reloads_on_sigusr2: true,
        }],
    };
    if let Some(vrrp) = vrrp {
        keepalived(&mut plan, paths, port, vrrp);
    }
    plan
}

/// keepalived holding the virtual IP on whichever load-balancer host has HAProxy answering:
/// both start as backups, the higher priority takes the address, and without preemption it
/// stays where it is until that host or its HAProxy fails.
fn keepalived(plan: &mut HostPlan, paths: &HostPaths, port: i32, vrrp: &Vrrp) {
    let dir = format!("{}/keepalived", paths.root);
    let own = paths.address;
    let config = format!(
        "# Rendered by hakube-operator.\n\
         global_defs {{\n  router_id {own}\n  script_user root\n  enable_script_security\n}}\n\n\
         vrrp_script haproxy_answers {{\n  script \"/bin/bash -c '</dev/tcp/{own}/{port}'\"\n  interval 1\n  timeout 1\n  fall 2\n  rise 1\n}}\n\n\
         vrrp_instance endpoint {{\n  state BACKUP\n  nopreempt\n  interface {interface}\n  virtual_router_id {router_id}\n  priority {priority}\n  advert_int 1\n  \
         unicast_src_ip {own}\n  unicast_peer {{\n    {peer}\n  }}\n  virtual_ipaddress {{\n    {vip}/{prefix} dev {interface}\n  }}\n  track_script {{\n    haproxy_answers\n  }}\n}}\n",
        interface = vrrp.interface,
        router_id = vrrp.router_id,
        priority = vrrp.priority,
        peer = vrrp.peer,
        vip = vrrp.virtual_ip,
        prefix = if vrrp.virtual_ip.is_ipv4() { 32 } else { 128 },
    );
    plan.files
        .push(file("keepalived/keepalived.conf", &config, 0o644));
    plan.units.push(DesiredUnit {
        name: KEEPALIVED.into(),
        program: Program::System("keepalived".into()),
        // In the foreground, VRRP only, its pid files under the Cluster's directory so that
        // several on one machine (local mode) do not clash.
        args: vec![
            "--dont-fork".into(),
            "--log-console".into(),
            "--vrrp".into(),
            format!("--use-file={dir}/keepalived.conf"),
            format!("--pid={dir}/keepalived.pid"),
            format!("--vrrp_pid={dir}/vrrp.pid"),
        ],
        readiness: Readiness::Running,
        reloads_on_sigusr2: false,
    });
}

/// `--flag=value` arguments: the rendered flags, with `extraArgs` replacing same-named ones in
/// place and the rest appended in name order, as kubeadm merges them.
pub fn merge_flags(rendered: Vec<(&str, String)>, extra: &ComponentSpec) -> Vec<String> {
    let mut args = Vec::with_capacity(rendered.len() + extra.extra_args.len());
    for (flag, value) in &rendered {
        let value = extra.extra_args.get(*flag).unwrap_or(value);
        args.push(format!("--{flag}={value}"));
    }
    for (flag, value) in &extra.extra_args {
        if !rendered.iter().any(|(f, _)| f == flag) {
            args.push(format!("--{flag}={value}"));
        }
    }
    args
}

/// An address as it goes in a URL's host part.
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn file(path: &str, content: &str, mode: u32) -> DesiredFile {
    DesiredFile {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        mode,
    }
}

#[cfg(test)]
mod tests;
