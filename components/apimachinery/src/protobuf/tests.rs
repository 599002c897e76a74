//! Bodies are hand-encoded the way client-go's generated marshallers write
//! them (every non-pointer field, even when zero); field numbers come from
//! upstream's generated.proto files.

use super::*;
use serde_json::json;

/// A tiny protobuf writer for building test bodies.
#[derive(Default, Clone)]
struct Msg(Vec<u8>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    fn new() -> Self {
        Msg::default()
    }
    fn tag(mut self, field: u32, wire_type: u8) -> Self {
        put_varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire_type));
        self
    }
    fn uint(self, field: u32, v: u64) -> Self {
        let mut m = self.tag(field, 0);
        put_varint(&mut m.0, v);
        m
    }
    /// int32/int64 fields: negative values travel sign-extended to 64 bits.
    fn int(self, field: u32, v: i64) -> Self {
        self.uint(field, v as u64)
    }
    fn bool(self, field: u32, v: bool) -> Self {
        self.uint(field, u64::from(v))
    }
    fn bytes(self, field: u32, b: &[u8]) -> Self {
        let mut m = self.tag(field, 2);
        put_varint(&mut m.0, b.len() as u64);
        m.0.extend_from_slice(b);
        m
    }
    fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
    fn map_str(self, field: u32, k: &str, v: &str) -> Self {
        self.msg(field, Msg::new().str(1, k).str(2, v))
    }
    fn map_bytes(self, field: u32, k: &str, v: &[u8]) -> Self {
        self.msg(field, Msg::new().str(1, k).bytes(2, v))
    }
    fn map_msg(self, field: u32, k: &str, v: Msg) -> Self {
        self.msg(field, Msg::new().str(1, k).msg(2, v))
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
}

/// `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw, "", ""}.
fn body(api_version: &str, kind: &str, object: Msg) -> Vec<u8> {
    let envelope = Msg::new()
        .msg(1, Msg::new().str(1, api_version).str(2, kind))
        .msg(2, object)
        .str(3, "")
        .str(4, "");
    [MAGIC.as_slice(), &envelope.0].concat()
}

