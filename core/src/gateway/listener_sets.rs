//! ListenerSets: listeners attached to a Gateway from other objects. Which ListenerSets a
//! Gateway admits, in which order their listeners join its own ([`super::listeners::judge_groups`]
//! judges the merged list), and each ListenerSet's status.
//!
//! | ListenerSet naming the Gateway | Accepted | Programmed | its listeners |
//! |---|---|---|---|
//! | not admitted by `spec.allowedListeners` (unset: `from: None`) | False `NotAllowed` | False `NotAllowed` | not merged, no status |
//! | the Gateway is not accepted | False `ParentNotAccepted` | False `ParentNotAccepted` | judged, not served |
//! | no listener it can serve | False `ListenersNotValid` | False `ListenersNotValid` | judged, not served |
//! | some listeners it cannot serve | True `ListenersNotValid` | as below | the others served |
//! | every listener served | True `Accepted` | the worst of its served listeners' (the barrier), False `ParentNotProgrammed` while the Gateway is not programmed | served |
//!
//! A route attaches to a ListenerSet's listeners only through a parentRef of kind
//! ListenerSet (its `sectionName` names one of them); a parentRef to the Gateway reaches the
//! Gateway's own listeners only. `allowedRoutes.namespaces.from: Same` of a ListenerSet's
//! listener means the ListenerSet's namespace.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use lockstep_crds::gateway::{GROUP, Gateway, Listener, ListenerSet, ListenerStatus, ParentReference};

use super::{
    attachment::selector_matches,
    generation_of, key_of,
    status::{condition, reason},
};
use crate::ObjectKey;

/// A ListenerSet whose `parentRef` names the Gateway being translated.
#[derive(Debug, Clone)]
pub struct NamingSet<'a> {
    /// The ListenerSet.
    pub set: &'a ListenerSet,
    /// Its namespace/name.
    pub key: ObjectKey,
    /// Admitted by the Gateway's `allowedListeners`.
    pub allowed: bool,
}

/// The ListenerSets naming `gateway`, in the precedence order of the merged listener list
/// (creation time, oldest first, then namespace/name), each with whether the Gateway's
/// `allowedListeners` admits it. `namespace_labels` looks up a namespace's labels.
pub fn naming<'a, 'l>(
    gateway: &Gateway,
    sets: &'a [ListenerSet],
    namespace_labels: &dyn Fn(&str) -> Option<&'l BTreeMap<String, String>>,
) -> Vec<NamingSet<'a>> {
    let gw = key_of(&gateway.metadata);
    let allowed = gateway
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    let mut out: Vec<NamingSet<'a>> = sets
        .iter()
        .filter_map(|set| {
            let key = key_of(&set.metadata);
            let parent = &set.spec.parent_ref;
            let names_gateway = parent.group.as_deref().unwrap_or(GROUP) == GROUP
                && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway"
                && parent.namespace.as_deref().unwrap_or(&key.namespace) == gw.namespace
                && parent.name == gw.name;
            if !names_gateway {
                return None;
            }
            // The words of the routes' `allowedRoutes.namespaces`, but the default is None.
            let admitted = match allowed.and_then(|n| n.from.as_deref()).unwrap_or("None") {
                "All" => true,
                "Same" => key.namespace == gw.namespace,
                "Selector" => {
                    let empty = BTreeMap::new();
                    let labels = namespace_labels(&key.namespace).unwrap_or(&empty);
                    allowed
                        .and_then(|n| n.selector.as_ref())
                        .is_some_and(|s| selector_matches(s, labels))
                }
                // "None" and unknown values admit nothing.
                _ => false,
            };
            Some(NamingSet {
                set,
                key,
                allowed: admitted,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        let created = |s: &NamingSet<'_>| s.set.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created(a), &a.key).cmp(&(created(b), &b.key))
    });
    out
}

/// True when `parent` refers to ListenerSet `namespace/name` (group defaults to Gateway
/// API's, namespace to the route's; the kind must be written).
pub fn refers_to_listener_set(
    parent: &ParentReference,
    route_namespace: &str,
    namespace: &str,
    name: &str,
) -> bool {
    parent.group.as_deref().unwrap_or(GROUP) == GROUP
        && parent.kind.as_deref() == Some("ListenerSet")
        && parent.namespace.as_deref().unwrap_or(route_namespace) == namespace
        && parent.name == name
}

/// The key of a ListenerSet's listener in the merged list: `namespace/set/listener`. Listener
/// names are unique within their own object only, and a `/` cannot be part of one, so the
/// key never equals a Gateway listener's (whose key is its name).
pub fn listener_key(set: &ObjectKey, listener: &str) -> String {
    format!("{}/{}/{listener}", set.namespace, set.name)
}

/// A ListenerSet's listeners with every certificateRef's namespace written out (a reference
/// without one means the ListenerSet's namespace, not the Gateway's): what provisioning reads
/// beside the Gateway's own listeners.
pub fn listeners_with_namespaces(set: &ListenerSet) -> Vec<Listener> {
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    set.spec
        .listeners
        .iter()
        .map(|l| {
            let mut l = l.clone();
            if let Some(tls) = &mut l.tls {
                for r in &mut tls.certificate_refs {
                    r.namespace.get_or_insert_with(|| namespace.clone());
                }
            }
            l
        })
        .collect()
}

/// What the translation says of one ListenerSet naming the Gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSetVerdict {
    /// Its namespace/name.
    pub key: ObjectKey,
    /// Its generation (every condition's observedGeneration).
    pub generation: i64,
    /// Accepted (and so counted in the Gateway's `attachedListenerSets`).
    pub accepted: bool,
    /// Accepted and Programmed.
    pub conditions: Vec<Condition>,
    /// One status per listener (none when not admitted).
    pub listeners: Vec<ListenerStatus>,
}

