//! Subresources that are actions rather than views: `pods/binding`, `pods/eviction` (honouring
//! PodDisruptionBudgets), `serviceaccounts/token` (TokenRequest), and SelfSubjectReview.

use std::collections::HashMap;

use hakube_apimachinery::labels;
use hakube_apimachinery::status::{self, ApiError, StatusCause};
use http::StatusCode;
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::objects::{self, meta_mut};
use crate::registry::{self, ResourceDef};
use crate::rest::{self, store_error, Target};
use crate::storage::{Extras, StoreError};
use crate::State;

fn success(code: u16) -> Value {
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":code})
}

/// POST pods/{name}/binding: assigns the pod to a node, once.
pub async fn bind(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    binding: Value,
) -> Result<(StatusCode, Value), ApiError> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            status::invalid(
                "",
                "Binding",
                t.name.as_deref().unwrap_or(""),
                vec![StatusCause::required("target.name")],
            )
        })?
        .to_string();
    let annotations = binding
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned();
    let pod_name = t.name.clone().unwrap_or_default();
    rest::update_with(state, t, query, None, |old| {
        if objects::is_deleting(old) {
            return Err(status::conflict(
                "",
                "pods/binding",
                &pod_name,
                format!("pod {pod_name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(current) = objects::str_at(old, "spec.nodeName").filter(|n| !n.is_empty()) {
            return Err(status::conflict(
                "",
                "pods/binding",
                &pod_name,
                format!("pod {pod_name} is already assigned to node \"{current}\""),
            ));
        }
        let mut pod = old.clone();
        objects::set_at(&mut pod, "spec.nodeName", json!(node));
        if let Some(extra) = &annotations {
            let meta = meta_mut(&mut pod);
            let existing = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(map) = existing.as_object_mut() {
                for (k, v) in extra {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
        set_condition(&mut pod, "PodScheduled", "True");
        Ok(pod)
    })
    .await?;
    Ok((StatusCode::CREATED, success(201)))
}

fn set_condition(pod: &mut Value, kind: &str, status_value: &str) {
    let condition = json!({
        "type": kind,
        "status": status_value,
        "lastProbeTime": null,
        "lastTransitionTime": objects::now_rfc3339(),
    });
    let conditions = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some(kind))
        .collect();
    out.push(condition);
    objects::set_at(pod, "status.conditions", Value::Array(out));
}

/// POST pods/{name}/eviction: deletes the pod unless a PodDisruptionBudget forbids it.
pub async fn evict(
    state: &State,
    t: &Target,
    query: &HashMap<String, String>,
    eviction: Value,
) -> Result<(StatusCode, Value), ApiError> {
    let delete_options = eviction
        .get("deleteOptions")
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_vec(v).unwrap_or_default())
        .unwrap_or_default();
    let pod_target = Target {
        sub: None,
        ..t.clone()
    };
    let namespace = t.namespace.clone().unwrap_or_default();
    let pod_name = t.name.clone().unwrap_or_default();
    let pod = state
        .store
        .get(&state.store.key("pods", Some(&namespace), &pod_name))
        .await
        .map_err(store_error)?
        .ok_or_else(|| status::not_found("", "pods", &pod_name))?
        .object;
    let phase = objects::str_at(&pod, "status.phase").unwrap_or("");
    // Pods that are not running cannot be disrupted further.
    let exempt = matches!(phase, "Succeeded" | "Failed" | "Pending") || objects::is_deleting(&pod);
    if !exempt {
        charge_budget(state, &namespace, &pod_name, &pod, query).await?;
    }
    rest::delete(state, &pod_target, query, &delete_options).await?;
    Ok((StatusCode::CREATED, success(201)))
}

async fn charge_budget(
    state: &State,
    namespace: &str,
    pod_name: &str,
    pod: &Value,
    query: &HashMap<String, String>,
) -> Result<(), ApiError> {
    let pdb_def = registry::lookup("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| status::internal("poddisruptionbudgets are not registered"))?;
    let prefix = state
        .store
        .collection("poddisruptionbudgets", Some(namespace));
    let page = state
        .store
        .list(&prefix, None, 0, 0, false)
        .await
        .map_err(store_error)?;
    let matching: Vec<_> = page
        .items
        .into_iter()
        // policy/v1: an empty selector selects every pod in the namespace, a null one none.
        .filter(|s| {
            s.object
                .pointer("/spec/selector")
                .map(labels::from_label_selector_json)
                .and_then(Result::ok)
                .is_some_and(|sel| sel.matches(objects::labels(pod)))
        })
        .collect();
    let budget = match matching.as_slice() {
        [] => return Ok(()),
        [one] => one,
        _ => {
            return Err(status::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ))
        }
    };
    let pdb_name = objects::name(&budget.object).unwrap_or("").to_string();
    let too_many = |message: String| {
        let mut err = status::too_many_requests(
            "Cannot evict pod as it would violate the pod's disruption budget.",
            10,
        );
        err.details = Some(status::StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            causes: vec![StatusCause {
                reason: "DisruptionBudget".into(),
                message,
                field: String::new(),
            }],
            retry_after_seconds: Some(10),
        });
        err
    };
    let generation = objects::meta(&budget.object)
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let observed = budget
        .object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if observed < generation {
        return Err(too_many(format!(
            "The disruption budget {pdb_name} is still being processed by the server."
        )));
    }
    let allowed = budget
        .object
        .pointer("/status/disruptionsAllowed")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if allowed <= 0 {
        let healthy = budget
            .object
            .pointer("/status/currentHealthy")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let desired = budget
            .object
            .pointer("/status/desiredHealthy")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        return Err(too_many(format!(
            "The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently"
        )));
    }
    if query.get("dryRun").is_some_and(|v| v == "All") {
        return Ok(());
    }
    // Record the disruption before deleting, so concurrent evictions see the smaller budget.
    let mut charged = budget.object.clone();
    objects::set_at(
        &mut charged,
        "status.disruptionsAllowed",
        json!(allowed - 1),
    );
    let mut disrupted = charged
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    disrupted.insert(pod_name.to_string(), json!(objects::now_rfc3339()));
    objects::set_at(
        &mut charged,
        "status.disruptedPods",
        Value::Object(disrupted),
    );
    let key = state
        .store
        .key("poddisruptionbudgets", Some(namespace), &pdb_name);
    match state
        .store
        .update(&key, &charged, budget.mod_revision, &Extras::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict) => Err(status::conflict(
            pdb_def.group,
            pdb_def.plural,
            &pdb_name,
            status::OBJECT_MODIFIED,
        )),
        Err(e) => Err(store_error(e)),
    }
}

/// POST serviceaccounts/{name}/token: a TokenRequest, answered with a signed JWT.
pub async fn token(
    state: &State,
    t: &Target,
    request: Value,
) -> Result<(StatusCode, Value), ApiError> {
    let issuer = state.authn.issuer().ok_or_else(|| {
        status::bad_request(
            "serviceaccounts/token is disabled: the server has no --service-account-signing-key-file",
        )
    })?;
    let namespace = t.namespace.clone().unwrap_or_default();
    let sa_name = t.name.clone().unwrap_or_default();
    let spec = request.get("spec").cloned().unwrap_or(json!({}));
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => issuer.audiences().to_vec(),
    };
    let expiration = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if expiration < 600 {
        return Err(status::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            &sa_name,
            vec![StatusCause::invalid(
                "spec.expirationSeconds",
                json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    if expiration > 1 << 32 {
        return Err(status::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            &sa_name,
            vec![StatusCause::invalid(
                "spec.expirationSeconds",
                json!(expiration),
                "may not specify a duration larger than 2^32 seconds",
            )],
        ));
    }
    let sa = state
        .store
        .get(
            &state
                .store
                .key("serviceaccounts", Some(&namespace), &sa_name),
        )
        .await
        .map_err(store_error)?
        .ok_or_else(|| status::not_found("", "serviceaccounts", &sa_name))?;
    let sa_uid = objects::uid(&sa.object).unwrap_or("").to_string();
    let now = chrono::Utc::now().timestamp();
    let mut k8s = json!({
        "namespace": namespace,
        "serviceaccount": {"name": sa_name, "uid": sa_uid},
    });
    let bound = spec.get("boundObjectRef").filter(|v| !v.is_null()).cloned();
    if let Some(reference) = &bound {
        let kind = reference.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
        let (segment, claim, ns) = match kind {
            "Pod" => ("pods", "pod", Some(namespace.as_str())),
            "Secret" => ("secrets", "secret", Some(namespace.as_str())),
            "Node" => ("nodes", "node", None),
            other => {
                return Err(status::invalid(
                    "authentication.k8s.io",
                    "TokenRequest",
                    &sa_name,
                    vec![StatusCause::not_supported(
                        "spec.boundObjectRef.kind",
                        json!(other),
                        &["Pod", "Secret", "Node"],
                    )],
                ))
            }
        };
        let object = state
            .store
            .get(&state.store.key(segment, ns, name))
            .await
            .map_err(store_error)?
            .ok_or_else(|| status::not_found("", segment, name))?;
        let actual_uid = objects::uid(&object.object).unwrap_or("").to_string();
        if let Some(uid) = reference
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
        {
            if uid != actual_uid {
                return Err(status::conflict(
                    "",
                    segment,
                    name,
                    format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"),
                ));
            }
        }
        k8s[claim] = json!({"name": name, "uid": actual_uid});
    }
    let claims = json!({
        "aud": audiences,
        "exp": now + expiration,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
        "kubernetes.io": k8s,
    });
    let token = issuer
        .sign(claims)
        .map_err(|e| status::internal(e.to_string()))?;
    let expires = chrono::DateTime::from_timestamp(now + expiration, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut spec_out = json!({"audiences": audiences, "expirationSeconds": expiration});
    if let Some(b) = bound {
        spec_out["boundObjectRef"] = b;
    }
    Ok((
        StatusCode::CREATED,
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": sa_name, "namespace": namespace, "creationTimestamp": objects::now_rfc3339()},
            "spec": spec_out,
            "status": {"token": token, "expirationTimestamp": expires},
        }),
    ))
}

/// SelfSubjectReview (`kubectl auth whoami`): who the server thinks you are.
pub fn review(def: &ResourceDef, user: &UserInfo) -> Result<(StatusCode, Value), ApiError> {
    Ok((
        StatusCode::CREATED,
        json!({
            "kind": def.kind,
            "apiVersion": def.api_version(),
            "metadata": {"creationTimestamp": objects::now_rfc3339()},
            "status": {"userInfo": user.to_json()},
        }),
    ))
}
