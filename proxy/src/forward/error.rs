//! Why a request could not be proxied, and the status each reason answers with.

use http::StatusCode;

/// A request that ends in a response made by the proxy itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request has no usable Host header or :authority.
    #[error("missing or invalid Host")]
    BadHost,
    /// The path has a `%` that starts no escape, so it has no one normal form that routing
    /// and backend would agree on.
    #[error("invalid percent-encoding in the path")]
    BadPath,
    /// No route matches the host and path.
    #[error("no route")]
    NoRoute,
    /// The request's host belongs to another RouterConfig's TLS (a Gateway's other HTTPS
    /// listener) than the one the connection's SNI name chose
    /// ([`crate::certs::CertStore::misdirected`]).
    #[error("misdirected: the host is not served on this TLS connection")]
    Misdirected,
    /// A method the proxy does not forward (CONNECT).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request's Transfer-Encoding is malformed (chunked repeated, empty codings).
    #[error("malformed Transfer-Encoding")]
    BadFraming,
    /// The request has both Content-Length and Transfer-Encoding: RFC 9112 §6.1 allows
    /// treating it as a smuggling attempt, and the proxy refuses it as nginx does.
    #[error("both Content-Length and Transfer-Encoding")]
    BothLengthAndEncoding,
    /// The request uses a transfer coding other than chunked, which the proxy does not
    /// decode; forwarding it without its Transfer-Encoding would corrupt the body.
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// The route's Service has no ready endpoint.
    #[error("no ready endpoints for {0}")]
    NoEndpoints(String),
    /// The backend chosen is a status the route answers itself (`backend.status`; a
    /// generated RouterConfig's share of an unresolved Gateway API backendRef).
    #[error("the route answers {0} itself")]
    Status(u16),
    /// Every backend of the route has weight 0 (drained).
    #[error("every backend of the route has weight 0")]
    NoBackends,
    /// The route's `timeouts.request` passed before a response head could be sent.
    #[error("request timed out after {0:?}")]
    RequestTimeout(std::time::Duration),
    /// The route's backend cannot be turned into an upstream address.
    #[error("backend {0} has an invalid address")]
    BadBackend(String),
    /// The route's backend uses a scheme this proxy cannot speak yet.
    #[error("backend scheme {0} is not supported")]
    UnsupportedScheme(String),
    /// No TCP connection to the upstream could be made.
    #[error("connecting to {peer}: {source}")]
    Connect {
        /// The upstream address.
        peer: String,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to the upstream took longer than the connect timeout.
    #[error("connecting to {peer}: timed out")]
    ConnectTimeout {
        /// The upstream address.
        peer: String,
    },
    /// The upstream's response head took longer than the response timeout.
    #[error("upstream {peer} did not answer in time")]
    ResponseTimeout {
        /// The upstream address.
        peer: String,
    },
    /// The TLS handshake with the upstream failed: its certificate does not chain to the
    /// backend's CA certificates or does not carry the name (`hostname`, or one of
    /// `subjectAltNames`) its `tls` asks for; or that setting is unusable.
    #[error("TLS to {peer}: {message}")]
    UpstreamTls {
        /// The upstream address.
        peer: String,
        /// What failed.
        message: String,
    },
    /// The upstream connection failed after the request was sent.
    #[error("upstream {peer}: {source}")]
    Upstream {
        /// The upstream address.
        peer: String,
        /// What failed: the connection, or the response's framing.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ProxyError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadHost
            | ProxyError::BadPath
            | ProxyError::BadFraming
            | ProxyError::BothLengthAndEncoding => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::Status(status) => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ProxyError::NoEndpoints(_) | ProxyError::NoBackends => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::BadBackend(_)
            | ProxyError::UnsupportedScheme(_)
            | ProxyError::Connect { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout { .. }
            | ProxyError::ResponseTimeout { .. }
            | ProxyError::RequestTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The request's body framing cannot be trusted: the connection must close after the
    /// answer, so nothing after this request is read as another.
    pub fn is_framing_error(&self) -> bool {
        matches!(
            self,
            ProxyError::BadFraming
                | ProxyError::BothLengthAndEncoding
                | ProxyError::UnsupportedTransferCoding
        )
    }

    /// The `kind` label of the upstream error counter; None for errors that are the
    /// client's or the configuration's, not the upstream's.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            ProxyError::BadHost
            | ProxyError::BadPath
            | ProxyError::NoRoute
            | ProxyError::Misdirected
            | ProxyError::Status(_)
            | ProxyError::MethodNotAllowed
            | ProxyError::BadFraming
            | ProxyError::BothLengthAndEncoding
            | ProxyError::UnsupportedTransferCoding => None,
            ProxyError::NoEndpoints(_) | ProxyError::NoBackends => Some("no_endpoints"),
            ProxyError::RequestTimeout(_) => Some("request_timeout"),
            ProxyError::BadBackend(_) | ProxyError::UnsupportedScheme(_) => Some("bad_backend"),
            ProxyError::Connect { .. } => Some("connect"),
            ProxyError::UpstreamTls { .. } => Some("tls"),
            ProxyError::ConnectTimeout { .. } => Some("connect_timeout"),
            ProxyError::ResponseTimeout { .. } => Some("response_timeout"),
            ProxyError::Upstream { .. } => Some("protocol"),
        }
    }
}
