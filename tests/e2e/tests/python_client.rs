//! The Python `kubernetes` client from PyPI, in a virtualenv this test makes (and keeps, under
//! `HAKUBE_PYTHON_VENV` or /var/tmp, so later runs reuse it).

use std::path::PathBuf;
use std::process::Command;

use hakube_e2e::{repo_root, ControlPlane};

/// The client version the suite is pinned to (the contract's 37.x line).
const KUBERNETES_CLIENT: &str = "kubernetes==37.0.2";

fn venv() -> PathBuf {
    let dir = std::env::var("HAKUBE_PYTHON_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/hakube-python-venv"));
    let python = dir.join("bin/python");
    let has_client = python.exists()
        && Command::new(&python)
            .args(["-c", "import kubernetes"])
            .status()
            .is_ok_and(|s| s.success());
    if !has_client {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 is installed");
        assert!(status.success(), "creating the virtualenv failed");
        let status = Command::new(dir.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                KUBERNETES_CLIENT,
            ])
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install {KUBERNETES_CLIENT} failed");
    }
    python
}

#[test]
fn python_client_lists_creates_replaces_watches_and_deletes() {
    let python = venv();
    let cp = ControlPlane::start();
    let out = Command::new(python)
        .arg(repo_root().join("tests/e2e/python/client_suite.py"))
        .env("KUBECONFIG", cp.admin_kubeconfig())
        .output()
        .expect("the python suite runs");
    assert!(
        out.status.success(),
        "python suite failed:\nstdout: {}\nstderr: {}\napiserver log tail: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        cp.log()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python client suite passed"));
}
