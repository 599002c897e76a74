//! Local mode: hosts are network namespaces (`hakube-<host>`) with their own address on the
//! `hakube0` bridge (10.77.0.0/24, the machine's side at 10.77.0.1), each running a hostd that
//! joins the operator with a one-time token.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hakube_operator_api::cluster::ClusterStatus;
use hakube_operator_api::{Cluster, Host};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, CustomResourceExt, ResourceExt};
use rand::Rng;
use serde_json::json;

use crate::management::{self, State};
use crate::{io, Error, TopologyArg};

const BRIDGE: &str = "hakube0";
const BRIDGE_ADDRESS: &str = "10.77.0.1";
const PREFIX_LEN: u8 = 24;
const NETNS_PREFIX: &str = "hakube-";
/// The machine's end of each host's veth pair.
const VETH_PREFIX: &str = "hk-";
const OPERATOR_NAMESPACE: &str = "hakube-system";
const HOSTD_PORT: u16 = 9443;
/// The first operator replica's host endpoint; each further replica takes the next port.
const OPERATOR_HOST_PORT: u16 = 9444;
const OPERATOR_REPLICAS: [&str; 2] = ["operator-1", "operator-2"];
const FIELD_MANAGER: &str = "hakube";
/// The version `hakube up` builds from this tree's binaries.
pub const LOCAL_VERSION: &str = "v1.33.0-local";
/// Binaries that go into the local version's bundle, when built.
const BUNDLE_BINARIES: [&str; 3] = [
    "hakube-apiserver",
    "hakube-scheduler",
    "hakube-controller-manager",
];

const HOSTS_SAMPLE: &str = include_str!("../../../config/samples/hosts-local.yaml");
const STACKED_SAMPLE: &str = include_str!("../../../config/samples/cluster-stacked.yaml");
const EXTERNAL_SAMPLE: &str = include_str!("../../../config/samples/cluster-external.yaml");

/// The inventory of the samples: lb, cp-1..4 and, for External, etcd-1..3.
fn inventory(topology: TopologyArg) -> Result<Vec<Host>, Error> {
    let mut hosts = Vec::new();
    for document in serde_norway::Deserializer::from_str(HOSTS_SAMPLE) {
        let host: Host = serde::Deserialize::deserialize(document)
            .map_err(|e| Error::Other(format!("the hosts sample: {e}")))?;
        if topology == TopologyArg::Stacked && host.name_any().starts_with("etcd-") {
            continue;
        }
        hosts.push(host);
    }
    Ok(hosts)
}

fn run_ip(args: &[&str]) -> Result<String, Error> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(io("running ip (iproute2)"))?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The bridge, and a namespace per host with a veth into the bridge.
fn network(hosts: &[Host]) -> Result<(), Error> {
    run_ip(&["link", "add", BRIDGE, "type", "bridge"])?;
    run_ip(&[
        "addr",
        "add",
        &format!("{BRIDGE_ADDRESS}/{PREFIX_LEN}"),
        "dev",
        BRIDGE,
    ])?;
    run_ip(&["link", "set", BRIDGE, "up"])?;
    for host in hosts {
        let name = host.name_any();
        let netns = format!("{NETNS_PREFIX}{name}");
        let veth = format!("{VETH_PREFIX}{name}");
        run_ip(&["netns", "add", &netns])?;
        run_ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        run_ip(&["link", "set", &veth, "master", BRIDGE, "up"])?;
        run_ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        run_ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{}/{PREFIX_LEN}", host.spec.address),
            "dev",
            "eth0",
        ])?;
        run_ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// The local version's bundle: the built binaries, as a zstd-compressed tar.
fn build_bundle(bin: &Path, out: &Path) -> Result<(), Error> {
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).map_err(io("creating the bundle directory"))?;
    }
    let file = fs::File::create(out).map_err(io("creating the bundle"))?;
    let mut archive = tar::Builder::new(
        hakube_hostd_api::bundle::zstd_writer(file).map_err(io("compressing the bundle"))?,
    );
    let binaries: Vec<&str> = BUNDLE_BINARIES
        .into_iter()
        .filter(|binary| bin.join(binary).exists())
        .collect();
    hakube_hostd_api::bundle::Manifest {
        binaries: binaries.iter().map(|b| b.to_string()).collect(),
    }
    .append_to(&mut archive)
    .map_err(io("adding the manifest to the bundle"))?;
    for binary in binaries {
        archive
            .append_path_with_name(bin.join(binary), binary)
            .map_err(io(format!("adding {binary} to the bundle")))?;
    }
    archive
        .into_inner()
        .and_then(|gz| gz.finish())
        .and_then(|mut f| f.flush())
        .map_err(io("writing the bundle"))?;
    Ok(())
}

