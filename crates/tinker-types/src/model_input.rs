//! `ModelInput`: the token sequence fed to the model, made of chunks (text tokens, images,
//! image pointers, dmel tensors).

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::macros::type_last_struct;

type_last_struct! {
    /// A run of already tokenized text.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct EncodedTextChunk = "encoded_text" {
        /// Token ids.
        pub tokens: Vec<u32>,
    }
}

/// Encoding of an image chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
}

impl ImageFormat {
    /// Wire spelling (`"png"` / `"jpeg"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg => "jpeg",
        }
    }
}

type_last_struct! {
    /// An inline image (bytes travel as base64 in JSON; `Debug` shows only their length).
    #[derive(Clone, PartialEq, Eq)]
    pub struct ImageChunk = "image" {
        /// Raw image bytes.
        #[serde(serialize_with = "crate::bytes_b64::serialize", deserialize_with = "crate::bytes_b64::deserialize")]
        pub data: Vec<u8>,
        /// Image encoding.
        pub format: ImageFormat,
        /// Advisory token count; required to compute [`ModelInput::length`].
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub expected_tokens: Option<u32>,
    }
}

type_last_struct! {
    /// An image referenced by path or URL (sampling only; not encodable for training).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ImageAssetPointerChunk = "image_asset_pointer" {
        /// Image encoding.
        pub format: ImageFormat,
        /// Path or URL of the image.
        pub location: String,
        /// Advisory token count; required to compute [`ModelInput::length`].
        #[serde(default, skip_serializing_if = "crate::json::is_none")]
        pub expected_tokens: Option<u32>,
    }
}

type_last_struct! {
    /// A dmel tensor: serialized TensorContainer bytes (base64 in JSON; `Debug` shows only
    /// their length).
    #[derive(Clone, PartialEq, Eq)]
    pub struct DmelChunk = "dmel" {
        /// TensorContainer bytes, passed through as-is.
        #[serde(serialize_with = "crate::bytes_b64::serialize", deserialize_with = "crate::bytes_b64::deserialize")]
        pub dmel: Vec<u8>,
    }
}

// Image and dmel payloads can be megabytes: keep them out of logs.
impl std::fmt::Debug for ImageChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageChunk")
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("format", &self.format)
            .field("expected_tokens", &self.expected_tokens)
            .finish()
    }
}

impl std::fmt::Debug for DmelChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmelChunk")
            .field("dmel", &format_args!("<{} bytes>", self.dmel.len()))
            .finish()
    }
}

impl EncodedTextChunk {
    /// A chunk of the given tokens.
    pub fn new(tokens: impl Into<Vec<u32>>) -> Self {
        Self {
            tokens: tokens.into(),
        }
    }
}

impl ImageChunk {
    /// An image chunk without a token count.
    pub fn new(data: Vec<u8>, format: ImageFormat) -> Self {
        Self {
            data,
            format,
            expected_tokens: None,
        }
    }

    /// Sets the advisory token count.
    #[must_use]
    pub fn expected_tokens(mut self, tokens: u32) -> Self {
        self.expected_tokens = Some(tokens);
        self
    }
}

impl ImageAssetPointerChunk {
    /// A pointer chunk without a token count.
    pub fn new(location: impl Into<String>, format: ImageFormat) -> Self {
        Self {
            format,
            location: location.into(),
            expected_tokens: None,
        }
    }

    /// Sets the advisory token count.
    #[must_use]
    pub fn expected_tokens(mut self, tokens: u32) -> Self {
        self.expected_tokens = Some(tokens);
        self
    }
}

impl DmelChunk {
    /// A dmel chunk of the given TensorContainer bytes.
    pub fn new(dmel: Vec<u8>) -> Self {
        Self { dmel }
    }

    /// The shape in the TensorContainer header (the payload is never read).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] if the header is empty, truncated or has an unknown dtype.
    pub fn shape(&self) -> Result<Vec<u64>> {
        tensor_container_shape(&self.dmel)
    }
}

