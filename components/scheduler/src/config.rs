//! `--config`: a KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) file. Profiles with
//! their scheduler names, plugins enabled and disabled per extension point with score weights,
//! plugin arguments (NodeLabel, NodeResourcesFit's scored resources), percentageOfNodesToScore
//! and parallelism (here: how many bindings may be in flight at once).

use std::path::Path;

use serde::Deserialize;

use crate::core::framework::{FilterPlugin, NodeLabelArgs, Profile, ScorePlugin};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: String,
        source: serde_norway::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileConfig {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    parallelism: Option<u32>,
    #[serde(default)]
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    profiles: Vec<FileProfile>,
    #[serde(default)]
    client_connection: Option<ClientConnection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientConnection {
    #[serde(default)]
    kubeconfig: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileProfile {
    #[serde(default)]
    scheduler_name: Option<String>,
    #[serde(default)]
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    plugins: Option<Plugins>,
    #[serde(default)]
    plugin_config: Vec<PluginConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plugins {
    #[serde(default)]
    multi_point: Option<PluginSet>,
    #[serde(default)]
    filter: Option<PluginSet>,
    #[serde(default)]
    score: Option<PluginSet>,
    #[serde(default)]
    post_filter: Option<PluginSet>,
}

#[derive(Debug, Default, Deserialize)]
struct PluginSet {
    #[serde(default)]
    enabled: Vec<PluginRef>,
    #[serde(default)]
    disabled: Vec<PluginRef>,
}

#[derive(Debug, Deserialize)]
struct PluginRef {
    name: String,
    #[serde(default)]
    weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PluginConfig {
    name: String,
    #[serde(default)]
    args: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeLabelFileArgs {
    #[serde(default)]
    present_labels_preference: Vec<String>,
    #[serde(default)]
    absent_labels_preference: Vec<String>,
}

/// The scheduler's settings after reading `--config` (or upstream's defaults without one).
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    pub profiles: Vec<Profile>,
    pub parallelism: usize,
    pub kubeconfig: Option<String>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            profiles: vec![Profile::default_named("default-scheduler")],
            parallelism: 16,
            kubeconfig: None,
        }
    }
}

fn known_plugin(name: &str) -> bool {
    name == "*"
        || name == "DefaultPreemption"
        || name == "PrioritySort"
        || name == "DefaultBinder"
        || FilterPlugin::ALL.iter().any(|p| p.name() == name)
        || ScorePlugin::ALL.iter().any(|p| p.name() == name)
}

fn enabled_in<'a>(sets: &[&'a PluginSet], plugin: &str) -> Option<&'a PluginRef> {
    sets.iter()
        .flat_map(|s| s.enabled.iter())
        .find(|p| p.name == plugin)
}

fn disabled(sets: &[&PluginSet], name: &str) -> bool {
    sets.iter()
        .any(|s| s.disabled.iter().any(|d| d.name == "*" || d.name == name))
}

fn build_profile(
    file: &FileProfile,
    global_percentage: Option<u32>,
) -> Result<Profile, ConfigError> {
    let name = file
        .scheduler_name
        .clone()
        .unwrap_or_else(|| "default-scheduler".into());
    let mut profile = Profile::default_named(&name);
    profile.percentage_of_nodes_to_score = file
        .percentage_of_nodes_to_score
        .or(global_percentage)
        .unwrap_or(0);
    if profile.percentage_of_nodes_to_score > 100 {
        return Err(ConfigError::Invalid(format!(
            "profiles[{name}].percentageOfNodesToScore must be in [0, 100]"
        )));
    }
    let empty = Plugins::default();
    let plugins = file.plugins.as_ref().unwrap_or(&empty);
    let none = PluginSet::default();
    let multi = plugins.multi_point.as_ref().unwrap_or(&none);
    let filter = plugins.filter.as_ref().unwrap_or(&none);
    let score = plugins.score.as_ref().unwrap_or(&none);
    let post_filter = plugins.post_filter.as_ref().unwrap_or(&none);
    for set in [multi, filter, score, post_filter] {
        for p in set.enabled.iter().chain(&set.disabled) {
            if !known_plugin(&p.name) {
                return Err(ConfigError::Invalid(format!(
                    "profiles[{name}]: unknown plugin {:?}",
                    p.name
                )));
            }
        }
    }
    profile.filters = FilterPlugin::ALL
        .iter()
        .copied()
        .filter(|p| {
            !disabled(&[multi, filter], p.name())
                || enabled_in(&[multi, filter], p.name()).is_some()
        })
        .collect();
    let mut scores = Vec::new();
    for plugin in ScorePlugin::ALL {
        let is_default = profile.scores.iter().any(|(p, _)| *p == plugin);
        let explicit = enabled_in(&[multi, score], plugin.name());
        let on = explicit.is_some() || (is_default && !disabled(&[multi, score], plugin.name()));
        if on {
            let weight = explicit
                .and_then(|p| p.weight)
                .unwrap_or_else(|| plugin.default_weight());
            if weight <= 0 {
                return Err(ConfigError::Invalid(format!(
                    "profiles[{name}]: weight of {} must be positive",
                    plugin.name()
                )));
            }
            scores.push((plugin, weight));
        }
    }
    profile.scores = scores;
    profile.preemption = !disabled(&[multi, post_filter], "DefaultPreemption")
        || enabled_in(&[multi, post_filter], "DefaultPreemption").is_some();
    for config in &file.plugin_config {
        match config.name.as_str() {
            "NodeLabel" => {
                let args: NodeLabelFileArgs = serde_json::from_value(config.args.clone())
                    .map_err(|e| ConfigError::Invalid(format!("NodeLabel args: {e}")))?;
                profile.node_label = NodeLabelArgs {
                    present_labels_preference: args.present_labels_preference,
                    absent_labels_preference: args.absent_labels_preference,
                };
            }
            "NodeResourcesFit" | "NodeResourcesBalancedAllocation" => {
                let resources = config
                    .args
                    .pointer("/scoringStrategy/resources")
                    .or_else(|| config.args.get("resources"))
                    .and_then(serde_json::Value::as_array);
                if let Some(resources) = resources {
                    profile.scored_resources = resources
                        .iter()
                        .filter_map(|r| {
                            let name = r.get("name")?.as_str()?.to_string();
                            let weight = r
                                .get("weight")
                                .and_then(serde_json::Value::as_i64)
                                .unwrap_or(1);
                            Some((name, weight))
                        })
                        .collect();
                }
            }
            _ => {}
        }
    }
    Ok(profile)
}

