//! The standalone file mode and Kubernetes mode give the same answer to the same sequence
//! of RouterConfig documents, and a replica that restarts gives the answer of one that ran
//! all along (issue: "serve exactly what was accepted").
//!
//! Kubernetes mode is played without a cluster, through the same calls the processes make:
//! after each edit the operator judges the fleet and records `status.lastAccepted`
//! ([`lockstep_core::last_accepted`]), then each replica plans from the objects as the
//! watch shows them ([`lockstep_core::plan::plan`]). Standalone mode is the proxy's own
//! [`standalone::apply`] on the same documents as a file.

use std::{collections::BTreeMap, sync::Arc};

use lockstep_core::{
    Candidate, ObjectKey, ServedConfig,
    plan::{self, TlsView},
    resolve_fleet,
};
use lockstep_crds::{AcceptedGeneration, RouterConfig};
use lockstep_proxy::{standalone, state::ProxyState};
use proptest::prelude::*;
use serde_json::json;

const NAMES: [&str; 3] = ["r0", "r1", "r2"];
const HOSTS: [&str; 2] = ["a.example.com", "b.example.com"];
const PATHS: [&str; 2] = ["/", "/x"];

/// One RouterConfig's document at one step: absent, or its entries (host, path) and whether
/// it carries a typo that makes it invalid.
#[derive(Debug, Clone)]
enum Doc {
    Absent,
    Present {
        entries: Vec<(usize, usize)>,
        typo: bool,
    },
}

fn doc() -> impl Strategy<Value = Doc> {
    prop_oneof![
        1 => Just(Doc::Absent),
        4 => (proptest::collection::vec((0..HOSTS.len(), 0..PATHS.len()), 1..4), proptest::bool::weighted(0.3))
            .prop_map(|(entries, typo)| Doc::Present { entries, typo }),
    ]
}

/// The document of `name` at `step`: each entry's backend names the object and the step,
/// so an answer says which version of which object serves it.
fn render(name: &str, step: usize, doc: &Doc) -> Option<serde_json::Value> {
    let Doc::Present { entries, typo } = doc else {
        return None;
    };
    let mut rules: Vec<serde_json::Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for &(h, p) in entries {
        // A duplicate within one object is an admission error, not part of this property.
        if !seen.insert((h, p)) {
            continue;
        }
        let port = 10_000 + NAMES.iter().position(|n| *n == name).unwrap() * 1_000 + step;
        rules.push(json!({"host": HOSTS[h], "paths": [
            {"path": PATHS[p], "pathType": "Exact", "backend": {"url": format!("http://127.0.0.1:{port}")}}]}));
    }
    if *typo {
        rules.push(
            json!({"host": "Not_A_Host", "paths": [{"path": "/", "backend": {"url": "http://127.0.0.1:1"}}]}),
        );
    }
    Some(
        json!({"apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
        "metadata": {"name": name, "namespace": "default"}, "spec": {"rules": rules}}),
    )
}

/// Who answers each host and path: the backend URL of the route, or None for a 404.
fn answers(config: &ServedConfig) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for host in HOSTS {
        for path in PATHS {
            out.push(
                config
                    .table
                    .lookup(host, path)
                    .map(|r| format!("{} {:?}", r.source, r.backends[0].0)),
            );
        }
    }
    out
}

/// Kubernetes mode: the objects as stored, the operator's status, and one replica that runs
/// throughout.
#[derive(Default)]
struct Cluster {
    /// name -> (generation, spec document, creation order): the apiserver stamps each object
    /// when it is created, and the standalone proxy stamps each document when it first sees
    /// it, in file order, so both order the same objects alike.
    objects: BTreeMap<String, (i64, serde_json::Value, i64)>,
    created: i64,
    last_accepted: BTreeMap<String, AcceptedGeneration>,
    running: Arc<ServedConfig>,
}

impl Cluster {
    fn edit(&mut self, name: &str, doc: Option<serde_json::Value>) {
        match doc {
            None => {
                // Deleting an object deletes its status with it.
                self.objects.remove(name);
                self.last_accepted.remove(name);
            }
            Some(doc) => {
                let (generation, created) = match self.objects.get(name) {
                    Some((g, old, c)) if old["spec"] == doc["spec"] => (*g, *c),
                    Some((g, _, c)) => (g + 1, *c),
                    None => {
                        self.created += 1;
                        (1, self.created)
                    }
                };
                self.objects.insert(name.to_owned(), (generation, doc, created));
            }
        }
    }

