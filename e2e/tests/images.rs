//! `e2e/images` and the Dockerfile cannot drift: the OCI archives that e2e/images builds
//! (and the node test runs) carry exactly the ENTRYPOINT, USER, EXPOSE and LABELs of the
//! Dockerfile's `operator` and `proxy` stages, the binary at the path the Dockerfile copies it
//! to, and the names and tag that deploy/ pulls.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use lockstep_e2e::repo_root;
use serde_json::{Value, json};

/// What a Dockerfile stage sets, parsed here independently of e2e/images.
#[derive(Debug, Default)]
struct Stage {
    entrypoint: Vec<String>,
    user: String,
    expose: Vec<String>,
    labels: BTreeMap<String, String>,
    copy_to: Vec<String>,
}

fn dockerfile_stage(name: &str) -> Stage {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut logical = Vec::new();
    let mut buf = String::new();
    for line in text.lines() {
        if buf.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            buf.push_str(head);
            buf.push(' ');
        } else {
            buf.push_str(line);
            logical.push(std::mem::take(&mut buf));
        }
    }
    let mut stage = Stage::default();
    let mut current = String::new();
    for line in logical {
        let (word, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        match word.to_ascii_uppercase().as_str() {
            "FROM" => {
                let parts: Vec<&str> = rest.split_whitespace().collect();
                current = match parts.as_slice() {
                    [.., as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                    _ => String::new(),
                };
            }
            _ if current != name => {}
            "ENTRYPOINT" => stage.entrypoint = serde_json::from_str(rest).unwrap(),
            "USER" => stage.user = rest.trim().to_owned(),
            "EXPOSE" => stage.expose.extend(rest.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_owned()
                } else {
                    format!("{p}/tcp")
                }
            })),
            "LABEL" => {
                // key="value" pairs, values quoted.
                let mut rest = rest.trim();
                while let Some((key, after)) = rest.split_once("=\"") {
                    let (value, tail) = after.split_once('"').unwrap();
                    stage.labels.insert(key.trim().to_owned(), value.to_owned());
                    rest = tail.trim();
                }
            }
            "COPY" => stage
                .copy_to
                .push(rest.split_whitespace().last().unwrap().to_owned()),
            _ => {}
        }
    }
    assert!(
        !stage.entrypoint.is_empty(),
        "Dockerfile stage {name} has an ENTRYPOINT"
    );
    stage
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The value after `prefix` on the first line of `text` that starts with it, quotes dropped.
fn declared(text: &str, prefix: &str) -> String {
    let line = text
        .lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?}"));
    line[prefix.len()..].trim().trim_matches('"').to_string()
}

/// The image is built with the oldest Rust the workspace claims to build with: the
/// Dockerfile's default `RUST_VERSION` is the workspace's `rust-version`. Apart, a raised
/// minimum would leave the image on a toolchain that cannot build the code (no test here runs
/// the image build to find out), or the image would be built with a toolchain nothing here
/// claims. That the minimum does build the workspace is a check of its own (CONTRIBUTING.md).
#[test]
fn the_image_builds_with_the_declared_minimum_rust() {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    assert_eq!(
        declared(&dockerfile, "ARG RUST_VERSION="),
        declared(&manifest, "rust-version ="),
        "the Dockerfile's RUST_VERSION and the workspace's rust-version"
    );
}

#[test]
fn local_images_match_the_dockerfile() {
    let bin_dir = {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().to_path_buf()
    };
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(repo_root().join("e2e/images"))
        .arg(out_dir.path())
        .env("LOCKSTEP_IMAGES_BIN_DIR", &bin_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run e2e/images");
    assert!(
        out.status.success(),
        "e2e/images: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = std::fs::read_to_string(out_dir.path().join("images.txt")).unwrap();
    let version = env!("CARGO_PKG_VERSION");

    for (stage_name, file, binary) in [
        ("operator", "lockstep-operator.tar", "lockstep-operator"),
        ("proxy", "lockstep-proxy.tar", "lockstep-proxy"),
    ] {
        let stage = dockerfile_stage(stage_name);
        let reference = format!("ghcr.io/lockstep-dev/{binary}:{version}");
        assert!(
            listed.lines().any(|l| l == format!("{file} {reference}")),
            "{file} holds {reference}: {listed}"
        );
        // Unpack the OCI archive and follow index -> manifest -> config and layers.
        let layout = out_dir.path().join(stage_name);
        std::fs::create_dir_all(&layout).unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(out_dir.path().join(file))
            .arg("-C")
            .arg(&layout)
            .status()
            .unwrap();
        assert!(status.success());
        let index = read_json(&layout.join("index.json"));
        let entry = &index["manifests"][0];
        assert_eq!(
            entry["annotations"]["io.containerd.image.name"],
            reference.as_str()
        );
        let manifest = read_json(&blob(&layout, entry["digest"].as_str().unwrap()));
        let config = read_json(&blob(&layout, manifest["config"]["digest"].as_str().unwrap()));
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], "amd64");
        let c = &config["config"];
        assert_eq!(
            c["Entrypoint"],
            json!(stage.entrypoint),
            "{stage_name}: ENTRYPOINT"
        );
        assert!(c["Cmd"].is_null(), "{stage_name}: no CMD, as in the Dockerfile");
        assert_eq!(c["User"], stage.user.as_str(), "{stage_name}: USER");
        let exposed: Vec<String> = c["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mut want = stage.expose.clone();
        want.sort();
        assert_eq!(exposed, want, "{stage_name}: EXPOSE");
        for (k, v) in &stage.labels {
            assert_eq!(c["Labels"][k], v.as_str(), "{stage_name}: LABEL {k}");
        }
        // The binary sits where the Dockerfile copies it, and is the entrypoint.
        assert_eq!(stage.copy_to, [stage.entrypoint[0].clone()], "{stage_name}: COPY");
        let mut files = String::new();
        for layer in manifest["layers"].as_array().unwrap() {
            let out = Command::new("tar")
                .arg("-tzf")
                .arg(blob(&layout, layer["digest"].as_str().unwrap()))
                .output()
                .unwrap();
            files.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        let path = stage.entrypoint[0].trim_start_matches('/');
        assert!(
            files.lines().any(|f| f.trim_start_matches("./") == path),
            "{stage_name}: {path} in the image"
        );
        // distroless/static's contents that the binaries rely on: CA bundle, nonroot user.
        assert!(
            files
                .lines()
                .any(|f| f.ends_with("etc/ssl/certs/ca-certificates.crt"))
        );
        assert!(files.lines().any(|f| f.ends_with("etc/passwd")));
    }
    // deploy/ names exactly these images (kustomize sets the tag).
    let kustomization = std::fs::read_to_string(repo_root().join("deploy/kustomization.yaml")).unwrap();
    for name in [
        "ghcr.io/lockstep-dev/lockstep-operator",
        "ghcr.io/lockstep-dev/lockstep-proxy",
    ] {
        assert!(
            kustomization.contains(&format!("- name: {name}\n  newTag: {version}")),
            "{name}"
        );
    }
    for image in ["pause", "lockstep-e2e-backend"] {
        assert!(
            listed.contains(&format!("lockstep.local/{image}:{version}")),
            "{image}"
        );
    }
}
