//! [`RestClient`]: the session-less REST catalogue (protocol §2.6): training runs,
//! checkpoints, sessions, weights info, copies and external-weights downloads.

use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use http::{HeaderName, HeaderValue};
use tinker_transport::{RequestSpec, Transport};
use tinker_types::{
    CheckpointKind, CopyWeightsRequest, CopyWeightsResponse, GetSamplerResponse,
    GetServerCapabilitiesResponse, ListSessionsResponse, SearchOwner, SessionSearchCursor,
    SessionSearchRequest, SessionSearchResponse, SessionSummary, SetCheckpointTtlRequest,
    SetSessionProjectRequest, TinkerPath, TraceExportResponse, TraceExportStatus,
    WeightsInfoRequest,
};

use crate::error::{Error, ErrorKind, Result};
use crate::session::{Session, parse_json};

mod archive;
mod download;
mod list;

pub use archive::CheckpointArchiveUrl;
pub use download::{DEFAULT_MAX_FILE_BYTES, DownloadOptions};
pub use list::ListOptions;

pub use tinker_types::auth::WhoamiResponse;
pub use tinker_types::rest::{
    AccessScope, Checkpoint, CheckpointType, CheckpointsListResponse, Cursor, GetSessionResponse,
    TrainingRun, TrainingRunsResponse,
};
pub use tinker_types::weights::{ExternalWeightsUrlsResponse, WeightsInfoResponse};

/// Progress of [`RestClient::download_external_weights`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadProgress {
    /// The file being written (relative path).
    pub file: String,
    /// Index of the file (0-based) and the number of files.
    pub file_index: usize,
    /// Number of files.
    pub file_count: usize,
    /// Bytes of this file written so far.
    pub bytes: u64,
}

/// Most sessions one search page may return (the SDK's `le=200`).
const MAX_SEARCH_LIMIT: u32 = 200;
/// Most owners one `SearchOwner::User` may name.
const MAX_SEARCH_OWNERS: usize = 10;

/// The checks the SDK's pydantic model makes on a [`SessionSearchRequest`].
fn check_search(request: &SessionSearchRequest) -> Result<()> {
    if !(1..=MAX_SEARCH_LIMIT).contains(&request.limit) {
        return Err(Error::invalid(format!(
            "search limit {} must be in 1..={MAX_SEARCH_LIMIT}",
            request.limit
        )));
    }
    if request.display_name.as_deref() == Some("") {
        return Err(Error::invalid("search display_name must not be empty"));
    }
    if request.statuses.as_ref().is_some_and(Vec::is_empty) {
        return Err(Error::invalid(
            "search statuses must name at least one status (or be None for all)",
        ));
    }
    if let SearchOwner::User { owner_urns } = &request.owner
        && !(1..=MAX_SEARCH_OWNERS).contains(&owner_urns.len())
    {
        return Err(Error::invalid(format!(
            "a user search names 1..={MAX_SEARCH_OWNERS} owners, not {}",
            owner_urns.len()
        )));
    }
    Ok(())
}

/// Session-less access to runs, checkpoints and sessions. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    holder: Arc<Session>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("holder", &self.holder)
            .finish()
    }
}

/// `/api/v1/training_runs/<run>/checkpoints/<kind>/<name>` of a checkpoint path.
fn checkpoint_route(path: &TinkerPath) -> String {
    format!(
        "/api/v1/training_runs/{}/checkpoints/{}",
        path.training_run_id,
        path.checkpoint_id()
    )
}

impl RestClient {
    pub(crate) fn from_holder(holder: Arc<Session>) -> Self {
        Self { holder }
    }

    /// The telemetry reporter of this client's holder (`None` when telemetry is off); a
    /// session-less REST client reports as `sessionless-<uuid4>`.
    pub fn get_telemetry(&self) -> Option<&crate::Telemetry> {
        self.holder.telemetry()
    }

    pub(crate) fn holder(&self) -> &Arc<Session> {
        &self.holder
    }

