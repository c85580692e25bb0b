//! Condition types and reasons of Gateway API v1.6.3 as lockstep writes them, and the one
//! builder every Gateway API condition goes through (so each carries the generation it was
//! computed for).

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod condition {
    /// GatewayClass, Gateway, listener and route parent: the object was understood.
    pub const ACCEPTED: &str = "Accepted";
    /// Gateway and listener: configuration was generated for the data plane.
    pub const PROGRAMMED: &str = "Programmed";
    /// Gateway, listener and route parent: every reference resolved (the Gateway's own: the
    /// backend client certificate).
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Listener: it cannot be told apart from another listener on its port.
    pub const CONFLICTED: &str = "Conflicted";
    /// Route parent: some rules were dropped (only ever written True).
    pub const PARTIALLY_INVALID: &str = "PartiallyInvalid";
    /// Route parent: lockstep's barrier; every live replica of the parent's fleet serves
    /// this generation of the route.
    pub const LOCKSTEP_READY: &str = "lockstep.dev/Ready";
    /// Gateway: some HTTPS listener lets clients through without a valid certificate
    /// (frontend validation `mode: AllowInsecureFallback`); only ever written True.
    pub const INSECURE_FRONTEND_VALIDATION_MODE: &str = "InsecureFrontendValidationMode";
}

/// Condition reasons.
pub mod reason {
    /// Accepted=True.
    pub const ACCEPTED: &str = "Accepted";
    /// Programmed=True.
    pub const PROGRAMMED: &str = "Programmed";
    /// ResolvedRefs=True.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Conflicted=False.
    pub const NO_CONFLICTS: &str = "NoConflicts";
    /// Programmed=False for an invalid listener or Gateway.
    pub const INVALID: &str = "Invalid";
    /// Programmed=False (or Unknown) while the data plane has not caught up.
    pub const PENDING: &str = "Pending";
    /// Gateway Programmed=False: the provisioned Service has no address yet.
    pub const ADDRESS_NOT_ASSIGNED: &str = "AddressNotAssigned";
    /// GatewayClass Accepted=False: the parametersRef cannot be used.
    pub const INVALID_PARAMETERS: &str = "InvalidParameters";
    /// Gateway Accepted: some listeners are invalid.
    pub const LISTENERS_NOT_VALID: &str = "ListenersNotValid";
    /// Gateway Accepted=False: a requested address type is not supported.
    pub const UNSUPPORTED_ADDRESS: &str = "UnsupportedAddress";
    /// Gateway `Programmed=False`: a requested static address cannot be assigned.
    pub const ADDRESS_NOT_USABLE: &str = "AddressNotUsable";
    /// Listener Accepted=False: protocol not served.
    pub const UNSUPPORTED_PROTOCOL: &str = "UnsupportedProtocol";
    /// Listener/route Accepted=False: a value lockstep does not support.
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    /// Listener Conflicted=True: same port and host name as another listener.
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    /// Listener Conflicted=True: same port as a listener of another protocol.
    pub const PROTOCOL_CONFLICT: &str = "ProtocolConflict";
    /// Listener ResolvedRefs=False: a certificate reference is unusable.
    pub const INVALID_CERTIFICATE_REF: &str = "InvalidCertificateRef";
    /// Gateway ResolvedRefs=False: `spec.tls.backend.clientCertificateRef` is unusable.
    pub const INVALID_CLIENT_CERTIFICATE_REF: &str = "InvalidClientCertificateRef";
    /// Listener ResolvedRefs=False: an allowed route kind is not supported.
    pub const INVALID_ROUTE_KINDS: &str = "InvalidRouteKinds";
    /// Listener or route ResolvedRefs=False: a cross-namespace reference without grant.
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    /// Route Accepted=False: no listener's allowedRoutes admits the route.
    pub const NOT_ALLOWED_BY_LISTENERS: &str = "NotAllowedByListeners";
    /// Route Accepted=False: no listener host name intersects the route's.
    pub const NO_MATCHING_LISTENER_HOSTNAME: &str = "NoMatchingListenerHostname";
    /// Route Accepted=False: sectionName/port names no listener.
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    /// Route ResolvedRefs=False: unsupported kind of backend (or filter reference).
    pub const INVALID_KIND: &str = "InvalidKind";
    /// Route ResolvedRefs=False: the backend does not exist.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// BackendTLSPolicy Accepted: another policy, older, targets the same Service port.
    pub const CONFLICTED: &str = "Conflicted";
    /// BackendTLSPolicy Accepted, listener Accepted (frontend validation): none of the CA
    /// certificate references can be used.
    pub const NO_VALID_CA_CERTIFICATE: &str = "NoValidCACertificate";
    /// BackendTLSPolicy ResolvedRefs, listener ResolvedRefs (frontend validation): a CA
    /// certificate reference names a ConfigMap that does not exist or holds no PEM
    /// certificate under `ca.crt`.
    pub const INVALID_CA_CERTIFICATE_REF: &str = "InvalidCACertificateRef";
    /// Listener ResolvedRefs=False: a frontend validation CA reference of a kind other
    /// than ConfigMap.
    pub const INVALID_CA_CERTIFICATE_KIND: &str = "InvalidCACertificateKind";
    /// Gateway InsecureFrontendValidationMode=True: a validation mode is
    /// AllowInsecureFallback.
    pub const CONFIGURATION_CHANGED: &str = "ConfigurationChanged";
    /// ListenerSet Accepted=False: the Gateway's `allowedListeners` does not admit it.
    pub const NOT_ALLOWED: &str = "NotAllowed";
    /// ListenerSet Accepted=False: its Gateway is not accepted.
    pub const PARENT_NOT_ACCEPTED: &str = "ParentNotAccepted";
    /// ListenerSet Programmed=False: its Gateway is not programmed.
    pub const PARENT_NOT_PROGRAMMED: &str = "ParentNotProgrammed";
}

