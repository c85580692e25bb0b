//! `lockstep status [NAME]` and `lockstep wait NAME`: the fleet's view of a rollout, for
//! people (a table like `istioctl proxy-status`) and for pipelines (a wait with a live
//! progress line that fails fast on Stalled). Also installed as the kubectl plugin
//! `kubectl-lockstep`.

use std::{collections::BTreeMap, io::Write, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use lockstep_core::gateway::status::condition::{LOCKSTEP_READY, PROGRAMMED};
use lockstep_core::{ObjectKey, conditions::find, config_digest};
use lockstep_crds::gateway::{CONTROLLER_NAME, GRPCRoute, Gateway, HTTPRoute, RouteParentStatus};
use lockstep_crds::{Rejection, RouterConfig, RouterReplica, condition};

/// The commands for people and pipelines, defined once for `lockstep-operator status|wait`
/// and the kubectl plugin `kubectl lockstep status|wait`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show each replica's generation, digest and rejections for RouterConfigs.
    Status(StatusArgs),
    /// Wait until a RouterConfig is Ready at its current generation, showing progress; or,
    /// for `httproute/NAME` and `grpcroute/NAME`, until every lockstep parent entry has
    /// `lockstep.dev/Ready=True` at the route's generation; for `gateway/NAME`, until it is
    /// `Programmed=True` at its generation.
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
    /// RouterConfig name, or KIND/NAME with KIND routerconfig, httproute, grpcroute or
    /// gateway.
    #[arg(value_parser = check_target)]
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
                let (kind, name) = parse_target(&args.name).map_err(|e| anyhow::anyhow!(e))?;
                Ok(match kind {
                    Target::RouterConfig => wait(client, &namespace, name, args.timeout).await?,
                    Target::HttpRoute => {
                        wait_for::<HTTPRoute>(client, &namespace, name, args.timeout, async |r| {
                            done_or_wait(route_verdict(
                                r.metadata.generation,
                                r.status.as_ref().map(|s| &s.parents[..]),
                            ))
                        })
                        .await?
                    }
                    Target::GrpcRoute => {
                        wait_for::<GRPCRoute>(client, &namespace, name, args.timeout, async |r| {
                            done_or_wait(route_verdict(
                                r.metadata.generation,
                                r.status.as_ref().map(|s| &s.parents[..]),
                            ))
                        })
                        .await?
                    }
                    Target::Gateway => {
                        wait_for::<Gateway>(client, &namespace, name, args.timeout, async |g| {
                            done_or_wait(gateway_verdict(
                                g.metadata.generation,
                                g.status.as_ref().map(|s| &s.conditions[..]),
                            ))
                        })
                        .await?
                    }
                })
            }
        }
    }
}

/// What `wait` waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A RouterConfig (a bare name).
    RouterConfig,
    /// An HTTPRoute: every lockstep parent entry `lockstep.dev/Ready`.
    HttpRoute,
    /// A GRPCRoute: likewise.
    GrpcRoute,
    /// A Gateway: `Programmed`.
    Gateway,
}

/// `NAME` or `KIND/NAME`, with kubectl's spellings of the kinds (singular, plural, short name,
/// with or without the group).
pub fn parse_target(arg: &str) -> Result<(Target, &str), String> {
    let Some((kind, name)) = arg.split_once('/') else {
        return Ok((Target::RouterConfig, arg));
    };
    let kind = kind.to_ascii_lowercase();
    let (kind, group) = kind.split_once('.').unwrap_or((kind.as_str(), ""));
    let target = match (kind, group) {
        ("routerconfig" | "routerconfigs" | "rcfg", "" | "lockstep.dev") => Target::RouterConfig,
        ("httproute" | "httproutes", "" | "gateway.networking.k8s.io") => Target::HttpRoute,
        ("grpcroute" | "grpcroutes", "" | "gateway.networking.k8s.io") => Target::GrpcRoute,
        ("gateway" | "gateways" | "gtw", "" | "gateway.networking.k8s.io") => Target::Gateway,
        _ => {
            return Err(format!(
                "cannot wait on {arg:?}: the kinds are routerconfig, httproute, grpcroute and gateway"
            ));
        }
    };
    if name.is_empty() {
        return Err(format!("{arg:?} names no object"));
    }
    Ok((target, name))
}

