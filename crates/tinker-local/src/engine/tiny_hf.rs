//! Writes Hugging Face model folders with seeded random weights and the `config.json` layout
//! of a real architecture, so serving, tests, the conformance run and benchmarks exercise the
//! Hugging Face path without a network (`tinker-local tiny-model`).
//!
//! The folder holds `config.json`, `generation_config.json`, the weights (one
//! `model.safetensors`, or shards plus `model.safetensors.index.json`) in the chosen dtype,
//! and a copy of a tokenizer (`tokenizer.json`, `tokenizer_config.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde_json::{Value, json};

use super::checkpoint::write_atomic;
use super::error::{EngineError, Result};
use super::hf_config::spec_from_config;
use super::hf_weights::expected;
use super::spec::builtin_models;
use super::weights::Normal;

/// A supported Hugging Face architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HfArch {
    /// `LlamaForCausalLM` (Llama 3 style, with `llama3` RoPE scaling).
    Llama,
    /// `Qwen2ForCausalLM` (q/k/v biases; Qwen2 and Qwen2.5).
    Qwen2,
    /// `Qwen3ForCausalLM` (per-head q/k RMSNorm, explicit `head_dim`).
    Qwen3,
    /// `MistralForCausalLM` (sliding window in the config).
    Mistral,
}

impl HfArch {
    /// Every architecture.
    pub const ALL: [HfArch; 4] = [HfArch::Llama, HfArch::Qwen2, HfArch::Qwen3, HfArch::Mistral];

    /// The `model_type` of its `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            HfArch::Llama => "llama",
            HfArch::Qwen2 => "qwen2",
            HfArch::Qwen3 => "qwen3",
            HfArch::Mistral => "mistral",
        }
    }

    /// The architecture whose `model_type` is `name`.
    pub fn from_model_type(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.model_type() == name)
    }
}

/// Stored dtype of the written weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredDtype {
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
    /// f32.
    F32,
}

impl StoredDtype {
    fn dtype(self) -> DType {
        match self {
            StoredDtype::Bf16 => DType::BF16,
            StoredDtype::F16 => DType::F16,
            StoredDtype::F32 => DType::F32,
        }
    }

    fn torch_name(self) -> &'static str {
        match self {
            StoredDtype::Bf16 => "bfloat16",
            StoredDtype::F16 => "float16",
            StoredDtype::F32 => "float32",
        }
    }
}

/// What to write. [`TinyHfModel::tiny`] gives test-sized dimensions per architecture;
/// every field can be changed (e.g. real dimensions, for benchmarks).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TinyHfModel {
    /// Architecture (and `config.json` layout).
    pub arch: HfArch,
    /// Vocabulary size (may exceed the tokenizer's; the extra rows are never produced).
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// MLP width.
    pub intermediate: usize,
    /// `max_position_embeddings`.
    pub max_position: usize,
    /// `tie_word_embeddings`.
    pub tied: bool,
    /// Stored dtype.
    pub dtype: StoredDtype,
    /// Number of safetensors shards (1 = a single `model.safetensors`).
    pub shards: usize,
    /// Seed of the random weights.
    pub seed: u64,
    /// Folder whose `tokenizer.json` and `tokenizer_config.json` are copied.
    pub tokenizer_dir: PathBuf,
}

impl TinyHfModel {
    /// Test-sized dimensions (vocab 1024 with the `tinker-local/micro` tokenizer, hidden 32,
    /// 2 layers), each architecture with its own traits: Llama bf16 untied, Qwen2 f16 tied,
    /// Qwen3 f32 tied in two shards with `head_dim · heads ≠ hidden`, Mistral bf16 untied.
    pub fn tiny(arch: HfArch) -> Self {
        let micro = builtin_models()
            .into_iter()
            .next()
            .map(|m| m.tokenizer_dir)
            .unwrap_or_default();
        let (tied, dtype, shards, head_dim) = match arch {
            HfArch::Llama => (false, StoredDtype::Bf16, 1, 8),
            HfArch::Qwen2 => (true, StoredDtype::F16, 1, 8),
            HfArch::Qwen3 => (true, StoredDtype::F32, 2, 16),
            HfArch::Mistral => (false, StoredDtype::Bf16, 1, 8),
        };
        Self {
            arch,
            vocab_size: 1024,
            hidden: 32,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim,
            intermediate: 64,
            max_position: 2048,
            tied,
            dtype,
            shards,
            seed: 0x7469_6e79,
            tokenizer_dir: micro,
        }
    }

    /// Qwen3-0.6B's dimensions (vocab 151936, hidden 1024, 28 layers, 16/8 heads of 128,
    /// MLP 3072, tied, bf16), with random weights.
    pub fn qwen3_0_6b() -> Self {
        Self {
            vocab_size: 151_936,
            hidden: 1024,
            layers: 28,
            heads: 16,
            kv_heads: 8,
            head_dim: 128,
            intermediate: 3072,
            max_position: 40_960,
            dtype: StoredDtype::Bf16,
            shards: 1,
            ..Self::tiny(HfArch::Qwen3)
        }
    }

