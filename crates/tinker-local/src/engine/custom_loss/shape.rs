//! Numpy broadcasting and `sum`/`mean` reductions as index maps, shared by the forward
//! and backward passes.

use super::super::error::Result;
use super::user;

/// The shape `shapes` broadcast together (numpy rules); `loss` names the loss in errors.
pub(super) fn broadcast(loss: &str, shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1; rank];
    for s in shapes {
        for (j, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + j];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(user(format!(
                    "custom loss {:?}: shapes {:?} cannot be broadcast together",
                    loss, shapes
                )));
            }
        }
    }
    Ok(out)
}

/// The reduced shape, the output index of every input element, and the number of
/// elements summed into each output. `loss` names the loss in errors.
pub(super) fn reduction(
    loss: &str,
    shape: &[usize],
    dims: Option<&[i64]>,
    keepdim: bool,
) -> Result<(Vec<usize>, Vec<usize>, usize)> {
    let rank = shape.len();
    let mut reduced = vec![dims.is_none(); rank];
    for &d in dims.unwrap_or(&[]) {
        let r = i64::try_from(rank.max(1)).unwrap_or(i64::MAX);
        let k = if d < 0 { d + r } else { d };
        if !(0..r).contains(&k) {
            return Err(user(format!(
                "custom loss {:?}: dim {d} is out of range for a tensor of rank {rank}",
                loss
            )));
        }
        if let Some(flag) = reduced.get_mut(usize::try_from(k).unwrap_or(0)) {
            *flag = true;
        }
    }
    let kept: Vec<usize> = shape
        .iter()
        .zip(&reduced)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let out_shape: Vec<usize> = if keepdim {
        kept.clone()
    } else {
        shape
            .iter()
            .zip(&reduced)
            .filter(|(_, r)| !**r)
            .map(|(&d, _)| d)
            .collect()
    };
    let count = shape
        .iter()
        .zip(&reduced)
        .filter(|(_, r)| **r)
        .map(|(&d, _)| d)
        .product::<usize>();
    // Input index → index in `kept` (same element count as the output).
    let total: usize = shape.iter().product();
    let map = (0..total)
        .map(|flat| {
            let mut rem = flat;
            let mut out = 0;
            let mut stride = 1;
            for j in (0..rank).rev() {
                let idx = rem % shape[j];
                rem /= shape[j];
                if !reduced[j] {
                    out += idx * stride;
                }
                stride *= kept[j];
            }
            out
        })
        .collect();
    Ok((out_shape, map, count))
}

/// For each element of a tensor of shape `out`, the index of the element of `input`
/// (broadcast to `out`) it reads.
pub(super) fn index_map(out: &[usize], input: &[usize]) -> Vec<usize> {
    let total: usize = out.iter().product();
    let offset = out.len() - input.len();
    // Strides of `input`, 0 on broadcast dimensions.
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for j in (0..input.len()).rev() {
        strides[offset + j] = if input[j] == 1 { 0 } else { s };
        s *= input[j];
    }
    (0..total)
        .map(|flat| {
            let mut rem = flat;
            let mut idx = 0;
            for j in (0..out.len()).rev() {
                idx += (rem % out[j]) * strides[j];
                rem /= out[j];
            }
            idx
        })
        .collect()
}
