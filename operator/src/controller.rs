//! The Kubernetes edge of the operator: watches RouterConfigs, the fleets' Leases and TLS
//! Secrets, hands each RouterConfig to [`crate::barrier::decide`], and writes what it decides.
//! Only the leader writes, and it checks its leadership right before every write.
//!
//! Reactions: every RouterConfig event (status writes included: replicas report there, so
//! there is no generation predicate), every Lease event of a fleet (mapped to all RouterConfigs
//! of that fleet), every TLS Secret event (mapped to the RouterConfigs naming it), becoming
//! leader (everything), and time: each reconcile requeues at the next Lease expiry, stall
//! deadline or orphan grace end, so an expiry is noticed within milliseconds without any event.

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
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use lockstep_config::{Candidate, ObjectKey, Verdict, config_digest, resolve_fleet, tls_material_hash};
use lockstep_crds::{FLEET_LABEL, RouterConfig};
use tokio::sync::watch;

use crate::{Error, Result, barrier, leader::Leadership, metrics::Metrics};

/// Longest wait for the caches to list everything before a reconcile gives up (and retries):
/// judging from a partial cache would flap Ready (no Leases yet: NoReplicas).
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Requeue slack after a deadline, so the deadline has surely passed when the reconcile runs.
const DEADLINE_SLACK: Duration = Duration::from_millis(5);
/// Requeue at least this often anyway (a safety net, not a mechanism).
const MAX_REQUEUE: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    client: Client,
    routerconfigs: Store<RouterConfig>,
    leases: Store<Lease>,
    secrets: Store<Secret>,
    leader: Arc<Leadership>,
    /// True once every cache has listed.
    synced: watch::Receiver<bool>,
    settings: barrier::Settings,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// When each generation was first seen, for the rollout-time histogram.
    first_seen: Mutex<HashMap<ObjectKey, (i64, Instant, bool)>>,
    /// When this instance last wrote each object's status, to space out progress writes.
    last_written: Mutex<HashMap<ObjectKey, Instant>>,
}

/// Options of the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stall timeout and orphan grace.
    pub settings: barrier::Settings,
    /// This instance's identity (for Events).
    pub identity: String,
}

/// Runs the controller until `shutdown` resolves. `leader` says whether this instance may
/// write; `ready` is set once the caches are synced.
pub async fn run(
    client: Client,
    options: Options,
    leader: Arc<Leadership>,
    metrics: Arc<Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Readiness is read off the watch streams (InitDone) rather than Store::wait_until_ready:
    // that keeps a single waker, and the controller's applier already waits on its store, so a
    // second waiter could starve it.
    let (synced_tx, synced) = watch::channel(false);
    let gate = SyncGate::new(3, synced_tx, ready);
    let (store, rc_writer) = reflector::store::<RouterConfig>();
    let rc_stream = watcher(
        Api::<RouterConfig>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(0))
    .reflect(rc_writer)
    .touched_objects()
    .filter_map(log_watch_error("routerconfigs"));
    let (lease_store, lease_writer) = reflector::store::<Lease>();
    let lease_stream = watcher(
        Api::<Lease>::all(client.clone()),
        watcher::Config::default().labels(FLEET_LABEL),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(1))
    .reflect(lease_writer)
    .touched_objects()
    .filter_map(log_watch_error("leases"));
    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let secret_stream = watcher(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().fields("type=kubernetes.io/tls"),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(2))
    .reflect(secret_writer)
    .touched_objects()
    .filter_map(log_watch_error("secrets"));

    let controller = Controller::for_stream(rc_stream, store.clone());
    let ctx = Arc::new(Context {
        synced,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "lockstep-operator".into(),
                instance: Some(options.identity.clone()),
            },
        ),
        client,
        routerconfigs: store.clone(),
        leases: lease_store,
        secrets: secret_store,
        leader: leader.clone(),
        settings: options.settings,
        metrics,
        first_seen: Mutex::default(),
        last_written: Mutex::default(),
    });

    let (fleet_store, tls_store) = (store.clone(), store.clone());
    tokio::spawn(forget_deleted(store.clone(), ctx.clone()));

    controller
        .watches_stream(lease_stream, move |lease| {
            routerconfigs_of_fleet(&fleet_store, &lease)
        })
        .watches_stream(secret_stream, move |secret| {
            routerconfigs_naming_secret(&tls_store, &secret)
        })
        .reconcile_all_on(became_leader(leader.changes()))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile failed");
            }
        })
        .await;
}

/// Tracks which watch streams have listed once; when all have, flips `ready` (for /readyz)
/// and the `synced` channel reconciles wait on.
#[derive(Clone)]
struct SyncGate {
    parts: Arc<Vec<std::sync::atomic::AtomicBool>>,
    synced: Arc<watch::Sender<bool>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl SyncGate {
    fn new(n: usize, synced: watch::Sender<bool>, ready: Arc<std::sync::atomic::AtomicBool>) -> Self {
        Self {
            parts: Arc::new((0..n).map(|_| Default::default()).collect()),
            synced: Arc::new(synced),
            ready,
        }
    }

    /// An `inspect` callback for watch stream `i`.
    fn marker<K>(
        &self,
        i: usize,
    ) -> impl FnMut(&std::result::Result<watcher::Event<K>, watcher::Error>) + Send + use<K> {
        let gate = self.clone();
        move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                use std::sync::atomic::Ordering::SeqCst;
                gate.parts[i].store(true, SeqCst);
                if gate.parts.iter().all(|p| p.load(SeqCst)) && !gate.ready.swap(true, SeqCst) {
                    gate.synced.send_replace(true);
                    tracing::info!("caches synced");
                }
            }
        }
    }
}

