//! TLS certificates from `kubernetes.io/tls` Secrets, and the SNI store the TLS listener
//! resolves them from.
//!
//! Material is checked before it is used: the PEM parses, the key matches the certificate,
//! the certificate is within its validity period and covers the rule's host. Bad material is
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

    /// The certificate for an SNI name: exact host first, then the wildcard one label up.
    pub fn lookup(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let map = self.by_host.load();
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(cert) = map.get(&sni) {
            return Some(cert.clone());
        }
        let (_, parent) = sni.split_once('.')?;
        map.get(&format!("*.{parent}")).cloned()
    }
}

/// Resolves server certificates from a [`CertStore`] by SNI. Without SNI, or for an unknown
/// name, there is no certificate and the handshake fails.
#[derive(Debug)]
pub struct SniResolver(pub Arc<CertStore>);

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.lookup(client_hello.server_name()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Ymd = (i32, u8, u8);
    const VALID: (Ymd, Ymd) = ((2026, 10, 31), (2026, 12, 1));

    fn mk_cert(names: &[&str], (from, to): (Ymd, Ymd)) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// 2026-11-15T00:00:00Z: inside VALID.
    const NOW: i64 = 1_794_700_800;

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
        assert!(Arc::ptr_eq(&store.lookup("APP.example.com").unwrap(), &app));
        assert!(Arc::ptr_eq(&store.lookup("x.example.com").unwrap(), &wild));
        assert!(store.lookup("a.b.example.com").is_none());
        assert!(store.lookup("other.test").is_none());
    }
}
