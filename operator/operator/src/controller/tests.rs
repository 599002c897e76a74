//! What the reconciler sends the API for an invalid Cluster, pinned at the request level with a
//! mock API server (tower-test): a warning event and a status write the first time, only the
//! status write after that, and never a Secret or anything else.

use std::future::Future;

use hakube_hostd_api::client::ClientTls;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock::{self, Handle, SendResponse};

use super::*;

type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A request the reconciler made, and how to answer it.
struct Received {
    method: Method,
    uri: String,
    body: Value,
    reply: SendResponse<Response<Body>>,
}

impl Received {
    fn respond(self, value: &Value) {
        let body = serde_json::to_vec(value).expect("JSON");
        let response = Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("a response");
        self.reply.send_response(response);
    }
}

async fn next_request(handle: &mut ApiHandle) -> Received {
    let (request, reply) = handle.next_request().await.expect("a request");
    let method = request.method().clone();
    let uri = request.uri().to_string();
    let bytes = request
        .into_body()
        .collect()
        .await
        .expect("the request body")
        .to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    Received {
        method,
        uri,
        body,
        reply,
    }
}

fn context(client: Client, bundle_dir: &std::path::Path) -> Context {
    let tls = ClientTls {
        ca_pem: Vec::new(),
        cert_pem: Vec::new(),
        key_pem: Vec::new(),
        server_name: None,
    };
    Context::new(
        client,
        tls,
        bundle_dir.to_path_buf(),
        "https://127.0.0.1:9444".into(),
        Metrics::default(),
        Duration::from_secs(15),
        Duration::from_secs(30),
    )
}

/// A Stacked Cluster asking for two control-plane replicas (etcd needs an odd count) of a
/// version the operator has no bundle for.
fn invalid_cluster(status: Value) -> Cluster {
    serde_json::from_value(json!({
        "apiVersion": "hakube.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": "c", "namespace": "default", "uid": "u-1", "generation": 3},
        "spec": {
            "version": "v9.9.9",
            "topology": "Stacked",
            "controlPlane": {"replicas": 2, "hosts": {"names": ["cp-1", "cp-2"]}},
            "loadBalancer": {"host": "lb"},
        },
        "status": status,
    }))
    .expect("a Cluster")
}

