//! The REST verbs on stored resources: get, list, create, update, patch, delete and
//! deletecollection, with their subresources. Every write goes through one pipeline: decode
//! and type-check, default, validate, compare with what is stored (no change → no write), then
//! an etcd transaction that fails if someone else wrote first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hakube_apimachinery::labels::{self, LabelSelector};
use hakube_apimachinery::protobuf::{self, ProtobufError};
use hakube_apimachinery::status::{self, ApiError, StatusCause};
use hakube_apimachinery::{patch, strategic};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::allocator::{self, Claims, NODE_PORTS, SERVICE_IPS};
use crate::authn::UserInfo;
use crate::cache::CachedObject;
use crate::fieldsel::ObjectFieldSelector;
use crate::fieldvalidation::{self, FieldValidation};
use crate::objects::{self, meta_mut};
use crate::registry::{ResourceDef, Storage, Subresource};
use crate::storage::{Extras, StoreError, Stored};
use crate::{apply, defaults, events, openapi, validate, State};

/// What a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Subresource>,
    /// Who is writing, for managedFields (the `fieldManager` parameter or the User-Agent).
    pub field_manager: Option<String>,
}

impl Target {
    pub fn segment(&self) -> &'static str {
        match self.def.storage {
            Storage::Etcd(s) => s,
            Storage::Review => self.def.plural,
        }
    }

    fn key(&self, state: &State) -> Result<String, ApiError> {
        let name = self
            .name
            .as_deref()
            .ok_or_else(|| status::bad_request("a resource name is required"))?;
        Ok(state
            .store
            .key(self.segment(), self.namespace.as_deref(), name))
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    fn not_found(&self) -> ApiError {
        status::not_found(self.def.group, self.def.plural, self.name())
    }
}

/// Maps storage failures onto API errors.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted => {
            status::expired("The resourceVersion for the provided list is too old.")
        }
        other => status::internal(other.to_string()),
    }
}

fn dry_run(query: &HashMap<String, String>) -> bool {
    query.get("dryRun").is_some_and(|v| v == "All")
}

/// Decodes a create or update body: JSON (also when no Content-Type is sent, as the Python
/// client does) or Kubernetes protobuf (kubectl's typed clients).
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            status::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        protobuf::CONTENT_TYPE => protobuf::decode(body).map_err(|e| match e {
            ProtobufError::Schema(_) => status::internal(e.to_string()),
            ProtobufError::MissingMagic | ProtobufError::UnsupportedEnvelope { .. } => {
                status::unsupported_media_type(media, BODY_TYPES)
            }
            other => status::bad_request(format!("decoding the protobuf body: {other}")),
        }),
        other => Err(status::unsupported_media_type(other, BODY_TYPES)),
    }
}

const BODY_TYPES: &[&str] = &["application/json", protobuf::CONTENT_TYPE];

/// The manager a write is recorded under: `fieldManager`, else the User-Agent's program name
/// (upstream's default: `kubectl/v1.33.1 (linux/amd64) ...` → `kubectl`).
pub fn field_manager(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        if m.chars().count() > 128 {
            return Err(status::bad_request(format!(
                "fieldManager: Too long: may not be more than 128 bytes, got {}",
                m.len()
            )));
        }
        if m.chars().any(|c| c.is_control()) {
            return Err(status::bad_request(
                "fieldManager: Invalid value: may only contain printable characters",
            ));
        }
        return Ok(m.clone());
    }
    let agent = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .map(str::trim)
        .filter(|ua| !ua.is_empty())
        .unwrap_or("unknown");
    Ok(agent.chars().take(128).collect())
}

/// The schema managedFields are computed against: the served kind (events are stored in their
/// core/v1 form and not tracked).
fn ownership_schema(def: &ResourceDef) -> Option<openapi::SchemaNode<'static>> {
    if def.is_events_v1() {
        return None;
    }
    if let Some(custom) = def.custom {
        return Some(openapi::SchemaNode::root(&custom.openapi));
    }
    openapi::spec().kind(&def.api_version(), def.kind)
}

fn ownership_scope(t: &Target) -> apply::Scope {
    match t.sub {
        Some(Subresource::Status) => apply::Scope::Status,
        _ => apply::Scope::Main,
    }
}

/// Records the write in managedFields unless the mutation managed them itself (apply).
fn record_ownership(t: &Target, old: Option<&Value>, new: &mut Value) {
    let (Some(manager), Some(schema)) = (&t.field_manager, ownership_schema(t.def)) else {
        return;
    };
    let old_managed = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .cloned();
    match new.pointer("/metadata/managedFields") {
        // A write that leaves managedFields out keeps them.
        None => {
            if let Some(kept) = old_managed {
                meta_mut(new).insert("managedFields".into(), kept);
            }
        }
        Some(reset) if *reset == json!([{}]) => {}
        Some(sent) if old.is_some() && Some(sent) != old_managed.as_ref() => return,
        Some(_) => {}
    }
    let api_version = t.def.api_version();
    apply::record_update(
        old,
        new,
        Some(schema),
        &apply::Writer {
            manager,
            api_version: &api_version,
            scope: ownership_scope(t),
        },
    );
}

/// The body's bytes when it is JSON (duplicate keys can only be seen there).
fn json_bytes<'b>(headers: &HeaderMap, body: &'b [u8]) -> Option<&'b [u8]> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    (media != protobuf::CONTENT_TYPE).then_some(body)
}

/// Applies the request's `fieldValidation` to an incoming object of the given kind.
fn check_fields(
    query: &HashMap<String, String>,
    (api_version, kind): (&str, &str),
    object: &Value,
    raw: Option<&[u8]>,
) -> Result<(), ApiError> {
    let mode = FieldValidation::from_query(query)?;
    for warning in fieldvalidation::check(mode, api_version, kind, object, raw)? {
        fieldvalidation::warn(warning);
    }
    Ok(())
}

/// The request body, checked and decoded into its storage form (core/v1 for events).
fn to_storage(
    def: &ResourceDef,
    mut object: Value,
    expect: (&str, &str),
) -> Result<Value, ApiError> {
    let (api_version, kind) = expect;
    let Some(map) = object.as_object_mut() else {
        return Err(status::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: expected a JSON object",
            api_version
        )));
    };
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != api_version => {
            return Err(status::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
        _ => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != kind => {
            return Err(status::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({kind})"
            )))
        }
        _ => {}
    }
    map.insert("apiVersion".into(), json!(api_version));
    map.insert("kind".into(), json!(kind));
    if let Some(custom) = def.custom {
        return custom_to_storage(def, custom, object);
    }
    let typed = (def.codec)(object).map_err(|e| {
        status::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: {e}",
            def.version
        ))
    })?;
    Ok(if def.is_events_v1() {
        events::to_core(typed)
    } else {
        typed
    })
}

