//! Discovery that survives a broken API group: every group is read at its preferred version
//! on its own, and the groups that fail are reported beside what was found, as upstream's
//! namespace controller and garbage collector carry on with partial discovery.

use kube::core::discovery::{ApiCapabilities, ApiResource};
use kube::core::GroupVersion;
use kube::discovery::pinned_group;

/// Resource types found, and the `group/version`s whose discovery failed.
#[derive(Default)]
pub struct Discovered {
    pub resources: Vec<(ApiResource, ApiCapabilities)>,
    pub failed: Vec<(String, kube::Error)>,
}

impl Discovered {
    /// Upstream's message for partial discovery.
    pub fn failure_message(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        let groups: Vec<String> = self
            .failed
            .iter()
            .map(|(gv, error)| format!("{gv}: {error}"))
            .collect();
        Some(format!(
            "Discovery failed for some groups, {} failing: {}",
            self.failed.len(),
            groups.join(", ")
        ))
    }
}

/// Every resource type (no subresources) at its group's preferred version; Err only when the
/// list of groups itself cannot be read.
pub async fn preferred_resources(client: &kube::Client) -> Result<Discovered, kube::Error> {
    let mut versions = vec![GroupVersion::gv("", "v1")];
    for group in client.list_api_groups().await?.groups {
        let version = group
            .preferred_version
            .as_ref()
            .map(|v| v.version.clone())
            .or_else(|| group.versions.first().map(|v| v.version.clone()));
        if let Some(version) = version {
            versions.push(GroupVersion::gv(&group.name, &version));
        }
    }
    let mut discovered = Discovered::default();
    for gv in versions {
        match pinned_group(client, &gv).await {
            Ok(group) => discovered.resources.extend(group.recommended_resources()),
            Err(error) => {
                let name = if gv.group.is_empty() {
                    gv.version.clone()
                } else {
                    format!("{}/{}", gv.group, gv.version)
                };
                discovered.failed.push((name, error));
            }
        }
    }
    Ok(discovered)
}
