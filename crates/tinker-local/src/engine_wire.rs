//! The boundary between wire types and the engine's: a `forward_backward` request becomes
//! an engine batch (checked against what the engine supports), and engine outputs become
//! `ForwardBackwardOutput` / `SampleResponse` bodies. The protobuf coding itself lives in
//! `tinker_types::proto`; this module only maps types.

use std::collections::BTreeMap;

use tinker_types::loss::{LossConfigValue, LossFn, LossFnConfig};
use tinker_types::{
    ForwardBackwardRequest, ModelInputChunk, SampleResponse, SampledSequence, StopReason,
    TensorData, TensorValues, TopkLogprobs,
};

use std::sync::Arc;

use crate::engine::{
    CustomBatch, CustomGraph, ForwardOutput, Loss, LossInputs, SampleOutput, StopKind, Tensor,
    TrainExample,
};

/// Finds the custom loss `loss_id` for the model `model_id` (or says why not).
pub(crate) type CustomLossResolver<'a> = &'a dyn Fn(&str, &str) -> Result<Arc<CustomGraph>, String>;

/// Logprob of a top-k padding cell (the SDK drops such cells).
const TOPK_PAD_LOGPROB: f32 = -99999.0;

/// A decoded `forward_backward` request.
#[derive(Debug)]
pub(crate) struct FwdBwd {
    pub(crate) model_id: String,
    pub(crate) seq_id: i64,
    pub(crate) forward_only: bool,
    /// The batch, or why the request cannot run (reported through the future so the
    /// model's `seq_id` sequence has no gap).
    pub(crate) batch: Result<(Vec<TrainExample>, Loss), String>,
    /// Number of input tokens (for accounting).
    pub(crate) tokens: usize,
}

/// Decodes a (decompressed) `ForwardBackwardRequest` protobuf body with `tinker_types::proto`.
pub(crate) fn decode_forward_backward(body: &[u8]) -> Result<ForwardBackwardRequest, String> {
    ForwardBackwardRequest::decode_proto(body)
        .map_err(|e| format!("invalid ForwardBackwardRequest protobuf: {e}"))
}

/// Turns a decoded `ForwardBackwardRequest` into an engine batch; loss `custom` is looked up
/// with `custom`.
pub(crate) fn forward_backward_batch(
    req: ForwardBackwardRequest,
    custom: CustomLossResolver<'_>,
) -> Result<FwdBwd, String> {
    if req.model_id.is_empty() {
        return Err("model_id is required".to_owned());
    }
    let seq_id = match req.seq_id {
        Some(s) if s >= 1 => i64::try_from(s).map_err(|_| format!("seq_id {s} is too large"))?,
        other => return Err(format!("seq_id must be >= 1, got {}", other.unwrap_or(0))),
    };
    let tokens = req
        .data
        .iter()
        .map(|d| {
            d.model_input
                .chunks
                .iter()
                .map(|c| match c {
                    ModelInputChunk::EncodedText(t) => t.tokens.len(),
                    _ => 0,
                })
                .sum::<usize>()
        })
        .sum();
    let batch = build_batch(&req, custom);
    Ok(FwdBwd {
        model_id: req.model_id,
        seq_id,
        forward_only: req.forward_only,
        batch,
        tokens,
    })
}

