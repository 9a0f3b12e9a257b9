//! [`RestClient`]: the session-less REST catalogue (protocol §2.6): training runs,
//! checkpoints, sessions, weights info, copies and external-weights downloads.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tinker_transport::{RequestSpec, Transport};
use tinker_types::GetSamplerResponse;

use crate::error::{Error, ErrorKind, Result};
use crate::holder::{Holder, parse_json};

/// Who owns the listed resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AccessScope {
    /// Only the caller's own (default).
    #[default]
    Owned,
    /// Everything the caller can read.
    Accessible,
}

impl AccessScope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Owned => "owned",
            Self::Accessible => "accessible",
        }
    }
}

/// Pagination cursor of list answers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Cursor {
    /// Offset of this page.
    pub offset: u64,
    /// Page size.
    pub limit: u64,
    /// Total number of items.
    pub total_count: u64,
}

/// A saved checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Checkpoint {
    /// `weights/<n>`, `sampler_weights/<n>` or `external_weights/<n>`.
    pub checkpoint_id: String,
    /// `training`, `sampler` or `external`.
    pub checkpoint_type: String,
    /// Creation time (ISO 8601).
    pub time: String,
    /// `tinker://…` path.
    pub tinker_path: String,
    /// Size, if known.
    #[serde(default)]
    pub size_bytes: Option<u64>,
    /// Whether anyone may read it.
    #[serde(default)]
    pub public: bool,
    /// Metadata.
    #[serde(default)]
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// Expiry time, if any.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// A training run (one model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrainingRun {
    /// Run id (`<session>:train:<n>`).
    pub training_run_id: String,
    /// Base model.
    pub base_model: String,
    /// Owner.
    pub model_owner: String,
    /// LoRA or full fine-tune.
    pub is_lora: bool,
    /// Whether the run is corrupted.
    #[serde(default)]
    pub corrupted: bool,
    /// LoRA rank.
    #[serde(default)]
    pub lora_rank: Option<u32>,
    /// Last activity (ISO 8601).
    pub last_request_time: String,
    /// Latest training checkpoint.
    #[serde(default)]
    pub last_checkpoint: Option<Checkpoint>,
    /// Latest sampler checkpoint.
    #[serde(default)]
    pub last_sampler_checkpoint: Option<Checkpoint>,
    /// Metadata.
    #[serde(default)]
    pub user_metadata: Option<BTreeMap<String, String>>,
}

/// A page of training runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TrainingRunsResponse {
    /// The runs.
    pub training_runs: Vec<TrainingRun>,
    /// Where this page is.
    pub cursor: Cursor,
}

/// A list of checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckpointsListResponse {
    /// The checkpoints.
    pub checkpoints: Vec<Checkpoint>,
    /// Where this page is (absent for per-run lists).
    #[serde(default)]
    pub cursor: Option<Cursor>,
}

/// What a checkpoint holds (`weights_info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WeightsInfoResponse {
    /// Base model.
    pub base_model: String,
    /// LoRA or full.
    pub is_lora: bool,
    /// LoRA rank.
    #[serde(default)]
    pub lora_rank: Option<u32>,
    /// Optimizer configuration.
    #[serde(default)]
    pub optimizer_config: Option<Value>,
    /// LoRA on the unembedding.
    #[serde(default)]
    pub train_unembed: Option<bool>,
    /// LoRA on the MLPs.
    #[serde(default)]
    pub train_mlp: Option<bool>,
    /// LoRA on attention.
    #[serde(default)]
    pub train_attn: Option<bool>,
}

/// A session's resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GetSessionResponse {
    /// Its training runs.
    pub training_run_ids: Vec<String>,
    /// Its samplers.
    pub sampler_ids: Vec<String>,
    /// Metadata.
    #[serde(default)]
    pub user_metadata: Option<Value>,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Signed download URLs of an external-weights export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExternalWeightsUrls {
    /// Relative file path → signed URL.
    pub urls: BTreeMap<String, String>,
    /// When the URLs expire (ISO 8601).
    pub expires: String,
}

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

#[derive(Deserialize)]
struct SessionsPage {
    sessions: Vec<String>,
}

