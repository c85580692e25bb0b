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
use lockstep_config::{ObjectKey, conditions::find, config_digest};
use lockstep_crds::{Rejection, RouterConfig, RouterReplica, condition};

/// The commands for people and pipelines, defined once for `lockstep-operator status|wait`
/// and the kubectl plugin `kubectl lockstep status|wait`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show each replica's generation, digest and rejections for RouterConfigs.
    Status(StatusArgs),
    /// Wait until a RouterConfig is Ready at its current generation, showing progress.
    Wait(WaitArgs),
}

/// Arguments of `status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// RouterConfig name (all when omitted).
    pub name: Option<String>,
    /// Namespace (default: the kubeconfig's).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// Arguments of `wait`.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    /// RouterConfig name.
    pub name: String,
    /// Namespace (default: the kubeconfig's).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Give up after this long (exit 2): kubectl's duration syntax (90s, 2m, 1h30m, 500ms) or
    /// a number of seconds.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

impl Command {
    /// Runs the command with a client from the usual places (KUBECONFIG, ~/.kube/config,
    /// in-cluster), built only now that the arguments are known to be good; returns the exit
    /// code.
    pub async fn run(self) -> anyhow::Result<i32> {
        use anyhow::Context as _;
        let client = kube::Client::try_default().await.context(
            "no usable Kubernetes client configuration (KUBECONFIG, ~/.kube/config or in-cluster)",
        )?;
        match self {
            Command::Status(args) => {
                let namespace = (!args.all_namespaces).then(|| {
                    args.namespace
                        .unwrap_or_else(|| client.default_namespace().to_owned())
                });
                status(client, namespace.as_deref(), args.name.as_deref()).await?;
                Ok(0)
            }
            Command::Wait(args) => {
                let namespace = args
                    .namespace
                    .unwrap_or_else(|| client.default_namespace().to_owned());
                Ok(wait(client, &namespace, &args.name, args.timeout).await?)
            }
        }
    }
}

/// Exit code of `wait` when the rollout is Stalled (or not accepted).
pub const EXIT_STALLED: i32 = 1;
/// Exit code of `wait` when the timeout passed.
pub const EXIT_TIMEOUT: i32 = 2;

pub use lockstep_crds::duration::parse as parse_duration;

/// The digest replicas must report for `rc`, when the caller may read its TLS Secrets.
async fn expected_digest(client: &Client, rc: &RouterConfig) -> Option<String> {
    let ns = ObjectKey::of(rc).namespace;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut hashes = BTreeMap::new();
    for name in lockstep_config::tls_secret_names(&rc.spec) {
        match secrets.get_opt(&name).await {
            Ok(Some(secret)) => {
                if let Some(hash) = lockstep_config::digest::tls_secret_hash(&secret) {
                    hashes.insert(name, hash);
                }
            }
            Ok(None) => {}
            Err(_) => return None,
        }
    }
    Some(config_digest(&rc.spec, &hashes))
}

/// One replica's line in the status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// `<namespace>/<replica>`.
    pub name: String,
    /// The generation it serves.
    pub generation: i64,
    /// The digest it reports.
    pub digest: String,
    /// When it applied that generation.
    pub applied_at: Option<String>,
    /// The generation it rejected, if any.
    pub rejected: Option<Rejection>,
    /// Its own readiness (its RouterReplica's Ready condition), when known.
    pub ready: Option<String>,
}

/// The rows of `rc` from the reports the operator copied into its status (at most 100).
pub fn rows_from_status(rc: &RouterConfig) -> Vec<ReplicaRow> {
    let status = rc.status.clone().unwrap_or_default();
    status
        .replica_status
        .into_iter()
        .map(|e| ReplicaRow {
            name: e.name,
            generation: e.observed_generation,
            digest: e.config_digest,
            applied_at: e.applied_at,
            rejected: e.rejected,
            ready: None,
        })
        .collect()
}

