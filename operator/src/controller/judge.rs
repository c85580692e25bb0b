//! What a reconcile decides from, and the call that decides: the fleet policy's verdict on a
//! RouterConfig's spec (with the TLS view of the Secrets it names), the fleet's membership
//! (from the caches, kept as new as the rollout by its quorum reads), and
//! [`lockstep_core::barrier::decide`] over both. Reads only: the status write is the
//! reconcile's.
//!
//! Leases are judged on this process's monotonic clock from when each renewal was observed
//! ([`lockstep_core::lease::LeaseClock`]), never from the proxy's `renewTime`. The operator
//! lists the fleet's Leases at least as new as the RouterConfig ([`confirm_members`]) when it
//! first judges a generation ([`list_for_rollout`], beside the reconcile), and again before
//! `Ready=True` only when a Lease that list showed live ran out in the cache since: a Lease
//! cache that lags behind the RouterConfig cache could otherwise miss a replica that joined
//! before the generation was written, and that replica may be ready while serving the
//! previous one (rule (d) of docs/protocol.md).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use jiff::Timestamp;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Secret};
use kube::{
    Api, Client,
    api::{ListParams, ObjectList, VersionMatch},
    runtime::reflector::{ObjectRef, Store},
};
use lockstep_core::{
    Candidate, ObjectKey, Verdict,
    barrier::{self, Member, TlsProblem, left_out_by_spec, members_serving},
    lease::{GenerationMembers, LeaseView, Mono},
    resolve_fleet,
    tls_material::{CertError, HostCoverage, LoadedCert},
};
use lockstep_crds::{FLEET_LABEL, ReplicaId, RouterConfig, RouterReplica};

use super::{Context, Incarnation, fence::LeaseCacheFence, incarnation, replica_id};
use crate::Result;

/// The fleet policy ([`lockstep_core::fleet`]) applied to `rc` among the RouterConfigs of
/// its fleet, with the TLS problems of each: the same call the replicas' plan makes, so the
/// verdict the operator writes is the one every replica serves by.
pub(super) struct SpecJudgement {
    verdict: Verdict,
    tls_problem: Option<TlsProblem>,
    pub(super) tls_hashes: BTreeMap<String, String>,
    last_accepted: Option<lockstep_crds::AcceptedGeneration>,
}

/// Judges `rc` (which replaces its cached copy, which may be older).
pub(super) fn judge_spec(rc: &RouterConfig, ctx: &Context) -> SpecJudgement {
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
    let last_accepted = lockstep_core::last_accepted(&ours, &verdict);
    let (tls_hashes, tls_problem) = views.into_iter().last().expect("rc itself");
    SpecJudgement {
        verdict,
        tls_problem,
        tls_hashes,
        last_accepted,
    }
}

