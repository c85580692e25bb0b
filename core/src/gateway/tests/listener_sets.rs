//! ListenerSets merged into their Gateway: admission, precedence, attachment, statuses and
//! serving. Each scenario quotes the Gateway API v1.6.3 rule it checks (the conformance suite's
//! `listenerset-*` manifests are the model).

use lockstep_crds::gateway::ListenerSet;

use super::*;
use crate::gateway::{
    listener_sets::{ListenerSetVerdict, listener_key, under_parent},
    serve::{Outcome, generated_name, judge, plan},
};

fn set(ns: &str, name: &str, created: &str, listeners: &str) -> ListenerSet {
    yaml(&format!(
        "metadata: {{name: {name}, namespace: {ns}, generation: 4, creationTimestamp: \"{created}\"}}\n\
         spec:\n  parentRef: {{name: gw, namespace: infra}}\n  listeners: {listeners}"
    ))
}

fn allowing(from: &str) -> Gateway {
    let mut gw = gateway("[{name: gw-listener, port: 80, protocol: HTTP, hostname: gw.example.com}]");
    gw.spec.allowed_listeners = Some(yaml(&format!(
        "{{namespaces: {{from: {from}, selector: {{matchLabels: {{allowed: ns}}}}}}}}"
    )));
    gw
}

fn verdict<'a>(t: &'a Translation, name: &str) -> &'a ListenerSetVerdict {
    t.listener_sets
        .iter()
        .find(|s| s.key.name == name)
        .unwrap_or_else(|| panic!("no verdict for {name}"))
}

fn conditions(v: &ListenerSetVerdict) -> Vec<(&str, &str, &str)> {
    v.conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect()
}

fn listener_conditions<'a>(v: &'a ListenerSetVerdict, name: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    let l = v
        .listeners
        .iter()
        .find(|l| l.name == name)
        .expect("listener status");
    l.conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect()
}

const ONE: &str = "[{name: ls-listener, port: 80, protocol: HTTP, hostname: ls.example.com}]";

fn namespace(name: &str, labels: &str) -> Namespace {
    yaml(&format!("metadata: {{name: {name}, labels: {labels}}}"))
}

/// Gateway `allowedListeners`: "The default value is to allow no ListenerSets"; `from`:
/// "Same: Only ListenerSets in the same namespace may be attached to this Gateway. Selector:
/// ListenerSets in namespaces selected by the selector ... All: ListenerSets in all
/// namespaces ... None: Only listeners defined in the Gateway's spec are allowed".
/// ListenerSetReasonNotAllowed: "the ListenerSet is not allowed to be attached to the Gateway".
#[test]
fn listener_sets_are_admitted_as_the_gateways_allowed_listeners_says() {
    let not_allowed = [
        ("Accepted", "False", reason::NOT_ALLOWED),
        ("Programmed", "False", reason::NOT_ALLOWED),
    ];
    let accepted = [
        ("Accepted", "True", reason::ACCEPTED),
        ("Programmed", "False", reason::PENDING),
    ];
    // (allowedListeners.from or none, admitted ListenerSets of [infra, labelled, other])
    let rows: &[(Option<&str>, [bool; 3])] = &[
        (None, [false, false, false]),
        (Some("None"), [false, false, false]),
        (Some("Same"), [true, false, false]),
        (Some("Selector"), [false, true, false]),
        (Some("All"), [true, true, true]),
    ];
    for (from, want) in rows {
        let mut w = World::new(match from {
            Some(f) => allowing(f),
            None => gateway("[{name: gw-listener, port: 80, protocol: HTTP, hostname: gw.example.com}]"),
        });
        w.namespaces = vec![namespace("labelled", "{allowed: ns}"), namespace("other", "{}")];
        let hosts = ["a.example.com", "b.example.com", "c.example.com"];
        for (i, ns) in ["infra", "labelled", "other"].iter().enumerate() {
            let listeners = format!("[{{name: l, port: 80, protocol: HTTP, hostname: {}}}]", hosts[i]);
            w.sets
                .push(set(ns, &format!("set-{ns}"), "2026-01-01T00:00:00Z", &listeners));
        }
        // A ListenerSet of another Gateway is not this one's at all.
        let mut elsewhere = set("infra", "elsewhere", "2026-01-01T00:00:00Z", ONE);
        elsewhere.spec.parent_ref.name = "other-gw".into();
        w.sets.push(elsewhere);
        let t = w.run();
        assert_eq!(t.listener_sets.len(), 3, "{from:?}");
        for (i, ns) in ["infra", "labelled", "other"].iter().enumerate() {
            let v = verdict(&t, &format!("set-{ns}"));
            let expected: &[(&str, &str, &str)] = if want[i] { &accepted } else { &not_allowed };
            assert_eq!(conditions(v), expected, "{from:?} {ns}");
            assert!(v.conditions.iter().all(|c| c.observed_generation == Some(4)));
            assert_eq!(
                v.listeners.is_empty(),
                !want[i],
                "{from:?} {ns}: listener statuses"
            );
        }
        let admitted = want.iter().filter(|a| **a).count();
        assert_eq!(t.attached_listener_sets, admitted as i32, "{from:?}");
        let served = t.config.as_ref().unwrap().listeners.len();
        assert_eq!(
            served,
            1 + admitted,
            "{from:?}: the admitted sets' listeners are served"
        );
    }
}

