//! Finds Gateway API modules in the Go module cache, downloading them through the Go module
//! proxy when absent. The cache is outside the repository; the go command verifies each
//! module against the checksum database.

use std::path::PathBuf;
use std::process::Command;

/// The directory of `module@version` in the Go module cache.
pub fn go_module_dir(module: &str, version: &str) -> PathBuf {
    // `go mod download` wants a main module; an empty one in a fresh directory keeps the
    // repository's tree out of it. One directory per call: tests run in parallel, and one
    // removing a shared directory under another's `go` made it fail.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let work = std::env::temp_dir().join(format!(
        "lockstep-gomod-{}-{call}-{}",
        std::process::id(),
        module.replace('/', "_")
    ));
    std::fs::create_dir_all(&work).expect("temp dir");
    std::fs::write(work.join("go.mod"), "module lockstep.dev/gateway-api-check\n").expect("go.mod");
    let out = Command::new("go")
        .args(["mod", "download", "-json", &format!("{module}@{version}")])
        .env("GOFLAGS", "-mod=mod")
        .current_dir(&work)
        .output()
        .unwrap_or_else(|e| panic!("run `go mod download` (Go is needed for this test): {e}"));
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        out.status.success(),
        "go mod download {module}@{version}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("go mod download -json");
    PathBuf::from(info["Dir"].as_str().expect("Dir in go mod download -json"))
}
