//! Which RouterConfigs of a fleet are accepted, and what every replica of the fleet serves.
//!
//! The one policy, used by the operator's judgement, the Kubernetes-mode plan and the
//! standalone file mode alike:
//! - A generation is accepted when it is valid on its own and claims no host+path+match that
//!   an older RouterConfig (creationTimestamp, then namespace/name) holds.
//! - An accepted generation whose TLS material can be served is served. Otherwise the
//!   object's last accepted generation (`status.lastAccepted`, written by the operator) is
//!   served, and its matches stay claimed: a newer RouterConfig claiming them is in
//!   conflict. One team's typo neither drops its routes nor hands them to another team.
//! - An object never accepted serves nothing and claims nothing.
//! - A TLS host is claimed like a match: the certificate presented for it is the one its
//!   oldest served RouterConfig names. A newer RouterConfig that names another Secret for a
//!   host an older one serves over TLS is in conflict, the message naming the holder; one
//!   that names the same Secret (same namespace) is not, since the certificate is the same.
//!   Without this, two teams naming one host would each have their certificate presented by
//!   whichever replica read theirs first.
//!
//! Last-good state lives in the object's status, not in a replica's memory, so every
//! replica, a restarted one included, serves the same thing for the same objects.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use lockstep_crds::{RouterConfig, RouterConfigSpec};

use crate::{
    ObjectKey,
    table::{Reach, entry_key},
    tls_material::HostCoverage,
    validate::{match_suffix, validate_origin, validate_spec},
};

/// One RouterConfig as the resolver sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// namespace/name.
    pub key: ObjectKey,
    /// metadata.uid ("" for a file's object): which incarnation of `key` this is.
    pub uid: &'a str,
    /// metadata.creationTimestamp; None sorts last (not yet persisted).
    pub created: Option<Timestamp>,
    /// metadata.generation of `spec`.
    pub generation: i64,
    /// The spec to judge.
    pub spec: &'a RouterConfigSpec,
    /// The last generation the operator accepted and its spec.
    pub last_accepted: Option<(i64, &'a RouterConfigSpec)>,
    /// Why the current generation's TLS material cannot be served, naming the field; such a
    /// generation may be accepted but is not served.
    pub tls_problem: Option<&'a str>,
    /// Why this replica cannot resolve a Service of the current generation (a namespace it
    /// does not watch), naming the field: accepted, the generation is still not served
    /// here. Only a replica's plan sets it ([`crate::plan::Watched`]); the operator cannot
    /// know what each replica watches.
    pub unwatched_backend: Option<&'a str>,
    /// The object carries [`lockstep_crds::GENERATED_FROM_LABEL`]: it may say what only
    /// generated RouterConfigs may ([`crate::validate_origin`]).
    pub generated: bool,
}

impl<'a> Candidate<'a> {
    /// A RouterConfig as it is stored: spec, generation and `status.lastAccepted`.
    pub fn of(rc: &'a RouterConfig) -> Self {
        let last_accepted = rc.last_accepted().map(|a| (a.generation, &a.spec));
        Candidate {
            key: ObjectKey::of(rc),
            uid: rc.uid(),
            created: rc.metadata.creation_timestamp.as_ref().map(|t| t.0),
            generation: rc.generation(),
            spec: &rc.spec,
            last_accepted,
            tls_problem: None,
            unwatched_backend: None,
            generated: rc.generated(),
        }
    }

    /// The same candidate with a TLS problem that keeps its generation from being served.
    pub fn with_tls_problem(mut self, problem: Option<&'a str>) -> Self {
        self.tls_problem = problem;
        self
    }

    /// Whether this replica may serve the current generation: accepted, its TLS material and
    /// its Services usable here.
    fn servable(&self, verdict: &Verdict) -> bool {
        verdict.is_accepted() && self.tls_problem.is_none() && self.unwatched_backend.is_none()
    }
}

/// The judgement on one RouterConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and owns all its matches.
    Accepted,
    /// Fails validation; the message names the fields.
    Invalid(String),
    /// Claims a match an older RouterConfig owns; the message names the field and the owner.
    Conflict(String),
}

impl Verdict {
    /// Accepted?
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted)
    }

    /// The message of a rejection.
    pub fn message(&self) -> Option<&str> {
        match self {
            Verdict::Accepted => None,
            Verdict::Invalid(m) | Verdict::Conflict(m) => Some(m),
        }
    }
}

