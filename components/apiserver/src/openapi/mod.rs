//! OpenAPI for every served kind: v3 (an index plus one document per group version) and v2.
//!
//! Schemas come from k8s-openapi (its `schemars` implementations carry upstream's field types and
//! descriptions); `patch_meta.json` adds upstream's patch and list metadata, which k8s-openapi does
//! not carry. The same index answers the questions writes ask of a schema: how strategic merge
//! patch treats a field, which fields are unknown, and how server-side apply keys list elements.

mod paths;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use hakube_apimachinery::strategic::{FieldStrategy, PatchSchema};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use crate::discovery::GIT_VERSION;
use crate::registry::{self, ResourceDef, RESOURCES};

const V3_PREFIX: &str = "#/components/schemas/";
const V2_PREFIX: &str = "#/definitions/";
/// The schema every PATCH body is described with.
pub(crate) const PATCH_DEFINITION: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// Upstream's patch and list metadata for one field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldMeta {
    pub strategy: Option<String>,
    pub merge_key: Option<String>,
    pub list_type: Option<String>,
    #[serde(default)]
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
}

#[derive(Deserialize)]
struct PatchMetaFile {
    definitions: HashMap<String, HashMap<String, FieldMeta>>,
}

/// A served document and the hash clients cache it under.
pub struct Document {
    pub body: Bytes,
    pub hash: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        let body = serde_json::to_vec(value).unwrap_or_default();
        let hash = Sha512::digest(&body)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        Document {
            body: Bytes::from(body),
            hash,
        }
    }
}

pub struct OpenApi {
    /// Component schemas in v3 form, keyed by definition name.
    schemas: Map<String, Value>,
    meta: HashMap<String, HashMap<String, FieldMeta>>,
    /// (apiVersion, kind) → definition name.
    kinds: HashMap<(String, String), String>,
    /// "api/v1", "apis/apps/v1", ... → document.
    v3: BTreeMap<String, Document>,
    v3_index: Document,
    v2: Document,
}

/// The documents of the group versions CRDs serve ("apis/example.com/v1" → document).
fn custom_documents() -> &'static RwLock<BTreeMap<String, Arc<Document>>> {
    static DOCS: OnceLock<RwLock<BTreeMap<String, Arc<Document>>>> = OnceLock::new();
    DOCS.get_or_init(RwLock::default)
}

/// Rebuilds the documents of every group version CRDs serve, after the registry changed.
pub fn rebuild_custom() {
    let spec = spec();
    let mut by_group_version: BTreeMap<String, Vec<&'static ResourceDef>> = BTreeMap::new();
    for def in registry::all() {
        if def.custom.is_some() {
            by_group_version
                .entry(format!("apis/{}/{}", def.group, def.version))
                .or_default()
                .push(def);
        }
    }
    let mut docs = BTreeMap::new();
    for (key, defs) in by_group_version {
        let mut doc_paths = Map::new();
        let mut schemas = Map::new();
        for def in defs {
            let Some(custom) = def.custom else { continue };
            paths::resource_paths(spec, def, &custom.definition, &mut doc_paths);
            let mut schema = custom.openapi.clone();
            if let Some(map) = schema.as_object_mut() {
                map.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([gvk(def.group, def.version, def.kind)]),
                );
            }
            schemas.insert(custom.definition.clone(), schema);
        }
        let mut roots = paths::referenced(&Value::Object(doc_paths.clone()));
        roots.extend(paths::referenced(&Value::Object(schemas.clone())));
        for (name, schema) in spec.closure(roots) {
            schemas.entry(name).or_insert(schema);
        }
        let doc = json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": doc_paths,
            "components": {"schemas": schemas},
        });
        docs.insert(key, Arc::new(Document::new(&doc)));
    }
    if let Ok(mut current) = custom_documents().write() {
        *current = docs;
    }
}

/// A custom group version's document.
pub fn custom_v3(key: &str) -> Option<Arc<Document>> {
    custom_documents().read().ok()?.get(key).cloned()
}

/// The v3 index: built-in group versions and those CRDs serve.
pub fn v3_index() -> Document {
    let mut index: Map<String, Value> = serde_json::from_slice::<Value>(&spec().v3_index().body)
        .ok()
        .and_then(|v| v.get("paths").and_then(Value::as_object).cloned())
        .unwrap_or_default();
    if let Ok(docs) = custom_documents().read() {
        for (key, doc) in docs.iter() {
            index.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc.hash)}),
            );
        }
    }
    Document::new(&json!({ "paths": index }))
}

/// The schema of a built-in or custom kind.
pub fn schema_for(api_version: &str, kind: &str) -> Option<SchemaNode<'static>> {
    if let Some(node) = spec().kind(api_version, kind) {
        return Some(node);
    }
    let custom = registry::custom_by_kind(api_version, kind)?.custom?;
    Some(SchemaNode::root(&custom.openapi))
}