/// ObjectMeta as client-go writes it for a new object: all non-pointer
/// fields, a zero creationTimestamp (empty message), then the labels.
fn meta(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Msg {
    let mut m = Msg::new()
        .str(1, name)
        .str(2, "")
        .str(3, namespace)
        .str(4, "")
        .str(5, "")
        .str(6, "")
        .int(7, 0)
        .msg(8, Msg::new());
    for (k, v) in labels {
        m = m.map_str(11, k, v);
    }
    m
}

fn quantity(s: &str) -> Msg {
    Msg::new().str(1, s)
}

fn int_or_string_int(v: i32) -> Msg {
    Msg::new().int(1, 0).int(2, i64::from(v)).str(3, "")
}

fn int_or_string_str(s: &str) -> Msg {
    Msg::new().int(1, 1).int(2, 0).str(3, s)
}

fn decode_message(name: &str, bytes: &[u8]) -> Result<Value, ProtobufError> {
    let schema = Schema::get().map_err(ProtobufError::Schema)?;
    let index = schema.message_index(name).expect("message in schema");
    Decoder { schema }.message(index, bytes, &Path::root("test"), 0)
}

#[test]
fn schema_loads_and_covers_the_served_groups() {
    let schema = Schema::get().unwrap();
    for (gv, package) in [
        ("v1", "k8s.io.api.core.v1"),
        ("apps/v1", "k8s.io.api.apps.v1"),
        ("batch/v1", "k8s.io.api.batch.v1"),
        ("authentication.k8s.io/v1", "k8s.io.api.authentication.v1"),
        ("authorization.k8s.io/v1", "k8s.io.api.authorization.v1"),
        ("policy/v1", "k8s.io.api.policy.v1"),
        ("rbac.authorization.k8s.io/v1", "k8s.io.api.rbac.v1"),
        ("coordination.k8s.io/v1", "k8s.io.api.coordination.v1"),
        ("discovery.k8s.io/v1", "k8s.io.api.discovery.v1"),
        ("events.k8s.io/v1", "k8s.io.api.events.v1"),
        ("autoscaling/v1", "k8s.io.api.autoscaling.v1"),
        ("networking.k8s.io/v1", "k8s.io.api.networking.v1"),
        ("scheduling.k8s.io/v1", "k8s.io.api.scheduling.v1"),
        ("storage.k8s.io/v1", "k8s.io.api.storage.v1"),
        ("certificates.k8s.io/v1", "k8s.io.api.certificates.v1"),
        (
            "apiregistration.k8s.io/v1",
            "k8s.io.kube_aggregator.pkg.apis.apiregistration.v1",
        ),
        ("meta.k8s.io/v1", "k8s.io.apimachinery.pkg.apis.meta.v1"),
    ] {
        assert_eq!(
            schema.group_versions.get(gv).map(String::as_str),
            Some(package),
            "{gv}"
        );
    }
    for kind in [
        "k8s.io.api.core.v1.ConfigMap",
        "k8s.io.api.core.v1.Namespace",
        "k8s.io.api.core.v1.Secret",
        "k8s.io.api.core.v1.ServiceAccount",
        "k8s.io.api.core.v1.Service",
        "k8s.io.api.apps.v1.Deployment",
        "k8s.io.api.batch.v1.Job",
        "k8s.io.api.batch.v1.CronJob",
        "k8s.io.api.authentication.v1.TokenRequest",
        "k8s.io.api.authentication.v1.SelfSubjectReview",
        "k8s.io.api.policy.v1.Eviction",
    ] {
        let i = schema.message_index(kind).unwrap();
        assert!(schema.messages[i].is_kind, "{kind}");
    }
    // Nested types are not kinds, so they cannot be posted on their own.
    let container = schema
        .message_index("k8s.io.api.core.v1.Container")
        .unwrap();
    assert!(!schema.messages[container].is_kind);
}

#[test]
fn schema_parse_rejects_broken_documents() {
    assert!(Schema::parse("not json").is_err());
    assert!(
        Schema::parse(r#"{"groupVersions":{},"messages":[["a","",[[1,"x","o",5]]]]}"#)
            .unwrap_err()
            .contains("out of range")
    );
    assert!(
        Schema::parse(r#"{"groupVersions":{},"messages":[["a","",[[1,"x","o","int7"]]]]}"#)
            .unwrap_err()
            .contains("int7")
    );
    assert!(Schema::parse(r#"{"messages":[]}"#).is_err());
}

#[test]
fn configmap_with_labels_data_and_binary_data() {
    let object = Msg::new()
        .msg(
            1,
            meta("cfg", "team-a", &[("app", "web"), ("tier", "front")]),
        )
        .map_str(2, "greeting", "hello")
        .map_str(2, "empty", "")
        .map_bytes(3, "blob", &[0, 1, 2, 255]);
    let v = decode(&body("v1", "ConfigMap", object)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "cfg",
                "namespace": "team-a",
                "creationTimestamp": null,
                "labels": {"app": "web", "tier": "front"}
            },
            "data": {"greeting": "hello", "empty": ""},
            "binaryData": {"blob": "AAEC/w=="}
        })
    );
    // Members come out in Go's struct order, after apiVersion and kind.
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["apiVersion", "kind", "metadata", "data", "binaryData"]
    );
    let meta_keys: Vec<&str> = v["metadata"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        meta_keys,
        ["name", "namespace", "creationTimestamp", "labels"]
    );
}

/// What `kubectl create deployment web --image=nginx:1.25 --replicas=2` sends.
fn kubectl_deployment(replicas: i64) -> Msg {
    let container = Msg::new()
        .str(1, "nginx")
        .str(2, "nginx:1.25")
        .str(5, "")
        .msg(8, Msg::new())
        .str(13, "")
        .str(14, "")
        .bool(16, false)
        .bool(17, false)
        .bool(18, false)
        .str(20, "");
    let pod_spec = Msg::new()
        .msg(2, container)
        .str(3, "")
        .str(6, "")
        .str(8, "")
        .str(9, "")
        .str(10, "")
        .bool(11, false)
        .bool(12, false)
        .bool(13, false)
        .str(16, "")
        .str(17, "")
        .str(19, "")
        .str(24, "");
    let spec = Msg::new()
        .int(1, replicas)
        .msg(2, Msg::new().map_str(1, "app", "web"))
        .msg(
            3,
            Msg::new()
                .msg(1, meta("", "", &[("app", "web")]))
                .msg(2, pod_spec),
        )
        .msg(4, Msg::new().str(1, ""))
        .int(5, 0)
        .bool(7, false);
    let status = Msg::new()
        .int(1, 0)
        .int(2, 0)
        .int(3, 0)
        .int(4, 0)
        .int(5, 0)
        .int(7, 0);
    Msg::new()
        .msg(1, meta("web", "", &[("app", "web")]))
        .msg(2, spec)
        .msg(3, status)
}

#[test]
fn deployment_as_kubectl_creates_it() {
    let v = decode(&body("apps/v1", "Deployment", kubectl_deployment(2))).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {
                        "containers": [{"name": "nginx", "image": "nginx:1.25", "resources": {}}]
                    }
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn zero_pointer_fields_are_kept() {
    // replicas is *int32: present with 0 means "scale to zero", unlike the
    // omitempty non-pointer minReadySeconds that is dropped.
    let v = decode(&body("apps/v1", "Deployment", kubectl_deployment(0))).unwrap();
    assert_eq!(v["spec"]["replicas"], json!(0));
    assert!(v["spec"].get("minReadySeconds").is_none());
    // Negative int32s travel as 10-byte varints.
    let v = decode(&body("apps/v1", "Deployment", kubectl_deployment(-1))).unwrap();
    assert_eq!(v["spec"]["replicas"], json!(-1));
}

#[test]
fn token_request_for_kubectl_create_token() {
    let spec = Msg::new()
        .str(1, "https://kubernetes.default.svc")
        .str(1, "vault")
        .msg(
            3,
            Msg::new()
                .str(1, "Pod")
                .str(2, "v1")
                .str(3, "web-0")
                .str(4, "5f0c4a3e-1111-2222-3333-444455556666"),
        )
        .int(4, 3600);
    let object = Msg::new()
        .msg(1, meta("", "", &[]))
        .msg(2, spec)
        .msg(3, Msg::new().str(1, "").msg(2, Msg::new()));
    let v = decode(&body("authentication.k8s.io/v1", "TokenRequest", object)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"creationTimestamp": null},
            "spec": {
                "audiences": ["https://kubernetes.default.svc", "vault"],
                "expirationSeconds": 3600,
                // The proto field is named uID; the JSON name is uid.
                "boundObjectRef": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "name": "web-0",
                    "uid": "5f0c4a3e-1111-2222-3333-444455556666"
                }
            },
            "status": {"token": "", "expirationTimestamp": null}
        })
    );
}

