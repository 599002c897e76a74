//! Decoding of Kubernetes protobuf request bodies
//! (`application/vnd.kubernetes.protobuf`) into the objects' JSON form.
//!
//! kubectl's typed clients send create/update bodies as protobuf. A body is
//! the 4-byte magic `k8s\0` followed by a `runtime.Unknown` envelope whose
//! `typeMeta` names the apiVersion and kind and whose `raw` holds the object's
//! own message. Messages are decoded with the embedded schema generated from
//! upstream's `generated.proto` and Go type files (see
//! `scripts/gen-protobuf-schema.py`), and rendered the way Go's JSON encoder
//! renders the decoded struct, so the result equals what the JSON API carries:
//!
//! * JSON member names come from the Go `json` tags (they differ from the
//!   proto names in a few places, e.g. `uID` -> `uid`); structs Go embeds
//!   without a name (`Volume.volumeSource`, `Probe.handler`, ...) are merged
//!   into their parent.
//! * Go's protobuf marshaller writes every non-pointer field, even when it is
//!   zero; zero values of `omitempty` non-pointer fields are dropped again, as
//!   Go's JSON encoder would, while pointer fields present on the wire are kept
//!   (`replicas: 0`).
//! * Integers are JSON numbers, `bytes` standard base64, and `Time`,
//!   `MicroTime`, `Duration`, `Quantity`, `IntOrString`, `RawExtension`,
//!   `FieldsV1` and list wrappers such as `ExtraValue` take their custom forms.
//! * Unknown field numbers are skipped (forward compatibility); malformed
//!   encodings are errors. Invalid UTF-8 in strings becomes U+FFFD, as in Go.

mod format;
mod schema;
mod wire;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Number, Value};

use schema::{Scalar, Schema, Shape, Special, Ty, META_V1};
use wire::{Reader, WireValue};

/// Media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Prefix that distinguishes Kubernetes protobuf from other encodings.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Bound on message nesting, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Kinds every group version accepts that live in the meta.k8s.io/v1 package
/// (e.g. a `DeleteOptions` body sent with `apiVersion: apps/v1`).
const META_KINDS: &[&str] = &[
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "Status",
    "UpdateOptions",
    "WatchEvent",
];

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error(
        "request body is not Kubernetes protobuf: it must start with the 4-byte prefix \"k8s\\0\""
    )]
    MissingMagic,
    /// The bytes break the protobuf wire format (truncated, bad wire type, ...).
    #[error("malformed protobuf in {at}: {problem}")]
    Malformed { at: String, problem: String },
    /// The envelope's `typeMeta` lacks `apiVersion` or `kind`.
    #[error("protobuf envelope does not name the object's {0}")]
    MissingTypeMeta(&'static str),
    /// The envelope asks for a content encoding or type this decoder lacks.
    #[error("unsupported protobuf envelope {field} {value:?}")]
    UnsupportedEnvelope { field: &'static str, value: String },
    /// No proto package is known for the apiVersion.
    #[error("no protobuf schema for apiVersion {0:?}")]
    UnknownApiVersion(String),
    /// The apiVersion is known but has no message for the kind.
    #[error("no protobuf schema for kind {kind:?} in apiVersion {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    /// Well-formed bytes whose value has no JSON form (e.g. a bad IntOrString type).
    #[error("invalid value in {at}: {reason}")]
    InvalidValue { at: String, reason: String },
    /// Messages nest deeper than any Kubernetes object does.
    #[error("protobuf nesting in {at} is deeper than {max} levels")]
    TooDeep { at: String, max: usize },
    /// The embedded schema file failed to load (a build defect, not bad input).
    #[error("embedded protobuf schema is broken: {0}")]
    Schema(String),
}

/// Decodes a Kubernetes protobuf request body into the object's JSON form
/// (as the JSON API would carry it, with apiVersion and kind set).
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let schema = Schema::get().map_err(ProtobufError::Schema)?;
    Decoder { schema }.body(body, 0)
}

