//! `SampleResponse` ↔ protobuf (docs/protocol.md §4.4).
//!
//! Presence matters: the `optional` fields (`prompt_logprobs`, top-k matrices, per-sequence
//! `logprobs`, `target_prompt_logprobs`, `prompt_alt_tokens`) are written only when the
//! public value is `Some`, and decoded as the SDK does: absent, empty bytes, or a top-k
//! with `k == 0` or `length == 0` all mean "not requested". NaN prompt logprobs are the
//! wire form of `None` entries. `sequence_id`s are not on the wire (the client fills them
//! from the submission, see [`SampleResponse::attach_sequence_ids`]).

use prost::Message;

use super::tensor::tensor_from_wire;
use super::{invalid, packed, wire};
use crate::error::Result;
use crate::sampling::{PromptAltTokens, SampleResponse, SampledSequence, StopReason, TopkLogprobs};

impl SampleResponse {
    /// Encodes the response as the protobuf result of a sampling future (the server side).
    ///
    /// # Errors
    /// [`crate::Error::InvalidValue`] for what the wire cannot carry: an unknown stop
    /// reason, a token id or count beyond int32, top-k matrices whose sizes disagree.
    pub fn encode_proto(&self) -> Result<Vec<u8>> {
        Ok(wire::SampleResponse::try_from(self)?.encode_to_vec())
    }

    /// Decodes a protobuf `SampleResponse` as the SDK does. `sequence_id`s are left empty.
    ///
    /// # Errors
    /// [`crate::Error::InvalidValue`] naming the field of a malformed message (unknown stop
    /// reason, negative token id, ragged arrays, top-k matrices of the wrong size).
    pub fn decode_proto(bytes: &[u8]) -> Result<Self> {
        let msg = wire::SampleResponse::decode(bytes)
            .map_err(|e| invalid("SampleResponse", format!("malformed protobuf: {e}")))?;
        Self::try_from(msg)
    }
}

// ---------------------------------------------------------------------------------------
// public → prost

fn stop_reason_to_wire(reason: &StopReason, path: &str) -> Result<wire::StopReason> {
    match reason {
        StopReason::Stop => Ok(wire::StopReason::Stop),
        StopReason::Length => Ok(wire::StopReason::Length),
        StopReason::Unknown(other) => Err(invalid(
            path,
            format!("stop reason {other:?} has no protobuf value"),
        )),
    }
}

fn u32_field(value: usize, path: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| invalid(path, format!("{value} does not fit in uint32")))
}

fn topk_to_wire(topk: &TopkLogprobs, path: &str) -> Result<wire::TopkLogprobs> {
    let cells = topk.token_ids.len();
    let consistent = cells == topk.logprobs.len()
        && if topk.k == 0 {
            cells == 0
        } else {
            cells.is_multiple_of(topk.k)
        };
    if !consistent {
        return Err(invalid(
            path,
            format!(
                "{} token ids and {} logprobs do not form rows of k = {}",
                cells,
                topk.logprobs.len(),
                topk.k
            ),
        ));
    }
    packed::check_int32_tokens(&topk.token_ids, &format!("{path}.token_ids"))?;
    Ok(wire::TopkLogprobs {
        token_ids: packed::to_bytes(&topk.token_ids),
        logprobs: packed::to_bytes(&topk.logprobs),
        k: u32_field(topk.k, &format!("{path}.k"))?,
        length: u32_field(topk.len(), &format!("{path}.length"))?,
    })
}

fn sequence_to_wire(seq: &SampledSequence, path: &str) -> Result<wire::SampledSequence> {
    packed::check_int32_tokens(&seq.tokens, &format!("{path}.tokens"))?;
    Ok(wire::SampledSequence {
        stop_reason: stop_reason_to_wire(&seq.stop_reason, &format!("{path}.stop_reason"))? as i32,
        tokens: packed::to_bytes(&seq.tokens),
        logprobs: seq.logprobs.as_deref().map(packed::to_bytes),
        topk_sampled_logprobs: seq
            .topk_logprobs
            .as_ref()
            .map(|t| topk_to_wire(t, &format!("{path}.topk_logprobs")))
            .transpose()?,
    })
}

impl TryFrom<&SampleResponse> for wire::SampleResponse {
    type Error = crate::error::Error;

    fn try_from(resp: &SampleResponse) -> Result<Self> {
        let prompt_logprobs = resp.prompt_logprobs.as_ref().map(|lps| {
            let values: Vec<f32> = lps.iter().map(|lp| lp.unwrap_or(f32::NAN)).collect();
            packed::to_bytes(&values)
        });
        let prompt_cache_hit_tokens =
            i32::try_from(resp.prompt_cache_hit_tokens).map_err(|_| {
                invalid(
                    "prompt_cache_hit_tokens",
                    format!("{} does not fit in int32", resp.prompt_cache_hit_tokens),
                )
            })?;
        Ok(Self {
            sequences: resp
                .sequences
                .iter()
                .enumerate()
                .map(|(i, s)| sequence_to_wire(s, &format!("sequences[{i}]")))
                .collect::<Result<_>>()?,
            prompt_logprobs,
            topk_prompt_logprobs: resp
                .topk_prompt_logprobs
                .as_ref()
                .map(|t| topk_to_wire(t, "topk_prompt_logprobs"))
                .transpose()?,
            prompt_cache_hit_tokens,
            target_prompt_logprobs: resp.target_prompt_logprobs.as_ref().map(wire::Tensor::from),
            prompt_alt_tokens: resp
                .prompt_alt_tokens
                .as_ref()
                .map(|alt| wire::PromptAltTokens {
                    tokens: Some(wire::Tensor::from(&alt.tokens)),
                    logprobs: Some(wire::Tensor::from(&alt.logprobs)),
                }),
        })
    }
}

