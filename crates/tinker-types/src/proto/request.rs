//! `ForwardBackwardRequest` ↔ protobuf (docs/protocol.md §4.2).
//!
//! Two encoders produce the same bytes:
//! * [`ForwardBackwardRequest::encode_proto`] writes the message straight into one buffer
//!   sized up front, copying every packed array (tokens, tensors) from its slice in a
//!   single bulk copy. This is the one to send.
//! * `wire::ForwardBackwardRequest::try_from(&request)` builds the prost structs (used by
//!   tests to prove the two byte-identical, and by the benchmark as the baseline).

use prost::Message;

use super::fields::{
    delimited_len, double_len, implicit_delimited_len, implicit_varint_len, varint_len,
    write_delimited_header, write_double, write_implicit_bytes, write_implicit_varint,
    write_varint,
};
use super::tensor::{direct as tensor_direct, tensor_from_wire};
use super::{compress, invalid, packed, wire};
use crate::datum::{Datum, ProvenanceSpan, SpanRef};
use crate::error::Result;
use crate::loss::{LossConfigValue, LossFn, LossFnConfig};
use crate::model_input::{
    DmelChunk, EncodedTextChunk, ImageChunk, ImageFormat, ModelInput, ModelInputChunk,
};
use crate::training::ForwardBackwardRequest;

// Field numbers of the messages written here (see proto/tinker_public.proto).
mod tag {
    pub(super) const MODEL_ID: u32 = 1;
    pub(super) const SEQ_ID: u32 = 2;
    pub(super) const DATA: u32 = 3;
    pub(super) const LOSS_FN: u32 = 4;
    pub(super) const LOSS_FN_CONFIG: u32 = 5;
    pub(super) const FORWARD_ONLY: u32 = 6;
    pub(super) const LOSS_FN_CONFIG_V2: u32 = 7;
    // Datum
    pub(super) const MODEL_INPUT: u32 = 1;
    pub(super) const LOSS_FN_INPUTS: u32 = 2;
    pub(super) const MODEL_INPUT_SPANS: u32 = 3;
    pub(super) const LOSS_FN_INPUT_SPANS: u32 = 4;
    // Chunk (oneof) and its members
    pub(super) const ENCODED_TEXT: u32 = 1;
    pub(super) const IMAGE: u32 = 2;
    pub(super) const DMEL: u32 = 3;
    pub(super) const TOKENS: u32 = 1;
    pub(super) const IMAGE_DATA: u32 = 1;
    pub(super) const IMAGE_FORMAT: u32 = 2;
    pub(super) const EXPECTED_TOKENS: u32 = 3;
    pub(super) const DMEL_BYTES: u32 = 1;
    // ProvenanceSpan (oneof) and the span messages
    pub(super) const PROMPT_TOKENS: u32 = 1;
    pub(super) const SAMPLED_TOKENS: u32 = 2;
    pub(super) const SEQUENCE_ID: u32 = 1;
    pub(super) const OFFSET: u32 = 2;
    pub(super) const LENGTH: u32 = 3;
    // Map entries and LossConfigValue (oneof)
    pub(super) const KEY: u32 = 1;
    pub(super) const VALUE: u32 = 2;
    pub(super) const NUMBER: u32 = 1;
    pub(super) const TEXT: u32 = 2;
}

impl ForwardBackwardRequest {
    /// Encodes the request as the protobuf body of `POST /api/v1/forward_backward`.
    ///
    /// The message is written into one buffer allocated at its exact final size; packed
    /// arrays are bulk-copied from their slices. The bytes equal prost's encoding of the
    /// same message.
    ///
    /// # Errors
    /// [`crate::Error::InvalidValue`] naming the field when the request cannot be encoded:
    /// `seq_id` or a token id beyond int32, an `image_asset_pointer` chunk (sampling only,
    /// the SDK refuses it too), or a count beyond int32/int64.
    pub fn encode_proto(&self) -> Result<Vec<u8>> {
        self.as_borrowed().encode_proto()
    }

