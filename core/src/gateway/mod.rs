//! Gateway API, translated: given a GatewayClass, one of its Gateways and everything the
//! operator reads around it (HTTPRoutes, GRPCRoutes, Services, Secrets, ReferenceGrants,
//! Namespaces), what the Gateway's fleet serves and what every status says. Pure: no
//! client, no clock but the one passed in.
//!
//! The steps, each its own module with its own table of rules:
//! 1. [`listeners`]: which listeners can be served (protocol, conflicts, route kinds,
//!    certificates through [`references`]), and [`frontend`]: the client certificate
//!    validation of each HTTPS listener;
//! 2. [`attachment`]: which listeners each route's parentRef binds to (`sectionName`,
//!    `port`, `allowedRoutes`, [`hostnames`] intersection), or the reason it binds to none;
//! 3. [`rules`]: each route rule in lockstep's internal form (matches, filters, timeouts,
//!    weighted backends with unresolved ones answered 500), or why it is dropped;
//! 4. [`precedence`]: every entry of a listener in Gateway API order;
//! 5. this module: the statuses ([`status`]) and the served configuration
//!    ([`GatewayConfig`]), which [`lower`] turns into a `RouterConfigSpec` per listener where
//!    the existing form can express it, naming what it cannot.
//! 6. [`serve`]: with a fleet named by the Gateway, the generated RouterConfigs (one per
//!    listener, recording the generations they come from) and, from the barrier's judgement of
//!    them, `Programmed` and `lockstep.dev/Ready`.
//!
//! [`backend_tls`] decides, from the BackendTLSPolicies, which backends are reached over
//! TLS (applied to the rules before step 4) and each policy's status for this Gateway.
//!
//! [`features`] is the one list of the Gateway API features lockstep claims (GatewayClass
//! `status.supportedFeatures`).
//!
//! A route's status here is its Gateway API verdict (Accepted, ResolvedRefs,
//! PartiallyInvalid). Whether the fleet serves it (`lockstep.dev/Ready`, and the Gateway's
//! `Programmed`) is the barrier's decision, made from the route generations recorded in
//! [`GatewayConfig::routes`]: see [`status::gateway_programmed`] and [`status::route_ready`].

pub mod attachment;
pub mod backend_tls;
pub mod features;
pub mod frontend;
pub mod hostnames;
pub mod listener_sets;
pub mod listeners;
pub mod lower;
pub mod precedence;
pub mod provision;
pub mod references;
pub mod rules;
pub mod serve;
pub mod status;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use lockstep_crds::gateway::{
    BackendTLSPolicy, CONTROLLER_NAME, GROUP, GRPCRoute, Gateway, GatewayClass, HTTPRoute, ListenerSet,
    ListenerStatus, ParentReference, PolicyAncestorStatus, ReferenceGrant, RouteParentStatus,
};

use self::{
    attachment::{RouteSide, attach, refers_to_gateway},
    listener_sets::{ListenerSetVerdict, refers_to_listener_set},
    listeners::{ListenerGroup, ListenerVerdict, Protocol, judge_groups},
    references::{Referrer, ResolvedSecret, Unresolved},
    rules::{DroppedRule, RuleEntry, TranslatedRule},
    status::{condition, reason},
};
use crate::ObjectKey;
use lockstep_crds::GatewayParameters;

/// Everything the translation of one Gateway reads.
#[derive(Debug, Clone, Copy)]
pub struct GatewayInputs<'a> {
    /// The Gateway's class.
    pub class: &'a GatewayClass,
    /// The Gateway.
    pub gateway: &'a Gateway,
    /// ListenerSets (any namespace; those not naming the Gateway are ignored).
    pub listener_sets: &'a [ListenerSet],
    /// HTTPRoutes (any namespace; those not naming the Gateway are ignored).
    pub http_routes: &'a [HTTPRoute],
    /// GRPCRoutes (likewise).
    pub grpc_routes: &'a [GRPCRoute],
    /// Services routes may name.
    pub services: &'a [Service],
    /// Secrets listeners may name.
    pub secrets: &'a [Secret],
    /// ReferenceGrants of every namespace.
    pub grants: &'a [ReferenceGrant],
    /// Namespaces, for their labels (`allowedRoutes.namespaces.selector`).
    pub namespaces: &'a [Namespace],
    /// GatewayParameters, for the class's `parametersRef`.
    pub parameters: &'a [GatewayParameters],
    /// BackendTLSPolicies of every namespace.
    pub backend_tls_policies: &'a [BackendTLSPolicy],
    /// ConfigMaps BackendTLSPolicies and frontend validation may name (CA bundles).
    pub config_maps: &'a [ConfigMap],
}

