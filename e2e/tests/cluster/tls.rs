//! TLS termination from `kubernetes.io/tls` Secrets, end to end: certificates made here with
//! rcgen, real proxies with a TLS listener, a real TLS client checking which certificate each
//! replica presents by SNI, rotations covered by Ready, and bad material rejected while the
//! previous certificate keeps being served.

use super::operator;
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use lockstep_crds::RouterConfig;
use lockstep_e2e::{
    check, eventually,
    fixture::{Fixture, lockstep_plugin},
    fleet::{Backend, Proxy},
};

const WAIT: Duration = Duration::from_secs(60);

/// A self-signed certificate and key for `names`, valid between the given dates.
struct Cert {
    pem: String,
    key: String,
    der: Vec<u8>,
}

fn mk_cert(names: &[&str], not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Cert {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    params.serial_number = Some(rcgen::SerialNumber::from(
        rand::random::<u64>().to_be_bytes().to_vec(),
    ));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Cert {
        pem: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn valid_cert(names: &[&str]) -> Cert {
    mk_cert(names, (2020, 1, 1), (2099, 1, 1))
}

fn router_config(ns: &str, fleet: &str, rules: &[(&str, &str, &str)]) -> String {
    let mut text = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n"
    );
    for (host, secret, url) in rules {
        text.push_str(&format!(
            "  - host: {host}\n    tls: {{secretName: {secret}}}\n    paths:\n    - path: /\n      backend: {{url: \"{url}\"}}\n"
        ));
    }
    text
}

/// GETs `https://host/` through `tls` trusting `root`; returns the certificate the server
/// presented, the HTTP version, and the backend's JSON answer.
async fn https_get(
    tls: SocketAddr,
    host: &str,
    root: &Cert,
) -> Result<(Vec<u8>, reqwest::Version, serde_json::Value), String> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root.pem.as_bytes()).unwrap())
        .resolve(host, tls)
        .tls_info(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client
        .get(format!("https://{host}:{}/", tls.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let presented = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate().map(<[u8]>::to_vec))
        .ok_or("no peer certificate")?;
    let version = response.version();
    let body = response.json().await.map_err(|e| e.to_string())?;
    Ok((presented, version, body))
}

/// The certificate a replica presents for `host`, trusting it whatever it is.
async fn presented(tls: SocketAddr, host: &str, any_of: &[&Cert]) -> Option<Vec<u8>> {
    for root in any_of {
        if let Ok((der, _, _)) = https_get(tls, host, root).await {
            return Some(der);
        }
    }
    None
}

fn expected_digest(rc: &RouterConfig, secrets: &[(&str, &Cert)]) -> String {
    let tls: BTreeMap<String, String> = secrets
        .iter()
        .map(|(name, cert)| {
            (
                name.to_string(),
                lockstep_core::tls_material_hash(cert.pem.as_bytes(), cert.key.as_bytes()),
            )
        })
        .collect();
    lockstep_core::config_digest(&rc.spec, &tls)
}

async fn fixture(test: &str) -> Fixture {
    let _ = operator();
    Fixture::new(test).await
}

/// What this binary's tests do with the shared fixture.
trait TlsFixture {
    /// Replicas `proxy-0..n` with a TLS listener, once every one has joined.
    fn tls_proxies(&self, n: usize) -> Vec<Proxy>;
    /// `kubectl wait` for RouterConfig `web`.
    fn wait_ready(&self);
    /// Waits until Ready=True and every entry reports `digest`: the barrier for a rotation,
    /// which changes no generation.
    async fn wait_digest(&self, digest: &str);
}

impl TlsFixture for Fixture {
    fn tls_proxies(&self, n: usize) -> Vec<Proxy> {
        self.proxies_with(n, |spec| spec.tls = true)
    }

    fn wait_ready(&self) {
        self.kubectl_wait("web", WAIT);
    }

    async fn wait_digest(&self, digest: &str) {
        eventually("every replica to report the rotated material", WAIT, || async {
            let rc = self.api.get_status("web").await.ok()?;
            let status = rc.status.as_ref()?;
            let synced = status
                .replica_status
                .iter()
                .filter(|e| e.config_digest == digest)
                .count() as i32;
            (check::ready_generation(&rc).is_some() && synced >= status.replicas.unwrap_or(1)).then_some(())
        })
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn every_replica_serves_the_certificate_by_sni_and_a_rotation_is_covered_by_ready() {
    let f = fixture("tls").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let app_a = valid_cert(&["app.test"]);
    let other = valid_cert(&["other.test"]);
    check::put_tls_secret(&f.secrets(), "app-tls", &app_a.pem, &app_a.key)
        .await
        .unwrap();
    check::put_tls_secret(&f.secrets(), "other-tls", &other.pem, &other.key)
        .await
        .unwrap();
    let proxies = f.tls_proxies(2);
    f.cp.kubectl_apply(&router_config(
        &f.ns,
        &f.fleet,
        &[
            ("app.test", "app-tls", &one.url()),
            ("other.test", "other-tls", &two.url()),
        ],
    ))
    .unwrap();
    f.wait_ready();

    for proxy in &proxies {
        let tls = proxy.tls.unwrap();
        let (der, version, body) = https_get(tls, "app.test", &app_a).await.unwrap();
        assert_eq!(
            der, app_a.der,
            "{} presents app.test's certificate",
            proxy.spec.name
        );
        assert_eq!(version, reqwest::Version::HTTP_2, "ALPN negotiates h2");
        assert_eq!(
            (body["backend"].as_str(), body["xForwardedProto"].as_str()),
            (Some("one"), Some("https"))
        );
        let (der, _, body) = https_get(tls, "other.test", &other).await.unwrap();
        assert_eq!(der, other.der);
        assert_eq!(body["backend"], "two");
        // A name without a certificate gets no certificate at all, never another host's.
        assert!(https_get(tls, "unknown.test", &app_a).await.is_err());
        assert!(presented(tls, "unknown.test", &[&app_a, &other]).await.is_none());
    }

    // Rotate: same generation, new material. `kubectl lockstep wait`, started the moment the
    // Secret is written, returns only once every replica serves it: the Ready=True it sees
    // first was judged on the old material.
    let app_b = valid_cert(&["app.test"]);
    check::put_tls_secret(&f.secrets(), "app-tls", &app_b.pem, &app_b.key)
        .await
        .unwrap();
    let wait = lockstep_plugin(f.cp, &["wait", "web", "-n", &f.ns, "--timeout", "60"]);
    assert!(wait.status.success(), "kubectl lockstep wait: {wait:?}");
    for proxy in &proxies {
        let (der, _, _) = https_get(proxy.tls.unwrap(), "app.test", &app_b).await.unwrap();
        assert_eq!(
            der, app_b.der,
            "{} presents the rotated certificate once the wait returned",
            proxy.spec.name
        );
    }
    // The operator's barrier agrees: Ready covers the rotation through the digest.
    let rc = f.api.get("web").await.unwrap();
    let digest = expected_digest(&rc, &[("app-tls", &app_b), ("other-tls", &other)]);
    f.wait_digest(&digest).await;
    f.wait_ready();
    let table = lockstep_plugin(f.cp, &["status", "web", "-n", &f.ns]);
    let table = String::from_utf8_lossy(&table.stdout);
    for proxy in &proxies {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(format!("{}/{}", f.ns, proxy.spec.name).as_str()))
            .unwrap_or_else(|| panic!("{} missing from\n{table}", proxy.spec.name));
        assert!(row.contains(" match "), "{row}");
    }
}

#[tokio::test]
async fn bad_material_is_rejected_with_a_reason_and_the_previous_certificate_kept() {
    let f = fixture("badtls").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let good = valid_cert(&["app.test"]);
    check::put_tls_secret(&f.secrets(), "app-tls", &good.pem, &good.key)
        .await
        .unwrap();
    let proxies = f.tls_proxies(2);
    f.cp.kubectl_apply(&router_config(
        &f.ns,
        &f.fleet,
        &[("app.test", "app-tls", &one.url())],
    ))
    .unwrap();
    f.wait_ready();

    let other_key = valid_cert(&["app.test"]).key;
    let expired = mk_cert(&["app.test"], (2020, 1, 1), (2021, 1, 1));
    let wrong_host = valid_cert(&["elsewhere.test"]);
    let cases: [(&str, String, String, &str); 4] = [
        (
            "malformed PEM",
            "-----BEGIN CERTIFICATE-----\nnot base64\n".into(),
            good.key.clone(),
            "tls.crt",
        ),
        (
            "key of another certificate",
            good.pem.clone(),
            other_key,
            "does not match",
        ),
        (
            "expired certificate",
            expired.pem.clone(),
            expired.key.clone(),
            "not valid now",
        ),
        (
            "certificate for another host",
            wrong_host.pem.clone(),
            wrong_host.key.clone(),
            "does not cover host app.test",
        ),
    ];
    for (case, crt, key, reason) in cases {
        check::put_tls_secret(&f.secrets(), "app-tls", &crt, &key)
            .await
            .unwrap();
        // The operator judges the material with the replicas' own test: not accepted, rather
        // than accepted by the operator and rejected by every replica.
        let judged = eventually(
            &format!("{case}: Accepted=False InvalidTLS naming the reason"),
            WAIT,
            || async {
                let rc = f.api.get_status("web").await.ok()?;
                let accepted = rc
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Accepted")?;
                (accepted.status == "False"
                    && accepted.reason == "InvalidTLS"
                    && accepted.message.contains(reason))
                .then_some(accepted)
            },
        )
        .await;
        let ready = match judged {
            Ok(ready) => ready,
            Err(e) => panic!("{e}: {:?}", f.api.get_status("web").await.unwrap().status),
        };
        assert!(
            ready.message.contains("spec.rules[0].tls.secretName"),
            "{case}: names the field: {}",
            ready.message
        );
        for proxy in &proxies {
            let der = presented(proxy.tls.unwrap(), "app.test", &[&good]).await;
            assert_eq!(
                der.as_deref(),
                Some(good.der.as_slice()),
                "{case}: {} keeps the good certificate",
                proxy.spec.name
            );
            let (status, landed) = check::request(&check::http(), proxy.http, "app.test", "/")
                .await
                .unwrap();
            assert_eq!(
                (status, landed.as_deref()),
                (200, Some("one")),
                "{case}: routes keep working"
            );
        }
    }

    // Good material again: Ready returns.
    check::put_tls_secret(&f.secrets(), "app-tls", &good.pem, &good.key)
        .await
        .unwrap();
    let rc = f.api.get("web").await.unwrap();
    f.wait_digest(&expected_digest(&rc, &[("app-tls", &good)])).await;

    // A Secret that does not exist yet (cert-manager and GitOps often create it after the
    // RouterConfig) is a wait, not a rejection: Accepted stays True, Ready is False with
    // reason WaitingForSecret naming the field, and Reconciling is True (kstatus InProgress).
    f.cp.kubectl_apply(&router_config(
        &f.ns,
        &f.fleet,
        &[("app.test", "missing-tls", &one.url())],
    ))
    .unwrap();
    let waiting = eventually("Ready=False waiting for the Secret", WAIT, || async {
        let rc = f.api.get_status("web").await.ok()?;
        let generation = rc.metadata.generation?;
        let status = rc.status?;
        let find = |t: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == t && c.observed_generation == Some(generation))
                .cloned()
        };
        let ready = find("Ready")?;
        (ready.reason == "WaitingForSecret").then(|| (ready, find("Accepted"), find("Reconciling")))
    })
    .await
    .unwrap();
    let (ready, accepted, reconciling) = waiting;
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("spec.rules[0].tls.secretName") && ready.message.contains("missing-tls"),
        "{}",
        ready.message
    );
    assert_eq!(accepted.map(|c| c.status).as_deref(), Some("True"));
    assert_eq!(
        reconciling.map(|c| (c.status, c.reason)),
        Some(("True".to_owned(), "WaitingForSecret".to_owned()))
    );
    for proxy in &proxies {
        let der = presented(proxy.tls.unwrap(), "app.test", &[&good]).await;
        assert_eq!(
            der.as_deref(),
            Some(good.der.as_slice()),
            "a missing Secret keeps the previous certificate"
        );
    }
    // The Secret appears: Ready without any edit of the RouterConfig.
    check::put_tls_secret(&f.secrets(), "missing-tls", &good.pem, &good.key)
        .await
        .unwrap();
    let rc = f.api.get("web").await.unwrap();
    f.wait_digest(&expected_digest(&rc, &[("missing-tls", &good)]))
        .await;
    f.wait_ready();
}

