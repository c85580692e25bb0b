//! Gateway API precedence among the entries of one listener, across every route attached to
//! it. Entries are kept in this order; the first entry whose host, path and match hold
//! takes the request.
//!
//! HTTPRoute `spec.rules[].matches`: "precedence must be given to the match having:
//! "Exact" path match. "Prefix" path match with largest number of characters. Method match.
//! Largest number of header matches. Largest number of query param matches. ... If ties
//! still exist across multiple Routes, matching precedence MUST be determined in order of
//! the following criteria, continuing on ties: The oldest Route based on creation
//! timestamp. The Route appearing first in alphabetical order by "{namespace}/{name}". If
//! ties still exist within an HTTPRoute, matching precedence MUST be granted to the FIRST
//! matching rule (in list order)". Before all of these, HTTPRoute `spec.hostnames`: "precedence
//! must be given to rules from the HTTPRoute with the largest number of: Characters in a
//! matching non-wildcard hostname. Characters in a matching hostname."
//!
//! GRPCRoute's order ("Characters in a matching service. Characters in a matching method.
//! Header matches.") is the same once its matches are paths: an Exact `/service/method`
//! beats a Prefix `/service`, then the most header matches. GRPCRoute also says "Merging
//! MUST not be done between GRPCRoutes and HTTPRoutes"; both kinds share one listener's
//! entries here, so an HTTPRoute path can compete with a gRPC one (see docs/gateway.md).
//!
//! lockstep's route table applies the same order (exact host, then Exact path, longest
//! Prefix, method, headers, query parameters) and breaks the remaining ties by list order,
//! so sorting the entries here makes the oldest route win in the proxy too. (A longest
//! Prefix counted in segments, as the table does, and in characters, as the spec does,
//! agree: two Prefixes that both match one path are whole-segment prefixes of each other.)

use std::cmp::{Ordering, Reverse};

use jiff::Timestamp;
use lockstep_crds::PathType;

/// What orders one entry against another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rank<'a> {
    /// The host the entry serves (None: any).
    pub host: Option<&'a str>,
    /// Exact or Prefix.
    pub path_type: PathType,
    /// The path.
    pub path: &'a str,
    /// A method match is present.
    pub method: bool,
    /// Header matches.
    pub headers: usize,
    /// Query parameter matches.
    pub query_params: usize,
    /// The route's creationTimestamp (None sorts last: not persisted yet).
    pub created: Option<Timestamp>,
    /// The route's namespace.
    pub namespace: &'a str,
    /// The route's name.
    pub name: &'a str,
    /// The rule's index in the route.
    pub rule: usize,
    /// The match's index in the rule.
    pub match_index: usize,
}

/// The ordering key: smaller comes first (wins). Grouped (host, match, route) because
/// tuples are ordered up to twelve fields.
fn key<'a>(r: &Rank<'a>) -> impl Ord + use<'a> {
    let host = r.host.unwrap_or("");
    let exact_host_chars = if host.starts_with("*.") || r.host.is_none() {
        0
    } else {
        host.len()
    };
    (
        (Reverse(exact_host_chars), Reverse(host.len())),
        (
            r.path_type != PathType::Exact,
            Reverse(r.path.len()),
            !r.method,
            Reverse(r.headers),
            Reverse(r.query_params),
        ),
        (
            r.created.is_none(),
            r.created,
            r.namespace,
            r.name,
            r.rule,
            r.match_index,
        ),
    )
}

/// Gateway API precedence: `Less` when `a` takes a request both match.
pub fn compare(a: &Rank<'_>, b: &Rank<'_>) -> Ordering {
    key(a).cmp(&key(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Rank<'static> {
        Rank {
            host: Some("app.example.com"),
            path_type: PathType::Prefix,
            path: "/",
            method: false,
            headers: 0,
            query_params: 0,
            created: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            namespace: "default",
            name: "b",
            rule: 0,
            match_index: 0,
        }
    }

    #[test]
    fn precedence_rows() {
        let t = |s: &str| -> Option<Timestamp> { Some(s.parse().unwrap()) };
        // (why, winner, loser): each row changes one criterion of `base`.
        let rows: Vec<(&str, Rank, Rank)> = vec![
            // hostnames: "Characters in a matching non-wildcard hostname."
            (
                "exact host beats wildcard",
                base(),
                Rank {
                    host: Some("*.example.com"),
                    ..base()
                },
            ),
            // "Characters in a matching hostname."
            (
                "longer wildcard beats shorter",
                Rank {
                    host: Some("*.a.example.com"),
                    ..base()
                },
                Rank {
                    host: Some("*.example.com"),
                    ..base()
                },
            ),
            (
                "a wildcard beats any host",
                Rank {
                    host: Some("*.example.com"),
                    ..base()
                },
                Rank { host: None, ..base() },
            ),
            // matches: ""Exact" path match."
            (
                "Exact beats Prefix",
                Rank {
                    path_type: PathType::Exact,
                    path: "/a",
                    ..base()
                },
                Rank {
                    path: "/a/b",
                    ..base()
                },
            ),
            // ""Prefix" path match with largest number of characters."
            (
                "longer Prefix beats shorter",
                Rank {
                    path: "/a/b",
                    ..base()
                },
                Rank { path: "/a", ..base() },
            ),
            // "Method match."
            (
                "a method match beats headers",
                Rank {
                    method: true,
                    ..base()
                },
                Rank { headers: 3, ..base() },
            ),
            // "Largest number of header matches."
            (
                "more headers beat more query params",
                Rank { headers: 2, ..base() },
                Rank {
                    headers: 1,
                    query_params: 5,
                    ..base()
                },
            ),
            // "Largest number of query param matches."
            (
                "more query params",
                Rank {
                    query_params: 2,
                    ..base()
                },
                Rank {
                    query_params: 1,
                    ..base()
                },
            ),
            // "The oldest Route based on creation timestamp."
            (
                "the older route",
                Rank {
                    created: t("2025-01-01T00:00:00Z"),
                    name: "z",
                    ..base()
                },
                Rank { name: "a", ..base() },
            ),
            (
                "a persisted route beats one without a timestamp",
                base(),
                Rank {
                    created: None,
                    name: "a",
                    ..base()
                },
            ),
            // "The Route appearing first in alphabetical order by "{namespace}/{name}"."
            (
                "namespace first",
                Rank {
                    namespace: "a",
                    name: "z",
                    ..base()
                },
                Rank {
                    namespace: "b",
                    name: "a",
                    ..base()
                },
            ),
            ("then name", Rank { name: "a", ..base() }, base()),
            // "the FIRST matching rule (in list order)"
            (
                "the first rule of a route",
                Rank {
                    rule: 0,
                    match_index: 3,
                    ..base()
                },
                Rank { rule: 1, ..base() },
            ),
            (
                "then the first match",
                base(),
                Rank {
                    match_index: 1,
                    ..base()
                },
            ),
        ];
        for (why, winner, loser) in rows {
            assert_eq!(compare(&winner, &loser), Ordering::Less, "{why}");
            assert_eq!(compare(&loser, &winner), Ordering::Greater, "{why} (reversed)");
        }
        assert_eq!(compare(&base(), &base()), Ordering::Equal);
    }
}
