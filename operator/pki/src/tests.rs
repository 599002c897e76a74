use super::*;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509StoreContext;

const DAY: Duration = Duration::from_secs(86_400);

fn verifies(ca: &Authority, cert_pem: &str) -> bool {
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(ca.cert.clone()).unwrap();
    let store = store.build();
    let cert = X509::from_pem(cert_pem.as_bytes()).unwrap();
    let chain = Stack::new().unwrap();
    let mut context = X509StoreContext::new().unwrap();
    context
        .init(&store, &cert, &chain, |c| c.verify_cert())
        .unwrap()
}

#[test]
fn leaves_chain_to_their_authority_only() {
    let ca = Authority::generate("hakube-ca", 10 * DAY).unwrap();
    let other = Authority::generate("other-ca", 10 * DAY).unwrap();
    let leaf = ca
        .issue(&LeafRequest::new("kube-apiserver", Usage::Server, DAY))
        .unwrap();
    assert!(verifies(&ca, &leaf.cert_pem));
    assert!(!verifies(&other, &leaf.cert_pem));
    assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn leaves_carry_their_names_groups_and_usage() {
    let ca = Authority::generate("hakube-ca", 10 * DAY).unwrap();
    let mut request = LeafRequest::new("kubernetes-admin", Usage::ServerAndClient, DAY);
    request.organizations = vec!["system:masters".into()];
    request.dns_names = vec!["kubernetes.default.svc.cluster.local".into()];
    request.ip_addresses = vec!["10.96.0.1".parse().unwrap()];
    let leaf = ca.issue(&request).unwrap();
    let cert = X509::from_pem(leaf.cert_pem.as_bytes()).unwrap();
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    assert!(
        text.contains("O=system:masters, CN=kubernetes-admin")
            || text.contains("O = system:masters, CN = kubernetes-admin"),
        "{text}"
    );
    assert!(
        text.contains("DNS:kubernetes.default.svc.cluster.local"),
        "{text}"
    );
    assert!(text.contains("IP Address:10.96.0.1"), "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
}

#[test]
fn expiry_reads_back_the_validity() {
    let ca = Authority::generate("hakube-ca", 10 * DAY).unwrap();
    let leaf = ca
        .issue(&LeafRequest::new("x", Usage::Client, 3 * DAY))
        .unwrap();
    let left = not_after(&leaf.cert_pem)
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        left > 3 * DAY - Duration::from_secs(60) && left <= 3 * DAY,
        "{left:?}"
    );
}

#[test]
fn authorities_survive_a_pem_round_trip() {
    let ca = Authority::generate("hakube-ca", 10 * DAY).unwrap();
    let pem = ca.to_pem().unwrap();
    let again = Authority::from_pem(&pem.cert_pem, &pem.key_pem).unwrap();
    let leaf = again
        .issue(&LeafRequest::new("x", Usage::Client, DAY))
        .unwrap();
    assert!(verifies(&ca, &leaf.cert_pem));
}

#[test]
fn requests_are_signed_with_the_signers_names_not_the_requesters() {
    let ca = Authority::generate("hakube-hosts-ca", 10 * DAY).unwrap();
    let (key_pem, csr_pem) = key_and_request("hakube-operator").unwrap();
    let mut request = LeafRequest::new("host-1", Usage::ServerAndClient, DAY);
    request.ip_addresses = vec!["10.77.0.11".parse().unwrap()];
    let cert_pem = ca.sign_request(csr_pem.as_bytes(), &request).unwrap();
    assert!(verifies(&ca, &cert_pem));
    let cert = X509::from_pem(cert_pem.as_bytes()).unwrap();
    let cn = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .unwrap();
    assert_eq!(cn.data().to_string().unwrap(), "host-1");
    // The certificate is for the requester's key.
    let key = PKey::private_key_from_pem(key_pem.as_bytes()).unwrap();
    assert!(cert.public_key().unwrap().public_eq(&key));
}

#[test]
fn a_tampered_request_is_refused() {
    let ca = Authority::generate("hakube-hosts-ca", 10 * DAY).unwrap();
    // A request for one key signed with another: its holder cannot prove the key is theirs.
    let (claimed, signer) = (ec_key().unwrap(), ec_key().unwrap());
    let mut builder = X509Req::builder().unwrap();
    builder
        .set_subject_name(builder_subject("host-1", &[]).unwrap().as_ref())
        .unwrap();
    builder.set_pubkey(&claimed).unwrap();
    builder.sign(&signer, MessageDigest::sha256()).unwrap();
    let tampered = builder.build().to_pem().unwrap();
    let refused = ca.sign_request(&tampered, &LeafRequest::new("host-1", Usage::Server, DAY));
    assert!(
        matches!(refused, Err(PkiError::BadRequestSignature)),
        "{refused:?}"
    );
    assert!(ca
        .sign_request(b"not pem", &LeafRequest::new("h", Usage::Server, DAY))
        .is_err());
}

#[test]
fn service_account_keys_are_a_p256_pair() {
    let (private, public) = service_account_key_pair().unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = PKey::private_key_from_pem(private.as_bytes()).unwrap();
    let public = PKey::public_key_from_pem(public.as_bytes()).unwrap();
    let curve = key.ec_key().unwrap().group().curve_name();
    assert_eq!(curve, Some(openssl::nid::Nid::X9_62_PRIME256V1));
    assert!(key.public_eq(&public));
}

#[test]
fn kubeconfigs_embed_the_ca_and_the_client_certificate() {
    let ca = Authority::generate("hakube-ca", 10 * DAY).unwrap();
    let admin = ca
        .issue(&LeafRequest::new("kubernetes-admin", Usage::Client, DAY))
        .unwrap();
    let config: serde_json::Value = serde_json::from_str(&kubeconfig(
        "local",
        "https://10.77.0.10:6443",
        &ca.cert_pem().unwrap(),
        "kubernetes-admin",
        &admin,
    ))
    .unwrap();
    assert_eq!(config["current-context"], "kubernetes-admin@local");
    assert_eq!(
        config["clusters"][0]["cluster"]["server"],
        "https://10.77.0.10:6443"
    );
    let decode = |v: &serde_json::Value| {
        String::from_utf8(openssl::base64::decode_block(v.as_str().unwrap()).unwrap()).unwrap()
    };
    assert_eq!(
        decode(&config["users"][0]["user"]["client-certificate-data"]),
        admin.cert_pem
    );
    assert_eq!(
        decode(&config["clusters"][0]["cluster"]["certificate-authority-data"]),
        ca.cert_pem().unwrap()
    );
}

#[test]
fn certificates_fit_until_names_change_expiry_nears_the_ca_changes_or_validity_shrinks() {
    let ca = Authority::generate("hakube-ca", 10 * DAY).unwrap();
    let mut request = LeafRequest::new("kube-apiserver", Usage::Server, 5 * DAY);
    request.ip_addresses = vec!["10.77.0.11".parse().unwrap()];
    request.dns_names = vec!["kubernetes".into()];
    let leaf = ca.issue(&request).unwrap();
    assert!(ca.still_fits(&leaf.cert_pem, &request, DAY));
    assert!(
        !ca.still_fits(&leaf.cert_pem, &request, 6 * DAY),
        "within renewBefore"
    );
    let mut more = request.clone();
    more.ip_addresses.push("10.77.0.14".parse().unwrap());
    assert!(!ca.still_fits(&leaf.cert_pem, &more, DAY), "a new name");
    let other = Authority::generate("hakube-ca", 10 * DAY).unwrap();
    assert!(
        !other.still_fits(&leaf.cert_pem, &request, DAY),
        "another CA"
    );
    assert!(!ca.still_fits("garbage", &request, DAY));
    let mut shorter = request.clone();
    shorter.validity = DAY;
    assert!(
        !ca.still_fits(&leaf.cert_pem, &shorter, DAY / 2),
        "a validity shortened since"
    );
}