/// ListenerSet `spec.listeners`: "Implementations MUST treat the parent Gateway as having the
/// merged list of all listeners from itself and attached ListenerSets using the following
/// precedence: 1. "parent" Gateway 2. ListenerSet ordered by creation time (oldest first) 3.
/// ListenerSet ordered alphabetically by "{namespace}/{name}"." The conformance suite's
/// ListenerSetHostnameConflict and ListenerSetProtocolConflict: the later listener is
/// Accepted=False, Programmed=False and Conflicted=True with the conflict's reason, the
/// earlier one untouched; a ListenerSet with no listener left is not accepted
/// (`ListenersNotValid`) and not counted in `attachedListenerSets`.
#[test]
fn the_gateway_then_older_listener_sets_win_a_conflict() {
    let mut w = World::new(allowing("Same"));
    w.gateway.spec.listeners.push(yaml(
        "{name: shared, port: 80, protocol: HTTP, hostname: shared.example.com}",
    ));
    w.sets = vec![
        // Newer than `first`, so `first` wins their shared host name.
        set(
            "infra",
            "second",
            "2026-01-02T00:00:00Z",
            "[{name: own, port: 80, protocol: HTTP, hostname: second.example.com}, \
              {name: between, port: 80, protocol: HTTP, hostname: between.example.com}]",
        ),
        set(
            "infra",
            "first",
            "2026-01-01T00:00:00Z",
            "[{name: own, port: 80, protocol: HTTP, hostname: first.example.com}, \
              {name: shared, port: 80, protocol: HTTP, hostname: shared.example.com}, \
              {name: between, port: 80, protocol: HTTP, hostname: between.example.com}, \
              {name: tcp, port: 80, protocol: TCP}]",
        ),
        // Same creation time as `second`: the name decides.
        set(
            "infra",
            "third",
            "2026-01-02T00:00:00Z",
            "[{name: only, port: 80, protocol: HTTP, hostname: shared.example.com}]",
        ),
    ];
    let t = w.run();
    let order: Vec<&str> = t.listener_sets.iter().map(|s| s.key.name.as_str()).collect();
    assert_eq!(order, ["first", "second", "third"], "precedence order");
    let ok = vec![
        ("Accepted", "True", reason::ACCEPTED),
        ("Programmed", "True", reason::PROGRAMMED),
        ("ResolvedRefs", "True", reason::RESOLVED_REFS),
        ("Conflicted", "False", reason::NO_CONFLICTS),
    ];
    let lost = |why| {
        vec![
            ("Accepted", "False", why),
            ("Programmed", "False", why),
            ("ResolvedRefs", "True", reason::RESOLVED_REFS),
            ("Conflicted", "True", why),
        ]
    };
    // Before the barrier a served listener is Programmed=False Pending; compare the rest.
    let pending = |mut c: Vec<(&'static str, &'static str, &'static str)>| {
        c[1] = ("Programmed", "False", reason::PENDING);
        c
    };
    let first = verdict(&t, "first");
    assert_eq!(listener_conditions(first, "own"), pending(ok.clone()));
    assert_eq!(
        listener_conditions(first, "shared"),
        lost(reason::HOSTNAME_CONFLICT)
    );
    assert_eq!(listener_conditions(first, "between"), pending(ok.clone()));
    assert_eq!(listener_conditions(first, "tcp"), lost(reason::PROTOCOL_CONFLICT));
    let second = verdict(&t, "second");
    assert_eq!(
        listener_conditions(second, "between"),
        lost(reason::HOSTNAME_CONFLICT)
    );
    assert_eq!(
        conditions(second)[0],
        ("Accepted", "True", reason::LISTENERS_NOT_VALID),
        "accepted: one listener is left"
    );
    let third = verdict(&t, "third");
    assert_eq!(
        conditions(third),
        [
            ("Accepted", "False", reason::LISTENERS_NOT_VALID),
            ("Programmed", "False", reason::LISTENERS_NOT_VALID)
        ]
    );
    assert_eq!(t.attached_listener_sets, 2);
    // The Gateway's own listeners are untouched.
    for l in &t.listeners {
        assert!(
            l.conditions
                .iter()
                .any(|c| c.type_ == "Accepted" && c.status == "True"),
            "{}",
            l.name
        );
    }
}

