//! Which certificate each TLS host serves, from the Secrets the fleet's RouterConfigs name.
//!
//! New material replaces a Secret's certificate only when it loads and checks out; until then
//! the hosts keep the last good certificate, and the RouterConfig's replica entry reports the
//! problem. The digest a replica reports covers the material it actually serves.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Secret;
use lockstep_config::{ObjectKey, tls_material_hash};
use lockstep_crds::RouterConfig;
use rustls::sign::CertifiedKey;

use crate::certs::{self, CertError, LoadedCert};

/// What the per-Secret watch knows.
#[derive(Debug, Clone)]
pub enum SecretState {
    /// The watch has not listed yet.
    Pending,
    /// The Secret does not exist.
    Missing,
    /// The Secret as last seen.
    Present(Arc<Secret>),
}

/// The last material of a Secret that loaded and checked out.
#[derive(Debug, Clone)]
pub struct GoodMaterial {
    /// `tls_material_hash` of tls.crt and tls.key.
    pub hash: String,
    /// The parsed certificate.
    pub cert: LoadedCert,
}

/// The outcome of assembling TLS for the fleet.
#[derive(Debug, Default)]
pub struct TlsOutcome {
    /// Hash of the material served, per Secret (namespace/name): what digests cover.
    pub hashes: BTreeMap<ObjectKey, String>,
    /// Certificate per rule host.
    pub by_host: HashMap<String, Arc<CertifiedKey>>,
    /// Problems per RouterConfig, naming the field.
    pub problems: BTreeMap<ObjectKey, String>,
    /// Some referenced Secret has not been listed yet: do not judge yet.
    pub pending: bool,
}

/// Loads new material into `good` and decides the certificate of every TLS host. A host
/// whose rule has no usable material keeps the certificate it serves now (`previous`).
pub fn assemble(
    objects: &[Arc<RouterConfig>],
    secrets: &HashMap<ObjectKey, SecretState>,
    good: &mut HashMap<ObjectKey, GoodMaterial>,
    previous: &HashMap<String, Arc<CertifiedKey>>,
    now: i64,
) -> TlsOutcome {
    let mut outcome = TlsOutcome::default();
    let mut errors: HashMap<ObjectKey, CertError> = HashMap::new();
    for (key, state) in secrets {
        match state {
            SecretState::Pending => outcome.pending = true,
            SecretState::Missing => {
                errors.insert(key.clone(), CertError::Missing(key.to_string()));
            }
            SecretState::Present(secret) => match material(key, secret) {
                Ok((crt, tls_key)) => {
                    let hash = tls_material_hash(&crt, &tls_key);
                    if good.get(key).is_some_and(|g| g.hash == hash) {
                        continue;
                    }
                    match certs::load(&key.to_string(), &crt, &tls_key, now) {
                        Ok(cert) => {
                            good.insert(key.clone(), GoodMaterial { hash, cert });
                        }
                        Err(e) => {
                            errors.insert(key.clone(), e);
                        }
                    }
                }
                Err(e) => {
                    errors.insert(key.clone(), e);
                }
            },
        }
    }
    good.retain(|key, _| secrets.contains_key(key));

    for rc in objects {
        let rc_key = ObjectKey::of(rc);
        let mut problems = Vec::new();
        for (i, rule) in rc.spec.rules.iter().enumerate() {
            let Some(tls) = &rule.tls else { continue };
            let secret_key = ObjectKey::new(rc_key.namespace.clone(), tls.secret_name.clone());
            if let Some(error) = errors.get(&secret_key) {
                problems.push(format!("spec.rules[{i}].tls.secretName: {error}"));
            }
            let host = rule.host.to_ascii_lowercase();
            let covered = good.get(&secret_key).map(|material| {
                certs::check_covers(&secret_key.to_string(), &material.cert, &host).map(|()| material)
            });
            match covered {
                Some(Ok(material)) => {
                    outcome.hashes.insert(secret_key, material.hash.clone());
                    outcome
                        .by_host
                        .entry(host)
                        .or_insert_with(|| material.cert.certified.clone());
                }
                other => {
                    if let Some(Err(e)) = other {
                        problems.push(format!("spec.rules[{i}].tls.secretName: {e}"));
                    }
                    // No usable material: the host keeps the certificate it serves now.
                    if let Some(cert) = previous.get(&host) {
                        outcome.by_host.entry(host).or_insert_with(|| cert.clone());
                    }
                }
            }
        }
        if !problems.is_empty() {
            outcome.problems.insert(rc_key, problems.join("; "));
        }
    }
    outcome
}

fn material(key: &ObjectKey, secret: &Secret) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let malformed = |reason: &str| CertError::Malformed {
        secret: key.to_string(),
        reason: reason.to_owned(),
    };
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return Err(malformed("type is not kubernetes.io/tls"));
    }
    let data = secret.data.as_ref().ok_or_else(|| malformed("no data"))?;
    let crt = data
        .get("tls.crt")
        .ok_or_else(|| malformed("tls.crt is missing"))?;
    let tls_key = data
        .get("tls.key")
        .ok_or_else(|| malformed("tls.key is missing"))?;
    Ok((crt.0.clone(), tls_key.0.clone()))
}

/// The Secrets the fleet's RouterConfigs name, as namespace/name.
pub fn referenced(objects: &[Arc<RouterConfig>]) -> std::collections::BTreeSet<ObjectKey> {
    objects
        .iter()
        .flat_map(|rc| {
            let ns = ObjectKey::of(rc).namespace;
            lockstep_config::tls_secret_names(&rc.spec)
                .into_iter()
                .map(move |name| ObjectKey::new(ns.clone(), name))
        })
        .collect()
}