/// What one RouterConfig contributes to what the fleet serves.
#[derive(Debug, Clone)]
pub struct ServedSpec<'a> {
    /// namespace/name.
    pub key: ObjectKey,
    /// metadata.uid: which incarnation of `key` is served.
    pub uid: &'a str,
    /// The generation served: the current one, or the last accepted.
    pub generation: i64,
    /// Its spec.
    pub spec: &'a RouterConfigSpec,
    /// Generated from a Gateway ([`Candidate::generated`]).
    pub generated: bool,
}

/// The certificate a TLS host is presented with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateChoice {
    /// The Secret (namespace/name) that holds it.
    pub secret: ObjectKey,
    /// Whether it must cover the host: not for a Gateway listener's.
    pub coverage: HostCoverage,
    /// The generated RouterConfig (a Gateway listener) whose rule chose it; None for a
    /// RouterConfig's own host. A TLS connection whose SNI name chose one listener's host is
    /// that listener's: a request on it for a host of another listener, or the other way
    /// round, is misdirected (the proxy answers 421; docs/design.md, "SNI is not compared
    /// with Host", says why a RouterConfig's own hosts are not).
    pub listener: Option<ObjectKey>,
}

/// The outcome of [`resolve_fleet`].
#[derive(Debug)]
pub struct Resolution<'a> {
    /// A verdict on the current generation of every candidate.
    pub verdicts: BTreeMap<ObjectKey, Verdict>,
    /// What the fleet serves, in precedence order (a route table compiled in this order
    /// gives every claimed match to its holder).
    pub served: Vec<ServedSpec<'a>>,
    /// The Secret (namespace/name) whose certificate is presented for each TLS host
    /// (lowercase), from the served specs alone, the oldest first.
    pub certificates: BTreeMap<String, CertificateChoice>,
}

impl Resolution<'_> {
    /// Why the current generation of `key` is not served, naming the field; None when it is.
    pub fn unserved_reason<'b>(&'b self, candidate: &'b Candidate<'_>) -> Option<&'b str> {
        match self.verdicts.get(&candidate.key) {
            Some(Verdict::Accepted) => candidate.tls_problem.or(candidate.unwatched_backend),
            Some(verdict) => verdict.message(),
            None => Some("not judged"),
        }
    }
}

/// Sorts candidates into precedence order: oldest first, then namespace/name.
pub fn precedence_order(candidates: &mut [Candidate<'_>]) {
    candidates.sort_by(|a, b| {
        let ca = a.created.unwrap_or(Timestamp::MAX);
        let cb = b.created.unwrap_or(Timestamp::MAX);
        ca.cmp(&cb).then_with(|| a.key.cmp(&b.key))
    });
}

/// Which entry of which RouterConfig holds each host+path+match, per kind of connection
/// (`true`: TLS; a rule answering both claims both, [`Reach`]), and which rule each TLS host
/// (with its Secret).
#[derive(Default)]
struct Claims<'k> {
    owners: HashMap<(bool, String, String), (&'k ObjectKey, usize, usize)>,
    tls_owners: HashMap<String, (&'k ObjectKey, usize, ObjectKey)>,
}

/// The kinds of connection (`true`: TLS) a rule with `reach` answers.
fn sides(reach: Reach) -> impl Iterator<Item = bool> {
    [(false, reach.plain()), (true, reach.tls())]
        .into_iter()
        .filter_map(|(tls, answers)| answers.then_some(tls))
}

/// The TLS hosts of `spec` (lowercase) with the rule index and the Secret (namespace/name)
/// each names.
fn tls_hosts<'s>(
    key: &'s ObjectKey,
    spec: &'s RouterConfigSpec,
) -> impl Iterator<Item = (String, usize, ObjectKey)> + 's {
    spec.rules.iter().enumerate().filter_map(|(r, rule)| {
        let tls = rule.tls.as_ref()?;
        let secret = ObjectKey::new(key.namespace.clone(), tls.secret_name.clone());
        Some((rule.host.to_ascii_lowercase(), r, secret))
    })
}