/// [`parse_target`] as a clap value parser, so a kind `wait` cannot wait on is an argument
/// error, reported before any client is built.
fn check_target(arg: &str) -> Result<String, String> {
    parse_target(arg).map(|_| arg.to_owned())
}

/// `wait` on a route: done when it has lockstep parent entries and each has
/// `lockstep.dev/Ready=True` observed at the route's `generation`; the line says each entry's
/// state otherwise.
pub fn route_verdict(generation: Option<i64>, parents: Option<&[RouteParentStatus]>) -> (bool, String) {
    let generation = generation.unwrap_or(lockstep_crds::DEFAULT_GENERATION);
    let ours: Vec<&RouteParentStatus> = parents
        .unwrap_or_default()
        .iter()
        .filter(|p| p.controller_name == CONTROLLER_NAME)
        .collect();
    if ours.is_empty() {
        return (
            false,
            format!(
                "waiting for lockstep to judge generation {generation} (no parent entry of lockstep yet)"
            ),
        );
    }
    let mut done = true;
    let mut parts = Vec::new();
    for p in ours {
        let parent = match &p.parent_ref.section_name {
            Some(section) => format!("{}/{section}", p.parent_ref.name),
            None => p.parent_ref.name.clone(),
        };
        match find(&p.conditions, LOCKSTEP_READY).filter(|c| c.observed_generation == Some(generation)) {
            Some(c) if c.status == "True" => parts.push(format!("{parent}: Ready ({})", c.message)),
            Some(c) => {
                done = false;
                parts.push(format!("{parent}: {} ({})", c.reason, c.message));
            }
            None => {
                done = false;
                parts.push(format!(
                    "{parent}: waiting for lockstep to judge generation {generation}"
                ));
            }
        }
    }
    (done, format!("generation {generation}: {}", parts.join("; ")))
}

/// `wait` on a Gateway: done when `Programmed=True` is observed at its `generation`.
pub fn gateway_verdict(generation: Option<i64>, conditions: Option<&[Condition]>) -> (bool, String) {
    let generation = generation.unwrap_or(lockstep_crds::DEFAULT_GENERATION);
    match find(conditions.unwrap_or_default(), PROGRAMMED)
        .filter(|c| c.observed_generation == Some(generation))
    {
        Some(c) if c.status == "True" => (
            true,
            format!("generation {generation}: Programmed ({})", c.message),
        ),
        Some(c) => (
            false,
            format!(
                "generation {generation}: Programmed={} {} ({})",
                c.status, c.reason, c.message
            ),
        ),
        None => (
            false,
            format!("waiting for lockstep to judge generation {generation}"),
        ),
    }
}

/// Watches object `name` of kind `K` until `verdict` gives an exit code (0 done, 1 stalled)
/// or the timeout passes (exit 2), printing each new progress line.
async fn wait_for<K>(
    client: Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    mut verdict: impl AsyncFnMut(&K) -> (Option<i32>, String),
) -> crate::Result<i32>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let api: Api<K> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(
        watcher(api, config)
            .backoff(lockstep_apiclient::watch_backoff())
            .applied_objects()
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let object = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                eprintln!("timed out after {timeout:?}: {last}");
                return Ok(EXIT_TIMEOUT);
            }
            Ok(None) => return Err(crate::Error::WatchEnded),
            Ok(Some(Err(error))) => {
                eprintln!("watch error: {error}; retrying");
                continue;
            }
            Ok(Some(Ok(object))) => object,
        };
        let (code, line) = verdict(&object).await;
        if line != last {
            println!("{namespace}/{name}: {line}");
            let _ = std::io::stdout().flush();
            last = line;
        }
        if let Some(code) = code {
            return Ok(code);
        }
    }
}