// ---------------------------------------------------------------------------------------
// prost → public

fn topk_from_wire(msg: wire::TopkLogprobs, path: &str) -> Result<Option<TopkLogprobs>> {
    if msg.k == 0 || msg.length == 0 {
        return Ok(None);
    }
    let token_ids = packed::read_tokens(&msg.token_ids, &format!("{path}.token_ids"))?;
    let logprobs: Vec<f32> = packed::read(&msg.logprobs, &format!("{path}.logprobs"))?;
    let cells = u64::from(msg.k) * u64::from(msg.length);
    for (field, len) in [("token_ids", token_ids.len()), ("logprobs", logprobs.len())] {
        if len as u64 != cells {
            return Err(invalid(
                &format!("{path}.{field}"),
                format!(
                    "holds {len} cells, expected length × k = {} × {}",
                    msg.length, msg.k
                ),
            ));
        }
    }
    Ok(Some(TopkLogprobs {
        token_ids,
        logprobs,
        k: msg.k as usize,
    }))
}

fn sequence_from_wire(msg: wire::SampledSequence, path: &str) -> Result<SampledSequence> {
    let stop_reason = match wire::StopReason::try_from(msg.stop_reason) {
        Ok(wire::StopReason::Stop) => StopReason::Stop,
        Ok(wire::StopReason::Length) => StopReason::Length,
        Err(_) => {
            return Err(invalid(
                &format!("{path}.stop_reason"),
                format!("unknown stop reason enum value {}", msg.stop_reason),
            ));
        }
    };
    let logprobs = match msg.logprobs {
        Some(bytes) if !bytes.is_empty() => {
            Some(packed::read(&bytes, &format!("{path}.logprobs"))?)
        }
        _ => None,
    };
    let topk_logprobs = match msg.topk_sampled_logprobs {
        Some(topk) => topk_from_wire(topk, &format!("{path}.topk_sampled_logprobs"))?,
        None => None,
    };
    Ok(SampledSequence {
        stop_reason,
        sequence_id: String::new(),
        tokens: packed::read_tokens(&msg.tokens, &format!("{path}.tokens"))?,
        logprobs,
        topk_logprobs,
    })
}

impl TryFrom<wire::SampleResponse> for SampleResponse {
    type Error = crate::error::Error;

    fn try_from(msg: wire::SampleResponse) -> Result<Self> {
        let sequences = msg
            .sequences
            .into_iter()
            .enumerate()
            .map(|(i, s)| sequence_from_wire(s, &format!("sequences[{i}]")))
            .collect::<Result<_>>()?;
        let prompt_logprobs = match msg.prompt_logprobs {
            Some(bytes) if !bytes.is_empty() => {
                let values: Vec<f32> = packed::read(&bytes, "prompt_logprobs")?;
                Some(
                    values
                        .into_iter()
                        .map(|lp| (!lp.is_nan()).then_some(lp))
                        .collect(),
                )
            }
            _ => None,
        };
        let topk_prompt_logprobs = match msg.topk_prompt_logprobs {
            Some(topk) => topk_from_wire(topk, "topk_prompt_logprobs")?,
            None => None,
        };
        let target_prompt_logprobs = msg
            .target_prompt_logprobs
            .map(|t| tensor_from_wire(t, "target_prompt_logprobs"))
            .transpose()?;
        let prompt_alt_tokens = msg
            .prompt_alt_tokens
            .map(|alt| -> Result<PromptAltTokens> {
                let part = |tensor: Option<wire::Tensor>, field: &str| {
                    let path = format!("prompt_alt_tokens.{field}");
                    tensor_from_wire(
                        tensor.ok_or_else(|| invalid(&path, "missing".to_owned()))?,
                        &path,
                    )
                };
                Ok(PromptAltTokens {
                    tokens: part(alt.tokens, "tokens")?,
                    logprobs: part(alt.logprobs, "logprobs")?,
                })
            })
            .transpose()?;
        let prompt_cache_hit_tokens = u64::try_from(msg.prompt_cache_hit_tokens).map_err(|_| {
            invalid(
                "prompt_cache_hit_tokens",
                format!("{} is negative", msg.prompt_cache_hit_tokens),
            )
        })?;
        Ok(Self {
            sequences,
            prompt_logprobs,
            topk_prompt_logprobs,
            target_prompt_logprobs,
            prompt_cache_hit_tokens,
            prompt_alt_tokens,
        })
    }
}