    /// The size in bytes of [`Self::encode_proto`]'s output, without encoding.
    ///
    /// # Errors
    /// As [`Self::encode_proto`].
    pub fn encoded_proto_len(&self) -> Result<usize> {
        Ok(Plan::new(&self.as_borrowed())?.total)
    }

    /// The request as a [`ForwardBackwardRequestRef`] (nothing copied).
    pub fn as_borrowed(&self) -> ForwardBackwardRequestRef<'_> {
        ForwardBackwardRequestRef {
            model_id: &self.model_id,
            seq_id: self.seq_id,
            data: &self.data,
            loss_fn: &self.loss_fn,
            loss_fn_config: self.loss_fn_config.as_ref(),
            forward_only: self.forward_only,
        }
    }
}

/// A [`ForwardBackwardRequest`] over borrowed parts: encodes a batch the caller keeps (a
/// batch reused across steps, or one chunk of a larger batch) without copying it first.
#[derive(Debug, Clone, Copy)]
pub struct ForwardBackwardRequestRef<'a> {
    /// The model to run.
    pub model_id: &'a str,
    /// Per-model request sequence number (>= 1).
    pub seq_id: Option<u64>,
    /// The batch.
    pub data: &'a [Datum],
    /// Loss function.
    pub loss_fn: &'a LossFn,
    /// Loss configuration.
    pub loss_fn_config: Option<&'a LossFnConfig>,
    /// True for a forward pass only.
    pub forward_only: bool,
}

impl ForwardBackwardRequestRef<'_> {
    /// Encodes the request as the protobuf body of `POST /api/v1/forward_backward`: the
    /// same bytes as [`ForwardBackwardRequest::encode_proto`] of the owned request.
    ///
    /// # Errors
    /// As [`ForwardBackwardRequest::encode_proto`].
    pub fn encode_proto(&self) -> Result<Vec<u8>> {
        let plan = Plan::new(self)?;
        let mut buf = Vec::with_capacity(plan.total);
        plan.write(self, &mut buf);
        debug_assert_eq!(buf.len(), plan.total, "planned and written sizes agree");
        Ok(buf)
    }
}

impl ForwardBackwardRequest {
    /// [`Self::encode_proto`] compressed as one zstd frame at zstd's default level, as the
    /// SDK sends it when the server's `proto_compress_fwdbwd` flag is on (with
    /// `Content-Encoding: zstd`).
    ///
    /// # Errors
    /// As [`Self::encode_proto`], or a compression failure.
    pub fn encode_proto_zstd(&self) -> Result<Vec<u8>> {
        compress::zstd_compress(&self.encode_proto()?)
    }

    /// Decodes a protobuf `ForwardBackwardRequest` body (the server side).
    ///
    /// `seq_id` 0 (the proto3 default, what the SDK sends for "none") decodes as `None`;
    /// `loss_fn_config_v2` is preferred over the legacy map when it is not empty.
    ///
    /// # Errors
    /// [`crate::Error::InvalidValue`] naming the field of a malformed message.
    pub fn decode_proto(bytes: &[u8]) -> Result<Self> {
        let msg = wire::ForwardBackwardRequest::decode(bytes)
            .map_err(|e| invalid("ForwardBackwardRequest", format!("malformed protobuf: {e}")))?;
        Self::try_from(msg)
    }

    /// Decodes a zstd-compressed body (`Content-Encoding: zstd`), refusing to inflate it
    /// beyond `max_decoded_len` bytes.
    ///
    /// # Errors
    /// A corrupt or oversized frame, or as [`Self::decode_proto`].
    pub fn decode_proto_zstd(bytes: &[u8], max_decoded_len: usize) -> Result<Self> {
        Self::decode_proto(&compress::zstd_decompress(bytes, max_decoded_len)?)
    }
}

// ---------------------------------------------------------------------------------------
// Validation shared by both encoders

