//! LoRA parameters: which projections get adapters, their PEFT names, initialisation.
//!
//! Naming and shapes follow PEFT (`…layers.{i}.self_attn.q_proj.lora_A.weight`, A `[r, in]`,
//! B `[out, r]`), so saved adapters load in Python too. A starts kaiming-uniform (bound
//! 1/√in, as PEFT), B at zero, so a fresh adapter leaves the base model unchanged.

use candle_core::{Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::device::device;
use super::error::{EngineError, Result};
use super::model::{Adapters, LoraPair};
use super::spec::{LoraSpec, ModelSpec};
use super::weights::{BaseWeights, LAYER_MODULES, O, Q};

/// `lora_alpha`, fixed as in Tinker's LoRA defaults; the adapter scale is `alpha / r`.
pub(crate) const LORA_ALPHA: f64 = 32.0;

/// Seed of `lora_A` when the LoRA config gives none.
const DEFAULT_LORA_SEED: u64 = 0x10_4a;

/// Where an adapter sits: a layer projection or the lm_head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    Layer { layer: usize, module: usize },
    LmHead,
}

impl Site {
    /// PEFT prefix of the adapter's tensors (before `.lora_A.weight`).
    pub(crate) fn peft_prefix(self) -> String {
        match self {
            Site::Layer { layer, module } => {
                format!(
                    "base_model.model.model.layers.{layer}.{}",
                    LAYER_MODULES[module]
                )
            }
            Site::LmHead => "base_model.model.lm_head".to_string(),
        }
    }

    /// `(out, in)` of the adapted projection.
    pub(crate) fn shape(self, spec: &ModelSpec) -> (usize, usize) {
        match self {
            Site::Layer { module, .. } => BaseWeights::linear_shape(spec, module),
            Site::LmHead => (spec.vocab_size, spec.hidden),
        }
    }
}

/// Adapter sites a LoRA spec enables, in a fixed order (layer by layer, then lm_head).
pub(crate) fn sites(spec: &ModelSpec, lora: &LoraSpec) -> Vec<Site> {
    let mut out = Vec::new();
    for layer in 0..spec.layers {
        for module in 0..LAYER_MODULES.len() {
            let attn = (Q..=O).contains(&module);
            if (attn && lora.train_attn) || (!attn && lora.train_mlp) {
                out.push(Site::Layer { layer, module });
            }
        }
    }
    if lora.train_unembed {
        out.push(Site::LmHead);
    }
    out
}

/// PEFT `target_modules` names for a LoRA spec.
pub(crate) fn target_modules(lora: &LoraSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (module, path) in LAYER_MODULES.iter().enumerate() {
        let attn = (Q..=O).contains(&module);
        if (attn && lora.train_attn) || (!attn && lora.train_mlp) {
            out.push(path.rsplit('.').next().unwrap_or(path).to_string());
        }
    }
    if lora.train_unembed {
        out.push("lm_head".to_string());
    }
    out
}

/// The trainable tensors of a LoRA adapter set: for each site, A then B.
#[derive(Debug)]
pub(crate) struct LoraParams {
    pub sites: Vec<Site>,
    /// `2 · sites.len()` variables: `[A₀, B₀, A₁, B₁, …]`.
    pub vars: Vec<Var>,
    pub rank: usize,
}

impl LoraParams {
    /// Fresh adapters for `lora` on `spec`.
    pub(crate) fn new(spec: &ModelSpec, lora: &LoraSpec) -> Result<Self> {
        validate_lora(spec, lora)?;
        let mut rng = StdRng::seed_from_u64(lora.seed.unwrap_or(DEFAULT_LORA_SEED));
        let sites = sites(spec, lora);
        let mut vars = Vec::with_capacity(sites.len() * 2);
        for site in &sites {
            let (out, inp) = site.shape(spec);
            let bound = (inp as f32).sqrt().recip();
            let a: Vec<f32> = (0..lora.rank * inp)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            vars.push(Var::from_tensor(&Tensor::from_vec(
                a,
                (lora.rank, inp),
                device(),
            )?)?);
            vars.push(Var::zeros(
                (out, lora.rank),
                candle_core::DType::F32,
                device(),
            )?);
        }
        Ok(Self {
            sites,
            vars,
            rank: lora.rank,
        })
    }

    /// PEFT tensor names, in `vars` order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.sites
            .iter()
            .flat_map(|s| {
                let p = s.peft_prefix();
                [format!("{p}.lora_A.weight"), format!("{p}.lora_B.weight")]
            })
            .collect()
    }

    /// Adapters whose tensors are given by `tensor_of` (live vars for training, copies for a
    /// sampler snapshot).
    pub(crate) fn adapters(
        &self,
        layers: usize,
        tensor_of: impl Fn(&Var) -> Result<Tensor>,
    ) -> Result<Adapters> {
        let tensors = self
            .vars
            .iter()
            .map(tensor_of)
            .collect::<Result<Vec<_>>>()?;
        adapters_from(layers, &self.sites, &tensors, LORA_ALPHA / self.rank as f64)
    }
}

