//! The kubectl plugin: `kubectl lockstep status [NAME]`, `kubectl lockstep wait NAME`. Same
//! commands as `lockstep-operator status|wait`.
//!
//! Arguments are parsed before any client is built, so `--help`, `--version` and argument
//! errors work without a cluster or a kubeconfig.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
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
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show each replica's generation, digest and rejections.
    Status {
        /// RouterConfig name (all when omitted).
        name: Option<String>,
        /// Namespace (default: the kubeconfig's).
        #[arg(short, long)]
        namespace: Option<String>,
        /// All namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Wait until Ready at the current generation (exit 0), Stalled (1) or timeout (2).
    Wait {
        /// RouterConfig name.
        name: String,
        /// Namespace (default: the kubeconfig's).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Give up after this long (exit 2): kubectl's duration syntax (90s, 2m, 1h30m,
        /// 500ms) or a number of seconds.
        #[arg(long, default_value = "5m", value_parser = cli::parse_duration)]
        timeout: Duration,
    },
}

/// The client from the usual places (KUBECONFIG, ~/.kube/config, in-cluster), built only
/// once the arguments are known to be good.
async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("no usable Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster)")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Status {
            name,
            namespace,
            all_namespaces,
        } => {
            let client = client().await?;
            let ns =
                (!all_namespaces).then(|| namespace.unwrap_or_else(|| client.default_namespace().to_owned()));
            Ok(cli::status(client, ns.as_deref(), name.as_deref()).await?)
        }
        Command::Wait {
            name,
            namespace,
            timeout,
        } => {
            let client = client().await?;
            let ns = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
            let code = cli::wait(client, &ns, &name, timeout).await?;
            std::process::exit(code)
        }
    }
}