#[test]
fn self_subject_review_and_extra_values() {
    // kubectl auth whoami posts an empty review.
    let empty = Msg::new()
        .msg(1, meta("", "", &[]))
        .msg(2, Msg::new().msg(1, Msg::new().str(1, "").str(2, "")));
    let v = decode(&body(
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        empty,
    ))
    .unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {}}
        })
    );
    // ExtraValue is a Go []string: JSON is the bare array, not {"items": [...]}.
    let user = Msg::new()
        .str(1, "alice")
        .str(2, "")
        .str(3, "devs")
        .map_msg(4, "scopes", Msg::new().str(1, "read").str(1, "write"))
        .map_msg(4, "none", Msg::new());
    let full = Msg::new()
        .msg(1, meta("", "", &[]))
        .msg(2, Msg::new().msg(1, user));
    let v = decode(&body("authentication.k8s.io/v1", "SelfSubjectReview", full)).unwrap();
    assert_eq!(
        v["status"]["userInfo"],
        json!({"username": "alice", "groups": ["devs"], "extra": {"scopes": ["read", "write"], "none": []}})
    );
}

#[test]
fn eviction_and_delete_options() {
    let delete_options = Msg::new().int(1, 30).str(5, "All");
    let object = Msg::new()
        .msg(1, meta("web-0", "default", &[]))
        .msg(2, delete_options.clone());
    let v = decode(&body("policy/v1", "Eviction", object)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": null},
            "deleteOptions": {"gracePeriodSeconds": 30, "dryRun": ["All"]}
        })
    );
    // DeleteOptions is accepted under any served group version.
    for gv in ["apps/v1", "v1", "meta.k8s.io/v1"] {
        let v = decode(&body(gv, "DeleteOptions", delete_options.clone())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": gv, "kind": "DeleteOptions", "gracePeriodSeconds": 30, "dryRun": ["All"]})
        );
    }
}