fn build_batch(
    req: &ForwardBackwardRequest,
    custom: CustomLossResolver<'_>,
) -> Result<(Vec<TrainExample>, Loss), String> {
    if req.data.is_empty() {
        return Err("forward_backward needs at least one datum".to_owned());
    }
    let empty = LossFnConfig::new();
    let config = req.loss_fn_config.as_ref().unwrap_or(&empty);
    let graph = if req.loss_fn == LossFn::Custom {
        Some(custom(&req.model_id, &custom_loss_id(config)?)?)
    } else {
        None
    };
    let mut custom_inputs = Vec::new();
    let loss = match &graph {
        Some(_) => Loss::CrossEntropy, // replaced by the custom batch below
        None => loss_from(req.loss_fn.as_str(), &numeric_config(config))?,
    };
    let needs_rl_inputs = !matches!(loss, Loss::CrossEntropy);
    let mut batch = Vec::with_capacity(req.data.len());
    for (i, datum) in req.data.iter().enumerate() {
        let mut tokens = Vec::new();
        for chunk in &datum.model_input.chunks {
            match chunk {
                ModelInputChunk::EncodedText(t) => tokens.extend_from_slice(&t.tokens),
                _ => {
                    return Err(format!(
                        "datum {i}: tinker-local models are text-only (image and dmel chunks are not supported)"
                    ));
                }
            }
        }
        if tokens.is_empty() {
            return Err(format!("datum {i}: model_input is empty"));
        }
        let n = tokens.len();
        let inputs = &datum.loss_fn_inputs;
        let target_tokens = match inputs.get("target_tokens") {
            Some(t) => tensor_i64(t, n, i, "target_tokens")?,
            None => {
                return Err(format!(
                    "datum {i}: loss_fn_inputs.target_tokens is required"
                ));
            }
        };
        let f32_input = |name: &str| -> Result<Option<Vec<f32>>, String> {
            inputs
                .get(name)
                .map(|t| tensor_f32(t, n, i, name))
                .transpose()
        };
        if let Some(graph) = &graph {
            // A custom loss reads exactly its declared inputs, at their declared ranks.
            custom_inputs.push(
                graph.inputs()[1..]
                    .iter()
                    .map(|input| {
                        let t = inputs.get(&input.name).ok_or_else(|| {
                            format!(
                                "datum {i}: loss_fn_inputs.{} is required by custom loss {:?}",
                                input.name,
                                graph.name()
                            )
                        })?;
                        tensor_any(t, input.rank, i, &input.name)
                    })
                    .collect::<Result<Vec<_>, String>>()?,
            );
            batch.push(TrainExample {
                tokens,
                inputs: LossInputs {
                    target_tokens,
                    weights: None,
                    advantages: None,
                    logprobs: None,
                },
            });
            continue;
        }
        let weights = f32_input("weights")?;
        let advantages = f32_input("advantages")?;
        let logprobs = f32_input("logprobs")?;
        if needs_rl_inputs {
            if advantages.is_none() {
                return Err(format!(
                    "datum {i}: loss {} needs `advantages`",
                    req.loss_fn
                ));
            }
            if logprobs.is_none() {
                return Err(format!("datum {i}: loss {} needs `logprobs`", req.loss_fn));
            }
        }
        batch.push(TrainExample {
            tokens,
            inputs: LossInputs {
                target_tokens,
                weights,
                advantages,
                logprobs,
            },
        });
    }
    let loss = match graph {
        Some(graph) => Loss::Custom(CustomBatch {
            graph,
            inputs: custom_inputs,
        }),
        None => loss,
    };
    Ok((batch, loss))
}

/// `loss_fn_config = {"loss_id": "..."}` of a `custom` loss.
fn custom_loss_id(config: &LossFnConfig) -> Result<String, String> {
    let id = config.get("loss_id").and_then(|v| match v {
        LossConfigValue::Text(t) => Some(t.clone()),
        _ => None,
    });
    match (id, config.keys().find(|k| *k != "loss_id")) {
        (_, Some(k)) => Err(format!("loss_fn `custom` does not take config key `{k}`")),
        (Some(id), None) => Ok(id),
        (None, None) => Err(
            "loss_fn `custom` needs loss_fn_config {\"loss_id\": ...} from create_custom_loss"
                .to_owned(),
        ),
    }
}

/// A tensor's elements as `f64`.
fn values_f64(t: &TensorData) -> Vec<f64> {
    match t.values() {
        TensorValues::Float32(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TensorValues::Int64(v) => v.iter().map(|x| *x as f64).collect(),
        _ => Vec::new(),
    }
}

/// A custom loss input of any float or integer dtype, at its declared rank. A tensor
/// without a shape is a scalar when rank 0 is declared, else a vector (the SDK's
/// `shape=None`).
fn tensor_any(t: &TensorData, rank: u8, datum: usize, name: &str) -> Result<Tensor, String> {
    let bad = |why: String| format!("datum {datum}: loss_fn_inputs.{name}: {why}");
    if t.is_sparse() {
        return Err(bad("custom loss inputs must be dense".to_owned()));
    }
    let data = values_f64(t);
    let shape: Vec<usize> = match t.shape() {
        None | Some([]) if rank == 0 => Vec::new(),
        None | Some([]) => vec![data.len()],
        Some(dims) => dims.to_vec(),
    };
    if shape.len() != usize::from(rank) {
        return Err(bad(format!(
            "has rank {}, but the custom loss declared rank {rank}",
            shape.len()
        )));
    }
    if shape.iter().product::<usize>() != data.len() {
        return Err(bad(format!("{} values for shape {shape:?}", data.len())));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(bad("values must be finite".to_owned()));
    }
    Ok(Tensor { shape, data })
}

/// The numeric entries of a loss config.
fn numeric_config(config: &LossFnConfig) -> BTreeMap<String, f64> {
    config
        .iter()
        .filter_map(|(k, v)| match v {
            LossConfigValue::Number(x) => Some((k.clone(), *x)),
            _ => None,
        })
        .collect()
}

fn loss_from(name: &str, config: &BTreeMap<String, f64>) -> Result<Loss, String> {
    let get = |key: &str, default: f64| -> Result<f32, String> {
        let v = config.get(key).copied().unwrap_or(default);
        if v.is_finite() {
            Ok(v as f32)
        } else {
            Err(format!("loss_fn_config.{key} must be finite"))
        }
    };
    let known: &[&str] = match name {
        "cross_entropy" | "importance_sampling" => &[],
        "ppo" | "cispo" => &["clip_low_threshold", "clip_high_threshold"],
        "dro" => &["beta"],
        "gspo" | "stable_reinforce" | "custom" => {
            return Err(format!("loss_fn `{name}` is not supported by tinker-local"));
        }
        other => return Err(format!("unknown loss_fn `{other}`")),
    };
    if let Some(k) = config.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("loss_fn `{name}` does not take config key `{k}`"));
    }
    Ok(match name {
        "cross_entropy" => Loss::CrossEntropy,
        "importance_sampling" => Loss::ImportanceSampling,
        "ppo" => Loss::Ppo {
            clip_low: get("clip_low_threshold", 0.8)?,
            clip_high: get("clip_high_threshold", 1.2)?,
        },
        "cispo" => Loss::Cispo {
            clip_low: get("clip_low_threshold", 0.8)?,
            clip_high: get("clip_high_threshold", 1.2)?,
        },
        _ => Loss::Dro {
            beta: get("beta", 0.05)?,
        },
    })
}

