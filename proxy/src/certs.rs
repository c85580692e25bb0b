//! TLS certificates from `kubernetes.io/tls` Secrets, and the SNI store the TLS listener
//! resolves them from.
//!
//! Material is checked before it is used: the PEM parses, the key matches the certificate,
//! the certificate is within its validity period and covers the rule's host (where it must:
//! not a Gateway listener's, `lockstep_core::tls_material::HostCoverage`). Bad material is
//! rejected with a reason and never replaces the certificate a host already serves; a
//! handshake for a host without a certificate fails rather than getting another host's.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use lockstep_core::ObjectKey;
pub use lockstep_core::tls_material::{
    CertError, LoadedCert, check_covers, load, name_covers, secret_material, servable,
};
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// What a TLS host presents, and which Gateway listener it is.
#[derive(Debug, Clone)]
pub struct HostCert {
    /// The certificate and key.
    pub certified: Arc<CertifiedKey>,
    /// The generated RouterConfig (a Gateway listener) the host's TLS belongs to; None for
    /// a RouterConfig's own host (`lockstep_core::fleet::CertificateChoice::listener`).
    pub listener: Option<ObjectKey>,
}

/// Certificates by rule host ("app.example.com" or "*.example.com"), swapped as a whole.
#[derive(Debug, Default)]
pub struct CertStore {
    by_host: ArcSwap<HashMap<String, HostCert>>,
    /// Certificates presented to TLS backends, by Secret (namespace/name).
    clients: ArcSwap<HashMap<ObjectKey, ClientCert>>,
}

/// A certificate presented to backends (`service.tls.clientCertificateSecretName`).
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The certificate chain and key.
    pub certified: Arc<CertifiedKey>,
    /// `tls_material_hash` of the material: upstream TLS settings and their pooled
    /// connections are kept apart per certificate, so a rotation takes effect on new
    /// connections at once.
    pub hash: String,
}

impl CertStore {
    /// Replaces the whole map.
    pub fn replace(&self, by_host: HashMap<String, HostCert>) {
        self.by_host.store(Arc::new(by_host));
    }

    /// The current map.
    pub fn snapshot(&self) -> Arc<HashMap<String, HostCert>> {
        self.by_host.load_full()
    }

    /// Replaces the certificates presented to backends.
    pub fn replace_clients(&self, clients: HashMap<ObjectKey, ClientCert>) {
        self.clients.store(Arc::new(clients));
    }

    /// The certificate of Secret `secret` presented to backends, if it has good material.
    pub fn client(&self, secret: &ObjectKey) -> Option<ClientCert> {
        self.clients.load().get(secret).cloned()
    }

    /// The certificate for an SNI name (None: the client sent none): exact host first, then
    /// the wildcard one label up, then the certificate of host `*` (any host: only a Gateway's
    /// HTTPS listener without host name has one).
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        entry(&self.by_host.load(), sni).map(|e| e.certified.clone())
    }

    /// Whether a request for `host` (a Host header or :authority) is misdirected on a TLS
    /// connection whose SNI name was `sni`: one of the two chose the TLS of a Gateway
    /// listener and the other that of another listener or of a RouterConfig's own host.
    /// RFC 9110 §15.5.20: the server "is not able to produce a response" on this connection
    /// (its certificate, and the listener's client certificate validation, were another's);
    /// the client may retry on a new connection. Between a RouterConfig's own hosts SNI is
    /// not compared with Host (docs/design.md); a host no TLS host covers is left to
    /// routing.
    pub fn misdirected(&self, sni: Option<&str>, host: &str) -> bool {
        let host = lockstep_core::table::normalize_host(host);
        // Nearly every request names the host its connection's SNI named: both choose the
        // same entry, so it is not misdirected, and the two lookups (each lowercasing a copy
        // of the name and hashing it) are skipped on every request of the connection.
        if is_sni_name(sni, &host) {
            return false;
        }
        self.misdirected_by_lookup(sni, &host)
    }

    /// `misdirected` for a normalized host, by looking both names up.
    fn misdirected_by_lookup(&self, sni: Option<&str>, host: &str) -> bool {
        let map = self.by_host.load();
        match (entry(&map, sni), entry(&map, Some(host))) {
            (Some(connection), Some(request)) => connection.listener != request.listener,
            // The name no longer chooses any TLS host (the store changed since the handshake).
            (None, Some(request)) => request.listener.is_some(),
            (_, None) => false,
        }
    }
}

