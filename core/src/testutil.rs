//! Small builders for the unit tests of this crate.

use lockstep_crds::{Backend, HostRule, HostTls, HttpPath, PathType, RouterConfigSpec, ServiceBackend};

/// A static-url backend.
pub fn mk_url(url: &str) -> Backend {
    Backend {
        service: None,
        url: Some(url.to_owned()),
        status: None,
    }
}

/// A Service backend.
pub fn mk_svc(name: &str, port: i32) -> Backend {
    Backend {
        service: Some(ServiceBackend {
            name: name.to_owned(),
            namespace: None,
            port,
            app_protocol: None,
            tls: None,
        }),
        url: None,
        status: None,
    }
}

/// A path with a backend.
pub fn mk_path_to(path: &str, path_type: PathType, backend: Backend) -> HttpPath {
    HttpPath {
        path: path.to_owned(),
        path_type,
        backend: Some(backend),
        ..Default::default()
    }
}

/// A Prefix path to a static upstream.
pub fn mk_prefix(path: &str) -> HttpPath {
    mk_path_to(path, PathType::Prefix, mk_url("http://127.0.0.1:9000"))
}

/// An Exact path to a static upstream.
pub fn mk_exact(path: &str) -> HttpPath {
    mk_path_to(path, PathType::Exact, mk_url("http://127.0.0.1:9000"))
}

/// A host rule without TLS.
pub fn mk_rule(host: &str, paths: Vec<HttpPath>) -> HostRule {
    HostRule {
        host: host.to_owned(),
        tls: None,
        wildcard_match: None,
        paths,
    }
}

/// A host rule with a TLS Secret.
pub fn mk_tls_rule(host: &str, secret: &str, paths: Vec<HttpPath>) -> HostRule {
    HostRule {
        host: host.to_owned(),
        tls: Some(HostTls {
            secret_name: secret.to_owned(),
            redirect_http: false,
        }),
        wildcard_match: None,
        paths,
    }
}

/// A spec of fleet "default".
pub fn mk_spec(rules: Vec<HostRule>) -> RouterConfigSpec {
    RouterConfigSpec {
        fleet: "default".to_owned(),
        rules,
    }
}
