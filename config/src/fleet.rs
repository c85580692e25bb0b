//! Which RouterConfigs of a fleet are accepted: each must be valid on its own, and a host+path
//! belongs to the oldest RouterConfig that claims it (creationTimestamp, then namespace/name).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use lockstep_crds::RouterConfigSpec;

use crate::{ObjectKey, table::match_key, validate::validate_spec};

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
                let key = (host.clone(), match_key(path.path_type, &path.path));
                if let Some((owner, r0, p0)) = owners.get(&key) {
                    conflicts.push(format!(
                        "spec.rules[{r}].paths[{p}]: host {host} {:?} {} is already routed by RouterConfig {owner} (spec.rules[{r0}].paths[{p0}]), which is older",
                        path.path_type, path.path
                    ));
                }
            }
        }
        if conflicts.is_empty() {
            for (r, rule) in candidate.spec.rules.iter().enumerate() {
                let host = rule.host.to_ascii_lowercase();
                for (p, path) in rule.paths.iter().enumerate() {
                    owners.insert((host.clone(), match_key(path.path_type, &path.path)), (candidate.key, r, p));
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