/// ListenerSet: "Routes can attach to a ListenerSet by specifying it as a parentRef, and can
/// optionally target specific listeners using the sectionName field." A parentRef to the
/// Gateway reaches its own listeners only (the suite's ListenerSetHTTPRouting and
/// ListenerSetGatewayParentSectionNameNotFound), and each parentRef has its own status
/// (ListenerSetDualParentRefIndependence). `allowedRoutes.namespaces.from: Same` of a
/// ListenerSet's listener is the ListenerSet's namespace (ListenerSetAllowedRoutesNamespaces).
#[test]
fn routes_reach_a_listener_sets_listeners_only_through_a_parent_ref_to_it() {
    let mut w = World::new(allowing("All"));
    w.sets = vec![
        set(
            "infra",
            "ls",
            "2026-01-01T00:00:00Z",
            "[{name: one, port: 80, protocol: HTTP, hostname: one.example.com}, \
              {name: two, port: 80, protocol: HTTP, hostname: two.example.com}]",
        ),
        set(
            "apps",
            "remote",
            "2026-01-01T00:00:00Z",
            "[{name: same, port: 80, protocol: HTTP, hostname: remote.example.com}]",
        ),
    ];
    let ls_ref = "{kind: ListenerSet, group: gateway.networking.k8s.io, name: ls}";
    let routes = [
        ("to-gateway", "[{name: gw}]".to_owned()),
        ("to-set", format!("[{ls_ref}]")),
        (
            "to-section",
            "[{kind: ListenerSet, name: ls, sectionName: one}]".to_owned(),
        ),
        ("both", format!("[{{name: gw}}, {ls_ref}]")),
        (
            "bad-section",
            "[{name: gw, sectionName: one}, {kind: ListenerSet, name: ls, sectionName: one}]".to_owned(),
        ),
        (
            "to-remote",
            "[{kind: ListenerSet, name: remote, namespace: apps}]".to_owned(),
        ),
    ];
    for (name, parents) in &routes {
        let spec =
            format!("{{parentRefs: {parents}, rules: [{{backendRefs: [{{name: web, port: 8080}}]}}]}}");
        w.http
            .push(http_route("infra", name, "2026-01-01T00:00:00Z", &spec));
    }
    // A route of the remote ListenerSet's own namespace.
    w.http.push(http_route(
        "apps",
        "local-to-remote",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{kind: ListenerSet, name: remote}], rules: [{backendRefs: [{name: api, port: 9000}]}]}",
    ));
    let t = w.run();
    let accepted = |route: &str| -> Vec<(String, &str, &str)> {
        t.routes
            .iter()
            .find(|r| r.route.key.name == route)
            .unwrap()
            .parents
            .iter()
            .map(|p| {
                let (s, r) = cond(p, ctype::ACCEPTED).unwrap();
                (
                    format!(
                        "{}/{}",
                        p.parent_ref.kind.as_deref().unwrap_or("Gateway"),
                        p.parent_ref.name
                    ),
                    s,
                    r,
                )
            })
            .collect()
    };
    let yes = |p: &str| (p.to_owned(), "True", reason::ACCEPTED);
    assert_eq!(accepted("to-gateway"), [yes("Gateway/gw")]);
    assert_eq!(accepted("to-set"), [yes("ListenerSet/ls")]);
    assert_eq!(accepted("both"), [yes("Gateway/gw"), yes("ListenerSet/ls")]);
    assert_eq!(
        accepted("bad-section"),
        [
            ("Gateway/gw".to_owned(), "False", reason::NO_MATCHING_PARENT),
            yes("ListenerSet/ls")
        ]
    );
    assert_eq!(
        accepted("to-remote"),
        [(
            "ListenerSet/remote".to_owned(),
            "False",
            reason::NOT_ALLOWED_BY_LISTENERS
        )],
        "Same is the ListenerSet's namespace"
    );
    assert_eq!(accepted("local-to-remote"), [yes("ListenerSet/remote")]);

    let ls = verdict(&t, "ls");
    let attached =
        |v: &ListenerSetVerdict, l: &str| v.listeners.iter().find(|s| s.name == l).unwrap().attached_routes;
    assert_eq!((attached(ls, "one"), attached(ls, "two")), (4, 2));
    assert_eq!(
        listener(&t, "gw-listener").attached_routes,
        2,
        "to-gateway and both"
    );
    assert_eq!(attached(verdict(&t, "remote"), "same"), 1);

    // What is served: each listener under its key, only its own routes.
    let config = t.config.as_ref().unwrap();
    let routes_of = |key: &str| -> Vec<&str> {
        let l = config
            .listeners
            .iter()
            .find(|l| l.name == key)
            .unwrap_or_else(|| panic!("{key}"));
        let mut names: Vec<&str> = l
            .entries
            .iter()
            .map(|e| config.routes[e.route].key.name.as_str())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let key = |ns: &str, set: &str, l: &str| listener_key(&crate::ObjectKey::new(ns, set), l);
    assert_eq!(routes_of("gw-listener"), ["both", "to-gateway"]);
    assert_eq!(
        routes_of(&key("infra", "ls", "one")),
        ["bad-section", "both", "to-section", "to-set"]
    );
    assert_eq!(routes_of(&key("infra", "ls", "two")), ["both", "to-set"]);
    assert_eq!(routes_of(&key("apps", "remote", "same")), ["local-to-remote"]);
}

