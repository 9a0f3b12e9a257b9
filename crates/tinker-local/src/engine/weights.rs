//! Base weights, shared between models of one spec: generated from the spec's seed for the
//! built-in models, read from safetensors for Hugging Face folders (see `hf_weights`).
//!
//! A seeded `StdRng` (not `Tensor::randn`) makes the weights identical on every machine and
//! candle version. The lm_head uses std 1/√H: with the usual 0.02 the logits after RMSNorm
//! stay tiny and LoRA barely trains.

use std::sync::{Arc, Mutex, Weak};

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::device::device;
use super::error::{EngineError, Result};
use super::hf_weights;
use super::spec::{ModelSpec, WeightSource};

/// The seven adapted projections of a decoder layer, in PEFT module-path form.
pub(crate) const LAYER_MODULES: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// Index of each projection in [`LAYER_MODULES`].
pub(crate) const Q: usize = 0;
pub(crate) const K: usize = 1;
pub(crate) const V: usize = 2;
pub(crate) const O: usize = 3;
pub(crate) const GATE: usize = 4;
pub(crate) const UP: usize = 5;
pub(crate) const DOWN: usize = 6;

/// Frozen weights of one decoder layer. Linear weights are `[out, in]` like PyTorch.
#[derive(Debug)]
pub(crate) struct LayerWeights {
    pub attn_norm: Tensor,
    pub mlp_norm: Tensor,
    pub linears: [Tensor; 7],
    /// Biases of the q, k and v projections (Qwen2).
    pub qkv_bias: Option<[Tensor; 3]>,
    /// Per-head RMSNorm weights of queries and keys (Qwen3), `[head_dim]` each.
    pub qk_norm: Option<[Tensor; 2]>,
}

/// All frozen weights of a base model, plus the RoPE tables.
#[derive(Debug)]
pub(crate) struct BaseWeights {
    pub spec: ModelSpec,
    pub embed: Tensor,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Tensor,
    /// `[vocab, hidden]`; the same tensor as `embed` when the embeddings are tied.
    pub lm_head: Tensor,
    /// `[max_context, head_dim / 2]` cosines and sines for RoPE.
    pub cos: Tensor,
    pub sin: Tensor,
}

impl BaseWeights {
    /// The same weights on the compute device (a no-op on the CPU).
    fn on_device(self) -> Result<Self> {
        let dev = device();
        if dev.is_cpu() {
            return Ok(self);
        }
        let mv = |t: &Tensor| t.to_device(dev);
        let all = |ts: &[Tensor]| ts.iter().map(mv).collect::<candle_core::Result<Vec<_>>>();
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let linears: [Tensor; 7] = all(&l.linears)?
                .try_into()
                .map_err(|_| EngineError::internal("layer has 7 projections"))?;
            layers.push(LayerWeights {
                attn_norm: mv(&l.attn_norm)?,
                mlp_norm: mv(&l.mlp_norm)?,
                linears,
                qkv_bias: match &l.qkv_bias {
                    Some([q, k, v]) => Some([mv(q)?, mv(k)?, mv(v)?]),
                    None => None,
                },
                qk_norm: match &l.qk_norm {
                    Some([q, k]) => Some([mv(q)?, mv(k)?]),
                    None => None,
                },
            });
        }
        let embed = mv(&self.embed)?;
        let lm_head = if self.spec.tied_embeddings {
            embed.clone()
        } else {
            mv(&self.lm_head)?
        };
        Ok(Self {
            embed,
            layers,
            final_norm: mv(&self.final_norm)?,
            lm_head,
            cos: mv(&self.cos)?,
            sin: mv(&self.sin)?,
            spec: self.spec,
        })
    }

    /// Bytes the base weights occupy (a tied lm_head counted once; RoPE tables are not
    /// weights).
    pub(crate) fn bytes(&self) -> usize {
        let size = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        let mut total = size(&self.embed) + size(&self.final_norm);
        if !self.spec.tied_embeddings {
            total += size(&self.lm_head);
        }
        for l in &self.layers {
            total += size(&l.attn_norm) + size(&l.mlp_norm);
            total += l.linears.iter().map(size).sum::<usize>();
            total += l.qkv_bias.iter().flatten().map(size).sum::<usize>();
            total += l.qk_norm.iter().flatten().map(size).sum::<usize>();
        }
        total
    }

    /// `(out, in)` of a layer projection.
    pub(crate) fn linear_shape(spec: &ModelSpec, module: usize) -> (usize, usize) {
        let (h, q, kv, i) = (
            spec.hidden,
            spec.heads * spec.head_dim(),
            spec.kv_heads * spec.head_dim(),
            spec.intermediate,
        );
        match module {
            Q => (q, h),
            O => (h, q),
            K | V => (kv, h),
            GATE | UP => (i, h),
            _ => (h, i),
        }
    }
}

