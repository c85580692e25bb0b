//! gRPC through the proxy with a real gRPC client and server (grpc-go's health service,
//! `e2e/grpc`, built from the Go module proxy into ~/.cache/lockstep on first use): unary
//! calls, a server stream, an error status carried in trailers and a client deadline, to an
//! `h2c://` upstream, with the client on cleartext HTTP/2 (the standalone binary) and on TLS
//! (the TLS listener, ALPN h2).

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use lockstep_proxy::{Proxy, ProxyOptions, certs, serve_tls, tls_acceptor};

/// The probe binary, built once per test process.
fn probe() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/grpc/build.sh");
        let out = Command::new(&script).output().expect("run e2e/grpc/build.sh");
        assert!(
            out.status.success(),
            "building the gRPC probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// A child process killed by pid when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` and waits for a stderr line containing `marker`; returns the process and
/// the word after the marker.
fn start(mut cmd: Command, marker: &str) -> (Process, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = marker.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(&wanted).nth(1) {
                let word = rest
                    .split(|c: char| c.is_whitespace() || c == '"')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let _ = tx.send(word);
            }
        }
    });
    let word = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no {marker:?} line"));
    (Process(child), word)
}

fn grpc_server() -> (Process, SocketAddr) {
    let mut cmd = Command::new(probe());
    cmd.args(["server", "--listen", "127.0.0.1:0"]);
    let (process, addr) = start(cmd, "grpc-probe listening ");
    (process, addr.parse().expect("server address"))
}

fn config(upstream: SocketAddr) -> String {
    format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: grpc, namespace: default}}\nspec:\n  rules:\n  - host: grpc.test\n    paths:\n    - path: /grpc.health.v1.Health\n      backend: {{url: \"h2c://{upstream}\"}}\n      timeouts: {{request: 5s}}\n  - host: slow.test\n    paths:\n    - path: /\n      backend: {{url: \"h2c://{upstream}\"}}\n      timeouts: {{request: 300ms}}\n"
    )
}

/// Runs the probe client against the proxy; every check must pass.
fn run_client(target: SocketAddr, extra: &[&str]) {
    let checks = [
        "ok unary SERVING",
        "ok error NotFound",
        "ok stream 5",
        "ok deadline DeadlineExceeded",
    ];
    run_client_for("grpc.test", target, extra, &checks);
    // The route of slow.test times out after 300 ms: the proxy answers with grpc-status 4.
    let mut timeout_args = extra.to_vec();
    timeout_args.push("--proxy-timeout");
    run_client_for(
        "slow.test",
        target,
        &timeout_args,
        &["ok proxy timeout DeadlineExceeded"],
    );
}

fn run_client_for(authority: &str, target: SocketAddr, extra: &[&str], expected: &[&str]) {
    let out = Command::new(probe())
        .args([
            "client",
            "--target",
            &target.to_string(),
            "--authority",
            authority,
        ])
        .args(extra)
        .output()
        .expect("run the gRPC client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gRPC client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in expected {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn grpc_unary_streaming_errors_and_deadlines_over_h2c_through_the_binary() {
    let (_server, upstream) = grpc_server();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, config(upstream)).expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockstep-proxy"));
    cmd.args(["--config", file.to_str().expect("utf-8")])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("RUST_LOG", "info");
    let (_proxy, addr) = start(cmd, "lockstep-proxy listening http=");
    let addr: SocketAddr = addr.parse().expect("proxy address");
    // The table is swapped in right after the listen line; wait for the route.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = common::client();
        for _ in 0..100 {
            let response = common::get(&client, addr, "grpc.test", "/grpc.health.v1.Health/Check").await;
            if response.status() != 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    run_client(addr, &[]);
}

#[test]
fn grpc_over_tls_with_alpn_h2_to_an_h2c_upstream() {
    let (_server, upstream) = grpc_server();
    let params =
        rcgen::CertificateParams::new(vec!["grpc.test".to_owned(), "slow.test".to_owned()]).expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.pem()).expect("write ca");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (_server_handle, addr) = rt.block_on(async {
        let state = common::state_with(&config(upstream));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let loaded = certs::load(
            "default/grpc-tls",
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            now,
        )
        .expect("certificate loads");
        let owned = || certs::HostCert {
            certified: Arc::clone(&loaded.certified),
            listener: None,
        };
        state.certs.replace(HashMap::from([
            ("grpc.test".to_owned(), owned()),
            ("slow.test".to_owned(), owned()),
        ]));
        let options = ProxyOptions {
            scheme: "https",
            ..ProxyOptions::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tls_acceptor(state.certs.clone()).expect("acceptor");
        let server = serve_tls(Proxy::new(state, options), listener, acceptor).expect("serve");
        (server, addr)
    });
    let ca = ca.to_str().expect("utf-8").to_owned();
    run_client(addr, &["--tls-ca", &ca]);
    drop(rt);
}