    /// A REST-only client (no session): client config and dynamic config only.
    ///
    /// # Errors
    /// As [`ServiceClientBuilder::build`](crate::ServiceClientBuilder::build).
    pub async fn connect(transport: Transport) -> Result<Self> {
        Ok(Self {
            holder: Session::start(transport, None).await?,
        })
    }

    /// One page of training runs (`ListOptions::default()`: the first 20 owned runs, as
    /// the SDK's defaults).
    ///
    /// # Errors
    /// API errors.
    pub async fn list_training_runs(&self, options: ListOptions) -> Result<TrainingRunsResponse> {
        let mut q = options.paging(20).to_vec();
        q.push(("access_scope", options.access_scope.as_str().to_owned()));
        if let Some(p) = options.project_id {
            q.push(("project_id", p));
        }
        self.holder
            .get_json("/api/v1/training_runs", &q, "RestClient.list_training_runs")
            .await
    }

    /// Every training run, as a stream that fetches pages of `page_size` on demand.
    pub fn training_runs(&self, page_size: u64, scope: AccessScope) -> Paged<TrainingRun> {
        let me = self.clone();
        Paged::by_offset(page_size, move |limit, offset| {
            let me = me.clone();
            let scope = scope.clone();
            Box::pin(async move {
                let options = ListOptions::default()
                    .limit(limit)
                    .offset(offset)
                    .access_scope(scope);
                let page = me.list_training_runs(options).await?;
                Ok((page.training_runs, Some(page.cursor.total_count)))
            })
        })
    }

    /// One training run.
    ///
    /// # Errors
    /// API errors (404 for an unknown run).
    pub async fn get_training_run(&self, run_id: &str, scope: AccessScope) -> Result<TrainingRun> {
        let path = format!("/api/v1/training_runs/{run_id}");
        self.holder
            .get_json(
                &path,
                &[("access_scope", scope.as_str().to_owned())],
                "RestClient.get_training_run",
            )
            .await
    }

    /// The training run of a `tinker://` checkpoint path.
    ///
    /// # Errors
    /// A bad path; API errors.
    pub async fn get_training_run_by_tinker_path(&self, path: &str) -> Result<TrainingRun> {
        let parsed = TinkerPath::parse(path)?;
        self.get_training_run(&parsed.training_run_id, AccessScope::Accessible)
            .await
    }

    /// What a checkpoint holds (base model, LoRA settings, optimizer).
    ///
    /// # Errors
    /// API errors.
    pub async fn get_weights_info_by_tinker_path(&self, path: &str) -> Result<WeightsInfoResponse> {
        let req = WeightsInfoRequest {
            tinker_path: path.to_owned(),
        };
        self.holder
            .post_json(
                "/api/v1/weights_info",
                &req,
                "RestClient.get_weights_info_by_tinker_path",
            )
            .await
    }

    /// The checkpoints of one run.
    ///
    /// # Errors
    /// API errors.
    pub async fn list_checkpoints(&self, run_id: &str) -> Result<CheckpointsListResponse> {
        let path = format!("/api/v1/training_runs/{run_id}/checkpoints");
        self.holder
            .get_json(&path, &[], "RestClient.list_checkpoints")
            .await
    }

    /// One page of the caller's checkpoints across runs (newest first;
    /// `ListOptions::default()`: the first 100, as the SDK's defaults). Reads `limit` and
    /// `offset` only: checkpoint listings are always the caller's own.
    ///
    /// # Errors
    /// API errors.
    pub async fn list_user_checkpoints(
        &self,
        options: ListOptions,
    ) -> Result<CheckpointsListResponse> {
        let q = options.paging(100);
        self.holder
            .get_json(
                "/api/v1/checkpoints",
                &q,
                "RestClient.list_user_checkpoints",
            )
            .await
    }

    /// Every checkpoint of the caller, as a paging stream.
    pub fn user_checkpoints(&self, page_size: u64) -> Paged<Checkpoint> {
        let me = self.clone();
        Paged::by_offset(page_size, move |limit, offset| {
            let me = me.clone();
            Box::pin(async move {
                let options = ListOptions::default().limit(limit).offset(offset);
                let page = me.list_user_checkpoints(options).await?;
                Ok((page.checkpoints, page.cursor.map(|c| c.total_count)))
            })
        })
    }

