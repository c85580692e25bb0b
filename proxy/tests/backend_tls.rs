//! TLS to Service backends (`service.tls`, a generated RouterConfig's translation of a
//! BackendTLSPolicy), through a real proxy to a real TLS backend on loopback: the handshake
//! sends the SNI asked for and passes only with the CA, name or subjectAltName the setting
//! says; any other certificate fails the request with 502.

mod common;

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use common::*;
use http::{Request, Response, StatusCode};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use lockstep_proxy::{ProxyOptions, endpoints::ServiceKey};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType, string::Ia5String,
};
use tokio::net::TcpListener;

/// A CA, and a server certificate it signed for DNS `abc.example.com` and a SPIFFE URI.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn pki() -> Pki {
    let ca = ca();
    let mut params = CertificateParams::new(vec!["abc.example.com".to_owned()]).expect("params");
    params.subject_alt_names.push(SanType::URI(
        Ia5String::try_from("spiffe://abc.example.com/test-identity").expect("uri"),
    ));
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A TLS backend (HTTP/1.1 and h2 by ALPN) answering with the SNI and protocol it saw.
async fn tls_backend(pki: &Pki) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    tls_backend_asking(pki, None).await
}

/// [`tls_backend`], requiring a client certificate that chains to `client_ca` (PEM) when
/// set; it answers with the client certificate's DER in hex in `x-client-cert`.
async fn tls_backend_asking(pki: &Pki, client_ca: Option<&str>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let certs = rustls_pemfile::certs(&mut pki.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pemfile::private_key(&mut pki.key_pem.as_bytes())
        .expect("key")
        .expect("a key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
                roots.add(cert.expect("client CA")).expect("root");
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map_or_else(|| "none".to_owned(), |c| hex(c.as_ref()));
                let service = service_fn(move |req: Request<Incoming>| {
                    let (sni, client_cert) = (sni.clone(), client_cert.clone());
                    async move {
                        let mut response = Response::new(full(format!("{:?}", req.version())));
                        response
                            .headers_mut()
                            .insert("x-sni", sni.parse().expect("value"));
                        response
                            .headers_mut()
                            .insert("x-client-cert", client_cert.parse().expect("value"));
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A RouterConfig routing host `host` to Service `svc` port 443 with `tls` (YAML lines
/// under `tls:`, indented by 10).
fn host_rule(host: &str, svc: &str, tls: &str, extra: &str) -> String {
    format!(
        "  - host: {host}\n    paths:\n    - path: /\n      pathType: Prefix\n      backend:\n        service:\n          name: {svc}\n          port: 443\n{extra}          tls:\n{tls}"
    )
}

fn tls_yaml(hostname: &str, ca_pem: &str, sans: &[(&str, &str)]) -> String {
    let mut out = format!("            hostname: {hostname}\n            caCertificates: |\n");
    for line in ca_pem.lines() {
        out.push_str(&format!("              {line}\n"));
    }
    if !sans.is_empty() {
        out.push_str("            subjectAltNames:\n");
        for (kind, value) in sans {
            out.push_str(&format!("            - {kind}: \"{value}\"\n"));
        }
    }
    out
}

#[tokio::test]
async fn a_tls_backend_is_reached_only_with_the_ca_and_names_its_setting_asks_for() {
    let pki = pki();
    let other_ca = ca().pem();
    let (addr, _backend) = tls_backend(&pki).await;
    let cases: &[(&str, String, StatusCode)] = &[
        (
            "good.test",
            tls_yaml("abc.example.com", &pki.ca_pem, &[]),
            StatusCode::OK,
        ),
        (
            "wrong-ca.test",
            tls_yaml("abc.example.com", &other_ca, &[]),
            StatusCode::BAD_GATEWAY,
        ),
        (
            "wrong-name.test",
            tls_yaml("mismatch.example.com", &pki.ca_pem, &[]),
            StatusCode::BAD_GATEWAY,
        ),
        (
            "san-dns.test",
            tls_yaml("abc.example.com", &pki.ca_pem, &[("hostname", "abc.example.com")]),
            StatusCode::OK,
        ),
        (
            "san-dns-wrong.test",
            tls_yaml("abc.example.com", &pki.ca_pem, &[("hostname", "dce.example.com")]),
            StatusCode::BAD_GATEWAY,
        ),
        (
            // The SNI name is not checked when subjectAltNames are given.
            "san-uri.test",
            tls_yaml(
                "other.example.com",
                &pki.ca_pem,
                &[("uri", "spiffe://abc.example.com/test-identity")],
            ),
            StatusCode::OK,
        ),
        (
            "san-uri-wrong.test",
            tls_yaml(
                "abc.example.com",
                &pki.ca_pem,
                &[
                    ("uri", "spiffe://def.example.com/test-identity"),
                    ("hostname", "def.example.com"),
                ],
            ),
            StatusCode::BAD_GATEWAY,
        ),
        (
            // A SAN setting still verifies the chain.
            "san-wrong-ca.test",
            tls_yaml("abc.example.com", &other_ca, &[("hostname", "abc.example.com")]),
            StatusCode::BAD_GATEWAY,
        ),
    ];
    // Every Service points at the same endpoint: a connection verified for one must never
    // carry another's request.
    let rules: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (host, tls, _))| host_rule(host, &format!("svc{i}"), tls, ""))
        .collect();
    let yaml = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: tls\n  namespace: shop\nspec:\n  rules:\n{}",
        rules.concat()
    );
    let state = state_with(&yaml);
    for i in 0..cases.len() {
        state.endpoints.set(
            ServiceKey {
                namespace: "shop".into(),
                name: format!("svc{i}").into(),
                port: 443,
            },
            vec![addr],
        );
    }
    let server = proxy(state, ProxyOptions::default()).await;
    let client = client();
    // Twice, in order: the second round finds pooled connections of the good settings.
    for round in 0..2 {
        for (host, _, want) in cases {
            let response = get(&client, server.local_addr(), host, "/").await;
            assert_eq!(
                response.status(),
                *want,
                "{host}, round {round}: {}",
                text(&response)
            );
            if *want == StatusCode::OK {
                let sni = if host.starts_with("san-uri") {
                    "other.example.com"
                } else {
                    "abc.example.com"
                };
                assert_eq!(response.headers()["x-sni"], sni, "{host}");
                assert_eq!(text(&response), "HTTP/1.1", "{host}: ALPN http/1.1");
            }
        }
    }
}

#[tokio::test]
async fn an_h2_backend_over_tls_is_spoken_to_in_h2_by_alpn() {
    let pki = pki();
    let (addr, _backend) = tls_backend(&pki).await;
    let yaml = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: tls\n  namespace: shop\nspec:\n  rules:\n{}",
        host_rule(
            "h2.test",
            "grpc",
            &tls_yaml("abc.example.com", &pki.ca_pem, &[]),
            "          appProtocol: kubernetes.io/h2c\n"
        )
    );
    let state = state_with(&yaml);
    state.endpoints.set(
        ServiceKey {
            namespace: "shop".into(),
            name: "grpc".into(),
            port: 443,
        },
        vec![addr],
    );
    let server = proxy(state, ProxyOptions::default()).await;
    let response = get(&client(), server.local_addr(), "h2.test", "/").await;
    assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
    assert_eq!(text(&response), "HTTP/2.0");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client certificate (clientAuth) signed by `issuer`: PEM certificate, PEM key, and the
/// certificate's DER in hex as the backend reports it.
fn client_cert(issuer: &CertifiedIssuer<'static, KeyPair>) -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("client certificate");
    (cert.pem(), key.serialize_pem(), hex(cert.der()))
}

fn loaded_client(
    secret: &str,
    (cert, key, _): &(String, String, String),
) -> lockstep_proxy::certs::ClientCert {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let loaded =
        lockstep_proxy::certs::load(secret, cert.as_bytes(), key.as_bytes(), now).expect("client material");
    lockstep_proxy::certs::ClientCert {
        certified: loaded.certified,
        hash: lockstep_core::tls_material_hash(cert.as_bytes(), key.as_bytes()),
    }
}

/// Gateway API `spec.tls.backend.clientCertificateRef` as a generated RouterConfig says it
/// (`tls.clientCertificateSecretName`): the replica presents that Secret's certificate to a
/// backend that requires one; a rotated certificate is presented on the next connection
/// (settings are kept apart per certificate, so a pooled connection made with the old one
/// never carries a request); a backend reached without one, or a Secret without good
/// material, is a 502, never a request sent without the certificate.
#[tokio::test]
async fn a_backend_requiring_a_client_certificate_gets_the_one_the_secret_holds() {
    let pki = pki();
    let client_ca = ca();
    let (addr, _backend) = tls_backend_asking(&pki, Some(&client_ca.pem())).await;
    let tls = tls_yaml("abc.example.com", &pki.ca_pem, &[]);
    let with_client = format!("{tls}            clientCertificateSecretName: client\n");
    let with_missing = format!("{tls}            clientCertificateSecretName: missing\n");
    let yaml = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata:\n  name: tls\n  namespace: shop\nspec:\n  rules:\n{}{}{}",
        host_rule("presents.test", "svc", &with_client, ""),
        host_rule("none.test", "svc", &tls, ""),
        host_rule("missing.test", "svc", &with_missing, ""),
    );
    let state = state_with(&yaml);
    state.endpoints.set(
        ServiceKey {
            namespace: "shop".into(),
            name: "svc".into(),
            port: 443,
        },
        vec![addr],
    );
    let first = client_cert(&client_ca);
    let key = lockstep_core::ObjectKey::new("shop", "client");
    state
        .certs
        .replace_clients([(key.clone(), loaded_client("shop/client", &first))].into());
    let server = proxy(state.clone(), ProxyOptions::default()).await;
    let client = client();
    for round in 0..2 {
        let response = get(&client, server.local_addr(), "presents.test", "/").await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "round {round}: {}",
            text(&response)
        );
        assert_eq!(
            response.headers()["x-client-cert"],
            first.2.as_str(),
            "round {round}"
        );
        for host in ["none.test", "missing.test"] {
            let response = get(&client, server.local_addr(), host, "/").await;
            assert_eq!(
                response.status(),
                StatusCode::BAD_GATEWAY,
                "{host}, round {round}: {}",
                text(&response)
            );
        }
    }
    // Rotated: the next request presents the new certificate.
    let second = client_cert(&client_ca);
    state
        .certs
        .replace_clients([(key.clone(), loaded_client("shop/client", &second))].into());
    let response = get(&client, server.local_addr(), "presents.test", "/").await;
    assert_eq!(response.status(), StatusCode::OK, "{}", text(&response));
    assert_eq!(response.headers()["x-client-cert"], second.2.as_str());
    // One of a CA the backend does not trust: refused by the backend, a 502.
    let stranger = client_cert(&ca());
    state
        .certs
        .replace_clients([(key, loaded_client("shop/client", &stranger))].into());
    let response = get(&client, server.local_addr(), "presents.test", "/").await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{}", text(&response));
}
