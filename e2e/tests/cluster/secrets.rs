//! Secrets never leak: the TLS material of a `kubernetes.io/tls` Secret served by a real
//! proxy (debug logging on) must not appear in the proxy's log, `/metrics` or `/config`, nor
//! in the operator's log or metrics, nor in the RouterConfig's status or the namespace's
//! events — neither when it is served nor when bad material is rejected. A standalone file
//! that fails to load must not be dumped into the log either.

use super::operator;
use std::time::Duration;

use lockstep_e2e::{
    ControlPlane, check, eventually,
    fixture::Fixture,
    fleet::Backend,
    process::{ChildGuard, workspace_bin},
};

const WAIT: Duration = Duration::from_secs(60);

struct Material {
    cert: String,
    key: String,
}

fn material(host: &str) -> Material {
    let params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Material {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// Substrings that would show `pem` (or a recognisable part of it) in a text: every base64
/// body line, windows of the base64 of the whole PEM (how a Secret's `data` is written),
/// and the Debug rendering of its bytes (how `ByteString` prints).
fn needles(pem: &str) -> Vec<String> {
    let mut out: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect();
    assert!(!out.is_empty(), "a PEM with a body: {pem}");
    let encoded = base64(pem.as_bytes());
    // Aligned to the 3-byte groups of base64, past the BEGIN line that every PEM shares.
    for start in (60..encoded.len().saturating_sub(40)).step_by(200) {
        let start = start - start % 4;
        out.push(encoded[start..start + 32].to_owned());
    }
    let bytes = pem.as_bytes();
    let middle = bytes.len() / 2;
    let debug = format!("{:?}", &bytes[middle..middle + 12]);
    out.push(debug.trim_matches(['[', ']']).to_owned());
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn assert_absent(what: &str, text: &str, secret: &str, needles: &[String]) {
    for needle in needles {
        assert!(
            !text.contains(needle.as_str()),
            "{what} contains {secret} ({needle:?})"
        );
    }
}

async fn fetch(url: String) -> String {
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response.text().await.unwrap()
}

#[tokio::test]
async fn tls_material_never_reaches_logs_metrics_config_or_status() {
    let operator = operator();
    let f = Fixture::new("secrets").await;
    let (cp, ns, fleet, dir, rcs, secrets) = (f.cp, &f.ns, &f.fleet, &f.dir, &f.api, f.secrets());
    let backend = Backend::start(dir, "one").unwrap();

    let good = material("app.test");
    // Bad material goes through the error paths, whose messages are the likeliest to quote
    // what they failed on: a key that does not match, and a key that does not parse.
    let mismatched = material("app.test");
    let garbage_key = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        (0..48)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect::<String>()
    );
    check::put_tls_secret(&secrets, "app-tls", &good.cert, &good.key)
        .await
        .unwrap();

    let proxy = f.proxy_with("proxy-0", |spec| spec.tls = true);
    cp.kubectl_apply(&format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n  - host: app.test\n    tls: {{secretName: app-tls}}\n    paths:\n    - path: /\n      backend: {{url: \"{}\"}}\n",
        backend.url()
    ))
    .unwrap();
    let wait_ready = || cp.wait_ready(ns, "web", Duration::from_secs(60)).unwrap();
    wait_ready();

    // Traffic over TLS, and a handshake for a name with no certificate.
    let tls = proxy.tls.unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(good.cert.as_bytes()).unwrap())
        .resolve("app.test", tls)
        .resolve("unknown.test", tls)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = https
        .get(format!("https://app.test:{}/", tls.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        https
            .get(format!("https://unknown.test:{}/", tls.port()))
            .send()
            .await
            .is_err()
    );

    // Rotations to bad material, each refused by the one servable check (the operator's
    // verdict says NotAccepted; the replicas log it and keep the last good certificate).
    for (case, crt, key) in [
        ("mismatched key", &good.cert, &mismatched.key),
        ("unparsable key", &good.cert, &garbage_key),
    ] {
        check::put_tls_secret(&secrets, "app-tls", crt, key)
            .await
            .unwrap();
        eventually(&format!("{case}: rejected"), WAIT, || async {
            let rc = rcs.get_status("web").await.ok()?;
            let ready = rc.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "False" && ready.reason == "NotAccepted").then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    check::put_tls_secret(&secrets, "app-tls", &good.cert, &good.key)
        .await
        .unwrap();
    eventually("good material served again", WAIT, || async {
        let rc = rcs.get_status("web").await.ok()?;
        let ready = rc.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "True").then_some(())
    })
    .await
    .unwrap();

    let texts = [
        ("the proxy's log", proxy.process.log_text()),
        (
            "the proxy's /metrics",
            fetch(format!("http://{}/metrics", proxy.admin)).await,
        ),
        (
            "the proxy's /config",
            fetch(format!("http://{}/config", proxy.admin)).await,
        ),
        ("the operator's log", operator.process.log_text()),
        (
            "the operator's /metrics",
            fetch(format!("http://{}/metrics", operator.admin)).await,
        ),
        (
            "the RouterConfig",
            cp.kubectl_ok(&["get", "routerconfig/web", "-n", ns, "-o", "yaml"])
                .unwrap(),
        ),
        (
            "the namespace's events",
            cp.kubectl_ok(&["get", "events", "-n", ns, "-o", "yaml"]).unwrap(),
        ),
    ];
    // The texts are real: the replica logged its work at debug level and served /config.
    assert!(texts[0].1.contains("DEBUG"), "debug logging is on");
    assert!(texts[2].1.contains("web"), "{}", texts[2].1);
    for (what, text) in &texts {
        assert!(!text.is_empty(), "{what} is empty");
        assert_absent(what, text, "the private key", &needles(&good.key));
        assert_absent(what, text, "the certificate", &needles(&good.cert));
        assert_absent(what, text, "the mismatched key", &needles(&mismatched.key));
        assert_absent(what, text, "the unparsable key", &needles(&garbage_key));
    }
}

#[tokio::test]
async fn a_standalone_file_that_fails_to_load_is_not_dumped_to_the_log() {
    let cp = ControlPlane::shared();
    let dir = cp.test_dir("secrets-standalone");
    let marker = format!("s3cr3t-{:016x}", rand::random::<u64>());
    let file = dir.join("routes.yaml");
    let valid = "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {name: web, namespace: default}\nspec:\n  rules:\n  - host: app.test\n    paths:\n    - path: /\n      backend: {url: \"http://127.0.0.1:9\"}\n";
    std::fs::write(&file, valid).unwrap();
    let mut cmd = std::process::Command::new(workspace_bin("lockstep-proxy"));
    cmd.env("RUST_LOG", "debug")
        .args(["--config", file.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--reload-interval", "50ms"]);
    let mut proxy = ChildGuard::spawn("standalone proxy", cmd, &dir.join("proxy.log")).unwrap();
    proxy
        .wait_for_log("route table swapped", Duration::from_secs(30))
        .unwrap();

    // Each invalid file carries the marker where a careless error message would quote it.
    let cases = [
        (
            "a YAML syntax error on the marker's line",
            format!("{valid}  token: \"{marker}\n  : [\n"),
        ),
        (
            "the marker where a list belongs",
            valid.replace(
                "    - path: /\n      backend: {url: \"http://127.0.0.1:9\"}\n",
                &format!("      {marker}\n"),
            ),
        ),
        (
            "the marker as a document that is not a RouterConfig",
            format!(
                "{valid}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: x}}\nstringData: {{token: {marker}}}\n"
            ),
        ),
        (
            "the marker in a value that fails validation",
            valid.replace("http://127.0.0.1:9", &format!("ftp://{marker}")),
        ),
        (
            "binary junk around the marker",
            format!("\u{1}\u{2}{marker}\u{0}"),
        ),
    ];
    for (case, text) in cases {
        let before =
            proxy.log_text().matches("not applied").count() + proxy.log_text().matches("rejected").count();
        std::fs::write(&file, &text).unwrap();
        eventually(&format!("{case}: refused in the log"), WAIT, || async {
            let log = proxy.log_text();
            (log.matches("not applied").count() + log.matches("rejected").count() > before).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log_text()));
        let log = proxy.log_text();
        assert!(!log.contains(&marker), "{case}: the log quotes the file:\n{log}");
    }
    assert!(proxy.is_running(), "the proxy survives invalid files");
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
}