#[test]
fn pod_with_inline_structs_quantities_and_int_or_string() {
    let container = Msg::new()
        .str(1, "app")
        .str(2, "busybox")
        .msg(
            7,
            Msg::new().str(1, "MODE").str(2, "").msg(
                3,
                // ConfigMapKeySelector embeds LocalObjectReference (field 1).
                Msg::new().msg(
                    3,
                    Msg::new()
                        .msg(1, Msg::new().str(1, "settings"))
                        .str(2, "mode"),
                ),
            ),
        )
        .msg(
            8,
            Msg::new()
                .map_msg(1, "cpu", quantity("500m"))
                .map_msg(1, "memory", quantity("128Mi"))
                .map_msg(2, "cpu", Msg::new()),
        )
        .msg(
            9,
            Msg::new()
                .str(1, "scratch")
                .bool(2, false)
                .str(3, "/scratch"),
        )
        // Probe embeds ProbeHandler (field 1).
        .msg(
            10,
            Msg::new()
                .msg(
                    1,
                    Msg::new().msg(
                        2,
                        Msg::new()
                            .str(1, "/healthz")
                            .msg(2, int_or_string_int(8080)),
                    ),
                )
                .int(2, 5)
                .int(3, 0),
        )
        .msg(
            11,
            Msg::new().msg(
                1,
                Msg::new().msg(3, Msg::new().msg(1, int_or_string_str("http"))),
            ),
        );
    let spec = Msg::new()
        // Volume embeds VolumeSource (field 2).
        .msg(
            1,
            Msg::new().str(1, "scratch").msg(
                2,
                Msg::new().msg(2, Msg::new().str(1, "").msg(2, quantity("1Gi"))),
            ),
        )
        .msg(2, container)
        // supplementalGroups: one packed run and one unpacked element.
        .msg(14, Msg::new().bytes(4, &[1, 2, 0xe8, 0x07]).int(4, 5000));
    let object = Msg::new().msg(1, meta("p", "ns", &[])).msg(2, spec);
    let v = decode(&body("v1", "Pod", object)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "creationTimestamp": null},
            "spec": {
                "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
                "containers": [{
                    "name": "app",
                    "image": "busybox",
                    "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}],
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                        // An empty Quantity message is Go's zero quantity.
                        "requests": {"cpu": "0"}
                    },
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 5},
                    "readinessProbe": {"tcpSocket": {"port": "http"}}
                }],
                "securityContext": {"supplementalGroups": [1, 2, 1000, 5000]}
            }
        })
    );
}

