//! The storage and allocation pipeline against a real etcd: concurrent Service creates never
//! share an address, deletes free them, concurrent writers don't lose updates, and lists
//! paginate consistently.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hakube_apiserver::allocator::ServiceRanges;
use hakube_apiserver::authn::{Authenticator, UserInfo};
use hakube_apiserver::metrics::Metrics;
use hakube_apiserver::registry;
use hakube_apiserver::rest::{self, Target};
use hakube_apiserver::storage::{EtcdTls, Store};
use hakube_apiserver::State;
use hakube_e2e::Etcd;
use serde_json::{json, Value};

async fn state(etcd: &Etcd, cluster_ips: &str) -> Arc<State> {
    let metrics = Arc::new(Metrics::new());
    let store = Store::connect(
        std::slice::from_ref(&etcd.client_url),
        "/registry",
        &EtcdTls::default(),
        metrics.clone(),
    )
    .await
    .unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(State {
        store,
        metrics,
        authn: Authenticator::new(HashMap::new(), None),
        service_ranges: ServiceRanges {
            cluster_ips: cluster_ips.parse().unwrap(),
            node_ports: (30000, 30099),
        },
        server_address: "127.0.0.1:6443".into(),
        anonymous_auth: false,
        namespaces: Arc::default(),
        inflight: hakube_apiserver::inflight::Limiter::new(0, 0, Arc::default()),
        caches: Default::default(),
        shutdown: rx,
        defaults_created: Default::default(),
    });
    hakube_apiserver::bootstrap::ensure_defaults(&state, 6443)
        .await
        .unwrap();
    state
}

fn target(group: &str, plural: &str, name: Option<&str>) -> Target {
    Target {
        def: registry::lookup(group, "v1", plural).unwrap(),
        namespace: Some("default".into()),
        name: name.map(str::to_string),
        sub: None,
        field_manager: None,
    }
}

fn admin() -> UserInfo {
    UserInfo {
        name: "admin".into(),
        ..Default::default()
    }
}

async fn create(state: &State, plural: &str, object: Value) -> Result<Value, u16> {
    let body = serde_json::to_vec(&object).unwrap();
    rest::create(
        state,
        &admin(),
        &target("", plural, None),
        &HashMap::new(),
        &http::HeaderMap::new(),
        &body,
    )
    .await
    .map(|(_, v)| v)
    .map_err(|e| e.code)
}

/// Merge-patches a ConfigMap's data with one key, as a controller would.
async fn patch_data(state: &State, name: &str, key: String) -> Result<Value, u16> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/merge-patch+json"),
    );
    let body = json!({"data": {key: "v"}}).to_string();
    let t = target("", "configmaps", Some(name));
    rest::patch(state, &t, &HashMap::new(), &headers, body.as_bytes())
        .await
        .map(|(_, v)| v)
        .map_err(|e| e.code)
}

/// The ConfigMap `counter` that the patch tests write to.
async fn create_counter(state: &State) {
    create(
        state,
        "configmaps",
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"counter"}}),
    )
    .await
    .unwrap();
}