/// Where in the object a value sits, rendered only when an error needs it.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Root(&'a str),
    Field(&'a str),
    Index(usize),
    Key(&'a str),
}

#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

impl<'a> Path<'a> {
    fn root(name: &'a str) -> Self {
        Path {
            parent: None,
            seg: Seg::Root(name),
        }
    }

    fn child(&'a self, seg: Seg<'a>) -> Path<'a> {
        Path {
            parent: Some(self),
            seg,
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.seg {
            Seg::Root(name) => write!(f, "{name}"),
            // Inline fields have no name of their own.
            Seg::Field("") => Ok(()),
            Seg::Field(name) => write!(f, ".{name}"),
            Seg::Index(i) => write!(f, "[{i}]"),
            Seg::Key(k) => write!(f, "[{k:?}]"),
        }
    }
}

fn malformed(at: &Path, problem: impl fmt::Display) -> ProtobufError {
    ProtobufError::Malformed {
        at: at.to_string(),
        problem: problem.to_string(),
    }
}

fn invalid(at: &Path, reason: impl Into<String>) -> ProtobufError {
    ProtobufError::InvalidValue {
        at: at.to_string(),
        reason: reason.into(),
    }
}

fn wire_mismatch(at: &Path, got: &WireValue, expected: u8) -> ProtobufError {
    malformed(
        at,
        format!(
            "wire type {} where {expected} was expected",
            got.wire_type()
        ),
    )
}

fn expect_bytes<'b>(value: WireValue<'b>, at: &Path) -> Result<&'b [u8], ProtobufError> {
    match value {
        WireValue::Bytes(b) => Ok(b),
        other => Err(wire_mismatch(at, &other, 2)),
    }
}

