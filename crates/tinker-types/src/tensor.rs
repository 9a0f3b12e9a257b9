//! `TensorData`: a dense or sparse (CSR) tensor of `float32` or `int64` values.

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Element type of a tensor on the wire. The protocol only knows these two public dtypes:
/// integers of any width travel as `int64`, floats (including bfloat16) as `float32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TensorDtype {
    /// 32-bit IEEE float.
    Float32,
    /// 64-bit signed integer.
    Int64,
}

impl TensorDtype {
    /// Wire spelling (`"float32"` / `"int64"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Int64 => "int64",
        }
    }

    /// Size of one element in bytes (4 or 8).
    pub fn item_size(self) -> usize {
        match self {
            Self::Float32 => 4,
            Self::Int64 => 8,
        }
    }
}

/// The typed, flattened (row-major) elements of a tensor; for a CSR tensor, its stored values.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TensorValues {
    /// `float32` elements.
    Float32(Vec<f32>),
    /// `int64` elements.
    Int64(Vec<i64>),
}

impl TensorValues {
    /// The dtype of these values.
    pub fn dtype(&self) -> TensorDtype {
        match self {
            Self::Float32(_) => TensorDtype::Float32,
            Self::Int64(_) => TensorDtype::Int64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::Float32(v) => v.len(),
            Self::Int64(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `float32` elements, if that is the dtype.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Self::Float32(v) => Some(v),
            Self::Int64(_) => None,
        }
    }

    /// The `int64` elements, if that is the dtype.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match self {
            Self::Int64(v) => Some(v),
            Self::Float32(_) => None,
        }
    }
}

/// Compressed-sparse-row indices of a 2-D tensor: `crow_indices` has `nrows + 1` entries,
/// `col_indices` one entry per stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrIndices {
    /// Row pointers: row `r` holds stored values `crow_indices[r]..crow_indices[r + 1]`.
    pub crow_indices: Vec<i64>,
    /// Column of each stored value.
    pub col_indices: Vec<i64>,
}

/// A tensor as the protocol carries it: typed values, an optional shape and, for sparse
/// tensors, CSR indices. Invariants (checked by every constructor and by decoding):
/// a dense tensor with a shape has exactly `product(shape)` elements; a CSR tensor has a
/// 2-D shape, `nrows + 1` non-decreasing row pointers from 0 to `nnz`, and `nnz` column
/// indices below `ncols`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    values: TensorValues,
    shape: Option<Vec<usize>>,
    csr: Option<CsrIndices>,
}

impl TensorData {
    /// A dense tensor; `shape: None` means 1-D (as the SDK interprets a missing shape).
    ///
    /// # Errors
    /// [`Error::InvalidTensor`] if the element count does not match the shape.
    pub fn new(values: TensorValues, shape: Option<Vec<usize>>) -> Result<Self> {
        if let Some(shape) = &shape {
            let expected = element_count(shape)?;
            if expected != values.len() {
                return Err(invalid(format!(
                    "shape {shape:?} needs {expected} elements, got {}",
                    values.len()
                )));
            }
        }
        Ok(Self {
            values,
            shape,
            csr: None,
        })
    }

    /// A dense `float32` tensor of the given shape.
    ///
    /// # Errors
    /// [`Error::InvalidTensor`] if `values.len()` is not the product of `shape`.
    pub fn from_f32(values: Vec<f32>, shape: Vec<usize>) -> Result<Self> {
        Self::new(TensorValues::Float32(values), Some(shape))
    }

    /// A dense `int64` tensor of the given shape.
    ///
    /// # Errors
    /// [`Error::InvalidTensor`] if `values.len()` is not the product of `shape`.
    pub fn from_i64(values: Vec<i64>, shape: Vec<usize>) -> Result<Self> {
        Self::new(TensorValues::Int64(values), Some(shape))
    }

