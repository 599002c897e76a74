//! Upstream's ResourceQuota admission as pure rules: which of a namespace's quotas a new or
//! changed object counts against, what a pod must declare for them, and whether charging what
//! the object adds keeps every quota within its `hard`. Like upstream, it reads only the quotas' status: a quota the
//! controller has not computed yet (no `status.hard`) limits nothing.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use crate::quantity::Amount;
use crate::usage::{pod_matches_scopes, pod_usage, pvc_usage, service_usage, source_of, Source};

/// Quota on these makes every container declare them: upstream keeps this rule for backward
/// compatibility.
const MUST_DECLARE: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// Why a create is refused, in upstream's words (after `<resource> "<name>" is forbidden: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("failed quota: {quota}: must specify {missing}")]
    MustSpecify { quota: String, missing: String },
    #[error("status unknown for quota: {quota}, resources: {resources}")]
    StatusUnknown { quota: String, resources: String },
    #[error("quota usage is negative for resource(s): {resources}")]
    NegativeUsage { resources: String },
    #[error("exceeded quota: {quota}, requested: {requested}, used: {used}, limited: {limited}")]
    Exceeded {
        quota: String,
        requested: String,
        used: String,
        limited: String,
    },
}

/// A quota's `status.used` with the object charged to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub quota: String,
    pub used: BTreeMap<String, Quantity>,
}

/// An object about to be written, as quota counts it.
#[derive(Debug, Clone)]
pub struct Counted {
    /// Which quota resource names count it.
    source: Source,
    /// The pod itself, for scopes and the declarations quota demands.
    pod: Option<Pod>,
    usage: BTreeMap<String, Amount>,
}

impl Counted {
    /// Whether changing an object of this resource can change its usage: Services (their type
    /// and ports) and PersistentVolumeClaims (a resize), as upstream's evaluators say.
    pub fn updates_count(group: &str, plural: &str) -> bool {
        group.is_empty() && matches!(plural, "services" | "persistentvolumeclaims")
    }

    /// An object of resource `plural` in API group `group`, in its stored JSON form.
    pub fn decode(group: &str, plural: &str, object: &Value) -> Result<Counted, serde_json::Error> {
        let new = match (group, plural) {
            ("", "pods") => {
                let pod: Pod = serde_json::from_value(object.clone())?;
                Counted {
                    source: Source::Pods,
                    usage: pod_usage(&pod),
                    pod: Some(pod),
                }
            }
            ("", "services") => Counted {
                source: Source::Services,
                usage: service_usage(&serde_json::from_value(object.clone())?),
                pod: None,
            },
            ("", "persistentvolumeclaims") => Counted {
                source: Source::Claims,
                usage: pvc_usage(&serde_json::from_value(object.clone())?),
                pod: None,
            },
            _ => {
                let source = Source::Objects(group.to_string(), plural.to_string());
                let count_name = if group.is_empty() {
                    format!("count/{plural}")
                } else {
                    format!("count/{plural}.{group}")
                };
                let mut usage = BTreeMap::from([(count_name, Amount::count(1))]);
                // The names quota had before `count/` (configmaps, secrets, ...).
                if source_of(plural).as_ref() == Some(&source) {
                    usage.insert(plural.to_string(), Amount::count(1));
                }
                Counted {
                    source,
                    pod: None,
                    usage,
                }
            }
        };
        Ok(new)
    }

    /// The names of `limited` this object is counted under (upstream's MatchingResources).
    fn restricted<'a>(&self, limited: impl Iterator<Item = &'a String>) -> Vec<String> {
        limited
            .filter(|name| source_of(name).as_ref() == Some(&self.source))
            .cloned()
            .collect()
    }

    fn in_scopes(&self, quota: &ResourceQuota) -> bool {
        match &self.pod {
            Some(pod) => pod_matches_scopes(pod, quota),
            // Scopes select pods only: a scoped quota covers nothing else.
            None => quota.spec.as_ref().is_none_or(|spec| {
                spec.scopes.as_ref().is_none_or(Vec::is_empty)
                    && spec
                        .scope_selector
                        .as_ref()
                        .and_then(|s| s.match_expressions.as_ref())
                        .is_none_or(Vec::is_empty)
            }),
        }
    }
}

/// What `container` declares of the resources in `MUST_DECLARE`; requests default to limits,
/// as the API server's defaulting makes them.
fn declared(container: &Container) -> BTreeSet<String> {
    let resources = container.resources.clone().unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let mut names = BTreeSet::new();
    for resource in ["cpu", "memory"] {
        if requests.contains_key(resource) || limits.contains_key(resource) {
            names.insert(resource.to_string());
            names.insert(format!("requests.{resource}"));
        }
        if limits.contains_key(resource) {
            names.insert(format!("limits.{resource}"));
        }
    }
    names
}

