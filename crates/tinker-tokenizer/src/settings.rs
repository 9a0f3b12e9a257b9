//! Where the loader looks: the search path, the Hugging Face cache and the hub, read from
//! the environment (or from any variable lookup, so tests need not touch the process
//! environment).

use std::path::PathBuf;

/// The default Hugging Face hub endpoint.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

/// Where a [`TokenizerLoader`](crate::TokenizerLoader) looks for tokenizer files.
///
/// Build it with [`LoaderSettings::from_env`] (the process environment) or
/// [`LoaderSettings::from_vars`] (any lookup function), then adjust the public fields.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoaderSettings {
    /// Directories holding `<org>/<name>/tokenizer.json` (or `tiktoken.model`), searched in
    /// order. From `TINKER_TOKENIZER_PATH` (separated like `PATH`: `:` on Unix).
    pub search_path: Vec<PathBuf>,
    /// The Hugging Face hub cache (`…/hub`, holding `models--org--name/`). From
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
    /// `~/.cache/huggingface/hub`. `None` when no home directory is known.
    pub hf_hub_cache: Option<PathBuf>,
    /// Where tokenizers downloaded from the hub are kept (`<dir>/<org>/<name>/<revision>/`)
    /// and found again offline: `TINKER_TOKENIZER_CACHE`, else
    /// `$XDG_CACHE_HOME/tinker-rs/tokenizers`, else `~/.cache/tinker-rs/tokenizers`. `None`
    /// keeps downloads in memory only.
    pub download_cache: Option<PathBuf>,
    /// The hub endpoint (`HF_ENDPOINT`, default [`DEFAULT_HF_ENDPOINT`]).
    pub hf_endpoint: String,
    /// A Hugging Face access token passed to the fetcher (`HF_TOKEN`).
    pub hf_token: Option<String>,
    /// Never go to the hub (`HF_HUB_OFFLINE` set to `1`/`true`/`yes`/`on`).
    pub offline: bool,
}

impl std::fmt::Debug for LoaderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: only whether one is set is shown.
        f.debug_struct("LoaderSettings")
            .field("search_path", &self.search_path)
            .field("hf_hub_cache", &self.hf_hub_cache)
            .field("download_cache", &self.download_cache)
            .field("hf_endpoint", &self.hf_endpoint)
            .field("hf_token", &self.hf_token.as_ref().map(|_| "[REDACTED]"))
            .field("offline", &self.offline)
            .finish()
    }
}

impl Default for LoaderSettings {
    /// Nothing to search, no cache, online.
    fn default() -> Self {
        Self {
            search_path: Vec::new(),
            hf_hub_cache: None,
            download_cache: None,
            hf_endpoint: DEFAULT_HF_ENDPOINT.to_owned(),
            hf_token: None,
            offline: false,
        }
    }
}

impl LoaderSettings {
    /// Settings from the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Settings from a variable lookup (`HOME`, `HF_HOME`, `HF_HUB_CACHE`,
    /// `XDG_CACHE_HOME`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`,
    /// `TINKER_TOKENIZER_PATH`, `TINKER_TOKENIZER_CACHE`). Empty values count as unset.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let search_path = get("TINKER_TOKENIZER_PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let hf_hub_cache = get("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| get("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| {
                get("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("huggingface").join("hub"))
            })
            .or_else(|| {
                get("HOME").or_else(|| get("USERPROFILE")).map(|h| {
                    PathBuf::from(h)
                        .join(".cache")
                        .join("huggingface")
                        .join("hub")
                })
            });
        let download_cache = get("TINKER_TOKENIZER_CACHE")
            .map(PathBuf::from)
            .or_else(|| get("XDG_CACHE_HOME").map(PathBuf::from))
            .or_else(|| {
                get("HOME")
                    .or_else(|| get("USERPROFILE"))
                    .map(|h| PathBuf::from(h).join(".cache"))
            })
            .map(|cache| {
                if get("TINKER_TOKENIZER_CACHE").is_some() {
                    cache
                } else {
                    cache.join("tinker-rs").join("tokenizers")
                }
            });
        let hf_endpoint = get("HF_ENDPOINT")
            .map(|e| e.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_owned());
        let offline = get("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        Self {
            search_path,
            hf_hub_cache,
            download_cache,
            hf_endpoint,
            hf_token: get("HF_TOKEN"),
            offline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> LoaderSettings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LoaderSettings::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn hub_cache_precedence() {
        let s = settings(&[("HOME", "/home/u")]);
        assert_eq!(
            s.hf_hub_cache,
            Some(PathBuf::from("/home/u/.cache/huggingface/hub"))
        );
        let s = settings(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]);
        assert_eq!(s.hf_hub_cache, Some(PathBuf::from("/xdg/huggingface/hub")));
        let s = settings(&[("HOME", "/home/u"), ("HF_HOME", "/hf")]);
        assert_eq!(s.hf_hub_cache, Some(PathBuf::from("/hf/hub")));
        let s = settings(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/cache")]);
        assert_eq!(s.hf_hub_cache, Some(PathBuf::from("/cache")));
        assert_eq!(settings(&[]).hf_hub_cache, None);
    }

    #[test]
    fn download_cache_precedence() {
        let s = settings(&[("HOME", "/home/u")]);
        assert_eq!(
            s.download_cache,
            Some(PathBuf::from("/home/u/.cache/tinker-rs/tokenizers"))
        );
        let s = settings(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]);
        assert_eq!(
            s.download_cache,
            Some(PathBuf::from("/xdg/tinker-rs/tokenizers"))
        );
        let s = settings(&[
            ("XDG_CACHE_HOME", "/xdg"),
            ("TINKER_TOKENIZER_CACHE", "/tok"),
        ]);
        assert_eq!(s.download_cache, Some(PathBuf::from("/tok")));
        assert_eq!(settings(&[]).download_cache, None);
    }

    #[test]
    fn search_path_offline_endpoint_token() {
        let s = settings(&[
            ("TINKER_TOKENIZER_PATH", "/a::/b"),
            ("HF_HUB_OFFLINE", "ON"),
            ("HF_ENDPOINT", "http://mirror.local/"),
            ("HF_TOKEN", "hf_x"),
        ]);
        assert_eq!(
            s.search_path,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert!(s.offline);
        assert_eq!(s.hf_endpoint, "http://mirror.local");
        assert_eq!(s.hf_token.as_deref(), Some("hf_x"));
        let s = settings(&[("HF_HUB_OFFLINE", "0")]);
        assert!(!s.offline);
        assert_eq!(s.hf_endpoint, DEFAULT_HF_ENDPOINT);
    }
}
