//! Strategic merge patch (`application/strategic-merge-patch+json`) on
//! `serde_json::Value`, following upstream's
//! `apimachinery/pkg/util/strategicpatch`.
//!
//! Type information comes from a [`PatchSchema`]. Where it is missing,
//! objects merge key by key (as in RFC 7396) and lists are replaced.
//!
//! Where upstream leaves the outcome to Go map iteration or is lenient, this
//! implementation picks one deterministic rule:
//! - A merged list keeps the original elements in their original order
//!   (patched in place), followed by new elements in patch order.
//! - `$setElementOrder/<field>`: the elements it names come first, in its
//!   order; each remaining original element is then placed right after the
//!   nearest element that preceded it in the original list (at the front
//!   when there is none); remaining new elements go last, in patch order.
//! - `$deleteFromPrimitiveList/<field>` is applied after the field's own
//!   patch, so deletions win over additions.
//! - `"$patch": "delete"` removes the field holding the object (at the top
//!   level it yields `{}`).
//! - Values added to the original are built as patches applied to nothing:
//!   directives are honoured and stripped, `null` members dropped.

use crate::patch::type_name;
use serde_json::{Map, Value};
use std::fmt;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// How a field's value is patched (from upstream's patchStrategy / patchMergeKey struct tags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldStrategy {
    /// patchStrategy contains "merge": lists are merged instead of replaced.
    pub merge: bool,
    /// patchStrategy contains "retainKeys".
    pub retain_keys: bool,
    /// patchMergeKey: the key identifying list elements that are objects.
    pub merge_key: Option<String>,
}

/// The type information strategic merge patch navigates. A node stands for a value reached
/// through a field; `strategy()` is that field's patch strategy.
pub trait PatchSchema: Sized {
    /// The schema of property `name` of this object value. For a map-typed value
    /// (e.g. labels, `additionalProperties`) this is the schema of its values.
    fn property(&self, name: &str) -> Option<Self>;
    /// The schema of the elements, when this value is a list.
    fn items(&self) -> Option<Self>;
    /// The strategy of the field this value was reached through.
    fn strategy(&self) -> FieldStrategy;
}

/// Why a strategic merge patch could not be applied. All variants except
/// [`StrategicPatchError::NoMergeKey`] describe a malformed patch document;
/// `path` names the offending place in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategicPatchError {
    /// The patch document is not a JSON object.
    #[error("strategic merge patch must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    /// `$patch` holds something other than "merge", "replace" or "delete".
    #[error("{path}: invalid value {value} for \"$patch\": expected \"merge\", \"replace\" or \"delete\"")]
    BadPatchDirective { path: String, value: String },
    /// An element of a merge-key list (or of its `$setElementOrder`) lacks
    /// the merge key.
    #[error("{path}: element {element} does not contain the merge key {key:?}")]
    MissingMergeKey {
        path: String,
        key: String,
        element: String,
    },
    /// A list with the merge strategy holds objects but its field has no
    /// merge key, so elements cannot be matched (a schema problem).
    #[error("{path}: cannot merge a list of objects: the field has no merge key")]
    NoMergeKey { path: String },
    /// `$retainKeys`, `$setElementOrder/…` or `$deleteFromPrimitiveList/…`
    /// is not a list.
    #[error("{path}: {directive} must be a list, not {found}")]
    DirectiveNotAList {
        path: String,
        directive: String,
        found: &'static str,
    },
    /// `$retainKeys` lists something other than a field name.
    #[error("{path}: $retainKeys must list field names, found {value}")]
    RetainKeyNotAString { path: String, value: String },
    /// The patch sets a field that its own `$retainKeys` would drop.
    #[error("{path}: field {key:?} is set by the patch but missing from $retainKeys")]
    NotInRetainKeys { path: String, key: String },
}

