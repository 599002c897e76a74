//! JSON merge patch (RFC 7396) and JSON patch (RFC 6902) on `serde_json::Value`.

use serde_json::{Map, Value};

/// Why a JSON patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not a JSON array.
    #[error("json patch must be a JSON array of operations, not {0}")]
    NotAnArray(&'static str),
    /// An operation is missing a member or names an unknown op.
    #[error("json patch operation {index} is malformed: {reason}")]
    Malformed { index: usize, reason: String },
    /// A well-formed operation could not be applied to the document.
    #[error("json patch operation {index} ({op} {path:?}) failed: {reason}")]
    Failed {
        index: usize,
        op: String,
        path: String,
        reason: String,
    },
    /// A `test` operation found a different value.
    #[error("json patch operation {index} (test {path:?}) failed: the value at the path does not equal the expected value")]
    TestFailed { index: usize, path: String },
}

/// Applies an RFC 7396 merge patch in place: `null` deletes a member,
/// objects merge recursively, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (k, v) in patch {
            if v.is_null() {
                // shift_remove keeps the remaining members in order.
                map.shift_remove(k);
            } else {
                merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// "a string", "an object", ...: how error messages name a JSON value's type.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Splits a JSON pointer into unescaped reference tokens.
fn parse_pointer(p: &str) -> Result<Vec<String>, String> {
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = p.strip_prefix('/') else {
        return Err("invalid JSON pointer: must be empty or start with '/'".to_string());
    };
    rest.split('/')
        .map(|tok| {
            let mut out = String::with_capacity(tok.len());
            let mut chars = tok.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    other => {
                        let got: String = other.into_iter().collect();
                        return Err(format!(
                            "invalid JSON pointer: \"~{got}\" is not a valid escape (use ~0 for '~' and ~1 for '/')"
                        ));
                    }
                }
            }
            Ok(out)
        })
        .collect()
}

/// Parses an array index; `-` (one past the end) only when `allow_end`.
fn array_index(tok: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if tok == "-" {
        return if allow_end {
            Ok(len)
        } else {
            Err("'-' (end of array) is only valid for add".to_string())
        };
    }
    let valid = !tok.is_empty()
        && tok.bytes().all(|b| b.is_ascii_digit())
        && (tok == "0" || !tok.starts_with('0'));
    let idx: usize = match tok.parse() {
        Ok(i) if valid => i,
        _ => return Err(format!("{tok:?} is not a valid array index")),
    };
    let in_bounds = if allow_end { idx <= len } else { idx < len };
    if !in_bounds {
        return Err(format!("array index {idx} is out of bounds (length {len})"));
    }
    Ok(idx)
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |cur, tok| match cur {
        Value::Object(m) => m.get(tok),
        Value::Array(a) => array_index(tok, a.len(), false).ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens.iter().try_fold(doc, |cur, tok| match cur {
        Value::Object(m) => m.get_mut(tok),
        Value::Array(a) => {
            let i = array_index(tok, a.len(), false).ok()?;
            a.get_mut(i)
        }
        _ => None,
    })
}

fn add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent_path)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent = get_mut(doc, parent_path).ok_or("the parent of the path does not exist")?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true)?;
            a.insert(i, value);
            Ok(())
        }
        other => Err(format!("cannot add a member to {}", type_name(other))),
    }
}

fn remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let Some((last, parent_path)) = tokens.split_last() else {
        return Err("cannot remove the whole document".to_string());
    };
    match get_mut(doc, parent_path) {
        Some(Value::Object(m)) => m
            .shift_remove(last)
            .ok_or_else(|| "the path does not exist".to_string()),
        Some(Value::Array(a)) => {
            let i = array_index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err("the path does not exist".to_string()),
    }
}

