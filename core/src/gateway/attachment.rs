//! Route attachment: which listeners of a Gateway a route's parentRef binds to, with the
//! host names it serves on each, or the standard reason it binds to none.
//!
//! The checks narrow the Gateway's listeners in this order, and the first that leaves none
//! names the reason:
//!
//! | step | keeps the listeners that | none left |
//! |---|---|---|
//! | 1 | `sectionName` names (when set) and whose `port` is the parentRef's (when set) | `NoMatchingParent` |
//! | 2 | allow the route's kind and namespace (`allowedRoutes`) | `NotAllowedByListeners` |
//! | 3 | have a host name in common with the route | `NoMatchingListenerHostname` |
//!
//! Attachment depends on `allowedRoutes` and `parentRefs` only, never on whether the
//! listener is valid ("Listener or Route status does not impact successful attachment").

use std::collections::BTreeMap;

use lockstep_crds::gateway::{GROUP, LabelSelector, ParentReference, RouteNamespaces};

use super::{hostnames, listeners::ListenerVerdict, status::reason};
use lockstep_crds::gateway::Listener;

/// A route as attachment sees it.
#[derive(Debug, Clone, Copy)]
pub struct RouteSide<'a> {
    /// HTTPRoute or GRPCRoute.
    pub kind: &'a str,
    /// The route's namespace.
    pub namespace: &'a str,
    /// `spec.hostnames`.
    pub hostnames: &'a [String],
}

/// The listeners a parentRef attached to: listener index and the host names served there
/// (None: any host).
pub type Attached = Vec<(usize, Vec<Option<String>>)>;

/// A parentRef that attached to nothing: the reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAttached {
    /// `NoMatchingParent`, `NotAllowedByListeners` or `NoMatchingListenerHostname`.
    pub reason: &'static str,
    /// Why, naming the parentRef.
    pub message: String,
}

/// True when `parent` refers to the Gateway `namespace/name` (group and kind default to
/// Gateway API's Gateway, namespace to the route's).
pub fn refers_to_gateway(
    parent: &ParentReference,
    route_namespace: &str,
    namespace: &str,
    name: &str,
) -> bool {
    parent.group.as_deref().unwrap_or(GROUP) == GROUP
        && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway"
        && parent.namespace.as_deref().unwrap_or(route_namespace) == namespace
        && parent.name == name
}

/// Attaches one parentRef of a route to a Gateway's listeners. `namespace_labels` looks up
/// the labels of a namespace (for `from: Selector`).
pub fn attach<'a>(
    route: RouteSide<'_>,
    parent: &ParentReference,
    gateway_namespace: &str,
    spec: &[Listener],
    verdicts: &[ListenerVerdict],
    namespace_labels: &dyn Fn(&str) -> Option<&'a BTreeMap<String, String>>,
) -> Result<Attached, NotAttached> {
    let candidates: Vec<usize> = (0..spec.len())
        .filter(|&i| parent.section_name.as_deref().is_none_or(|s| s == spec[i].name))
        .filter(|&i| parent.port.is_none_or(|p| p == spec[i].port))
        .collect();
    if candidates.is_empty() {
        return Err(NotAttached {
            reason: reason::NO_MATCHING_PARENT,
            message: match (&parent.section_name, parent.port) {
                (Some(s), Some(p)) => format!("no listener {s} on port {p}"),
                (Some(s), None) => format!("no listener named {s}"),
                (None, Some(p)) => format!("no listener on port {p}"),
                (None, None) => "the Gateway has no listeners".to_owned(),
            },
        });
    }
    let allowed: Vec<usize> = candidates
        .into_iter()
        .filter(|&i| verdicts[i].kinds.iter().any(|k| k.kind == route.kind))
        .filter(|&i| {
            let namespaces = spec[i]
                .allowed_routes
                .as_ref()
                .and_then(|a| a.namespaces.as_ref());
            namespace_allowed(namespaces, gateway_namespace, route.namespace, namespace_labels)
        })
        .collect();
    if allowed.is_empty() {
        return Err(NotAttached {
            reason: reason::NOT_ALLOWED_BY_LISTENERS,
            message: format!(
                "no listener allows {} from namespace {}",
                route.kind, route.namespace
            ),
        });
    }
    let attached: Attached = allowed
        .into_iter()
        .filter_map(|i| {
            let hosts = hostnames::intersect(spec[i].hostname.as_deref(), route.hostnames);
            (!hosts.is_empty()).then_some((i, hosts))
        })
        .collect();
    if attached.is_empty() {
        return Err(NotAttached {
            reason: reason::NO_MATCHING_LISTENER_HOSTNAME,
            message: format!("no listener host name intersects {:?}", route.hostnames),
        });
    }
    Ok(attached)
}

