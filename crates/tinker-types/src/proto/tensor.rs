//! `TensorData` ↔ protobuf `Tensor`, and the element dtypes the wire knows.
//!
//! Encoding writes the public dtypes (FLOAT32, INT64) with every element little-endian; CSR
//! tensors keep their layout (`values` in the dtype, `crow_indices`/`col_indices` as int64).
//! Decoding also accepts the narrower wire dtypes a server may send: INT32 widens to `int64`
//! and BFLOAT16 becomes `float32` (the 16 bits are the upper half of the float32).
//!
//! One deliberate difference from SDK 0.38: its decoder of single `Tensor` messages converts
//! BFLOAT16 payloads numerically from the raw 16-bit integers (it shifts only inside
//! `BatchedTensor`). We shift in both places, which is what BFLOAT16 means; a server should
//! not send BFLOAT16 `Tensor`s to the Python SDK anyway.

use super::fields::{
    delimited_len, implicit_delimited_len, implicit_varint_len, packed_varints_len,
    write_delimited_header, write_implicit_varint, write_packed_varints,
};
use super::{invalid, packed, wire};
use crate::error::Result;
use crate::tensor::{CsrIndices, TensorData, TensorDtype, TensorValues};

/// The wire dtype of a public dtype.
pub(crate) fn dtype_to_wire(dtype: TensorDtype) -> wire::DType {
    match dtype {
        TensorDtype::Float32 => wire::DType::DtypeFloat32,
        TensorDtype::Int64 => wire::DType::DtypeInt64,
    }
}

/// A dtype the decoder understands, with the size of one element on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireDtype {
    Float32,
    Int64,
    Int32,
    Bfloat16,
}

impl WireDtype {
    /// Parses the enum value of a message's `dtype` field (`path` names it in errors).
    pub(crate) fn parse(value: i32, path: &str) -> Result<Self> {
        match wire::DType::try_from(value) {
            Ok(wire::DType::DtypeFloat32) => Ok(Self::Float32),
            Ok(wire::DType::DtypeInt64) => Ok(Self::Int64),
            Ok(wire::DType::DtypeInt32) => Ok(Self::Int32),
            Ok(wire::DType::DtypeBfloat16) => Ok(Self::Bfloat16),
            Ok(wire::DType::DtypeUnspecified) => {
                Err(invalid(path, "dtype is unspecified".to_owned()))
            }
            Err(_) => Err(invalid(path, format!("unknown dtype enum value {value}"))),
        }
    }

    /// Bytes per element on the wire.
    pub(crate) fn item_size(self) -> usize {
        match self {
            Self::Float32 | Self::Int32 => 4,
            Self::Int64 => 8,
            Self::Bfloat16 => 2,
        }
    }

    /// Decodes packed elements into public values (widening INT32 and BFLOAT16).
    pub(crate) fn decode(self, bytes: &[u8], path: &str) -> Result<TensorValues> {
        Ok(match self {
            Self::Float32 => TensorValues::Float32(packed::read(bytes, path)?),
            Self::Int64 => TensorValues::Int64(packed::read(bytes, path)?),
            Self::Int32 => TensorValues::Int64(
                packed::read::<i32>(bytes, path)?
                    .into_iter()
                    .map(i64::from)
                    .collect(),
            ),
            Self::Bfloat16 => TensorValues::Float32(
                packed::read::<u16>(bytes, path)?
                    .into_iter()
                    .map(|bits| f32::from_bits(u32::from(bits) << 16))
                    .collect(),
            ),
        })
    }
}

/// Packed little-endian bytes of the values, in their own dtype.
pub(crate) fn values_to_bytes(values: &TensorValues) -> Vec<u8> {
    match values {
        TensorValues::Float32(v) => packed::to_bytes(v),
        TensorValues::Int64(v) => packed::to_bytes(v),
    }
}

fn values_byte_len(values: &TensorValues) -> usize {
    match values {
        TensorValues::Float32(v) => packed::byte_len(v),
        TensorValues::Int64(v) => packed::byte_len(v),
    }
}

fn write_values(values: &TensorValues, buf: &mut Vec<u8>) {
    match values {
        TensorValues::Float32(v) => packed::write(buf, v),
        TensorValues::Int64(v) => packed::write(buf, v),
    }
}

/// A dimension as the wire's int64. A `usize` that does not fit cannot come from a real
/// allocation, so saturating is only a guard.
fn dim_to_wire(dim: usize) -> i64 {
    i64::try_from(dim).unwrap_or(i64::MAX)
}

/// Converts a public tensor into the prost message.
impl From<&TensorData> for wire::Tensor {
    fn from(tensor: &TensorData) -> Self {
        let encoding = match tensor.csr_indices() {
            Some(csr) => wire::tensor::Encoding::SparseCsr(wire::SparseCsr {
                values: values_to_bytes(tensor.values()),
                crow_indices: packed::to_bytes(&csr.crow_indices),
                col_indices: packed::to_bytes(&csr.col_indices),
            }),
            None => wire::tensor::Encoding::Dense(values_to_bytes(tensor.values())),
        };
        Self {
            dtype: dtype_to_wire(tensor.dtype()) as i32,
            shape: tensor
                .shape()
                .unwrap_or_default()
                .iter()
                .map(|&d| dim_to_wire(d))
                .collect(),
            encoding: Some(encoding),
        }
    }
}

