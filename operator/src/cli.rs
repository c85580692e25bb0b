//! `lockstep status [NAME]` and `lockstep wait NAME`: the fleet's view of a rollout, for
//! people (a table like `istioctl proxy-status`) and for pipelines (a wait with a live
//! progress line that fails fast on Stalled). Also installed as the kubectl plugin
//! `kubectl-lockstep`.

use std::{collections::BTreeMap, io::Write, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use lockstep_config::{ObjectKey, conditions::find, config_digest, tls_material_hash};
use lockstep_crds::{RouterConfig, condition};

/// Exit code of `wait` when the rollout is Stalled (or not accepted).
pub const EXIT_STALLED: i32 = 1;
/// Exit code of `wait` when the timeout passed.
pub const EXIT_TIMEOUT: i32 = 2;

/// The digest replicas must report for `rc`, when the caller may read its TLS Secrets.
async fn expected_digest(client: &Client, rc: &RouterConfig) -> Option<String> {
    let ns = ObjectKey::of(rc).namespace;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut hashes = BTreeMap::new();
    for name in lockstep_config::tls_secret_names(&rc.spec) {
        match secrets.get_opt(&name).await {
            Ok(Some(secret)) => {
                let data = secret.data.unwrap_or_default();
                if let (Some(crt), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) {
                    hashes.insert(name, tls_material_hash(&crt.0, &key.0));
                }
            }
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    Some(config_digest(&rc.spec, &hashes))
}

/// Renders the status table of some RouterConfigs.
pub fn render(rcs: &[(RouterConfig, Option<String>)]) -> String {
    let mut out = String::new();
    for (rc, expected) in rcs {
        let key = ObjectKey::of(rc);
        let generation = rc.metadata.generation.unwrap_or(0);
        let status = rc.status.clone().unwrap_or_default();
        let ready = find(&status.conditions, condition::READY);
        out.push_str(&format!(
            "RouterConfig {key}  fleet {}  generation {generation}  Ready={} ({})  synced {}\n",
            rc.spec.fleet,
            ready.map_or("Unknown", |c| c.status.as_str()),
            ready.map_or("not judged yet", |c| c.message.as_str()),
            status.synced.as_deref().unwrap_or("-"),
        ));
        for c in &status.conditions {
            if c.type_ != condition::READY && (c.status == "True") == (c.type_ == condition::ACCEPTED) {
                continue;
            }
            if c.type_ != condition::READY {
                out.push_str(&format!(
                    "  {}={} {}: {}\n",
                    c.type_, c.status, c.reason, c.message
                ));
            }
        }
        out.push_str(&format!(
            "  {:<24} {:>10}  {:<8} {:<22} {}\n",
            "REPLICA", "GENERATION", "DIGEST", "APPLIED", "REJECTED"
        ));
        for entry in &status.replica_status {
            let digest = match expected {
                Some(d) if *d == entry.config_digest => "match",
                Some(_) => "differs",
                None => "?",
            };
            let rejected = entry
                .rejected
                .as_ref()
                .map(|r| format!("generation {}: {}", r.generation, r.message))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {:<24} {:>10}  {:<8} {:<22} {}\n",
                entry.name,
                entry.observed_generation,
                digest,
                entry.applied_at.as_deref().unwrap_or("-"),
                rejected
            ));
        }
        if status.replica_status.is_empty() {
            out.push_str("  (no replica has reported)\n");
        }
    }
    out
}

/// `status [NAME]`: prints the table for one RouterConfig or all in the namespace (or all
/// namespaces with `namespace == None`).
pub async fn status(client: Client, namespace: Option<&str>, name: Option<&str>) -> anyhow::Result<()> {
    let api: Api<RouterConfig> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let rcs = match name {
        Some(name) => vec![api.get(name).await?],
        None => api.list(&Default::default()).await?.items,
    };
    let mut rows = Vec::new();
    for rc in rcs {
        let expected = expected_digest(&client, &rc).await;
        rows.push((rc, expected));
    }
    print!("{}", render(&rows));
    Ok(())
}

/// One line of progress for `wait`.
pub fn progress_line(rc: &RouterConfig) -> String {
    let generation = rc.metadata.generation.unwrap_or(0);
    let status = rc.status.clone().unwrap_or_default();
    let ready =
        find(&status.conditions, condition::READY).filter(|c| c.observed_generation == Some(generation));
    match ready {
        Some(c) => {
            let (synced, replicas) = (status.synced_replicas.unwrap_or(0), status.replicas.unwrap_or(0));
            format!(
                "{synced}/{replicas} replicas at generation {generation} ({}: {})",
                c.reason, c.message
            )
        }
        None => format!("waiting for the operator to judge generation {generation}"),
    }
}

/// What `wait` concludes from one observation: Some(exit code) when it is done.
pub fn verdict(rc: &RouterConfig) -> Option<i32> {
    let generation = rc.metadata.generation.unwrap_or(0);
    let conditions = &rc.status.as_ref()?.conditions;
    let current = |type_| find(conditions, type_).filter(|c| c.observed_generation == Some(generation));
    if current(condition::READY).is_some_and(|c| c.status == "True") {
        return Some(0);
    }
    if current(condition::STALLED).is_some_and(|c| c.status == "True") {
        return Some(EXIT_STALLED);
    }
    None
}

/// `wait NAME`: watches until Ready=True for the current generation (exit 0), Stalled=True
/// (exit 1) or the timeout (exit 2), printing progress as it changes.
pub async fn wait(client: Client, namespace: &str, name: &str, timeout: Duration) -> anyhow::Result<i32> {
    let api: Api<RouterConfig> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(
        watcher(api, config)
            .backoff(lockstep_apiclient::watch_backoff())
            .applied_objects()
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let rc = match next {
            Err(_) => {
                eprintln!("timed out after {}s: {last}", timeout.as_secs());
                return Ok(EXIT_TIMEOUT);
            }
            Ok(None) => anyhow::bail!("watch ended"),
            Ok(Some(Err(error))) => {
                eprintln!("watch error: {error}; retrying");
                continue;
            }
            Ok(Some(Ok(rc))) => rc,
        };
        let line = progress_line(&rc);
        if line != last {
            println!("{}/{}: {line}", rc.namespace().unwrap_or_default(), rc.name_any());
            let _ = std::io::stdout().flush();
            last = line;
        }
        if let Some(code) = verdict(&rc) {
            return Ok(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mk_rc(generation: i64, conditions: serde_json::Value) -> RouterConfig {
        serde_json::from_value(json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": "web", "namespace": "ns", "generation": generation},
            "spec": {"rules": [{"host": "a.test", "paths": [{"path": "/", "backend": {"url": "http://127.0.0.1:1"}}]}]},
            "status": {"conditions": conditions, "syncedReplicas": 2, "replicas": 3, "synced": "2/3",
                "replicaStatus": [{"name": "proxy-0", "observedGeneration": generation, "configDigest": "sha256:a"}]}
        }))
        .unwrap()
    }

    fn mk_cond(type_: &str, status: &str, generation: i64) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": "R", "message": "m", "observedGeneration": generation,
            "lastTransitionTime": "2026-11-27T00:00:00Z"})
    }

    #[test]
    fn wait_finishes_only_on_conditions_of_the_current_generation() {
        assert_eq!(
            verdict(&mk_rc(2, json!([mk_cond("Ready", "True", 1)]))),
            None,
            "stale Ready=True"
        );
        assert_eq!(verdict(&mk_rc(2, json!([mk_cond("Ready", "True", 2)]))), Some(0));
        assert_eq!(
            verdict(&mk_rc(
                2,
                json!([mk_cond("Ready", "False", 2), mk_cond("Stalled", "True", 2)])
            )),
            Some(EXIT_STALLED)
        );
        assert_eq!(
            verdict(&mk_rc(
                2,
                json!([mk_cond("Ready", "False", 2), mk_cond("Stalled", "True", 1)])
            )),
            None
        );
    }

    #[test]
    fn progress_line_counts_replicas_at_the_generation() {
        let rc = mk_rc(7, json!([mk_cond("Ready", "False", 7)]));
        assert!(progress_line(&rc).starts_with("2/3 replicas at generation 7"));
        let stale = mk_rc(8, json!([mk_cond("Ready", "True", 7)]));
        assert_eq!(
            progress_line(&stale),
            "waiting for the operator to judge generation 8"
        );
    }

    #[test]
    fn status_table_shows_replicas_and_digest_match() {
        let rc = mk_rc(7, json!([mk_cond("Ready", "False", 7)]));
        let table = render(&[(rc.clone(), Some("sha256:a".into()))]);
        assert!(table.contains("RouterConfig ns/web"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.contains("proxy-0") && l.contains(" 7 ") && l.contains("match")),
            "{table}"
        );
        let table = render(&[(rc, Some("sha256:b".into()))]);
        assert!(table.contains("differs"), "{table}");
    }
}
