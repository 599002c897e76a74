//! kube-rs against hakube-apiserver: server-side apply through `Patch::Apply`, on an object and
//! on its status subresource, with `force`; an identical apply does not write.

use hakube_e2e::ControlPlane;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

fn deployment(replicas: i32, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kr"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "kr"}},
            "template": {"metadata": {"labels": {"app": "kr"}},
                         "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    })
}

#[test]
fn patch_apply_on_object_and_status() {
    let cp = ControlPlane::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let api: Api<Deployment> = Api::namespaced(cp.kube_client().await, "default");
        let owner = PatchParams::apply("kr-owner").force();
        let created = api
            .patch("kr", &owner, &Patch::Apply(deployment(1, "img:1")))
            .await
            .expect("apply creates");
        let rv = created.metadata.resource_version.clone();
        assert!(rv.is_some());

        // The same content again: no write, same resourceVersion.
        let again = api
            .patch("kr", &owner, &Patch::Apply(deployment(1, "img:1")))
            .await
            .unwrap();
        assert_eq!(again.metadata.resource_version, rv);

        // Another manager without force conflicts; with force it takes the field.
        let other = PatchParams::apply("kr-other");
        let err = api
            .patch("kr", &other, &Patch::Apply(deployment(3, "img:1")))
            .await
            .expect_err("conflict");
        match err {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 409);
                assert!(
                    status.message.contains("conflict with \"kr-owner\""),
                    "{}",
                    status.message
                );
            }
            other => panic!("unexpected error {other}"),
        }
        let forced = api
            .patch(
                "kr",
                &other.clone().force(),
                &Patch::Apply(deployment(3, "img:1")),
            )
            .await
            .unwrap();
        assert_eq!(forced.spec.as_ref().and_then(|s| s.replicas), Some(3));

        // Status: the controller's apply touches status only.
        let status = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "status": {"replicas": 3, "readyReplicas": 2, "observedGeneration": 2}
        });
        let controller = PatchParams::apply("kr-controller").force();
        let with_status = api
            .patch_status("kr", &controller, &Patch::Apply(status.clone()))
            .await
            .unwrap();
        let s = with_status.status.as_ref().unwrap();
        assert_eq!((s.replicas, s.ready_replicas), (Some(3), Some(2)));
        assert_eq!(with_status.spec.as_ref().and_then(|s| s.replicas), Some(3));
        let entry = with_status
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.manager.as_deref() == Some("kr-controller"))
            .expect("the controller's managedFields entry");
        assert_eq!(entry.subresource.as_deref(), Some("status"));
        assert_eq!(entry.operation.as_deref(), Some("Apply"));
        let repeat = api
            .patch_status("kr", &controller, &Patch::Apply(status))
            .await
            .unwrap();
        assert_eq!(
            repeat.metadata.resource_version,
            with_status.metadata.resource_version
        );
    });
}
