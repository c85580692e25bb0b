//! The sync loop: a pass after each change (debounced), and once a second at the least (the
//! tick that retries failed report writes and checks the level).
//!
//! A pass, in this order, and why:
//! 1. [`SyncLoop::tls`]: load and judge the TLS Secrets the fleet names. While one of them has
//!    not been listed yet the pass stops there: judging now would report it missing.
//! 2. [`EndpointSources::refresh`]: the endpoints of every Service a table may route to, in
//!    place before a table that routes to them is swapped in.
//! 3. [`SyncLoop::plan_and_swap`]: the plan (`lockstep_core::plan`) decides what to serve
//!    and what to report; the certificates and then the table are swapped in, off the runtime.
//! 4. [`publish`]: whether the replica serves every current generation, and the readiness
//!    that follows, published to `/readyz`. The supervision's pass clock stops here.
//! 5. [`SyncLoop::report`]: the RouterReplica says what is served; once it says the replica is
//!    current, the Lease loop is woken (a replica joins only once its report is current).
//!
//! Then the loop waits for a change ([`SyncLoop::wait_for_change`]).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use lockstep_core::{
    ObjectKey,
    lease::Readiness,
    plan::{self, AppliedAt, Plan},
};
use lockstep_crds::RouterConfig;
use tokio::time::{Interval, MissedTickBehavior};

use super::{Shared, refresh::EndpointSources, report, secrets, tls};

/// Runs the sync loop until the replica leaves; a panic is the supervisor's.
pub(super) async fn run(shared: Arc<Shared>, endpoints: EndpointSources) {
    for store in &shared.rc_stores {
        let _ = store.wait_until_ready().await;
    }
    endpoints.wait_until_listed().await;
    let mut sync = SyncLoop::new(shared, endpoints);
    loop {
        if sync.shared.leaving.is_cancelled() {
            return;
        }
        let go_on = match sync.pass().await {
            Pass::SecretPending => sync.wait_for_secret().await,
            Pass::Done => sync.wait_for_change().await,
            Pass::Leaving => false,
        };
        if !go_on {
            return;
        }
    }
}

/// How a pass ended.
enum Pass {
    /// A referenced Secret has not been listed yet: nothing judged, nothing swapped.
    SecretPending,
    /// Swapped, published and reported.
    Done,
    /// The replica left after the swap: nothing more is written.
    Leaving,
}

/// What the loop keeps from one pass to the next.
struct SyncLoop {
    shared: Arc<Shared>,
    endpoints: EndpointSources,
    /// The per-Secret watches of the Secrets the fleet names.
    secrets: secrets::SecretWatches,
    /// The last material of each Secret that loaded and checked out.
    good_tls: HashMap<ObjectKey, tls::GoodMaterial>,
    /// When each served generation was swapped in (reported as `appliedAt`).
    applied_at: AppliedAt,
    reporter: report::Reporter,
    /// Retries of failed report writes, and a periodic level check, ride on this tick.
    retry: Interval,
    /// When the last change that starts a pass was seen: a change after a quiet time is
    /// served at once, one inside a burst waits for the burst to settle.
    last_change: Option<tokio::time::Instant>,
}