    /// Deletes a checkpoint; `checkpoint_id` is `<kind>/<name>` (e.g. `weights/step-1`).
    ///
    /// # Errors
    /// A malformed checkpoint id; API errors.
    pub async fn delete_checkpoint(&self, run_id: &str, checkpoint_id: &str) -> Result<()> {
        let path = TinkerPath::parse(&format!("tinker://{run_id}/{checkpoint_id}"))?;
        self.delete(&path, "RestClient.delete_checkpoint").await
    }

    /// Deletes the checkpoint at a `tinker://` path.
    ///
    /// # Errors
    /// A bad path; API errors.
    pub async fn delete_checkpoint_from_tinker_path(&self, path: &str) -> Result<()> {
        self.delete(
            &TinkerPath::parse(path)?,
            "RestClient.delete_checkpoint_from_tinker_path",
        )
        .await
    }

    async fn delete(&self, path: &TinkerPath, sdk_method: &'static str) -> Result<()> {
        let route = checkpoint_route(path);
        self.send_ignoring(|| Ok(RequestSpec::delete(route.clone())), sdk_method)
            .await
    }

    /// Makes a checkpoint public (409 if it already is).
    ///
    /// # Errors
    /// A bad path; API errors.
    pub async fn publish_checkpoint_from_tinker_path(&self, path: &str) -> Result<()> {
        let route = format!("{}/publish", checkpoint_route(&TinkerPath::parse(path)?));
        self.send_ignoring(
            || {
                Ok(RequestSpec::post(route.clone())
                    .with_body(bytes::Bytes::new(), tinker_transport::APPLICATION_JSON))
            },
            "RestClient.publish_checkpoint_from_tinker_path",
        )
        .await
    }

    /// Makes a checkpoint private again (409 if it already is).
    ///
    /// # Errors
    /// A bad path; API errors.
    pub async fn unpublish_checkpoint_from_tinker_path(&self, path: &str) -> Result<()> {
        let route = format!("{}/publish", checkpoint_route(&TinkerPath::parse(path)?));
        self.send_ignoring(
            || Ok(RequestSpec::delete(route.clone())),
            "RestClient.unpublish_checkpoint_from_tinker_path",
        )
        .await
    }

    /// Sets (or with `None` removes) a checkpoint's time to live.
    ///
    /// # Errors
    /// A bad path; API errors (400 when out of range).
    pub async fn set_checkpoint_ttl_from_tinker_path(
        &self,
        path: &str,
        ttl_seconds: Option<u64>,
    ) -> Result<()> {
        let route = format!("{}/ttl", checkpoint_route(&TinkerPath::parse(path)?));
        let body = SetCheckpointTtlRequest { ttl_seconds };
        self.send_ignoring(
            || Ok(RequestSpec::put(route.clone()).with_json(&body)?),
            "RestClient.set_checkpoint_ttl_from_tinker_path",
        )
        .await
    }

    /// Signed URLs of an external-weights export.
    ///
    /// # Errors
    /// A path that is not an `external_weights` checkpoint; API errors.
    pub async fn get_external_weights_urls(
        &self,
        path: &str,
    ) -> Result<ExternalWeightsUrlsResponse> {
        let parsed = TinkerPath::parse(path)?;
        if parsed.kind != CheckpointKind::ExternalWeights {
            return Err(Error::invalid(format!(
                "{path:?} is not an external_weights checkpoint"
            )));
        }
        let route = format!("{}/external_weights_urls", checkpoint_route(&parsed));
        self.holder
            .get_json(&route, &[], "RestClient.get_external_weights_urls")
            .await
    }

    /// Downloads an external-weights export into `dir` (created if missing), with the
    /// default [`DownloadOptions`]. See
    /// [`download_external_weights_with`](Self::download_external_weights_with).
    ///
    /// # Errors
    /// As [`download_external_weights_with`](Self::download_external_weights_with).
    pub async fn download_external_weights(
        &self,
        path: &str,
        dir: &Path,
        progress: impl FnMut(&DownloadProgress) + Send,
    ) -> Result<Vec<PathBuf>> {
        self.download_external_weights_with(path, dir, &DownloadOptions::default(), progress)
            .await
    }