/// Applies `patch` to `original` and returns the result; `original` is not
/// modified. `schema` describes `original`'s type; `None` means unknown.
pub fn strategic_merge_patch<S: PatchSchema>(
    original: &Value,
    patch: &Value,
    schema: Option<&S>,
) -> Result<Value, StrategicPatchError> {
    let Value::Object(patch) = patch else {
        return Err(StrategicPatchError::NotAnObject(type_name(patch)));
    };
    let empty = Map::new();
    let base = match original {
        Value::Object(o) => o,
        _ => &empty,
    };
    let retain_keys = schema.is_some_and(|s| s.strategy().retain_keys);
    let merged = merge_object(base, patch, schema, retain_keys, &Path::Root)?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// Where a value sits in the patch document; rendered only for errors.
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Path::Root => "<root>".to_string(),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

enum Directive {
    Merge,
    Replace,
    Delete,
}

fn directive(obj: &Map<String, Value>, path: &Path<'_>) -> Result<Directive, StrategicPatchError> {
    match obj.get(PATCH) {
        None => Ok(Directive::Merge),
        Some(Value::String(s)) if s == "merge" => Ok(Directive::Merge),
        Some(Value::String(s)) if s == "replace" => Ok(Directive::Replace),
        Some(Value::String(s)) if s == "delete" => Ok(Directive::Delete),
        Some(other) => Err(StrategicPatchError::BadPatchDirective {
            path: path.render(),
            value: other.to_string(),
        }),
    }
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

fn missing_key(path: &Path<'_>, key: &str, element: &Value) -> StrategicPatchError {
    StrategicPatchError::MissingMergeKey {
        path: path.render(),
        key: key.to_string(),
        element: element.to_string(),
    }
}

/// Everything a patch object says about one field: its value and the list
/// directives naming it, each with its full key for error messages.
struct FieldPatch<'a> {
    name: &'a str,
    value: Option<&'a Value>,
    delete: Option<(&'a str, &'a Value)>,
    order: Option<(&'a str, &'a Value)>,
}

/// Groups the patch's members by the field they affect, in order of first
/// appearance so new fields are appended in patch order.
fn field_patches(patch: &Map<String, Value>) -> Vec<FieldPatch<'_>> {
    let mut fields: Vec<FieldPatch<'_>> = Vec::new();
    for (key, value) in patch {
        if key == PATCH || key == RETAIN_KEYS {
            continue;
        }
        let name = key
            .strip_prefix(SET_ELEMENT_ORDER)
            .or_else(|| key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST))
            .unwrap_or(key);
        let at = match fields.iter().position(|f| f.name == name) {
            Some(at) => at,
            None => {
                fields.push(FieldPatch {
                    name,
                    value: None,
                    delete: None,
                    order: None,
                });
                fields.len() - 1
            }
        };
        let field = &mut fields[at];
        if key.starts_with(SET_ELEMENT_ORDER) {
            field.order = Some((key, value));
        } else if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            field.delete = Some((key, value));
        } else {
            field.value = Some(value);
        }
    }
    fields
}

fn directive_list<'a>(
    directive: Option<(&str, &'a Value)>,
    path: &Path<'_>,
) -> Result<Option<&'a [Value]>, StrategicPatchError> {
    match directive {
        None => Ok(None),
        Some((_, Value::Array(list))) => Ok(Some(list)),
        Some((key, other)) => Err(StrategicPatchError::DirectiveNotAList {
            path: path.render(),
            directive: key.to_string(),
            found: type_name(other),
        }),
    }
}

