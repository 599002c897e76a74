//! Validation of a Cluster spec against the host inventory and the known versions, and the
//! placement it implies. Pure: no API server, no hosts; the operator turns a failure into a
//! `Valid=False` condition and an event, and touches nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::cluster::{AutoCompactionMode, ClusterSpec, HostSelection, Topology};

/// A host as validation sees it: its name and labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryHost {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// One problem with a spec, named by its field path as Kubernetes field errors are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found, in the order of the spec's fields.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec(pub Vec<FieldError>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&all.join("; "))
    }
}

/// Which host does what, as a valid spec asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub control_plane: Vec<String>,
    /// The etcd hosts: the control-plane hosts when stacked.
    pub etcd: Vec<String>,
    /// One host, or two with a virtual IP between them.
    pub load_balancers: Vec<String>,
    /// The endpoint's address with two load-balancer hosts.
    pub virtual_ip: Option<IpAddr>,
    /// Hosts the control-plane selection matched beyond its replicas, kept for replacing
    /// failed control-plane hosts (and, stacked, their etcd members) and for scaling up.
    pub control_plane_spares: Vec<String>,
    /// Hosts the etcd selection matched beyond its replicas; stacked, the control-plane spares.
    pub etcd_spares: Vec<String>,
}

/// The parsed network settings of a valid spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub pod_cidr: IpNet,
    pub service_cidr: IpNet,
    /// The first address of the service range: the `kubernetes` Service's.
    pub api_service_ip: IpAddr,
    pub dns_service_ip: IpAddr,
}

/// What a valid spec resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidCluster {
    pub placement: Placement,
    pub network: Network,
    pub certificate_validity: Duration,
    pub renew_before: Duration,
}

const MEMBER_COUNTS: [i32; 3] = [1, 3, 5];