impl<'k> Claims<'k> {
    /// The entries and TLS hosts of `spec` that someone else holds, as conflict messages.
    fn conflicts(&self, key: &ObjectKey, spec: &RouterConfigSpec, generated: bool) -> Vec<String> {
        let mut conflicts = Vec::new();
        for (host, r, secret) in tls_hosts(key, spec) {
            if let Some((owner, r0, held)) = self.tls_owners.get(&host)
                && *held != secret
            {
                conflicts.push(format!(
                    "spec.rules[{r}].tls.secretName: host {host} is already served over TLS by RouterConfig {owner} (spec.rules[{r0}].tls, Secret {held}), which is older"
                ));
            }
        }
        for (r, rule) in spec.rules.iter().enumerate() {
            let host = rule.host.to_ascii_lowercase();
            let reach = Reach::of(rule, generated);
            for (p, path) in rule.paths.iter().enumerate() {
                let key = entry_key(path);
                let held = sides(reach).find_map(|tls| self.owners.get(&(tls, host.clone(), key.clone())));
                if let Some((owner, r0, p0)) = held {
                    conflicts.push(format!(
                        "spec.rules[{r}].paths[{p}]: host {host} {:?} {}{} is already routed by RouterConfig {owner} (spec.rules[{r0}].paths[{p0}]), which is older",
                        path.path_type,
                        path.path,
                        match_suffix(path)
                    ));
                }
            }
        }
        conflicts
    }

    /// Claims every entry and TLS host of `spec` that nobody holds yet.
    fn claim(&mut self, key: &'k ObjectKey, spec: &RouterConfigSpec, generated: bool) {
        for (host, r, secret) in tls_hosts(key, spec) {
            self.tls_owners.entry(host).or_insert((key, r, secret));
        }
        for (r, rule) in spec.rules.iter().enumerate() {
            let host = rule.host.to_ascii_lowercase();
            for (p, path) in rule.paths.iter().enumerate() {
                for tls in sides(Reach::of(rule, generated)) {
                    self.owners
                        .entry((tls, host.clone(), entry_key(path)))
                        .or_insert((key, r, p));
                }
            }
        }
    }
}

/// Judges every candidate of one fleet and decides what the fleet serves (see the module
/// doc for the policy).
pub fn resolve_fleet<'a>(mut candidates: Vec<Candidate<'a>>) -> Resolution<'a> {
    precedence_order(&mut candidates);
    let mut claims = Claims::default();
    let mut verdicts = BTreeMap::new();
    let mut served = Vec::new();
    for candidate in &candidates {
        let valid =
            validate_spec(candidate.spec).and_then(|()| validate_origin(candidate.spec, candidate.generated));
        let verdict = match valid {
            Err(invalid) => Verdict::Invalid(invalid.to_string()),
            Ok(()) => {
                let conflicts = claims.conflicts(&candidate.key, candidate.spec, candidate.generated);
                if conflicts.is_empty() {
                    Verdict::Accepted
                } else {
                    Verdict::Conflict(conflicts.join("; "))
                }
            }
        };
        if verdict.is_accepted() {
            claims.claim(&candidate.key, candidate.spec, candidate.generated);
        }
        if candidate.servable(&verdict) {
            served.push(ServedSpec {
                key: candidate.key.clone(),
                uid: candidate.uid,
                generation: candidate.generation,
                spec: candidate.spec,
                generated: candidate.generated,
            });
        } else if let Some((generation, spec)) = candidate
            .last_accepted
            // A hand-edited status is not trusted further than a spec would be.
            .filter(|(g, s)| {
                *g <= candidate.generation
                    && validate_spec(s).is_ok()
                    && validate_origin(s, candidate.generated).is_ok()
            })
        {
            // An older RouterConfig may have claimed part of it meanwhile; the table drops
            // those entries, as precedence says.
            claims.claim(&candidate.key, spec, candidate.generated);
            served.push(ServedSpec {
                key: candidate.key.clone(),
                uid: candidate.uid,
                generation,
                spec,
                generated: candidate.generated,
            });
        }
        verdicts.insert(candidate.key.clone(), verdict);
    }
    let mut certificates = BTreeMap::new();
    for entry in &served {
        for (host, _, secret) in tls_hosts(&entry.key, entry.spec) {
            certificates.entry(host).or_insert(CertificateChoice {
                secret,
                coverage: HostCoverage::of_origin(entry.generated),
                listener: entry.generated.then(|| entry.key.clone()),
            });
        }
    }
    Resolution {
        verdicts,
        served,
        certificates,
    }
}

