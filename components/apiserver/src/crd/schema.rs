//! Structural schemas (a CRD version's `openAPIV3Schema`): checking the schema itself, and for
//! custom objects pruning unknown fields, applying defaults and validating values, with causes
//! named by field path as upstream reports them.

use hakube_apimachinery::status::StatusCause;
use serde_json::{Map, Value};

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Checks that a schema is structural: every node says its type (unless it is int-or-string or
/// keeps unknown fields), no `$ref`, no `properties` next to `additionalProperties`, map lists
/// name their keys. `path` is the schema's own field path in the CRD.
pub fn check_structural(schema: &Value, path: &str, root: bool, causes: &mut Vec<StatusCause>) {
    let Some(map) = schema.as_object() else {
        causes.push(StatusCause::invalid(path, schema, "must be an object"));
        return;
    };
    let ty = map.get("type").and_then(Value::as_str).unwrap_or("");
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    if ty.is_empty() && !int_or_string && !preserve {
        causes.push(
            StatusCause::required(join(path, "type"))
                .with_detail("must not be empty for specified object fields"),
        );
    }
    if !ty.is_empty()
        && !matches!(
            ty,
            "object" | "array" | "string" | "integer" | "number" | "boolean"
        )
    {
        causes.push(StatusCause::not_supported(
            join(path, "type"),
            ty,
            &["array", "boolean", "integer", "number", "object", "string"],
        ));
    }
    if root && ty != "object" {
        causes.push(StatusCause::invalid(
            join(path, "type"),
            ty,
            "must be object at the root",
        ));
    }
    if map.contains_key("$ref") {
        causes.push(StatusCause::forbidden(
            join(path, "$ref"),
            "$ref is not supported",
        ));
    }
    if map.contains_key("properties")
        && map
            .get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
    {
        causes.push(StatusCause::forbidden(
            join(path, "additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if ty == "array" && !map.contains_key("items") {
        causes.push(
            StatusCause::required(join(path, "items")).with_detail("must be specified for arrays"),
        );
    }
    if map.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map")
        && map
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .is_none_or(|k| k.is_empty())
    {
        causes.push(
            StatusCause::required(join(path, "x-kubernetes-list-map-keys"))
                .with_detail("must not be empty if x-kubernetes-list-type is map"),
        );
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, prop) in props {
            if root && name == "metadata" {
                check_root_metadata(prop, &join(path, "properties[metadata]"), causes);
                continue;
            }
            check_structural(prop, &format!("{path}.properties[{name}]"), false, causes);
        }
    }
    if let Some(items) = map.get("items") {
        check_structural(items, &join(path, "items"), false, causes);
    }
    if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
        check_structural(extra, &join(path, "additionalProperties"), false, causes);
    }
}

/// At the root, a schema may only restrict `metadata.name` and `metadata.generateName`.
fn check_root_metadata(schema: &Value, path: &str, causes: &mut Vec<StatusCause>) {
    if let Some(Value::Object(props)) = schema.get("properties") {
        for name in props.keys() {
            if name != "name" && name != "generateName" {
                causes.push(StatusCause::forbidden(
                    format!("{path}.properties[{name}]"),
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                ));
            }
        }
    }
}

/// Removes fields the schema doesn't know (unless it keeps unknown fields) and `null`s where
/// the field is not nullable.
pub fn prune(value: &mut Value, schema: &Value) {
    if flag(schema, "x-kubernetes-int-or-string") {
        return;
    }
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(schema, "x-kubernetes-embedded-resource");
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            map.retain(|key, v| {
                let known = props.and_then(|p| p.get(key));
                let nullable = known.or(extra).is_some_and(|s| flag(s, "nullable"));
                if v.is_null() && !nullable && (known.is_some() || extra.is_some()) {
                    return false;
                }
                known.is_some()
                    || preserve
                    || extra.is_some_and(|a| a != &Value::Bool(false))
                    || (embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata"))
            });
            for (key, v) in map.iter_mut() {
                match props.and_then(|p| p.get(key)) {
                    Some(prop) => prune(v, prop),
                    None => {
                        if let Some(extra @ Value::Object(_)) = extra {
                            prune(v, extra);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// Fills absent fields that have a `default`, at every depth.
pub fn default(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (key, prop) in props {
                    if !map.contains_key(key) {
                        if let Some(d) = prop.get("default") {
                            map.insert(key.clone(), d.clone());
                        }
                    }
                    if let Some(v) = map.get_mut(key) {
                        default(v, prop);
                    }
                }
            } else if let Some(extra @ Value::Object(_)) = schema.get("additionalProperties") {
                for v in map.values_mut() {
                    default(v, extra);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    default(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validates a value against its schema; causes are named by `path` (`spec.replicas`).
pub fn validate(value: &Value, schema: &Value, path: &str, causes: &mut Vec<StatusCause>) {
    if value.is_null() {
        if !flag(schema, "nullable") && schema.get("type").is_some() {
            causes.push(StatusCause::new(
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("")
                ),
                path,
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !matches!(type_name(value), "integer" | "string") {
            causes.push(StatusCause::new(
                "FieldValueTypeInvalid",
                format!("Invalid value: \"{}\": {path} in body must be of type integer or string: \"{}\"", type_name(value), type_name(value)),
                path,
            ));
        }
        return;
    }
    let actual = type_name(value);
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let ok = want == actual || (want == "number" && actual == "integer");
        if !ok {
            causes.push(StatusCause::new(
                "FieldValueTypeInvalid",
                format!("Invalid value: \"{actual}\": {path} in body must be of type {want}: \"{actual}\""),
                path,
            ));
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            let names: Vec<String> = allowed
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            causes.push(StatusCause::not_supported(path, value, &names));
        }
    }
    match value {
        Value::Number(n) => validate_number(n.as_f64().unwrap_or(0.0), value, schema, path, causes),
        Value::String(s) => validate_string(s, schema, path, causes),
        Value::Array(items) => validate_array(items, schema, path, causes),
        Value::Object(map) => validate_object(map, schema, path, causes),
        _ => {}
    }
}

fn number(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn validate_number(
    n: f64,
    value: &Value,
    schema: &Value,
    path: &str,
    causes: &mut Vec<StatusCause>,
) {
    if let Some(min) = number(schema, "minimum") {
        let exclusive = flag(schema, "exclusiveMinimum");
        if n < min || (exclusive && n == min) {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            causes.push(StatusCause::invalid(
                path,
                value,
                format!("{path} in body should be {op} {min}"),
            ));
        }
    }
    if let Some(max) = number(schema, "maximum") {
        let exclusive = flag(schema, "exclusiveMaximum");
        if n > max || (exclusive && n == max) {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            causes.push(StatusCause::invalid(
                path,
                value,
                format!("{path} in body should be {op} {max}"),
            ));
        }
    }
    if let Some(m) = number(schema, "multipleOf") {
        if m > 0.0 && (n / m).fract() != 0.0 {
            causes.push(StatusCause::invalid(
                path,
                value,
                format!("{path} in body should be a multiple of {m}"),
            ));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("int32")
        && (n < f64::from(i32::MIN) || n > f64::from(i32::MAX))
    {
        causes.push(StatusCause::invalid(
            path,
            value,
            format!("{path} in body must be of type int32"),
        ));
    }
}

fn validate_string(s: &str, schema: &Value, path: &str, causes: &mut Vec<StatusCause>) {
    let chars = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if chars > max {
            causes.push(StatusCause::new(
                "FieldValueTooLong",
                format!("Too long: may not be more than {max} bytes"),
                path,
            ));
        }
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if chars < min {
            causes.push(StatusCause::invalid(
                path,
                s,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(s) => causes.push(StatusCause::invalid(
                path,
                s,
                format!("{path} in body should match '{pattern}'"),
            )),
            Ok(_) => {}
            Err(_) => causes.push(StatusCause::invalid(
                path,
                s,
                format!("the schema's pattern '{pattern}' does not compile"),
            )),
        }
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        if !format_ok(format, s) {
            causes.push(StatusCause::invalid(
                path,
                s,
                format!("{path} in body must be of type {format}: \"{s}\""),
            ));
        }
    }
}

/// The formats upstream checks that clients meet most; others are accepted as strings.
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.parse::<ipnet::IpNet>().is_ok(),
        "uuid" => uuid::Uuid::parse_str(s).is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        _ => true,
    }
}

fn validate_array(items: &[Value], schema: &Value, path: &str, causes: &mut Vec<StatusCause>) {
    let len = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
        if len > max {
            causes.push(StatusCause::new(
                "FieldValueTooMany",
                format!("Too many: {len}: must have at most {max} items"),
                path,
            ));
        }
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
        if len < min {
            causes.push(StatusCause::invalid(
                path,
                Value::from(len),
                format!("{path} in body should have at least {min} items"),
            ));
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    causes.push(StatusCause::duplicate(format!("{path}[{i}]"), item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let k = key_of(item);
                if items[..i].iter().any(|other| key_of(other) == k) {
                    let shown: Map<String, Value> =
                        keys.iter().map(|n| n.to_string()).zip(k).collect();
                    causes.push(StatusCause::duplicate(
                        format!("{path}[{i}]"),
                        Value::Object(shown),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item, item_schema, &format!("{path}[{i}]"), causes);
        }
    }
}

fn validate_object(
    map: &Map<String, Value>,
    schema: &Value,
    path: &str,
    causes: &mut Vec<StatusCause>,
) {
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                causes.push(StatusCause::required(join(path, name)));
            }
        }
    }
    let len = map.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
        if len > max {
            causes.push(StatusCause::new(
                "FieldValueTooMany",
                format!("Too many: {len}: must have at most {max} items"),
                path,
            ));
        }
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
        if len < min {
            causes.push(StatusCause::invalid(
                path,
                Value::from(len),
                format!("{path} in body should have at least {min} properties"),
            ));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let extra = schema.get("additionalProperties").filter(|a| a.is_object());
    for (key, v) in map {
        let child = join(path, key);
        if let Some(prop) = props.and_then(|p| p.get(key)) {
            validate(v, prop, &child, causes);
        } else if let Some(extra) = extra {
            validate(v, extra, &child, causes);
        }
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
