//! Which certificate each TLS host serves, from the Secrets the fleet's RouterConfigs name.
//!
//! New material replaces a Secret's certificate only when it loads and checks out; until then
//! the hosts keep the last good certificate, and the RouterConfig's replica entry reports the
//! problem. The digest a replica reports covers the material it actually serves.
//!
//! Which Secret a host presents is not decided here: the plan decides it from the generations
//! the fleet serves, like the routes ([`lockstep_core::plan::Plan::certificates`]), so a
//! rejected generation neither takes a host's certificate away nor puts its own in place,
//! and two RouterConfigs naming one host give the same certificate on every replica.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Secret;
use lockstep_core::{ObjectKey, fleet::CertificateChoice, tls_material::HostCoverage, tls_material_hash};
use lockstep_crds::RouterConfig;

use crate::certs::{self, CertError, ClientCert, HostCert, LoadedCert};

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

/// The outcome of loading the TLS material the fleet names.
#[derive(Debug, Default)]
pub struct TlsOutcome {
    /// Hash of the good material held, per Secret (namespace/name): what digests cover.
    pub hashes: BTreeMap<ObjectKey, String>,
    /// Problems per RouterConfig with its current generation's TLS, naming the field.
    pub problems: BTreeMap<ObjectKey, String>,
    /// Some referenced Secret has not been listed yet: do not judge yet.
    pub pending: bool,
}

/// Loads new material into `good` and judges the TLS of every RouterConfig's current
/// generation.
pub fn assemble(
    objects: &[Arc<RouterConfig>],
    secrets: &HashMap<ObjectKey, SecretState>,
    good: &mut HashMap<ObjectKey, GoodMaterial>,
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
            SecretState::Present(secret) => match certs::secret_material(&key.to_string(), secret) {
                Ok((crt, tls_key)) => {
                    let hash = tls_material_hash(&crt, &tls_key);
                    if good.get(key).is_some_and(|g| g.hash == hash) {
                        continue;
                    }
                    // The material half of the decision the operator makes with
                    // `servable`; the host half is `check_covers`, per rule.
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
    outcome.hashes = good
        .iter()
        .map(|(key, material)| (key.clone(), material.hash.clone()))
        .collect();

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
            let coverage = HostCoverage::of_origin(rc.generated());
            if let Some(material) = good.get(&secret_key)
                && let Err(e) = certs::check_covers(&secret_key.to_string(), &material.cert, &host, coverage)
            {
                problems.push(format!("spec.rules[{i}].tls.secretName: {e}"));
            }
        }
        // A certificate presented to backends has no host to cover: its material alone.
        for (field, name) in lockstep_core::digest::client_certificate_names(&rc.spec) {
            let secret_key = ObjectKey::new(rc_key.namespace.clone(), name.to_owned());
            if let Some(error) = errors.get(&secret_key) {
                problems.push(format!("{field}: {error}"));
            }
        }
        if !problems.is_empty() {
            outcome.problems.insert(rc_key, problems.join("; "));
        }
    }
    outcome
}

/// The certificate of every TLS host the plan chose a Secret for (`chosen`, host to Secret),
/// with the Gateway listener the host's TLS belongs to. A host whose Secret has no good material
/// covering it (where it must) keeps the certificate it serves now (`previous`); a host no
/// served generation names over TLS has none.
pub fn certificates(
    chosen: &BTreeMap<String, CertificateChoice>,
    good: &HashMap<ObjectKey, GoodMaterial>,
    previous: &HashMap<String, HostCert>,
) -> HashMap<String, HostCert> {
    chosen
        .iter()
        .filter_map(
            |(
                host,
                CertificateChoice {
                    secret,
                    coverage,
                    listener,
                },
            )| {
                let covering = good
                    .get(secret)
                    .filter(|m| certs::check_covers(&secret.to_string(), &m.cert, host, *coverage).is_ok())
                    .map(|m| m.cert.certified.clone());
                covering
                    .or_else(|| previous.get(host).map(|p| p.certified.clone()))
                    .map(|certified| {
                        let listener = listener.clone();
                        (host.clone(), HostCert { certified, listener })
                    })
            },
        )
        .collect()
}

/// The certificates presented to backends: every Secret with good material, by
/// namespace/name (a table names only those its RouterConfigs name as
/// `clientCertificateSecretName`; a Secret whose new material is bad keeps its last good
/// one, as a host's certificate does).
pub fn client_certificates(good: &HashMap<ObjectKey, GoodMaterial>) -> HashMap<ObjectKey, ClientCert> {
    good.iter()
        .map(|(key, material)| {
            (
                key.clone(),
                ClientCert {
                    certified: material.cert.certified.clone(),
                    hash: material.hash.clone(),
                },
            )
        })
        .collect()
}

/// The Secrets the fleet's RouterConfigs name, as namespace/name: those of the current
/// generations and those of the last accepted ones, which are served while a newer generation
/// is rejected (their hosts keep their certificates, rotations included).
pub fn referenced(objects: &[Arc<RouterConfig>]) -> std::collections::BTreeSet<ObjectKey> {
    objects
        .iter()
        .flat_map(|rc| {
            let ns = ObjectKey::of(rc).namespace;
            let mut names = lockstep_core::tls_secret_names(&rc.spec);
            if let Some(accepted) = rc.last_accepted() {
                names.extend(lockstep_core::tls_secret_names(&accepted.spec));
            }
            names
                .into_iter()
                .map(move |name| ObjectKey::new(ns.clone(), name))
        })
        .collect()
}
