//! `ForwardBackwardOutput` ↔ protobuf (docs/protocol.md §4.3).
//!
//! On the wire, per-datum outputs are batched: each `ArrayRecord` holds `num_datums`
//! datums and, per output field, one `BatchedTensor` concatenating every datum's elements
//! with int64 byte offsets. Datums of one record share each field's dtype and trailing
//! shape; ragged outputs take several records.

use std::collections::BTreeMap;

use prost::Message;

use super::tensor::{WireDtype, dtype_to_wire};
use super::{invalid, packed, wire};
use crate::error::Result;
use crate::tensor::{TensorData, TensorDtype, TensorValues};
use crate::training::{ForwardBackwardOutput, LossFnOutput};

/// The output type the SDK reports when the server leaves it empty.
const DEFAULT_OUTPUT_TYPE: &str = "ArrayRecord";

/// Most datums a record without fields may claim: such a record has no payload bounding
/// its count, and each datum costs an (empty) map, so a few bytes must not claim millions.
/// 64x the SDK's largest request chunk (`fwdbwd_max_chunk_len`, 1024 datums).
const MAX_FIELDLESS_DATUMS: i64 = 1 << 16;

impl ForwardBackwardOutput {
    /// Encodes the output as the protobuf result of a `forward`/`forward_backward` future
    /// (the server side). Consecutive datums with the same fields, dtypes and trailing
    /// shapes share one `ArrayRecord`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidValue`] for a sparse (CSR) output tensor: batched outputs
    /// are dense.
    pub fn encode_proto(&self) -> Result<Vec<u8>> {
        Ok(wire::ForwardBackwardOutput::try_from(self)?.encode_to_vec())
    }

    /// Decodes a protobuf `ForwardBackwardOutput` as the SDK does: the type name keeps the
    /// text after its last `:` (`"ArrayRecord"` when empty and there are no records),
    /// INT32 widens to `int64`, BFLOAT16 becomes `float32`, and each datum's shape is
    /// `[elements / product(trailing_shape), *trailing_shape]`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidValue`] naming the field of a malformed message.
    pub fn decode_proto(bytes: &[u8]) -> Result<Self> {
        Self::decode_wire(wire::ForwardBackwardOutput::decode(bytes))
    }

    /// [`decode_proto`](Self::decode_proto) from a body already in [`bytes::Bytes`] (e.g.
    /// an HTTP response): the tensors' bytes are read in place, not first copied out of
    /// the body, so each value is copied once, into its datum's tensor.
    ///
    /// # Errors
    /// As [`decode_proto`](Self::decode_proto).
    pub fn decode_proto_bytes(bytes: bytes::Bytes) -> Result<Self> {
        Self::decode_wire(wire::ForwardBackwardOutput::decode(bytes))
    }

    fn decode_wire(
        msg: std::result::Result<wire::ForwardBackwardOutput, prost::DecodeError>,
    ) -> Result<Self> {
        let msg =
            msg.map_err(|e| invalid("ForwardBackwardOutput", format!("malformed protobuf: {e}")))?;
        Self::try_from(msg)
    }
}

// ---------------------------------------------------------------------------------------
// public → prost

/// What datums must share to sit in one record: per field, its dtype and trailing shape.
type Signature<'a> = Vec<(&'a str, TensorDtype, &'a [usize])>;

fn signature<'a>(datum: &'a LossFnOutput, index: usize) -> Result<Signature<'a>> {
    datum
        .iter()
        .map(|(name, tensor)| {
            if tensor.is_sparse() {
                return Err(invalid(
                    &format!("loss_fn_outputs[{index}].{name}"),
                    "a sparse (CSR) output tensor cannot be batched; densify it".to_owned(),
                ));
            }
            let trailing = tensor
                .shape()
                .map_or(&[][..], |s| s.get(1..).unwrap_or_default());
            Ok((name.as_str(), tensor.dtype(), trailing))
        })
        .collect()
}

fn batch(
    datums: &[LossFnOutput],
    name: &str,
    dtype: TensorDtype,
    trailing: &[usize],
) -> wire::BatchedTensor {
    let tensors = || datums.iter().filter_map(|d| d.get(name));
    let mut offsets = Vec::with_capacity(datums.len() + 1);
    offsets.push(0i64);
    let mut total = 0usize;
    for tensor in tensors() {
        total += tensor.values().len() * dtype.item_size();
        offsets.push(i64::try_from(total).unwrap_or(i64::MAX));
    }
    let mut data = Vec::with_capacity(total);
    for tensor in tensors() {
        match tensor.values() {
            TensorValues::Float32(v) => packed::write(&mut data, v),
            TensorValues::Int64(v) => packed::write(&mut data, v),
        }
    }
    wire::BatchedTensor {
        data: data.into(),
        offsets: packed::to_bytes(&offsets),
        dtype: dtype_to_wire(dtype) as i32,
        trailing_shape: trailing
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect(),
    }
}

impl TryFrom<&ForwardBackwardOutput> for wire::ForwardBackwardOutput {
    type Error = crate::error::Error;