    /// Downloads an external-weights export into `dir` (created if missing). Returns the
    /// written files.
    ///
    /// Every signed URL and relative path is checked before anything is fetched: URLs must
    /// be https (plain http only when this client's base URL is itself loopback http, as
    /// with tinker-local), paths must stay inside `dir`. Each file is streamed to a new
    /// `<name>.part` (created exclusively: a file or link already there is refused, never
    /// written through), bounded by `options.max_file_bytes`, then renamed. A sub-folder
    /// that is a symlink (or any existing file at a target name) is refused.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a path leaving `dir`; [`ErrorKind::DownloadRefused`]
    /// for an insecure URL, a link in the way, an existing file or a file over the limit;
    /// API, connection and I/O errors.
    pub async fn download_external_weights_with(
        &self,
        path: &str,
        dir: &Path,
        options: &DownloadOptions,
        mut progress: impl FnMut(&DownloadProgress) + Send,
    ) -> Result<Vec<PathBuf>> {
        let urls = self.get_external_weights_urls(path).await?;
        let base_url = self.holder.transport.base_url().to_owned();
        // Everything is checked before the first byte is fetched or written.
        let mut plan = Vec::new();
        for (rel, url) in &urls.urls {
            safe_join(dir, rel)?;
            plan.push((rel, download::check_signed_url(url, &base_url)?));
        }
        tokio::fs::create_dir_all(dir).await.map_err(|e| {
            Error::new(ErrorKind::Io, format!("creating {}: {e}", dir.display())).with_source(e)
        })?;
        let count = plan.len();
        let mut written = Vec::new();
        for (i, (rel, uri)) in plan.into_iter().enumerate() {
            let target = download::prepare_target(dir, Path::new(rel))?;
            let bytes = download::fetch_to_file(uri, &target, options).await?;
            progress(&DownloadProgress {
                file: rel.clone(),
                file_index: i,
                file_count: count,
                bytes,
            });
            written.push(target);
        }
        Ok(written)
    }

    /// One page of the caller's session ids (`ListOptions::default()`: the first 20 owned,
    /// as the SDK's defaults). Reads `limit`, `offset` and `access_scope`.
    ///
    /// # Errors
    /// API errors.
    pub async fn list_sessions(&self, options: ListOptions) -> Result<ListSessionsResponse> {
        let mut q = options.paging(20).to_vec();
        q.push(("access_scope", options.access_scope.as_str().to_owned()));
        self.holder
            .get_json("/api/v1/sessions", &q, "RestClient.list_sessions")
            .await
    }

    /// Every session id, as a paging stream (ends at the first short page).
    pub fn sessions(&self, page_size: u64, scope: AccessScope) -> Paged<String> {
        let me = self.clone();
        Paged::by_offset(page_size, move |limit, offset| {
            let me = me.clone();
            let scope = scope.clone();
            Box::pin(async move {
                let options = ListOptions::default()
                    .limit(limit)
                    .offset(offset)
                    .access_scope(scope);
                let page = me.list_sessions(options).await?;
                Ok((page.sessions, None))
            })
        })
    }

    /// A session's training runs and samplers.
    ///
    /// # Errors
    /// API errors.
    pub async fn get_session(
        &self,
        session_id: &str,
        scope: AccessScope,
    ) -> Result<GetSessionResponse> {
        let p = format!("/api/v1/sessions/{session_id}");
        self.holder
            .get_json(
                &p,
                &[("access_scope", scope.as_str().to_owned())],
                "RestClient.get_session",
            )
            .await
    }