fn seq_id_to_wire(seq_id: Option<u64>) -> Result<i32> {
    seq_id.map_or(Ok(0), |id| {
        i32::try_from(id).map_err(|_| invalid("seq_id", format!("{id} does not fit in int32")))
    })
}

fn u64_to_int64(value: u64, path: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| invalid(path, format!("{value} does not fit in int64")))
}

fn expected_tokens_to_wire(value: Option<u32>, path: &str) -> Result<Option<i32>> {
    value
        .map(|n| i32::try_from(n).map_err(|_| invalid(path, format!("{n} does not fit in int32"))))
        .transpose()
}

fn not_encodable(path: &str) -> crate::error::Error {
    invalid(
        path,
        "image_asset_pointer chunks are for sampling only and cannot be sent for training"
            .to_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// Direct encoder: plan (validate + size), then write

/// The validated request's encoded size, with each datum's size kept for its prefix.
struct Plan {
    total: usize,
    datum_lens: Vec<usize>,
    seq_id: i32,
}

impl Plan {
    fn new(req: &ForwardBackwardRequestRef<'_>) -> Result<Self> {
        let seq_id = seq_id_to_wire(req.seq_id)?;
        let datum_lens = req
            .data
            .iter()
            .enumerate()
            .map(|(i, d)| datum_len(d, i))
            .collect::<Result<Vec<_>>>()?;
        let mut total = implicit_delimited_len(tag::MODEL_ID, req.model_id.len())
            + implicit_varint_len(tag::SEQ_ID, seq_id as u64)
            + datum_lens
                .iter()
                .map(|&len| delimited_len(tag::DATA, len))
                .sum::<usize>()
            + implicit_delimited_len(tag::LOSS_FN, req.loss_fn.as_str().len())
            + implicit_varint_len(tag::FORWARD_ONLY, u64::from(req.forward_only));
        if let Some(config) = req.loss_fn_config {
            total += config_len(config);
        }
        Ok(Self {
            total,
            datum_lens,
            seq_id,
        })
    }

    fn write(&self, req: &ForwardBackwardRequestRef<'_>, buf: &mut Vec<u8>) {
        write_implicit_bytes(tag::MODEL_ID, req.model_id.as_bytes(), buf);
        write_implicit_varint(tag::SEQ_ID, self.seq_id as u64, buf);
        for (datum, &len) in req.data.iter().zip(&self.datum_lens) {
            write_delimited_header(tag::DATA, len, buf);
            write_datum(datum, buf);
        }
        write_implicit_bytes(tag::LOSS_FN, req.loss_fn.as_str().as_bytes(), buf);
        if let Some(config) = req.loss_fn_config {
            write_legacy_config(config, buf);
        }
        write_implicit_varint(tag::FORWARD_ONLY, u64::from(req.forward_only), buf);
        if let Some(config) = req.loss_fn_config {
            write_config_v2(config, buf);
        }
    }
}

/// Map entries follow prost: the key is left out when empty, a scalar value when it equals
/// its default (0.0 for the legacy `double` map).
fn key_len(key: &str) -> usize {
    implicit_delimited_len(tag::KEY, key.len())
}

fn legacy_value_len(value: f64) -> usize {
    if value == 0.0 {
        0
    } else {
        double_len(tag::VALUE)
    }
}

fn config_value_len(value: &LossConfigValue) -> usize {
    // A LossConfigValue is never the default message (its oneof is set), so it is written.
    match value {
        LossConfigValue::Number(_) => double_len(tag::NUMBER),
        LossConfigValue::Text(text) => delimited_len(tag::TEXT, text.len()),
    }
}

fn config_len(config: &LossFnConfig) -> usize {
    config
        .iter()
        .map(|(key, value)| {
            let legacy = match value {
                LossConfigValue::Number(n) => {
                    delimited_len(tag::LOSS_FN_CONFIG, key_len(key) + legacy_value_len(*n))
                }
                LossConfigValue::Text(_) => 0,
            };
            let v2 = delimited_len(
                tag::LOSS_FN_CONFIG_V2,
                message_entry_len(key, config_value_len(value)),
            );
            legacy + v2
        })
        .sum()
}

fn write_key(key: &str, buf: &mut Vec<u8>) {
    write_implicit_bytes(tag::KEY, key.as_bytes(), buf);
}

/// Size of a map entry body whose value is a message of `value_len` bytes (never the
/// default message here, so always written).
fn message_entry_len(key: &str, value_len: usize) -> usize {
    key_len(key) + delimited_len(tag::VALUE, value_len)
}

/// Writes a map entry up to its message value: entry header, key, value header. The
/// caller appends the `value_len` bytes of the value.
fn write_message_entry_head(map_tag: u32, key: &str, value_len: usize, buf: &mut Vec<u8>) {
    write_delimited_header(map_tag, message_entry_len(key, value_len), buf);
    write_key(key, buf);
    write_delimited_header(tag::VALUE, value_len, buf);
}

fn write_legacy_config(config: &LossFnConfig, buf: &mut Vec<u8>) {
    for (key, value) in config {
        if let LossConfigValue::Number(n) = value {
            write_delimited_header(
                tag::LOSS_FN_CONFIG,
                key_len(key) + legacy_value_len(*n),
                buf,
            );
            write_key(key, buf);
            if *n != 0.0 {
                write_double(tag::VALUE, *n, buf);
            }
        }
    }
}

fn write_config_v2(config: &LossFnConfig, buf: &mut Vec<u8>) {
    for (key, value) in config {
        write_message_entry_head(tag::LOSS_FN_CONFIG_V2, key, config_value_len(value), buf);
        match value {
            LossConfigValue::Number(n) => write_double(tag::NUMBER, *n, buf),
            LossConfigValue::Text(text) => {
                write_delimited_header(tag::TEXT, text.len(), buf);
                buf.extend_from_slice(text.as_bytes());
            }
        }
    }
}

fn datum_len(datum: &Datum, index: usize) -> Result<usize> {
    let mut len = 0;
    for (c, chunk) in datum.model_input.chunks.iter().enumerate() {
        let path = || format!("data[{index}].model_input.chunks[{c}]");
        len += delimited_len(tag::MODEL_INPUT, chunk_len(chunk, path)?);
    }
    for (name, tensor) in &datum.loss_fn_inputs {
        let entry = message_entry_len(name, tensor_direct::encoded_len(tensor));
        len += delimited_len(tag::LOSS_FN_INPUTS, entry);
    }
    for (field_tag, spans, field) in span_lists(datum) {
        for (s, span) in spans.iter().enumerate() {
            let span_len = span_len(span, || format!("data[{index}].{field}[{s}]"))?;
            len += delimited_len(field_tag, span_len);
        }
    }
    Ok(len)
}

fn write_datum(datum: &Datum, buf: &mut Vec<u8>) {
    for chunk in &datum.model_input.chunks {
        // Sizes and token ids were validated by the plan, so these cannot fail here.
        let len = unchecked_chunk_len(chunk, String::new).unwrap_or_default();
        write_delimited_header(tag::MODEL_INPUT, len, buf);
        write_chunk(chunk, buf);
    }
    for (name, tensor) in &datum.loss_fn_inputs {
        write_message_entry_head(
            tag::LOSS_FN_INPUTS,
            name,
            tensor_direct::encoded_len(tensor),
            buf,
        );
        tensor_direct::write(tensor, buf);
    }
    for (field_tag, spans, _) in span_lists(datum) {
        for span in spans {
            let len = span_len(span, String::new).unwrap_or_default();
            write_delimited_header(field_tag, len, buf);
            write_span(span, buf);
        }
    }
}

fn span_lists(datum: &Datum) -> [(u32, &[ProvenanceSpan], &'static str); 2] {
    [
        (
            tag::MODEL_INPUT_SPANS,
            datum.model_input_spans.as_deref().unwrap_or_default(),
            "model_input_spans",
        ),
        (
            tag::LOSS_FN_INPUT_SPANS,
            datum.loss_fn_input_spans.as_deref().unwrap_or_default(),
            "loss_fn_input_spans",
        ),
    ]
}

/// Size of a `Chunk` message body; validates what the wire cannot carry (`path` names the
/// chunk in an error, and is only built for one).
fn chunk_len(chunk: &ModelInputChunk, path: impl Fn() -> String) -> Result<usize> {
    if let ModelInputChunk::EncodedText(text) = chunk {
        packed::check_int32_tokens_at(&text.tokens, || format!("{}.tokens", path()))?;
    }
    unchecked_chunk_len(chunk, path)
}

/// [`chunk_len`] without the token-id check (for chunks [`chunk_len`] already passed).
fn unchecked_chunk_len(chunk: &ModelInputChunk, path: impl Fn() -> String) -> Result<usize> {
    Ok(match chunk {
        ModelInputChunk::EncodedText(text) => delimited_len(
            tag::ENCODED_TEXT,
            implicit_delimited_len(tag::TOKENS, packed::byte_len(&text.tokens)),
        ),
        ModelInputChunk::Image(image) => {
            let expected = expected_tokens_to_wire(
                image.expected_tokens,
                &format!("{}.expected_tokens", path()),
            )?;
            delimited_len(tag::IMAGE, image_len(image, expected))
        }
        ModelInputChunk::Dmel(dmel) => delimited_len(
            tag::DMEL,
            implicit_delimited_len(tag::DMEL_BYTES, dmel.dmel.len()),
        ),
        ModelInputChunk::ImageAssetPointer(_) => return Err(not_encodable(&path())),
    })
}

fn image_len(image: &ImageChunk, expected_tokens: Option<i32>) -> usize {
    implicit_delimited_len(tag::IMAGE_DATA, image.data.len())
        + implicit_delimited_len(tag::IMAGE_FORMAT, image.format.as_str().len())
        // `optional int32`: written whenever set, negative values sign-extended.
        + expected_tokens.map_or(0, |n| varint_len(tag::EXPECTED_TOKENS, i64::from(n) as u64))
}

fn write_chunk(chunk: &ModelInputChunk, buf: &mut Vec<u8>) {
    match chunk {
        ModelInputChunk::EncodedText(text) => {
            let bytes = packed::byte_len(&text.tokens);
            write_delimited_header(
                tag::ENCODED_TEXT,
                implicit_delimited_len(tag::TOKENS, bytes),
                buf,
            );
            if bytes != 0 {
                write_delimited_header(tag::TOKENS, bytes, buf);
                // Validated to fit int32: the u32 bytes are the int32 bytes.
                packed::write(buf, &text.tokens);
            }
        }
        ModelInputChunk::Image(image) => {
            let expected = image.expected_tokens.and_then(|n| i32::try_from(n).ok());
            write_delimited_header(tag::IMAGE, image_len(image, expected), buf);
            write_implicit_bytes(tag::IMAGE_DATA, &image.data, buf);
            write_implicit_bytes(tag::IMAGE_FORMAT, image.format.as_str().as_bytes(), buf);
            if let Some(n) = expected {
                write_varint(tag::EXPECTED_TOKENS, i64::from(n) as u64, buf);
            }
        }
        ModelInputChunk::Dmel(dmel) => {
            write_delimited_header(
                tag::DMEL,
                implicit_delimited_len(tag::DMEL_BYTES, dmel.dmel.len()),
                buf,
            );
            write_implicit_bytes(tag::DMEL_BYTES, &dmel.dmel, buf);
        }
        // Refused by the plan.
        ModelInputChunk::ImageAssetPointer(_) => {}
    }
}

fn span_parts(span: &ProvenanceSpan) -> (u32, &SpanRef) {
    match span {
        ProvenanceSpan::PromptTokens(s) => (tag::PROMPT_TOKENS, s),
        ProvenanceSpan::SampledTokens(s) => (tag::SAMPLED_TOKENS, s),
    }
}

fn span_ref_len(span: &SpanRef) -> usize {
    implicit_delimited_len(tag::SEQUENCE_ID, span.sequence_id.len())
        + implicit_varint_len(tag::OFFSET, span.offset)
        + implicit_varint_len(tag::LENGTH, span.length)
}

/// Size of a `ProvenanceSpan` message body.
fn span_len(span: &ProvenanceSpan, path: impl Fn() -> String) -> Result<usize> {
    let (arm, span) = span_parts(span);
    u64_to_int64(span.offset, &format!("{}.offset", path()))?;
    u64_to_int64(span.length, &format!("{}.length", path()))?;
    Ok(delimited_len(arm, span_ref_len(span)))
}

fn write_span(span: &ProvenanceSpan, buf: &mut Vec<u8>) {
    let (arm, span) = span_parts(span);
    write_delimited_header(arm, span_ref_len(span), buf);
    write_implicit_bytes(tag::SEQUENCE_ID, span.sequence_id.as_bytes(), buf);
    write_implicit_varint(tag::OFFSET, span.offset, buf);
    write_implicit_varint(tag::LENGTH, span.length, buf);
}

// ---------------------------------------------------------------------------------------
// Public → prost structs (the baseline encoder)

impl TryFrom<&ForwardBackwardRequest> for wire::ForwardBackwardRequest {
    type Error = crate::error::Error;

    fn try_from(req: &ForwardBackwardRequest) -> Result<Self> {
        let mut msg = Self {
            model_id: req.model_id.clone(),
            seq_id: seq_id_to_wire(req.seq_id)?,
            data: req
                .data
                .iter()
                .enumerate()
                .map(|(i, d)| datum_to_wire(d, i))
                .collect::<Result<_>>()?,
            loss_fn: req.loss_fn.as_str().to_owned(),
            forward_only: req.forward_only,
            ..Self::default()
        };
        // Numbers go to both maps, texts only to v2 (the SDK's dual write).
        for (key, value) in req.loss_fn_config.iter().flatten() {
            let v2 = match value {
                LossConfigValue::Number(n) => {
                    msg.loss_fn_config.insert(key.clone(), *n);
                    wire::loss_config_value::Value::Number(*n)
                }
                LossConfigValue::Text(text) => wire::loss_config_value::Value::Text(text.clone()),
            };
            msg.loss_fn_config_v2
                .insert(key.clone(), wire::LossConfigValue { value: Some(v2) });
        }
        Ok(msg)
    }
}

fn datum_to_wire(datum: &Datum, index: usize) -> Result<wire::Datum> {
    let spans = |spans: &Option<Vec<ProvenanceSpan>>, field: &str| {
        spans
            .iter()
            .flatten()
            .enumerate()
            .map(|(s, span)| span_to_wire(span, &format!("data[{index}].{field}[{s}]")))
            .collect::<Result<Vec<_>>>()
    };
    Ok(wire::Datum {
        model_input: datum
            .model_input
            .chunks
            .iter()
            .enumerate()
            .map(|(c, chunk)| {
                chunk_to_wire(chunk, &format!("data[{index}].model_input.chunks[{c}]"))
            })
            .collect::<Result<_>>()?,
        loss_fn_inputs: datum
            .loss_fn_inputs
            .iter()
            .map(|(name, tensor)| (name.clone(), wire::Tensor::from(tensor)))
            .collect(),
        model_input_spans: spans(&datum.model_input_spans, "model_input_spans")?,
        loss_fn_input_spans: spans(&datum.loss_fn_input_spans, "loss_fn_input_spans")?,
    })
}

fn chunk_to_wire(chunk: &ModelInputChunk, path: &str) -> Result<wire::Chunk> {
    use wire::chunk::Chunk;
    let chunk = match chunk {
        ModelInputChunk::EncodedText(text) => {
            packed::check_int32_tokens(&text.tokens, &format!("{path}.tokens"))?;
            Chunk::EncodedText(wire::EncodedTextChunk {
                tokens: packed::to_bytes(&text.tokens),
            })
        }
        ModelInputChunk::Image(image) => Chunk::Image(wire::ImageChunk {
            data: image.data.clone(),
            format: image.format.as_str().to_owned(),
            expected_tokens: expected_tokens_to_wire(
                image.expected_tokens,
                &format!("{path}.expected_tokens"),
            )?,
            override_dimensions: None,
        }),
        ModelInputChunk::Dmel(dmel) => Chunk::Dmel(wire::DmelChunk {
            dmel: dmel.dmel.clone(),
        }),
        ModelInputChunk::ImageAssetPointer(_) => return Err(not_encodable(path)),
    };
    Ok(wire::Chunk { chunk: Some(chunk) })
}

fn span_to_wire(span: &ProvenanceSpan, path: &str) -> Result<wire::ProvenanceSpan> {
    use wire::provenance_span::Span;
    let (_, r) = span_parts(span);
    let offset = u64_to_int64(r.offset, &format!("{path}.offset"))?;
    let length = u64_to_int64(r.length, &format!("{path}.length"))?;
    let sequence_id = r.sequence_id.clone();
    Ok(wire::ProvenanceSpan {
        span: Some(match span {
            ProvenanceSpan::PromptTokens(_) => Span::PromptTokens(wire::PromptProvenanceSpan {
                sequence_id,
                offset,
                length,
            }),
            ProvenanceSpan::SampledTokens(_) => Span::SampledTokens(wire::SampledProvenanceSpan {
                sequence_id,
                offset,
                length,
            }),
        }),
    })
}

// ---------------------------------------------------------------------------------------
// prost structs → public (the server side)

impl TryFrom<wire::ForwardBackwardRequest> for ForwardBackwardRequest {
    type Error = crate::error::Error;

    fn try_from(msg: wire::ForwardBackwardRequest) -> Result<Self> {
        let seq_id = match msg.seq_id {
            0 => None,
            id => Some(
                u64::try_from(id).map_err(|_| invalid("seq_id", format!("{id} is negative")))?,
            ),
        };
        let loss_fn_config = config_from_wire(msg.loss_fn_config, msg.loss_fn_config_v2)?;
        let data = msg
            .data
            .into_iter()
            .enumerate()
            .map(|(i, d)| datum_from_wire(d, i))
            .collect::<Result<_>>()?;
        Ok(Self {
            model_id: msg.model_id,
            seq_id,
            data,
            loss_fn: LossFn::from_wire(&msg.loss_fn),
            loss_fn_config,
            forward_only: msg.forward_only,
        })
    }
}

fn config_from_wire(
    legacy: std::collections::BTreeMap<String, f64>,
    v2: std::collections::BTreeMap<String, wire::LossConfigValue>,
) -> Result<Option<LossFnConfig>> {
    if !v2.is_empty() {
        return v2
            .into_iter()
            .map(|(key, value)| {
                let value = match value.value {
                    Some(wire::loss_config_value::Value::Number(n)) => LossConfigValue::Number(n),
                    Some(wire::loss_config_value::Value::Text(t)) => LossConfigValue::Text(t),
                    None => {
                        return Err(invalid(
                            &format!("loss_fn_config_v2.{key}"),
                            "holds neither a number nor a text".to_owned(),
                        ));
                    }
                };
                Ok((key, value))
            })
            .collect::<Result<_>>()
            .map(Some);
    }
    if legacy.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        legacy
            .into_iter()
            .map(|(key, n)| (key, LossConfigValue::Number(n)))
            .collect(),
    ))
}

fn datum_from_wire(msg: wire::Datum, index: usize) -> Result<Datum> {
    let chunks = msg
        .model_input
        .into_iter()
        .enumerate()
        .map(|(c, chunk)| chunk_from_wire(chunk, &format!("data[{index}].model_input[{c}]")))
        .collect::<Result<_>>()?;
    let loss_fn_inputs = msg
        .loss_fn_inputs
        .into_iter()
        .map(|(name, tensor)| {
            let tensor = tensor_from_wire(tensor, &format!("data[{index}].loss_fn_inputs.{name}"))?;
            Ok((name, tensor))
        })
        .collect::<Result<_>>()?;
    let spans =
        |spans: Vec<wire::ProvenanceSpan>, field: &str| -> Result<Option<Vec<ProvenanceSpan>>> {
            if spans.is_empty() {
                return Ok(None);
            }
            spans
                .into_iter()
                .enumerate()
                .map(|(s, span)| span_from_wire(span, &format!("data[{index}].{field}[{s}]")))
                .collect::<Result<Vec<_>>>()
                .map(Some)
        };
    Ok(Datum {
        loss_fn_inputs,
        model_input: ModelInput { chunks },
        model_input_spans: spans(msg.model_input_spans, "model_input_spans")?,
        loss_fn_input_spans: spans(msg.loss_fn_input_spans, "loss_fn_input_spans")?,
    })
}

fn chunk_from_wire(msg: wire::Chunk, path: &str) -> Result<ModelInputChunk> {
    use wire::chunk::Chunk;
    Ok(match msg.chunk {
        Some(Chunk::EncodedText(text)) => ModelInputChunk::EncodedText(EncodedTextChunk {
            tokens: packed::read_tokens(&text.tokens, &format!("{path}.encoded_text.tokens"))?,
        }),
        Some(Chunk::Image(image)) => {
            let format = match image.format.as_str() {
                "png" => ImageFormat::Png,
                "jpeg" => ImageFormat::Jpeg,
                other => {
                    return Err(invalid(
                        &format!("{path}.image.format"),
                        format!("unknown image format {other:?} (expected png or jpeg)"),
                    ));
                }
            };
            let expected_tokens = image
                .expected_tokens
                .map(|n| {
                    u32::try_from(n).map_err(|_| {
                        invalid(
                            &format!("{path}.image.expected_tokens"),
                            format!("{n} is negative"),
                        )
                    })
                })
                .transpose()?;
            // `override_dimensions` has no public counterpart (SDK 0.38 never sets it).
            ModelInputChunk::Image(ImageChunk {
                data: image.data,
                format,
                expected_tokens,
            })
        }
        Some(Chunk::Dmel(dmel)) => ModelInputChunk::Dmel(DmelChunk { dmel: dmel.dmel }),
        None => return Err(invalid(path, "the chunk has no kind set".to_owned())),
    })
}

fn span_from_wire(msg: wire::ProvenanceSpan, path: &str) -> Result<ProvenanceSpan> {
    use wire::provenance_span::Span;
    let non_negative = |value: i64, field: &str| {
        u64::try_from(value)
            .map_err(|_| invalid(&format!("{path}.{field}"), format!("{value} is negative")))
    };
    let to_ref = |sequence_id: String, offset: i64, length: i64| -> Result<SpanRef> {
        Ok(SpanRef {
            sequence_id,
            offset: non_negative(offset, "offset")?,
            length: non_negative(length, "length")?,
        })
    };
    match msg.span {
        Some(Span::PromptTokens(s)) => Ok(ProvenanceSpan::PromptTokens(to_ref(
            s.sequence_id,
            s.offset,
            s.length,
        )?)),
        Some(Span::SampledTokens(s)) => Ok(ProvenanceSpan::SampledTokens(to_ref(
            s.sequence_id,
            s.offset,
            s.length,
        )?)),
        None => Err(invalid(path, "the span has no kind set".to_owned())),
    }
}