/// Marker byte of a "constant tensor" TensorContainer.
const CONSTANT_TENSOR_MARKER: u8 = 0xFE;
/// Highest dtype byte a TensorContainer may carry.
const MAX_DTYPE_BYTE: u8 = 7;

fn dmel_error(reason: &str) -> Error {
    Error::InvalidValue {
        field: "dmel".to_owned(),
        reason: reason.to_owned(),
    }
}

fn tensor_container_shape(data: &[u8]) -> Result<Vec<u64>> {
    let mut rest = data;
    if rest.first() == Some(&CONSTANT_TENSOR_MARKER) {
        rest = &rest[1..];
    }
    let (&dtype, mut rest) = rest
        .split_first()
        .ok_or_else(|| dmel_error("TensorContainer header is empty or truncated"))?;
    if dtype > MAX_DTYPE_BYTE {
        return Err(dmel_error("TensorContainer has an unknown dtype byte"));
    }
    let ndim = read_varint(&mut rest)?;
    let mut shape = Vec::new();
    for _ in 0..ndim {
        shape.push(read_varint(&mut rest)?);
    }
    Ok(shape)
}

fn read_varint(data: &mut &[u8]) -> Result<u64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let (&byte, rest) = data
            .split_first()
            .ok_or_else(|| dmel_error("TensorContainer header is truncated"))?;
        *data = rest;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 63 {
            return Err(dmel_error("TensorContainer varint is too long"));
        }
    }
}

/// One piece of a [`ModelInput`], discriminated on the wire by `"type"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelInputChunk {
    /// Text tokens.
    EncodedText(EncodedTextChunk),
    /// An inline image.
    Image(ImageChunk),
    /// An image by reference.
    ImageAssetPointer(ImageAssetPointerChunk),
    /// A dmel tensor.
    Dmel(DmelChunk),
}

impl Serialize for ModelInputChunk {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::EncodedText(c) => c.serialize(serializer),
            Self::Image(c) => c.serialize(serializer),
            Self::ImageAssetPointer(c) => c.serialize(serializer),
            Self::Dmel(c) => c.serialize(serializer),
        }
    }
}

impl ModelInputChunk {
    /// Number of model positions this chunk occupies.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] for an image chunk without `expected_tokens` or a dmel chunk
    /// with a malformed header.
    pub fn length(&self) -> Result<usize> {
        let missing = |kind: &str| Error::InvalidValue {
            field: "expected_tokens".to_owned(),
            reason: format!("a {kind} chunk needs expected_tokens to compute its length"),
        };
        match self {
            Self::EncodedText(c) => Ok(c.tokens.len()),
            Self::Image(c) => c
                .expected_tokens
                .map(|n| n as usize)
                .ok_or_else(|| missing("image")),
            Self::ImageAssetPointer(c) => c
                .expected_tokens
                .map(|n| n as usize)
                .ok_or_else(|| missing("image_asset_pointer")),
            Self::Dmel(c) => {
                let shape = c.shape()?;
                let first = shape
                    .first()
                    .ok_or_else(|| dmel_error("TensorContainer tensor has no dimension 0"))?;
                usize::try_from(*first).map_err(|_| dmel_error("dimension 0 is too large"))
            }
        }
    }
}

impl From<EncodedTextChunk> for ModelInputChunk {
    fn from(c: EncodedTextChunk) -> Self {
        Self::EncodedText(c)
    }
}
impl From<ImageChunk> for ModelInputChunk {
    fn from(c: ImageChunk) -> Self {
        Self::Image(c)
    }
}
impl From<ImageAssetPointerChunk> for ModelInputChunk {
    fn from(c: ImageAssetPointerChunk) -> Self {
        Self::ImageAssetPointer(c)
    }
}
impl From<DmelChunk> for ModelInputChunk {
    fn from(c: DmelChunk) -> Self {
        Self::Dmel(c)
    }
}

