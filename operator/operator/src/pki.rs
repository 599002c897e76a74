//! The Cluster's PKI as kubeadm lays it out: cluster, etcd and front-proxy CAs, the
//! service-account key pair, etcd server and peer certificates per member, each API server's
//! serving certificate, the API server's etcd and kubelet client certificates, and the
//! scheduler, controller-manager and admin identities. Everything is kept in Secrets owned by
//! the Cluster; what exists and still fits is reused, the rest is issued.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use hakube_pki::{Authority, KeyAndCert, LeafRequest, PkiError, Usage};

/// Secret contents by Secret name, as read from (and written back to) the API.
pub type SecretsData = BTreeMap<String, BTreeMap<String, String>>;

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMemberCerts {
    pub server: KeyAndCert,
    pub peer: KeyAndCert,
}

/// Every certificate and kubeconfig the Cluster's hosts need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPki {
    /// The cluster authorities trusted (PEM, one or two certificates during a rotation).
    pub ca_bundle: String,
    pub etcd_ca_bundle: String,
    pub front_proxy_ca_bundle: String,
    pub service_account_key: String,
    pub service_account_public: String,
    /// By host name.
    pub etcd_members: BTreeMap<String, EtcdMemberCerts>,
    /// Serving certificates by control-plane host name.
    pub apiservers: BTreeMap<String, KeyAndCert>,
    pub apiserver_etcd_client: KeyAndCert,
    pub apiserver_kubelet_client: KeyAndCert,
    pub scheduler_kubeconfig: String,
    pub controller_manager_kubeconfig: String,
    pub admin_kubeconfig: String,
    /// Used by the operator itself to check etcd's health.
    pub etcd_healthcheck_client: KeyAndCert,
    /// The earliest expiry among the leaves.
    pub earliest_expiry: Option<std::time::SystemTime>,
}

/// What the PKI is for.
pub struct PkiInputs<'a> {
    pub cluster: &'a str,
    pub cluster_domain: &'a str,
    pub api_service_ip: IpAddr,
    /// The endpoint clients use (through the load balancer).
    pub endpoint: &'a str,
    pub load_balancer: IpAddr,
    /// Control-plane hosts by name.
    pub control_plane: &'a BTreeMap<String, IpAddr>,
    /// etcd hosts by name.
    pub etcd: &'a BTreeMap<String, IpAddr>,
    pub validity: Duration,
    pub renew_before: Duration,
    pub stage: Stage,
}

/// Where the authorities stand in a staged rotation (see `crate::authorities`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// One authority of each kind signs and is trusted; any next authority left is removed.
    Steady,
    /// Next authorities (`<part>-next` Secrets) are trusted beside the current ones, and
    /// sign the leaves once `sign_with_next`.
    BothTrusted { sign_with_next: bool },
    /// The next authorities replace the current ones, which are trusted no more.
    Promote,
}

/// The Secrets [`ensure`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PkiChanges {
    pub written: SecretsData,
    pub removed: Vec<String>,
}

impl PkiChanges {
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }
}

/// An authority kind's signer and the certificates trusted for it.
struct Authorities {
    signer: Authority,
    trusted: String,
}

fn authorities(
    inputs: &PkiInputs,
    existing: &SecretsData,
    part: &str,
    common_name: &str,
    changes: &mut PkiChanges,
) -> Result<Authorities, PkiError> {
    let name = secret_name(inputs.cluster, part);
    let next_name = secret_name(inputs.cluster, &format!("{part}-next"));
    let read = |name: &str| {
        existing
            .get(name)
            .and_then(|d| Authority::from_pem(d.get(TLS_CERT)?, d.get(TLS_KEY)?).ok())
    };
    let read_or_generate = |name: &str, changes: &mut PkiChanges| match read(name) {
        Some(ca) => Ok(ca),
        None => {
            let ca = Authority::generate(common_name, CA_VALIDITY)?;
            changes
                .written
                .insert(name.to_string(), tls_data(&ca.to_pem()?));
            Ok::<_, PkiError>(ca)
        }
    };
    let single = |signer: Authority| -> Result<Authorities, PkiError> {
        Ok(Authorities {
            trusted: signer.cert_pem()?,
            signer,
        })
    };
    match inputs.stage {
        Stage::Steady => {
            if existing.contains_key(&next_name) {
                changes.removed.push(next_name);
            }
            single(read_or_generate(&name, changes)?)
        }
        Stage::BothTrusted { sign_with_next } => {
            let current = read_or_generate(&name, changes)?;
            let next = read_or_generate(&next_name, changes)?;
            let trusted = format!("{}{}", current.cert_pem()?, next.cert_pem()?);
            let signer = if sign_with_next { next } else { current };
            Ok(Authorities { signer, trusted })
        }
        Stage::Promote => match read(&next_name) {
            Some(next) => {
                changes.written.insert(name, tls_data(&next.to_pem()?));
                changes.removed.push(next_name);
                single(next)
            }
            // Promoted in an earlier reconcile.
            None => single(read_or_generate(&name, changes)?),
        },
    }
}

