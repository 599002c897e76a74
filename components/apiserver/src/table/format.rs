//! Readers over JSON objects and the formatting helpers upstream's printers share.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::human_duration;

/// The string at `v`, or "" (Go's zero value) when absent or not a string.
pub(super) fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The integer at `v`, or 0 when absent.
pub(super) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

pub(super) fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

pub(super) fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

/// Entries of a map or list field.
pub(super) fn len(v: &Value) -> i64 {
    let n = match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Upstream's translateTimestampSince: the age of a timestamp, "<unknown>" without one.
pub(super) fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "<unknown>".to_string(), |t| human_duration(now - t))
}

pub(super) fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>" } else { s }.to_string()
}

pub(super) fn or_unset(v: &Value) -> String {
    v.as_str().unwrap_or("<unset>").to_string()
}

/// The status of the first condition of `kind`, as Go's condition helpers read it.
pub(super) fn condition<'a>(conditions: &'a Value, kind: &str) -> Option<&'a str> {
    list(conditions)
        .iter()
        .find(|c| text(&c["type"]) == kind)
        .map(|c| text(&c["status"]))
}

/// labels.FormatLabels: sorted `k=v` pairs, "<none>" when empty.
pub(super) fn labels(map: &Value) -> String {
    let pairs: BTreeMap<&str, &str> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), text(v)))
        .collect();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// labels.Selector.String() of a metav1.LabelSelector: requirements sorted by key, "" for both
/// the nil (matches nothing) and the empty (matches everything) selector; Err when invalid.
pub(super) fn selector(selector: &Value) -> Result<String, ()> {
    let mut requirements: Vec<(&str, String)> = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), format!("{k}={}", text(v))))
        .collect();
    for expr in list(&selector["matchExpressions"]) {
        let key = text(&expr["key"]);
        let mut values: Vec<&str> = list(&expr["values"]).iter().map(text).collect();
        values.sort_unstable();
        let rendered = match (text(&expr["operator"]), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return Err(()),
        };
        requirements.push((key, rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    Ok(requirements
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Vec<_>>()
        .join(","))
}

/// metav1.FormatLabelSelector: the selector, "<none>" when it selects by nothing.
pub(super) fn label_selector(v: &Value) -> String {
    match selector(v) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// The names and the images of a pod template's containers, comma-separated.
pub(super) fn containers(template: &Value) -> [Value; 2] {
    let containers = list(&template["spec"]["containers"]);
    let join = |field: &str| {
        containers
            .iter()
            .map(|c| text(&c[field]))
            .collect::<Vec<_>>()
            .join(",")
    };
    [join("name").into(), join("image").into()]
}

/// helper.GetAccessModesAsString: the short names, in upstream's fixed order.
pub(super) fn access_modes(modes: &Value) -> String {
    let modes: Vec<&str> = list(modes).iter().map(text).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .into_iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a PV or PVC: the beta annotation wins over the spec field.
pub(super) fn storage_class(obj: &Value) -> String {
    let annotation = &obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"];
    text(if annotation.is_string() {
        annotation
    } else {
        &obj["spec"]["storageClassName"]
    })
    .to_string()
}
