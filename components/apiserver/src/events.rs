//! Events are stored once, in core/v1 form, and served as both core/v1 and events.k8s.io/v1:
//! kube-rs's `Recorder` writes the latter, `kubectl describe` reads the former.

use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field) pairs that differ only in name.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(object: Value, to_core: bool, api_version: &str) -> Value {
    let Value::Object(map) = object else {
        return object;
    };
    let mut out = Map::new();
    for (k, v) in map {
        let key = RENAMED
            .iter()
            .find_map(|(v1, core)| {
                if to_core && k == *v1 {
                    Some(*core)
                } else if !to_core && k == *core {
                    Some(*v1)
                } else {
                    None
                }
            })
            .map(str::to_string)
            .unwrap_or(k);
        out.insert(key, v);
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

/// events.k8s.io/v1 → core/v1 (storage form).
pub fn to_core(object: Value) -> Value {
    rename(object, true, "v1")
}

/// core/v1 (storage form) → events.k8s.io/v1.
pub fn from_core(object: Value) -> Value {
    rename(object, false, "events.k8s.io/v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_the_two_apis() {
        let v1 = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e"},
            "regarding":{"kind":"Pod","name":"p"},"note":"pulled","reason":"Pulled",
            "reportingController":"kubelet","reportingInstance":"n1","type":"Normal",
            "series":{"count":2,"lastObservedTime":"2024-01-01T00:00:00.000000Z"}});
        let core = to_core(v1.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "pulled");
        assert_eq!(core["reportingComponent"], "kubelet");
        assert_eq!(core["series"]["count"], 2);
        assert_eq!(from_core(core), v1);
    }
}
