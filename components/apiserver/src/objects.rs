//! Small accessors over JSON objects: metadata fields, timestamps, names.

use rand::Rng;
use serde_json::{Map, Value};

pub fn meta(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

/// `metadata`, created when missing or not an object.
pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let map = object
        .as_object_mut()
        .expect("object was just made an object");
    let entry = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    meta(object)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub fn name(object: &Value) -> Option<&str> {
    meta_str(object, "name")
}

pub fn namespace(object: &Value) -> Option<&str> {
    meta_str(object, "namespace")
}

pub fn uid(object: &Value) -> Option<&str> {
    meta_str(object, "uid")
}

pub fn resource_version(object: &Value) -> Option<&str> {
    meta_str(object, "resourceVersion")
}

pub fn labels(object: &Value) -> Option<&Map<String, Value>> {
    meta(object)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
}

pub fn finalizers(object: &Value) -> Vec<String> {
    meta(object)
        .and_then(|m| m.get("finalizers"))
        .map(|v| strings(Some(v)))
        .unwrap_or_default()
}

/// The strings of a JSON array (anything else is empty).
pub fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(object: &Value) -> bool {
    meta(object).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|v| !v.is_null()))
}

/// A string at a dotted path, e.g. `spec.nodeName`.
pub fn str_at<'a>(object: &'a Value, path: &str) -> Option<&'a str> {
    at(object, path).and_then(Value::as_str)
}

pub fn at<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(object, |v, segment| v.get(segment))
}

/// Sets a value at a dotted path, creating objects on the way.
pub fn set_at(object: &mut Value, path: &str, value: Value) {
    let mut current = object;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let map = current.as_object_mut().expect("made an object above");
        if segments.peek().is_none() {
            map.insert(segment.to_string(), value);
            return;
        }
        current = map
            .entry(segment)
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Sets a value only where nothing (or null) is.
pub fn default_at(object: &mut Value, path: &str, value: Value) {
    if at(object, path).is_none_or(Value::is_null) {
        set_at(object, path, value);
    }
}

/// RFC 3339 with seconds, as metav1.Time serializes.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Now plus `seconds`, saturating at the latest representable time instead of overflowing.
pub fn rfc3339_after(seconds: i64) -> String {
    let now = chrono::Utc::now();
    chrono::TimeDelta::try_seconds(seconds)
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// RFC 3339 with microseconds, as metav1.MicroTime serializes.
pub fn now_micro() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// A `generateName` suffix from upstream's alphabet (no vowels, no confusable digits).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Everything outside `metadata` and `status`: a change here bumps `generation`.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Value {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
            map.remove("apiVersion");
            map.remove("kind");
        }
        v
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_and_write_nested_fields() {
        let mut v = json!({"spec":{"nodeName":"n1"}});
        assert_eq!(str_at(&v, "spec.nodeName"), Some("n1"));
        set_at(&mut v, "status.phase", json!("Pending"));
        assert_eq!(v["status"]["phase"], "Pending");
        default_at(&mut v, "status.phase", json!("Running"));
        assert_eq!(v["status"]["phase"], "Pending");
    }

    #[test]
    fn generation_changes_only_outside_metadata_and_status() {
        let a = json!({"metadata":{"labels":{"a":"1"}},"spec":{"x":1},"status":{"y":1}});
        let b = json!({"metadata":{"labels":{"a":"2"}},"spec":{"x":1},"status":{"y":2}});
        assert!(!spec_changed(&a, &b));
        let c = json!({"metadata":{},"spec":{"x":2}});
        assert!(spec_changed(&a, &c));
    }

    #[test]
    fn suffixes_use_the_upstream_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn huge_grace_periods_do_not_overflow() {
        assert!(!rfc3339_after(i64::MAX).is_empty());
        assert!(!rfc3339_after(100_000_000_000_000).is_empty());
    }

    #[test]
    fn timestamps_have_upstream_precision() {
        assert_eq!(now_rfc3339().len(), "2024-01-01T00:00:00Z".len());
        assert_eq!(now_micro().len(), "2024-01-01T00:00:00.000000Z".len());
    }
}