/// `tinker://<run>/<segment>/<name>` → `(run, "<segment>/<name>")`.
pub fn parse_tinker_path(path: &str) -> Result<(String, String)> {
    let rest = path
        .strip_prefix("tinker://")
        .ok_or_else(|| Error::invalid(format!("{path:?} is not a tinker:// path")))?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [
            run,
            segment @ ("weights" | "sampler_weights" | "external_weights"),
            name,
        ] if !run.is_empty() && !name.is_empty() => {
            Ok(((*run).to_owned(), format!("{segment}/{name}")))
        }
        _ => Err(Error::invalid(format!(
            "{path:?} is not a checkpoint path (tinker://<run>/<weights|sampler_weights|external_weights>/<name>)"
        ))),
    }
}

/// Session-less access to runs, checkpoints and sessions. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    holder: Arc<Holder>,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("holder", &self.holder)
            .finish()
    }
}

impl RestClient {
    pub(crate) fn from_holder(holder: Arc<Holder>) -> Self {
        Self { holder }
    }

    /// A REST-only client (no session): client config and dynamic config only.
    ///
    /// # Errors
    /// As [`ServiceClientBuilder::build`](crate::ServiceClientBuilder::build).
    pub async fn connect(transport: Transport) -> Result<Self> {
        Ok(Self {
            holder: Holder::start(transport, None).await?,
        })
    }

    /// One page of training runs.
    ///
    /// # Errors
    /// API errors.
    pub async fn list_training_runs(
        &self,
        limit: u64,
        offset: u64,
        scope: AccessScope,
        project_id: Option<&str>,
    ) -> Result<TrainingRunsResponse> {
        let mut q = vec![
            ("limit", limit.to_string()),
            ("offset", offset.to_string()),
            ("access_scope", scope.as_str().to_owned()),
        ];
        if let Some(p) = project_id {
            q.push(("project_id", p.to_owned()));
        }
        self.holder
            .get_json("/api/v1/training_runs", &q, "RestClient.list_training_runs")
            .await
    }

