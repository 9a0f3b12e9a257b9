//! Fetching tokenizer files from the Hugging Face hub through a caller-supplied fetcher.
//!
//! This crate makes no HTTP requests itself: the SDK client implements [`HubFetcher`] with
//! its own transport (so proxies, TLS roots and timeouts are the SDK's), and tests can serve
//! files from memory.

use std::future::Future;
use std::pin::Pin;

use crate::error::BoxError;

/// One file download request.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubRequest {
    /// `{endpoint}/{repo_id}/resolve/{revision}/{filename}`. The hub answers with a redirect
    /// to its CDN, which the fetcher must follow.
    pub url: String,
    /// A Hugging Face token (`HF_TOKEN`) to send as `Authorization: Bearer …`, if any.
    pub bearer_token: Option<String>,
}

impl std::fmt::Debug for HubRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: only whether one is set is shown.
        f.debug_struct("HubRequest")
            .field("url", &self.url)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// The outcome of a download: the body on success, `Ok(None)` when the file does not exist
/// (HTTP 404), an error for anything else (network failure, 401, 5xx, …).
pub type HubResponse = Result<Option<Vec<u8>>, BoxError>;

/// The boxed future a [`HubFetcher`] returns.
pub type HubFuture<'a> = Pin<Box<dyn Future<Output = HubResponse> + Send + 'a>>;

/// Downloads a file from the Hugging Face hub.
///
/// Any `Fn(HubRequest) -> impl Future<Output = HubResponse>` closure implements it:
///
/// ```
/// use tinker_tokenizer::{HubRequest, HubResponse, TokenizerLoader, LoaderSettings};
/// let loader = TokenizerLoader::new(LoaderSettings::default()).hub_fetcher(
///     |req: HubRequest| async move {
///         // e.g. GET req.url with the SDK transport; 404 → Ok(None)
///         let _ = req.url;
///         HubResponse::Ok(None)
///     },
/// );
/// # let _ = loader;
/// ```
pub trait HubFetcher: Send + Sync + 'static {
    /// Downloads `request.url`.
    fn fetch(&self, request: HubRequest) -> HubFuture<'_>;
}

impl<F, Fut> HubFetcher for F
where
    F: Fn(HubRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HubResponse> + Send + 'static,
{
    fn fetch(&self, request: HubRequest) -> HubFuture<'_> {
        Box::pin(self(request))
    }
}

/// The download URL of a file in a model repository.
pub fn file_url(endpoint: &str, repo_id: &str, revision: &str, filename: &str) -> String {
    format!(
        "{}/{repo_id}/resolve/{revision}/{filename}",
        endpoint.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            file_url(
                "https://huggingface.co/",
                "Qwen/Qwen3-8B",
                "main",
                "tokenizer.json"
            ),
            "https://huggingface.co/Qwen/Qwen3-8B/resolve/main/tokenizer.json"
        );
    }
}