/// Checks `spec` and resolves its placement; every problem is reported at once.
pub fn validate(
    spec: &ClusterSpec,
    inventory: &[InventoryHost],
    known_versions: &[String],
) -> Result<ValidCluster, InvalidSpec> {
    let mut errors = Vec::new();
    let mut error = |field: &str, message: String| {
        errors.push(FieldError {
            field: field.to_string(),
            message,
        })
    };

    if !known_versions.iter().any(|v| v == &spec.version) {
        error(
            "spec.version",
            format!(
                "Unsupported value: {:?}: supported values: {}",
                spec.version,
                quoted_list(known_versions)
            ),
        );
    }

    let cp_replicas = spec.control_plane.replicas;
    if !MEMBER_COUNTS.contains(&cp_replicas) {
        let why = if spec.topology == Topology::Stacked && cp_replicas > 0 && cp_replicas % 2 == 0 {
            "an even number of stacked etcd members tolerates no more failures than one fewer; use 1, 3 or 5"
        } else {
            "supported values: 1, 3, 5"
        };
        error(
            "spec.controlPlane.replicas",
            format!("Invalid value: {cp_replicas}: {why}"),
        );
    }

    match spec.topology {
        Topology::Stacked => {
            if spec.etcd.replicas.is_some() {
                error(
                    "spec.etcd.replicas",
                    "Forbidden: stacked etcd runs one member per control-plane host".into(),
                );
            }
            if spec.etcd.hosts.is_some() {
                error(
                    "spec.etcd.hosts",
                    "Forbidden: stacked etcd runs on the control-plane hosts".into(),
                );
            }
        }
        Topology::External => match spec.etcd.replicas {
            None => error(
                "spec.etcd.replicas",
                "Required value: the External topology needs etcd replicas".into(),
            ),
            Some(n) if !MEMBER_COUNTS.contains(&n) => error(
                "spec.etcd.replicas",
                format!("Invalid value: {n}: supported values: 1, 3, 5"),
            ),
            Some(_) => {}
        },
    }
    if spec.etcd.quota_backend_bytes.is_some_and(|q| q <= 0) {
        error(
            "spec.etcd.quotaBackendBytes",
            "Invalid value: must be greater than 0".into(),
        );
    }
    if let Some(compaction) = &spec.etcd.auto_compaction {
        let valid = match compaction.mode {
            AutoCompactionMode::Periodic => parse_duration(&compaction.retention).is_ok(),
            AutoCompactionMode::Revision => compaction.retention.parse::<u64>().is_ok(),
        };
        if !valid {
            error(
                "spec.etcd.autoCompaction.retention",
                format!(
                    "Invalid value: {:?}: a duration for Periodic, a revision count for Revision",
                    compaction.retention
                ),
            );
        }
    }

    let known: BTreeMap<&str, &InventoryHost> =
        inventory.iter().map(|h| (h.name.as_str(), h)).collect();
    let lb_spec = &spec.load_balancer;
    let (lb_field, load_balancers): (&str, Vec<String>) =
        match (lb_spec.host.is_empty(), &lb_spec.hosts[..]) {
            (false, []) => ("spec.loadBalancer.host", vec![lb_spec.host.clone()]),
            (true, hosts @ ([_] | [_, _])) => ("spec.loadBalancer.hosts", hosts.to_vec()),
            (true, []) => {
                error(
                    "spec.loadBalancer.host",
                    "Required value: give host, or hosts".into(),
                );
                ("spec.loadBalancer.host", Vec::new())
            }
            (true, hosts) => {
                error(
                    "spec.loadBalancer.hosts",
                    format!(
                        "Invalid value: {} hosts: one or two (with a virtual IP)",
                        hosts.len()
                    ),
                );
                ("spec.loadBalancer.hosts", Vec::new())
            }
            (false, _) => {
                error(
                    "spec.loadBalancer.hosts",
                    "Forbidden: give host or hosts, not both".into(),
                );
                ("spec.loadBalancer.hosts", Vec::new())
            }
        };
    for (i, lb) in load_balancers.iter().enumerate() {
        if !known.contains_key(lb.as_str()) {
            error(
                lb_field,
                format!("Not found: Host {lb:?} is not in the inventory"),
            );
        } else if load_balancers[..i].contains(lb) {
            error(lb_field, format!("Duplicate value: {lb:?}"));
        }
    }
    let virtual_ip = match (&lb_spec.virtual_ip, load_balancers.len()) {
        (Some(vip), 2) => match vip.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                error(
                    "spec.loadBalancer.virtualIP",
                    format!("Invalid value: {vip:?}: must be an IP address"),
                );
                None
            }
        },
        (None, 2) => {
            error(
                "spec.loadBalancer.virtualIP",
                "Required value: two load-balancer hosts share a virtual IP".into(),
            );
            None
        }
        (Some(_), 1) => {
            error(
                "spec.loadBalancer.virtualIP",
                "Forbidden: a virtual IP needs two load-balancer hosts".into(),
            );
            None
        }
        _ => None,
    };
    if !(1..=65535).contains(&spec.load_balancer.port) {
        error(
            "spec.loadBalancer.port",
            format!(
                "Invalid value: {}: must be between 1 and 65535, inclusive",
                spec.load_balancer.port
            ),
        );
    }

    // Roles claim hosts in order (load balancer, etcd, control plane); a host named for two
    // roles is an error, a host merely selected by a later role's selector is skipped.
    let mut taken: BTreeMap<String, &str> = BTreeMap::new();
    for lb in &load_balancers {
        taken.insert(lb.clone(), lb_field);
    }
    let mut etcd_spares = Vec::new();
    let etcd_hosts = match (&spec.topology, &spec.etcd.hosts) {
        (Topology::External, Some(selection)) => select_role(
            "spec.etcd.hosts",
            selection,
            spec.etcd
                .replicas
                .filter(|n| MEMBER_COUNTS.contains(n))
                .unwrap_or(0),
            &known,
            &mut taken,
            &mut etcd_spares,
            &mut error,
        ),
        (Topology::External, None) => {
            error(
                "spec.etcd.hosts",
                "Required value: the External topology needs etcd hosts".into(),
            );
            Vec::new()
        }
        (Topology::Stacked, _) => Vec::new(),
    };
    let mut control_plane_spares = Vec::new();
    let control_plane = select_role(
        "spec.controlPlane.hosts",
        &spec.control_plane.hosts,
        // An unsupported count is reported once, above, not again as a shortage of hosts.
        if MEMBER_COUNTS.contains(&cp_replicas) {
            cp_replicas
        } else {
            0
        },
        &known,
        &mut taken,
        &mut control_plane_spares,
        &mut error,
    );

    let network = validate_network(spec, &mut error);

    for (component, args) in [
        ("etcd", &spec.components.etcd),
        ("apiserver", &spec.components.apiserver),
        ("scheduler", &spec.components.scheduler),
        ("controllerManager", &spec.components.controller_manager),
        ("haproxy", &spec.components.haproxy),
    ] {
        for flag in args.extra_args.keys() {
            if !is_flag_name(flag) {
                error(
                    &format!("spec.components.{component}.extraArgs"),
                    format!("Invalid value: {flag:?}: a flag name without leading dashes, such as \"v\" or \"max-requests-inflight\""),
                );
            }
        }
    }

    let validity = duration_field(
        "spec.certificates.validity",
        &spec.certificates.validity,
        &mut error,
    );
    let renew_before = duration_field(
        "spec.certificates.renewBefore",
        &spec.certificates.renew_before,
        &mut error,
    );
    if let (Some(v), Some(r)) = (validity, renew_before) {
        if r >= v {
            error(
                "spec.certificates.renewBefore",
                format!(
                    "Invalid value: {:?}: must be shorter than the validity ({})",
                    spec.certificates.renew_before, spec.certificates.validity
                ),
            );
        }
    }

    if let Some(request) = &spec.certificates.authority_rotation {
        if request.is_empty() || request.len() > 253 {
            error(
                "spec.certificates.authorityRotation",
                format!("Invalid value: {request:?}: must be 1 to 253 characters, or left out"),
            );
        }
    }

    match (network, validity, renew_before) {
        (Some(network), Some(certificate_validity), Some(renew_before)) if errors.is_empty() => {
            let (etcd, etcd_spares) = if spec.topology == Topology::Stacked {
                (control_plane.clone(), control_plane_spares.clone())
            } else {
                (etcd_hosts, etcd_spares)
            };
            Ok(ValidCluster {
                placement: Placement {
                    control_plane,
                    etcd,
                    load_balancers,
                    virtual_ip,
                    control_plane_spares,
                    etcd_spares,
                },
                network,
                certificate_validity,
                renew_before,
            })
        }
        _ => Err(InvalidSpec(errors)),
    }
}