/// The `status.lastAccepted` the operator writes after judging `candidate`: its current
/// generation when that is accepted and its TLS material can be served, else what was there.
pub fn last_accepted(
    candidate: &Candidate<'_>,
    verdict: &Verdict,
) -> Option<lockstep_crds::AcceptedGeneration> {
    if verdict.is_accepted() && candidate.tls_problem.is_none() {
        Some(lockstep_crds::AcceptedGeneration {
            uid: candidate.uid.to_owned(),
            generation: candidate.generation,
            spec: candidate.spec.clone(),
        })
    } else {
        candidate
            .last_accepted
            .map(|(generation, spec)| lockstep_crds::AcceptedGeneration {
                uid: candidate.uid.to_owned(),
                generation,
                spec: spec.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn mk_candidate<'a>(
        key: &ObjectKey,
        created: Option<Timestamp>,
        spec: &'a RouterConfigSpec,
    ) -> Candidate<'a> {
        Candidate {
            key: key.clone(),
            uid: "",
            created,
            generation: 1,
            spec,
            last_accepted: None,
            tls_problem: None,
            unwatched_backend: None,
            generated: false,
        }
    }

    fn ts(s: &str) -> Option<Timestamp> {
        Some(s.parse().unwrap())
    }

    fn spec_claiming(host: &str, path: &str) -> RouterConfigSpec {
        mk_spec(vec![mk_rule(host, vec![mk_prefix(path)])])
    }

    #[test]
    fn older_wins_and_newer_gets_a_conflict_naming_field_and_owner() {
        let (old, new) = (ObjectKey::new("team-b", "old"), ObjectKey::new("team-a", "new"));
        let old_spec = spec_claiming("app.example.com", "/api");
        let new_spec = mk_spec(vec![
            mk_rule("other.example.com", vec![mk_prefix("/")]),
            mk_rule("app.example.com", vec![mk_prefix("/x"), mk_prefix("/api/")]),
        ]);
        // Given newest first: order of input does not matter.
        let res = resolve_fleet(vec![
            mk_candidate(&new, ts("2025-01-02T00:00:00Z"), &new_spec),
            mk_candidate(&old, ts("2025-01-01T00:00:00Z"), &old_spec),
        ]);
        assert_eq!(res.verdicts[&old], Verdict::Accepted);
        assert_eq!(
            res.verdicts[&new],
            Verdict::Conflict(
                "spec.rules[1].paths[1]: host app.example.com Prefix /api/ is already routed by RouterConfig team-b/old (spec.rules[0].paths[0]), which is older".into()
            )
        );
        assert!(!res.verdicts[&new].is_accepted());
        assert!(res.verdicts[&new].message().unwrap().contains("team-b/old"));
        assert_eq!(res.served.iter().map(|c| &c.key).collect::<Vec<_>>(), vec![&old]);
    }

    #[test]
    fn same_timestamp_is_broken_by_namespace_then_name() {
        let keys = [
            ObjectKey::new("b", "a"),
            ObjectKey::new("a", "z"),
            ObjectKey::new("a", "y"),
        ];
        let spec = spec_claiming("h", "/");
        let t = ts("2025-01-01T00:00:00Z");
        let res = resolve_fleet(keys.iter().map(|k| mk_candidate(k, t, &spec)).collect());
        assert_eq!(res.verdicts[&keys[2]], Verdict::Accepted, "a/y sorts first");
        assert!(matches!(&res.verdicts[&keys[1]], Verdict::Conflict(m) if m.contains("RouterConfig a/y")));
        assert!(matches!(&res.verdicts[&keys[0]], Verdict::Conflict(m) if m.contains("RouterConfig a/y")));
    }

    #[test]
    fn missing_timestamp_sorts_last() {
        let (a, b) = (ObjectKey::new("a", "unsaved"), ObjectKey::new("z", "saved"));
        let spec = spec_claiming("h", "/");
        let res = resolve_fleet(vec![
            mk_candidate(&a, None, &spec),
            mk_candidate(&b, ts("2030-01-01T00:00:00Z"), &spec),
        ]);
        assert_eq!(res.verdicts[&b], Verdict::Accepted);
        assert!(matches!(res.verdicts[&a], Verdict::Conflict(_)));
    }

    #[test]
    fn a_rejected_config_claims_nothing() {
        let (bad, conflicted, good) = (
            ObjectKey::new("ns", "bad"),
            ObjectKey::new("ns", "conflicted"),
            ObjectKey::new("ns", "good"),
        );
        // Invalid (duplicate within itself) and oldest: its matches stay free.
        let bad_spec = mk_spec(vec![mk_rule("h", vec![mk_prefix("/a"), mk_prefix("/a")])]);
        // Second: loses "/b" to nobody... it conflicts with nothing but claims "/c" and "/a".
        let conflicted_spec = mk_spec(vec![mk_rule("h", vec![mk_prefix("/c"), mk_prefix("/d")])]);
        let good_spec = mk_spec(vec![mk_rule("h", vec![mk_prefix("/a"), mk_exact("/d")])]);
        let oldest_first = [
            ("2025-01-01T00:00:00Z", &bad, &bad_spec),
            ("2025-01-02T00:00:00Z", &good, &good_spec),
            ("2025-01-03T00:00:00Z", &conflicted, &conflicted_spec),
        ];
        let res = resolve_fleet(
            oldest_first
                .iter()
                .map(|(t, k, s)| mk_candidate(k, ts(t), s))
                .collect(),
        );
        assert!(
            matches!(&res.verdicts[&bad], Verdict::Invalid(m) if m.starts_with("spec.rules[0].paths[1]: duplicate"))
        );
        assert_eq!(
            res.verdicts[&good],
            Verdict::Accepted,
            "the invalid older one does not own /a"
        );
        assert_eq!(
            res.verdicts[&conflicted],
            Verdict::Accepted,
            "Exact /d and Prefix /d do not conflict"
        );
        assert_eq!(res.served.len(), 2);

        // A conflicted config claims nothing either: a third config may take what it wanted.
        let (c1, c2, c3) = (
            ObjectKey::new("n", "c1"),
            ObjectKey::new("n", "c2"),
            ObjectKey::new("n", "c3"),
        );
        let s1 = spec_claiming("h", "/a");
        let s2 = mk_spec(vec![mk_rule("h", vec![mk_prefix("/a"), mk_prefix("/b")])]);
        let s3 = spec_claiming("h", "/b");
        let res = resolve_fleet(vec![
            mk_candidate(&c1, ts("2025-01-01T00:00:00Z"), &s1),
            mk_candidate(&c2, ts("2025-01-02T00:00:00Z"), &s2),
            mk_candidate(&c3, ts("2025-01-03T00:00:00Z"), &s3),
        ]);
        assert!(matches!(res.verdicts[&c2], Verdict::Conflict(_)));
        assert_eq!(res.verdicts[&c3], Verdict::Accepted);
    }

    #[test]
    fn a_gateways_http_and_https_listeners_may_route_the_same_host_and_path() {
        let (http, https) = (ObjectKey::new("ns", "gw-http"), ObjectKey::new("ns", "gw-https"));
        let plain = spec_claiming("*", "/");
        let secure = mk_spec(vec![mk_tls_rule("*", "cert", vec![mk_prefix("/")])]);
        let generated = |key: &ObjectKey, at: &str, spec| {
            let mut c = mk_candidate(key, ts(at), spec);
            c.generated = true;
            c
        };
        let res = resolve_fleet(vec![
            generated(&http, "2025-01-01T00:00:00Z", &plain),
            generated(&https, "2025-01-02T00:00:00Z", &secure),
        ]);
        assert_eq!(
            res.verdicts[&https],
            Verdict::Accepted,
            "one answers plain HTTP, the other TLS"
        );
        // A RouterConfig's own TLS rule answers both kinds: the same route is a conflict.
        let (a, b) = (ObjectKey::new("ns", "a"), ObjectKey::new("ns", "b"));
        let own_plain = spec_claiming("app.test", "/");
        let own_tls = mk_spec(vec![mk_tls_rule("app.test", "cert", vec![mk_prefix("/")])]);
        let res = resolve_fleet(vec![
            mk_candidate(&a, ts("2025-01-01T00:00:00Z"), &own_plain),
            mk_candidate(&b, ts("2025-01-02T00:00:00Z"), &own_tls),
        ]);
        assert!(
            matches!(res.verdicts[&b], Verdict::Conflict(_)),
            "{:?}",
            res.verdicts[&b]
        );
    }

    #[test]
    fn only_a_generated_router_config_may_claim_any_host() {
        let (user, generated) = (ObjectKey::new("ns", "user"), ObjectKey::new("ns", "gw-http"));
        let spec = spec_claiming("*", "/");
        let labelled: RouterConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": "gw-http", "namespace": "ns",
                "labels": {"lockstep.dev/generated-from": "Gateway"}},
            "spec": spec,
        }))
        .unwrap();
        let res = resolve_fleet(vec![
            mk_candidate(&user, ts("2025-01-01T00:00:00Z"), &spec),
            Candidate {
                created: ts("2025-01-02T00:00:00Z"),
                ..Candidate::of(&labelled)
            },
        ]);
        assert!(
            matches!(&res.verdicts[&user], Verdict::Invalid(m) if m.starts_with("spec.rules[0].host: \"*\" (any host) is only for RouterConfigs generated from a Gateway")),
            "{:?}",
            res.verdicts[&user]
        );
        assert_eq!(
            res.verdicts[&generated],
            Verdict::Accepted,
            "the user's claims nothing"
        );
        assert_eq!(res.served.len(), 1);
    }

    #[test]
    fn invalid_message_names_fields() {
        let k = ObjectKey::new("ns", "x");
        let spec = spec_claiming("Bad.Host", "nope");
        let res = resolve_fleet(vec![mk_candidate(&k, None, &spec)]);
        let msg = res.verdicts[&k].message().unwrap();
        assert!(
            msg.contains("spec.rules[0].host: ") && msg.contains("spec.rules[0].paths[0].path: "),
            "{msg}"
        );
        assert!(res.served.is_empty());
    }

    /// An older RouterConfig `a` whose new generation is invalid, and a newer `b` that wants
    /// a's path.
    fn typo_and_grab(
        a_last: Option<(i64, &RouterConfigSpec)>,
    ) -> (Vec<String>, BTreeMap<ObjectKey, Verdict>) {
        let (a, b) = (ObjectKey::new("team-a", "a"), ObjectKey::new("team-b", "b"));
        let a_typo = spec_claiming("Not_A_Host", "/api");
        let b_spec = spec_claiming("app.example.com", "/api");
        let mut ca = mk_candidate(&a, ts("2025-01-01T00:00:00Z"), &a_typo);
        ca.generation = 2;
        ca.last_accepted = a_last;
        let cb = mk_candidate(&b, ts("2025-01-02T00:00:00Z"), &b_spec);
        let res = resolve_fleet(vec![cb, ca]);
        let served = res
            .served
            .iter()
            .map(|s| format!("{}@{}", s.key, s.generation))
            .collect();
        (served, res.verdicts)
    }

    #[test]
    fn a_claim_held_by_a_last_accepted_spec_is_not_up_for_grabs() {
        let a_v1 = spec_claiming("app.example.com", "/api");
        let (served, verdicts) = typo_and_grab(Some((1, &a_v1)));
        assert_eq!(
            served,
            vec!["team-a/a@1"],
            "a keeps serving generation 1, b gets nothing"
        );
        assert!(
            matches!(&verdicts[&ObjectKey::new("team-a", "a")], Verdict::Invalid(m) if m.contains("spec.rules[0].host"))
        );
        assert!(
            matches!(&verdicts[&ObjectKey::new("team-b", "b")], Verdict::Conflict(m) if m.contains("RouterConfig team-a/a")),
            "{verdicts:?}"
        );

        // Never accepted: nothing is served for a and its matches are free.
        let (served, verdicts) = typo_and_grab(None);
        assert_eq!(served, vec!["team-b/b@1"]);
        assert!(verdicts[&ObjectKey::new("team-b", "b")].is_accepted());
    }

    #[test]
    fn an_older_claim_beats_a_last_accepted_spec_and_unusable_tls_serves_the_last_accepted() {
        let (old, a) = (ObjectKey::new("n", "old"), ObjectKey::new("n", "a"));
        let old_spec = spec_claiming("h", "/x");
        let a_v1 = mk_spec(vec![mk_rule("h", vec![mk_prefix("/x"), mk_prefix("/y")])]);
        let a_v2 = spec_claiming("h", "/z");
        let mut ca = mk_candidate(&a, ts("2025-01-02T00:00:00Z"), &a_v2);
        ca.generation = 2;
        ca.last_accepted = Some((1, &a_v1));
        ca.tls_problem = Some("spec.rules[0].tls.secretName: bad PEM");
        let res = resolve_fleet(vec![
            ca.clone(),
            mk_candidate(&old, ts("2025-01-01T00:00:00Z"), &old_spec),
        ]);
        assert!(res.verdicts[&a].is_accepted(), "TLS does not change the verdict");
        assert_eq!(
            res.unserved_reason(&ca),
            Some("spec.rules[0].tls.secretName: bad PEM")
        );
        let served: Vec<_> = res
            .served
            .iter()
            .map(|s| (s.key.name.as_str(), s.generation))
            .collect();
        assert_eq!(
            served,
            vec![("old", 1), ("a", 1)],
            "a serves generation 1, after old"
        );
        let table = crate::RouteTable::compile(res.served.iter().map(|s| (&s.key, s.spec)));
        assert_eq!(
            table.lookup("h", "/x").unwrap().source,
            old,
            "the older claim wins /x"
        );
        assert_eq!(table.lookup("h", "/y").unwrap().source, a);
        assert!(table.lookup("h", "/z").is_none(), "generation 2 is not served");
        // What the operator records stays generation 1.
        let verdict = &res.verdicts[&a];
        assert_eq!(last_accepted(&ca, verdict).map(|l| l.generation), Some(1));
        assert_eq!(
            last_accepted(&ca.with_tls_problem(None), verdict).map(|l| l.generation),
            Some(2)
        );
    }

    #[test]
    fn two_objects_naming_one_tls_host_the_older_owns_it_and_the_newer_is_told_who() {
        let (old, new) = (ObjectKey::new("team-b", "old"), ObjectKey::new("team-a", "new"));
        let old_spec = mk_spec(vec![mk_tls_rule(
            "app.example.com",
            "old-tls",
            vec![mk_prefix("/a")],
        )]);
        // Other paths of the same host: no route conflict, only the certificate.
        let new_spec = mk_spec(vec![
            mk_rule("other.example.com", vec![mk_prefix("/")]),
            mk_tls_rule("app.example.com", "new-tls", vec![mk_prefix("/b")]),
        ]);
        for input in [
            vec![
                mk_candidate(&new, ts("2025-01-02T00:00:00Z"), &new_spec),
                mk_candidate(&old, ts("2025-01-01T00:00:00Z"), &old_spec),
            ],
            vec![
                mk_candidate(&old, ts("2025-01-01T00:00:00Z"), &old_spec),
                mk_candidate(&new, ts("2025-01-02T00:00:00Z"), &new_spec),
            ],
        ] {
            let res = resolve_fleet(input);
            assert_eq!(res.verdicts[&old], Verdict::Accepted);
            assert_eq!(
                res.verdicts[&new],
                Verdict::Conflict(
                    "spec.rules[1].tls.secretName: host app.example.com is already served over TLS by RouterConfig team-b/old (spec.rules[0].tls, Secret team-b/old-tls), which is older".into()
                )
            );
            assert_eq!(
                res.certificates,
                BTreeMap::from([("app.example.com".to_owned(), required("team-b", "old-tls"))])
            );
        }

        // The same Secret of the same namespace is the same certificate: no conflict.
        let (a, b) = (ObjectKey::new("n", "a"), ObjectKey::new("n", "b"));
        let a_spec = mk_spec(vec![mk_tls_rule(
            "h.example.com",
            "shared",
            vec![mk_prefix("/a")],
        )]);
        let b_spec = mk_spec(vec![mk_tls_rule(
            "h.example.com",
            "shared",
            vec![mk_prefix("/b")],
        )]);
        let res = resolve_fleet(vec![
            mk_candidate(&a, ts("2025-01-01T00:00:00Z"), &a_spec),
            mk_candidate(&b, ts("2025-01-02T00:00:00Z"), &b_spec),
        ]);
        assert!(res.verdicts[&b].is_accepted(), "{:?}", res.verdicts[&b]);
    }

    #[test]
    fn certificates_come_from_what_is_served_not_from_rejected_generations() {
        let a = ObjectKey::new("n", "a");
        // Generation 1 (accepted) serves h over TLS; generation 2 drops h's TLS and is rejected.
        let v1 = mk_spec(vec![mk_tls_rule("h.example.com", "h-tls", vec![mk_prefix("/")])]);
        let v2 = mk_spec(vec![mk_rule("Bad_Host", vec![mk_prefix("/")])]);
        let mut c = mk_candidate(&a, ts("2025-01-01T00:00:00Z"), &v2);
        c.generation = 2;
        c.last_accepted = Some((1, &v1));
        let res = resolve_fleet(vec![c.clone()]);
        assert!(!res.verdicts[&a].is_accepted());
        assert_eq!(
            res.certificates,
            BTreeMap::from([("h.example.com".to_owned(), required("n", "h-tls"))]),
            "the last accepted generation's host keeps its certificate"
        );

        // A rejected generation's new Secret does not go live.
        let v3 = mk_spec(vec![mk_tls_rule(
            "h.example.com",
            "other-tls",
            vec![mk_prefix("/")],
        )]);
        let mut c = mk_candidate(&a, ts("2025-01-01T00:00:00Z"), &v3);
        c.generation = 3;
        c.last_accepted = Some((1, &v1));
        c.tls_problem = Some("spec.rules[0].tls.secretName: bad PEM");
        let res = resolve_fleet(vec![c]);
        assert_eq!(res.certificates["h.example.com"], required("n", "h-tls"));

        // A Gateway listener's certificate need not cover its host; a RouterConfig's must.
        let mut c = mk_candidate(&a, ts("2025-01-01T00:00:00Z"), &v1);
        c.generated = true;
        let res = resolve_fleet(vec![c]);
        assert_eq!(
            res.certificates["h.example.com"].coverage,
            HostCoverage::NotRequired
        );
    }

    #[test]
    fn each_tls_host_records_the_listener_of_the_oldest_router_config_serving_it() {
        let (a, b) = (ObjectKey::new("n", "a"), ObjectKey::new("n", "b"));
        // One Secret, two generated RouterConfigs (listeners): a's host and the shared host
        // are a's, b's own is b's.
        let a_spec = mk_spec(vec![
            mk_tls_rule("a.example.com", "tls", vec![mk_prefix("/")]),
            mk_tls_rule("shared.example.com", "tls", vec![mk_prefix("/a")]),
        ]);
        let b_spec = mk_spec(vec![
            mk_tls_rule("b.example.com", "tls", vec![mk_prefix("/")]),
            mk_tls_rule("shared.example.com", "tls", vec![mk_prefix("/b")]),
        ]);
        let candidates = |generated: bool| {
            let mut both = vec![
                mk_candidate(&b, ts("2025-01-02T00:00:00Z"), &b_spec),
                mk_candidate(&a, ts("2025-01-01T00:00:00Z"), &a_spec),
            ];
            for c in &mut both {
                c.generated = generated;
            }
            both
        };
        let listeners = |res: Resolution<'_>| -> BTreeMap<String, Option<ObjectKey>> {
            res.certificates
                .into_iter()
                .map(|(host, choice)| (host, choice.listener))
                .collect()
        };
        assert_eq!(
            listeners(resolve_fleet(candidates(true))),
            BTreeMap::from([
                ("a.example.com".to_owned(), Some(a.clone())),
                ("b.example.com".to_owned(), Some(b.clone())),
                ("shared.example.com".to_owned(), Some(a.clone())),
            ])
        );
        // A RouterConfig's own hosts belong to no listener.
        assert!(
            listeners(resolve_fleet(candidates(false)))
                .values()
                .all(Option::is_none)
        );
    }

    fn required(namespace: &str, name: &str) -> CertificateChoice {
        CertificateChoice {
            secret: ObjectKey::new(namespace, name),
            coverage: HostCoverage::Required,
            listener: None,
        }
    }

    #[test]
    fn a_last_accepted_spec_that_is_invalid_or_from_the_future_is_ignored() {
        let a = ObjectKey::new("n", "a");
        let bad = spec_claiming("Bad_Host", "/");
        let good = spec_claiming("h", "/");
        for (generation, last) in [(2, (1, &bad)), (2, (3, &good))] {
            let mut c = mk_candidate(&a, None, &bad);
            c.generation = generation;
            c.last_accepted = Some(last);
            assert!(resolve_fleet(vec![c]).served.is_empty());
        }
    }
}