/// The end of each operator replica's log, for errors.
fn operator_logs(state: &State) -> String {
    OPERATOR_REPLICAS
        .iter()
        .map(|replica| format!("{replica} log:\n{}", state.log_tail(replica)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn say(started: Instant, message: &str) {
    println!("[{:>6.2}s] {message}", started.elapsed().as_secs_f64());
}

pub async fn up(
    state_dir: &Path,
    topology: TopologyArg,
    timeout_seconds: u64,
) -> Result<(), Error> {
    let started = Instant::now();
    // A clean slate: whatever an earlier run left behind goes first.
    down(state_dir)?;
    let state = State {
        dir: state_dir.to_path_buf(),
    };
    fs::create_dir_all(&state.dir).map_err(io("creating the state directory"))?;
    let exe = std::env::current_exe().map_err(io("locating the hakube binary"))?;
    let bin = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    build_bundle(
        &bin,
        &state.path(&format!("bundles/{LOCAL_VERSION}.tar.zst")),
    )?;
    let hosts = inventory(topology)?;
    network(&hosts)?;
    say(
        started,
        &format!(
            "{} hosts on {BRIDGE} ({BRIDGE_ADDRESS}/{PREFIX_LEN})",
            hosts.len()
        ),
    );

    management::start(&state, &bin).await?;
    let client = management::client(&state).await?;
    say(
        started,
        "management plane ready (etcd, hakube-apiserver, hakube-controller-manager)",
    );
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(OPERATOR_NAMESPACE, &apply, &Patch::Apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}})))
        .await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [Cluster::crd(), Host::crd()] {
        crds.patch(&crd.name_any(), &apply, &Patch::Apply(&crd))
            .await?;
    }
    wait(
        started,
        Duration::from_secs(30),
        "the CRDs to be established",
        || async {
            for name in ["clusters.hakube.io", "hosts.hakube.io"] {
                let crd = crds.get(name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if !established {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;

    // Two operator replicas, as in a real deployment: one leads through a Lease, the other
    // stands by and takes over if it dies. Hosts join through the first one's endpoint.
    for (replica, host_port) in OPERATOR_REPLICAS.iter().zip(OPERATOR_HOST_PORT..) {
        let metrics_port = management::free_port()?;
        state.spawn(
            replica,
            &bin.join("hakube-operator"),
            &[
                format!("--kubeconfig={}", state.management_kubeconfig().display()),
                format!("--namespace={OPERATOR_NAMESPACE}"),
                format!("--advertise-address={BRIDGE_ADDRESS}"),
                format!("--host-endpoint-bind-address={BRIDGE_ADDRESS}:{host_port}"),
                format!("--bundle-dir={}", state.path("bundles").display()),
                format!("--metrics-bind-address=127.0.0.1:{metrics_port}"),
                format!("--leader-elect-resource-namespace={OPERATOR_NAMESPACE}"),
                // Quicker than a real deployment's default, so a crashed host is replaced soon.
                "--host-failure-threshold=15s".into(),
                // A restarted API server is ready in seconds here; a broken upgrade halts soon.
                "--rollout-host-timeout=30s".into(),
            ],
            &[],
        )?;
    }

    let host_api: Api<Host> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let mut tokens = BTreeMap::new();
    for host in &hosts {
        let mut object = serde_json::to_value(host).map_err(|e| Error::Other(e.to_string()))?;
        object["apiVersion"] = json!("hakube.io/v1alpha1");
        object["kind"] = json!("Host");
        host_api
            .patch(&host.name_any(), &apply, &Patch::Apply(&object))
            .await?;
        let token: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let secret = hakube_operator::hostsvc::join_token_secret(
            OPERATOR_NAMESPACE,
            &host.name_any(),
            &token,
        );
        secrets.create(&PostParams::default(), &secret).await?;
        tokens.insert(host.name_any(), token);
    }
    let ca = wait(
        started,
        Duration::from_secs(30),
        "the operator's hosts CA",
        || async {
            let secret = secrets
                .get_opt(hakube_operator::hostsvc::HOSTS_CA_SECRET)
                .await
                .ok()??;
            hakube_operator::secrets::string_data(&secret)
                .get("tls.crt")
                .cloned()
        },
    )
    .await
    .map_err(|e| Error::Other(format!("{e}\n{}", operator_logs(&state))))?;
    let ca_file = state.path("hosts-ca.crt");
    fs::write(&ca_file, ca).map_err(io("writing the hosts CA"))?;

    for host in &hosts {
        let name = host.name_any();
        let data_dir = state.path(&format!("hosts/{name}"));
        fs::create_dir_all(&data_dir).map_err(io("creating a host directory"))?;
        let token = tokens.get(&name).cloned().unwrap_or_default();
        state.spawn(
            &format!("hostd-{name}"),
            Path::new("ip"),
            &[
                "netns".into(),
                "exec".into(),
                format!("{NETNS_PREFIX}{name}"),
                bin.join("hakube-hostd").display().to_string(),
                format!("--listen-address={}:{HOSTD_PORT}", host.spec.address),
                format!("--data-dir={}", data_dir.display()),
                format!("--host-name={name}"),
                format!("--advertise-address={}", host.spec.address),
                format!("--join-url=https://{BRIDGE_ADDRESS}:{OPERATOR_HOST_PORT}/join"),
                format!("--join-ca-file={}", ca_file.display()),
            ],
            &[("HAKUBE_JOIN_TOKEN", token.as_str())],
        )?;
    }
    say(
        started,
        "hostd started on every host; they join with one-time tokens",
    );

    let sample = match topology {
        TopologyArg::Stacked => STACKED_SAMPLE,
        TopologyArg::External => EXTERNAL_SAMPLE,
    };
    let cluster: Cluster = serde_norway::from_str(sample)
        .map_err(|e| Error::Other(format!("the Cluster sample: {e}")))?;
    let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), &namespace);
    let mut object = serde_json::to_value(&cluster).map_err(|e| Error::Other(e.to_string()))?;
    object["apiVersion"] = json!("hakube.io/v1alpha1");
    object["kind"] = json!("Cluster");
    clusters
        .patch(&cluster.name_any(), &apply, &Patch::Apply(&object))
        .await?;
    fs::write(
        state.path("cluster"),
        format!("{namespace}/{}", cluster.name_any()),
    )
    .map_err(io("recording the cluster"))?;
    say(
        started,
        &format!(
            "Cluster {namespace}/{} applied ({topology:?})",
            cluster.name_any()
        ),
    );

    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(timeout_seconds);
    // Watched, as `kubectl wait` does: each status the operator writes is seen as it lands.
    let watched =
        watcher::Config::default().fields(&format!("metadata.name={}", cluster.name_any()));
    let mut updates = std::pin::pin!(watcher::watcher(clusters.clone(), watched)
        .default_backoff()
        .applied_objects());
    let available = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let current = match tokio::time::timeout(remaining, updates.next()).await {
            Ok(Some(Ok(current))) => current,
            // The watcher retries with backoff; the deadline bounds the wait.
            Ok(Some(Err(_))) => continue,
            Ok(None) => return Err(Error::Other("the watch of the Cluster ended".into())),
            Err(_) => {
                return Err(Error::Other(format!(
                    "the Cluster is not Available after {timeout_seconds}s: {last}\n{}",
                    operator_logs(&state)
                )))
            }
        };
        let conditions = current
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let holds = |type_: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True")
        };
        // Every host up, not only the first API server answering.
        if holds("Available") && holds("ControlPlaneReady") {
            break current;
        }
        let progress = conditions
            .iter()
            .find(|c| {
                matches!(
                    c.type_.as_str(),
                    "Valid" | "Available" | "ControlPlaneReady"
                ) && c.status == "False"
            })
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_else(|| "waiting for the operator".into());
        if progress != last {
            say(started, &progress);
            last = progress;
        }
        if conditions
            .iter()
            .any(|c| c.type_ == "Valid" && c.status == "False")
        {
            return Err(Error::Other(format!("the Cluster is invalid: {last}")));
        }
    };
    let status = available.status.unwrap_or_default();
    write_admin_kubeconfig(&state, client, &namespace, &status).await?;
    say(
        started,
        &format!("Available at {}", status.endpoint.unwrap_or_default()),
    );
    println!(
        "\n  export KUBECONFIG={}\n  kubectl get --raw /readyz\n\nManagement API: KUBECONFIG={} kubectl get clusters,hosts\nLogs: {}/logs and {}/hosts/<host>/. Remove everything with: hakube down",
        state.path("kubeconfig").display(),
        state.management_kubeconfig().display(),
        state.dir.display(),
        state.dir.display()
    );
    Ok(())
}