/// Which generation of which route a configuration contains: the identity the barrier
/// judges `lockstep.dev/Ready` by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteGeneration {
    /// HTTPRoute or GRPCRoute.
    pub kind: &'static str,
    /// namespace/name.
    pub key: ObjectKey,
    /// metadata.uid: a route deleted and re-created is another route.
    pub uid: String,
    /// metadata.generation.
    pub generation: i64,
}

/// One entry a listener serves: a match of a route rule under one host name.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedEntry {
    /// Host name (None: any host the listener accepts).
    pub host: Option<String>,
    /// Index into [`GatewayConfig::routes`].
    pub route: usize,
    /// Index of the rule in the route.
    pub rule: usize,
    /// Path, match, filters, timeouts and weighted backends.
    pub entry: RuleEntry,
}

/// What one listener serves. Listeners are kept apart: a request is matched only against
/// the entries of the listener it arrived on (its port, then the most specific listener
/// host name, [`hostnames::listener_for_host`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ServedListener {
    /// The listener's key in the merged list: a Gateway listener's name, or a ListenerSet
    /// listener's [`listener_sets::listener_key`].
    pub name: String,
    /// Port.
    pub port: i32,
    /// HTTP or HTTPS.
    pub protocol: Protocol,
    /// Listener host name (None: any).
    pub hostname: Option<String>,
    /// Certificates presented (HTTPS).
    pub certificates: Vec<ResolvedSecret>,
    /// Client certificate validation (HTTPS, `spec.tls.frontend`).
    pub client_validation: Option<listeners::ClientValidation>,
    /// Entries in Gateway API precedence order (the first that matches wins).
    pub entries: Vec<ServedEntry>,
}

/// What a Gateway's fleet serves.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// Its generation.
    pub generation: i64,
    /// Listeners that can be served, in spec order.
    pub listeners: Vec<ServedListener>,
    /// Route generations contained, sorted: accepted on at least one listener of this
    /// Gateway (a route accepted with no entries, all rules dropped, is not listed).
    pub routes: Vec<RouteGeneration>,
    /// The certificate presented to backends reached over TLS
    /// (`spec.tls.backend.clientCertificateRef`): None when the Gateway names none, the
    /// reason when it cannot be resolved (a listener reaching such a backend is then not
    /// published: [`lower::Gap::BackendClientCertificate`]).
    pub client_certificate: Option<Result<ResolvedSecret, String>>,
}

/// A route's status entry for one parentRef naming this Gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteVerdict {
    /// The route.
    pub route: RouteGeneration,
    /// One entry per parentRef of the route that names this Gateway.
    pub parents: Vec<RouteParentStatus>,
}

/// The result of translating one Gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// GatewayClass conditions (Accepted).
    pub class_conditions: Vec<Condition>,
    /// Gateway conditions: Accepted, and Programmed as far as the translation knows it
    /// (False `Invalid` or False `Pending`; the barrier turns it True).
    pub gateway_conditions: Vec<Condition>,
    /// Listener statuses, in spec order.
    pub listeners: Vec<ListenerStatus>,
    /// Every ListenerSet naming this Gateway, in precedence order.
    pub listener_sets: Vec<ListenerSetVerdict>,
    /// How many of them are attached (admitted and accepted): `status.attachedListenerSets`.
    pub attached_listener_sets: i32,
    /// Route statuses (routes that name this Gateway), sorted by kind and key.
    pub routes: Vec<RouteVerdict>,
    /// What the fleet serves; None when the Gateway is not accepted.
    pub config: Option<GatewayConfig>,
    /// The status entry for this Gateway of every BackendTLSPolicy targeting a Service its
    /// routes name, by policy.
    pub policies: BTreeMap<ObjectKey, PolicyAncestorStatus>,
}