#[test]
fn time_and_micro_time() {
    let object = Msg::new()
        .msg(1, meta("e1", "default", &[]))
        // 2024-01-01T00:00:00.123456789Z; MicroTime keeps microseconds.
        .msg(2, Msg::new().int(1, 1_704_067_200).int(2, 123_456_789))
        .str(4, "kubelet")
        .str(7, "Started")
        .msg(8, Msg::new().str(1, "Pod").str(3, "web-0"))
        // Time drops the fraction entirely.
        .msg(13, Msg::new().int(1, 1_704_067_200).int(2, 999_000_000))
        .msg(14, Msg::new())
        .int(15, 0);
    let v = decode(&body("events.k8s.io/v1", "Event", object)).unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default", "creationTimestamp": null},
            "eventTime": "2024-01-01T00:00:00.123456Z",
            "reportingController": "kubelet",
            "reason": "Started",
            "regarding": {"kind": "Pod", "name": "web-0"},
            "deprecatedFirstTimestamp": "2024-01-01T00:00:00Z",
            "deprecatedLastTimestamp": null
        })
    );

    let time = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
    let micro = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
    let secs = |s: i64| Msg::new().int(1, s).int(2, 0).0;
    assert_eq!(
        decode_message(time, &secs(0)).unwrap(),
        json!("1970-01-01T00:00:00Z")
    );
    // Go's zero time is null, as is an empty message.
    assert_eq!(
        decode_message(time, &secs(format::GO_ZERO_TIME_SECONDS)).unwrap(),
        Value::Null
    );
    assert_eq!(decode_message(micro, &[]).unwrap(), Value::Null);
    assert_eq!(
        decode_message(micro, &Msg::new().int(1, 0).int(2, 5_000).0).unwrap(),
        json!("1970-01-01T00:00:00.000005Z")
    );
    // Negative nanos borrow from the seconds, as time.Unix normalizes them.
    assert_eq!(
        decode_message(micro, &Msg::new().int(1, 10).int(2, -1_000).0).unwrap(),
        json!("1970-01-01T00:00:09.999999Z")
    );
    let err = decode_message(time, &secs(400_000_000_000)).unwrap_err();
    assert!(matches!(err, ProtobufError::InvalidValue { .. }), "{err}");
}

#[test]
fn duration_quantity_int_or_string_and_group_version() {
    let duration = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
    for (nanos, want) in [
        (3_600_000_000_000, "1h0m0s"),
        (300_000_000_000, "5m0s"),
        (30_000_000_000, "30s"),
        (1_500_000_000, "1.5s"),
        (0, "0s"),
    ] {
        let bytes = Msg::new().int(1, nanos).0;
        assert_eq!(
            decode_message(duration, &bytes).unwrap(),
            json!(want),
            "{nanos}"
        );
    }
    assert_eq!(decode_message(duration, &[]).unwrap(), json!("0s"));

    let q = "k8s.io.apimachinery.pkg.api.resource.Quantity";
    assert_eq!(
        decode_message(q, &quantity("1.5Gi").0).unwrap(),
        json!("1.5Gi")
    );
    assert_eq!(decode_message(q, &[]).unwrap(), json!("0"));
    assert!(decode_message(q, &quantity("").0).is_err());

    let ios = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
    assert_eq!(
        decode_message(ios, &int_or_string_int(80).0).unwrap(),
        json!(80)
    );
    assert_eq!(
        decode_message(ios, &int_or_string_int(-3).0).unwrap(),
        json!(-3)
    );
    assert_eq!(
        decode_message(ios, &int_or_string_str("25%").0).unwrap(),
        json!("25%")
    );
    assert_eq!(decode_message(ios, &[]).unwrap(), json!(0));
    let err = decode_message(ios, &Msg::new().int(1, 2).0).unwrap_err();
    assert!(err.to_string().contains("IntOrString type 2"), "{err}");

    let gv = "k8s.io.apimachinery.pkg.apis.meta.v1.GroupVersion";
    assert_eq!(
        decode_message(gv, &Msg::new().str(1, "apps").str(2, "v1").0).unwrap(),
        json!("apps/v1")
    );
    assert_eq!(
        decode_message(gv, &Msg::new().str(1, "").str(2, "v1").0).unwrap(),
        json!("v1")
    );
}