/// Merges a patch object into `original`. `None` means the object is
/// deleted (`"$patch": "delete"`). `retain_keys` is whether the field
/// holding this object has the retainKeys strategy.
fn merge_object<S: PatchSchema>(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<&S>,
    retain_keys: bool,
    path: &Path<'_>,
) -> Result<Option<Map<String, Value>>, StrategicPatchError> {
    let mut out = match directive(patch, path)? {
        Directive::Delete => return Ok(None),
        // Merging into nothing also handles directives nested in the patch.
        Directive::Replace => Map::new(),
        Directive::Merge => original.clone(),
    };
    if retain_keys {
        if let Some(keys) = patch.get(RETAIN_KEYS) {
            apply_retain_keys(&mut out, keys, patch, path)?;
        }
    }
    let empty = Map::new();
    for field in field_patches(patch) {
        let child = schema.and_then(|s| s.property(field.name));
        let child = child.as_ref();
        let strategy = child.map(PatchSchema::strategy).unwrap_or_default();
        let field_path = Path::Field(path, field.name);
        let delete = directive_list(field.delete, path)?;
        let order = match (directive_list(field.order, path)?, field.order) {
            (Some(order), Some((key, _))) => Some(order_ids(
                order,
                strategy.merge_key.as_deref(),
                &Path::Field(path, key),
            )?),
            _ => None,
        };
        let mut list = None;
        match (out.get(field.name), field.value) {
            (_, Some(Value::Null)) => {
                out.shift_remove(field.name);
            }
            (current, Some(Value::Object(p))) => {
                let base = match current {
                    Some(Value::Object(o)) => o,
                    _ => &empty,
                };
                match merge_object(base, p, child, strategy.retain_keys, &field_path)? {
                    Some(m) => {
                        out.insert(field.name.to_string(), Value::Object(m));
                    }
                    None => {
                        out.shift_remove(field.name);
                    }
                }
            }
            (current, Some(Value::Array(p))) => {
                let base: &[Value] = match current {
                    Some(Value::Array(o)) => o,
                    _ => &[],
                };
                list = Some(merge_list(base, p, child, &field_path)?);
            }
            (_, Some(scalar)) => {
                out.insert(field.name.to_string(), scalar.clone());
            }
            // Only directives name this field: they act on the original list.
            (Some(Value::Array(o)), None) => list = Some(unchanged(o)),
            (_, None) => {}
        }
        let Some(mut items) = list else {
            continue;
        };
        if let Some(values) = delete {
            items.retain(|it| !values.contains(&it.value));
        }
        if let Some(order) = order {
            items = set_element_order(items, &order, strategy.merge_key.as_deref());
        }
        let values = items.into_iter().map(|it| it.value).collect();
        out.insert(field.name.to_string(), Value::Array(values));
    }
    Ok(Some(out))
}

/// Keeps only the keys `$retainKeys` lists (applied before merging, like
/// upstream; the patch may only set listed keys, so the order is immaterial).
fn apply_retain_keys(
    out: &mut Map<String, Value>,
    keys: &Value,
    patch: &Map<String, Value>,
    path: &Path<'_>,
) -> Result<(), StrategicPatchError> {
    let Value::Array(keys) = keys else {
        return Err(StrategicPatchError::DirectiveNotAList {
            path: path.render(),
            directive: RETAIN_KEYS.to_string(),
            found: type_name(keys),
        });
    };
    let mut names = Vec::with_capacity(keys.len());
    for key in keys {
        match key {
            Value::String(s) => names.push(s.as_str()),
            other => {
                return Err(StrategicPatchError::RetainKeyNotAString {
                    path: path.render(),
                    value: other.to_string(),
                })
            }
        }
    }
    for (key, value) in patch {
        if !value.is_null() && !is_directive(key) && !names.contains(&key.as_str()) {
            return Err(StrategicPatchError::NotInRetainKeys {
                path: path.render(),
                key: key.clone(),
            });
        }
    }
    out.retain(|k, _| names.contains(&k.as_str()));
    Ok(())
}

/// A list element and its index in the original list, which
/// `$setElementOrder` needs to place the elements it does not name.
struct Item {
    value: Value,
    original: Option<usize>,
}

fn unchanged(original: &[Value]) -> Vec<Item> {
    original
        .iter()
        .enumerate()
        .map(|(i, v)| Item {
            value: v.clone(),
            original: Some(i),
        })
        .collect()
}

fn new_item(value: Value) -> Item {
    Item {
        value,
        original: None,
    }
}

