//! A kube-rs `Controller` over a CRD served by hakube-apiserver: the CRD is created from the
//! derived type and awaited with `await_condition(is_crd_established())`; the controller adds
//! its finalizer, writes status with server-side apply, converges and then stays quiet (no
//! reconcile loop, no resourceVersion churn); deleting an object runs the finalizer's cleanup.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hakube_e2e::ControlPlane;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, CustomResource, CustomResourceExt, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "hakube.test",
    version = "v1",
    kind = "Greeting",
    namespaced,
    status = "GreetingStatus",
    shortname = "gr"
)]
pub struct GreetingSpec {
    message: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
pub struct GreetingStatus {
    observed: String,
}

const FINALIZER: &str = "hakube.test/cleanup";

struct Context {
    client: Client,
    reconciles: AtomicUsize,
    cleaned: Mutex<Vec<String>>,
}

async fn reconcile(
    greeting: Arc<Greeting>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<kube::Error>> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let namespace = greeting.namespace().unwrap_or_default();
    let api: Api<Greeting> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, greeting, |event| async {
        match event {
            Event::Apply(g) => {
                let status = json!({
                    "apiVersion": "hakube.test/v1", "kind": "Greeting",
                    "status": {"observed": g.spec.message},
                });
                api.patch_status(
                    &g.name_any(),
                    &PatchParams::apply("greeter").force(),
                    &Patch::Apply(status),
                )
                .await?;
                Ok(Action::await_change())
            }
            Event::Cleanup(g) => {
                if let Ok(mut cleaned) = ctx.cleaned.lock() {
                    cleaned.push(g.name_any());
                }
                Ok(Action::await_change())
            }
        }
    })
    .await
}

fn error_policy(
    _: Arc<Greeting>,
    _: &kube::runtime::finalizer::Error<kube::Error>,
    _: Arc<Context>,
) -> Action {
    Action::requeue(Duration::from_millis(500))
}

async fn until<F: FnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 10 s");
}

#[test]
fn controller_converges_stays_quiet_and_finalizes() {
    let cp = ControlPlane::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = cp.kube_client().await;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.create(&PostParams::default(), &Greeting::crd())
            .await
            .expect("the derived CRD is accepted");
        tokio::time::timeout(
            Duration::from_secs(10),
            await_condition(
                crds,
                "greetings.hakube.test",
                conditions::is_crd_established(),
            ),
        )
        .await
        .expect("established in time")
        .expect("watching the CRD");

        let ctx = Arc::new(Context {
            client: client.clone(),
            reconciles: AtomicUsize::new(0),
            cleaned: Mutex::new(Vec::new()),
        });
        let greetings: Api<Greeting> = Api::namespaced(client.clone(), "default");
        let controller = Controller::new(greetings.clone(), watcher::Config::default())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {});
        let handle = tokio::spawn(controller);

        let hello = Greeting::new(
            "hello",
            GreetingSpec {
                message: "hi".into(),
            },
        );
        greetings
            .create(&PostParams::default(), &hello)
            .await
            .unwrap();
        let mut converged = None;
        for _ in 0..100 {
            let g = greetings.get("hello").await.unwrap();
            if g.status.as_ref().map(|s| s.observed.as_str()) == Some("hi")
                && g.finalizers().iter().any(|f| f == FINALIZER)
            {
                converged = Some(g);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let converged = converged.expect("the controller converges");

        // Quiet: nothing changes and nothing is reconciled while nothing changes.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let reconciles = ctx.reconciles.load(Ordering::SeqCst);
        let rv = converged.resource_version();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let later = greetings.get("hello").await.unwrap();
        assert_eq!(later.resource_version(), rv, "no resourceVersion churn");
        assert_eq!(
            ctx.reconciles.load(Ordering::SeqCst),
            reconciles,
            "no reconcile loop"
        );

        // A spec change converges again.
        greetings
            .patch(
                "hello",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"message": "hello again"}})),
            )
            .await
            .unwrap();
        let mut observed = String::new();
        for _ in 0..100 {
            let g = greetings.get("hello").await.unwrap();
            observed = g.status.map(|s| s.observed).unwrap_or_default();
            if observed == "hello again" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(observed, "hello again");

        // Deletion runs the finalizer's cleanup, then the object goes.
        greetings
            .delete("hello", &DeleteParams::default())
            .await
            .unwrap();
        until("cleanup ran", || {
            ctx.cleaned
                .lock()
                .map(|c| c.contains(&"hello".to_string()))
                .unwrap_or(false)
        })
        .await;
        let mut gone = false;
        for _ in 0..100 {
            if greetings.get_opt("hello").await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "the object is deleted once its finalizer is removed");
        handle.abort();
    });
}
