//! The kubectl plugin: `kubectl lockstep status [NAME]`, `kubectl lockstep wait NAME`. Same
//! commands as `lockstep-operator status|wait`.

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-lockstep",
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
        /// Timeout in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let default_ns = client.default_namespace().to_owned();
    match Cli::parse().command {
        Command::Status {
            name,
            namespace,
            all_namespaces,
        } => {
            let ns = (!all_namespaces).then(|| namespace.unwrap_or(default_ns));
            lockstep_operator::cli::status(client, ns.as_deref(), name.as_deref()).await
        }
        Command::Wait {
            name,
            namespace,
            timeout,
        } => {
            let ns = namespace.unwrap_or(default_ns);
            let code = lockstep_operator::cli::wait(client, &ns, &name, Duration::from_secs(timeout)).await?;
            std::process::exit(code)
        }
    }
}