    /// The `config.json` this model gets, in its architecture's layout.
    pub fn config(&self) -> Value {
        let mut c = json!({
            "architectures": [match self.arch {
                HfArch::Llama => "LlamaForCausalLM",
                HfArch::Qwen2 => "Qwen2ForCausalLM",
                HfArch::Qwen3 => "Qwen3ForCausalLM",
                HfArch::Mistral => "MistralForCausalLM",
            }],
            "model_type": self.arch.model_type(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-6,
            "use_cache": true,
            "tie_word_embeddings": self.tied,
            "attention_dropout": 0.0,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "torch_dtype": self.dtype.torch_name(),
            "transformers_version": "4.51.0",
        });
        let extra = match self.arch {
            HfArch::Llama => json!({
                "attention_bias": false,
                "mlp_bias": false,
                "head_dim": self.head_dim,
                "pretraining_tp": 1,
                "rms_norm_eps": 1e-5,
                "rope_theta": 500000.0,
                "rope_scaling": {
                    "factor": 32.0,
                    "high_freq_factor": 4.0,
                    "low_freq_factor": 1.0,
                    "original_max_position_embeddings": 8192,
                    "rope_type": "llama3"
                },
            }),
            HfArch::Qwen2 => json!({
                "rope_theta": 1000000.0,
                "rope_scaling": null,
                "sliding_window": 32768,
                "use_sliding_window": false,
                "max_window_layers": 21,
            }),
            HfArch::Qwen3 => json!({
                "attention_bias": false,
                "head_dim": self.head_dim,
                "rope_theta": 1000000.0,
                "rope_scaling": null,
                "sliding_window": null,
                "use_sliding_window": false,
                "max_window_layers": 28,
            }),
            HfArch::Mistral => json!({
                "head_dim": self.head_dim,
                "rms_norm_eps": 1e-5,
                "rope_theta": 1000000.0,
                "sliding_window": 4096,
            }),
        };
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
            c.extend(extra);
        }
        c
    }

    /// Writes the folder `dir` (created if missing; existing files are replaced).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let config = self.config();
        let spec = spec_from_config("tiny", dir, &config).map_err(EngineError::user)?;
        let pretty = |v: &Value| {
            serde_json::to_vec_pretty(v)
                .map_err(|e| EngineError::internal(format!("encoding JSON: {e}")))
        };
        write_atomic(&dir.join("config.json"), &pretty(&config)?)?;
        let generation = json!({"bos_token_id": 0, "eos_token_id": 2, "do_sample": true});
        write_atomic(&dir.join("generation_config.json"), &pretty(&generation)?)?;
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            let from = self.tokenizer_dir.join(file);
            let bytes = std::fs::read(&from).map_err(|e| {
                EngineError::user(format!("reading tokenizer file {}: {e}", from.display()))
            })?;
            write_atomic(&dir.join(file), &bytes)?;
        }
        let mut rng = Normal::new(self.seed);
        let dtype = self.dtype.dtype();
        let mut tensors = Vec::new();
        for (name, shape) in expected(&spec) {
            let n: usize = shape.iter().product();
            let values = if name.ends_with("norm.weight") {
                // Norm weights near 1 (not exactly) so a missing or misplaced norm shows.
                let noise = rng.tensor(1, n, 0.1)?;
                (noise + 1.0)?
            } else if name.ends_with(".bias") {
                rng.tensor(1, n, 0.1)?
            } else if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
                rng.tensor(1, n, 2.0 / (self.hidden as f32).sqrt())?
            } else {
                rng.tensor(1, n, 1.0 / (shape[1] as f32).sqrt())?
            };
            tensors.push((name, values.reshape(shape)?.to_dtype(dtype)?));
        }
        self.write_weights(dir, tensors)
    }

    fn write_weights(&self, dir: &Path, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let meta = || Some(HashMap::from([("format".to_string(), "pt".to_string())]));
        let save = |path: &Path, part: Vec<(String, Tensor)>| -> Result<()> {
            let bytes = safetensors::serialize(part, meta()).map_err(|e| {
                EngineError::internal(format!("serialising {}: {e}", path.display()))
            })?;
            write_atomic(path, &bytes).map(|_| ())
        };
        let shards = self.shards.max(1);
        if shards == 1 {
            return save(&dir.join("model.safetensors"), tensors);
        }
        let total: usize = tensors
            .iter()
            .map(|(_, t)| t.elem_count() * t.dtype().size_in_bytes())
            .sum();
        let per = tensors.len().div_ceil(shards);
        let mut weight_map = serde_json::Map::new();
        let mut rest = tensors;
        for i in 0..shards {
            let tail = rest.split_off(per.min(rest.len()));
            let part = std::mem::replace(&mut rest, tail);
            let file = format!("model-{:05}-of-{shards:05}.safetensors", i + 1);
            for (name, _) in &part {
                weight_map.insert(name.clone(), Value::String(file.clone()));
            }
            save(&dir.join(&file), part)?;
        }
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| EngineError::internal(format!("encoding index: {e}")))?;
        write_atomic(&dir.join("model.safetensors.index.json"), &bytes).map(|_| ())
    }
}
