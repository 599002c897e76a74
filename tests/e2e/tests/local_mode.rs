//! `hakube up` end to end: network-namespace hosts, hostd joining the operator with one-time
//! tokens, the operator bringing a stacked and an external-etcd Cluster to `Available`, kubectl
//! through HAProxy, an invalid Cluster refused without a unit started, and `hakube down`
//! leaving nothing behind. The suite takes the machine's `hakube0` bridge and `hakube-*`
//! namespaces, so its tests run one at a time (see .config/nextest.toml).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use hakube_e2e::{bin_dir, eventually, repo_root};

struct Local {
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Local {
    fn new() -> Local {
        let dir = tempfile::tempdir().expect("a temporary directory");
        Local {
            state: dir.path().join("state"),
            _dir: dir,
        }
    }

    fn hakube(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("hakube"))
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .output()
            .expect("hakube runs")
    }

    fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    fn ok(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.kubectl(kubeconfig, args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A field of the `stacked` Cluster, by kubectl jsonpath.
    fn cluster_field(&self, jsonpath: &str) -> String {
        self.named_cluster_field("stacked", jsonpath)
    }

    /// A field of the Cluster `name` through kubectl's jsonpath, trimmed.
    fn named_cluster_field(&self, name: &str, jsonpath: &str) -> String {
        let out = self.kubectl(
            &self.state.join("management.kubeconfig"),
            &[
                "get",
                "cluster",
                name,
                "-o",
                &format!("jsonpath={jsonpath}"),
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether the operator replica `replica` (`operator-1`, `operator-2`) took the lease.
    fn leads(&self, replica: &str) -> bool {
        std::fs::read_to_string(self.state.join(format!("logs/{replica}.log")))
            .unwrap_or_default()
            .contains("successfully acquired lease")
    }

    /// The leading operator replica and the other one; exactly one must lead.
    fn operator_replicas(&self) -> (&'static str, &'static str) {
        let leaders: Vec<&str> = ["operator-1", "operator-2"]
            .into_iter()
            .filter(|r| self.leads(r))
            .collect();
        assert_eq!(leaders.len(), 1, "exactly one replica leads: {leaders:?}");
        match leaders[0] {
            "operator-1" => ("operator-1", "operator-2"),
            _ => ("operator-2", "operator-1"),
        }
    }

    /// The host of the etcd member the `stacked` Cluster reports as leader.
    fn etcd_leader(&self) -> String {
        let mut leader = String::new();
        eventually("a reported etcd leader", Duration::from_secs(30), || {
            let members =
                self.cluster_field("{range .status.etcdMembers[*]}{.host}={.leader}{\"\\n\"}{end}");
            leader = members
                .lines()
                .find_map(|line| line.strip_suffix("=true"))
                .unwrap_or_default()
                .to_string();
            !leader.is_empty()
        });
        leader
    }

    /// Whether the management cluster has an event with this reason.
    fn has_event(&self, reason: &str) -> bool {
        let out = self.kubectl(
            &self.state.join("management.kubeconfig"),
            &[
                "get",
                "events",
                "--field-selector",
                &format!("reason={reason}"),
                "-o",
                "name",
            ],
        );
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }

    /// Waits until the spare cp-4 holds a member in `crashed`'s place and the Cluster is
    /// available with three healthy members.
    fn wait_for_replacement(&self, crashed: &str) {
        eventually(
            "the spare replaces the crashed member",
            Duration::from_secs(300),
            || {
                let hosts = self.cluster_field("{.status.etcdMembers[*].host}");
                let healthy = self.cluster_field("{.status.etcdMembers[*].healthy}");
                let available =
                    self.cluster_field("{.status.conditions[?(@.type==\"Available\")].status}");
                hosts.split_whitespace().count() == 3
                    && hosts.contains("cp-4")
                    && !hosts.contains(crashed)
                    && healthy == "true true true"
                    && available == "True"
            },
        );
    }

    fn up(&self, topology: &str) -> String {
        let out = self.hakube(&["up", "--topology", topology, "--timeout-seconds", "90"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "hakube up failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn down_leaves_nothing(&self) {
        let out = self.hakube(&["down"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let namespaces = String::from_utf8_lossy(&namespaces.stdout);
        assert!(
            !namespaces.contains("hakube-"),
            "namespaces left: {namespaces}"
        );
        let bridge = Command::new("ip")
            .args(["link", "show", "hakube0"])
            .output()
            .unwrap();
        assert!(!bridge.status.success(), "the bridge is left");
        assert!(!self.state.exists(), "the state directory is left");
        let processes = Command::new("pgrep")
            .args(["-f", &self.state.display().to_string()])
            .output()
            .unwrap();
        assert!(
            processes.stdout.is_empty(),
            "processes left: {}",
            String::from_utf8_lossy(&processes.stdout)
        );
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.hakube(&["down"]);
    }
}

#[test]
fn stacked_cluster_comes_up_serves_kubectl_through_haproxy_and_goes_down_cleanly() {
    let local = Local::new();
    let progress = local.up("stacked");
    assert!(
        progress.contains("Available at https://10.77.0.10:6443"),
        "{progress}"
    );

    let kubeconfig = local.state.join("kubeconfig");
    assert_eq!(
        local.ok(&kubeconfig, &["get", "--raw", "/readyz"]).trim(),
        "ok"
    );
    // Every API server registers itself behind the one endpoint.
    let addresses = local.ok(
        &kubeconfig,
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ],
    );
    let mut addresses: Vec<&str> = addresses.split_whitespace().collect();
    addresses.sort();
    assert_eq!(addresses, ["10.77.0.11", "10.77.0.12", "10.77.0.13"]);
    local.ok(
        &kubeconfig,
        &[
            "create",
            "configmap",
            "through-haproxy",
            "--from-literal=a=b",
        ],
    );
    assert!(local
        .ok(&kubeconfig, &["get", "configmap", "through-haproxy"])
        .contains("through-haproxy"));

    let status = local.hakube(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("Running") && status.contains("QuorumHealthy"),
        "{status}"
    );
    assert_eq!(
        status.matches(" true ").count(),
        3,
        "three healthy members: {status}"
    );

    // An invalid Cluster is reported and touches nothing.
    let management = local.state.join("management.kubeconfig");
    local.ok(
        &management,
        &[
            "apply",
            "-f",
            &repo_root()
                .join("config/samples/cluster-invalid.yaml")
                .display()
                .to_string(),
        ],
    );
    eventually(
        "the invalid Cluster's Valid=False",
        Duration::from_secs(30),
        || {
            local.named_cluster_field(
                "invalid",
                "{.status.conditions[?(@.type==\"Valid\")].status}",
            ) == "False"
        },
    );
    let message = local.named_cluster_field(
        "invalid",
        "{.status.conditions[?(@.type==\"Valid\")].message}",
    );
    assert!(
        message.contains("spec.controlPlane.replicas") && message.contains("overlaps"),
        "{message}"
    );
    let events = local.ok(
        &management,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=InvalidSpec",
            "-o",
            "name",
        ],
    );
    assert!(!events.trim().is_empty(), "no InvalidSpec event");
    for host in ["lb", "cp-1", "cp-2", "cp-3"] {
        let dir = local
            .state
            .join(format!("hosts/{host}/clusters/default-invalid"));
        assert!(!dir.exists(), "{} exists", dir.display());
    }

    local.down_leaves_nothing();
}

#[test]
fn external_etcd_cluster_comes_up_on_its_own_etcd_hosts() {
    let local = Local::new();
    local.up("external");
    let kubeconfig = local.state.join("kubeconfig");
    assert_eq!(
        local.ok(&kubeconfig, &["get", "--raw", "/readyz"]).trim(),
        "ok"
    );
    let management = local.state.join("management.kubeconfig");
    let members = local.ok(
        &management,
        &[
            "get",
            "cluster",
            "external",
            "-o",
            "jsonpath={.status.etcdMembers[*].host}",
        ],
    );
    assert_eq!(members.trim(), "etcd-1 etcd-2 etcd-3");
    // etcd runs on the etcd hosts only; the control-plane hosts run no member.
    for host in ["etcd-1", "etcd-2", "etcd-3"] {
        assert!(local
            .state
            .join(format!("hosts/{host}/clusters/default-external/etcd/data"))
            .exists());
    }
    assert!(!local
        .state
        .join("hosts/cp-1/clusters/default-external/etcd")
        .exists());
    local.down_leaves_nothing();
}

/// `hakube up` runs two operator replicas; exactly one leads. The leader is killed while it
/// brings the Cluster up: the standby takes the lease and finishes from the observed state.
#[test]
fn the_standby_operator_finishes_the_bring_up_its_leader_was_killed_in() {
    let local = Local::new();
    let up = {
        let binary = bin_dir().join("hakube");
        let state = local.state.clone();
        std::thread::spawn(move || {
            Command::new(binary)
                .arg("--state-dir")
                .arg(&state)
                .args(["up", "--timeout-seconds", "180"])
                .output()
                .expect("hakube runs")
        })
    };
    let management = local.state.join("management.kubeconfig");
    eventually("etcd quorum, mid bring-up", Duration::from_secs(90), || {
        local.cluster_field("{.status.conditions[?(@.type==\"EtcdQuorum\")].status}") == "True"
    });
    let (leader, standby) = local.operator_replicas();
    let pid = std::fs::read_to_string(local.state.join(format!("pids/{leader}.pid"))).unwrap();
    assert!(Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap()
        .success());

    let out = up.join().unwrap();
    assert!(
        out.status.success(),
        "hakube up failed after the leading operator was killed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(local.leads(standby), "the standby took the lease");
    let lease = local.ok(
        &management,
        &[
            "get",
            "lease",
            "-n",
            "hakube-system",
            "hakube-operator",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    );
    assert!(
        std::fs::read_to_string(local.state.join(format!("logs/{standby}.log")))
            .unwrap_or_default()
            .contains(&lease),
        "the Lease names the standby: {lease}"
    );
    let kubeconfig = local.state.join("kubeconfig");
    assert_eq!(
        local.ok(&kubeconfig, &["get", "--raw", "/readyz"]).trim(),
        "ok"
    );
    local.down_leaves_nothing();
}

/// The long-running processes (etcd, hostd and the bundle's components) in a host's network
/// namespace, as (pid, command name).
fn host_processes(host: &str) -> Vec<(String, String)> {
    let pids = Command::new("ip")
        .args(["netns", "pids", &format!("hakube-{host}")])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            (comm == "etcd" || comm.starts_with("hakube-"))
                .then(|| (pid.to_string(), comm.to_string()))
        })
        .collect()
}

/// Kills every process in `host`'s network namespace, as a crash would.
fn crash(host: &str) {
    let namespace = format!("hakube-{host}");
    let pids = Command::new("ip")
        .args(["netns", "pids", &namespace])
        .output()
        .expect("ip runs");
    let pids = String::from_utf8_lossy(&pids.stdout).into_owned();
    assert!(!pids.trim().is_empty(), "no processes in {namespace}");
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

/// How a host dies.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Every process in its network namespace killed.
    Crash,
    /// Its link taken down while its processes run on.
    Partition,
}

/// The host serving the etcd leader crashes: the API keeps answering through HAProxy, the
/// Cluster turns `Degraded`, the spare cp-4 replaces the dead member one etcd change at a time,
/// and the Cluster is `Available` again with every object written before and no process on the
/// surviving hosts restarted. The crashed host's hostd then comes back: its stale member is
/// fenced (etcd stopped, data wiped) and does not rejoin.
#[test]
fn a_crashed_control_plane_host_is_replaced_by_the_spare_and_fenced_when_it_returns() {
    replaces_the_etcd_leaders_host_after(Fault::Crash);
}

/// As with a crash, for a host cut off the network with its etcd and API server running on;
/// when its link comes back its removed member is fenced before it can rejoin with old data.
#[test]
fn a_partitioned_control_plane_host_is_replaced_by_the_spare_and_fenced_when_it_returns() {
    replaces_the_etcd_leaders_host_after(Fault::Partition);
}

fn replaces_the_etcd_leaders_host_after(fault: Fault) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    let local = Local::new();
    local.up("stacked");
    let kubeconfig = local.state.join("kubeconfig");
    for i in 0..20 {
        local.ok(
            &kubeconfig,
            &[
                "create",
                "configmap",
                &format!("before-crash-{i}"),
                &format!("--from-literal=n={i}"),
            ],
        );
    }
    let leader = local.etcd_leader();

    // What the surviving hosts run: a replacement must restart none of it.
    let survivors: Vec<&str> = ["cp-1", "cp-2", "cp-3"]
        .into_iter()
        .filter(|h| *h != leader)
        .collect();
    let running_before: Vec<(String, String)> =
        survivors.iter().flat_map(|h| host_processes(h)).collect();
    assert_eq!(
        running_before
            .iter()
            .filter(|(_, comm)| comm == "etcd")
            .count(),
        2,
        "{running_before:?}"
    );

    // A client polling through the load balancer: the longest interval without an answer.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let kubeconfig = kubeconfig.clone();
        std::thread::spawn(move || {
            let mut last_ok = Instant::now();
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let answered = Command::new("kubectl")
                    .env("KUBECONFIG", &kubeconfig)
                    .args(["get", "--raw", "/readyz", "--request-timeout=2s"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if answered {
                    longest = longest.max(last_ok.elapsed());
                    last_ok = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            longest.max(last_ok.elapsed())
        })
    };

    let crashed = Instant::now();
    match fault {
        Fault::Crash => crash(&leader),
        Fault::Partition => link(&leader, "down"),
    }
    eventually("Degraded=True", Duration::from_secs(90), || {
        local.cluster_field("{.status.conditions[?(@.type==\"Degraded\")].status}") == "True"
    });
    local.wait_for_replacement(&leader);
    let replaced_after = crashed.elapsed();
    stop.store(true, Ordering::Relaxed);
    let longest_gap = poller.join().unwrap();
    println!(
        "{fault:?} of {leader}; replaced after {replaced_after:?}; longest API gap through HAProxy {longest_gap:?}"
    );
    // HAProxy takes a dead backend out after three failed checks two seconds apart (a
    // partitioned one answers no connection attempt, so each check waits for its timeout).
    assert!(
        longest_gap < Duration::from_secs(20),
        "the API went unanswered for {longest_gap:?}"
    );
    let configmaps = local.ok(&kubeconfig, &["get", "configmaps", "-o", "name"]);
    for i in 0..20 {
        assert!(
            configmaps.contains(&format!("configmap/before-crash-{i}\n")),
            "before-crash-{i} is lost: {configmaps}"
        );
    }
    let running_after: Vec<(String, String)> =
        survivors.iter().flat_map(|h| host_processes(h)).collect();
    for process in &running_before {
        assert!(
            running_after.contains(process),
            "{process:?} on a surviving host was restarted or stopped: {running_after:?}"
        );
    }
    // The new host serves the API too.
    eventually(
        "cp-4's API server behind the endpoint",
        Duration::from_secs(60),
        || {
            let out = local.kubectl(
                &kubeconfig,
                &[
                    "get",
                    "endpoints",
                    "kubernetes",
                    "-o",
                    "jsonpath={.subsets[0].addresses[*].ip}",
                ],
            );
            String::from_utf8_lossy(&out.stdout).contains("10.77.0.14")
        },
    );
    for reason in ["MemberRemoved", "MemberAdded", "MemberPromoted"] {
        assert!(local.has_event(reason), "no {reason} event");
    }
    assert_eq!(
        local.cluster_field("{.status.fencedHosts}"),
        format!("[\"{leader}\"]")
    );

    // The host returns: a crashed one's hostd with its stored identity and the units it last
    // ran, a partitioned one with everything still running.
    let mut hostd = match fault {
        Fault::Crash => Some(restart_hostd(&local, &leader)),
        Fault::Partition => {
            link(&leader, "up");
            None
        }
    };
    let etcd_dir = local
        .state
        .join(format!("hosts/{leader}/clusters/default-stacked/etcd"));
    eventually("the returning host fenced", Duration::from_secs(90), || {
        !etcd_dir.exists() && local.cluster_field("{.status.fencedHosts}").is_empty()
    });
    assert!(local.has_event("HostFenced"), "no HostFenced event");
    let hosts = local.cluster_field("{.status.etcdMembers[*].host}");
    assert!(!hosts.contains(&leader), "{leader} rejoined: {hosts}");
    assert_eq!(
        local.ok(&kubeconfig, &["get", "--raw", "/readyz"]).trim(),
        "ok"
    );
    local.down_leaves_nothing();
    if let Some(hostd) = hostd.as_mut() {
        let _ = hostd.wait();
    }
}

/// Sets the link of `host`'s network namespace `up` or `down`.
fn link(host: &str, state: &str) {
    let set = Command::new("ip")
        .args([
            "-n",
            &format!("hakube-{host}"),
            "link",
            "set",
            "eth0",
            state,
        ])
        .status()
        .expect("ip runs");
    assert!(set.success(), "ip link set eth0 {state} in hakube-{host}");
}

/// Starts hostd again in `host`'s namespace, as its service manager would after a reboot.
fn restart_hostd(local: &Local, host: &str) -> std::process::Child {
    let address = match host {
        "cp-1" => "10.77.0.11",
        "cp-2" => "10.77.0.12",
        _ => "10.77.0.13",
    };
    Command::new("ip")
        .args(["netns", "exec", &format!("hakube-{host}")])
        .arg(bin_dir().join("hakube-hostd"))
        .arg(format!("--listen-address={address}:9443"))
        .arg(format!(
            "--data-dir={}",
            local.state.join(format!("hosts/{host}")).display()
        ))
        .arg(format!("--host-name={host}"))
        .arg(format!("--advertise-address={address}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("hostd restarts")
}

/// The leading operator replica is killed just after it removed a crashed host's member: the
/// standby takes the lease and finishes the replacement from the recorded and observed state.
#[test]
fn the_standby_operator_finishes_a_replacement_its_leader_was_killed_in() {
    let local = Local::new();
    local.up("stacked");
    let kubeconfig = local.state.join("kubeconfig");
    local.ok(
        &kubeconfig,
        &["create", "configmap", "before-crash", "--from-literal=a=b"],
    );
    let leader = local.etcd_leader();
    crash(&leader);
    eventually(
        "the crashed member removed",
        Duration::from_secs(120),
        || local.has_event("MemberRemoved"),
    );
    let (operator, standby) = local.operator_replicas();
    let pid = std::fs::read_to_string(local.state.join(format!("pids/{operator}.pid"))).unwrap();
    assert!(Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .unwrap()
        .success());
    local.wait_for_replacement(&leader);
    assert!(local.leads(standby), "the standby took the lease");
    assert!(local
        .ok(&kubeconfig, &["get", "configmap", "before-crash"])
        .contains("before-crash"));
    local.down_leaves_nothing();
}
