//! CustomResourceDefinitions: validating them, keeping their status (names accepted,
//! established, stored versions), serving their resources (each served version becomes a
//! [`ResourceDef`] in the registry), and cleaning their objects up before a CRD goes.

pub mod jsonpath;
pub mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use etcd_client::EventType;
use hakube_apimachinery::status::StatusCause;
use hakube_apimachinery::validation::NameRule;
use schemars::{Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::objects::{self, strings};
use crate::registry::{self, ResourceDef, Storage, Subresource};
use crate::storage::{Store, StoreError};
use crate::State;

/// Upstream's finalizer: a CRD's objects are deleted before the CRD itself.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// An `additionalPrinterColumns` entry.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// The scale subresource's paths (`.spec.replicas` style).
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// What serving one version of a custom resource needs beyond a [`ResourceDef`].
#[derive(Debug)]
pub struct CustomResource {
    pub crd_name: String,
    /// The apiVersion objects are stored in (the CRD's storage version).
    pub storage_api_version: String,
    /// The version's schema for pruning, defaulting and validation; the root also admits
    /// apiVersion, kind and metadata.
    pub structural: Value,
    /// The same schema as OpenAPI sees it: `metadata` is an ObjectMeta reference, so field
    /// ownership and unknown-field checks treat metadata like a built-in's.
    pub openapi: Value,
    /// The OpenAPI definition name (`com.example.v1.Widget`).
    pub definition: String,
    pub scale: Option<ScalePaths>,
    pub columns: Vec<PrinterColumn>,
}

fn custom_codec(v: Value) -> Result<Value, serde_json::Error> {
    Ok(v)
}

fn no_schema(_: &mut SchemaGenerator) -> Schema {
    Schema::default()
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `com.example` + `v1` + `Widget` → `com.example.v1.Widget` (upstream reverses the group).
fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

fn version_schema(version: &Value) -> Value {
    version
        .pointer("/schema/openAPIV3Schema")
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}))
}

/// The root of an object's schema with the identity fields every object has.
fn with_identity(mut schema: Value, metadata: Value) -> Value {
    if let Some(map) = schema.as_object_mut() {
        let props = map.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
            props.insert("metadata".into(), metadata);
        }
    }
    schema
}

