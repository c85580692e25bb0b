//! RouterConfig documents from a YAML file (the proxy's standalone mode).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use lockstep_crds::RouterConfig;

use crate::ObjectKey;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a sequence of RouterConfig documents.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said, with the location.
        message: String,
    },
    /// A document is not a lockstep.dev/v1alpha1 RouterConfig.
    #[error("{path}: document {index} is {found}, expected lockstep.dev/v1alpha1 RouterConfig")]
    WrongKind {
        /// The file.
        path: String,
        /// Zero-based document index.
        index: usize,
        /// apiVersion/kind found.
        found: String,
    },
}

/// Most YAML nodes (mappings, sequences, scalars) in one file: a path with a backend is about
/// 10, so this is about 400,000 paths, above what one RouterConfig (256 rules of 128 paths)
/// or a few hundred of them hold. The parser's default (250,000 nodes) stopped a file near
/// 25,000 paths, which a standalone proxy for a large site reaches. What is left bounds a
/// hostile file's memory (a node costs about 100 bytes parsed).
pub const MAX_YAML_NODES: usize = 4_000_000;
/// Most parser events (about two per node) in one file.
pub const MAX_YAML_EVENTS: usize = 4 * MAX_YAML_NODES;
/// Most YAML documents in one file.
pub const MAX_YAML_DOCUMENTS: usize = 16_384;
/// Deepest nesting of mappings and sequences (a RouterConfig needs under 10).
pub const MAX_YAML_DEPTH: usize = 64;

fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = MAX_YAML_NODES;
    budget.max_events = MAX_YAML_EVENTS;
    budget.max_documents = MAX_YAML_DOCUMENTS;
    budget.max_depth = MAX_YAML_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// What the parser said, with the loader's limits spelled out when one was passed (the
/// parser's own "budget breached" names the counter, not the limit).
fn parse_message(error: &serde_saphyr::Error) -> String {
    match error.without_snippet() {
        serde_saphyr::Error::Budget { breach, .. } => format!(
            "the file exceeds a limit of the loader ({breach:?}); a file may hold at most {MAX_YAML_NODES} YAML nodes (about {} paths), {MAX_YAML_EVENTS} parser events, {MAX_YAML_DOCUMENTS} documents, nesting {MAX_YAML_DEPTH} deep",
            MAX_YAML_NODES / 10
        ),
        _ => error.to_string(),
    }
}

/// Parses RouterConfig documents; empty documents are skipped. Objects without a namespace
/// get "default".
pub fn parse_router_configs(path: &str, text: &str) -> Result<Vec<RouterConfig>, FileError> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| FileError::Parse {
            path: path.to_owned(),
            message: parse_message(&e),
        })?;
    let mut out = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let api_version = doc.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
        let kind = doc.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if api_version != lockstep_crds::API_VERSION || kind != lockstep_crds::KIND {
            return Err(FileError::WrongKind {
                path: path.to_owned(),
                index,
                found: format!("{api_version}/{kind}"),
            });
        }
        let mut rc: RouterConfig = serde_json::from_value(doc).map_err(|e| FileError::Parse {
            path: path.to_owned(),
            message: format!("document {index}: {e}"),
        })?;
        if rc.metadata.namespace.is_none() {
            rc.metadata.namespace = Some("default".to_owned());
        }
        out.push(rc);
    }
    Ok(out)
}

/// When the standalone process first saw each document: its `creationTimestamp`.
///
/// Precedence between RouterConfigs is age (the older keeps a claimed match). In a cluster the
/// apiserver stamps each object when it is created; a file has no such stamp, and falling back
/// to namespace/name would let a document added later take a path from one that was there
/// first, the opposite of what the operator decides for the same objects. So this process plays
/// the apiserver: a document is stamped when it first appears, the documents of one read in
/// file order (the first is the oldest), and the stamp is kept across reloads while the
/// document stays in the file. A document removed and added again is a new object, as a
/// deleted and re-created RouterConfig is. A `creationTimestamp` written in the file is not
/// this process's observation and is replaced, like a written status.
#[derive(Debug, Default)]
pub struct FirstSeen {
    stamps: BTreeMap<ObjectKey, Timestamp>,
    latest: Option<Timestamp>,
}