/// A custom object as stored: metadata checked as ObjectMeta, unknown fields pruned, defaults
/// applied, in the CRD's storage version.
fn custom_to_storage(
    def: &ResourceDef,
    custom: &crate::crd::CustomResource,
    mut object: Value,
) -> Result<Value, ApiError> {
    let kind = def.kind;
    if let Some(meta) = object.get("metadata").cloned() {
        let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            serde_json::from_value(meta).map_err(|e| {
                status::bad_request(format!(
                    "{kind} in version \"{}\" cannot be handled as a {kind}: metadata: {e}",
                    def.version
                ))
            })?;
        if let Some(map) = object.as_object_mut() {
            map.insert(
                "metadata".into(),
                serde_json::to_value(typed).unwrap_or_else(|_| json!({})),
            );
        }
    }
    crate::crd::schema::prune(&mut object, &custom.structural);
    crate::crd::schema::default(&mut object, &custom.structural);
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(custom.storage_api_version));
    }
    Ok(object)
}

/// A stored object in the form the client asked for.
pub fn to_wire(def: &ResourceDef, object: Value) -> Value {
    if let Some(custom) = def.custom {
        // conversion: None — only the apiVersion changes; defaults also apply on read.
        let mut object = object;
        crate::crd::schema::default(&mut object, &custom.structural);
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), json!(def.api_version()));
        }
        return object;
    }
    if def.is_events_v1() {
        events::from_core(object)
    } else {
        object
    }
}

fn kind_of(def: &ResourceDef) -> (String, &'static str) {
    (def.api_version(), def.kind)
}

fn invalid(def: &ResourceDef, name: &str, causes: Vec<StatusCause>) -> ApiError {
    status::invalid(def.group, def.kind, name, causes)
}

// ---------------------------------------------------------------------------------------------
// Reads

pub async fn get(state: &State, t: &Target) -> Result<(StatusCode, Value), ApiError> {
    let stored = state
        .store
        .get(&t.key(state)?)
        .await
        .map_err(store_error)?
        .ok_or_else(|| t.not_found())?;
    match t.sub {
        Some(Subresource::Scale) => Ok((StatusCode::OK, to_scale(t.def, &stored.object)?)),
        _ => Ok((StatusCode::OK, to_wire(t.def, stored.object))),
    }
}

/// Label and field selectors of a list or watch.
pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: Option<ObjectFieldSelector>,
}

impl Selectors {
    pub fn parse(def: &ResourceDef, query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let labels = match query.get("labelSelector") {
            Some(s) => labels::parse(s).map_err(|e| status::bad_request(e.to_string()))?,
            None => LabelSelector::everything(),
        };
        let fields = match query.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(ObjectFieldSelector::parse(def, s)?),
            None => None,
        };
        Ok(Selectors { labels, fields })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_none()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(objects::labels(object))
            && self.fields.as_ref().is_none_or(|f| f.matches(object))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start_relative: &str) -> String {
    use base64::Engine;
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start_relative.to_string(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    use base64::Engine;
    let bad = || status::bad_request("continue key is not valid: the token could not be decoded");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.start.contains("..") || t.start.starts_with('/') {
        return Err(bad());
    }
    Ok(t)
}

fn parse_rv(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| status::bad_request(format!("invalid resource version: {raw}")))
}