/// Logs a watch error and drops it. The watchers back off on their own; an error reaching the
/// controller would pause every trigger behind kube's own backoff (up to 30 s), so an
/// apiserver restart would hold Ready back long after the apiserver was back.
fn log_watch_error<K: Send + 'static>(
    what: &'static str,
) -> impl FnMut(
    std::result::Result<K, watcher::Error>,
) -> std::future::Ready<Option<std::result::Result<K, watcher::Error>>>
+ Send
+ 'static {
    move |event| {
        if let Err(error) = &event {
            tracing::warn!(what, %error, "watch error; retrying");
        }
        std::future::ready(event.ok().map(Ok))
    }
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
    let Some(fleet) = lease.labels().get(FLEET_LABEL) else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|rc| &rc.spec.fleet == fleet)
        .map(|rc| ObjectRef::from_obj(rc.as_ref()))
        .collect()
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
        match secret.as_deref().and_then(secret_material_hash) {
            Some(hash) => {
                hashes.insert(tls.secret_name.clone(), hash);
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

/// The hash of a `kubernetes.io/tls` Secret's certificate and key, as replicas fold it into
/// their digest; `None` when either is missing.
pub(crate) fn secret_material_hash(secret: &Secret) -> Option<String> {
    let data = secret.data.as_ref()?;
    Some(tls_material_hash(
        &data.get("tls.crt")?.0,
        &data.get("tls.key")?.0,
    ))
}

/// Drops the gauges and bookkeeping of RouterConfigs that no longer exist, so dashboards show
/// no ghosts and a long-lived operator does not grow with every object ever seen.
async fn forget_deleted(store: Store<RouterConfig>, ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let live: Vec<ObjectKey> = store.state().iter().map(|rc| ObjectKey::of(rc)).collect();
        ctx.metrics.retain_routerconfigs(&live);
        let live: std::collections::HashSet<ObjectKey> = live.into_iter().collect();
        ctx.first_seen
            .lock()
            .expect("first_seen lock")
            .retain(|key, _| live.contains(key));
        ctx.last_written
            .lock()
            .expect("last_written lock")
            .retain(|key, _| live.contains(key));
    }
}

/// Waits until every cache has listed once.
async fn caches_synced(ctx: &Context) -> Result<()> {
    let mut synced = ctx.synced.clone();
    match tokio::time::timeout(CACHE_SYNC_TIMEOUT, synced.wait_for(|s| *s)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(Error::CacheNotSynced(CACHE_SYNC_TIMEOUT)),
    }
}

/// The verdict on `rc` among all RouterConfigs of its fleet (oldest wins a conflict). The
/// object itself replaces its cached copy, which may be older.
fn verdict_for(rc: &RouterConfig, store: &Store<RouterConfig>) -> Verdict {
    let key = ObjectKey::of(rc);
    let mut fleet: Vec<(ObjectKey, Arc<RouterConfig>)> = store
        .state()
        .into_iter()
        .filter(|o| o.spec.fleet == rc.spec.fleet && ObjectKey::of(o) != key)
        .map(|o| (ObjectKey::of(&o), o))
        .collect();
    fleet.push((key.clone(), Arc::new(rc.clone())));
    let resolution = resolve_fleet(
        fleet
            .iter()
            .map(|(key, o)| Candidate {
                key,
                created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
                spec: &o.spec,
            })
            .collect(),
    );
    resolution
        .verdicts
        .get(&key)
        .cloned()
        .expect("resolve_fleet judges every candidate")
}

async fn reconcile(rc: Arc<RouterConfig>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    note_seen(&ctx, &ObjectKey::of(&rc), rc.metadata.generation.unwrap_or(0));
    if !ctx.leader.is_leader() {
        // Becoming leader triggers a reconcile of everything.
        return Ok(Action::await_change());
    }
    caches_synced(&ctx).await?;
    let key = ObjectKey::of(&rc);
    let fleet = rc.spec.fleet.clone();

    let verdict = verdict_for(&rc, &ctx.routerconfigs);
    let (tls_hashes, tls_problem) = tls_view(&rc, &ctx.secrets);
    let expected_digest = config_digest(&rc.spec, &tls_hashes);
    let leases: Vec<Lease> = ctx
        .leases
        .state()
        .iter()
        .filter(|l| l.labels().get(FLEET_LABEL) == Some(&fleet))
        .map(|l| Lease::clone(l))
        .collect();
    let now = Timestamp::now();
    let out = barrier::decide(barrier::Input {
        rc: &rc,
        leases: &leases,
        verdict: &verdict,
        tls_problem: tls_problem.as_deref(),
        expected_digest: &expected_digest,
        now,
        settings: ctx.settings,
    });

    let api: Api<RouterConfig> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let deferred = if out.progress_only {
        let last = ctx
            .last_written
            .lock()
            .expect("last_written lock")
            .get(&key)
            .copied();
        barrier::progress_wait(last, Instant::now(), ctx.settings.progress_interval)
    } else {
        None
    };
    if out.changed && deferred.is_none() {
        if !ctx.leader.is_leader() {
            return Ok(Action::await_change());
        }
        let params = PatchParams::apply(lockstep_crds::OPERATOR_FIELD_MANAGER).force();
        match api
            .patch_status(&key.name, &params, &Patch::Apply(out.status.apply_patch()))
            .await
        {
            Ok(_) => {
                ctx.last_written
                    .lock()
                    .expect("last_written lock")
                    .insert(key.clone(), Instant::now());
                ctx.metrics.status_writes.inc();
                tracing::debug!(
                    routerconfig = %key,
                    generation = out.generation,
                    synced = %out.status.synced,
                    ready = out.ready,
                    "status written"
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) => return Err(Error::Kube(e)),
        }
        publish(&ctx, &rc, &key, out.generation, &out.transitions);
    }
    if !out.prune.is_empty() && ctx.leader.is_leader() {
        prune(&ctx, &api, &key, &out.prune).await?;
    }
    record_metrics(&ctx, &key, &out);
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());

    let wait = out
        .recheck_at
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default() + DEADLINE_SLACK)
        .unwrap_or(MAX_REQUEUE)
        .min(MAX_REQUEUE)
        .min(deferred.map_or(MAX_REQUEUE, |d| d + DEADLINE_SLACK));
    Ok(Action::requeue(wait))
}