#[tokio::test]
async fn a_generation_whose_certificate_is_missing_is_not_served_not_even_its_redirect() {
    let f = fixture("tls-missing").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let proxies = f.tls_proxies(2);
    // Generation 1: a.test over plain HTTP.
    let plain = |hosts: &str| {
        format!(
            "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: web, namespace: {}}}\nspec:\n  fleet: {}\n  rules:\n{hosts}",
            f.ns, f.fleet
        )
    };
    let a = format!(
        "  - host: a.test\n    paths:\n    - path: /\n      backend: {{url: \"{}\"}}\n",
        one.url()
    );
    f.cp.kubectl_apply(&plain(&a)).unwrap();
    f.wait_ready();
    // Generation 2 adds b.test with redirectHttp and a Secret that does not exist: no replica
    // may serve it (a redirect to https for a host without a certificate), and a.test stays.
    let b = format!(
        "  - host: b.test\n    tls: {{secretName: nowhere, redirectHttp: true}}\n    paths:\n    - path: /\n      backend: {{url: \"{}\"}}\n",
        one.url()
    );
    f.cp.kubectl_apply(&plain(&format!("{a}{b}"))).unwrap();
    eventually("every replica to report generation 2 rejected", WAIT, || async {
        let rc = f.api.get_status("web").await.ok()?;
        let entries = rc.status?.replica_status;
        (entries.len() == 2
            && entries
                .iter()
                .all(|e| e.rejected.as_ref().is_some_and(|r| r.generation == 2)))
        .then_some(())
    })
    .await
    .unwrap();
    let http = check::http();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for proxy in &proxies {
        let response = no_redirects
            .get(format!("http://{}/", proxy.http))
            .header("host", "b.test")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            404,
            "{} serves a generation without its certificate: {:?}",
            proxy.spec.name,
            response.headers().get("location")
        );
        let (status, landed) = check::request(&http, proxy.http, "a.test", "/").await.unwrap();
        assert_eq!((status, landed.as_deref()), (200, Some("one")));
    }
}