fn key_of(meta: &ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn generation_of(meta: &ObjectMeta) -> i64 {
    meta.generation.unwrap_or(lockstep_crds::DEFAULT_GENERATION)
}

/// GatewayClass `Accepted`: True for lockstep's controller name without parameters or with a
/// `parametersRef` to a GatewayParameters that exists; False `InvalidParameters` naming the
/// reference otherwise ([`provision::class_parameters`]). None when the class belongs to
/// another controller: lockstep writes nothing on it.
pub fn class_conditions(
    class: &GatewayClass,
    parameters: &[GatewayParameters],
    now: Timestamp,
) -> Option<Vec<Condition>> {
    if class.spec.controller_name != CONTROLLER_NAME {
        return None;
    }
    let generation = generation_of(&class.metadata);
    let accepted = match provision::class_parameters(class, parameters) {
        Ok(_) => condition(
            status::condition::ACCEPTED,
            true,
            reason::ACCEPTED,
            "",
            generation,
            now,
        ),
        Err(message) => condition(
            status::condition::ACCEPTED,
            false,
            reason::INVALID_PARAMETERS,
            message,
            generation,
            now,
        ),
    };
    Some(vec![accepted])
}

/// Translates one Gateway. None when the Gateway's class is not lockstep's (or is not its
/// class): such a Gateway gets no status from lockstep.
pub fn translate(inputs: GatewayInputs<'_>, now: Timestamp) -> Option<Translation> {
    let gw = inputs.gateway;
    if gw.spec.gateway_class_name != inputs.class.metadata.name.clone().unwrap_or_default() {
        return None;
    }
    let class_conditions = class_conditions(inputs.class, inputs.parameters, now)?;
    let class_accepted = class_conditions.iter().all(|c| c.status == "True");
    let gw_key = key_of(&gw.metadata);
    let gw_generation = generation_of(&gw.metadata);
    let labels: BTreeMap<&str, &BTreeMap<String, String>> = inputs
        .namespaces
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n.metadata.labels.as_ref()?)))
        .collect();
    let lookup = |ns: &str| labels.get(ns).copied();

    // The merged listener list: the Gateway's own, then each admitted ListenerSet's, in
    // precedence order. `owners[o]` holds the index range of object o's listeners.
    let naming = listener_sets::naming(gw, inputs.listener_sets, &lookup);
    let admitted: Vec<&listener_sets::NamingSet<'_>> = naming.iter().filter(|n| n.allowed).collect();
    let mut spec: Vec<lockstep_crds::gateway::Listener> = gw.spec.listeners.clone();
    let mut keys: Vec<String> = gw.spec.listeners.iter().map(|l| l.name.clone()).collect();
    let mut groups = vec![ListenerGroup {
        kind: "Gateway",
        namespace: &gw_key.namespace,
        listeners: &gw.spec.listeners,
    }];
    let mut owners: Vec<std::ops::Range<usize>> = Vec::new();
    owners.push(0..gw.spec.listeners.len());
    for n in &admitted {
        let start = spec.len();
        spec.extend(n.set.spec.listeners.iter().cloned());
        keys.extend(
            n.set
                .spec
                .listeners
                .iter()
                .map(|l| listener_sets::listener_key(&n.key, &l.name)),
        );
        owners.push(start..spec.len());
        groups.push(ListenerGroup {
            kind: "ListenerSet",
            namespace: &n.key.namespace,
            listeners: &n.set.spec.listeners,
        });
    }
    let mut verdicts = judge_groups(&groups, inputs.secrets, inputs.grants);
    // Frontend validation is the Gateway's `spec.tls`: it judges the Gateway's own listeners.
    frontend::judge_frontend(
        gw,
        &mut verdicts[owners[0].clone()],
        inputs.config_maps,
        inputs.grants,
    );

    let (accepted, accepted_reason, accepted_message) =
        gateway_accepted(gw, class_accepted, &verdicts[owners[0].clone()]);
    // An admitted ListenerSet is accepted when the Gateway is and one of its listeners can be
    // served; only then do routes attach to its listeners.
    let set_accepted: Vec<bool> = owners[1..]
        .iter()
        .map(|r| accepted && verdicts[r.clone()].iter().any(ListenerVerdict::serves))
        .collect();
    let mut gateway_conditions = vec![
        condition(
            status::condition::ACCEPTED,
            accepted,
            accepted_reason,
            accepted_message,
            gw_generation,
            now,
        ),
        if accepted && !verdicts[owners[0].clone()].iter().any(ListenerVerdict::serves) {
            condition(
                status::condition::PROGRAMMED,
                false,
                reason::INVALID,
                "no listener can be served",
                gw_generation,
                now,
            )
        } else {
            status::gateway_programmed(accepted, None, gw_generation, now)
        },
    ];

    // The Gateway's own reference: the certificate it presents to TLS backends.
    let client_certificate = gw.spec.backend_client_certificate_ref().map(|cert| {
        let from = Referrer {
            group: GROUP,
            kind: "Gateway",
            namespace: &gw_key.namespace,
        };
        references::resolve_client_certificate(cert, from, inputs.secrets, inputs.grants)
    });
    gateway_conditions.push(match &client_certificate {
        Some(Err(u)) => condition(
            status::condition::RESOLVED_REFS,
            false,
            u.reason,
            u.message.clone(),
            gw_generation,
            now,
        ),
        _ => condition(
            status::condition::RESOLVED_REFS,
            true,
            reason::RESOLVED_REFS,
            "",
            gw_generation,
            now,
        ),
    });

    if frontend::insecure_fallback(gw) {
        gateway_conditions.push(condition(
            status::condition::INSECURE_FRONTEND_VALIDATION_MODE,
            true,
            reason::CONFIGURATION_CHANGED,
            "a frontend validation mode is AllowInsecureFallback: clients without a valid certificate are let through",
            gw_generation,
            now,
        ));
    }

    let judged_policies = backend_tls::judge(inputs.backend_tls_policies, inputs.config_maps);
    let mut used_policies = std::collections::BTreeSet::new();
    let names_gateway = |meta: &ObjectMeta, parent_refs: &[ParentReference]| {
        let ns = meta.namespace.clone().unwrap_or_default();
        // This Gateway's routes: those naming it or a ListenerSet attached to it.
        parent_refs.iter().any(|p| {
            refers_to_gateway(p, &ns, &gw_key.namespace, &gw_key.name)
                || naming
                    .iter()
                    .any(|n| refers_to_listener_set(p, &ns, &n.key.namespace, &n.key.name))
        })
    };

    let mut attached_count = vec![0i32; verdicts.len()];
    let mut routes = Vec::new();
    let mut contained: Vec<RouteGeneration> = Vec::new();
    let mut staged: Vec<(usize, ServedEntry, precedence_inputs::Owned)> = Vec::new();

    let mut handle = |kind: &'static str,
                      meta: &ObjectMeta,
                      hostnames: &[String],
                      parent_refs: &[ParentReference],
                      rules: Vec<Result<TranslatedRule, DroppedRule>>| {
        let key = key_of(meta);
        // The parent objects a parentRef may name here: the Gateway (its own listeners), or a
        // ListenerSet naming it (its listeners, when admitted and accepted).
        let target = |p: &ParentReference| -> Option<Option<usize>> {
            if refers_to_gateway(p, &key.namespace, &gw_key.namespace, &gw_key.name) {
                return Some(Some(0));
            }
            let n = naming
                .iter()
                .find(|n| refers_to_listener_set(p, &key.namespace, &n.key.namespace, &n.key.name))?;
            let owner = admitted
                .iter()
                .position(|a| a.key == n.key)
                .filter(|&o| set_accepted[o])
                .map(|o| o + 1);
            Some(owner)
        };
        let ours: Vec<(&ParentReference, Option<usize>)> =
            parent_refs.iter().filter_map(|p| Some((p, target(p)?))).collect();
        if ours.is_empty() {
            return;
        }
        let route = RouteGeneration {
            kind,
            key: key.clone(),
            uid: meta.uid.clone().unwrap_or_default(),
            generation: generation_of(meta),
        };
        let side = RouteSide {
            kind,
            namespace: &key.namespace,
            hostnames,
        };
        let rule_verdict = RuleVerdict::of(&rules);
        let mut parents = Vec::new();
        let mut listeners_with_route = vec![false; verdicts.len()];
        for (parent, owner) in ours {
            let attached = match owner {
                _ if !accepted => Err(attachment::NotAttached {
                    reason: reason::NO_MATCHING_PARENT,
                    message: "the Gateway is not accepted".into(),
                }),
                None => Err(attachment::NotAttached {
                    reason: reason::NO_MATCHING_PARENT,
                    message: "the ListenerSet is not accepted".into(),
                }),
                Some(o) => {
                    let range = owners[o].clone();
                    let home = if o == 0 {
                        gw_key.namespace.as_str()
                    } else {
                        admitted[o - 1].key.namespace.as_str()
                    };
                    attach(
                        side,
                        parent,
                        home,
                        &spec[range.clone()],
                        &verdicts[range.clone()],
                        &lookup,
                    )
                    .map(|a| {
                        a.into_iter()
                            .map(|(i, h)| (i + range.start, h))
                            .collect::<attachment::Attached>()
                    })
                }
            };
            let conditions = route_conditions(&attached, &rule_verdict, route.generation, now);
            let route_accepted = conditions[0].status == "True";
            if let (Ok(listeners), true) = (&attached, route_accepted) {
                for (i, hosts) in listeners {
                    if listeners_with_route[*i] {
                        continue;
                    }
                    listeners_with_route[*i] = true;
                    attached_count[*i] += 1;
                    if !verdicts[*i].serves() {
                        continue;
                    }
                    let index = match contained.iter().position(|r| r == &route) {
                        Some(p) => p,
                        None => {
                            contained.push(route.clone());
                            contained.len() - 1
                        }
                    };
                    for (rule_index, rule) in rules.iter().enumerate() {
                        let Ok(rule) = rule else { continue };
                        for entry in &rule.entries {
                            for host in hosts {
                                staged.push((
                                    *i,
                                    ServedEntry {
                                        host: host.clone(),
                                        route: index,
                                        rule: rule_index,
                                        entry: entry.clone(),
                                    },
                                    precedence_inputs::Owned::of(meta),
                                ));
                            }
                        }
                    }
                }
            }
            parents.push(RouteParentStatus {
                parent_ref: parent.clone(),
                controller_name: CONTROLLER_NAME.to_owned(),
                conditions,
            });
        }
        routes.push(RouteVerdict { route, parents });
    };

    for r in inputs.http_routes {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let from = Referrer {
            group: GROUP,
            kind: "HTTPRoute",
            namespace: &ns,
        };
        let mut rules: Vec<_> = r
            .spec
            .rules
            .iter()
            .map(|rule| rules::http_rule(rule, from, inputs.services, inputs.grants))
            .collect();
        if names_gateway(&r.metadata, &r.spec.parent_refs) {
            backend_tls::apply(&mut rules, &judged_policies, inputs.services, &mut used_policies);
        }
        handle(
            "HTTPRoute",
            &r.metadata,
            &r.spec.hostnames,
            &r.spec.parent_refs,
            rules,
        );
    }
    for r in inputs.grpc_routes {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let from = Referrer {
            group: GROUP,
            kind: "GRPCRoute",
            namespace: &ns,
        };
        let mut rules: Vec<_> = r
            .spec
            .rules
            .iter()
            .map(|rule| rules::grpc_rule(rule, from, inputs.services, inputs.grants))
            .collect();
        if names_gateway(&r.metadata, &r.spec.parent_refs) {
            backend_tls::apply(&mut rules, &judged_policies, inputs.services, &mut used_policies);
        }
        handle(
            "GRPCRoute",
            &r.metadata,
            &r.spec.hostnames,
            &r.spec.parent_refs,
            rules,
        );
    }
    routes.sort_by(|a, b| (a.route.kind, &a.route.key).cmp(&(b.route.kind, &b.route.key)));

    let listeners = verdicts[owners[0].clone()]
        .iter()
        .zip(&attached_count)
        // The translation alone knows no fleet: a served listener is False `Pending` here;
        // `serve::judge` rewrites it from the barrier.
        .map(|(v, n)| listeners::listener_status(v, *n, None, gw_generation, now))
        .collect();
    let listener_sets: Vec<ListenerSetVerdict> = naming
        .iter()
        .map(|n| {
            let (key, generation) = listener_sets::identity(n.set);
            let owner = admitted.iter().position(|a| a.key == n.key);
            let (statuses, serving, total) = match owner {
                None => (Vec::new(), 0, n.set.spec.listeners.len()),
                Some(o) => {
                    let range = owners[o + 1].clone();
                    let statuses: Vec<ListenerStatus> = range
                        .clone()
                        .map(|i| {
                            listeners::listener_status(&verdicts[i], attached_count[i], None, generation, now)
                        })
                        .collect();
                    let serving = verdicts[range.clone()].iter().filter(|v| v.serves()).count();
                    (statuses, serving, range.len())
                }
            };
            let conditions =
                listener_sets::conditions(owner.is_some(), accepted, serving, total, generation, now);
            ListenerSetVerdict {
                key,
                generation,
                accepted: conditions[0].status == "True",
                conditions,
                listeners: statuses,
            }
        })
        .collect();
    let attached_listener_sets =
        i32::try_from(listener_sets.iter().filter(|s| s.accepted).count()).unwrap_or(i32::MAX);

    let config = accepted.then(|| {
        let mut served: Vec<ServedListener> = verdicts
            .iter()
            .enumerate()
            .filter(|(_, v)| v.serves())
            .map(|(i, v)| ServedListener {
                name: keys[i].clone(),
                port: v.port,
                protocol: v.protocol.expect("a served listener has a protocol"),
                hostname: v.hostname.clone(),
                certificates: v.certificates.clone(),
                client_validation: v.client_validation.clone(),
                entries: Vec::new(),
            })
            .collect();
        staged.sort_by(|(_, a, ma), (_, b, mb)| precedence::compare(&ma.rank(a), &mb.rank(b)));
        for (i, entry, _) in staged {
            let name = &keys[i];
            if let Some(l) = served.iter_mut().find(|l| &l.name == name) {
                l.entries.push(entry);
            }
        }
        // Route indexes are positions in `contained`; sort it and remap.
        let mut order: Vec<usize> = (0..contained.len()).collect();
        order.sort_by(|&a, &b| contained[a].cmp(&contained[b]));
        let mut new_index = vec![0; contained.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        for l in &mut served {
            for e in &mut l.entries {
                e.route = new_index[e.route];
            }
        }
        let routes = order.iter().map(|&i| contained[i].clone()).collect();
        GatewayConfig {
            gateway: gw_key.clone(),
            generation: gw_generation,
            listeners: served,
            routes,
            client_certificate: client_certificate.map(|r| r.map_err(|u| u.message)),
        }
    });

    let policies = backend_tls::statuses(&judged_policies, &used_policies, &gw_key, now);
    Some(Translation {
        class_conditions,
        gateway_conditions,
        listeners,
        listener_sets,
        attached_listener_sets,
        routes,
        config,
        policies,
    })
}

