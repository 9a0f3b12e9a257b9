//! Sampling: parameters, the `asample` request, its response, and sampling sessions.

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::macros::{open_enum, type_last_struct};
use crate::model_input::ModelInput;
use crate::tensor::{TensorData, TensorDtype};

/// When generation stops, besides `max_tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum StopCondition {
    /// One stop string.
    Text(String),
    /// Stop at any of these strings (an empty list disables all stopping, EOS included).
    Strings(Vec<String>),
    /// Stop at any of these token ids.
    Tokens(Vec<i64>),
}

/// Sampling parameters. `temperature`, `top_k` and `top_p` are always sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Maximum number of generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Random seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop strings or tokens; `None` keeps implicit EOS stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopCondition>,
    /// Temperature (default 1).
    #[serde(default = "one", serialize_with = "crate::json::finite")]
    pub temperature: f64,
    /// Top-k cutoff; -1 = no limit (default).
    #[serde(default = "minus_one")]
    pub top_k: i64,
    /// Nucleus cutoff (default 1).
    #[serde(default = "one", serialize_with = "crate::json::finite")]
    pub top_p: f64,
}

fn one() -> f64 {
    1.0
}
fn minus_one() -> i64 {
    -1
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: None,
            seed: None,
            stop: None,
            temperature: 1.0,
            top_k: -1,
            top_p: 1.0,
        }
    }
}

impl SamplingParams {
    /// Defaults with a token limit.
    pub fn with_max_tokens(max_tokens: u32) -> Self {
        Self {
            max_tokens: Some(max_tokens),
            ..Self::default()
        }
    }
}

type_last_struct! {
    /// `POST /api/v1/asample` (future with `sample_sequence_ids` → [`SampleResponse`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct SampleRequest = "sample" {
        /// Number of independent samples (default 1; always sent).
        #[serde(default = "one_sample")]
        pub num_samples: u32,
        /// The prompt.
        pub prompt: ModelInput,
        /// Sampling parameters.
        pub sampling_params: SamplingParams,
        /// Base model (in the schema; SDK 0.38 never sends it).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub base_model: Option<String>,
        /// `tinker://` model path (in the schema; SDK 0.38 never sends it).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub model_path: Option<String>,
        /// The sampling session that determines the model.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub sampling_session_id: Option<String>,
        /// Per-sampler request counter.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub seq_id: Option<u64>,
        /// Return the prompt's per-token logprobs.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub prompt_logprobs: Option<bool>,
        /// Top-k logprobs per prompt position (0 = none; always sent).
        #[serde(default)]
        pub topk_prompt_logprobs: u32,
        /// Top-k logprobs per generated token (0 = none; always sent).
        #[serde(default)]
        pub topk_sample_logprobs: u32,
        /// `int64` `[len(prompt) - 1, K]` token ids to score (`-1` = none; may be CSR).
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub target_prompt_logprobs: Option<TensorData>,
        /// Number of alternative tokens drawn per prompt position (always sent).
        #[serde(default)]
        pub prompt_alt_tokens_k: u32,
        /// Score only the last N prompt positions.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub prompt_logprobs_last_n: Option<u32>,
        /// Record stability data for `stable_reinforce`.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub record_stability_info: Option<bool>,
    }
}

fn one_sample() -> u32 {
    1
}

impl SampleRequest {
    /// A request for `num_samples` samples of `prompt` in a sampling session.
    pub fn new(
        sampling_session_id: impl Into<String>,
        seq_id: u64,
        prompt: ModelInput,
        sampling_params: SamplingParams,
        num_samples: u32,
    ) -> Self {
        Self {
            num_samples,
            prompt,
            sampling_params,
            base_model: None,
            model_path: None,
            sampling_session_id: Some(sampling_session_id.into()),
            seq_id: Some(seq_id),
            prompt_logprobs: None,
            topk_prompt_logprobs: 0,
            topk_sample_logprobs: 0,
            target_prompt_logprobs: None,
            prompt_alt_tokens_k: 0,
            prompt_logprobs_last_n: None,
            record_stability_info: None,
        }
    }