/// The OpenAPI of the built-in types, built on first use.
pub fn spec() -> &'static OpenApi {
    static SPEC: OnceLock<OpenApi> = OnceLock::new();
    SPEC.get_or_init(OpenApi::build)
}

fn ref_name(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix(V3_PREFIX)
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Kinds the subresources speak, registered next to the served kinds.
fn subresource_kinds(
    generator: &mut SchemaGenerator,
) -> Vec<(&'static str, &'static str, &'static str, String)> {
    use k8s_openapi::api::{
        authentication::v1::TokenRequest, autoscaling::v1::Scale, core::v1::Binding,
        policy::v1::Eviction,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Status};
    fn name_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
        let schema = generator.subschema_for::<T>();
        ref_name(schema.as_value()).unwrap_or_default().to_string()
    }
    vec![
        ("autoscaling", "v1", "Scale", name_of::<Scale>(generator)),
        ("", "v1", "Binding", name_of::<Binding>(generator)),
        ("policy", "v1", "Eviction", name_of::<Eviction>(generator)),
        (
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
            name_of::<TokenRequest>(generator),
        ),
        ("meta.k8s.io", "v1", "Status", name_of::<Status>(generator)),
        (
            "meta.k8s.io",
            "v1",
            "DeleteOptions",
            name_of::<DeleteOptions>(generator),
        ),
    ]
}

impl OpenApi {
    fn build() -> OpenApi {
        let meta: PatchMetaFile =
            serde_json::from_str(include_str!("patch_meta.json")).unwrap_or(PatchMetaFile {
                definitions: HashMap::new(),
            });
        let mut generator = SchemaSettings::openapi3().into_generator();
        let mut served: Vec<(&'static ResourceDef, String)> = Vec::new();
        for def in RESOURCES {
            let schema = (def.schema)(&mut generator);
            if let Some(name) = ref_name(schema.as_value()) {
                served.push((def, name.to_string()));
            }
        }
        let extra = subresource_kinds(&mut generator);
        let mut schemas = generator.take_definitions(true);
        schemas.insert(
            PATCH_DEFINITION.to_string(),
            json!({"description": "A PATCH request body, in the format its Content-Type names.", "type": "object"}),
        );

        for (name, schema) in schemas.iter_mut() {
            wrap_refs(schema);
            let atomic = meta
                .definitions
                .get(name)
                .and_then(|fields| fields.get("."))
                .is_some_and(|m| m.map_type.as_deref() == Some("atomic"));
            if let (true, Value::Object(map)) = (atomic, &mut *schema) {
                map.insert("x-kubernetes-map-type".into(), json!("atomic"));
            }
            if let (Some(fields), Some(Value::Object(props))) =
                (meta.definitions.get(name), schema.get_mut("properties"))
            {
                for (field, m) in fields {
                    if let Some(Value::Object(prop)) = props.get_mut(field) {
                        add_extensions(prop, m);
                    }
                }
            }
        }

        let mut kinds = HashMap::new();
        let mut gvks: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (def, name) in &served {
            kinds.insert((def.api_version(), def.kind.to_string()), name.clone());
            gvks.entry(name.clone())
                .or_default()
                .push(gvk(def.group, def.version, def.kind));
        }
        for (group, version, kind, name) in &extra {
            kinds.insert(
                (api_version(group, version), kind.to_string()),
                name.clone(),
            );
            gvks.entry(name.clone())
                .or_default()
                .push(gvk(group, version, kind));
        }
        for (name, list) in gvks {
            let mut seen = BTreeSet::new();
            let list: Vec<Value> = list
                .into_iter()
                .filter(|v| seen.insert(v.to_string()))
                .collect();
            if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
                schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
            }
        }

        let mut spec = OpenApi {
            schemas,
            meta: meta.definitions,
            kinds,
            v3: BTreeMap::new(),
            v3_index: Document::new(&json!({"paths": {}})),
            v2: Document::new(&json!({})),
        };
        spec.render(&served);
        spec
    }