/// Gateway `Accepted`: the class must be accepted and requested addresses are not supported
/// (the fleet's Service gets its address). Invalid listeners leave it accepted with reason
/// `ListenersNotValid` as long as one listener is accepted (an unresolved certificate leaves
/// a listener accepted): routes still attach to them and count in their `attachedRoutes`
/// (the conformance suite checks a Gateway whose only listener has an unresolved
/// certificate), and `Programmed` says that nothing is served. With no listener accepted
/// (unsupported protocols only) the Gateway is not accepted either
/// (`GatewayListenerUnsupportedProtocol`).
fn gateway_accepted(
    gw: &Gateway,
    class_accepted: bool,
    verdicts: &[ListenerVerdict],
) -> (bool, &'static str, String) {
    if !class_accepted {
        return (
            false,
            reason::INVALID_PARAMETERS,
            "the GatewayClass is not accepted".into(),
        );
    }
    if let Some(r) = gw
        .spec
        .infrastructure
        .as_ref()
        .and_then(|i| i.parameters_ref.as_ref())
    {
        return (
            false,
            reason::INVALID_PARAMETERS,
            format!(
                "spec.infrastructure.parametersRef {}/{} {}: lockstep takes a Gateway's \
                 parameters from its GatewayClass's parametersRef only",
                r.group, r.kind, r.name
            ),
        );
    }
    if let Some(message) = unsupported_address(gw) {
        return (false, reason::UNSUPPORTED_ADDRESS, message);
    }
    let invalid: Vec<&str> = verdicts
        .iter()
        .filter(|v| !v.serves())
        .map(|v| v.name.as_str())
        .collect();
    if invalid.is_empty() {
        (true, reason::ACCEPTED, String::new())
    } else {
        (
            verdicts.iter().any(|v| v.not_accepted.is_none()),
            reason::LISTENERS_NOT_VALID,
            format!("invalid listeners: {}", invalid.join(", ")),
        )
    }
}