    /// A 1-D `float32` tensor (shape `[len]`).
    pub fn vector_f32(values: Vec<f32>) -> Self {
        let shape = vec![values.len()];
        Self {
            values: TensorValues::Float32(values),
            shape: Some(shape),
            csr: None,
        }
    }

    /// A 1-D `int64` tensor (shape `[len]`).
    pub fn vector_i64(values: Vec<i64>) -> Self {
        let shape = vec![values.len()];
        Self {
            values: TensorValues::Int64(values),
            shape: Some(shape),
            csr: None,
        }
    }

    /// A sparse CSR tensor of 2-D `shape` whose unlisted cells take a caller-chosen pad value.
    ///
    /// # Errors
    /// [`Error::InvalidTensor`] if the indices do not describe a valid CSR layout.
    pub fn csr(values: TensorValues, shape: [usize; 2], csr: CsrIndices) -> Result<Self> {
        check_csr(&values, &shape, &csr)?;
        Ok(Self {
            values,
            shape: Some(shape.to_vec()),
            csr: Some(csr),
        })
    }

    /// Builds a CSR tensor from a dense row-major 2-D `int64` matrix, leaving out `pad` cells.
    ///
    /// # Errors
    /// [`Error::InvalidTensor`] if `dense.len() != rows * cols`.
    pub fn sparsify_i64(dense: &[i64], shape: [usize; 2], pad: i64) -> Result<Self> {
        let (values, csr) = sparsify(dense, shape, |v| *v != pad)?;
        Self::csr(TensorValues::Int64(values), shape, csr)
    }

    /// Builds a CSR tensor from a dense row-major 2-D `float32` matrix, leaving out `pad` cells.
    ///
    /// # Errors
    /// [`Error::InvalidTensor`] if `dense.len() != rows * cols`.
    pub fn sparsify_f32(dense: &[f32], shape: [usize; 2], pad: f32) -> Result<Self> {
        let (values, csr) = sparsify(dense, shape, |v| *v != pad)?;
        Self::csr(TensorValues::Float32(values), shape, csr)
    }

    /// The element type.
    pub fn dtype(&self) -> TensorDtype {
        self.values.dtype()
    }

    /// The stored values (all elements when dense, the listed ones when CSR).
    pub fn values(&self) -> &TensorValues {
        &self.values
    }

    /// The declared shape, if any (a dense tensor without one is 1-D).
    pub fn shape(&self) -> Option<&[usize]> {
        self.shape.as_deref()
    }

    /// The effective shape: the declared one, or `[len]` when none was given.
    pub fn dims(&self) -> Vec<usize> {
        self.shape
            .clone()
            .unwrap_or_else(|| vec![self.values.len()])
    }

    /// The first of [`Self::dims`] (the number of rows), without allocating.
    pub(crate) fn leading_dim(&self) -> Option<usize> {
        match &self.shape {
            Some(shape) => shape.first().copied(),
            None => Some(self.values.len()),
        }
    }

