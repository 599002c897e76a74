//! Secret helpers: string views of their data and the shapes the operator writes.

use std::collections::BTreeMap;

use hakube_pki::KeyAndCert;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

/// A Secret's data as strings (non-UTF-8 values are skipped: everything here is PEM or YAML).
pub fn string_data(secret: &Secret) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        if let Ok(s) = String::from_utf8(v.0.clone()) {
            out.insert(k.clone(), s);
        }
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

pub fn data(values: &BTreeMap<String, String>) -> BTreeMap<String, ByteString> {
    values
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// A `kubernetes.io/tls` Secret.
pub fn tls_secret(name: &str, namespace: &str, pair: &KeyAndCert) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data(&crate::pki::tls_data(pair))),
        ..Default::default()
    }
}