fn service(name: &str, ty: &str) -> Value {
    json!({"apiVersion":"v1","kind":"Service","metadata":{"name":name},"spec":{"type":ty,"ports":[{"port":80}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_service_creates_never_share_an_address_or_port() {
    let etcd = Etcd::start();
    // 14 usable addresses, one taken by the kubernetes Service: room for 13.
    let state = state(&etcd, "10.96.0.0/28").await;
    let creates = (0..20).map(|i| {
        let state = state.clone();
        async move { create(&state, "services", service(&format!("s{i}"), "NodePort")).await }
    });
    let results = futures::future::join_all(creates).await;
    let created: Vec<&Value> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(created.len(), 13, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|code| *code == 422));
    let ips: HashSet<&str> = created
        .iter()
        .map(|s| s["spec"]["clusterIP"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 13, "an address was handed out twice");
    assert!(
        !ips.contains("10.96.0.1"),
        "the kubernetes Service's address was reused"
    );
    let ports: HashSet<i64> = created
        .iter()
        .map(|s| s["spec"]["ports"][0]["nodePort"].as_i64().unwrap())
        .collect();
    assert_eq!(ports.len(), 13, "a node port was handed out twice");

    // Deleting a Service frees its address for the next one.
    let freed = created[0]["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    let name = created[0]["metadata"]["name"].as_str().unwrap().to_string();
    rest::delete(
        &state,
        &target("", "services", Some(&name)),
        &HashMap::new(),
        b"",
    )
    .await
    .unwrap();
    let again = create(&state, "services", service("again", "ClusterIP"))
        .await
        .unwrap();
    assert_eq!(again["spec"]["clusterIP"], freed);
    // A user-chosen address that is taken is refused with a field cause.
    let mut taken = service("taken", "ClusterIP");
    taken["spec"]["clusterIP"] = json!(freed);
    assert_eq!(create(&state, "services", taken).await.unwrap_err(), 422);
}

/// Patches 25 keys into `counter` at once; the keys it then holds.
async fn patch_counter_concurrently(state: &Arc<State>) -> usize {
    let patches = (0..25).map(|i| {
        let state = state.clone();
        async move {
            patch_data(&state, "counter", format!("k{i}"))
                .await
                .unwrap()
        }
    });
    futures::future::join_all(patches).await;
    let (_, cm) = rest::get(state, &target("", "configmaps", Some("counter")))
        .await
        .unwrap();
    cm["data"].as_object().map_or(0, |data| data.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_lose_no_update() {
    let etcd = Etcd::start();
    let state = state(&etcd, "10.96.0.0/24").await;
    create_counter(&state).await;
    assert_eq!(patch_counter_concurrently(&state).await, 25);
}

/// Puts `data` into the ConfigMap `counter`, requiring `resource_version`.
async fn put_counter(state: &State, resource_version: &str, data: Value) -> Result<Value, u16> {
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "counter", "resourceVersion": resource_version},
        "data": data,
    });
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let t = target("", "configmaps", Some("counter"));
    rest::update(
        state,
        &t,
        &HashMap::new(),
        &headers,
        body.to_string().as_bytes(),
    )
    .await
    .map(|(_, v)| v)
    .map_err(|e| e.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_that_start_from_the_watch_caches_copy_lose_nothing_and_keep_preconditions() {
    let etcd = Etcd::start();
    let state = state(&etcd, "10.96.0.0/24").await;
    create_counter(&state).await;
    // A reader starts the ConfigMaps' cache, so updates try its (possibly stale) copy first.
    let cache = state
        .caches
        .get(&state.store, &state.store.collection("configmaps", None));
    assert!(cache.wait_for(0, Duration::from_secs(5)).await);

    // Concurrent patches: most first attempts start from a copy another patch has outdated.
    assert_eq!(patch_counter_concurrently(&state).await, 25);

    // A client requiring the version a write just answered with is not refused because the
    // cache has not applied that write yet; one requiring an older version is.
    for round in 0..20 {
        let current = patch_data(&state, "counter", format!("r{round}"))
            .await
            .unwrap();
        let version = current["metadata"]["resourceVersion"].as_str().unwrap();
        let written = put_counter(&state, version, json!({"round": round.to_string()}))
            .await
            .unwrap_or_else(|code| panic!("round {round}: the update got {code}"));
        assert_eq!(written["data"]["round"], round.to_string());
        assert_eq!(
            put_counter(&state, version, json!({"stale": "yes"})).await,
            Err(409),
            "round {round}: an outdated resourceVersion was accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_racing_writers_still_deletes() {
    let etcd = Etcd::start();
    let state = state(&etcd, "10.96.0.0/24").await;
    for round in 0..5 {
        let name = format!("busy{round}");
        create(
            &state,
            "configmaps",
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name}}),
        )
        .await
        .unwrap();
        let writers = (0..10).map(|i| {
            let state = state.clone();
            let name = name.clone();
            // Patches after the delete may find the object gone; that is fine.
            async move { patch_data(&state, &name, format!("k{i}")).await.ok() }
        });
        let no_query = HashMap::new();
        let busy = target("", "configmaps", Some(&name));
        let delete = rest::delete(&state, &busy, &no_query, b"");
        let (deleted, _) = tokio::join!(delete, futures::future::join_all(writers));
        assert!(deleted.is_ok(), "delete lost a race: {deleted:?}");
        assert_eq!(
            rest::get(&state, &target("", "configmaps", Some(&name)))
                .await
                .unwrap_err()
                .code,
            404
        );
    }
}

#[tokio::test]
async fn pages_read_one_revision_despite_concurrent_writes() {
    let etcd = Etcd::start();
    let state = state(&etcd, "10.96.0.0/24").await;
    for i in 0..10 {
        create(
            &state,
            "configmaps",
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":format!("cm{i:02}")}}),
        )
        .await
        .unwrap();
    }
    let t = target("", "configmaps", None);
    let mut query: HashMap<String, String> = [("limit".to_string(), "4".to_string())].into();
    let (_, first) = rest::list(&state, &t, &query).await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    assert_eq!(first["metadata"]["remainingItemCount"], 6);
    let rv = first["metadata"]["resourceVersion"].clone();
    // Writes between pages are not seen by the rest of the list.
    create(
        &state,
        "configmaps",
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm05a"}}),
    )
    .await
    .unwrap();
    rest::delete(
        &state,
        &target("", "configmaps", Some("cm09")),
        &HashMap::new(),
        b"",
    )
    .await
    .unwrap();
    let mut names: Vec<String> = Vec::new();
    let mut page = first;
    loop {
        assert_eq!(page["metadata"]["resourceVersion"], rv);
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(c) => {
                query.insert("continue".into(), c.to_string());
                page = rest::list(&state, &t, &query).await.unwrap().1;
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("cm{i:02}")).collect();
    assert_eq!(names, expected);
    // Once etcd compacts that revision, the token expires with 410.
    etcd.compact();
    let (_, fresh) = rest::list(&state, &t, &[("limit".to_string(), "4".to_string())].into())
        .await
        .unwrap();
    let token = fresh["metadata"]["continue"].as_str().unwrap().to_string();
    create(
        &state,
        "configmaps",
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"later"}}),
    )
    .await
    .unwrap();
    etcd.compact();
    let err = rest::list(
        &state,
        &t,
        &[
            ("limit".to_string(), "4".to_string()),
            ("continue".to_string(), token),
        ]
        .into(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 410);
    assert_eq!(err.reason, "Expired");
}

/// A type's watch cache, made after more than a thousand changes, replays only the last 1,000
/// revisions from before its load: a watch resuming within them gets every change it missed, one
/// resuming from further back is refused as too old (its client relists; upstream refuses every
/// watch from before its cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_watch_cache_replays_only_the_recent_changes_from_before_its_load() {
    use hakube_apiserver::cache::{CacheError, From};
    let etcd = Etcd::start();
    let state = state(&etcd, "10.96.0.0/24").await;
    create_counter(&state).await;
    let mut revisions = Vec::new();
    for i in 0..1_200 {
        let written = patch_data(&state, "counter", format!("k{i}"))
            .await
            .unwrap();
        let rv = written["metadata"]["resourceVersion"].as_str().unwrap();
        revisions.push(rv.parse::<i64>().unwrap());
    }
    let latest = *revisions.last().unwrap();
    let prefix = state.store.collection("configmaps", None);
    let cache = state.caches.get(&state.store, &prefix);
    assert!(cache.wait_for(0, std::time::Duration::from_secs(10)).await);

    let too_old = revisions[100];
    match cache.subscribe(&prefix, From::After(too_old)) {
        Err(CacheError::TooOld { requested, oldest }) => {
            assert_eq!(requested, too_old);
            assert_eq!(oldest, latest - 1_000);
        }
        Ok(_) => panic!("a watch from 1,100 changes back was served"),
    }

    let resumed = revisions[1_099];
    let mut subscription = cache.subscribe(&prefix, From::After(resumed)).unwrap();
    let mut seen: Vec<i64> = std::mem::take(&mut subscription.replay)
        .iter()
        .map(|e| e.revision)
        .collect();
    while seen.last() != Some(&latest) {
        let event = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            subscription.next_event(),
        )
        .await
        .expect("the rest of the replay")
        .expect("an open subscription");
        seen.push(event.revision);
    }
    assert_eq!(seen, revisions[1_100..]);
}
