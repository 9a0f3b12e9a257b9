//! Model and LoRA specifications, and the built-in models shipped with the crate.

use std::path::PathBuf;

/// The architecture and identity of a base model: a Llama/Qwen-style decoder
/// (RMSNorm, RoPE, grouped-query attention, SwiGLU MLP, untied lm_head).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Model name as clients see it, e.g. `"tinker-local/micro"`.
    pub name: String,
    /// Vocabulary size (rows of the embedding and of the lm_head).
    pub vocab_size: usize,
    /// Hidden (residual stream) width.
    pub hidden: usize,
    /// Number of decoder layers.
    pub layers: usize,
    /// Attention (query) heads; `hidden` must be divisible by it.
    pub heads: usize,
    /// Key/value heads (grouped-query attention); divides `heads`.
    pub kv_heads: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate: usize,
    /// Longest sequence (prompt + generation, or training datum) the model accepts.
    pub max_context: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Seed of the deterministic base weights.
    pub seed: u64,
    /// Absolute directory holding `tokenizer.json` and `tokenizer_config.json`.
    pub tokenizer_dir: PathBuf,
    /// Token that ends a generation when `stop_at_eos` is set.
    pub eos_token_id: u32,
}

impl ModelSpec {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads.max(1)
    }

    /// Number of base (frozen) parameters.
    pub fn parameter_count(&self) -> usize {
        let (h, v, i, d) = (
            self.hidden,
            self.vocab_size,
            self.intermediate,
            self.head_dim(),
        );
        let attn = h * h * 2 + 2 * h * self.kv_heads * d;
        let layer = attn + 3 * h * i + 2 * h;
        2 * v * h + self.layers * layer + h
    }
}

/// Which LoRA adapters a training model gets (Tinker's `lora_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraSpec {
    /// LoRA rank `r` (≥ 1).
    pub rank: usize,
    /// Seed of the `lora_A` initialisation; `None` uses a fixed default so runs are reproducible.
    pub seed: Option<u64>,
    /// Adapters on q/k/v/o projections.
    pub train_attn: bool,
    /// Adapters on gate/up/down projections.
    pub train_mlp: bool,
    /// Adapter on the lm_head (unembedding).
    pub train_unembed: bool,
}

impl Default for LoraSpec {
    fn default() -> Self {
        Self {
            rank: 32,
            seed: None,
            train_attn: true,
            train_mlp: true,
            train_unembed: true,
        }
    }
}

/// Directory of a shipped model's files, located relative to this crate's sources.
fn model_dir(short: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(short)
}

/// `<|im_end|>` in the shipped tokenizers (specials are ids 0, 1, 2).
const IM_END: u32 = 2;

/// The models every tinker-local server offers: `micro` (≈0.2M parameters, vocab 1024,
/// for tests that must finish in seconds) and `small` (≈5M parameters, vocab 4096).
pub fn builtin_models() -> Vec<ModelSpec> {
    vec![
        ModelSpec {
            name: "tinker-local/micro".into(),
            vocab_size: 1024,
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 176,
            max_context: 1024,
            rope_theta: 10_000.0,
            seed: 0x6d69_6372_6f00,
            tokenizer_dir: model_dir("micro"),
            eos_token_id: IM_END,
        },
        ModelSpec {
            name: "tinker-local/small".into(),
            vocab_size: 4096,
            hidden: 256,
            layers: 4,
            heads: 8,
            kv_heads: 4,
            intermediate: 704,
            max_context: 2048,
            rope_theta: 10_000.0,
            seed: 0x736d_616c_6c00,
            tokenizer_dir: model_dir("small"),
            eos_token_id: IM_END,
        },
    ]
}
