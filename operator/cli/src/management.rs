//! The management plane of local mode: etcd, hakube-apiserver and hakube-controller-manager on
//! loopback, with their own PKI and an admin kubeconfig, and the operator beside them.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hakube_pki::{Authority, LeafRequest, Usage};

use crate::{io, Error};

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// Paths of local mode's state.
pub struct State {
    pub dir: PathBuf,
}

impl State {
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    pub fn management_kubeconfig(&self) -> PathBuf {
        self.path("management.kubeconfig")
    }

    /// Starts `program` detached (own process group, output to its log), recording its pid.
    pub fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<u32, Error> {
        fs::create_dir_all(self.path("logs")).map_err(io("creating the log directory"))?;
        fs::create_dir_all(self.path("pids")).map_err(io("creating the pid directory"))?;
        let log = fs::File::create(self.path(&format!("logs/{name}.log")))
            .map_err(io(format!("creating the log of {name}")))?;
        let err = log.try_clone().map_err(io("duplicating a log handle"))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .map_err(io(format!("starting {}", program.display())))?;
        fs::write(
            self.path(&format!("pids/{name}.pid")),
            child.id().to_string(),
        )
        .map_err(io("writing a pid file"))?;
        Ok(child.id())
    }

    pub fn log_tail(&self, name: &str) -> String {
        let log = fs::read_to_string(self.path(&format!("logs/{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> Result<u16, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

/// Starts etcd and hakube-apiserver; returns the management API's URL once it is ready.
pub async fn start(state: &State, bin: &Path) -> Result<String, Error> {
    let pki = state.path("management/pki");
    fs::create_dir_all(&pki).map_err(io("creating the management PKI directory"))?;
    let ca = Authority::generate("hakube-management-ca", 10 * YEAR)?;
    let ca_pem = ca.to_pem()?;
    let mut serving = LeafRequest::new("kube-apiserver", Usage::Server, YEAR);
    serving.ip_addresses = vec![[127, 0, 0, 1].into()];
    serving.dns_names = vec![
        "localhost".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
    ];
    let serving = ca.issue(&serving)?;
    let mut admin = LeafRequest::new("kubernetes-admin", Usage::Client, YEAR);
    admin.organizations = vec!["system:masters".into()];
    let admin = ca.issue(&admin)?;
    let (sa_key, sa_pub) = hakube_pki::service_account_key_pair()?;
    for (file, content) in [
        ("ca.crt", &ca_pem.cert_pem),
        ("apiserver.crt", &serving.cert_pem),
        ("apiserver.key", &serving.key_pem),
        ("sa.key", &sa_key),
        ("sa.pub", &sa_pub),
    ] {
        fs::write(pki.join(file), content).map_err(io(format!("writing {file}")))?;
    }

    let etcd_port = free_port()?;
    let peer_port = free_port()?;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    state.spawn(
        "management-etcd",
        Path::new("etcd"),
        &[
            "--name=management".into(),
            format!("--data-dir={}", state.path("management/etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=management={peer_url}"),
            "--log-level=warn".into(),
        ],
        &[],
    )?;
    // The API server wants etcd answering when it starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_err() {
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "the management etcd did not start:\n{}",
                state.log_tail("management-etcd")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let port = free_port()?;
    let p = |f: &str| pki.join(f).display().to_string();
    state.spawn(
        "management-apiserver",
        &bin.join("hakube-apiserver"),
        &[
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--tls-cert-file={}", p("apiserver.crt")),
            format!("--tls-private-key-file={}", p("apiserver.key")),
            format!("--client-ca-file={}", p("ca.crt")),
            format!("--service-account-key-file={}", p("sa.pub")),
            format!("--service-account-signing-key-file={}", p("sa.key")),
        ],
        &[],
    )?;
    let server = format!("https://127.0.0.1:{port}");
    let kubeconfig = hakube_pki::kubeconfig(
        "hakube-management",
        &server,
        &ca_pem.cert_pem,
        "kubernetes-admin",
        &admin,
    );
    fs::write(state.management_kubeconfig(), kubeconfig)
        .map_err(io("writing the management kubeconfig"))?;
    let client = client(state).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| Error::Other(e.to_string()))?;
        if client
            .request_text(request)
            .await
            .is_ok_and(|body| body.trim() == "ok")
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Other(format!(
                "the management API did not become ready:\n{}",
                state.log_tail("management-apiserver")
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Garbage collection (a deleted Cluster's Secrets), namespace deletion and the rest of the
    // core controllers, as any cluster the operator might run in has them.
    state.spawn(
        "management-controller-manager",
        &bin.join("hakube-controller-manager"),
        &[
            format!("--kubeconfig={}", state.management_kubeconfig().display()),
            format!("--root-ca-file={}", p("ca.crt")),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ],
        &[],
    )?;
    Ok(server)
}

/// A client of the management API.
pub async fn client(state: &State) -> Result<kube::Client, Error> {
    let kubeconfig = kube::config::Kubeconfig::read_from(state.management_kubeconfig())
        .map_err(|e| Error::Other(format!("management kubeconfig: {e}")))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| Error::Other(format!("management kubeconfig: {e}")))?;
    Ok(kube::Client::try_from(config)?)
}