impl SyncLoop {
    fn new(shared: Arc<Shared>, endpoints: EndpointSources) -> Self {
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            secrets: secrets::SecretWatches::new(shared.client.clone(), shared.wake.clone()),
            shared,
            endpoints,
            good_tls: HashMap::new(),
            applied_at: BTreeMap::new(),
            reporter: report::Reporter::default(),
            retry,
            last_change: None,
        }
    }

    /// One pass: steps 1 to 5 of the module doc.
    async fn pass(&mut self) -> Pass {
        let shared = self.shared.clone();
        shared
            .sync
            .lock()
            .expect("sync watch lock")
            .pass_started(shared.mono());
        let objects = shared.fleet_objects();
        let now = Timestamp::now();
        let previous = shared.state.certs.snapshot();
        let Some(tls) = self.tls(&objects, now) else {
            shared.sync.lock().expect("sync watch lock").pass_finished();
            return Pass::SecretPending;
        };
        self.endpoints.refresh(&shared, &objects).await;
        let plan = self.plan_and_swap(&objects, tls, previous, now).await;
        let (serving, readiness) = publish(&shared, &objects, &plan);
        if shared.leaving.is_cancelled() {
            return Pass::Leaving;
        }
        self.report(&objects, &plan, serving, &readiness).await;
        Pass::Done
    }

    /// Step 1: watches the Secrets the fleet names, loads new material and judges the TLS of
    /// every current generation. None while a referenced Secret has not been listed yet.
    fn tls(&mut self, objects: &[Arc<RouterConfig>], now: Timestamp) -> Option<plan::TlsView> {
        self.secrets.ensure(&tls::referenced(objects));
        let outcome = tls::assemble(
            objects,
            &self.secrets.states(),
            &mut self.good_tls,
            now.as_second(),
        );
        (!outcome.pending).then_some(plan::TlsView {
            hashes: outcome.hashes,
            problems: outcome.problems,
        })
    }

    /// Step 3: plans and swaps in what to serve, on a blocking thread (a second at 100k
    /// routes), certificates before the table so a host the new table routes has its
    /// certificate in place. `previous` is the certificates served before the pass.
    async fn plan_and_swap(
        &mut self,
        objects: &[Arc<RouterConfig>],
        view: plan::TlsView,
        previous: Arc<HashMap<String, crate::certs::HostCert>>,
        now: Timestamp,
    ) -> Plan {
        let served = self.shared.state.served();
        let (objects, state) = (objects.to_vec(), self.shared.state.clone());
        let watched = self.shared.options.scope.watched();
        let mut moved = std::mem::take(&mut self.applied_at);
        let good = std::mem::take(&mut self.good_tls);
        let (plan, swapped, moved, good) = crate::state::off_the_runtime(move || {
            injected_fault(&objects);
            let mut plan = plan::plan(&objects, &served, &view, &watched, &mut moved, now);
            // Certificates first: a host the new table routes has its certificate in
            // place. They follow what is served, as the plan decided.
            state
                .certs
                .replace(tls::certificates(&plan.certificates, &good, &previous));
            state.certs.replace_clients(tls::client_certificates(&good));
            let next = plan.next.take();
            let swapped = next.is_some();
            if let Some(next) = next {
                state.swap(next);
            }
            (plan, swapped, moved, good)
        })
        .await;
        self.applied_at = moved;
        self.good_tls = good;
        if swapped {
            let generations = self.shared.state.served().generations();
            tracing::info!(replica = %self.shared.options.replica, routerconfigs = ?generations, "route table swapped");
        }
        for (key, report) in &plan.reports {
            if let Some(rejected) = &report.rejected {
                tracing::debug!(routerconfig = %key, generation = rejected.generation, message = %rejected.message, "generation rejected; serving the last accepted one");
            }
        }
        plan
    }

    /// Step 5: writes the RouterReplica when what it says changed; once it says the replica
    /// serves every current generation, wakes the Lease loop.
    async fn report(
        &mut self,
        objects: &[Arc<RouterConfig>],
        plan: &Plan,
        serving: bool,
        readiness: &Readiness,
    ) {
        let written = self
            .reporter
            .write(&self.shared, objects, &plan.reports, readiness)
            .await;
        self.shared
            .reported_current
            .store(serving && written, Ordering::SeqCst);
        if serving && written {
            self.shared.wake_lease.notify_one();
        }
    }

    /// Waits for the watch of a pending Secret (or the tick). False when the replica leaves.
    async fn wait_for_secret(&mut self) -> bool {
        tokio::select! {
            _ = self.shared.wake.notified() => true,
            _ = self.retry.tick() => true,
            _ = self.shared.leaving.cancelled() => false,
        }
    }

    /// Waits for a change: one that changes what is served starts the pass at once after a
    /// quiet time, and settles first inside a burst (debounced); a report-only one, or the
    /// tick, starts the next pass at once. False when the replica leaves.
    async fn wait_for_change(&mut self) -> bool {
        tokio::select! {
            _ = self.shared.wake.notified() => {
                let now = tokio::time::Instant::now();
                if inside_burst(self.last_change, now, self.shared.options.debounce) {
                    debounce(&self.shared).await;
                }
                self.last_change = Some(tokio::time::Instant::now());
            }
            _ = self.shared.wake_now.notified() => {}
            _ = self.retry.tick() => {}
            _ = self.shared.leaving.cancelled() => return false,
        }
        true
    }
}

