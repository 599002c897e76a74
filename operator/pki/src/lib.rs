//! The cluster PKI, made with OpenSSL: certificate authorities, leaf certificates signed by them
//! (from a key made here, or from a host's certificate request), the service-account key pair,
//! expiry reading, and kubeconfigs that carry a client certificate.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private, Public};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509Req, X509};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("openssl: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error("the certificate request's signature does not verify")]
    BadRequestSignature,
    #[error("the validity {0:?} is too long")]
    Validity(Duration),
    #[error("not valid PEM text")]
    NotUtf8,
}

/// A private key and its certificate, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAndCert {
    pub key_pem: String,
    pub cert_pem: String,
}

/// What a certificate is for (its extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// etcd peers and members act as both.
    ServerAndClient,
}

/// The subject and names of a leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafRequest {
    pub common_name: String,
    /// Subject organisations: Kubernetes reads them as the user's groups.
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usage: Usage,
    pub validity: Duration,
}

impl LeafRequest {
    pub fn new(common_name: &str, usage: Usage, validity: Duration) -> LeafRequest {
        LeafRequest {
            common_name: common_name.to_string(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage,
            validity,
        }
    }
}

/// A certificate authority that signs leaves.
pub struct Authority {
    key: PKey<Private>,
    cert: X509,
}

impl Authority {
    /// A new self-signed CA.
    pub fn generate(common_name: &str, validity: Duration) -> Result<Authority, PkiError> {
        let key = ec_key()?;
        let mut builder = certificate_builder(common_name, &[], validity)?;
        builder.set_issuer_name(builder_subject(common_name, &[])?.as_ref())?;
        builder.set_pubkey(&key)?;
        builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        builder.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
        builder.append_extension(ski)?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(Authority {
            key,
            cert: builder.build(),
        })
    }

    /// An existing CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        Ok(Authority {
            key: PKey::private_key_from_pem(key_pem.as_bytes())?,
            cert: X509::from_pem(cert_pem.as_bytes())?,
        })
    }

    pub fn to_pem(&self) -> Result<KeyAndCert, PkiError> {
        Ok(KeyAndCert {
            key_pem: pem_text(self.key.private_key_to_pem_pkcs8()?)?,
            cert_pem: self.cert_pem()?,
        })
    }

    pub fn cert_pem(&self) -> Result<String, PkiError> {
        pem_text(self.cert.to_pem()?)
    }

    /// A new key and a certificate for it.
    pub fn issue(&self, request: &LeafRequest) -> Result<KeyAndCert, PkiError> {
        let key = ec_key()?;
        let cert = self.sign(&key, request)?;
        Ok(KeyAndCert {
            key_pem: pem_text(key.private_key_to_pem_pkcs8()?)?,
            cert_pem: cert,
        })
    }

    /// A certificate for the key in a PEM certificate request. The names come from `request`,
    /// never from the CSR: the signer decides what the holder may be.
    pub fn sign_request(&self, csr_pem: &[u8], request: &LeafRequest) -> Result<String, PkiError> {
        let csr = X509Req::from_pem(csr_pem)?;
        let key = csr.public_key()?;
        if !csr.verify(&key)? {
            return Err(PkiError::BadRequestSignature);
        }
        self.sign(&key, request)
    }

    fn sign<T: openssl::pkey::HasPublic>(
        &self,
        key: &PKeyRef<T>,
        request: &LeafRequest,
    ) -> Result<String, PkiError> {
        let mut builder = certificate_builder(
            &request.common_name,
            &request.organizations,
            request.validity,
        )?;
        builder.set_issuer_name(self.cert.subject_name())?;
        builder.set_pubkey(key)?;
        builder.append_extension(BasicConstraints::new().critical().build()?)?;
        builder.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build()?,
        )?;
        let mut usage = ExtendedKeyUsage::new();
        match request.usage {
            Usage::Server => usage.server_auth(),
            Usage::Client => usage.client_auth(),
            Usage::ServerAndClient => usage.server_auth().client_auth(),
        };
        builder.append_extension(usage.build()?)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&builder.x509v3_context(Some(&self.cert), None))?;
        builder.append_extension(aki)?;
        if !request.dns_names.is_empty() || !request.ip_addresses.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for name in &request.dns_names {
                san.dns(name);
            }
            for ip in &request.ip_addresses {
                san.ip(&ip.to_string());
            }
            let san = san.build(&builder.x509v3_context(Some(&self.cert), None))?;
            builder.append_extension(san)?;
        }
        builder.sign(&self.key, MessageDigest::sha256())?;
        pem_text(builder.build().to_pem()?)
    }
}