impl FirstSeen {
    /// Stamps the documents of one read (in file order) as of `now`; forgets documents gone
    /// from the file.
    pub fn stamp(&mut self, documents: &mut [RouterConfig], now: Timestamp) {
        let present: BTreeSet<ObjectKey> = documents.iter().map(ObjectKey::of).collect();
        self.stamps.retain(|key, _| present.contains(key));
        for rc in documents.iter_mut() {
            let latest = &mut self.latest;
            let at = *self.stamps.entry(ObjectKey::of(rc)).or_insert_with(|| {
                // Strictly after every earlier stamp, even when the clock did not move.
                let next = match *latest {
                    Some(t) if t >= now => t + SignedDuration::from_nanos(1),
                    _ => now,
                };
                *latest = Some(next);
                next
            });
            rc.metadata.creation_timestamp = Some(Time(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ObjectKey, RouteTable, validate_spec};

    const ONE: &str = "apiVersion: lockstep.dev/v1alpha1
kind: RouterConfig
metadata: {name: a}
spec:
  rules:
  - host: a.example.com
    paths: [{path: /, backend: {url: 'http://127.0.0.1:9000'}}]
";

    #[test]
    fn multiple_documents_with_empty_ones_skipped() {
        let text = format!(
            "---\n{ONE}---\n---\n# only a comment\n---\n{}",
            ONE.replace("name: a", "name: b, namespace: shop")
        );
        let rcs = parse_router_configs("f.yaml", &text).unwrap();
        let keys: Vec<_> = rcs.iter().map(ObjectKey::of).collect();
        assert_eq!(
            keys,
            vec![ObjectKey::new("default", "a"), ObjectKey::new("shop", "b")]
        );
        assert_eq!(rcs[0].spec.fleet, "default", "defaults apply");
        assert!(parse_router_configs("f.yaml", "").unwrap().is_empty());
    }

    #[test]
    fn the_document_seen_first_is_older_as_the_operator_would_decide() {
        let doc = |name: &str| {
            format!(
                "apiVersion: lockstep.dev/v1alpha1\nkind: RouterConfig\nmetadata: {{name: {name}}}\nspec:\n  rules:\n  - host: a.example.com\n    paths: [{{path: /, backend: {{url: 'http://127.0.0.1:9000'}}}}]\n"
            )
        };
        let owner = |text: &str, seen: &mut FirstSeen, now: i64| {
            let mut docs = parse_router_configs("f.yaml", text).unwrap();
            seen.stamp(&mut docs, Timestamp::from_second(now).unwrap());
            let res = crate::resolve_fleet(docs.iter().map(crate::Candidate::of).collect());
            let accepted: Vec<String> = res
                .verdicts
                .iter()
                .filter(|(_, v)| v.is_accepted())
                .map(|(k, _)| k.name.clone())
                .collect();
            accepted
        };
        let mut seen = FirstSeen::default();
        // "zz" comes first in the file: it is older, though "aa" sorts first by name (and the
        // same second on the clock).
        let first = format!("{}---\n{}", doc("zz"), doc("aa"));
        assert_eq!(owner(&first, &mut seen, 100), vec!["zz"]);
        // A document added above both later is newer than both; the stamps survive the reload.
        let second = format!("{}---\n{}---\n{}", doc("a0"), doc("zz"), doc("aa"));
        assert_eq!(owner(&second, &mut seen, 100), vec!["zz"]);
        // The holder removed: the next oldest takes over, as after a delete in a cluster.
        let third = format!("{}---\n{}", doc("a0"), doc("aa"));
        assert_eq!(owner(&third, &mut seen, 200), vec!["aa"]);
        // Added back: a new object, the newest.
        let fourth = format!("{}---\n{}---\n{}", doc("zz"), doc("a0"), doc("aa"));
        assert_eq!(owner(&fourth, &mut seen, 300), vec!["aa"]);
    }

    #[test]
    fn wrong_kind_names_the_document() {
        let text = format!("{ONE}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n");
        let err = parse_router_configs("f.yaml", &text).unwrap_err();
        assert!(
            matches!(&err, FileError::WrongKind { index: 1, found, .. } if found == "v1/ConfigMap"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "f.yaml: document 1 is v1/ConfigMap, expected lockstep.dev/v1alpha1 RouterConfig"
        );
        let old = ONE.replace("v1alpha1", "v1");
        assert!(matches!(
            parse_router_configs("f.yaml", &old),
            Err(FileError::WrongKind { index: 0, .. })
        ));
    }

    #[test]
    fn a_file_over_the_loaders_limits_is_refused_naming_them() {
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_YAML_DEPTH + 1),
            "]".repeat(MAX_YAML_DEPTH + 1)
        );
        let err = parse_router_configs("f.yaml", &deep).unwrap_err().to_string();
        assert!(
            err.starts_with("parsing f.yaml: the file exceeds a limit of the loader"),
            "{err}"
        );
        assert!(
            err.contains("at most 4000000 YAML nodes (about 400000 paths)"),
            "{err}"
        );
        assert!(err.contains("nesting 64 deep"), "{err}");
    }

    #[test]
    fn bad_yaml_and_bad_fields_are_parse_errors() {
        let err = parse_router_configs("f.yaml", "apiVersion: [unclosed\n").unwrap_err();
        assert!(matches!(err, FileError::Parse { .. }), "{err:?}");
        assert!(err.to_string().starts_with("parsing f.yaml: "), "{err}");
        let err = parse_router_configs(
            "f.yaml",
            &ONE.replace("pathType", "x")
                .replace("path: /", "path: 7, pathType: Sideways"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("document 0"), "{err}");
        let err = parse_router_configs("f.yaml", &ONE.replace("  rules:\n", "  rulez:\n")).unwrap_err();
        assert!(err.to_string().contains("rules"), "{err}");
    }

    #[test]
    fn the_web_example_parses_validates_and_routes() {
        let text = include_str!("../../examples/web.yaml");
        let rcs = parse_router_configs("examples/web.yaml", text).unwrap();
        assert_eq!(rcs.len(), 1);
        let rc = &rcs[0];
        assert_eq!(ObjectKey::of(rc), ObjectKey::new("default", "web"));
        assert_eq!(rc.spec.fleet, "default");
        validate_spec(&rc.spec).unwrap();
        let key = ObjectKey::of(rc);
        let table = RouteTable::compile([(&key, &rc.spec)]);
        let backend = |host: &str, path: &str| table.lookup(host, path).map(|r| r.backends[0].0.to_string());
        assert_eq!(
            backend("app.example.com", "/api/users").as_deref(),
            Some("service default/api:8080")
        );
        assert_eq!(
            backend("app.example.com", "/healthz").as_deref(),
            Some("http://127.0.0.1:18091")
        );
        assert_eq!(
            backend("app.example.com", "/healthz/x").as_deref(),
            Some("http://127.0.0.1:18090")
        );
        assert_eq!(
            backend("app.example.com:18080", "/").as_deref(),
            Some("http://127.0.0.1:18090")
        );
        assert_eq!(
            backend("pr-42.preview.example.com", "/x").as_deref(),
            Some("http://127.0.0.1:18090")
        );
        assert_eq!(backend("static.example.com", "/").as_deref(), None);
        let url_hosts: Vec<_> = table
            .routes()
            .iter()
            .filter(|r| matches!(r.backends[0].0, crate::BackendRef::Url { .. }))
            .collect();
        assert!(url_hosts.len() >= 3);
    }
}
