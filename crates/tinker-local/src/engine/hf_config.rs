//! Hugging Face model folders: finding one (a path, or a repo id in the local hub cache) and
//! turning its `config.json` into a [`ModelSpec`].
//!
//! Supported `model_type`s: `llama`, `qwen2`, `qwen3`, `mistral`. Anything the engine would
//! compute differently from `transformers` (another activation, MLP biases, an unknown RoPE
//! scaling) is refused with a clear error rather than served wrong.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::checkpoint::read_json;
use super::error::{EngineError, Result};
use super::hf_weights;
use super::spec::{ModelSpec, RopeScaling, WeightSource, WeightsDtype};
use super::weights::check_spec;

/// Longest context served for a Hugging Face model, whatever its config allows: attention
/// here is O(T²) in memory, and the RoPE tables are built for every position up front.
pub const MAX_SERVED_CONTEXT: usize = 32_768;

/// The model folder `source` names: an existing directory, or a repo id (`org/name`) found
/// offline in the Hugging Face hub cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`), at the snapshot `refs/main` points to (or the only one).
pub fn resolve_model_dir(source: &str) -> Result<PathBuf> {
    resolve_in(source, hub_cache())
}

fn resolve_in(source: &str, cache: Option<PathBuf>) -> Result<PathBuf> {
    let path = Path::new(source);
    if path.is_dir() {
        return path
            .canonicalize()
            .map_err(|e| EngineError::user(format!("model folder {}: {e}", path.display())));
    }
    let parts: Vec<&str> = source.split('/').collect();
    let repo_like = parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if !repo_like {
        return Err(EngineError::user(format!(
            "model {source:?} is neither a folder nor a Hugging Face repo id (org/name)"
        )));
    }
    let cache = cache.ok_or_else(|| {
        EngineError::user(format!(
            "model {source:?}: no folder of that name, and no Hugging Face cache (set HF_HOME)"
        ))
    })?;
    let repo = cache.join(format!("models--{}--{}", parts[0], parts[1]));
    let snapshots = repo.join("snapshots");
    let missing = || {
        EngineError::user(format!(
            "model {source:?} is not in the Hugging Face cache {} (download it first; tinker-local works offline)",
            cache.display()
        ))
    };
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let rev = rev.trim();
        let valid = !rev.is_empty() && rev.chars().all(|c| c.is_ascii_alphanumeric());
        let dir = snapshots.join(rev);
        if valid && dir.is_dir() {
            return Ok(dir);
        }
    }
    let found: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .map_err(|_| missing())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(missing()),
        _ => Err(EngineError::user(format!(
            "model {source:?} has {} snapshots in {} and no refs/main; name the snapshot folder instead",
            found.len(),
            snapshots.display()
        ))),
    }
}

fn hub_cache() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// A served model named `name` from the Hugging Face folder (or cached repo id) `source`:
/// reads `config.json`, checks that `tokenizer.json` is there and that the safetensors hold
/// every weight at the expected shape (headers only; the weights load on first use).
pub fn hf_model(name: &str, source: &str) -> Result<ModelSpec> {
    let dir = resolve_model_dir(source)?;
    let config = read_json(&dir.join("config.json"))?;
    let spec = spec_from_config(name, &dir, &config)
        .map_err(|e| EngineError::user(format!("model {name} ({}): {e}", dir.display())))?;
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        if !dir.join(file).is_file() {
            return Err(EngineError::user(format!(
                "model {name}: {} has no {file}",
                dir.display()
            )));
        }
    }
    hf_weights::check(&spec, &dir)?;
    Ok(spec)
}

fn usize_of(config: &Value, key: &str) -> std::result::Result<Option<usize>, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| format!("config.json: {key} is not a non-negative integer")),
    }
}

fn required(config: &Value, key: &str) -> std::result::Result<usize, String> {
    usize_of(config, key)?.ok_or_else(|| format!("config.json has no {key}"))
}