/// RouterConfig `name` with one TLS rule per `(host, secret, path, url)`.
fn tls_router_config(ns: &str, fleet: &str, name: &str, rules: &[(&str, &str, &str, &str)]) -> String {
    let mut text = format!(
        "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  fleet: {fleet}\n  rules:\n"
    );
    for (host, secret, path, url) in rules {
        let tls = if secret.is_empty() {
            String::new()
        } else {
            format!("    tls: {{secretName: {secret}}}\n")
        };
        text.push_str(&format!(
            "  - host: {host}\n{tls}    paths:\n    - path: {path}\n      backend: {{url: \"{url}\"}}\n"
        ));
    }
    text
}

/// What each replica of the test's namespace reports on RouterConfig `name` (its own
/// RouterReplica, not the operator's copy).
async fn replica_entries(f: &Fixture, name: &str) -> Option<Vec<lockstep_crds::ServedRouterConfig>> {
    let replicas: kube::Api<lockstep_crds::RouterReplica> = kube::Api::namespaced(f.client.clone(), &f.ns);
    let list = replicas.list(&Default::default()).await.ok()?;
    Some(
        list.items
            .into_iter()
            .filter_map(|r| r.status?.served.into_iter().find(|e| e.name == name))
            .collect(),
    )
}

/// The condition `type_` of RouterConfig `name` for its current generation.
async fn current_condition(
    f: &Fixture,
    name: &str,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let rc = f.api.get_status(name).await.ok()?;
    let generation = rc.metadata.generation?;
    rc.status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_ && c.observed_generation == Some(generation))
}