fn expect_varint(value: Option<WireValue>, at: &Path) -> Result<u64, ProtobufError> {
    match value {
        None => Ok(0),
        Some(WireValue::Varint(v)) => Ok(v),
        Some(other) => Err(wire_mismatch(at, &other, 0)),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads a small fixed-layout message (fields 1..=4), keeping the last value
/// of each field as protobuf does; other field numbers are skipped.
fn small_fields<'b>(
    bytes: &'b [u8],
    at: &Path,
) -> Result<[Option<WireValue<'b>>; 4], ProtobufError> {
    let mut out = [None; 4];
    let mut r = Reader::new(bytes);
    while let Some((number, value)) = r.field().map_err(|e| malformed(at, e))? {
        if let Some(slot) = out.get_mut(number as usize - 1) {
            *slot = Some(value);
        }
    }
    Ok(out)
}

/// Go's `omitempty` test for the scalar and slice values it applies to.
fn is_go_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn float(v: f64, at: &Path) -> Result<Value, ProtobufError> {
    if !v.is_finite() {
        return Err(invalid(at, format!("{v} has no JSON form")));
    }
    // Go prints integral floats without a fraction, so they read back as integers.
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        return Ok(Value::from(v as i64));
    }
    Number::from_f64(v)
        .map(Value::Number)
        .ok_or_else(|| invalid(at, format!("{v} has no JSON form")))
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Decodes one scalar; the integer casts are protobuf's own conversion rules
/// (an int32 travels sign-extended to 64 bits and is truncated back).
fn scalar(ty: Scalar, value: WireValue, at: &Path) -> Result<Value, ProtobufError> {
    use WireValue as W;
    Ok(match (ty, value) {
        (Scalar::Int32, W::Varint(v)) => Value::from(v as i32),
        (Scalar::Int64, W::Varint(v)) => Value::from(v as i64),
        (Scalar::Uint32, W::Varint(v)) => Value::from(v as u32),
        (Scalar::Uint64, W::Varint(v)) => Value::from(v),
        (Scalar::Sint32, W::Varint(v)) => Value::from(zigzag(v) as i32),
        (Scalar::Sint64, W::Varint(v)) => Value::from(zigzag(v)),
        (Scalar::Bool, W::Varint(v)) => Value::Bool(v != 0),
        (Scalar::Fixed32, W::Fixed32(v)) => Value::from(v),
        (Scalar::Sfixed32, W::Fixed32(v)) => Value::from(v as i32),
        (Scalar::Float, W::Fixed32(v)) => float(f64::from(f32::from_bits(v)), at)?,
        (Scalar::Fixed64, W::Fixed64(v)) => Value::from(v),
        (Scalar::Sfixed64, W::Fixed64(v)) => Value::from(v as i64),
        (Scalar::Double, W::Fixed64(v)) => float(f64::from_bits(v), at)?,
        (Scalar::String, W::Bytes(b)) => Value::String(lossy(b)),
        // Go's JSON encoder writes []byte as standard, padded base64.
        (Scalar::Bytes, W::Bytes(b)) => Value::String(STANDARD.encode(b)),
        (ty, other) => return Err(wire_mismatch(at, &other, ty.wire_type())),
    })
}

/// The value of a scalar absent from a map entry.
fn default_scalar(ty: Scalar) -> Value {
    match ty {
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Bool => Value::Bool(false),
        _ => Value::from(0),
    }
}

/// Per-field accumulation while a message is read.
enum Slot<'b> {
    Empty,
    Scalar(Value),
    /// Every occurrence of a singular message; protobuf merges them, which is
    /// the same as decoding their concatenation.
    Chunks(Vec<&'b [u8]>),
    List(Vec<Value>),
    Map(Map<String, Value>),
}

struct Decoder {
    schema: &'static Schema,
}

impl Decoder {
    /// Decodes a whole `k8s\0` + `runtime.Unknown` body.
    fn body(&self, body: &[u8], depth: usize) -> Result<Value, ProtobufError> {
        let rest = body
            .strip_prefix(MAGIC.as_slice())
            .ok_or(ProtobufError::MissingMagic)?;
        let at = Path::root("runtime.Unknown");
        let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
        let (mut encoding, mut content_type) = (String::new(), String::new());
        let mut r = Reader::new(rest);
        while let Some((number, value)) = r.field().map_err(|e| malformed(&at, e))? {
            match number {
                1 => {
                    let type_meta = at.child(Seg::Field("typeMeta"));
                    let bytes = expect_bytes(value, &type_meta)?;
                    let [v, k, ..] = small_fields(bytes, &type_meta)?;
                    if let Some(v) = v {
                        api_version = lossy(expect_bytes(v, &type_meta)?);
                    }
                    if let Some(k) = k {
                        kind = lossy(expect_bytes(k, &type_meta)?);
                    }
                }
                2 => raw = expect_bytes(value, &at.child(Seg::Field("raw")))?,
                3 => encoding = lossy(expect_bytes(value, &at)?),
                4 => content_type = lossy(expect_bytes(value, &at)?),
                _ => {}
            }
        }
        if !encoding.is_empty() {
            return Err(ProtobufError::UnsupportedEnvelope {
                field: "contentEncoding",
                value: encoding,
            });
        }
        if !content_type.is_empty() && content_type != CONTENT_TYPE {
            return Err(ProtobufError::UnsupportedEnvelope {
                field: "contentType",
                value: content_type,
            });
        }
        if api_version.is_empty() {
            return Err(ProtobufError::MissingTypeMeta("apiVersion"));
        }
        if kind.is_empty() {
            return Err(ProtobufError::MissingTypeMeta("kind"));
        }
        let index = self.kind_message(&api_version, &kind)?;
        let object = match self.message(index, raw, &Path::root(&kind), depth + 1)? {
            Value::Object(object) => object,
            _ => {
                return Err(invalid(
                    &Path::root(&kind),
                    "object did not decode to a map",
                ))
            }
        };
        let mut out = Map::with_capacity(object.len() + 2);
        out.insert("apiVersion".into(), Value::String(api_version));
        out.insert("kind".into(), Value::String(kind));
        for (k, v) in object {
            out.entry(k).or_insert(v);
        }
        Ok(Value::Object(out))
    }

    fn kind_message(&self, api_version: &str, kind: &str) -> Result<usize, ProtobufError> {
        let package = self
            .schema
            .group_versions
            .get(api_version)
            .ok_or_else(|| ProtobufError::UnknownApiVersion(api_version.to_string()))?;
        if let Some(i) = self.schema.message_index(&format!("{package}.{kind}")) {
            if self.schema.messages[i].is_kind {
                return Ok(i);
            }
        }
        if META_KINDS.contains(&kind) {
            if let Some(i) = self.schema.message_index(&format!("{META_V1}.{kind}")) {
                return Ok(i);
            }
        }
        Err(ProtobufError::UnknownKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })
    }

    fn message(
        &self,
        index: usize,
        bytes: &[u8],
        at: &Path,
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        if depth > MAX_DEPTH {
            return Err(ProtobufError::TooDeep {
                at: at.to_string(),
                max: MAX_DEPTH,
            });
        }
        let msg = &self.schema.messages[index];
        if let Some(special) = msg.special {
            return self.special(special, bytes, at, depth);
        }
        let mut slots: Vec<Slot> = msg.fields.iter().map(|_| Slot::Empty).collect();
        let mut r = Reader::new(bytes);
        while let Some((number, value)) = r.field().map_err(|e| malformed(at, e))? {
            // Unknown numbers come from newer clients; protobuf says skip them.
            let Some((i, field)) = msg.field(number) else {
                continue;
            };
            if field.json_name == "-" {
                continue;
            }
            let fat = at.child(Seg::Field(&field.json_name));
            match field.shape {
                Shape::Single(Ty::Scalar(ty)) => slots[i] = Slot::Scalar(scalar(ty, value, &fat)?),
                Shape::Single(Ty::Message(_)) => {
                    let chunk = expect_bytes(value, &fat)?;
                    match &mut slots[i] {
                        Slot::Chunks(chunks) => chunks.push(chunk),
                        slot => *slot = Slot::Chunks(vec![chunk]),
                    }
                }
                Shape::Repeated(ty) => {
                    let mut items = match std::mem::replace(&mut slots[i], Slot::Empty) {
                        Slot::List(items) => items,
                        _ => Vec::new(),
                    };
                    self.repeated(ty, value, &fat, depth, &mut items)?;
                    slots[i] = Slot::List(items);
                }
                Shape::Map(key_ty, value_ty) => {
                    let entry = expect_bytes(value, &fat)?;
                    let (k, v) = self.map_entry(key_ty, value_ty, entry, &fat, depth)?;
                    match &mut slots[i] {
                        Slot::Map(map) => {
                            map.insert(k, v);
                        }
                        slot => *slot = Slot::Map(Map::from_iter([(k, v)])),
                    }
                }
            }
        }
        if msg.list_wrapper {
            // e.g. ExtraValue: Go's JSON is the bare list of items.
            return Ok(match slots.into_iter().next() {
                Some(Slot::List(items)) => Value::Array(items),
                _ => Value::Array(Vec::new()),
            });
        }
        let mut out = Map::new();
        for (field, slot) in msg.fields.iter().zip(slots) {
            let fat = at.child(Seg::Field(&field.json_name));
            let value = match (slot, field.shape) {
                (Slot::Empty, _) => continue,
                (Slot::Scalar(v), _) => v,
                (Slot::List(items), _) => Value::Array(items),
                (Slot::Map(map), _) => Value::Object(map),
                (Slot::Chunks(chunks), Shape::Single(Ty::Message(m))) => {
                    let joined: Cow<[u8]> = match chunks.as_slice() {
                        [one] => Cow::Borrowed(one),
                        many => Cow::Owned(many.concat()),
                    };
                    self.message(m, &joined, &fat, depth + 1)?
                }
                (Slot::Chunks(_), _) => continue,
            };
            if field.inline {
                // Go flattens embedded structs; a same-named outer field wins.
                match value {
                    Value::Object(inner) => {
                        for (k, v) in inner {
                            out.entry(k).or_insert(v);
                        }
                    }
                    _ => return Err(invalid(&fat, "inline field did not decode to an object")),
                }
                continue;
            }
            if field.omit_zero && is_go_empty(&value) {
                continue;
            }
            out.insert(field.json_name.clone(), value);
        }
        Ok(Value::Object(out))
    }

    /// Appends one occurrence of a repeated field: a message, a scalar, or a
    /// packed run of numeric scalars.
    fn repeated(
        &self,
        ty: Ty,
        value: WireValue,
        at: &Path,
        depth: usize,
        items: &mut Vec<Value>,
    ) -> Result<(), ProtobufError> {
        let item_at = at.child(Seg::Index(items.len()));
        match ty {
            Ty::Message(m) => {
                let bytes = expect_bytes(value, &item_at)?;
                items.push(self.message(m, bytes, &item_at, depth + 1)?);
            }
            Ty::Scalar(s) => match value {
                WireValue::Bytes(packed) if s.wire_type() != 2 => {
                    let mut r = Reader::new(packed);
                    while !r.is_empty() {
                        let item = match s.wire_type() {
                            1 => r.fixed64().map(WireValue::Fixed64),
                            5 => r.fixed32().map(WireValue::Fixed32),
                            _ => r.varint().map(WireValue::Varint),
                        }
                        .map_err(|e| malformed(at, e))?;
                        items.push(scalar(s, item, at)?);
                    }
                }
                other => items.push(scalar(s, other, &item_at)?),
            },
        }
        Ok(())
    }

    /// Decodes one map entry message (1 key, 2 value).
    fn map_entry(
        &self,
        key_ty: Scalar,
        value_ty: Ty,
        bytes: &[u8],
        at: &Path,
        depth: usize,
    ) -> Result<(String, Value), ProtobufError> {
        let mut key = None;
        let mut scalar_value = None;
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut r = Reader::new(bytes);
        while let Some((number, value)) = r.field().map_err(|e| malformed(at, e))? {
            match (number, value_ty) {
                (1, _) => key = Some(scalar(key_ty, value, at)?),
                (2, Ty::Scalar(s)) => scalar_value = Some(scalar(s, value, at)?),
                (2, Ty::Message(_)) => chunks.push(expect_bytes(value, at)?),
                _ => {}
            }
        }
        // JSON object keys are strings; Kubernetes maps only have string keys.
        let key = match key.unwrap_or_else(|| default_scalar(key_ty)) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let value = match value_ty {
            Ty::Scalar(s) => scalar_value.unwrap_or_else(|| default_scalar(s)),
            Ty::Message(m) => {
                let key_at = at.child(Seg::Key(&key));
                self.message(m, &chunks.concat(), &key_at, depth + 1)?
            }
        };
        Ok((key, value))
    }

    /// Types whose Go JSON form is custom.
    fn special(
        &self,
        special: Special,
        bytes: &[u8],
        at: &Path,
        depth: usize,
    ) -> Result<Value, ProtobufError> {
        let [f1, f2, f3, _] = small_fields(bytes, at)?;
        let string = |v: Option<WireValue>| -> Result<Option<String>, ProtobufError> {
            v.map(|v| expect_bytes(v, at).map(lossy)).transpose()
        };
        match special {
            Special::Time => {
                // Go's Time unmarshaller ignores nanos; an empty message is the zero time.
                let seconds = expect_varint(f1, at)? as i64;
                if bytes.is_empty() || seconds == format::GO_ZERO_TIME_SECONDS {
                    return Ok(Value::Null);
                }
                format::rfc3339(seconds, None)
                    .map(Value::String)
                    .ok_or_else(|| invalid(at, format!("time {seconds}s is out of range")))
            }
            Special::MicroTime => {
                let seconds = expect_varint(f1, at)? as i64;
                let nanos = expect_varint(f2, at)? as i32;
                if bytes.is_empty() {
                    return Ok(Value::Null);
                }
                // Go truncates to microseconds, then normalizes like time.Unix.
                let micros = i128::from(seconds) * 1_000_000 + i128::from(nanos / 1000);
                let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
                let secs = i64::try_from(secs)
                    .map_err(|_| invalid(at, format!("time {seconds}s is out of range")))?;
                if secs == format::GO_ZERO_TIME_SECONDS && frac == 0 {
                    return Ok(Value::Null);
                }
                format::rfc3339(secs, Some(frac as u32))
                    .map(Value::String)
                    .ok_or_else(|| invalid(at, format!("time {seconds}s is out of range")))
            }
            Special::Duration => Ok(Value::String(format::go_duration(
                expect_varint(f1, at)? as i64
            ))),
            Special::Quantity => match string(f1)? {
                // A zero Quantity (empty message) prints as "0" in Go.
                None => Ok(Value::String("0".into())),
                Some(s) if s.is_empty() => Err(invalid(at, "quantity is empty")),
                Some(s) => Ok(Value::String(s)),
            },
            Special::IntOrString => match expect_varint(f1, at)? {
                0 => Ok(Value::from(expect_varint(f2, at)? as i32)),
                1 => Ok(Value::String(string(f3)?.unwrap_or_default())),
                other => Err(invalid(
                    at,
                    format!("IntOrString type {other} is neither 0 (int) nor 1 (string)"),
                )),
            },
            Special::RawExtension => {
                let raw = f1
                    .map(|v| expect_bytes(v, at))
                    .transpose()?
                    .unwrap_or_default();
                if raw.is_empty() {
                    Ok(Value::Null)
                } else if raw.starts_with(MAGIC) {
                    // An embedded object encoded as protobuf in its own right.
                    self.body(raw, depth + 1)
                } else {
                    serde_json::from_slice(raw)
                        .map_err(|e| invalid(at, format!("embedded object is not JSON: {e}")))
                }
            }
            Special::FieldsV1 => {
                let raw = f1
                    .map(|v| expect_bytes(v, at))
                    .transpose()?
                    .unwrap_or_default();
                if raw.is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_slice(raw)
                    .map_err(|e| invalid(at, format!("fieldsV1 is not JSON: {e}")))
            }
            Special::GroupVersion => {
                // Go renders GroupVersion as its "group/version" string.
                let group = string(f1)?.unwrap_or_default();
                let version = string(f2)?.unwrap_or_default();
                Ok(Value::String(if group.is_empty() {
                    version
                } else {
                    format!("{group}/{version}")
                }))
            }
        }
    }
}