/// TLS digest inputs and problems of a RouterConfig, from the Secrets it names. A Secret that
/// does not exist yet is a wait (cert-manager and GitOps often create it after the
/// RouterConfig); one that exists but cannot be served (the replicas' own test,
/// [`lockstep_core::tls_material::servable`]) is not accepted.
fn tls_view(rc: &RouterConfig, secrets: &Store<Secret>) -> (BTreeMap<String, String>, Option<TlsProblem>) {
    let ns = ObjectKey::of(rc).namespace;
    let now = jiff::Timestamp::now().as_second();
    let mut hashes = BTreeMap::new();
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    // One Secret named at `field`, judged by `test` (the replicas' own test of the material:
    // what they would reject is not accepted).
    let mut judge =
        |field: String,
         name: &str,
         test: &dyn Fn(&str, &Secret) -> std::result::Result<LoadedCert, CertError>| {
            let secret = secrets.get(&ObjectRef::new(name).within(&ns));
            match secret.as_deref().map(|secret| {
                test(&format!("{ns}/{name}"), secret)
                    .map(|_| lockstep_core::digest::tls_secret_hash(secret).unwrap_or_default())
            }) {
                Some(Ok(hash)) => {
                    hashes.insert(name.to_owned(), hash);
                }
                Some(Err(error)) => problems.push(format!("{field}: {error}")),
                None => missing.push(format!("{field}: kubernetes.io/tls secret {ns}/{name} not found")),
            }
        };
    let coverage = HostCoverage::of_origin(rc.generated());
    for (i, rule) in rc.spec.rules.iter().enumerate() {
        let Some(tls) = &rule.tls else { continue };
        let host = rule.host.to_ascii_lowercase();
        judge(
            format!("spec.rules[{i}].tls.secretName"),
            &tls.secret_name,
            &|name, secret| lockstep_core::tls_material::servable(name, secret, &host, coverage, now),
        );
    }
    // The certificates presented to TLS backends: the same material test, no host to cover.
    for (field, name) in lockstep_core::digest::client_certificate_names(&rc.spec) {
        judge(field, name, &|name, secret| {
            lockstep_core::tls_material::presentable(name, secret, now)
        });
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

/// Who is in the fleet: the live Leases, each with the instant it stops counting, and the
/// RouterReplicas they stand for.
pub(super) struct Membership {
    live: Vec<(ReplicaId, Mono)>,
    replicas: HashMap<ReplicaId, Arc<RouterReplica>>,
}

impl Membership {
    /// Membership as the caches have it now.
    pub(super) fn cached(ctx: &Context, fleet: &str) -> Self {
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

    /// The live replicas.
    pub(super) fn live(&self) -> impl Iterator<Item = &ReplicaId> {
        self.live.iter().map(|(id, _)| id)
    }

    /// True when a live replica is left out of `rc`'s namespace by its RouterReplica's spec,
    /// which may be stale ([`left_out_by_spec`]): only a list of the RouterReplicas can tell.
    pub(super) fn leaves_out_by_spec(&self, rc: &RouterConfig) -> bool {
        let namespace = ObjectKey::of(rc).namespace;
        !left_out_by_spec(&namespace, &rc.spec.fleet, self.live(), |id| self.replica(id)).is_empty()
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
pub(super) fn judge(
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

/// The membership list of each rollout, by RouterConfig incarnation: in flight for a
/// generation, or made ([`GenerationMembers`]).
#[derive(Default)]
pub(super) struct RolloutLists(HashMap<Incarnation, (i64, Option<GenerationMembers>)>);

impl RolloutLists {
    /// Claims the list of `generation` of `rc`: false when it is made or in flight already.
    fn start(&mut self, rc: &RouterConfig) -> bool {
        match self.0.get(&incarnation(rc)) {
            Some((generation, _)) if *generation == rc.generation() => false,
            _ => {
                self.0.insert(incarnation(rc), (rc.generation(), None));
                true
            }
        }
    }

    /// The list claimed by [`Self::start`] came back (None: it failed, and may be tried again).
    fn finish(&mut self, rc: &RouterConfig, listed: Option<GenerationMembers>) {
        let key = incarnation(rc);
        if self
            .0
            .get(&key)
            .is_some_and(|(generation, _)| *generation == rc.generation())
        {
            match listed {
                Some(listed) => {
                    self.0.insert(key, (rc.generation(), Some(listed)));
                }
                None => {
                    self.0.remove(&key);
                }
            }
        }
    }

    /// Whether the list made for `rc`'s generation still covers a `Ready=True` on it, the
    /// cache showing `cached` ([`GenerationMembers::still_cover`]).
    pub(super) fn still_cover(&self, rc: &RouterConfig, cached: &Membership) -> bool {
        self.0
            .get(&incarnation(rc))
            .and_then(|(_, listed)| listed.as_ref())
            .is_some_and(|listed| listed.still_cover(rc.uid(), rc.generation(), cached.live()))
    }

    /// Forgets the RouterConfigs not in `live`.
    pub(super) fn retain(&mut self, live: &HashSet<Incarnation>) {
        self.0.retain(|key, _| live.contains(key));
    }
}

/// Lists the fleet's Leases for the rollout of `rc`'s generation, once, beside the reconcile
/// (not in its way): at least as new as `rc`, so by rule (d) the Lease cache after it stands
/// for the membership at that generation's `Ready=True` for as long as every Lease it showed
/// live stays live ([`RolloutLists::still_cover`]).
pub(super) fn list_for_rollout(ctx: &Arc<Context>, rc: &Arc<RouterConfig>, cached: Membership) {
    if !ctx.rollout_lists.lock().expect("rollout lists lock").start(rc) {
        return;
    }
    let (ctx, rc) = (ctx.clone(), rc.clone());
    tokio::spawn(async move {
        let listed = match confirm_members(&ctx, &rc, &cached).await {
            Ok(members) => Some(GenerationMembers::listed(
                rc.uid(),
                rc.generation(),
                members.live(),
            )),
            Err(error) => {
                tracing::debug!(routerconfig = %ObjectKey::of(&rc), %error, "could not list the fleet's Leases for the rollout; Ready=True will");
                None
            }
        };
        ctx.rollout_lists
            .lock()
            .expect("rollout lists lock")
            .finish(&rc, listed);
    });
}

/// Membership for a `Ready=True` on `rc`, at least as new as `rc` (rule (d) of
/// docs/protocol.md): the fleet's Leases are listed again, so a Lease cache older than the
/// RouterConfig cannot miss a replica that joined before the generation was written; and when
/// the cache leaves a live replica out because its RouterReplica does not list the namespace
/// ([`left_out_by_spec`]), the fleet's RouterReplicas are listed too (in parallel), so a spec
/// widened since cannot leave out a member that serves an older generation. The live set is
/// taken under the same lock as the relist, so a Lease watch event that lags the list cannot
/// undo it in between.
pub(super) async fn confirm_members(
    ctx: &Context,
    rc: &RouterConfig,
    cached: &Membership,
) -> Result<Membership> {
    let fleet = rc.spec.fleet.as_str();
    let (leases, replicas) = list_membership(
        &ctx.client,
        &ctx.fence,
        fleet,
        rc.metadata.resource_version.as_deref(),
        cached.leaves_out_by_spec(rc),
    )
    .await?;
    if replicas.is_some() {
        ctx.metrics.replica_checks.inc();
    }
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

/// The reads of [`confirm_members`]: the fleet's Leases, and its RouterReplicas when
/// `with_replicas`, each at least as new as `judged` (the resourceVersion of the RouterConfig
/// being judged: `resourceVersionMatch=NotOlderThan`), which is what rule (d) needs; without
/// one, a quorum list. The fence is written beside them so the apiserver's Lease cache reaches
/// `judged` within milliseconds rather than at its next progress request ([`super::fence`]).
async fn list_membership(
    client: &Client,
    fence: &LeaseCacheFence,
    fleet: &str,
    judged: Option<&str>,
    with_replicas: bool,
) -> Result<(ObjectList<Lease>, Option<ObjectList<RouterReplica>>)> {
    let mut params = ListParams::default().labels(&format!("{FLEET_LABEL}={fleet}"));
    if let Some(version) = judged {
        params = params.at(version).matching(VersionMatch::NotOlderThan);
    }
    let leases: Api<Lease> = Api::all(client.clone());
    let rreps: Api<RouterReplica> = Api::all(client.clone());
    let replicas = async {
        match with_replicas {
            true => rreps.list(&params).await.map(Some),
            false => Ok(None),
        }
    };
    let ((), leases, replicas) = futures::try_join!(
        async {
            fence.advance().await;
            Ok(())
        },
        leases.list(&params),
        replicas
    )?;
    Ok((leases, replicas))
}

#[cfg(test)]
mod tests {
    use lockstep_apiclient::mock::{self, Sent};
    use serde_json::json;

    use super::*;

    fn empty_list(kind: &str, version: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": format!("{kind}List"),
               "metadata": {"resourceVersion": version}, "items": []})
    }

    /// Answers the three requests of one membership read, in whatever order they come, and
    /// returns them by kind.
    async fn answer_all(server: &mut mock::ApiServer, expected: usize) -> Vec<(String, Sent)> {
        let mut seen = Vec::new();
        for _ in 0..expected {
            let sent = server.next().await;
            let kind = match sent.path.as_str() {
                p if p.ends_with("/leases/lockstep-operator-cache-fence") => "fence",
                p if p.ends_with("/leases") => "leases",
                p if p.ends_with("/routerreplicas") => "routerreplicas",
                other => panic!("unexpected request {other}"),
            };
            seen.push((kind.to_owned(), sent));
        }
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        seen
    }

    #[tokio::test]
    async fn the_membership_lists_are_not_older_than_the_routerconfig_and_a_fence_is_written() {
        let (client, mut server) = mock::pair();
        let fence = LeaseCacheFence::new(client.clone(), "lockstep-system");
        let read = tokio::spawn(async move {
            list_membership(&client, &fence, "edge", Some("4711"), true)
                .await
                .map(|(l, r)| (l.items.len(), r.map(|r| r.items.len())))
        });
        let mut sent = answer_all(&mut server, 3).await.into_iter();
        let (_, fence) = sent.next().unwrap();
        let (_, leases) = sent.next().unwrap();
        let (_, rreps) = sent.next().unwrap();
        for list in [&leases, &rreps] {
            assert_eq!(list.method.as_str(), "GET", "{}", list.describe());
            assert_eq!(list.query("labelSelector"), Some("lockstep.dev/fleet=edge"));
            // Rule (d): at least as new as the RouterConfig judged, which the apiserver can
            // serve from its watch cache as soon as the cache has seen that revision.
            assert_eq!(list.query("resourceVersion"), Some("4711"), "{}", list.describe());
            assert_eq!(list.query("resourceVersionMatch"), Some("NotOlderThan"));
        }
        assert_eq!(
            fence.describe(),
            "PATCH /apis/coordination.k8s.io/v1/namespaces/lockstep-system/leases/lockstep-operator-cache-fence"
        );
        assert_eq!(fence.content_type, "application/apply-patch+yaml");
        assert_eq!(fence.query("fieldManager"), Some("lockstep-operator-fence"));
        assert!(fence.body["spec"]["renewTime"].is_string(), "{}", fence.body);
        assert!(
            fence.body["metadata"].get("labels").is_none(),
            "no fleet label: no fleet watch sees the fence"
        );
        fence.ok(&json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                         "metadata": {"name": "lockstep-operator-cache-fence", "namespace": "lockstep-system"}}));
        leases.ok(&empty_list("Lease", "4712"));
        rreps.ok(&empty_list("RouterReplica", "4712"));
        assert_eq!(read.await.unwrap().unwrap(), (0, Some(0)));
    }

    #[tokio::test]
    async fn a_fence_refused_does_not_fail_the_membership_read() {
        let (client, mut server) = mock::pair();
        let fence = LeaseCacheFence::new(client.clone(), "lockstep-system");
        let read = tokio::spawn(async move {
            list_membership(&client, &fence, "edge", Some("9"), false)
                .await
                .map(|(l, r)| (l.items.len(), r.is_none()))
        });
        let mut sent = answer_all(&mut server, 2).await.into_iter();
        let (_, fence) = sent.next().unwrap();
        let (_, leases) = sent.next().unwrap();
        fence.fail(403, "Forbidden", "leases is forbidden");
        leases.ok(&empty_list("Lease", "10"));
        assert_eq!(read.await.unwrap().unwrap(), (0, true));
    }
}
