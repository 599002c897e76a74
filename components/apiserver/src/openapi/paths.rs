//! The `paths` of the OpenAPI documents: one operation per verb a resource serves, tagged with
//! `x-kubernetes-group-version-kind` and `x-kubernetes-action` and listing the query parameters
//! the server honours. kubectl reads the PATCH operations' parameters to learn that the server
//! validates fields itself (`fieldValidation`).

use serde_json::{json, Map, Value};

use super::{OpenApi, PATCH_DEFINITION, V3_PREFIX};
use crate::registry::{ResourceDef, Storage};

const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind}, "uniqueItems": true})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}, "uniqueItems": true})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut params = vec![
        query(
            "dryRun",
            "string",
            "When present (All), the request is processed completely but nothing is persisted.",
        ),
        query(
            "fieldManager",
            "string",
            "The name of the actor making the change, recorded in managedFields.",
        ),
        query(
            "fieldValidation",
            "string",
            "What to do with unknown or duplicate fields: Ignore, Warn or Strict.",
        ),
    ];
    if patch {
        params.push(query(
            "force",
            "boolean",
            "Apply requests take ownership of fields other managers own instead of failing with a conflict.",
        ));
    }
    params
}

fn list_params() -> Vec<Value> {
    [
        (
            "allowWatchBookmarks",
            "boolean",
            "Asks a watch for BOOKMARK events.",
        ),
        (
            "continue",
            "string",
            "The continue token of the previous page.",
        ),
        (
            "fieldSelector",
            "string",
            "Restricts the list to objects whose fields match.",
        ),
        (
            "labelSelector",
            "string",
            "Restricts the list to objects whose labels match.",
        ),
        (
            "limit",
            "integer",
            "The largest number of objects to return in one page.",
        ),
        (
            "resourceVersion",
            "string",
            "Which version of the collection to read or watch from.",
        ),
        (
            "resourceVersionMatch",
            "string",
            "How resourceVersion is matched: Exact or NotOlderThan.",
        ),
        (
            "sendInitialEvents",
            "boolean",
            "Starts a watch with the current objects, ending them with a bookmark.",
        ),
        (
            "timeoutSeconds",
            "integer",
            "Ends a list or watch after this many seconds.",
        ),
        (
            "watch",
            "boolean",
            "Streams changes instead of answering a list.",
        ),
    ]
    .into_iter()
    .map(|(n, t, d)| query(n, t, d))
    .collect()
}

fn delete_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "string",
            "When present (All), the request is processed completely but nothing is persisted.",
        ),
        query(
            "gracePeriodSeconds",
            "integer",
            "Seconds before the object is removed; 0 removes it at once.",
        ),
        query(
            "propagationPolicy",
            "string",
            "How dependents are collected: Orphan, Background or Foreground.",
        ),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{V3_PREFIX}{name}") })
}

fn json_response(name: &str, code: &str) -> Value {
    json!({ code: {"description": "OK", "content": {"application/json": {"schema": schema_ref(name)}}} })
}

/// Upstream's operation id words: `""` → Core, `rbac.authorization.k8s.io` → RbacAuthorization.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The operations an OpenAPI path item can hold.
#[derive(Clone, Copy)]
enum Verb {
    List,
    Create,
    DeleteCollection,
    Read,
    Replace,
    Patch,
    Delete,
}

impl Verb {
    /// (HTTP method, x-kubernetes-action, operationId prefix)
    fn names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Verb::List => ("get", "list", "list"),
            Verb::Create => ("post", "post", "create"),
            Verb::DeleteCollection => ("delete", "deletecollection", "delete"),
            Verb::Read => ("get", "get", "read"),
            Verb::Replace => ("put", "put", "replace"),
            Verb::Patch => ("patch", "patch", "patch"),
            Verb::Delete => ("delete", "delete", "delete"),
        }
    }

    /// Inserts the operation, for objects of definition `schema` and kind `gvk`, into `item`.
    fn add(self, item: &mut Map<String, Value>, id: String, gvk: &Value, schema: &str) {
        let (method, action, _) = self.names();
        let (params, body, code) = match self {
            Verb::List => (list_params(), None, "200"),
            Verb::Create => (write_params(false), Some(body(schema)), "201"),
            Verb::DeleteCollection => {
                let mut params = delete_params();
                params.extend(list_params());
                (params, None, "200")
            }
            Verb::Read => (vec![], None, "200"),
            Verb::Replace => (write_params(false), Some(body(schema)), "200"),
            Verb::Patch => (write_params(true), Some(patch_body()), "200"),
            Verb::Delete => (delete_params(), None, "200"),
        };
        let mut op = json!({
            "operationId": id,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": params,
            "responses": json_response(schema, code),
        });
        if let (Some(body), Some(map)) = (body, op.as_object_mut()) {
            map.insert("requestBody".into(), body);
        }
        item.insert(method.to_string(), op);
    }
}

fn body(name: &str) -> Value {
    json!({"required": true, "content": {"*/*": {"schema": schema_ref(name)}}})
}

fn patch_body() -> Value {
    let content: Map<String, Value> = PATCH_TYPES
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!({"schema": schema_ref(PATCH_DEFINITION)}),
            )
        })
        .collect();
    json!({"required": true, "content": content})
}