/// A normal sampler on a seeded `StdRng` (Box–Muller), identical everywhere.
pub(crate) struct Normal {
    rng: StdRng,
    spare: Option<f32>,
}

impl Normal {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            spare: None,
        }
    }

    fn next(&mut self) -> f32 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - u keeps the argument of ln strictly positive.
        let u1: f64 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        self.spare = Some((r * theta.sin()) as f32);
        (r * theta.cos()) as f32
    }

    /// A `[rows, cols]` tensor with entries drawn from N(0, std²).
    pub(crate) fn tensor(&mut self, rows: usize, cols: usize, std: f32) -> Result<Tensor> {
        let data: Vec<f32> = (0..rows * cols).map(|_| self.next() * std).collect();
        Ok(Tensor::from_vec(data, (rows, cols), &Device::Cpu)?)
    }
}

pub(crate) fn check_spec(spec: &ModelSpec) -> Result<()> {
    let ok = spec.vocab_size > 0
        && spec.hidden > 0
        && spec.heads > 0
        && spec.kv_heads > 0
        && spec.head_dim() > 0
        && spec.heads.is_multiple_of(spec.kv_heads)
        && spec.head_dim().is_multiple_of(2)
        && spec.intermediate > 0
        && spec.max_context > 0;
    if ok {
        Ok(())
    } else {
        Err(EngineError::user(format!(
            "invalid model spec {:?}",
            spec.name
        )))
    }
}

/// `[max_context, head_dim / 2]` RoPE cosines and sines (scaling applied).
pub(crate) fn rope_tables(spec: &ModelSpec) -> Result<(Tensor, Tensor)> {
    let half = spec.head_dim() / 2;
    let inv = spec.rope_inv_freq();
    let mut cos = Vec::with_capacity(spec.max_context * half);
    let mut sin = Vec::with_capacity(spec.max_context * half);
    for pos in 0..spec.max_context {
        for f in &inv {
            let angle = pos as f32 * f;
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let dev = &Device::Cpu;
    Ok((
        Tensor::from_vec(cos, (spec.max_context, half), dev)?,
        Tensor::from_vec(sin, (spec.max_context, half), dev)?,
    ))
}

fn generate(spec: &ModelSpec, seed: u64) -> Result<BaseWeights> {
    check_spec(spec)?;
    let dev = &Device::Cpu;
    let mut rng = Normal::new(seed);
    let h = spec.hidden;
    // Residual branches are scaled down so the stream stays O(1) through the layers.
    let branch = 1.0 / ((2 * spec.layers.max(1)) as f32).sqrt();
    let embed = rng.tensor(spec.vocab_size, h, 1.0)?;
    let mut layers = Vec::with_capacity(spec.layers);
    for _ in 0..spec.layers {
        let mut make = |m: usize| {
            let (out, inp) = BaseWeights::linear_shape(spec, m);
            let std = (inp as f32).sqrt().recip() * if m == O || m == DOWN { branch } else { 1.0 };
            rng.tensor(out, inp, std)
        };
        let linears = [
            make(Q)?,
            make(K)?,
            make(V)?,
            make(O)?,
            make(GATE)?,
            make(UP)?,
            make(DOWN)?,
        ];
        layers.push(LayerWeights {
            attn_norm: Tensor::ones(h, candle_core::DType::F32, dev)?,
            mlp_norm: Tensor::ones(h, candle_core::DType::F32, dev)?,
            linears,
            qkv_bias: None,
            qk_norm: None,
        });
    }
    let lm_head = rng.tensor(spec.vocab_size, h, (h as f32).sqrt().recip())?;
    let (cos, sin) = rope_tables(spec)?;
    Ok(BaseWeights {
        spec: spec.clone(),
        embed,
        layers,
        final_norm: Tensor::ones(h, candle_core::DType::F32, dev)?,
        lm_head,
        cos,
        sin,
    })
}

/// Live base models, so trainers and samplers of one spec share a single copy.
static CACHE: Mutex<Vec<Weak<BaseWeights>>> = Mutex::new(Vec::new());

/// The base weights of `spec`, generated on first use and shared while anyone holds them.
pub(crate) fn base_weights(spec: &ModelSpec) -> Result<Arc<BaseWeights>> {
    let mut cache = CACHE
        .lock()
        .map_err(|_| EngineError::internal("base weight cache poisoned"))?;
    cache.retain(|w| w.strong_count() > 0);
    if let Some(found) = cache
        .iter()
        .filter_map(Weak::upgrade)
        .find(|b| b.spec == *spec)
    {
        return Ok(found);
    }
    let fresh = Arc::new(
        match &spec.weights {
            WeightSource::Seeded(seed) => generate(spec, *seed)?,
            WeightSource::HfDir(dir) => hf_weights::load(spec, dir)?,
        }
        .on_device()?,
    );
    cache.push(Arc::downgrade(&fresh));
    Ok(fresh)
}
