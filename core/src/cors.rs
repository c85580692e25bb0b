//! A path's CORS policy, compiled: whether a request is a preflight, the proxy's answer to
//! it, and the headers added to the response of any other request from an allowed Origin
//! (Gateway API's HTTPRoute CORS filter, the Fetch standard's CORS protocol).
//!
//! | request | answer |
//! |---|---|
//! | OPTIONS with Origin and Access-Control-Request-Method, Origin allowed | 204 by the proxy: Allow-Origin (the Origin), Allow-Methods (the list, or the method asked for under `*`), Allow-Headers (the list, or the headers asked for under `*`; none when none asked), Max-Age, Allow-Credentials, Expose-Headers |
//! | the same, Origin not allowed | 204 by the proxy, no Access-Control-* header: the browser refuses the request |
//! | any other request with an allowed Origin | proxied; the response gets Allow-Origin, Allow-Credentials, Expose-Headers |
//! | no Origin, or one not allowed | proxied as it is |
//!
//! Allow-Origin always echoes the request's Origin (Gateway API allows it under `*`, and
//! requires it with credentials); every answer of such a path says `Vary: Origin`.

use http::{HeaderMap, HeaderValue, Method, header};

/// Matches request Origins against the allowed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginPattern {
    /// Every Origin.
    Any,
    /// This Origin, normalised.
    Exact(String),
    /// `scheme://` then one or more labels then this suffix (`.example.com[:port]`).
    Labels { scheme: String, suffix: String },
}

/// What a list of methods or headers allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    /// Nothing listed: the header is not sent.
    None,
    /// `*`: whatever the preflight asks for.
    Any,
    /// The list, joined.
    List(HeaderValue),
}

/// A compiled `filters.cors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<OriginPattern>,
    credentials: bool,
    methods: Allowed,
    headers: Allowed,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

/// Lower case, the scheme's default port dropped: how two Origins are compared.
fn normalize_origin(origin: &str) -> String {
    let origin = origin.to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if origin.starts_with(scheme)
            && let Some(bare) = origin.strip_suffix(port)
        {
            return bare.to_owned();
        }
    }
    origin
}

fn allowed(list: &[String]) -> Option<Allowed> {
    Some(match list {
        [] => Allowed::None,
        [one] if one == "*" => Allowed::Any,
        _ => Allowed::List(HeaderValue::from_str(&list.join(", ")).ok()?),
    })
}

impl CorsPolicy {
    /// Compiles a spec's policy; None when a value cannot be a header value (validation
    /// reports it).
    pub fn compile(c: &lockstep_crds::Cors) -> Option<Self> {
        let origins = c
            .allow_origins
            .iter()
            .map(|o| {
                if o == "*" {
                    return OriginPattern::Any;
                }
                let o = normalize_origin(o);
                match o.split_once("://*.") {
                    Some((scheme, rest)) => OriginPattern::Labels {
                        scheme: format!("{scheme}://"),
                        suffix: format!(".{rest}"),
                    },
                    None => OriginPattern::Exact(o),
                }
            })
            .collect();
        let expose = match c.expose_headers.as_slice() {
            [] => None,
            // With credentials `*` is a header name, not a wildcard: say nothing.
            [one] if one == "*" && c.allow_credentials => None,
            list => Some(HeaderValue::from_str(&list.join(", ")).ok()?),
        };
        Some(Self {
            origins,
            credentials: c.allow_credentials,
            methods: allowed(&c.allow_methods)?,
            headers: allowed(&c.allow_headers)?,
            expose,
            max_age: HeaderValue::from(c.max_age.unwrap_or(5)),
        })
    }

    /// Whether a request is a CORS preflight: OPTIONS with Origin and
    /// Access-Control-Request-Method.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The request's Origin, when the policy allows it.
    pub fn allowed_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderValue> {
        let value = headers.get(header::ORIGIN)?;
        let origin = normalize_origin(value.to_str().ok()?);
        self.origins
            .iter()
            .any(|p| match p {
                OriginPattern::Any => true,
                OriginPattern::Exact(o) => *o == origin,
                OriginPattern::Labels { scheme, suffix } => origin
                    .strip_prefix(scheme.as_str())
                    .and_then(|rest| rest.strip_suffix(suffix.as_str()))
                    .is_some_and(|labels| !labels.is_empty() && !labels.contains(['/', ':', '@'])),
            })
            .then_some(value)
    }

    /// The headers of the proxy's answer to a preflight with these request headers: none
    /// of Access-Control-* when its Origin is not allowed.
    pub fn preflight(&self, request: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        out.insert(header::VARY, HeaderValue::from_static("origin"));
        let Some(origin) = self.allowed_origin(request) else {
            return out;
        };
        self.common(origin, &mut out);
        let asked = |name| request.get(name).cloned();
        let methods = match &self.methods {
            Allowed::None => None,
            Allowed::Any => asked(header::ACCESS_CONTROL_REQUEST_METHOD),
            Allowed::List(list) => Some(list.clone()),
        };
        let headers = match &self.headers {
            Allowed::None => None,
            Allowed::Any => asked(header::ACCESS_CONTROL_REQUEST_HEADERS),
            Allowed::List(list) => Some(list.clone()),
        };
        if let Some(methods) = methods {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if let Some(headers) = headers {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, headers);
        }
        out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        out
    }