    /// Every training run, as a stream that fetches pages of `page_size` on demand.
    pub fn training_runs(&self, page_size: u64, scope: AccessScope) -> Paged<TrainingRun> {
        let me = self.clone();
        Paged::new(page_size, move |limit, offset| {
            let me = me.clone();
            Box::pin(async move {
                let page = me.list_training_runs(limit, offset, scope, None).await?;
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
        let (run, _) = parse_tinker_path(path)?;
        self.get_training_run(&run, AccessScope::Accessible).await
    }

    /// What a checkpoint holds (base model, LoRA settings).
    ///
    /// # Errors
    /// API errors.
    pub async fn get_weights_info_by_tinker_path(&self, path: &str) -> Result<WeightsInfoResponse> {
        #[derive(Serialize)]
        struct Req<'a> {
            tinker_path: &'a str,
        }
        self.holder
            .post_json(
                "/api/v1/weights_info",
                &Req { tinker_path: path },
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

    /// One page of the caller's checkpoints across runs (newest first).
    ///
    /// # Errors
    /// API errors.
    pub async fn list_user_checkpoints(
        &self,
        limit: u64,
        offset: u64,
    ) -> Result<CheckpointsListResponse> {
        let q = [("limit", limit.to_string()), ("offset", offset.to_string())];
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
        Paged::new(page_size, move |limit, offset| {
            let me = me.clone();
            Box::pin(async move {
                let page = me.list_user_checkpoints(limit, offset).await?;
                Ok((page.checkpoints, page.cursor.map(|c| c.total_count)))
            })
        })
    }

    /// Deletes a checkpoint.
    ///
    /// # Errors
    /// API errors.
    pub async fn delete_checkpoint(&self, run_id: &str, checkpoint_id: &str) -> Result<()> {
        let path = format!("/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id}");
        self.send_ignoring(
            || Ok(RequestSpec::delete(path.clone())),
            "RestClient.delete_checkpoint",
        )
        .await
    }

    /// Deletes the checkpoint at a `tinker://` path.
    ///
    /// # Errors
    /// A bad path; API errors.
    pub async fn delete_checkpoint_from_tinker_path(&self, path: &str) -> Result<()> {
        let (run, ckpt) = parse_tinker_path(path)?;
        self.delete_checkpoint(&run, &ckpt).await
    }

    /// Makes a checkpoint public (409 if it already is).
    ///
    /// # Errors
    /// A bad path; API errors.
    pub async fn publish_checkpoint_from_tinker_path(&self, path: &str) -> Result<()> {
        let (run, ckpt) = parse_tinker_path(path)?;
        let p = format!("/api/v1/training_runs/{run}/checkpoints/{ckpt}/publish");
        self.send_ignoring(
            || {
                Ok(RequestSpec::post(p.clone())
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
        let (run, ckpt) = parse_tinker_path(path)?;
        let p = format!("/api/v1/training_runs/{run}/checkpoints/{ckpt}/publish");
        self.send_ignoring(
            || Ok(RequestSpec::delete(p.clone())),
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
        let (run, ckpt) = parse_tinker_path(path)?;
        let p = format!("/api/v1/training_runs/{run}/checkpoints/{ckpt}/ttl");
        let body = serde_json::json!({ "ttl_seconds": ttl_seconds });
        self.send_ignoring(
            || Ok(RequestSpec::put(p.clone()).with_json(&body)?),
            "RestClient.set_checkpoint_ttl_from_tinker_path",
        )
        .await
    }

    /// Signed URLs of an external-weights export.
    ///
    /// # Errors
    /// A path that is not an `external_weights` checkpoint; API errors.
    pub async fn get_external_weights_urls(&self, path: &str) -> Result<ExternalWeightsUrls> {
        let (run, ckpt) = parse_tinker_path(path)?;
        if !ckpt.starts_with("external_weights/") {
            return Err(Error::invalid(format!(
                "{path:?} is not an external_weights checkpoint"
            )));
        }
        let p = format!("/api/v1/training_runs/{run}/checkpoints/{ckpt}/external_weights_urls");
        self.holder
            .get_json(&p, &[], "RestClient.get_external_weights_urls")
            .await
    }

    /// Downloads an external-weights export into `dir` (created if missing). Every file is
    /// written to a temporary name and renamed when complete; a relative path that would
    /// leave `dir` is refused before anything is written. Returns the written files.
    ///
    /// # Errors
    /// A bad path or file name; API, connection and I/O errors.
    pub async fn download_external_weights(
        &self,
        path: &str,
        dir: &Path,
        mut progress: impl FnMut(&DownloadProgress) + Send,
    ) -> Result<Vec<PathBuf>> {
        let urls = self.get_external_weights_urls(path).await?;
        let mut targets = Vec::new();
        for rel in urls.urls.keys() {
            targets.push(safe_join(dir, rel)?);
        }
        let io =
            |e: std::io::Error| Error::new(ErrorKind::Io, "writing the download").with_source(e);
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let count = urls.urls.len();
        let mut written = Vec::new();
        for (i, ((rel, url), target)) in urls.urls.iter().zip(targets).enumerate() {
            let body = fetch_signed(url).await?;
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(io)?;
            }
            let tmp = target.with_extension("part");
            tokio::fs::write(&tmp, &body).await.map_err(io)?;
            tokio::fs::rename(&tmp, &target).await.map_err(io)?;
            progress(&DownloadProgress {
                file: rel.clone(),
                file_index: i,
                file_count: count,
                bytes: body.len() as u64,
            });
            written.push(target);
        }
        Ok(written)
    }

    /// One page of the caller's session ids.
    ///
    /// # Errors
    /// API errors.
    pub async fn list_sessions(
        &self,
        limit: u64,
        offset: u64,
        scope: AccessScope,
    ) -> Result<Vec<String>> {
        let q = [
            ("limit", limit.to_string()),
            ("offset", offset.to_string()),
            ("access_scope", scope.as_str().to_owned()),
        ];
        let page: SessionsPage = self
            .holder
            .get_json("/api/v1/sessions", &q, "RestClient.list_sessions")
            .await?;
        Ok(page.sessions)
    }

    /// Every session id, as a paging stream (ends at the first short page).
    pub fn sessions(&self, page_size: u64, scope: AccessScope) -> Paged<String> {
        let me = self.clone();
        Paged::new(page_size, move |limit, offset| {
            let me = me.clone();
            Box::pin(async move { Ok((me.list_sessions(limit, offset, scope).await?, None)) })
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
        let body = serde_json::json!({ "project_id": project_id });
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
        #[derive(Deserialize)]
        struct Status {
            status: String,
            #[serde(default)]
            url: Option<String>,
            #[serde(default)]
            error: Option<String>,
        }
        let p = format!("/api/v1/sessions/{session_id}/trace_export");
        let clock = self.holder.transport.runtime().clock.clone();
        loop {
            let s: Status = self
                .holder
                .get_json(&p, &[], "RestClient.export_session_trace")
                .await?;
            match s.status.as_str() {
                "pending" => clock.sleep(std::time::Duration::from_secs(5)).await,
                "ready" => {
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

    /// Searches sessions (experimental endpoint); `request` is a `SessionSearchRequest`.
    ///
    /// # Errors
    /// API errors.
    pub async fn search_sessions(&self, request: &Value) -> Result<Value> {
        self.holder
            .post_json(
                "/api/v1/sessions/search",
                request,
                "RestClient.search_sessions",
            )
            .await
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
    pub async fn get_server_capabilities(&self) -> Result<crate::service::ServerCapabilities> {
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
    pub async fn whoami(&self) -> Result<Whoami> {
        let claims =
            self.holder.transport.token_claims().await?.ok_or_else(|| {
                Error::new(ErrorKind::Unsupported, "whoami needs JWT authentication")
            })?;
        Ok(Whoami {
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
    /// The idempotency key is fixed across every retry.
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
        crate::training::check_tinker_path(path)?;
        #[derive(Serialize)]
        struct Req<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            destination_project_id: Option<String>,
            source_path: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            ttl_seconds: Option<u64>,
        }
        #[derive(Deserialize)]
        struct Resp {
            tinker_path: String,
        }
        let body = tinker_types::json::to_vec(&Req {
            destination_project_id,
            source_path: path,
            ttl_seconds,
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
        Ok(parse_json::<Resp>(&resp)?.tinker_path)
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

/// The caller's identity (from JWT claims).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Whoami {
    /// `sub` claim.
    pub user_urn: String,
    /// `tml:organization:<org_id>`.
    pub org_urn: String,
    /// `email` claim.
    pub email: Option<String>,
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

/// A plain, unauthenticated GET of a signed URL.
async fn fetch_signed(url: &str) -> Result<bytes::Bytes> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::protocol("invalid signed URL"))?;
    let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
        return Err(Error::protocol("signed URL without scheme or host"));
    };
    let base = format!("{scheme}://{auth}");
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let transport = Transport::builder()
        .base_url(base)
        .no_credential()
        .build()?;
    let resp = transport
        .send(RequestSpec::get(path).without_auth())
        .await?;
    Ok(resp.into_body())
}

type PageFuture<T> =
    Pin<Box<dyn std::future::Future<Output = Result<(Vec<T>, Option<u64>)>> + Send>>;
type PageFn<T> = Box<dyn FnMut(u64, u64) -> PageFuture<T> + Send>;

/// A `Stream` over every item of a paginated list; fetches one page at a time.
pub struct Paged<T> {
    fetch: PageFn<T>,
    page_size: u64,
    offset: u64,
    buffer: std::collections::VecDeque<T>,
    pending: Option<PageFuture<T>>,
    done: bool,
}

impl<T> std::fmt::Debug for Paged<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paged")
            .field("offset", &self.offset)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> Paged<T> {
    fn new(page_size: u64, fetch: impl FnMut(u64, u64) -> PageFuture<T> + Send + 'static) -> Self {
        Self {
            fetch: Box::new(fetch),
            page_size: page_size.max(1),
            offset: 0,
            buffer: std::collections::VecDeque::new(),
            pending: None,
            done: false,
        }
    }
}

impl<T> Unpin for Paged<T> {}

impl<T> Stream for Paged<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.buffer.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let fut = match &mut this.pending {
                Some(f) => f,
                None => this
                    .pending
                    .insert((this.fetch)(this.page_size, this.offset)),
            };
            match fut.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    this.pending = None;
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok((items, total))) => {
                    this.pending = None;
                    let n = items.len() as u64;
                    this.offset += n;
                    if n < this.page_size || total.is_some_and(|t| this.offset >= t) || n == 0 {
                        this.done = true;
                    }
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
    fn tinker_paths() {
        assert_eq!(
            parse_tinker_path("tinker://s:train:0/weights/step-1").unwrap(),
            ("s:train:0".to_owned(), "weights/step-1".to_owned())
        );
        assert!(parse_tinker_path("tinker://s:train:0/other/x").is_err());
        assert!(parse_tinker_path("http://x/weights/y").is_err());
        assert!(parse_tinker_path("tinker://run/weights/a/b").is_err());
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
