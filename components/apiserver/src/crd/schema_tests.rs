use serde_json::json;

use super::*;

fn widget() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size"],
                "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                    "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                    "port": {"x-kubernetes-int-or-string": true},
                    "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "when": {"type": "string", "format": "date-time"},
                    "opt": {"type": "string", "nullable": true},
                    "nested": {"type": "object", "default": {}, "properties": {"level": {"type": "integer", "default": 3}}}
                }
            },
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }
    })
}

#[test]
fn pruning_keeps_known_and_preserved_fields() {
    let mut v = json!({"spec": {"size": 1, "bogus": 2, "extra": {"any": {"thing": 1}}, "labels": {"a": "b"}, "opt": null, "name": null}, "junk": 1});
    prune(&mut v, &widget());
    assert_eq!(
        v,
        json!({"spec": {"size": 1, "extra": {"any": {"thing": 1}}, "labels": {"a": "b"}, "opt": null}})
    );
}

#[test]
fn defaults_fill_absent_fields_at_every_depth() {
    let mut v = json!({"spec": {"size": 1}});
    default(&mut v, &widget());
    assert_eq!(v["spec"]["color"], "red");
    assert_eq!(v["spec"]["nested"], json!({"level": 3}));
    let mut kept = json!({"spec": {"size": 1, "color": "blue"}});
    default(&mut kept, &widget());
    assert_eq!(kept["spec"]["color"], "blue");
}

#[test]
fn violations_name_each_field() {
    let v = json!({"spec": {"size": 11, "color": "green", "name": "TooLong1", "port": true, "tags": ["a", "a"], "when": "yesterday"}, "status": {"ready": "yes"}});
    let mut causes = Vec::new();
    validate(&v, &widget(), "", &mut causes);
    let rendered: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    assert_eq!(
        rendered,
        vec![
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10",
            "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"",
            "spec.name: Too long: may not be more than 5 bytes",
            "spec.name: Invalid value: \"TooLong1\": spec.name in body should match '^[a-z]+$'",
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer or string: \"boolean\"",
            "spec.tags[1]: Duplicate value: \"a\"",
            "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            "status.ready: Invalid value: \"string\": status.ready in body must be of type boolean: \"string\"",
        ]
    );
    let mut missing = Vec::new();
    validate(&json!({"spec": {}}), &widget(), "", &mut missing);
    assert_eq!(missing[0].field, "spec.size");
    assert_eq!(missing[0].reason, "FieldValueRequired");
}

#[test]
fn structural_checks() {
    let mut causes = Vec::new();
    check_structural(
        &widget(),
        "spec.versions[0].schema.openAPIV3Schema",
        true,
        &mut causes,
    );
    assert!(causes.is_empty(), "{causes:?}");
    let bad = json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
        "spec": {"properties": {"x": {"type": "array"}}}
    }});
    let mut causes = Vec::new();
    check_structural(&bad, "s", true, &mut causes);
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "s.properties[metadata].properties[labels]",
            "s.properties[spec].type",
            "s.properties[spec].properties[x].items"
        ]
    );
}