    /// Moves a session to a project.
    ///
    /// # Errors
    /// API errors.
    pub async fn assign_session_project(&self, session_id: &str, project_id: &str) -> Result<()> {
        let p = format!("/api/v1/sessions/{session_id}/project");
        let body = SetSessionProjectRequest {
            project_id: project_id.to_owned(),
        };
        self.send_ignoring(
            || Ok(RequestSpec::put(p.clone()).with_json(&body)?),
            "RestClient.assign_session_project",
        )
        .await
    }

    /// Exports a session's trace; polls every 5 s until ready and returns the signed URL.
    ///
    /// # Errors
    /// The export failing; API errors.
    pub async fn export_session_trace(&self, session_id: &str) -> Result<String> {
        let p = format!("/api/v1/sessions/{session_id}/trace_export");
        let clock = self.holder.transport.runtime().clock.clone();
        loop {
            let s: TraceExportResponse = self
                .holder
                .get_json(&p, &[], "RestClient.export_session_trace")
                .await?;
            match s.status {
                TraceExportStatus::Pending => {
                    clock.sleep(std::time::Duration::from_secs(5)).await;
                }
                TraceExportStatus::Ready => {
                    return s
                        .url
                        .ok_or_else(|| Error::protocol("trace export ready without url"));
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::RequestFailed,
                        format!("trace export failed: {}", s.error.unwrap_or_default()),
                    ));
                }
            }
        }
    }

    /// One page of a session search (experimental endpoint), newest first; pass the
    /// answer's `next_cursor` as the next request's `cursor`.
    ///
    /// # Errors
    /// A request the SDK would refuse (limit outside 1..=200, empty `display_name` or
    /// `statuses`, a user search naming 0 or more than 10 owners); API errors.
    pub async fn search_sessions(
        &self,
        request: &SessionSearchRequest,
    ) -> Result<SessionSearchResponse> {
        check_search(request)?;
        self.holder
            .post_json(
                "/api/v1/sessions/search",
                request,
                "RestClient.search_sessions",
            )
            .await
    }

    /// Every session matching `request`, as a stream that follows `next_cursor` one page
    /// (of `request.limit`) at a time, starting at `request.cursor`.
    pub fn search_sessions_stream(&self, request: SessionSearchRequest) -> Paged<SessionSummary> {
        let me = self.clone();
        let first = request.cursor.clone();
        Paged::by_cursor(first, move |cursor: Option<SessionSearchCursor>| {
            let me = me.clone();
            let mut request = request.clone();
            request.cursor = cursor;
            Box::pin(async move {
                let page = me.search_sessions(&request).await?;
                Ok((page.sessions, page.next_cursor))
            })
        })
    }

    /// A sampler's base model and weights path.
    ///
    /// # Errors
    /// API errors.
    pub async fn get_sampler(&self, sampler_id: &str) -> Result<GetSamplerResponse> {
        let p = format!("/api/v1/samplers/{sampler_id}");
        self.holder
            .get_json(&p, &[], "RestClient.get_sampler")
            .await
    }

    /// The models the server offers.
    ///
    /// # Errors
    /// API errors.
    pub async fn get_server_capabilities(&self) -> Result<GetServerCapabilitiesResponse> {
        self.holder
            .get_json(
                "/api/v1/get_server_capabilities",
                &[],
                "RestClient.get_server_capabilities",
            )
            .await
    }

    /// Who the caller is, from the JWT claims (no request). Needs JWT auth.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`] without JWT auth.
    pub async fn whoami(&self) -> Result<WhoamiResponse> {
        let claims =
            self.holder.transport.token_claims().await?.ok_or_else(|| {
                Error::new(ErrorKind::Unsupported, "whoami needs JWT authentication")
            })?;
        Ok(WhoamiResponse {
            user_urn: claims.sub.clone().unwrap_or_default(),
            org_urn: claims
                .org_id
                .as_ref()
                .map(|o| format!("tml:organization:{o}"))
                .unwrap_or_default(),
            email: claims.email.clone(),
        })
    }

    /// Copies weights into a project (`copy_weights`); returns the new `tinker://` path.
    /// The idempotency key is fixed across every retry; the access token travels in the
    /// `X-Tinker-Weights-Access-Token` header, as the SDK sends it.
    ///
    /// # Errors
    /// A bad path; API errors.
    pub async fn copy_weights(
        &self,
        path: &str,
        destination_project_id: Option<String>,
        ttl_seconds: Option<u64>,
        weights_access_token: Option<&str>,
    ) -> Result<String> {
        crate::tinker_path::check_tinker_path(path)?;
        let body = tinker_types::json::to_vec(&CopyWeightsRequest {
            session_id: None,
            model_seq_id: None,
            destination_project_id,
            source_path: path.to_owned(),
            ttl_seconds,
            weights_access_token: None,
        })?;
        let key = uuid::Uuid::new_v4().to_string();
        let token = match weights_access_token {
            Some(t) => {
                let mut v = HeaderValue::from_str(t)
                    .map_err(|_| Error::invalid("invalid weights access token"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let resp = self
            .holder
            .send_retrying("copy_weights", || {
                let mut spec = RequestSpec::post("/api/v1/copy_weights")
                    .with_body(body.clone(), tinker_transport::APPLICATION_JSON)
                    .with_idempotency_key(key.clone())
                    .with_sdk_method("RestClient.copy_weights");
                if let Some(t) = &token {
                    spec = spec.with_header(
                        HeaderName::from_static("x-tinker-weights-access-token"),
                        t.clone(),
                    );
                }
                Ok(spec)
            })
            .await?;
        Ok(parse_json::<CopyWeightsResponse>(&resp)?.tinker_path)
    }

    async fn send_ignoring(
        &self,
        make: impl Fn() -> Result<RequestSpec>,
        method: &str,
    ) -> Result<()> {
        self.holder
            .send_retrying(method, || Ok(make()?.with_sdk_method(method)))
            .await
            .map(|_| ())
    }
}

/// Joins `rel` under `dir`, refusing absolute paths, `..` and anything else that would
/// leave `dir`.
pub(crate) fn safe_join(dir: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty() || rel.contains('\\') {
        return Err(Error::invalid(format!("refusing download path {rel:?}")));
    }
    for c in p.components() {
        if !matches!(c, Component::Normal(_)) {
            return Err(Error::invalid(format!(
                "refusing download path {rel:?}: it escapes the target directory"
            )));
        }
    }
    Ok(dir.join(p))
}

type PageFuture<T, K> = Pin<Box<dyn std::future::Future<Output = Result<(Vec<T>, K)>> + Send>>;
type PageFn<T> = Box<dyn FnMut(PageKey) -> PageFuture<T, NextPage> + Send>;

/// Where the next page starts: an offset (offset-paged listings) or a search cursor.
enum PageKey {
    Offset(u64),
    Cursor(Option<SessionSearchCursor>),
}

/// What a fetched page says about the rest.
enum NextPage {
    /// Offset listings: the total count, if the server sends one.
    Total(Option<u64>),
    /// Cursor listings: the cursor of the next page, `None` at the end.
    Cursor(Option<SessionSearchCursor>),
}

/// A `Stream` over every item of a paginated list; fetches one page at a time.
pub struct Paged<T> {
    fetch: PageFn<T>,
    page_size: u64,
    /// The page to fetch next; `None` once the list is exhausted (or failed).
    next: Option<PageKey>,
    /// Offset of the page in flight (offset listings).
    started_at: Option<u64>,
    buffer: std::collections::VecDeque<T>,
    pending: Option<PageFuture<T, NextPage>>,
}

impl<T> std::fmt::Debug for Paged<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paged")
            .field("offset", &self.started_at)
            .field("done", &(self.next.is_none() && self.pending.is_none()))
            .finish_non_exhaustive()
    }
}

impl<T: 'static> Paged<T> {
    /// Pages by `limit`/`offset`; `fetch` answers the items and the total count, if known.
    /// The stream ends at a short or empty page or once the total is reached.
    fn by_offset(
        page_size: u64,
        mut fetch: impl FnMut(u64, u64) -> PageFuture<T, Option<u64>> + Send + 'static,
    ) -> Self {
        let page_size = page_size.max(1);
        Self::new(page_size, PageKey::Offset(0), move |key| {
            let offset = match key {
                PageKey::Offset(o) => o,
                PageKey::Cursor(_) => 0,
            };
            let page = fetch(page_size, offset);
            Box::pin(async move {
                let (items, total) = page.await?;
                Ok((items, NextPage::Total(total)))
            })
        })
    }

    /// Pages by cursor; `fetch` answers the items and the next cursor (`None` at the end).
    fn by_cursor(
        first: Option<SessionSearchCursor>,
        mut fetch: impl FnMut(Option<SessionSearchCursor>) -> PageFuture<T, Option<SessionSearchCursor>>
        + Send
        + 'static,
    ) -> Self {
        Self::new(0, PageKey::Cursor(first), move |key| {
            let cursor = match key {
                PageKey::Cursor(c) => c,
                PageKey::Offset(_) => None,
            };
            let page = fetch(cursor);
            Box::pin(async move {
                let (items, next) = page.await?;
                Ok((items, NextPage::Cursor(next)))
            })
        })
    }

    fn new(
        page_size: u64,
        first: PageKey,
        fetch: impl FnMut(PageKey) -> PageFuture<T, NextPage> + Send + 'static,
    ) -> Self {
        Self {
            fetch: Box::new(fetch),
            page_size,
            next: Some(first),
            started_at: None,
            buffer: std::collections::VecDeque::new(),
            pending: None,
        }
    }

    /// The key of the page after the one in flight, which brought `n` items (an empty
    /// page always ends the stream, whatever the server says).
    fn after(&self, n: u64, next: NextPage) -> Option<PageKey> {
        match next {
            NextPage::Cursor(c) => c.filter(|_| n > 0).map(|c| PageKey::Cursor(Some(c))),
            NextPage::Total(total) => {
                let offset = self.started_at.unwrap_or(0) + n;
                let more = n > 0 && n >= self.page_size && total.is_none_or(|t| offset < t);
                more.then_some(PageKey::Offset(offset))
            }
        }
    }
}

