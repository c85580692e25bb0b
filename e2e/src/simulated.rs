//! Proxy replicas simulated for the operator's tests (`operator/tests/simulated/`): no
//! data plane, only what the operator sees of a replica, exactly as the protocol has it
//! behave: a Lease `lockstep-proxy-NAME` labelled with the fleet, renewed every third of its
//! duration, and a RouterReplica NAME whose `status.served` lists what it serves, applied
//! server-side. The end-to-end tests of `e2e/tests/` run real proxies instead.

use std::{collections::BTreeMap, time::Duration};

use jiff::Timestamp;
use k8s_openapi::{api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::MicroTime};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use lockstep_crds::{FLEET_LABEL, PROXY_FIELD_MANAGER, RouterConfig, RouterReplica, proxy_lease_name};
use serde_json::json;

use crate::{
    ControlPlane, eventually,
    fixture::Fixture,
    fleet::{Operator, OperatorSpec},
};

/// How long the operator's tests wait for a condition.
pub const WAIT: Duration = Duration::from_secs(30);

/// Starts the real operator binary with `extra` flags.
pub fn start_operator(cp: &ControlPlane, name: &str, extra: &[&str]) -> Operator {
    Operator::start(
        cp,
        &cp.test_dir("operator"),
        OperatorSpec {
            extra: extra.iter().map(|s| s.to_string()).collect(),
            name: name.to_owned(),
        },
    )
    .expect("start the operator")
}

/// Simulated replicas of a test's fleet.
impl Fixture {
    /// A simulated replica of this fleet with its Lease and RouterReplica in this namespace,
    /// serving this namespace.
    pub fn replica(&self, name: &str, lease_seconds: i32) -> SimulatedReplica {
        self.replica_in(&self.ns, name, lease_seconds, &[&self.ns])
    }

    /// A simulated replica of this fleet living in `namespace` and serving `serves` ("*" for
    /// every namespace).
    pub fn replica_in(
        &self,
        namespace: &str,
        name: &str,
        lease_seconds: i32,
        serves: &[&str],
    ) -> SimulatedReplica {
        SimulatedReplica {
            name: name.to_owned(),
            serves: serves.iter().map(|s| s.to_string()).collect(),
            rc_ns: self.ns.clone(),
            fleet: self.fleet.clone(),
            leases: Api::namespaced(self.client.clone(), namespace),
            replicas: Api::namespaced(self.client.clone(), namespace),
            lease_seconds,
            clock_skew: jiff::SignedDuration::ZERO,
            renewer: None,
            served: Default::default(),
        }
    }

    /// Waits for a condition of the current generation of `name` to satisfy `pred`.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        what: &str,
        pred: impl Fn(&Cond) -> bool,
    ) -> (RouterConfig, Cond) {
        eventually(&format!("{name}: {type_} {what}"), WAIT, || async {
            let rc = self.get(name).await;
            let c = condition(&rc, type_)?;
            (c.generation == rc.metadata.generation.unwrap_or(0) && pred(&c)).then_some((rc, c))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; logs in {}", self.dir.display()))
    }
}

/// A condition as a test looks at it.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // the condition's own fields
pub struct Cond {
    pub status: String,
    pub reason: String,
    pub message: String,
    /// Its observedGeneration (-1 when unset).
    pub generation: i64,
}

/// Condition `type_` of `rc`.
pub fn condition(rc: &RouterConfig, type_: &str) -> Option<Cond> {
    let c = rc.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some(Cond {
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        generation: c.observed_generation.unwrap_or(-1),
    })
}

/// The digest a replica serving `rc`'s spec (no TLS) reports.
pub fn digest_of(rc: &RouterConfig) -> String {
    lockstep_core::config_digest(&rc.spec, &BTreeMap::new())
}

/// A proxy replica as the operator sees one: a Lease and a RouterReplica, no data plane.
pub struct SimulatedReplica {
    /// Its name: of its RouterReplica, and of its Lease after the `lockstep-proxy-` prefix.
    pub name: String,
    /// The namespaces it serves.
    serves: Vec<String>,
    /// The namespace of the RouterConfigs it reports on.
    rc_ns: String,
    fleet: String,
    /// How far its wall clock is off: written into every renewTime.
    pub clock_skew: jiff::SignedDuration,
    /// Its Lease and RouterReplica, in the namespace it lives in.
    leases: Api<Lease>,
    replicas: Api<RouterReplica>,
    lease_seconds: i32,
    renewer: Option<tokio::task::JoinHandle<()>>,
    /// What it reports, by RouterConfig name: every apply carries the whole list.
    served: std::sync::Mutex<BTreeMap<String, serde_json::Value>>,
}

async fn apply_lease(api: &Api<Lease>, name: &str, fleet: &str, seconds: i32, skew: jiff::SignedDuration) {
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": proxy_lease_name(name), "labels": {FLEET_LABEL: fleet}},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": seconds,
                 "renewTime": MicroTime(Timestamp::now() + skew)}
    });
    api.patch(
        &proxy_lease_name(name),
        &PatchParams::apply(PROXY_FIELD_MANAGER).force(),
        &Patch::Apply(lease),
    )
    .await
    .expect("apply the replica's Lease");
}

