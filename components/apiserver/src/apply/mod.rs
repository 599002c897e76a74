//! Field ownership: `metadata.managedFields` in upstream's FieldsV1 format, kept on every write,
//! and server-side apply (merge a manager's configuration, detect conflicts with other managers,
//! remove fields a manager stopped applying when nobody else owns them).
//!
//! A field set is a set of paths; a path is a list of FieldsV1 elements: `f:<field>` for object
//! fields, `k:{"name":"c"}` for elements of lists keyed by fields, `v:<json>` for elements of
//! lists of scalars. Leaves are owned; keyed and scalar list elements are owned themselves too.

use std::collections::{BTreeMap, BTreeSet};

use hakube_apimachinery::status::{ApiError, StatusCause, StatusDetails};
use serde_json::{json, Map, Value};

use crate::openapi::{ListType, SchemaNode};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Fields no manager owns: identity and bookkeeping the server sets.
const IGNORED: &[&[&str]] = &[
    &["f:apiVersion"],
    &["f:kind"],
    &["f:metadata", "f:name"],
    &["f:metadata", "f:namespace"],
    &["f:metadata", "f:uid"],
    &["f:metadata", "f:resourceVersion"],
    &["f:metadata", "f:generation"],
    &["f:metadata", "f:creationTimestamp"],
    &["f:metadata", "f:deletionTimestamp"],
    &["f:metadata", "f:deletionGracePeriodSeconds"],
    &["f:metadata", "f:managedFields"],
    &["f:metadata", "f:selfLink"],
];

/// Which part of an object a write may own: the main resource owns all but `status`, the status
/// subresource only `status` (upstream's reset fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Main,
    Status,
}

impl Scope {
    fn includes(self, path: &[String]) -> bool {
        if IGNORED
            .iter()
            .any(|ignored| path.starts_with(&to_path(ignored)))
        {
            return false;
        }
        let in_status = path.first().is_some_and(|p| p == "f:status");
        match self {
            Scope::Main => !in_status,
            Scope::Status => in_status,
        }
    }

    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Main => None,
            Scope::Status => Some("status"),
        }
    }
}

fn to_path(parts: &[&str]) -> Path {
    parts.iter().map(|p| p.to_string()).collect()
}

/// The owned paths of an object, each with its value (`true` for a list element's own entry).
pub fn flatten(value: &Value, schema: Option<SchemaNode>) -> BTreeMap<Path, Value> {
    let mut out = BTreeMap::new();
    flatten_into(value, schema, &mut Vec::new(), &mut out);
    out
}

fn flatten_into(
    value: &Value,
    schema: Option<SchemaNode>,
    path: &mut Path,
    out: &mut BTreeMap<Path, Value>,
) {
    match value {
        Value::Object(map) => {
            if schema.is_some_and(|s| s.is_atomic_object()) || map.is_empty() {
                out.insert(path.clone(), value.clone());
                return;
            }
            for (key, child) in map {
                if child.is_null() {
                    continue;
                }
                path.push(format!("f:{key}"));
                flatten_into(child, schema.and_then(|s| s.property(key)), path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            let list_type = schema.map(|s| s.list_type()).unwrap_or(ListType::Atomic);
            if items.is_empty() || list_type == ListType::Atomic {
                out.insert(path.clone(), value.clone());
                return;
            }
            for item in items {
                let Some(element) = element_key(item, &list_type) else {
                    // An element the list type can't key: own the list as a whole.
                    out.insert(path.clone(), value.clone());
                    return;
                };
                path.push(element);
                out.insert(path.clone(), Value::Bool(true));
                if let ListType::Map(_) = list_type {
                    flatten_into(item, schema.and_then(|s| s.items()), path, out);
                }
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone(), value.clone());
        }
    }
}

/// The FieldsV1 element naming a list element: `k:{...}` (keys sorted) or `v:<json>`.
fn element_key(item: &Value, list_type: &ListType) -> Option<String> {
    match list_type {
        ListType::Atomic => None,
        ListType::Set => (!item.is_object() && !item.is_array()).then(|| format!("v:{item}")),
        ListType::Map(keys) => {
            let object = item.as_object()?;
            let mut sorted: Vec<&String> = keys.iter().collect();
            sorted.sort();
            let mut key = Map::new();
            for k in sorted {
                if let Some(v) = object.get(k.as_str()) {
                    key.insert(k.clone(), v.clone());
                }
            }
            if key.is_empty() {
                return None;
            }
            Some(format!("k:{}", Value::Object(key)))
        }
    }
}

/// Encodes a field set in FieldsV1 form.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for (i, part) in path.iter().enumerate() {
            let entry = node
                .entry(part.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(child) = entry else { break };
            node = child;
            if i + 1 == path.len()
                && set
                    .range(path.clone()..)
                    .nth(1)
                    .is_some_and(|next| next.starts_with(path))
            {
                node.insert(".".into(), json!({}));
            }
        }
    }
    Value::Object(root)
}