#[tokio::test]
async fn two_objects_naming_one_tls_host_give_the_older_ones_certificate_everywhere() {
    let f = fixture("tls-owner").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let (older_cert, newer_cert) = (valid_cert(&["app.test"]), valid_cert(&["app.test"]));
    check::put_tls_secret(&f.secrets(), "older-tls", &older_cert.pem, &older_cert.key)
        .await
        .unwrap();
    check::put_tls_secret(&f.secrets(), "newer-tls", &newer_cert.pem, &newer_cert.key)
        .await
        .unwrap();
    let proxies = f.tls_proxies(2);
    f.cp.kubectl_apply(&tls_router_config(
        &f.ns,
        &f.fleet,
        "older",
        &[("app.test", "older-tls", "/", &one.url())],
    ))
    .unwrap();
    f.kubectl_wait("older", WAIT);
    // Creation timestamps have one-second resolution: make "newer" newer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Other paths of the same host, another certificate.
    f.cp.kubectl_apply(&tls_router_config(
        &f.ns,
        &f.fleet,
        "newer",
        &[("app.test", "newer-tls", "/b", &two.url())],
    ))
    .unwrap();

    let accepted = eventually("newer to be judged", WAIT, || async {
        current_condition(&f, "newer", "Accepted").await
    })
    .await
    .unwrap();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "Conflict"),
        "{accepted:?}"
    );
    let holder = format!("RouterConfig {}/older", f.ns);
    assert!(
        accepted.message.contains(&holder) && accepted.message.contains("app.test"),
        "the status names the holder: {}",
        accepted.message
    );
    f.kubectl_wait("older", WAIT);
    for _ in 0..3 {
        for proxy in &proxies {
            let der = presented(proxy.tls.unwrap(), "app.test", &[&older_cert, &newer_cert]).await;
            assert_eq!(
                der.as_deref(),
                Some(older_cert.der.as_slice()),
                "{} presents the older object's certificate",
                proxy.spec.name
            );
        }
    }
}