fn host_list() -> Value {
    let host = |name: &str, address: &str| {
        json!({
            "apiVersion": "hakube.io/v1alpha1", "kind": "Host",
            "metadata": {"name": name},
            "spec": {"address": address},
        })
    };
    json!({
        "apiVersion": "hakube.io/v1alpha1", "kind": "HostList", "metadata": {},
        "items": [host("cp-1", "10.0.0.1"), host("cp-2", "10.0.0.2"), host("lb", "10.0.0.9")],
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Runs `reconcile` against `scenario`, the mock API's side; a request the scenario does not
/// expect leaves the reconcile waiting, which the timeout turns into a failure.
async fn against<T: Send + 'static>(
    reconcile: impl Future<Output = Result<Action, Error>>,
    scenario: impl Future<Output = T> + Send + 'static,
) -> (Action, T) {
    let scenario = tokio::spawn(scenario);
    let action = tokio::time::timeout(Duration::from_secs(10), reconcile)
        .await
        .expect("the reconcile made only the expected requests")
        .expect("the reconcile succeeded");
    (action, scenario.await.expect("the scenario"))
}

async fn expect_host_list(handle: &mut ApiHandle) {
    let request = next_request(handle).await;
    assert_eq!(request.method, Method::GET);
    assert!(
        request.uri.starts_with("/apis/hakube.io/v1alpha1/hosts"),
        "{}",
        request.uri
    );
    request.respond(&host_list());
}

/// The status server-side apply; answers it and returns the status written.
async fn expect_status_apply(handle: &mut ApiHandle) -> Value {
    let request = next_request(handle).await;
    assert_eq!(request.method, Method::PATCH);
    assert!(
        request
            .uri
            .starts_with("/apis/hakube.io/v1alpha1/namespaces/default/clusters/c/status?"),
        "{}",
        request.uri
    );
    assert!(
        request.uri.contains("fieldManager=hakube-operator") && request.uri.contains("force=true"),
        "{}",
        request.uri
    );
    let status = request.body["status"].clone();
    let written = invalid_cluster(status.clone());
    request.respond(&serde_json::to_value(&written).expect("JSON"));
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_spec_is_reported_once_and_touches_nothing() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let bundles = tempfile::tempdir().expect("a directory");
    let ctx = context(Client::new(service, "default"), bundles.path());

    let cluster = invalid_cluster(json!({}));
    let (action, (handle_back, status)) = against(apply(&cluster, &ctx), async move {
        expect_host_list(&mut handle).await;
        let event = next_request(&mut handle).await;
        assert_eq!(event.method, Method::POST);
        assert!(
            event
                .uri
                .starts_with("/apis/events.k8s.io/v1/namespaces/default/events"),
            "{}",
            event.uri
        );
        assert_eq!(event.body["type"], "Warning");
        assert_eq!(event.body["reason"], "InvalidSpec");
        assert_eq!(event.body["regarding"]["name"], "c");
        let note = event.body["note"].as_str().unwrap_or_default().to_string();
        assert!(note.contains("spec.controlPlane.replicas"), "{note}");
        assert!(note.contains("spec.version"), "{note}");
        let echoed = event.body.clone();
        event.respond(&echoed);
        let status = expect_status_apply(&mut handle).await;
        (handle, status)
    })
    .await;
    assert_eq!(action, Action::await_change());
    assert_eq!(status["phase"], "Invalid");
    assert_eq!(status["observedGeneration"], 3);
    let valid = condition(&status, "Valid");
    assert_eq!(valid["status"], "False");
    assert_eq!(valid["reason"], "InvalidSpec");
    assert!(valid["message"]
        .as_str()
        .is_some_and(|m| m.contains("spec.controlPlane.replicas")));
    assert_eq!(condition(&status, "Available")["status"], "False");
    assert_eq!(condition(&status, "Progressing")["reason"], "InvalidSpec");
    assert!(status.get("endpoint").is_none() && status.get("etcdHosts").is_none());

    // The next reconcile, with that status recorded: the same problem is not announced again.
    let mut handle = handle_back;
    let cluster = invalid_cluster(status.clone());
    let (action, (mut handle, again)) = against(apply(&cluster, &ctx), async move {
        expect_host_list(&mut handle).await;
        let status = expect_status_apply(&mut handle).await;
        (handle, status)
    })
    .await;
    assert_eq!(action, Action::await_change());
    assert_eq!(
        condition(&again, "Valid")["lastTransitionTime"],
        valid["lastTransitionTime"]
    );
    drop(ctx);
    assert!(
        handle.next_request().await.is_none(),
        "nothing else was sent"
    );
}

fn answering_host() -> HostView {
    HostView {
        observed: ObservedHost {
            reachable: true,
            units: BTreeMap::new(),
        },
        specs: BTreeMap::new(),
        live: BTreeSet::new(),
        root: None,
        facts: Some(hostd::Facts {
            agent_version: "0.1.0".into(),
            cpu_count: 4,
            memory_bytes: 8 << 30,
            disk_bytes: 100 << 30,
            ..Default::default()
        }),
    }
}

fn at(seconds: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
}

#[test]
fn a_host_that_answers_gets_a_heartbeat_its_facts_and_reachable_true() {
    let status = host_status(None, &answering_host(), "10.0.0.1:9443", at(100));
    assert!(status.reachable);
    assert_eq!(status.last_heartbeat, Some(at(100)));
    assert_eq!(status.agent_version.as_deref(), Some("0.1.0"));
    let capacity = status.capacity.unwrap();
    assert_eq!(capacity.cpu.0, "4");
    assert_eq!(capacity.memory.0, (8u64 << 30).to_string());
    assert_eq!(capacity.disk.0, (100u64 << 30).to_string());
    let [reachable] = status.conditions.as_slice() else {
        panic!("one condition: {:?}", status.conditions);
    };
    assert_eq!(
        (reachable.type_.as_str(), reachable.status.as_str()),
        ("Reachable", "True")
    );
    assert_eq!(reachable.reason, "HostdAnswered");
    assert_eq!(reachable.last_transition_time, at(100));
}

#[test]
fn a_silent_host_keeps_its_last_heartbeat_and_facts_and_its_condition_turns_false() {
    let answered = host_status(None, &answering_host(), "10.0.0.1:9443", at(100));
    let again = host_status(Some(&answered), &answering_host(), "10.0.0.1:9443", at(110));
    assert_eq!(again.last_heartbeat, Some(at(110)));
    assert_eq!(
        again.conditions[0].last_transition_time,
        at(100),
        "an unchanged condition keeps its transition time"
    );

    let silent = host_status(
        Some(&again),
        &HostView::unreachable(),
        "10.0.0.1:9443",
        at(120),
    );
    assert!(!silent.reachable);
    assert_eq!(silent.last_heartbeat, Some(at(110)));
    assert_eq!(silent.capacity, again.capacity);
    assert_eq!(silent.agent_version, again.agent_version);
    let condition = &silent.conditions[0];
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "HostdUnreachable")
    );
    assert!(condition.message.contains("10.0.0.1:9443"), "{condition:?}");
    assert_eq!(condition.last_transition_time, at(120));
}

fn outline(units: &[(&str, bool, bool)]) -> BTreeMap<String, (bool, bool)> {
    units
        .iter()
        .map(|(name, ready, running)| (name.to_string(), (*ready, *running)))
        .collect()
}

#[test]
fn readiness_exits_and_removals_are_news_but_starts_are_not() {
    let starting = outline(&[("etcd", false, true)]);
    assert!(!units_news(&outline(&[]), &starting), "a start");
    assert!(!units_news(&starting, &starting));
    assert!(
        units_news(&starting, &outline(&[("etcd", true, true)])),
        "ready"
    );
    assert!(
        units_news(&outline(&[("etcd", true, true)]), &starting),
        "not ready"
    );
    assert!(
        units_news(&starting, &outline(&[("etcd", false, false)])),
        "exited"
    );
    assert!(units_news(&starting, &outline(&[])), "removed");
    assert!(
        units_news(&outline(&[]), &outline(&[("etcd", true, true)])),
        "a unit new and ready at once"
    );
}
