//! Discovery in plain JSON (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/G/V`): kubectl falls
//! back from aggregated discovery to these when the response says `application/json`.

use serde_json::{json, Value};

use crate::registry::{self, ResourceDef};

/// The Kubernetes version this server implements.
pub const MAJOR: &str = "1";
pub const MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.0";

pub fn version() -> Value {
    json!({
        "major": MAJOR,
        "minor": MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": option_env!("HAKUBE_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (hakube is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// Upstream's version priority: GA before beta before alpha, higher numbers first, anything
/// else last in name order.
fn version_rank(version: &str) -> (u8, i64, i64, String) {
    let parse = |rest: &str| -> Option<(u8, i64, i64)> {
        let (major, tail) = rest.split_at(
            rest.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len()),
        );
        let major: i64 = major.parse().ok()?;
        match tail {
            "" => Some((0, -major, 0)),
            t if t.starts_with("beta") => Some((1, -major, -t[4..].parse::<i64>().ok()?)),
            t if t.starts_with("alpha") => Some((2, -major, -t[5..].parse::<i64>().ok()?)),
            _ => None,
        }
    };
    match version.strip_prefix('v').and_then(parse) {
        Some((kind, major, minor)) => (kind, major, minor, String::new()),
        None => (3, 0, 0, version.to_string()),
    }
}

/// Each named group with its versions, preferred (highest priority) first.
fn named_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (group, version) in registry::groups() {
        if group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == group) {
            Some((_, versions)) => versions.push(version),
            None => out.push((group, vec![version])),
        }
    }
    for (_, versions) in &mut out {
        versions.sort_by_key(|v| version_rank(v));
    }
    out
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": entries,
        "preferredVersion": entries.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = named_groups()
        .iter()
        .map(|(group, versions)| group_json(group, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    let (group, versions) = named_groups().into_iter().find(|(g, _)| *g == name)?;
    let mut v = group_json(group, &versions);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

fn entry(def: &ResourceDef) -> Value {
    let mut v = json!({
        "name": def.plural,
        "singularName": def.singular,
        "namespaced": def.namespaced,
        "kind": def.kind,
        "verbs": def.verbs(),
    });
    if !def.short_names.is_empty() {
        v["shortNames"] = json!(def.short_names);
    }
    if !def.categories.is_empty() {
        v["categories"] = json!(def.categories);
    }
    v
}

fn sub_entry(def: &ResourceDef, sub: registry::Subresource) -> Value {
    let mut v = json!({
        "name": format!("{}/{}", def.plural, sub.name()),
        "singularName": "",
        "namespaced": def.namespaced,
        "kind": def.kind,
        "verbs": sub.verbs(),
    });
    if let Some((group, version, kind)) = sub.kind() {
        v["kind"] = json!(kind);
        if !group.is_empty() {
            v["group"] = json!(group);
        }
        v["version"] = json!(version);
    }
    v
}

/// `APIResourceList` for one group version, or None when it is not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = registry::all()
        .into_iter()
        .filter(|d| d.group == group && d.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for def in defs {
        resources.push(entry(def));
        for sub in def.subresources {
            resources.push(sub_entry(def, *sub));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_reports_1_33_with_every_field() {
        let v = version();
        for f in [
            "major",
            "minor",
            "gitVersion",
            "gitCommit",
            "gitTreeState",
            "buildDate",
            "goVersion",
            "compiler",
            "platform",
        ] {
            assert!(v.get(f).is_some(), "{f} missing");
        }
        assert_eq!(v["minor"], "33");
    }

    #[test]
    fn scale_subresources_speak_autoscaling_v1() {
        let list = resource_list("apps", "v1").unwrap();
        let scale = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["kind"], "Scale");
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["version"], "v1");
    }

    #[test]
    fn pods_are_in_category_all_with_short_names() {
        let list = resource_list("", "v1").unwrap();
        let pods = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"][0], "po");
        assert_eq!(pods["categories"][0], "all");
        assert!(resource_list("nope", "v1").is_none());
        assert!(group_list()["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "apps"));
    }
}
