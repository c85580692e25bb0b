//! Beside the Gateway API conformance suite: checks lockstep's promise for routes at every
//! `lockstep.dev/Ready=True` a route parent entry gets. For route uid U at generation G on
//! Gateway X, every live replica of X's fleet must serve, for each RouterConfig generated
//! from X that records U, a generation of it that records U at G or later.
//!
//! The check reads the cluster *as it was when the operator wrote that status*: the
//! RouterConfigs, RouterReplicas and Leases are listed at the route event's resourceVersion
//! (`resourceVersionMatch=Exact`, served from etcd), so a replica that caught up just after
//! the write does not hide a violation, and one whose report the watcher had not seen yet
//! does not make a false one. What a replica serves is its own report (RouterReplica
//! `status.served`); which route generations a RouterConfig generation records comes from its
//! `lockstep.dev/routes` annotation (the current one from the list, earlier ones from this
//! process's watch of RouterConfigs). A check that cannot be made (that history missed, the
//! revision compacted) is counted as unverifiable, with the reason, never as held.
//!
//! A member is a RouterReplica of the RouterConfig's fleet that serves its namespace and whose
//! Lease, at that revision, had not lapsed when the condition was written.
//!
//! `lockstep-e2e-gateway-barrier --out FILE`: uses `KUBECONFIG`; runs until SIGTERM or
//! SIGINT, then writes a JSON summary (checks, held, violations and unverifiable checks with
//! their reasons) to FILE and prints one line. e2e/gateway/conformance.sh runs it.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context as _;
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, VersionMatch},
    runtime::{WatchStreamExt, watcher},
};
use lockstep_core::gateway::serve::{ROUTES_ANNOTATION, recorded_routes};
use lockstep_crds::{
    GENERATED_FROM_LABEL, RouterConfig, RouterReplica,
    gateway::{GRPCRoute, HTTPRoute, ListenerSet, RouteStatus},
};
use serde::Serialize;

/// Watches route status beside the conformance suite and checks lockstep's barrier.
#[derive(Debug, Parser)]
#[command(name = "lockstep-e2e-gateway-barrier")]
struct Args {
    /// Where the JSON summary goes when the process is stopped.
    #[arg(long)]
    out: std::path::PathBuf,
}

/// The condition lockstep adds to each route parent entry.
const READY: &str = "lockstep.dev/Ready";

/// One `lockstep.dev/Ready=True` to check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Claim {
    kind: &'static str,
    namespace: String,
    name: String,
    uid: String,
    generation: i64,
    /// The parent entry's kind: Gateway, or a ListenerSet (served by its Gateway's fleet).
    parent_kind: String,
    gateway_namespace: String,
    gateway: String,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    checks: usize,
    held: usize,
    violations: Vec<String>,
    unverifiable: Vec<String>,
}

/// What a check concluded.
enum Outcome {
    Held,
    Violated(String),
    Unverifiable(String),
}

/// A route event, whichever the kind: the claims it makes and the revision it was written at.
struct RouteEvent {
    /// Each claim with when its condition was written.
    claims: Vec<(Claim, jiff::Timestamp)>,
    resource_version: String,
}

fn claims_of(
    kind: &'static str,
    namespace: String,
    name: String,
    uid: String,
    status: Option<&RouteStatus>,
    resource_version: String,
) -> RouteEvent {
    let mut claims = Vec::new();
    for parent in status.map(|s| s.parents.as_slice()).unwrap_or_default() {
        if parent.controller_name != lockstep_crds::gateway::CONTROLLER_NAME {
            continue;
        }
        let Some(ready) = parent
            .conditions
            .iter()
            .find(|c| c.type_ == READY && c.status == "True")
        else {
            continue;
        };
        let Some(generation) = ready.observed_generation else {
            continue;
        };
        let at = ready.last_transition_time.0;
        claims.push((
            Claim {
                kind,
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
                generation,
                parent_kind: parent.parent_ref.kind.clone().unwrap_or_else(|| "Gateway".into()),
                gateway_namespace: parent
                    .parent_ref
                    .namespace
                    .clone()
                    .unwrap_or_else(|| namespace.clone()),
                gateway: parent.parent_ref.name.clone(),
            },
            at,
        ));
    }
    RouteEvent {
        claims,
        resource_version,
    }
}

