//! The plugins a profile runs, with upstream's names, and a profile's settings.

/// Filter plugins, in upstream's order of evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterPlugin {
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    PodTopologySpread,
    InterPodAffinity,
}

impl FilterPlugin {
    pub const ALL: [FilterPlugin; 8] = [
        FilterPlugin::NodeUnschedulable,
        FilterPlugin::NodeName,
        FilterPlugin::TaintToleration,
        FilterPlugin::NodeAffinity,
        FilterPlugin::NodePorts,
        FilterPlugin::NodeResourcesFit,
        FilterPlugin::PodTopologySpread,
        FilterPlugin::InterPodAffinity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FilterPlugin::NodeUnschedulable => "NodeUnschedulable",
            FilterPlugin::NodeName => "NodeName",
            FilterPlugin::TaintToleration => "TaintToleration",
            FilterPlugin::NodeAffinity => "NodeAffinity",
            FilterPlugin::NodePorts => "NodePorts",
            FilterPlugin::NodeResourcesFit => "NodeResourcesFit",
            FilterPlugin::PodTopologySpread => "PodTopologySpread",
            FilterPlugin::InterPodAffinity => "InterPodAffinity",
        }
    }
}

/// Score plugins. `NodeResourcesFit` scores with upstream's LeastAllocated strategy (the old
/// LeastRequestedPriority); `NodeLabel` is the old CalculateNodeLabelPriority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScorePlugin {
    NodeResourcesFit,
    NodeResourcesBalancedAllocation,
    NodeAffinity,
    TaintToleration,
    InterPodAffinity,
    NodeLabel,
}

impl ScorePlugin {
    pub const ALL: [ScorePlugin; 6] = [
        ScorePlugin::NodeResourcesFit,
        ScorePlugin::NodeResourcesBalancedAllocation,
        ScorePlugin::NodeAffinity,
        ScorePlugin::TaintToleration,
        ScorePlugin::InterPodAffinity,
        ScorePlugin::NodeLabel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScorePlugin::NodeResourcesFit => "NodeResourcesFit",
            ScorePlugin::NodeResourcesBalancedAllocation => "NodeResourcesBalancedAllocation",
            ScorePlugin::NodeAffinity => "NodeAffinity",
            ScorePlugin::TaintToleration => "TaintToleration",
            ScorePlugin::InterPodAffinity => "InterPodAffinity",
            ScorePlugin::NodeLabel => "NodeLabel",
        }
    }

    /// Upstream's default weights; NodeLabel is off by default and weighs 1 when enabled.
    pub fn default_weight(self) -> i64 {
        match self {
            ScorePlugin::TaintToleration => 3,
            ScorePlugin::NodeAffinity | ScorePlugin::InterPodAffinity => 2,
            _ => 1,
        }
    }
}

/// NodeLabel's arguments: nodes with the present-preferred labels, and without the
/// absent-preferred ones, score higher.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeLabelArgs {
    pub present_labels_preference: Vec<String>,
    pub absent_labels_preference: Vec<String>,
}

/// One scheduling profile, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub scheduler_name: String,
    pub filters: Vec<FilterPlugin>,
    pub scores: Vec<(ScorePlugin, i64)>,
    pub preemption: bool,
    /// 0 means upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    pub node_label: NodeLabelArgs,
    /// Resources and weights LeastAllocated and BalancedAllocation consider.
    pub scored_resources: Vec<(String, i64)>,
}

impl Profile {
    /// Upstream's default profile.
    pub fn default_named(scheduler_name: &str) -> Profile {
        Profile {
            scheduler_name: scheduler_name.to_string(),
            filters: FilterPlugin::ALL.to_vec(),
            scores: ScorePlugin::ALL
                .iter()
                .filter(|s| **s != ScorePlugin::NodeLabel)
                .map(|s| (*s, s.default_weight()))
                .collect(),
            preemption: true,
            percentage_of_nodes_to_score: 0,
            node_label: NodeLabelArgs::default(),
            scored_resources: vec![("cpu".into(), 1), ("memory".into(), 1)],
        }
    }

    pub fn has_filter(&self, plugin: FilterPlugin) -> bool {
        self.filters.contains(&plugin)
    }
}

/// Upstream's numFeasibleNodesToFind: every node in small clusters, otherwise the configured
/// percentage or the adaptive one (50% minus 1% per 125 nodes, at least 5%), at least 100 nodes.
pub fn feasible_nodes_to_find(percentage: u32, all_nodes: usize) -> usize {
    const MIN_FEASIBLE_NODES: usize = 100;
    const MIN_FEASIBLE_PERCENTAGE: usize = 5;
    if all_nodes < MIN_FEASIBLE_NODES || percentage >= 100 {
        return all_nodes;
    }
    let percentage = if percentage == 0 {
        50usize
            .saturating_sub(all_nodes / 125)
            .max(MIN_FEASIBLE_PERCENTAGE)
    } else {
        percentage as usize
    };
    (all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_percentage_matches_upstream() {
        assert_eq!(feasible_nodes_to_find(0, 50), 50);
        assert_eq!(feasible_nodes_to_find(0, 100), 100);
        assert_eq!(feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(feasible_nodes_to_find(0, 10000), 500);
        assert_eq!(feasible_nodes_to_find(0, 6000), 300);
        assert_eq!(feasible_nodes_to_find(30, 1000), 300);
        assert_eq!(feasible_nodes_to_find(100, 1000), 1000);
        assert_eq!(feasible_nodes_to_find(1, 1000), 100);
    }
}
