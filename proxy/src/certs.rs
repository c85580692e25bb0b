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
pub use lockstep_core::tls_material::{
    CertError, LoadedCert, check_covers, load, name_covers, secret_material, servable,
};
use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

/// Certificates by rule host ("app.example.com" or "*.example.com"), swapped as a whole.
#[derive(Debug, Default)]
pub struct CertStore {
    by_host: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    /// Replaces the whole map.
    pub fn replace(&self, by_host: HashMap<String, Arc<CertifiedKey>>) {
        self.by_host.store(Arc::new(by_host));
    }

    /// The current map.
    pub fn snapshot(&self) -> Arc<HashMap<String, Arc<CertifiedKey>>> {
        self.by_host.load_full()
    }

    /// The certificate for an SNI name (None: the client sent none): exact host first, then
    /// the wildcard one label up, then the certificate of host `*` (any host: only a Gateway's
    /// HTTPS listener without host name has one).
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let map = self.by_host.load();
        let named = sni.and_then(|sni| {
            let sni = sni.trim_end_matches('.').to_ascii_lowercase();
            if let Some(cert) = map.get(&sni) {
                return Some(cert.clone());
            }
            let (_, parent) = sni.split_once('.')?;
            map.get(&format!("*.{parent}")).cloned()
        });
        named.or_else(|| map.get(lockstep_crds::ANY_HOST).cloned())
    }
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
                ("app.example.com".into(), app.clone()),
                ("*.example.com".into(), wild.clone()),
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
                ("app.example.com".into(), app.clone()),
                ("*.example.com".into(), wild.clone()),
                ("*".into(), any.clone()),
            ]
            .into(),
        );
        assert!(Arc::ptr_eq(&store.lookup(Some("app.example.com")).unwrap(), &app));
        assert!(Arc::ptr_eq(&store.lookup(Some("x.example.com")).unwrap(), &wild));
        assert!(Arc::ptr_eq(&store.lookup(Some("a.b.example.com")).unwrap(), &any));
        assert!(Arc::ptr_eq(&store.lookup(Some("other.test")).unwrap(), &any));
        assert!(Arc::ptr_eq(&store.lookup(None).unwrap(), &any));
    }
}