/// The Secret names of a Cluster's PKI.
pub fn secret_name(cluster: &str, part: &str) -> String {
    format!("{cluster}-{part}")
}

/// The PKI from `existing` Secrets, issuing what is missing, expiring within `renewBefore`,
/// signed by another authority than the stage's signer, or lacking a name it now needs.
pub fn ensure(
    inputs: &PkiInputs,
    existing: &SecretsData,
) -> Result<(ClusterPki, PkiChanges), PkiError> {
    let sa_name = secret_name(inputs.cluster, "sa");
    let existing_sa = existing
        .get(&sa_name)
        .and_then(|d| Some((d.get("sa.key")?.clone(), d.get("sa.pub")?.clone())));
    let mut changes = PkiChanges::default();
    let ca = authorities(inputs, existing, "ca", "kubernetes", &mut changes)?;
    let etcd_ca = authorities(inputs, existing, "etcd-ca", "etcd-ca", &mut changes)?;
    let front_proxy_ca = authorities(
        inputs,
        existing,
        "front-proxy-ca",
        "front-proxy-ca",
        &mut changes,
    )?;
    let mut changed = std::mem::take(&mut changes.written);

    let (sa_key, sa_pub) = match existing_sa {
        Some(pair) => pair,
        None => {
            let pair = hakube_pki::service_account_key_pair()?;
            changed.insert(
                sa_name,
                BTreeMap::from([
                    ("sa.key".to_string(), pair.0.clone()),
                    ("sa.pub".to_string(), pair.1.clone()),
                ]),
            );
            pair
        }
    };

    let mut expiries = Vec::new();
    let mut leaf = |authority: &Authority,
                    secret: String,
                    prefix: &str,
                    request: LeafRequest,
                    changed: &mut SecretsData|
     -> Result<KeyAndCert, PkiError> {
        let (cert_key, key_key) = (format!("{prefix}crt"), format!("{prefix}key"));
        let current = existing
            .get(&secret)
            .and_then(|d| Some((d.get(&cert_key)?.clone(), d.get(&key_key)?.clone())));
        let pair = match current {
            Some((cert, key)) if authority.still_fits(&cert, &request, inputs.renew_before) => {
                KeyAndCert {
                    key_pem: key,
                    cert_pem: cert,
                }
            }
            _ => {
                let issued = authority.issue(&request)?;
                let data = changed
                    .entry(secret.clone())
                    .or_insert_with(|| existing.get(&secret).cloned().unwrap_or_default());
                data.insert(cert_key, issued.cert_pem.clone());
                data.insert(key_key, issued.key_pem.clone());
                issued
            }
        };
        expiries.push(hakube_pki::not_after(&pair.cert_pem)?);
        Ok(pair)
    };
    let validity = inputs.validity;

    let mut etcd_members = BTreeMap::new();
    for (host, ip) in inputs.etcd {
        let secret = secret_name(inputs.cluster, &format!("etcd-{host}"));
        let mut server = LeafRequest::new(host, Usage::ServerAndClient, validity);
        server.dns_names = vec![host.clone(), "localhost".into()];
        server.ip_addresses = vec![*ip, IpAddr::from([127, 0, 0, 1])];
        let mut peer = LeafRequest::new(host, Usage::ServerAndClient, validity);
        peer.dns_names = vec![host.clone()];
        peer.ip_addresses = vec![*ip];
        let server = leaf(
            &etcd_ca.signer,
            secret.clone(),
            "server.",
            server,
            &mut changed,
        )?;
        let peer = leaf(&etcd_ca.signer, secret, "peer.", peer, &mut changed)?;
        etcd_members.insert(host.clone(), EtcdMemberCerts { server, peer });
    }

    let mut apiservers = BTreeMap::new();
    for (host, ip) in inputs.control_plane {
        let mut request = LeafRequest::new("kube-apiserver", Usage::Server, validity);
        request.dns_names = vec![
            host.clone(),
            "localhost".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{}", inputs.cluster_domain),
        ];
        let mut ips = vec![
            *ip,
            inputs.load_balancer,
            inputs.api_service_ip,
            IpAddr::from([127, 0, 0, 1]),
        ];
        ips.extend(inputs.control_plane.values().copied());
        ips.sort();
        ips.dedup();
        request.ip_addresses = ips;
        let secret = secret_name(inputs.cluster, &format!("apiserver-{host}"));
        apiservers.insert(
            host.clone(),
            leaf(&ca.signer, secret, "tls.", request, &mut changed)?,
        );
    }

    let client = |cn: &str, groups: &[&str]| {
        let mut request = LeafRequest::new(cn, Usage::Client, validity);
        request.organizations = groups.iter().map(|g| g.to_string()).collect();
        request
    };
    let named = |part: &str| secret_name(inputs.cluster, part);
    let apiserver_etcd_client = leaf(
        &etcd_ca.signer,
        named("apiserver-etcd-client"),
        "tls.",
        client("kube-apiserver-etcd-client", &[]),
        &mut changed,
    )?;
    let etcd_healthcheck_client = leaf(
        &etcd_ca.signer,
        named("etcd-healthcheck-client"),
        "tls.",
        client("kube-etcd-healthcheck-client", &[]),
        &mut changed,
    )?;
    let apiserver_kubelet_client = leaf(
        &ca.signer,
        named("apiserver-kubelet-client"),
        "tls.",
        client("kube-apiserver-kubelet-client", &["kubeadm:cluster-admins"]),
        &mut changed,
    )?;
    let scheduler = leaf(
        &ca.signer,
        named("scheduler"),
        "tls.",
        client("system:kube-scheduler", &[]),
        &mut changed,
    )?;
    let controller_manager = leaf(
        &ca.signer,
        named("controller-manager"),
        "tls.",
        client("system:kube-controller-manager", &[]),
        &mut changed,
    )?;
    let admin = leaf(
        &ca.signer,
        named("admin"),
        "tls.",
        client("kubernetes-admin", &["system:masters"]),
        &mut changed,
    )?;

    let local = format!("https://127.0.0.1:{}", crate::render::APISERVER_PORT);
    let admin_kubeconfig = hakube_pki::kubeconfig(
        inputs.cluster,
        inputs.endpoint,
        &ca.trusted,
        "kubernetes-admin",
        &admin,
    );
    let admin_secret = named("admin-kubeconfig");
    if existing.get(&admin_secret).and_then(|d| d.get("value")) != Some(&admin_kubeconfig) {
        changed.insert(
            admin_secret,
            BTreeMap::from([("value".to_string(), admin_kubeconfig.clone())]),
        );
    }
    let pki = ClusterPki {
        etcd_ca_bundle: etcd_ca.trusted,
        front_proxy_ca_bundle: front_proxy_ca.trusted,
        service_account_key: sa_key,
        service_account_public: sa_pub,
        etcd_members,
        apiservers,
        apiserver_etcd_client,
        apiserver_kubelet_client,
        scheduler_kubeconfig: hakube_pki::kubeconfig(
            inputs.cluster,
            &local,
            &ca.trusted,
            "system:kube-scheduler",
            &scheduler,
        ),
        controller_manager_kubeconfig: hakube_pki::kubeconfig(
            inputs.cluster,
            &local,
            &ca.trusted,
            "system:kube-controller-manager",
            &controller_manager,
        ),
        admin_kubeconfig,
        etcd_healthcheck_client,
        earliest_expiry: expiries.into_iter().min(),
        ca_bundle: ca.trusted,
    };
    changes.written = changed;
    Ok((pki, changes))
}

/// A key pair as a `kubernetes.io/tls` Secret's data.
pub fn tls_data(pair: &KeyAndCert) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TLS_CERT.to_string(), pair.cert_pem.clone()),
        (TLS_KEY.to_string(), pair.key_pem.clone()),
    ])
}

#[cfg(test)]
mod tests;