/// ListenerSet: "ReferenceGrants applied to a Gateway are not inherited by child
/// ListenerSets ... A ListenerSet can reference secrets/backends in its own namespace without
/// a ReferenceGrant." A listener whose certificate is not permitted is `ResolvedRefs=False
/// RefNotPermitted`, and a ListenerSet with no other listener is not accepted (the suite's
/// ListenerSetReferenceGrant).
#[test]
fn a_listener_sets_certificate_of_another_namespace_needs_a_grant_to_listener_sets() {
    let https = |host: &str| {
        format!(
            "[{{name: tls, port: 443, protocol: HTTPS, hostname: {host}, tls: {{certificateRefs: [{{name: cert, namespace: certs}}]}}}}]"
        )
    };
    let mut w = World::new(allowing("All"));
    w.secrets.push(tls_secret("certs", "cert"));
    w.secrets.push(tls_secret("apps", "own"));
    w.grants = vec![
        grant("certs", "Gateway", "infra", "", "Secret", None),
        grant("certs", "ListenerSet", "infra", "", "Secret", None),
    ];
    w.sets = vec![
        set(
            "infra",
            "granted",
            "2026-01-01T00:00:00Z",
            &https("a.example.com"),
        ),
        // Only Gateways of `apps` would be allowed: not this ListenerSet.
        set("apps", "refused", "2026-01-01T00:00:00Z", &https("b.example.com")),
        set(
            "apps",
            "own",
            "2026-01-01T00:00:00Z",
            "[{name: tls, port: 443, protocol: HTTPS, hostname: c.example.com, tls: {certificateRefs: [{name: own}]}}]",
        ),
    ];
    w.grants
        .push(grant("certs", "Gateway", "apps", "", "Secret", None));
    let t = w.run();
    let resolved = |set: &str| {
        listener_conditions(verdict(&t, set), "tls")
            .into_iter()
            .find(|c| c.0 == "ResolvedRefs")
            .unwrap()
    };
    assert_eq!(
        resolved("granted"),
        ("ResolvedRefs", "True", reason::RESOLVED_REFS)
    );
    assert_eq!(
        resolved("refused"),
        ("ResolvedRefs", "False", reason::REF_NOT_PERMITTED)
    );
    assert_eq!(resolved("own"), ("ResolvedRefs", "True", reason::RESOLVED_REFS));
    assert_eq!(
        conditions(verdict(&t, "refused"))[0],
        ("Accepted", "False", reason::LISTENERS_NOT_VALID)
    );
    assert_eq!(t.attached_listener_sets, 2);
    // The certificates of other namespaces than the Gateway's are served from copies.
    let plans = plan(t.config.as_ref().unwrap(), "edge");
    let own = plans
        .iter()
        .find(|p| p.listener == listener_key(&crate::ObjectKey::new("apps", "own"), "tls"))
        .unwrap();
    assert_eq!(own.copies.len(), 0, "no route: nothing published, nothing copied");
}

