//! Controller references, and upstream's ControllerRefManager: a controller claims the objects
//! its selector matches, adopting orphans and releasing the ones it owns that no longer match.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The controller reference an owner puts on what it makes or adopts.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `selector` (None: matches nothing) matches `labels`.
pub fn matches(selector: Option<&Selector>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_some_and(|s| s.matches(labels))
}

/// What a controller does with one candidate object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Owned and matching: counted as the controller's.
    Owned,
    /// An orphan that matches: to be adopted.
    Adopt,
    /// Owned but no longer matching: to be released.
    Release,
    /// Someone else's, or not to touch now.
    Ignore,
}

/// Upstream's ClaimObject decision for one object against one controller.
pub fn classify(
    owner_uid: &str,
    owner_deleting: bool,
    selector: Option<&Selector>,
    child: &ObjectMeta,
) -> Claim {
    let labels = child.labels.clone().unwrap_or_default();
    let matching = matches(selector, &labels);
    match controller_of(child) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matching => Claim::Owned,
        // A child on its way out is left alone rather than released.
        Some(_) if child.deletion_timestamp.is_some() => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matching || child.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// Makes `owner` the controller of `child` (a strategic merge keyed by uid, as upstream's).
pub async fn adopt<K>(api: &Api<K>, owner: &OwnerReference, child: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let patch = json!({"metadata": {"ownerReferences": [owner], "uid": child.uid()}});
    ignore_not_found(
        api.patch(
            &child.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map(|_| ()),
    )
}

/// Removes `owner_uid`'s reference from `child`.
pub async fn release<K>(api: &Api<K>, owner_uid: &str, child: &K) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let patch = json!({"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
        "uid": child.uid(),
    }});
    ignore_not_found(
        api.patch(
            &child.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map(|_| ()),
    )
}

/// A child gone meanwhile needs no adopting or releasing; a uid precondition that fails
/// (422) means it was replaced by a namesake, which is not ours either.
fn ignore_not_found(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 422 => Ok(()),
        other => other,
    }
}

/// The message of an API error (as upstream prints it), or the error itself.
pub fn error_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn meta(labels: &[(&str, &str)], owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn claims_follow_controller_refs_and_the_selector() {
        let selector: Selector = [("app", "a")].into_iter().collect();
        let s = Some(&selector);
        assert_eq!(
            classify("me", false, s, &meta(&[("app", "a")], Some("me"))),
            Claim::Owned
        );
        assert_eq!(
            classify("me", false, s, &meta(&[("app", "b")], Some("me"))),
            Claim::Release
        );
        assert_eq!(
            classify("me", false, s, &meta(&[("app", "a")], None)),
            Claim::Adopt
        );
        assert_eq!(
            classify("me", true, s, &meta(&[("app", "a")], None)),
            Claim::Ignore
        );
        assert_eq!(
            classify("me", false, s, &meta(&[("app", "a")], Some("other"))),
            Claim::Ignore
        );
        assert_eq!(
            classify("me", false, None, &meta(&[("app", "a")], None)),
            Claim::Ignore
        );
        let mut leaving = meta(&[("app", "b")], Some("me"));
        leaving.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(classify("me", false, s, &leaving), Claim::Ignore);
    }
}
