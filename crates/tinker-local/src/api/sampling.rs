//! Sampling sessions and `asample`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};

use super::owned::{self, Access};
use tinker_types::{
    CreateSamplingSessionRequest, CreateSamplingSessionResponse, GetSamplerResponse,
    JoinSamplingSessionRequest, JoinSamplingSessionResponse, ModelInputChunk, SampleRequest,
    StopCondition, UntypedFuture,
};

use super::{ApiError, ApiResult, AppStateRef, ok, parse, reply};
use crate::auth::Caller;
use crate::compute::Compute;
use crate::engine::SampleSpec;
use crate::engine_wire;
use crate::promise::{FutureKind, Outcome};
use crate::state::{AppState, SamplerEntry, lock};
use crate::worker::short_id;

/// Most samples one request may ask for.
const MAX_SAMPLES: usize = 128;
/// `max_tokens` when the request gives none.
const DEFAULT_MAX_TOKENS: usize = 128;

pub(crate) async fn create_sampling_session(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: CreateSamplingSessionRequest = parse(&body)?;
    let seq = i64::try_from(req.sampling_session_seq_id)
        .map_err(|_| ApiError::bad_request("sampling_session_seq_id: too large"))?;
    // Ownership first: a creation answer of another account's session is not handed out.
    owned::session(&state, &caller, &req.session_id)?;
    let key = (req.session_id.clone(), "sampler", seq);
    if let Some(previous) = lock(&state.creations).get(&key) {
        return ok(previous.clone());
    }
    owned::active_session(&state, &caller, &req.session_id)?;
    let (base_model, model) = match (&req.model_path, &req.base_model) {
        (Some(path), base) => {
            let (run, _, dir) = owned::checkpoint(&state, &caller, path, Access::OwnOrPublished)?;
            if let Some(base) = base
                && *base != run.base_model
            {
                return Err(ApiError::bad_request(format!(
                    "model_path is a {} checkpoint but base_model is {base}",
                    run.base_model
                )));
            }
            let spec = state
                .spec(&run.base_model)
                .ok_or_else(|| ApiError::internal("checkpoint of an unknown base model"))?
                .clone();
            let compute = Compute::of(&state.config);
            let model = tokio::task::spawn_blocking(move || compute.adapter_sampler(&spec, &dir))
                .await
                .map_err(|_| ApiError::internal("loading the sampler panicked"))?
                .map_err(|e| engine_api_error(&e))?;
            (run.base_model, model)
        }
        (None, Some(base)) => {
            let spec = state
                .spec(base)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("base model `{base}` is not served here"))
                })?
                .clone();
            let compute = Compute::of(&state.config);
            let model = tokio::task::spawn_blocking(move || compute.base_sampler(&spec))
                .await
                .map_err(|_| ApiError::internal("loading the sampler panicked"))?
                .map_err(|e| engine_api_error(&e))?;
            (base.clone(), model)
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "create_sampling_session needs base_model or model_path",
            ));
        }
    };
    let id = format!("{}:sample:{}", req.session_id, req.sampling_session_seq_id);
    lock(&state.samplers).insert(
        id.clone(),
        SamplerEntry {
            id: id.clone(),
            session_id: req.session_id.clone(),
            owner: caller.owner.clone(),
            base_model,
            model_path: req.model_path.clone(),
            model,
            clients: 0,
        },
    );
    if let Some(s) = lock(&state.sessions).get_mut(&req.session_id) {
        s.sampler_ids.push(id.clone());
    }
    let response = tinker_types::json::to_value(&CreateSamplingSessionResponse {
        sampling_session_id: id,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    lock(&state.creations).insert(key, response.clone());
    ok(response)
}

fn engine_api_error(e: &crate::engine::EngineError) -> ApiError {
    if e.is_not_found() {
        ApiError::not_found(e.to_string())
    } else if e.is_user_error() {
        ApiError::bad_request(e.to_string())
    } else {
        ApiError::internal(e.to_string())
    }
}

pub(crate) async fn join_sampling_session(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: JoinSamplingSessionRequest = parse(&body)?;
    owned::sampler(&state, &caller, &req.sampling_session_id)?;
    let mut samplers = lock(&state.samplers);
    let entry = samplers.get_mut(&req.sampling_session_id).ok_or_else(|| {
        ApiError::not_found(format!(
            "sampling session {} does not exist",
            req.sampling_session_id
        ))
    })?;
    entry.clients += 1;
    reply(&JoinSamplingSessionResponse {
        client_counter: entry.clients,
    })
}

pub(crate) async fn get_sampler(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    Path(sampler_id): Path<String>,
) -> ApiResult {
    let entry = owned::sampler(&state, &caller, &sampler_id)?;
    reply(&GetSamplerResponse {
        sampler_id: entry.id.clone(),
        base_model: entry.base_model.clone(),
        model_path: entry.model_path.clone(),
    })
}

/// Turns a request into an engine spec, or explains what is wrong with it.
fn sample_spec(req: &SampleRequest) -> Result<(SampleSpec, Option<usize>), String> {
    let mut prompt = Vec::new();
    for (i, chunk) in req.prompt.chunks.iter().enumerate() {
        match chunk {
            ModelInputChunk::EncodedText(c) => prompt.extend_from_slice(&c.tokens),
            other => {
                let kind = tinker_types::json::to_value(other)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
                    .unwrap_or_default();
                return Err(format!(
                    "prompt chunk {i}: `{kind}` chunks are not supported (tinker-local models are text-only)"
                ));
            }
        }
    }
    if prompt.is_empty() {
        return Err("the prompt is empty".to_owned());
    }
    let num_samples = usize::try_from(req.num_samples)
        .ok()
        .filter(|n| (1..=MAX_SAMPLES).contains(n))
        .ok_or_else(|| format!("num_samples must be in 1..={MAX_SAMPLES}"))?;
    let p = &req.sampling_params;
    let max_tokens = match p.max_tokens {
        None => DEFAULT_MAX_TOKENS,
        Some(m) => Some(m as usize)
            .filter(|m| *m >= 1)
            .ok_or_else(|| format!("max_tokens must be >= 1, got {m}"))?,
    };
    if !p.temperature.is_finite() || p.temperature < 0.0 {
        return Err(format!("temperature must be >= 0, got {}", p.temperature));
    }
    if !(p.top_p > 0.0 && p.top_p <= 1.0) {
        return Err(format!("top_p must be in (0, 1], got {}", p.top_p));
    }
    if p.top_k == 0 || p.top_k < -1 {
        return Err(format!(
            "top_k must be -1 (no limit) or >= 1, got {}",
            p.top_k
        ));
    }
    let (stop_tokens, stop_strings, stop_at_eos) = match &p.stop {
        None => (Vec::new(), Vec::new(), true),
        Some(StopCondition::Text(s)) => (Vec::new(), vec![s.clone()], false),
        Some(StopCondition::Strings(v)) => (Vec::new(), v.clone(), false),
        Some(StopCondition::Tokens(v)) => (
            v.iter()
                .map(|&t| u32::try_from(t).map_err(|_| format!("invalid stop token {t}")))
                .collect::<Result<_, _>>()?,
            Vec::new(),
            false,
        ),
        Some(_) => return Err("sampling_params.stop: unsupported form".to_owned()),
    };
    if req.target_prompt_logprobs.is_some() {
        return Err("target_prompt_logprobs is not supported by tinker-local".to_owned());
    }
    if req.prompt_alt_tokens_k > 0 {
        return Err("prompt_alt_tokens_k is not supported by tinker-local".to_owned());
    }
    let prompt_logprobs = req.prompt_logprobs.unwrap_or(false);
    let last_n = match req.prompt_logprobs_last_n {
        None => None,
        Some(n) if !prompt_logprobs => {
            return Err(format!(
                "prompt_logprobs_last_n={n} needs prompt_logprobs=true"
            ));
        }
        Some(n) => Some(
            Some(n as usize)
                .filter(|n| *n >= 1 && *n < prompt.len())
                .ok_or_else(|| {
                    format!(
                        "prompt_logprobs_last_n must be in 1..={}, got {n}",
                        prompt.len() - 1
                    )
                })?,
        ),
    };
    let topk = |v: u32, what: &str| {
        Some(v as usize)
            .filter(|k| *k <= 64)
            .ok_or_else(|| format!("{what} must be in 0..=64, got {v}"))
    };
    let spec = SampleSpec {
        prompt,
        num_samples,
        max_tokens,
        temperature: p.temperature as f32,
        top_k: p.top_k,
        top_p: p.top_p as f32,
        seed: p.seed,
        stop_tokens,
        stop_strings,
        stop_at_eos,
        prompt_logprobs,
        topk_prompt_logprobs: topk(req.topk_prompt_logprobs, "topk_prompt_logprobs")?,
        topk_sample_logprobs: topk(req.topk_sample_logprobs, "topk_sample_logprobs")?,
    };
    Ok((spec, last_n))
}

pub(crate) async fn asample(
    State(state): AppStateRef,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let req: SampleRequest = parse(&body)?;
    let sampler_id = req.sampling_session_id.clone().ok_or_else(|| {
        ApiError::bad_request("asample needs sampling_session_id (create a sampling session first)")
    })?;
    let seq_id = match req.seq_id {
        None => -1,
        Some(s) => i64::try_from(s).map_err(|_| ApiError::bad_request("seq_id: too large"))?,
    };
    let entry = owned::sampler(&state, &caller, &sampler_id)?;
    let key = (sampler_id.clone(), seq_id);
    if seq_id >= 0
        && let Some((request_id, ids)) = lock(&state.sample_submissions).get(&key)
        && state.promises.waiter(request_id).is_some()
    {
        return reply(&sample_future(request_id, ids));
    }
    owned::active_session(&state, &caller, &entry.session_id)?;
    let (spec, last_n) = sample_spec(&req).map_err(ApiError::bad_request)?;
    let request_id = format!("{sampler_id}:{seq_id}:{}", short_id());
    let ids: Vec<String> = (0..spec.num_samples)
        .map(|i| format!("{request_id}:{i}"))
        .collect();
    let clone_id = seq_id.max(0) / 1_000_000_000;
    let done = state.promises.create_in_group(
        request_id.clone(),
        FutureKind::Sample,
        &caller.owner,
        Some((sampler_id.clone(), clone_id)),
    );
    if seq_id >= 0 {
        lock(&state.sample_submissions).insert(key, (request_id.clone(), ids.clone()));
    }
    tokio::spawn(run_sample(Arc::clone(&state), entry, spec, last_n, done));
    reply(&sample_future(&request_id, &ids))
}

/// The untyped future of a sample request.
fn sample_future(request_id: &str, ids: &[String]) -> UntypedFuture {
    UntypedFuture {
        request_id: request_id.to_owned(),
        model_id: None,
        sample_sequence_ids: Some(ids.to_vec()),
    }
}

async fn run_sample(
    state: Arc<AppState>,
    entry: SamplerEntry,
    spec: SampleSpec,
    last_n: Option<usize>,
    done: crate::promise::Completer,
) {
    let Ok(_permit) = Arc::clone(&state.sampling_slots).acquire_owned().await else {
        done.complete(Outcome::server("the server is shutting down"));
        return;
    };
    if !state.promises.is_pending(done.request_id()) {
        // Cancelled while queued.
        return;
    }
    let prompt_len = spec.prompt.len() as u64;
    let model = Arc::clone(&entry.model);
    let result = if model.is_instant() {
        Ok(model.sample(&spec))
    } else {
        tokio::task::spawn_blocking(move || model.sample(&spec)).await
    };
    match result {
        Ok(Ok(out)) => {
            let sampled: u64 = out.sequences.iter().map(|s| s.tokens.len() as u64).sum();
            state.account(
                &entry.session_id,
                &entry.base_model,
                "sampling_prefill",
                prompt_len,
            );
            state.account(
                &entry.session_id,
                &entry.base_model,
                "sampling_sample",
                sampled,
            );
            done.complete(match engine_wire::encode_sample_output(&out, last_n) {
                Ok(bytes) => Outcome::Proto(bytes),
                Err(e) => Outcome::server(e),
            });
        }
        Ok(Err(e)) if e.is_user_error() => done.complete(Outcome::user(e.to_string())),
        Ok(Err(e)) => {
            let message = e.to_string();
            state.fail_session_by_request(&entry.session_id, done.request_id(), "Sample", &message);
            done.complete(Outcome::server(message));
        }
        Err(_) => {
            let message = "sampling panicked in the engine";
            state.fail_session_by_request(&entry.session_id, done.request_id(), "Sample", message);
            done.complete(Outcome::server(message));
        }
    }
}