/// The hosts a role gets: the named ones (which must exist and be free) or the free hosts its
/// selector matches, by name; `replicas` of them, the rest kept as spares.
fn select_role(
    field: &str,
    selection: &HostSelection,
    replicas: i32,
    known: &BTreeMap<&str, &InventoryHost>,
    taken: &mut BTreeMap<String, &'static str>,
    spares: &mut Vec<String>,
    error: &mut impl FnMut(&str, String),
) -> Vec<String> {
    let role: &'static str = if field.starts_with("spec.etcd") {
        "spec.etcd.hosts"
    } else {
        "spec.controlPlane.hosts"
    };
    let candidates: Vec<String> = match (&selection.names[..], &selection.selector) {
        ([], None) | ([_, ..], Some(_)) => {
            error(
                field,
                "Invalid value: give either names or a selector".into(),
            );
            return Vec::new();
        }
        (names, None) => {
            let mut seen = BTreeSet::new();
            let mut chosen = Vec::new();
            for name in names {
                if !seen.insert(name) {
                    error(
                        &format!("{field}.names"),
                        format!("Duplicate value: {name:?}"),
                    );
                } else if !known.contains_key(name.as_str()) {
                    error(
                        &format!("{field}.names"),
                        format!("Not found: Host {name:?} is not in the inventory"),
                    );
                } else if let Some(other) = taken.get(name) {
                    error(
                        &format!("{field}.names"),
                        format!("Invalid value: {name:?}: host is already used by {other}"),
                    );
                } else {
                    chosen.push(name.clone());
                }
            }
            chosen
        }
        ([], Some(selector)) => match selector_matcher(selector) {
            Ok(matches) => known
                .values()
                .filter(|h| matches(&h.labels) && !taken.contains_key(&h.name))
                .map(|h| h.name.clone())
                .collect(),
            Err(message) => {
                error(&format!("{field}.selector"), message);
                return Vec::new();
            }
        },
    };
    let wanted = usize::try_from(replicas).unwrap_or(0);
    if wanted > 0 && candidates.len() < wanted {
        error(
            field,
            format!(
                "Invalid value: {} host(s) available, {wanted} needed",
                candidates.len()
            ),
        );
    }
    for name in &candidates {
        taken.insert(name.clone(), role);
    }
    let mut chosen = candidates;
    if chosen.len() > wanted {
        spares.extend(chosen.split_off(wanted));
    }
    chosen
}

type LabelMatcher = Box<dyn Fn(&BTreeMap<String, String>) -> bool>;

