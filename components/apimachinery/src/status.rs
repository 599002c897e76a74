//! Kubernetes `Status` errors with upstream's codes, reasons and messages.
//!
//! Constructors exist both as associated functions (`ApiError::not_found`) and
//! as free functions of this module (`status::not_found`).

use std::fmt::{Display, Write as _};

use serde_json::{Map, Value};

/// Conflict detail used when a write carries a stale `resourceVersion`.
pub const OBJECT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// One field-level reason for a failure (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusCause {
    /// Machine-readable cause type, e.g. `FieldValueInvalid`.
    pub reason: String,
    /// Human-readable text without the field prefix, e.g. `Required value`.
    pub message: String,
    /// Field path, e.g. `metadata.name`.
    pub field: String,
}

/// Extra data of a failure (`details`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusDetails {
    pub name: String,
    pub group: String,
    /// The resource (for not-found/conflict) or Kind (for invalid).
    pub kind: String,
    pub causes: Vec<StatusCause>,
    pub retry_after_seconds: Option<u32>,
}

/// An API failure that renders as a `metav1.Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<StatusDetails>,
    /// Also sent as a `Retry-After` header by the server.
    pub retry_after_seconds: Option<u32>,
}

/// A value that may appear after `Invalid value:` and friends, rendered the
/// way upstream's field errors print Go values.
pub trait BadValue {
    /// Renders the value as upstream would (strings quoted, scalars bare).
    fn render(&self) -> String;
}

impl<T: BadValue + ?Sized> BadValue for &T {
    fn render(&self) -> String {
        (**self).render()
    }
}

impl BadValue for str {
    fn render(&self) -> String {
        go_quote(self)
    }
}

impl BadValue for String {
    fn render(&self) -> String {
        go_quote(self)
    }
}

impl BadValue for Value {
    fn render(&self) -> String {
        match self {
            // Upstream substitutes the string "null" for nil, then quotes it.
            Value::Null => go_quote("null"),
            Value::String(s) => go_quote(s),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        }
    }
}

