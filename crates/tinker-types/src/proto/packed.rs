//! Packed little-endian arrays, the payload of every numeric `bytes` field of the schema.
//!
//! Writing is a bulk copy of the slice's memory on little-endian targets (the bytes already
//! are the wire form), so a large tensor costs one `memcpy`. Reading copies the bytes into a
//! properly aligned `Vec<T>` (the input buffer has no alignment guarantee).

use bytemuck::Pod;

use super::invalid;
use crate::error::Result;

/// A number that travels as its little-endian bytes.
pub(crate) trait LeScalar: Pod {
    /// Converts between native and little-endian byte order (a no-op on little-endian).
    fn swap_le(self) -> Self;
}

macro_rules! le_int {
    ($($t:ty),*) => {$(
        impl LeScalar for $t {
            fn swap_le(self) -> Self {
                self.to_le()
            }
        }
    )*};
}
le_int!(u16, i32, u32, i64);

impl LeScalar for f32 {
    fn swap_le(self) -> Self {
        f32::from_bits(self.to_bits().to_le())
    }
}

/// Number of bytes `values` occupy packed.
pub(crate) fn byte_len<T: LeScalar>(values: &[T]) -> usize {
    std::mem::size_of_val(values)
}

/// Appends `values` as packed little-endian bytes.
pub(crate) fn write<T: LeScalar>(buf: &mut Vec<u8>, values: &[T]) {
    if cfg!(target_endian = "little") {
        buf.extend_from_slice(bytemuck::cast_slice(values));
    } else {
        buf.reserve(byte_len(values));
        for v in values {
            buf.extend_from_slice(bytemuck::bytes_of(&v.swap_le()));
        }
    }
}

/// `values` as a new packed little-endian buffer.
pub(crate) fn to_bytes<T: LeScalar>(values: &[T]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(byte_len(values));
    write(&mut buf, values);
    buf
}

/// Reads packed little-endian `T`s; `field` names the source in the error when the length
/// is not a multiple of the element size.
pub(crate) fn read<T: LeScalar>(bytes: &[u8], field: &str) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if !bytes.len().is_multiple_of(size) {
        return Err(invalid(
            field,
            format!(
                "{} bytes is not a whole number of {size}-byte elements",
                bytes.len()
            ),
        ));
    }
    let mut values: Vec<T> = bytemuck::pod_collect_to_vec(bytes);
    if cfg!(target_endian = "big") {
        values.iter_mut().for_each(|v| *v = v.swap_le());
    }
    Ok(values)
}

/// Token ids are `u32` in the public types and int32 on the wire: the same bytes, provided
/// every id fits in an int32 (the SDK's numpy conversion refuses larger ones too).
pub(crate) fn check_int32_tokens(tokens: &[u32], field: &str) -> Result<()> {
    check_int32_tokens_at(tokens, || field.to_owned())
}

/// [`check_int32_tokens`] naming the field only when it fails (no allocation otherwise).
pub(crate) fn check_int32_tokens_at(tokens: &[u32], field: impl FnOnce() -> String) -> Result<()> {
    // `fold` instead of `any`: no early exit, so the loop vectorizes.
    let max = tokens.iter().fold(0u32, |m, &t| m.max(t));
    if max > i32::MAX as u32 {
        return Err(invalid(
            &field(),
            format!("token id {max} does not fit in the wire's int32"),
        ));
    }
    Ok(())
}

/// Reads int32 token ids into `u32`s, refusing negative ids.
pub(crate) fn read_tokens(bytes: &[u8], field: &str) -> Result<Vec<u32>> {
    let tokens: Vec<u32> = read(bytes, field)?;
    check_int32_tokens(&tokens, field)
        .map_err(|_| invalid(field, "negative token id".to_owned()))?;
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_little_endian() {
        assert_eq!(
            to_bytes(&[1u32, 2, 3]),
            [1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]
        );
        assert_eq!(
            to_bytes(&[-2i64]),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(to_bytes(&[1.0f32]), [0, 0, 0x80, 0x3f]);
    }

    #[test]
    fn reads_unaligned_and_refuses_ragged_lengths() {
        let bytes = [0u8, 1, 0, 0, 0, 2, 0, 0, 0];
        let values: Vec<i32> = read(&bytes[1..], "x").unwrap();
        assert_eq!(values, [1, 2]);
        let err = read::<i64>(&bytes, "x.y").unwrap_err();
        assert!(err.to_string().contains("x.y"), "{err}");
    }

    #[test]
    fn tokens_must_fit_int32() {
        assert!(check_int32_tokens(&[0, i32::MAX as u32], "t").is_ok());
        assert!(check_int32_tokens(&[1, 1 << 31], "t").is_err());
        assert!(read_tokens(&to_bytes(&[-1i32]), "t").is_err());
    }
}
