//! The Kubernetes edge of the operator: watches RouterConfigs, the replicas' RouterReplicas,
//! the fleets' Leases and TLS Secrets, hands each RouterConfig to [`lockstep_config::barrier::decide`],
//! and writes what it decides. It is the only writer of RouterConfig status; only the leader
//! writes, and it checks its leadership right before every write.
//!
//! Reactions: every RouterConfig event (and the other RouterConfigs of its fleet sharing a
//! host with it, whose verdict it can change: `lockstep_config::rejudge`), every
//! RouterReplica event (mapped to the RouterConfigs of its fleet in the namespaces it
//! serves), every Lease event of a fleet (mapped to all RouterConfigs of that fleet), every
//! TLS Secret event (mapped to the RouterConfigs naming it), becoming leader (everything),
//! and time: each reconcile requeues at the next Lease expiry or stall deadline, so an expiry
//! is noticed within milliseconds without any event.
//!
//! Leases are judged on this process's monotonic clock from when each renewal was observed
//! ([`LeaseClock`]), never from the proxy's `renewTime`. Before it writes `Ready=True` the
//! operator re-lists the fleet's Leases with a quorum read: a Lease cache that lags behind the
//! RouterConfig cache could otherwise miss a replica that joined before the generation was
//! written, and that replica may be ready while serving the previous one.
//!
//! (Over 600 lines: the watches, their mapping to RouterConfigs and the reconcile share one
//! Context; splitting the watch wiring from the reconcile is left to the house issue.)

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use lockstep_config::{
    Candidate, ObjectKey, Verdict,
    barrier::{self, Member, TlsProblem, left_out_by_spec, members_serving},
    config_digest,
    garbage::ReplicaGarbage,
    lease::{LeaseClock, LeaseView, Mono},
    rejudge::HostIndex,
    resolve_fleet,
};
use lockstep_crds::{FLEET_LABEL, ReplicaId, RouterConfig, RouterReplica};
use tokio::sync::watch;

use crate::{Error, Result, leader::Leadership, metrics::Metrics};

/// Longest wait for the caches to list everything before a reconcile gives up (and retries):
/// judging from a partial cache would flap Ready (no Leases yet: NoReplicas).
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Requeue slack after a deadline, so the deadline has surely passed when the reconcile runs.
const DEADLINE_SLACK: Duration = Duration::from_millis(5);
/// Requeue at least this often anyway (a safety net, not a mechanism).
const MAX_REQUEUE: Duration = Duration::from_secs(300);

/// When a generation of a RouterConfig was first seen, for the rollout-time histogram.
#[derive(Debug, Clone, Copy)]
struct Rollout {
    generation: i64,
    first_seen: Instant,
    ready_recorded: bool,
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    routerconfigs: Store<RouterConfig>,
    replicas: Store<RouterReplica>,
    secrets: Store<Secret>,
    /// When each proxy Lease was last seen renewed, on this process's clock.
    leases: Arc<Mutex<LeaseClock>>,
    /// The origin of [`Mono`] times.
    origin: Instant,
    leader: Arc<Leadership>,
    /// True once every cache has listed.
    synced: watch::Receiver<bool>,
    settings: barrier::Settings,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    rollouts: Mutex<HashMap<Incarnation, Rollout>>,
    /// When the RouterReplica watch last delivered an event, for the ready-path trace.
    last_report_seen: Arc<Mutex<Option<Instant>>>,
    /// When this instance last wrote each object's status, to space out progress writes.
    last_written: Mutex<HashMap<Incarnation, Instant>>,
}

/// One object of a name: namespace/name and metadata.uid. What the operator remembers of a
/// RouterConfig is keyed on it, so a RouterConfig deleted and re-created under the same name
/// starts from nothing (its generation restarts at 1 and would otherwise match the old
/// object's rollout clock or last write).
type Incarnation = (ObjectKey, String);

fn incarnation(rc: &RouterConfig) -> Incarnation {
    (ObjectKey::of(rc), rc.uid().to_owned())
}

impl Context {
    fn mono(&self) -> Mono {
        self.origin.elapsed()
    }
}