macro_rules! bare_bad_value {
    ($($t:ty),*) => {$(
        impl BadValue for $t {
            fn render(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
bare_bad_value!(bool, i32, i64, u32, u64, usize, f64);

/// Quotes like Go's `%q`: double quotes with backslash escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl StatusCause {
    /// A cause with arbitrary reason and message.
    pub fn new(
        reason: impl Into<String>,
        message: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        StatusCause {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }
    }

    /// Appends `: detail` to the message (upstream's detail suffix).
    pub fn with_detail(mut self, detail: impl Display) -> Self {
        let detail = detail.to_string();
        if !detail.is_empty() {
            self.message.push_str(": ");
            self.message.push_str(&detail);
        }
        self
    }

    /// `Invalid value: <value>: <detail>`.
    pub fn invalid(field: impl Into<String>, value: impl BadValue, detail: impl Display) -> Self {
        Self::new(
            "FieldValueInvalid",
            format!("Invalid value: {}", value.render()),
            field,
        )
        .with_detail(detail)
    }

    /// `Required value`; add a detail with [`StatusCause::with_detail`].
    pub fn required(field: impl Into<String>) -> Self {
        Self::new("FieldValueRequired", "Required value", field)
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: impl Display) -> Self {
        Self::new("FieldValueForbidden", "Forbidden", field).with_detail(detail)
    }

    /// `Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl BadValue,
        supported: &[&str],
    ) -> Self {
        let cause = Self::new(
            "FieldValueNotSupported",
            format!("Unsupported value: {}", value.render()),
            field,
        );
        if supported.is_empty() {
            return cause;
        }
        let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        cause.with_detail(format!("supported values: {}", quoted.join(", ")))
    }

    /// `Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: impl BadValue) -> Self {
        Self::new(
            "FieldValueDuplicate",
            format!("Duplicate value: {}", value.render()),
            field,
        )
    }

    /// `Not found: <value>`.
    pub fn not_found(field: impl Into<String>, value: impl BadValue) -> Self {
        Self::new(
            "FieldValueNotFound",
            format!("Not found: {}", value.render()),
            field,
        )
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::new("FieldValueTooLong", "Too long", field)
            .with_detail(format!("may not be more than {max} {unit}"))
    }

    /// The cause as upstream prints it in an aggregate: `<field>: <message>`.
    pub fn to_error_string(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// `resource` or `resource.group`, like upstream's `GroupResource.String()`.
fn qualified(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

/// Joins cause strings like upstream's aggregate: duplicates dropped, one
/// error bare, several in brackets.
fn aggregate(causes: &[StatusCause]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for c in causes {
        let s = c.to_error_string();
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    match seen.len() {
        1 => seen.swap_remove(0),
        _ => format!("[{}]", seen.join(", ")),
    }
}

impl ApiError {
    /// An error with no details.
    pub fn new(code: u16, reason: impl Into<String>, message: impl Display) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message: message.to_string(),
            details: None,
            retry_after_seconds: None,
        }
    }

    fn with_details(mut self, details: StatusDetails) -> Self {
        self.details = Some(details);
        self
    }

    fn resource_details(group: &str, resource: &str, name: &str) -> StatusDetails {
        StatusDetails {
            name: name.to_string(),
            group: group.to_string(),
            kind: resource.to_string(),
            ..StatusDetails::default()
        }
    }

    /// 404 NotFound: `pods "p3" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!(
                "{} {} not found",
                qualified(resource, group),
                go_quote(name)
            ),
        )
        .with_details(Self::resource_details(group, resource, name))
    }

    /// 409 AlreadyExists: `pods "p3" already exists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} {} already exists",
                qualified(resource, group),
                go_quote(name)
            ),
        )
        .with_details(Self::resource_details(group, resource, name))
    }

    /// 409 Conflict: `Operation cannot be fulfilled on pods "p3": <msg>`.
    pub fn conflict(group: &str, resource: &str, name: &str, msg: impl Display) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {}: {msg}",
                qualified(resource, group),
                go_quote(name)
            ),
        )
        .with_details(Self::resource_details(group, resource, name))
    }

    /// 422 Invalid: `Pod "p3" is invalid: <causes>`; `kind` is the Kind.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<StatusCause>) -> Self {
        let qkind = qualified(kind, group);
        let message = if causes.is_empty() {
            format!("{qkind} {} is invalid", go_quote(name))
        } else {
            format!(
                "{qkind} {} is invalid: {}",
                go_quote(name),
                aggregate(&causes)
            )
        };
        Self::new(422, "Invalid", message).with_details(StatusDetails {
            name: name.to_string(),
            group: group.to_string(),
            kind: kind.to_string(),
            causes,
            retry_after_seconds: None,
        })
    }

    /// 400 BadRequest.
    pub fn bad_request(msg: impl Display) -> Self {
        Self::new(400, "BadRequest", msg)
    }

    /// 401 Unauthorized with the authenticator's fixed message.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden with a free-form message.
    pub fn forbidden(msg: impl Display) -> Self {
        Self::new(403, "Forbidden", msg)
    }

    /// 403 Forbidden from an authorization denial, with upstream's wording.
    /// `resource` may carry a subresource (`pods/log`); `name` may be empty.
    pub fn forbidden_resource(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Self {
        let base = resource.split('/').next().unwrap_or(resource);
        let scope = match namespace {
            Some(ns) if !ns.is_empty() => format!("in the namespace {}", go_quote(ns)),
            _ => "at the cluster scope".to_string(),
        };
        let reason = format!(
            "User {} cannot {verb} resource {} in API group {} {scope}",
            go_quote(user),
            go_quote(resource),
            go_quote(group)
        );
        let qres = qualified(base, group);
        let message = if name.is_empty() {
            format!("{qres} is forbidden: {reason}")
        } else {
            format!("{qres} {} is forbidden: {reason}", go_quote(name))
        };
        Self::new(403, "Forbidden", message).with_details(Self::resource_details(group, base, name))
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(msg: impl Display) -> Self {
        Self::new(405, "MethodNotAllowed", msg)
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(msg: impl Display) -> Self {
        Self::new(406, "NotAcceptable", msg)
    }

    /// 415 UnsupportedMediaType. Upstream's text lists only the accepted
    /// types; the rejected `content_type` is not part of it.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        let _ = content_type;
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 429 TooManyRequests; a zero delay sends no `retryAfterSeconds`.
    pub fn too_many_requests(msg: impl Display, retry_after_seconds: u32) -> Self {
        let retry = (retry_after_seconds > 0).then_some(retry_after_seconds);
        let mut err = Self::new(429, "TooManyRequests", msg).with_details(StatusDetails {
            retry_after_seconds: retry,
            ..StatusDetails::default()
        });
        err.retry_after_seconds = retry;
        err
    }

    /// 413 RequestEntityTooLarge: `Request entity too large: limit is N`.
    pub fn request_entity_too_large(limit_bytes: u64) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit_bytes}"),
        )
    }

    /// 410 Expired (e.g. a too-old resourceVersion or continue token).
    pub fn expired(msg: impl Display) -> Self {
        Self::new(410, "Expired", msg)
    }

    /// 410 Gone.
    pub fn gone(msg: impl Display) -> Self {
        Self::new(410, "Gone", msg)
    }

    /// 500 InternalError: `Internal error occurred: <msg>`.
    pub fn internal(msg: impl Display) -> Self {
        let msg = msg.to_string();
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
        )
        .with_details(StatusDetails {
            causes: vec![StatusCause::new("", msg, "")],
            ..StatusDetails::default()
        })
    }

    /// 504 Timeout: `Timeout: <msg>` (upstream prefixes the message).
    pub fn timeout(msg: impl Display) -> Self {
        Self::new(504, "Timeout", format!("Timeout: {msg}")).with_details(StatusDetails::default())
    }

    /// 503 ServiceUnavailable.
    pub fn service_unavailable(msg: impl Display) -> Self {
        Self::new(503, "ServiceUnavailable", msg)
    }

    /// Renders the error as a `metav1.Status` object, field order and
    /// omitted empties as upstream's JSON encoding produces them.
    pub fn to_status(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), "Status".into());
        m.insert("apiVersion".into(), "v1".into());
        m.insert("metadata".into(), Value::Object(Map::new()));
        m.insert("status".into(), "Failure".into());
        if !self.message.is_empty() {
            m.insert("message".into(), self.message.clone().into());
        }
        if !self.reason.is_empty() {
            m.insert("reason".into(), self.reason.clone().into());
        }
        let mut details = self.details.clone();
        if let Some(secs) = self.retry_after_seconds {
            let d = details.get_or_insert_with(StatusDetails::default);
            d.retry_after_seconds.get_or_insert(secs);
        }
        if let Some(d) = details {
            m.insert("details".into(), details_to_json(&d));
        }
        m.insert("code".into(), self.code.into());
        Value::Object(m)
    }

    /// Parses a `Status` object back; `None` if `v` is not a Status.
    pub fn from_status(v: &Value) -> Option<ApiError> {
        let obj = v.as_object()?;
        if obj.get("kind").and_then(Value::as_str) != Some("Status") {
            return None;
        }
        let code = obj.get("code").and_then(Value::as_u64).unwrap_or(0);
        let details = obj
            .get("details")
            .and_then(Value::as_object)
            .map(details_from_json);
        Some(ApiError {
            code: u16::try_from(code).unwrap_or(0),
            reason: str_field(obj, "reason"),
            message: str_field(obj, "message"),
            retry_after_seconds: details.as_ref().and_then(|d| d.retry_after_seconds),
            details,
        })
    }
}