/// Patches a list reached through a field whose schema is `field`.
fn merge_list<S: PatchSchema>(
    original: &[Value],
    patch: &[Value],
    field: Option<&S>,
    path: &Path<'_>,
) -> Result<Vec<Item>, StrategicPatchError> {
    let strategy = field.map(PatchSchema::strategy).unwrap_or_default();
    let items = field.and_then(PatchSchema::items);
    let items = items.as_ref();
    if !strategy.merge {
        return replace_list(patch, items, strategy.retain_keys, path);
    }
    if !original.iter().chain(patch).any(Value::is_object) {
        let mut out = unchanged(original);
        for v in patch {
            if !out.iter().any(|it| it.value == *v) {
                out.push(new_item(v.clone()));
            }
        }
        return Ok(out);
    }
    let Some(key) = strategy.merge_key.as_deref() else {
        return Err(StrategicPatchError::NoMergeKey {
            path: path.render(),
        });
    };

    let mut replace = false;
    let mut deleted = Vec::new();
    let mut plain = Vec::new();
    for (i, element) in patch.iter().enumerate() {
        let element_path = Path::Index(path, i);
        let Value::Object(obj) = element else {
            return Err(missing_key(&element_path, key, element));
        };
        match directive(obj, &element_path)? {
            // Upstream: any replace marker makes the list exactly the plain
            // elements, dropping every element that carries `$patch`.
            Directive::Replace => replace = true,
            Directive::Delete => match obj.get(key) {
                Some(id) => deleted.push(id),
                None => return Err(missing_key(&element_path, key, element)),
            },
            Directive::Merge => plain.push((i, obj)),
        }
    }

    let empty = Map::new();
    if replace {
        let mut out = Vec::with_capacity(plain.len());
        for (i, obj) in plain {
            let built = merge_object(
                &empty,
                obj,
                items,
                strategy.retain_keys,
                &Path::Index(path, i),
            )?;
            out.extend(built.map(|m| new_item(Value::Object(m))));
        }
        return Ok(out);
    }

    let mut out: Vec<Item> = unchanged(original)
        .into_iter()
        .filter(|it| !it.value.get(key).is_some_and(|id| deleted.contains(&id)))
        .collect();
    for (i, obj) in plain {
        let element_path = Path::Index(path, i);
        let Some(id) = obj.get(key) else {
            return Err(missing_key(&element_path, key, &patch[i]));
        };
        // Matching also considers elements appended earlier in this patch.
        let found = out.iter().enumerate().find_map(|(at, it)| {
            it.value
                .as_object()
                .filter(|m| m.get(key) == Some(id))
                .map(|m| (at, m))
        });
        match found {
            Some((at, current)) => {
                match merge_object(current, obj, items, strategy.retain_keys, &element_path)? {
                    Some(m) => out[at].value = Value::Object(m),
                    None => {
                        out.remove(at);
                    }
                }
            }
            None => {
                let built = merge_object(&empty, obj, items, strategy.retain_keys, &element_path)?;
                out.extend(built.map(|m| new_item(Value::Object(m))));
            }
        }
    }
    Ok(out)
}

/// A list without the merge strategy is replaced by the patch list, whose
/// elements are built with their directives honoured and stripped.
fn replace_list<S: PatchSchema>(
    patch: &[Value],
    items: Option<&S>,
    retain_keys: bool,
    path: &Path<'_>,
) -> Result<Vec<Item>, StrategicPatchError> {
    let empty = Map::new();
    let mut out = Vec::with_capacity(patch.len());
    for (i, element) in patch.iter().enumerate() {
        let element_path = Path::Index(path, i);
        let value = match element {
            Value::Object(obj) => match directive(obj, &element_path)? {
                // Markers about the list itself; the patch list already is the whole list.
                Directive::Replace | Directive::Delete => continue,
                Directive::Merge => {
                    match merge_object(&empty, obj, items, retain_keys, &element_path)? {
                        Some(m) => Value::Object(m),
                        None => continue,
                    }
                }
            },
            Value::Array(inner) => Value::Array(
                merge_list(&[], inner, items, &element_path)?
                    .into_iter()
                    .map(|it| it.value)
                    .collect(),
            ),
            other => other.clone(),
        };
        out.push(new_item(value));
    }
    Ok(out)
}

/// What `$setElementOrder` entries are matched on: the merge key's value, or
/// the whole element in lists without one.
fn identity<'v>(v: &'v Value, key: Option<&str>) -> Option<&'v Value> {
    match key {
        Some(key) => v.get(key),
        None => Some(v),
    }
}

/// The identities a `$setElementOrder` list names, checked even when the
/// list it orders does not exist.
fn order_ids<'a>(
    order: &'a [Value],
    key: Option<&str>,
    path: &Path<'_>,
) -> Result<Vec<&'a Value>, StrategicPatchError> {
    order
        .iter()
        .enumerate()
        .map(|(i, entry)| match key {
            Some(key) => entry
                .get(key)
                .ok_or_else(|| missing_key(&Path::Index(path, i), key, entry)),
            None => Ok(entry),
        })
        .collect()
}