    /// Whether `self` and `other` have the same [`Self::dims`], without allocating.
    pub(crate) fn same_dims(&self, other: &Self) -> bool {
        match (&self.shape, &other.shape) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.values.len() == other.values.len(),
            (Some(a), None) => a.as_slice() == [other.values.len()],
            (None, Some(b)) => b.as_slice() == [self.values.len()],
        }
    }

    /// The CSR indices when this tensor is sparse.
    pub fn csr_indices(&self) -> Option<&CsrIndices> {
        self.csr.as_ref()
    }

    /// True for a CSR tensor.
    pub fn is_sparse(&self) -> bool {
        self.csr.is_some()
    }

    /// Number of cells of the dense tensor (product of [`Self::dims`]; constructors
    /// guarantee it fits in `usize`). Densifying a CSR tensor allocates this many cells.
    pub fn dense_len(&self) -> usize {
        element_count(&self.dims()).unwrap_or(usize::MAX)
    }

    /// Splits the tensor into its parts (values, declared shape, CSR indices).
    pub fn into_parts(self) -> (TensorValues, Option<Vec<usize>>, Option<CsrIndices>) {
        (self.values, self.shape, self.csr)
    }

    /// Dense row-major `float32` elements; CSR cells not listed take `pad`.
    /// `None` if the dtype is not `float32`.
    pub fn to_dense_f32(&self, pad: f32) -> Option<Vec<f32>> {
        let values = self.values.as_f32()?;
        Some(self.densify(values, pad))
    }

    /// Dense row-major `int64` elements; CSR cells not listed take `pad`.
    /// `None` if the dtype is not `int64`.
    pub fn to_dense_i64(&self, pad: i64) -> Option<Vec<i64>> {
        let values = self.values.as_i64()?;
        Some(self.densify(values, pad))
    }

    fn densify<T: Copy>(&self, values: &[T], pad: T) -> Vec<T> {
        let Some(csr) = &self.csr else {
            return values.to_vec();
        };
        let dims = self.dims();
        let cols = dims.get(1).copied().unwrap_or(0);
        let mut out = vec![pad; self.dense_len()];
        // Invariants were checked at construction, so every index is in range.
        for (row, bounds) in csr.crow_indices.windows(2).enumerate() {
            let (start, end) = (index(bounds[0]), index(bounds[1]));
            for k in start..end {
                out[row * cols + index(csr.col_indices[k])] = values[k];
            }
        }
        out
    }
}

fn index(value: i64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

fn invalid(reason: String) -> Error {
    Error::InvalidTensor { reason }
}

fn element_count(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| invalid(format!("shape {shape:?} overflows")))
}

fn check_csr(values: &TensorValues, shape: &[usize], csr: &CsrIndices) -> Result<()> {
    let [rows, cols] = shape else {
        return Err(invalid(format!(
            "a CSR tensor needs a 2-D shape, got {shape:?}"
        )));
    };
    element_count(shape)?;
    let nnz = values.len();
    // Compared as `len - 1` so a hostile `rows = usize::MAX` cannot overflow.
    if csr.crow_indices.len().checked_sub(1) != Some(*rows) {
        return Err(invalid(format!(
            "crow_indices needs nrows + 1 entries for {rows} rows, got {}",
            csr.crow_indices.len()
        )));
    }
    if csr.col_indices.len() != nnz {
        return Err(invalid(format!(
            "col_indices needs one entry per value ({nnz}), got {}",
            csr.col_indices.len()
        )));
    }
    if csr.crow_indices.first() != Some(&0) {
        return Err(invalid("crow_indices must start at 0".to_owned()));
    }
    if csr.crow_indices.windows(2).any(|w| w[0] > w[1]) {
        return Err(invalid("crow_indices must not decrease".to_owned()));
    }
    if csr.crow_indices.last().map(|&v| index(v)) != Some(nnz) {
        return Err(invalid(format!(
            "crow_indices must end at the number of values ({nnz})"
        )));
    }
    if let Some(bad) = csr
        .col_indices
        .iter()
        .find(|&&c| c < 0 || index(c) >= *cols)
    {
        return Err(invalid(format!("column index {bad} is outside 0..{cols}")));
    }
    Ok(())
}

fn sparsify<T: Copy>(
    dense: &[T],
    [rows, cols]: [usize; 2],
    keep: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, CsrIndices)> {
    let cells = element_count(&[rows, cols])?;
    if dense.len() != cells {
        return Err(invalid(format!(
            "shape [{rows}, {cols}] needs {cells} elements, got {}",
            dense.len()
        )));
    }
    let pointers = rows
        .checked_add(1)
        .ok_or_else(|| invalid(format!("{rows} rows overflow")))?;
    let mut values = Vec::new();
    let mut crow_indices = Vec::with_capacity(pointers);
    let mut col_indices = Vec::new();
    crow_indices.push(0);
    for row in 0..rows {
        for col in 0..cols {
            let v = dense[row * cols + col];
            if keep(&v) {
                values.push(v);
                col_indices.push(col as i64);
            }
        }
        crow_indices.push(values.len() as i64);
    }
    Ok((
        values,
        CsrIndices {
            crow_indices,
            col_indices,
        },
    ))
}

