//! The decoder forward pass: embedding, RMSNorm, RoPE, grouped-query attention, SwiGLU,
//! lm_head, each projection optionally carrying a LoRA adapter. Per-architecture extras: q/k/v
//! biases (Qwen2), per-head q/k RMSNorm (Qwen3), a tied lm_head.
//!
//! `Mode::Train` uses only ops with a backward (`rms_norm_slow`, `rope_slow`, `ops::softmax`),
//! because candle's fused versions silently stop gradients. `Mode::Infer` uses the fused ops
//! and supports a KV cache.

use candle_core::{D, Tensor};
use candle_nn::{ops, rotary_emb};

use super::device::device;
use super::error::Result;
use super::frozen::{FrozenMatmul, widened};
use super::weights::{BaseWeights, DOWN, GATE, K, O, Q, UP, V};

/// Which kernels the forward uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Differentiable ops only.
    Train,
    /// Fused ops, no gradients.
    Infer,
}

/// A LoRA adapter: `A` is `[r, in]`, `B` is `[out, r]`.
#[derive(Debug, Clone)]
pub(crate) struct LoraPair {
    pub a: Tensor,
    pub b: Tensor,
}

/// The adapters applied on top of the base weights; `None` = no adapter on that projection.
#[derive(Debug, Clone)]
pub(crate) struct Adapters {
    pub layers: Vec<[Option<LoraPair>; 7]>,
    pub lm_head: Option<LoraPair>,
    /// `lora_alpha / r`.
    pub scale: f64,
}

impl Adapters {
    /// No adapters at all (the plain base model).
    pub(crate) fn none(layers: usize) -> Self {
        Self {
            layers: (0..layers).map(|_| Default::default()).collect(),
            lm_head: None,
            scale: 1.0,
        }
    }
}

/// Keys and values of the positions processed so far, per layer (`[b, kv_heads, t, d]`).
#[derive(Debug, Clone, Default)]
pub(crate) struct KvCache {
    kv: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Number of cached positions.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

fn linear(
    x: &Tensor,
    w: &Tensor,
    lora: Option<&LoraPair>,
    scale: f64,
    mode: Mode,
) -> Result<Tensor> {
    let base = match mode {
        // FrozenMatmul has a CPU kernel only.
        Mode::Train if x.device().is_cpu() => x.apply_op1(FrozenMatmul { w: w.clone() })?,
        _ => x.matmul(&widened(w)?.t()?)?,
    };
    Ok(match lora {
        None => base,
        Some(p) => (base + (x.matmul(&p.a.t()?)?.matmul(&p.b.t()?)? * scale)?)?,
    })
}

fn norm(x: &Tensor, w: &Tensor, eps: f32, mode: Mode) -> Result<Tensor> {
    Ok(match mode {
        Mode::Train => ops::rms_norm_slow(x, w, eps)?,
        Mode::Infer => ops::rms_norm(x, w, eps)?,
    })
}

/// Runs the model on `ids` (`[b, t]`, positions `offset..offset + t`) and returns the logits
/// of every position as `[b·t, vocab]`. With a cache, `offset` must equal the cache length
/// and the new keys/values are appended.
pub(crate) fn forward(
    base: &BaseWeights,
    adapters: &Adapters,
    ids: &Tensor,
    mut cache: Option<&mut KvCache>,
    mode: Mode,
) -> Result<Tensor> {
    let spec = &base.spec;
    let (b, t) = ids.dims2()?;
    let offset = cache.as_ref().map_or(0, |c| c.len);
    let (heads, kvh, d) = (spec.heads, spec.kv_heads, spec.head_dim());
    let s = adapters.scale;
    let eps = spec.norm_eps as f32;
    let cos = base.cos.narrow(0, offset, t)?;
    let sin = base.sin.narrow(0, offset, t)?;
    let total = offset + t;
    // Additive causal mask over [t, total]: query i (absolute offset+i) sees keys ≤ offset+i.
    let mask = (t > 1)
        .then(|| {
            let m: Vec<f32> = (0..t)
                .flat_map(|i| (0..total).map(move |j| if j <= offset + i { 0.0 } else { -1e9 }))
                .collect();
            Tensor::from_vec(m, (t, total), device())
        })
        .transpose()?;
    if let Some(c) = cache.as_deref_mut() {
        c.kv.resize(spec.layers, None);
    }
    // Only the selected rows are widened when the embedding is held in its stored dtype.
    let mut x = widened(&base.embed.index_select(&ids.flatten_all()?, 0)?)?; // [b·t, h]
    for (li, (layer, lora)) in base.layers.iter().zip(&adapters.layers).enumerate() {
        let lin = |x: &Tensor, m: usize| linear(x, &layer.linears[m], lora[m].as_ref(), s, mode);
        let h = norm(&x, &layer.attn_norm, eps, mode)?;
        let heads_of = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, d))?.transpose(1, 2)?.contiguous()?)
        };
        let biased = |m: usize| -> Result<Tensor> {
            let y = lin(&h, m)?;
            Ok(match &layer.qkv_bias {
                Some(bias) => y.broadcast_add(&bias[m - Q])?,
                None => y,
            })
        };
        let mut q = heads_of(biased(Q)?, heads)?;
        let mut k = heads_of(biased(K)?, kvh)?;
        let v = heads_of(biased(V)?, kvh)?;
        if let Some([qn, kn]) = &layer.qk_norm {
            q = norm(&q, qn, eps, mode)?;
            k = norm(&k, kn, eps, mode)?;
        }
        let (q, k) = match mode {
            Mode::Train => (
                rotary_emb::rope_slow(&q, &cos, &sin)?,
                rotary_emb::rope_slow(&k, &cos, &sin)?,
            ),
            Mode::Infer => (
                rotary_emb::rope(&q, &cos, &sin)?,
                rotary_emb::rope(&k, &cos, &sin)?,
            ),
        };
        let (k, v) = match cache.as_deref_mut() {
            None => (k, v),
            Some(c) => {
                let kv = match c.kv[li].take() {
                    None => (k, v),
                    Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                };
                c.kv[li] = Some(kv.clone());
                kv
            }
        };
        // Grouped-query attention: each kv head serves heads/kvh query heads.
        let rep = heads / kvh;
        let expand = |y: Tensor| -> Result<Tensor> {
            if rep == 1 {
                return Ok(y);
            }
            Ok(y.unsqueeze(2)?
                .expand((b, kvh, rep, total, d))?
                .reshape((b, heads, total, d))?)
        };
        let (k, v) = (expand(k)?, expand(v)?);
        let mut scores = (q.matmul(&k.t()?)? * (d as f64).sqrt().recip())?;
        if let Some(m) = &mask {
            scores = scores.broadcast_add(m)?;
        }
        let probs = match mode {
            Mode::Train => ops::softmax(&scores, D::Minus1)?,
            Mode::Infer => ops::softmax_last_dim(&scores)?,
        };
        let att = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * t, heads * d))?;
        x = (x + lin(&att, O)?)?;
        let h = norm(&x, &layer.mlp_norm, eps, mode)?;
        let act = (lin(&h, GATE)?.silu()? * lin(&h, UP)?)?;
        x = (x + lin(&act, DOWN)?)?;
    }
    if let Some(c) = cache {
        c.len = total;
    }
    let x = norm(&x, &base.final_norm, eps, mode)?;
    linear(&x, &base.lm_head, adapters.lm_head.as_ref(), s, mode)
}
