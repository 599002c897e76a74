//! Authentication three ways (client certificate, static token, ServiceAccount token), the
//! TokenRequest API with pod-bound tokens, OIDC discovery, and 401 for everyone else.

use hakube_e2e::ControlPlane;
use serde_json::{json, Value};

const CREATE: &[&str] = &["create", "-f", "-"];

fn bearer(token: &str) -> Vec<String> {
    vec!["-H".to_string(), format!("Authorization: Bearer {token}")]
}

fn whoami(cp: &ControlPlane, credentials: &[String]) -> (u16, Value) {
    let review =
        json!({"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}).to_string();
    cp.curl_as(
        credentials,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "application/json",
        Some(review.as_bytes()),
    )
}

/// kubectl with this kubeconfig can read the API.
fn assert_kubectl_works(cp: &ControlPlane, kubeconfig: &str) {
    let out = cp.kubectl_as(kubeconfig, &["get", "ns", "default", "-o", "name"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/default"
    );
}

fn request_token(cp: &ControlPlane, sa: &str, spec: Value) -> (u16, Value) {
    let body = json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":spec})
        .to_string();
    cp.curl(
        "POST",
        &format!("/api/v1/namespaces/default/serviceaccounts/{sa}/token"),
        "application/json",
        Some(body.as_bytes()),
    )
}

#[test]
fn client_certificates_name_the_user_and_groups() {
    let cp = ControlPlane::start();
    let cert = vec![
        "--cert".into(),
        cp.path("developer.crt"),
        "--key".into(),
        cp.path("developer.key"),
    ];
    let (code, review) = whoami(&cp, &cert);
    assert_eq!(code, 201, "{review}");
    assert_eq!(review["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["developers", "system:authenticated"])
    );
    assert!(cp
        .ok(&["get", "ns", "-o", "name"])
        .contains("namespace/default"));
}

#[test]
fn static_tokens_from_the_token_file() {
    let cp = ControlPlane::start();
    let token = std::fs::read_to_string(cp.path("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let kubeconfig = cp.token_kubeconfig("token-admin", &token);
    assert_kubectl_works(&cp, &kubeconfig);
    let (_, review) = whoami(&cp, &bearer(&token));
    assert_eq!(review["status"]["userInfo"]["username"], "token-admin");
    assert_eq!(review["status"]["userInfo"]["uid"], "token-admin-uid");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );
}

#[test]
fn service_account_tokens_authenticate_until_their_pod_goes() {
    let cp = ControlPlane::start();
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"robot"}}).to_string(),
    );
    let (code, tr) = request_token(&cp, "robot", json!({"expirationSeconds": 3600}));
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(
        tr["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let token = tr["status"]["token"].as_str().unwrap().to_string();
    let kubeconfig = cp.token_kubeconfig("robot", &token);
    assert_kubectl_works(&cp, &kubeconfig);
    let (_, review) = whoami(&cp, &bearer(&token));
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "system:serviceaccount:default:robot");
    assert_eq!(
        user["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );

    // A token bound to a pod dies with the pod.
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"worker"},"spec":{"serviceAccountName":"robot","containers":[{"name":"c","image":"busybox:1.36"}]}}).to_string(),
    );
    let pod_uid = cp.get_json(&["pod", "worker"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, tr) = request_token(
        &cp,
        "robot",
        json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "worker", "uid": pod_uid}}),
    );
    assert_eq!(code, 201, "{tr}");
    let bound = tr["status"]["token"].as_str().unwrap().to_string();
    let (code, review) = whoami(&cp, &bearer(&bound));
    assert_eq!(code, 201);
    assert_eq!(
        review["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["worker"])
    );
    cp.ok(&["delete", "pod", "worker"]);
    assert_eq!(whoami(&cp, &bearer(&bound)).0, 401);
    // Deleting the ServiceAccount revokes its tokens.
    cp.ok(&["delete", "sa", "robot"]);
    assert_eq!(whoami(&cp, &bearer(&token)).0, 401);
}

#[test]
fn kubectl_create_token_and_auth_whoami() {
    let cp = ControlPlane::start();
    cp.ok(&["create", "serviceaccount", "robot"]);
    let token = cp
        .ok(&["create", "token", "robot", "--duration=20m"])
        .trim()
        .to_string();
    let kubeconfig = cp.token_kubeconfig("robot", &token);
    let out = cp.kubectl_as(&kubeconfig, &["auth", "whoami", "-o", "json"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let review: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "system:serviceaccount:default:robot"
    );
    let me: Value = serde_json::from_str(&cp.ok(&["auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(me["status"]["userInfo"]["username"], "kubernetes-admin");
    // A token bound to a pod, through kubectl.
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"worker"},"spec":{"serviceAccountName":"robot","containers":[{"name":"c","image":"busybox:1.36"}]}}).to_string(),
    );
    let bound = cp.ok(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind=Pod",
        "--bound-object-name=worker",
    ]);
    let (code, review) = whoami(&cp, &bearer(bound.trim()));
    assert_eq!(code, 201);
    assert_eq!(
        review["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["worker"])
    );
}

#[test]
fn token_requests_are_validated() {
    let cp = ControlPlane::start();
    let (code, status) = request_token(&cp, "missing", json!({}));
    assert_eq!(code, 404, "{status}");
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"robot"}}).to_string(),
    );
    let (code, status) = request_token(&cp, "robot", json!({"expirationSeconds": 60}));
    assert_eq!(code, 422);
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.expirationSeconds"
    );
    let (code, _) = request_token(
        &cp,
        "robot",
        json!({"boundObjectRef": {"kind": "Pod", "name": "nope"}}),
    );
    assert_eq!(code, 404);
}

#[test]
fn unknown_identities_get_401() {
    let cp = ControlPlane::start();
    let kubeconfig = cp.token_kubeconfig("stranger", "not-a-real-token");
    let out = cp.kubectl_as(&kubeconfig, &["get", "ns"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Unauthorized") || stderr.contains("credentials"),
        "{stderr}"
    );
    let (code, status) = cp.curl_as(&[], "GET", "/api/v1/namespaces", "application/json", None);
    assert_eq!(code, 401);
    assert_eq!(status["reason"], "Unauthorized");
    // A forged JWT (signed by another key) is refused too.
    let forged = "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMuZGVmYXVsdC5zdmMuY2x1c3Rlci5sb2NhbCJ9.c2lnbmF0dXJl";
    assert_eq!(whoami(&cp, &bearer(forged)).0, 401);
    // Public information stays readable without credentials.
    let (code, version) = cp.curl_as(&[], "GET", "/version", "application/json", None);
    assert_eq!(code, 200);
    assert_eq!(version["minor"], "33");
}

#[test]
fn oidc_discovery_publishes_the_signing_key() {
    let cp = ControlPlane::start();
    let (code, config) = cp.curl_as(
        &[],
        "GET",
        "/.well-known/openid-configuration",
        "application/json",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        config["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert!(config["jwks_uri"]
        .as_str()
        .unwrap()
        .ends_with("/openid/v1/jwks"));
    let (code, jwks) = cp.curl_as(&[], "GET", "/openid/v1/jwks", "application/json", None);
    assert_eq!(code, 200);
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    // The key id in issued tokens is the published one.
    cp.ok_stdin(
        CREATE,
        &json!({"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"robot"}}).to_string(),
    );
    let (_, tr) = request_token(&cp, "robot", json!({}));
    let token = tr["status"]["token"].as_str().unwrap();
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], key["kid"]);
}
