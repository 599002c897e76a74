//! Name and metadata validation with upstream's message texts.
//!
//! Each `fn(&str) -> Vec<String>` returns the upstream messages describing why
//! the value is invalid; an empty vector means the value is valid.

use serde_json::{Map, Value};

use crate::status::StatusCause;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
/// Maximum length of an RFC 1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;

const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
/// Maximum length of an RFC 1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
/// Maximum length of an RFC 1035 label.
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
/// Maximum length of the name part of a qualified name.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;

const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
/// Maximum length of a label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;

/// Upper bound on the summed length of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_BYTES: usize = 256 * 1024;

/// Formats a regex failure exactly like upstream's `RegexError`, including its
/// odd `', or '` joining of examples.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(ex);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

fn matches_dns1035_label(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_lowercase) && matches_dns1123_label(s)
}

fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        }
        _ => false,
    }
}

/// Validates an RFC 1123 subdomain (most object names).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(s) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Validates an RFC 1123 label (namespaces and some other names).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(s) {
        // Upstream gives a more helpful hint when dots are the only problem.
        if matches_dns1123_subdomain(s) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Validates an RFC 1035 label (service names: must start with a letter).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(s) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Validates a qualified name: an optional DNS-subdomain prefix and `/`,
/// then a name of up to 63 characters (label keys, annotation keys, finalizers).
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Validates a label value (may be empty).
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !s.is_empty() && !matches_qualified_name_part(s) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Validates a name that must be usable as a single URL path segment.
pub fn path_segment_name(s: &str) -> Vec<String> {
    for bad in [".", ".."] {
        if s == bad {
            return vec![format!("may not be '{bad}'")];
        }
    }
    ["/", "%"]
        .iter()
        .filter(|bad| s.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// Which rule an object's `metadata.name` must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (the default for most kinds).
    Subdomain,
    /// RFC 1123 label (e.g. namespaces).
    Label,
    /// RFC 1035 label (e.g. services).
    Dns1035Label,
    /// Anything usable as a path segment (e.g. RBAC objects).
    PathSegment,
}

impl NameRule {
    /// Runs this rule on `name`, returning upstream's messages.
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(name),
            NameRule::Label => dns1123_label(name),
            NameRule::Dns1035Label => dns1035_label(name),
            NameRule::PathSegment => path_segment_name(name),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(field: &str, v: &Value, want: &str) -> StatusCause {
    StatusCause::invalid(field, v, format!("must be {want}, not {}", type_name(v)))
}

/// Reads an optional string field; `Err` carries a type-mismatch cause.
fn opt_str<'a>(meta: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, StatusCause> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(&format!("metadata.{key}"), other, "a string")),
    }
}

/// Reads an optional object field; `Err` carries a type-mismatch cause.
fn opt_map<'a>(
    meta: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, StatusCause> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(wrong_type(&format!("metadata.{key}"), other, "an object")),
    }
}

