//! Which other RouterConfigs a change to one must re-judge.
//!
//! The fleet policy ([`crate::fleet`]) gives each host+path+match to the oldest RouterConfig
//! that claims it, so a change to one object can change another's verdict and what the
//! replicas serve of it: an older RouterConfig taking a match makes the newer one
//! `Accepted=False, Conflict` (and the replicas drop its route); deleting or narrowing the
//! holder frees the match for the newer one. Judging only the edited object left the other
//! one's status as it was: `Ready=True` for a route no replica served any more.
//!
//! | event on RouterConfig X | re-judged besides X |
//! |---|---|
//! | created, edited, `lastAccepted` written, deleted | every other RouterConfig of X's fleet (before and after the event) naming a host X names, before or after the event, in its spec or its `lastAccepted` |
//! | any other status write (a rollout's progress) | nothing: the claims did not change |
//! | listed again after a watch restart | nothing more: every listed object is judged anyway |
//!
//! Claims are per host+path+match and a TLS host is a rule's host, so two RouterConfigs
//! that name no host in common cannot change each other's verdict; a shared host is a
//! superset of a shared claim, which costs a few needless reconciles and never misses one.
//! The hosts of the previous version come from [`HostIndex`], because the event carries only
//! the new one and an edit that frees a host changes the verdict of the object waiting for it.
//!
//! Cost per event: one pass over the cached RouterConfigs comparing host sets (no request),
//! and one reconcile per RouterConfig that shares a host with X.

use std::collections::{BTreeSet, HashMap};

use lockstep_crds::{RouterConfig, RouterConfigSpec};

use crate::ObjectKey;

