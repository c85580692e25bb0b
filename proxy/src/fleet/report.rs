//! Writes this replica's `status.replicaStatus` entries with server-side apply under its own
//! field manager, never forced: replicas cannot overwrite each other, and applying an empty
//! status removes exactly this replica's entry.

use std::{collections::BTreeMap, sync::Mutex};

use futures::future::join_all;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use lockstep_config::ObjectKey;
use lockstep_crds::{ReplicaStatus, RouterConfig};
use serde_json::json;

use super::{Report, Shared};

/// resourceVersion our last write for an object produced, and what it said.
static LAST_WRITE: Mutex<BTreeMap<(String, ObjectKey), (u64, Report)>> = Mutex::new(BTreeMap::new());

fn entry_matches(entry: Option<&ReplicaStatus>, report: &Report) -> bool {
    entry.is_some_and(|e| {
        e.observed_generation == report.observed_generation
            && e.config_digest == report.config_digest
            && e.applied_at == report.applied_at
            && e.rejected.as_ref().map(|r| (r.generation, r.message.clone())) == report.rejected
    })
}

fn own_entry<'a>(rc: &'a RouterConfig, replica: &str) -> Option<&'a ReplicaStatus> {
    rc.status
        .as_ref()
        .and_then(|s| s.replica_status.iter().find(|e| e.name == replica))
}

fn resource_version(rc: &RouterConfig) -> u64 {
    rc.metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Writes every entry whose status differs from the report. True when all entries match or
/// were written.
pub(super) async fn write_changed(
    shared: &Shared,
    objects: &[std::sync::Arc<RouterConfig>],
    reports: &BTreeMap<ObjectKey, Report>,
) -> bool {
    let replica = &shared.options.replica;
    let mut writes = Vec::new();
    for rc in objects {
        let key = ObjectKey::of(rc);
        let Some(report) = reports.get(&key) else { continue };
        if entry_matches(own_entry(rc, replica), report) {
            continue;
        }
        // The watch may not have delivered our own last write yet; resourceVersions are
        // etcd revisions, so an object older than that write is simply stale.
        let last = LAST_WRITE
            .lock()
            .expect("last write lock")
            .get(&(replica.clone(), key.clone()))
            .cloned();
        if let Some((rv, written)) = last
            && &written == report
            && resource_version(rc) < rv
        {
            continue;
        }
        writes.push(write(shared, key, report.clone()));
    }
    join_all(writes).await.into_iter().all(|ok| ok)
}

async fn write(shared: &Shared, key: ObjectKey, report: Report) -> bool {
    let replica = &shared.options.replica;
    let api: Api<RouterConfig> = Api::namespaced(shared.client.clone(), &key.namespace);
    let mut entry = json!({
        "name": replica,
        "observedGeneration": report.observed_generation,
        "configDigest": report.config_digest,
    });
    if let Some(at) = &report.applied_at {
        entry["appliedAt"] = json!(at);
    }
    if let Some((generation, message)) = &report.rejected {
        entry["rejected"] = json!({"generation": generation, "message": message});
    }
    let patch = json!({
        "apiVersion": lockstep_crds::API_VERSION,
        "kind": lockstep_crds::KIND,
        "status": {"replicaStatus": [entry]},
    });
    let params = PatchParams::apply(&lockstep_crds::proxy_field_manager(replica));
    match api.patch_status(&key.name, &params, &Patch::Apply(&patch)).await {
        Ok(rc) => {
            LAST_WRITE.lock().expect("last write lock").insert(
                (replica.clone(), key.clone()),
                (resource_version(&rc), report.clone()),
            );
            tracing::debug!(routerconfig = %key, generation = report.observed_generation, "status reported");
            true
        }
        Err(kube::Error::Api(status)) if status.code == 404 => true,
        Err(error) => {
            tracing::warn!(routerconfig = %key, %error, "status report failed; will retry");
            false
        }
    }
}

/// Removes this replica's entry from every RouterConfig that has one.
pub(super) async fn remove_all(shared: &Shared) {
    let replica = &shared.options.replica;
    let params = PatchParams::apply(&lockstep_crds::proxy_field_manager(replica));
    let removals = shared.rc_store.state().into_iter().filter(|rc| own_entry(rc, replica).is_some()).map(|rc| {
        let key = ObjectKey::of(&rc);
        let params = params.clone();
        async move {
            let api: Api<RouterConfig> = Api::namespaced(shared.client.clone(), &key.namespace);
            let patch = json!({"apiVersion": lockstep_crds::API_VERSION, "kind": lockstep_crds::KIND, "status": {}});
            if let Err(error) = api.patch_status(&key.name, &params, &Patch::Apply(&patch)).await {
                tracing::warn!(routerconfig = %key, %error, "could not remove status entry");
            }
        }
    });
    join_all(removals).await;
}