impl Serialize for TensorData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut st = serializer.serialize_struct("TensorData", 5)?;
        match &self.values {
            TensorValues::Float32(v) => {
                if !v.iter().all(|x| x.is_finite()) {
                    return Err(crate::json::non_finite_error());
                }
                st.serialize_field("data", v)?;
            }
            TensorValues::Int64(v) => st.serialize_field("data", v)?,
        }
        st.serialize_field("dtype", &self.dtype())?;
        if let Some(shape) = &self.shape {
            st.serialize_field("shape", shape)?;
        } else {
            st.skip_field("shape")?;
        }
        if let Some(csr) = &self.csr {
            st.serialize_field("sparse_crow_indices", &csr.crow_indices)?;
            st.serialize_field("sparse_col_indices", &csr.col_indices)?;
        } else {
            st.skip_field("sparse_crow_indices")?;
            st.skip_field("sparse_col_indices")?;
        }
        st.end()
    }
}

/// One JSON number, kept as integer or float until the dtype is known.
#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    Float(f64),
}

struct Numbers(Vec<Number>);

impl<'de> Deserialize<'de> for Numbers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumbersVisitor;
        impl<'de> Visitor<'de> for NumbersVisitor {
            type Value = Numbers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Numbers, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(n) = seq.next_element::<NumberSeed>()? {
                    out.push(n.0);
                }
                Ok(Numbers(out))
            }
        }
        deserializer.deserialize_seq(NumbersVisitor)
    }
}

struct NumberSeed(Number);