/// A label selector as a predicate: `matchLabels` and `matchExpressions` (In, NotIn, Exists,
/// DoesNotExist), all of which must hold.
pub fn selector_matcher(selector: &LabelSelector) -> Result<LabelMatcher, String> {
    let labels = selector.match_labels.clone().unwrap_or_default();
    let mut expressions = Vec::new();
    for e in selector.match_expressions.iter().flatten() {
        let values: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "Required value: values must be given for operator {:?}",
                    e.operator
                ))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "Forbidden: values must be empty for operator {:?}",
                    e.operator
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "Unsupported value: {other:?}: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""
                ))
            }
        }
        expressions.push((e.key.clone(), e.operator.clone(), values));
    }
    Ok(Box::new(move |host: &BTreeMap<String, String>| {
        labels.iter().all(|(k, v)| host.get(k) == Some(v))
            && expressions.iter().all(|(key, op, values)| {
                let value = host.get(key);
                match op.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !values.contains(v)),
                    "Exists" => value.is_some(),
                    _ => value.is_none(),
                }
            })
    }))
}

fn validate_network(spec: &ClusterSpec, error: &mut impl FnMut(&str, String)) -> Option<Network> {
    let net = &spec.network;
    let cidr =
        |field: &str, raw: &str, error: &mut dyn FnMut(&str, String)| match raw.parse::<IpNet>() {
            Ok(n) if n.network() == n.addr() => Some(n),
            Ok(n) => {
                error(
                    field,
                    format!(
                        "Invalid value: {raw:?}: host bits are set; did you mean {}?",
                        n.trunc()
                    ),
                );
                None
            }
            Err(_) => {
                error(
                    field,
                    format!("Invalid value: {raw:?}: must be a CIDR such as 10.96.0.0/12"),
                );
                None
            }
        };
    let pods = cidr("spec.network.podCIDR", &net.pod_cidr, error);
    let services = cidr("spec.network.serviceCIDR", &net.service_cidr, error);
    if !is_dns_subdomain(&net.cluster_domain) {
        error(
            "spec.network.clusterDomain",
            format!(
                "Invalid value: {:?}: must be a lowercase DNS subdomain such as cluster.local",
                net.cluster_domain
            ),
        );
    }
    let (pods, services) = (pods?, services?);
    if pods.contains(&services.network()) || services.contains(&pods.network()) {
        error(
            "spec.network.serviceCIDR",
            format!(
                "Invalid value: {:?}: overlaps the pod range {}",
                net.service_cidr, net.pod_cidr
            ),
        );
        return None;
    }
    let api_service_ip = services.hosts().next()?;
    let dns_service_ip = match &net.dns_service_ip {
        Some(raw) => match raw.parse::<IpAddr>() {
            Ok(ip)
                if services.contains(&ip) && ip != services.network() && ip != api_service_ip =>
            {
                ip
            }
            Ok(_) => {
                error(
                    "spec.network.dnsServiceIP",
                    format!(
                        "Invalid value: {raw:?}: must be an address of the service range {} other than its network and first address",
                        net.service_cidr
                    ),
                );
                return None;
            }
            Err(_) => {
                error(
                    "spec.network.dnsServiceIP",
                    format!("Invalid value: {raw:?}: must be an IP address"),
                );
                return None;
            }
        },
        None => services.hosts().nth(9)?,
    };
    Some(Network {
        pod_cidr: pods,
        service_cidr: services,
        api_service_ip,
        dns_service_ip,
    })
}

fn duration_field(
    field: &str,
    raw: &str,
    error: &mut impl FnMut(&str, String),
) -> Option<Duration> {
    match parse_duration(raw) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            error(field, format!("Invalid value: {raw:?}: must be positive"));
            None
        }
        Err(message) => {
            error(field, format!("Invalid value: {raw:?}: {message}"));
            None
        }
    }
}

/// A duration as Kubernetes APIs write them (Go's format): `8760h`, `1h30m`, `90s`, `1.5h`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    const UNITS: [(&str, f64); 6] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let invalid = || "must be a duration such as 8760h, 30m or 1h30m".to_string();
    if raw.is_empty() {
        return Err(invalid());
    }
    let mut rest = raw;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = UNITS
            .iter()
            .find(|(u, _)| *u == &rest[..unit_len])
            .map(|(_, s)| *s)
            .ok_or_else(invalid)?;
        seconds += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

fn is_flag_name(flag: &str) -> bool {
    flag.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && flag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn quoted_list(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests;