/// Decodes a prost `Tensor` into a public tensor; `path` names the message in errors.
///
/// An empty `shape` decodes as "no shape" (1-D): proto3 cannot tell an absent repeated
/// field from an empty one, so a 0-D tensor comes back as a 1-element vector.
pub(crate) fn tensor_from_wire(msg: wire::Tensor, path: &str) -> Result<TensorData> {
    let dtype = WireDtype::parse(msg.dtype, &format!("{path}.dtype"))?;
    let shape = msg
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| {
            invalid(
                &format!("{path}.shape"),
                format!("negative dimension in {:?}", msg.shape),
            )
        })?;
    let shape = (!shape.is_empty()).then_some(shape);
    let tensor = match msg.encoding {
        None => {
            return Err(invalid(
                path,
                "neither dense nor sparse_csr is set".to_owned(),
            ));
        }
        Some(wire::tensor::Encoding::Dense(bytes)) => {
            let values = dtype.decode(&bytes, &format!("{path}.dense"))?;
            TensorData::new(values, shape)
        }
        Some(wire::tensor::Encoding::SparseCsr(csr)) => {
            let values = dtype.decode(&csr.values, &format!("{path}.sparse_csr.values"))?;
            let indices = CsrIndices {
                crow_indices: packed::read(
                    &csr.crow_indices,
                    &format!("{path}.sparse_csr.crow_indices"),
                )?,
                col_indices: packed::read(
                    &csr.col_indices,
                    &format!("{path}.sparse_csr.col_indices"),
                )?,
            };
            let Some(&[rows, cols]) = shape.as_deref() else {
                return Err(invalid(
                    &format!("{path}.shape"),
                    format!("a sparse_csr tensor needs a 2-D shape, got {:?}", msg.shape),
                ));
            };
            TensorData::csr(values, [rows, cols], indices)
        }
    };
    tensor.map_err(|e| invalid(path, e.to_string()))
}

impl TryFrom<wire::Tensor> for TensorData {
    type Error = crate::error::Error;

    fn try_from(msg: wire::Tensor) -> Result<Self> {
        tensor_from_wire(msg, "Tensor")
    }
}

/// Direct encoding of a `Tensor` message body, byte-identical to `wire::Tensor::from(t)`
/// encoded by prost, without the intermediate copies.
pub(crate) mod direct {
    use super::*;

    const DENSE: u32 = 1;
    const SPARSE_CSR: u32 = 2;
    const DTYPE: u32 = 3;
    const SHAPE: u32 = 4;
    const CSR_VALUES: u32 = 1;
    const CSR_CROW: u32 = 2;
    const CSR_COL: u32 = 3;

    fn shape_iter(tensor: &TensorData) -> impl Iterator<Item = u64> + Clone + '_ {
        // int64 varints: the two's-complement bits as u64 (dimensions are never negative).
        tensor
            .shape()
            .unwrap_or_default()
            .iter()
            .map(|&d| dim_to_wire(d) as u64)
    }

    fn csr_len(values: &TensorValues, csr: &CsrIndices) -> usize {
        // Inside the SparseCsr message the three `bytes` fields are implicit (left out when
        // empty).
        implicit_delimited_len(CSR_VALUES, values_byte_len(values))
            + implicit_delimited_len(CSR_CROW, packed::byte_len(&csr.crow_indices))
            + implicit_delimited_len(CSR_COL, packed::byte_len(&csr.col_indices))
    }

    /// Size of the encoded `Tensor` message body.
    pub(crate) fn encoded_len(tensor: &TensorData) -> usize {
        let encoding = match tensor.csr_indices() {
            // Oneof members are always written, even when empty.
            None => delimited_len(DENSE, values_byte_len(tensor.values())),
            Some(csr) => delimited_len(SPARSE_CSR, csr_len(tensor.values(), csr)),
        };
        encoding
            + implicit_varint_len(DTYPE, dtype_to_wire(tensor.dtype()) as u64)
            + packed_varints_len(SHAPE, shape_iter(tensor))
    }

    /// Appends the encoded `Tensor` message body (`encoded_len(tensor)` bytes).
    pub(crate) fn write(tensor: &TensorData, buf: &mut Vec<u8>) {
        let values = tensor.values();
        match tensor.csr_indices() {
            None => {
                write_delimited_header(DENSE, values_byte_len(values), buf);
                write_values(values, buf);
            }
            Some(csr) => {
                write_delimited_header(SPARSE_CSR, csr_len(values, csr), buf);
                if values_byte_len(values) != 0 {
                    write_delimited_header(CSR_VALUES, values_byte_len(values), buf);
                    write_values(values, buf);
                }
                for (tag, indices) in [(CSR_CROW, &csr.crow_indices), (CSR_COL, &csr.col_indices)] {
                    if !indices.is_empty() {
                        write_delimited_header(tag, packed::byte_len(indices), buf);
                        packed::write(buf, indices);
                    }
                }
            }
        }
        write_implicit_varint(DTYPE, dtype_to_wire(tensor.dtype()) as u64, buf);
        write_packed_varints(SHAPE, shape_iter(tensor), buf);
    }
}