/// The service-account signing key (ECDSA P-256, PKCS#8 PEM: tokens are ES256) and its public
/// key (SPKI PEM), as the API server's `--service-account-signing-key-file` and
/// `--service-account-key-file` take. P-256 as for every certificate here (kubeadm's
/// `ECDSA-P256` encryption algorithm): an RSA 2048 key took 0.1-0.6 s to generate, the longest
/// step of a new Cluster's PKI.
pub fn service_account_key_pair() -> Result<(String, String), PkiError> {
    let key = ec_key()?;
    let public: PKey<Public> = PKey::public_key_from_pem(&key.public_key_to_pem()?)?;
    Ok((
        pem_text(key.private_key_to_pem_pkcs8()?)?,
        pem_text(public.public_key_to_pem()?)?,
    ))
}

/// How much longer than its validity a leaf may last before it counts as issued under a longer
/// validity: issuing takes a moment and clocks differ.
const VALIDITY_SLACK: Duration = Duration::from_secs(60);

impl Authority {
    /// Whether `cert_pem` can stay in service: signed by this authority, carrying every name
    /// `request` asks for, and valid for longer than `renew_before`.
    pub fn still_fits(
        &self,
        cert_pem: &str,
        request: &LeafRequest,
        renew_before: Duration,
    ) -> bool {
        let Ok(cert) = X509::from_pem(cert_pem.as_bytes()) else {
            return false;
        };
        let Ok(ca_key) = self.cert.public_key() else {
            return false;
        };
        if !cert.verify(&ca_key).unwrap_or(false) {
            return false;
        }
        // Within renewBefore of its end, or lasting longer than the validity asked for now
        // (a shortened validity applies to leaves issued before it).
        let fresh = not_after(cert_pem)
            .ok()
            .and_then(|end| end.duration_since(SystemTime::now()).ok())
            .is_some_and(|left| left > renew_before && left <= request.validity + VALIDITY_SLACK);
        let names = cert.subject_alt_names();
        let has_dns = |want: &str| names.iter().flatten().any(|n| n.dnsname() == Some(want));
        let has_ip = |want: &IpAddr| {
            let octets = match want {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            names
                .iter()
                .flatten()
                .any(|n| n.ipaddress() == Some(&octets[..]))
        };
        fresh
            && request.dns_names.iter().all(|d| has_dns(d))
            && request.ip_addresses.iter().all(has_ip)
    }
}

/// When a PEM certificate stops being valid.
pub fn not_after(cert_pem: &str) -> Result<SystemTime, PkiError> {
    let cert = X509::from_pem(cert_pem.as_bytes())?;
    let epoch = Asn1Time::from_unix(0)?;
    let diff = epoch.diff(cert.not_after())?;
    let seconds = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Ok(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// A private key and a certificate request for it (PEM), as a host asks to join with.
pub fn key_and_request(common_name: &str) -> Result<(String, String), PkiError> {
    let key = ec_key()?;
    let mut builder = X509Req::builder()?;
    builder.set_subject_name(builder_subject(common_name, &[])?.as_ref())?;
    builder.set_pubkey(&key)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((
        pem_text(key.private_key_to_pem_pkcs8()?)?,
        pem_text(builder.build().to_pem()?)?,
    ))
}

/// A kubeconfig for one cluster and one user authenticating with a client certificate.
pub fn kubeconfig(
    cluster: &str,
    server: &str,
    ca_pem: &str,
    user: &str,
    leaf: &KeyAndCert,
) -> String {
    let b64 = |s: &str| openssl::base64::encode_block(s.as_bytes());
    let context = format!("{user}@{cluster}");
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "server": server,
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(&leaf.cert_pem),
            "client-key-data": b64(&leaf.key_pem),
        }}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
    })
    .to_string()
}

fn ec_key() -> Result<PKey<Private>, PkiError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn builder_subject(
    common_name: &str,
    organizations: &[String],
) -> Result<openssl::x509::X509Name, PkiError> {
    let mut name = X509NameBuilder::new()?;
    for org in organizations {
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, org)?;
    }
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

fn certificate_builder(
    common_name: &str,
    organizations: &[String],
    validity: Duration,
) -> Result<X509Builder, PkiError> {
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    builder.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
    builder.set_subject_name(builder_subject(common_name, organizations)?.as_ref())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Backdated a little so hosts whose clocks lag accept it at once, as kubeadm does.
    let start = i64::try_from(now.saturating_sub(300)).map_err(|_| PkiError::Validity(validity))?;
    let end = i64::try_from(now + validity.as_secs()).map_err(|_| PkiError::Validity(validity))?;
    builder.set_not_before(Asn1Time::from_unix(start)?.as_ref())?;
    builder.set_not_after(Asn1Time::from_unix(end)?.as_ref())?;
    Ok(builder)
}

fn pem_text(pem: Vec<u8>) -> Result<String, PkiError> {
    String::from_utf8(pem).map_err(|_| PkiError::NotUtf8)
}

#[cfg(test)]
mod tests;