/// Decodes FieldsV1; anything malformed is skipped.
pub fn from_fields_v1(value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    fn walk(value: &Value, path: &mut Path, set: &mut FieldSet) {
        let Value::Object(map) = value else { return };
        if map.is_empty() && !path.is_empty() {
            set.insert(path.clone());
            return;
        }
        for (key, child) in map {
            if key == "." {
                set.insert(path.clone());
                continue;
            }
            path.push(key.clone());
            walk(child, path, set);
            path.pop();
        }
    }
    walk(value, &mut Vec::new(), &mut set);
    set
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Manager {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Manager {
    fn same_owner(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        entry.insert("manager".into(), json!(self.manager));
        entry.insert("operation".into(), json!(self.operation));
        entry.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            entry.insert("time".into(), json!(t));
        }
        entry.insert("fieldsType".into(), json!("FieldsV1"));
        entry.insert("fieldsV1".into(), to_fields_v1(&self.fields));
        if let Some(s) = &self.subresource {
            entry.insert("subresource".into(), json!(s));
        }
        Value::Object(entry)
    }
}

pub fn managers(object: &Value) -> Vec<Manager> {
    let Some(list) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            Some(Manager {
                manager: s("manager")?,
                operation: s("operation").unwrap_or_else(|| "Update".into()),
                api_version: s("apiVersion").unwrap_or_default(),
                time: s("time"),
                subresource: s("subresource"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            })
        })
        .collect()
}

fn set_managers(object: &mut Value, managers: &[Manager]) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if managers.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert(
                "managedFields".into(),
                Value::Array(managers.iter().map(Manager::to_json).collect()),
            );
        }
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Who writes, how, and on which part of the object.
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub scope: Scope,
}

/// Records an update (create, PUT, or a non-apply patch) in `new`'s managedFields: the writer
/// takes every field whose value it changed; other managers lose those fields; fields that no
/// longer exist leave every set.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    schema: Option<SchemaNode>,
    writer: &Writer,
) {
    let mut list = old.map(managers).unwrap_or_default();
    // A client resets ownership by sending `managedFields: [{}]`.
    if new.pointer("/metadata/managedFields") == Some(&json!([{}])) {
        list.clear();
    }
    let before = old.map(|o| flatten(o, schema)).unwrap_or_default();
    let after = flatten(new, schema);
    let changed: FieldSet = after
        .iter()
        .filter(|(path, value)| writer.scope.includes(path) && before.get(*path) != Some(value))
        .map(|(path, _)| path.clone())
        .collect();
    let existing: FieldSet = after.keys().cloned().collect();
    let mut touched = !changed.is_empty();
    for m in &mut list {
        let kept: FieldSet = m
            .fields
            .iter()
            .filter(|p| existing.contains(*p) && !changed.contains(*p))
            .cloned()
            .collect();
        if kept.len() != m.fields.len() {
            touched = true;
            m.fields = kept;
        }
    }
    if touched {
        let subresource = writer.scope.subresource();
        match list
            .iter_mut()
            .find(|m| m.same_owner(writer.manager, "Update", subresource))
        {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.api_version = writer.api_version.to_string();
                entry.time = Some(now());
            }
            None if !changed.is_empty() => list.push(Manager {
                manager: writer.manager.to_string(),
                operation: "Update".into(),
                api_version: writer.api_version.to_string(),
                time: Some(now()),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
            None => {}
        }
    }
    list.retain(|m| !m.fields.is_empty());
    set_managers(new, &list);
}

/// Renders a path the way upstream's conflict messages do: `.spec.containers[name="c"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if let Some(field) = part.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = part.strip_prefix("k:") {
            let pairs: Vec<String> = serde_json::from_str::<Map<String, Value>>(key)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", pairs.join(",")));
        } else if let Some(v) = part.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// Server-side apply of `config` by `writer` onto `live` (None when the object doesn't exist).
