//! Writes this replica's `RouterReplica`: the object itself (fleet label, namespaces served,
//! an ownerReference to its Pod) and its status (what it serves of each RouterConfig, and its
//! own readiness), with server-side apply. Only this replica writes it, so every write is one
//! request to one object, whatever the size of the fleet.

use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use lockstep_core::{
    ObjectKey,
    conditions::{NewCondition, set_condition, status_str},
};
use lockstep_crds::{RouterConfig, RouterReplica};
use serde_json::{Value, json};

use super::{Readiness, Report, Shared};

/// What was last written, so unchanged reports cost nothing.
#[derive(Debug, Default)]
pub(super) struct Reporter {
    /// The object (metadata and spec) is known to exist.
    created: bool,
    /// The status body last written.
    last: Option<Value>,
    /// Conditions as last written, so transition times survive.
    conditions: Vec<Condition>,
    /// `Shared::unready_marks` when `last` was written: a mark since overwrote its `Ready`.
    marks_seen: u64,
}

fn api(shared: &Shared) -> Api<RouterReplica> {
    Api::namespaced(shared.client.clone(), &shared.options.namespace)
}

fn params() -> PatchParams {
    PatchParams::apply(lockstep_crds::PROXY_FIELD_MANAGER).force()
}

fn object_body(shared: &Shared) -> Value {
    let options = &shared.options;
    let mut metadata = json!({
        "name": options.replica,
        "labels": {lockstep_crds::FLEET_LABEL: options.fleet},
    });
    if let Some(pod) = &options.pod {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid,
        }]);
    }
    json!({
        "apiVersion": lockstep_crds::API_VERSION,
        "kind": lockstep_crds::REPLICA_KIND,
        "metadata": metadata,
        "spec": {"fleet": options.fleet, "namespaces": options.scope.names()},
    })
}

fn served_entry(key: &ObjectKey, report: &Report) -> Value {
    let mut entry = json!({
        "namespace": key.namespace,
        "name": key.name,
        "uid": report.uid,
        "observedGeneration": report.observed_generation,
        "configDigest": report.config_digest,
    });
    if let Some(at) = &report.applied_at {
        entry["appliedAt"] = json!(at);
    }
    if let Some(rejected) = &report.rejected {
        entry["rejected"] = json!(rejected);
    }
    entry
}

impl Reporter {
    /// Writes the RouterReplica when what it would say changed. True when it says what the
    /// replica serves now (written, or unchanged).
    pub(super) async fn write(
        &mut self,
        shared: &Shared,
        objects: &[Arc<RouterConfig>],
        reports: &BTreeMap<ObjectKey, Report>,
        readiness: &Readiness,
    ) -> bool {
        let current = objects
            .iter()
            .filter(|rc| {
                let generation = rc.generation();
                reports
                    .get(&ObjectKey::of(rc))
                    .is_some_and(|r| r.uid == rc.uid() && r.observed_generation == generation)
            })
            .count();
        let mut conditions = self.conditions.clone();
        set_ready_condition(&mut conditions, readiness);
        let status = json!({
            "served": reports.iter().map(|(key, report)| served_entry(key, report)).collect::<Vec<_>>(),
            "synced": format!("{current}/{}", objects.len()),
            "conditions": conditions,
        });
        let marks = shared.unready_marks.load(Ordering::SeqCst);
        let unchanged = marks == self.marks_seen
            && self.last.as_ref().is_some_and(|last| {
                last["served"] == status["served"]
                    && last["synced"] == status["synced"]
                    && lockstep_core::conditions::eq_ignoring_time(&self.conditions, &conditions)
            });
        if unchanged {
            return true;
        }
        let api = api(shared);
        if !self.created {
            if let Err(error) = api
                .patch(
                    &shared.options.replica,
                    &params(),
                    &Patch::Apply(object_body(shared)),
                )
                .await
            {
                tracing::warn!(%error, "writing the RouterReplica failed; will retry");
                return false;
            }
            self.created = true;
        }
        let body = json!({
            "apiVersion": lockstep_crds::API_VERSION,
            "kind": lockstep_crds::REPLICA_KIND,
            "status": status,
        });
        match api
            .patch_status(&shared.options.replica, &params(), &Patch::Apply(&body))
            .await
        {
            Ok(_) => {
                *shared.reported.lock().expect("reported lock") = reports.clone();
                self.conditions = conditions;
                self.last = Some(status);
                self.marks_seen = marks;
                tracing::debug!(replica = %shared.options.replica, "report written");
                true
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                // Deleted under us: create it again on the next pass.
                self.created = false;
                self.last = None;
                false
            }
            Err(error) => {
                tracing::warn!(%error, "writing the report failed; will retry");
                false
            }
        }
    }
}