fn str_field(m: &Map<String, Value>, key: &str) -> String {
    m.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn details_to_json(d: &StatusDetails) -> Value {
    let mut m = Map::new();
    for (k, v) in [("name", &d.name), ("group", &d.group), ("kind", &d.kind)] {
        if !v.is_empty() {
            m.insert(k.into(), v.clone().into());
        }
    }
    if !d.causes.is_empty() {
        let causes = d
            .causes
            .iter()
            .map(|c| {
                let mut cm = Map::new();
                for (k, v) in [
                    ("reason", &c.reason),
                    ("message", &c.message),
                    ("field", &c.field),
                ] {
                    if !v.is_empty() {
                        cm.insert(k.into(), v.clone().into());
                    }
                }
                Value::Object(cm)
            })
            .collect();
        m.insert("causes".into(), Value::Array(causes));
    }
    if let Some(secs) = d.retry_after_seconds.filter(|s| *s > 0) {
        m.insert("retryAfterSeconds".into(), secs.into());
    }
    Value::Object(m)
}

fn details_from_json(m: &Map<String, Value>) -> StatusDetails {
    let causes = m
        .get("causes")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_object)
                .map(|c| StatusCause {
                    reason: str_field(c, "reason"),
                    message: str_field(c, "message"),
                    field: str_field(c, "field"),
                })
                .collect()
        })
        .unwrap_or_default();
    StatusDetails {
        name: str_field(m, "name"),
        group: str_field(m, "group"),
        kind: str_field(m, "kind"),
        causes,
        retry_after_seconds: m
            .get("retryAfterSeconds")
            .and_then(Value::as_u64)
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| *s > 0),
    }
}

