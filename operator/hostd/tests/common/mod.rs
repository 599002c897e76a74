//! Test harness: a throw-away PKI, the real hakube-hostd binary on a free loopback port, an
//! operator client, and small HTTPS servers (join endpoint, artifact endpoint).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hakube_hostd_api::client::{connect, ClientOptions, ClientTls};
use hakube_hostd_api::v1 as api;
use hakube_hostd_api::v1::hostd_client::HostdClient;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509Req, X509};
use tonic::transport::Channel;

pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);

/// A CA that issues certificates for tests.
pub struct Pki {
    pub cert: X509,
    key: PKey<Private>,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn builder_for(subject_cn: &str, public_key: &PKey<impl openssl::pkey::HasPublic>) -> X509Builder {
    let mut builder = X509Builder::new().unwrap();
    builder.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    builder
        .set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, subject_cn)
        .unwrap();
    builder.set_subject_name(&name.build()).unwrap();
    builder.set_pubkey(public_key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    builder
}

/// PEM certificate and PKCS#8 PEM key.
pub struct Issued {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Pki {
    pub fn new(cn: &str) -> Self {
        let key = new_key();
        let mut builder = builder_for(cn, &key);
        builder
            .set_issuer_name(builder_subject(cn).as_ref())
            .unwrap();
        builder
            .append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        Pki {
            cert: builder.build(),
            key,
        }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    /// A leaf certificate for server and client authentication, with IP or DNS SANs.
    pub fn issue(&self, cn: &str, sans: &[&str]) -> Issued {
        let key = new_key();
        let mut builder = builder_for(cn, &key);
        builder.set_issuer_name(self.cert.subject_name()).unwrap();
        self.leaf_extensions(&mut builder, sans);
        builder.sign(&self.key, MessageDigest::sha256()).unwrap();
        Issued {
            cert_pem: builder.build().to_pem().unwrap(),
            key_pem: key.private_key_to_pem_pkcs8().unwrap(),
        }
    }

    /// What the operator's join endpoint does: signs the CSR's key for its subject and SANs.
    pub fn sign_request(&self, csr_pem: &[u8]) -> Vec<u8> {
        let request = X509Req::from_pem(csr_pem).unwrap();
        let public_key = request.public_key().unwrap();
        assert!(request.verify(&public_key).unwrap());
        let cn = request
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap()
            .data()
            .to_string()
            .unwrap();
        let mut builder = builder_for(&cn, &public_key);
        builder.set_issuer_name(self.cert.subject_name()).unwrap();
        self.leaf_extensions(&mut builder, &[]);
        for extension in request.extensions().unwrap() {
            builder.append_extension(extension).unwrap();
        }
        builder.sign(&self.key, MessageDigest::sha256()).unwrap();
        builder.build().to_pem().unwrap()
    }

    fn leaf_extensions(&self, builder: &mut X509Builder, sans: &[&str]) {
        builder
            .append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        builder
            .append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        builder
            .append_extension(
                ExtendedKeyUsage::new()
                    .server_auth()
                    .client_auth()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        if !sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for name in sans {
                if name.parse::<std::net::IpAddr>().is_ok() {
                    san.ip(name);
                } else {
                    san.dns(name);
                }
            }
            let extension = san
                .build(&builder.x509v3_context(Some(&self.cert), None))
                .unwrap();
            builder.append_extension(extension).unwrap();
        }
    }
}

fn builder_subject(cn: &str) -> openssl::x509::X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    name.build()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn write(path: &Path, content: &[u8]) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    path.to_path_buf()
}

/// A test's world: a temporary directory, the cluster CA, hostd's certificate for 127.0.0.1
/// and the operator's client certificate.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub ca_file: PathBuf,
    pub host_cert_file: PathBuf,
    pub host_key_file: PathBuf,
    pub operator: Issued,
}

impl Setup {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new("hakube-test-ca");
        let host = pki.issue("host-a", &["127.0.0.1", "localhost"]);
        let operator = pki.issue(hakube_hostd_api::OPERATOR_CLIENT_COMMON_NAME, &[]);
        Setup {
            ca_file: write(&dir.path().join("ca.crt"), &pki.ca_pem()),
            host_cert_file: write(&dir.path().join("host.crt"), &host.cert_pem),
            host_key_file: write(&dir.path().join("host.key"), &host.key_pem),
            pki,
            operator,
            dir,
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path("data")
    }

    /// Flags serving with the certificate files (no join).
    pub fn tls_args(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.host_cert_file.display().to_string(),
            "--tls-private-key-file".into(),
            self.host_key_file.display().to_string(),
            "--client-ca-file".into(),
            self.ca_file.display().to_string(),
        ]
    }

    pub fn operator_tls(&self) -> ClientTls {
        ClientTls {
            ca_pem: self.pki.ca_pem(),
            cert_pem: self.operator.cert_pem.clone(),
            key_pem: self.operator.key_pem.clone(),
            server_name: None,
        }
    }

