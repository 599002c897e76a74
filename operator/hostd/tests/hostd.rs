//! hakube-hostd end to end: the real binary on loopback, driven as the operator drives it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hakube_hostd_api::client::ClientTls;
use hakube_hostd_api::join::{JoinErrorResponse, JoinRequest, JoinResponse};
use hakube_hostd_api::v1 as api;
use tonic::Code;

const UNIT_TIMEOUT: Duration = Duration::from_secs(60);

fn http_server_unit(name: &str, port: u16) -> api::UnitSpec {
    api::UnitSpec {
        name: name.into(),
        command: "python3".into(),
        args: vec![
            "-m".into(),
            "http.server".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
        ],
        readiness_probe: Some(api::ReadinessProbe {
            check: Some(api::readiness_probe::Check::HttpGet(api::HttpGetProbe {
                url: format!("http://127.0.0.1:{port}/"),
                ..Default::default()
            })),
            period_seconds: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn ensure(
    client: &mut hakube_hostd_api::v1::hostd_client::HostdClient<tonic::transport::Channel>,
    spec: api::UnitSpec,
) -> api::EnsureUnitResponse {
    client
        .ensure_unit(api::EnsureUnitRequest { spec: Some(spec) })
        .await
        .unwrap()
        .into_inner()
}

async fn wait_ready(
    client: &mut hakube_hostd_api::v1::hostd_client::HostdClient<tonic::transport::Channel>,
    name: &str,
) -> api::UnitStatus {
    eventually(UNIT_TIMEOUT, &format!("unit {name} ready"), || {
        let mut client = client.clone();
        async move {
            unit_status(&mut client, name)
                .await
                .filter(|s| s.state == api::UnitState::Ready as i32 && s.ready)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_the_operator_and_refuses_everyone_else() {
    let setup = Setup::new();
    let mut hostd = setup.start_hostd(&setup.tls_args());
    let mut client = hostd.client().await;

    let facts = client
        .get_facts(api::GetFactsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(facts.host_name, "host-a");
    assert_eq!(facts.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(facts.cpu_count > 0 && facts.memory_bytes > 0 && facts.disk_bytes > 0);
    assert!(facts
        .interface_addresses
        .iter()
        .any(|a| a.address == "127.0.0.1"));
    let names: Vec<_> = facts.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["etcd", "haproxy", "keepalived"]);
    for program in &facts.programs {
        let installed = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|dir| std::path::Path::new(dir).join(&program.name).exists());
        assert_eq!(program.present, installed, "{program:?}");
        if program.present {
            assert!(!program.version.is_empty(), "{program:?}");
        }
    }

    // Signed by the right CA but not the operator: authenticated, not authorised.
    let stranger = setup.pki.issue("someone-else", &[]);
    let mut stranger_client = hostd
        .client_with_unchecked(ClientTls {
            cert_pem: stranger.cert_pem,
            key_pem: stranger.key_pem,
            ..setup.operator_tls()
        })
        .await
        .expect("the TLS handshake succeeds for a certificate of the right CA");
    let refused = stranger_client
        .list_units(api::ListUnitsRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // The operator's name from another CA: refused at the handshake.
    let other_pki = Pki::new("other-ca");
    let impostor = other_pki.issue(hakube_hostd_api::OPERATOR_CLIENT_COMMON_NAME, &[]);
    let impostor_tls = ClientTls {
        cert_pem: impostor.cert_pem,
        key_pem: impostor.key_pem,
        ..setup.operator_tls()
    };
    assert_handshake_refused(&hostd, &setup.pki.ca_pem(), Some(&impostor_tls)).await;
    if let Ok(mut impostor_client) = hostd.client_with_unchecked(impostor_tls).await {
        let error = impostor_client
            .get_facts(api::GetFactsRequest {})
            .await
            .unwrap_err();
        assert_ne!(error.code(), Code::PermissionDenied, "{error:?}");
    }

    // No client certificate at all: refused at the handshake.
    assert_handshake_refused(&hostd, &setup.pki.ca_pem(), None).await;

    // The operator still gets through.
    client.list_units(api::ListUnitsRequest {}).await.unwrap();
}

/// A raw TLS client: with TLS 1.3 the server's refusal of the client certificate arrives as an
/// alert right after the client's side of the handshake, before any application data.
async fn assert_handshake_refused(hostd: &Hostd, ca_pem: &[u8], identity: Option<&ClientTls>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(tls) => builder
            .with_client_auth_cert(
                rustls_pemfile::certs(&mut &tls.cert_pem[..])
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                rustls_pemfile::private_key(&mut &tls.key_pem[..])
                    .unwrap()
                    .unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(hostd.address).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        let mut tls = connector.connect(server_name, tcp).await?;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buffer = [0u8; 64];
        let read = tls.read(&mut buffer).await?;
        Ok::<usize, std::io::Error>(read)
    })
    .await
    .expect("the server answers");
    match outcome {
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("Certificate")
                    || text.contains("certificate")
                    || text.contains("alert"),
                "unexpected error: {text}"
            );
        }
        Ok(0) => {}
        Ok(read) => panic!("the server sent {read} bytes of application data"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_joins_with_a_valid_token_and_keeps_its_certificate() {
    let setup = Setup::new();
    let join_pki = Pki::new("join-ca");
    let join_ca_file = write(&setup.path("join-ca.crt"), &join_pki.ca_pem());
    let joins = Arc::new(AtomicU32::new(0));
    let cluster_pki = Arc::new(Pki::new("cluster-ca"));
    let server = {
        let joins = joins.clone();
        let cluster_pki = cluster_pki.clone();
        serve_https(
            server_tls(&join_pki.issue("operator-join", &["127.0.0.1"]), None),
            move |exchange| {
                assert_eq!(exchange.method, http::Method::POST);
                assert_eq!(exchange.path, "/join");
                let request: JoinRequest = serde_json::from_slice(&exchange.body).unwrap();
                if request.token != "good-token" {
                    return (
                        http::StatusCode::FORBIDDEN,
                        serde_json::to_vec(&JoinErrorResponse {
                            message: "unknown or expired join token".into(),
                        })
                        .unwrap(),
                    );
                }
                assert_eq!(request.host_name, "host-a");
                joins.fetch_add(1, Ordering::SeqCst);
                let response = JoinResponse {
                    certificate: String::from_utf8(
                        cluster_pki.sign_request(request.csr.as_bytes()),
                    )
                    .unwrap(),
                    ca_certificate: String::from_utf8(cluster_pki.ca_pem()).unwrap(),
                };
                (http::StatusCode::OK, serde_json::to_vec(&response).unwrap())
            },
        )
        .await
    };
    let join_args = |token: &str| {
        vec![
            "--join-url".to_string(),
            format!("https://{}/join", server.address),
            "--join-token".into(),
            token.into(),
            "--join-ca-file".into(),
            join_ca_file.display().to_string(),
            "--advertise-address".into(),
            "127.0.0.1".into(),
        ]
    };

    // A bad token: hostd exits with the endpoint's message and keeps nothing.
    let mut refused = setup.start_hostd(&join_args("bad-token"));
    let status = refused.wait_exit(Duration::from_secs(60));
    assert!(!status.success());
    assert!(
        refused.logs().contains("unknown or expired join token"),
        "{}",
        refused.logs()
    );
    assert!(!setup.data_dir().join("pki/host.crt").exists());
    drop(refused);

    // A good token: hostd joins, stores its key privately, and serves with the new certificate.
    let mut hostd = setup.start_hostd(&join_args("good-token"));
    let operator = cluster_pki.issue(hakube_hostd_api::OPERATOR_CLIENT_COMMON_NAME, &[]);
    let cluster_tls = ClientTls {
        ca_pem: cluster_pki.ca_pem(),
        cert_pem: operator.cert_pem,
        key_pem: operator.key_pem,
        server_name: None,
    };
    let mut client = hostd.client_with(cluster_tls.clone()).await;
    assert_eq!(joins.load(Ordering::SeqCst), 1);
    let key_mode = std::fs::metadata(setup.data_dir().join("pki/host.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    client.list_units(api::ListUnitsRequest {}).await.unwrap();

    // Later starts reuse the certificate: no second join, even with the endpoint gone.
    drop(server);
    hostd.restart();
    hostd.client_with(cluster_tls).await;
    assert_eq!(joins.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_written_atomically_with_modes_and_only_under_allowed_prefixes() {
    let setup = Setup::new();
    let etc = setup.path("etc-hakube");
    let mut args = setup.tls_args();
    args.extend([
        "--allowed-path".into(),
        etc.display().to_string(),
        "--allowed-path".into(),
        setup.data_dir().display().to_string(),
    ]);
    let mut hostd = setup.start_hostd(&args);
    let mut client = hostd.client().await;

    let key_path = etc.join("pki/etcd/server.key");
    let write = |path: &std::path::Path, content: &[u8], mode: u32| api::WriteFileRequest {
        path: path.display().to_string(),
        content: content.to_vec(),
        mode,
    };
    let written = client
        .write_file(write(&key_path, b"secret", 0o600))
        .await
        .unwrap()
        .into_inner();
    assert!(written.changed);
    assert_eq!(std::fs::read(&key_path).unwrap(), b"secret");
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let again = client
        .write_file(write(&key_path, b"secret", 0o600))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed);
    client
        .write_file(write(&key_path, b"rotated", 0o640))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&key_path).unwrap(), b"rotated");
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    let config = setup.data_dir().join("clusters/c1/haproxy.cfg");
    client
        .write_file(write(&config, b"global\n", 0))
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    let leftovers: Vec<_> = std::fs::read_dir(key_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(leftovers, ["server.key"]);

    let outside = setup.path("elsewhere/file");
    for path in [
        outside.display().to_string(),
        "/etc/hakube-hostd-test".into(),
        "relative/file".into(),
        format!("{}/../elsewhere/file", etc.display()),
        setup.data_dir().join("pki/host.key").display().to_string(),
        setup.data_dir().join("units/x.json").display().to_string(),
        etc.display().to_string(),
    ] {
        let error = client
            .write_file(api::WriteFileRequest {
                path: path.clone(),
                content: b"x".to_vec(),
                mode: 0o644,
            })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{path}: {error:?}");
        let error = client
            .remove_path(api::RemovePathRequest { path: path.clone() })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{path}: {error:?}");
    }
    assert!(!outside.exists());

    let removed = client
        .remove_path(api::RemovePathRequest {
            path: key_path.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    assert!(!key_path.exists());
    let removed_dir = client
        .remove_path(api::RemovePathRequest {
            path: setup.data_dir().join("clusters").display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed_dir.removed);
    assert!(!config.exists());
    let absent = client
        .remove_path(api::RemovePathRequest {
            path: key_path.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!absent.removed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_become_ready_restart_with_backoff_and_stop_with_their_process_group() {
    let setup = Setup::new();
    let mut hostd = setup.start_hostd(&setup.tls_args());
    let mut client = hostd.client().await;

    let port = free_port();
    let created = ensure(&mut client, http_server_unit("web", port)).await;
    assert_eq!(created.action, api::EnsureAction::Created as i32);
    let ready = wait_ready(&mut client, "web").await;
    let first_pid = ready.pid;
    assert!(first_pid > 0 && process_exists(first_pid));
    assert_eq!(ready.restart_count, 0);

    // The same spec again changes nothing.
    let same = ensure(&mut client, http_server_unit("web", port)).await;
    assert_eq!(same.action, api::EnsureAction::Unchanged as i32);
    assert_eq!(same.status.unwrap().pid, first_pid);

    // Killed: restarted after 1s, then after 2s.
    let mut previous_pid = first_pid;
    for (round, minimum_delay) in [(1u32, Duration::from_secs(1)), (2, Duration::from_secs(2))] {
        let killed_at = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(previous_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let restarted = eventually(UNIT_TIMEOUT, "a restarted process", || {
            let mut client = client.clone();
            async move {
                unit_status(&mut client, "web")
                    .await
                    .filter(|s| s.pid != 0 && s.pid != previous_pid)
            }
        })
        .await;
        assert!(
            killed_at.elapsed() >= minimum_delay,
            "restart {round} came after {:?}",
            killed_at.elapsed()
        );
        assert_eq!(restarted.restart_count, round);
        assert_eq!(restarted.last_exit_signal, Some(9));
        let ready = wait_ready(&mut client, "web").await;
        assert_eq!(ready.pid, restarted.pid);
        previous_pid = restarted.pid;
    }

    // A changed spec restarts the unit.
    let mut changed_spec = http_server_unit("web", port);
    changed_spec.env.insert("VERSION".into(), "2".into());
    let changed = ensure(&mut client, changed_spec).await;
    assert_eq!(changed.action, api::EnsureAction::Restarted as i32);
    let changed_pid = changed.status.unwrap().pid;
    assert_ne!(changed_pid, previous_pid);
    assert!(!process_exists(previous_pid));
    wait_ready(&mut client, "web").await;

    // With a reload signal, a new reload digest alone signals the running process instead.
    let reloads = setup.path("reloads");
    let reloading = |digest: &str| api::UnitSpec {
        name: "reloading".into(),
        command: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            format!(
                "trap 'echo reloaded >> {}' HUP; while true; do sleep 0.1; done",
                reloads.display()
            ),
        ],
        reload_signal: api::ReloadSignal::Sighup as i32,
        reload_digest: digest.into(),
        ..Default::default()
    };
    let first = ensure(&mut client, reloading("a")).await;
    let first_pid = first.status.unwrap().pid;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reloaded = ensure(&mut client, reloading("b")).await;
    assert_eq!(reloaded.action, api::EnsureAction::Reloaded as i32);
    assert_eq!(reloaded.status.unwrap().pid, first_pid);
    eventually(UNIT_TIMEOUT, "the reload signal handled", || {
        let file = reloads.clone();
        async move {
            std::fs::read_to_string(file)
                .ok()
                .filter(|t| t == "reloaded\n")
        }
    })
    .await;
    assert_eq!(
        ensure(&mut client, reloading("b")).await.action,
        api::EnsureAction::Unchanged as i32
    );
    let mut other_change = reloading("c");
    other_change.env.insert("VERSION".into(), "2".into());
    let restarted = ensure(&mut client, other_change).await;
    assert_eq!(restarted.action, api::EnsureAction::Restarted as i32);
    assert_ne!(restarted.status.unwrap().pid, first_pid);
    client
        .remove_unit(api::RemoveUnitRequest {
            name: "reloading".into(),
        })
        .await
        .unwrap();

    // A unit whose whole group ignores SIGTERM: SIGKILL after the grace period, for all of it.
    let child_pid_file = setup.path("child.pid");
    let stubborn = api::UnitSpec {
        name: "stubborn".into(),
        command: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            format!(
                "trap '' TERM; sleep 1000 & echo $! > {}; wait",
                child_pid_file.display()
            ),
        ],
        stop_grace_period_seconds: 2,
        ..Default::default()
    };
    ensure(&mut client, stubborn.clone()).await;
    let child_pid: u32 = eventually(UNIT_TIMEOUT, "the unit's child", || {
        let file = child_pid_file.clone();
        async move { std::fs::read_to_string(file).ok()?.trim().parse().ok() }
    })
    .await;
    let leader_pid = unit_status(&mut client, "stubborn").await.unwrap().pid;
    assert!(process_exists(child_pid) && process_exists(leader_pid));
    let stopping = Instant::now();
    let stopped = client
        .stop_unit(api::StopUnitRequest {
            name: "stubborn".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stopping.elapsed() >= Duration::from_secs(2));
    assert_eq!(stopped.state, api::UnitState::Stopped as i32);
    assert_eq!(stopped.pid, 0);
    assert!(!process_exists(leader_pid));
    assert!(!process_exists(child_pid));

    // Stopped stays stopped; ensuring it again starts it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        unit_status(&mut client, "stubborn").await.unwrap().state,
        api::UnitState::Stopped as i32
    );
    let started = ensure(&mut client, stubborn).await;
    assert_eq!(started.action, api::EnsureAction::Started as i32);

    // Removal stops and forgets.
    let web_pid = unit_status(&mut client, "web").await.unwrap().pid;
    for name in ["web", "stubborn"] {
        let removed = client
            .remove_unit(api::RemoveUnitRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        assert!(removed.removed);
    }
    assert!(!process_exists(web_pid));
    assert!(client
        .list_units(api::ListUnitsRequest {})
        .await
        .unwrap()
        .into_inner()
        .units
        .is_empty());
    assert!(hostd.recorded_unit_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hostd_adopts_running_units_and_restarts_dead_ones() {
    let setup = Setup::new();
    let mut hostd = setup.start_hostd(&setup.tls_args());
    let mut client = hostd.client().await;
    let port = free_port();
    ensure(&mut client, http_server_unit("web", port)).await;
    let sleeper = api::UnitSpec {
        name: "sleeper".into(),
        command: "sleep".into(),
        args: vec!["1000".into()],
        ..Default::default()
    };
    ensure(&mut client, sleeper.clone()).await;
    let web = wait_ready(&mut client, "web").await;
    let sleeper_pid = unit_status(&mut client, "sleeper").await.unwrap().pid;

    hostd.kill();
    assert!(process_exists(web.pid), "the unit survives hostd");
    // The sleeper dies while no hostd watches.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    hostd.restart();
    let mut client = hostd.client().await;

    let adopted = wait_ready(&mut client, "web").await;
    assert_eq!(adopted.pid, web.pid, "not restarted");
    assert!(adopted.adopted);
    assert_eq!(adopted.restart_count, 0);
    assert_eq!(adopted.start_time_unix_ms, web.start_time_unix_ms);
    let same = ensure(&mut client, http_server_unit("web", port)).await;
    assert_eq!(same.action, api::EnsureAction::Unchanged as i32);
    assert_eq!(same.status.unwrap().pid, web.pid);

    let sleeper_now = unit_status(&mut client, "sleeper").await.unwrap();
    assert_ne!(sleeper_now.pid, sleeper_pid);
    assert!(process_exists(sleeper_now.pid));
    assert_eq!(sleeper_now.restart_count, 1);

    // An adopted process is watched through /proc: its death is noticed and it is restarted.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(web.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = eventually(UNIT_TIMEOUT, "the adopted unit restarted", || {
        let mut client = client.clone();
        async move {
            unit_status(&mut client, "web")
                .await
                .filter(|s| s.pid != 0 && s.pid != web.pid)
        }
    })
    .await;
    assert!(!restarted.adopted);
    assert_eq!(restarted.restart_count, 1);
    wait_ready(&mut client, "web").await;

    // A stopped unit stays stopped across a restart of hostd; a clean shutdown of hostd
    // (SIGTERM) leaves the running ones running, and they are adopted again.
    client
        .stop_unit(api::StopUnitRequest {
            name: "sleeper".into(),
        })
        .await
        .unwrap();
    let web_before = wait_ready(&mut client, "web").await;
    hostd.terminate();
    assert!(process_exists(web_before.pid));
    hostd.restart();
    let mut client = hostd.client().await;
    let sleeper_after = unit_status(&mut client, "sleeper").await.unwrap();
    assert_eq!(sleeper_after.state, api::UnitState::Stopped as i32);
    assert_eq!(sleeper_after.pid, 0);
    let web_after = wait_ready(&mut client, "web").await;
    assert_eq!(web_after.pid, web_before.pid);
    assert!(web_after.adopted);
}

fn bundle_archive(script: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(script.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder
        .append_data(&mut header, "bin/hello.sh", script.as_bytes())
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_are_fetched_over_mutual_tls_verified_and_corrupted_ones_refused() {
    let setup = Setup::new();
    let marker = setup.path("hello-ran");
    let good = bundle_archive(&format!(
        "#!/bin/sh\necho hello > {}\nexec sleep 1000\n",
        marker.display()
    ));
    let corrupted = {
        let mut bytes = good.clone();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        bytes
    };
    let clients_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = {
        let (good, corrupted, clients_seen) = (good.clone(), corrupted, clients_seen.clone());
        serve_https(
            server_tls(
                &setup.pki.issue("operator-artifacts", &["127.0.0.1"]),
                Some(&setup.pki.ca_pem()),
            ),
            move |exchange| {
                clients_seen
                    .lock()
                    .unwrap()
                    .push(exchange.client_cn.clone());
                match exchange.path.as_str() {
                    "/bundles/v1.tar.gz" => (http::StatusCode::OK, good.clone()),
                    "/bundles/v2.tar.gz" => (http::StatusCode::OK, corrupted.clone()),
                    _ => (http::StatusCode::NOT_FOUND, b"no such bundle".to_vec()),
                }
            },
        )
        .await
    };
    let mut hostd = setup.start_hostd(&setup.tls_args());
    let mut client = hostd.client().await;
    let url = |name: &str| format!("https://{}/bundles/{name}", server.address);

    let fetched = client
        .fetch_bundle(api::FetchBundleRequest {
            version: "v1".into(),
            url: url("v1.tar.gz"),
            sha256: sha256_hex(&good),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fetched.downloaded);
    let bundle = fetched.bundle.unwrap();
    assert_eq!(bundle.sha256, sha256_hex(&good));
    assert_eq!(bundle.archive_bytes, good.len() as u64);
    let script = setup.data_dir().join("bundles/v1/bin/hello.sh");
    assert_eq!(
        std::path::PathBuf::from(&bundle.path),
        setup.data_dir().join("bundles/v1")
    );
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        clients_seen.lock().unwrap().as_slice(),
        [Some("host-a".to_string())],
        "hostd presents its own certificate"
    );
    let again = client
        .fetch_bundle(api::FetchBundleRequest {
            version: "v1".into(),
            url: url("v1.tar.gz"),
            sha256: sha256_hex(&good),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.downloaded);

    // The corrupted archive does not match the sha256 the operator gave: nothing is kept.
    let refused = client
        .fetch_bundle(api::FetchBundleRequest {
            version: "v2".into(),
            url: url("v2.tar.gz"),
            sha256: sha256_hex(&good),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::DataLoss, "{refused:?}");
    let entries: Vec<_> = std::fs::read_dir(setup.data_dir().join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, ["v1"]);
    let conflicting = client
        .fetch_bundle(api::FetchBundleRequest {
            version: "v1".into(),
            url: url("v2.tar.gz"),
            sha256: sha256_hex(b"other"),
        })
        .await
        .unwrap_err();
    assert_eq!(conflicting.code(), Code::AlreadyExists);
    let missing = client
        .fetch_bundle(api::FetchBundleRequest {
            version: "v3".into(),
            url: url("v3.tar.gz"),
            sha256: sha256_hex(b"x"),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unavailable);
    assert!(missing.message().contains("404"), "{missing:?}");

    let listed = client
        .list_bundles(api::ListBundlesRequest {})
        .await
        .unwrap()
        .into_inner()
        .bundles;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, "v1");

    // A unit runs a program from the bundle; the bundle cannot be removed while it is used.
    let unit = api::UnitSpec {
        name: "hello".into(),
        command: "bin/hello.sh".into(),
        bundle_version: "v1".into(),
        ..Default::default()
    };
    ensure(&mut client, unit).await;
    eventually(UNIT_TIMEOUT, "the bundle's program to run", || {
        let marker = marker.clone();
        async move { marker.exists().then_some(()) }
    })
    .await;
    let in_use = client
        .remove_bundle(api::RemoveBundleRequest {
            version: "v1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition);
    let absent_bundle = client
        .ensure_unit(api::EnsureUnitRequest {
            spec: Some(api::UnitSpec {
                name: "other".into(),
                command: "bin/hello.sh".into(),
                bundle_version: "v9".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(absent_bundle.code(), Code::FailedPrecondition);
    client
        .remove_unit(api::RemoveUnitRequest {
            name: "hello".into(),
        })
        .await
        .unwrap();
    let removed = client
        .remove_bundle(api::RemoveBundleRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    assert!(!setup.data_dir().join("bundles/v1").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_logs_are_rotated_by_size() {
    let setup = Setup::new();
    let mut args = setup.tls_args();
    args.extend([
        "--log-max-size".into(),
        "4096".into(),
        "--log-max-files".into(),
        "2".into(),
    ]);
    let mut hostd = setup.start_hostd(&args);
    let mut client = hostd.client().await;
    let log = setup.data_dir().join("logs/chatty.log");
    ensure(
        &mut client,
        api::UnitSpec {
            name: "chatty".into(),
            command: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "while true; do echo 'a line of output that fills the log file quickly....'; \
                 echo 'and one on stderr' >&2; sleep 0.01; done"
                    .into(),
            ],
            ..Default::default()
        },
    )
    .await;
    let rotated = |index: u32| {
        let mut name = log.as_os_str().to_owned();
        name.push(format!(".{index}"));
        std::path::PathBuf::from(name)
    };
    eventually(UNIT_TIMEOUT, "two rotations", || {
        let second = rotated(2);
        async move { second.exists().then_some(()) }
    })
    .await;
    assert!(!rotated(3).exists(), "only two old files are kept");
    let first = std::fs::read_to_string(rotated(1)).unwrap();
    assert!(first.len() > 4096);
    assert!(first.contains("a line of output") && first.contains("and one on stderr"));
    let tail = client
        .read_unit_log(api::ReadUnitLogRequest {
            name: "chatty".into(),
            tail_bytes: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .content;
    assert!(!tail.is_empty() && tail.len() <= 100);
    // The unit keeps writing to the truncated file.
    eventually(UNIT_TIMEOUT, "writes after rotation", || {
        let log = log.clone();
        async move {
            let content = std::fs::read_to_string(log).ok()?;
            content
                .starts_with("a line")
                .then_some(())
                .or_else(|| content.starts_with("and one").then_some(()))
        }
    })
    .await;
    client
        .remove_unit(api::RemoveUnitRequest {
            name: "chatty".into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_unit_specs_are_refused_and_nothing_runs() {
    let setup = Setup::new();
    let mut hostd = setup.start_hostd(&setup.tls_args());
    let mut client = hostd.client().await;
    for spec in [
        api::UnitSpec {
            name: "Bad Name".into(),
            command: "sleep".into(),
            ..Default::default()
        },
        api::UnitSpec {
            name: "outside-log".into(),
            command: "sleep".into(),
            log_file: "/tmp/hostd-test-outside.log".into(),
            ..Default::default()
        },
        api::UnitSpec {
            name: "no-command".into(),
            ..Default::default()
        },
    ] {
        let error = client
            .ensure_unit(api::EnsureUnitRequest { spec: Some(spec) })
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    }
    assert!(client
        .list_units(api::ListUnitsRequest {})
        .await
        .unwrap()
        .into_inner()
        .units
        .is_empty());
}

fn sleeper_with_probe(name: &str, check: api::readiness_probe::Check) -> api::UnitSpec {
    api::UnitSpec {
        name: name.into(),
        command: "sleep".into(),
        args: vec!["1000".into()],
        readiness_probe: Some(api::ReadinessProbe {
            check: Some(check),
            period_seconds: 1,
            failure_threshold: 2,
            timeout_seconds: 5,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_exec_tcp_and_https_probes() {
    let setup = Setup::new();
    let mut hostd = setup.start_hostd(&setup.tls_args());
    let mut client = hostd.client().await;
    use api::readiness_probe::Check;

    // exec: ready while the marker exists; not ready after `failure_threshold` failures.
    let marker = setup.path("ready-marker");
    ensure(
        &mut client,
        sleeper_with_probe(
            "exec",
            Check::Exec(api::ExecProbe {
                command: "test".into(),
                args: vec!["-f".into(), marker.display().to_string()],
            }),
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let starting = unit_status(&mut client, "exec").await.unwrap();
    assert_eq!(starting.state, api::UnitState::Starting as i32);
    assert!(!starting.ready);
    assert!(starting.message.contains("readiness probe"), "{starting:?}");
    std::fs::write(&marker, b"").unwrap();
    let ready = wait_ready(&mut client, "exec").await;
    std::fs::remove_file(&marker).unwrap();
    let not_ready = eventually(UNIT_TIMEOUT, "the exec unit not ready", || {
        let mut client = client.clone();
        async move { unit_status(&mut client, "exec").await.filter(|s| !s.ready) }
    })
    .await;
    assert_eq!(not_ready.state, api::UnitState::Running as i32);
    assert_eq!(
        not_ready.pid, ready.pid,
        "readiness does not restart anything"
    );

    // tcp: ready once something listens.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ensure(
        &mut client,
        sleeper_with_probe(
            "tcp",
            Check::TcpConnect(api::TcpConnectProbe {
                address: listener.local_addr().unwrap().to_string(),
            }),
        ),
    )
    .await;
    wait_ready(&mut client, "tcp").await;

    // https: verified with the cluster CA by default; a server of another CA only with
    // insecure_skip_verify.
    let ok = |_: Exchange| (http::StatusCode::OK, b"ok".to_vec());
    let cluster_server = serve_https(
        server_tls(&setup.pki.issue("component", &["127.0.0.1"]), None),
        ok,
    )
    .await;
    let foreign_server = serve_https(
        server_tls(
            &Pki::new("foreign-ca").issue("foreign", &["127.0.0.1"]),
            None,
        ),
        ok,
    )
    .await;
    let https = |url: String, insecure_skip_verify: bool| {
        Check::HttpGet(api::HttpGetProbe {
            url,
            insecure_skip_verify,
            ..Default::default()
        })
    };
    ensure(
        &mut client,
        sleeper_with_probe(
            "https-cluster",
            https(format!("https://{}/readyz", cluster_server.address), false),
        ),
    )
    .await;
    ensure(
        &mut client,
        sleeper_with_probe(
            "https-foreign",
            https(format!("https://{}/readyz", foreign_server.address), false),
        ),
    )
    .await;
    ensure(
        &mut client,
        sleeper_with_probe(
            "https-insecure",
            https(format!("https://{}/readyz", foreign_server.address), true),
        ),
    )
    .await;
    wait_ready(&mut client, "https-cluster").await;
    wait_ready(&mut client, "https-insecure").await;
    let foreign = unit_status(&mut client, "https-foreign").await.unwrap();
    assert_eq!(
        foreign.state,
        api::UnitState::Starting as i32,
        "{foreign:?}"
    );
    drop(listener);
}

/// The next list a watch of the units sends that satisfies `wanted`.
async fn next_units_where(
    watch: &mut tonic::Streaming<api::ListUnitsResponse>,
    what: &str,
    wanted: impl Fn(&[api::UnitStatus]) -> bool,
) -> Vec<api::UnitStatus> {
    let deadline = Instant::now() + UNIT_TIMEOUT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let sent = tokio::time::timeout(remaining, watch.message())
            .await
            .unwrap_or_else(|_| panic!("no list with {what} within {UNIT_TIMEOUT:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the watch ended before {what}"));
        if wanted(&sent.units) {
            return sent.units;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_units_sends_the_units_then_each_change_and_ends_when_hostd_stops() {
    let setup = Setup::new();
    let mut hostd = setup.start_hostd(&setup.tls_args());
    let mut client = hostd.client().await;
    let mut watch = client
        .watch_units(api::WatchUnitsRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(UNIT_TIMEOUT, watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.units.is_empty(), "{first:?}");

    let marker = setup.path("watched-ready");
    ensure(
        &mut client,
        sleeper_with_probe(
            "watched",
            api::readiness_probe::Check::Exec(api::ExecProbe {
                command: "test".into(),
                args: vec!["-f".into(), marker.display().to_string()],
            }),
        ),
    )
    .await;
    let state_of = |units: &[api::UnitStatus], state: api::UnitState| {
        units
            .iter()
            .any(|u| u.name == "watched" && u.state == state as i32)
    };
    next_units_where(&mut watch, "the unit starting", |units| {
        state_of(units, api::UnitState::Starting)
    })
    .await;
    // Nothing changes while the probe keeps failing: no list until the unit turns ready.
    let quiet = tokio::time::timeout(Duration::from_millis(1500), watch.message()).await;
    assert!(quiet.is_err(), "a list without a change: {quiet:?}");
    std::fs::write(&marker, b"").unwrap();
    let ready = next_units_where(&mut watch, "the unit ready", |units| {
        state_of(units, api::UnitState::Ready)
    })
    .await;
    assert!(ready[0].ready);

    client
        .remove_unit(api::RemoveUnitRequest {
            name: "watched".into(),
        })
        .await
        .unwrap();
    next_units_where(&mut watch, "the unit removed", <[_]>::is_empty).await;

    // A graceful stop ends the watch rather than waiting on it.
    hostd.terminate();
    let ended = tokio::time::timeout(UNIT_TIMEOUT, watch.message())
        .await
        .unwrap();
    assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
}
