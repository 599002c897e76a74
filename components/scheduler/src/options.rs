//! hakube-scheduler's flags: upstream kube-scheduler's names.

use std::path::PathBuf;

use hakube_runtime::ComponentArgs;

/// kube-scheduler's default secure port.
pub const DEFAULT_SECURE_PORT: u16 = 10259;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "hakube-scheduler", about = "Binds pending pods to nodes")]
pub struct Options {
    /// The path to the KubeSchedulerConfiguration file.
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub component: ComponentArgs,
}
