//! Tokenizer loading for `get_tokenizer` (protocol §6.9), through `tinker-tokenizer`, with
//! hub downloads going through the SDK's own transport ([`TransportHubFetcher`]).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use http::{HeaderName, HeaderValue};
use tinker_tokenizer::{
    HubFetcher, HubFuture, HubRequest, LoaderSettings, Tokenizer, TokenizerLoader,
};
use tinker_transport::{Env, RequestSpec, Transport};

use crate::error::{Error, ErrorKind, Result};

/// Downloads tokenizer files from the Hugging Face hub with a [`Transport`] of its own:
/// based at the hub endpoint (`HF_ENDPOINT`, default `https://huggingface.co`), without a
/// Tinker credential or the Cloudflare Access headers, following the hub's redirects to
/// its CDN (credentials are dropped on a redirect to another origin), with the process's
/// proxy and TLS settings.
///
/// `HF_TOKEN` (the request's bearer token) is sent as `Authorization: Bearer …`, marked
/// sensitive so it never appears in logs. A 404 means "no such file"; any other failure
/// is an error.
#[derive(Debug, Clone)]
pub struct TransportHubFetcher {
    transport: Transport,
    endpoint: String,
}

/// The process environment without the Tinker and Cloudflare variables, so nothing meant
/// for the Tinker service (API key, credential command, Access secret) reaches the hub.
fn hub_env() -> Env {
    Env::from_pairs(std::env::vars().filter(|(name, _)| {
        !(name.starts_with("TINKER_") || name.starts_with("CLOUDFLARE_ACCESS_"))
    }))
}

impl TransportHubFetcher {
    /// A fetcher for the hub at `endpoint` (e.g. `https://huggingface.co`).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] when `endpoint` is not an `http(s)://` URL, or TLS roots or
    /// proxy settings cannot be loaded.
    pub fn new(endpoint: &str) -> Result<Self> {
        Self::with_env(endpoint, hub_env())
    }

    /// A fetcher reading proxy and CA settings from `env` instead of the process.
    ///
    /// # Errors
    /// As [`TransportHubFetcher::new`].
    pub fn with_env(endpoint: &str, env: Env) -> Result<Self> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let transport = Transport::builder()
            .base_url(endpoint.clone())
            .env(env)
            .no_credential()
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    "cannot set up the Hugging Face hub client",
                )
                .with_source(e)
            })?;
        Ok(Self {
            transport,
            endpoint,
        })
    }

    /// The hub endpoint this fetcher talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn get(&self, request: HubRequest) -> tinker_tokenizer::HubResponse {
        // The loader builds URLs from the same endpoint; anything else is refused rather
        // than sent to an unexpected host.
        let path = request
            .url
            .strip_prefix(&self.endpoint)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| format!("{} is not on the hub {}", request.url, self.endpoint))?;
        let mut spec = RequestSpec::get(path);
        if let Some(token) = &request.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "HF_TOKEN is not a valid header value")?;
            value.set_sensitive(true);
            spec = spec.with_header(HeaderName::from_static("authorization"), value);
        }
        match self.transport.send(spec).await {
            Ok(resp) => Ok(Some(resp.into_body().to_vec())),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl HubFetcher for TransportHubFetcher {
    fn fetch(&self, request: HubRequest) -> HubFuture<'_> {
        Box::pin(self.get(request))
    }
}

/// A tokenizer loader with `settings` that downloads from the hub (unless
/// `settings.offline`) through a [`TransportHubFetcher`] for `settings.hf_endpoint`.
///
/// # Errors
/// As [`TransportHubFetcher::new`].
pub fn tokenizer_loader(settings: LoaderSettings) -> Result<TokenizerLoader> {
    let fetcher = TransportHubFetcher::new(&settings.hf_endpoint)?;
    Ok(TokenizerLoader::new(settings).hub_fetcher(fetcher))
}

/// The process-wide loader: settings from the environment, hub access through the SDK
/// transport (local files only when that cannot be set up).
fn loader() -> &'static TokenizerLoader {
    static LOADER: OnceLock<TokenizerLoader> = OnceLock::new();
    LOADER.get_or_init(|| {
        let settings = LoaderSettings::from_env();
        match TransportHubFetcher::new(&settings.hf_endpoint) {
            Ok(fetcher) => TokenizerLoader::new(settings).hub_fetcher(fetcher),
            Err(error) => {
                tracing::warn!(%error, "no Hugging Face hub access; tokenizers load from local files only");
                TokenizerLoader::new(settings)
            }
        }
    })
}

/// A loader that downloads from the hub routes of the Tinker server at `api_base`
/// (tinker-local serves its models' tokenizers there, protocol §6.9), one per server for
/// the process. The Hugging Face token is never sent there.
fn server_loader(api_base: &str) -> Option<TokenizerLoader> {
    static LOADERS: OnceLock<Mutex<HashMap<String, TokenizerLoader>>> = OnceLock::new();
    let loaders = LOADERS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut loaders = loaders
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(loader) = loaders.get(api_base) {
        return Some(loader.clone());
    }
    let mut settings = LoaderSettings::from_env();
    settings.hf_endpoint = api_base.trim_end_matches('/').to_owned();
    settings.hf_token = None;
    let fetcher = TransportHubFetcher::new(&settings.hf_endpoint).ok()?;
    let loader = TokenizerLoader::new(settings).hub_fetcher(fetcher);
    loaders.insert(api_base.to_owned(), loader.clone());
    Some(loader)
}

/// Resolves and loads the tokenizer of `model_name` (cached per id for the process), for a
/// client of the Tinker server at `api_base`: first from that server's hub routes (where
/// tinker-local serves `tinker-local/micro` and the like; a server without them answers
/// 404 and costs one request), then from the hub (`HF_ENDPOINT`, default huggingface.co).
pub(crate) async fn load(
    api_base: &str,
    model_name: &str,
    tokenizer_id: Option<&str>,
) -> Result<Tokenizer> {
    let hub = loader();
    if hub.settings().hf_endpoint.trim_end_matches('/') != api_base.trim_end_matches('/')
        && let Some(server) = server_loader(api_base)
    {
        match server.load_for_model(model_name, tokenizer_id).await {
            Ok(tokenizer) => return Ok(tokenizer),
            Err(error) => {
                tracing::debug!(%error, model_name, "the Tinker server does not serve this tokenizer");
            }
        }
    }
    hub.load_for_model(model_name, tokenizer_id)
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Tokenizer,
                format!("loading the tokenizer of {model_name:?}"),
            )
            .with_source(e)
        })
}
