//! node-ipam-controller (upstream's range allocator): with `--allocate-node-cidrs`, every node
//! gets a `--node-cidr-mask-size` block of each `--cluster-cidr` as its `spec.podCIDRs`,
//! never one another node holds or the Service range overlaps. The blocks in use are read
//! from the nodes themselves, so a restart forgets nothing and a deleted node's block is free.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;

use crate::context::Context;
use crate::controllers::informer;
use crate::options::Options;

const QUEUE: &str = "node_ipam_controller";
const CONTROLLER: &str = "cidrAllocator";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("--cluster-cidr is required with --allocate-node-cidrs")]
    NoClusterCidr,
    #[error("invalid CIDR {0:?}")]
    Invalid(String),
    #[error("--node-cidr-mask-size {mask} does not fit in {cidr}")]
    Mask { cidr: IpNet, mask: u8 },
}

/// Each cluster CIDR with the prefix length of its node blocks, and the range never handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ranges: Vec<(IpNet, u8)>,
    pub excluded: Vec<IpNet>,
}

fn parse(cidr: &str) -> Result<IpNet, ConfigError> {
    cidr.trim()
        .parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| ConfigError::Invalid(cidr.to_string()))
}

/// The allocation plan from the flags (one range per family for dual stack).
pub fn plan(options: &Options) -> Result<Plan, ConfigError> {
    let cluster = options
        .cluster_cidr
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .ok_or(ConfigError::NoClusterCidr)?;
    let mut ranges = Vec::new();
    for cidr in cluster.split(',') {
        let net = parse(cidr)?;
        let mask = match net {
            IpNet::V4(_) => options
                .node_cidr_mask_size_ipv4
                .or(options.node_cidr_mask_size)
                .unwrap_or(24),
            IpNet::V6(_) => options
                .node_cidr_mask_size_ipv6
                .or(options.node_cidr_mask_size)
                .unwrap_or(64),
        };
        if mask < net.prefix_len() || mask > net.max_prefix_len() {
            return Err(ConfigError::Mask { cidr: net, mask });
        }
        ranges.push((net, mask));
    }
    let excluded = match options.service_cluster_ip_range.as_deref() {
        Some(services) => services
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(parse)
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok(Plan { ranges, excluded })
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The lowest block of `range` that no used block or excluded range overlaps.
pub fn allocate(
    range: &IpNet,
    mask: u8,
    used: &BTreeSet<IpNet>,
    excluded: &[IpNet],
) -> Option<IpNet> {
    range.subnets(mask).ok()?.find(|candidate| {
        !excluded.iter().any(|e| overlaps(e, candidate))
            && !used.iter().any(|u| overlaps(u, candidate))
    })
}

/// The node's pod CIDRs as recorded in its spec.
pub fn node_cidrs(node: &Node) -> Vec<IpNet> {
    let spec = node.spec.as_ref();
    let mut cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if cidrs.is_empty() {
        cidrs.extend(spec.and_then(|s| s.pod_cidr.clone()));
    }
    cidrs
        .iter()
        .filter_map(|c| c.parse::<IpNet>().ok())
        .collect()
}

/// One block of every range for a node, or `None` when some range is exhausted.
pub fn allocate_for_node(plan: &Plan, used: &BTreeSet<IpNet>) -> Option<Vec<IpNet>> {
    plan.ranges
        .iter()
        .map(|(range, mask)| allocate(range, *mask, used, &plan.excluded))
        .collect()
}

pub async fn run(ctx: Arc<Context>) {
    if !ctx.options.allocate_node_cidrs {
        tracing::info!("--allocate-node-cidrs is off: node IPAM does nothing");
        return;
    }
    let plan = match plan(&ctx.options) {
        Ok(plan) => plan,
        Err(error) => {
            tracing::error!(%error, "node IPAM cannot start");
            return;
        }
    };
    let changed = Arc::new(Notify::new());
    let nodes = informer::cache(
        Api::<Node>::all(ctx.client.clone()),
        watcher::Config::default(),
        changed.clone(),
    );
    if nodes.wait_until_ready().await.is_err() {
        return;
    }
    let api = Api::<Node>::all(ctx.client.clone());
    let recorder = ctx.recorder(CONTROLLER);
    // Blocks handed out but not yet seen on the node in the cache.
    let mut pending: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    let mut exhausted: BTreeSet<String> = BTreeSet::new();
    loop {
        let snapshot = nodes.state();
        let names: BTreeSet<String> = snapshot.iter().map(|n| n.name_any()).collect();
        pending.retain(|name, _| names.contains(name));
        exhausted.retain(|name| names.contains(name));
        for node in &snapshot {
            if !node_cidrs(node).is_empty() {
                pending.remove(&node.name_any());
            }
        }
        let mut used: BTreeSet<IpNet> = snapshot.iter().flat_map(|n| node_cidrs(n)).collect();
        used.extend(pending.values().flatten().copied());
        let mut failed = false;
        for node in snapshot.iter().filter(|n| node_cidrs(n).is_empty()) {
            let name = node.name_any();
            if pending.contains_key(&name) {
                continue;
            }
            let timer = ctx.metrics.sync(QUEUE);
            let Some(cidrs) = allocate_for_node(&plan, &used) else {
                timer.done(false);
                failed = true;
                if exhausted.insert(name.clone()) {
                    tracing::warn!(node = %name, "no pod CIDR left");
                    not_available(&recorder, node).await;
                }
                continue;
            };
            let texts: Vec<String> = cidrs.iter().map(IpNet::to_string).collect();
            let patch = json!({"spec": {"podCIDR": texts[0], "podCIDRs": texts}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %name, cidrs = ?texts, "allocated pod CIDRs");
                    used.extend(cidrs.iter().copied());
                    pending.insert(name.clone(), cidrs);
                    exhausted.remove(&name);
                    timer.done(true);
                }
                Err(error) => {
                    tracing::warn!(node = %name, %error, "recording pod CIDRs failed");
                    failed = true;
                    timer.done(false);
                }
            }
        }
        // Retry failures (a node deleted elsewhere frees a block) even without a change.
        let retry = if failed {
            std::time::Duration::from_secs(5)
        } else {
            std::time::Duration::from_secs(300)
        };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(retry) => {}
        }
    }
}

