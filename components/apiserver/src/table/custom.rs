//! Tables for custom resources: Name, the CRD's `additionalPrinterColumns` (JSONPath cells
//! formatted by column type), and Age when the CRD names no columns.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{human_duration, IncludeObject};
use crate::crd::{jsonpath, CustomResource, PrinterColumn};

fn columns(custom: &CustomResource) -> Vec<PrinterColumn> {
    let mut out = vec![PrinterColumn {
        name: "Name".into(),
        kind: "string".into(),
        format: "name".into(),
        description: "Name of the object.".into(),
        priority: 0,
        json_path: ".metadata.name".into(),
    }];
    if custom.columns.is_empty() {
        out.push(PrinterColumn {
            name: "Age".into(),
            kind: "date".into(),
            format: String::new(),
            description: "When the object was created, shown as an age.".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        });
    } else {
        out.extend(custom.columns.iter().cloned());
    }
    out
}

fn cell(column: &PrinterColumn, object: &Value, now: DateTime<Utc>) -> Value {
    let value = jsonpath::parse(&column.json_path)
        .ok()
        .and_then(|p| p.eval(object).cloned());
    let Some(value) = value else {
        return Value::Null;
    };
    match column.kind.as_str() {
        "date" => match value
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        {
            Some(t) => json!(human_duration(now - t.with_timezone(&Utc))),
            None => json!("<unknown>"),
        },
        "integer" | "number" | "boolean" => value,
        _ => match value {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
    }
}

pub fn table(
    custom: &CustomResource,
    items: &[Value],
    metadata: Map<String, Value>,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let columns = columns(custom);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.kind, "format": c.format,
                   "description": c.description, "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut row = Map::new();
            let cells: Vec<Value> = columns.iter().map(|c| cell(c, item, now)).collect();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(object) = include.embed(item) {
                row.insert("object".into(), object);
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}