#[tokio::test]
async fn a_rejected_generation_that_drops_a_tls_host_keeps_its_certificate_on_every_replica() {
    let f = fixture("tls-keep").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let cert = valid_cert(&["app.test"]);
    check::put_tls_secret(&f.secrets(), "app-tls", &cert.pem, &cert.key)
        .await
        .unwrap();
    let proxies = f.tls_proxies(2);
    // An older object holds plain.test/.
    f.cp.kubectl_apply(&tls_router_config(
        &f.ns,
        &f.fleet,
        "holder",
        &[("plain.test", "", "/", &two.url())],
    ))
    .unwrap();
    f.kubectl_wait("holder", WAIT);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    f.cp.kubectl_apply(&tls_router_config(
        &f.ns,
        &f.fleet,
        "web",
        &[("app.test", "app-tls", "/", &one.url())],
    ))
    .unwrap();
    f.wait_ready();
    let serial = |der: &[u8]| {
        let (_, parsed) = x509_parser::parse_x509_certificate(der).unwrap();
        parsed.raw_serial_as_string()
    };
    let expected_serial = serial(&cert.der);

    // Generation 2 drops app.test and claims the holder's path: rejected (Conflict), so every
    // replica serves generation 1, app.test's certificate included.
    f.cp.kubectl_apply(&tls_router_config(
        &f.ns,
        &f.fleet,
        "web",
        &[("plain.test", "", "/", &one.url())],
    ))
    .unwrap();
    eventually("every replica to report generation 2 rejected", WAIT, || async {
        let entries = replica_entries(&f, "web").await?;
        (entries.len() == 2
            && entries.iter().all(|e| {
                e.observed_generation == 1 && e.rejected.as_ref().is_some_and(|r| r.generation == 2)
            }))
        .then_some(())
    })
    .await
    .unwrap();
    // Past a sync pass or two: the Secret's watch would have been dropped by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for proxy in &proxies {
        let (der, _, body) = https_get(proxy.tls.unwrap(), "app.test", &cert)
            .await
            .unwrap_or_else(|e| panic!("{}: app.test handshake: {e}", proxy.spec.name));
        assert_eq!(serial(&der), expected_serial, "{}", proxy.spec.name);
        assert_eq!(body["backend"], "one");
    }
}