/// Options of the controller.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stall timeout and progress interval.
    pub settings: barrier::Settings,
    /// This instance's identity (for Events).
    pub identity: String,
    /// How long a RouterReplica is kept after its Lease ran out ([`lockstep_config::garbage`]).
    pub replica_gc_after: Duration,
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
    let gate = SyncGate::new(4, synced_tx, ready);
    let origin = Instant::now();
    let clock = Arc::new(Mutex::new(LeaseClock::default()));
    let (store, rc_writer) = reflector::store::<RouterConfig>();
    let (rejudge, rejudged) = futures::channel::mpsc::unbounded();
    let rc_stream = watcher(
        Api::<RouterConfig>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(0))
    .reflect(rc_writer)
    .inspect(sharing_hosts(store.clone(), rejudge))
    .touched_objects()
    .filter_map(log_watch_error("routerconfigs"));
    let lease_stream = watcher(
        Api::<Lease>::all(client.clone()),
        watcher::Config::default().labels(FLEET_LABEL),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(1))
    .inspect(observe_leases(clock.clone(), origin))
    .touched_objects()
    .filter_map(log_watch_error("leases"));
    let (replica_store, replica_writer) = reflector::store::<RouterReplica>();
    let last_report_seen = Arc::new(Mutex::new(None));
    let replica_stream = watcher(
        Api::<RouterReplica>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(2))
    .inspect({
        let seen = last_report_seen.clone();
        move |_| *seen.lock().expect("last report lock") = Some(Instant::now())
    })
    .reflect(replica_writer)
    .touched_objects()
    .filter_map(log_watch_error("routerreplicas"));
    let (secret_store, secret_writer) = reflector::store::<Secret>();
    let secret_stream = watcher(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().fields("type=kubernetes.io/tls"),
    )
    .backoff(lockstep_apiclient::watch_backoff())
    .inspect(gate.marker(3))
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
        replicas: replica_store,
        secrets: secret_store,
        leases: clock,
        origin,
        leader: leader.clone(),
        settings: options.settings,
        metrics,
        rollouts: Mutex::default(),
        last_report_seen: last_report_seen.clone(),
        last_written: Mutex::default(),
    });

    let (fleet_store, replica_rcs, tls_store) = (store.clone(), store.clone(), store.clone());
    let suspicious = Arc::new(Mutex::new(HashSet::new()));
    tokio::spawn(forget_deleted(store.clone(), ctx.clone()));
    tokio::spawn(collect_garbage(ctx.clone(), options.replica_gc_after));

    controller
        .watches_stream(lease_stream, move |lease| {
            routerconfigs_of_fleet(&fleet_store, &lease)
        })
        .watches_stream(replica_stream, move |rrep| {
            warn_once_about(&suspicious, &replica_rcs, &rrep);
            routerconfigs_served_by(&replica_rcs, &rrep)
        })
        .watches_stream(secret_stream, move |secret| {
            routerconfigs_naming_secret(&tls_store, &secret)
        })
        .reconcile_on(rejudged)
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

/// Sends, for each RouterConfig event, the other RouterConfigs whose verdict it can change
/// ([`lockstep_config::rejudge`]): an older object taking or freeing a match changes the
/// newer one's verdict and what the replicas serve of it, though nothing about the newer one
/// changed.
fn sharing_hosts(
    store: Store<RouterConfig>,
    rejudge: futures::channel::mpsc::UnboundedSender<ObjectRef<RouterConfig>>,
) -> impl FnMut(&std::result::Result<watcher::Event<RouterConfig>, watcher::Error>) + Send + 'static {
    let mut index = HostIndex::default();
    move |event| {
        let (rc, deleted) = match event {
            Ok(watcher::Event::Init) => return index.clear(),
            Ok(watcher::Event::InitApply(rc)) => return index.listed(rc),
            Ok(watcher::Event::Apply(rc)) => (rc, false),
            Ok(watcher::Event::Delete(rc)) => (rc, true),
            _ => return,
        };
        let state = store.state();
        for key in index.changed(rc, deleted, state.iter().map(Arc::as_ref)) {
            tracing::debug!(routerconfig = %key, because = %ObjectKey::of(rc), "re-judging: shares a host");
            // Closed only when the controller stopped.
            let _ = rejudge.unbounded_send(ObjectRef::new(&key.name).within(&key.namespace));
        }
    }
}