/// Validates an object's `metadata` like upstream's `ValidateObjectMeta`.
///
/// `meta` is the `metadata` value itself. The caller is expected to have
/// turned `generateName` into a name already, so a missing name is an error.
pub fn validate_object_meta(
    meta: &Value,
    namespaced: bool,
    name_rule: NameRule,
) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    let empty = Map::new();
    let meta = match meta {
        Value::Object(m) => m,
        Value::Null => &empty,
        other => {
            causes.push(wrong_type("metadata", other, "an object"));
            return causes;
        }
    };

    match opt_str(meta, "generateName") {
        Ok(Some(g)) if !g.is_empty() => {
            // Upstream masks a trailing dash (replacing the last two characters
            // with "a") so a prefix like "web-" passes the name rule.
            let mut masked = g.to_string();
            if g.len() > 1 && g.ends_with('-') {
                masked.pop();
                masked.pop();
                masked.push('a');
            }
            for msg in name_rule.check(&masked) {
                causes.push(StatusCause::invalid("metadata.generateName", g, msg));
            }
        }
        Ok(_) => {}
        Err(c) => causes.push(c),
    }

    match opt_str(meta, "name") {
        Ok(Some(name)) if !name.is_empty() => {
            for msg in name_rule.check(name) {
                causes.push(StatusCause::invalid("metadata.name", name, msg));
            }
        }
        Ok(_) => causes.push(
            StatusCause::required("metadata.name").with_detail("name or generateName is required"),
        ),
        Err(c) => causes.push(c),
    }

    match opt_str(meta, "namespace") {
        Ok(ns) => {
            let ns = ns.unwrap_or("");
            if namespaced {
                if ns.is_empty() {
                    causes.push(StatusCause::required("metadata.namespace"));
                } else {
                    for msg in dns1123_label(ns) {
                        causes.push(StatusCause::invalid("metadata.namespace", ns, msg));
                    }
                }
            } else if !ns.is_empty() {
                causes.push(StatusCause::forbidden(
                    "metadata.namespace",
                    "not allowed on this type",
                ));
            }
        }
        Err(c) => causes.push(c),
    }

    match opt_map(meta, "labels") {
        Ok(Some(labels)) => {
            for (k, v) in labels {
                for msg in qualified_name(k) {
                    causes.push(StatusCause::invalid("metadata.labels", k.as_str(), msg));
                }
                match v {
                    Value::String(s) => {
                        for msg in label_value(s) {
                            causes.push(StatusCause::invalid("metadata.labels", s.as_str(), msg));
                        }
                    }
                    other => causes.push(wrong_type("metadata.labels", other, "a string")),
                }
            }
        }
        Ok(None) => {}
        Err(c) => causes.push(c),
    }

    match opt_map(meta, "annotations") {
        Ok(Some(annotations)) => {
            let mut total = 0usize;
            for (k, v) in annotations {
                // Upstream ignores case in annotation keys.
                for msg in qualified_name(&k.to_ascii_lowercase()) {
                    causes.push(StatusCause::invalid(
                        "metadata.annotations",
                        k.as_str(),
                        msg,
                    ));
                }
                total += k.len();
                match v {
                    Value::String(s) => total += s.len(),
                    other => causes.push(wrong_type("metadata.annotations", other, "a string")),
                }
            }
            if total > TOTAL_ANNOTATION_SIZE_LIMIT_BYTES {
                causes.push(StatusCause::new(
                    "FieldValueTooLong",
                    format!(
                        "Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT_BYTES} bytes"
                    ),
                    "metadata.annotations",
                ));
            }
        }
        Ok(None) => {}
        Err(c) => causes.push(c),
    }

    match meta.get("finalizers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(f) => {
                        for msg in qualified_name(f) {
                            causes.push(StatusCause::invalid(
                                "metadata.finalizers",
                                f.as_str(),
                                msg,
                            ));
                        }
                    }
                    other => causes.push(wrong_type("metadata.finalizers", other, "a string")),
                }
            }
        }
        Some(other) => causes.push(wrong_type("metadata.finalizers", other, "an array")),
    }

    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subdomain_accepts_and_rejects() {
        assert!(dns1123_subdomain("example.com").is_empty());
        assert!(dns1123_subdomain("a").is_empty());
        assert!(dns1123_subdomain("0-a.b-1").is_empty());
        let errs = dns1123_subdomain("Bad_Name");
        assert_eq!(
            errs,
            vec!["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]
        );
        for bad in ["", "-a", "a-", "a..b", ".a", "a.", "a.-b", "A"] {
            assert_eq!(dns1123_subdomain(bad).len(), 1, "{bad:?}");
        }
        let long = "a".repeat(254);
        assert_eq!(
            dns1123_subdomain(&long),
            vec!["must be no more than 253 characters"]
        );
        assert!(dns1123_subdomain(&"a".repeat(253)).is_empty());
    }

    #[test]
    fn label_messages() {
        assert!(dns1123_label("my-name").is_empty());
        assert!(dns1123_label("123-abc").is_empty());
        assert_eq!(
            dns1123_label("My"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        assert_eq!(dns1123_label("a.b"), vec!["must not contain dots"]);
        let errs = dns1123_label(&"a".repeat(64));
        assert_eq!(errs, vec!["must be no more than 63 characters"]);
        assert_eq!(dns1123_label("").len(), 1);
    }

    #[test]
    fn dns1035() {
        assert!(dns1035_label("abc-123").is_empty());
        assert_eq!(
            dns1035_label("1abc"),
            vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]
        );
        assert_eq!(dns1035_label("a-").len(), 1);
        assert_eq!(dns1035_label("a.b").len(), 1);
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "a",
            "MyName",
            "my.name",
            "123-abc",
            "a_b",
            "example.com/MyName",
            "k8s.io/x",
        ] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(
            qualified_name("a_"),
            vec!["name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"]
        );
        let errs = qualified_name("");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0], "name part must be non-empty");
        assert_eq!(qualified_name("/a"), vec!["prefix part must be non-empty"]);
        let errs = qualified_name("Bad/a");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        let errs = qualified_name("a/b/c");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("a qualified name must consist of"));
        assert!(errs[0].ends_with(
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
        assert_eq!(
            qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
    }

    #[test]
    fn label_values() {
        assert!(label_value("").is_empty());
        assert!(label_value("my_value").is_empty());
        assert!(label_value(&"a".repeat(63)).is_empty());
        assert_eq!(
            label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert_eq!(
            label_value("-x"),
            vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]
        );
        assert_eq!(label_value("a b").len(), 1);
    }

    #[test]
    fn path_segments() {
        assert!(path_segment_name("system:admin").is_empty());
        assert_eq!(path_segment_name("."), vec!["may not be '.'"]);
        assert_eq!(path_segment_name(".."), vec!["may not be '..'"]);
        assert_eq!(
            path_segment_name("a/b%c"),
            vec!["may not contain '/'", "may not contain '%'"]
        );
    }

    fn fields(causes: &[StatusCause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn meta_valid() {
        let meta = json!({
            "name": "p3", "namespace": "default",
            "labels": {"app": "x", "example.com/tier": ""},
            "annotations": {"Example.com/Note": "anything at all"},
            "finalizers": ["kubernetes.io/pvc-protection", "foregroundDeletion"]
        });
        assert!(validate_object_meta(&meta, true, NameRule::Subdomain).is_empty());
        let meta = json!({"name": "node-1"});
        assert!(validate_object_meta(&meta, false, NameRule::Subdomain).is_empty());
    }

    #[test]
    fn meta_name_required_and_invalid() {
        let causes =
            validate_object_meta(&json!({"namespace": "default"}), true, NameRule::Subdomain);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason, "FieldValueRequired");
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(
            causes[0].message,
            "Required value: name or generateName is required"
        );

        let causes = validate_object_meta(&json!({"name": "Bad_Name"}), false, NameRule::Subdomain);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason, "FieldValueInvalid");
        assert!(causes[0]
            .message
            .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));

        let causes = validate_object_meta(&json!({"name": "a.b"}), false, NameRule::Label);
        assert_eq!(
            causes[0].message,
            "Invalid value: \"a.b\": must not contain dots"
        );
        let causes = validate_object_meta(&json!({"name": "1a"}), false, NameRule::Dns1035Label);
        assert_eq!(causes.len(), 1);
        let causes = validate_object_meta(&json!({"name": "a/b"}), false, NameRule::PathSegment);
        assert_eq!(
            causes[0].message,
            "Invalid value: \"a/b\": may not contain '/'"
        );
        let causes = validate_object_meta(&json!({"name": 5}), false, NameRule::Subdomain);
        assert_eq!(fields(&causes), vec!["metadata.name"]);
        assert_eq!(
            causes[0].message,
            "Invalid value: 5: must be a string, not number"
        );
    }

    #[test]
    fn meta_generate_name() {
        let causes = validate_object_meta(
            &json!({"name": "web-x1", "generateName": "web-"}),
            false,
            NameRule::Subdomain,
        );
        assert!(causes.is_empty());
        let causes = validate_object_meta(
            &json!({"name": "web-x1", "generateName": "Web-"}),
            false,
            NameRule::Subdomain,
        );
        assert_eq!(fields(&causes), vec!["metadata.generateName"]);
    }

    #[test]
    fn meta_namespace_rules() {
        let causes = validate_object_meta(&json!({"name": "a"}), true, NameRule::Subdomain);
        assert_eq!(fields(&causes), vec!["metadata.namespace"]);
        assert_eq!(causes[0].message, "Required value");
        let causes = validate_object_meta(
            &json!({"name": "a", "namespace": "x"}),
            false,
            NameRule::Subdomain,
        );
        assert_eq!(causes[0].reason, "FieldValueForbidden");
        assert_eq!(causes[0].message, "Forbidden: not allowed on this type");
        let causes = validate_object_meta(
            &json!({"name": "a", "namespace": "Bad"}),
            true,
            NameRule::Subdomain,
        );
        assert_eq!(fields(&causes), vec!["metadata.namespace"]);
        assert_eq!(causes[0].reason, "FieldValueInvalid");
    }

    #[test]
    fn meta_labels_annotations_finalizers() {
        let meta = json!({
            "name": "a",
            "labels": {"bad key": "ok", "k": "bad value", "n": 1},
            "annotations": {"x/y/z": "v", "ok": true},
            "finalizers": ["a/b/c", 3]
        });
        let causes = validate_object_meta(&meta, false, NameRule::Subdomain);
        assert_eq!(
            fields(&causes),
            vec![
                "metadata.labels",
                "metadata.labels",
                "metadata.labels",
                "metadata.annotations",
                "metadata.annotations",
                "metadata.finalizers",
                "metadata.finalizers"
            ]
        );
        assert!(causes[0]
            .message
            .starts_with("Invalid value: \"bad key\": name part"));
        assert!(causes[1]
            .message
            .starts_with("Invalid value: \"bad value\": a valid label"));
        assert_eq!(
            causes[2].message,
            "Invalid value: 1: must be a string, not number"
        );

        let causes = validate_object_meta(
            &json!({"name": "a", "labels": ["x"]}),
            false,
            NameRule::Subdomain,
        );
        assert_eq!(fields(&causes), vec!["metadata.labels"]);
        let causes = validate_object_meta(
            &json!({"name": "a", "finalizers": "x"}),
            false,
            NameRule::Subdomain,
        );
        assert_eq!(fields(&causes), vec!["metadata.finalizers"]);
        assert!(validate_object_meta(
            &json!({"name": "a", "labels": null}),
            false,
            NameRule::Subdomain
        )
        .is_empty());
    }

    #[test]
    fn meta_annotation_size() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES);
        let causes = validate_object_meta(
            &json!({"name": "a", "annotations": {"k": big}}),
            false,
            NameRule::Subdomain,
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].reason, "FieldValueTooLong");
        assert_eq!(causes[0].field, "metadata.annotations");
        assert_eq!(
            causes[0].message,
            "Too long: must have at most 262144 bytes"
        );
        let fits = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_BYTES - 1);
        assert!(validate_object_meta(
            &json!({"name": "a", "annotations": {"k": fits}}),
            false,
            NameRule::Subdomain
        )
        .is_empty());
    }

    #[test]
    fn meta_not_object() {
        let causes = validate_object_meta(&json!("x"), true, NameRule::Subdomain);
        assert_eq!(fields(&causes), vec!["metadata"]);
        let causes = validate_object_meta(&Value::Null, false, NameRule::Subdomain);
        assert_eq!(fields(&causes), vec!["metadata.name"]);
    }
}