    fn try_from(output: &ForwardBackwardOutput) -> Result<Self> {
        let signatures = output
            .loss_fn_outputs
            .iter()
            .enumerate()
            .map(|(i, d)| signature(d, i))
            .collect::<Result<Vec<_>>>()?;
        let mut records = Vec::new();
        let mut start = 0;
        while start < signatures.len() {
            let end = (start..signatures.len())
                .find(|&j| signatures[j] != signatures[start])
                .unwrap_or(signatures.len());
            let datums = &output.loss_fn_outputs[start..end];
            records.push(wire::ArrayRecord {
                type_tag: output.loss_fn_output_type.clone(),
                fields: signatures[start]
                    .iter()
                    .map(|&(name, dtype, trailing)| {
                        (name.to_owned(), batch(datums, name, dtype, trailing))
                    })
                    .collect(),
                num_datums: i64::try_from(datums.len()).unwrap_or(i64::MAX),
            });
            start = end;
        }
        Ok(Self {
            loss_fn_output_type: output.loss_fn_output_type.clone(),
            loss_fn_outputs: records,
            metrics: output.metrics.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------
// prost → public

impl TryFrom<wire::ForwardBackwardOutput> for ForwardBackwardOutput {
    type Error = crate::error::Error;

    fn try_from(msg: wire::ForwardBackwardOutput) -> Result<Self> {
        if msg.loss_fn_outputs.is_empty() {
            let output_type = if msg.loss_fn_output_type.is_empty() {
                DEFAULT_OUTPUT_TYPE.to_owned()
            } else {
                msg.loss_fn_output_type
            };
            return Ok(Self {
                loss_fn_output_type: output_type,
                loss_fn_outputs: Vec::new(),
                metrics: msg.metrics,
            });
        }
        let class_name = msg
            .loss_fn_output_type
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut outputs = Vec::new();
        for (r, record) in msg.loss_fn_outputs.into_iter().enumerate() {
            outputs.extend(record_from_wire(record, &format!("loss_fn_outputs[{r}]"))?);
        }
        Ok(Self {
            loss_fn_output_type: class_name,
            loss_fn_outputs: outputs,
            metrics: msg.metrics,
        })
    }
}

fn record_from_wire(record: wire::ArrayRecord, path: &str) -> Result<Vec<LossFnOutput>> {
    let mut fields = Vec::with_capacity(record.fields.len());
    for (name, batched) in record.fields {
        let datums = batched_from_wire(batched, &format!("{path}.fields.{name}"))?;
        fields.push((name, datums));
    }
    // `num_datums` is authoritative; encoders predating it leave 0, and then the first
    // field's count is used (as the SDK does).
    let count = match record.num_datums {
        n if n < 0 => {
            return Err(invalid(
                &format!("{path}.num_datums"),
                format!("{n} is negative"),
            ));
        }
        0 => fields.first().map_or(0, |(_, d)| d.len()),
        n if fields.is_empty() && n > MAX_FIELDLESS_DATUMS => {
            return Err(invalid(
                &format!("{path}.num_datums"),
                format!("{n} datums without any field exceeds the limit of {MAX_FIELDLESS_DATUMS}"),
            ));
        }
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    if let Some((name, datums)) = fields.iter().find(|(_, d)| d.len() != count) {
        return Err(invalid(
            &format!("{path}.fields.{name}"),
            format!("holds {} datums but the record has {count}", datums.len()),
        ));
    }
    let mut outputs: Vec<LossFnOutput> = vec![BTreeMap::new(); count];
    for (name, datums) in fields {
        for (output, tensor) in outputs.iter_mut().zip(datums) {
            output.insert(name.clone(), tensor);
        }
    }
    Ok(outputs)
}

/// Splits a `BatchedTensor` into one tensor per datum.
fn batched_from_wire(msg: wire::BatchedTensor, path: &str) -> Result<Vec<TensorData>> {
    let dtype = WireDtype::parse(msg.dtype, &format!("{path}.dtype"))?;
    let offsets: Vec<i64> = packed::read(&msg.offsets, &format!("{path}.offsets"))?;
    let trailing = msg
        .trailing_shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| {
            invalid(
                &format!("{path}.trailing_shape"),
                format!("negative dimension in {:?}", msg.trailing_shape),
            )
        })?;
    let trailing_elems = trailing
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid(&format!("{path}.trailing_shape"), "overflows".to_owned()))?;
    let item = dtype.item_size();
    let bounds = offsets
        .iter()
        .map(|&o| {
            usize::try_from(o)
                .ok()
                .filter(|&o| o <= msg.data.len() && o % item == 0)
                .map(|o| o / item)
                .ok_or_else(|| {
                    invalid(
                        &format!("{path}.offsets"),
                        format!(
                            "byte offset {o} is not a multiple of {item} within 0..={}",
                            msg.data.len()
                        ),
                    )
                })
        })
        .collect::<Result<Vec<usize>>>()?;
    if bounds.windows(2).any(|w| w[0] > w[1]) {
        return Err(invalid(
            &format!("{path}.offsets"),
            "offsets decrease".to_owned(),
        ));
    }
    // Each datum's values are decoded straight from its byte range (one copy per value;
    // the bounds are whole elements within `data`, checked above).
    let data_path = format!("{path}.data");
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let n = w[1] - w[0];
            let leading = n.checked_div(trailing_elems).unwrap_or(0);
            let shape = std::iter::once(leading)
                .chain(trailing.iter().copied())
                .collect();
            let values = dtype.decode(&msg.data[w[0] * item..w[1] * item], &data_path)?;
            TensorData::new(values, Some(shape))
                .map_err(|e| invalid(&format!("{path}[datum {i}]"), e.to_string()))
        })
        .collect()
}