/// Assembles [`Adapters`] from `[A₀, B₀, A₁, B₁, …]` tensors at `sites`.
pub(crate) fn adapters_from(
    layers: usize,
    sites: &[Site],
    tensors: &[Tensor],
    scale: f64,
) -> Result<Adapters> {
    let mut out = Adapters::none(layers);
    out.scale = scale;
    for (site, pair) in sites.iter().zip(tensors.chunks_exact(2)) {
        let lp = LoraPair {
            a: pair[0].clone(),
            b: pair[1].clone(),
        };
        match *site {
            Site::Layer { layer, module } => {
                if let Some(slot) = out.layers.get_mut(layer) {
                    slot[module] = Some(lp);
                }
            }
            Site::LmHead => out.lm_head = Some(lp),
        }
    }
    Ok(out)
}

/// An adapter read back from a PEFT directory.
#[derive(Debug)]
pub(crate) struct SavedAdapter {
    pub sites: Vec<Site>,
    /// `[A₀, B₀, A₁, B₁, …]`, each `(shape, data)`.
    pub tensors: Vec<(Vec<usize>, Vec<f32>)>,
    pub rank: usize,
    pub alpha: f64,
}

/// Checks a LoRA config against the model it adapts (typed user errors).
pub(crate) fn validate_lora(spec: &ModelSpec, lora: &LoraSpec) -> Result<()> {
    if lora.rank == 0 {
        return Err(EngineError::user("lora rank must be at least 1"));
    }
    if !(lora.train_attn || lora.train_mlp || lora.train_unembed) {
        return Err(EngineError::user(
            "lora config trains nothing: enable train_attn, train_mlp or train_unembed",
        ));
    }
    let max_rank = spec.hidden.min(spec.kv_heads * spec.head_dim());
    if lora.rank > max_rank {
        return Err(EngineError::user(format!(
            "lora rank {} exceeds {max_rank}, the smallest adapted dimension of {}",
            lora.rank, spec.name
        )));
    }
    Ok(())
}

/// Reads `adapter_model.safetensors` (+ `adapter_config.json` for `lora_alpha`) from `dir`
/// and checks every tensor against `spec`'s shapes.
pub(crate) fn read_adapter(spec: &ModelSpec, dir: &std::path::Path) -> Result<SavedAdapter> {
    use super::checkpoint::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, load_safetensors, read_json};
    let mut loaded = load_safetensors(&dir.join(ADAPTER_WEIGHTS))?.tensors;
    let config_path = dir.join(ADAPTER_CONFIG);
    let alpha = if config_path.exists() {
        read_json(&config_path)?
            .get("lora_alpha")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(LORA_ALPHA)
    } else {
        LORA_ALPHA
    };
    let all = sites(
        spec,
        &LoraSpec {
            rank: 1,
            seed: None,
            train_attn: true,
            train_mlp: true,
            train_unembed: true,
        },
    );
    let (mut found, mut tensors, mut rank) = (Vec::new(), Vec::new(), None);
    let bad = |msg: String| {
        EngineError::user(format!(
            "adapter in {} does not fit {}: {msg}",
            dir.display(),
            spec.name
        ))
    };
    for site in all {
        let p = site.peft_prefix();
        let (an, bn) = (format!("{p}.lora_A.weight"), format!("{p}.lora_B.weight"));
        let (a, b) = match (loaded.remove(&an), loaded.remove(&bn)) {
            (None, None) => continue,
            (Some(a), Some(b)) => (a, b),
            _ => return Err(bad(format!("{p} has only one of lora_A / lora_B"))),
        };
        let (out, inp) = site.shape(spec);
        let r = *rank.get_or_insert(a.0.first().copied().unwrap_or(0));
        if r == 0 || a.0 != [r, inp] || b.0 != [out, r] {
            return Err(bad(format!(
                "{p} has shapes {:?} / {:?}, expected [{r}, {inp}] / [{out}, {r}]",
                a.0, b.0
            )));
        }
        found.push(site);
        tensors.push(a);
        tensors.push(b);
    }
    if let Some(extra) = loaded.keys().next() {
        return Err(bad(format!("unexpected tensor {extra}")));
    }
    let Some(rank) = rank else {
        return Err(bad("it holds no LoRA tensors".into()));
    };
    Ok(SavedAdapter {
        sites: found,
        tensors,
        rank,
        alpha,
    })
}
