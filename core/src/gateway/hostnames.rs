//! Host names: which requests a listener accepts, which a route asks for, and what the two
//! have in common.
//!
//! A host name is `None` (any host), an exact name (`foo.example.com`) or a wildcard
//! (`*.example.com`). Gateway API's wildcard is a suffix match over one *or more* labels:
//! "a match for `*.example.com` would match both `test.example.com`, and
//! `foo.test.example.com`, but not `example.com`" (HTTPRoute `spec.hostnames`).
//!
//! | listener | route | intersection |
//! |---|---|---|
//! | any | h | h |
//! | l | none listed | l |
//! | exact l | exact r | l if l == r |
//! | exact l | `*.s` | l if l ends with `.s` |
//! | `*.s` | exact r | r if r ends with `.s` |
//! | `*.s` | `*.t` | the longer of the two when one suffix ends with the other |
//!
//! A route with hostnames of which none intersects a listener's does not attach to it
//! (`NoMatchingListenerHostname`).

/// True when `host` (exact) is covered by `pattern` (exact or wildcard, `None` = any).
pub fn covers(pattern: Option<&str>, host: &str) -> bool {
    let Some(pattern) = pattern else { return true };
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => pattern == host,
    }
}

/// The host names a route serves on a listener: each route hostname intersected with the
/// listener's. `None` in the result means any host. Empty when nothing intersects.
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<Option<String>> {
    if route.is_empty() {
        return vec![listener.map(str::to_owned)];
    }
    let mut out: Vec<Option<String>> = Vec::new();
    for r in route {
        let r = r.to_ascii_lowercase();
        let hit = match listener {
            None => Some(r),
            Some(l) => intersect_one(&l.to_ascii_lowercase(), &r),
        };
        if let Some(h) = hit
            && !out.contains(&Some(h.clone()))
        {
            out.push(Some(h));
        }
    }
    out
}

fn intersect_one(listener: &str, route: &str) -> Option<String> {
    match (listener.strip_prefix("*."), route.strip_prefix("*.")) {
        (None, None) => (listener == route).then(|| listener.to_owned()),
        (None, Some(_)) => covers(Some(route), listener).then(|| listener.to_owned()),
        (Some(_), None) => covers(Some(listener), route).then(|| route.to_owned()),
        (Some(l), Some(r)) => {
            if r == l || r.ends_with(&format!(".{l}")) {
                Some(route.to_owned())
            } else if l.ends_with(&format!(".{r}")) {
                Some(listener.to_owned())
            } else {
                None
            }
        }
    }
}

/// How specific a listener host name is, for choosing among listeners of one port: an exact
/// name beats any wildcard, a wildcard with more dots beats one with fewer, and any host
/// comes last.
pub fn specificity(hostname: Option<&str>) -> (u8, usize) {
    match hostname {
        None => (0, 0),
        Some(h) if h.starts_with("*.") => (1, h.matches('.').count()),
        Some(_) => (2, 0),
    }
}

