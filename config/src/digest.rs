//! The configuration digest a replica reports and the operator expects: it changes when the
//! spec changes or when TLS material a rule references changes, so rotating a certificate is a
//! rollout the barrier covers.

use std::collections::BTreeMap;

use lockstep_crds::RouterConfigSpec;
use sha2::{Digest, Sha256};

/// Hash of one TLS Secret's material ("sha256:<hex>" of certificate chain and key). Only this
/// hash ever leaves the process, never the key.
pub fn tls_material_hash(cert_pem: &[u8], key_pem: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update((cert_pem.len() as u64).to_be_bytes());
    h.update(cert_pem);
    h.update(key_pem);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Digest of a spec plus the hashes of the TLS Secrets it references, by Secret name. A
/// referenced Secret that is missing is absent from the map; the digest then differs from
/// the one with the Secret present.
pub fn config_digest(spec: &RouterConfigSpec, tls: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    // Serialising the typed spec normalises it: defaults are explicit, unknown fields gone,
    // and struct fields always come in declaration order.
    h.update(serde_json::to_vec(spec).expect("a spec serialises"));
    for (name, hash) in tls {
        h.update(b"\0tls\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(hash.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// The TLS Secret names a spec references, sorted and unique.
pub fn tls_secret_names(spec: &RouterConfigSpec) -> Vec<String> {
    let mut names: Vec<String> =
        spec.rules.iter().filter_map(|r| r.tls.as_ref().map(|t| t.secret_name.clone())).collect();
    names.sort();
    names.dedup();
    names
}