fn f64_of(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// The RoPE base and scaling: `rope_theta` + `rope_scaling` (transformers 4.x) or
/// `rope_parameters` (transformers 5).
fn rope_of(config: &Value) -> std::result::Result<(f32, RopeScaling), String> {
    let params = config
        .get("rope_parameters")
        .filter(|v| v.is_object())
        .or_else(|| config.get("rope_scaling").filter(|v| v.is_object()));
    let theta = f64_of(config.get("rope_theta"))
        .or_else(|| f64_of(params.and_then(|p| p.get("rope_theta"))))
        .unwrap_or(10_000.0);
    let Some(p) = params else {
        return Ok((theta as f32, RopeScaling::None));
    };
    let kind = p
        .get("rope_type")
        .or_else(|| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| {
        f64_of(p.get(k))
            .map(|x| x as f32)
            .ok_or_else(|| format!("config.json: rope scaling {kind:?} needs {k}"))
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position: num("original_max_position_embeddings")?,
        },
        other => return Err(format!("RoPE scaling {other:?} is not supported")),
    };
    Ok((theta as f32, scaling))
}

/// The first `eos_token_id` (an integer or a list in `config.json`).
fn eos_of(config: &Value) -> Option<u32> {
    let v = config.get("eos_token_id")?;
    let first = v.as_array().and_then(|a| a.first()).unwrap_or(v);
    first.as_u64().and_then(|n| u32::try_from(n).ok())
}

pub(crate) fn spec_from_config(
    name: &str,
    dir: &Path,
    config: &Value,
) -> std::result::Result<ModelSpec, String> {
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or("config.json has no model_type")?;
    if !matches!(model_type, "llama" | "qwen2" | "qwen3" | "mistral") {
        return Err(format!(
            "model_type {model_type:?} is not supported (llama, qwen2, qwen3, mistral are)"
        ));
    }
    let act = config
        .get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("silu");
    if act != "silu" {
        return Err(format!("hidden_act {act:?} is not supported (silu is)"));
    }
    if config.get("mlp_bias").and_then(Value::as_bool) == Some(true) {
        return Err("mlp_bias is not supported".into());
    }
    let flag = |k: &str| config.get(k).and_then(Value::as_bool).unwrap_or(false);
    // Qwen2 always has q/k/v biases; Llama, Mistral and Qwen3 only with attention_bias,
    // which also puts one on o_proj: not supported.
    if model_type != "qwen2" && flag("attention_bias") {
        return Err("attention_bias is not supported".into());
    }
    let hidden = required(config, "hidden_size")?;
    let heads = required(config, "num_attention_heads")?;
    let kv_heads = usize_of(config, "num_key_value_heads")?.unwrap_or(heads);
    let head_dim = match usize_of(config, "head_dim")? {
        Some(d) => d,
        None if heads > 0 && hidden.is_multiple_of(heads) => hidden / heads,
        None => return Err("hidden_size is not a multiple of num_attention_heads".into()),
    };
    let mut max_context = required(config, "max_position_embeddings")?.min(MAX_SERVED_CONTEXT);
    // Sliding-window attention is not implemented: serving no more than the window keeps
    // the results exact.
    let sliding = match model_type {
        "mistral" => true,
        "qwen2" | "qwen3" => flag("use_sliding_window"),
        _ => false,
    };
    if sliding && let Some(w) = usize_of(config, "sliding_window")? {
        max_context = max_context.min(w);
    }
    let (rope_theta, rope_scaling) = rope_of(config)?;
    let spec = ModelSpec {
        name: name.to_string(),
        vocab_size: required(config, "vocab_size")?,
        hidden,
        layers: required(config, "num_hidden_layers")?,
        heads,
        kv_heads,
        head_dim,
        intermediate: required(config, "intermediate_size")?,
        max_context,
        rope_theta,
        rope_scaling,
        norm_eps: f64_of(config.get("rms_norm_eps")).unwrap_or(1e-6),
        qkv_bias: model_type == "qwen2",
        qk_norm: model_type == "qwen3",
        tied_embeddings: flag("tie_word_embeddings"),
        weights: WeightSource::HfDir(dir.to_path_buf()),
        weights_dtype: WeightsDtype::F32,
        tokenizer_dir: dir.to_path_buf(),
        eos_token_id: eos_of(config).ok_or("config.json has no eos_token_id")?,
    };
    check_spec(&spec).map_err(|e| e.message().to_string())?;
    Ok(spec)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn repo_ids_resolve_offline_from_the_hub_cache() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--Qwen--Qwen3-0.6B");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        let c = || Some(cache.path().to_path_buf());
        // The only snapshot, then the one refs/main names.
        assert_eq!(resolve_in("Qwen/Qwen3-0.6B", c()).unwrap(), snap);
        let other = repo.join("snapshots").join("def456");
        std::fs::create_dir_all(&other).unwrap();
        assert!(resolve_in("Qwen/Qwen3-0.6B", c()).is_err());
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "def456\n").unwrap();
        assert_eq!(resolve_in("Qwen/Qwen3-0.6B", c()).unwrap(), other);
        let missing = resolve_in("Qwen/Other", c()).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("not in the Hugging Face cache"),
            "{missing}"
        );
        assert!(resolve_in("../etc/passwd", c()).is_err());
        assert!(resolve_in("Qwen/Qwen3-0.6B", None).is_err());
    }
}
