//! The kubectl plugin: `kubectl lockstep status [NAME]`, `kubectl lockstep wait NAME` (also
//! `httproute/NAME`, `grpcroute/NAME`, `gateway/NAME`). Same commands as
//! `lockstep-operator status|wait`.
//!
//! Arguments are parsed before any client is built, so `--help`, `--version` and argument
//! errors work without a cluster or a kubeconfig.

use clap::Parser;
use lockstep_operator::cli;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-lockstep",
    bin_name = "kubectl lockstep",
    version,
    about = "lockstep rollouts: per-replica status and waiting"
)]
struct Cli {
    #[command(subcommand)]
    command: cli::Command,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    std::process::exit(Cli::parse().command.run().await?)
}
