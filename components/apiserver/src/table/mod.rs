//! Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` renders, with upstream's
//! columns and cell formats for the built-in resources (Kubernetes 1.33's printers).

mod columns;
mod custom;
mod format;
mod printers;
mod quantity;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

/// Table column definition as in meta.k8s.io/v1 TableColumnDefinition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The OpenAPI type of the cells: "string", "integer", "boolean", "date", ...
    pub kind: &'static str,
    /// "name" for the column holding the object's name, else "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for the default view, 1 for columns shown only by `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The TableColumnDefinition JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// What each row carries besides its cells (the `includeObject` table option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// The object's metadata as a PartialObjectMetadata.
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent or empty means Metadata.
    pub fn from_query(v: Option<&str>) -> Result<Self, String> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(format!("unrecognized includeObject value: {other:?}")),
        }
    }

    pub(crate) fn embed(self, object: &Value) -> Option<Value> {
        match self {
            Self::None => None,
            Self::Metadata => Some(json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
            })),
            Self::Object => Some(object.clone()),
        }
    }
}

type Printer = fn(&Value, DateTime<Utc>) -> Vec<Value>;

fn printer(group: &str, resource: &str) -> (&'static [Column], Printer) {
    match (group, resource) {
        ("", "pods") => (&columns::PODS, printers::pod),
        ("apps", "deployments") => (&columns::DEPLOYMENTS, printers::deployment),
        ("apps", "replicasets") => (&columns::REPLICA_SETS, printers::replica_set),
        ("apps", "statefulsets") => (&columns::STATEFUL_SETS, printers::stateful_set),
        ("apps", "daemonsets") => (&columns::DAEMON_SETS, printers::daemon_set),
        ("batch", "jobs") => (&columns::JOBS, printers::job),
        ("batch", "cronjobs") => (&columns::CRON_JOBS, printers::cron_job),
        ("", "services") => (&columns::SERVICES, printers::service),
        ("", "endpoints") => (&columns::ENDPOINTS, printers::endpoints),
        ("", "nodes") => (&columns::NODES, printers::node),
        ("", "namespaces") => (&columns::NAMESPACES, printers::namespace),
        ("", "configmaps") => (&columns::CONFIG_MAPS, printers::config_map),
        ("", "secrets") => (&columns::SECRETS, printers::secret),
        // Upstream prints both event APIs with the core printer.
        ("" | "events.k8s.io", "events") => (&columns::EVENTS, printers::event),
        ("coordination.k8s.io", "leases") => (&columns::LEASES, printers::lease),
        ("", "persistentvolumes") => (&columns::PERSISTENT_VOLUMES, printers::persistent_volume),
        ("", "persistentvolumeclaims") => (
            &columns::PERSISTENT_VOLUME_CLAIMS,
            printers::persistent_volume_claim,
        ),
        _ => (&columns::DEFAULT, printers::default),
    }
}

/// The media type of a Table answer.
pub const CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Whether the client asked for a Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`,
/// as kubectl sends first in its list), and which `includeObject` it wants.
pub fn requested(
    accept: Option<&str>,
    include_object: Option<&str>,
) -> Result<Option<IncludeObject>, String> {
    let wants_table = accept.unwrap_or("").split(',').any(|media| {
        let mut parts = media.split(';').map(str::trim);
        let base = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let has = |k: &str, v: &[&str]| params.iter().any(|(pk, pv)| *pk == k && v.contains(pv));
        base == "application/json"
            && has("as", &["Table"])
            && has("g", &["meta.k8s.io"])
            && has("v", &["v1", "v1beta1"])
    });
    if !wants_table {
        return Ok(None);
    }
    IncludeObject::from_query(include_object).map(Some)
}

/// Columns for a resource (group "" for core; resource is the plural, e.g. "pods"). Resources
/// without a printer get upstream's default: Name, Created At.
pub fn columns(group: &str, resource: &str) -> &'static [Column] {
    printer(group, resource).0
}

/// One row's cells for an object, wide columns included; `now` dates the ages.
pub fn cells(group: &str, resource: &str, object: &Value, now: DateTime<Utc>) -> Vec<Value> {
    (printer(group, resource).1)(object, now)
}

/// One TableRow (for watch events and single gets): `{"cells":[...],"object":...}`.
pub fn row(
    group: &str,
    resource: &str,
    object: &Value,
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let mut row = Map::new();
    row.insert("cells".into(), cells(group, resource, object, now).into());
    if (group, resource) == ("", "pods") {
        if let Some(conditions) = printers::pod_conditions(object) {
            row.insert("conditions".into(), conditions);
        }
    }
    if let Some(object) = include_object.embed(object) {
        row.insert("object".into(), object);
    }
    Value::Object(row)
}

/// A whole meta.k8s.io/v1 Table for a list response; `list_metadata` is the list's metadata,
/// whose resourceVersion, continue and remainingItemCount the table keeps.
/// The Table for a served resource: a custom resource's own columns, else its printer's.
pub fn table_for(
    def: &crate::registry::ResourceDef,
    items: &[Value],
    list_metadata: &Value,
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    match def.custom {
        Some(custom) => custom::table(
            custom,
            items,
            kept_metadata(list_metadata),
            include_object,
            now,
        ),
        None => table(
            def.group,
            def.plural,
            items,
            list_metadata,
            include_object,
            now,
        ),
    }
}

/// The list metadata a Table keeps: resourceVersion, continue, remainingItemCount.
fn kept_metadata(list_metadata: &Value) -> Map<String, Value> {
    let mut metadata = Map::new();
    for key in ["resourceVersion", "continue", "remainingItemCount"] {
        match &list_metadata[key] {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            v => {
                metadata.insert(key.into(), v.clone());
            }
        }
    }
    metadata
}

pub fn table(
    group: &str,
    resource: &str,
    items: &[Value],
    list_metadata: &Value,
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let metadata = kept_metadata(list_metadata);
    let columns: Vec<Value> = columns(group, resource)
        .iter()
        .map(Column::to_json)
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|item| row(group, resource, item, include_object, now))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Upstream's human-readable duration (k8s.io/apimachinery/pkg/util/duration.HumanDuration):
/// about two significant figures, e.g. "45s", "5m3s", "3h5m", "2d3h", "45d", "2y100d".
pub fn human_duration(d: chrono::Duration) -> String {
    // Go truncates toward zero at each unit, as chrono's num_* do.
    let seconds = d.num_seconds();
    // Up to two seconds in the future is clock skew, not an error.
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            days => format!("{}y{days}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}
