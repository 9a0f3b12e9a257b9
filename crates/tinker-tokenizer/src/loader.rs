//! [`TokenizerLoader`]: finds, loads and caches tokenizers by [`TokenizerRef`].
//!
//! Order of lookup for a hub repository `org/name` at revision `rev` (default `main`):
//! 1. each directory `D` of the search path (`TINKER_TOKENIZER_PATH`): `D/org/name/`;
//! 2. the Hugging Face cache: `<hub cache>/models--org--name/snapshots/<commit>/`, where
//!    `<commit>` is read from `refs/<rev>` (or is `rev` itself, for a pinned commit);
//! 3. earlier downloads: `<download cache>/org/name/<rev>/` (`TINKER_TOKENIZER_CACHE`);
//! 4. the hub, when online and a [`HubFetcher`] is set: `tokenizer.json`, else
//!    `tiktoken.model`, plus `tokenizer_config.json` and `chat_template.jinja` if present.
//!    The files are then kept in the Hugging Face cache, as `huggingface_hub` lays it out
//!    without symlinks (`models--org--name/snapshots/<commit>/…` and `refs/<rev>`), when
//!    the hub names the commit (`/api/models/<repo>/revision/<rev>`, or `rev` is a commit
//!    hash); otherwise in the download cache. A `main` download is not re-checked for
//!    updates; delete the snapshot (or directory) to refresh it.
//!
//! A directory counts when it holds `tokenizer.json` or `tiktoken.model`. When nothing is
//! found the error lists every place tried. Loaded tokenizers are cached per reference.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::{Error, Lookup, Result};
use crate::files::{
    CHAT_TEMPLATE, MainFile, TIKTOKEN_MODEL, TOKENIZER_CONFIG, TOKENIZER_JSON, TokenizerFiles,
};
use crate::hub::{HubFetcher, HubRequest, file_url};
use crate::resolve::{TokenizerRef, resolve};
use crate::settings::LoaderSettings;
use crate::tokenizer::Tokenizer;

type Cache = Mutex<HashMap<TokenizerRef, Arc<OnceCell<Tokenizer>>>>;

/// Finds, loads and caches tokenizers. Cloning shares the cache.
#[derive(Clone)]
pub struct TokenizerLoader {
    settings: Arc<LoaderSettings>,
    fetcher: Option<Arc<dyn HubFetcher>>,
    cache: Arc<Cache>,
}

impl std::fmt::Debug for TokenizerLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizerLoader")
            .field("settings", &self.settings)
            .field("hub_fetcher", &self.fetcher.is_some())
            .finish_non_exhaustive()
    }
}

/// Where a local lookup ended.
enum Found {
    Files(TokenizerFiles),
    Nothing(Vec<Lookup>),
}

