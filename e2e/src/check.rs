//! What tests observe: the Ready condition of a RouterConfig, what each proxy says it serves
//! (`/config`), and where a real request through a proxy lands.

use std::{net::SocketAddr, time::Duration};

use kube::Api;
use lockstep_crds::RouterConfig;

use crate::Result;

/// The Ready condition as kubectl wait judges it: `Some((status, reason, observedGeneration))`.
pub fn ready_condition(rc: &RouterConfig) -> Option<(String, String, i64)> {
    condition(rc, "Ready")
}

/// A condition of a RouterConfig by type: `(status, reason, observedGeneration)`.
pub fn condition(rc: &RouterConfig, type_: &str) -> Option<(String, String, i64)> {
    rc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone(),
                c.observed_generation.unwrap_or(0),
            )
        })
}

/// The generation Ready=True is claimed for, if Ready=True is current for the object's
/// generation.
pub fn ready_generation(rc: &RouterConfig) -> Option<i64> {
    let generation = rc.metadata.generation?;
    match ready_condition(rc) {
        Some((status, _, observed)) if status == "True" && observed == generation => Some(generation),
        _ => None,
    }
}

/// An HTTP client for tests: short timeouts, no connection reuse surprises.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

/// The generation a proxy serves for namespace/name, from its `/config`.
pub async fn served_generation(
    client: &reqwest::Client,
    admin: SocketAddr,
    namespace: &str,
    name: &str,
) -> Option<i64> {
    let config: serde_json::Value = client
        .get(format!("http://{admin}/config"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    config["routerConfigs"].as_array()?.iter().find_map(|rc| {
        (rc["namespace"] == namespace && rc["name"] == name)
            .then(|| rc["generation"].as_i64())
            .flatten()
    })
}

/// GET `/readyz` of a proxy or operator: true on 200.
pub async fn is_ready(client: &reqwest::Client, admin: SocketAddr) -> bool {
    matches!(client.get(format!("http://{admin}/readyz")).send().await, Ok(r) if r.status().is_success())
}

/// Sends `GET path` with `Host: host` through a proxy; returns the status and, for a JSON
/// answer from a test backend, the backend's name.
pub async fn request(
    client: &reqwest::Client,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, Option<String>)> {
    let response = client
        .get(format!("http://{proxy}{path}"))
        .header("host", host)
        .send()
        .await
        .map_err(|e| crate::Error::Command {
            what: format!("GET {host}{path} via {proxy}"),
            detail: e.to_string(),
        })?;
    let status = response.status().as_u16();
    let body: Option<serde_json::Value> = response.json().await.ok();
    Ok((
        status,
        body.and_then(|b| b["backend"].as_str().map(str::to_owned)),
    ))
}

/// The RouterConfig now, with status.
pub async fn get(api: &Api<RouterConfig>, name: &str) -> Result<RouterConfig> {
    Ok(api.get_status(name).await?)
}

/// How the kstatus library (Flux, kpt, cli-utils) judges an object given as JSON: its status
/// word (InProgress, Current, Failed, ...) and message. Builds the judge on first use.
pub fn kstatus(object_json: &str) -> Result<(String, String)> {
    use std::io::Write;
    let bin = crate::built_tool("e2e/kstatus/build.sh")?;
    let mut child = std::process::Command::new(bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object_json.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(crate::Error::Command {
            what: "kstatus".into(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut parts = line.splitn(3, ' ');
    let _name = parts.next();
    Ok((
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    ))
}

/// Creates or replaces the `kubernetes.io/tls` Secret `name` with this PEM material.
pub async fn put_tls_secret(
    api: &Api<k8s_openapi::api::core::v1::Secret>,
    name: &str,
    crt: &str,
    key: &str,
) -> Result<()> {
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name},
        "stringData": {"tls.crt": crt, "tls.key": key}
    });
    api.patch(
        name,
        &kube::api::PatchParams::apply("lockstep-e2e").force(),
        &kube::api::Patch::Apply(secret),
    )
    .await?;
    Ok(())
}