impl SimulatedReplica {
    /// Takes the Lease and keeps renewing it every third of its duration.
    pub async fn join(&mut self) {
        self.ensure_object().await;
        self.renew_once().await;
        let (api, name, fleet, seconds, skew) = (
            self.leases.clone(),
            self.name.clone(),
            self.fleet.clone(),
            self.lease_seconds,
            self.clock_skew,
        );
        self.renewer = Some(tokio::spawn(async move {
            let every = Duration::from_millis(seconds as u64 * 1000 / 3);
            loop {
                tokio::time::sleep(every).await;
                apply_lease(&api, &name, &fleet, seconds, skew).await;
            }
        }));
    }

    /// Renews the Lease once, now.
    pub async fn renew_once(&self) {
        apply_lease(
            &self.leases,
            &self.name,
            &self.fleet,
            self.lease_seconds,
            self.clock_skew,
        )
        .await;
    }

    /// Stops renewing, as a crashed replica does: the Lease stays until it expires.
    pub fn crash(&mut self) {
        if let Some(task) = self.renewer.take() {
            task.abort();
        }
    }

    /// Deletes the Lease, as a replica leaving cleanly does.
    pub async fn leave(&mut self) {
        self.crash();
        self.leases
            .delete(&proxy_lease_name(&self.name), &DeleteParams::default())
            .await
            .expect("delete Lease");
    }

    /// Reports serving `generation` of `rc` (the object of that name now) with `digest`.
    pub async fn report(&self, api: &Api<RouterConfig>, rc: &str, generation: i64, digest: &str) {
        let uid = uid_of(api, rc).await;
        self.report_on(rc, &uid, generation, digest).await;
    }

    /// Reports serving `generation` of the object `rc` whose metadata.uid is `uid`.
    pub async fn report_on(&self, rc: &str, uid: &str, generation: i64, digest: &str) {
        self.write_entry(
            rc,
            json!({"namespace": self.rc_ns, "name": rc, "uid": uid, "observedGeneration": generation,
                   "configDigest": digest, "appliedAt": Timestamp::now().to_string()}),
        )
        .await;
    }

    /// Reports that `rejected` failed to apply while it keeps serving `serving`.
    pub async fn reject(
        &self,
        api: &Api<RouterConfig>,
        rc: &str,
        serving: i64,
        digest: &str,
        rejected: i64,
        message: &str,
    ) {
        let uid = uid_of(api, rc).await;
        self.write_entry(
            rc,
            json!({"namespace": self.rc_ns, "name": rc, "uid": uid, "observedGeneration": serving, "configDigest": digest,
                   "appliedAt": Timestamp::now().to_string(),
                   "rejected": {"generation": rejected, "message": message}}),
        )
        .await;
    }

    /// Reports the current generation of `rc` as served.
    pub async fn report_current(&self, api: &Api<RouterConfig>, rc: &str) -> i64 {
        let object = api.get(rc).await.unwrap();
        let generation = object.metadata.generation.unwrap();
        self.report_on(rc, object.uid(), generation, &digest_of(&object))
            .await;
        generation
    }

    async fn ensure_object(&self) {
        self.apply_object(&self.fleet.clone()).await;
    }

    async fn apply_object(&self, fleet: &str) {
        let body = json!({
            "apiVersion": lockstep_crds::API_VERSION, "kind": lockstep_crds::REPLICA_KIND,
            "metadata": {"name": self.name, "labels": {FLEET_LABEL: self.fleet}},
            "spec": {"fleet": fleet, "namespaces": self.serves}
        });
        self.replicas
            .patch(
                &self.name,
                &PatchParams::apply(PROXY_FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .expect("apply the RouterReplica");
    }

    /// Rewrites the RouterReplica's spec as a hand-written object might have it.
    pub async fn set_spec(&mut self, fleet: &str, serves: &[&str]) {
        self.serves = serves.iter().map(|s| s.to_string()).collect();
        self.apply_object(fleet).await;
    }

    /// Adds a raw entry to what it reports (for hand-written garbage).
    pub async fn report_raw(&self, key: &str, entry: serde_json::Value) {
        self.write_entry(key, entry).await;
    }

    async fn write_entry(&self, rc: &str, entry: serde_json::Value) {
        self.ensure_object().await;
        let served: Vec<serde_json::Value> = {
            let mut served = self.served.lock().unwrap();
            served.insert(rc.to_owned(), entry);
            served.values().cloned().collect()
        };
        let body = json!({
            "apiVersion": lockstep_crds::API_VERSION, "kind": lockstep_crds::REPLICA_KIND,
            "status": {"served": served}
        });
        self.replicas
            .patch_status(
                &self.name,
                &PatchParams::apply(PROXY_FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .expect("apply the replica's report");
    }
}

/// metadata.uid of the RouterConfig `name`.
async fn uid_of(api: &Api<RouterConfig>, name: &str) -> String {
    api.get(name)
        .await
        .expect("get the RouterConfig")
        .uid()
        .to_owned()
}

impl Drop for SimulatedReplica {
    fn drop(&mut self) {
        self.crash();
    }
}
