//! The watch cache under kube-runtime and at scale: watchers (plain and streaming-list) that
//! come back after their resourceVersion left the history relist and end with exactly the
//! right state; the first watch on a new custom resource type resumes from its list and sees
//! the type's first object; a watcher that stops reading is cut off while a thousand others
//! keep receiving; paginated lists under concurrent writes return each object once, as of one
//! revision.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hakube_e2e::{eventually, ControlPlane};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams, VersionMatch,
    WatchEvent, WatchParams,
};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;

fn configmap(name: &str, data: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "w"}},
        "data": {"v": data},
    }))
    .expect("a ConfigMap")
}

/// A ConfigMap as the API server stores it, for writing straight into etcd.
fn stored_configmap(name: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "w"}},
        "data": {"v": "etcd"},
    })
    .to_string()
}

#[test]
fn kube_runtime_watchers_relist_after_their_version_left_the_history() {
    let mut cp = ControlPlane::start_with(&["--default-watch-cache-size=5"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (plain, streaming) = runtime.block_on(async {
        let api: Api<ConfigMap> = Api::namespaced(cp.kube_client().await, "default");
        for i in 0..10 {
            api.create(&PostParams::default(), &configmap(&format!("c{i}"), "x"))
                .await
                .unwrap();
        }
        let mut stores = Vec::new();
        for streaming in [false, true] {
            let (reader, writer) = reflector::store::<ConfigMap>();
            let mut config = watcher::Config::default().labels("app=w");
            if streaming {
                config = config.streaming_lists();
            }
            let stream = reflector(writer, watcher(api.clone(), config))
                .default_backoff()
                .for_each(|_| async {});
            tokio::spawn(stream);
            stores.push(reader);
        }
        for store in &stores {
            for _ in 0..100 {
                if store.state().len() == 10 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(store.state().len(), 10);
        }
        (stores.remove(0), stores.remove(0))
    });

    // While the API server is down, more changes than the history holds happen in etcd, and
    // etcd compacts them away.
    cp.terminate_apiserver();
    for i in 0..8 {
        cp.etcd.run_ctl(&[
            "put",
            &format!("/registry/configmaps/default/e{i}"),
            &stored_configmap(&format!("e{i}")),
        ]);
    }
    for i in 0..3 {
        cp.etcd
            .run_ctl(&["del", &format!("/registry/configmaps/default/c{i}")]);
    }
    cp.etcd.compact();
    cp.restart_apiserver();

    let expected: BTreeSet<String> = (3..10)
        .map(|i| format!("c{i}"))
        .chain((0..8).map(|i| format!("e{i}")))
        .collect();
    runtime.block_on(async {
        for (what, store) in [("watcher", &plain), ("streaming-list watcher", &streaming)] {
            let mut names = BTreeSet::new();
            for _ in 0..200 {
                names = store.state().iter().map(|c| c.name_any()).collect();
                if names == expected {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(names, expected, "{what} after relisting");
            assert_eq!(store.state().len(), expected.len(), "{what}: no duplicates");
        }
    });
}

/// `things.<group>`, namespaced, keeping whatever fields its objects have.
fn things_crd(group: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": format!("things.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema":
                    {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        },
    }))
    .expect("a CRD")
}

fn things(client: &kube::Client, group: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Thing".into(),
        plural: "things".into(),
    };
    Api::namespaced_with(client.clone(), "default", &resource)
}

/// Creates the Thing `first` as soon as its type is served (a moment after the CRD is stored).
async fn create_first(api: &Api<DynamicObject>, group: &str) {
    let thing: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Thing",
        "metadata": {"name": "first"}, "spec": {"size": 1},
    }))
    .expect("a Thing");
    for _ in 0..100 {
        match api.create(&PostParams::default(), &thing).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("creating the first Thing: {e}"),
        }
    }
    panic!("things.{group} was never served");
}