fn routerconfigs_served_by(
    store: &Store<RouterConfig>,
    rrep: &RouterReplica,
) -> Vec<ObjectRef<RouterConfig>> {
    store
        .state()
        .iter()
        .filter(|rc| {
            rc.spec.fleet == rrep.spec.fleet && rrep.spec.serves_namespace(&ObjectKey::of(rc).namespace)
        })
        .map(|rc| ObjectRef::from_obj(rc.as_ref()))
        .collect()
}

/// Keeps the Lease clock current from the Lease watch: every new version is a renewal seen
/// now; a relist forgets Leases deleted while the watch was down.
fn observe_leases(
    clock: Arc<Mutex<LeaseClock>>,
    origin: Instant,
) -> impl FnMut(&std::result::Result<watcher::Event<Lease>, watcher::Error>) + Send + 'static {
    let mut relisted: Option<BTreeSet<ReplicaId>> = None;
    move |event| {
        let Ok(event) = event else { return };
        let now = origin.elapsed();
        let mut clock = clock.lock().expect("lease clock lock");
        match event {
            watcher::Event::Init => relisted = Some(BTreeSet::new()),
            watcher::Event::InitApply(lease) | watcher::Event::Apply(lease) => {
                if let Some(view) = LeaseView::of(lease) {
                    if let Some(seen) = relisted.as_mut() {
                        seen.insert(view.id.clone());
                    }
                    clock.observe(view, now);
                }
            }
            watcher::Event::Delete(lease) => {
                if let Some(view) = LeaseView::of(lease) {
                    clock.deleted(&view);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    clock.retain(|id| seen.contains(id));
                }
            }
        }
    }
}

/// Logs, once per replica and problem, a RouterReplica that cannot count: one whose label
/// names another fleet than its spec, or that reports RouterConfigs that do not exist. Such a
/// report is judged as a laggard or ignored, never counted as synced.
fn warn_once_about(warned: &Mutex<HashSet<String>>, store: &Store<RouterConfig>, rrep: &RouterReplica) {
    let id = replica_id(rrep);
    let mut problems = Vec::new();
    if let Some(label) = rrep.labels().get(FLEET_LABEL)
        && label != &rrep.spec.fleet
    {
        problems.push(format!(
            "its label {FLEET_LABEL}={label} differs from spec.fleet {}",
            rrep.spec.fleet
        ));
    }
    let unknown: Vec<String> = rrep
        .status
        .iter()
        .flat_map(|s| &s.served)
        .filter(|e| store.get(&ObjectRef::new(&e.name).within(&e.namespace)).is_none())
        .map(|e| format!("{}/{}", e.namespace, e.name))
        .collect();
    if !unknown.is_empty() {
        problems.push(format!(
            "it reports RouterConfigs that do not exist: {}",
            unknown.join(", ")
        ));
    }
    for problem in problems {
        if warned
            .lock()
            .expect("warned lock")
            .insert(format!("{id}: {problem}"))
        {
            tracing::warn!(replica = %id, %problem, "ignoring part of a RouterReplica");
        }
    }
}