/// Why `gw`'s `spec.addresses` cannot be served, if they cannot: an address of a type other
/// than `IPAddress` (the default). An `IPAddress` entry without a value asks for an address
/// to be assigned (`GatewayAddressEmpty`), one with a value for that address as the fleet
/// Service's cluster IP (`GatewayStaticAddresses`, [`provision::static_addresses`]: one that
/// cannot be assigned leaves the Gateway accepted and `Programmed=False AddressNotUsable`).
fn unsupported_address(gw: &Gateway) -> Option<String> {
    gw.spec.addresses.iter().enumerate().find_map(|(i, a)| {
        let kind = a.address_type.as_deref().unwrap_or("IPAddress");
        (kind != "IPAddress").then(|| {
            format!("spec.addresses[{i}]: type {kind} is not supported: lockstep assigns IPAddress only")
        })
    })
}

/// What a route's rules say for its status, whatever the parent.
struct RuleVerdict {
    dropped: Vec<String>,
    kept: usize,
    unresolved: Vec<Unresolved>,
}

impl RuleVerdict {
    fn of(rules: &[Result<TranslatedRule, DroppedRule>]) -> Self {
        let mut v = RuleVerdict {
            dropped: Vec::new(),
            kept: 0,
            unresolved: Vec::new(),
        };
        for (i, r) in rules.iter().enumerate() {
            match r {
                Ok(rule) => {
                    v.kept += 1;
                    v.unresolved.extend(rule.unresolved.iter().cloned());
                }
                Err(DroppedRule(msg)) => v.dropped.push(format!("rule {i}: {msg}")),
            }
        }
        v
    }
}

