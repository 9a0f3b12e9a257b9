//! Sizes and writers of single protobuf fields, for encoders that write straight into one
//! pre-sized buffer instead of building prost structs.
//!
//! Each `*_len` function returns the exact number of bytes its writer appends, and both
//! follow prost's proto3 rules so the output is byte-identical to `Message::encode`:
//! scalar and `bytes`/`string` fields equal to their default are left out, fields inside a
//! `oneof` or marked `optional` are always written.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// Size of a length-delimited field (key, length prefix, payload of `len` bytes).
pub(crate) fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Writes the key and length prefix of a length-delimited field; the caller appends the
/// `len` payload bytes.
pub(crate) fn write_delimited_header(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// Size of a non-optional `bytes`/`string` field of `len` bytes (absent when empty).
pub(crate) fn implicit_delimited_len(tag: u32, len: usize) -> usize {
    if len == 0 { 0 } else { delimited_len(tag, len) }
}

/// Writes a non-optional `bytes`/`string` field (nothing when empty).
pub(crate) fn write_implicit_bytes(tag: u32, bytes: &[u8], buf: &mut Vec<u8>) {
    if !bytes.is_empty() {
        write_delimited_header(tag, bytes.len(), buf);
        buf.extend_from_slice(bytes);
    }
}

/// Size of an always-written varint field (`optional`/`oneof` member) holding `value`.
pub(crate) fn varint_len(tag: u32, value: u64) -> usize {
    key_len(tag) + encoded_len_varint(value)
}

/// Writes an always-written varint field.
pub(crate) fn write_varint(tag: u32, value: u64, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::Varint, buf);
    encode_varint(value, buf);
}

/// Size of a non-optional varint field (`int32`, `int64`, enum, `bool`): absent when 0.
/// Negative `int32`/`int64` values are sign-extended to 64 bits, as protobuf requires.
pub(crate) fn implicit_varint_len(tag: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        varint_len(tag, value)
    }
}

/// Writes a non-optional varint field (nothing when 0).
pub(crate) fn write_implicit_varint(tag: u32, value: u64, buf: &mut Vec<u8>) {
    if value != 0 {
        write_varint(tag, value, buf);
    }
}

/// Size of an always-written `double` field.
pub(crate) fn double_len(tag: u32) -> usize {
    key_len(tag) + 8
}

/// Writes an always-written `double` field.
pub(crate) fn write_double(tag: u32, value: f64, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// Payload size of a packed `repeated int64` field.
pub(crate) fn packed_varints_payload_len(values: impl Iterator<Item = u64>) -> usize {
    values.map(encoded_len_varint).sum()
}

/// Size of a packed `repeated int64` field (absent when empty).
pub(crate) fn packed_varints_len(tag: u32, values: impl Iterator<Item = u64>) -> usize {
    let payload = packed_varints_payload_len(values);
    if payload == 0 {
        0
    } else {
        delimited_len(tag, payload)
    }
}

/// Writes a packed `repeated int64` field (nothing when empty).
pub(crate) fn write_packed_varints(
    tag: u32,
    values: impl Iterator<Item = u64> + Clone,
    buf: &mut Vec<u8>,
) {
    let payload = packed_varints_payload_len(values.clone());
    if payload != 0 {
        write_delimited_header(tag, payload, buf);
        values.for_each(|v| encode_varint(v, buf));
    }
}