/// The resource definitions a CRD serves, one per served version.
pub fn resource_defs(crd: &Value) -> Vec<&'static ResourceDef> {
    let group = text(crd, "/spec/group");
    let names = crd.pointer("/spec/names").cloned().unwrap_or(Value::Null);
    let plural = text(&names, "/plural");
    let kind = text(&names, "/kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = match text(&names, "/singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let crd_name = objects::name(crd).unwrap_or("").to_string();
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .map(|v| text(v, "/name").to_string())
        .unwrap_or_default();
    let namespaced = text(crd, "/spec/scope") != "Cluster";
    let short_names: &'static [&'static str] = Box::leak(
        strings(names.get("shortNames"))
            .iter()
            .map(|s| leak(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let categories: &'static [&'static str] = Box::leak(
        strings(names.get("categories"))
            .iter()
            .map(|s| leak(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let segment = leak(&format!("{group}/{plural}"));
    let mut out = Vec::new();
    for version in &versions {
        if version.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let name = text(version, "/name");
        let mut subresources = Vec::new();
        if version.pointer("/subresources/status").is_some() {
            subresources.push(Subresource::Status);
        }
        let scale = version.pointer("/subresources/scale").map(|s| ScalePaths {
            spec_replicas: text(s, "/specReplicasPath").to_string(),
            status_replicas: text(s, "/statusReplicasPath").to_string(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
        if scale.is_some() {
            subresources.push(Subresource::Scale);
        }
        let columns = version
            .get("additionalPrinterColumns")
            .and_then(Value::as_array)
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: text(c, "/name").to_string(),
                        kind: text(c, "/type").to_string(),
                        format: text(c, "/format").to_string(),
                        description: text(c, "/description").to_string(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        json_path: text(c, "/jsonPath").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let schema = version_schema(version);
        let custom = Box::leak(Box::new(CustomResource {
            crd_name: crd_name.clone(),
            storage_api_version: format!("{group}/{storage_version}"),
            structural: with_identity(
                schema.clone(),
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            ),
            openapi: with_identity(
                schema,
                json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}),
            ),
            definition: definition_name(group, name, kind),
            scale,
            columns,
        }));
        out.push(&*Box::leak(Box::new(ResourceDef {
            group: leak(group),
            version: leak(name),
            plural: leak(plural),
            singular: leak(&singular),
            kind: leak(kind),
            namespaced,
            short_names,
            categories,
            subresources: Box::leak(subresources.into_boxed_slice()),
            storage: Storage::Etcd(segment),
            name_rule: NameRule::Subdomain,
            codec: custom_codec,
            schema: no_schema,
            custom: Some(custom),
        })));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Validation and status

fn is_dns_subdomain(s: &str) -> bool {
    hakube_apimachinery::validation::dns1123_subdomain(s).is_empty()
}

fn is_dns_label(s: &str) -> bool {
    hakube_apimachinery::validation::dns1035_label(s).is_empty()
}

/// Checks a CRD object; the causes become a 422.
pub fn validate(crd: &Value) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let kind = text(crd, "/spec/names/kind");
    let name = objects::name(crd).unwrap_or("");
    if group.is_empty() {
        causes.push(StatusCause::required("spec.group"));
    } else if !group.contains('.') || !is_dns_subdomain(group) {
        causes.push(StatusCause::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(StatusCause::required("spec.names.plural"));
    } else if !is_dns_label(plural) {
        causes.push(StatusCause::invalid(
            "spec.names.plural",
            plural,
            "a lowercase RFC 1035 label is required",
        ));
    }
    if kind.is_empty() {
        causes.push(StatusCause::required("spec.names.kind"));
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        causes.push(StatusCause::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match text(crd, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        other => causes.push(StatusCause::not_supported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    match text(crd, "/spec/conversion/strategy") {
        "" | "None" => {}
        other => causes.push(StatusCause::not_supported(
            "spec.conversion.strategy",
            other,
            &["None"],
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(
            StatusCause::required("spec.versions")
                .with_detail("must have exactly one version marked as storage version"),
        );
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        causes.push(StatusCause::invalid(
            "spec.versions",
            Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = HashSet::new();
    for (i, version) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let version_name = text(version, "/name");
        if !is_dns_label(version_name) {
            causes.push(StatusCause::invalid(
                format!("{path}.name"),
                version_name,
                "must be a DNS label",
            ));
        }
        if !seen.insert(version_name) {
            causes.push(StatusCause::duplicate(format!("{path}.name"), version_name));
        }
        match version.pointer("/schema/openAPIV3Schema") {
            Some(s) => schema::check_structural(
                s,
                &format!("{path}.schema.openAPIV3Schema"),
                true,
                &mut causes,
            ),
            None => causes.push(StatusCause::required(format!(
                "{path}.schema.openAPIV3Schema"
            ))),
        }
        if let Some(scale) = version.pointer("/subresources/scale") {
            let spec_path = text(scale, "/specReplicasPath");
            if !spec_path.starts_with(".spec.") {
                causes.push(StatusCause::invalid(
                    format!("{path}.subresources.scale.specReplicasPath"),
                    spec_path,
                    "should be a json path under .spec",
                ));
            }
            let status_path = text(scale, "/statusReplicasPath");
            if !status_path.starts_with(".status.") {
                causes.push(StatusCause::invalid(
                    format!("{path}.subresources.scale.statusReplicasPath"),
                    status_path,
                    "should be a json path under .status",
                ));
            }
        }
        if let Some(Value::Array(columns)) = version.get("additionalPrinterColumns") {
            for (j, c) in columns.iter().enumerate() {
                let cp = format!("{path}.additionalPrinterColumns[{j}]");
                if text(c, "/name").is_empty() {
                    causes.push(StatusCause::required(format!("{cp}.name")));
                }
                if jsonpath::parse(text(c, "/jsonPath")).is_err() {
                    causes.push(StatusCause::invalid(
                        format!("{cp}.jsonPath"),
                        text(c, "/jsonPath"),
                        "must be a simple json path",
                    ));
                }
                match text(c, "/type") {
                    "integer" | "number" | "string" | "boolean" | "date" => {}
                    other => causes.push(StatusCause::not_supported(
                        format!("{cp}.type"),
                        other,
                        &["boolean", "date", "integer", "number", "string"],
                    )),
                }
            }
        }
    }
    causes
}

/// Fields a CRD update may not change.
pub fn validate_update(old: &Value, new: &Value) -> Vec<StatusCause> {
    let mut causes = Vec::new();
    for (pointer, field) in [
        ("/spec/scope", "spec.scope"),
        ("/spec/group", "spec.group"),
        ("/spec/names/plural", "spec.names.plural"),
    ] {
        if old.pointer(pointer) != new.pointer(pointer) {
            causes.push(StatusCause::invalid(
                field,
                new.pointer(pointer).unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
    }
    causes
}

/// Sets a condition, keeping its `lastTransitionTime` when its status doesn't change.
fn set_condition(
    status: &mut Map<String, Value>,
    kind: &str,
    value: &str,
    reason: &str,
    message: &str,
) {
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let entry = json!({"type": kind, "status": value, "reason": reason, "message": message, "lastTransitionTime": now});
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
    {
        Some(existing) => {
            let time = if existing.get("status").and_then(Value::as_str) == Some(value) {
                existing
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or(json!(now))
            } else {
                json!(now)
            };
            *existing = entry;
            existing["lastTransitionTime"] = time;
        }
        None => list.push(entry),
    }
}

/// Server-owned parts of a CRD on every write: the cleanup finalizer, accepted names, stored
/// versions and the NamesAccepted / Established / Terminating conditions.
pub fn prepare(crd: &mut Value) {
    let deleting = objects::is_deleting(crd);
    if !deleting {
        let finalizers = objects::finalizers(crd);
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            let meta = objects::meta_mut(crd);
            let list = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(json!(CLEANUP_FINALIZER));
            }
        }
    }
    let name = objects::name(crd).unwrap_or("").to_string();
    let conflict = names_conflict(crd, &name);
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = names.clone();
    if let Some(a) = accepted.as_object_mut() {
        if a.get("singular")
            .is_none_or(|s| s.as_str().unwrap_or("").is_empty())
        {
            a.insert(
                "singular".into(),
                json!(text(&names, "/kind").to_lowercase()),
            );
        }
        if a.get("listKind")
            .is_none_or(|s| s.as_str().unwrap_or("").is_empty())
        {
            a.insert(
                "listKind".into(),
                json!(format!("{}List", text(&names, "/kind"))),
            );
        }
    }
    let storage_version = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        })
        .map(|v| text(v, "/name").to_string());
    let map = match crd.as_object_mut() {
        Some(m) => m,
        None => return,
    };
    let status = map.entry("status").or_insert_with(|| json!({}));
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let mut stored = strings(status.get("storedVersions"));
    if let Some(v) = storage_version {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    status.insert("storedVersions".into(), json!(stored));
    match conflict {
        None => {
            status.insert("acceptedNames".into(), accepted);
            set_condition(
                status,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            set_condition(
                status,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        }
        Some(message) => {
            status
                .entry("acceptedNames")
                .or_insert_with(|| json!({"plural": "", "kind": ""}));
            set_condition(status, "NamesAccepted", "False", "NameConflict", &message);
            set_condition(
                status,
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
            );
        }
    }
    if deleting {
        set_condition(
            status,
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
        );
    }
}

/// Another served resource in the same group already uses this CRD's plural or kind.
fn names_conflict(crd: &Value, name: &str) -> Option<String> {
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let kind = text(crd, "/spec/names/kind");
    for def in registry::all() {
        if def.group != group || def.custom.is_some_and(|c| c.crd_name == name) {
            continue;
        }
        if def.plural == plural {
            return Some(format!("\"{plural}\" is already in use"));
        }
        if def.kind == kind {
            return Some(format!("\"{kind}\" is already in use"));
        }
    }
    None
}

fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

// ---------------------------------------------------------------------------------------------
// Serving

/// Which spec each registered CRD was built from, so unchanged CRDs are not rebuilt (every
/// build leaks its definitions, which live as long as the process serves them).
fn built() -> &'static Mutex<HashMap<String, Value>> {
    static BUILT: OnceLock<Mutex<HashMap<String, Value>>> = OnceLock::new();
    BUILT.get_or_init(Mutex::default)
}

/// Serves (or stops serving) a CRD's resources as its current state says.
pub fn sync(crd: &Value) {
    let name = objects::name(crd).unwrap_or("").to_string();
    if !established(crd) {
        unregister(&name);
        return;
    }
    let key = json!({"uid": crd.pointer("/metadata/uid"), "spec": crd.get("spec")});
    if let Ok(mut built) = built().lock() {
        if built.get(&name) == Some(&key) {
            return;
        }
        built.insert(name.clone(), key);
    }
    registry::set_custom(&name, resource_defs(crd));
    crate::openapi::rebuild_custom();
}

pub fn unregister(name: &str) {
    if let Ok(mut built) = built().lock() {
        built.remove(name);
    }
    registry::set_custom(name, Vec::new());
    crate::openapi::rebuild_custom();
}

/// Keeps the registry in step with the stored CRDs and deletes the objects of CRDs being
/// deleted. Every API server runs this; the cleanup is idempotent.
pub async fn run(state: Arc<State>) {
    let mut stop = state.shutdown.clone();
    loop {
        tokio::select! {
            result = watch_crds(&state) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "CRD watch ended; relisting");
                }
            }
            _ = crate::stopping(&mut stop) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = crate::stopping(&mut stop) => return,
        }
    }
}

fn cleaning() -> &'static Mutex<HashSet<String>> {
    static CLEANING: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    CLEANING.get_or_init(Mutex::default)
}

fn observe(state: &Arc<State>, crd: &Value) {
    sync(crd);
    let name = objects::name(crd).unwrap_or("").to_string();
    if objects::is_deleting(crd)
        && objects::finalizers(crd)
            .iter()
            .any(|f| f == CLEANUP_FINALIZER)
    {
        let fresh = cleaning()
            .lock()
            .map(|mut c| c.insert(name.clone()))
            .unwrap_or(false);
        if fresh {
            let state = state.clone();
            let crd = crd.clone();
            tokio::spawn(async move {
                if let Err(e) = cleanup(&state, &crd).await {
                    tracing::warn!(crd = %name, error = %e.message, "CRD cleanup failed; will retry");
                }
                if let Ok(mut c) = cleaning().lock() {
                    c.remove(&name);
                }
            });
        }
    }
}

async fn watch_crds(state: &Arc<State>) -> Result<(), StoreError> {
    let store: &Store = &state.store;
    let prefix = store.collection("customresourcedefinitions", None);
    let page = store.list(&prefix, None, 0, 0, false).await?;
    let present: HashSet<String> = page
        .items
        .iter()
        .filter_map(|s| objects::name(&s.object).map(str::to_string))
        .collect();
    let stale: Vec<String> = built()
        .lock()
        .map(|b| {
            b.keys()
                .filter(|n| !present.contains(*n))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for name in stale {
        unregister(&name);
    }
    for item in &page.items {
        observe(state, &item.object);
    }
    let mut stream = store.watch(&prefix, page.revision + 1).await?;
    // A CRD stuck in cleanup (objects with finalizers) is retried on this timer.
    let mut retry = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            message = stream.message() => {
                let Some(response) = message? else { return Ok(()) };
                if response.canceled() || response.compact_revision() > 0 {
                    return Err(StoreError::Compacted);
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    match event.event_type() {
                        EventType::Delete => {
                            let key = String::from_utf8_lossy(kv.key());
                            unregister(key.trim_start_matches(prefix.as_str()));
                        }
                        EventType::Put => observe(state, &Store::decode_event(kv)?.object),
                    }
                }
            }
            _ = retry.tick() => {
                let page = store.list(&prefix, None, 0, 0, false).await?;
                for item in page.items.iter().filter(|i| objects::is_deleting(&i.object)) {
                    observe(state, &item.object);
                }
            }
        }
    }
}

/// Deletes every object of a terminating CRD (honouring their finalizers), then removes the
/// cleanup finalizer so the CRD itself goes.
async fn cleanup(state: &Arc<State>, crd: &Value) -> Result<(), hakube_apimachinery::ApiError> {
    use crate::rest::{self, Target};
    let name = objects::name(crd).unwrap_or("").to_string();
    let crd_def = registry::lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| hakube_apimachinery::status::internal("CRDs are not registered"))?;
    let crd_target = Target {
        def: crd_def,
        namespace: None,
        name: Some(name.clone()),
        sub: None,
        field_manager: Some("kube-apiserver".into()),
    };
    // Rewriting the CRD lets `prepare` record the Terminating condition.
    match rest::update_with(state, &crd_target, &HashMap::new(), None, |old| {
        Ok(old.clone())
    })
    .await
    {
        Ok(_) => {}
        Err(e) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e),
    }
    let defs = registry::custom_defs(&name);
    let Some(def) = defs
        .first()
        .copied()
        .or_else(|| resource_defs(crd).first().copied())
    else {
        return Ok(());
    };
    let prefix = state.store.collection(
        match def.storage {
            Storage::Etcd(s) => s,
            Storage::Review => def.plural,
        },
        None,
    );
    let page = state
        .store
        .list(&prefix, None, 0, 0, false)
        .await
        .map_err(rest::store_error)?;
    let query = HashMap::from([("propagationPolicy".to_string(), "Background".to_string())]);
    for item in &page.items {
        if objects::is_deleting(&item.object) {
            continue;
        }
        let target = Target {
            def,
            namespace: objects::namespace(&item.object).map(str::to_string),
            name: objects::name(&item.object).map(str::to_string),
            sub: None,
            field_manager: None,
        };
        match rest::delete(state, &target, &query, &[]).await {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let remaining = state
        .store
        .list(&prefix, None, 0, 1, false)
        .await
        .map_err(rest::store_error)?;
    if !remaining.items.is_empty() {
        // Objects with finalizers of their own: the retry timer comes back to this CRD.
        return Ok(());
    }
    let result = rest::update_with(state, &crd_target, &HashMap::new(), None, |old| {
        let mut new = old.clone();
        if let Some(list) = new
            .pointer_mut("/metadata/finalizers")
            .and_then(Value::as_array_mut)
        {
            list.retain(|f| f.as_str() != Some(CLEANUP_FINALIZER));
        }
        Ok(new)
    })
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