/// A condition computed for `generation`, with the transition time `now` (the status writer
/// keeps an older transition time when the status did not change).
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: i64,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: Some(generation),
        last_transition_time: Time(now),
    }
}

/// How far a Gateway's fleet is with a generation, as the barrier judges it from the
/// replicas' reports and Leases (the same judgement a RouterConfig's `Ready` gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetProgress {
    /// No live replica.
    NoReplicas,
    /// Some live replica rejected the generation.
    Rejected {
        /// Replicas that rejected it.
        rejected: u32,
        /// Live replicas.
        replicas: u32,
    },
    /// Some live replica serves an older generation.
    Behind {
        /// Replicas serving the generation.
        synced: u32,
        /// Live replicas.
        replicas: u32,
    },
    /// Every live replica serves the generation.
    AllServe {
        /// Live replicas.
        replicas: u32,
    },
}

/// Reasons of `lockstep.dev/Ready` and of the Gateway's `Programmed` while the fleet rolls.
pub mod ready_reason {
    pub use lockstep_crds::reason::{
        ALL_REPLICAS_SYNCED, NO_REPLICAS, NOT_ACCEPTED, REJECTED, ROLLOUT_IN_PROGRESS,
    };
    /// The route has dropped rules: it is never counted as served.
    pub const PARTIALLY_INVALID: &str = "PartiallyInvalid";
    /// A reference of the route is unresolved (`ResolvedRefs=False`): the proxy answers its
    /// share of requests with 500, so it is never counted as served.
    pub const UNRESOLVED_REFS: &str = "UnresolvedRefs";
}

pub(super) fn progress_condition(
    type_: &str,
    fleet: Option<FleetProgress>,
    true_reason: &str,
    pending_reason: Option<&str>,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let pending =
        |r: &str, msg: String| condition(type_, false, pending_reason.unwrap_or(r), msg, generation, now);
    match fleet {
        None => pending(
            ready_reason::ROLLOUT_IN_PROGRESS,
            "waiting for the fleet's reports".into(),
        ),
        Some(FleetProgress::NoReplicas) => {
            pending(ready_reason::NO_REPLICAS, "no live replica in the fleet".into())
        }
        Some(FleetProgress::Rejected { rejected, replicas }) => pending(
            ready_reason::REJECTED,
            format!("{rejected}/{replicas} replicas rejected generation {generation}"),
        ),
        Some(FleetProgress::Behind { synced, replicas }) => pending(
            ready_reason::ROLLOUT_IN_PROGRESS,
            format!("{synced}/{replicas} replicas serve generation {generation}"),
        ),
        Some(FleetProgress::AllServe { replicas }) => condition(
            type_,
            true,
            true_reason,
            format!("{replicas}/{replicas} replicas serve generation {generation}"),
            generation,
            now,
        ),
    }
}

/// Gateway `Programmed` at `generation`: False `Invalid` when the Gateway is not accepted;
/// otherwise True only when every live replica of its fleet serves this generation (its
/// listeners and certificates), else False `Pending`. Gateway API defines Programmed as
/// configuration "assumed to be ready soon"; lockstep makes it the barrier.
pub fn gateway_programmed(
    accepted: bool,
    fleet: Option<FleetProgress>,
    generation: i64,
    now: Timestamp,
) -> Condition {
    if !accepted {
        return condition(
            condition::PROGRAMMED,
            false,
            reason::INVALID,
            "the Gateway is not accepted",
            generation,
            now,
        );
    }
    progress_condition(
        condition::PROGRAMMED,
        fleet,
        reason::PROGRAMMED,
        Some(reason::PENDING),
        generation,
        now,
    )
}

/// `lockstep.dev/Ready` of a route parent entry at the route's `generation`, from that
/// entry's conditions and the fleet's progress with that route generation. A route that is
/// not accepted, that had rules dropped, or whose references do not all resolve
/// (`ResolvedRefs=False`: Gateway API has the proxy answer their share with 500) is never
/// Ready: what it asked for is not what is served.
pub fn route_ready(
    parent_conditions: &[Condition],
    fleet: Option<FleetProgress>,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let is_true = |t: &str| {
        parent_conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if !is_true(condition::ACCEPTED) {
        return condition(
            condition::LOCKSTEP_READY,
            false,
            ready_reason::NOT_ACCEPTED,
            "the route is not accepted by this parent",
            generation,
            now,
        );
    }
    if is_true(condition::PARTIALLY_INVALID) {
        return condition(
            condition::LOCKSTEP_READY,
            false,
            ready_reason::PARTIALLY_INVALID,
            "rules were dropped; the route is not served as written",
            generation,
            now,
        );
    }
    if parent_conditions
        .iter()
        .any(|c| c.type_ == condition::RESOLVED_REFS && c.status == "False")
    {
        return condition(
            condition::LOCKSTEP_READY,
            false,
            ready_reason::UNRESOLVED_REFS,
            "a reference is unresolved (ResolvedRefs=False): the requests it would get are answered 500",
            generation,
            now,
        );
    }
    progress_condition(
        condition::LOCKSTEP_READY,
        fleet,
        ready_reason::ALL_REPLICAS_SYNCED,
        None,
        generation,
        now,
    )
}