/// Step 4: whether the replica serves (or rejected) the current generation of every
/// RouterConfig it sees, and the readiness that follows, published; ends the pass for the
/// supervision.
fn publish(shared: &Shared, objects: &[Arc<RouterConfig>], plan: &Plan) -> (bool, Readiness) {
    let serving = plan::in_sync(objects.iter().map(|rc| rc.as_ref()), &plan.reports);
    shared.serving_current.store(serving, Ordering::SeqCst);
    let recovered = shared.sync_problem().is_some();
    shared.sync.lock().expect("sync watch lock").pass_finished();
    if recovered {
        tracing::info!(replica = %shared.options.replica, "the sync loop works again; rejoining the fleet");
    }
    (serving, shared.update_readiness())
}

/// Whether a change seen at `now` belongs to a burst: the previous one was less than `quiet`
/// before. The first change after a quiet time is served at once (a lone edit, the common
/// case, pays no debounce on its way to `Ready`); the rest of a burst is coalesced, so a
/// burst costs at most two swaps.
fn inside_burst(previous: Option<tokio::time::Instant>, now: tokio::time::Instant, quiet: Duration) -> bool {
    previous.is_some_and(|previous| now.duration_since(previous) < quiet)
}

/// Lets a burst of changes settle: waits until `debounce` passes without a change, but no
/// longer than `debounce_max` in all.
async fn debounce(shared: &Shared) {
    let deadline = tokio::time::Instant::now() + shared.options.debounce_max;
    loop {
        let quiet = tokio::time::sleep(shared.options.debounce);
        tokio::select! {
            _ = quiet => return,
            _ = shared.wake.notified() => {
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
        }
    }
}

/// A fault injected into the plan step, for tests of the supervision and the join check
/// against the real binary: `LOCKSTEP_TEST_SYNC_FAULT=panic:<name>` panics and
/// `stall:<name>:<seconds>` blocks for that long whenever the fleet holds a RouterConfig
/// named `<name>`; `stall-replaced:<name>:<seconds>` blocks once, when `<name>` comes back
/// under another uid (deleted and created again), so only the join check stands between the
/// replica and answering ready with the deleted object. Read only in debug builds
/// (`cfg(debug_assertions)`); a release build has no such hook.
#[cfg(debug_assertions)]
fn injected_fault(objects: &[Arc<RouterConfig>]) {
    let Ok(fault) = std::env::var("LOCKSTEP_TEST_SYNC_FAULT") else {
        return;
    };
    let mut parts = fault.split(':');
    let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(rc) = objects
        .iter()
        .find(|rc| rc.metadata.name.as_deref() == Some(name))
    else {
        return;
    };
    if kind == "stall-replaced" {
        static FIRST_UID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        static STALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let uid = &rc.metadata.uid;
        if FIRST_UID.get_or_init(|| uid.clone()) != uid && !STALLED.swap(true, Ordering::SeqCst) {
            let seconds = parts.next().and_then(|s| s.parse().ok()).unwrap_or(3600);
            std::thread::sleep(Duration::from_secs(seconds));
        }
        return;
    }
    match kind {
        "panic" => panic!("injected fault: RouterConfig {name} is present"),
        "stall" => {
            let seconds = parts.next().and_then(|s| s.parse().ok()).unwrap_or(3600);
            std::thread::sleep(Duration::from_secs(seconds));
        }
        _ => {}
    }
}

#[cfg(not(debug_assertions))]
fn injected_fault(_: &[Arc<RouterConfig>]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_after_a_quiet_time_starts_a_pass_at_once_and_a_burst_settles() {
        let quiet = Duration::from_millis(20);
        let t0 = tokio::time::Instant::now();
        assert!(!inside_burst(None, t0, quiet), "the first change ever");
        assert!(
            !inside_burst(Some(t0), t0 + Duration::from_millis(20), quiet),
            "a change a quiet time after the last"
        );
        assert!(
            inside_burst(Some(t0), t0 + Duration::from_millis(5), quiet),
            "a change 5 ms after the last belongs to its burst"
        );
    }
}
