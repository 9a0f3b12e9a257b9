//! The environment the transport reads (`TINKER_*`, proxies, CA file, `HOME`), injectable
//! so tests never touch the process environment.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A read-only view of environment variables.
///
/// [`Env::process`] reads the real environment; [`Env::from_pairs`] builds a fixed one.
/// Empty values count as unset, as in the official SDK.
#[derive(Clone)]
pub struct Env {
    vars: Option<Arc<HashMap<String, String>>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets (API keys): show only which variables are set.
        let mut keys: Vec<&str> = match &self.vars {
            Some(vars) => vars.keys().map(String::as_str).collect(),
            None => return f.write_str("Env(process)"),
        };
        keys.sort_unstable();
        f.debug_tuple("Env").field(&keys).finish()
    }
}

impl Env {
    /// The process environment, read at each lookup.
    pub fn process() -> Self {
        Self { vars: None }
    }

    /// A fixed environment holding exactly these variables.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: Some(Arc::new(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            )),
        }
    }

    /// The value of `name`, or `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        let value = match &self.vars {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.is_empty())
    }

    /// The first set variable among `names`.
    pub(crate) fn first(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.get(n))
    }

    /// The user's home directory (`HOME`, else `USERPROFILE`).
    pub fn home_dir(&self) -> Option<PathBuf> {
        self.first(&["HOME", "USERPROFILE"]).map(PathBuf::from)
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::process()
    }
}
