//! One reconcile of one RouterConfig: wait for the caches, judge it (`judge`), confirm the
//! membership with a quorum read before a `Ready=True` that changes the status, write the
//! status (server-side apply, with the judged resourceVersion as a precondition, progress
//! spaced out by [`lockstep_config::barrier::progress_wait`]), and requeue at the next Lease
//! expiry, stall deadline or deferred write. Also the error policy of a failed reconcile.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use lockstep_config::{ObjectKey, barrier, config_digest};
use lockstep_crds::RouterConfig;

use super::{
    Context, incarnation,
    judge::{Membership, confirm_members, judge, judge_spec},
    telemetry::{note_seen, publish, record_metrics, trace_ready_path},
};
use crate::{Error, Result};

/// Longest wait for the caches to list everything before a reconcile gives up (and retries):
/// judging from a partial cache would flap Ready (no Leases yet: NoReplicas).
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Requeue slack after a deadline, so the deadline has surely passed when the reconcile runs.
const DEADLINE_SLACK: Duration = Duration::from_millis(5);
/// Requeue at least this often anyway (a safety net, not a mechanism).
const MAX_REQUEUE: Duration = Duration::from_secs(300);

pub(super) async fn reconcile(rc: Arc<RouterConfig>, ctx: Arc<Context>) -> Result<Action> {
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

pub(super) fn error_policy(rc: Arc<RouterConfig>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(routerconfig = %ObjectKey::of(&rc), %error, "reconcile failed; retrying");
    ctx.metrics.reconcile_errors.inc();
    Action::requeue(Duration::from_millis(500))
}

/// Waits until every cache has listed once.
async fn caches_synced(ctx: &Context) -> Result<()> {
    let mut synced = ctx.synced.clone();
    match tokio::time::timeout(CACHE_SYNC_TIMEOUT, synced.wait_for(|s| *s)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(Error::CacheNotSynced(CACHE_SYNC_TIMEOUT)),
    }
}