/// Upstream's "must specify" text for what the pod's containers leave out of `restricted`, if
/// anything: `requests.cpu for: a,b; limits.memory for: a`.
fn undeclared(pod: &Pod, restricted: &[String]) -> Option<String> {
    let required: BTreeSet<&String> = restricted
        .iter()
        .filter(|r| MUST_DECLARE.contains(&r.as_str()))
        .collect();
    if required.is_empty() {
        return None;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let mut missing: BTreeMap<&String, BTreeSet<String>> = BTreeMap::new();
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let declared = declared(container);
        for resource in &required {
            if !declared.contains(resource.as_str()) {
                missing
                    .entry(resource)
                    .or_default()
                    .insert(container.name.clone());
            }
        }
    }
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(resource, containers)| {
            let names: Vec<&str> = containers.iter().map(String::as_str).collect();
            format!("{resource} for: {}", names.join(","))
        })
        .collect();
    Some(parts.join("; "))
}

/// Go's spelling of a quantity, or the stored text when it does not parse.
fn spelled(quantity: &Quantity) -> String {
    Amount::of(quantity).map_or_else(|| quantity.0.clone(), |a| a.canonical())
}

/// `name=quantity` pairs in name order, as upstream prints resource lists in errors.
fn listed<'a>(pairs: impl Iterator<Item = (&'a String, String)>) -> String {
    let sorted: BTreeMap<&String, String> = pairs.collect();
    let parts: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(",")
}

/// Upstream's check of a write against the namespace's quotas: every quota the object counts
/// against (by `status.hard` and scopes) must have usage for what it restricts and, for pods,
/// the containers must declare what it limits; then each is charged what the object adds
/// (all of it on create, the growth over `previous` on update) and none may exceed its hard
/// limits. Returns the new `status.used` of every quota charged.
pub fn admit(
    quotas: &[ResourceQuota],
    object: &Counted,
    previous: Option<&Counted>,
) -> Result<Vec<Charge>, Refusal> {
    let mut covering = Vec::new();
    for quota in quotas {
        let status = quota.status.clone().unwrap_or_default();
        let hard = status.hard.unwrap_or_default();
        let restricted = object.restricted(hard.keys());
        if restricted.is_empty() || !object.in_scopes(quota) {
            continue;
        }
        let name = quota.metadata.name.clone().unwrap_or_default();
        if let Some(pod) = &object.pod {
            if let Some(missing) = undeclared(pod, &restricted) {
                return Err(Refusal::MustSpecify {
                    quota: name,
                    missing,
                });
            }
        }
        let used = status.used.unwrap_or_default();
        if restricted.iter().any(|r| !used.contains_key(r)) {
            let mut resources = restricted;
            resources.sort();
            return Err(Refusal::StatusUnknown {
                quota: name,
                resources: resources.join(","),
            });
        }
        covering.push(quota);
    }
    if covering.is_empty() {
        return Ok(Vec::new());
    }
    let negative: Vec<&str> = object
        .usage
        .iter()
        .filter(|(_, amount)| amount.is_negative())
        .map(|(name, _)| name.as_str())
        .collect();
    if !negative.is_empty() {
        return Err(Refusal::NegativeUsage {
            resources: negative.join(","),
        });
    }
    let delta = match previous {
        None => object.usage.clone(),
        Some(previous) => growth(&object.usage, &previous.usage),
    };
    if delta.values().all(Amount::is_zero) {
        return Ok(Vec::new());
    }
    covering
        .into_iter()
        .map(|quota| charge(quota, &delta))
        .collect()
}

/// What `after` uses beyond `before`, never below zero: what an update frees is returned by the
/// controller's recount, not here (upstream's SubtractWithNonNegativeResult).
fn growth(
    after: &BTreeMap<String, Amount>,
    before: &BTreeMap<String, Amount>,
) -> BTreeMap<String, Amount> {
    let mut delta: BTreeMap<String, Amount> = before
        .keys()
        .map(|name| (name.clone(), Amount::zero()))
        .collect();
    for (name, amount) in after {
        let earlier = before.get(name).copied().unwrap_or_else(Amount::zero);
        delta.insert(name.clone(), amount.minus(earlier).max(Amount::zero()));
    }
    delta
}