    /// The SDK's client-side checks: `target_prompt_logprobs` is a 2-D `int64` tensor, and
    /// `prompt_logprobs_last_n` needs `prompt_logprobs` and lies in `1..len(prompt)`.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.target_prompt_logprobs
            && (t.dtype() != TensorDtype::Int64 || t.dims().len() != 2)
        {
            return Err(Error::InvalidValue {
                field: "target_prompt_logprobs".to_owned(),
                reason: "must be a 2-D int64 tensor".to_owned(),
            });
        }
        if let Some(n) = self.prompt_logprobs_last_n {
            if self.prompt_logprobs != Some(true) {
                return Err(Error::InvalidValue {
                    field: "prompt_logprobs_last_n".to_owned(),
                    reason: "requires prompt_logprobs".to_owned(),
                });
            }
            let prompt_len = self.prompt.length()?;
            if n == 0 || n as usize >= prompt_len.max(1) {
                return Err(Error::InvalidValue {
                    field: "prompt_logprobs_last_n".to_owned(),
                    reason: format!(
                        "must be between 1 and len(prompt) - 1 = {}",
                        prompt_len.saturating_sub(1)
                    ),
                });
            }
        }
        Ok(())
    }
}

open_enum! {
    /// Why a sampled sequence ended.
    pub enum StopReason {
        /// A stop string/token (or EOS) was produced.
        Stop = "stop",
        /// `max_tokens` was reached.
        Length = "length",
    }
}

/// Logprob of padding cells in a top-k matrix (paired with token id 0).
pub const TOPK_MASK_LOGPROB: f32 = -99999.0;

/// Top-k `(token_id, logprob)` pairs per position, stored as two row-major `length × k`
/// matrices; cells the server had nothing for hold the sentinel `(0, -99999.0)`.
///
/// JSON form (legacy responses): one entry per position, `null` for an all-sentinel row,
/// otherwise the list of `[token_id, logprob]` pairs without trailing sentinel cells.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopkLogprobs {
    /// Token ids, `length × k`.
    pub token_ids: Vec<u32>,
    /// Logprobs, `length × k`.
    pub logprobs: Vec<f32>,
    /// Pairs per position.
    pub k: usize,
}

impl TopkLogprobs {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.token_ids.len().checked_div(self.k).unwrap_or(0)
    }

    /// True if there are no positions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One entry per position: `None` for an all-sentinel row, otherwise the pairs without
    /// trailing sentinel cells (the SDK's list view).
    pub fn rows(&self) -> Vec<Option<Vec<(u32, f32)>>> {
        if self.k == 0 {
            return Vec::new();
        }
        let sentinel = |id: u32, lp: f32| id == 0 && lp == TOPK_MASK_LOGPROB;
        self.token_ids
            .chunks(self.k)
            .zip(self.logprobs.chunks(self.k))
            .map(|(ids, lps)| {
                if sentinel(ids[0], lps[0]) {
                    return None;
                }
                let mut end = ids.len();
                while end > 0 && sentinel(ids[end - 1], lps[end - 1]) {
                    end -= 1;
                }
                Some(
                    ids[..end]
                        .iter()
                        .copied()
                        .zip(lps[..end].iter().copied())
                        .collect(),
                )
            })
            .collect()
    }

    /// Builds the matrices from the list view; `k` is the longest row, shorter rows and
    /// `None` rows are padded with the sentinel.
    pub fn from_rows(rows: &[Option<Vec<(u32, f32)>>]) -> Self {
        let k = rows.iter().flatten().map(Vec::len).max().unwrap_or(0);
        let mut token_ids = Vec::with_capacity(rows.len() * k);
        let mut logprobs = Vec::with_capacity(rows.len() * k);
        if k > 0 {
            for row in rows {
                let row = row.as_deref().unwrap_or(&[]);
                for &(id, lp) in row {
                    token_ids.push(id);
                    logprobs.push(lp);
                }
                for _ in row.len()..k {
                    token_ids.push(0);
                    logprobs.push(TOPK_MASK_LOGPROB);
                }
            }
        }
        Self {
            token_ids,
            logprobs,
            k,
        }
    }
}

impl Serialize for TopkLogprobs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.logprobs.iter().all(|x| x.is_finite()) {
            return Err(crate::json::non_finite_error());
        }
        let rows = self.rows();
        let mut seq = serializer.serialize_seq(Some(rows.len()))?;
        for row in &rows {
            seq.serialize_element(row)?;
        }
        seq.end()
    }
}

/// Most cells (`rows x k`) a top-k matrix decoded from JSON may have: 16 Mi cells
/// (128 MiB of ids and logprobs), e.g. a 128k-token prompt at k = 128. Padding makes the
/// matrix larger than its JSON (a 5-byte `null` row becomes `k` cells), so without a
/// bound a few megabytes of rows and one long row would allocate without limit.
pub(crate) const MAX_TOPK_JSON_CELLS: usize = 1 << 24;

