//! The `fieldValidation` query parameter: what a write does with fields the schema doesn't know
//! and with keys given twice. `Strict` fails with 400, `Warn` (the default) answers with `Warning`
//! headers, `Ignore` drops them silently.

use std::collections::{HashMap, HashSet};
use std::fmt;

use hakube_apimachinery::status::{self, ApiError};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::openapi;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(query: &HashMap<String, String>) -> Result<FieldValidation, ApiError> {
        match query.get("fieldValidation").map(String::as_str) {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(status::bad_request(format!(
                "fieldValidation parameter unsupported value: {other:?}, must be one of Ignore, Warn or Strict"
            ))),
        }
    }
}

/// Checks a request's object (`object`, decoded from the JSON `raw` body when there is one)
/// against the schema of `api_version`/`kind`. Returns the warnings to send; in Strict mode any
/// finding is a 400 naming every field.
pub fn check(
    mode: FieldValidation,
    api_version: &str,
    kind: &str,
    object: &Value,
    raw: Option<&[u8]>,
) -> Result<Vec<String>, ApiError> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let mut findings: Vec<String> = raw
        .map(duplicate_fields)
        .unwrap_or_default()
        .into_iter()
        .map(|f| format!("duplicate field \"{f}\""))
        .collect();
    if let Some(schema) = openapi::schema_for(api_version, kind) {
        findings.extend(
            schema
                .unknown_fields(object)
                .into_iter()
                .map(|f| format!("unknown field \"{f}\"")),
        );
    }
    if mode == FieldValidation::Strict && !findings.is_empty() {
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        return Err(status::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            findings.join(", ")
        )));
    }
    Ok(findings)
}

/// Paths of object keys that appear more than once in a JSON document (the last one wins in the
/// decoded value, so this has to look at the bytes).
pub fn duplicate_fields(raw: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(raw);
    let walk = Walk {
        path: String::new(),
        out: &mut out,
    };
    // A malformed document is reported by the real decoder; here it just ends the walk.
    let _ = walk.deserialize(&mut de);
    out
}

struct Walk<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                self.out.push(path.clone());
            }
            map.next_value_seed(Walk {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Walk {
                path: format!("{}[{i}]", self.path),
                out: &mut *self.out,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

tokio::task_local! {
    /// Warnings collected while a request is handled, sent as `Warning` headers (upstream keeps a
    /// warning recorder in the request context the same way).
    static WARNINGS: std::cell::RefCell<Vec<String>>;
}

/// Runs a request handler, returning its result and the warnings it recorded.
pub async fn collect_warnings<F: std::future::Future>(handler: F) -> (F::Output, Vec<String>) {
    WARNINGS
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let out = handler.await;
            let warnings = WARNINGS
                .try_with(|w| std::mem::take(&mut *w.borrow_mut()))
                .unwrap_or_default();
            (out, warnings)
        })
        .await
}

/// Records a warning for the current request (dropped outside [`collect_warnings`]).
pub fn warn(text: String) {
    let _ = WARNINGS.try_with(|w| w.borrow_mut().push(text));
}

/// `Warning` header values (RFC 7234 form with code 299, as upstream sends them).
pub fn warning_header(text: &str) -> String {
    format!(
        "299 - \"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn duplicates_are_found_at_any_depth() {
        let raw = br#"{"a":1,"b":{"c":[{"d":1,"d":2}],"c":3},"a":2}"#;
        assert_eq!(duplicate_fields(raw), vec!["b.c[0].d", "b.c", "a"]);
        assert!(duplicate_fields(br#"{"a":{"a":1}}"#).is_empty());
    }

    #[test]
    fn modes() {
        let object =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"datta":{}});
        let raw = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","name":"y"},"datta":{}}"#;
        assert!(check(
            FieldValidation::Ignore,
            "v1",
            "ConfigMap",
            &object,
            Some(raw)
        )
        .unwrap()
        .is_empty());
        assert_eq!(
            check(FieldValidation::Warn, "v1", "ConfigMap", &object, Some(raw)).unwrap(),
            vec![
                "duplicate field \"metadata.name\"",
                "unknown field \"datta\""
            ]
        );
        let err = check(
            FieldValidation::Strict,
            "v1",
            "ConfigMap",
            &object,
            Some(raw),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"metadata.name\", unknown field \"datta\""
        );
        let q = HashMap::from([("fieldValidation".to_string(), "Bogus".to_string())]);
        assert_eq!(FieldValidation::from_query(&q).unwrap_err().code, 400);
    }

    #[test]
    fn warning_headers_quote_their_text() {
        assert_eq!(
            warning_header("unknown field \"spec.x\""),
            r#"299 - "unknown field \"spec.x\"""#
        );
    }
}
