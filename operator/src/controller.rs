//! The Kubernetes edge of the operator: watches RouterConfigs, the fleets' Leases and TLS
//! Secrets, hands each RouterConfig to [`crate::barrier::judge`], and writes what it decides.
//! Only the leader writes, and it checks its leadership right before every write.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, ObjectRef, Store, reflector},
        watcher,
    },
};
use lockstep_config::{Candidate, ObjectKey, Verdict, config_digest, resolve_fleet, tls_material_hash};
use lockstep_crds::{FLEET_LABEL, RouterConfig, condition};
use serde_json::json;
use tokio::sync::watch;

use crate::{
    Error, Result,
    barrier::{self, Member},
    metrics::Metrics,
};

/// What every reconcile shares.
pub struct Context {
    client: Client,
    routerconfigs: Store<RouterConfig>,
    leases: Store<Lease>,
    secrets: Store<Secret>,
    leader: watch::Receiver<bool>,
    stall_timeout: Duration,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// When each generation was first seen, for the rollout-time histogram.
    first_seen: Mutex<HashMap<ObjectKey, (i64, Instant, bool)>>,
}

/// Options of the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a rollout may lag before it is Stalled.
    pub stall_timeout: Duration,
    /// This instance's identity (for Events).
    pub identity: String,
}

/// Runs the controller until `shutdown` resolves. `leader` says whether this instance holds
/// the leader Lease; `ready` is set once the caches are synced.
pub async fn run(
    client: Client,
    options: Options,
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let routerconfigs = Api::<RouterConfig>::all(client.clone());
    let (lease_store, lease_writer) = reflector::store::<Lease>();
    let lease_stream = reflector(
        lease_writer,
        watcher(Api::<Lease>::all(client.clone()), watcher::Config::default().labels(FLEET_LABEL)).default_backoff(),
    )
    .touched_objects();
    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let secret_stream = reflector(
        secret_writer,
        watcher(Api::<Secret>::all(client.clone()), watcher::Config::default().fields("type=kubernetes.io/tls"))
            .default_backoff(),
    )
    .touched_objects();

    let controller = Controller::new(routerconfigs, watcher::Config::default());
    let store = controller.store();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter { controller: "lockstep-operator".into(), instance: Some(options.identity.clone()) },
        ),
        client,
        routerconfigs: store.clone(),
        leases: lease_store.clone(),
        secrets: secret_store.clone(),
        leader: leader.clone(),
        stall_timeout: options.stall_timeout,
        metrics,
        first_seen: Mutex::default(),
    });

    let (fleet_store, tls_store) = (store.clone(), store.clone());
    let readiness = {
        let (store, leases, secrets) = (store.clone(), lease_store, secret_store);
        async move {
            let _ = store.wait_until_ready().await;
            let _ = leases.wait_until_ready().await;
            let _ = secrets.wait_until_ready().await;
            ready.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!("caches synced");
        }
    };
    tokio::spawn(readiness);

    controller
        .watches_stream(lease_stream, move |lease| routerconfigs_of_fleet(&fleet_store, &lease))
        .watches_stream(secret_stream, move |secret| routerconfigs_naming_secret(&tls_store, &secret))
        .reconcile_all_on(became_leader(leader))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile failed");
            }
        })
        .await;
}

/// Yields whenever this instance becomes the leader, so it judges everything afresh.
fn became_leader(leader: watch::Receiver<bool>) -> impl Stream<Item = ()> + Send {
    futures::stream::unfold(leader, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow_and_update() {
                return Some(((), rx));
            }
        }
    })
}

fn routerconfigs_of_fleet(store: &Store<RouterConfig>, lease: &Lease) -> Vec<ObjectRef<RouterConfig>> {
    let Some(fleet) = lease.labels().get(FLEET_LABEL) else { return Vec::new() };
    store.state().iter().filter(|rc| &rc.spec.fleet == fleet).map(|rc| ObjectRef::from_obj(rc.as_ref())).collect()
}

