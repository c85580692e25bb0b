//! The command-line tools work without a cluster for everything that needs none: help,
//! version and argument errors come from the arguments alone, before a client is built.

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env("KUBECONFIG", "/nonexistent")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap_or_else(|e| panic!("running {binary}: {e}"))
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-lockstep");
const OPERATOR: &str = env!("CARGO_BIN_EXE_lockstep-operator");

#[test]
fn plugin_help_works_without_a_kubeconfig() {
    let output = run(PLUGIN, &["--help"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Usage: kubectl lockstep"), "{stdout}");
    assert!(stdout.contains("wait") && stdout.contains("status"), "{stdout}");
}

#[test]
fn plugin_wait_help_works_without_a_kubeconfig() {
    let output = run(PLUGIN, &["wait", "--help"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Usage: kubectl lockstep wait"), "{stdout}");
    assert!(stdout.contains("--timeout"), "{stdout}");
    assert!(stdout.contains("1h30m"), "{stdout}");
}

#[test]
fn operator_wait_help_works_without_a_kubeconfig() {
    let output = run(OPERATOR, &["wait", "--help"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Usage: lockstep-operator wait"), "{stdout}");
}

#[test]
fn a_bad_timeout_is_a_usage_error_not_a_kubeconfig_error() {
    for binary in [PLUGIN, OPERATOR] {
        let output = run(binary, &["wait", "web", "--timeout", "5x"]);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{binary}: {stderr}");
        assert!(
            stderr.contains("invalid duration \"5x\"") && stderr.contains("unknown unit"),
            "{binary}: {stderr}"
        );
        assert!(!stderr.contains("kubeconfig"), "{binary}: {stderr}");
    }
}

#[test]
fn a_good_timeout_gets_as_far_as_the_missing_kubeconfig_and_says_so() {
    for timeout in ["90s", "2m", "1h30m", "500ms", "120"] {
        for binary in [PLUGIN, OPERATOR] {
            let output = run(binary, &["wait", "web", "--timeout", timeout]);
            let (_, stderr) = text(&output);
            assert_eq!(
                output.status.code(),
                Some(1),
                "{binary} --timeout {timeout}: {stderr}"
            );
            assert!(
                stderr.contains("no usable Kubernetes client configuration"),
                "{binary} --timeout {timeout}: {stderr}"
            );
        }
    }
}

#[test]
fn a_kind_wait_cannot_wait_on_is_a_usage_error_not_a_kubeconfig_error() {
    for binary in [PLUGIN, OPERATOR] {
        let output = run(binary, &["wait", "service/web"]);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{binary}: {stderr}");
        assert!(
            stderr.contains("routerconfig, httproute, grpcroute and gateway"),
            "{binary}: {stderr}"
        );
        assert!(!stderr.contains("kubeconfig"), "{binary}: {stderr}");
        // The kinds it can wait on get as far as the missing kubeconfig.
        for target in ["httproute/web", "grpcroute/web", "gateway/gw", "rcfg/web"] {
            let output = run(binary, &["wait", target]);
            let (_, stderr) = text(&output);
            assert_eq!(output.status.code(), Some(1), "{binary} {target}: {stderr}");
            assert!(
                stderr.contains("no usable Kubernetes client configuration"),
                "{binary} {target}: {stderr}"
            );
        }
    }
}