#[test]
fn service_ports_with_int_or_string_target() {
    let port = Msg::new()
        .str(1, "http")
        .str(2, "TCP")
        .int(3, 80)
        .msg(4, int_or_string_str("web"))
        .int(5, 0);
    let spec = Msg::new()
        .msg(1, port)
        .map_str(2, "app", "web")
        .str(3, "")
        .str(4, "ClusterIP");
    let object = Msg::new()
        .msg(1, meta("web", "", &[]))
        .msg(2, spec)
        .msg(3, Msg::new());
    let v = decode(&body("v1", "Service", object)).unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"}],
            "selector": {"app": "web"},
            "type": "ClusterIP"
        })
    );
    assert_eq!(v["status"], json!({}));
}

#[test]
fn raw_extension_and_fields_v1() {
    let revision = Msg::new()
        .msg(1, meta("rev", "", &[]))
        .msg(2, Msg::new().str(1, r#"{"spec":{"template":{"x":1}}}"#))
        .int(3, 4);
    let v = decode(&body("apps/v1", "ControllerRevision", revision)).unwrap();
    assert_eq!(v["data"], json!({"spec": {"template": {"x": 1}}}));
    assert_eq!(v["revision"], json!(4));

    // A RawExtension may carry a protobuf object of its own.
    let inner = body("v1", "ConfigMap", Msg::new().map_str(2, "k", "v"));
    let revision = Msg::new().msg(2, Msg::new().bytes(1, &inner));
    let v = decode(&body("apps/v1", "ControllerRevision", revision)).unwrap();
    assert_eq!(
        v["data"],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}})
    );

    let bad = Msg::new().msg(2, Msg::new().str(1, "{not json"));
    let err = decode(&body("apps/v1", "ControllerRevision", bad)).unwrap_err();
    assert!(
        matches!(&err, ProtobufError::InvalidValue { at, .. } if at == "ControllerRevision.data"),
        "{err}"
    );

    let managed = Msg::new()
        .str(1, "kubectl-create")
        .str(2, "Update")
        .str(3, "v1")
        .msg(4, Msg::new().int(1, 1_704_067_200).int(2, 0))
        .str(6, "FieldsV1")
        .msg(7, Msg::new().str(1, r#"{"f:data":{".":{}}}"#))
        .str(8, "");
    let object = Msg::new().msg(1, meta("cfg", "", &[]).msg(17, managed));
    let v = decode(&body("v1", "ConfigMap", object)).unwrap();
    assert_eq!(
        v["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2024-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}}}
        }])
    );
}

#[test]
fn secret_data_is_base64() {
    let object = Msg::new()
        .msg(1, meta("creds", "", &[]))
        .map_bytes(2, "password", b"s3cr3t")
        .map_str(4, "plain", "text")
        .str(3, "Opaque");
    let v = decode(&body("v1", "Secret", object)).unwrap();
    assert_eq!(v["data"], json!({"password": "czNjcjN0"}));
    assert_eq!(v["stringData"], json!({"plain": "text"}));
    assert_eq!(v["type"], json!("Opaque"));
}

#[test]
fn unknown_fields_are_skipped_and_messages_merge() {
    let object = Msg::new()
        .msg(1, Msg::new().str(1, "cfg"))
        .uint(99, 7)
        .str(100, "future")
        .tag(101, 5)
        .raw(&[1, 2, 3, 4])
        .tag(102, 1)
        .raw(&[0; 8])
        // A second occurrence of metadata merges into the first.
        .msg(1, Msg::new().str(3, "ns"))
        // A repeated scalar occurrence: the last one wins.
        .bool(4, false)
        .bool(4, true);
    let v = decode(&body("v1", "ConfigMap", object)).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "ns"}, "immutable": true})
    );
}