async fn not_available(recorder: &Recorder, node: &Node) {
    let name = node.name_any();
    let event = Event {
        type_: EventType::Normal,
        reason: "CIDRNotAvailable".into(),
        note: Some(format!("Node {name} status is now: CIDRNotAvailable")),
        action: "Allocate".into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &node.object_ref(&())).await {
        tracing::debug!(%error, "publishing an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_are_distinct_and_skip_the_service_range() {
        let options = Options::parse_from([
            "kcm",
            "--allocate-node-cidrs",
            "--cluster-cidr=10.0.0.0/22",
            "--node-cidr-mask-size=24",
            "--service-cluster-ip-range=10.0.1.0/24",
        ]);
        let plan = plan(&options).unwrap();
        let mut used = BTreeSet::new();
        let first = allocate_for_node(&plan, &used).unwrap();
        assert_eq!(first, vec![net("10.0.0.0/24")]);
        used.extend(first);
        assert_eq!(
            allocate_for_node(&plan, &used).unwrap(),
            vec![net("10.0.2.0/24")]
        );
        used.insert(net("10.0.2.0/24"));
        used.insert(net("10.0.3.0/24"));
        assert_eq!(allocate_for_node(&plan, &used), None, "exhausted");
        // A released block is handed out again.
        used.remove(&net("10.0.0.0/24"));
        assert_eq!(
            allocate_for_node(&plan, &used).unwrap(),
            vec![net("10.0.0.0/24")]
        );
    }

    #[test]
    fn dual_stack_takes_one_block_per_family() {
        let options = Options::parse_from(["kcm", "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56"]);
        let plan = plan(&options).unwrap();
        assert_eq!(
            plan.ranges,
            vec![(net("10.244.0.0/16"), 24), (net("fd00:10:244::/56"), 64)]
        );
        let cidrs = allocate_for_node(&plan, &BTreeSet::new()).unwrap();
        assert_eq!(cidrs, vec![net("10.244.0.0/24"), net("fd00:10:244::/64")]);
    }

    #[test]
    fn bad_flags_are_refused() {
        let none = Options::parse_from(["kcm", "--allocate-node-cidrs"]);
        assert_eq!(plan(&none), Err(ConfigError::NoClusterCidr));
        let small = Options::parse_from([
            "kcm",
            "--cluster-cidr=10.0.0.0/24",
            "--node-cidr-mask-size=16",
        ]);
        assert!(matches!(plan(&small), Err(ConfigError::Mask { .. })));
    }
}