/// The input of one model call: a sequence of chunks (`{"chunks": [...]}` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelInput {
    /// The chunks, in order.
    pub chunks: Vec<ModelInputChunk>,
}

impl ModelInput {
    /// An input with no chunks.
    pub fn empty() -> Self {
        Self::default()
    }

    /// One text chunk holding `tokens`.
    pub fn from_tokens(tokens: &[u32]) -> Self {
        Self {
            chunks: vec![EncodedTextChunk::new(tokens.to_vec()).into()],
        }
    }

    /// One text chunk holding `tokens` given as `i64` (as Python and tensors carry them).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] if a token is negative or above `u32::MAX`.
    pub fn try_from_i64_tokens(tokens: &[i64]) -> Result<Self> {
        let tokens = tokens
            .iter()
            .map(|&t| {
                u32::try_from(t).map_err(|_| Error::InvalidValue {
                    field: "tokens".to_owned(),
                    reason: format!("token id {t} is not in 0..=4294967295"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::from_tokens(&tokens))
    }

    /// An input made of the given chunks.
    pub fn from_chunks(chunks: Vec<ModelInputChunk>) -> Self {
        Self { chunks }
    }

    /// Appends a chunk.
    #[must_use]
    pub fn with_chunk(mut self, chunk: impl Into<ModelInputChunk>) -> Self {
        self.chunks.push(chunk.into());
        self
    }

    /// Appends one token as its own text chunk (as the SDK's `append_int`).
    #[must_use]
    pub fn with_token(self, token: u32) -> Self {
        self.with_chunk(EncodedTextChunk::new(vec![token]))
    }

    /// Total number of model positions (sum of chunk lengths).
    ///
    /// # Errors
    /// As [`ModelInputChunk::length`].
    pub fn length(&self) -> Result<usize> {
        self.chunks.iter().try_fold(0usize, |total, chunk| {
            total
                .checked_add(chunk.length()?)
                .ok_or_else(|| Error::InvalidValue {
                    field: "chunks".to_owned(),
                    reason: "total length overflows".to_owned(),
                })
        })
    }

    /// All tokens, if every chunk is text.
    ///
    /// # Errors
    /// [`Error::InvalidValue`] if a chunk is not text.
    pub fn to_tokens(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for chunk in &self.chunks {
            match chunk {
                ModelInputChunk::EncodedText(c) => out.extend_from_slice(&c.tokens),
                _ => {
                    return Err(Error::InvalidValue {
                        field: "chunks".to_owned(),
                        reason: "to_tokens needs text chunks only".to_owned(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// One text chunk holding the tokens ([`ModelInput::from_tokens`]).
impl From<Vec<u32>> for ModelInput {
    fn from(tokens: Vec<u32>) -> Self {
        Self {
            chunks: vec![EncodedTextChunk::new(tokens).into()],
        }
    }
}

/// One text chunk holding the tokens ([`ModelInput::from_tokens`]).
impl From<&[u32]> for ModelInput {
    fn from(tokens: &[u32]) -> Self {
        Self::from_tokens(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmel_length_reads_first_dimension() {
        // constant marker, dtype 1, ndim 2, dims 300 (varint ac 02) and 4.
        let chunk = ModelInputChunk::Dmel(DmelChunk::new(vec![0xFE, 1, 2, 0xAC, 0x02, 4, 9, 9]));
        assert_eq!(chunk.length().unwrap(), 300);
        let truncated = ModelInputChunk::Dmel(DmelChunk::new(vec![1, 2, 0xAC]));
        assert!(truncated.length().is_err());
    }

    #[test]
    fn image_without_count_has_no_length() {
        let input =
            ModelInput::from_tokens(&[1, 2]).with_chunk(ImageChunk::new(vec![1], ImageFormat::Png));
        assert!(input.length().is_err());
    }
}