/// A ListenerSet's listeners are served like the Gateway's: one generated RouterConfig each
/// (named after the listener's key), `Programmed` from the barrier at the ListenerSet's
/// generation, the ListenerSet's `Programmed` the worst of its listeners', and False
/// `ParentNotProgrammed` while the Gateway is not programmed.
#[test]
fn a_listener_sets_listeners_are_programmed_by_the_barrier() {
    let mut w = World::new(allowing("Same"));
    w.sets = vec![set("infra", "ls", "2026-01-01T00:00:00Z", ONE)];
    w.http.push(http_route(
        "infra",
        "web",
        "2026-01-01T00:00:00Z",
        "{parentRefs: [{kind: ListenerSet, name: ls}], rules: [{backendRefs: [{name: web, port: 8080}]}]}",
    ));
    let t = w.run();
    let plans = plan(t.config.as_ref().unwrap(), "edge");
    let key = listener_key(&crate::ObjectKey::new("infra", "ls"), "ls-listener");
    let p = plans
        .iter()
        .find(|p| p.listener == key)
        .expect("a plan for the set's listener");
    assert_eq!(p.name, generated_name("gw", &key));
    assert!(p.name.starts_with("gw-infra.ls.ls-listener-"), "{}", p.name);
    let Outcome::Publish(spec) = &p.outcome else {
        panic!("{:?}", p.outcome)
    };
    assert_eq!(spec.rules[0].host, "ls.example.com");

    let rc = |ready: &str| -> lockstep_crds::RouterConfig {
        let digest = crate::config_digest(spec, &p.tls);
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lockstep.dev/v1alpha1", "kind": "RouterConfig",
            "metadata": {"name": p.name, "namespace": "infra", "generation": 1, "annotations": {
                crate::gateway::serve::GATEWAY_GENERATION_ANNOTATION: "3",
                crate::gateway::serve::ROUTES_ANNOTATION: crate::gateway::serve::routes_annotation(&p.routes),
                crate::gateway::serve::SPEC_DIGEST_ANNOTATION: crate::gateway::serve::spec_digest(spec),
            }},
            "spec": spec,
            "status": {"conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 1, "lastTransitionTime": "2026-06-01T00:00:00Z"},
                {"type": "Ready", "status": ready, "reason": if ready == "True" {"AllReplicasSynced"} else {"RolloutInProgress"}, "message": "", "observedGeneration": 1, "lastTransitionTime": "2026-06-01T00:00:00Z"}],
                "replicas": 1, "syncedReplicas": 1,
                "replicaStatus": [{"name": "edge/p0", "observedGeneration": 1, "configDigest": digest}]}
        }))
        .unwrap()
    };
    for (ready, want) in [
        ("False", ("False", reason::PENDING)),
        ("True", ("True", reason::PROGRAMMED)),
    ] {
        let mut judged = t.clone();
        let observed = |name: &str| (name == p.name).then(|| rc(ready));
        judge(&mut judged, Some(&Ok("edge".into())), &plans, &observed, now());
        let v = verdict(&judged, "ls");
        fn programmed<'a>(cs: Vec<(&'a str, &'a str, &'a str)>) -> Option<(&'a str, &'a str)> {
            cs.into_iter().find(|c| c.0 == "Programmed").map(|c| (c.1, c.2))
        }
        assert_eq!(
            programmed(listener_conditions(v, "ls-listener")),
            Some(want),
            "listener, Ready={ready}"
        );
        assert_eq!(programmed(conditions(v)), Some(want), "set, Ready={ready}");
        let c = v.conditions.iter().find(|c| c.type_ == "Programmed").unwrap();
        assert_eq!(c.observed_generation, Some(4), "the ListenerSet's generation");
        let route = &judged.routes[0].parents[0];
        assert_eq!(
            cond(route, ctype::LOCKSTEP_READY).map(|c| c.0),
            Some(ready),
            "the route parent's barrier"
        );
    }

    let mut ls = condition_of("True", reason::PROGRAMMED);
    under_parent(&mut ls, &condition_of("False", reason::PENDING));
    assert_eq!(
        (ls.status.as_str(), ls.reason.as_str()),
        ("False", reason::PARENT_NOT_PROGRAMMED)
    );
    let mut ls = condition_of("True", reason::PROGRAMMED);
    under_parent(&mut ls, &condition_of("True", reason::PROGRAMMED));
    assert_eq!(ls.status, "True");
}

fn condition_of(status: &str, why: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    crate::gateway::status::condition(ctype::PROGRAMMED, status == "True", why, "", 1, now())
}