/// Removes entries of replicas that left the fleet with one JSON patch (an Update: no apply
/// conflict with the replicas' field managers) that tests each name at its index first.
async fn prune(
    ctx: &Context,
    api: &Api<RouterConfig>,
    key: &ObjectKey,
    prunes: &[barrier::Prune],
) -> Result<()> {
    let patch: json_patch::Patch =
        serde_json::from_value(barrier::prune_patch(prunes)).map_err(Error::Serialize)?;
    let names: Vec<&str> = prunes.iter().map(|p| p.name.as_str()).collect();
    match api
        .patch_status(&key.name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => {
            ctx.metrics.prunes.inc();
            tracing::info!(routerconfig = %key, replicas = ?names, "pruned entries of replicas without a live Lease");
            Ok(())
        }
        // 422: a test failed because the list changed meanwhile; that change is an event, and
        // the next reconcile judges the new list.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Logs each transition and records it as an Event. Events are best effort: they are sent
/// beside the reconcile, in order, and never hold it (and with it the object's next
/// reconcile) on a slow apiserver.
fn publish(
    ctx: &Context,
    rc: &RouterConfig,
    key: &ObjectKey,
    generation: i64,
    transitions: &[barrier::Transition],
) {
    if transitions.is_empty() {
        return;
    }
    let events: Vec<Event> = transitions
        .iter()
        .map(|transition| {
            tracing::info!(routerconfig = %key, generation, reason = transition.reason, note = %transition.note, "condition transition");
            Event {
                type_: if transition.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: transition.reason.to_owned(),
                note: Some(transition.note.chars().take(1000).collect()),
                // kube's Recorder folds events with the same action and reason into one series
                // that keeps the first note; one action per generation keeps each rollout's own.
                action: format!("Generation{generation}"),
                secondary: None,
            }
        })
        .collect();
    let (recorder, reference) = (ctx.recorder.clone(), rc.object_ref(&()));
    tokio::spawn(async move {
        for event in events {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::debug!(%error, "could not publish event");
            }
        }
    });
}

fn record_metrics(ctx: &Context, key: &ObjectKey, out: &barrier::Outcome) {
    let generation = out.generation;
    ctx.metrics.set_routerconfig(
        key,
        out.ready,
        out.status.synced_replicas,
        out.status.replicas,
        generation,
    );
    let mut first_seen = ctx.first_seen.lock().expect("first_seen lock");
    let Some(entry) = first_seen.get_mut(key).filter(|e| e.0 == generation) else {
        return;
    };
    if out.ready && !entry.2 {
        entry.2 = true;
        let seconds = entry.1.elapsed().as_secs_f64();
        ctx.metrics.rollout_duration.observe(seconds);
        tracing::info!(routerconfig = %key, generation, replicas = out.status.replicas, seconds, "rollout complete");
    }
}

/// Remembers when a generation was first seen (by any instance, leader or not, so a new
/// leader's rollout times still start at the edit when it watched it happen).
fn note_seen(ctx: &Context, key: &ObjectKey, generation: i64) {
    let mut first_seen = ctx.first_seen.lock().expect("first_seen lock");
    let entry = first_seen
        .entry(key.clone())
        .or_insert((generation, Instant::now(), false));
    if entry.0 != generation {
        *entry = (generation, Instant::now(), false);
    }
}
