"""The Python `kubernetes` client against hakube-apiserver: list, create, read, replace,
watch from a list's resourceVersion, strategic merge patches with dict bodies, delete, 404 as
ApiException, and custom objects of a CRD through CustomObjectsApi.

Run by tests/e2e/tests/python_client.rs with KUBECONFIG pointing at the server."""
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main() -> None:
    config.load_kube_config()
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    namespaces = [n.metadata.name for n in core.list_namespace().items]
    assert "kube-system" in namespaces, namespaces

    listed = core.list_namespaced_config_map("default")
    start_rv = listed.metadata.resource_version
    assert isinstance(listed.items, list)

    seen = []
    done = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        for event in w.stream(core.list_namespaced_config_map, "default",
                              resource_version=start_rv, timeout_seconds=20):
            seen.append((event["type"], event["object"].metadata.name,
                         (event["object"].data or {}).get("k")))
            if event["type"] == "DELETED":
                w.stop()
        done.set()

    thread = threading.Thread(target=watcher)
    thread.start()

    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}),
                              data={"k": "v1"})
    created = core.create_namespaced_config_map("default", body)
    assert created.metadata.uid, created
    read = core.read_namespaced_config_map("py-cm", "default")
    assert read.data == {"k": "v1"}, read.data
    read.data["k"] = "v2"
    replaced = core.replace_namespaced_config_map("py-cm", "default", read)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    stale = read
    stale.data["k"] = "v3"
    try:
        core.replace_namespaced_config_map("py-cm", "default", stale)
        raise AssertionError("a stale replace must conflict")
    except ApiException as e:
        assert e.status == 409, e.status

    labelled = core.list_namespaced_config_map("default", label_selector="from=python")
    assert [c.metadata.name for c in labelled.items] == ["py-cm"]

    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.25")]))))
    apps.create_namespaced_deployment("default", deployment)
    assert apps.read_namespaced_deployment("py-web", "default").spec.strategy.type == "RollingUpdate"

    # A dict body is sent as a strategic merge patch: containers merge by name.
    patched = apps.patch_namespaced_deployment("py-web", "default", {
        "metadata": {"labels": {"patched": "yes"}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.26"},
            {"name": "sidecar", "image": "busybox"}]}}}})
    containers = [(c.name, c.image) for c in patched.spec.template.spec.containers]
    assert containers == [("web", "nginx:1.26"), ("sidecar", "busybox")], containers
    assert patched.metadata.labels == {"patched": "yes"}, patched.metadata.labels
    patched = apps.patch_namespaced_deployment("py-web", "default", {
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}})
    assert [c.name for c in patched.spec.template.spec.containers] == ["web"]
    relabelled = core.patch_namespace("default", {"metadata": {"labels": {"team": "py"}}})
    assert relabelled.metadata.labels.get("team") == "py", relabelled.metadata.labels

    deleted = core.delete_namespaced_config_map("py-cm", "default")
    deleted = deleted if isinstance(deleted, dict) else deleted.to_dict()
    assert deleted["status"] == "Success", deleted

    try:
        core.read_namespaced_config_map("py-cm", "default")
        raise AssertionError("reading a deleted object must fail")
    except ApiException as e:
        assert e.status == 404, e.status

    assert done.wait(30), "the watch did not see the delete"
    thread.join()
    expected = [("ADDED", "py-cm", "v1"), ("MODIFIED", "py-cm", "v2"), ("DELETED", "py-cm", "v2")]
    assert seen == expected, seen
    custom_objects()
    print("python client suite passed")


def custom_objects() -> None:
    """A CRD through ApiextensionsV1Api, its objects through CustomObjectsApi."""
    ext = client.ApiextensionsV1Api()
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "notes.py.example.com"},
        "spec": {
            "group": "py.example.com", "scope": "Namespaced",
            "names": {"plural": "notes", "singular": "note", "kind": "Note"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "text": {"type": "string"},
                        "stars": {"type": "integer", "default": 0}}}}}},
            }],
        },
    }
    ext.create_custom_resource_definition(crd)
    for _ in range(100):
        got = ext.read_custom_resource_definition("notes.py.example.com")
        conditions = (got.status.conditions or []) if got.status else []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the CRD was not established")

    objects = client.CustomObjectsApi()
    args = ("py.example.com", "v1", "default", "notes")
    created = objects.create_namespaced_custom_object(*args, {
        "apiVersion": "py.example.com/v1", "kind": "Note",
        "metadata": {"name": "n1"}, "spec": {"text": "hello"}})
    assert created["spec"] == {"text": "hello", "stars": 0}, created
    listed = objects.list_namespaced_custom_object(*args)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["n1"], listed
    patched = objects.patch_namespaced_custom_object(*args, "n1", {"spec": {"stars": 5}})
    assert patched["spec"] == {"text": "hello", "stars": 5}, patched
    try:
        objects.create_namespaced_custom_object(*args, {
            "apiVersion": "py.example.com/v1", "kind": "Note",
            "metadata": {"name": "n2"}, "spec": {"stars": "many"}})
        raise AssertionError("a wrongly typed field must be refused")
    except ApiException as e:
        assert e.status == 422, e.status
    objects.delete_namespaced_custom_object(*args, "n1")
    try:
        objects.get_namespaced_custom_object(*args, "n1")
        raise AssertionError("the deleted object must be gone")
    except ApiException as e:
        assert e.status == 404, e.status


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"assertion failed: {e}", file=sys.stderr)
        raise