/// The revision a list reads at: 0 means "the latest", which is also a consistent read.
fn list_revision(query: &HashMap<String, String>) -> Result<i64, ApiError> {
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    match query.get("resourceVersionMatch").map(String::as_str) {
        Some("Exact") => {
            if rv.is_empty() || rv == "0" {
                return Err(status::bad_request(
                    "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\" or unset",
                ));
            }
            parse_rv(rv)
        }
        Some("NotOlderThan") | None | Some("") => {
            if !rv.is_empty() {
                parse_rv(rv)?;
            }
            Ok(0)
        }
        Some(other) => Err(status::bad_request(format!(
            "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

pub async fn list(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
) -> Result<(StatusCode, Value), ApiError> {
    let selectors = Selectors::parse(t.def, query)?;
    let limit = list_limit(query)?;
    let prefix = state.store.collection(t.segment(), t.namespace.as_deref());
    if let Some((items, revision)) =
        cached_items(state, t, query, &selectors, limit, &prefix).await?
    {
        let items: Vec<Value> = items.iter().map(|s| to_wire(t.def, s.object())).collect();
        return Ok((
            StatusCode::OK,
            json!({
                "kind": format!("{}List", t.def.kind),
                "apiVersion": t.def.api_version(),
                "metadata": {"resourceVersion": revision.to_string()},
                "items": items,
            }),
        ));
    }
    let (mut revision, mut start) = match query.get("continue").filter(|s| !s.is_empty()) {
        Some(token) => {
            let c = decode_continue(token)?;
            (c.rv, Some(format!("{prefix}{}", c.start)))
        }
        None => (list_revision(query)?, None),
    };
    let continuing = start.is_some();
    let mut items = Vec::new();
    let mut next_continue = None;
    let mut remaining = None;

    // A field selector on metadata.name reads one key instead of the whole collection.
    let single = selectors
        .fields
        .as_ref()
        .and_then(|f| f.exact_name())
        .map(str::to_string);
    // Across all namespaces a name is not one key.
    let one_key = !t.def.namespaced || t.namespace.is_some();
    if let (Some(name), false, true) = (single, continuing, one_key) {
        let page = state
            .store
            .list(&format!("{prefix}{name}"), None, revision, 0, false)
            .await
            .map_err(|e| continue_error(e, continuing))?;
        revision = page.revision;
        items.extend(
            page.items
                .into_iter()
                .filter(|s| s.key == format!("{prefix}{name}") && selectors.matches(&s.object))
                .map(|s| s.object),
        );
    } else {
        loop {
            let page = state
                .store
                .list(
                    &prefix,
                    start.as_deref(),
                    revision,
                    limit,
                    selectors.is_everything(),
                )
                .await
                .map_err(|e| continue_error(e, continuing))?;
            revision = page.revision;
            let count = page.items.len();
            let mut last_key = None;
            for (i, s) in page.items.into_iter().enumerate() {
                last_key = Some(s.key.clone());
                if selectors.matches(&s.object) {
                    items.push(s.object);
                }
                if limit > 0 && items.len() as i64 >= limit {
                    let rest_of_page = i + 1 < count;
                    if rest_of_page || page.more {
                        let next = format!("{}\x00", s.key);
                        next_continue = Some(encode_continue(revision, &next[prefix.len()..]));
                        remaining = page.remaining.filter(|_| !rest_of_page);
                    }
                    break;
                }
            }
            if next_continue.is_some() || !page.more || (limit > 0 && items.len() as i64 >= limit) {
                break;
            }
            match last_key {
                Some(k) => start = Some(format!("{k}\x00")),
                None => break,
            }
        }
    }
    let items: Vec<Value> = items.into_iter().map(|o| to_wire(t.def, o)).collect();
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), json!(revision.to_string()));
    if let Some(c) = next_continue {
        metadata.insert("continue".into(), json!(c));
        if let Some(r) = remaining {
            metadata.insert("remainingItemCount".into(), json!(r));
        }
    }
    Ok((
        StatusCode::OK,
        json!({
            "kind": format!("{}List", t.def.kind),
            "apiVersion": t.def.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    ))
}

/// Reads a list from the watch cache when its semantics allow: `resourceVersion=0` (any
/// state, so `limit` is ignored as upstream does), `NotOlderThan` a version, or a consistent
/// unpaginated read once the cache has caught up with etcd's current revision. None sends the
/// read to etcd (pages, exact versions, or a cache that could not catch up in time). The
/// objects returned match the selectors.
async fn cached_items(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    selectors: &Selectors,
    limit: i64,
    prefix: &str,
) -> Result<Option<(Vec<Arc<CachedObject>>, i64)>, ApiError> {
    if query.get("continue").is_some_and(|c| !c.is_empty()) {
        return Ok(None);
    }
    let rv = query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let needed = match (query.get("resourceVersionMatch").map(String::as_str), rv) {
        (Some("Exact"), _) => return Ok(None),
        (_, "0") => 0,
        (_, "") if limit > 0 => return Ok(None),
        (_, "") => state.store.current_revision().await.map_err(store_error)?,
        (_, rv) => parse_rv(rv)?,
    };
    let cache = state
        .caches
        .get(&state.store, &state.store.collection(t.segment(), None));
    let Some((mut items, revision)) = cache
        .snapshot_at_least(&state.store, prefix, needed)
        .await
        .map_err(store_error)?
    else {
        return Ok(None);
    };
    if !selectors.is_everything() {
        items.retain(|s| selectors.matches(&s.selectable()));
    }
    Ok(Some((items, revision)))
}

fn list_limit(query: &HashMap<String, String>) -> Result<i64, ApiError> {
    match query.get("limit").filter(|s| !s.is_empty()) {
        Some(l) => Ok(l
            .parse::<i64>()
            .map_err(|_| status::bad_request(format!("invalid limit: {l}")))?
            .max(0)),
        None => Ok(0),
    }
}

/// A list served from the watch cache as bytes: the stored JSON of each object framed as a
/// `<Kind>List`, with no parsing or re-encoding, in chunks made as the client takes them so a
/// large list is never held whole. Only for resources served exactly as stored.
pub async fn list_raw(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
) -> Result<Option<impl Iterator<Item = bytes::Bytes> + Send + Sync + 'static>, ApiError> {
    if t.def.is_events_v1() || t.def.custom.is_some() || t.def.storage == Storage::Review {
        return Ok(None);
    }
    let selectors = Selectors::parse(t.def, query)?;
    let limit = list_limit(query)?;
    let prefix = state.store.collection(t.segment(), t.namespace.as_deref());
    let Some((items, revision)) = cached_items(state, t, query, &selectors, limit, &prefix).await?
    else {
        return Ok(None);
    };
    let head = json!({
        "kind": format!("{}List", t.def.kind),
        "apiVersion": t.def.api_version(),
        "metadata": {"resourceVersion": revision.to_string()},
    })
    .to_string();
    Ok(Some(list_chunks(head, items)))
}

/// Bytes per chunk of a raw list: large enough that framing costs nothing, small enough that
/// a list in flight holds little besides its objects (which the cache holds anyway).
const LIST_CHUNK_BYTES: usize = 64 << 10;

/// `head` (a list's JSON without its items) with `items` as its `items`, in chunks.
fn list_chunks(
    head: String,
    items: Vec<Arc<CachedObject>>,
) -> impl Iterator<Item = bytes::Bytes> + Send + Sync + 'static {
    // `{"kind":...,"metadata":{...}` without its closing brace, then the items.
    let mut opening = head.into_bytes();
    opening.pop();
    opening.extend_from_slice(b",\"items\":[");
    let mut opening = Some(opening);
    let mut items = items.into_iter().enumerate();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut chunk = opening.take().unwrap_or_default();
        chunk.reserve(LIST_CHUNK_BYTES);
        while chunk.len() < LIST_CHUNK_BYTES {
            match items.next() {
                Some((i, item)) => {
                    if i > 0 {
                        chunk.push(b',');
                    }
                    chunk.extend_from_slice(&item.json);
                }
                None => {
                    chunk.extend_from_slice(b"]}");
                    done = true;
                    break;
                }
            }
        }
        Some(bytes::Bytes::from(chunk))
    })
}

fn continue_error(e: StoreError, continuing: bool) -> ApiError {
    match e {
        StoreError::Compacted if continuing => status::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
        ),
        StoreError::Compacted => status::expired("The resourceVersion for the provided list is too old."),
        other => store_error(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Create

pub async fn create(
    state: &State,
    user: &UserInfo,
    t: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let decoded = decode_body(headers, body)?;
    match t.sub {
        Some(Subresource::Binding) => {
            return crate::subresources::bind(state, t, query, decoded).await
        }
        Some(Subresource::Eviction) => {
            return crate::subresources::evict(state, t, query, decoded).await
        }
        Some(Subresource::Token) => return crate::subresources::token(state, t, decoded).await,
        Some(_) => {
            return Err(status::method_not_allowed(
                "create is not supported on this subresource",
            ))
        }
        None => {}
    }
    let (api_version, kind) = kind_of(t.def);
    check_fields(
        query,
        (&api_version, kind),
        &decoded,
        json_bytes(headers, body),
    )?;
    let object = to_storage(t.def, decoded, (&api_version, kind))?;
    if t.def.storage == Storage::Review {
        return crate::subresources::review(t.def, user);
    }
    create_object(state, t, query, object).await
}

/// Creates a decoded, checked object in storage form.
async fn create_object(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    mut object: Value,
) -> Result<(StatusCode, Value), ApiError> {
    let body_ns = objects::namespace(&object).map(str::to_string);
    if t.def.namespaced {
        if body_ns.is_some() && body_ns != t.namespace {
            return Err(status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    } else if body_ns.is_some() {
        meta_mut(&mut object).remove("namespace");
    }
    let is_pod = t.def.kind == "Pod" && t.def.custom.is_none();
    let given_priority = is_pod
        .then(|| objects::at(&object, "spec.priority").and_then(Value::as_i64))
        .flatten();
    prepare_create(t, &mut object)?;
    if is_pod {
        crate::priority::admit_pod(state, &mut object, given_priority).await?;
    }
    if t.def.kind == "CustomResourceDefinition" && t.def.custom.is_none() {
        crate::crd::prepare(&mut object);
    }
    record_ownership(t, None, &mut object);
    let name = objects::name(&object).unwrap_or("").to_string();
    let causes = validate::validate(t.def, &object);
    if !causes.is_empty() {
        return Err(invalid(t.def, &name, causes));
    }
    if let Some(ns) = &t.namespace {
        namespace_accepts_content(state, t, ns, &name).await?;
        crate::quota::admit(state, t.def, ns, &object, None, dry_run(query)).await?;
    }
    let key = state.store.key(t.segment(), t.namespace.as_deref(), &name);
    let mut extras = Extras::default();
    if t.def.kind == "Event" {
        extras.lease = Some(state.store.event_lease().await.map_err(store_error)?);
    }
    for _ in 0..16 {
        let mut candidate = object.clone();
        let claims = if t.def.kind == "Service" {
            Some(assign_service(state, t, &mut candidate, None).await?)
        } else {
            None
        };
        extras.create = claims_keys(state, claims.as_ref());
        if dry_run(query) {
            return Ok((StatusCode::CREATED, to_wire(t.def, candidate)));
        }
        match state.store.create(&key, &candidate, &extras).await {
            Ok(rev) => {
                crate::storage::set_resource_version(&mut candidate, rev);
                after_write(t, &candidate);
                return Ok((StatusCode::CREATED, to_wire(t.def, candidate)));
            }
            Err(StoreError::KeyExists(k)) if k != key => {
                // Someone claimed the address or port we picked; pick again.
                tracing::debug!(key = %k, "allocation raced, retrying");
                continue;
            }
            Err(StoreError::Conflict) | Err(StoreError::KeyExists(_)) => {
                return Err(status::already_exists(t.def.group, t.def.plural, &name))
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(status::internal(
        "could not allocate a Service address after 16 attempts",
    ))
}

/// What this server does at once after a write is stored: a CRD starts (or stops) being
/// served here without waiting for the CRD watch.
fn after_write(t: &Target, object: &Value) {
    if t.def.kind == "CustomResourceDefinition" && t.def.custom.is_none() {
        crate::crd::sync(object);
    }
}

/// Server-set metadata and defaults for a new object.
fn prepare_create(t: &Target, object: &mut Value) -> Result<(), ApiError> {
    let meta = meta_mut(object);
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        if let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        {
            let generated = format!("{prefix}{}", objects::random_suffix());
            meta.insert("name".into(), json!(generated));
        }
    }
    for server_owned in [
        "uid",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(server_owned);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
    meta.insert("generation".into(), json!(1));
    if let Some(ns) = &t.namespace {
        meta.insert("namespace".into(), json!(ns));
    }
    // Status is the controllers' to write; Nodes are the exception upstream makes.
    if t.def.has(Subresource::Status) && t.def.kind != "Node" {
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
    }
    if t.def.custom.is_none() {
        defaults::apply(t.def.kind, object);
    }
    Ok(())
}

/// Upstream's NamespaceLifecycle admission: no new content in missing or terminating namespaces.
async fn namespace_accepts_content(
    state: &State,
    t: &Target,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let phase = state
        .namespaces
        .phase(&state.store, namespace)
        .await
        .map_err(store_error)?
        .ok_or_else(|| status::not_found("", "namespaces", namespace))?;
    if phase == crate::namespaces::Phase::Terminating {
        let mut err = status::forbidden(format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
            t.def.plural
        ));
        err.details = Some(status::StatusDetails {
            name: name.to_string(),
            group: t.def.group.to_string(),
            kind: t.def.plural.to_string(),
            causes: vec![StatusCause {
                reason: "NamespaceTerminating".into(),
                message: format!("namespace {namespace} is being terminated"),
                field: "metadata.namespace".into(),
            }],
            retry_after_seconds: None,
        });
        return Err(err);
    }
    Ok(())
}

async fn assign_service(
    state: &State,
    t: &Target,
    service: &mut Value,
    old: Option<&Value>,
) -> Result<Claims, ApiError> {
    let taken_ips: HashSet<String> = state
        .store
        .range_keys(SERVICE_IPS)
        .await
        .map_err(store_error)?
        .into_iter()
        .collect();
    let taken_ports: HashSet<String> = state
        .store
        .range_keys(NODE_PORTS)
        .await
        .map_err(store_error)?
        .into_iter()
        .collect();
    state
        .service_ranges
        .assign(service, old, &taken_ips, &taken_ports)
        .map_err(|causes| invalid(t.def, objects::name(service).unwrap_or(""), causes))
}

/// The bookkeeping keys for a set of claims.
fn claims_keys(state: &State, claims: Option<&Claims>) -> Vec<(String, String)> {
    let Some(c) = claims else {
        return Vec::new();
    };
    c.ips
        .iter()
        .map(|ip| (state.store.range_key(SERVICE_IPS, ip), String::new()))
        .chain(
            c.ports
                .iter()
                .map(|p| (state.store.range_key(NODE_PORTS, p), String::new())),
        )
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Update and patch

/// Reads, mutates, checks and writes one object, retrying when a concurrent writer got there
/// first unless the caller asked for a specific resourceVersion.
/// `precondition` is the resourceVersion the client required, if any.
pub async fn update_with<F>(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    precondition: Option<String>,
    mut mutate: F,
) -> Result<Value, ApiError>
where
    F: FnMut(&Value) -> Result<Value, ApiError>,
{
    let key = t.key(state)?;
    // As upstream's cacher hands GuaranteedUpdate the watch cache's copy: the first attempt
    // starts from it and skips an etcd read. A write from a stale copy fails its revision
    // compare and the next attempt reads etcd; anything but a write (an error, a failed
    // precondition, a no-op) is decided only on etcd's copy.
    let mut cached = cached_for_update(state, t, query, &key);
    for _ in 0..32 {
        let (current, from_cache) = match cached.take() {
            Some(copy) => (copy, true),
            None => (
                state
                    .store
                    .get(&key)
                    .await
                    .map_err(store_error)?
                    .ok_or_else(|| t.not_found())?,
                false,
            ),
        };
        let candidate = match mutate(&current.object) {
            Err(_) if from_cache => continue,
            result => result?,
        };
        if let Some(rv) = &precondition {
            if Some(rv.as_str()) != objects::resource_version(&current.object) {
                if from_cache {
                    continue;
                }
                return Err(status::conflict(
                    t.def.group,
                    t.def.plural,
                    t.name(),
                    status::OBJECT_MODIFIED,
                ));
            }
        }
        let mut new = match finish_update(t, &current.object, candidate) {
            Err(_) if from_cache => continue,
            result => result?,
        };
        record_ownership(t, Some(&current.object), &mut new);
        let mut extras = Extras::default();
        if t.def.kind == "Service" && t.sub.is_none() {
            let claims = assign_service(state, t, &mut new, Some(&current.object)).await?;
            let old_claims = allocator::held(&current.object);
            let held: HashSet<(String, String)> =
                claims_keys(state, Some(&old_claims)).into_iter().collect();
            let wanted: Vec<(String, String)> = claims_keys(state, Some(&claims));
            extras.create = wanted
                .iter()
                .filter(|k| !held.contains(k))
                .cloned()
                .collect();
            extras.delete = held
                .iter()
                .filter(|k| !wanted.contains(k))
                .map(|(k, _)| k.clone())
                .collect();
        }
        if new == current.object {
            if from_cache {
                continue;
            }
            return Ok(current.object);
        }
        if let (Some(ns), None) = (&t.namespace, &t.sub) {
            let previous = Some(&current.object);
            crate::quota::admit(state, t.def, ns, &new, previous, dry_run(query)).await?;
        }
        if dry_run(query) {
            return Ok(new);
        }
        if deletion_complete(&new) {
            if from_cache {
                continue;
            }
            match delete_now(state, t, &key, &current, new, false).await? {
                Some(deleted) => return Ok(deleted),
                None if precondition.is_none() => continue,
                None => {
                    return Err(status::conflict(
                        t.def.group,
                        t.def.plural,
                        t.name(),
                        status::OBJECT_MODIFIED,
                    ))
                }
            }
        }
        if t.def.kind == "Event" {
            extras.lease = Some(state.store.event_lease().await.map_err(store_error)?);
        }
        match state
            .store
            .update(&key, &new, current.mod_revision, &extras)
            .await
        {
            Ok(rev) => {
                crate::storage::set_resource_version(&mut new, rev);
                after_write(t, &new);
                return Ok(new);
            }
            Err(StoreError::Conflict) | Err(StoreError::KeyExists(_)) if precondition.is_none() => {
                continue
            }
            Err(StoreError::Conflict) => {
                return Err(status::conflict(
                    t.def.group,
                    t.def.plural,
                    t.name(),
                    status::OBJECT_MODIFIED,
                ))
            }
            Err(StoreError::KeyExists(k)) => {
                return Err(status::conflict(
                    t.def.group,
                    t.def.plural,
                    t.name(),
                    format!("{k} is already allocated"),
                ))
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(status::conflict(
        t.def.group,
        t.def.plural,
        t.name(),
        "too many concurrent writers; try again",
    ))
}

/// The watch cache's copy of `key` for [`update_with`]'s first attempt, where one may stand in
/// for etcd's: not for a dry run (its answer must be etcd's state), nor for a Service or a
/// type quota charges on update (an attempt that fails must not have claimed addresses or
/// charged a quota), nor for a type no reader keeps a cache of.
fn cached_for_update(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    key: &str,
) -> Option<Stored> {
    if dry_run(query)
        || t.def.kind == "Service"
        || hakube_quota::Counted::updates_count(t.def.group, t.def.plural)
    {
        return None;
    }
    let cached = state
        .caches
        .existing(&state.store.collection(t.segment(), None))?
        .get(key)?;
    Some(cached.to_stored())
}

/// A deleting object whose last finalizer is gone (and whose grace period is over) is removed.
fn deletion_complete(object: &Value) -> bool {
    if !objects::is_deleting(object) || !objects::finalizers(object).is_empty() {
        return false;
    }
    let grace = objects::meta(object)
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let namespace_finalizers = object
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
        && object.get("kind").and_then(Value::as_str) == Some("Namespace");
    grace == 0 && !namespace_finalizers
}

/// Merges what the client may change into the stored object, then defaults and validates.
fn finish_update(t: &Target, old: &Value, candidate: Value) -> Result<Value, ApiError> {
    let mut new = match t.sub {
        None => {
            let mut new = candidate;
            let old_meta = objects::meta(old).cloned().unwrap_or_default();
            let meta = meta_mut(&mut new);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old_meta.get(field) {
                    Some(v) => {
                        meta.insert(field.into(), v.clone());
                    }
                    None => {
                        meta.remove(field);
                    }
                }
            }
            // A namespace's finalizers change only through namespaces/finalize.
            if t.def.kind == "Namespace" {
                let kept = old
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                objects::set_at(&mut new, "spec.finalizers", kept);
            }
            if t.def.has(Subresource::Status) {
                if let Some(map) = new.as_object_mut() {
                    match old.get("status") {
                        Some(s) => {
                            map.insert("status".into(), s.clone());
                        }
                        None => {
                            map.remove("status");
                        }
                    }
                }
            }
            new
        }
        Some(Subresource::Status) => {
            let mut new = old.clone();
            if let Some(map) = new.as_object_mut() {
                match candidate.get("status") {
                    Some(s) => {
                        map.insert("status".into(), s.clone());
                    }
                    None => {
                        map.remove("status");
                    }
                }
            }
            // Ownership of status fields is recorded through this endpoint too.
            match candidate.pointer("/metadata/managedFields") {
                Some(m) => {
                    meta_mut(&mut new).insert("managedFields".into(), m.clone());
                }
                None => {
                    meta_mut(&mut new).remove("managedFields");
                }
            }
            new
        }
        Some(Subresource::Finalize) => {
            let mut new = old.clone();
            let finalizers = candidate
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            objects::set_at(&mut new, "spec.finalizers", finalizers);
            new
        }
        Some(Subresource::Scale | Subresource::Binding) => candidate,
        Some(other) => {
            return Err(status::method_not_allowed(format!(
                "update is not supported on {}",
                other.name()
            )))
        }
    };
    if t.def.custom.is_none() {
        defaults::apply(t.def.kind, &mut new);
    }
    if t.def.kind == "CustomResourceDefinition" && t.def.custom.is_none() {
        crate::crd::prepare(&mut new);
    }
    let name = objects::name(&new).unwrap_or("").to_string();
    let mut causes = validate::validate(t.def, &new);
    if t.sub.is_none() {
        causes.extend(validate::validate_update(t.def, old, &new));
    }
    if !causes.is_empty() {
        return Err(invalid(t.def, &name, causes));
    }
    if objects::spec_changed(old, &new) {
        let generation = objects::meta(old)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
    }
    if let Some(rv) = objects::resource_version(old) {
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
    }
    Ok(new)
}

pub async fn update(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let raw = decode_body(headers, body)?;
    if t.sub == Some(Subresource::Scale) {
        check_fields(
            query,
            ("autoscaling/v1", "Scale"),
            &raw,
            json_bytes(headers, body),
        )?;
        let scale = raw;
        let precondition = objects::resource_version(&scale).map(str::to_string);
        let updated = update_with(state, t, query, precondition, |old| {
            scale_mutation(t, old, &scale)
        })
        .await?;
        return Ok((StatusCode::OK, to_scale(t.def, &updated)?));
    }
    let (api_version, kind) = kind_of(t.def);
    check_fields(query, (&api_version, kind), &raw, json_bytes(headers, body))?;
    let object = to_storage(t.def, raw, (&api_version, kind))?;
    if let Some(body_name) = objects::name(&object) {
        if body_name != t.name() {
            return Err(status::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                t.name()
            )));
        }
    }
    if t.def.namespaced {
        if let Some(ns) = objects::namespace(&object) {
            if Some(ns) != t.namespace.as_deref() {
                return Err(status::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    let precondition = objects::resource_version(&object).map(str::to_string);
    let updated = update_with(state, t, query, precondition, |_| Ok(object.clone())).await?;
    Ok((StatusCode::OK, to_wire(t.def, updated)))
}

const APPLY_PATCH: &str = "application/apply-patch+yaml";

const PATCH_TYPES: &[&str] = &[
    APPLY_PATCH,
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchType {
    Json,
    Merge,
    Strategic,
}

fn patch_error(e: impl std::fmt::Display, code: u16) -> ApiError {
    ApiError {
        code,
        reason: if code == 422 { "Invalid" } else { "BadRequest" }.into(),
        message: e.to_string(),
        details: None,
        retry_after_seconds: None,
    }
}

/// Applies a JSON, merge or strategic merge patch to an object of the given kind.
fn apply_patch(
    patch_type: PatchType,
    (api_version, kind): (&str, &str),
    current: Value,
    patch_doc: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Merge => {
            let mut target = current;
            patch::merge_patch(&mut target, patch_doc);
            Ok(target)
        }
        PatchType::Json => patch::json_patch(&current, patch_doc).map_err(|e| patch_error(e, 422)),
        PatchType::Strategic => {
            let schema = openapi::spec().kind(api_version, kind);
            strategic::strategic_merge_patch(&current, patch_doc, schema.as_ref()).map_err(|e| {
                // Upstream answers a patch that contradicts its own $retainKeys with 422.
                let code = match e {
                    strategic::StrategicPatchError::NotInRetainKeys { .. } => 422,
                    _ => 400,
                };
                patch_error(&e, code)
            })
        }
    }
}

pub async fn patch(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if content_type == APPLY_PATCH {
        return server_side_apply(state, t, query, body).await;
    }
    let patch_type = match content_type.as_str() {
        "application/merge-patch+json" => PatchType::Merge,
        "application/json-patch+json" => PatchType::Json,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        other => return Err(status::unsupported_media_type(other, PATCH_TYPES)),
    };
    let patch_doc: Value = serde_json::from_slice(body)
        .map_err(|e| status::bad_request(format!("error decoding patch: {e}")))?;
    if patch_type == PatchType::Strategic && t.def.custom.is_some() {
        return Err(status::unsupported_media_type(
            &content_type,
            &[
                APPLY_PATCH,
                "application/json-patch+json",
                "application/merge-patch+json",
            ],
        ));
    }
    let mode = FieldValidation::from_query(query)?;
    let precondition = patch_precondition(&patch_doc, patch_type != PatchType::Json);
    let patched = |gvk: (&str, &str), current: Value| -> Result<Value, ApiError> {
        let out = apply_patch(patch_type, gvk, current, &patch_doc)?;
        for warning in fieldvalidation::check(mode, gvk.0, gvk.1, &out, Some(body))? {
            fieldvalidation::warn(warning);
        }
        Ok(out)
    };
    if t.sub == Some(Subresource::Scale) {
        let updated = update_with(state, t, query, precondition, |old| {
            let scale = patched(("autoscaling/v1", "Scale"), to_scale(t.def, old)?)?;
            scale_mutation(t, old, &scale)
        })
        .await?;
        return Ok((StatusCode::OK, to_scale(t.def, &updated)?));
    }
    let (api_version, kind) = kind_of(t.def);
    let updated = update_with(state, t, query, precondition, |old| {
        let out = patched((&api_version, kind), to_wire(t.def, old.clone()))?;
        to_storage(t.def, out, (&api_version, kind))
    })
    .await?;
    Ok((StatusCode::OK, to_wire(t.def, updated)))
}

/// Server-side apply: merges the manager's configuration, creating the object if it is absent.
async fn server_side_apply(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return Err(status::bad_request(
            "PATCH requests with the apply content type require a non-empty fieldManager parameter",
        ));
    }
    let manager = t.field_manager.clone().unwrap_or_default();
    let scope = match t.sub {
        None => apply::Scope::Main,
        Some(Subresource::Status) => apply::Scope::Status,
        Some(_) => {
            return Err(status::unsupported_media_type(
                APPLY_PATCH,
                &PATCH_TYPES[1..],
            ))
        }
    };
    let mut config: Value = serde_norway::from_slice(body)
        .map_err(|e| status::bad_request(format!("error decoding YAML: {e}")))?;
    let (api_version, kind) = kind_of(t.def);
    let Some(map) = config.as_object_mut() else {
        return Err(status::bad_request(
            "the apply configuration must be an object",
        ));
    };
    if map.get("apiVersion").and_then(Value::as_str) != Some(api_version.as_str())
        || map.get("kind").and_then(Value::as_str) != Some(kind)
    {
        return Err(status::bad_request(format!(
            "the apply configuration must set apiVersion {api_version:?} and kind {kind:?}"
        )));
    }
    let meta = meta_mut(&mut config);
    if meta.get("managedFields").is_some_and(|m| !m.is_null()) {
        return Err(status::bad_request("metadata.managedFields must be nil"));
    }
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if n != t.name() => {
            return Err(status::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                t.name()
            )))
        }
        Some(_) => {}
        None => {
            meta.insert("name".into(), json!(t.name()));
        }
    }
    let raw_json = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    check_fields(
        query,
        (&api_version, kind),
        &config,
        raw_json.then_some(body),
    )?;
    let schema = ownership_schema(t.def);
    let version = t.def.api_version();
    let writer = apply::Writer {
        manager: &manager,
        api_version: &version,
        scope,
    };
    let force = query_flag(query, "force");
    let precondition = objects::resource_version(&config).map(str::to_string);
    for _ in 0..4 {
        let result = update_with(state, t, query, precondition.clone(), |old| {
            let live = to_wire(t.def, old.clone());
            let merged = apply::apply(Some(&live), &config, schema, &writer, force)?;
            to_storage(t.def, merged, (&api_version, kind))
        })
        .await;
        match result {
            Ok(updated) => return Ok((StatusCode::OK, to_wire(t.def, updated))),
            Err(e) if e.code == 404 && scope == apply::Scope::Main => {}
            Err(e) => return Err(e),
        }
        let created = apply::apply(None, &config, schema, &writer, force)?;
        let object = to_storage(t.def, created, (&api_version, kind))?;
        // The apply already recorded ownership.
        let create_target = Target {
            field_manager: None,
            ..t.clone()
        };
        match create_object(state, &create_target, query, object).await {
            Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
            other => return other,
        }
    }
    Err(status::conflict(
        t.def.group,
        t.def.plural,
        t.name(),
        status::OBJECT_MODIFIED,
    ))
}

fn query_flag(query: &HashMap<String, String>, key: &str) -> bool {
    query.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// A `resourceVersion` a patch sets is a precondition on the object it patches.
fn patch_precondition(patch_doc: &Value, merge: bool) -> Option<String> {
    if merge {
        return patch_doc
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    patch_doc.as_array()?.iter().find_map(|op| {
        let sets = matches!(
            op.get("op").and_then(Value::as_str),
            Some("add" | "replace")
        );
        (sets && op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion"))
            .then(|| op.get("value").and_then(Value::as_str).map(str::to_string))
            .flatten()
    })
}

// ---------------------------------------------------------------------------------------------
// Scale

fn selector_string(def: &ResourceDef, object: &Value) -> Result<String, ApiError> {
    let selector = object.pointer("/spec/selector");
    let parsed = match (def.kind, selector) {
        (_, None) | (_, Some(Value::Null)) => return Ok(String::new()),
        ("ReplicationController", Some(s)) => {
            labels::from_label_selector_json(&json!({ "matchLabels": s }))
        }
        (_, Some(s)) => labels::from_label_selector_json(s),
    };
    parsed
        .map(|s| s.to_string())
        .map_err(|e| status::internal(e.to_string()))
}

/// The autoscaling/v1 Scale view of a workload.
pub fn to_scale(def: &ResourceDef, object: &Value) -> Result<Value, ApiError> {
    let meta = objects::meta(object).cloned().unwrap_or_default();
    let mut scale_meta = Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            scale_meta.insert(f.into(), v.clone());
        }
    }
    let (spec_path, status_path) = replica_paths(def);
    let selector = match def.custom.and_then(|c| c.scale.as_ref()) {
        Some(paths) => paths
            .label_selector
            .as_deref()
            .and_then(|p| object.pointer(&pointer(p)))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        None => selector_string(def, object)?,
    };
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": {"replicas": object.pointer(&pointer(&spec_path)).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer(&pointer(&status_path)).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    }))
}

/// Where a scalable resource keeps its desired and current replicas (`.spec.replicas`).
fn replica_paths(def: &ResourceDef) -> (String, String) {
    match def.custom.and_then(|c| c.scale.as_ref()) {
        Some(paths) => (paths.spec_replicas.clone(), paths.status_replicas.clone()),
        None => (".spec.replicas".into(), ".status.replicas".into()),
    }
}

/// `.spec.replicas` → `/spec/replicas`.
fn pointer(path: &str) -> String {
    path.split('.')
        .filter(|s| !s.is_empty())
        .fold(String::new(), |acc, part| format!("{acc}/{part}"))
}

fn scale_mutation(t: &Target, old: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale.pointer("/spec/replicas");
    let name = t.name();
    let replicas = match replicas {
        Some(Value::Number(n))
            if n.as_i64()
                .is_some_and(|r| r >= 0 && r <= i64::from(i32::MAX)) =>
        {
            n.as_i64().unwrap_or(0)
        }
        Some(v) => {
            return Err(status::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![StatusCause::invalid(
                    "spec.replicas",
                    v,
                    "must be greater than or equal to 0",
                )],
            ))
        }
        None => 0,
    };
    let mut new = old.clone();
    if let Some(rv) = objects::resource_version(scale) {
        meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
    }
    let (spec_path, _) = replica_paths(t.def);
    objects::set_at(&mut new, spec_path.trim_start_matches('.'), json!(replicas));
    Ok(new)
}

// ---------------------------------------------------------------------------------------------
// Delete

#[derive(Debug, Default)]
struct DeleteOptions {
    dry_run: bool,
    grace_period: Option<i64>,
    propagation: Option<String>,
    uid_precondition: Option<String>,
    rv_precondition: Option<String>,
}

fn delete_options(query: &HashMap<String, String>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut opts = DeleteOptions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| status::bad_request(format!("error decoding DeleteOptions: {e}")))?;
        opts.dry_run = v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|d| d == "All"));
        opts.grace_period = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.propagation = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        if v.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation = Some("Orphan".into());
        }
        opts.uid_precondition = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.rv_precondition = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(g) = query.get("gracePeriodSeconds") {
        opts.grace_period = Some(
            g.parse()
                .map_err(|_| status::bad_request(format!("invalid gracePeriodSeconds: {g}")))?,
        );
    }
    if let Some(p) = query.get("propagationPolicy") {
        opts.propagation = Some(p.clone());
    }
    if let Some(p) = &opts.propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(status::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![StatusCause::not_supported(
                    "propagationPolicy",
                    json!(p),
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            ));
        }
    }
    Ok(opts)
}

/// How long a pod gets to stop: immediate when it never reached a node or already finished.
fn pod_grace(object: &Value, requested: Option<i64>) -> i64 {
    let bound = objects::str_at(object, "spec.nodeName").is_some_and(|n| !n.is_empty());
    let phase = objects::str_at(object, "status.phase").unwrap_or("");
    if !bound || matches!(phase, "Succeeded" | "Failed") {
        return 0;
    }
    requested
        .or_else(|| {
            object
                .pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

pub async fn delete(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let opts = delete_options(query, body)?;
    delete_one(state, t, query, &opts).await
}

async fn delete_one(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    opts: &DeleteOptions,
) -> Result<(StatusCode, Value), ApiError> {
    let key = t.key(state)?;
    let dry = dry_run(query) || opts.dry_run;
    for _ in 0..32 {
        let current = state
            .store
            .get(&key)
            .await
            .map_err(store_error)?
            .ok_or_else(|| t.not_found())?;
        let object = &current.object;
        if let Some(uid) = &opts.uid_precondition {
            let actual = objects::uid(object).unwrap_or("");
            if uid != actual {
                return Err(status::conflict(
                    t.def.group,
                    t.def.plural,
                    t.name(),
                    format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                ));
            }
        }
        if let Some(rv) = &opts.rv_precondition {
            let actual = objects::resource_version(object).unwrap_or("");
            if rv != actual {
                return Err(status::conflict(
                    t.def.group,
                    t.def.plural,
                    t.name(),
                    format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"),
                ));
            }
        }
        let grace = if t.def.kind == "Pod" {
            pod_grace(object, opts.grace_period)
        } else {
            0
        };
        let mut finalizers = objects::finalizers(object);
        let policy_finalizer = match opts.propagation.as_deref() {
            Some("Orphan") => Some("orphan"),
            Some("Foreground") => Some("foregroundDeletion"),
            _ => None,
        };
        if let Some(f) = policy_finalizer {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_string());
            }
        }
        let namespace_pending = t.def.kind == "Namespace"
            && object
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        if finalizers.is_empty() && grace == 0 && !namespace_pending {
            match delete_now(state, t, &key, &current, object.clone(), dry).await? {
                Some(deleted) => return Ok((StatusCode::OK, deleted_response(t, deleted))),
                None => continue,
            }
        }
        // Graceful: mark the object and leave it to finalizers, the kubelet or the
        // namespace controller.
        let mut marked = object.clone();
        let already = objects::is_deleting(object);
        let existing_grace = objects::meta(object)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64);
        {
            let meta = meta_mut(&mut marked);
            if !already || existing_grace.is_some_and(|g| grace < g) {
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(objects::rfc3339_after(grace)),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), json!(finalizers));
            }
        }
        if t.def.kind == "Namespace" {
            objects::set_at(&mut marked, "status.phase", json!("Terminating"));
        }
        if marked == *object {
            return Ok((StatusCode::OK, to_wire(t.def, marked)));
        }
        if deletion_complete(&marked) {
            match delete_now(state, t, &key, &current, marked, dry).await? {
                Some(deleted) => return Ok((StatusCode::OK, deleted_response(t, deleted))),
                None => continue,
            }
        }
        if dry {
            return Ok((StatusCode::OK, to_wire(t.def, marked)));
        }
        match state
            .store
            .update(&key, &marked, current.mod_revision, &Extras::default())
            .await
        {
            Ok(rev) => {
                crate::storage::set_resource_version(&mut marked, rev);
                return Ok((StatusCode::OK, to_wire(t.def, marked)));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(store_error(e)),
        }
    }
    Err(status::conflict(
        t.def.group,
        t.def.plural,
        t.name(),
        "too many concurrent writers; try again",
    ))
}

/// Removes the object (and what it holds in the allocation ranges) in one transaction; None
/// when someone wrote it first, so the caller reads it again and decides again.
async fn delete_now(
    state: &State,
    t: &Target,
    key: &str,
    current: &Stored,
    last_state: Value,
    dry: bool,
) -> Result<Option<Value>, ApiError> {
    if dry {
        return Ok(Some(last_state));
    }
    let mut extras = Extras::default();
    if t.def.kind == "Service" {
        extras.delete = claims_keys(state, Some(&allocator::held(&current.object)))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
    }
    match state.store.delete(key, current.mod_revision, &extras).await {
        Ok(_) => Ok(Some(last_state)),
        Err(StoreError::Conflict) => Ok(None),
        Err(e) => Err(store_error(e)),
    }
}

/// Pods answer a delete with the pod, as upstream; everything else with a Success Status.
fn deleted_response(t: &Target, deleted: Value) -> Value {
    if t.def.kind == "Pod" {
        return to_wire(t.def, deleted);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": t.name(),
            "group": t.def.group,
            "kind": t.def.plural,
            "uid": objects::uid(&deleted).unwrap_or(""),
        },
    })
}

