//! Fleet membership through the Lease `lockstep-proxy-<replica>`: the I/O around
//! `lockstep_core::lease::ReplicaLease`.
//!
//! The replica writes its Lease only once its own watch shows nothing it has not processed and
//! reported. Once the write lands it is counted by the operator but not ready: it first lists
//! its RouterConfigs with a quorum read and becomes ready only if it serves (or rejected and
//! reported) the newest generation of each. Without that check, a generation written between
//! the replica's last watch event and its Lease write could be judged Ready by the operator
//! without this replica while it answers ready with the older one.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use lockstep_core::{
    lease::{ReplicaReason, Stage},
    supervision::SyncProblem,
};
use lockstep_crds::RouterConfig;

use super::Shared;

/// First pause after a failed Lease write; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest pause between Lease write attempts while they fail.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn lease_api(shared: &Shared) -> Api<Lease> {
    Api::namespaced(shared.client.clone(), &shared.options.namespace)
}

fn lease_object(shared: &Shared, acquired: Timestamp) -> Lease {
    let options = &shared.options;
    Lease {
        metadata: ObjectMeta {
            name: Some(lockstep_crds::proxy_lease_name(&options.replica)),
            namespace: Some(options.namespace.clone()),
            labels: Some([(lockstep_crds::FLEET_LABEL.to_owned(), options.fleet.clone())].into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(options.replica.clone()),
            // Validated as whole seconds of at least one: what the operator reads is what the
            // replica measures.
            lease_duration_seconds: Some(i32::try_from(options.lease_duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    }
}

/// Writes and renews the Lease; fences the replica when a renewal did not land in time, and
/// makes it ready only after the quorum check.
pub(super) async fn run(shared: std::sync::Arc<Shared>) {
    let mut acquired = Timestamp::now();
    let mut backoff = MIN_BACKOFF;
    let mut retry_after: Option<Duration> = None;
    let mut verify_after: Option<Duration> = None;
    let mut was = Stage::Outside;
    let mut sync_was: Option<ReplicaReason> = None;
    // Freshness is re-checked often so readiness drops as soon as the Lease may be expired.
    let mut check = tokio::time::interval(Duration::from_millis(100));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if shared.leaving.is_cancelled() {
            return;
        }
        // A sync loop that died or hangs gives up membership: unready now, no renewal, and
        // a rejoin through the quorum check once it works again.
        let sync_problem = shared.sync_problem();
        let sync_is = sync_problem.as_ref().map(SyncProblem::reason);
        if let Some(problem) = &sync_problem
            && sync_was != sync_is
        {
            let readiness = problem.readiness();
            tracing::warn!(replica = %shared.options.replica, reason = readiness.reason.as_str(), message = %readiness.message, "sync unhealthy; giving up fleet membership");
            if matches!(problem, SyncProblem::Stalled(_)) {
                shared.state.metrics.sync_failure(readiness.reason.as_str());
            }
            shared.lease.lock().expect("lease lock").leave();
            shared.update_readiness();
            super::report::mark_unready(&shared, &readiness).await;
        }
        sync_was = sync_is;
        let now = shared.mono();
        let (stage, due) = {
            let lease = shared.lease.lock().expect("lease lock");
            (lease.stage(now), lease.renewal_due(now) <= now)
        };
        if stage == Stage::Outside && was != Stage::Outside {
            tracing::warn!(replica = %shared.options.replica, "lease not renewed in time; unready until re-synced");
            shared.wake_now.notify_one();
        }
        was = stage;
        shared.update_readiness();

        let may_write = sync_problem.is_none()
            && (stage != Stage::Outside || shared.reported_current.load(std::sync::atomic::Ordering::SeqCst));
        if due && may_write && retry_after.is_none_or(|at| now >= at) && !shared.leaving.is_cancelled() {
            if stage == Stage::Outside {
                acquired = Timestamp::now();
            }
            let sent = shared.mono();
            let name = lockstep_crds::proxy_lease_name(&shared.options.replica);
            let params = PatchParams::apply(lockstep_crds::PROXY_FIELD_MANAGER).force();
            match lease_api(&shared)
                .patch(&name, &params, &Patch::Apply(lease_object(&shared, acquired)))
                .await
            {
                Ok(_) => {
                    let now = shared.mono();
                    shared.lease.lock().expect("lease lock").renewed(sent, now);
                    retry_after = None;
                    backoff = MIN_BACKOFF;
                    if shared
                        .lease_problem
                        .lock()
                        .expect("lease problem lock")
                        .take()
                        .is_some()
                    {
                        tracing::info!(replica = %shared.options.replica, "Lease writes work again");
                        shared.wake_now.notify_one();
                    }
                }
                Err(error) => {
                    let problem = error.to_string();
                    let mut last = shared.lease_problem.lock().expect("lease problem lock");
                    if last.as_deref() != Some(problem.as_str()) {
                        tracing::warn!(replica = %shared.options.replica, %problem, retry_in = ?backoff, "cannot write the Lease; backing off");
                        *last = Some(problem);
                        shared.wake_now.notify_one();
                    }
                    retry_after = Some(shared.mono() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }

        if shared.leaving.is_cancelled() {
            return;
        }
        let now = shared.mono();
        let verifying = shared.lease.lock().expect("lease lock").stage(now) == Stage::Verifying;
        if verifying
            && sync_problem.is_none()
            && shared.reported_current.load(std::sync::atomic::Ordering::SeqCst)
            && verify_after.is_none_or(|at| now >= at)
        {
            let caught_up = caught_up(&shared).await;
            let now = shared.mono();
            let mut lease = shared.lease.lock().expect("lease lock");
            lease.verified(caught_up, now);
            if lease.stage(now) == Stage::Member {
                tracing::info!(replica = %shared.options.replica, "joined the fleet");
                verify_after = None;
                drop(lease);
                shared.wake_now.notify_one();
            } else {
                // Not yet: the watch has not delivered a newer generation. The sync loop
                // wakes this loop once it has processed and reported more.
                verify_after = Some(now + MIN_BACKOFF);
                drop(lease);
                shared.wake.notify_one();
            }
        }
        shared.update_readiness();

        tokio::select! {
            _ = check.tick() => {}
            _ = shared.wake_lease.notified() => {}
            _ = shared.leaving.cancelled() => return,
        }
    }
}

/// The quorum check: a fresh list of the RouterConfigs the replica serves (not the watch
/// cache, which may be behind) shows no generation it has not processed and reported.
async fn caught_up(shared: &Shared) -> bool {
    let apis: Vec<Api<RouterConfig>> = match &shared.options.scope {
        super::WatchScope::All => vec![Api::all(shared.client.clone())],
        super::WatchScope::Namespaces(names) => names
            .iter()
            .map(|ns| Api::namespaced(shared.client.clone(), ns))
            .collect(),
    };
    let reported = shared.reported.lock().expect("reported lock").clone();
    for api in apis {
        let listed = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                tracing::warn!(%error, "listing RouterConfigs for the join check failed");
                return false;
            }
        };
        let ours = listed.iter().filter(|rc| rc.spec.fleet == shared.options.fleet);
        let behind = !lockstep_core::plan::in_sync(ours, &reported);
        if behind {
            return false;
        }
    }
    true
}

/// Deletes the Lease (leaving the fleet).
pub(super) async fn delete(shared: &Shared) {
    let name = lockstep_crds::proxy_lease_name(&shared.options.replica);
    match lease_api(shared).delete(&name, &DeleteParams::default()).await {
        Ok(_) => tracing::info!(lease = %name, "left the fleet"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(error) => tracing::warn!(%error, lease = %name, "could not delete lease"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use lockstep_apiclient::mock::{ApiServer, Sent};
    use lockstep_core::lease::ReplicaReason;
    use serde_json::{Value, json};

    use super::super::tests::{options, replica};
    use super::*;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/lockstep-proxy-r1";

    /// A replica with a Lease of `seconds` that serves and reported what its watch shows, its
    /// Lease loop running.
    fn running(seconds: u64) -> (std::sync::Arc<Shared>, ApiServer) {
        let mut options = options();
        options.lease_duration = Duration::from_secs(seconds);
        let (shared, server) = replica(options);
        shared.serving_current.store(true, Ordering::SeqCst);
        shared.reported_current.store(true, Ordering::SeqCst);
        tokio::spawn(run(shared.clone()));
        (shared, server)
    }

    /// The Lease as the apiserver answers a write of it.
    fn stored(request: &Sent) -> Value {
        let mut lease = request.body.clone();
        lease["metadata"]["resourceVersion"] = json!("12");
        lease
    }

    /// Answers the Lease write `request` and the join check's list (no RouterConfigs), and
    /// waits until the replica has made itself a member of them.
    async fn join(shared: &Shared, server: &mut ApiServer, request: Sent) {
        let lease = stored(&request);
        request.ok(&lease);
        let list = server.next().await;
        assert_eq!(
            list.describe(),
            "GET /apis/lockstep.dev/v1alpha1/namespaces/ns/routerconfigs"
        );
        list.ok(&json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfigList",
            "metadata": {"resourceVersion": "12"}, "items": []
        }));
        let member = async {
            while shared.lease.lock().unwrap().stage(shared.mono()) != Stage::Member {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), member)
            .await
            .expect("a member once the list shows it caught up");
    }

    #[tokio::test]
    async fn the_lease_is_applied_with_the_fleet_label_and_the_replica_as_holder() {
        let (_shared, mut server) = running(10);
        let write = server.next().await;
        assert_eq!(write.describe(), format!("PATCH {LEASE}"));
        assert_eq!(
            write.query("fieldManager"),
            Some(lockstep_crds::PROXY_FIELD_MANAGER)
        );
        assert_eq!(write.query("force"), Some("true"));
        assert_eq!(write.content_type, "application/apply-patch+yaml");
        assert_eq!(write.body["apiVersion"], "coordination.k8s.io/v1");
        assert_eq!(write.body["kind"], "Lease");
        assert_eq!(
            write.body["metadata"],
            json!({"name": "lockstep-proxy-r1", "namespace": "ns",
                   "labels": {"lockstep.dev/fleet": "default"}})
        );
        let spec = &write.body["spec"];
        assert_eq!(spec["holderIdentity"], "r1");
        assert_eq!(spec["leaseDurationSeconds"], 10);
        assert!(spec["acquireTime"].is_string(), "{spec}");
        assert!(spec["renewTime"].is_string(), "{spec}");
    }

    #[tokio::test]
    async fn the_join_check_lists_routerconfigs_with_a_quorum_read() {
        let (_shared, mut server) = running(10);
        let write = server.next().await;
        let lease = stored(&write);
        write.ok(&lease);
        let list = server.next().await;
        assert_eq!(
            list.describe(),
            "GET /apis/lockstep.dev/v1alpha1/namespaces/ns/routerconfigs"
        );
        // No resourceVersion: the apiserver answers from etcd, not from its watch cache,
        // which may be as far behind as the replica's own watch.
        assert_eq!(list.query("resourceVersion"), None, "{:?}", list.query);
    }

    #[tokio::test]
    async fn a_renewal_is_the_same_forced_apply_with_no_resource_version() {
        let (shared, mut server) = running(1);
        let first = server.next().await;
        let first_body = first.body.clone();
        join(&shared, &mut server, first).await;
        assert!(shared.update_readiness().ready);

        // Due a third of the Lease after the last write.
        let renewal = server.next().await;
        assert_eq!(renewal.describe(), format!("PATCH {LEASE}"));
        assert_eq!(renewal.query("fieldManager"), Some("lockstep-proxy"));
        assert_eq!(renewal.query("force"), Some("true"));
        // No precondition: the replica is the Lease's only writer, and what fences it is the
        // time its renewal lands, not another writer's version.
        assert_eq!(renewal.body["metadata"].get("resourceVersion"), None);
        assert_eq!(renewal.body["metadata"], first_body["metadata"]);
        let (spec, first_spec) = (&renewal.body["spec"], &first_body["spec"]);
        assert_eq!(spec["acquireTime"], first_spec["acquireTime"], "the same tenure");
        assert_eq!(spec["holderIdentity"], "r1");
        let renewed = |spec: &Value| spec["renewTime"].as_str().unwrap().parse::<Timestamp>().unwrap();
        assert!(renewed(spec) > renewed(first_spec), "{spec} after {first_spec}");
    }

    #[tokio::test]
    async fn a_refused_renewal_fences_the_replica_when_its_lease_runs_out_not_before() {
        let (shared, mut server) = running(2);
        let first = server.next().await;
        let sent = std::time::Instant::now();
        join(&shared, &mut server, first).await;

        let conflict = "Operation cannot be fulfilled on leases.coordination.k8s.io \"lockstep-proxy-r1\": the object has been modified";
        let renewal = server.next().await;
        assert_eq!(renewal.describe(), format!("PATCH {LEASE}"));
        renewal.fail(409, "Conflict", conflict);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let readiness = shared.update_readiness();
        assert!(
            readiness.ready,
            "the Lease written last is still fresh: {readiness:?}"
        );

        // Every retry refused too, until the Lease written last has run out.
        let out = sent + Duration::from_secs(2) + Duration::from_millis(100);
        while let Some(left) = out.checked_duration_since(std::time::Instant::now()) {
            if let Ok(retry) = tokio::time::timeout(left, server.next()).await {
                assert_eq!(retry.describe(), format!("PATCH {LEASE}"));
                retry.fail(409, "Conflict", conflict);
            }
        }
        let readiness = shared.update_readiness();
        assert!(!readiness.ready, "{readiness:?}");
        assert_eq!(readiness.reason, ReplicaReason::LeaseUnavailable);
        assert!(readiness.message.contains(conflict), "{}", readiness.message);
    }
}
