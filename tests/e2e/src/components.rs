//! Control-plane components (hakube-scheduler, hakube-controller-manager) as processes of a
//! test, pointed at a [`ControlPlane`]'s API server with short leader-election timings.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{bin_dir, free_port, ControlPlane};

/// One component process; killed when dropped.
pub struct Component {
    child: Child,
    log: PathBuf,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Component {
    /// Starts `binary` (from [`bin_dir`]) as the admin, serving `/healthz` and `/metrics` on
    /// a free loopback port, with `args` after the harness's own flags, and waits until it
    /// answers `/healthz`. A port picked as free can be taken by a test running alongside
    /// before the component binds it; the component then exits and is started again on
    /// another.
    pub fn start(cp: &ControlPlane, binary: &str, args: &[&str]) -> Component {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let mut component = Self::spawn(cp, binary, args);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(status)) = component.child.try_wait() {
                    let message = format!(
                        "{binary} exited ({status}) on attempt {attempt}:\n{}",
                        component.log()
                    );
                    assert!(attempt < ATTEMPTS, "{message}");
                    eprintln!("{message}");
                    break;
                }
                if component.get("/healthz") == "ok" {
                    return component;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{binary} did not answer /healthz after 30s:\n{}",
                component.log()
            );
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(cp: &ControlPlane, binary: &str, args: &[&str]) -> Component {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = dir.path().join(format!("{binary}.log"));
        let port = free_port();
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin_dir().join(binary))
            .args(["--kubeconfig", &cp.admin_kubeconfig()])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            // Short leader-election timings keep failover tests quick.
            .args(["--leader-elect-lease-duration", "4s"])
            .args(["--leader-elect-renew-deadline", "3s"])
            .args(["--leader-elect-retry-period", "1s"])
            .args(args)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} is built (cargo build --workspace --bins): {e}"));
        Component {
            child,
            log,
            port,
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_leading(&self) -> bool {
        self.log().contains("successfully acquired lease")
    }

    /// GET on the component's HTTPS port (`/healthz`, `/metrics`).
    pub fn get(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sk", &format!("https://127.0.0.1:{}{path}", self.port)])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the process (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}