/// See [`ApiError::from_status`].
pub fn from_status(v: &Value) -> Option<ApiError> {
    ApiError::from_status(v)
}

/// See [`ApiError::not_found`].
pub fn not_found(group: &str, resource: &str, name: &str) -> ApiError {
    ApiError::not_found(group, resource, name)
}

/// See [`ApiError::already_exists`].
pub fn already_exists(group: &str, resource: &str, name: &str) -> ApiError {
    ApiError::already_exists(group, resource, name)
}

/// See [`ApiError::conflict`].
pub fn conflict(group: &str, resource: &str, name: &str, msg: impl Display) -> ApiError {
    ApiError::conflict(group, resource, name, msg)
}

/// See [`ApiError::invalid`].
pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<StatusCause>) -> ApiError {
    ApiError::invalid(group, kind, name, causes)
}

/// See [`ApiError::bad_request`].
pub fn bad_request(msg: impl Display) -> ApiError {
    ApiError::bad_request(msg)
}

/// See [`ApiError::unauthorized`].
pub fn unauthorized() -> ApiError {
    ApiError::unauthorized()
}

/// See [`ApiError::forbidden`].
pub fn forbidden(msg: impl Display) -> ApiError {
    ApiError::forbidden(msg)
}

/// See [`ApiError::forbidden_resource`].
pub fn forbidden_resource(
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: &str,
) -> ApiError {
    ApiError::forbidden_resource(user, verb, group, resource, namespace, name)
}

/// See [`ApiError::method_not_allowed`].
pub fn method_not_allowed(msg: impl Display) -> ApiError {
    ApiError::method_not_allowed(msg)
}

/// See [`ApiError::not_acceptable`].
pub fn not_acceptable(msg: impl Display) -> ApiError {
    ApiError::not_acceptable(msg)
}

/// See [`ApiError::unsupported_media_type`].
pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> ApiError {
    ApiError::unsupported_media_type(content_type, accepted)
}

/// See [`ApiError::too_many_requests`].
pub fn too_many_requests(msg: impl Display, retry_after_seconds: u32) -> ApiError {
    ApiError::too_many_requests(msg, retry_after_seconds)
}

/// See [`ApiError::request_entity_too_large`].
pub fn request_entity_too_large(limit_bytes: u64) -> ApiError {
    ApiError::request_entity_too_large(limit_bytes)
}

/// See [`ApiError::expired`].
pub fn expired(msg: impl Display) -> ApiError {
    ApiError::expired(msg)
}

/// See [`ApiError::gone`].
pub fn gone(msg: impl Display) -> ApiError {
    ApiError::gone(msg)
}

/// See [`ApiError::internal`].
pub fn internal(msg: impl Display) -> ApiError {
    ApiError::internal(msg)
}

/// See [`ApiError::timeout`].
pub fn timeout(msg: impl Display) -> ApiError {
    ApiError::timeout(msg)
}