/// JSON equality with numbers compared by value (1 equals 1.0), as RFC 6902
/// requires for `test`.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                i == j
            } else if let (Some(i), Some(j)) = (x.as_u64(), y.as_u64()) {
                i == j
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Applies an RFC 6902 JSON patch, returning the patched copy; `target` is
/// never modified, so a failing patch leaves no partial changes.
///
/// Kubernetes quirk: `test` on a path that does not exist passes when the
/// expected value is `null`.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = ops else {
        return Err(PatchError::NotAnArray(type_name(ops)));
    };
    let mut doc = target.clone();
    for (index, op) in ops.iter().enumerate() {
        let malformed = |reason: String| PatchError::Malformed { index, reason };
        let Value::Object(op) = op else {
            return Err(malformed(format!(
                "expected an object, got {}",
                type_name(op)
            )));
        };
        let name = match op.get("op") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(malformed("\"op\" must be a string".to_string())),
            None => return Err(malformed("missing \"op\"".to_string())),
        };
        let path = match op.get("path") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(malformed("\"path\" must be a string".to_string())),
            None => return Err(malformed(format!("{name:?} operation is missing \"path\""))),
        };
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| malformed(format!("{name:?} operation is missing \"value\"")))
        };
        let from = || match op.get("from") {
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(malformed("\"from\" must be a string".to_string())),
            None => Err(malformed(format!("{name:?} operation is missing \"from\""))),
        };
        let failed = |reason: String| PatchError::Failed {
            index,
            op: name.to_string(),
            path: path.to_string(),
            reason,
        };
        let tokens = parse_pointer(path).map_err(failed)?;
        match name {
            "add" => {
                let v = value()?;
                add(&mut doc, &tokens, v).map_err(failed)?;
            }
            "remove" => {
                remove(&mut doc, &tokens).map_err(failed)?;
            }
            "replace" => {
                let v = value()?;
                let slot = get_mut(&mut doc, &tokens)
                    .ok_or_else(|| failed("the path does not exist".to_string()))?;
                *slot = v;
            }
            "move" => {
                let from = from()?;
                let from_tokens =
                    parse_pointer(from).map_err(|e| failed(format!("from {from:?}: {e}")))?;
                if from_tokens == tokens {
                    // Still require the source to exist, as RFC 6902 demands.
                    if get(&doc, &from_tokens).is_none() {
                        return Err(failed(format!("from {from:?}: the path does not exist")));
                    }
                    continue;
                }
                if tokens.starts_with(&from_tokens) {
                    return Err(failed(format!(
                        "cannot move {from:?} into one of its own children"
                    )));
                }
                let v = remove(&mut doc, &from_tokens)
                    .map_err(|e| failed(format!("from {from:?}: {e}")))?;
                add(&mut doc, &tokens, v).map_err(failed)?;
            }
            "copy" => {
                let from = from()?;
                let from_tokens =
                    parse_pointer(from).map_err(|e| failed(format!("from {from:?}: {e}")))?;
                let v = get(&doc, &from_tokens)
                    .cloned()
                    .ok_or_else(|| failed(format!("from {from:?}: the path does not exist")))?;
                add(&mut doc, &tokens, v).map_err(failed)?;
            }
            "test" => {
                let want = value()?;
                let ok = match get(&doc, &tokens) {
                    Some(have) => json_equal(have, &want),
                    None if want.is_null() => true,
                    None => return Err(failed("the path does not exist".to_string())),
                };
                if !ok {
                    return Err(PatchError::TestFailed {
                        index,
                        path: path.to_string(),
                    });
                }
            }
            other => {
                return Err(malformed(format!(
                    "unknown operation {other:?}; expected one of add, remove, replace, move, copy, test"
                )))
            }
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mp(target: Value, patch: Value) -> Value {
        let mut t = target;
        merge_patch(&mut t, &patch);
        t
    }

    #[test]
    fn merge_patch_rfc7396_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (t, p, want) in cases {
            assert_eq!(mp(t.clone(), p.clone()), want, "target {t} patch {p}");
        }
    }

    #[test]
    fn merge_patch_keeps_member_order() {
        let out = mp(json!({"a":1,"b":2,"c":3}), json!({"a":null,"d":4}));
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"b":2,"c":3,"d":4}"#
        );
    }

    fn jp(target: Value, ops: Value) -> Result<Value, PatchError> {
        json_patch(&target, &ops)
    }

    #[test]
    fn add_ops() {
        assert_eq!(
            jp(json!({"a":1}), json!([{"op":"add","path":"/b","value":2}])).unwrap(),
            json!({"a":1,"b":2})
        );
        assert_eq!(
            jp(
                json!({"a":[1,2]}),
                json!([{"op":"add","path":"/a/1","value":9}])
            )
            .unwrap(),
            json!({"a":[1,9,2]})
        );
        assert_eq!(
            jp(
                json!({"a":[1]}),
                json!([{"op":"add","path":"/a/-","value":2}])
            )
            .unwrap(),
            json!({"a":[1,2]})
        );
        assert_eq!(
            jp(
                json!({"a":[1]}),
                json!([{"op":"add","path":"/a/1","value":2}])
            )
            .unwrap(),
            json!({"a":[1,2]})
        );
        assert_eq!(
            jp(json!({"a":1}), json!([{"op":"add","path":"","value":[1]}])).unwrap(),
            json!([1])
        );
        assert_eq!(
            jp(
                json!({"a":1}),
                json!([{"op":"add","path":"/a","value":null}])
            )
            .unwrap(),
            json!({"a":null})
        );
        assert_eq!(
            jp(json!({}), json!([{"op":"add","path":"/","value":1}])).unwrap(),
            json!({"":1})
        );
    }

    #[test]
    fn pointer_escapes() {
        let out = jp(
            json!({}),
            json!([
                {"op":"add","path":"/a~1b","value":1},
                {"op":"add","path":"/c~0d","value":2}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a/b":1,"c~d":2}));
        let out = jp(
            json!({"metadata":{"annotations":{"example.com/x":"1"}}}),
            json!([{"op":"remove","path":"/metadata/annotations/example.com~1x"}]),
        )
        .unwrap();
        assert_eq!(out, json!({"metadata":{"annotations":{}}}));
        let err = jp(json!({}), json!([{"op":"add","path":"/a~2","value":1}])).unwrap_err();
        assert!(
            err.to_string().contains("\"~2\" is not a valid escape"),
            "{err}"
        );
        let err = jp(json!({}), json!([{"op":"add","path":"a","value":1}])).unwrap_err();
        assert!(
            err.to_string().contains("must be empty or start with '/'"),
            "{err}"
        );
    }

    #[test]
    fn remove_replace() {
        assert_eq!(
            jp(json!({"a":1,"b":2}), json!([{"op":"remove","path":"/a"}])).unwrap(),
            json!({"b":2})
        );
        assert_eq!(
            jp(json!([1, 2, 3]), json!([{"op":"remove","path":"/1"}])).unwrap(),
            json!([1, 3])
        );
        assert_eq!(
            jp(
                json!({"a":1}),
                json!([{"op":"replace","path":"/a","value":{"x":1}}])
            )
            .unwrap(),
            json!({"a":{"x":1}})
        );
        assert_eq!(
            jp(
                json!({"a":1}),
                json!([{"op":"replace","path":"","value":2}])
            )
            .unwrap(),
            json!(2)
        );
        assert_eq!(
            jp(
                json!([1, 2]),
                json!([{"op":"replace","path":"/1","value":5}])
            )
            .unwrap(),
            json!([1, 5])
        );
    }

    #[test]
    fn move_copy() {
        assert_eq!(
            jp(
                json!({"a":{"b":1},"c":[]}),
                json!([{"op":"move","from":"/a/b","path":"/c/-"}])
            )
            .unwrap(),
            json!({"a":{},"c":[1]})
        );
        assert_eq!(
            jp(
                json!([1, 2, 3]),
                json!([{"op":"move","from":"/0","path":"/2"}])
            )
            .unwrap(),
            json!([2, 3, 1])
        );
        assert_eq!(
            jp(
                json!({"a":1}),
                json!([{"op":"move","from":"/a","path":"/a"}])
            )
            .unwrap(),
            json!({"a":1})
        );
        assert_eq!(
            jp(
                json!({"a":{"b":1}}),
                json!([{"op":"copy","from":"/a","path":"/c"}])
            )
            .unwrap(),
            json!({"a":{"b":1},"c":{"b":1}})
        );
        let err = jp(
            json!({"a":{"b":1}}),
            json!([{"op":"move","from":"/a","path":"/a/b/c"}]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("into one of its own children"),
            "{err}"
        );
        let err = jp(json!({}), json!([{"op":"copy","from":"/x","path":"/y"}])).unwrap_err();
        assert!(
            err.to_string()
                .contains("from \"/x\": the path does not exist"),
            "{err}"
        );
        let err = jp(json!({}), json!([{"op":"move","from":"/x","path":"/x"}])).unwrap_err();
        assert!(matches!(err, PatchError::Failed { .. }));
    }

    #[test]
    fn test_op() {
        let doc = json!({"a":{"b":[1,"x",{"c":1.0}]},"n":1});
        assert!(jp(
            doc.clone(),
            json!([{"op":"test","path":"/a/b","value":[1,"x",{"c":1}]}])
        )
        .is_ok());
        assert!(jp(doc.clone(), json!([{"op":"test","path":"/n","value":1.0}])).is_ok());
        let err = jp(doc.clone(), json!([{"op":"test","path":"/n","value":2}])).unwrap_err();
        assert_eq!(
            err,
            PatchError::TestFailed {
                index: 0,
                path: "/n".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "json patch operation 0 (test \"/n\") failed: the value at the path does not equal the expected value"
        );
        // Kubernetes quirk: missing path tests equal to null.
        assert!(jp(
            doc.clone(),
            json!([{"op":"test","path":"/metadata/finalizers","value":null}])
        )
        .is_ok());
        let err = jp(doc, json!([{"op":"test","path":"/missing","value":1}])).unwrap_err();
        assert!(err.to_string().contains("the path does not exist"));
    }

    #[test]
    fn bounds_and_missing_paths() {
        let cases = [
            (
                json!({"a":[1]}),
                json!([{"op":"add","path":"/a/2","value":0}]),
                "array index 2 is out of bounds (length 1)",
            ),
            (
                json!({"a":[1]}),
                json!([{"op":"remove","path":"/a/1"}]),
                "array index 1 is out of bounds (length 1)",
            ),
            (
                json!({"a":[]}),
                json!([{"op":"remove","path":"/a/0"}]),
                "array index 0 is out of bounds (length 0)",
            ),
            (
                json!({"a":[1]}),
                json!([{"op":"remove","path":"/a/-"}]),
                "'-' (end of array) is only valid for add",
            ),
            (
                json!({"a":[1]}),
                json!([{"op":"add","path":"/a/01","value":0}]),
                "\"01\" is not a valid array index",
            ),
            (
                json!({"a":[1]}),
                json!([{"op":"add","path":"/a/x","value":0}]),
                "\"x\" is not a valid array index",
            ),
            (
                json!({"a":1}),
                json!([{"op":"add","path":"/a/b","value":0}]),
                "cannot add a member to a number",
            ),
            (
                json!({}),
                json!([{"op":"add","path":"/a/b","value":0}]),
                "the parent of the path does not exist",
            ),
            (
                json!({}),
                json!([{"op":"remove","path":"/a"}]),
                "the path does not exist",
            ),
            (
                json!({}),
                json!([{"op":"remove","path":""}]),
                "cannot remove the whole document",
            ),
            (
                json!({}),
                json!([{"op":"replace","path":"/a","value":1}]),
                "the path does not exist",
            ),
            (
                json!({"a":[1]}),
                json!([{"op":"replace","path":"/a/1","value":1}]),
                "the path does not exist",
            ),
        ];
        for (doc, ops, want) in cases {
            let err = jp(doc, ops.clone()).unwrap_err();
            let PatchError::Failed { index, reason, .. } = &err else {
                panic!("{ops}: {err:?}");
            };
            assert_eq!(*index, 0);
            assert_eq!(reason, want, "{ops}");
        }
    }

    #[test]
    fn error_names_index_and_path() {
        let err = jp(
            json!({"spec":{}}),
            json!([{"op":"add","path":"/spec/a","value":1},{"op":"remove","path":"/spec/x"}]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "json patch operation 1 (remove \"/spec/x\") failed: the path does not exist"
        );
    }

    #[test]
    fn atomic_on_failure() {
        let doc = json!({"a":1});
        let before = doc.clone();
        let res = json_patch(
            &doc,
            &json!([{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":5}]),
        );
        assert!(res.is_err());
        assert_eq!(doc, before);
    }

    #[test]
    fn malformed_ops() {
        let err = jp(json!({}), json!({"op":"add"})).unwrap_err();
        assert_eq!(err, PatchError::NotAnArray("an object"));
        assert_eq!(
            err.to_string(),
            "json patch must be a JSON array of operations, not an object"
        );
        let cases = [
            (json!([1]), "expected an object, got a number"),
            (json!([{"path":"/a"}]), "missing \"op\""),
            (json!([{"op":1,"path":"/a"}]), "\"op\" must be a string"),
            (json!([{"op":"add","value":1}]), "\"add\" operation is missing \"path\""),
            (json!([{"op":"add","path":5,"value":1}]), "\"path\" must be a string"),
            (json!([{"op":"add","path":"/a"}]), "\"add\" operation is missing \"value\""),
            (json!([{"op":"replace","path":"/a"}]), "\"replace\" operation is missing \"value\""),
            (json!([{"op":"test","path":"/a"}]), "\"test\" operation is missing \"value\""),
            (json!([{"op":"move","path":"/a"}]), "\"move\" operation is missing \"from\""),
            (json!([{"op":"copy","path":"/a","from":1}]), "\"from\" must be a string"),
            (json!([{"op":"frob","path":"/a"}]), "unknown operation \"frob\"; expected one of add, remove, replace, move, copy, test"),
        ];
        for (ops, want) in cases {
            let err = jp(json!({"a":1}), ops.clone()).unwrap_err();
            assert_eq!(
                err,
                PatchError::Malformed {
                    index: 0,
                    reason: want.to_string()
                },
                "{ops}"
            );
        }
        assert_eq!(jp(json!({"a":1}), json!([])).unwrap(), json!({"a":1}));
    }
}
