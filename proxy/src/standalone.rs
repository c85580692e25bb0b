//! Standalone mode: the RouterConfigs come from a YAML file instead of the cluster. They are
//! judged by the same code as in Kubernetes mode ([`lockstep_config::resolve_fleet`]), so a
//! file accepted here is accepted by the operator, and the file is re-read on change.
//!
//! A file that cannot be read or parsed changes nothing. A RouterConfig that fails validation
//! or conflicts keeps its last good spec (or stays absent), as in Kubernetes mode; the log
//! names the field.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use lockstep_config::{
    Candidate, ObjectKey, RouteTable, Verdict, config_digest, file::FileError, resolve_fleet,
};
use tokio::task::JoinHandle;

use crate::state::{ProxyState, ServedConfig, ServedObject};

/// Why a file was not applied at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a sequence of RouterConfig documents.
    #[error(transparent)]
    File(#[from] FileError),
    /// Two documents name the same RouterConfig.
    #[error("{path}: RouterConfig {key} appears more than once")]
    Duplicate {
        /// The file.
        path: String,
        /// namespace/name.
        key: ObjectKey,
    },
}

/// The outcome of applying a file.
#[derive(Debug, Default)]
pub struct Applied {
    /// The served configuration changed.
    pub swapped: bool,
    /// RouterConfigs not applied, with the reason (each keeps its last good spec).
    pub rejected: BTreeMap<ObjectKey, String>,
}

/// Parses, judges and swaps in the RouterConfigs of `fleet` from `text`.
pub fn apply(state: &ProxyState, path: &str, text: &str, fleet: &str) -> Result<Applied, LoadError> {
    let configs: Vec<_> = lockstep_config::file::parse_router_configs(path, text)?
        .into_iter()
        .filter(|rc| rc.spec.fleet == fleet)
        .collect();
    let keyed: Vec<(ObjectKey, &lockstep_crds::RouterConfig)> =
        configs.iter().map(|rc| (ObjectKey::of(rc), rc)).collect();
    let mut seen = BTreeSet::new();
    for (key, _) in &keyed {
        if !seen.insert(key) {
            return Err(LoadError::Duplicate {
                path: path.to_owned(),
                key: key.clone(),
            });
        }
    }
    let resolution = resolve_fleet(
        keyed
            .iter()
            .map(|(key, rc)| Candidate {
                key,
                created: rc.metadata.creation_timestamp.as_ref().map(|t| t.0),
                spec: &rc.spec,
            })
            .collect(),
    );

    let previous = state.served();
    let mut objects = BTreeMap::new();
    let mut order = Vec::new();
    for candidate in &resolution.accepted {
        let rc = keyed.iter().find(|(k, _)| k == candidate.key).map(|(_, rc)| *rc);
        let generation = rc.and_then(|rc| rc.metadata.generation).unwrap_or(1);
        let object = ServedObject {
            key: candidate.key.clone(),
            generation,
            digest: config_digest(candidate.spec, &BTreeMap::new()),
            spec: Arc::new(candidate.spec.clone()),
        };
        order.push(object.key.clone());
        objects.insert(object.key.clone(), object);
    }
    let mut applied = Applied::default();
    for (key, verdict) in &resolution.verdicts {
        if let Verdict::Invalid(message) | Verdict::Conflict(message) = verdict {
            applied.rejected.insert(key.clone(), message.clone());
            if let Some(last_good) = previous.objects.get(key) {
                order.push(key.clone());
                objects.insert(key.clone(), last_good.clone());
            }
        }
    }

    let unchanged = objects.len() == previous.objects.len()
        && objects
            .iter()
            .zip(previous.objects.iter())
            .all(|((k, a), (pk, b))| k == pk && a.generation == b.generation && a.digest == b.digest);
    if !unchanged {
        let table = RouteTable::compile(order.iter().map(|k| (k, &*objects[k].spec)));
        state.swap(ServedConfig { table, objects });
        applied.swapped = true;
    }
    Ok(applied)
}

/// Reads and applies a file, logging what happened; Ok means the file was read and parsed.
pub async fn load(state: &ProxyState, path: &Path, fleet: &str) -> Result<Applied, LoadError> {
    let display = path.display().to_string();
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| LoadError::Read {
            path: display.clone(),
            source,
        })?;
    apply(state, &display, &text, fleet)
}

/// Options of the file watcher.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The file.
    pub path: PathBuf,
    /// Only RouterConfigs of this fleet are served.
    pub fleet: String,
    /// How often the file is read and compared with the last applied content.
    pub interval: Duration,
}

/// Loads the file now and whenever its content changes. The replica turns ready after the
/// first load that parsed.
pub fn watch(state: Arc<ProxyState>, options: WatchOptions) -> JoinHandle<()> {
    tokio::spawn(async move {
        let display = options.path.display().to_string();
        let mut last_text: Option<String> = None;
        let mut last_error: Option<String> = None;
        let mut tick = tokio::time::interval(options.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Comparing whole contents, not mtimes, catches rewrites within one mtime tick
            // and ignores touches; the files are small.
            let text = match tokio::fs::read_to_string(&options.path).await {
                Ok(text) => text,
                Err(source) => {
                    report_error(
                        &mut last_error,
                        &LoadError::Read {
                            path: display.clone(),
                            source,
                        },
                    );
                    continue;
                }
            };
            if last_text.as_deref() == Some(text.as_str()) {
                continue;
            }
            match apply(&state, &display, &text, &options.fleet) {
                Ok(applied) => {
                    last_error = None;
                    for (key, reason) in &applied.rejected {
                        tracing::warn!(routerconfig = %key, %reason, "RouterConfig rejected; serving its last good spec");
                    }
                    if applied.swapped {
                        let served = state.served();
                        let generations: Vec<String> = served
                            .objects
                            .values()
                            .map(|o| format!("{}@{}", o.key, o.generation))
                            .collect();
                        tracing::info!(file = %options.path.display(), routerconfigs = ?generations, routes = served.table.len(), "route table swapped");
                    }
                    state.set_synced(true);
                }
                Err(error) => report_error(&mut last_error, &error),
            }
            last_text = Some(text);
        }
    })
}

/// Logs an error once, not on every poll.
fn report_error(last: &mut Option<String>, error: &LoadError) {
    let message = redact(&error.to_string());
    if last.as_deref() != Some(message.as_str()) {
        tracing::warn!(error = %message, "configuration file not applied; keeping the served table");
        *last = Some(message);
    }
}

/// A parser's message without the file's content: the YAML parser appends a snippet of
/// the lines around the error, and serde quotes the values it rejects ("invalid type:
/// string \"…\""). A file may hold credentials (a backend URL's userinfo, a mistakenly
/// pasted Secret), so only the first line is kept, with quoted strings elided; the line
/// and column still say where to look.
fn redact(message: &str) -> String {
    let first = message.lines().next().unwrap_or("");
    let mut out = String::with_capacity(first.len());
    let mut quoted = false;
    for c in first.chars() {
        if c == '"' {
            out.push_str(if quoted { "\"" } else { "\"…" });
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_messages_lose_snippets_and_quoted_values() {
        let message = "parsing f.yaml: error: line 3 column 8: unclosed quote\n  --> <input>:3:8\n3 |   token: \"s3cr3t\n";
        assert_eq!(
            redact(message),
            "parsing f.yaml: error: line 3 column 8: unclosed quote"
        );
        assert_eq!(
            redact("document 0: invalid type: string \"s3cr3t\", expected a sequence"),
            "document 0: invalid type: string \"…\", expected a sequence"
        );
    }
}