impl<T> Unpin for Paged<T> {}

impl<T: 'static> Stream for Paged<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.buffer.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            if this.pending.is_none() {
                let Some(key) = this.next.take() else {
                    return Poll::Ready(None);
                };
                this.started_at = match &key {
                    PageKey::Offset(o) => Some(*o),
                    PageKey::Cursor(_) => None,
                };
                this.pending = Some((this.fetch)(key));
            }
            let Some(fut) = this.pending.as_mut() else {
                return Poll::Ready(None);
            };
            match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.pending = None;
                    this.next = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok((items, next))) => {
                    this.pending = None;
                    this.next = this.after(items.len() as u64, next);
                    this.buffer.extend(items);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_routes() {
        let path = TinkerPath::parse("tinker://s:train:0/weights/step-1").unwrap();
        assert_eq!(
            checkpoint_route(&path),
            "/api/v1/training_runs/s:train:0/checkpoints/weights/step-1"
        );
    }

    #[test]
    fn search_requests_are_checked() {
        let ok = SessionSearchRequest::default();
        assert!(check_search(&ok).is_ok());
        let mut bad = ok.clone();
        bad.limit = 0;
        assert!(check_search(&bad).is_err());
        bad.limit = 201;
        assert!(check_search(&bad).is_err());
        let mut bad = ok.clone();
        bad.statuses = Some(Vec::new());
        assert!(check_search(&bad).is_err());
        let mut bad = ok.clone();
        bad.display_name = Some(String::new());
        assert!(check_search(&bad).is_err());
        let mut bad = ok;
        bad.owner = SearchOwner::User {
            owner_urns: Vec::new(),
        };
        assert!(check_search(&bad).is_err());
    }

    #[test]
    fn download_paths_cannot_escape() {
        let dir = Path::new("/tmp/target");
        assert_eq!(
            safe_join(dir, "a/b.safetensors").unwrap(),
            dir.join("a/b.safetensors")
        );
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "a\\..\\x", "./a"] {
            assert!(safe_join(dir, bad).is_err(), "{bad}");
        }
    }
}