impl TokenizerLoader {
    /// A loader with these settings and no hub access.
    pub fn new(settings: LoaderSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            fetcher: None,
            cache: Arc::default(),
        }
    }

    /// A loader configured from the process environment ([`LoaderSettings::from_env`]).
    pub fn from_env() -> Self {
        Self::new(LoaderSettings::from_env())
    }

    /// Enables downloads from the hub through `fetcher` (unless the settings say offline).
    #[must_use]
    pub fn hub_fetcher(mut self, fetcher: impl HubFetcher) -> Self {
        self.fetcher = Some(Arc::new(fetcher));
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &LoaderSettings {
        &self.settings
    }

    /// Resolves ([`resolve`]) and loads the tokenizer of a model: what
    /// `TrainingClient::get_tokenizer` (with `get_info`'s `tokenizer_id`) and
    /// `SamplingClient::get_tokenizer` (with `None`) call.
    pub async fn load_for_model(
        &self,
        model_name: &str,
        tokenizer_id: Option<&str>,
    ) -> Result<Tokenizer> {
        let reference = resolve(model_name, tokenizer_id)?;
        self.load(&reference).await
    }

    /// Loads a tokenizer (from the cache when already loaded). File parsing runs on
    /// tokio's blocking pool when called inside a tokio runtime.
    pub async fn load(&self, reference: &TokenizerRef) -> Result<Tokenizer> {
        let cell = self.cell(reference);
        cell.get_or_try_init(|| self.load_uncached(reference))
            .await
            .cloned()
    }

    /// Loads a tokenizer from local files only (explicit path, search path, Hugging Face
    /// cache, download cache), synchronously; shares the cache with [`load`](Self::load).
    pub fn load_local(&self, reference: &TokenizerRef) -> Result<Tokenizer> {
        let cell = self.cell(reference);
        if let Some(tok) = cell.get() {
            return Ok(tok.clone());
        }
        let name = reference.to_string();
        let tok = match self.find_local(reference)? {
            Found::Files(files) => Tokenizer::from_files(name, files)?,
            Found::Nothing(mut looked) => {
                looked.push(Lookup::new("Hugging Face hub", "skipped: local-only load"));
                return Err(Error::NotFound { id: name, looked });
            }
        };
        // Another caller may have filled the cell meanwhile; either value is equivalent.
        let _ = cell.set(tok.clone());
        Ok(tok)
    }

    fn cell(&self, reference: &TokenizerRef) -> Arc<OnceCell<Tokenizer>> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.entry(reference.clone()).or_default().clone()
    }

    async fn load_uncached(&self, reference: &TokenizerRef) -> Result<Tokenizer> {
        let name = reference.to_string();
        let local = {
            let this = self.clone();
            let reference = reference.clone();
            blocking(&name, move || this.find_local(&reference)).await??
        };
        let (files, keep) = match local {
            Found::Files(files) => (files, None),
            Found::Nothing(mut looked) => match self.fetch_hub(reference, &mut looked).await? {
                Some((files, commit)) => {
                    let keep = self.keep_target(reference, commit.as_deref());
                    (files, keep)
                }
                None => return Err(Error::NotFound { id: name, looked }),
            },
        };
        tracing::debug!(tokenizer = %name, origin = %files.origin, "loading tokenizer");
        let task_name = name.clone();
        blocking(&name, move || {
            let Some(keep) = keep else {
                return Tokenizer::from_files(task_name, files);
            };
            let tokenizer = Tokenizer::from_files(task_name, files.clone())?;
            // Only files that parsed are kept; failing to keep them is not an error.
            if let Err(error) = keep.write(&files) {
                tracing::warn!(%error, "could not keep downloaded tokenizer");
            }
            Ok(tokenizer)
        })
        .await?
    }

    /// Where a download is kept: the Hugging Face cache snapshot of `commit` when both are
    /// known, else the download cache.
    fn keep_target(&self, reference: &TokenizerRef, commit: Option<&str>) -> Option<Keep> {
        let TokenizerRef::Hub { repo_id, .. } = reference else {
            return None;
        };
        if let (Some(cache), Some(commit)) = (&self.settings.hf_hub_cache, commit) {
            let revision = reference.revision().unwrap_or("main");
            let repo_dir = cache.join(format!("models--{}", repo_id.replace('/', "--")));
            return Some(Keep::HfSnapshot {
                snapshot: repo_dir.join("snapshots").join(commit),
                // A pinned commit needs no ref.
                reference: (revision != commit)
                    .then(|| (repo_dir.join("refs").join(revision), commit.to_owned())),
            });
        }
        self.download_dir(reference).map(Keep::Dir)
    }

    /// The commit a revision points to, from the hub's model API (`sha`); the revision
    /// itself when it already is a commit hash; `None` when the hub does not say.
    async fn resolve_commit(
        &self,
        fetcher: &dyn HubFetcher,
        repo_id: &str,
        revision: &str,
    ) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_owned());
        }
        let url = format!(
            "{}/api/models/{repo_id}/revision/{revision}",
            self.settings.hf_endpoint.trim_end_matches('/')
        );
        let request = HubRequest {
            url,
            bearer_token: self.settings.hf_token.clone(),
        };
        match fetcher.fetch(request).await {
            Ok(Some(body)) => {
                let info: serde_json::Value = serde_json::from_slice(&body).ok()?;
                let sha = info.get("sha")?.as_str()?;
                is_commit_hash(sha).then(|| sha.to_owned())
            }
            Ok(None) => None,
            Err(error) => {
                tracing::debug!(%error, repo_id, revision, "could not resolve the hub commit");
                None
            }
        }
    }

    /// Where downloads of a hub repository are kept: `<download cache>/<repo>/<revision>`.
    fn download_dir(&self, reference: &TokenizerRef) -> Option<PathBuf> {
        let TokenizerRef::Hub { repo_id, .. } = reference else {
            return None;
        };
        let revision = reference.revision().unwrap_or("main");
        let cache = self.settings.download_cache.as_ref()?;
        Some(cache.join(repo_id).join(revision))
    }

    /// Looks on disk; reads the files of the first place that has them.
    fn find_local(&self, reference: &TokenizerRef) -> Result<Found> {
        let mut looked = Vec::new();
        match reference {
            TokenizerRef::Path(path) => {
                if path.is_dir() {
                    if let Some(files) = TokenizerFiles::read_dir(path)? {
                        return Ok(Found::Files(files));
                    }
                    looked.push(Lookup::new(
                        path.display().to_string(),
                        "no tokenizer.json or tiktoken.model in this directory",
                    ));
                } else if path.is_file() {
                    return TokenizerFiles::read_file(path).map(Found::Files);
                } else {
                    looked.push(Lookup::new(path.display().to_string(), "does not exist"));
                }
            }
            TokenizerRef::Hub { repo_id, .. } => {
                let revision = reference.revision().unwrap_or("main");
                for dir in &self.settings.search_path {
                    let candidate = dir.join(repo_id);
                    if let Some(files) = TokenizerFiles::read_dir(&candidate)? {
                        return Ok(Found::Files(files));
                    }
                    looked.push(Lookup::new(
                        candidate.display().to_string(),
                        missing(&candidate),
                    ));
                }
                match &self.settings.hf_hub_cache {
                    Some(cache) => {
                        let (snapshot, note) = hf_snapshot(cache, repo_id, revision);
                        if let Some(files) = TokenizerFiles::read_dir(&snapshot)? {
                            return Ok(Found::Files(files));
                        }
                        let outcome = match note {
                            Some(note) => format!("{}; {note}", missing(&snapshot)),
                            None => missing(&snapshot),
                        };
                        looked.push(Lookup::new(snapshot.display().to_string(), outcome));
                    }
                    None => looked.push(Lookup::new(
                        "Hugging Face cache",
                        "skipped: no HF_HUB_CACHE, HF_HOME or home directory",
                    )),
                }
                if let Some(dir) = self.download_dir(reference) {
                    if let Some(files) = TokenizerFiles::read_dir(&dir)? {
                        return Ok(Found::Files(files));
                    }
                    looked.push(Lookup::new(dir.display().to_string(), missing(&dir)));
                }
            }
        }
        Ok(Found::Nothing(looked))
    }

    /// Downloads the files from the hub; `None` (with `looked` extended) when unavailable.
    /// Downloads the files from the hub, with the commit they belong to when the hub says
    /// (only asked for when there is a Hugging Face cache to keep them in).
    async fn fetch_hub(
        &self,
        reference: &TokenizerRef,
        looked: &mut Vec<Lookup>,
    ) -> Result<Option<(TokenizerFiles, Option<String>)>> {
        let TokenizerRef::Hub { repo_id, .. } = reference else {
            return Ok(None);
        };
        let endpoint = &self.settings.hf_endpoint;
        let fetcher = match (&self.fetcher, self.settings.offline) {
            (_, true) => {
                looked.push(Lookup::new(
                    endpoint.clone(),
                    "skipped: HF_HUB_OFFLINE is set",
                ));
                return Ok(None);
            }
            (None, false) => {
                looked.push(Lookup::new(
                    endpoint.clone(),
                    "skipped: no hub fetcher configured (offline)",
                ));
                return Ok(None);
            }
            (Some(fetcher), false) => fetcher,
        };
        let revision = reference.revision().unwrap_or("main");
        let get = |filename: &str| {
            let url = file_url(endpoint, repo_id, revision, filename);
            let request = HubRequest {
                url: url.clone(),
                bearer_token: self.settings.hf_token.clone(),
            };
            async move { (url, fetcher.fetch(request).await) }
        };
        let mut main = None;
        for (filename, wrap) in [
            (
                TOKENIZER_JSON,
                MainFile::TokenizerJson as fn(Vec<u8>) -> MainFile,
            ),
            (TIKTOKEN_MODEL, MainFile::Tiktoken),
        ] {
            let (url, response) = get(filename).await;
            match response {
                Ok(Some(bytes)) => {
                    main = Some((wrap(bytes), url));
                    break;
                }
                Ok(None) => looked.push(Lookup::new(url, "not found (404)")),
                Err(e) => {
                    looked.push(Lookup::new(url, format!("download failed: {e}")));
                    return Ok(None);
                }
            }
        }
        let Some((main, origin)) = main else {
            return Ok(None);
        };
        let optional = |filename: &'static str| {
            let request = get(filename);
            async move {
                let (url, response) = request.await;
                response.map_err(|source| Error::HubFetch { url, source })
            }
        };
        let config = optional(TOKENIZER_CONFIG).await?;
        let chat_template = optional(CHAT_TEMPLATE)
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let commit = match &self.settings.hf_hub_cache {
            Some(_) => self.resolve_commit(&**fetcher, repo_id, revision).await,
            None => None,
        };
        let files = TokenizerFiles {
            origin,
            main,
            config,
            chat_template,
        };
        Ok(Some((files, commit)))
    }
}