/// The rows of `rc` from every RouterReplica of its fleet that serves its namespace.
pub fn rows_from_replicas(rc: &RouterConfig, replicas: &[RouterReplica]) -> Vec<ReplicaRow> {
    let key = ObjectKey::of(rc);
    let mut rows: Vec<ReplicaRow> = replicas
        .iter()
        .filter(|r| r.spec.fleet == rc.spec.fleet && r.spec.serves_namespace(&key.namespace))
        .map(|r| {
            let status = r.status.clone().unwrap_or_default();
            let served = status
                .served
                .iter()
                .find(|e| e.namespace == key.namespace && e.name == key.name)
                .cloned()
                .unwrap_or_default();
            ReplicaRow {
                name: format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()),
                generation: served.observed_generation,
                digest: served.config_digest,
                applied_at: served.applied_at,
                rejected: served.rejected,
                ready: find(&status.conditions, condition::READY)
                    .map(|c| format!("{} ({})", c.status, c.reason)),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// Renders the status table of some RouterConfigs, each with its expected digest (when the
/// caller may read its Secrets) and its replicas.
pub fn render(rcs: &[(RouterConfig, Option<String>, Vec<ReplicaRow>)]) -> String {
    let mut out = String::new();
    for (rc, expected, rows) in rcs {
        let key = ObjectKey::of(rc);
        let generation = rc.generation();
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
            "  {:<32} {:>10}  {:<8} {:<22} {:<24} {}\n",
            "REPLICA", "GENERATION", "DIGEST", "APPLIED", "READY", "REJECTED"
        ));
        for row in rows {
            let digest = match expected {
                Some(d) if *d == row.digest => "match",
                Some(_) => "differs",
                None => "?",
            };
            let rejected = row
                .rejected
                .as_ref()
                .map(|r| format!("generation {}: {}", r.generation, r.message))
                .unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {:<32} {:>10}  {:<8} {:<22} {:<24} {}\n",
                row.name,
                row.generation,
                digest,
                row.applied_at.as_deref().unwrap_or("-"),
                row.ready.as_deref().unwrap_or("-"),
                rejected
            ));
        }
        if rows.is_empty() {
            out.push_str("  (no replica has reported)\n");
        }
    }
    out
}

/// `status [NAME]`: prints the table for one RouterConfig or all in the namespace (or all
/// namespaces with `namespace == None`). Replicas come from every RouterReplica (all of them,
/// however many); a caller who may not list RouterReplicas gets the (at most 100) reports the
/// operator copied into the status.
pub async fn status(client: Client, namespace: Option<&str>, name: Option<&str>) -> crate::Result<()> {
    let api: Api<RouterConfig> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let rcs = match name {
        Some(name) => vec![api.get(name).await?],
        None => api.list(&Default::default()).await?.items,
    };
    let replicas = match Api::<RouterReplica>::all(client.clone())
        .list(&Default::default())
        .await
    {
        Ok(list) => Some(list.items),
        Err(error) => {
            eprintln!("cannot list RouterReplicas ({error}); showing the reports copied into each status");
            None
        }
    };
    let mut rows = Vec::new();
    for rc in rcs {
        let expected = expected_digest(&client, &rc).await;
        let replica_rows = match &replicas {
            Some(replicas) => rows_from_replicas(&rc, replicas),
            None => rows_from_status(&rc),
        };
        rows.push((rc, expected, replica_rows));
    }
    print!("{}", render(&rows));
    Ok(())
}

