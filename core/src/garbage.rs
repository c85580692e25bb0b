//! Which RouterReplicas the operator deletes: those of replicas that are gone.
//!
//! A replica that leaves cleanly deletes its Lease and its RouterReplica; one that is
//! SIGKILLed (or whose node vanished, or a local process outside any Pod) leaves both
//! behind, and its RouterReplica's `Ready` condition keeps saying what it said last:
//! `kubectl get rrep` showed a dead replica as ready forever. The operator does not judge
//! membership by RouterReplicas (a RouterReplica without a live Lease counts for nothing), so
//! this is about what people read, and about objects piling up.
//!
//! | the replica's Lease, on the operator's clock | its RouterReplica |
//! |---|---|
//! | live | kept |
//! | ran out (or released) at T | deleted once `after` has passed since T |
//! | never seen, or deleted | deleted once `after` has passed since the operator first saw it so |
//!
//! Deleting a RouterReplica of a replica that is in fact alive (frozen longer than its Lease
//! and `after`, or never able to take its Lease) costs nothing the protocol relies on: such
//! a replica is outside the fleet anyway and must rejoin through the quorum check, and a
//! proxy re-creates its RouterReplica when a write finds it gone. The operator deletes with
//! the resourceVersion it judged as a precondition, so a RouterReplica written again meanwhile
//! is kept. The expired Lease itself stays: it counts for nothing, and RBAC cannot grant the
//! operator delete on proxy Leases without granting it on every Lease.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use lockstep_crds::ReplicaId;

use crate::lease::Mono;

/// Default of `--replica-gc-after`: long enough that a replica paused by a slow node or a
/// debugger keeps its object through a short pause, short enough that a list of replicas
/// is right within a minute of a crash.
pub const DEFAULT_AFTER: Duration = Duration::from_secs(60);

/// The operator's record of RouterReplicas without a live Lease.
#[derive(Debug, Clone, Default)]
pub struct ReplicaGarbage {
    /// When each RouterReplica without a known Lease was first seen so.
    orphaned_since: HashMap<ReplicaId, Mono>,
}

impl ReplicaGarbage {
    /// One sweep at `now` over the RouterReplicas that exist. `lease_until(id)` is when the
    /// replica's Lease stops (or stopped) counting on the operator's clock, None when no
    /// Lease of it is known. Returns the RouterReplicas to delete.
    pub fn sweep<'a>(
        &mut self,
        replicas: impl IntoIterator<Item = &'a ReplicaId>,
        lease_until: impl Fn(&ReplicaId) -> Option<Mono>,
        now: Mono,
        after: Duration,
    ) -> Vec<ReplicaId> {
        let mut orphans = HashSet::new();
        let mut gone = Vec::new();
        for id in replicas {
            let dead_since = match lease_until(id) {
                Some(until) if until > now => continue,
                Some(until) => until,
                None => {
                    orphans.insert(id.clone());
                    *self.orphaned_since.entry(id.clone()).or_insert(now)
                }
            };
            if now.saturating_sub(dead_since) >= after {
                gone.push(id.clone());
            }
        }
        self.orphaned_since.retain(|id, _| orphans.contains(id));
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Mono {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_replica_is_collected_once_its_lease_has_been_dead_for_the_bound() {
        let (p0, p1, orphan) = (
            ReplicaId::new("proxies", "p0"),
            ReplicaId::new("proxies", "p1"),
            ReplicaId::new("proxies", "orphan"),
        );
        let ids = [p0.clone(), p1.clone(), orphan.clone()];
        // p0's Lease ran out at 10, p1's counts until 100, orphan has none.
        let until = |id: &ReplicaId| match id.name.as_str() {
            "p0" => Some(s(10)),
            "p1" => Some(s(100)),
            _ => None,
        };
        let mut garbage = ReplicaGarbage::default();
        assert!(garbage.sweep(&ids, until, s(20), s(60)).is_empty());
        assert_eq!(
            garbage.sweep(&ids, until, s(70), s(60)),
            std::slice::from_ref(&p0)
        );
        // The orphan's clock started when the operator first saw it without a Lease.
        assert_eq!(garbage.sweep(&ids, until, s(80), s(60)), [p0, orphan.clone()]);
        // A Lease appearing resets the orphan's clock.
        let ids = [orphan.clone()];
        assert!(garbage.sweep(&ids, |_| Some(s(200)), s(90), s(60)).is_empty());
        assert!(garbage.sweep(&ids, |_| None, s(100), s(60)).is_empty());
        assert_eq!(garbage.sweep(&ids, |_| None, s(160), s(60)), [orphan]);
    }
}
