//! ControllerRevisions as DaemonSets and StatefulSets keep them: one per distinct pod
//! template, named `<owner>-<hash>`, numbered in the order they became current, the oldest
//! beyond `revisionHistoryLimit` pruned.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Resource;
use serde_json::json;

use crate::controllers::pod_control::{controller_ref, is_controlled_by, selects};

pub const HASH_LABEL: &str = "controller-revision-hash";

/// Upstream's alphabet for hashes in names (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A short, stable hash of a pod template (FNV-1a over its JSON), spelled as upstream spells
/// hashes in names.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|d| SAFE[usize::from(d) % SAFE.len()] as char)
        .collect()
}

/// The revision's data: the template, as upstream's `{"spec":{"template":...}}` patch.
pub fn revision_data(template: &PodTemplateSpec) -> RawExtension {
    let mut template = serde_json::to_value(template).unwrap_or_default();
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    RawExtension(json!({"spec": {"template": template}}))
}

/// The owner's revisions, oldest first.
pub async fn list<K>(
    api: &Api<ControllerRevision>,
    owner: &K,
    selector: Option<&LabelSelector>,
) -> Result<Vec<ControllerRevision>, kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let mut revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| {
            is_controlled_by(&r.metadata, &uid)
                || (r
                    .metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.is_empty())
                    && selects(selector, r.metadata.labels.as_ref()))
        })
        .collect();
    revisions.sort_by_key(|r| r.revision);
    Ok(revisions)
}

/// Makes the revision for `template` the newest: created when new, renumbered when an older
/// one comes back. Returns its hash and revision number.
pub async fn ensure_current<K>(
    api: &Api<ControllerRevision>,
    owner: &K,
    template: &PodTemplateSpec,
    revisions: &[ControllerRevision],
) -> Result<(String, i64), kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    let hash = template_hash(template);
    let owner_name = owner.meta().name.clone().unwrap_or_default();
    let name = format!("{owner_name}-{hash}");
    let newest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    if let Some(existing) = revisions
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(&name))
    {
        if existing.revision == newest {
            return Ok((hash, newest));
        }
        let patch = json!({"revision": newest + 1});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        return Ok((hash, newest + 1));
    }
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: controller_ref(owner).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: Some(revision_data(template)),
        revision: newest + 1,
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(_) => Ok((hash, newest + 1)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok((hash, newest + 1)),
        Err(e) => Err(e),
    }
}

/// Deletes the oldest revisions beyond `limit` that no pod and no live hash uses.
pub async fn prune(
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    live: &[String],
    limit: i32,
) -> Result<(), kube::Error> {
    let unused: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| {
            let hash = r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
            hash.is_none_or(|h| !live.contains(h))
        })
        .collect();
    let excess = unused.len().saturating_sub(limit.max(0) as usize);
    for revision in unused.iter().take(excess) {
        if let Some(name) = revision.metadata.name.as_deref() {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn hashes_are_stable_safe_and_differ_by_template() {
        let a = template_hash(&template("nginx:1"));
        assert_eq!(a, template_hash(&template("nginx:1")));
        assert_ne!(a, template_hash(&template("nginx:2")));
        assert!(a.bytes().all(|b| SAFE.contains(&b)));
        let data = revision_data(&template("nginx:1")).0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
    }
}