async fn wait<T, F, Fut>(
    started: Instant,
    limit: Duration,
    what: &str,
    mut check: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "timed out after {}s waiting for {what}",
                started.elapsed().as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Kills these process groups: SIGTERM to all, then SIGKILL to whatever is left after 2 s.
fn kill_groups(pids: &[String]) {
    let groups: Vec<String> = pids.iter().map(|p| format!("-{p}")).collect();
    let signal = |signal: &str, group: &str| {
        Command::new("kill")
            .args([signal, "--", group])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    for group in &groups {
        signal("-TERM", group);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && groups.iter().any(|g| signal("-0", g)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for group in &groups {
        signal("-KILL", group);
    }
}

/// Removes everything `up` made; a no-op when nothing is there.
pub fn down(state_dir: &Path) -> Result<(), Error> {
    let pids: Vec<String> = fs::read_dir(state_dir.join("pids"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| fs::read_to_string(entry.path()).ok())
        .map(|pid| pid.trim().to_string())
        .collect();
    kill_groups(&pids);
    let namespaces = run_ip(&["netns", "list"]).unwrap_or_default();
    for line in namespaces.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if !name.starts_with(NETNS_PREFIX) {
            continue;
        }
        // Units hostd started live in the namespace: they go with it.
        for pid in run_ip(&["netns", "pids", name])
            .unwrap_or_default()
            .split_whitespace()
        {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
        run_ip(&["netns", "delete", name])?;
    }
    // A namespace outlives `netns delete` until its last process has exited, and with it the
    // host's veth: delete the machine's ends now so the next `up` can make them again.
    let links = run_ip(&["-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        // It may vanish on its own meanwhile, as its namespace goes.
        if name.starts_with(VETH_PREFIX) || name == BRIDGE {
            let _ = run_ip(&["link", "delete", name]);
        }
    }
    if state_dir.exists() {
        fs::remove_dir_all(state_dir).map_err(io(format!("removing {}", state_dir.display())))?;
    }
    Ok(())
}

/// The local Cluster as a table, with its conditions.
/// Writes the Cluster's admin kubeconfig from its Secret, which the operator updates when it
/// renews the admin certificate or rotates the authorities.
async fn write_admin_kubeconfig(
    state: &State,
    client: kube::Client,
    namespace: &str,
    status: &ClusterStatus,
) -> Result<PathBuf, Error> {
    let secret_name = status.admin_kubeconfig_secret.clone().unwrap_or_default();
    let cluster_secrets: Api<Secret> = Api::namespaced(client, namespace);
    let secret = cluster_secrets.get(&secret_name).await?;
    let kubeconfig = hakube_operator::secrets::string_data(&secret)
        .get("value")
        .cloned()
        .ok_or_else(|| Error::Other(format!("Secret {secret_name} has no kubeconfig")))?;
    let path = state.path("kubeconfig");
    fs::write(&path, kubeconfig).map_err(io("writing the kubeconfig"))?;
    Ok(path)
}

/// The local Cluster `up` made, by namespace and name, and a client of the management API.
async fn local_cluster(state: &State) -> Result<(kube::Client, String, String), Error> {
    let recorded = fs::read_to_string(state.path("cluster"))
        .map_err(|_| Error::Other("no local cluster; run `hakube up` first".into()))?;
    let (namespace, name) = recorded
        .trim()
        .split_once('/')
        .unwrap_or(("default", recorded.trim()));
    Ok((
        management::client(state).await?,
        namespace.to_string(),
        name.to_string(),
    ))
}

/// Refreshes the local Cluster's admin kubeconfig and prints its path.
pub async fn kubeconfig(state_dir: &Path) -> Result<(), Error> {
    let state = State {
        dir: state_dir.to_path_buf(),
    };
    let (client, namespace, name) = local_cluster(&state).await?;
    let cluster = Api::<Cluster>::namespaced(client.clone(), &namespace)
        .get(&name)
        .await?;
    let status = cluster.status.unwrap_or_default();
    let path = write_admin_kubeconfig(&state, client, &namespace, &status).await?;
    println!("{}", path.display());
    Ok(())
}

pub async fn status(state_dir: &Path) -> Result<(), Error> {
    let state = State {
        dir: state_dir.to_path_buf(),
    };
    let (client, namespace, name) = local_cluster(&state).await?;
    let cluster = Api::<Cluster>::namespaced(client, &namespace)
        .get(&name)
        .await?;
    let status = cluster.status.clone().unwrap_or_default();
    let available = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Available")
        .map(|c| c.status.clone())
        .unwrap_or_else(|| "Unknown".into());
    println!(
        "{:<12} {:<13} {:<15} {:<9} {:<26} AVAILABLE",
        "NAME", "PHASE", "VERSION", "TOPOLOGY", "ENDPOINT"
    );
    println!(
        "{:<12} {:<13} {:<15} {:<9} {:<26} {available}",
        name,
        status.phase.as_deref().unwrap_or("-"),
        cluster.spec.version,
        format!("{:?}", cluster.spec.topology),
        status.endpoint.as_deref().unwrap_or("-"),
    );
    println!(
        "\n{:<18} {:<7} {:<20} MESSAGE",
        "CONDITION", "STATUS", "REASON"
    );
    for c in &status.conditions {
        println!(
            "{:<18} {:<7} {:<20} {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    println!("\n{:<8} {:<8} {:<17} LEADER", "MEMBER", "HEALTHY", "ID");
    for m in &status.etcd_members {
        println!(
            "{:<8} {:<8} {:<17} {}",
            m.name,
            m.healthy,
            m.id.as_deref().unwrap_or("-"),
            m.leader
        );
    }
    Ok(())
}