/// The hosts `rc` claims or may claim, lowercased: those of its spec and of its
/// `lastAccepted` spec (whose matches stay claimed while a newer generation is not served).
pub fn hosts(rc: &RouterConfig) -> BTreeSet<String> {
    let spec_hosts = |spec: &RouterConfigSpec| {
        spec.rules
            .iter()
            .map(|r| r.host.to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    let mut hosts: BTreeSet<String> = spec_hosts(&rc.spec).into_iter().collect();
    if let Some(accepted) = rc.status.as_ref().and_then(|s| s.last_accepted.as_ref()) {
        hosts.extend(spec_hosts(&accepted.spec));
    }
    hosts
}

/// What of a RouterConfig its claims depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    fleet: String,
    hosts: BTreeSet<String>,
    /// metadata.generation and the `lastAccepted` generation: when both are unchanged, so
    /// are the claims (a status write of a rollout's progress).
    generations: (i64, Option<i64>),
}

impl Seen {
    fn of(rc: &RouterConfig) -> Self {
        Self {
            fleet: rc.spec.fleet.clone(),
            hosts: hosts(rc),
            generations: (
                rc.generation(),
                rc.status
                    .as_ref()
                    .and_then(|s| s.last_accepted.as_ref())
                    .map(|a| a.generation),
            ),
        }
    }
}

/// Each RouterConfig's fleet and hosts as last seen.
#[derive(Debug, Default)]
pub struct HostIndex {
    seen: HashMap<ObjectKey, Seen>,
}

impl HostIndex {
    /// Records `rc` as seen (from a relist: nothing to re-judge, every object is judged).
    pub fn listed(&mut self, rc: &RouterConfig) {
        self.seen.insert(ObjectKey::of(rc), Seen::of(rc));
    }

    /// Forgets everything (a watch restarts its list).
    pub fn clear(&mut self) {
        self.seen.clear();
    }

    /// `rc` was created, changed or (when `deleted`) deleted; `others` are the RouterConfigs
    /// known now. Returns the other RouterConfigs whose verdict the change can alter: those
    /// of its fleet, before or after, that share a host with it, before or after.
    pub fn changed<'a>(
        &mut self,
        rc: &RouterConfig,
        deleted: bool,
        others: impl IntoIterator<Item = &'a RouterConfig>,
    ) -> Vec<ObjectKey> {
        let key = ObjectKey::of(rc);
        let now = Seen::of(rc);
        let before = if deleted {
            self.seen.remove(&key)
        } else {
            self.seen.insert(key.clone(), now.clone())
        };
        if !deleted && before.as_ref() == Some(&now) {
            return Vec::new();
        }
        let mut touched: Vec<Seen> = vec![now];
        touched.extend(before);
        others
            .into_iter()
            .filter(|other| ObjectKey::of(other) != key)
            .filter(|other| {
                let theirs = hosts(other);
                touched
                    .iter()
                    .any(|seen| seen.fleet == other.spec.fleet && !seen.hosts.is_disjoint(&theirs))
            })
            .map(ObjectKey::of)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(name: &str, fleet: &str, hosts: &[&str], last_accepted: &[&str]) -> RouterConfig {
        let spec = |hosts: &[&str]| {
            serde_json::json!({"fleet": fleet, "rules": hosts.iter().map(|h| serde_json::json!(
                {"host": h, "paths": [{"path": "/", "backend": {"url": "http://127.0.0.1:9"}}]})).collect::<Vec<_>>()})
        };
        let mut object = serde_json::json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": spec(hosts),
        });
        if !last_accepted.is_empty() {
            object["status"] =
                serde_json::json!({"lastAccepted": {"generation": 1, "spec": spec(last_accepted)}});
        }
        serde_json::from_value(object).unwrap()
    }

    fn names(keys: Vec<ObjectKey>) -> Vec<String> {
        let mut names: Vec<String> = keys.into_iter().map(|k| k.name).collect();
        names.sort();
        names
    }

    #[test]
    fn an_edit_re_judges_the_routerconfigs_sharing_a_host_before_or_after_it() {
        let older = rc("older", "blue", &["a.test"], &[]);
        let newer = rc("newer", "blue", &["A.test", "c.test"], &[]);
        let unrelated = rc("unrelated", "blue", &["b.test"], &[]);
        let other_fleet = rc("other-fleet", "green", &["a.test"], &[]);
        let mut index = HostIndex::default();
        for o in [&newer, &unrelated, &other_fleet] {
            index.listed(o);
        }
        let all = [&older, &newer, &unrelated, &other_fleet];
        // older is created naming a.test, as newer does (hosts compare without case).
        assert_eq!(names(index.changed(&older, false, all)), ["newer"]);
        // older moves to d.test: newer, waiting for a.test, is re-judged.
        let moved = rc("older", "blue", &["d.test"], &[]);
        let all = [&moved, &newer, &unrelated, &other_fleet];
        assert_eq!(names(index.changed(&moved, false, all)), ["newer"]);
        // A status write that changes no claim (a rollout's progress) re-judges nothing.
        assert!(index.changed(&moved, false, all).is_empty());
        let far = rc("older", "blue", &["e.test"], &[]);
        let all = [&far, &newer, &unrelated, &other_fleet];
        assert!(
            index.changed(&far, false, all).is_empty(),
            "nobody shares d.test or e.test"
        );
        // A host kept claimed by lastAccepted counts too.
        let holding = rc("older", "blue", &["d.test"], &["b.test"]);
        let all = [&holding, &newer, &unrelated, &other_fleet];
        assert_eq!(names(index.changed(&holding, false, all)), ["unrelated"]);
    }

    #[test]
    fn a_deletion_re_judges_who_waited_for_its_hosts_and_forgets_it() {
        let older = rc("older", "blue", &["a.test"], &[]);
        let newer = rc("newer", "blue", &["a.test"], &[]);
        let mut index = HostIndex::default();
        index.listed(&older);
        index.listed(&newer);
        assert_eq!(names(index.changed(&older, true, [&newer])), ["newer"]);
        assert!(!index.seen.contains_key(&ObjectKey::of(&older)));
    }

    #[test]
    fn a_move_to_another_fleet_re_judges_both_fleets() {
        let mover = rc("mover", "blue", &["a.test"], &[]);
        let blue = rc("blue", "blue", &["a.test"], &[]);
        let green = rc("green", "green", &["a.test"], &[]);
        let mut index = HostIndex::default();
        for o in [&mover, &blue, &green] {
            index.listed(o);
        }
        let moved = rc("mover", "green", &["a.test"], &[]);
        assert_eq!(
            names(index.changed(&moved, false, [&moved, &blue, &green])),
            ["blue", "green"]
        );
    }
}