/// Whether `host` (normalized, as `lockstep_core::table::normalize_host` leaves it) is the
/// name the client sent as SNI, which then chooses the same entry as it.
fn is_sni_name(sni: Option<&str>, host: &str) -> bool {
    sni.is_some_and(|sni| sni.trim_end_matches('.').eq_ignore_ascii_case(host))
}

/// The entry a name chooses: exact host, then the wildcard one label up, then host `*`.
fn entry<'m>(map: &'m HashMap<String, HostCert>, name: Option<&str>) -> Option<&'m HostCert> {
    let named = name.and_then(|name| {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(cert) = map.get(&name) {
            return Some(cert);
        }
        let (_, parent) = name.split_once('.')?;
        map.get(&format!("*.{parent}"))
    });
    named.or_else(|| map.get(lockstep_crds::ANY_HOST))
}

/// Resolves server certificates from a [`CertStore`] by SNI. For a name no certificate
/// covers, or without SNI, the certificate of host `*` if there is one; else there is no
/// certificate and the handshake fails.
#[derive(Debug)]
pub struct SniResolver(pub Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.lookup(client_hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use lockstep_core::test_certs::{NOW, VALID, mk_cert};

    #[test]
    fn store_resolves_exact_then_wildcard_and_nothing_else() {
        let (cert, key) = mk_cert(&["app.example.com"], VALID);
        let app = load("ns/app", cert.as_bytes(), key.as_bytes(), NOW)
            .unwrap()
            .certified;
        let (cert, key) = mk_cert(&["*.example.com"], VALID);
        let wild = load("ns/wild", cert.as_bytes(), key.as_bytes(), NOW)
            .unwrap()
            .certified;
        let store = CertStore::default();
        store.replace(
            [
                ("app.example.com".into(), owned(&app, "app")),
                ("*.example.com".into(), owned(&wild, "wild")),
            ]
            .into(),
        );
        assert!(Arc::ptr_eq(&store.lookup(Some("APP.example.com")).unwrap(), &app));
        assert!(Arc::ptr_eq(&store.lookup(Some("x.example.com")).unwrap(), &wild));
        assert!(store.lookup(Some("a.b.example.com")).is_none());
        assert!(store.lookup(Some("other.test")).is_none());
        assert!(store.lookup(None).is_none());

        // A certificate for any host takes every name the others do not cover, and no name.
        let (cert, key) = mk_cert(&["any.example.org"], VALID);
        let any = load("ns/any", cert.as_bytes(), key.as_bytes(), NOW)
            .unwrap()
            .certified;
        store.replace(
            [
                ("app.example.com".into(), owned(&app, "app")),
                ("*.example.com".into(), owned(&wild, "wild")),
                ("*".into(), owned(&any, "any")),
            ]
            .into(),
        );
        assert!(Arc::ptr_eq(&store.lookup(Some("app.example.com")).unwrap(), &app));
        assert!(Arc::ptr_eq(&store.lookup(Some("x.example.com")).unwrap(), &wild));
        assert!(Arc::ptr_eq(&store.lookup(Some("a.b.example.com")).unwrap(), &any));
        assert!(Arc::ptr_eq(&store.lookup(Some("other.test")).unwrap(), &any));
        assert!(Arc::ptr_eq(&store.lookup(None).unwrap(), &any));
    }

    /// A host of listener `listener` ("": a RouterConfig's own host).
    fn owned(certified: &Arc<CertifiedKey>, listener: &str) -> HostCert {
        HostCert {
            certified: certified.clone(),
            listener: (!listener.is_empty()).then(|| ObjectKey::new("ns", listener)),
        }
    }

    /// A store of `hosts` (host, listener as in `owned`), all with one certificate for
    /// `*.org`, and that certificate.
    fn store_of(hosts: &[(&str, &str)]) -> (CertStore, Arc<CertifiedKey>) {
        let (cert, key) = mk_cert(&["*.org"], VALID);
        let cert = load("ns/tls", cert.as_bytes(), key.as_bytes(), NOW)
            .unwrap()
            .certified;
        let store = CertStore::default();
        store.replace(
            hosts
                .iter()
                .map(|(host, owner)| ((*host).to_owned(), owned(&cert, owner)))
                .collect(),
        );
        (store, cert)
    }

    /// The listeners of the conformance suite's HTTPRouteHTTPSListenerDetectMisdirectedRequests,
    /// all with one certificate: `https` (no host name: `*`, and its route's `example.org`),
    /// `second` (second-example.org), `wildcard` (*.wildcard.org), `fourth`
    /// (fourth-example.wildcard.org). A request is misdirected when its host's listener is
    /// not the one the SNI name chose, whatever the certificate.
    #[test]
    fn a_host_of_another_listener_than_the_sni_names_is_misdirected() {
        let (store, cert) = store_of(&[
            ("*", "https"),
            ("example.org", "https"),
            ("second-example.org", "second"),
            ("*.wildcard.org", "wildcard"),
            ("fourth-example.wildcard.org", "fourth"),
        ]);
        for (sni, host, misdirected) in [
            ("example.org", "example.org", false),
            ("example.org", "second-example.org", true),
            ("example.org", "unknown-example.org", false),
            ("second-example.org", "second-example.org:443", false),
            ("second-example.org", "example.org", true),
            ("second-example.org", "unknown-example.org", true),
            ("third-example.wildcard.org", "fith-example.wildcard.org", false),
            ("third-example.wildcard.org", "FOURTH-example.wildcard.org.", true),
            ("third-example.wildcard.org", "second-example.org", true),
            ("fourth-example.wildcard.org", "fith-example.wildcard.org", true),
            ("unknown-example.org", "example.org", false),
            ("unknown-example.org", "unknown-example.org", false),
        ] {
            assert_eq!(
                store.misdirected(Some(sni), host),
                misdirected,
                "SNI {sni}, host {host}"
            );
        }
        // No SNI chose the listener of `*`.
        assert!(!store.misdirected(None, "example.org"));
        assert!(store.misdirected(None, "second-example.org"));

        // A host no TLS host covers is left to routing; a connection whose name no longer
        // chooses any TLS host is misdirected for every listener's host. Between a
        // RouterConfig's own hosts SNI is not compared with Host; between one of them and a
        // listener's it is.
        store.replace(
            [
                ("second-example.org".to_owned(), owned(&cert, "second")),
                ("a.example.com".to_owned(), owned(&cert, "")),
                ("b.example.com".to_owned(), owned(&cert, "")),
            ]
            .into(),
        );
        assert!(!store.misdirected(Some("second-example.org"), "plain.example.com"));
        assert!(store.misdirected(Some("gone.example.org"), "second-example.org"));
        assert!(!store.misdirected(Some("gone.example.org"), "a.example.com"));
        assert!(!store.misdirected(Some("a.example.com"), "b.example.com"));
        assert!(store.misdirected(Some("a.example.com"), "second-example.org"));
        assert!(store.misdirected(Some("second-example.org"), "b.example.com"));
    }

    /// `misdirected` answers a host that is the SNI name without looking either up: it must
    /// agree with the lookups for every pair, in any case, with a port or a trailing dot.
    #[test]
    fn the_sni_name_shortcut_agrees_with_the_lookups() {
        let (store, _) = store_of(&[
            ("*", "https"),
            ("example.org", "https"),
            ("second-example.org", "second"),
            ("*.wildcard.org", "wildcard"),
            ("fourth-example.wildcard.org", "fourth"),
            ("own.example.com", ""),
        ]);
        let names = [
            "example.org",
            "Example.ORG",
            "example.org.",
            "example.org:443",
            "second-example.org",
            "SECOND-example.org.",
            "a.wildcard.org",
            "fourth-example.wildcard.org",
            "Fourth-Example.Wildcard.Org:8443",
            "own.example.com",
            "own.example.com.",
            "unknown.example.net",
            "",
        ];
        let mut shortcut = 0;
        for sni in names.iter().map(|s| Some(*s)).chain([None]) {
            for host in names {
                let normalized = lockstep_core::table::normalize_host(host);
                assert_eq!(
                    store.misdirected(sni, host),
                    store.misdirected_by_lookup(sni, &normalized),
                    "SNI {sni:?}, host {host}"
                );
                shortcut += usize::from(is_sni_name(sni, &normalized));
            }
        }
        // The pairs above take the shortcut often enough to matter.
        assert!(shortcut >= 20, "{shortcut} pairs took the shortcut");
    }
}