#[test]
fn map_entries_with_missing_parts_use_defaults() {
    let object = Msg::new()
        .msg(2, Msg::new().str(1, "only-key"))
        .msg(2, Msg::new().str(2, "only-value"))
        .map_str(2, "k", "old")
        .map_str(2, "k", "new");
    let v = decode(&body("v1", "ConfigMap", object)).unwrap();
    assert_eq!(
        v["data"],
        json!({"only-key": "", "": "only-value", "k": "new"})
    );
}

#[test]
fn invalid_utf8_becomes_replacement_character() {
    let object = Msg::new().msg(1, Msg::new().bytes(1, b"a\xffb"));
    let v = decode(&body("v1", "Namespace", object)).unwrap();
    assert_eq!(v["metadata"]["name"], json!("a\u{fffd}b"));
}

#[test]
fn rejects_bodies_without_magic() {
    assert_eq!(decode(b""), Err(ProtobufError::MissingMagic));
    assert_eq!(
        decode(br#"{"kind":"ConfigMap"}"#),
        Err(ProtobufError::MissingMagic)
    );
    assert_eq!(decode(b"k8s"), Err(ProtobufError::MissingMagic));
    let mut b = body("v1", "ConfigMap", Msg::new());
    b[3] = b'!';
    assert_eq!(decode(&b), Err(ProtobufError::MissingMagic));
}

#[test]
fn rejects_truncated_and_malformed_encodings() {
    let full = body(
        "v1",
        "ConfigMap",
        Msg::new().msg(1, meta("cfg", "", &[])).map_str(2, "k", "v"),
    );
    // Cutting the body inside typeMeta or raw always fails. (Cuts at a field
    // boundary are valid protobuf: right after typeMeta, or in the trailing
    // empty contentEncoding/contentType.)
    let type_meta_end = MAGIC.len()
        + Msg::new()
            .msg(1, Msg::new().str(1, "v1").str(2, "ConfigMap"))
            .0
            .len();
    let raw_end = full.len() - 4;
    for len in (MAGIC.len()..raw_end).filter(|&l| l != type_meta_end) {
        assert!(
            decode(&full[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
    assert_eq!(
        decode(&full[..type_meta_end]).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap"})
    );
    assert!(decode(&full).is_ok());

    let mut b = MAGIC.to_vec();
    b.extend([0x12, 0x80]); // field 2, length varint cut short
    assert_eq!(
        decode(&b),
        Err(ProtobufError::Malformed {
            at: "runtime.Unknown".into(),
            problem: "truncated varint".into()
        })
    );

    let mut b = MAGIC.to_vec();
    b.extend([0x12, 0x05, b'a']); // 5 bytes announced, 1 present
    let err = decode(&b).unwrap_err();
    assert!(err.to_string().contains("runs past the end"), "{err}");

    let mut b = MAGIC.to_vec();
    b.extend([0x0f]); // field 1, wire type 7
    let err = decode(&b).unwrap_err();
    assert!(err.to_string().contains("wire type 7"), "{err}");

    let mut b = MAGIC.to_vec();
    b.extend([0x00, 0x00]); // field number 0
    assert!(decode(&b)
        .unwrap_err()
        .to_string()
        .contains("field number 0"));

    let mut b = MAGIC.to_vec();
    b.extend([
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ]);
    assert!(decode(&b)
        .unwrap_err()
        .to_string()
        .contains("longer than 10 bytes"));

    // metadata.name sent as a varint instead of a string.
    let object = Msg::new().msg(1, Msg::new().uint(1, 5));
    assert_eq!(
        decode(&body("v1", "ConfigMap", object)),
        Err(ProtobufError::Malformed {
            at: "ConfigMap.metadata.name".into(),
            problem: "wire type 0 where 2 was expected".into()
        })
    );

    // A truncated nested container names where it broke.
    let object = Msg::new().msg(2, Msg::new().msg(2, Msg::new().raw(&[0x0a, 0x09, b'x'])));
    let err = decode(&body("v1", "Pod", object)).unwrap_err();
    assert!(
        matches!(&err, ProtobufError::Malformed { at, .. } if at == "Pod.spec.containers[0]"),
        "{err}"
    );
}

#[test]
fn rejects_unknown_types_and_envelopes() {
    assert_eq!(
        decode(&body("v1", "Gadget", Msg::new())),
        Err(ProtobufError::UnknownKind {
            api_version: "v1".into(),
            kind: "Gadget".into()
        })
    );
    // A nested type is not a kind.
    assert!(matches!(
        decode(&body("v1", "Container", Msg::new())),
        Err(ProtobufError::UnknownKind { .. })
    ));
    // A kind of another group.
    assert!(matches!(
        decode(&body("v1", "Deployment", Msg::new())),
        Err(ProtobufError::UnknownKind { .. })
    ));
    assert_eq!(
        decode(&body("example.com/v1", "Widget", Msg::new())),
        Err(ProtobufError::UnknownApiVersion("example.com/v1".into()))
    );
    assert_eq!(
        decode(&body("", "ConfigMap", Msg::new())),
        Err(ProtobufError::MissingTypeMeta("apiVersion"))
    );
    assert_eq!(
        decode(&body("v1", "", Msg::new())),
        Err(ProtobufError::MissingTypeMeta("kind"))
    );
    assert_eq!(
        decode(MAGIC),
        Err(ProtobufError::MissingTypeMeta("apiVersion"))
    );

    let gzip = Msg::new()
        .msg(1, Msg::new().str(1, "v1").str(2, "ConfigMap"))
        .str(3, "gzip");
    assert_eq!(
        decode(&[MAGIC.as_slice(), &gzip.0].concat()),
        Err(ProtobufError::UnsupportedEnvelope {
            field: "contentEncoding",
            value: "gzip".into()
        })
    );
    let json_ct = Msg::new()
        .msg(1, Msg::new().str(1, "v1").str(2, "ConfigMap"))
        .str(4, "application/json");
    assert!(matches!(
        decode(&[MAGIC.as_slice(), &json_ct.0].concat()),
        Err(ProtobufError::UnsupportedEnvelope {
            field: "contentType",
            ..
        })
    ));
    let proto_ct = Msg::new()
        .msg(1, Msg::new().str(1, "v1").str(2, "ConfigMap"))
        .str(4, CONTENT_TYPE);
    assert_eq!(
        decode(&[MAGIC.as_slice(), &proto_ct.0].concat()).unwrap(),
        json!({"apiVersion": "v1", "kind": "ConfigMap"})
    );
}

#[test]
fn rejects_runaway_nesting() {
    // ControllerRevisions nested through protobuf RawExtensions.
    let mut b = body("v1", "ConfigMap", Msg::new());
    for _ in 0..40 {
        b = body(
            "apps/v1",
            "ControllerRevision",
            Msg::new().msg(2, Msg::new().bytes(1, &b)),
        );
    }
    assert!(matches!(
        decode(&b),
        Err(ProtobufError::TooDeep { max: MAX_DEPTH, .. })
    ));
}

#[test]
fn real_kubectl_bodies_decode_to_kubectls_own_json() {
    macro_rules! fixtures {
        ($($name:literal),* $(,)?) => {
            [$((
                $name,
                include_bytes!(concat!("testdata/kubectl-create-", $name, ".pb")).as_slice(),
                include_str!(concat!("testdata/kubectl-create-", $name, ".json")),
            )),*]
        };
    }
    for (name, body, want) in fixtures!(
        "configmap",
        "cronjob",
        "deployment",
        "ingress",
        "job",
        "namespace",
        "pdb",
        "priorityclass",
        "resourcequota",
        "secret",
        "selfsubjectreview",
        "service",
        "serviceaccount",
        "token",
    ) {
        let want: Value = serde_json::from_str(want).unwrap();
        let got = decode(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }
}