fn replica_id(rrep: &RouterReplica) -> ReplicaId {
    ReplicaId::new(rrep.namespace().unwrap_or_default(), rrep.name_any())
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

/// TLS digest inputs and problems of a RouterConfig, from the Secrets it names. A Secret that
/// does not exist yet is a wait (cert-manager and GitOps often create it after the
/// RouterConfig); one that exists but cannot be served (the replicas' own test,
/// [`lockstep_config::tls_material::servable`]) is not accepted.
fn tls_view(rc: &RouterConfig, secrets: &Store<Secret>) -> (BTreeMap<String, String>, Option<TlsProblem>) {
    let ns = ObjectKey::of(rc).namespace;
    let now = jiff::Timestamp::now().as_second();
    let mut hashes = BTreeMap::new();
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    for (i, rule) in rc.spec.rules.iter().enumerate() {
        let Some(tls) = &rule.tls else { continue };
        let secret = secrets.get(&ObjectRef::new(&tls.secret_name).within(&ns));
        // The replicas' own test of the material: what they would reject is not accepted.
        let host = rule.host.to_ascii_lowercase();
        let servable = secret.as_deref().map(|secret| {
            let name = format!("{ns}/{}", tls.secret_name);
            lockstep_config::tls_material::servable(&name, secret, &host, now)
                .map(|_| lockstep_config::digest::tls_secret_hash(secret).unwrap_or_default())
        });
        match servable {
            Some(Ok(hash)) => {
                hashes.insert(tls.secret_name.clone(), hash);
            }
            Some(Err(error)) => problems.push(format!("spec.rules[{i}].tls.secretName: {error}")),
            None => missing.push(format!(
                "spec.rules[{i}].tls.secretName: kubernetes.io/tls secret {ns}/{} not found",
                tls.secret_name
            )),
        }
    }
    let problem = if !problems.is_empty() {
        Some(TlsProblem::Unusable(problems.join("; ")))
    } else if !missing.is_empty() {
        Some(TlsProblem::Missing(missing.join("; ")))
    } else {
        None
    };
    (hashes, problem)
}

/// Drops the gauges and bookkeeping of RouterConfigs that no longer exist, so dashboards show
/// no ghosts and a long-lived operator does not grow with every object ever seen.
async fn forget_deleted(store: Store<RouterConfig>, ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let state = store.state();
        let live: Vec<ObjectKey> = state.iter().map(|rc| ObjectKey::of(rc)).collect();
        ctx.metrics.retain_routerconfigs(&live);
        let live: HashSet<Incarnation> = state.iter().map(|rc| incarnation(rc)).collect();
        ctx.rollouts
            .lock()
            .expect("rollouts lock")
            .retain(|key, _| live.contains(key));
        ctx.last_written
            .lock()
            .expect("last_written lock")
            .retain(|key, _| live.contains(key));
    }
}

/// Deletes the RouterReplicas of replicas whose Lease has been dead for `after`
/// ([`lockstep_config::garbage`]), so `kubectl get rrep` does not show a SIGKILLed replica as
/// ready forever. Only the leader deletes; each delete carries the resourceVersion judged as a
/// precondition, so a replica that wrote its RouterReplica again meanwhile keeps it.
async fn collect_garbage(ctx: Arc<Context>, after: Duration) {
    let mut garbage = ReplicaGarbage::default();
    let mut tick =
        tokio::time::interval((after / 4).clamp(Duration::from_millis(250), Duration::from_secs(15)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !ctx.leader.is_leader() || !*ctx.synced.borrow() {
            continue;
        }
        let replicas: HashMap<ReplicaId, Arc<RouterReplica>> = ctx
            .replicas
            .state()
            .into_iter()
            .map(|r| (replica_id(&r), r))
            .collect();
        let gone = {
            let clock = ctx.leases.lock().expect("lease clock lock");
            garbage.sweep(replicas.keys(), |id| clock.counts_until(id), ctx.mono(), after)
        };
        for id in gone {
            let rrep = &replicas[&id];
            let api: Api<RouterReplica> = Api::namespaced(ctx.client.clone(), &id.namespace);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: rrep.resource_version(),
                    uid: rrep.uid(),
                }),
                ..DeleteParams::default()
            };
            match api.delete(&id.name, &params).await {
                Ok(_) => {
                    ctx.metrics.replicas_collected.inc();
                    tracing::info!(replica = %id, after = ?after, "deleted the RouterReplica of a replica whose Lease is gone");
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    tracing::debug!(replica = %id, message = %s.message, "RouterReplica kept: gone or written again");
                }
                Err(error) => tracing::warn!(replica = %id, %error, "could not delete a RouterReplica"),
            }
        }
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