pub async fn delete_collection(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let opts = delete_options(query, body)?;
    let mut list_query = query.clone();
    list_query.remove("limit");
    list_query.remove("continue");
    let (_, listed) = list(state, t, &list_query).await?;
    let mut deleted = Vec::new();
    for item in listed["items"].as_array().cloned().unwrap_or_default() {
        let item_target = Target {
            def: t.def,
            namespace: objects::namespace(&item).map(str::to_string),
            name: objects::name(&item).map(str::to_string),
            sub: None,
            field_manager: None,
        };
        match delete_one(state, &item_target, query, &opts).await {
            Ok((_, v)) => deleted.push(if v.get("kind") == Some(&json!("Status")) {
                item
            } else {
                v
            }),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok((
        StatusCode::OK,
        json!({
            "kind": format!("{}List", t.def.kind),
            "apiVersion": t.def.api_version(),
            "metadata": {"resourceVersion": listed["metadata"]["resourceVersion"]},
            "items": deleted,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    fn cached(n: usize, bytes: usize) -> Arc<CachedObject> {
        let json = json!({"metadata": {"name": format!("o{n}")}, "data": "x".repeat(bytes)});
        Arc::new(CachedObject::from_stored(Stored {
            key: format!("/registry/configmaps/default/o{n}"),
            mod_revision: n as i64,
            object: json,
        }))
    }

    #[test]
    fn a_raw_list_comes_in_bounded_chunks_that_join_into_the_list() {
        let head = json!({"kind": "ConfigMapList", "metadata": {"resourceVersion": "7"}});
        let items: Vec<_> = (0..300).map(|n| cached(n, 1_000)).collect();
        let chunks: Vec<bytes::Bytes> = list_chunks(head.to_string(), items).collect();
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() < LIST_CHUNK_BYTES + 1_100));
        let joined: Vec<u8> = chunks.concat();
        let list: Value = serde_json::from_slice(&joined).expect("one JSON document");
        assert_eq!(list["kind"], "ConfigMapList");
        assert_eq!(list["metadata"]["resourceVersion"], "7");
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        let expected: Vec<String> = (0..300).map(|n| format!("o{n}")).collect();
        assert_eq!(names, expected);

        let empty: Vec<u8> = list_chunks(head.to_string(), Vec::new())
            .collect::<Vec<_>>()
            .concat();
        let list: Value = serde_json::from_slice(&empty).expect("one JSON document");
        assert_eq!(list["items"], json!([]));
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = encode_continue(42, "default/b\u{0}");
        let back = decode_continue(&token).unwrap();
        assert_eq!(back.rv, 42);
        assert_eq!(back.start, "default/b\u{0}");
        assert_eq!(decode_continue("not-a-token").err().unwrap().code, 400);
    }

    #[test]
    fn wrong_kinds_and_types_are_400() {
        let def = lookup("", "v1", "configmaps").unwrap();
        let err = to_storage(
            def,
            json!({"apiVersion":"v1","kind":"Secret"}),
            ("v1", "ConfigMap"),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        let err = to_storage(
            def,
            json!({"metadata":{"name":"a"},"data":[1]}),
            ("v1", "ConfigMap"),
        )
        .unwrap_err();
        assert!(
            err.message
                .starts_with("ConfigMap in version \"v1\" cannot be handled as a ConfigMap"),
            "{}",
            err.message
        );
        let ok = to_storage(def, json!({"metadata":{"name":"a"}}), ("v1", "ConfigMap")).unwrap();
        assert_eq!(ok["kind"], "ConfigMap");
    }

    #[test]
    fn list_revision_semantics() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(list_revision(&q(&[])).unwrap(), 0);
        assert_eq!(list_revision(&q(&[("resourceVersion", "0")])).unwrap(), 0);
        assert_eq!(
            list_revision(&q(&[
                ("resourceVersion", "7"),
                ("resourceVersionMatch", "Exact")
            ]))
            .unwrap(),
            7
        );
        assert_eq!(
            list_revision(&q(&[("resourceVersion", "x")]))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn finalizer_removal_completes_deletion_only_after_grace() {
        let deleting = json!({"metadata":{"deletionTimestamp":"2024-01-01T00:00:00Z","deletionGracePeriodSeconds":0,"finalizers":[]}});
        assert!(deletion_complete(&deleting));
        let graceful_pod = json!({"metadata":{"deletionTimestamp":"2024-01-01T00:00:00Z","deletionGracePeriodSeconds":30}});
        assert!(!deletion_complete(&graceful_pod));
        let ns = json!({"kind":"Namespace","metadata":{"deletionTimestamp":"2024-01-01T00:00:00Z"},"spec":{"finalizers":["kubernetes"]}});
        assert!(!deletion_complete(&ns));
    }

    #[test]
    fn unbound_pods_are_deleted_at_once() {
        assert_eq!(pod_grace(&json!({"spec":{}}), None), 0);
        assert_eq!(
            pod_grace(
                &json!({"spec":{"nodeName":"n1","terminationGracePeriodSeconds":10}}),
                None
            ),
            10
        );
        assert_eq!(pod_grace(&json!({"spec":{"nodeName":"n1"}}), Some(0)), 0);
        assert_eq!(
            pod_grace(
                &json!({"spec":{"nodeName":"n1"},"status":{"phase":"Succeeded"}}),
                Some(5)
            ),
            0
        );
    }

    #[test]
    fn scale_reads_replicas_and_selector() {
        let def = lookup("apps", "v1", "deployments").unwrap();
        let d = json!({"metadata":{"name":"d","namespace":"default","resourceVersion":"5"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"d"}}},"status":{"replicas":1}});
        let scale = to_scale(def, &d).unwrap();
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 1);
        assert_eq!(scale["status"]["selector"], "app=d");
        assert_eq!(scale["apiVersion"], "autoscaling/v1");
    }
}
