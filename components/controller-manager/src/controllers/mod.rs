//! The controllers, and which of them `--controllers` enables. Each controller module exposes
//! `run(Arc<Context>)`, which returns only when the controller can no longer work.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::context::Context;

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod garbage_collector;
pub mod informer;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod ownership;
pub mod persistentvolume;
pub mod pod_control;
pub mod pod_gc;
pub mod pods;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod revision;
pub mod root_ca;
pub mod service_pods;
pub mod serviceaccount;
pub mod statefulset;
pub mod taint_eviction;
pub mod ttl_after_finished;

/// One controller: its upstream name (as `--controllers` and upstream's logs spell it), the
/// short alias upstream still accepts, and how to run it.
pub struct Descriptor {
    pub name: &'static str,
    pub alias: &'static str,
    pub enabled_by_default: bool,
    pub run: fn(Arc<Context>) -> BoxFuture<'static, ()>,
}

/// Every controller this manager knows, in upstream's naming.
pub fn all() -> Vec<Descriptor> {
    vec![
        Descriptor {
            name: "serviceaccount-controller",
            alias: "serviceaccount",
            enabled_by_default: true,
            run: |ctx| serviceaccount::run(ctx).boxed(),
        },
        Descriptor {
            name: "root-ca-certificate-publisher-controller",
            alias: "root-ca-cert-publisher",
            enabled_by_default: true,
            run: |ctx| root_ca::run(ctx).boxed(),
        },
        Descriptor {
            name: "node-lifecycle-controller",
            alias: "nodelifecycle",
            enabled_by_default: true,
            run: |ctx| node_lifecycle::run(ctx).boxed(),
        },
        Descriptor {
            name: "node-ipam-controller",
            alias: "nodeipam",
            enabled_by_default: true,
            run: |ctx| node_ipam::run(ctx).boxed(),
        },
        Descriptor {
            name: "pod-garbage-collector-controller",
            alias: "podgc",
            enabled_by_default: true,
            run: |ctx| pod_gc::run(ctx).boxed(),
        },
        Descriptor {
            name: "namespace-controller",
            alias: "namespace",
            enabled_by_default: true,
            run: |ctx| namespace::run(ctx).boxed(),
        },
        Descriptor {
            name: "garbage-collector-controller",
            alias: "garbagecollector",
            enabled_by_default: true,
            run: |ctx| garbage_collector::run(ctx).boxed(),
        },
        Descriptor {
            name: "taint-eviction-controller",
            alias: "taint-eviction-controller",
            enabled_by_default: true,
            run: |ctx| taint_eviction::run(ctx).boxed(),
        },
        Descriptor {
            name: "endpoints-controller",
            alias: "endpoint",
            enabled_by_default: true,
            run: |ctx| endpoints::run(ctx).boxed(),
        },
        Descriptor {
            name: "endpointslice-controller",
            alias: "endpointslice",
            enabled_by_default: true,
            run: |ctx| endpointslice::run(ctx).boxed(),
        },
        Descriptor {
            name: "disruption-controller",
            alias: "disruption",
            enabled_by_default: true,
            run: |ctx| disruption::run(ctx).boxed(),
        },
        Descriptor {
            name: "resourcequota-controller",
            alias: "resourcequota",
            enabled_by_default: true,
            run: |ctx| resourcequota::run(ctx).boxed(),
        },
        Descriptor {
            name: "persistentvolume-binder-controller",
            alias: "persistentvolume-binder",
            enabled_by_default: true,
            run: |ctx| persistentvolume::run(ctx).boxed(),
        },
        Descriptor {
            name: "job-controller",
            alias: "job",
            enabled_by_default: true,
            run: |ctx| job::run(ctx).boxed(),
        },
        Descriptor {
            name: "cronjob-controller",
            alias: "cronjob",
            enabled_by_default: true,
            run: |ctx| cronjob::run(ctx).boxed(),
        },
        Descriptor {
            name: "ttl-after-finished-controller",
            alias: "ttl-after-finished",
            enabled_by_default: true,
            run: |ctx| ttl_after_finished::run(ctx).boxed(),
        },
        Descriptor {
            name: "daemonset-controller",
            alias: "daemonset",
            enabled_by_default: true,
            run: |ctx| daemonset::run(ctx).boxed(),
        },
        Descriptor {
            name: "statefulset-controller",
            alias: "statefulset",
            enabled_by_default: true,
            run: |ctx| statefulset::run(ctx).boxed(),
        },
        Descriptor {
            name: "replicaset-controller",
            alias: "replicaset",
            enabled_by_default: true,
            run: |ctx| replicaset::run(ctx).boxed(),
        },
        Descriptor {
            name: "replicationcontroller-controller",
            alias: "replicationcontroller",
            enabled_by_default: true,
            run: |ctx| replicationcontroller::run(ctx).boxed(),
        },
        Descriptor {
            name: "deployment-controller",
            alias: "deployment",
            enabled_by_default: true,
            run: |ctx| deployment::run(ctx).boxed(),
        },
    ]
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectionError {
    #[error("{0:?} is not in the list of known controllers")]
    Unknown(String),
}

/// The controllers `--controllers` enables: `*` stands for every on-by-default controller,
/// `name` enables one, `-name` disables one (and wins over `*`).
pub fn select<'a>(
    known: &'a [Descriptor],
    flags: &[String],
) -> Result<Vec<&'a Descriptor>, SelectionError> {
    let find = |name: &str| {
        known
            .iter()
            .find(|d| d.name == name || d.alias == name)
            .ok_or_else(|| SelectionError::Unknown(name.to_string()))
    };
    let mut enabled = BTreeSet::new();
    let mut disabled = BTreeSet::new();
    let mut star = false;
    for flag in flags.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
        if flag == "*" {
            star = true;
        } else if let Some(name) = flag.strip_prefix('-') {
            disabled.insert(find(name)?.name);
        } else {
            enabled.insert(find(flag)?.name);
        }
    }
    Ok(known
        .iter()
        .filter(|d| !disabled.contains(d.name))
        .filter(|d| enabled.contains(d.name) || (star && d.enabled_by_default))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(flags: &[&str]) -> Result<Vec<&'static str>, SelectionError> {
        let known = all();
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        Ok(select(&known, &flags)?.iter().map(|d| d.name).collect())
    }

    #[test]
    fn star_enables_the_defaults_and_minus_disables() {
        let every = names(&["*"]).unwrap();
        assert!(every.contains(&"serviceaccount-controller"));
        let without = names(&["*", "-serviceaccount"]).unwrap();
        assert!(!without.contains(&"serviceaccount-controller"));
        assert_eq!(without.len(), every.len() - 1);
    }

    #[test]
    fn names_and_aliases_select_single_controllers() {
        assert_eq!(
            names(&["root-ca-cert-publisher"]).unwrap(),
            vec!["root-ca-certificate-publisher-controller"]
        );
        assert_eq!(
            names(&["serviceaccount-controller"]).unwrap(),
            vec!["serviceaccount-controller"]
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        assert_eq!(
            names(&["*", "-no-such"]),
            Err(SelectionError::Unknown("no-such".into()))
        );
    }
}
