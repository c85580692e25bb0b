//! The Gateway API features lockstep claims: the one list. The operator writes it into the
//! `status.supportedFeatures` of every GatewayClass it accepts, and the conformance suite
//! (e2e/gateway/conformance_test.go) reads it from there: it runs the tests of exactly these
//! features, so a feature is listed here only once a conformance run passes its tests
//! (docs/gateway.md, "Conformance", says which run).
//!
//! The names are those of Gateway API v1.6.3's `pkg/features` (`features.SupportGateway` is
//! `"Gateway"`, ...): the suite compares them as strings.

use lockstep_crds::gateway::SupportedFeature;

/// The claimed features, by their Gateway API name: the core features of the GATEWAY-HTTP
/// and GATEWAY-GRPC conformance profiles, and the extended features whose tests all passed
/// in the trial run of 2026-12-03 23:05 UTC (e2e/gateway/RESULTS.md, "Trial: extended
/// features"), and since then, each once its tests passed (e2e/gateway/RESULTS.md,
/// docs/gateway.md): HTTPRouteBackendRequestHeaderModification, the three RequestMirror
/// features, HTTPRouteCORS, BackendTLSPolicy and BackendTLSPolicySANValidation. Tried and
/// left out, their tests failing: HTTPRouteParentRefPort (listeners kept apart by port),
/// HTTPRouteRetry (and its RetryBackendTimeout and RetryConnectionError, which only its
/// tests exercise: an experimental-channel field the standard CRDs drop).
/// GatewayHTTPSListenerDetectMisdirectedRequests: its test passed on 2026-12-04 03:16 UTC;
/// GatewayBackendClientCertificate: its two tests passed on 2026-12-04 (run 14).
pub const SUPPORTED_FEATURES: &[&str] = &[
    // pkg/features/gateway.go: SupportGateway.
    "Gateway",
    // pkg/features/referencegrant.go: SupportReferenceGrant.
    "ReferenceGrant",
    // pkg/features/httproute.go: SupportHTTPRoute.
    "HTTPRoute",
    // pkg/features/grpcroute.go: SupportGRPCRoute.
    "GRPCRoute",
    // Extended, pkg/features/backendtlspolicy.go.
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    // Extended, pkg/features/gateway.go.
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructure",
    "GatewayStaticAddresses",
    "GatewayPort8080",
    // Extended, pkg/features/gateway.go: SupportListenerSet (its tests passed on
    // 2026-12-04, e2e/gateway/RESULTS.md).
    "ListenerSet",
    // Extended, pkg/features/httproute.go.
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteCORS",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendTimeout",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
];

/// [`SUPPORTED_FEATURES`] as `status.supportedFeatures` entries, sorted by name (the v1.6.3
/// CRD: "It MUST be sorted in ascending alphabetical order by the Name key"; byte order, as
/// Go's `sort.Strings`), without duplicates.
pub fn supported_features() -> Vec<SupportedFeature> {
    let mut names: Vec<&str> = SUPPORTED_FEATURES.to_vec();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| SupportedFeature {
            name: name.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        supported_features().into_iter().map(|f| f.name).collect()
    }

    #[test]
    fn the_core_features_of_both_profiles_and_the_passed_extended_ones_sorted() {
        let names = names();
        for core in ["GRPCRoute", "Gateway", "HTTPRoute", "ReferenceGrant"] {
            assert!(names.iter().any(|n| n == core), "{core}");
        }
        assert_eq!(names.len(), 36);
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        assert_eq!(names[0], "BackendTLSPolicy");
        assert_eq!(names[2], "GRPCRoute", "byte order: upper case before lower");
    }

    #[test]
    fn each_feature_once() {
        assert_eq!(names().len(), SUPPORTED_FEATURES.len());
    }

    #[test]
    fn at_most_the_crds_limit() {
        // supportedFeatures: maxItems 64 in the v1.6.3 GatewayClass CRD.
        assert!(supported_features().len() <= 64);
    }
}