/// The fleet policy ([`lockstep_config::fleet`]) applied to `rc` among the RouterConfigs of
/// its fleet, with the TLS problems of each: the same call the replicas' plan makes, so the
/// verdict the operator writes is the one every replica serves by.
struct SpecJudgement {
    verdict: Verdict,
    tls_problem: Option<TlsProblem>,
    tls_hashes: BTreeMap<String, String>,
    last_accepted: Option<lockstep_crds::AcceptedGeneration>,
}

/// Judges `rc` (which replaces its cached copy, which may be older).
fn judge_spec(rc: &RouterConfig, ctx: &Context) -> SpecJudgement {
    let key = ObjectKey::of(rc);
    let mut fleet: Vec<Arc<RouterConfig>> = ctx
        .routerconfigs
        .state()
        .into_iter()
        .filter(|o| o.spec.fleet == rc.spec.fleet && ObjectKey::of(o) != key)
        .collect();
    fleet.push(Arc::new(rc.clone()));
    let views: Vec<_> = fleet.iter().map(|o| tls_view(o, &ctx.secrets)).collect();
    let candidates: Vec<Candidate<'_>> = fleet
        .iter()
        .zip(&views)
        .map(|(o, (_, problem))| Candidate::of(o).with_tls_problem(problem.as_ref().map(TlsProblem::message)))
        .collect();
    let ours = candidates.last().expect("rc itself").clone();
    let resolution = resolve_fleet(candidates);
    let verdict = resolution
        .verdicts
        .get(&key)
        .cloned()
        .expect("resolve_fleet judges every candidate");
    let last_accepted = lockstep_config::last_accepted(&ours, &verdict);
    let (tls_hashes, tls_problem) = views.into_iter().last().expect("rc itself");
    SpecJudgement {
        verdict,
        tls_problem,
        tls_hashes,
        last_accepted,
    }
}

/// Who is in the fleet: the live Leases, each with the instant it stops counting, and the
/// RouterReplicas they stand for.
struct Membership {
    live: Vec<(ReplicaId, Mono)>,
    replicas: HashMap<ReplicaId, Arc<RouterReplica>>,
}

impl Membership {
    /// Membership as the caches have it now.
    fn cached(ctx: &Context, fleet: &str) -> Self {
        let live: Vec<(ReplicaId, Mono)> = {
            let clock = ctx.leases.lock().expect("lease clock lock");
            clock
                .live(fleet, ctx.mono())
                .map(|(id, until)| (id.clone(), until))
                .collect()
        };
        let replicas = cached_replicas(ctx, &live);
        Self { live, replicas }
    }

    fn replica(&self, id: &ReplicaId) -> Option<&RouterReplica> {
        self.replicas.get(id).map(Arc::as_ref)
    }
}

/// The cached RouterReplicas of `live`.
fn cached_replicas(ctx: &Context, live: &[(ReplicaId, Mono)]) -> HashMap<ReplicaId, Arc<RouterReplica>> {
    live.iter()
        .filter_map(|(id, _)| {
            ctx.replicas
                .get(&ObjectRef::new(&id.name).within(&id.namespace))
                .map(|rrep| (id.clone(), rrep))
        })
        .collect()
}

/// The decision on `rc` from `membership`, and when the next member's Lease runs out.
fn judge(
    ctx: &Context,
    rc: &RouterConfig,
    spec: &SpecJudgement,
    expected_digest: &str,
    membership: &Membership,
) -> (barrier::Outcome, Option<Duration>) {
    let key = ObjectKey::of(rc);
    let fleet = rc.spec.fleet.as_str();
    let now = ctx.mono();
    let members: Vec<Member<'_>> = members_serving(
        &key.namespace,
        &key.name,
        rc.uid(),
        fleet,
        membership.live.iter().map(|(id, _)| id),
        |id| membership.replica(id),
    );
    // A set: at a thousand members a scan per live replica is a million comparisons per
    // reconcile, on the rollout path.
    let member_ids: HashSet<&ReplicaId> = members.iter().map(|m| &m.id).collect();
    let next_expiry = membership
        .live
        .iter()
        .filter(|(id, _)| member_ids.contains(id))
        .map(|(_, until)| until.saturating_sub(now))
        .min();
    let empty = Default::default();
    let out = barrier::decide(barrier::Input {
        generation: rc.generation(),
        fleet,
        current: rc.status.as_ref().unwrap_or(&empty),
        members: &members,
        verdict: &spec.verdict,
        tls_problem: spec.tls_problem.as_ref(),
        expected_digest,
        last_accepted: spec.last_accepted.as_ref(),
        now: Timestamp::now(),
        settings: ctx.settings,
    });
    (out, next_expiry)
}