/// One line of progress for `wait`.
pub fn progress_line(rc: &RouterConfig) -> String {
    let generation = rc.generation();
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

/// What `wait` concludes from one observation: Some(exit code) when it is done. `expected` is
/// the digest every replica must report for the TLS material as it is now (`None` when the
/// caller may not read the Secrets): a rotation changes no generation, so a Ready=True judged
/// before it, on the old material, must not end the wait.
pub fn verdict(rc: &RouterConfig, expected: Option<&str>) -> Option<i32> {
    let generation = rc.generation();
    let status = rc.status.as_ref()?;
    let current =
        |type_| find(&status.conditions, type_).filter(|c| c.observed_generation == Some(generation));
    if current(condition::READY).is_some_and(|c| c.status == "True") {
        let Some(expected) = expected else {
            return Some(0);
        };
        // The status copies at most 100 reports, replicas not at the operator's expected
        // digest first: when the list is cut, every listed entry reporting the material means
        // every replica does.
        let listed = i32::try_from(status.replica_status.len()).unwrap_or(i32::MAX);
        let needed = status.replicas.unwrap_or(0).min(listed.max(1));
        return (serving_digest(rc, expected) >= needed).then_some(0);
    }
    if current(condition::STALLED).is_some_and(|c| c.status == "True") {
        return Some(EXIT_STALLED);
    }
    None
}

/// Replica entries at the current generation that report `digest`.
fn serving_digest(rc: &RouterConfig, digest: &str) -> i32 {
    let generation = rc.generation();
    let entries = rc.status.as_ref().map_or(&[][..], |s| &s.replica_status[..]);
    entries
        .iter()
        .filter(|e| e.observed_generation == generation && e.config_digest == digest)
        .count() as i32
}

/// `wait NAME`: watches until Ready=True for the current generation and, when the caller may
/// read the TLS Secrets, every replica reporting their current material (exit 0), Stalled=True
/// (exit 1) or the timeout (exit 2), printing progress as it changes.
pub async fn wait(client: Client, namespace: &str, name: &str, timeout: Duration) -> crate::Result<i32> {
    let api: Api<RouterConfig> = Api::namespaced(client.clone(), namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(
        watcher(api, config)
            .backoff(lockstep_apiclient::watch_backoff())
            .applied_objects()
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    let mut warned = false;
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next()).await;
        let rc = match next {
            Err(_) => {
                eprintln!("timed out after {timeout:?}: {last}");
                return Ok(EXIT_TIMEOUT);
            }
            Ok(None) => return Err(crate::Error::WatchEnded),
            Ok(Some(Err(error))) => {
                eprintln!("watch error: {error}; retrying");
                continue;
            }
            Ok(Some(Ok(rc))) => rc,
        };
        // The material is read again at each Ready=True: Secrets can change during the wait,
        // and each replica's report arrives as an event of this watch.
        let expected = match verdict(&rc, None) {
            Some(0) => {
                let expected = expected_digest(&client, &rc).await;
                if expected.is_none() && !warned {
                    eprintln!("cannot read the TLS Secrets in {namespace}: waiting on the generation only");
                    warned = true;
                }
                expected
            }
            _ => None,
        };
        let mut line = progress_line(&rc);
        let code = verdict(&rc, expected.as_deref());
        if code.is_none()
            && let Some(digest) = &expected
        {
            let replicas = rc.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            line = format!(
                "{}/{replicas} replicas serve the current TLS material of generation {}",
                serving_digest(&rc, digest),
                rc.generation()
            );
        }
        if line != last {
            println!("{}/{}: {line}", rc.namespace().unwrap_or_default(), rc.name_any());
            let _ = std::io::stdout().flush();
            last = line;
        }
        if let Some(code) = code {
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
            verdict(&mk_rc(2, json!([mk_cond("Ready", "True", 1)])), None),
            None,
            "stale Ready=True"
        );
        assert_eq!(
            verdict(&mk_rc(2, json!([mk_cond("Ready", "True", 2)])), None),
            Some(0)
        );
        assert_eq!(
            verdict(
                &mk_rc(
                    2,
                    json!([mk_cond("Ready", "False", 2), mk_cond("Stalled", "True", 2)])
                ),
                None
            ),
            Some(EXIT_STALLED)
        );
        assert_eq!(
            verdict(
                &mk_rc(
                    2,
                    json!([mk_cond("Ready", "False", 2), mk_cond("Stalled", "True", 1)])
                ),
                None
            ),
            None
        );
    }

    #[test]
    fn after_a_rotation_ready_true_is_not_enough_until_every_replica_reports_the_material() {
        let with_entries = |digests: &[&str]| {
            let mut rc = mk_rc(2, json!([mk_cond("Ready", "True", 2)]));
            let status = rc.status.as_mut().unwrap();
            status.replica_status = digests
                .iter()
                .enumerate()
                .map(|(i, d)| lockstep_crds::ReplicaStatus {
                    name: format!("proxy-{i}"),
                    observed_generation: 2,
                    config_digest: (*d).into(),
                    applied_at: None,
                    rejected: None,
                })
                .collect();
            rc
        };
        // Ready=True judged on the old material: every replica still reports it.
        let old = with_entries(&["sha256:old", "sha256:old", "sha256:old"]);
        assert_eq!(verdict(&old, Some("sha256:new")), None);
        let partly = with_entries(&["sha256:new", "sha256:old", "sha256:new"]);
        assert_eq!(verdict(&partly, Some("sha256:new")), None);
        assert_eq!(serving_digest(&partly, "sha256:new"), 2);
        let all = with_entries(&["sha256:new", "sha256:new", "sha256:new"]);
        assert_eq!(verdict(&all, Some("sha256:new")), Some(0));
        // Without access to the Secrets the generation is all that can be checked.
        assert_eq!(verdict(&old, None), Some(0));
        // An entry of an older generation does not count, whatever its digest.
        let mut behind = all.clone();
        behind.status.as_mut().unwrap().replica_status[0].observed_generation = 1;
        assert_eq!(verdict(&behind, Some("sha256:new")), None);
    }

    #[test]
    fn a_rotation_wait_finishes_past_100_replicas_from_the_copied_reports() {
        let mut rc = mk_rc(2, json!([mk_cond("Ready", "True", 2)]));
        let status = rc.status.as_mut().unwrap();
        status.replicas = Some(150);
        status.replica_status = (0..100)
            .map(|i| lockstep_crds::ReplicaStatus {
                name: format!("px/proxy-{i}"),
                observed_generation: 2,
                config_digest: "sha256:new".into(),
                applied_at: None,
                rejected: None,
            })
            .collect();
        assert_eq!(verdict(&rc, Some("sha256:new")), Some(0));
        rc.status.as_mut().unwrap().replica_status[0].config_digest = "sha256:old".into();
        assert_eq!(
            verdict(&rc, Some("sha256:new")),
            None,
            "a laggard is listed first"
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
        let table = render(&[(rc.clone(), Some("sha256:a".into()), rows_from_status(&rc))]);
        assert!(table.contains("RouterConfig ns/web"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.contains("proxy-0") && l.contains(" 7 ") && l.contains("match")),
            "{table}"
        );
        let table = render(&[(rc.clone(), Some("sha256:b".into()), rows_from_status(&rc))]);
        assert!(table.contains("differs"), "{table}");
    }

    #[test]
    fn status_rows_come_from_every_replica_serving_the_namespace() {
        let rc = mk_rc(7, json!([mk_cond("Ready", "False", 7)]));
        let mk_rrep = |ns: &str,
                       name: &str,
                       fleet: &str,
                       namespaces: &[&str],
                       generation: i64|
         -> RouterReplica {
            serde_json::from_value(json!({
                "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterReplica",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"fleet": fleet, "namespaces": namespaces},
                "status": {"served": [{"namespace": "ns", "name": "web", "observedGeneration": generation, "configDigest": "sha256:a"}],
                           "conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "message": "",
                                           "lastTransitionTime": "2026-11-27T00:00:00Z"}]}
            }))
            .unwrap()
        };
        let mut replicas: Vec<RouterReplica> = (0..150)
            .map(|i| mk_rrep("px", &format!("p{i:03}"), "default", &["ns"], 7))
            .collect();
        replicas.push(mk_rrep("px", "other-fleet", "green", &["*"], 7));
        replicas.push(mk_rrep("px", "other-ns", "default", &["elsewhere"], 7));
        replicas.push(mk_rrep("py", "p000", "default", &["*"], 6));
        let rows = rows_from_replicas(&rc, &replicas);
        assert_eq!(
            rows.len(),
            151,
            "every replica, past the 100 copied into the status"
        );
        assert_eq!(rows[0].name, "px/p000");
        assert_eq!(rows[150].name, "py/p000");
        assert_eq!(rows[150].generation, 6);
        let table = render(&[(rc, Some("sha256:a".into()), rows)]);
        assert!(
            table
                .lines()
                .any(|l| l.contains("px/p149") && l.contains("True (Serving)")),
            "{table}"
        );
    }
}