    pub fn start_hostd(&self, extra_args: &[String]) -> Hostd {
        let mut args = vec![
            "--data-dir".to_string(),
            self.data_dir().display().to_string(),
            "--host-name".into(),
            "host-a".into(),
        ];
        args.extend(extra_args.iter().cloned());
        Hostd::start(self.dir.path(), args, self.operator_tls())
    }
}

/// The hostd binary, killed with its units when dropped.
pub struct Hostd {
    child: Option<Child>,
    args: Vec<String>,
    pub address: SocketAddr,
    pub data_dir: PathBuf,
    log_file: PathBuf,
    tls: ClientTls,
    starts: u32,
}

impl Hostd {
    fn start(dir: &Path, mut args: Vec<String>, tls: ClientTls) -> Self {
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        args.extend(["--listen-address".to_string(), address.to_string()]);
        let data_dir =
            PathBuf::from(&args[args.iter().position(|a| a == "--data-dir").unwrap() + 1]);
        let mut hostd = Hostd {
            child: None,
            args,
            address,
            data_dir,
            log_file: dir.join("hostd.log"),
            tls,
            starts: 0,
        };
        hostd.spawn();
        hostd
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hakube-hostd"))
            .args(&self.args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn move_to_new_port(&mut self) {
        self.address = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let flag = self
            .args
            .iter()
            .position(|a| a == "--listen-address")
            .unwrap();
        self.args[flag + 1] = self.address.to_string();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Waits for the process to exit by itself; returns whether it succeeded.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hostd did not exit:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A connected operator client, once hostd answers (panics with hostd's log if it exits).
    pub async fn client(&mut self) -> HostdClient<Channel> {
        self.client_with(self.tls.clone()).await
    }

    pub async fn client_with(&mut self, tls: ClientTls) -> HostdClient<Channel> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().unwrap() {
                    self.child = None;
                    // Another process took the free port between our probe and hostd's bind.
                    if self.logs().contains("Address already in use") && self.starts < 5 {
                        self.move_to_new_port();
                        self.spawn();
                        continue;
                    }
                    panic!("hostd exited with {status}:\n{}", self.logs());
                }
            }
            let attempt = async {
                let mut client =
                    connect(&self.address.to_string(), &tls, &ClientOptions::default())
                        .await
                        .ok()?;
                client.get_facts(api::GetFactsRequest {}).await.ok()?;
                Some(client)
            };
            if let Some(client) = attempt.await {
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "hostd did not answer:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client that has only connected (no call made), for clients expected to be refused.
    pub async fn client_with_unchecked(
        &self,
        tls: ClientTls,
    ) -> Result<HostdClient<Channel>, hakube_hostd_api::client::ClientError> {
        connect(&self.address.to_string(), &tls, &ClientOptions::default()).await
    }

    /// SIGKILL: hostd gets no chance to do anything, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as a service manager stops hostd; waits for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(child) = self.child.as_ref() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
        }
        let status = self.wait_exit(STARTUP_TIMEOUT);
        assert!(
            status.success(),
            "hostd exited with {status}:\n{}",
            self.logs()
        );
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Pids of the unit processes hostd recorded.
    pub fn recorded_unit_pids(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("units")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter_map(|record| record["process"]["pid"].as_i64())
            .map(|pid| pid as i32)
            .collect()
    }
}

impl Drop for Hostd {
    fn drop(&mut self) {
        self.kill();
        for pid in self.recorded_unit_pids() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

pub fn process_exists(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
            !matches!(state, Some('Z') | Some('X'))
        })
        .unwrap_or(false)
}

/// Polls `check` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn unit_status(client: &mut HostdClient<Channel>, name: &str) -> Option<api::UnitStatus> {
    client
        .list_units(api::ListUnitsRequest {})
        .await
        .unwrap()
        .into_inner()
        .units
        .into_iter()
        .find(|u| u.name == name)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration; with `client_ca_pem`, client certificates are required.
pub fn server_tls(issued: &Issued, client_ca_pem: Option<&[u8]>) -> Arc<rustls::ServerConfig> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &issued.cert_pem[..])
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &issued.key_pem[..])
        .unwrap()
        .unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                roots.add(cert.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(builder.with_single_cert(certs, key).unwrap())
}

/// What a test HTTPS server's handler is given.
pub struct Exchange {
    pub method: http::Method,
    pub path: String,
    pub body: Bytes,
    /// CN of the client certificate, when there is one.
    pub client_cn: Option<String>,
}

/// Serves HTTPS on a free loopback port until the returned handle is dropped.
pub struct HttpsServer {
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve_https<H>(tls: Arc<rustls::ServerConfig>, handler: H) -> HttpsServer
where
    H: Fn(Exchange) -> (http::StatusCode, Vec<u8>) + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|der| X509::from_der(der).ok())
                    .and_then(|cert| {
                        cert.subject_name()
                            .entries_by_nid(Nid::COMMONNAME)
                            .next()
                            .and_then(|e| e.data().to_string().ok())
                    });
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let handler = handler.clone();
                        let client_cn = client_cn.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let method = request.method().clone();
                            let path = request.uri().path().to_string();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let (status, body) = handler(Exchange {
                                method,
                                path,
                                body,
                                client_cn,
                            });
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    HttpsServer { address, task }
}
