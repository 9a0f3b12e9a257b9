//! `x · Wᵀ` for a frozen weight, as a custom op whose backward returns only `dx`.
//!
//! candle's `matmul` backward always computes the gradient of both operands, so every frozen
//! base weight would get a (discarded) gradient; this op skips that work. A weight held in
//! bf16/f16 (`WeightsDtype::Stored`) is widened inside each pass, so the autograd graph keeps
//! only the stored copy alive, not an f32 one per layer.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

/// Right-multiplies its argument `[n, in]` by `Wᵀ` where `W` is `[out, in]`.
pub(crate) struct FrozenMatmul {
    pub w: Tensor,
}

/// `w` in f32: itself when it already is, else a transient widened copy.
pub(crate) fn widened(w: &Tensor) -> candle_core::Result<Tensor> {
    w.to_dtype(DType::F32)
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen-matmul needs a contiguous input");
        };
        let data = storage.as_slice::<f32>()?;
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&widened(&self.w)?.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.matmul(&widened(&self.w)?)?))
    }
}