/// Returns the new object with its managedFields, or a 409 naming each conflicting field and
/// its manager.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    schema: Option<SchemaNode>,
    writer: &Writer,
    force: bool,
) -> Result<Value, ApiError> {
    let empty = json!({});
    let live_value = live.unwrap_or(&empty);
    let mut list = live.map(managers).unwrap_or_default();
    let subresource = writer.scope.subresource();
    let config_values = flatten(config, schema);
    let live_values = flatten(live_value, schema);
    let applied: FieldSet = config_values
        .keys()
        .filter(|p| writer.scope.includes(p))
        .cloned()
        .collect();

    // Conflicts: fields another manager owns that this apply would set to a different value.
    let mut conflicts: Vec<(String, String, Path)> = Vec::new();
    for m in &list {
        if m.same_owner(writer.manager, "Apply", subresource) {
            continue;
        }
        for path in m.fields.intersection(&applied) {
            if live_values.get(path) != config_values.get(path) {
                conflicts.push((m.manager.clone(), m.api_version.clone(), path.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&conflicts));
        }
        for m in &mut list {
            if !m.same_owner(writer.manager, "Apply", subresource) {
                for (_, _, path) in &conflicts {
                    m.fields.remove(path);
                }
            }
        }
    }

    let scoped_config = scoped(config, writer.scope);
    let mut merged = merge(live, &scoped_config, schema);

    // Fields this manager applied before, dropped now, and owned by nobody else go away.
    let previous = list
        .iter()
        .find(|m| m.same_owner(writer.manager, "Apply", subresource))
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = list
        .iter()
        .filter(|m| !m.same_owner(writer.manager, "Apply", subresource))
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let mut removed: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied.contains(*p) && !others.contains(*p))
        .filter(|p| !others.iter().any(|o| o.starts_with(p)))
        .collect();
    removed.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in removed {
        remove_path(&mut merged, path);
    }

    let changed_object = live.map(|l| strip_managed(l) != strip_managed(&merged));
    let unchanged = changed_object == Some(false) && previous == applied;
    match list
        .iter_mut()
        .find(|m| m.same_owner(writer.manager, "Apply", subresource))
    {
        Some(entry) => {
            if !unchanged {
                entry.time = Some(now());
            }
            entry.fields = applied;
            entry.api_version = writer.api_version.to_string();
        }
        None => list.push(Manager {
            manager: writer.manager.to_string(),
            operation: "Apply".into(),
            api_version: writer.api_version.to_string(),
            time: Some(now()),
            subresource: subresource.map(str::to_string),
            fields: applied,
        }),
    }
    list.retain(|m| !m.fields.is_empty());
    set_managers(&mut merged, &list);
    Ok(merged)
}

fn strip_managed(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    copy
}

/// The part of an applied configuration a scope may change (identity fields always pass, so a
/// new object gets its name).
fn scoped(config: &Value, scope: Scope) -> Value {
    let mut copy = config.clone();
    if let Some(map) = copy.as_object_mut() {
        match scope {
            Scope::Main => {
                map.remove("status");
            }
            Scope::Status => {
                map.retain(|k, _| matches!(k.as_str(), "status" | "apiVersion" | "kind"));
            }
        }
    }
    copy
}

