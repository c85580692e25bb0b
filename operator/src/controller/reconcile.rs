//! One reconcile of one RouterConfig: wait for the caches, judge it (`judge`), list the fleet's
//! Leases once per rollout (beside the reconcile) and again before a `Ready=True` only when
//! that list no longer covers it, write the
//! status (server-side apply, with the judged resourceVersion as a precondition, progress
//! spaced out by [`lockstep_core::barrier::progress_wait`]), and requeue at the next Lease
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
use lockstep_core::{ObjectKey, barrier, config_digest};
use lockstep_crds::RouterConfig;

use super::{
    Context, incarnation,
    judge::{Membership, confirm_members, judge, judge_spec, list_for_rollout},
    telemetry::{note_seen, publish, record_metrics, trace_ready_path},
};
use crate::{Error, Result, metrics::Metrics};

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
    if !out.ready {
        // A rollout: its membership list, made now beside the reconcile, so that its
        // Ready=True need not wait for one.
        list_for_rollout(&ctx, &rc, cached);
    } else if out.changed && !still_covered(&ctx, &rc, &cached) {
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
        let replicas = usize::try_from(out.status.replicas).unwrap_or_default();
        barrier::progress_wait(last, Instant::now(), ctx.settings.progress_interval_for(replicas))
    } else {
        None
    };
    if out.changed && deferred.is_none() {
        if !ctx.leader.is_leader() {
            return Ok(Action::await_change());
        }
        let resource_version = rc.resource_version().unwrap_or_default();
        match write_status(&api, &key, &out.status, &resource_version, &ctx.metrics).await? {
            Written::Yes => {
                ctx.last_written
                    .lock()
                    .expect("last_written lock")
                    .insert(incarnation(&rc), Instant::now());
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
            // The watch event of the deletion or of the newer version brings the object back.
            Written::Gone | Written::Conflict => return Ok(Action::await_change()),
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

/// Whether the membership `cached` may stand behind a `Ready=True` on `rc` without a list
/// now: the rollout's own list ([`list_for_rollout`]) covers it still, and no live replica is
/// left out by a RouterReplica spec that may be stale.
fn still_covered(ctx: &Context, rc: &RouterConfig, cached: &Membership) -> bool {
    !cached.leaves_out_by_spec(rc)
        && ctx
            .rollout_lists
            .lock()
            .expect("rollout lists lock")
            .still_cover(rc, cached)
}

/// What became of a status write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Applied.
    Yes,
    /// The object is gone (404).
    Gone,
    /// The resourceVersion precondition failed (409): not written, and not retried.
    Conflict,
}

/// Applies `status` to the status subresource of RouterConfig `key` (server-side apply, field
/// manager [`lockstep_crds::OPERATOR_FIELD_MANAGER`], forced), with `resource_version`, the
/// version the status was judged from, as a precondition. Counts the writes and the conflicts.
async fn write_status(
    api: &Api<RouterConfig>,
    key: &ObjectKey,
    status: &barrier::OperatorStatus,
    resource_version: &str,
    metrics: &Metrics,
) -> Result<Written> {
    let params = PatchParams::apply(lockstep_crds::OPERATOR_FIELD_MANAGER).force();
    match api
        .patch_status(
            &key.name,
            &params,
            &Patch::Apply(status.apply_patch(resource_version)),
        )
        .await
    {
        Ok(_) => {
            metrics.status_writes.inc();
            Ok(Written::Yes)
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Written::Gone),
        // The resourceVersion precondition failed: the object changed since this status
        // was computed from it (its spec was edited, this instance's previous write is not
        // in the cache yet, or it was deleted and re-created). The watch event of the
        // newer version brings it back to be judged afresh.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            metrics.status_conflicts.inc();
            tracing::debug!(routerconfig = %key, message = %s.message, "status not written: the object changed");
            Ok(Written::Conflict)
        }
        Err(e) => Err(Error::Kube(e)),
    }
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

#[cfg(test)]
mod tests {
    use lockstep_apiclient::mock::{self, ApiServer};
    use lockstep_crds::ReplicaStatus;
    use serde_json::{Value, json};

    use super::*;

    fn key() -> ObjectKey {
        ObjectKey {
            namespace: "ns".into(),
            name: "web".into(),
        }
    }

    /// A status as `barrier::decide` could give it: one replica of two synced.
    fn status() -> barrier::OperatorStatus {
        barrier::OperatorStatus {
            observed_generation: 3,
            conditions: Vec::new(),
            synced_replicas: 1,
            replicas: 2,
            synced: "1/2".into(),
            replica_status: vec![ReplicaStatus {
                name: "lockstep-system/proxy-0".into(),
                observed_generation: 3,
                config_digest: "sha256:abc".into(),
                ..Default::default()
            }],
            last_accepted: None,
        }
    }

    /// The RouterConfig as the apiserver answers a status write.
    fn stored() -> Value {
        json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 3,
                         "resourceVersion": "42"},
            "spec": {"fleet": "default", "rules": [{"host": "a.example", "paths": [{
                "path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": 80}}
            }]}]}
        })
    }

    /// Sends `status()` judged from resourceVersion 41, and hands the request to the test.
    async fn write(
        metrics: &Arc<Metrics>,
    ) -> (tokio::task::JoinHandle<Result<Written>>, mock::Sent, ApiServer) {
        let (client, mut server) = mock::pair();
        let metrics = metrics.clone();
        let written = tokio::spawn(async move {
            let api = Api::namespaced(client, "ns");
            write_status(&api, &key(), &status(), "41", &metrics).await
        });
        let sent = server.next().await;
        (written, sent, server)
    }

    #[tokio::test]
    async fn a_status_write_is_a_forced_apply_of_the_status_subresource_as_the_operator() {
        let metrics = Arc::new(Metrics::default());
        let (written, sent, server) = write(&metrics).await;
        assert_eq!(
            sent.describe(),
            "PATCH /apis/lockstep.dev/v1alpha1/namespaces/ns/routerconfigs/web/status"
        );
        assert_eq!(
            sent.query("fieldManager"),
            Some(lockstep_crds::OPERATOR_FIELD_MANAGER)
        );
        assert_eq!(sent.query("fieldManager"), Some("lockstep-operator"));
        assert_eq!(sent.query("force"), Some("true"));
        assert_eq!(sent.content_type, "application/apply-patch+yaml");
        assert_eq!(sent.body["apiVersion"], "lockstep.dev/v1alpha1");
        assert_eq!(sent.body["kind"], "RouterConfig");
        let status = &sent.body["status"];
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["syncedReplicas"], 1);
        assert_eq!(status["replicas"], 2);
        assert_eq!(status["synced"], "1/2");
        assert_eq!(status["replicaStatus"][0]["name"], "lockstep-system/proxy-0");
        assert_eq!(status["replicaStatus"][0]["configDigest"], "sha256:abc");
        assert!(
            sent.body.get("spec").is_none(),
            "a status write says nothing of the spec: {}",
            sent.body
        );
        sent.ok(&stored());
        assert_eq!(written.await.unwrap().unwrap(), Written::Yes);
        assert_eq!(metrics.status_writes.get(), 1);
        assert_eq!(metrics.status_conflicts.get(), 0);
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn a_status_write_carries_the_resource_version_it_judged() {
        let metrics = Arc::new(Metrics::default());
        let (written, sent, _server) = write(&metrics).await;
        // The precondition, and nothing else of the metadata: a uid would be ignored in a
        // status patch, and a name is the path's.
        assert_eq!(sent.body["metadata"], json!({"resourceVersion": "41"}));
        sent.ok(&stored());
        written.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_status_write_refused_by_its_precondition_is_counted_and_dropped_not_retried() {
        let metrics = Arc::new(Metrics::default());
        let (written, sent, server) = write(&metrics).await;
        sent.fail(
            409,
            "Conflict",
            "Operation cannot be fulfilled on routerconfigs.lockstep.dev \"web\": the object has been modified",
        );
        // Not an error: the error policy would requeue it in 500 ms; the watch event of the
        // newer version brings it back instead.
        assert_eq!(written.await.unwrap().unwrap(), Written::Conflict);
        assert_eq!(metrics.status_conflicts.get(), 1);
        assert_eq!(metrics.status_writes.get(), 0);
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn a_status_write_on_a_deleted_routerconfig_is_dropped_uncounted() {
        let metrics = Arc::new(Metrics::default());
        let (written, sent, server) = write(&metrics).await;
        sent.fail(404, "NotFound", "routerconfigs.lockstep.dev \"web\" not found");
        assert_eq!(written.await.unwrap().unwrap(), Written::Gone);
        assert_eq!(metrics.status_conflicts.get(), 0);
        assert_eq!(metrics.status_writes.get(), 0);
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn a_status_write_that_fails_otherwise_is_an_error_for_the_error_policy() {
        let metrics = Arc::new(Metrics::default());
        let (written, sent, server) = write(&metrics).await;
        sent.fail(500, "InternalError", "etcdserver: request timed out");
        let error = written.await.unwrap().unwrap_err();
        assert!(
            matches!(&error, Error::Kube(kube::Error::Api(s)) if s.code == 500),
            "{error}"
        );
        assert_eq!(metrics.status_conflicts.get(), 0);
        assert_eq!(metrics.status_writes.get(), 0);
        server.expect_no_more().await;
    }
}
