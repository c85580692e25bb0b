//! A path's CORS policy (Gateway API's HTTPRoute CORS filter): which cross-origin requests
//! the proxy lets a browser make, answering their preflights itself.

use garde::Validate;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Most entries of each list of a [`Cors`] (Gateway API's bound; 9 for methods).
pub const MAX_CORS_ENTRIES: usize = 64;

/// Cross-origin requests allowed on a path. A preflight (OPTIONS with Origin and
/// Access-Control-Request-Method) is answered 204 by the proxy itself, with the allowed
/// methods, headers and max age when its Origin is allowed, without any
/// Access-Control-* header otherwise; any other request from an allowed Origin is proxied
/// and its response gets Access-Control-Allow-Origin (the request's Origin),
/// Access-Control-Allow-Credentials and Access-Control-Expose-Headers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Origins allowed: `*` alone (any), or `scheme://host[:port]` with `http` or `https`,
    /// compared without regard to case, the scheme's default port implied; a first host
    /// label `*` stands for one or more labels (`https://*.example.com`). At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253), regex(pattern = crate::patterns::CORS_ORIGIN)))]
    #[garde(length(max = MAX_CORS_ENTRIES), inner(length(min = 1, max = 253), pattern(crate::patterns::CORS_ORIGIN_RE)))]
    pub allow_origins: Vec<String>,

    /// Access-Control-Allow-Credentials: true on the answers (and an Origin is never
    /// answered with `*`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[garde(skip)]
    pub allow_credentials: bool,

    /// Methods allowed (tokens, case-sensitive), or `*` alone: any (a preflight is
    /// answered with the method it asks for). At most 9.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 9), inner(length(min = 1, max = 32), regex(pattern = crate::patterns::TOKEN)))]
    #[garde(
        length(max = 9),
        inner(length(min = 1, max = 32), pattern(crate::patterns::TOKEN_RE))
    )]
    pub allow_methods: Vec<String>,

    /// Request headers allowed, or `*` alone: any (a preflight is answered with the headers
    /// it asks for). At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256), regex(pattern = crate::patterns::TOKEN)))]
    #[garde(length(max = MAX_CORS_ENTRIES), inner(length(min = 1, max = crate::MAX_NAME_LEN), pattern(crate::patterns::TOKEN_RE)))]
    pub allow_headers: Vec<String>,

    /// Response headers a page's script may read, or `*` alone (not sent with
    /// allowCredentials, where `*` means no wildcard). At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 256), regex(pattern = crate::patterns::TOKEN)))]
    #[garde(length(max = MAX_CORS_ENTRIES), inner(length(min = 1, max = crate::MAX_NAME_LEN), pattern(crate::patterns::TOKEN_RE)))]
    pub expose_headers: Vec<String>,

    /// Seconds a browser may keep a preflight's answer (Access-Control-Max-Age); 5 when
    /// absent, as Gateway API's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    #[garde(inner(range(min = 1, max = 86400)))]
    pub max_age: Option<i32>,
}
