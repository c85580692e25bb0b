//! A one-node cluster for the install tests: `e2e/node/up.sh` (control plane, containerd,
//! runc, bridge CNI, kubelet, controller-manager, scheduler, kube-proxy) in a temporary
//! directory, stopped and cleaned up (`e2e/node/down.sh`) when dropped, and by a watchdog
//! when the test process dies without running destructors.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{Error, Result, repo_root};

/// A running one-node cluster.
#[derive(Debug)]
pub struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    /// Why this machine cannot run the node (`e2e/node/up.sh --check`), or `None`.
    pub fn cannot_start() -> Option<String> {
        let out = Command::new(repo_root().join("e2e/node/up.sh"))
            .arg("--check")
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
            Err(e) => Some(format!("cannot run e2e/node/up.sh: {e}")),
        }
    }

    /// Starts the node with the images of `e2e/images`, packaged from the binaries in
    /// `bin_dir` (the test's own profile directory).
    pub fn start(bin_dir: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("lockstep-node-").tempdir()?;
        let images = dir.path().join("images");
        run(Command::new(repo_root().join("e2e/images"))
            .arg(&images)
            .env("LOCKSTEP_IMAGES_BIN_DIR", bin_dir))?;
        let node = Self { dir };
        run(Command::new(repo_root().join("e2e/node/up.sh"))
            .arg(node.dir.path())
            .arg(std::process::id().to_string())
            .env("LOCKSTEP_IMAGES", &images))?;
        Ok(node)
    }

    /// The state directory (logs under `node/logs`, Pod logs under `node/pods`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// `kubectl` with this cluster's kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", self.kubeconfig());
        cmd
    }

    /// Runs kubectl with `args`, returning stdout; an error carries stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        run(self.kubectl().args(args))
    }

    /// What a failed test needs to say why: the node's conditions, taints and allocated
    /// resources, every Pod, the last events, the end of the operators' logs, and each Pod
    /// that is not Ready described with the end of its logs (the previous container's too
    /// when it restarted). A CI run keeps
    /// nothing but the test's output, so a timeout that prints only its own message leaves
    /// no way to tell a crash loop from an unschedulable Pod or a node under disk pressure.
    pub fn state_report(&self) -> String {
        const SHOWN_LINES: usize = 80;
        let mut report = String::new();
        let mut section = |title: &str, args: &[&str]| {
            let mut cmd = self.kubectl();
            cmd.arg("--request-timeout=10s").args(args);
            let text = match run(&mut cmd) {
                Ok(out) => out,
                Err(e) => format!("({e})"),
            };
            // The newest lines of a long listing (events accumulate for the whole test).
            let lines: Vec<&str> = text.trim_end().lines().collect();
            let shown = lines[lines.len().saturating_sub(SHOWN_LINES)..].join("\n");
            report.push_str(&format!("--- kubectl {}: {title}\n{shown}\n", args.join(" ")));
        };
        section("the node", &["describe", "nodes"]);
        section("every Pod", &["get", "pods", "--all-namespaces", "-o", "wide"]);
        section(
            "events",
            &["get", "events", "--all-namespaces", "--sort-by=.lastTimestamp"],
        );
        let pods = run(self.kubectl().args([
            "--request-timeout=10s",
            "get",
            "pods",
            "--all-namespaces",
            "-o",
            "json",
        ]))
        .ok()
        .and_then(|out| serde_json::from_str::<serde_json::Value>(&out).ok());
        let pods = pods
            .as_ref()
            .and_then(|list| list["items"].as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for pod in pods {
            let (Some(namespace), Some(name)) = (
                pod["metadata"]["namespace"].as_str(),
                pod["metadata"]["name"].as_str(),
            ) else {
                continue;
            };
            // The operator provisions fleets and writes every status: its logs say why a
            // fleet has no Pods or a condition stays False.
            if pod["metadata"]["labels"]["app.kubernetes.io/component"] == "operator" {
                section(
                    "an operator's logs",
                    &["logs", "-n", namespace, name, "--tail=40"],
                );
            }
            if pod_is_ready(pod) {
                continue;
            }
            section(
                "a Pod that is not Ready",
                &["describe", "pod", "-n", namespace, name],
            );
            section(
                "its logs",
                &["logs", "-n", namespace, name, "--all-containers", "--tail=40"],
            );
            let restarted = pod["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["restartCount"].as_u64() > Some(0)));
            if restarted {
                section(
                    "its previous container's logs",
                    &[
                        "logs",
                        "-n",
                        namespace,
                        name,
                        "--all-containers",
                        "--previous",
                        "--tail=40",
                    ],
                );
            }
        }
        let disk =
            run(Command::new("df").arg("-h").arg(self.dir.path())).unwrap_or_else(|e| format!("({e})"));
        report.push_str(&format!("--- df -h {}\n{}", self.dir.path().display(), disk));
        report
    }

    /// The containerd socket of the node (for `ctr -a`).
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.path().join("node/containerd/containerd.sock")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("e2e/node/down.sh"))
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if std::env::var_os("LOCKSTEP_KEEP_LOGS").is_some() {
            let kept = self.dir.path().to_path_buf();
            eprintln!("node logs kept in {}", kept.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
    }
}

/// Whether `pod` (a Pod as JSON) has the condition Ready=True.
pub fn pod_is_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Runs `cmd` with no stdin; stdout on success, an error carrying stderr otherwise.
fn run(cmd: &mut Command) -> Result<String> {
    let what = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            what,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}