    fn render(&mut self, served: &[(&'static ResourceDef, String)]) {
        let mut by_group_version: BTreeMap<String, Vec<(&ResourceDef, &str)>> = BTreeMap::new();
        for (def, name) in served {
            let key = if def.group.is_empty() {
                format!("api/{}", def.version)
            } else {
                format!("apis/{}/{}", def.group, def.version)
            };
            by_group_version
                .entry(key)
                .or_default()
                .push((def, name.as_str()));
        }
        let mut all_paths = Map::new();
        let mut index = Map::new();
        for (key, defs) in by_group_version {
            let mut doc_paths = Map::new();
            for (def, name) in &defs {
                paths::resource_paths(self, def, name, &mut doc_paths);
            }
            let mut roots: Vec<String> = defs.iter().map(|(_, n)| n.to_string()).collect();
            roots.extend(paths::referenced(&Value::Object(doc_paths.clone())));
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": GIT_VERSION},
                "paths": doc_paths,
                "components": {"schemas": self.closure(roots)},
            });
            let document = Document::new(&doc);
            index.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", document.hash)}),
            );
            all_paths.extend(doc_paths);
            self.v3.insert(key, document);
        }
        self.v3_index = Document::new(&json!({ "paths": index }));
        let v2 = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths::to_v2(&Value::Object(all_paths)),
            "definitions": self.schemas,
        });
        let text = serde_json::to_string(&v2)
            .unwrap_or_default()
            .replace(V3_PREFIX, V2_PREFIX);
        self.v2 = Document::new(&serde_json::from_str(&text).unwrap_or(Value::Null));
    }

    /// The named schemas and everything they reference.
    fn closure(&self, roots: Vec<String>) -> Map<String, Value> {
        let mut out = BTreeMap::new();
        let mut todo = roots;
        while let Some(name) = todo.pop() {
            if out.contains_key(&name) {
                continue;
            }
            if let Some(schema) = self.schemas.get(&name) {
                todo.extend(paths::referenced(schema));
                out.insert(name, schema.clone());
            }
        }
        out.into_iter().collect()
    }

    pub fn v3_index(&self) -> &Document {
        &self.v3_index
    }

    /// A group version's document: `api/v1`, `apis/apps/v1`.
    pub fn v3(&self, key: &str) -> Option<&Document> {
        self.v3.get(key)
    }

    pub fn v2(&self) -> &Document {
        &self.v2
    }

    pub fn definition_for_kind(&self, api_version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .get(&(api_version.to_string(), kind.to_string()))
            .map(String::as_str)
    }

    /// The schema of a kind, as the root for patching and field checks.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<SchemaNode<'_>> {
        let name = self.definition_for_kind(api_version, kind)?;
        let schema = self.schemas.get(name)?;
        Some(SchemaNode {
            spec: self,
            schema,
            meta: None,
        })
    }

    /// A schema with `$ref`s followed, and the definition it came from.
    fn resolve<'a>(&'a self, mut schema: &'a Value) -> (Option<&'a str>, &'a Value) {
        let mut name = None;
        for _ in 0..8 {
            let target = ref_name(schema).or_else(|| {
                let all_of = schema.get("allOf")?.as_array()?;
                match all_of.as_slice() {
                    [single] => ref_name(single),
                    _ => None,
                }
            });
            match target.and_then(|n| self.schemas.get_key_value(n)) {
                Some((n, s)) => {
                    name = Some(n.as_str());
                    schema = s;
                }
                None => break,
            }
        }
        (name, schema)
    }
}

/// Upstream writes a reference with siblings (a description, a default) as `allOf: [{$ref}]`, since
/// OpenAPI 3.0 ignores a `$ref`'s siblings; kubectl explain reads it that way.
fn wrap_refs(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            // A `properties` map may have a field named "$ref" (JSONSchemaProps does); a
            // reference is always a string.
            if map.len() > 1 && map.get("$ref").is_some_and(Value::is_string) {
                if let Some(reference) = map.remove("$ref") {
                    map.insert("allOf".into(), json!([{ "$ref": reference }]));
                }
            }
            for value in map.values_mut() {
                wrap_refs(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}

fn add_extensions(prop: &mut Map<String, Value>, meta: &FieldMeta) {
    if let Some(s) = &meta.strategy {
        prop.insert("x-kubernetes-patch-strategy".into(), json!(s));
    }
    if let Some(k) = &meta.merge_key {
        prop.insert("x-kubernetes-patch-merge-key".into(), json!(k));
    }
    if let Some(t) = &meta.list_type {
        prop.insert("x-kubernetes-list-type".into(), json!(t));
    }
    if !meta.list_map_keys.is_empty() {
        prop.insert(
            "x-kubernetes-list-map-keys".into(),
            json!(meta.list_map_keys),
        );
    }
    if let Some(t) = &meta.map_type {
        prop.insert("x-kubernetes-map-type".into(), json!(t));
    }
}

/// How a list's elements are identified by server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value.
    Atomic,
    /// Elements are scalars identified by value.
    Set,
    /// Elements are objects identified by these keys.
    Map(Vec<String>),
}

/// A place in a kind's schema: the value reached through a field, and that field's metadata.
#[derive(Clone, Copy)]
pub struct SchemaNode<'a> {
    spec: &'a OpenApi,
    schema: &'a Value,
    meta: Option<&'a FieldMeta>,
}