/// Sets the replica's own `Ready` condition in `conditions` from its readiness.
fn set_ready_condition(conditions: &mut Vec<Condition>, readiness: &Readiness) {
    set_condition(
        conditions,
        NewCondition {
            type_: "Ready",
            status: status_str(readiness.ready),
            reason: readiness.reason.as_str(),
            message: readiness.message.clone(),
            observed_generation: 1,
        },
        Timestamp::now(),
    );
}

/// Says on the RouterReplica why the replica is unready when its sync loop cannot write the
/// report itself (it died or hangs). A merge patch of the `Ready` condition alone: the served
/// entries stay as last reported. The loop's next report, once it works again, replaces it.
pub(super) async fn mark_unready(shared: &Shared, readiness: &Readiness) {
    let mut conditions = Vec::new();
    set_ready_condition(&mut conditions, readiness);
    let body = json!({"status": {"conditions": conditions}});
    // Counted before the write: a report computed meanwhile must not take the mark for its own.
    shared.unready_marks.fetch_add(1, Ordering::SeqCst);
    if let Err(error) = api(shared)
        .patch_status(
            &shared.options.replica,
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        tracing::warn!(%error, "could not write the Ready condition of the RouterReplica");
    }
}

/// Deletes this replica's RouterReplica (leaving the fleet).
pub(super) async fn delete(shared: &Shared) {
    match api(shared)
        .delete(&shared.options.replica, &DeleteParams::default())
        .await
    {
        Ok(_) => tracing::info!(replica = %shared.options.replica, "RouterReplica deleted"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(error) => tracing::warn!(%error, "could not delete the RouterReplica"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lockstep_apiclient::mock::ApiServer;
    use lockstep_core::lease::ReplicaReason;
    use lockstep_crds::Rejection;

    use super::super::tests::{options, replica};
    use super::*;

    const OBJECT: &str = "/apis/lockstep.dev/v1alpha1/namespaces/ns/routerreplicas/r1";

    fn routerconfig(name: &str, uid: &str, generation: i64) -> Arc<RouterConfig> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
                "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": generation},
                "spec": {"fleet": "default", "rules": [{"host": "a.example", "paths": [{
                    "path": "/", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": 80}}
                }]}]}
            }))
            .unwrap(),
        )
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    /// Two RouterConfigs at generation 2: `web` served, `api` still at 1 because its 2 was
    /// rejected; and the reports the plan gives for them.
    fn fleet() -> (Vec<Arc<RouterConfig>>, BTreeMap<ObjectKey, Report>) {
        let objects = vec![routerconfig("web", "u-web", 2), routerconfig("api", "u-api", 2)];
        let reports = BTreeMap::from([
            (
                key("web"),
                Report {
                    uid: "u-web".into(),
                    observed_generation: 2,
                    config_digest: "sha256:web2".into(),
                    applied_at: Some("2026-12-03T10:00:00Z".into()),
                    rejected: None,
                },
            ),
            (
                key("api"),
                Report {
                    uid: "u-api".into(),
                    observed_generation: 1,
                    config_digest: "sha256:api1".into(),
                    applied_at: Some("2026-12-03T09:00:00Z".into()),
                    rejected: Some(Rejection {
                        generation: 2,
                        message: "spec.rules[0].host: not a hostname".into(),
                    }),
                },
            ),
        ]);
        (objects, reports)
    }

    fn serving() -> Readiness {
        Readiness {
            ready: true,
            reason: ReplicaReason::Serving,
            message: "serves the current generation of everything it serves".into(),
        }
    }

    /// The RouterReplica as the apiserver answers a write of it.
    fn stored() -> Value {
        json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterReplica",
            "metadata": {"name": "r1", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"fleet": "default", "namespaces": ["ns"]}
        })
    }

    /// Runs one `Reporter::write` of `fleet()` in the background; its result comes back with
    /// the reporter.
    fn write(shared: &Arc<Shared>, mut reporter: Reporter) -> tokio::task::JoinHandle<(Reporter, bool)> {
        let shared = shared.clone();
        tokio::spawn(async move {
            let (objects, reports) = fleet();
            let written = reporter.write(&shared, &objects, &reports, &serving()).await;
            (reporter, written)
        })
    }

    /// Answers the object apply and the status apply of a first report; the status request.
    async fn first_report(server: &mut ApiServer) -> Value {
        server.next().await.ok(&stored());
        let status = server.next().await;
        let body = status.body.clone();
        status.ok(&stored());
        body
    }

    #[tokio::test]
    async fn a_first_report_applies_the_routerreplica_then_its_status_as_the_replica() {
        let (shared, mut server) = replica(options());
        let written = write(&shared, Reporter::default());

        let object = server.next().await;
        assert_eq!(object.describe(), format!("PATCH {OBJECT}"));
        assert_eq!(
            object.query("fieldManager"),
            Some(lockstep_crds::PROXY_FIELD_MANAGER)
        );
        assert_eq!(object.query("fieldManager"), Some("lockstep-proxy"));
        assert_eq!(object.query("force"), Some("true"));
        assert_eq!(object.content_type, "application/apply-patch+yaml");
        assert_eq!(
            object.body,
            json!({
                "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterReplica",
                "metadata": {"name": "r1", "labels": {"lockstep.dev/fleet": "default"}},
                "spec": {"fleet": "default", "namespaces": ["ns"]},
            })
        );
        object.ok(&stored());

        let status = server.next().await;
        assert_eq!(status.describe(), format!("PATCH {OBJECT}/status"));
        assert_eq!(status.query("fieldManager"), Some("lockstep-proxy"));
        assert_eq!(status.query("force"), Some("true"));
        assert_eq!(status.content_type, "application/apply-patch+yaml");
        assert_eq!(status.body["apiVersion"], "lockstep.dev/v1alpha1");
        assert_eq!(status.body["kind"], "RouterReplica");
        assert!(status.body.get("spec").is_none(), "{}", status.body);
        status.ok(&stored());

        let (_, written) = written.await.unwrap();
        assert!(written);
        assert_eq!(
            *shared.reported.lock().unwrap(),
            fleet().1,
            "what was written is what the join check compares with"
        );
    }

    #[tokio::test]
    async fn the_report_carries_what_the_plan_produced_for_each_routerconfig() {
        let (shared, mut server) = replica(options());
        let written = write(&shared, Reporter::default());
        let body = first_report(&mut server).await;
        assert!(written.await.unwrap().1);

        let status = &body["status"];
        assert_eq!(
            status["served"],
            json!([
                {"namespace": "ns", "name": "api", "uid": "u-api", "observedGeneration": 1,
                 "configDigest": "sha256:api1", "appliedAt": "2026-12-03T09:00:00Z",
                 "rejected": {"generation": 2, "message": "spec.rules[0].host: not a hostname"}},
                {"namespace": "ns", "name": "web", "uid": "u-web", "observedGeneration": 2,
                 "configDigest": "sha256:web2", "appliedAt": "2026-12-03T10:00:00Z"},
            ])
        );
        // A rejected generation is an answer, not a served one.
        assert_eq!(status["synced"], "1/2");
        let conditions = status["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1, "{conditions:?}");
        assert_eq!(conditions[0]["type"], "Ready");
        assert_eq!(conditions[0]["status"], "True");
        assert_eq!(conditions[0]["reason"], "Serving");
    }

    #[tokio::test]
    async fn an_unchanged_report_is_not_written_again() {
        let (shared, mut server) = replica(options());
        let written = write(&shared, Reporter::default());
        first_report(&mut server).await;
        let (reporter, _) = written.await.unwrap();

        let again = write(&shared, reporter);
        server.expect_quiet(Duration::from_millis(100)).await;
        assert!(again.await.unwrap().1, "unchanged is as good as written");
    }

    #[tokio::test]
    async fn a_report_on_a_deleted_routerreplica_applies_the_object_again_next_time() {
        let (shared, mut server) = replica(options());
        let written = write(&shared, Reporter::default());
        server.next().await.ok(&stored());
        server
            .next()
            .await
            .fail(404, "NotFound", "routerreplicas.lockstep.dev \"r1\" not found");
        let (reporter, written) = written.await.unwrap();
        assert!(!written);

        let again = write(&shared, reporter);
        let object = server.next().await;
        assert_eq!(object.describe(), format!("PATCH {OBJECT}"), "the object first");
        assert_eq!(object.body["metadata"]["labels"]["lockstep.dev/fleet"], "default");
        object.ok(&stored());
        let status = server.next().await;
        assert_eq!(status.describe(), format!("PATCH {OBJECT}/status"));
        status.ok(&stored());
        assert!(again.await.unwrap().1);
    }

    #[tokio::test]
    async fn an_unready_mark_merge_patches_the_ready_condition_alone() {
        let (shared, mut server) = replica(options());
        let readiness = Readiness {
            ready: false,
            reason: ReplicaReason::SyncFailed,
            message: "the sync loop panicked".into(),
        };
        let marked = tokio::spawn({
            let shared = shared.clone();
            async move { mark_unready(&shared, &readiness).await }
        });
        let request = server.next().await;
        assert_eq!(request.describe(), format!("PATCH {OBJECT}/status"));
        assert_eq!(request.content_type, "application/merge-patch+json");
        assert_eq!(request.query("fieldManager"), None);
        let status = request.body["status"].as_object().unwrap();
        assert_eq!(
            status.keys().collect::<Vec<_>>(),
            ["conditions"],
            "the served entries stay as last reported"
        );
        let condition = &request.body["status"]["conditions"][0];
        assert_eq!(condition["type"], "Ready");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "SyncFailed");
        assert_eq!(condition["message"], "the sync loop panicked");
        request.ok(&stored());
        marked.await.unwrap();
    }

    /// A pass that hung was marked `SyncStalled` by the Lease loop; when it finishes with the
    /// same report as before the mark, that report must be written again, or the
    /// RouterReplica keeps saying `SyncStalled` about a replica whose loop works.
    #[tokio::test]
    async fn a_report_after_an_unready_mark_is_written_even_when_it_says_what_the_last_did() {
        let (shared, mut server) = replica(options());
        let first = write(&shared, Reporter::default());
        first_report(&mut server).await;
        let (reporter, written) = first.await.unwrap();
        assert!(written);

        let stalled = Readiness {
            ready: false,
            reason: ReplicaReason::SyncStalled,
            message: "a sync pass has run for 11 s".into(),
        };
        let marked = tokio::spawn({
            let shared = shared.clone();
            async move { mark_unready(&shared, &stalled).await }
        });
        server.next().await.ok(&stored());
        marked.await.unwrap();

        let again = write(&shared, reporter);
        let status = server.next().await;
        assert_eq!(status.describe(), format!("PATCH {OBJECT}/status"));
        assert_eq!(status.body["status"]["conditions"][0]["reason"], "Serving");
        status.ok(&stored());
        assert!(again.await.unwrap().1);
    }
}