/// Reorders `items` by the rule in the module documentation.
fn set_element_order(items: Vec<Item>, wanted: &[&Value], key: Option<&str>) -> Vec<Item> {
    let mut rest: Vec<Option<Item>> = items.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(rest.len());
    for &id in wanted {
        let slot = rest.iter_mut().find(|slot| {
            slot.as_ref()
                .is_some_and(|it| identity(&it.value, key) == Some(id))
        });
        out.extend(slot.and_then(Option::take));
    }
    let mut added = Vec::new();
    // `rest` lists original elements in original order, so a predecessor is
    // always placed before the elements that follow it.
    for item in rest.into_iter().flatten() {
        let Some(index) = item.original else {
            added.push(item);
            continue;
        };
        let at = out
            .iter()
            .enumerate()
            .filter(|(_, placed)| placed.original.is_some_and(|j| j < index))
            .max_by_key(|(_, placed)| placed.original)
            .map_or(0, |(at, _)| at + 1);
        out.insert(at, item);
    }
    out.extend(added);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A schema tree written as JSON: `properties`, `additionalProperties`,
    /// `items`, `strategy` ("merge", "retainKeys", comma separated), `key`.
    struct Fake(Value);

    impl PatchSchema for Fake {
        fn property(&self, name: &str) -> Option<Self> {
            self.0
                .get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| self.0.get("additionalProperties"))
                .cloned()
                .map(Fake)
        }
        fn items(&self) -> Option<Self> {
            self.0.get("items").cloned().map(Fake)
        }
        fn strategy(&self) -> FieldStrategy {
            let s = self.0.get("strategy").and_then(Value::as_str).unwrap_or("");
            FieldStrategy {
                merge: s.split(',').any(|p| p == "merge"),
                retain_keys: s.split(',').any(|p| p == "retainKeys"),
                merge_key: self.0.get("key").and_then(Value::as_str).map(String::from),
            }
        }
    }

    fn pod_schema() -> Fake {
        let container = json!({"properties": {
            "name": {},
            "image": {},
            "env": {"strategy": "merge", "key": "name", "items": {"properties": {"name": {}, "value": {}}}},
            "ports": {"strategy": "merge", "key": "containerPort", "items": {}},
            "volumeMounts": {"strategy": "merge", "key": "mountPath", "items": {}},
            "securityContext": {"properties": {"privileged": {}}},
        }});
        Fake(json!({"properties": {
            "metadata": {"properties": {
                "name": {},
                "labels": {"additionalProperties": {}},
                "finalizers": {"strategy": "merge"},
            }},
            "spec": {"properties": {
                "containers": {"strategy": "merge", "key": "name", "items": container},
                "volumes": {"strategy": "merge,retainKeys", "key": "name",
                    "items": {"properties": {"name": {}, "emptyDir": {}, "hostPath": {}}}},
                "tolerations": {"items": {}},
                "securityContext": {"properties": {"runAsUser": {}, "fsGroup": {}}},
            }},
        }}))
    }

    fn deployment_schema() -> Fake {
        Fake(json!({"properties": {"spec": {"properties": {
            "replicas": {},
            "strategy": {"strategy": "retainKeys", "properties": {"type": {}, "rollingUpdate": {}}},
            "template": pod_schema().0,
        }}}}))
    }

    /// Compares serialized text, so member order is checked too.
    fn check_with(schema: Option<&Fake>, original: Value, patch: Value, want: Value) {
        let got = strategic_merge_patch(&original, &patch, schema).unwrap();
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "patch {patch}"
        );
    }

    fn check(original: Value, patch: Value, want: Value) {
        check_with(Some(&pod_schema()), original, patch, want);
    }

    fn pod_err(original: Value, patch: Value) -> StrategicPatchError {
        strategic_merge_patch(&original, &patch, Some(&pod_schema())).unwrap_err()
    }

    fn containers(list: Value) -> Value {
        json!({"spec": {"containers": list}})
    }

    #[test]
    fn strategic_adds_modifies_and_deletes_keys() {
        check(
            json!({"metadata": {"name": "web", "labels": {"app": "web", "tier": "fe"}}, "spec": {"nodeName": "n1"}}),
            json!({"metadata": {"labels": {"tier": "be", "env": "prod", "app": null, "gone": null}},
                   "spec": {"nodeName": null, "priority": 5}}),
            json!({"metadata": {"name": "web", "labels": {"tier": "be", "env": "prod"}}, "spec": {"priority": 5}}),
        );
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        check(
            containers(json!([
                {"name": "app", "image": "app:1",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "sidecar", "image": "side:1"},
            ])),
            containers(json!([
                {"name": "app", "image": "app:2",
                 "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                 "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]},
                {"name": "extra", "image": "extra:1"},
            ])),
            containers(json!([
                {"name": "app", "image": "app:2",
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 443}]},
                {"name": "sidecar", "image": "side:1"},
                {"name": "extra", "image": "extra:1"},
            ])),
        );
    }

    #[test]
    fn strategic_deletes_list_elements() {
        check(
            containers(json!([
                {"name": "app", "env": [{"name": "A"}, {"name": "B"}],
                 "volumeMounts": [{"mountPath": "/a", "name": "a"}, {"mountPath": "/b", "name": "b"}]},
                {"name": "sidecar"},
            ])),
            containers(json!([
                {"name": "sidecar", "$patch": "delete"},
                {"name": "app", "env": [{"name": "A", "$patch": "delete"}],
                 "volumeMounts": [{"mountPath": "/b", "$patch": "delete"}]},
            ])),
            containers(
                json!([{"name": "app", "env": [{"name": "B"}], "volumeMounts": [{"mountPath": "/a", "name": "a"}]}]),
            ),
        );
    }

    #[test]
    fn strategic_replaces_list_with_replace_element() {
        check(
            containers(json!([{"name": "app", "image": "a"}, {"name": "sidecar"}])),
            containers(json!([{"name": "only", "image": "x"}, {"$patch": "replace"}])),
            containers(json!([{"name": "only", "image": "x"}])),
        );
    }

    #[test]
    fn strategic_replaces_and_deletes_objects() {
        check(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"securityContext": {"runAsUser": 1, "fsGroup": 2}}}),
            json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}},
                   "spec": {"securityContext": {"$patch": "delete"}}}),
            json!({"metadata": {"labels": {"c": "3"}}, "spec": {}}),
        );
        check(
            json!({"spec": {"securityContext": {"runAsUser": 1}}}),
            json!({"spec": {"securityContext": {"runAsUser": 2, "$patch": "merge"}}}),
            json!({"spec": {"securityContext": {"runAsUser": 2}}}),
        );
        check(json!({"a": 1}), json!({"$patch": "delete"}), json!({}));
    }

    #[test]
    fn strategic_set_element_order() {
        check(
            containers(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "d"}, {"name": "b"}, {"name": "e"}],
                "containers": [{"name": "b", "image": "b:2"}, {"name": "e"}],
            }}),
            // a has no predecessor: front; c follows b, its original predecessor.
            containers(
                json!([{"name": "a"}, {"name": "d"}, {"name": "b", "image": "b:2"}, {"name": "c"}, {"name": "e"}]),
            ),
        );
        check(
            json!({"metadata": {"finalizers": ["x", "y", "z"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["z", "new", "x"], "finalizers": ["new"]}}),
            json!({"metadata": {"finalizers": ["z", "new", "x", "y"]}}),
        );
        // The order alone reorders the original list.
        check(
            containers(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}),
            containers(json!([{"name": "b"}, {"name": "a"}])),
        );
    }

    #[test]
    fn strategic_primitive_lists() {
        check(
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "c"]}}),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        );
        check(
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}),
            json!({"metadata": {"finalizers": ["a", "c"]}}),
        );
        check(
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"finalizers": ["d"], "$deleteFromPrimitiveList/finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": ["b", "c", "d"]}}),
        );
    }

    #[test]
    fn strategic_replaces_lists_without_strategy() {
        check(
            json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}], "nodeSelector": ["odd"]}}),
            json!({"spec": {"tolerations": [{"key": "c"}], "nodeSelector": {"disk": "ssd"}}}),
            json!({"spec": {"tolerations": [{"key": "c"}], "nodeSelector": {"disk": "ssd"}}}),
        );
    }

    #[test]
    fn strategic_retain_keys() {
        check(
            json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]}}),
            json!({"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/srv"}, "$retainKeys": ["name", "hostPath"]}]}}),
            json!({"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/srv"}}, {"name": "cfg", "configMap": {"name": "c"}}]}}),
        );
        let deployment = json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let want = json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}});
        for patch in [
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        ] {
            check_with(
                Some(&deployment_schema()),
                deployment.clone(),
                patch,
                want.clone(),
            );
        }
        // Without the retainKeys strategy the directive is only stripped.
        check(
            json!({"spec": {"securityContext": {"runAsUser": 1}}}),
            json!({"spec": {"securityContext": {"$retainKeys": ["fsGroup"], "fsGroup": 3}}}),
            json!({"spec": {"securityContext": {"runAsUser": 1, "fsGroup": 3}}}),
        );
    }

    #[test]
    fn strategic_unknown_schema_is_merge_patch_with_list_replacement() {
        let original =
            json!({"a": {"b": 1, "c": [1, 2]}, "list": [{"name": "x", "v": 1}], "keep": true});
        let patch = json!({
            "a": {"b": null, "c": [3], "d": {"$patch": "replace", "e": 1}},
            "list": [{"name": "y"}, {"name": "zz", "$patch": "delete"}],
        });
        let want = json!({"a": {"c": [3], "d": {"e": 1}}, "list": [{"name": "y"}], "keep": true});
        check_with(None, original, patch, want);
        // Fields the schema does not know are patched the same way.
        check(
            json!({"spec": {"custom": [{"name": "x", "v": 1}]}}),
            json!({"spec": {"custom": [{"name": "x", "w": 2}]}}),
            json!({"spec": {"custom": [{"name": "x", "w": 2}]}}),
        );
    }

    #[test]
    fn strategic_strips_directives_from_added_values() {
        check(
            containers(json!([{"name": "app"}])),
            json!({"spec": {
                "containers": [{
                    "name": "new",
                    "env": [{"name": "A", "value": "1"}, {"name": "GONE", "$patch": "delete"}],
                    "$setElementOrder/env": [{"name": "A"}],
                    "securityContext": {"$patch": "replace", "privileged": true},
                    "resources": {"$patch": "delete"},
                    "args": null,
                }],
                "volumes": [{"name": "v", "hostPath": {"path": "/x"}, "$retainKeys": ["name", "hostPath"]}],
                "tolerations": [{"key": "k", "$patch": "delete"}, {"key": "t", "extra": {"$patch": "merge"}}],
                "$deleteFromPrimitiveList/args": ["x"],
            }}),
            json!({"spec": {
                "containers": [
                    {"name": "app"},
                    {"name": "new", "env": [{"name": "A", "value": "1"}], "securityContext": {"privileged": true}},
                ],
                "volumes": [{"name": "v", "hostPath": {"path": "/x"}}],
                "tolerations": [{"key": "t", "extra": {}}],
            }}),
        );
    }

    #[test]
    fn strategic_errors() {
        let err = strategic_merge_patch(&json!({}), &json!([1]), Some(&pod_schema())).unwrap_err();
        assert_eq!(err, StrategicPatchError::NotAnObject("an array"));
        assert_eq!(
            err.to_string(),
            "strategic merge patch must be a JSON object, not an array"
        );

        let err = pod_err(
            json!({}),
            containers(json!([{"name": "app", "$patch": "remove"}])),
        );
        assert_eq!(
            err.to_string(),
            "spec.containers[0]: invalid value \"remove\" for \"$patch\": expected \"merge\", \"replace\" or \"delete\""
        );
        let err = pod_err(json!({}), json!({"$patch": 1}));
        assert!(
            matches!(&err, StrategicPatchError::BadPatchDirective { path, .. } if path == "<root>"),
            "{err}"
        );

        let err = pod_err(
            json!({}),
            containers(json!([{"name": "a"}, {"image": "x"}])),
        );
        assert_eq!(
            err.to_string(),
            "spec.containers[1]: element {\"image\":\"x\"} does not contain the merge key \"name\""
        );
        let err = pod_err(json!({}), containers(json!([{"$patch": "delete"}])));
        assert!(
            matches!(err, StrategicPatchError::MissingMergeKey { .. }),
            "{err}"
        );

        let err = strategic_merge_patch(
            &json!({}),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {"maxSurge": 2}}}}),
            Some(&deployment_schema()),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.strategy: field \"rollingUpdate\" is set by the patch but missing from $retainKeys"
        );

        let err = pod_err(
            json!({}),
            json!({"spec": {"$setElementOrder/containers": "app"}}),
        );
        assert_eq!(
            err.to_string(),
            "spec: $setElementOrder/containers must be a list, not a string"
        );
        let err = pod_err(
            json!({}),
            json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
        );
        assert!(
            matches!(&err, StrategicPatchError::MissingMergeKey { path, .. } if path == "spec.$setElementOrder/containers[0]"),
            "{err}"
        );
        let err = pod_err(
            json!({}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": {}}}),
        );
        assert!(
            matches!(err, StrategicPatchError::DirectiveNotAList { .. }),
            "{err}"
        );
    }
}
