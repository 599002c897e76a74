//! `hakube`: the user's CLI. `hakube up` builds an HA cluster on this machine (local mode):
//! network-namespace hosts on a bridge, a hostd in each, a management plane (etcd,
//! hakube-apiserver, hakube-controller-manager, the operator), then a `Cluster` the operator
//! brings up; `hakube down` removes all of it. Nothing global on the machine changes beyond the bridge and namespaces
//! it names `hakube*`, which `down` deletes.
#![forbid(unsafe_code)]

mod local;
mod management;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "hakube",
    version,
    about = "hakube: Kubernetes HA clusters that run themselves"
)]
pub struct Cli {
    /// Where local mode keeps its state, logs and kubeconfigs.
    #[arg(
        long,
        global = true,
        default_value = "/var/tmp/hakube-up",
        env = "HAKUBE_STATE_DIR"
    )]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Builds a local HA cluster and waits until it is Available.
    Up {
        #[arg(long, value_enum, default_value_t = TopologyArg::Stacked)]
        topology: TopologyArg,
        /// How long to wait for the Cluster to become Available.
        #[arg(long, default_value_t = 300)]
        timeout_seconds: u64,
    },
    /// Removes everything `up` made: processes, namespaces, links, the state directory.
    Down,
    /// Prints the local Cluster as a table.
    Status,
    /// Writes the local Cluster's admin kubeconfig afresh from its Secret and prints its path
    /// (run it again after a certificate-authority rotation).
    Kubeconfig,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyArg {
    Stacked,
    External,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("PKI: {0}")]
    Pki(#[from] hakube_pki::PkiError),
    #[error("{0}")]
    Other(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Up {
            topology,
            timeout_seconds,
        } => local::up(&cli.state_dir, topology, timeout_seconds).await,
        Command::Down => local::down(&cli.state_dir),
        Command::Status => local::status(&cli.state_dir).await,
        Command::Kubeconfig => local::kubeconfig(&cli.state_dir).await,
    }
}
