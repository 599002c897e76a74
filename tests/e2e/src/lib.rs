//! The harness of hakube's end-to-end suites: real etcd on free ports, the real
//! `hakube-apiserver` binary with a fresh PKI, and the installed kubectl pointed at it.
//! Everything a test starts is stopped when its handle drops.
#![forbid(unsafe_code)]

pub mod components;
pub mod simulated;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the loopback interface can bind an ephemeral port")
}

/// The repository root (the e2e crate lives in `tests/e2e`). Read at run time: cargo reuses
/// this crate's build between checkouts that share a target directory, so the compile-time
/// value may name another checkout.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    Path::new(&manifest_dir)
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Where cargo put the workspace's binaries: `HAKUBE_BIN_DIR`, else the target dir's profile.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HAKUBE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/hakube-target".into());
    PathBuf::from(target).join("debug")
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} not ready after {timeout:?}");
}

/// A single-member etcd on free loopback ports, in its own data directory.
pub struct Etcd {
    pub child: Child,
    pub client_url: String,
    peer_url: String,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd; if a port picked as free was taken meanwhile (tests run in parallel),
    /// etcd exits and is started again on other ports.
    pub fn start() -> Etcd {
        for _ in 0..5 {
            if let Some(etcd) = Self::try_start() {
                return etcd;
            }
        }
        panic!("etcd did not start after 5 attempts");
    }

