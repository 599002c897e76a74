//! What a fresh cluster has before anyone writes to it: the system namespaces and the
//! `kubernetes` Service, whose Endpoints and EndpointSlice list every live API server. Each
//! server holds a key under `<prefix>/masterleases/` on an etcd lease (upstream's lease
//! endpoint reconciler), so a dead server drops out of the endpoints by itself.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hakube_apimachinery::status::ApiError;
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::registry;
use crate::rest::{self, Target};
use crate::State;

const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];
const LEASE_TTL_SECONDS: i64 = 15;
const RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

fn target(
    group: &str,
    plural: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<Target, ApiError> {
    let def = registry::lookup(group, "v1", plural).ok_or_else(|| {
        hakube_apimachinery::status::internal(format!("{plural} is not registered"))
    })?;
    Ok(Target {
        def,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        sub: None,
        field_manager: Some("kube-apiserver".into()),
    })
}

/// The API server itself, writing its own objects.
fn system_user() -> UserInfo {
    UserInfo {
        name: "system:apiserver".into(),
        groups: vec!["system:masters".into()],
        ..Default::default()
    }
}

async fn create_if_absent(state: &State, t: &Target, object: Value) -> Result<(), ApiError> {
    // Checked first: a Service that exists holds its address, and a second create of it would
    // fail allocation before it could fail as a duplicate.
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let key = state.store.key(t.segment(), t.namespace.as_deref(), name);
    let exists = || async {
        state
            .store
            .get(&key)
            .await
            .map(|found| found.is_some())
            .map_err(rest::store_error)
    };
    if exists().await? {
        return Ok(());
    }
    let body = serde_json::to_vec(&object).unwrap_or_default();
    match rest::create(
        state,
        &system_user(),
        t,
        &HashMap::new(),
        &http::HeaderMap::new(),
        &body,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        // Another API server starting beside this one created it first; a Service then fails
        // its address allocation rather than as a duplicate.
        Err(e) if exists().await? => {
            tracing::debug!(error = %e.message, name, "created meanwhile by another API server");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Creates the system namespaces, the `kubernetes` Service and the system PriorityClasses.
pub async fn ensure_defaults(state: &State, secure_port: u16) -> Result<(), ApiError> {
    for ns in SYSTEM_NAMESPACES {
        let t = target("", "namespaces", None, None)?;
        create_if_absent(state, &t, json!({"metadata": {"name": ns}})).await?;
    }
    let service = json!({
        "metadata": {
            "name": "kubernetes",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": state.service_ranges.first_ip().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}],
            "sessionAffinity": "None",
        },
    });
    create_if_absent(
        state,
        &target("", "services", Some("default"), None)?,
        service,
    )
    .await?;
    for (name, value, description) in crate::priority::SYSTEM_CLASSES {
        let class = json!({
            "metadata": {"name": name},
            "value": value,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        create_if_absent(
            state,
            &target("scheduling.k8s.io", "priorityclasses", None, None)?,
            class,
        )
        .await?;
    }
    Ok(())
}

/// The first wait before creating the default objects again, doubled up to the last.
const DEFAULTS_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Creates the default objects, retrying while etcd is unreachable (a host's etcd may start
/// after its API server), then keeps this server in the `kubernetes` endpoints. `/readyz`
/// fails until the default objects exist, as upstream's post-start hooks make it.
pub async fn run(state: Arc<State>, address: String, port: u16) {
    let mut stop = state.shutdown.clone();
    let mut wait = DEFAULTS_RETRY.0;
    loop {
        match ensure_defaults(&state, port).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e.message, retry_in = ?wait, "creating the default objects")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::stopping(&mut stop) => return,
        }
        wait = (wait * 2).min(DEFAULTS_RETRY.1);
    }
    state.defaults_created.store(true, Ordering::Release);
    run_endpoint_reconciler(state, address, port).await
}

/// Keeps this server in the `kubernetes` endpoints while it runs.
async fn run_endpoint_reconciler(state: Arc<State>, address: String, port: u16) {
    let mut stop = state.shutdown.clone();
    loop {
        if let Err(e) = reconcile_endpoints(&state, &address, port).await {
            tracing::warn!(error = %e.message, "reconciling the kubernetes endpoints");
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
            _ = crate::stopping(&mut stop) => break,
        }
    }
    // Leave the endpoints at once on a clean shutdown rather than after the lease runs out.
    if let Err(e) = state.store.release_master_lease(&address).await {
        tracing::debug!(error = %e, "releasing the master lease");
    }
    let _ = write_endpoints(&state, Some(&address), port).await;
}

async fn reconcile_endpoints(state: &State, address: &str, port: u16) -> Result<(), ApiError> {
    state
        .store
        .hold_master_lease(address, LEASE_TTL_SECONDS)
        .await
        .map_err(rest::store_error)?;
    write_endpoints(state, None, port).await
}

/// Writes the `kubernetes` Endpoints and EndpointSlice from the live leases. Servers starting
/// together race: each write carries the resourceVersion read before the leases, so a server
/// that read fewer leases than another has since written conflicts and reads again.
async fn write_endpoints(
    state: &State,
    excluding: Option<&str>,
    port: u16,
) -> Result<(), ApiError> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        match try_write_endpoints(state, excluding, port).await {
            Err(e) if e.code == 409 && attempt < ATTEMPTS => attempt += 1,
            written => return written,
        }
    }
}

async fn try_write_endpoints(
    state: &State,
    excluding: Option<&str>,
    port: u16,
) -> Result<(), ApiError> {
    let endpoints_target = target("", "endpoints", Some("default"), Some("kubernetes"))?;
    let slice_target = target(
        "discovery.k8s.io",
        "endpointslices",
        Some("default"),
        Some("kubernetes"),
    )?;
    let endpoints_version = resource_version(state, &endpoints_target).await?;
    let slice_version = resource_version(state, &slice_target).await?;
    let mut addresses = state
        .store
        .master_leases()
        .await
        .map_err(rest::store_error)?;
    addresses.retain(|a| Some(a.as_str()) != excluding);
    addresses.sort();
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": if addresses.is_empty() { json!([]) } else { json!([{
            "addresses": addresses.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }]) },
    });
    let slice = json!({
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": addresses.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put_at(state, endpoints_target, endpoints, endpoints_version).await?;
    put_at(state, slice_target, slice, slice_version).await
}

/// The stored object's resourceVersion, `None` when there is none yet.
async fn resource_version(state: &State, t: &Target) -> Result<Option<String>, ApiError> {
    match rest::get(state, t).await {
        Ok((_, object)) => Ok(object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string)),
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the object if it is still at `version`, or creates it if there was none; 409 when
/// another writer came first.
async fn put_at(
    state: &State,
    t: Target,
    mut object: Value,
    version: Option<String>,
) -> Result<(), ApiError> {
    let Some(version) = version else {
        let body = serde_json::to_vec(&object).unwrap_or_default();
        let collection = Target { name: None, ..t };
        return rest::create(
            state,
            &system_user(),
            &collection,
            &HashMap::new(),
            &http::HeaderMap::new(),
            &body,
        )
        .await
        .map(|_| ());
    };
    object["metadata"]["resourceVersion"] = json!(version);
    let body = serde_json::to_vec(&object).unwrap_or_default();
    rest::update(state, &t, &HashMap::new(), &http::HeaderMap::new(), &body)
        .await
        .map(|_| ())
}