impl<'de> Deserialize<'de> for NumberSeed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = NumberSeed;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumberSeed, E> {
                Ok(NumberSeed(Number::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumberSeed, E> {
                i64::try_from(v)
                    .map(|v| NumberSeed(Number::Int(v)))
                    .map_err(|_| E::custom(format!("{v} does not fit in int64")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumberSeed, E> {
                Ok(NumberSeed(Number::Float(v)))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

#[derive(Deserialize)]
struct TensorDataWire {
    data: Numbers,
    dtype: TensorDtype,
    #[serde(default)]
    shape: Option<Vec<usize>>,
    #[serde(default)]
    sparse_crow_indices: Option<Vec<i64>>,
    #[serde(default)]
    sparse_col_indices: Option<Vec<i64>>,
}

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = TensorDataWire::deserialize(deserializer)?;
        let numbers = wire.data.0;
        let values = match wire.dtype {
            TensorDtype::Float32 => TensorValues::Float32(
                numbers
                    .iter()
                    .map(|n| match *n {
                        Number::Int(i) => i as f32,
                        Number::Float(f) => f as f32,
                    })
                    .collect(),
            ),
            TensorDtype::Int64 => TensorValues::Int64(
                numbers
                    .iter()
                    .map(|n| match *n {
                        Number::Int(i) => Ok(i),
                        // An integral float (`2.0`) is accepted, as numpy's int64 cast does.
                        Number::Float(f)
                            if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 =>
                        {
                            Ok(f as i64)
                        }
                        Number::Float(f) => Err(de::Error::custom(format!(
                            "int64 tensor holds a non-integer value {f}"
                        ))),
                    })
                    .collect::<Result<_, D::Error>>()?,
            ),
        };
        let built = match (wire.sparse_crow_indices, wire.sparse_col_indices) {
            (None, None) => TensorData::new(values, wire.shape),
            (Some(crow_indices), Some(col_indices)) => match wire.shape.as_deref() {
                Some(&[rows, cols]) => TensorData::csr(
                    values,
                    [rows, cols],
                    CsrIndices {
                        crow_indices,
                        col_indices,
                    },
                ),
                other => Err(invalid(format!(
                    "a CSR tensor needs a 2-D shape, got {other:?}"
                ))),
            },
            _ => Err(invalid(
                "sparse_crow_indices and sparse_col_indices must be given together".to_owned(),
            )),
        };
        built.map_err(de::Error::custom)
    }
}

/// A 1-D `int64` tensor of token ids (a tokenizer's `u32` ids widen losslessly).
impl From<Vec<u32>> for TensorData {
    fn from(tokens: Vec<u32>) -> Self {
        Self::vector_i64(tokens.into_iter().map(i64::from).collect())
    }
}

/// A 1-D `int64` tensor of token ids.
impl From<&[u32]> for TensorData {
    fn from(tokens: &[u32]) -> Self {
        Self::vector_i64(tokens.iter().map(|&t| i64::from(t)).collect())
    }
}

/// A 1-D `int64` tensor ([`TensorData::vector_i64`]).
impl From<Vec<i64>> for TensorData {
    fn from(values: Vec<i64>) -> Self {
        Self::vector_i64(values)
    }
}

/// A 1-D `float32` tensor ([`TensorData::vector_f32`]).
impl From<Vec<f32>> for TensorData {
    fn from(values: Vec<f32>) -> Self {
        Self::vector_f32(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_dim_and_same_dims_agree_with_dims() {
        let flat = TensorData::vector_f32(vec![1.0; 6]);
        let flat6 = TensorData::new(TensorValues::Int64(vec![0; 6]), Some(vec![6])).unwrap();
        let grid = TensorData::new(TensorValues::Float32(vec![0.0; 6]), Some(vec![2, 3])).unwrap();
        let sparse = TensorData::sparsify_i64(&[-1, 5, -1, -1, -1, 7], [2, 3], -1).unwrap();
        let scalar = TensorData::new(TensorValues::Float32(vec![1.0]), Some(vec![])).unwrap();
        let all = [&flat, &flat6, &grid, &sparse, &scalar];
        for a in all {
            assert_eq!(a.leading_dim(), a.dims().first().copied());
            for b in all {
                assert_eq!(a.same_dims(b), a.dims() == b.dims(), "{a:?} vs {b:?}");
            }
        }
        assert!(flat.same_dims(&flat6) && grid.same_dims(&sparse) && !flat.same_dims(&grid));
    }

    #[test]
    fn csr_densifies_with_pad() {
        let t = TensorData::sparsify_i64(&[-1, 5, -1, -1, -1, 7], [2, 3], -1).unwrap();
        assert!(t.is_sparse());
        assert_eq!(t.values().as_i64().unwrap(), &[5, 7]);
        assert_eq!(t.to_dense_i64(-1).unwrap(), vec![-1, 5, -1, -1, -1, 7]);
    }

    #[test]
    fn int64_data_accepts_integral_floats_only() {
        let t: TensorData = serde_json::from_str(r#"{"data":[2.0,3],"dtype":"int64"}"#).unwrap();
        assert_eq!(t.values().as_i64().unwrap(), &[2, 3]);
        assert!(serde_json::from_str::<TensorData>(r#"{"data":[2.5],"dtype":"int64"}"#).is_err());
        let csr = r#"{"data":[1],"dtype":"int64","shape":[2,2],"sparse_crow_indices":[0,1]}"#;
        assert!(serde_json::from_str::<TensorData>(csr).is_err());
        let huge = r#"{"data":[],"dtype":"int64","shape":[18446744073709551615,0],
            "sparse_crow_indices":[0],"sparse_col_indices":[]}"#;
        assert!(serde_json::from_str::<TensorData>(huge).is_err());
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(TensorData::from_f32(vec![1.0; 5], vec![2, 3]).is_err());
        let bad = CsrIndices {
            crow_indices: vec![0, 2, 1],
            col_indices: vec![0],
        };
        assert!(TensorData::csr(TensorValues::Int64(vec![1]), [2, 2], bad).is_err());
    }
}
