//! Writes this replica's `RouterReplica`: the object itself (fleet label, namespaces served,
//! an ownerReference to its Pod) and its status (what it serves of each RouterConfig, and its
//! own readiness), with server-side apply. Only this replica writes it, so every write is one
//! request to one object, whatever the size of the fleet.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use lockstep_config::{
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
        let unchanged = self.last.as_ref().is_some_and(|last| {
            last["served"] == status["served"]
                && last["synced"] == status["synced"]
                && lockstep_config::conditions::eq_ignoring_time(&self.conditions, &conditions)
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
