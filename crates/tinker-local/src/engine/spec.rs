//! Model and LoRA specifications, and the built-in models shipped with the crate.

use std::path::PathBuf;

/// The architecture and identity of a base model: a Llama/Qwen-style decoder
/// (RMSNorm, RoPE, grouped-query attention, SwiGLU MLP), either built in with seeded weights
/// or read from a Hugging Face model folder (see [`hf_model`](super::hf_model)).
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
    /// Attention (query) heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention); divides `heads`.
    pub kv_heads: usize,
    /// Width of one attention head (Qwen3 sets it apart from `hidden / heads`).
    pub head_dim: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate: usize,
    /// Longest sequence (prompt + generation, or training datum) the model accepts.
    pub max_context: usize,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// How RoPE frequencies are rescaled for long contexts.
    pub rope_scaling: RopeScaling,
    /// Epsilon of every RMSNorm.
    pub norm_eps: f64,
    /// q/k/v projections carry a bias (Qwen2).
    pub qkv_bias: bool,
    /// Queries and keys get a per-head RMSNorm before RoPE (Qwen3).
    pub qk_norm: bool,
    /// The lm_head shares the embedding matrix.
    pub tied_embeddings: bool,
    /// Where the base weights come from.
    pub weights: WeightSource,
    /// The dtype the large base matrices are held in between uses.
    pub weights_dtype: WeightsDtype,
    /// Absolute directory holding `tokenizer.json` and `tokenizer_config.json`.
    pub tokenizer_dir: PathBuf,
    /// Token that ends a generation when `stop_at_eos` is set.
    pub eos_token_id: u32,
}

/// Where a model's base weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WeightSource {
    /// Generated from this seed (the built-in models).
    Seeded(u64),
    /// Read from the safetensors files of this Hugging Face model folder.
    HfDir(PathBuf),
}

/// How the large base matrices (embedding, projections, lm_head) are held in memory.
///
/// Every kernel computes in f32 either way; the choice trades memory for time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WeightsDtype {
    /// Widened to f32 once, when the model loads: fastest, 2× the memory of a bf16 file.
    #[default]
    F32,
    /// Kept in the dtype the safetensors files store (bf16, f16 or f32) and widened one
    /// matrix at a time when it is used, so a bf16 model needs about half the memory. Each
    /// use pays the widening: sampling, which reads every matrix once per token, slows the
    /// most (see `docs/benchmarks.md`).
    Stored,
}

/// RoPE frequency scaling, as a model's `config.json` `rope_scaling` says.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor` (`"linear"`).
    Linear {
        /// The divisor.
        factor: f32,
    },
    /// Llama 3.1's frequency-dependent scaling (`"llama3"`).
    Llama3 {
        /// Scale of the low frequencies.
        factor: f32,
        /// Wavelength bound (as a fraction of the original context) of the scaled band.
        low_freq_factor: f32,
        /// Wavelength bound of the unscaled band.
        high_freq_factor: f32,
        /// The context the model was pre-trained with.
        original_max_position: f32,
    },
}

impl ModelSpec {
    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Number of base (frozen) parameters.
    pub fn parameter_count(&self) -> usize {
        let (h, v, i, d) = (
            self.hidden,
            self.vocab_size,
            self.intermediate,
            self.head_dim,
        );
        let (q, kv) = (self.heads * d, self.kv_heads * d);
        let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
        let qk_norm = if self.qk_norm { 2 * d } else { 0 };
        let layer = 2 * h * q + 2 * h * kv + bias + qk_norm + 3 * h * i + 2 * h;
        let heads = if self.tied_embeddings { 1 } else { 2 };
        heads * v * h + self.layers * layer + h
    }

    /// The RoPE inverse frequencies (`head_dim / 2` of them), scaling applied.
    pub(crate) fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim as f32;
        (0..self.head_dim / 2)
            .map(|i| {
                let f = 1.0 / self.rope_theta.powf(2.0 * i as f32 / d);
                match self.rope_scaling {
                    RopeScaling::None => f,
                    RopeScaling::Linear { factor } => f / factor,
                    RopeScaling::Llama3 {
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_position,
                    } => {
                        let wavelen = std::f32::consts::TAU / f;
                        let low_wavelen = original_max_position / low_freq_factor;
                        let high_wavelen = original_max_position / high_freq_factor;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (original_max_position / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    }
                }
            })
            .collect()
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

/// RMSNorm epsilon of the built-in models.
const BUILTIN_NORM_EPS: f64 = 1e-6;

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
            head_dim: 16,
            intermediate: 176,
            max_context: 1024,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            norm_eps: BUILTIN_NORM_EPS,
            qkv_bias: false,
            qk_norm: false,
            tied_embeddings: false,
            weights: WeightSource::Seeded(0x6d69_6372_6f00),
            weights_dtype: WeightsDtype::F32,
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
            head_dim: 32,
            intermediate: 704,
            max_context: 2048,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            norm_eps: BUILTIN_NORM_EPS,
            qkv_bias: false,
            qk_norm: false,
            tied_embeddings: false,
            weights: WeightSource::Seeded(0x736d_616c_6c00),
            weights_dtype: WeightsDtype::F32,
            tokenizer_dir: model_dir("small"),
            eos_token_id: IM_END,
        },
    ]
}