#[tokio::test]
async fn a_key_that_does_not_match_is_rejected_by_the_operator_and_every_replica_keeps_the_last_generation() {
    let f = fixture("tls-mismatch").await;
    let one = Backend::start(&f.dir, "one").unwrap();
    let two = Backend::start(&f.dir, "two").unwrap();
    let good = valid_cert(&["app.test"]);
    let other = valid_cert(&["app.test"]);
    check::put_tls_secret(&f.secrets(), "good-tls", &good.pem, &good.key)
        .await
        .unwrap();
    check::put_tls_secret(&f.secrets(), "bad-tls", &good.pem, &other.key)
        .await
        .unwrap();
    let proxies = f.tls_proxies(2);
    f.cp.kubectl_apply(&tls_router_config(
        &f.ns,
        &f.fleet,
        "web",
        &[("app.test", "good-tls", "/", &one.url())],
    ))
    .unwrap();
    f.wait_ready();

    // Generation 2: a new backend, and a Secret whose key belongs to another certificate.
    f.cp.kubectl_apply(&tls_router_config(
        &f.ns,
        &f.fleet,
        "web",
        &[("app.test", "bad-tls", "/", &two.url())],
    ))
    .unwrap();
    let accepted = eventually("generation 2 to be judged", WAIT, || async {
        current_condition(&f, "web", "Accepted").await
    })
    .await
    .unwrap();
    assert_eq!(
        (accepted.status.as_str(), accepted.reason.as_str()),
        ("False", "InvalidTLS"),
        "the operator rejects what every replica rejects: {accepted:?}"
    );
    assert!(
        accepted.message.contains("tls.key does not match"),
        "{}",
        accepted.message
    );
    let rc = f.api.get_status("web").await.unwrap();
    assert_eq!(
        rc.status.unwrap().last_accepted.map(|a| a.generation),
        Some(1),
        "generation 2 is not recorded as accepted"
    );
    // Each replica's own report: it serves generation 1 and rejected generation 2.
    eventually("every replica to report generation 2 rejected", WAIT, || async {
        let entries = replica_entries(&f, "web").await?;
        (entries.len() == 2
            && entries.iter().all(|e| {
                e.observed_generation == 1 && e.rejected.as_ref().is_some_and(|r| r.generation == 2)
            }))
        .then_some(())
    })
    .await
    .unwrap();
    let http = check::http();
    for proxy in &proxies {
        let (der, _, body) = https_get(proxy.tls.unwrap(), "app.test", &good).await.unwrap();
        assert_eq!(der, good.der, "{}", proxy.spec.name);
        assert_eq!(body["backend"], "one", "{} serves generation 1", proxy.spec.name);
        let (status, landed) = check::request(&http, proxy.http, "app.test", "/").await.unwrap();
        assert_eq!((status, landed.as_deref()), (200, Some("one")));
    }
}