fn conflict_error(conflicts: &[(String, String, Path)]) -> ApiError {
    let mut by_manager: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for (manager, version, path) in conflicts {
        by_manager
            .entry((manager, version))
            .or_default()
            .push(display_path(path));
    }
    let count = conflicts.len();
    let mut parts = Vec::new();
    let mut causes = Vec::new();
    for ((manager, version), paths) in &by_manager {
        let head = format!("conflict with \"{manager}\" using {version}");
        if paths.len() == 1 {
            parts.push(format!("{head}: {}", paths[0]));
        } else {
            let list: Vec<String> = paths.iter().map(|p| format!("\n- {p}")).collect();
            parts.push(format!(
                "conflicts with \"{manager}\" using {version}:{}",
                list.concat()
            ));
        }
        for p in paths {
            causes.push(StatusCause {
                reason: "FieldManagerConflict".into(),
                message: head.clone(),
                field: p.clone(),
            });
        }
    }
    let message = format!(
        "Apply failed with {count} conflict{}: {}",
        if count == 1 { "" } else { "s" },
        parts.join("\n")
    );
    ApiError {
        code: 409,
        reason: "Conflict".into(),
        message,
        details: Some(StatusDetails {
            causes,
            ..Default::default()
        }),
        retry_after_seconds: None,
    }
}

/// Merges an applied configuration into the live object: objects field by field, keyed lists
/// element by element, scalar sets by union, everything else replaced.
fn merge(live: Option<&Value>, config: &Value, schema: Option<SchemaNode>) -> Value {
    match (live, config) {
        (Some(Value::Object(live)), Value::Object(config))
            if !schema.is_some_and(|s| s.is_atomic_object()) =>
        {
            let mut out = live.clone();
            for (key, value) in config {
                if value.is_null() {
                    continue;
                }
                let merged = merge(live.get(key), value, schema.and_then(|s| s.property(key)));
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(live)), Value::Array(config)) => {
            let list_type = schema.map(|s| s.list_type()).unwrap_or(ListType::Atomic);
            if list_type == ListType::Atomic {
                return Value::Array(config.clone());
            }
            let key = |v: &Value| element_key(v, &list_type);
            let mut out: Vec<Value> = Vec::with_capacity(live.len() + config.len());
            for item in live {
                let k = key(item);
                match config.iter().find(|c| k.is_some() && key(c) == k) {
                    Some(applied) if matches!(list_type, ListType::Map(_)) => {
                        out.push(merge(Some(item), applied, schema.and_then(|s| s.items())))
                    }
                    _ => out.push(item.clone()),
                }
            }
            for item in config {
                let k = key(item);
                if k.is_none() || !live.iter().any(|l| key(l) == k) {
                    out.push(merge(None, item, schema.and_then(|s| s.items())));
                }
            }
            Value::Array(out)
        }
        (_, Value::Object(config)) => {
            let mut out = Map::new();
            for (key, value) in config {
                if !value.is_null() {
                    out.insert(
                        key.clone(),
                        merge(None, value, schema.and_then(|s| s.property(key))),
                    );
                }
            }
            Value::Object(out)
        }
        (_, other) => other.clone(),
    }
}

/// Removes the value at a path, and each enclosing map the removal leaves empty (as upstream's
/// structured merge does: a dropped `status.rollout.host` takes an emptied `rollout` with it);
/// a missing path is left alone.
fn remove_path(value: &mut Value, path: &[String]) {
    remove_one(value, path);
    for end in (1..path.len()).rev() {
        let parent = &path[..end];
        if !value_at(value, parent).is_some_and(|v| v.as_object().is_some_and(Map::is_empty)) {
            break;
        }
        remove_one(value, parent);
    }
}

fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |node, part| match node {
        Value::Object(map) => map.get(part.strip_prefix("f:")?),
        Value::Array(items) => items.iter().find(|i| matches_element(i, part)),
        _ => None,
    })
}

fn remove_one(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for part in parents {
        let next = match node {
            Value::Object(map) => part.strip_prefix("f:").and_then(|f| map.get_mut(f)),
            Value::Array(items) => items.iter_mut().find(|i| matches_element(i, part)),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    match node {
        Value::Object(map) => {
            if let Some(f) = last.strip_prefix("f:") {
                map.remove(f);
            }
        }
        Value::Array(items) => items.retain(|i| !matches_element(i, last)),
        _ => {}
    }
}

fn matches_element(item: &Value, element: &str) -> bool {
    if let Some(key) = element.strip_prefix("k:") {
        let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
            return false;
        };
        return key.iter().all(|(k, v)| item.get(k) == Some(v));
    }
    if let Some(v) = element.strip_prefix("v:") {
        return serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item);
    }
    false
}

#[cfg(test)]
mod tests;