/// The first list kube-runtime's watcher makes: paginated and consistent, so etcd answers it
/// and no watch cache exists for the type yet. Returns the names and the resourceVersion.
async fn first_list(api: &Api<DynamicObject>) -> (BTreeSet<String>, String) {
    for _ in 0..100 {
        match api.list(&ListParams::default().limit(500)).await {
            Ok(list) => {
                let names = list.items.iter().map(|o| o.name_any()).collect();
                return (names, list.metadata.resource_version.unwrap_or_default());
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("listing: {e}"),
        }
    }
    panic!("the type was never served");
}

/// The first watch on a custom resource type makes its watch cache, which loads after the
/// client's list whenever anything else was written in between: the watch resumes from before
/// the load, and must be served, not refused as too old. (A 410 there sends every watcher of a
/// kube-runtime Controller into a relist; with its shared backoff, a relisted object can be
/// looked up before the store holds it and its reconcile is dropped: the operator then never
/// reconciled the Cluster created right after its CRD.)
#[test]
fn a_watch_on_a_new_custom_resource_type_sees_the_first_object() {
    let cp = ControlPlane::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = cp.kube_client().await;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let unrelated = move |name: String| {
            let configmaps = configmaps.clone();
            async move {
                configmaps
                    .create(&PostParams::default(), &configmap(&name, "x"))
                    .await
                    .unwrap();
            }
        };

        // kube-runtime's requests spelled out: list, another write, then the watch from the
        // list's resourceVersion, with the first object created before, between or after.
        for round in 0..2 {
            for (case, when) in ["before the list", "before the watch", "after the watch"]
                .into_iter()
                .enumerate()
            {
                let group = format!("w{round}{case}.example.com");
                crds.create(&PostParams::default(), &things_crd(&group))
                    .await
                    .unwrap();
                let api = things(&client, &group);
                if case == 0 {
                    create_first(&api, &group).await;
                }
                let (listed, rv) = first_list(&api).await;
                if case == 1 {
                    create_first(&api, &group).await;
                }
                unrelated(format!("u{round}{case}")).await;
                // Bookmarks on, as kube-runtime asks.
                let params = WatchParams::default();
                let mut events = api.watch(&params, &rv).await.unwrap().boxed();
                if case == 2 {
                    create_first(&api, &group).await;
                }
                let mut seen = listed.contains("first");
                // A refused watch fails at once; otherwise wait for the object.
                let wait = if seen { 500 } else { 5000 };
                let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
                while !(seen && case > 0) {
                    match tokio::time::timeout_at(deadline, events.try_next()).await {
                        Err(_) => break,
                        Ok(Ok(Some(WatchEvent::Added(o)))) if o.name_any() == "first" => {
                            seen = true
                        }
                        Ok(Ok(Some(WatchEvent::Error(e)))) => {
                            panic!("created {when}: the watch from {rv} failed: {e:?}")
                        }
                        Ok(Ok(Some(_))) => {}
                        Ok(Ok(None)) => panic!("created {when}: the watch from {rv} ended"),
                        Ok(Err(e)) => panic!("created {when}: the watch from {rv}: {e}"),
                    }
                }
                assert!(seen, "created {when}: the first Thing never arrived");
            }
        }

        // kube-runtime's watcher as a Controller runs it, started before the CRD exists (its
        // lists get 404 until the type is served) or right after it, with other writes going
        // on: it sees the first object without having to relist.
        for (case, before_crd) in [(3, true), (4, false), (5, true), (6, false)] {
            let group = format!("w{case}.example.com");
            let api = things(&client, &group);
            if !before_crd {
                crds.create(&PostParams::default(), &things_crd(&group))
                    .await
                    .unwrap();
            }
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let watch = tokio::spawn(
                watcher(api.clone(), watcher::Config::default())
                    .default_backoff()
                    .for_each(move |event| {
                        let _ = tx.send(event);
                        async {}
                    }),
            );
            let writes = tokio::spawn({
                let unrelated = unrelated.clone();
                async move {
                    for i in 0..10 {
                        unrelated(format!("c{case}-{i}")).await;
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }
            });
            if before_crd {
                tokio::time::sleep(Duration::from_millis(100)).await;
                crds.create(&PostParams::default(), &things_crd(&group))
                    .await
                    .unwrap();
            }
            create_first(&api, &group).await;
            let seen = tokio::time::timeout(Duration::from_secs(8), async {
                while let Some(event) = rx.recv().await {
                    match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o))
                            if o.name_any() == "first" =>
                        {
                            return true
                        }
                        Err(watcher::Error::WatchError(e)) => {
                            panic!("watcher on {group} had to relist: {e:?}")
                        }
                        // The lists before the type is served.
                        _ => {}
                    }
                }
                false
            })
            .await
            .unwrap_or(false);
            watch.abort();
            writes.await.unwrap();
            assert!(seen, "the watcher on {group} never saw the first Thing");
        }
    });
}

