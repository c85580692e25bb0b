//! Builders for the Gateway API translation tests.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lockstep_crds::gateway::{
    Listener, ReferenceGrant, ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo,
};

pub fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// A Service with (port, appProtocol) pairs.
pub fn service(ns: &str, name: &str, ports: &[(i32, Option<&str>)]) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(p, proto)| ServicePort {
                        port: *p,
                        app_protocol: proto.map(str::to_owned),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One certificate and key for every fixture Secret: real material (a listener naming a
/// Secret that is no certificate is refused), the same bytes each time (tests compare the
/// material's hash).
static MATERIAL: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    crate::test_certs::mk_cert(&["fixture.example.com"], crate::test_certs::VALID)
});

/// The certificate and key PEM every fixture Secret holds.
pub fn material() -> (&'static [u8], &'static [u8]) {
    (MATERIAL.0.as_bytes(), MATERIAL.1.as_bytes())
}

fn secret(ns: &str, name: &str, type_: &str) -> Secret {
    let (crt, key) = &*MATERIAL;
    let data: BTreeMap<String, ByteString> = [
        ("tls.crt".to_owned(), ByteString(crt.as_bytes().to_vec())),
        ("tls.key".to_owned(), ByteString(key.as_bytes().to_vec())),
    ]
    .into();
    Secret {
        metadata: meta(ns, name),
        type_: Some(type_.into()),
        data: Some(data),
        ..Default::default()
    }
}

/// A kubernetes.io/tls Secret.
pub fn tls_secret(ns: &str, name: &str) -> Secret {
    secret(ns, name, "kubernetes.io/tls")
}

/// An Opaque Secret with the same keys.
pub fn opaque_secret(ns: &str, name: &str) -> Secret {
    secret(ns, name, "Opaque")
}

/// A ReferenceGrant in `ns` from `from_kind` in `from_ns` to `to_group`/`to_kind` (`to_name`).
pub fn grant(
    ns: &str,
    from_kind: &str,
    from_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_name: Option<&str>,
) -> ReferenceGrant {
    ReferenceGrant {
        metadata: meta(ns, &format!("grant-{}", from_kind.to_lowercase())),
        spec: ReferenceGrantSpec {
            from: vec![ReferenceGrantFrom {
                group: lockstep_crds::gateway::GROUP.into(),
                kind: from_kind.into(),
                namespace: from_ns.into(),
            }],
            to: vec![ReferenceGrantTo {
                group: to_group.into(),
                kind: to_kind.into(),
                name: to_name.map(str::to_owned),
            }],
        },
    }
}

/// A listener.
pub fn listener(name: &str, port: i32, protocol: &str, hostname: Option<&str>) -> Listener {
    Listener {
        name: name.into(),
        port,
        protocol: protocol.into(),
        hostname: hostname.map(str::to_owned),
        ..Default::default()
    }
}