/// Checks a loss input's shape (1-D, one entry per token) and density.
fn check_vector(t: &TensorData, n: usize, datum: usize, name: &str) -> Result<(), String> {
    let bad = |why: String| format!("datum {datum}: loss_fn_inputs.{name}: {why}");
    if let Some(shape) = t.shape() {
        if shape.len() > 1 {
            return Err(bad(format!(
                "shape {shape:?} is not supported (tinker-local takes 1-D inputs)"
            )));
        }
        if let Some(&len) = shape.first()
            && len != n
        {
            return Err(bad(format!("length {len} does not match {n} input tokens")));
        }
    }
    if t.is_sparse() {
        return Err(bad(
            "sparse tensors are not supported for 1-D inputs".to_owned()
        ));
    }
    if t.values().len() != n {
        return Err(bad(format!(
            "{} values for {n} input tokens",
            t.values().len()
        )));
    }
    Ok(())
}

fn tensor_i64(t: &TensorData, n: usize, datum: usize, name: &str) -> Result<Vec<i64>, String> {
    check_vector(t, n, datum, name)?;
    match t.values() {
        TensorValues::Int64(v) => Ok(v.clone()),
        _ => Err(format!(
            "datum {datum}: loss_fn_inputs.{name}: must be an integer tensor"
        )),
    }
}

fn tensor_f32(t: &TensorData, n: usize, datum: usize, name: &str) -> Result<Vec<f32>, String> {
    check_vector(t, n, datum, name)?;
    let out: Vec<f32> = match t.values() {
        TensorValues::Float32(v) => v.clone(),
        TensorValues::Int64(v) => v.iter().map(|x| *x as f32).collect(),
        _ => {
            return Err(format!(
                "datum {datum}: loss_fn_inputs.{name}: must be a float tensor"
            ));
        }
    };
    if out.iter().any(|v| !v.is_finite()) {
        return Err(format!(
            "datum {datum}: loss_fn_inputs.{name}: values must be finite"
        ));
    }
    Ok(out)
}

/// True for metric keys the SDK's chunk combiner accepts (`name:reduction`).
pub(crate) fn valid_metric_key(key: &str) -> bool {
    let mut parts = key.split(':');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(name), Some("mean" | "sum" | "min" | "max" | "slack" | "hash2" | "unique"), None)
            if !name.is_empty()
    )
}

/// Encodes a forward/backward result: per datum a `logprobs` vector, plus the metrics the
/// SDK's chunk combiner accepts.
pub(crate) fn encode_forward_output(out: &ForwardOutput) -> Result<Vec<u8>, String> {
    let output = tinker_types::ForwardBackwardOutput {
        loss_fn_output_type: "ArrayRecord".to_owned(),
        loss_fn_outputs: out
            .logprobs
            .iter()
            .map(|lp| BTreeMap::from([("logprobs".to_owned(), TensorData::vector_f32(lp.clone()))]))
            .collect(),
        metrics: out
            .metrics
            .iter()
            .filter(|(k, _)| valid_metric_key(k))
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    };
    output
        .encode_proto()
        .map_err(|e| format!("encoding the forward/backward output: {e}"))
}

