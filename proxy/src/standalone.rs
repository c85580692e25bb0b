//! Standalone mode: the RouterConfigs come from a YAML file instead of the cluster. They are
//! judged by the same code as in Kubernetes mode ([`lockstep_core::resolve_fleet`]), so a
//! file accepted here is accepted by the operator, and the file is re-read on change.
//!
//! A file that cannot be read or parsed changes nothing. A RouterConfig that fails validation
//! or conflicts serves its last accepted generation (or nothing), by the same plan as
//! Kubernetes mode ([`lockstep_core::plan`]); the log names the field.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use lockstep_core::{
    Candidate, ObjectKey,
    file::{FileError, FirstSeen},
    plan::{self, TlsView},
};
use lockstep_crds::{AcceptedGeneration, RouterConfig, RouterConfigStatus};
use tokio::task::JoinHandle;

use crate::state::{ProxyState, off_the_runtime};

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
    /// RouterConfigs whose current document is not served, with the reason (each serves its
    /// last accepted generation, if any).
    pub rejected: BTreeMap<ObjectKey, String>,
}

/// What the operator would keep in each RouterConfig's `status.lastAccepted`, kept by the
/// standalone proxy for itself: here the file plays the apiserver and the proxy the operator.
/// It lives as long as the process; a restarted standalone proxy starts from the file alone.
/// It also keeps when each document was first seen, its age for precedence
/// ([`lockstep_core::file::FirstSeen`]).
#[derive(Debug, Default)]
pub struct AcceptedGenerations(BTreeMap<ObjectKey, AcceptedGeneration>, FirstSeen);

/// Parses, judges and swaps in the RouterConfigs of `fleet` from `text`, with the plan of
/// Kubernetes mode.
pub fn apply(
    state: &ProxyState,
    accepted: &mut AcceptedGenerations,
    path: &str,
    text: &str,
    fleet: &str,
) -> Result<Applied, LoadError> {
    let mut documents = lockstep_core::file::parse_router_configs(path, text)?;
    documents.retain(|rc| rc.spec.fleet == fleet);
    let mut seen = BTreeSet::new();
    for rc in &documents {
        let key = ObjectKey::of(rc);
        if !seen.insert(key.clone()) {
            return Err(LoadError::Duplicate {
                path: path.to_owned(),
                key,
            });
        }
    }
    // Only a file that is applied ages its documents.
    accepted.1.stamp(&mut documents, jiff::Timestamp::now());
    let mut objects: Vec<Arc<RouterConfig>> = Vec::new();
    for mut rc in documents {
        let key = ObjectKey::of(&rc);
        // A status written in the file is not the operator's: only what this process accepted
        // counts.
        rc.status = Some(RouterConfigStatus {
            last_accepted: accepted.0.get(&key).cloned(),
            ..RouterConfigStatus::default()
        });
        objects.push(Arc::new(rc));
    }

    let previous = state.served();
    let plan = plan::plan(
        &objects,
        &previous,
        &TlsView::default(),
        &plan::Watched::All,
        &mut BTreeMap::new(),
        jiff::Timestamp::now(),
    );
    accepted.0 = objects
        .iter()
        .filter_map(|rc| {
            let candidate = Candidate::of(rc);
            let verdict = plan.verdicts.get(&candidate.key)?;
            lockstep_core::last_accepted(&candidate, verdict).map(|a| (candidate.key, a))
        })
        .collect();
    let mut applied = Applied::default();
    for (key, report) in plan.reports {
        if let Some(rejected) = report.rejected {
            applied.rejected.insert(key, rejected.message);
        }
    }
    if let Some(next) = plan.next {
        state.swap(next);
        applied.swapped = true;
    }
    Ok(applied)
}

/// Reads and applies a file, logging what happened; Ok means the file was read and parsed.
pub async fn load(
    state: &ProxyState,
    accepted: &mut AcceptedGenerations,
    path: &Path,
    fleet: &str,
) -> Result<Applied, LoadError> {
    let display = path.display().to_string();
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| LoadError::Read {
            path: display.clone(),
            source,
        })?;
    apply(state, accepted, &display, &text, fleet)
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
        let mut accepted = AcceptedGenerations::default();
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
            let (outcome, moved, text) = {
                let (state, display, fleet) = (state.clone(), display.clone(), options.fleet.clone());
                let mut moved = std::mem::take(&mut accepted);
                off_the_runtime(move || {
                    let outcome = apply(&state, &mut moved, &display, &text, &fleet);
                    (outcome, moved, text)
                })
                .await
            };
            accepted = moved;
            match outcome {
                Ok(applied) => {
                    last_error = None;
                    for (key, reason) in &applied.rejected {
                        tracing::warn!(routerconfig = %key, %reason, "RouterConfig rejected; serving its last accepted generation");
                    }
                    if applied.swapped {
                        let served = state.served();
                        tracing::info!(file = %options.path.display(), routerconfigs = ?served.generations(), routes = served.table.len(), "route table swapped");
                    }
                    state.set_ready(true);
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