/// A verdict of [`route_verdict`] or [`gateway_verdict`] as [`wait_for`] takes it.
fn done_or_wait((done, line): (bool, String)) -> (Option<i32>, String) {
    (done.then_some(0), line)
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
    for name in lockstep_core::tls_secret_names(&rc.spec) {
        match secrets.get_opt(&name).await {
            Ok(Some(secret)) => {
                if let Some(hash) = lockstep_core::digest::tls_secret_hash(&secret) {
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
    let mut warned = false;
    let secrets_client = client.clone();
    wait_for::<RouterConfig>(client, namespace, name, timeout, async |rc| {
        // The material is read again at each Ready=True: Secrets can change during the wait,
        // and each replica's report arrives as an event of this watch.
        let expected = match verdict(rc, None) {
            Some(0) => {
                let expected = expected_digest(&secrets_client, rc).await;
                if expected.is_none() && !warned {
                    eprintln!("cannot read the TLS Secrets in {namespace}: waiting on the generation only");
                    warned = true;
                }
                expected
            }
            _ => None,
        };
        let mut line = progress_line(rc);
        let code = verdict(rc, expected.as_deref());
        if code.is_none()
            && let Some(digest) = &expected
        {
            let replicas = rc.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            line = format!(
                "{}/{replicas} replicas serve the current TLS material of generation {}",
                serving_digest(rc, digest),
                rc.generation()
            );
        }
        (code, line)
    })
    .await
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
    fn wait_targets_are_parsed_with_kubectl_spellings() {
        type Row<'a> = (&'a str, Result<(Target, &'a str), ()>);
        let rows: &[Row] = &[
            ("web", Ok((Target::RouterConfig, "web"))),
            ("rcfg/web", Ok((Target::RouterConfig, "web"))),
            ("httproute/web", Ok((Target::HttpRoute, "web"))),
            ("HTTPRoute/web", Ok((Target::HttpRoute, "web"))),
            (
                "httproutes.gateway.networking.k8s.io/web",
                Ok((Target::HttpRoute, "web")),
            ),
            ("grpcroute/api", Ok((Target::GrpcRoute, "api"))),
            ("gateway/gw", Ok((Target::Gateway, "gw"))),
            ("gtw/gw", Ok((Target::Gateway, "gw"))),
            ("service/web", Err(())),
            ("httproute.example.com/web", Err(())),
            ("httproute/", Err(())),
        ];
        for (arg, want) in rows {
            assert_eq!(parse_target(arg).map_err(|_| ()), *want, "{arg}");
        }
    }

    #[test]
    fn a_route_wait_needs_every_lockstep_parent_ready_at_the_route_generation() {
        let entry = |gw: &str, controller: &str, ready: Option<(&str, i64)>| -> RouteParentStatus {
            let conditions: Vec<serde_json::Value> = ready
                .map(|(status, at)| {
                    json!({"type": "lockstep.dev/Ready", "status": status, "reason": "R", "message": "m",
                           "observedGeneration": at, "lastTransitionTime": "2026-11-27T00:00:00Z"})
                })
                .into_iter()
                .collect();
            serde_json::from_value(json!({"parentRef": {"name": gw}, "controllerName": controller,
                                          "conditions": conditions}))
            .unwrap()
        };
        let ours = CONTROLLER_NAME;
        let rows: Vec<(&str, Vec<RouteParentStatus>, bool)> = vec![
            ("no entry", vec![], false),
            (
                "only another controller's",
                vec![entry("gw", "example.com/x", Some(("True", 4)))],
                false,
            ),
            ("not judged yet", vec![entry("gw", ours, None)], false),
            ("stale True", vec![entry("gw", ours, Some(("True", 3)))], false),
            ("False now", vec![entry("gw", ours, Some(("False", 4)))], false),
            ("True now", vec![entry("gw", ours, Some(("True", 4)))], true),
            (
                "one of two parents",
                vec![
                    entry("a", ours, Some(("True", 4))),
                    entry("b", ours, Some(("True", 3))),
                ],
                false,
            ),
            (
                "both parents, another controller's not",
                vec![
                    entry("a", ours, Some(("True", 4))),
                    entry("b", ours, Some(("True", 4))),
                    entry("c", "example.com/x", Some(("False", 4))),
                ],
                true,
            ),
        ];
        for (what, parents, done) in rows {
            assert_eq!(route_verdict(Some(4), Some(&parents)).0, done, "{what}");
        }
        let mk = |status: &str, at: i64| -> Vec<Condition> {
            vec![
                serde_json::from_value(json!({"type": "Programmed", "status": status, "reason": "R",
                "message": "m", "observedGeneration": at, "lastTransitionTime": "2026-11-27T00:00:00Z"}))
                .unwrap(),
            ]
        };
        assert!(!gateway_verdict(Some(2), None).0);
        assert!(!gateway_verdict(Some(2), Some(&mk("True", 1))).0, "stale");
        assert!(!gateway_verdict(Some(2), Some(&mk("False", 2))).0);
        assert!(gateway_verdict(Some(2), Some(&mk("True", 2))).0);
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
