//! Upstream's ResourceQuota admission: a new object in a namespace, or a changed Service or
//! PersistentVolumeClaim, is checked against the namespace's quotas by the rules of
//! `hakube_quota`, and before it is written every quota it counts against is charged —
//! `status.used` plus what the write adds, written with a compare on the quota's revision so
//! concurrent writers cannot both spend the same room. The resourcequota controller later
//! recounts usage from what really exists, which returns a charge whose object write failed
//! (upstream's model too).

use hakube_apimachinery::status::{self, ApiError, StatusDetails};
use hakube_quota::{Charge, Counted, Refusal};
use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::{json, Value};

use crate::registry::ResourceDef;
use crate::rest::store_error;
use crate::storage::{Extras, StoreError, Stored};
use crate::State;

const SEGMENT: &str = "resourcequotas";
/// How often a charge is retried when another writer changed the quota first.
const CHARGE_ATTEMPTS: usize = 32;

/// 403 Forbidden as upstream's admission reports it: `pods "web" is forbidden: <reason>`.
fn forbidden(def: &ResourceDef, name: &str, reason: impl std::fmt::Display) -> ApiError {
    let resource = if def.group.is_empty() {
        def.plural.to_string()
    } else {
        format!("{}.{}", def.plural, def.group)
    };
    let mut err = status::forbidden(format!(
        "{resource} {} is forbidden: {reason}",
        status::go_quote(name)
    ));
    err.details = Some(StatusDetails {
        name: name.to_string(),
        group: def.group.to_string(),
        kind: def.plural.to_string(),
        ..StatusDetails::default()
    });
    err
}

fn decode_quota(stored: &Stored) -> Option<ResourceQuota> {
    match serde_json::from_value(stored.object.clone()) {
        Ok(quota) => Some(quota),
        Err(error) => {
            tracing::warn!(key = %stored.key, %error, "stored ResourceQuota does not decode; not enforced");
            None
        }
    }
}

/// Checks `object` (stored form, defaulted and validated) of `def` in `namespace`, new or
/// replacing `previous`, against the namespace's quotas and, unless `dry_run`, charges them.
pub async fn admit(
    state: &State,
    def: &ResourceDef,
    namespace: &str,
    object: &Value,
    previous: Option<&Value>,
    dry_run: bool,
) -> Result<(), ApiError> {
    // Upstream never quotas core Events.
    if def.group.is_empty() && def.plural == "events" {
        return Ok(());
    }
    if previous.is_some() && !Counted::updates_count(def.group, def.plural) {
        return Ok(());
    }
    // A stale `status.used` only costs a charge a conflict and a fresh read.
    let quotas = state
        .cached_objects(SEGMENT, Some(namespace))
        .await
        .map_err(store_error)?;
    if quotas.is_empty() {
        return Ok(());
    }
    let name = crate::objects::name(object).unwrap_or("").to_string();
    let decode = |object: &Value| {
        Counted::decode(def.group, def.plural, object).map_err(|e| {
            status::internal(format!(
                "reading {} {name} for quota admission: {e}",
                def.plural
            ))
        })
    };
    let counted = decode(object)?;
    let previous = previous.map(decode).transpose()?;
    let stored: Vec<(Stored, ResourceQuota)> = quotas
        .into_iter()
        .filter_map(|s| decode_quota(&s).map(|q| (s, q)))
        .collect();
    let quotas: Vec<ResourceQuota> = stored.iter().map(|(_, q)| q.clone()).collect();
    let charges = hakube_quota::admit(&quotas, &counted, previous.as_ref())
        .map_err(|refusal| forbidden(def, &name, refusal))?;
    if dry_run {
        return Ok(());
    }
    for charge in charges {
        let Some((quota_stored, _)) = stored
            .iter()
            .find(|(_, q)| q.metadata.name.as_deref() == Some(charge.quota.as_str()))
        else {
            continue;
        };
        let stored = quota_stored.clone();
        charge_quota(
            state,
            def,
            &name,
            &counted,
            previous.as_ref(),
            stored,
            charge,
        )
        .await?;
    }
    Ok(())
}

/// Writes `charge` to the quota read as `stored`; when another writer got there first, re-reads
/// the quota and checks the object against it again.
async fn charge_quota(
    state: &State,
    def: &ResourceDef,
    name: &str,
    counted: &Counted,
    previous: Option<&Counted>,
    mut stored: Stored,
    mut charge: Charge,
) -> Result<(), ApiError> {
    for _ in 0..CHARGE_ATTEMPTS {
        let mut object = stored.object.clone();
        crate::objects::set_at(&mut object, "status.used", json!(charge.used));
        match state
            .store
            .update(
                &stored.key,
                &object,
                stored.mod_revision,
                &Extras::default(),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(store_error(e)),
        }
        tracing::debug!(quota = %charge.quota, "quota changed while charging; checking again");
        let Some(fresh) = state.store.get(&stored.key).await.map_err(store_error)? else {
            // Deleted meanwhile: nothing left to charge.
            return Ok(());
        };
        let Some(quota) = decode_quota(&fresh) else {
            return Ok(());
        };
        let recharged = hakube_quota::admit(std::slice::from_ref(&quota), counted, previous)
            .map_err(|refusal: Refusal| forbidden(def, name, refusal))?;
        let Some(next) = recharged.into_iter().next() else {
            // The quota no longer limits this object.
            return Ok(());
        };
        charge = next;
        stored = fresh;
    }
    Err(status::conflict(
        "",
        SEGMENT,
        &charge.quota,
        "the quota was changed by others too often to charge it",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_group_qualified_resource() {
        let deployments = crate::registry::lookup("apps", "v1", "deployments").unwrap();
        let refusal = Refusal::Exceeded {
            quota: "apps".into(),
            requested: "count/deployments.apps=1".into(),
            used: "count/deployments.apps=1".into(),
            limited: "count/deployments.apps=1".into(),
        };
        let err = forbidden(deployments, "web", refusal);
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "deployments.apps \"web\" is forbidden: exceeded quota: apps, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"
        );
        assert_eq!(err.details.map(|d| d.kind), Some("deployments".to_string()));
    }
}