fn routerconfigs_naming_secret(store: &Store<RouterConfig>, secret: &Secret) -> Vec<ObjectRef<RouterConfig>> {
    let (ns, name) = (secret.namespace(), secret.name_any());
    store
        .state()
        .iter()
        .filter(|rc| rc.namespace() == ns && lockstep_config::tls_secret_names(&rc.spec).contains(&name))
        .map(|rc| ObjectRef::from_obj(rc.as_ref()))
        .collect()
}

fn error_policy(rc: Arc<RouterConfig>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(routerconfig = %ObjectKey::of(&rc), %error, "reconcile failed; retrying");
    ctx.metrics.reconcile_errors.inc();
    Action::requeue(Duration::from_millis(500))
}

/// TLS digest inputs and problems of a RouterConfig, from the Secrets it names.
fn tls_view(rc: &RouterConfig, secrets: &Store<Secret>) -> (BTreeMap<String, String>, Option<String>) {
    let ns = ObjectKey::of(rc).namespace;
    let mut hashes = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, rule) in rc.spec.rules.iter().enumerate() {
        let Some(tls) = &rule.tls else { continue };
        let secret = secrets.get(&ObjectRef::new(&tls.secret_name).within(&ns));
        let data = secret.as_ref().and_then(|s| s.data.as_ref());
        match data.and_then(|d| Some((d.get("tls.crt")?, d.get("tls.key")?))) {
            Some((crt, key)) => {
                hashes.insert(tls.secret_name.clone(), tls_material_hash(&crt.0, &key.0));
            }
            None if secret.is_some() => problems.push(format!(
                "spec.rules[{i}].tls.secretName: secret {ns}/{} lacks tls.crt or tls.key",
                tls.secret_name
            )),
            None => problems.push(format!(
                "spec.rules[{i}].tls.secretName: kubernetes.io/tls secret {ns}/{} not found",
                tls.secret_name
            )),
        }
    }
    (hashes, (!problems.is_empty()).then(|| problems.join("; ")))
}

fn is_leader(ctx: &Context) -> bool {
    *ctx.leader.borrow()
}

async fn reconcile(rc: Arc<RouterConfig>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    if !is_leader(&ctx) {
        // Becoming leader triggers a reconcile of everything.
        return Ok(Action::await_change());
    }
    let key = ObjectKey::of(&rc);
    let generation = rc.metadata.generation.unwrap_or(1);
    let fleet = rc.spec.fleet.clone();

    let fleet_objects: Vec<Arc<RouterConfig>> =
        ctx.routerconfigs.state().into_iter().filter(|o| o.spec.fleet == fleet).collect();
    let keys: Vec<ObjectKey> = fleet_objects.iter().map(|o| ObjectKey::of(o)).collect();
    let resolution = resolve_fleet(
        fleet_objects
            .iter()
            .zip(&keys)
            .map(|(o, key)| Candidate { key, created: o.metadata.creation_timestamp.as_ref().map(|t| t.0), spec: &o.spec })
            .collect(),
    );
    let verdict = resolution.verdicts.get(&key).cloned().unwrap_or(Verdict::Invalid("not judged".into()));
    let (tls_hashes, tls_problem) = tls_view(&rc, &ctx.secrets);
    let expected_digest = config_digest(&rc.spec, &tls_hashes);
    let members: Vec<Member> = ctx
        .leases
        .state()
        .iter()
        .filter(|l| l.labels().get(FLEET_LABEL) == Some(&fleet))
        .filter_map(|l| Member::from_lease(l))
        .collect();
    let now = Timestamp::now();
    let out = barrier::judge(&barrier::Input {
        generation,
        verdict: &verdict,
        tls_problem: tls_problem.as_deref(),
        expected_digest: &expected_digest,
        members: &members,
        status: rc.status.as_ref(),
        now,
        stall_timeout: ctx.stall_timeout,
    });

    let api: Api<RouterConfig> = Api::namespaced(ctx.client.clone(), &key.namespace);
    if out.changed {
        if !is_leader(&ctx) {
            return Ok(Action::await_change());
        }
        let patch = json!({
            "apiVersion": lockstep_crds::API_VERSION,
            "kind": lockstep_crds::KIND,
            "status": {
                "observedGeneration": out.observed_generation,
                "conditions": out.conditions,
                "syncedReplicas": out.synced_replicas,
                "replicas": out.replicas,
                "synced": out.synced(),
            }
        });
        let params = PatchParams::apply(lockstep_crds::OPERATOR_FIELD_MANAGER).force();
        match api.patch_status(&key.name, &params, &Patch::Apply(&patch)).await {
            Ok(_) => {
                ctx.metrics.status_writes.inc();
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(Error::Kube(e)),
        }
        publish_transitions(&ctx, &rc, &out).await;
    }
    if !out.prune.is_empty() && is_leader(&ctx) {
        prune(&api, &key.name, &rc, &out.prune).await?;
    }
    record_metrics(&ctx, &key, generation, &out);

    let wait = out
        .recheck_at
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_millis(50))
        .unwrap_or(Duration::from_secs(300))
        .min(Duration::from_secs(300));
    Ok(Action::requeue(wait))
}