fn route_events(client: &Client) -> BoxStream<'static, anyhow::Result<RouteEvent>> {
    let http = watcher(Api::<HTTPRoute>::all(client.clone()), watcher::Config::default())
        .applied_objects()
        .map_ok(|r| {
            claims_of(
                "HTTPRoute",
                r.namespace().unwrap_or_default(),
                r.name_any(),
                r.uid().unwrap_or_default(),
                r.status.as_ref(),
                r.resource_version().unwrap_or_default(),
            )
        });
    let grpc = watcher(Api::<GRPCRoute>::all(client.clone()), watcher::Config::default())
        .applied_objects()
        .map_ok(|r| {
            claims_of(
                "GRPCRoute",
                r.namespace().unwrap_or_default(),
                r.name_any(),
                r.uid().unwrap_or_default(),
                r.status.as_ref(),
                r.resource_version().unwrap_or_default(),
            )
        });
    futures::stream::select(http, grpc)
        .map_err(anyhow::Error::from)
        .boxed()
}

/// Route generations recorded by each RouterConfig generation seen: (uid, generation).
type History = HashMap<(String, i64), BTreeMap<String, i64>>;

fn at_exact(resource_version: &str) -> ListParams {
    ListParams::default()
        .at(resource_version)
        .matching(VersionMatch::Exact)
}