/// The quota's usage with `delta` added, or the refusal naming what would go over `hard`.
fn charge(quota: &ResourceQuota, delta: &BTreeMap<String, Amount>) -> Result<Charge, Refusal> {
    let status = quota.status.clone().unwrap_or_default();
    let hard = status.hard.unwrap_or_default();
    let used = status.used.unwrap_or_default();
    let requested: BTreeMap<&String, Amount> = delta
        .iter()
        .filter(|(name, _)| hard.contains_key(*name))
        .map(|(name, amount)| (name, *amount))
        .collect();
    let mut new_used = used.clone();
    let mut exceeded = Vec::new();
    for (name, amount) in &requested {
        let total = used
            .get(*name)
            .and_then(Amount::of)
            .map_or(*amount, |u| u.plus(*amount));
        let limit = hard.get(*name).and_then(Amount::of);
        if limit.is_some_and(|limit| total.value_cmp(&limit).is_gt()) {
            exceeded.push(*name);
        }
        new_used.insert((*name).clone(), total.quantity());
    }
    let quota_name = quota.metadata.name.clone().unwrap_or_default();
    if !exceeded.is_empty() {
        let of = |list: &BTreeMap<String, Quantity>| {
            listed(
                exceeded
                    .iter()
                    .filter_map(|name| Some((*name, spelled(list.get(*name)?)))),
            )
        };
        return Err(Refusal::Exceeded {
            quota: quota_name,
            requested: listed(
                exceeded
                    .iter()
                    .map(|name| (*name, requested[name].canonical())),
            ),
            used: of(&used),
            limited: of(&hard),
        });
    }
    Ok(Charge {
        quota: quota_name,
        used: new_used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceQuotaStatus;
    use serde_json::json;

    fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    fn quota(name: &str, hard: &[(&str, &str)], used: &[(&str, &str)]) -> ResourceQuota {
        let mut quota: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"hard": hard.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
        }))
        .unwrap();
        quota.status = Some(ResourceQuotaStatus {
            hard: Some(quantities(hard)),
            used: Some(quantities(used)),
        });
        quota
    }

    fn pod(containers: Value) -> Counted {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "team"},
            "spec": {"containers": containers},
        });
        Counted::decode("", "pods", &pod).unwrap()
    }

    fn with_cpu(cpu: &str) -> Counted {
        pod(json!([{"name": "app", "resources": {"requests": {"cpu": cpu}}}]))
    }

    fn used_of(charge: &Charge) -> BTreeMap<&str, &str> {
        charge
            .used
            .iter()
            .map(|(k, v)| (k.as_str(), v.0.as_str()))
            .collect()
    }

    #[test]
    fn a_pod_within_quota_is_charged() {
        let quotas = [quota(
            "compute",
            &[("pods", "2"), ("requests.cpu", "1")],
            &[("pods", "1"), ("requests.cpu", "500m")],
        )];
        let charges = admit(&quotas, &with_cpu("500m"), None).unwrap();
        assert_eq!(charges.len(), 1);
        assert_eq!(charges[0].quota, "compute");
        assert_eq!(
            used_of(&charges[0]),
            BTreeMap::from([("pods", "2"), ("requests.cpu", "1")])
        );
    }

    #[test]
    fn going_over_hard_is_refused_with_upstreams_text() {
        let quotas = [quota(
            "compute",
            &[("pods", "2"), ("requests.cpu", "1"), ("services", "1")],
            &[("pods", "2"), ("requests.cpu", "1"), ("services", "1")],
        )];
        let refusal = admit(&quotas, &with_cpu("500m"), None).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "exceeded quota: compute, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=1, limited: pods=2,requests.cpu=1"
        );
    }

    #[test]
    fn containers_must_declare_what_quota_limits() {
        let quotas = [quota(
            "compute",
            &[
                ("requests.cpu", "1"),
                ("limits.memory", "1Gi"),
                ("pods", "5"),
            ],
            &[("requests.cpu", "0"), ("limits.memory", "0"), ("pods", "0")],
        )];
        let bare =
            pod(json!([{"name": "b"}, {"name": "a", "resources": {"limits": {"cpu": "1"}}}]));
        assert_eq!(
            admit(&quotas, &bare, None).unwrap_err().to_string(),
            "failed quota: compute: must specify limits.memory for: a,b; requests.cpu for: b"
        );
        // Limits stand in for requests, as defaulting copies them.
        let limited =
            pod(json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]));
        let charges = admit(&quotas, &limited, None).unwrap();
        assert_eq!(used_of(&charges[0])["requests.cpu"], "1");
    }

    #[test]
    fn an_uncomputed_status_limits_nothing_and_missing_usage_is_unknown() {
        let mut fresh = quota("fresh", &[("pods", "0")], &[]);
        fresh.status = None;
        assert_eq!(admit(&[fresh], &with_cpu("1"), None).unwrap(), Vec::new());
        let partial = quota(
            "partial",
            &[("pods", "5"), ("requests.cpu", "2")],
            &[("pods", "1")],
        );
        assert_eq!(
            admit(&[partial], &with_cpu("1"), None)
                .unwrap_err()
                .to_string(),
            "status unknown for quota: partial, resources: pods,requests.cpu"
        );
    }

    #[test]
    fn objects_count_under_count_names_and_legacy_names() {
        let quotas = [
            quota(
                "maps",
                &[("count/configmaps", "1")],
                &[("count/configmaps", "1")],
            ),
            quota("legacy", &[("configmaps", "5")], &[("configmaps", "0")]),
        ];
        let map = Counted::decode("", "configmaps", &json!({"metadata": {"name": "m"}})).unwrap();
        assert_eq!(
            admit(&quotas, &map, None).unwrap_err().to_string(),
            "exceeded quota: maps, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"
        );
        let deployment =
            Counted::decode("apps", "deployments", &json!({"metadata": {"name": "d"}})).unwrap();
        let apps = [quota(
            "apps",
            &[("count/deployments.apps", "3")],
            &[("count/deployments.apps", "2")],
        )];
        let charges = admit(&apps, &deployment, None).unwrap();
        assert_eq!(used_of(&charges[0])["count/deployments.apps"], "3");
        // A quota that does not limit the resource is left alone.
        assert_eq!(admit(&quotas[1..], &deployment, None).unwrap(), Vec::new());
    }

    #[test]
    fn scoped_quotas_cover_only_matching_pods() {
        let mut best_effort = quota("be", &[("pods", "1")], &[("pods", "1")]);
        if let Some(spec) = best_effort.spec.as_mut() {
            spec.scopes = Some(vec!["BestEffort".into()]);
        }
        // A pod with requests is not BestEffort: the full quota does not apply.
        assert_eq!(
            admit(&[best_effort.clone()], &with_cpu("100m"), None).unwrap(),
            Vec::new()
        );
        assert!(admit(&[best_effort.clone()], &pod(json!([{"name": "app"}])), None).is_err());
        // Nor does a scoped quota count anything but pods.
        let mut scoped_maps = quota("maps", &[("configmaps", "0")], &[("configmaps", "0")]);
        scoped_maps.spec = best_effort.spec;
        let map = Counted::decode("", "configmaps", &json!({"metadata": {"name": "m"}})).unwrap();
        assert_eq!(admit(&[scoped_maps], &map, None).unwrap(), Vec::new());
    }

    #[test]
    fn services_and_claims_charge_their_resources() {
        let service = Counted::decode(
            "",
            "services",
            &json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}}),
        )
        .unwrap();
        let ports = [quota(
            "ports",
            &[("services.nodeports", "3")],
            &[("services.nodeports", "2")],
        )];
        assert_eq!(
            admit(&ports, &service, None).unwrap_err().to_string(),
            "exceeded quota: ports, requested: services.nodeports=2, used: services.nodeports=2, limited: services.nodeports=3"
        );
        let claim = Counted::decode(
            "",
            "persistentvolumeclaims",
            &json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .unwrap();
        let storage = [quota(
            "storage",
            &[("fast.storageclass.storage.k8s.io/requests.storage", "4Gi")],
            &[("fast.storageclass.storage.k8s.io/requests.storage", "512Mi")],
        )];
        let charges = admit(&storage, &claim, None).unwrap();
        assert_eq!(
            used_of(&charges[0])["fast.storageclass.storage.k8s.io/requests.storage"],
            "1536Mi"
        );
    }

    fn claim(storage: &str) -> Counted {
        let claim = json!({
            "metadata": {"name": "c"},
            "spec": {"resources": {"requests": {"storage": storage}}},
        });
        Counted::decode("", "persistentvolumeclaims", &claim).unwrap()
    }

    #[test]
    fn updates_are_charged_what_they_add() {
        assert!(Counted::updates_count("", "persistentvolumeclaims"));
        assert!(!Counted::updates_count("", "configmaps"));
        let quotas = [quota(
            "storage",
            &[
                ("requests.storage", "10Gi"),
                ("persistentvolumeclaims", "1"),
            ],
            &[("requests.storage", "8Gi"), ("persistentvolumeclaims", "1")],
        )];
        let charges = admit(&quotas, &claim("9Gi"), Some(&claim("8Gi"))).unwrap();
        assert_eq!(
            used_of(&charges[0]),
            BTreeMap::from([("persistentvolumeclaims", "1"), ("requests.storage", "9Gi")])
        );
        assert_eq!(
            admit(&quotas, &claim("11Gi"), Some(&claim("8Gi")))
                .unwrap_err()
                .to_string(),
            "exceeded quota: storage, requested: requests.storage=3Gi, used: requests.storage=8Gi, limited: requests.storage=10Gi"
        );
        // Shrinking, or changing nothing quota counts, charges nothing.
        assert_eq!(
            admit(&quotas, &claim("1Gi"), Some(&claim("8Gi"))).unwrap(),
            Vec::new()
        );
    }
}