    fn try_start() -> Option<Etcd> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let child = Self::spawn(dir.path(), &client_url, &peer_url);
        let mut etcd = Etcd {
            child,
            client_url,
            peer_url,
            dir,
        };
        etcd.wait_healthy().then_some(etcd)
    }

    fn spawn(dir: &Path, client_url: &str, peer_url: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("etcd.log"))
            .expect("etcd log file");
        Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", client_url])
            .args(["--advertise-client-urls", client_url])
            .args(["--listen-peer-urls", peer_url])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(["--logger=zap", "--log-level=error"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd is installed (apt-get install etcd-server)")
    }

    /// Stops etcd and deletes its data: what an API server sees of a host whose etcd has not
    /// started yet.
    pub fn stop_and_wipe(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(self.dir.path().join("data")).expect("removing etcd's data");
    }

    /// Starts etcd again on the same addresses, and waits until it is healthy.
    pub fn start_again(&mut self) {
        self.child = Self::spawn(self.dir.path(), &self.client_url, &self.peer_url);
        assert!(self.wait_healthy(), "etcd exited when started again");
    }

    /// Waits until etcd answers `/health`; false if it exited first.
    fn wait_healthy(&mut self) -> bool {
        let health = format!("{}/health", self.client_url);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let healthy = Command::new("curl")
                .args(["-sf", &health])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if healthy {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd not healthy after 20s");
    }

    /// Runs `etcdctl ARGS` against this etcd, which must succeed; returns its stdout.
    pub fn run_ctl(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.client_url])
            .args(args)
            .output()
            .expect("etcdctl runs");
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Runs `etcdctl ARGS -w json` and parses what it printed.
    pub fn ctl(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.extend(["-w", "json"]);
        serde_json::from_slice(&self.run_ctl(&with_json)).expect("etcdctl prints JSON")
    }

    /// Compacts etcd's history up to its current revision.
    pub fn compact(&self) {
        let status = self.ctl(&["endpoint", "status"]);
        let rev = status[0]["Status"]["header"]["revision"]
            .as_i64()
            .expect("a revision");
        self.run_ctl(&["compaction", &rev.to_string()]);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcd plus a running hakube-apiserver with client-certificate, static-token and
/// ServiceAccount authentication configured.
pub struct ControlPlane {
    pub etcd: Etcd,
    apiserver: Child,
    pub port: u16,
    pub url: String,
    pub pki: PathBuf,
    dir: tempfile::TempDir,
    /// The flags the API server was started with beyond the harness's own, kept for restarts.
    extra_args: Vec<String>,
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        Self::start_with(&[])
    }

    pub fn start_with(extra_args: &[&str]) -> ControlPlane {
        Self::start_together(extra_args, 0).0
    }

    /// A control plane with `others` more API servers on its etcd and PKI, every one started
    /// at once as on hosts coming up together; the others' ports and processes, each ready.
    ///
    /// A port picked as free can be taken by a test running alongside before an API server
    /// binds it; that server exits, and everything is started again on other ports.
    pub fn start_together(extra_args: &[&str], others: usize) -> (ControlPlane, Vec<(u16, Child)>) {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let (mut cp, mut beside) = Self::start_on(Etcd::start(), extra_args, others);
            match cp.wait_started(&mut beside) {
                Ok(()) => return (cp, beside),
                Err(exit) if attempt < ATTEMPTS => {
                    eprintln!("attempt {attempt} to start the control plane failed: {exit}");
                    for (_, child) in &mut beside {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                }
                Err(exit) => panic!("the control plane did not start: {exit}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until every API server answers `/readyz`. An API server that exits first is an
    /// error carrying the end of its log; one still not ready after 30 s is a panic, with the
    /// same.
    fn wait_started(&mut self, beside: &mut [(u16, Child)]) -> Result<(), String> {
        let servers: Vec<(String, PathBuf)> =
            std::iter::once((self.url.clone(), self.dir.path().join("apiserver.log")))
                .chain(beside.iter().enumerate().map(|(i, (port, _))| {
                    (
                        format!("https://127.0.0.1:{port}"),
                        self.dir.path().join(format!("apiserver-{i}/apiserver.log")),
                    )
                }))
                .collect();
        let mut ready = vec![false; servers.len()];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            let children =
                std::iter::once(&mut self.apiserver).chain(beside.iter_mut().map(|(_, c)| c));
            for (child, (_, log)) in children.zip(&servers) {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "an API server exited ({status}):\n{}",
                        log_tail(log)
                    ));
                }
            }
            for (done, (url, _)) in ready.iter_mut().zip(&servers) {
                *done = *done || answers_readyz(url, &self.path("ca.crt"));
            }
            if ready.iter().all(|done| *done) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: Vec<String> = servers
            .iter()
            .zip(&ready)
            .filter(|(_, done)| !**done)
            .map(|((url, log), _)| format!("{url}:\n{}", log_tail(log)))
            .collect();
        panic!("hakube-apiserver not ready after 30s; {}", logs.join("\n"));
    }

    /// An API server started while its etcd is down (stopped, its data wiped), not waited for.
    pub fn start_with_etcd_down() -> ControlPlane {
        let mut etcd = Etcd::start();
        etcd.stop_and_wipe();
        Self::start_on(etcd, &[], 0).0
    }

    fn start_on(
        etcd: Etcd,
        extra_args: &[&str],
        others: usize,
    ) -> (ControlPlane, Vec<(u16, Child)>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let pki = dir.path().join("pki");
        let status = Command::new(repo_root().join("scripts/pki.sh"))
            .arg(&pki)
            .arg(&url)
            .status()
            .expect("scripts/pki.sh runs");
        assert!(status.success(), "pki.sh failed");
        let apiserver = Self::spawn_apiserver(&etcd, port, &pki, dir.path(), extra_args);
        // Each advertises its own loopback address (127.0.0.2, …), as hosts of a control plane do.
        let beside: Vec<(u16, Child)> = (0..others)
            .map(|i| {
                let port = free_port();
                let log_dir = dir.path().join(format!("apiserver-{i}"));
                std::fs::create_dir_all(&log_dir).expect("a log directory");
                let advertise = format!("127.0.0.{}", i + 2);
                let mut args = extra_args.to_vec();
                args.extend(["--advertise-address", &advertise]);
                (
                    port,
                    Self::spawn_apiserver(&etcd, port, &pki, &log_dir, &args),
                )
            })
            .collect();
        let cp = ControlPlane {
            etcd,
            apiserver,
            port,
            url,
            pki,
            dir,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        (cp, beside)
    }

    fn spawn_apiserver(
        etcd: &Etcd,
        port: u16,
        pki: &Path,
        dir: &Path,
        extra_args: &[&str],
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("apiserver.log"))
            .expect("log file");
        let p = |f: &str| pki.join(f).to_string_lossy().into_owned();
        Command::new(bin_dir().join("hakube-apiserver"))
            .args(["--etcd-servers", &etcd.client_url])
            .args([
                "--secure-port",
                &port.to_string(),
                "--bind-address",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &p("apiserver.crt"),
                "--tls-private-key-file",
                &p("apiserver.key"),
            ])
            .args([
                "--client-ca-file",
                &p("ca.crt"),
                "--token-auth-file",
                &p("tokens.csv"),
            ])
            .args(["--service-account-key-file", &p("sa.pub")])
            .args(["--service-account-signing-key-file", &p("sa.key")])
            .args([
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ])
            .args(["--service-cluster-ip-range", "10.0.0.0/24"])
            .args(extra_args)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("hakube-apiserver is built (cargo build --workspace)")
    }

    /// Waits until the API server answers `/readyz`.
    pub fn wait_ready(&self) {
        let ca = self.path("ca.crt");
        wait_until("hakube-apiserver", Duration::from_secs(30), || {
            answers_readyz(&self.url, &ca)
        });
    }

    /// A file of the control plane's PKI.
    pub fn path(&self, file: &str) -> String {
        self.pki.join(file).to_string_lossy().into_owned()
    }

    pub fn admin_kubeconfig(&self) -> String {
        self.path("admin.kubeconfig")
    }

    /// A kubeconfig for a bearer token.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> String {
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hakube\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: hakube\n  context: {{cluster: hakube, user: {name}}}\ncurrent-context: hakube\n",
            self.url,
            self.path("ca.crt"),
        );
        std::fs::write(&path, text).expect("writing a kubeconfig");
        path.to_string_lossy().into_owned()
    }

    /// Runs kubectl as the admin (client certificate).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.admin_kubeconfig(), args, None)
    }

    pub fn kubectl_as(&self, kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", kubeconfig)
            .env("HOME", self.dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("kubectl is installed");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .expect("writing kubectl's stdin");
        }
        child.wait_with_output().expect("kubectl runs")
    }

    /// What `kubectl get ARGS -w --no-headers` prints while `change` runs (the watch gets a
    /// moment to open first, and to print the change after).
    pub fn watch_output(&self, args: &[&str], change: impl FnOnce()) -> String {
        let mut watch = Command::new("kubectl")
            .args(["--kubeconfig", &self.admin_kubeconfig(), "get"])
            .args(args)
            .args(["-w", "--no-headers"])
            .env("HOME", self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl runs");
        std::thread::sleep(Duration::from_millis(800));
        change();
        std::thread::sleep(Duration::from_millis(800));
        let _ = watch.kill();
        let out = watch.wait_with_output().expect("kubectl's output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kube-rs client for the admin.
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(self.admin_kubeconfig()).expect("kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .expect("client config");
        kube::Client::try_from(config).expect("client")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl with a manifest on stdin that must succeed.
    pub fn ok_stdin(&self, args: &[&str], manifest: &str) -> String {
        let out = self.kubectl_as(&self.admin_kubeconfig(), args, Some(manifest));
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_as(&self.admin_kubeconfig(), args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl get -o json` of one object.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("kubectl printed JSON")
    }

    /// A raw HTTPS request as the admin, through curl: (status code, body).
    pub fn curl(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> (u16, Value) {
        let cert = [
            "--cert".to_string(),
            self.path("admin.crt"),
            "--key".to_string(),
            self.path("admin.key"),
        ];
        self.curl_as(&cert, method, path, content_type, body)
    }

    /// A JSON merge patch through curl, as controllers send them: (status code, body).
    pub fn merge_patch(&self, path: &str, patch: &str) -> (u16, Value) {
        self.curl(
            "PATCH",
            path,
            "application/merge-patch+json",
            Some(patch.as_bytes()),
        )
    }

    /// A raw HTTPS request with the given credentials (curl arguments), or none.
    pub fn curl_as(
        &self,
        credentials: &[String],
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> (u16, Value) {
        use std::io::Write;
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--http1.1", "-X", method, "-w", "\n%{http_code}"])
            .args(["--cacert", &self.path("ca.crt")])
            .args(credentials)
            .args(["-H", &format!("Content-Type: {content_type}")])
            .arg(format!("{}{}", self.url, path))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]).stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().expect("curl is installed");
        if let (Some(b), Some(mut pipe)) = (body, child.stdin.take()) {
            pipe.write_all(b).expect("writing curl's stdin");
        }
        let out = child.wait_with_output().expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
        )
    }

    /// A streaming GET (a watch) as the admin, read for at most `seconds`: each line parsed as
    /// JSON, plus curl's exit code (28 when the time ran out with the stream still open).
    pub fn stream(&self, path: &str, seconds: u32) -> (Vec<Value>, i32) {
        let out = Command::new("curl")
            .args(["-sN", "--http1.1", "--max-time", &seconds.to_string()])
            .args(["--cacert", &self.path("ca.crt")])
            .args([
                "--cert",
                &self.path("admin.crt"),
                "--key",
                &self.path("admin.key"),
            ])
            .arg(format!("{}{}", self.url, path))
            .output()
            .expect("curl runs");
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.to_string())))
            .collect();
        (events, out.status.code().unwrap_or(-1))
    }

    /// How many watches on `resource` the server counts as open (its metrics gauge).
    pub fn open_watches(&self, resource: &str) -> i64 {
        let (_, text) = self.curl("GET", "/metrics", "text/plain", None);
        let needle = format!("resource=\"{resource}\"");
        text.as_str()
            .unwrap_or("")
            .lines()
            .find(|l| l.starts_with("apiserver_longrunning_requests{") && l.contains(&needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Sends SIGTERM to the API server and waits for it: (exit success, time it took).
    pub fn terminate_apiserver(&mut self) -> (bool, Duration) {
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.apiserver.id().to_string()])
            .status();
        let status = self.apiserver.wait().expect("waiting for the API server");
        (status.success(), start.elapsed())
    }

    /// Starts the API server again on the same etcd, port and PKI.
    pub fn restart_apiserver(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        let fresh =
            Self::spawn_apiserver(&self.etcd, self.port, &self.pki, self.dir.path(), &extra);
        self.apiserver = fresh;
        self.wait_ready();
    }

    /// The API server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
    }
}

/// Whether the API server at `url` answers `/readyz` with success.
fn answers_readyz(url: &str, ca_file: &str) -> bool {
    Command::new("curl")
        .args(["-sf", "--cacert", ca_file, &format!("{url}/readyz")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The last lines of a log file, for failure messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Polls until `check` holds or the timeout passes.
pub fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    wait_until(what, timeout, &mut check);
}
