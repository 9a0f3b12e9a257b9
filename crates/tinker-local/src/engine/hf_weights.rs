//! Base weights from a Hugging Face folder: `model.safetensors`, or the shards listed in
//! `model.safetensors.index.json`, memory-mapped and read in their stored dtype (bf16, f16
//! or f32). The large matrices are widened to f32 now, or kept in that dtype and widened at
//! each use (the spec's [`WeightsDtype`]); small vectors (norms, biases) are always f32, the
//! dtype every CPU kernel here computes in.
//!
//! Tensor names follow `transformers` (`model.layers.{i}.self_attn.q_proj.weight`, …); the
//! lm_head is `lm_head.weight`, or the embedding when `tie_word_embeddings` is set.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::checkpoint::read_json;
use super::error::{EngineError, Result};
use super::spec::{ModelSpec, WeightsDtype};
use super::weights::{BaseWeights, LAYER_MODULES, LayerWeights, rope_tables};

const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// The safetensors files of the model in `dir`: the shards its index names, or the single file.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX);
    if index.is_file() {
        let json = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| EngineError::user(format!("{} has no weight_map", index.display())))?;
        let mut files = BTreeSet::new();
        for file in map.values() {
            let file = file.as_str().unwrap_or_default();
            // Shards live next to the index: a bare file name, nothing else.
            let plain = Path::new(file).file_name().and_then(|n| n.to_str()) == Some(file);
            if !plain || file.starts_with('.') {
                return Err(EngineError::user(format!(
                    "{} names shard {file:?}, which is not a file in the folder",
                    index.display()
                )));
            }
            files.insert(dir.join(file));
        }
        return Ok(files.into_iter().collect());
    }
    let single = dir.join(SINGLE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(EngineError::user(format!(
        "{} has neither {SINGLE} nor {INDEX} (only safetensors weights are supported)",
        dir.display()
    )))
}

/// Maps the files read-only for the duration of a load.
#[allow(unsafe_code)]
fn open(dir: &Path) -> Result<MmapedSafetensors> {
    let files = weight_files(dir)?;
    // SAFETY: the mapping is read-only and lives only while the weights are copied out (to
    // f32 tensors the engine owns); the files must not be truncated meanwhile, the same
    // contract as every mmap-based safetensors loader.
    unsafe { MmapedSafetensors::multi(&files) }
        .map_err(|e| EngineError::user(format!("reading weights in {}: {e}", dir.display())))
}

/// One expected tensor: its name and shape.
type Expected = (String, Vec<usize>);

/// Every tensor `spec` needs, in load order.
pub(crate) fn expected(spec: &ModelSpec) -> Vec<Expected> {
    let (h, d) = (spec.hidden, spec.head_dim());
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![spec.vocab_size, h],
    )];
    for i in 0..spec.layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        for (m, path) in LAYER_MODULES.iter().enumerate() {
            let (o, inp) = BaseWeights::linear_shape(spec, m);
            out.push((format!("{p}.{path}.weight"), vec![o, inp]));
        }
        if spec.qkv_bias {
            for (m, path) in LAYER_MODULES.iter().enumerate().take(3) {
                let (o, _) = BaseWeights::linear_shape(spec, m);
                out.push((format!("{p}.{path}.bias"), vec![o]));
            }
        }
        if spec.qk_norm {
            out.push((format!("{p}.self_attn.q_norm.weight"), vec![d]));
            out.push((format!("{p}.self_attn.k_norm.weight"), vec![d]));
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !spec.tied_embeddings {
        out.push(("lm_head.weight".to_string(), vec![spec.vocab_size, h]));
    }
    out
}

fn bad(dir: &Path, msg: String) -> EngineError {
    EngineError::user(format!("weights in {}: {msg}", dir.display()))
}

/// Checks, from the safetensors headers alone, that `dir` holds every tensor `spec` needs
/// with the right shape and a supported dtype.
pub(crate) fn check(spec: &ModelSpec, dir: &Path) -> Result<()> {
    let st = open(dir)?;
    for (name, shape) in expected(spec) {
        let view = st
            .get(&name)
            .map_err(|_| bad(dir, format!("missing tensor {name}")))?;
        if view.shape() != shape.as_slice() {
            return Err(bad(
                dir,
                format!("{name} has shape {:?}, expected {shape:?}", view.shape()),
            ));
        }
        use safetensors::Dtype as S;
        if !matches!(view.dtype(), S::BF16 | S::F16 | S::F32) {
            return Err(bad(
                dir,
                format!(
                    "{name} is {:?}; bf16, f16 and f32 are supported",
                    view.dtype()
                ),
            ));
        }
    }
    Ok(())
}

/// Loads the base weights of `spec` from `dir`: vectors in f32, matrices as
/// `spec.weights_dtype` says.
pub(crate) fn load(spec: &ModelSpec, dir: &Path) -> Result<BaseWeights> {
    check(spec, dir)?;
    let st = open(dir)?;
    let get =
        |name: &str| -> Result<Tensor> { Ok(st.load(name, &Device::Cpu)?.to_dtype(DType::F32)?) };
    let matrix = |name: &str| -> Result<Tensor> {
        let t = st.load(name, &Device::Cpu)?;
        Ok(match spec.weights_dtype {
            WeightsDtype::Stored => t,
            _ => t.to_dtype(DType::F32)?,
        })
    };
    let embed = matrix("model.embed_tokens.weight")?;
    let mut layers = Vec::with_capacity(spec.layers);
    for i in 0..spec.layers {
        let p = format!("model.layers.{i}");
        let lin = |m: usize| matrix(&format!("{p}.{}.weight", LAYER_MODULES[m]));
        let bias = |m: usize| get(&format!("{p}.{}.bias", LAYER_MODULES[m]));
        layers.push(LayerWeights {
            attn_norm: get(&format!("{p}.input_layernorm.weight"))?,
            mlp_norm: get(&format!("{p}.post_attention_layernorm.weight"))?,
            linears: [
                lin(0)?,
                lin(1)?,
                lin(2)?,
                lin(3)?,
                lin(4)?,
                lin(5)?,
                lin(6)?,
            ],
            qkv_bias: if spec.qkv_bias {
                Some([bias(0)?, bias(1)?, bias(2)?])
            } else {
                None
            },
            qk_norm: if spec.qk_norm {
                Some([
                    get(&format!("{p}.self_attn.q_norm.weight"))?,
                    get(&format!("{p}.self_attn.k_norm.weight"))?,
                ])
            } else {
                None
            },
        });
    }
    let lm_head = if spec.tied_embeddings {
        embed.clone()
    } else {
        matrix("lm_head.weight")?
    };
    let (cos, sin) = rope_tables(spec)?;
    Ok(BaseWeights {
        spec: spec.clone(),
        embed,
        layers,
        final_norm: get("model.norm.weight")?,
        lm_head,
        cos,
        sin,
    })
}