    /// Adds the CORS headers to the response of a request (not a preflight) with these
    /// request headers.
    pub fn decorate(&self, request: &HeaderMap, response: &mut HeaderMap) {
        response.append(header::VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = self.allowed_origin(request) {
            self.common(origin, response);
        }
    }

    fn common(&self, origin: &HeaderValue, out: &mut HeaderMap) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> CorsPolicy {
        let c: lockstep_crds::Cors = serde_saphyr::from_str(yaml).expect("cors");
        garde::Validate::validate(&c).expect("valid");
        CorsPolicy::compile(&c).expect("compiles")
    }

    fn request(headers: &[(&str, &str)]) -> HeaderMap {
        headers
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn get<'h>(h: &'h HeaderMap, name: &str) -> Option<&'h str> {
        h.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn origins_match_exactly_by_label_wildcard_or_any() {
        let p = policy(
            "{allowOrigins: [\"https://www.foo.com\", \"https://*.bar.com\", \"http://local.test:8080\"]}",
        );
        for (origin, allowed) in [
            ("https://www.foo.com", true),
            ("HTTPS://WWW.FOO.COM", true),
            ("https://www.foo.com:443", true),
            ("http://www.foo.com", false),
            ("https://www.foo.com:8443", false),
            ("https://www.bar.com", true),
            // Any number of labels left of the `*`.
            ("https://xpto.www.bar.com", true),
            ("https://bar.com", false),
            ("https://evilbar.com", false),
            ("https://foobar.com", false),
            ("http://local.test:8080", true),
            ("http://local.test", false),
        ] {
            let h = request(&[("origin", origin)]);
            assert_eq!(p.allowed_origin(&h).is_some(), allowed, "{origin}");
        }
        let any = policy("{allowOrigins: [\"*\"]}");
        assert!(
            any.allowed_origin(&request(&[("origin", "https://foobar.com:12345")]))
                .is_some()
        );
        assert!(any.allowed_origin(&request(&[])).is_none(), "no Origin, no CORS");
    }

    #[test]
    fn a_preflight_is_answered_with_the_lists_or_what_it_asks_for() {
        let p = policy(
            "{allowOrigins: [\"https://www.foo.com\"], allowMethods: [GET, OPTIONS], allowHeaders: [x-header-1, x-header-2], exposeHeaders: [x-header-3], allowCredentials: true, maxAge: 3600}",
        );
        let asked = request(&[
            ("origin", "https://www.foo.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-header-1"),
        ]);
        assert!(CorsPolicy::is_preflight(&Method::OPTIONS, &asked));
        assert!(!CorsPolicy::is_preflight(&Method::GET, &asked));
        assert!(!CorsPolicy::is_preflight(
            &Method::OPTIONS,
            &request(&[("origin", "https://www.foo.com")])
        ));
        let answer = p.preflight(&asked);
        assert_eq!(
            get(&answer, "access-control-allow-origin"),
            Some("https://www.foo.com")
        );
        assert_eq!(get(&answer, "access-control-allow-methods"), Some("GET, OPTIONS"));
        assert_eq!(
            get(&answer, "access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(get(&answer, "access-control-expose-headers"), Some("x-header-3"));
        assert_eq!(get(&answer, "access-control-max-age"), Some("3600"));
        assert_eq!(get(&answer, "access-control-allow-credentials"), Some("true"));
        assert_eq!(get(&answer, "vary"), Some("origin"));
        // Another Origin: no Access-Control-* at all.
        let refused = p.preflight(&request(&[
            ("origin", "https://foobar.com"),
            ("access-control-request-method", "GET"),
        ]));
        assert!(
            refused.keys().all(|k| !k.as_str().starts_with("access-control-")),
            "{refused:?}"
        );

        // `*`: the method and headers asked for; none asked, no Allow-Headers; max age 5.
        let wild = policy(
            "{allowOrigins: [\"*\"], allowMethods: [\"*\"], allowHeaders: [\"*\"], exposeHeaders: [\"*\"], allowCredentials: true}",
        );
        let answer = wild.preflight(&request(&[
            ("origin", "https://other.foo.com"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-header-1, x-header-2"),
        ]));
        assert_eq!(
            get(&answer, "access-control-allow-origin"),
            Some("https://other.foo.com")
        );
        assert_eq!(get(&answer, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(
            get(&answer, "access-control-allow-headers"),
            Some("x-header-1, x-header-2")
        );
        assert_eq!(get(&answer, "access-control-max-age"), Some("5"));
        assert_eq!(
            get(&answer, "access-control-expose-headers"),
            None,
            "`*` means no wildcard with credentials"
        );
        let answer = wild.preflight(&request(&[
            ("origin", "https://other.foo.com"),
            ("access-control-request-method", "PUT"),
        ]));
        assert_eq!(get(&answer, "access-control-allow-headers"), None);
    }

    #[test]
    fn a_response_gets_the_origin_credentials_and_exposed_headers() {
        let p = policy("{allowOrigins: [\"https://*.bar.com\"], exposeHeaders: [x-a, x-b]}");
        let mut response = request(&[("vary", "accept-encoding")]);
        p.decorate(&request(&[("origin", "https://www.bar.com")]), &mut response);
        assert_eq!(
            get(&response, "access-control-allow-origin"),
            Some("https://www.bar.com")
        );
        assert_eq!(get(&response, "access-control-expose-headers"), Some("x-a, x-b"));
        assert_eq!(get(&response, "access-control-allow-credentials"), None);
        let vary: Vec<&str> = response
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(vary, ["accept-encoding", "origin"]);
        let mut response = HeaderMap::new();
        p.decorate(&request(&[("origin", "https://foobar.com")]), &mut response);
        assert_eq!(get(&response, "access-control-allow-origin"), None);
    }
}