/// See [`ApiError::service_unavailable`].
pub fn service_unavailable(msg: impl Display) -> ApiError {
    ApiError::service_unavailable(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn not_found_shape_and_order() {
        let e = not_found("", "pods", "p3");
        assert_eq!(e.code, 404);
        assert_eq!(e.to_string(), "pods \"p3\" not found");
        let s = e.to_status();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"p3\" not found","reason":"NotFound","details":{"name":"p3","kind":"pods"},"code":404}"#
        );
        let e = ApiError::not_found("apps", "deployments", "d");
        assert_eq!(e.message, "deployments.apps \"d\" not found");
        assert_eq!(
            e.to_status()["details"],
            json!({"name":"d","group":"apps","kind":"deployments"})
        );
    }

    #[test]
    fn exists_and_conflict() {
        let e = already_exists("", "pods", "p3");
        assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
        assert_eq!(e.message, "pods \"p3\" already exists");
        let e = conflict("apps", "deployments", "d", OBJECT_MODIFIED);
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on deployments.apps \"d\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn invalid_messages() {
        let one = invalid(
            "",
            "Pod",
            "p3",
            vec![StatusCause::required("spec.containers")],
        );
        assert_eq!(one.code, 422);
        assert_eq!(one.reason, "Invalid");
        assert_eq!(
            one.message,
            "Pod \"p3\" is invalid: spec.containers: Required value"
        );
        let two = invalid(
            "",
            "Pod",
            "p3",
            vec![
                StatusCause::invalid("metadata.name", json!("X"), "msg"),
                StatusCause::required("spec.containers"),
                StatusCause::required("spec.containers"),
            ],
        );
        assert_eq!(
            two.message,
            "Pod \"p3\" is invalid: [metadata.name: Invalid value: \"X\": msg, spec.containers: Required value]"
        );
        let st = two.to_status();
        assert_eq!(st["details"]["kind"], "Pod");
        assert!(st["details"].get("group").is_none());
        assert_eq!(st["details"]["causes"].as_array().unwrap().len(), 3);
        assert_eq!(
            st["details"]["causes"][0],
            json!({"reason":"FieldValueInvalid","message":"Invalid value: \"X\": msg","field":"metadata.name"})
        );
        let none = invalid("apps", "Deployment", "d", vec![]);
        assert_eq!(none.message, "Deployment.apps \"d\" is invalid");
        assert!(none.to_status()["details"].get("causes").is_none());
        // Duplicates collapse to one bare entry like upstream's aggregate.
        let dup = invalid(
            "",
            "Pod",
            "p",
            vec![StatusCause::required("a"), StatusCause::required("a")],
        );
        assert_eq!(dup.message, "Pod \"p\" is invalid: a: Required value");
    }

    #[test]
    fn cause_messages() {
        assert_eq!(
            StatusCause::invalid("f", json!(5), "bad").message,
            "Invalid value: 5: bad"
        );
        assert_eq!(
            StatusCause::invalid("f", json!(true), "bad").message,
            "Invalid value: true: bad"
        );
        // Callers pass `&Value` (the documented form) as well as owned values.
        let null = json!(null);
        assert_eq!(
            StatusCause::invalid("f", &null, "").message,
            "Invalid value: \"null\""
        );
        assert!(null.is_null());
        assert_eq!(
            StatusCause::invalid("f", json!({"a":1}), "x").message,
            "Invalid value: {\"a\":1}: x"
        );
        assert_eq!(
            StatusCause::invalid("f", "a\"b\n", "x").message,
            "Invalid value: \"a\\\"b\\n\": x"
        );
        let r = StatusCause::required("spec.x").with_detail("need it");
        assert_eq!(
            (r.reason.as_str(), r.message.as_str()),
            ("FieldValueRequired", "Required value: need it")
        );
        let f = StatusCause::forbidden("spec.y", "nope");
        assert_eq!(
            (f.reason.as_str(), f.message.as_str()),
            ("FieldValueForbidden", "Forbidden: nope")
        );
        let n = StatusCause::not_supported("spec.p", "x", &["a", "b"]);
        assert_eq!(n.reason, "FieldValueNotSupported");
        assert_eq!(
            n.message,
            "Unsupported value: \"x\": supported values: \"a\", \"b\""
        );
        assert_eq!(
            StatusCause::not_supported("p", json!("x"), &[]).message,
            "Unsupported value: \"x\""
        );
        let d = StatusCause::duplicate("spec.ports[1]", json!("x"));
        assert_eq!(
            (d.reason.as_str(), d.message.as_str()),
            ("FieldValueDuplicate", "Duplicate value: \"x\"")
        );
        let t = StatusCause::too_long("data", 1048576);
        assert_eq!(
            (t.reason.as_str(), t.message.as_str()),
            (
                "FieldValueTooLong",
                "Too long: may not be more than 1048576 bytes"
            )
        );
        assert_eq!(
            StatusCause::too_long("x", 1).message,
            "Too long: may not be more than 1 byte"
        );
        assert_eq!(StatusCause::not_found("x", "y").message, "Not found: \"y\"");
    }

    #[test]
    fn simple_errors() {
        let cases: Vec<(ApiError, u16, &str, &str)> = vec![
            (bad_request("bad"), 400, "BadRequest", "bad"),
            (unauthorized(), 401, "Unauthorized", "Unauthorized"),
            (forbidden("no"), 403, "Forbidden", "no"),
            (method_not_allowed("m"), 405, "MethodNotAllowed", "m"),
            (not_acceptable("n"), 406, "NotAcceptable", "n"),
            (
                request_entity_too_large(3145728),
                413,
                "RequestEntityTooLarge",
                "Request entity too large: limit is 3145728",
            ),
            (expired("too old"), 410, "Expired", "too old"),
            (gone("g"), 410, "Gone", "g"),
            (
                internal("boom"),
                500,
                "InternalError",
                "Internal error occurred: boom",
            ),
            (timeout("slow"), 504, "Timeout", "Timeout: slow"),
            (
                service_unavailable("down"),
                503,
                "ServiceUnavailable",
                "down",
            ),
        ];
        for (e, code, reason, msg) in cases {
            assert_eq!(
                (e.code, e.reason.as_str(), e.message.as_str()),
                (code, reason, msg)
            );
            let st = e.to_status();
            assert_eq!(st["code"], code);
            assert_eq!(st["reason"], reason);
            assert_eq!(st["status"], "Failure");
        }
        assert!(bad_request("x").to_status().get("details").is_none());
        assert_eq!(
            internal("boom").to_status()["details"],
            json!({"causes":[{"message":"boom"}]})
        );
    }

    #[test]
    fn media_type() {
        let e = unsupported_media_type(
            "text/plain",
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ],
        );
        assert_eq!(e.code, 415);
        assert_eq!(e.reason, "UnsupportedMediaType");
        assert_eq!(
            e.message,
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        );
    }

    #[test]
    fn retry_after() {
        let e = too_many_requests("slow down", 1);
        assert_eq!(e.retry_after_seconds, Some(1));
        let st = e.to_status();
        assert_eq!(st["details"], json!({"retryAfterSeconds": 1}));
        assert_eq!(too_many_requests("x", 0).to_status()["details"], json!({}));
        let mut e = service_unavailable("down");
        e.retry_after_seconds = Some(5);
        assert_eq!(e.to_status()["details"]["retryAfterSeconds"], 5);
    }

    #[test]
    fn forbidden_resource_texts() {
        let e = forbidden_resource("x", "list", "", "pods", Some("default"), "");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods is forbidden: User \"x\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let e = forbidden_resource("x", "get", "apps", "deployments/scale", None, "d");
        assert_eq!(
            e.message,
            "deployments.apps \"d\" is forbidden: User \"x\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
        );
        assert_eq!(
            e.to_status()["details"],
            json!({"name":"d","group":"apps","kind":"deployments"})
        );
    }

    #[test]
    fn full_upstream_shape() {
        let mut e = not_found("apps", "deployments", "p3");
        if let Some(d) = e.details.as_mut() {
            d.causes
                .push(StatusCause::invalid("metadata.name", "X", "m"));
            d.retry_after_seconds = Some(1);
        }
        assert_eq!(
            serde_json::to_string(&e.to_status()).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"p3\" not found","reason":"NotFound","details":{"name":"p3","group":"apps","kind":"deployments","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"X\": m","field":"metadata.name"}],"retryAfterSeconds":1},"code":404}"#
        );
    }

    #[test]
    fn round_trip() {
        let errs = vec![
            invalid(
                "",
                "Pod",
                "p",
                vec![StatusCause::required("spec.containers")],
            ),
            too_many_requests("x", 3),
            not_found("apps", "deployments", "d"),
            bad_request("b"),
        ];
        for e in errs {
            assert_eq!(from_status(&e.to_status()), Some(e));
        }
    }

    #[test]
    fn from_status_rejects_non_status() {
        assert_eq!(from_status(&json!({"kind": "Pod"})), None);
        assert_eq!(from_status(&json!([1])), None);
        assert_eq!(from_status(&json!(null)), None);
        let e = from_status(
            &json!({"kind":"Status","code":"x","details":{"causes":[1, {"field":"f"}]}}),
        )
        .unwrap();
        assert_eq!(e.code, 0);
        assert_eq!(
            e.details.unwrap().causes,
            vec![StatusCause::new("", "", "f")]
        );
    }

    #[test]
    fn error_trait() {
        let e: Box<dyn std::error::Error> = Box::new(not_found("", "pods", "a"));
        assert_eq!(e.to_string(), "pods \"a\" not found");
    }
}
