//! Semantic validation: the schema's rules again (for files no apiserver has seen) and the
//! checks a schema cannot express.

use std::collections::HashMap;

use garde::Validate;
use lockstep_crds::RouterConfigSpec;

use crate::table::match_key;

/// Every problem found in one spec, each line naming its field ("spec.rules[0].host: …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct Invalid {
    /// One entry per problem.
    pub problems: Vec<String>,
}

/// Validates one spec on its own.
pub fn validate_spec(spec: &RouterConfigSpec) -> Result<(), Invalid> {
    let mut problems = Vec::new();
    if let Err(report) = spec.validate() {
        for (path, error) in report.iter() {
            problems.push(format!("spec.{path}: {error}"));
        }
    }
    let mut seen: HashMap<(String, String), (usize, usize)> = HashMap::new();
    for (r, rule) in spec.rules.iter().enumerate() {
        let host = rule.host.to_ascii_lowercase();
        for (p, path) in rule.paths.iter().enumerate() {
            let key = (host.clone(), match_key(path.path_type, &path.path));
            if let Some((r0, p0)) = seen.insert(key, (r, p)) {
                problems.push(format!(
                    "spec.rules[{r}].paths[{p}]: duplicate of spec.rules[{r0}].paths[{p0}] (host {host}, {:?} {})",
                    path.path_type, path.path
                ));
                // Keep pointing at the first occurrence for later duplicates.
                seen.insert((host.clone(), match_key(path.path_type, &path.path)), (r0, p0));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(Invalid { problems }) }
}