/// Membership for a `Ready=True` on `rc`, as fresh as a quorum read: the fleet's Leases are
/// listed again, so a Lease cache older than the RouterConfig cannot miss a replica that
/// joined before the generation was written; and when the cache leaves a live replica out
/// because its RouterReplica does not list the namespace ([`left_out_by_spec`]), the fleet's
/// RouterReplicas are listed too (in parallel), so a spec widened since cannot leave out a
/// member that serves an older generation. The live set is taken under the same lock as the
/// relist, so a Lease watch event that lags the list cannot undo it in between.
async fn confirm_members(ctx: &Context, rc: &RouterConfig, cached: &Membership) -> Result<Membership> {
    let fleet = rc.spec.fleet.as_str();
    let selector = ListParams::default().labels(&format!("{FLEET_LABEL}={fleet}"));
    let namespace = ObjectKey::of(rc).namespace;
    let stale_specs = !left_out_by_spec(&namespace, fleet, cached.live.iter().map(|(id, _)| id), |id| {
        cached.replica(id)
    })
    .is_empty();
    let leases: Api<Lease> = Api::all(ctx.client.clone());
    let rreps: Api<RouterReplica> = Api::all(ctx.client.clone());
    let (leases, replicas) = if stale_specs {
        let (leases, rreps) = futures::try_join!(leases.list(&selector), rreps.list(&selector))?;
        ctx.metrics.replica_checks.inc();
        (leases, Some(rreps))
    } else {
        (leases.list(&selector).await?, None)
    };
    ctx.metrics.membership_checks.inc();
    let views = leases.items.iter().filter_map(LeaseView::of).collect();
    let now = ctx.mono();
    let live: Vec<(ReplicaId, Mono)> = {
        let mut clock = ctx.leases.lock().expect("lease clock lock");
        clock.relist(fleet, views, now);
        clock
            .live(fleet, now)
            .map(|(id, until)| (id.clone(), until))
            .collect()
    };
    let replicas = match replicas {
        // A live Lease whose RouterReplica the list lacks (deleted since, or not labelled
        // with its fleet) is a member without a report: it holds Ready back.
        Some(listed) => listed
            .items
            .into_iter()
            .map(|rrep| (replica_id(&rrep), Arc::new(rrep)))
            .collect(),
        None => cached_replicas(ctx, &live),
    };
    Ok(Membership { live, replicas })
}