/// Accepted and Programmed of a ListenerSet, before the barrier: `admitted` by the Gateway,
/// the Gateway `gateway_accepted`, and how many of its listeners can be served out of all.
pub fn conditions(
    admitted: bool,
    gateway_accepted: bool,
    serving: usize,
    listeners: usize,
    generation: i64,
    now: Timestamp,
) -> Vec<Condition> {
    use super::status::condition as c;
    let refused = |why: &str, message: &str| {
        vec![
            condition(c::ACCEPTED, false, why, message, generation, now),
            condition(c::PROGRAMMED, false, why, message, generation, now),
        ]
    };
    if !admitted {
        return refused(
            reason::NOT_ALLOWED,
            "the Gateway's allowedListeners does not admit ListenerSets of this namespace",
        );
    }
    if !gateway_accepted {
        return refused(reason::PARENT_NOT_ACCEPTED, "the Gateway is not accepted");
    }
    if serving == 0 {
        return refused(reason::LISTENERS_NOT_VALID, "no listener can be served");
    }
    let accepted = if serving == listeners {
        condition(c::ACCEPTED, true, reason::ACCEPTED, "", generation, now)
    } else {
        condition(
            c::ACCEPTED,
            true,
            reason::LISTENERS_NOT_VALID,
            format!(
                "{} of {listeners} listeners cannot be served",
                listeners - serving
            ),
            generation,
            now,
        )
    };
    // Served listeners are Programmed only from the barrier (`serve::judge`).
    vec![
        accepted,
        condition(
            c::PROGRAMMED,
            false,
            reason::PENDING,
            "waiting for the fleet",
            generation,
            now,
        ),
    ]
}

/// The verdict's generation and key from the ListenerSet.
pub fn identity(set: &ListenerSet) -> (ObjectKey, i64) {
    (key_of(&set.metadata), generation_of(&set.metadata))
}

/// A ListenerSet's `Programmed` given its Gateway's: an accepted ListenerSet whose listeners
/// are all served is still not programmed while the Gateway is not (its fleet has no ready
/// replica, no address): False `ParentNotProgrammed`, the Gateway's message kept.
pub fn under_parent(ls_programmed: &mut Condition, gateway_programmed: &Condition) {
    if ls_programmed.status == "True" && gateway_programmed.status != "True" {
        ls_programmed.status = "False".into();
        ls_programmed.reason = reason::PARENT_NOT_PROGRAMMED.into();
        ls_programmed.message = format!("the Gateway is not programmed: {}", gateway_programmed.message);
    }
}