/// Packs rows of `(token, logprob)` pairs into a top-k matrix, padding short rows with the
/// SDK's sentinel cell.
fn topk_matrix(rows: &[Vec<(u32, f32)>]) -> Option<TopkLogprobs> {
    let k = rows.iter().map(Vec::len).max().unwrap_or(0);
    if k == 0 {
        return None;
    }
    let mut token_ids = Vec::with_capacity(rows.len() * k);
    let mut logprobs = Vec::with_capacity(rows.len() * k);
    for row in rows {
        for j in 0..k {
            let (id, lp) = row.get(j).copied().unwrap_or((0, TOPK_PAD_LOGPROB));
            token_ids.push(id);
            logprobs.push(lp);
        }
    }
    Some(TopkLogprobs {
        token_ids,
        logprobs,
        k,
    })
}

/// Encodes a sampling result. `prompt_logprobs_last_n` blanks (`None` / padding) every
/// prompt position before the last `n`.
pub(crate) fn encode_sample_output(
    out: &SampleOutput,
    prompt_logprobs_last_n: Option<usize>,
) -> Result<Vec<u8>, String> {
    let sequences = out
        .sequences
        .iter()
        .map(|s| SampledSequence {
            stop_reason: match s.stop {
                StopKind::Length => StopReason::Length,
                _ => StopReason::Stop,
            },
            sequence_id: String::new(),
            tokens: s.tokens.clone(),
            logprobs: (!s.logprobs.is_empty()).then(|| s.logprobs.clone()),
            topk_logprobs: s.topk.as_deref().and_then(topk_matrix),
        })
        .collect();
    let keep_from = |len: usize| prompt_logprobs_last_n.map_or(0, |n| len.saturating_sub(n));
    let prompt_logprobs = out.prompt_logprobs.as_ref().map(|lps| {
        let from = keep_from(lps.len());
        lps.iter()
            .enumerate()
            .map(|(i, v)| (i >= from && !v.is_nan()).then_some(*v))
            .collect()
    });
    let topk_prompt_logprobs = out.topk_prompt_logprobs.as_ref().and_then(|rows| {
        let from = keep_from(rows.len());
        let masked: Vec<Vec<(u32, f32)>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| if i < from { Vec::new() } else { r.clone() })
            .collect();
        topk_matrix(&masked)
    });
    let response = SampleResponse {
        sequences,
        prompt_logprobs,
        topk_prompt_logprobs,
        target_prompt_logprobs: None,
        prompt_cache_hit_tokens: 0,
        prompt_alt_tokens: None,
    };
    response
        .encode_proto()
        .map_err(|e| format!("encoding the sample response: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_keys() {
        assert!(valid_metric_key("loss:sum"));
        assert!(valid_metric_key("custom/x:mean"));
        assert!(!valid_metric_key("loss"));
        assert!(!valid_metric_key("a:b:sum"));
        assert!(!valid_metric_key("loss:avg"));
    }

    fn dense_f32(values: &[f32], shape: &[usize]) -> TensorData {
        let shape = (!shape.is_empty()).then(|| shape.to_vec());
        TensorData::new(TensorValues::Float32(values.to_vec()), shape).unwrap()
    }

    #[test]
    fn custom_loss_inputs_take_their_declared_rank() {
        let scalar = tensor_any(&dense_f32(&[0.5], &[]), 0, 0, "s").unwrap();
        assert_eq!((scalar.shape, scalar.data), (vec![], vec![0.5]));
        // No shape is a vector (the SDK's `shape=None`).
        let v = tensor_any(&dense_f32(&[1.0, 2.0], &[]), 1, 0, "v").unwrap();
        assert_eq!(v.shape, vec![2]);
        let m = tensor_any(&dense_f32(&[1.0; 6], &[3, 2]), 2, 0, "m").unwrap();
        assert_eq!(m.shape, vec![3, 2]);
        let err = tensor_any(&dense_f32(&[1.0; 6], &[3, 2]), 1, 4, "m").unwrap_err();
        assert!(err.contains("datum 4") && err.contains("rank 2"), "{err}");
        assert!(tensor_any(&dense_f32(&[1.0; 5], &[5]), 2, 0, "m").is_err());
        assert!(tensor_any(&dense_f32(&[f32::NAN], &[1]), 1, 0, "m").is_err());
    }

    #[test]
    fn rejects_unsupported_losses() {
        assert!(loss_from("custom", &BTreeMap::new()).is_err());
        assert!(loss_from("nope", &BTreeMap::new()).is_err());
        assert!(loss_from("cross_entropy", &BTreeMap::from([("beta".into(), 1.0)])).is_err());
        assert!(matches!(
            loss_from("ppo", &BTreeMap::from([("clip_low_threshold".into(), 0.7)])),
            Ok(Loss::Ppo { clip_low, clip_high }) if (clip_low - 0.7).abs() < 1e-6 && (clip_high - 1.2).abs() < 1e-6
        ));
    }
}