impl SchedulerConfig {
    pub fn parse(text: &str, path: &str) -> Result<SchedulerConfig, ConfigError> {
        let file: FileConfig =
            serde_norway::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.to_string(),
                source,
            })?;
        if let Some(kind) = &file.kind {
            if kind != "KubeSchedulerConfiguration" {
                return Err(ConfigError::Invalid(format!(
                    "kind must be KubeSchedulerConfiguration, not {kind}"
                )));
            }
        }
        let mut config = SchedulerConfig::default();
        if !file.profiles.is_empty() {
            config.profiles = file
                .profiles
                .iter()
                .map(|p| build_profile(p, file.percentage_of_nodes_to_score))
                .collect::<Result<_, _>>()?;
        } else if let Some(p) = file.percentage_of_nodes_to_score {
            config.profiles[0].percentage_of_nodes_to_score = p;
        }
        let mut names: Vec<&str> = config
            .profiles
            .iter()
            .map(|p| p.scheduler_name.as_str())
            .collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid(
                "duplicate profile schedulerName".into(),
            ));
        }
        if let Some(p) = file.parallelism {
            if p == 0 {
                return Err(ConfigError::Invalid("parallelism must be positive".into()));
            }
            config.parallelism = p as usize;
        }
        config.kubeconfig = file
            .client_connection
            .and_then(|c| c.kubeconfig)
            .filter(|k| !k.is_empty());
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<SchedulerConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_profiles_means_upstreams_default_profile() {
        let config = SchedulerConfig::parse("kind: KubeSchedulerConfiguration\n", "c").unwrap();
        assert_eq!(config, SchedulerConfig::default());
        let weights: Vec<(&str, i64)> = config.profiles[0]
            .scores
            .iter()
            .map(|(p, w)| (p.name(), *w))
            .collect();
        assert!(weights.contains(&("TaintToleration", 3)));
        assert!(weights.contains(&("NodeAffinity", 2)));
        assert!(!weights.iter().any(|(n, _)| *n == "NodeLabel"));
    }

    #[test]
    fn profiles_enable_disable_and_weigh_plugins() {
        let text = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
parallelism: 32
percentageOfNodesToScore: 40
profiles:
- schedulerName: default-scheduler
- schedulerName: label-scheduler
  percentageOfNodesToScore: 100
  plugins:
    score:
      disabled:
      - name: "*"
      enabled:
      - name: NodeLabel
        weight: 5
    postFilter:
      disabled:
      - name: DefaultPreemption
    filter:
      disabled:
      - name: TaintToleration
  pluginConfig:
  - name: NodeLabel
    args:
      presentLabelsPreference: ["disk"]
"#;
        let config = SchedulerConfig::parse(text, "c").unwrap();
        assert_eq!(config.parallelism, 32);
        assert_eq!(config.profiles.len(), 2);
        assert_eq!(config.profiles[0].percentage_of_nodes_to_score, 40);
        let label = &config.profiles[1];
        assert_eq!(label.scheduler_name, "label-scheduler");
        assert_eq!(label.percentage_of_nodes_to_score, 100);
        assert_eq!(label.scores, vec![(ScorePlugin::NodeLabel, 5)]);
        assert!(!label.preemption);
        assert!(!label.filters.contains(&FilterPlugin::TaintToleration));
        assert_eq!(label.node_label.present_labels_preference, vec!["disk"]);
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(SchedulerConfig::parse("kind: Pod\n", "c").is_err());
        assert!(SchedulerConfig::parse(
            "profiles:\n- plugins:\n    score:\n      enabled:\n      - name: Bogus\n",
            "c"
        )
        .is_err());
        assert!(SchedulerConfig::parse("profiles:\n- {}\n- {}\n", "c").is_err());
        assert!(
            SchedulerConfig::parse("percentageOfNodesToScore: 101\nprofiles:\n- {}\n", "c")
                .is_err()
        );
        assert!(SchedulerConfig::parse("profiles: [", "c").is_err());
    }
}