/// `allowedRoutes.namespaces`: Same (the default), All, or Selector over the route's
/// namespace labels.
pub fn namespace_allowed<'a>(
    namespaces: Option<&RouteNamespaces>,
    gateway_namespace: &str,
    route_namespace: &str,
    namespace_labels: &dyn Fn(&str) -> Option<&'a BTreeMap<String, String>>,
) -> bool {
    match namespaces.and_then(|n| n.from.as_deref()).unwrap_or("Same") {
        "All" => true,
        "Same" => gateway_namespace == route_namespace,
        "Selector" => {
            let selector = namespaces.and_then(|n| n.selector.as_ref());
            let empty = BTreeMap::new();
            let labels = namespace_labels(route_namespace).unwrap_or(&empty);
            selector.is_some_and(|s| selector_matches(s, labels))
        }
        // "None" and unknown values allow nothing.
        _ => false,
    }
}

/// `metav1.LabelSelector` semantics: every matchLabels pair and every expression must hold;
/// an empty selector matches everything.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs_hold = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let expressions_hold = selector.match_expressions.as_ref().is_none_or(|exprs| {
        exprs.iter().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
    });
    pairs_hold && expressions_hold
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{listeners::judge_listeners, testutil::*};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use lockstep_crds::gateway::{AllowedRoutes, RouteGroupKind};

    fn from(l: Listener, from: &str, selector: Option<LabelSelector>) -> Listener {
        Listener {
            allowed_routes: Some(AllowedRoutes {
                namespaces: Some(RouteNamespaces {
                    from: Some(from.into()),
                    selector,
                }),
                kinds: l.allowed_routes.map(|a| a.kinds).unwrap_or_default(),
            }),
            ..l
        }
    }

    fn kinds(mut l: Listener, kinds: &[&str]) -> Listener {
        l.allowed_routes.get_or_insert_default().kinds = kinds
            .iter()
            .map(|k| RouteGroupKind {
                group: None,
                kind: (*k).into(),
            })
            .collect();
        l
    }

    fn parent(section: Option<&str>, port: Option<i32>) -> ParentReference {
        ParentReference {
            name: "gw".into(),
            section_name: section.map(str::to_owned),
            port,
            ..Default::default()
        }
    }

    fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            match_expressions: None,
        }
    }

    #[test]
    fn attachment_rows() {
        let gateway_listeners = vec![
            listener("http", 80, "HTTP", None),
            listener("foo", 8080, "HTTP", Some("foo.example.com")),
            from(listener("all", 8081, "HTTP", Some("*.example.com")), "All", None),
            from(
                listener("labelled", 8082, "HTTP", None),
                "Selector",
                Some(selector(&[("env", "prod")])),
            ),
            kinds(
                from(listener("grpc-only", 8083, "HTTP", None), "All", None),
                &["GRPCRoute"],
            ),
        ];
        let verdicts = judge_listeners("infra", &gateway_listeners, &[], &[]);
        let labels: BTreeMap<String, BTreeMap<String, String>> = [
            (
                "prod-apps".to_owned(),
                [("env".to_owned(), "prod".to_owned())].into(),
            ),
            (
                "dev-apps".to_owned(),
                [("env".to_owned(), "dev".to_owned())].into(),
            ),
        ]
        .into();
        let lookup = |ns: &str| labels.get(ns);
        type Want = Result<Vec<(&'static str, Vec<Option<&'static str>>)>, &'static str>;
        /// (why, route kind, route namespace, route hostnames, parentRef, want)
        type Row<'a> = (&'a str, &'a str, &'a str, Vec<&'a str>, ParentReference, Want);
        let rows: Vec<Row> = vec![
            // ParentReference sectionName: "When unspecified (empty string), this will
            // reference the entire resource."; from Same (the default) only the Gateway's
            // namespace: "Same: Only Routes in the same namespace may be used".
            (
                "whole Gateway, same namespace",
                "HTTPRoute",
                "infra",
                vec![],
                parent(None, None),
                Ok(vec![
                    ("http", vec![None]),
                    ("foo", vec![Some("foo.example.com")]),
                    ("all", vec![Some("*.example.com")]),
                ]),
            ),
            // sectionName: "Gateway: Listener name. When both Port (experimental) and
            // SectionName are specified, the name and port of the selected listener must
            // match both specified values."
            (
                "sectionName",
                "HTTPRoute",
                "infra",
                vec![],
                parent(Some("foo"), None),
                Ok(vec![("foo", vec![Some("foo.example.com")])]),
            ),
            (
                "sectionName and port",
                "HTTPRoute",
                "infra",
                vec![],
                parent(Some("foo"), Some(8080)),
                Ok(vec![("foo", vec![Some("foo.example.com")])]),
            ),
            // port: "When the parent resource is a Gateway, this targets all listeners
            // listening on the specified port".
            (
                "port alone",
                "HTTPRoute",
                "infra",
                vec![],
                parent(None, Some(8081)),
                Ok(vec![("all", vec![Some("*.example.com")])]),
            ),
            // RouteReasonNoMatchingParent: "when a Route ParentRef specifies a Port and/or
            // SectionName that does not match any Listeners in the Gateway."
            (
                "no such sectionName",
                "HTTPRoute",
                "infra",
                vec![],
                parent(Some("nope"), None),
                Err(reason::NO_MATCHING_PARENT),
            ),
            (
                "no such port",
                "HTTPRoute",
                "infra",
                vec![],
                parent(None, Some(1234)),
                Err(reason::NO_MATCHING_PARENT),
            ),
            (
                "sectionName on another port",
                "HTTPRoute",
                "infra",
                vec![],
                parent(Some("foo"), Some(80)),
                Err(reason::NO_MATCHING_PARENT),
            ),
            // "All: Routes in all namespaces may be used by this Gateway."
            (
                "other namespace, From All",
                "HTTPRoute",
                "apps",
                vec![],
                parent(None, None),
                Ok(vec![("all", vec![Some("*.example.com")])]),
            ),
            // "Selector: Routes in namespaces selected by the selector may be used".
            (
                "selected namespace",
                "HTTPRoute",
                "prod-apps",
                vec![],
                parent(Some("labelled"), None),
                Ok(vec![("labelled", vec![None])]),
            ),
            // RouteReasonNotAllowedByListeners: "the Gateway has no Listener whose
            // allowedRoutes criteria permit the route".
            (
                "unselected namespace",
                "HTTPRoute",
                "dev-apps",
                vec![],
                parent(Some("labelled"), None),
                Err(reason::NOT_ALLOWED_BY_LISTENERS),
            ),
            (
                "Same, other namespace",
                "HTTPRoute",
                "apps",
                vec![],
                parent(Some("http"), None),
                Err(reason::NOT_ALLOWED_BY_LISTENERS),
            ),
            // AllowedRoutes kinds: "Kinds specifies the groups and kinds of Routes that are
            // allowed to bind to this Gateway Listener."
            (
                "kind not allowed",
                "HTTPRoute",
                "infra",
                vec![],
                parent(Some("grpc-only"), None),
                Err(reason::NOT_ALLOWED_BY_LISTENERS),
            ),
            (
                "kind allowed",
                "GRPCRoute",
                "infra",
                vec![],
                parent(Some("grpc-only"), None),
                Ok(vec![("grpc-only", vec![None])]),
            ),
            // HTTPRoute hostnames: "If both the Listener and HTTPRoute have specified
            // hostnames, and none match ... the HTTPRoute is not accepted".
            (
                "no host name in common",
                "HTTPRoute",
                "infra",
                vec!["bar.example.net"],
                parent(Some("foo"), None),
                Err(reason::NO_MATCHING_LISTENER_HOSTNAME),
            ),
            // "If 1 of 2 Gateway listeners accept attachment from the referencing Route, the
            // Route MUST be considered successfully attached": listeners whose host names do
            // not intersect are skipped, the others kept.
            (
                "host names narrow the listeners",
                "HTTPRoute",
                "infra",
                vec!["bar.example.com"],
                parent(None, None),
                Ok(vec![
                    ("http", vec![Some("bar.example.com")]),
                    ("all", vec![Some("bar.example.com")]),
                ]),
            ),
        ];
        for (why, kind, ns, hosts, p, want) in rows {
            let hosts: Vec<String> = hosts.into_iter().map(str::to_owned).collect();
            let route = RouteSide {
                kind,
                namespace: ns,
                hostnames: &hosts,
            };
            let got = attach(route, &p, "infra", &gateway_listeners, &verdicts, &lookup)
                .map(|a| {
                    a.into_iter()
                        .map(|(i, h)| (gateway_listeners[i].name.clone(), h))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.reason);
            let want = want.map(|v| {
                v.into_iter()
                    .map(|(n, h)| {
                        (
                            n.to_owned(),
                            h.into_iter().map(|x| x.map(str::to_owned)).collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{why}");
        }
    }

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> =
            [("env".into(), "prod".into()), ("team".into(), "a".into())].into();
        let expr = |op: &str, values: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| (*v).into()).collect()),
            }]),
        };
        let rows = [
            (selector(&[]), true, "empty selector selects all"),
            (selector(&[("env", "prod")]), true, "matchLabels"),
            (
                selector(&[("env", "prod"), ("team", "b")]),
                false,
                "every pair must hold",
            ),
            (expr("In", &["prod", "dev"]), true, "In"),
            (expr("NotIn", &["prod"]), false, "NotIn"),
            (expr("Exists", &[]), true, "Exists"),
            (expr("DoesNotExist", &[]), false, "DoesNotExist"),
        ];
        for (sel, want, why) in rows {
            assert_eq!(selector_matches(&sel, &labels), want, "{why}");
        }
    }

    #[test]
    fn which_parent_refs_name_the_gateway() {
        let p = |group: Option<&str>, kind: Option<&str>, ns: Option<&str>| ParentReference {
            group: group.map(str::to_owned),
            kind: kind.map(str::to_owned),
            namespace: ns.map(str::to_owned),
            name: "gw".into(),
            ..Default::default()
        };
        // ParentReference group: "When unspecified, "gateway.networking.k8s.io" is
        // inferred."; kind: "+kubebuilder:default=Gateway"; namespace: "When unspecified,
        // this refers to the local namespace of the Route."
        assert!(refers_to_gateway(&p(None, None, None), "infra", "infra", "gw"));
        assert!(refers_to_gateway(
            &p(Some(GROUP), Some("Gateway"), Some("infra")),
            "apps",
            "infra",
            "gw"
        ));
        assert!(!refers_to_gateway(&p(None, None, None), "apps", "infra", "gw"));
        assert!(!refers_to_gateway(
            &p(None, Some("Service"), None),
            "infra",
            "infra",
            "gw"
        ));
        assert!(!refers_to_gateway(
            &p(Some("example.com"), None, None),
            "infra",
            "infra",
            "gw"
        ));
    }
}
