//! The syntax rules the CRD schema states (`pattern`) and `garde` checks, each written once:
//! the schema keeps bad input out at admission; `garde` judges the same rule in the operator
//! and the proxies, for objects stored before a rule existed and for standalone files.

use std::sync::LazyLock;

use garde::rules::pattern::regex::Regex;

/// An HTTP token (RFC 9110 §5.6.2): header and query parameter names.
pub const TOKEN: &str = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$";
/// [`TOKEN`], compiled.
pub static TOKEN_RE: LazyLock<Regex> = LazyLock::new(|| compile(TOKEN));

/// An upgrade protocol: a token, optionally `/version` (RFC 9110 §7.8).
pub const UPGRADE: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(/[A-Za-z0-9!#$%&'*+.^_`|~-]+)?$";
/// [`UPGRADE`], compiled.
pub static UPGRADE_RE: LazyLock<Regex> = LazyLock::new(|| compile(UPGRADE));

/// A backend URL: scheme, host name or bracketed IP, optional port, optional `/`.
pub const URL: &str =
    r"^(https?|h2c)://[A-Za-z0-9._~\-]+(:[0-9]{1,5})?/?$|^(https?|h2c)://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?/?$";
/// [`URL`], compiled.
pub static URL_RE: LazyLock<Regex> = LazyLock::new(|| compile(URL));

/// A header value: no CR, LF or NUL (header injection).
pub const HEADER_VALUE: &str = r"^[^\r\n\x00]*$";
/// [`HEADER_VALUE`], compiled.
pub static HEADER_VALUE_RE: LazyLock<Regex> = LazyLock::new(|| compile(HEADER_VALUE));

/// A DNS subdomain (RFC 1123), as Kubernetes names Secrets and Services.
pub const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$";
/// [`DNS_SUBDOMAIN`], compiled.
pub static DNS_SUBDOMAIN_RE: LazyLock<Regex> = LazyLock::new(|| compile(DNS_SUBDOMAIN));

/// A DNS label (RFC 1123): a fleet or namespace name.
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// [`DNS_LABEL`], compiled.
pub static DNS_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| compile(DNS_LABEL));

/// A DNS label starting with a letter (RFC 1035): a Service name.
pub const DNS_1035_LABEL: &str = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$";
/// [`DNS_1035_LABEL`], compiled.
pub static DNS_1035_LABEL_RE: LazyLock<Regex> = LazyLock::new(|| compile(DNS_1035_LABEL));

/// A DNS name (RFC 1123): dot-separated labels, no wildcard.
pub const DNS_NAME: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";
/// [`DNS_NAME`], compiled.
pub static DNS_NAME_RE: LazyLock<Regex> = LazyLock::new(|| compile(DNS_NAME));

/// A URL path: starts with `/`, no whitespace, query or fragment.
pub const PATH: &str = r"^/[^ \t\r\n?#]*$";
/// [`PATH`], compiled.
pub static PATH_RE: LazyLock<Regex> = LazyLock::new(|| compile(PATH));

/// A duration as the CRD states it: up to four `<number><unit>` parts, units h, m, s, ms.
pub const DURATION: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";
/// [`DURATION`], compiled.
pub static DURATION_RE: LazyLock<Regex> = LazyLock::new(|| compile(DURATION));

/// A CORS origin a path allows: `*` (any), or `http`/`https`, `://`, a host name whose
/// first label may be `*` (any one or more labels), an optional port.
pub const CORS_ORIGIN: &str = r"^\*$|^https?://(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$";
/// [`CORS_ORIGIN`], compiled.
pub static CORS_ORIGIN_RE: LazyLock<Regex> = LazyLock::new(|| compile(CORS_ORIGIN));

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a pattern of this module compiles")
}