/// Where downloaded files are kept.
enum Keep {
    /// `snapshots/<commit>/` of the Hugging Face cache, and `refs/<revision>` → commit.
    HfSnapshot {
        snapshot: PathBuf,
        reference: Option<(PathBuf, String)>,
    },
    /// A directory of the download cache, replaced as a whole.
    Dir(PathBuf),
}

impl Keep {
    fn write(&self, files: &TokenizerFiles) -> std::io::Result<()> {
        match self {
            Self::HfSnapshot {
                snapshot,
                reference,
            } => {
                // Other files of the snapshot (weights, configs) are left alone.
                files.write_into(snapshot)?;
                if let Some((ref_file, commit)) = reference {
                    crate::files::write_atomically(ref_file, commit.as_bytes())?;
                }
                Ok(())
            }
            Self::Dir(dir) => files.write_dir(dir),
        }
    }
}

/// A full 40-hex-digit commit hash.
fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a candidate directory did not count.
fn missing(dir: &Path) -> String {
    if dir.is_dir() {
        "no tokenizer.json or tiktoken.model".to_owned()
    } else {
        "does not exist".to_owned()
    }
}

/// The snapshot directory of `repo_id` at `revision` in a Hugging Face hub cache, with a
/// note when the ref could not be read.
fn hf_snapshot(cache: &Path, repo_id: &str, revision: &str) -> (PathBuf, Option<String>) {
    let repo_dir = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let ref_file = repo_dir.join("refs").join(revision);
    match std::fs::read_to_string(&ref_file) {
        Ok(commit) if !commit.trim().is_empty() => {
            (repo_dir.join("snapshots").join(commit.trim()), None)
        }
        _ => (
            repo_dir.join("snapshots").join(revision),
            Some(format!("no ref {}", ref_file.display())),
        ),
    }
}

/// Runs blocking work on tokio's blocking pool when inside a runtime, inline otherwise.
async fn blocking<T: Send + 'static>(
    id: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|source| Error::Task {
                id: id.to_owned(),
                source,
            }),
        Err(_) => Ok(f()),
    }
}
