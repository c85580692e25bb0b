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

/// The hash of a `kubernetes.io/tls` Secret's certificate and key, as replicas fold it into
/// their digest; `None` when either is missing.
pub fn tls_secret_hash(secret: &k8s_openapi::api::core::v1::Secret) -> Option<String> {
    let data = secret.data.as_ref()?;
    Some(tls_material_hash(
        &data.get("tls.crt")?.0,
        &data.get("tls.key")?.0,
    ))
}

/// The TLS Secret names a spec references, sorted and unique: the hosts' certificates and
/// the client certificates presented to backends (`service.tls.clientCertificateSecretName`),
/// whose rotation is a rollout the barrier covers as well.
pub fn tls_secret_names(spec: &RouterConfigSpec) -> Vec<String> {
    let mut names: Vec<String> = spec
        .rules
        .iter()
        .filter_map(|r| r.tls.as_ref().map(|t| t.secret_name.clone()))
        .collect();
    names.extend(client_certificate_names(spec).map(|(_, name)| name.to_owned()));
    names.sort();
    names.dedup();
    names
}

/// Every backend client certificate a spec names, with the field that names it
/// (`spec.rules[i].paths[j].backends[k].service.tls.clientCertificateSecretName`).
pub fn client_certificate_names(spec: &RouterConfigSpec) -> impl Iterator<Item = (String, &str)> {
    spec.rules.iter().enumerate().flat_map(|(i, rule)| {
        rule.paths.iter().enumerate().flat_map(move |(j, path)| {
            crate::validate::service_backends(path).filter_map(move |(field, service)| {
                let name = service.tls.as_ref()?.client_certificate_secret_name.as_deref()?;
                Some((
                    format!("spec.rules[{i}].paths[{j}].{field}.tls.clientCertificateSecretName"),
                    name,
                ))
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn spec() -> RouterConfigSpec {
        mk_spec(vec![
            mk_tls_rule("app.example.com", "app-tls", vec![mk_prefix("/")]),
            mk_tls_rule("b.example.com", "app-tls", vec![mk_prefix("/")]),
            mk_tls_rule("c.example.com", "a-tls", vec![mk_exact("/")]),
        ])
    }

    #[test]
    fn same_spec_same_digest_and_format() {
        let tls = BTreeMap::from([("app-tls".to_owned(), tls_material_hash(b"cert", b"key"))]);
        let a = config_digest(&spec(), &tls);
        assert_eq!(a, config_digest(&spec().clone(), &tls.clone()));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        // A spec that went through YAML and back (defaults filled in) digests the same.
        let json = serde_json::to_string(&spec()).unwrap();
        let round: RouterConfigSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(config_digest(&round, &tls), a);
    }

    #[test]
    fn explicit_defaults_digest_like_implicit_ones() {
        let implicit: RouterConfigSpec = serde_json::from_str(
            r#"{"rules":[{"host":"h","paths":[{"path":"/","backend":{"url":"http://x"}}]}]}"#,
        )
        .unwrap();
        let explicit: RouterConfigSpec = serde_json::from_str(
            r#"{"fleet":"default","rules":[{"host":"h","paths":[{"path":"/","pathType":"Prefix","backend":{"url":"http://x"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            config_digest(&implicit, &BTreeMap::new()),
            config_digest(&explicit, &BTreeMap::new())
        );
    }

    #[test]
    fn changed_spec_or_tls_changes_digest() {
        let none = BTreeMap::new();
        let base = config_digest(&spec(), &none);
        let mut other = spec();
        other.rules[0].paths[0].path = "/x".into();
        assert_ne!(config_digest(&other, &none), base);
        let mut fleet = spec();
        fleet.fleet = "blue".into();
        assert_ne!(config_digest(&fleet, &none), base);
        let with_tls = BTreeMap::from([("app-tls".to_owned(), tls_material_hash(b"cert", b"key"))]);
        let rotated = BTreeMap::from([("app-tls".to_owned(), tls_material_hash(b"cert2", b"key"))]);
        let new_key = BTreeMap::from([("app-tls".to_owned(), tls_material_hash(b"cert", b"key2"))]);
        let d = [
            base,
            config_digest(&spec(), &with_tls),
            config_digest(&spec(), &rotated),
            config_digest(&spec(), &new_key),
        ];
        for i in 0..d.len() {
            for j in i + 1..d.len() {
                assert_ne!(d[i], d[j], "{i} vs {j}");
            }
        }
    }

    #[test]
    fn tls_hash_separates_cert_and_key() {
        assert_ne!(tls_material_hash(b"ab", b"c"), tls_material_hash(b"a", b"bc"));
        assert!(!tls_material_hash(b"cert", b"secret-key").contains("secret"));
    }

    #[test]
    fn secret_names_are_sorted_and_unique() {
        assert_eq!(
            tls_secret_names(&spec()),
            vec!["a-tls".to_owned(), "app-tls".to_owned()]
        );
        assert!(tls_secret_names(&mk_spec(vec![mk_rule("h", vec![mk_prefix("/")])])).is_empty());
    }

    #[test]
    fn backend_client_certificates_are_named_secrets() {
        let spec: RouterConfigSpec = serde_json::from_value(serde_json::json!({"rules": [{
            "host": "h", "tls": {"secretName": "host-tls"},
            "paths": [{"path": "/", "backends": [
                {"service": {"name": "a", "port": 443, "tls": {"hostname": "a", "clientCertificateSecretName": "client"}}},
                {"service": {"name": "b", "port": 443, "tls": {"hostname": "b"}}}],
              "filters": {"mirrors": [{"service": {"name": "m", "port": 443,
                "tls": {"hostname": "m", "clientCertificateSecretName": "mirror-client"}}}]}}]}]}))
        .unwrap();
        assert_eq!(tls_secret_names(&spec), ["client", "host-tls", "mirror-client"]);
        let fields: Vec<(String, &str)> = client_certificate_names(&spec).collect();
        assert_eq!(
            fields,
            [
                (
                    "spec.rules[0].paths[0].backends[0].service.tls.clientCertificateSecretName".to_owned(),
                    "client"
                ),
                (
                    "spec.rules[0].paths[0].filters.mirrors[0].service.tls.clientCertificateSecretName"
                        .to_owned(),
                    "mirror-client"
                )
            ]
        );
    }
}

#[cfg(test)]
mod traffic_tests {
    use super::*;

    #[test]
    fn every_traffic_field_changes_the_digest() {
        let base = serde_json::json!({"rules": [{"host": "h", "paths": [{
            "path": "/", "match": {"method": "GET", "headers": [{"name": "x", "type": "Exact", "value": "1"}], "queryParams": [{"name": "q", "value": "1"}]},
            "backends": [{"url": "http://127.0.0.1:1", "weight": 90}, {"url": "http://127.0.0.1:2", "weight": 10}],
            "filters": {"requestHeaders": {"set": [{"name": "a", "value": "1"}]}, "responseHeaders": {"add": [{"name": "b", "value": "1"}]},
                "rewrite": {"hostname": "x.test", "path": {"replaceFullPath": "/x"}}},
            "timeouts": {"request": "10s", "backendRequest": "3s"},
            "retry": {"attempts": 2, "codes": [503], "backoff": "100ms"}}]}]});
        let digest = |v: &serde_json::Value| {
            config_digest(
                &serde_json::from_value(v.clone()).expect("spec"),
                &BTreeMap::new(),
            )
        };
        let d0 = digest(&base);
        let p = "/rules/0/paths/0";
        for (pointer, value) in [
            ("/backends/1/weight", serde_json::json!(11)),
            ("/backends/0/url", serde_json::json!("http://127.0.0.1:3")),
            ("/match/method", serde_json::json!("POST")),
            ("/match/headers/0/value", serde_json::json!("2")),
            ("/match/headers/0/type", serde_json::json!("RegularExpression")),
            ("/match/queryParams/0/name", serde_json::json!("r")),
            ("/filters/requestHeaders/set/0/value", serde_json::json!("2")),
            ("/filters/responseHeaders/add/0/name", serde_json::json!("c")),
            ("/filters/rewrite/hostname", serde_json::json!("y.test")),
            ("/filters/rewrite/path/replaceFullPath", serde_json::json!("/y")),
            ("/timeouts/request", serde_json::json!("11s")),
            ("/timeouts/backendRequest", serde_json::json!("4s")),
            ("/retry/attempts", serde_json::json!(3)),
            ("/retry/codes/0", serde_json::json!(502)),
            ("/retry/backoff", serde_json::json!("200ms")),
        ] {
            let mut changed = base.clone();
            *changed.pointer_mut(&format!("{p}{pointer}")).expect(pointer) = value;
            assert_ne!(digest(&changed), d0, "{pointer}");
        }
    }
}