/// Checks one claim against the cluster at `resource_version` (`written`: when the condition
/// was set, for Lease liveness).
async fn check(
    client: &Client,
    history: &History,
    claim: &Claim,
    written: jiff::Timestamp,
    resource_version: &str,
) -> Outcome {
    // A ListenerSet parent is served by its Gateway's fleet: the Gateway it named at that
    // revision.
    let resolved;
    let claim = if claim.parent_kind == "ListenerSet" {
        let sets = Api::<ListenerSet>::namespaced(client.clone(), &claim.gateway_namespace)
            .list(&at_exact(resource_version))
            .await;
        let set = match sets {
            Ok(list) => list.items.into_iter().find(|s| s.name_any() == claim.gateway),
            Err(e) => {
                return Outcome::Unverifiable(format!(
                    "listing ListenerSets at revision {resource_version}: {e}"
                ));
            }
        };
        let Some(set) = set else {
            return Outcome::Unverifiable(format!(
                "ListenerSet {}/{} not found at revision {resource_version}",
                claim.gateway_namespace, claim.gateway
            ));
        };
        resolved = Claim {
            gateway_namespace: set
                .spec
                .parent_ref
                .namespace
                .clone()
                .unwrap_or_else(|| claim.gateway_namespace.clone()),
            gateway: set.spec.parent_ref.name.clone(),
            ..claim.clone()
        };
        &resolved
    } else {
        claim
    };
    let list = async {
        let lp = at_exact(resource_version);
        let rcs = Api::<RouterConfig>::namespaced(client.clone(), &claim.gateway_namespace)
            .list(&lp.clone().labels(&format!("{GENERATED_FROM_LABEL}=Gateway")))
            .await?;
        let replicas = Api::<RouterReplica>::all(client.clone()).list(&lp).await?;
        let leases = Api::<Lease>::all(client.clone()).list(&lp).await?;
        anyhow::Ok((rcs.items, replicas.items, leases.items))
    };
    let (rcs, replicas, leases) = match list.await {
        Ok(lists) => lists,
        Err(e) => return Outcome::Unverifiable(format!("listing at revision {resource_version}: {e}")),
    };
    let ours: Vec<&RouterConfig> = rcs
        .iter()
        .filter(|rc| {
            rc.owner_references()
                .iter()
                .any(|o| o.kind == "Gateway" && o.name == claim.gateway && o.controller == Some(true))
                && recorded_routes(rc).contains_key(&claim.uid)
        })
        .collect();
    if ours.is_empty() {
        return Outcome::Unverifiable(format!(
            "no RouterConfig generated from {}/{} records the route at revision {resource_version}",
            claim.gateway_namespace, claim.gateway
        ));
    }
    let leases: HashMap<(String, String), &Lease> = leases
        .iter()
        .map(|l| ((l.namespace().unwrap_or_default(), l.name_any()), l))
        .collect();
    let live = |replica: &RouterReplica| {
        let key = (
            replica.namespace().unwrap_or_default(),
            lockstep_crds::proxy_lease_name(&replica.name_any()),
        );
        let Some(spec) = leases.get(&key).and_then(|l| l.spec.as_ref()) else {
            return false;
        };
        match (spec.renew_time.as_ref(), spec.lease_duration_seconds) {
            (Some(renewed), Some(seconds)) => {
                renewed.0 + jiff::SignedDuration::from_secs(i64::from(seconds)) >= written
            }
            _ => true,
        }
    };
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    for rc in ours {
        let (rc_ns, rc_name, rc_uid) = (
            rc.namespace().unwrap_or_default(),
            rc.name_any(),
            rc.uid().to_owned(),
        );
        let members: Vec<&RouterReplica> = replicas
            .iter()
            .filter(|r| r.spec.fleet == rc.spec.fleet && r.spec.namespaces.contains(&rc_ns) && live(r))
            .collect();
        if members.is_empty() {
            problems.push(format!(
                "{rc_ns}/{rc_name}: no live replica of fleet {}",
                rc.spec.fleet
            ));
            continue;
        }
        for member in members {
            let served = member.status.as_ref().and_then(|s| {
                s.served.iter().find(|e| {
                    e.namespace == rc_ns && e.name == rc_name && e.uid == rc_uid && e.rejected.is_none()
                })
            });
            let Some(served) = served else {
                problems.push(format!("{}: does not serve {rc_ns}/{rc_name}", member.name_any()));
                continue;
            };
            let g = served.observed_generation;
            let recorded = if Some(g) == rc.metadata.generation {
                Some(recorded_routes(rc))
            } else {
                history.get(&(rc_uid.clone(), g)).cloned()
            };
            match recorded.map(|r| r.get(&claim.uid).copied()) {
                None => unknown.push(format!(
                    "{}: serves {rc_ns}/{rc_name} generation {g}, whose {ROUTES_ANNOTATION} was not seen",
                    member.name_any()
                )),
                Some(Some(route_generation)) if route_generation >= claim.generation => {}
                Some(found) => problems.push(format!(
                    "{}: serves {rc_ns}/{rc_name} generation {g}, which records the route at {found:?}",
                    member.name_any()
                )),
            }
        }
    }
    if !problems.is_empty() {
        Outcome::Violated(problems.join("; "))
    } else if !unknown.is_empty() {
        Outcome::Unverifiable(unknown.join("; "))
    } else {
        Outcome::Held
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = Client::try_default().await.context("a client from KUBECONFIG")?;
    let mut history = History::new();
    let mut rc_events = watcher(
        Api::<RouterConfig>::all(client.clone()),
        watcher::Config::default().labels(&format!("{GENERATED_FROM_LABEL}=Gateway")),
    )
    .applied_objects()
    .boxed();
    let mut routes = route_events(&client);
    let mut checked: HashSet<Claim> = HashSet::new();
    let mut summary = Summary::default();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            Some(event) = rc_events.next() => {
                if let Ok(rc) = event
                    && let Some(generation) = rc.metadata.generation
                {
                    history.insert((rc.uid().to_owned(), generation), recorded_routes(&rc));
                }
            }
            Some(event) = routes.next() => {
                let Ok(event) = event else { continue };
                for (claim, written) in event.claims {
                    if !checked.insert(claim.clone()) {
                        continue;
                    }
                    summary.checks += 1;
                    let what = format!(
                        "{} {}/{} generation {} on Gateway {}/{}",
                        claim.kind, claim.namespace, claim.name, claim.generation, claim.gateway_namespace, claim.gateway
                    );
                    match check(&client, &history, &claim, written, &event.resource_version).await {
                        Outcome::Held => summary.held += 1,
                        Outcome::Violated(why) => {
                            eprintln!("[barrier] VIOLATION {what}: {why}");
                            summary.violations.push(format!("{what}: {why}"));
                        }
                        Outcome::Unverifiable(why) => summary.unverifiable.push(format!("{what}: {why}")),
                    }
                }
            }
        }
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "barrier: {} checks of lockstep.dev/Ready=True, {} held, {} violations, {} unverifiable",
        summary.checks,
        summary.held,
        summary.violations.len(),
        summary.unverifiable.len()
    );
    Ok(())
}