    fn stored(&self) -> Vec<Arc<RouterConfig>> {
        self.objects
            .iter()
            .map(|(name, (generation, doc, created))| {
                let mut rc: RouterConfig = serde_json::from_value(doc.clone()).unwrap();
                rc.metadata.generation = Some(*generation);
                rc.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::from_second(*created).unwrap(),
                ));
                if let Some(accepted) = self.last_accepted.get(name) {
                    rc.status.get_or_insert_default().last_accepted = Some(accepted.clone());
                }
                Arc::new(rc)
            })
            .collect()
    }

    /// The operator's pass: every RouterConfig judged among its fleet, lastAccepted recorded.
    fn operator(&mut self) {
        let stored = self.stored();
        let candidates: Vec<Candidate<'_>> = stored.iter().map(|rc| Candidate::of(rc)).collect();
        let resolution = resolve_fleet(candidates.clone());
        for candidate in &candidates {
            let verdict = &resolution.verdicts[&candidate.key];
            match lockstep_core::last_accepted(candidate, verdict) {
                Some(accepted) => self.last_accepted.insert(candidate.key.name.clone(), accepted),
                None => self.last_accepted.remove(&candidate.key.name),
            };
        }
    }

    /// A replica's pass over the objects as its watch shows them.
    fn plan(&self, served: &ServedConfig) -> plan::Plan {
        plan::plan(
            &self.stored(),
            served,
            &TlsView::default(),
            &plan::Watched::All,
            &mut BTreeMap::new(),
            jiff::Timestamp::now(),
        )
    }

    fn replica_pass(&mut self) {
        if let Some(next) = self.plan(&self.running).next {
            self.running = Arc::new(next);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn standalone_and_kubernetes_mode_and_a_restarted_replica_agree(
        steps in proptest::collection::vec(proptest::collection::vec(doc(), NAMES.len()), 1..8)
    ) {
        let mut cluster = Cluster::default();
        let standalone_state = ProxyState::new("standalone");
        let mut accepted = standalone::AcceptedGenerations::default();
        for (step, docs) in steps.iter().enumerate() {
            let rendered: Vec<Option<serde_json::Value>> =
                NAMES.iter().zip(docs).map(|(name, doc)| render(name, step, doc)).collect();

            // Kubernetes: the edit lands, the replica sees it before the operator has judged
            // it, then the operator's status write, then the replica again.
            for (name, doc) in NAMES.iter().zip(&rendered) {
                cluster.edit(name, doc.clone());
            }
            cluster.replica_pass();
            cluster.operator();
            cluster.replica_pass();
            let restarted = cluster.plan(&ServedConfig::default()).next.unwrap_or_default();

            // Standalone: the same documents as one file.
            let file = rendered
                .iter()
                .flatten()
                .map(|d| serde_json::to_string(d).unwrap())
                .collect::<Vec<_>>()
                .join("\n---\n");
            standalone::apply(&standalone_state, &mut accepted, "fleet.yaml", &file, "default").unwrap();

            let running = answers(&cluster.running);
            prop_assert_eq!(&running, &answers(&restarted), "step {}: a restarted replica differs", step);
            prop_assert_eq!(&running, &answers(&standalone_state.served()), "step {}: standalone differs", step);

            // The promises behind the policy, checked on the answers themselves.
            let stored = cluster.stored();
            let resolution = resolve_fleet(stored.iter().map(|rc| Candidate::of(rc)).collect());
            for rc in &stored {
                let key = ObjectKey::of(rc);
                let served_spec = if resolution.verdicts[&key].is_accepted() {
                    // Accepted (so Ready once every replica reports it): all its routes are
                    // served, by it.
                    Some(&rc.spec)
                } else {
                    // Rejected: what it last had accepted is still served by it, unless an
                    // older RouterConfig claims an entry now.
                    rc.last_accepted().map(|a| &a.spec)
                };
                for rule in served_spec.into_iter().flat_map(|s| &s.rules) {
                    for p in &rule.paths {
                        let route = cluster.running.table.lookup(&rule.host, &p.path);
                        let created = |k: &ObjectKey| cluster.objects.get(&k.name).map(|o| o.2);
                        let older_holds = route.is_some_and(|r| created(&r.source) < created(&key));
                        prop_assert!(
                            route.is_some_and(|r| r.source == key) || (!resolution.verdicts[&key].is_accepted() && older_holds),
                            "step {}: {} {}{} is not served by {}", step, key, rule.host, p.path, key
                        );
                    }
                }
            }
        }
    }
}