/// Adds the paths of one resource (and its subresources) to `out`.
pub(super) fn resource_paths(
    spec: &OpenApi,
    def: &ResourceDef,
    name: &str,
    out: &mut Map<String, Value>,
) {
    let base = if def.group.is_empty() {
        format!("/api/{}", def.version)
    } else {
        format!("/apis/{}/{}", def.group, def.version)
    };
    let scope = if def.namespaced { "Namespaced" } else { "" };
    let collection = if def.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{base}/{}", def.plural)
    };
    let item_path = format!("{collection}/{{name}}");
    let words = format!("{}{}", group_word(def.group), capitalize(def.version));
    let id = |verb: Verb, suffix: &str| {
        let prefix = verb.names().2;
        match verb {
            Verb::DeleteCollection => format!("{prefix}{words}Collection{scope}{}", def.kind),
            _ => format!("{prefix}{words}{scope}{}{suffix}", def.kind),
        }
    };
    let kind = json!({"group": def.group, "version": def.version, "kind": def.kind});
    let mut params = vec![query("pretty", "string", "Indents the output when 'true'.")];
    if def.namespaced {
        params.push(path_param("namespace", "The object's namespace."));
    }

    let (collection_verbs, item_verbs): (&[Verb], &[Verb]) = if def.storage == Storage::Review {
        (&[Verb::Create], &[])
    } else if def.verbs().contains(&"deletecollection") {
        (
            &[Verb::List, Verb::Create, Verb::DeleteCollection],
            &[Verb::Read, Verb::Replace, Verb::Patch, Verb::Delete],
        )
    } else {
        (
            &[Verb::List, Verb::Create],
            &[Verb::Read, Verb::Replace, Verb::Patch, Verb::Delete],
        )
    };
    let mut collection_ops = Map::new();
    for verb in collection_verbs {
        verb.add(&mut collection_ops, id(*verb, ""), &kind, name);
    }
    collection_ops.insert("parameters".into(), Value::Array(params.clone()));
    out.insert(collection, Value::Object(collection_ops));
    if item_verbs.is_empty() {
        return;
    }
    let mut item_ops = Map::new();
    for verb in item_verbs {
        verb.add(&mut item_ops, id(*verb, ""), &kind, name);
    }
    params.push(path_param("name", "The object's name."));
    item_ops.insert("parameters".into(), Value::Array(params.clone()));
    out.insert(item_path.clone(), Value::Object(item_ops));
    if def.namespaced {
        let mut all = Map::new();
        let id = format!("list{words}{}ForAllNamespaces", def.kind);
        Verb::List.add(&mut all, id, &kind, name);
        out.insert(format!("{base}/{}", def.plural), Value::Object(all));
    }

    for sub in def.subresources {
        let suffix = capitalize(sub.name());
        let (sub_kind, sub_schema) = match sub.kind() {
            Some((g, v, k)) => (
                json!({"group": g, "version": v, "kind": k}),
                spec.definition_for_kind(&super::api_version(g, v), k)
                    .unwrap_or(name)
                    .to_string(),
            ),
            None => (kind.clone(), name.to_string()),
        };
        let mut ops = Map::new();
        for verb in sub.verbs() {
            let verb = match *verb {
                "get" => Verb::Read,
                "update" => Verb::Replace,
                "patch" => Verb::Patch,
                _ => Verb::Create,
            };
            verb.add(&mut ops, id(verb, &suffix), &sub_kind, &sub_schema);
        }
        ops.insert("parameters".into(), Value::Array(params.clone()));
        out.insert(format!("{item_path}/{}", sub.name()), Value::Object(ops));
    }
}

/// Names of the schemas a value references.
pub(super) fn referenced(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix(V3_PREFIX))
                {
                    out.push(name.to_string());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

/// The same operations in Swagger 2.0 form: bodies become `in: body` parameters, responses carry
/// their schema directly, parameter types move out of `schema`.
pub(super) fn to_v2(paths: &Value) -> Value {
    let Value::Object(paths) = paths else {
        return json!({});
    };
    let mut out = Map::new();
    for (path, item) in paths {
        let Value::Object(item) = item else { continue };
        let mut v2_item = Map::new();
        for (key, op) in item {
            if key == "parameters" {
                v2_item.insert(key.clone(), v2_params(op));
                continue;
            }
            let mut op = op.clone();
            let Some(map) = op.as_object_mut() else {
                continue;
            };
            let mut params = map
                .remove("parameters")
                .map(|p| v2_params(&p))
                .unwrap_or(json!([]));
            if let Some(body) = map.remove("requestBody") {
                let schema = body
                    .get("content")
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().next())
                    .and_then(|c| c.get("schema"))
                    .cloned()
                    .unwrap_or(json!({}));
                if let Some(list) = params.as_array_mut() {
                    list.push(
                        json!({"name": "body", "in": "body", "required": true, "schema": schema}),
                    );
                }
                let consumes: Vec<&String> = body
                    .get("content")
                    .and_then(Value::as_object)
                    .map(|c| c.keys().collect())
                    .unwrap_or_default();
                map.insert("consumes".into(), json!(consumes));
            }
            map.insert("parameters".into(), params);
            if let Some(Value::Object(responses)) = map.get_mut("responses") {
                for response in responses.values_mut() {
                    let schema = response
                        .pointer("/content/application~1json/schema")
                        .cloned();
                    if let (Some(schema), Some(r)) = (schema, response.as_object_mut()) {
                        r.remove("content");
                        r.insert("schema".into(), schema);
                    }
                }
            }
            map.insert("produces".into(), json!(["application/json"]));
            v2_item.insert(key.clone(), op);
        }
        out.insert(path.clone(), Value::Object(v2_item));
    }
    Value::Object(out)
}

fn v2_params(params: &Value) -> Value {
    let Value::Array(list) = params else {
        return json!([]);
    };
    list.iter()
        .map(|p| {
            let mut p = p.clone();
            if let Some(map) = p.as_object_mut() {
                if let Some(Value::Object(schema)) = map.remove("schema") {
                    map.extend(schema);
                }
            }
            p
        })
        .collect()
}
