//! What a replica serves next, and what it reports: the one plan of both the Kubernetes
//! fleet sync and the standalone file mode. Given the RouterConfigs of the fleet (with the
//! operator's `status.lastAccepted`) and the TLS material, it applies the fleet policy of
//! [`crate::fleet`] and compiles the route table.
//!
//! The plan reads nothing from what the replica served before except to tell whether a swap
//! is needed, so a restarted replica plans exactly what a long-running one does.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use jiff::Timestamp;
use lockstep_crds::{Rejection, RouterConfig, RouterConfigSpec};

use crate::{Candidate, ObjectKey, RouteTable, config_digest, resolve_fleet};

/// What one RouterConfig contributes to the served configuration.
#[derive(Debug, Clone)]
pub struct ServedObject {
    /// namespace/name.
    pub key: ObjectKey,
    /// metadata.uid: a RouterConfig deleted and created again under the same name is
    /// another object, whatever its generation.
    pub uid: String,
    /// The generation being served.
    pub generation: i64,
    /// The digest reported for it (spec plus TLS material).
    pub digest: String,
    /// The spec being served.
    pub spec: Arc<RouterConfigSpec>,
}

/// Everything a replica serves, replaced as a whole: requests that started on one
/// `ServedConfig` finish on it.
#[derive(Debug, Default)]
pub struct ServedConfig {
    /// The compiled routes of all served objects.
    pub table: RouteTable,
    /// The objects behind the table, by namespace/name.
    pub objects: BTreeMap<ObjectKey, ServedObject>,
}

impl ServedConfig {
    /// The served objects as `namespace/name@generation`, for logs.
    pub fn generations(&self) -> Vec<String> {
        self.objects
            .values()
            .map(|o| format!("{}@{}", o.key, o.generation))
            .collect()
    }
}

/// What a replica reports for one RouterConfig on its RouterReplica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// metadata.uid of the RouterConfig reported on ("" for a file's object).
    pub uid: String,
    /// Generation served (0: nothing good yet).
    pub observed_generation: i64,
    /// Digest of what is served.
    pub config_digest: String,
    /// When the served generation was swapped in.
    pub applied_at: Option<String>,
    /// The newest generation, when it is not served.
    pub rejected: Option<Rejection>,
}

impl Report {
    /// True when `generation` is processed: served, or rejected and reported as such. A
    /// rejection is never counted as applied by the operator, but it is an answer.
    pub fn processed(&self, generation: i64) -> bool {
        self.observed_generation == generation
            || self.rejected.as_ref().is_some_and(|r| r.generation == generation)
    }
}

/// The outcome of one planning pass.
#[derive(Debug)]
pub struct Plan {
    /// The configuration to swap in, when it differs from the served one.
    pub next: Option<ServedConfig>,
    /// The entry to report per RouterConfig of the fleet.
    pub reports: BTreeMap<ObjectKey, Report>,
    /// The verdict on the current generation of each RouterConfig of the fleet.
    pub verdicts: BTreeMap<ObjectKey, crate::Verdict>,
    /// The Secret whose certificate is presented for each TLS host: decided by the fleet
    /// policy from what is served, like the routes.
    pub certificates: BTreeMap<String, crate::fleet::CertificateChoice>,
}

/// TLS as the planner sees it: hashes of the material served per Secret (namespace/name),
/// and TLS problems per RouterConfig.
#[derive(Debug, Default, Clone)]
pub struct TlsView {
    /// Hash of the material each Secret serves.
    pub hashes: BTreeMap<ObjectKey, String>,
    /// Problems with a RouterConfig's TLS, naming the field.
    pub problems: BTreeMap<ObjectKey, String>,
}

/// The namespaces whose EndpointSlices and Services a replica reads: it can resolve a
/// Service of these only. A RouterConfig's own namespace is always among them (the replica
/// reads RouterConfigs from the same namespaces); `service.namespace` may name another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Watched {
    /// Every namespace (--all-namespaces), and standalone mode, which checks no namespace.
    #[default]
    All,
    /// These namespaces (--watch-namespaces, or the replica's own).
    Namespaces(BTreeSet<String>),
}

