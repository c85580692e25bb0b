//! RouterConfig documents from a YAML file (the proxy's standalone mode).

use lockstep_crds::RouterConfig;

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

/// Parses RouterConfig documents; empty documents are skipped. Objects without a namespace
/// get "default".
pub fn parse_router_configs(path: &str, text: &str) -> Result<Vec<RouterConfig>, FileError> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| FileError::Parse { path: path.to_owned(), message: e.to_string() })?;
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