/// Removes entries of expired replicas with a JSON patch that tests each entry's name at its
/// index first, so a concurrent change to the list makes the patch fail instead of removing
/// the wrong entry. Highest index first keeps the lower indices valid.
async fn prune(api: &Api<RouterConfig>, name: &str, rc: &RouterConfig, names: &[String]) -> Result<()> {
    let Some(status) = &rc.status else { return Ok(()) };
    let mut ops = Vec::new();
    for (i, entry) in status.replica_status.iter().enumerate().rev() {
        if names.contains(&entry.name) {
            ops.push(json!({"op": "test", "path": format!("/status/replicaStatus/{i}/name"), "value": entry.name}));
            ops.push(json!({"op": "remove", "path": format!("/status/replicaStatus/{i}")}));
        }
    }
    let patch: json_patch::Patch = serde_json::from_value(json!(ops)).map_err(Error::Serialize)?;
    match api.patch_status(name, &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => {
            tracing::info!(routerconfig = name, replicas = ?names, "pruned entries of expired replicas");
            Ok(())
        }
        // 422: the test failed because the list changed; the next reconcile sees the new list.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

async fn publish_transitions(ctx: &Context, rc: &RouterConfig, out: &barrier::Output) {
    let old = rc.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let reference = rc.object_ref(&());
    for new in &out.conditions {
        let before = old.iter().find(|c| c.type_ == new.type_);
        if before.is_some_and(|b| b.status == new.status && b.reason == new.reason) {
            continue;
        }
        let warn = matches!(
            (new.type_.as_str(), new.status.as_str()),
            (condition::ACCEPTED, "False") | (condition::STALLED, "True")
        );
        let interesting = warn || new.type_ == condition::READY;
        if !interesting {
            continue;
        }
        let event = Event {
            type_: if warn { EventType::Warning } else { EventType::Normal },
            reason: new.reason.clone(),
            note: Some(format!("{}={}: {}", new.type_, new.status, new.message).chars().take(1000).collect()),
            action: format!("Set{}", new.type_),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::debug!(%error, "could not publish event");
        }
    }
}

fn record_metrics(ctx: &Context, key: &ObjectKey, generation: i64, out: &barrier::Output) {
    ctx.metrics.set_routerconfig(key, out.ready, out.synced_replicas, out.replicas, generation);
    let mut first_seen = ctx.first_seen.lock().expect("first_seen lock");
    let entry = first_seen.entry(key.clone()).or_insert((generation, Instant::now(), false));
    if entry.0 != generation {
        *entry = (generation, Instant::now(), false);
    }
    if out.ready && !entry.2 {
        entry.2 = true;
        ctx.metrics.rollout_duration.observe(entry.1.elapsed().as_secs_f64());
        tracing::info!(routerconfig = %key, generation, replicas = out.replicas, seconds = entry.1.elapsed().as_secs_f64(), "rollout complete");
    }
}