/// The listener a request for `host` arrives on, among the host names of the listeners of
/// one port: the most specific one that covers it (Gateway `spec.listeners`: "inbound
/// request hostnames MUST match from the most specific to least specific Hostname values
/// to choose the correct Listener and its associated set of Routes"). The index into
/// `listeners`; the first listener wins a tie (two equal host names on one port conflict).
pub fn listener_for_host(listeners: &[Option<&str>], host: &str) -> Option<usize> {
    listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| covers(**l, host))
        .max_by_key(|(i, l)| (specificity(**l), std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

/// The listener whose routes serve `host`, the host name of an entry (None: any host; exact;
/// or a wildcard): the most specific listener of `listeners` (one port's, in order) that
/// covers every name `host` stands for. An entry whose listener this is not can never be
/// reached through its own listener: every request it would match arrives on this one.
pub fn listener_for_entry_host(listeners: &[Option<&str>], host: Option<&str>) -> Option<usize> {
    let Some(host) = host else {
        return listeners.iter().position(Option::is_none);
    };
    let host = host.to_ascii_lowercase();
    let Some(suffix) = host.strip_prefix("*.") else {
        return listener_for_host(listeners, &host);
    };
    listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| match l.map(str::to_ascii_lowercase) {
            None => true,
            Some(l) => l
                .strip_prefix("*.")
                .is_some_and(|s| s == suffix || suffix.ends_with(&format!(".{s}"))),
        })
        .max_by_key(|(i, l)| (specificity(**l), std::cmp::Reverse(*i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn wildcards_cover_one_or_more_labels() {
        let rows: &[(&str, &str, bool, &str)] = &[
            // HTTPRoute hostnames: "a match for `*.example.com` would match both
            // `test.example.com`, and `foo.test.example.com`, but not `example.com`."
            ("*.example.com", "test.example.com", true, "one label"),
            ("*.example.com", "foo.test.example.com", true, "two labels"),
            ("*.example.com", "example.com", false, "the bare suffix"),
            (
                "*.example.com",
                "badexample.com",
                false,
                "a label boundary is needed",
            ),
            (
                "*.example.com",
                ".example.com",
                false,
                "an empty label is no label",
            ),
            // The schema keeps Hostname lower case ("a *label* must consist of lower case
            // alphanumeric characters"); a request's Host may not be, and DNS names compare
            // without case (RFC 4343).
            ("foo.example.com", "foo.EXAMPLE.com", true, "exact, any case"),
            ("*.example.com", "a.example.COM", true, "wildcard, any case"),
            ("foo.example.com", "bar.example.com", false, "exact, different"),
        ];
        for (pattern, host, want, why) in rows {
            assert_eq!(covers(Some(pattern), host), *want, "{pattern} vs {host}: {why}");
        }
        assert!(covers(None, "anything.at.all"), "no hostname means any host");
    }

    #[test]
    fn intersection_of_listener_and_route_hostnames() {
        // Rows quote the HTTPRoute `spec.hostnames` rules of Gateway API v1.6.3.
        /// (listener hostname, route hostnames, intersection, why)
        type Row<'a> = (Option<&'a str>, &'a [&'a str], &'a [Option<&'a str>], &'a str);
        let rows: &[Row] = &[
            // "If both the Listener and HTTPRoute have specified hostnames, and none
            // match with the criteria above, then the HTTPRoute is not accepted."
            (
                Some("foo.example.com"),
                &["bar.example.com"],
                &[],
                "exact vs other exact",
            ),
            // "1. IF: listener has no hostname, THEN all route hostnames apply" (any host).
            (
                None,
                &["foo.example.com", "*.bar.com"],
                &[Some("foo.example.com"), Some("*.bar.com")],
                "no listener hostname",
            ),
            // "If no hostname is specified [on the route], requests are routed based on
            // the Listener's hostname" (and any host when neither has one).
            (
                Some("*.example.com"),
                &[],
                &[Some("*.example.com")],
                "no route hostnames",
            ),
            (None, &[], &[None], "neither has hostnames: any host"),
            // "A Listener with `test.example.com` as the hostname matches HTTPRoutes that
            // have either not specified any hostnames, or have specified at least one of
            // `test.example.com` or `*.example.com`."
            (
                Some("test.example.com"),
                &["test.example.com"],
                &[Some("test.example.com")],
                "exact equal",
            ),
            (
                Some("test.example.com"),
                &["*.example.com"],
                &[Some("test.example.com")],
                "route wildcard narrows to the listener",
            ),
            // "A Listener with `*.example.com` as the hostname matches HTTPRoutes that
            // have either not specified any hostnames or have specified at least one
            // hostname that matches the Listener hostname. For example, `*.example.com`,
            // `test.example.com`, and `foo.test.example.com` would all match. On the other
            // hand, `example.com` and `test.example.net` would not match."
            (
                Some("*.example.com"),
                &["*.example.com"],
                &[Some("*.example.com")],
                "equal wildcards",
            ),
            (
                Some("*.example.com"),
                &["test.example.com"],
                &[Some("test.example.com")],
                "exact under the wildcard",
            ),
            (
                Some("*.example.com"),
                &["foo.test.example.com"],
                &[Some("foo.test.example.com")],
                "two labels under the wildcard",
            ),
            (
                Some("*.example.com"),
                &["example.com", "test.example.net"],
                &[],
                "neither matches",
            ),
            // The narrower of two wildcards: "*.foo.example.com" is inside "*.example.com".
            (
                Some("*.example.com"),
                &["*.foo.example.com"],
                &[Some("*.foo.example.com")],
                "route wildcard inside listener wildcard",
            ),
            (
                Some("*.foo.example.com"),
                &["*.example.com"],
                &[Some("*.foo.example.com")],
                "listener wildcard inside route wildcard",
            ),
            // "If a hostname is specified by both the Listener and HTTPRoute, there must be
            // at least one intersecting hostname": only the intersecting ones are served.
            (
                Some("*.example.com"),
                &["a.example.com", "a.example.net"],
                &[Some("a.example.com")],
                "only intersecting names are kept",
            ),
        ];
        for (listener, route, want, why) in rows {
            let want: Vec<Option<String>> = want.iter().map(|w| w.map(str::to_owned)).collect();
            assert_eq!(
                intersect(*listener, &s(route)),
                want,
                "{listener:?} x {route:?}: {why}"
            );
        }
    }

    #[test]
    fn the_most_specific_listener_takes_the_request() {
        // Gateway `spec.listeners`: "Exact matches MUST be processed before wildcard
        // matches, and wildcard matches MUST be processed before fallback (empty Hostname
        // value) matches ... the higher the number of dots in the hostname to the right of
        // the wildcard character, the higher the precedence."
        let listeners = [
            None,
            Some("*.com"),
            Some("*.example.com"),
            Some("foo.example.com"),
        ];
        let rows: &[(&str, Option<usize>, &str)] = &[
            ("foo.example.com", Some(3), "exact beats every wildcard"),
            ("bar.example.com", Some(2), "the wildcard with more dots"),
            (
                "a.b.example.com",
                Some(2),
                "a wildcard covers any number of labels",
            ),
            ("bar.com", Some(1), "the only wildcard that covers it"),
            ("example.net", Some(0), "only the listener without hostname"),
        ];
        for (host, want, why) in rows {
            assert_eq!(listener_for_host(&listeners, host), *want, "{host}: {why}");
        }
        assert_eq!(listener_for_host(&[Some("a.example.com")], "b.example.com"), None);
    }

    #[test]
    fn an_entry_host_belongs_to_the_most_specific_listener_covering_it() {
        let port: &[Option<&str>] = &[
            None,
            Some("*.example.com"),
            Some("*.foo.example.com"),
            Some("foo.example.com"),
        ];
        let rows: &[(Option<&str>, Option<usize>)] = &[
            (None, Some(0)),
            (Some("bar.example.com"), Some(1)),
            (Some("a.foo.example.com"), Some(2)),
            (Some("foo.example.com"), Some(3)),
            (Some("other.org"), Some(0)),
            (Some("*.example.com"), Some(1)),
            (Some("*.bar.example.com"), Some(1)),
            (Some("*.foo.example.com"), Some(2)),
            (Some("*.a.foo.example.com"), Some(2)),
            (Some("*.org"), Some(0)),
        ];
        for (host, want) in rows {
            assert_eq!(listener_for_entry_host(port, *host), *want, "{host:?}");
        }
        // Without a listener for any host, a host no listener covers has none.
        assert_eq!(listener_for_entry_host(&port[1..], Some("other.org")), None);
        assert_eq!(listener_for_entry_host(&port[1..], None), None);
    }
}