async fn reconcile(rc: Arc<RouterConfig>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    note_seen(&ctx, &rc);
    if !ctx.leader.is_leader() {
        // Becoming leader triggers a reconcile of everything.
        return Ok(Action::await_change());
    }
    caches_synced(&ctx).await?;
    let key = ObjectKey::of(&rc);

    let spec = judge_spec(&rc, &ctx);
    let expected_digest = config_digest(&rc.spec, &spec.tls_hashes);
    let cached = Membership::cached(&ctx, &rc.spec.fleet);
    let (mut out, mut next_expiry) = judge(&ctx, &rc, &spec, &expected_digest, &cached);
    let judged = Instant::now();
    let mut confirmed_at = None;
    if out.ready && out.changed {
        let confirmed = confirm_members(&ctx, &rc, &cached).await?;
        (out, next_expiry) = judge(&ctx, &rc, &spec, &expected_digest, &confirmed);
        confirmed_at = Some(Instant::now());
    }

    let api: Api<RouterConfig> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let deferred = if out.progress_only {
        let last = ctx
            .last_written
            .lock()
            .expect("last_written lock")
            .get(&incarnation(&rc))
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
            .patch_status(
                &key.name,
                &params,
                &Patch::Apply(out.status.apply_patch(&rc.resource_version().unwrap_or_default())),
            )
            .await
        {
            Ok(_) => {
                ctx.last_written
                    .lock()
                    .expect("last_written lock")
                    .insert(incarnation(&rc), Instant::now());
                ctx.metrics.status_writes.inc();
                if out.ready {
                    trace_ready_path(&ctx, &key, out.generation, started, judged, confirmed_at);
                }
                tracing::debug!(
                    routerconfig = %key,
                    generation = out.generation,
                    synced = %out.status.synced,
                    ready = out.ready,
                    "status written"
                );
            }
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            // The resourceVersion precondition failed: the object changed since this status
            // was computed from it (its spec was edited, this instance's previous write is not
            // in the cache yet, or it was deleted and re-created). The watch event of the
            // newer version brings it back to be judged afresh.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                ctx.metrics.status_conflicts.inc();
                tracing::debug!(routerconfig = %key, message = %s.message, "status not written: the object changed");
                return Ok(Action::await_change());
            }
            Err(e) => return Err(Error::Kube(e)),
        }
        publish(&ctx, &rc, &key, out.generation, &out.transitions);
    }
    record_metrics(&ctx, &rc, &out);
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());

    let now = Timestamp::now();
    let stall = out
        .recheck_at
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default());
    let wait = [stall, next_expiry, deferred]
        .into_iter()
        .flatten()
        .min()
        .map_or(MAX_REQUEUE, |d| d + DEADLINE_SLACK)
        .min(MAX_REQUEUE);
    Ok(Action::requeue(wait))
}

/// Logs, at debug level, where the time went between the last RouterReplica event this
/// instance saw and the `Ready=True` write just made: the operator's part of a rollout,
/// step by step (the last step, the write reaching a client's watch, is the client's to time).
fn trace_ready_path(
    ctx: &Context,
    key: &ObjectKey,
    generation: i64,
    started: Instant,
    judged: Instant,
    confirmed: Option<Instant>,
) {
    let written = Instant::now();
    let report = *ctx.last_report_seen.lock().expect("last report lock");
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    tracing::debug!(
        routerconfig = %key,
        generation,
        report_to_reconcile_ms = report.map(|r| ms(r, started)),
        judge_ms = ms(started, judged),
        quorum_read_ms = confirmed.map(|c| ms(judged, c)),
        write_ms = ms(confirmed.unwrap_or(judged), written),
        "ready path"
    );
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
            tracing::info!(routerconfig = %key, generation, reason = transition.reason.as_str(), note = %transition.note, "condition transition");
            Event {
                type_: if transition.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: transition.reason.as_str().to_owned(),
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

fn record_metrics(ctx: &Context, rc: &RouterConfig, out: &barrier::Outcome) {
    let generation = out.generation;
    let id = incarnation(rc);
    let key = &id.0;
    ctx.metrics.set_routerconfig(
        key,
        out.ready,
        out.status.synced_replicas,
        out.status.replicas,
        generation,
    );
    let mut rollouts = ctx.rollouts.lock().expect("rollouts lock");
    let Some(rollout) = rollouts.get_mut(&id).filter(|r| r.generation == generation) else {
        return;
    };
    if out.ready && !rollout.ready_recorded {
        rollout.ready_recorded = true;
        let seconds = rollout.first_seen.elapsed().as_secs_f64();
        ctx.metrics.rollout_duration.observe(seconds);
        tracing::info!(routerconfig = %key, generation, replicas = out.status.replicas, seconds, "rollout complete");
    }
}

/// Remembers when a generation was first seen (by any instance, leader or not, so a new
/// leader's rollout times still start at the edit when it watched it happen).
fn note_seen(ctx: &Context, rc: &RouterConfig) {
    let generation = rc.generation();
    let mut rollouts = ctx.rollouts.lock().expect("rollouts lock");
    let fresh = Rollout {
        generation,
        first_seen: Instant::now(),
        ready_recorded: false,
    };
    let rollout = rollouts.entry(incarnation(rc)).or_insert(fresh);
    if rollout.generation != generation {
        *rollout = fresh;
    }
}