impl<'de> Deserialize<'de> for TopkLogprobs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let rows = Vec::<Option<Vec<(u32, f32)>>>::deserialize(deserializer)?;
        let k = rows.iter().flatten().map(Vec::len).max().unwrap_or(0);
        if rows
            .len()
            .checked_mul(k)
            .is_none_or(|cells| cells > MAX_TOPK_JSON_CELLS)
        {
            return Err(serde::de::Error::custom(format!(
                "a top-k matrix of {} rows x k = {k} exceeds {MAX_TOPK_JSON_CELLS} cells",
                rows.len()
            )));
        }
        Ok(Self::from_rows(&rows))
    }
}

/// Alternative prompt tokens drawn at every prompt position after the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptAltTokens {
    /// Token ids, dense `[len(prompt) - 1, k]`.
    pub tokens: TensorData,
    /// Their logprobs (`float32`), same shape.
    pub logprobs: TensorData,
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledSequence {
    /// Why generation stopped.
    pub stop_reason: StopReason,
    /// Id from the submission's `sample_sequence_ids` (not part of the server's payload).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sequence_id: String,
    /// Generated token ids.
    pub tokens: Vec<u32>,
    /// Logprob of each generated token, if requested.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub logprobs: Option<Vec<f32>>,
    /// Top-k logprobs per generated token, if requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topk_logprobs: Option<TopkLogprobs>,
}

/// Final result of a sample (protobuf on the 0.38 wire; this is its JSON form).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SampleResponse {
    /// The generated sequences, in submission order.
    pub sequences: Vec<SampledSequence>,
    /// Per prompt position logprob; `None` where not computed (always position 0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::json::finite"
    )]
    pub prompt_logprobs: Option<Vec<Option<f32>>>,
    /// Top-k logprobs per prompt position, if requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topk_prompt_logprobs: Option<TopkLogprobs>,
    /// Scores of `SampleRequest::target_prompt_logprobs` (same shape/layout, `float32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_prompt_logprobs: Option<TensorData>,
    /// Prompt tokens served from the prefix cache.
    #[serde(default)]
    pub prompt_cache_hit_tokens: u64,
    /// Alternative prompt tokens, if `prompt_alt_tokens_k > 0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_alt_tokens: Option<PromptAltTokens>,
}

impl SampleResponse {
    /// Fills `sequence_id`s from the submission's `sample_sequence_ids`.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] if the counts differ (the SDK refuses that too).
    pub fn attach_sequence_ids(&mut self, ids: &[String]) -> Result<()> {
        if ids.len() != self.sequences.len() {
            return Err(Error::InvalidValue {
                field: "sample_sequence_ids".to_owned(),
                reason: format!("{} ids for {} sequences", ids.len(), self.sequences.len()),
            });
        }
        for (seq, id) in self.sequences.iter_mut().zip(ids) {
            seq.sequence_id.clone_from(id);
        }
        Ok(())
    }
}

type_last_struct! {
    /// `POST /api/v1/create_sampling_session`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CreateSamplingSessionRequest = "create_sampling_session" {
        /// The owning session.
        pub session_id: String,
        /// Per-session sampling counter.
        pub sampling_session_seq_id: u64,
        /// Base model to sample.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub base_model: Option<String>,
        /// `tinker://` sampler checkpoint to sample.
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub model_path: Option<String>,
    }
}

impl CreateSamplingSessionRequest {
    /// The SDK's check: at least one of `base_model` / `model_path`, the latter a
    /// `tinker://` path.
    ///
    /// # Errors
    /// [`Error::InvalidValue`].
    pub fn validate(&self) -> Result<()> {
        if let Some(path) = &self.model_path
            && !path.starts_with("tinker://")
        {
            return Err(Error::InvalidValue {
                field: "model_path".to_owned(),
                reason: "must start with tinker://".to_owned(),
            });
        }
        if self.base_model.is_none() && self.model_path.is_none() {
            return Err(Error::InvalidValue {
                field: "base_model".to_owned(),
                reason: "either base_model or model_path must be given".to_owned(),
            });
        }
        Ok(())
    }
}

/// Response of `create_sampling_session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSamplingSessionResponse {
    /// The new sampling session (`<session_id>:sample:<n>`).
    pub sampling_session_id: String,
}

type_last_struct! {
    /// `POST /api/v1/join_sampling_session`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct JoinSamplingSessionRequest = "join_sampling_session" {
        /// The sampling session to join.
        pub sampling_session_id: String,
    }
}

/// Response of `join_sampling_session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinSamplingSessionResponse {
    /// Clone id allocated to the caller (the original client is 0).
    pub client_counter: u64,
}

/// Response of `GET /api/v1/samplers/{sampler_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSamplerResponse {
    /// The sampler (sampling session) id.
    pub sampler_id: String,
    /// Its base model.
    pub base_model: String,
    /// Its checkpoint path, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
}