impl SchemaNode<'static> {
    /// A schema outside the built-in definitions (a custom resource's), which may still refer
    /// to them (metadata).
    pub fn root(schema: &'static Value) -> SchemaNode<'static> {
        SchemaNode {
            spec: spec(),
            schema,
            meta: None,
        }
    }
}

impl<'a> SchemaNode<'a> {
    fn resolved(&self) -> &'a Value {
        self.spec.resolve(self.schema).1
    }

    fn child(&self, schema: &'a Value, meta: Option<&'a FieldMeta>) -> SchemaNode<'a> {
        SchemaNode {
            spec: self.spec,
            schema,
            meta,
        }
    }

    /// The schema of a property, or of a map's values.
    pub fn property(&self, name: &str) -> Option<SchemaNode<'a>> {
        let (definition, schema) = self.spec.resolve(self.schema);
        if let Some(prop) = schema.get("properties").and_then(|p| p.get(name)) {
            let meta = definition
                .and_then(|d| self.spec.meta.get(d))
                .and_then(|fields| fields.get(name));
            return Some(self.child(prop, meta));
        }
        match schema.get("additionalProperties") {
            Some(values @ Value::Object(_)) => Some(self.child(values, None)),
            _ => None,
        }
    }

    pub fn items(&self) -> Option<SchemaNode<'a>> {
        self.resolved().get("items").map(|i| self.child(i, None))
    }

    pub fn field_meta(&self) -> Option<&'a FieldMeta> {
        self.meta
    }

    /// How server-side apply treats a list here, from upstream's list type or, failing that, its
    /// patch strategy (a merge key makes a map, a bare merge a set, anything else is atomic).
    pub fn list_type(&self) -> ListType {
        let Some(meta) = self.meta else {
            // Custom resources' schemas carry the list type inline.
            let s = self.resolved();
            let keys: Vec<String> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| {
                    k.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            return match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") if !keys.is_empty() => ListType::Map(keys),
                Some("set") => ListType::Set,
                _ => ListType::Atomic,
            };
        };
        match meta.list_type.as_deref() {
            Some("map") if !meta.list_map_keys.is_empty() => {
                ListType::Map(meta.list_map_keys.clone())
            }
            Some("set") => ListType::Set,
            Some(_) => ListType::Atomic,
            None => match (&meta.merge_key, meta.strategy.as_deref()) {
                (Some(key), Some(s)) if s.contains("merge") => ListType::Map(vec![key.clone()]),
                (None, Some(s)) if s.contains("merge") => ListType::Set,
                _ => ListType::Atomic,
            },
        }
    }

    /// Whether an object value here is owned as a whole (`+structType=atomic`, `+mapType=atomic`)
    /// or is free-form, so server-side apply does not look inside it.
    pub fn is_atomic_object(&self) -> bool {
        if self.meta.and_then(|m| m.map_type.as_deref()) == Some("atomic") {
            return true;
        }
        let s = self.resolved();
        s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            || (s.get("properties").is_none() && s.get("additionalProperties").is_none())
    }

    /// Whether any value is accepted here (int-or-string, free-form JSON, embedded objects).
    fn accepts_anything(&self) -> bool {
        let s = self.resolved();
        let flag = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
        flag("x-kubernetes-preserve-unknown-fields")
            || flag("x-kubernetes-int-or-string")
            || flag("x-kubernetes-embedded-resource")
            || (s.get("properties").is_none()
                && s.get("additionalProperties").is_none()
                && s.get("items").is_none())
    }

    /// Paths of fields in `value` that this schema does not know, upstream-style
    /// (`spec.containers[0].imagePullPolicyy`).
    pub fn unknown_fields(&self, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_unknown(value, "", &mut out);
        out
    }

    fn collect_unknown(&self, value: &Value, path: &str, out: &mut Vec<String>) {
        if self.accepts_anything() {
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match self.property(key) {
                        Some(node) => node.collect_unknown(child, &child_path, out),
                        None => out.push(child_path),
                    }
                }
            }
            Value::Array(items) => {
                if let Some(node) = self.items() {
                    for (i, item) in items.iter().enumerate() {
                        node.collect_unknown(item, &format!("{path}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

impl PatchSchema for SchemaNode<'_> {
    fn property(&self, name: &str) -> Option<Self> {
        SchemaNode::property(self, name)
    }

    fn items(&self) -> Option<Self> {
        SchemaNode::items(self)
    }

    fn strategy(&self) -> FieldStrategy {
        let Some(meta) = self.meta else {
            return FieldStrategy::default();
        };
        let strategy = meta.strategy.as_deref().unwrap_or("");
        FieldStrategy {
            merge: strategy.split(',').any(|s| s == "merge"),
            retain_keys: strategy.split(',').any(|s| s == "retainKeys"),
            merge_key: meta.merge_key.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
