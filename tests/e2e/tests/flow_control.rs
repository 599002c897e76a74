//! Max-in-flight flow control (429 with Retry-After beyond `--max-requests-inflight`, watches not
//! counted, the dropped-requests metric) and periodic etcd compaction
//! (`--etcd-compaction-interval`).

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hakube_e2e::{eventually, ControlPlane};
use serde_json::{json, Value};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn create_configmap(cp: &ControlPlane, name: &str, data: &str) {
    let body =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name},"data":{"d":data}});
    let (code, resp) = cp.curl(
        "POST",
        CONFIGMAPS,
        "application/json",
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(code, 201, "{resp}");
}

/// A GET as the admin through `curl -i`: (status code, raw headers, body).
fn get_with_headers(cp: &ControlPlane, path: &str) -> (u16, String, Value) {
    let out = Command::new("curl")
        .args(["-s", "-i", "--http1.1", "--cacert", &cp.path("ca.crt")])
        .args([
            "--cert",
            &cp.path("admin.crt"),
            "--key",
            &cp.path("admin.key"),
        ])
        .arg(format!("{}{path}", cp.url))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (code, head.to_string(), body)
}

/// One sample of `/metrics` (which the limits never count), 0 when absent.
fn metric(cp: &ControlPlane, series: &str) -> f64 {
    let (_, text) = cp.curl("GET", "/metrics", "text/plain", None);
    text.as_str()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn read_only_requests_beyond_the_limit_get_429_while_watches_do_not_count() {
    let cp = ControlPlane::start_with(&["--max-requests-inflight=1"]);
    // Lists of a few large objects keep each request busy long enough to overlap.
    let big = "x".repeat(512 * 1024);
    for i in 0..3 {
        create_configmap(&cp, &format!("big-{i}"), &big);
    }
    let mut watcher = Command::new("curl")
        .args(["-sN", "--http1.1", "--max-time", "120"])
        .args(["--cacert", &cp.path("ca.crt")])
        .args([
            "--cert",
            &cp.path("admin.crt"),
            "--key",
            &cp.path("admin.key"),
        ])
        .arg(format!("{}{CONFIGMAPS}?watch=true", cp.url))
        .stdout(Stdio::null())
        .spawn()
        .expect("curl is installed");
    eventually("the watch is open", Duration::from_secs(15), || {
        cp.open_watches("configmaps") == 1
    });
    // The open watch holds no slot: the single read-only slot is free.
    assert_eq!(
        metric(
            &cp,
            "apiserver_current_inflight_requests{request_kind=\"readOnly\"}"
        ),
        0.0
    );
    let (code, _, list) = get_with_headers(&cp, CONFIGMAPS);
    assert_eq!(code, 200, "{list}");

    let mut rejected = Vec::new();
    for _ in 0..10 {
        let results: Vec<(u16, String, Value)> = std::thread::scope(|s| {
            let burst: Vec<_> = (0..30)
                .map(|_| s.spawn(|| get_with_headers(&cp, CONFIGMAPS)))
                .collect();
            burst
                .into_iter()
                .map(|h| h.join().expect("a curl thread"))
                .collect()
        });
        for (code, head, body) in results {
            match code {
                200 => {}
                429 => rejected.push((head, body)),
                other => panic!("unexpected {other}: {head}\n{body}"),
            }
        }
        if !rejected.is_empty() {
            break;
        }
    }
    assert!(
        !rejected.is_empty(),
        "no request was rejected:\n{}",
        cp.log()
    );
    for (head, body) in &rejected {
        assert_eq!(
            body,
            &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429})
        );
        assert!(
            head.lines()
                .any(|l| l.eq_ignore_ascii_case("retry-after: 1")),
            "{head}"
        );
    }
    let dropped = metric(
        &cp,
        "apiserver_dropped_requests_total{request_kind=\"readOnly\"}",
    );
    assert!(dropped >= rejected.len() as f64, "dropped {dropped}");
    // The watch was never refused nor ended, and health checks are not limited.
    assert_eq!(cp.open_watches("configmaps"), 1);
    assert_eq!(cp.curl("GET", "/readyz", "text/plain", None).0, 200);
    let _ = watcher.kill();
    let _ = watcher.wait();
}

/// etcd's answer to a read of everything at `revision`: Err with its message when refused.
fn etcd_read_at(cp: &ControlPlane, revision: i64) -> Result<(), String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &cp.etcd.client_url])
        .args(["get", "/", "--prefix", "--keys-only"])
        .arg(format!("--rev={revision}"))
        .output()
        .expect("etcdctl runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The revision the API servers last agreed to compact to (`<prefix>/compact_rev_key`).
fn agreed_revision(cp: &ControlPlane) -> i64 {
    let got = cp.etcd.ctl(&["get", "/registry/compact_rev_key"]);
    got["kvs"][0]["value"]
        .as_str()
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn etcd_is_compacted_every_interval_to_the_previous_revision() {
    let cp = ControlPlane::start_with(&["--etcd-compaction-interval=2s"]);
    for i in 0..3 {
        create_configmap(&cp, &format!("c{i}"), "v");
    }
    // The first tick records a revision; the second compacts to it.
    eventually("etcd is compacted", Duration::from_secs(20), || {
        agreed_revision(&cp) > 0
    });
    let first = agreed_revision(&cp);
    eventually(
        "history before the compaction is gone",
        Duration::from_secs(10),
        || etcd_read_at(&cp, 1).is_err_and(|e| e.contains("required revision has been compacted")),
    );
    // A watch from before the compaction is told so in the stream.
    let (events, _) = cp.stream(
        &format!("{CONFIGMAPS}?watch=true&resourceVersion=1&timeoutSeconds=2"),
        5,
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");

    // Later ticks keep compacting to newer revisions.
    create_configmap(&cp, "later", "v");
    eventually("the next compaction", Duration::from_secs(15), || {
        agreed_revision(&cp) > first
    });
    // The key is bumped just before the compaction it announces.
    eventually(
        "a compaction past the first",
        Duration::from_secs(5),
        || etcd_read_at(&cp, first).is_err(),
    );
    assert!(cp.log().contains("compacted etcd"), "{}", cp.log());
}