#[test]
fn a_watcher_that_stops_reading_is_cut_off_while_a_thousand_others_keep_up() {
    let cp = ControlPlane::start();
    cp.ok(&["create", "namespace", "fast"]);
    cp.ok(&["create", "namespace", "slow"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = cp.kube_client().await;
        let fast: Api<ConfigMap> = Api::namespaced(admin.clone(), "fast");
        let slow: Api<ConfigMap> = Api::namespaced(admin.clone(), "slow");
        fast.create(&PostParams::default(), &configmap("tick", "0"))
            .await
            .unwrap();
        let big = "x".repeat(100 * 1024);
        slow.create(&PostParams::default(), &configmap("big", &big))
            .await
            .unwrap();

        // A watcher that never reads: curl writes into a pipe nobody drains.
        let mut stalled = Command::new("curl")
            .args(["-sN", "--http1.1", "--cacert", &cp.path("ca.crt")])
            .args([
                "--cert",
                &cp.path("admin.crt"),
                "--key",
                &cp.path("admin.key"),
            ])
            .arg(format!(
                "{}/api/v1/namespaces/slow/configmaps?watch=true",
                cp.url
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();

        // A thousand watchers over five connections (HTTP/2 streams).
        let done = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(cp.kube_client().await);
        }
        for i in 0..1000 {
            let api: Api<ConfigMap> = Api::namespaced(clients[i % 5].clone(), "fast");
            let done = done.clone();
            tokio::spawn(async move {
                let Ok(stream) = api.watch(&WatchParams::default(), "0").await else {
                    return;
                };
                let mut stream = stream.boxed();
                // Keep reading after the last change, so this watch stays open.
                while let Ok(Some(event)) = stream.try_next().await {
                    if let WatchEvent::Modified(cm) = event {
                        if cm.data.and_then(|d| d.get("v").cloned()).as_deref() == Some("20") {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
        let mut opened = 0;
        for _ in 0..200 {
            opened = cp.open_watches("configmaps");
            if opened >= 1001 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(opened >= 1001, "{opened} watches open");

        // 30 MB of changes for the stalled watcher, 20 small ones for everyone else.
        let params = PatchParams::default();
        for i in 0..300 {
            let data = json!({"data": {"v": format!("{i}{}", &big[..big.len() - 8])}});
            slow.patch("big", &params, &Patch::Merge(data))
                .await
                .unwrap();
            if i % 15 == 14 {
                let tick = json!({"data": {"v": (i / 15 + 1).to_string()}});
                fast.patch("tick", &params, &Patch::Merge(tick))
                    .await
                    .unwrap();
            }
        }
        for _ in 0..300 {
            if done.load(Ordering::SeqCst) == 1000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            done.load(Ordering::SeqCst),
            1000,
            "every reading watcher saw every change"
        );
        eventually(
            "the stalled watcher alone is closed",
            Duration::from_secs(20),
            || cp.open_watches("configmaps") == 1000,
        );
        let _ = stalled.kill();
        let _ = stalled.wait();
    });
}

#[test]
fn paginated_lists_under_concurrent_writes_are_one_consistent_snapshot() {
    let cp = ControlPlane::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let api: Api<ConfigMap> = Api::namespaced(cp.kube_client().await, "default");
        for i in 0..300 {
            api.create(&PostParams::default(), &configmap(&format!("p{i:03}"), "x"))
                .await
                .unwrap();
        }
        let writer_api = api.clone();
        let writer = tokio::spawn(async move {
            for i in 0..300 {
                let _ = writer_api
                    .create(&PostParams::default(), &configmap(&format!("q{i:03}"), "y"))
                    .await;
                let _ = writer_api
                    .delete(&format!("p{i:03}"), &Default::default())
                    .await;
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut params = ListParams::default().limit(37);
        let mut revision = None;
        loop {
            let page = api.list(&params).await.unwrap();
            let rv = page.metadata.resource_version.clone();
            match &revision {
                None => revision = rv,
                Some(first) => assert_eq!(
                    rv.as_ref(),
                    Some(first),
                    "every page is read at one revision"
                ),
            }
            for cm in &page.items {
                *seen.entry(cm.name_any()).or_default() += 1;
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => {
                    params = params.continue_token(&token);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => break,
            }
        }
        writer.await.unwrap();
        assert!(seen.values().all(|n| *n == 1), "an object listed twice");
        let revision = revision.unwrap();
        let exact = api
            .list(
                &ListParams::default()
                    .at(&revision)
                    .matching(VersionMatch::Exact),
            )
            .await
            .unwrap();
        let expected: BTreeSet<String> = exact.items.iter().map(|c| c.name_any()).collect();
        let got: BTreeSet<String> = seen.keys().cloned().collect();
        assert_eq!(
            got, expected,
            "the pages together are the collection at revision {revision}"
        );
        assert!(got.len() >= 300);
    });
}

/// Every unpaginated list without a resourceVersion reads etcd's current state, whether its
/// type was written last (the cache catches up on its own events) or another type was
/// (the cache is checked against etcd's newest modification and key count).
#[test]
fn consistent_lists_see_every_write_that_came_before_them() {
    let cp = ControlPlane::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = cp.kube_client().await;
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, "default");
        let labelled = ListParams::default().labels("app=w");
        for i in 0..60 {
            let name = format!("c{i}");
            configmaps
                .create(&PostParams::default(), &configmap(&name, "x"))
                .await
                .unwrap();
            if i % 2 == 1 {
                let secret =
                    serde_json::from_value(json!({"metadata": {"name": name}})).expect("a Secret");
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .unwrap();
            }
            let names: BTreeSet<String> = configmaps
                .list(&labelled)
                .await
                .unwrap()
                .items
                .iter()
                .map(|c| c.name_any())
                .collect();
            assert!(
                names.contains(&name),
                "list after creating {name}: {names:?}"
            );
            if i % 3 == 0 {
                configmaps.delete(&name, &Default::default()).await.unwrap();
                if i % 2 == 0 {
                    let secret =
                        serde_json::from_value(json!({"metadata": {"name": format!("d{i}")}}))
                            .expect("a Secret");
                    secrets
                        .create(&PostParams::default(), &secret)
                        .await
                        .unwrap();
                }
                let after = configmaps.list(&labelled).await.unwrap();
                assert!(
                    after.items.iter().all(|c| c.name_any() != name),
                    "list after deleting {name} still has it"
                );
            }
        }
    });
}