/// A route parent's conditions: Accepted, ResolvedRefs and, when some but not all rules
/// were dropped, PartiallyInvalid (only ever True, its message starting "Dropped Rule").
fn route_conditions(
    attached: &Result<attachment::Attached, attachment::NotAttached>,
    rules: &RuleVerdict,
    generation: i64,
    now: Timestamp,
) -> Vec<Condition> {
    use status::condition as c;
    let accepted = match attached {
        Err(e) => condition(c::ACCEPTED, false, e.reason, e.message.clone(), generation, now),
        Ok(_) if rules.kept == 0 && !rules.dropped.is_empty() => condition(
            c::ACCEPTED,
            false,
            reason::UNSUPPORTED_VALUE,
            rules.dropped.join("; "),
            generation,
            now,
        ),
        Ok(_) => condition(c::ACCEPTED, true, reason::ACCEPTED, "", generation, now),
    };
    let resolved = match rules.unresolved.first() {
        None => condition(c::RESOLVED_REFS, true, reason::RESOLVED_REFS, "", generation, now),
        Some(first) => condition(
            c::RESOLVED_REFS,
            false,
            first.reason,
            rules
                .unresolved
                .iter()
                .map(|u| u.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            generation,
            now,
        ),
    };
    let mut out = vec![accepted, resolved];
    if attached.is_ok() && rules.kept > 0 && !rules.dropped.is_empty() {
        out.push(condition(
            c::PARTIALLY_INVALID,
            true,
            reason::UNSUPPORTED_VALUE,
            format!("Dropped Rule(s): {}", rules.dropped.join("; ")),
            generation,
            now,
        ));
    }
    out
}

/// The route fields precedence needs, owned so entries can be sorted after the routes are
/// walked.
mod precedence_inputs {
    use super::{ServedEntry, precedence::Rank};
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[derive(Debug, Clone)]
    pub struct Owned {
        created: Option<Timestamp>,
        namespace: String,
        name: String,
    }

    impl Owned {
        pub fn of(meta: &ObjectMeta) -> Self {
            Owned {
                created: meta.creation_timestamp.as_ref().map(|t| t.0),
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
            }
        }

        pub fn rank<'a>(&'a self, e: &'a ServedEntry) -> Rank<'a> {
            Rank {
                host: e.host.as_deref(),
                path_type: e.entry.path_type,
                path: &e.entry.path,
                method: e.entry.matches.method.is_some(),
                headers: e.entry.matches.headers.len(),
                query_params: e.entry.matches.query_params.len(),
                created: self.created,
                namespace: &self.namespace,
                name: &self.name,
                rule: e.rule,
                match_index: e.entry.match_index,
            }
        }
    }
}
