//! Checkpoint files: atomic writes and f32 safetensors in and out.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::error::{EngineError, Result};

/// PEFT's adapter weights file name.
pub(crate) const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// PEFT's adapter config file name.
pub(crate) const ADAPTER_CONFIG: &str = "adapter_config.json";
/// Our optimizer state file name.
pub(crate) const OPTIMIZER_STATE: &str = "optimizer.safetensors";

/// A named f32 tensor: shape and row-major data.
pub(crate) type NamedTensor = (String, Vec<usize>, Vec<f32>);

fn io_err(what: &str, path: &Path, e: std::io::Error) -> EngineError {
    if e.kind() == std::io::ErrorKind::NotFound {
        EngineError::not_found(format!("{what} {}: not found", path.display()))
    } else {
        EngineError::internal(format!("{what} {}: {e}", path.display()))
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// readers never see a partial file. Returns the number of bytes written.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<u64> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err("creating directory", dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp: PathBuf = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("writing", path, e)
    })?;
    Ok(bytes.len() as u64)
}

/// Serialises f32 tensors as safetensors with `{"format": "pt"}` plus `metadata`, atomically.
pub(crate) fn save_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: &[(&str, String)],
) -> Result<u64> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| EngineError::internal(format!("building tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta: HashMap<String, String> =
        HashMap::from([("format".to_string(), "pt".to_string())]);
    meta.extend(metadata.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let out = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| EngineError::internal(format!("serialising {}: {e}", path.display())))?;
    write_atomic(path, &out)
}

/// Loaded f32 tensors by name, and the file's metadata.
pub(crate) struct Loaded {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

/// Reads an f32 safetensors file. Corrupt or non-f32 content is a user error (a bad checkpoint).
pub(crate) fn load_safetensors(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| io_err("reading", path, e))?;
    let bad =
        |e: String| EngineError::user(format!("invalid safetensors file {}: {e}", path.display()));
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor {name} is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), data));
    }
    Ok(Loaded {
        tensors,
        metadata: meta.metadata().clone().unwrap_or_default(),
    })
}

/// Reads a JSON file (a user error if malformed).
pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|e| io_err("reading", path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::user(format!("invalid JSON in {}: {e}", path.display())))
}
