//! Which RouterConfigs of a fleet are accepted: each must be valid on its own, and a host+path
//! belongs to the oldest RouterConfig that claims it (creationTimestamp, then namespace/name).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use lockstep_crds::RouterConfigSpec;

use crate::{
    ObjectKey,
    table::entry_key,
    validate::{match_suffix, validate_spec},
};

/// One RouterConfig as the resolver sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// namespace/name.
    pub key: &'a ObjectKey,
    /// metadata.creationTimestamp; None sorts last (not yet persisted).
    pub created: Option<Timestamp>,
    /// The spec to judge.
    pub spec: &'a RouterConfigSpec,
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

/// Sorts candidates into precedence order: oldest first, then namespace/name.
pub fn precedence_order(candidates: &mut [Candidate<'_>]) {
    candidates.sort_by(|a, b| {
        let ca = a.created.unwrap_or(Timestamp::MAX);
        let cb = b.created.unwrap_or(Timestamp::MAX);
        ca.cmp(&cb).then_with(|| a.key.cmp(b.key))
    });
}

/// Judges every candidate of one fleet. The verdicts are keyed by namespace/name; the accepted
/// ones, in precedence order, are what a route table is compiled from.
pub fn resolve_fleet<'a>(mut candidates: Vec<Candidate<'a>>) -> Resolution<'a> {
    precedence_order(&mut candidates);
    let mut owners: HashMap<(String, String), (&ObjectKey, usize, usize)> = HashMap::new();
    let mut verdicts = BTreeMap::new();
    let mut accepted = Vec::new();
    for candidate in candidates {
        if let Err(invalid) = validate_spec(candidate.spec) {
            verdicts.insert(candidate.key.clone(), Verdict::Invalid(invalid.to_string()));
            continue;
        }
        let mut conflicts = Vec::new();
        for (r, rule) in candidate.spec.rules.iter().enumerate() {
            let host = rule.host.to_ascii_lowercase();
            for (p, path) in rule.paths.iter().enumerate() {
                let key = (host.clone(), entry_key(path));
                if let Some((owner, r0, p0)) = owners.get(&key) {
                    conflicts.push(format!(
                        "spec.rules[{r}].paths[{p}]: host {host} {:?} {}{} is already routed by RouterConfig {owner} (spec.rules[{r0}].paths[{p0}]), which is older",
                        path.path_type,
                        path.path,
                        match_suffix(path)
                    ));
                }
            }
        }
        if conflicts.is_empty() {
            for (r, rule) in candidate.spec.rules.iter().enumerate() {
                let host = rule.host.to_ascii_lowercase();
                for (p, path) in rule.paths.iter().enumerate() {
                    owners.insert((host.clone(), entry_key(path)), (candidate.key, r, p));
                }
            }
            verdicts.insert(candidate.key.clone(), Verdict::Accepted);
            accepted.push(candidate);
        } else {
            verdicts.insert(candidate.key.clone(), Verdict::Conflict(conflicts.join("; ")));
        }
    }
    Resolution { verdicts, accepted }
}

/// The outcome of [`resolve_fleet`].
#[derive(Debug)]
pub struct Resolution<'a> {
    /// A verdict for every candidate.
    pub verdicts: BTreeMap<ObjectKey, Verdict>,
    /// Accepted candidates in precedence order.
    pub accepted: Vec<Candidate<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

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
            Candidate {
                key: &new,
                created: ts("2025-01-02T00:00:00Z"),
                spec: &new_spec,
            },
            Candidate {
                key: &old,
                created: ts("2025-01-01T00:00:00Z"),
                spec: &old_spec,
            },
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
        assert_eq!(res.accepted.iter().map(|c| c.key).collect::<Vec<_>>(), vec![&old]);
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
        let res = resolve_fleet(
            keys.iter()
                .map(|k| Candidate {
                    key: k,
                    created: t,
                    spec: &spec,
                })
                .collect(),
        );
        assert_eq!(res.verdicts[&keys[2]], Verdict::Accepted, "a/y sorts first");
        assert!(matches!(&res.verdicts[&keys[1]], Verdict::Conflict(m) if m.contains("RouterConfig a/y")));
        assert!(matches!(&res.verdicts[&keys[0]], Verdict::Conflict(m) if m.contains("RouterConfig a/y")));
    }

    #[test]
    fn missing_timestamp_sorts_last() {
        let (a, b) = (ObjectKey::new("a", "unsaved"), ObjectKey::new("z", "saved"));
        let spec = spec_claiming("h", "/");
        let res = resolve_fleet(vec![
            Candidate {
                key: &a,
                created: None,
                spec: &spec,
            },
            Candidate {
                key: &b,
                created: ts("2030-01-01T00:00:00Z"),
                spec: &spec,
            },
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
                .map(|(t, k, s)| Candidate {
                    key: k,
                    created: ts(t),
                    spec: s,
                })
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
        assert_eq!(res.accepted.len(), 2);

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
            Candidate {
                key: &c1,
                created: ts("2025-01-01T00:00:00Z"),
                spec: &s1,
            },
            Candidate {
                key: &c2,
                created: ts("2025-01-02T00:00:00Z"),
                spec: &s2,
            },
            Candidate {
                key: &c3,
                created: ts("2025-01-03T00:00:00Z"),
                spec: &s3,
            },
        ]);
        assert!(matches!(res.verdicts[&c2], Verdict::Conflict(_)));
        assert_eq!(res.verdicts[&c3], Verdict::Accepted);
    }

    #[test]
    fn invalid_message_names_fields() {
        let k = ObjectKey::new("ns", "x");
        let spec = spec_claiming("Bad.Host", "nope");
        let res = resolve_fleet(vec![Candidate {
            key: &k,
            created: None,
            spec: &spec,
        }]);
        let msg = res.verdicts[&k].message().unwrap();
        assert!(
            msg.contains("spec.rules[0].host: ") && msg.contains("spec.rules[0].paths[0].path: "),
            "{msg}"
        );
        assert!(res.accepted.is_empty());
    }
}