impl Watched {
    /// Why a replica watching these namespaces cannot resolve every Service of `spec`, the
    /// spec of a RouterConfig in `namespace`: one problem per Service of a namespace it does
    /// not watch, naming the field. None when it can.
    pub fn unwatched_backends(&self, namespace: &str, spec: &RouterConfigSpec) -> Option<String> {
        let Watched::Namespaces(watched) = self else {
            return None;
        };
        let mut problems = Vec::new();
        for (r, rule) in spec.rules.iter().enumerate() {
            for (p, path) in rule.paths.iter().enumerate() {
                for (field, service) in crate::validate::service_backends(path) {
                    let ns = service.namespace.as_deref().unwrap_or(namespace);
                    if !watched.contains(ns) {
                        let list = watched.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
                        problems.push(format!(
                            "spec.rules[{r}].paths[{p}].{field}.namespace: this replica does not watch namespace {ns} (it watches {list}), so it cannot resolve Service {ns}/{}; add {ns} to the fleet's watched namespaces",
                            service.name
                        ));
                    }
                }
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

/// When a served generation was swapped in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwappedIn {
    /// The incarnation (metadata.uid).
    pub uid: String,
    /// The generation.
    pub generation: i64,
    /// When (RFC 3339), as reported in `appliedAt`.
    pub at: String,
}

/// When each served generation was swapped in, by RouterConfig.
pub type AppliedAt = BTreeMap<ObjectKey, SwappedIn>;

/// Plans the next served configuration. `applied_at` remembers when each served generation
/// was swapped in (updated here for new ones). A generation naming a Service of a namespace
/// outside `watched` is not served (the current one is reported rejected, naming the field),
/// nor is such a last accepted one: a replica never serves a route it cannot resolve.
pub fn plan(
    objects: &[Arc<RouterConfig>],
    served: &ServedConfig,
    tls: &TlsView,
    watched: &Watched,
    applied_at: &mut AppliedAt,
    now: Timestamp,
) -> Plan {
    let unwatched: BTreeMap<ObjectKey, String> = objects
        .iter()
        .filter_map(|rc| {
            let key = ObjectKey::of(rc);
            let problem = watched.unwatched_backends(&key.namespace, &rc.spec)?;
            Some((key, problem))
        })
        .collect();
    let candidates: Vec<Candidate<'_>> = objects
        .iter()
        .map(|rc| {
            let mut candidate = Candidate::of(rc);
            let problem = tls.problems.get(&candidate.key).map(String::as_str);
            candidate.unwatched_backend = unwatched.get(&candidate.key).map(String::as_str);
            candidate.last_accepted = candidate.last_accepted.filter(|(_, spec)| {
                watched
                    .unwatched_backends(&candidate.key.namespace, spec)
                    .is_none()
            });
            candidate.with_tls_problem(problem)
        })
        .collect();
    let resolution = resolve_fleet(candidates.clone());

    let mut next_objects: BTreeMap<ObjectKey, ServedObject> = BTreeMap::new();
    for entry in &resolution.served {
        // The same spec is shared with the previous table when nothing changed, so an
        // unchanged object costs no copy.
        let digest = config_digest(entry.spec, &tls_for(&entry.key, entry.spec, &tls.hashes));
        let spec = match served.objects.get(&entry.key) {
            Some(previous)
                if previous.uid == entry.uid
                    && previous.generation == entry.generation
                    && previous.digest == digest =>
            {
                previous.spec.clone()
            }
            _ => Arc::new(entry.spec.clone()),
        };
        next_objects.insert(
            entry.key.clone(),
            ServedObject {
                key: entry.key.clone(),
                uid: entry.uid.to_owned(),
                generation: entry.generation,
                digest,
                spec,
            },
        );
    }

    let unchanged = next_objects.len() == served.objects.len()
        && next_objects.iter().all(|(k, o)| {
            served
                .objects
                .get(k)
                .is_some_and(|s| s.uid == o.uid && s.generation == o.generation && s.digest == o.digest)
        });

    applied_at.retain(|k, _| next_objects.contains_key(k));
    let stamp = now.to_string();
    for (key, object) in &next_objects {
        if applied_at
            .get(key)
            .is_none_or(|s| s.uid != object.uid || s.generation != object.generation)
        {
            let swapped = SwappedIn {
                uid: object.uid.clone(),
                generation: object.generation,
                at: stamp.clone(),
            };
            applied_at.insert(key.clone(), swapped);
        }
    }

    let reports = candidates
        .iter()
        .map(|candidate| {
            let served_object = next_objects.get(&candidate.key);
            let rejected = resolution.unserved_reason(candidate).map(|message| Rejection {
                generation: candidate.generation,
                message: message.to_owned(),
            });
            let report = Report {
                uid: candidate.uid.to_owned(),
                observed_generation: served_object.map_or(0, |o| o.generation),
                config_digest: served_object.map(|o| o.digest.clone()).unwrap_or_default(),
                applied_at: applied_at.get(&candidate.key).map(|s| s.at.clone()),
                rejected,
            };
            (candidate.key.clone(), report)
        })
        .collect();

    let next = (!unchanged).then(|| {
        let table = RouteTable::compile_served(resolution.served.iter().map(|entry| {
            (
                &entry.key,
                next_objects[&entry.key].spec.as_ref(),
                entry.generated,
            )
        }));
        ServedConfig {
            table,
            objects: next_objects,
        }
    });
    Plan {
        next,
        reports,
        verdicts: resolution.verdicts,
        certificates: resolution.certificates,
    }
}

/// The TLS hashes a spec's digest covers: the Secrets it names, looked up in its namespace.
fn tls_for(
    key: &ObjectKey,
    spec: &RouterConfigSpec,
    tls: &BTreeMap<ObjectKey, String>,
) -> BTreeMap<String, String> {
    crate::tls_secret_names(spec)
        .into_iter()
        .filter_map(|name| {
            tls.get(&ObjectKey::new(key.namespace.clone(), name.clone()))
                .map(|hash| (name, hash.clone()))
        })
        .collect()
}

/// True when the replica has processed the current generation of every RouterConfig of its
/// fleet: it serves it, or it rejected it (a rejection is reported, never counted as applied).
/// The report must be on the same object (uid): a RouterConfig deleted and created again
/// under its name restarts at generation 1, so a report on the old object's generation 1
/// says nothing about the new one.
pub fn in_sync<'a>(
    objects: impl IntoIterator<Item = &'a RouterConfig>,
    reports: &BTreeMap<ObjectKey, Report>,
) -> bool {
    objects.into_iter().all(|rc| {
        let generation = rc.generation();
        reports
            .get(&ObjectKey::of(rc))
            .is_some_and(|r| r.uid == rc.uid() && r.processed(generation))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn mk_rc(name: &str, generation: i64, created_secs: i64, host: &str, path: &str) -> Arc<RouterConfig> {
        let mut rc: RouterConfig = serde_json::from_value(json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": name, "namespace": "ns", "generation": generation},
            "spec": {"rules": [{"host": host, "paths": [{"path": path, "backend": {"url": "http://127.0.0.1:9000"}}]}]}
        }))
        .unwrap();
        rc.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created_secs).unwrap()));
        Arc::new(rc)
    }

    /// `rc` as the operator leaves it after accepting generation `generation` of `spec`.
    fn with_last_accepted(
        rc: &Arc<RouterConfig>,
        generation: i64,
        spec: &RouterConfigSpec,
    ) -> Arc<RouterConfig> {
        let mut rc = (**rc).clone();
        rc.status.get_or_insert_default().last_accepted = Some(lockstep_crds::AcceptedGeneration {
            uid: rc.uid().to_owned(),
            generation,
            spec: spec.clone(),
        });
        Arc::new(rc)
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_000_000).unwrap()
    }

    fn run(objects: &[Arc<RouterConfig>], served: &ServedConfig) -> Plan {
        plan(
            objects,
            served,
            &TlsView::default(),
            &Watched::All,
            &mut BTreeMap::new(),
            now(),
        )
    }

    #[test]
    fn new_generation_is_served_and_reported() {
        let objects = vec![mk_rc("web", 3, 1, "a.example.com", "/")];
        let plan = run(&objects, &ServedConfig::default());
        let next = plan.next.expect("a swap");
        assert!(next.table.lookup("a.example.com", "/x").is_some());
        let report = &plan.reports[&ObjectKey::new("ns", "web")];
        assert_eq!(report.observed_generation, 3);
        assert!(report.config_digest.starts_with("sha256:"));
        assert_eq!(report.rejected, None);
        assert!(in_sync(objects.iter().map(|rc| rc.as_ref()), &plan.reports));
    }

    #[test]
    fn a_report_on_a_deleted_object_does_not_count_for_one_created_again_under_its_name() {
        let incarnation = |uid: &str, host: &str| {
            let mut rc = (*mk_rc("web", 1, 1, host, "/")).clone();
            rc.metadata.uid = Some(uid.to_owned());
            Arc::new(rc)
        };
        let old = incarnation("uid-old", "old.example.com");
        let mut applied_at = BTreeMap::new();
        let first = plan(
            std::slice::from_ref(&old),
            &ServedConfig::default(),
            &TlsView::default(),
            &Watched::All,
            &mut applied_at,
            now(),
        );
        let served = first.next.expect("a first table");

        // Deleted and created again while the replica was frozen: generation 1 again.
        let new = incarnation("uid-new", "new.example.com");
        assert!(
            !in_sync([new.as_ref()], &first.reports),
            "the old object's generation 1 is not the new object's"
        );

        // Even with the very same spec, the new object is a new swap with its own appliedAt.
        let same_spec = incarnation("uid-new", "old.example.com");
        let later = Timestamp::from_second(2_000_000).unwrap();
        let second = plan(
            std::slice::from_ref(&same_spec),
            &served,
            &TlsView::default(),
            &Watched::All,
            &mut applied_at,
            later,
        );
        assert!(second.next.is_some(), "another object is swapped in");
        let report = &second.reports[&ObjectKey::new("ns", "web")];
        assert_eq!(report.uid, "uid-new");
        assert_eq!(report.applied_at, Some(later.to_string()));
        assert!(in_sync([same_spec.as_ref()], &second.reports));
    }

    #[test]
    fn unchanged_generation_does_not_swap() {
        let objects = vec![mk_rc("web", 3, 1, "a.example.com", "/")];
        let served = run(&objects, &ServedConfig::default()).next.unwrap();
        assert!(run(&objects, &served).next.is_none());
    }

    #[test]
    fn conflicting_generation_is_rejected_and_last_good_spec_kept() {
        let old = mk_rc("old", 1, 1, "a.example.com", "/api");
        let web_v1 = mk_rc("web", 1, 2, "b.example.com", "/");
        let served = run(&[old.clone(), web_v1.clone()], &ServedConfig::default())
            .next
            .unwrap();

        // web's generation 2 claims old's host+path; the operator had accepted generation 1.
        let web_v2 = with_last_accepted(&mk_rc("web", 2, 2, "a.example.com", "/api"), 1, &web_v1.spec);
        let objects = vec![old, web_v2];
        let plan = run(&objects, &served);
        let report = &plan.reports[&ObjectKey::new("ns", "web")];
        assert_eq!(report.observed_generation, 1, "still serves generation 1");
        let Rejection { generation, message } = report.rejected.clone().expect("rejected");
        assert_eq!(generation, 2);
        assert!(
            message.contains("spec.rules[0].paths[0]") && message.contains("ns/old"),
            "{message}"
        );
        assert!(plan.next.is_none(), "nothing to swap: the old table stays");
        assert!(
            in_sync(objects.iter().map(|rc| rc.as_ref()), &plan.reports),
            "a rejected generation is processed"
        );
        // A replica that starts now plans the same table: last-good state is in the status.
        let restarted = run(&objects, &ServedConfig::default())
            .next
            .expect("a first table");
        assert_eq!(
            restarted.table.lookup("b.example.com", "/").map(|r| &r.source),
            Some(&ObjectKey::new("ns", "web"))
        );
        assert_eq!(restarted.objects[&ObjectKey::new("ns", "web")].generation, 1);
    }

    /// The operator's barrier relies on this across objects: when an older object takes a
    /// match of a generation the replica served, the replica says so at that very generation
    /// (the generation served does not change), so a report written before the takeover is
    /// the only one that can look applied.
    #[test]
    fn a_served_generation_whose_match_an_older_object_takes_is_reported_rejected() {
        let old_v1 = mk_rc("old", 1, 1, "a.example.com", "/x");
        let web = mk_rc("web", 1, 2, "a.example.com", "/api");
        let served = run(&[old_v1, web.clone()], &ServedConfig::default())
            .next
            .unwrap();

        let old_v2 = mk_rc("old", 2, 1, "a.example.com", "/api");
        let web = with_last_accepted(&web, 1, &web.spec);
        let plan = run(&[old_v2, web], &served);
        let report = &plan.reports[&ObjectKey::new("ns", "web")];
        assert_eq!(
            report.observed_generation, 1,
            "its last accepted generation is still served"
        );
        let rejection = report.rejected.clone().expect("the lost match is reported");
        assert_eq!(rejection.generation, 1);
        assert!(rejection.message.contains("ns/old"), "{}", rejection.message);
        let next = plan.next.expect("the match changes hands");
        assert_eq!(
            next.table.lookup("a.example.com", "/api").map(|r| &r.source),
            Some(&ObjectKey::new("ns", "old"))
        );
    }

    #[test]
    fn a_generation_with_unusable_tls_is_not_served_and_its_routes_do_not_go_live() {
        // Generation 1 serves a.example.com; generation 2 adds b.example.com with a TLS
        // Secret that is missing: b must not be routed (nor redirected to https).
        let v1 = mk_rc("web", 1, 1, "a.example.com", "/");
        let served = run(std::slice::from_ref(&v1), &ServedConfig::default())
            .next
            .unwrap();
        let mut v2 = (*with_last_accepted(&mk_rc("web", 2, 1, "b.example.com", "/"), 1, &v1.spec)).clone();
        v2.spec.rules[0].tls = Some(lockstep_crds::HostTls {
            secret_name: "b-tls".into(),
            redirect_http: true,
        });
        let key = ObjectKey::new("ns", "web");
        let mut tls = TlsView::default();
        tls.problems.insert(
            key.clone(),
            "spec.rules[0].tls.secretName: secret ns/b-tls not found".into(),
        );
        let plan = plan(
            &[Arc::new(v2)],
            &served,
            &tls,
            &Watched::All,
            &mut BTreeMap::new(),
            now(),
        );
        assert!(plan.next.is_none(), "the last good table stays");
        assert!(served.table.lookup("b.example.com", "/").is_none());
        assert!(served.table.lookup("a.example.com", "/").is_some());
        let report = &plan.reports[&key];
        assert_eq!(report.observed_generation, 1);
        assert_eq!(report.rejected.as_ref().map(|r| r.generation), Some(2));
        assert!(report.rejected.as_ref().unwrap().message.contains("b-tls"));
    }

    #[test]
    fn invalid_first_generation_serves_nothing_and_reports_generation_zero() {
        let objects = vec![mk_rc("web", 1, 1, "Not_A_Host", "/")];
        let plan = run(&objects, &ServedConfig::default());
        let report = &plan.reports[&ObjectKey::new("ns", "web")];
        assert_eq!(report.observed_generation, 0);
        assert!(
            report
                .rejected
                .as_ref()
                .unwrap()
                .message
                .contains("spec.rules[0].host")
        );
    }

    #[test]
    fn deleted_object_is_dropped_from_table() {
        let objects = vec![mk_rc("web", 1, 1, "a.example.com", "/")];
        let served = run(&objects, &ServedConfig::default()).next.unwrap();
        let plan = run(&[], &served);
        let next = plan.next.expect("a swap");
        assert!(next.table.lookup("a.example.com", "/").is_none());
        assert!(plan.reports.is_empty());
    }

    #[test]
    fn tls_material_changes_the_digest() {
        let mut rc = (*mk_rc("web", 1, 1, "a.example.com", "/")).clone();
        rc.spec.rules[0].tls = Some(lockstep_crds::HostTls {
            secret_name: "cert".into(),
            redirect_http: false,
        });
        let rc = Arc::new(rc);
        let objects = vec![with_last_accepted(&rc, 1, &rc.spec)];
        let mut tls = TlsView::default();
        tls.hashes
            .insert(ObjectKey::new("ns", "cert"), "sha256:one".to_owned());
        let one = plan(
            &objects,
            &ServedConfig::default(),
            &tls,
            &Watched::All,
            &mut BTreeMap::new(),
            now(),
        );
        tls.hashes
            .insert(ObjectKey::new("ns", "cert"), "sha256:two".to_owned());
        let served = one.next.unwrap();
        let two = plan(
            &objects,
            &served,
            &tls,
            &Watched::All,
            &mut BTreeMap::new(),
            now(),
        );
        assert!(two.next.is_some(), "a rotated certificate is a new configuration");
        let key = ObjectKey::new("ns", "web");
        assert_ne!(one.reports[&key].config_digest, two.reports[&key].config_digest);

        // Bad new material: the replica keeps what it served (digest included) and reports
        // the problem against this generation.
        tls.problems
            .insert(key.clone(), "spec.rules[0].tls.secretName: expired".into());
        let served_two = two.next.unwrap();
        let three = plan(
            &objects,
            &served_two,
            &tls,
            &Watched::All,
            &mut BTreeMap::new(),
            now(),
        );
        assert!(three.next.is_none(), "nothing new is served");
        assert_eq!(three.reports[&key].observed_generation, 1);
        assert_eq!(three.reports[&key].config_digest, two.reports[&key].config_digest);
        assert_eq!(
            three.reports[&key].rejected,
            Some(Rejection {
                generation: 1,
                message: "spec.rules[0].tls.secretName: expired".into()
            })
        );
    }

    /// A replica serves a Service of another namespace only when it watches that namespace:
    /// otherwise it cannot resolve its endpoints, and a route it served would answer 503 while
    /// its report said the generation is served.
    #[test]
    fn a_service_of_a_namespace_the_replica_does_not_watch_is_never_served() {
        let generated = |generation: i64| {
            let rc: RouterConfig = serde_json::from_value(json!({
                "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
                "metadata": {"name": "gw-http", "namespace": "infra", "generation": generation, "uid": "u1",
                    "labels": {"lockstep.dev/generated-from": "Gateway"}},
                "spec": {"rules": [{"host": "app.example.com", "paths": [{"path": "/", "backends": [
                    {"service": {"name": "web", "port": 80}},
                    {"service": {"name": "api", "namespace": "apps", "port": 80}}]}]}]}
            }))
            .unwrap();
            Arc::new(rc)
        };
        let watching = |names: &[&str]| Watched::Namespaces(names.iter().map(|n| n.to_string()).collect());
        let key = ObjectKey::new("infra", "gw-http");
        let plan_with = |objects: &[Arc<RouterConfig>], watched: &Watched| {
            plan(
                objects,
                &ServedConfig::default(),
                &TlsView::default(),
                watched,
                &mut BTreeMap::new(),
                now(),
            )
        };

        let both = plan_with(&[generated(2)], &watching(&["infra", "apps"]));
        let table = both.next.expect("served").table;
        let route = table.lookup("app.example.com", "/").unwrap();
        assert_eq!(
            route
                .backends
                .iter()
                .map(|(b, _)| b.to_string())
                .collect::<Vec<_>>(),
            ["service infra/web:80", "service apps/api:80"]
        );
        assert_eq!(both.reports[&key].observed_generation, 2);
        let all = plan_with(&[generated(2)], &Watched::All);
        assert_eq!(all.reports[&key].observed_generation, 2);

        // Watching only its own namespace: rejected, naming the field, and nothing served,
        // not even the last accepted generation when it names the same Service.
        let current = with_last_accepted(&generated(2), 2, &generated(2).spec);
        let own = plan_with(std::slice::from_ref(&current), &watching(&["infra"]));
        let report = &own.reports[&key];
        assert_eq!(report.observed_generation, 0, "nothing served");
        assert_eq!(
            report.rejected,
            Some(Rejection {
                generation: 2,
                message: "spec.rules[0].paths[0].backends[1].service.namespace: this replica does not watch namespace apps (it watches infra), so it cannot resolve Service apps/api; add apps to the fleet's watched namespaces".into()
            })
        );
        assert_eq!(
            own.verdicts[&key],
            crate::Verdict::Accepted,
            "the operator's verdict"
        );
        assert!(
            own.next
                .is_none_or(|next| next.table.lookup("app.example.com", "/").is_none())
        );
        assert!(
            in_sync([current.as_ref()], &own.reports),
            "a rejection is an answer: the replica joins, the generation is not counted served"
        );
    }
}
