//! Unsigned LEB128 varints, the length prefix of every req/resp chunk.
//!
//! Seven value bits per byte, least significant group first, the high bit set on every byte but
//! the last; a `u64` takes at most ten bytes. Decoding is strict so that one value has exactly
//! one encoding: truncated input, an eleventh byte, a tenth byte that overflows `u64` and
//! non-minimal encodings (a trailing `0x00` group) are all errors.

/// The longest encoding of a `u64`.
pub const MAX_VARINT_LEN: usize = 10;

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The input ended while the continuation bit was still set (or was empty).
    #[error("varint is truncated: input ended before its last byte")]
    Truncated,
    /// More than ten bytes, or a tenth byte carrying bits beyond 64.
    #[error("varint does not fit in 64 bits")]
    Overflow,
    /// The encoding has a redundant trailing zero group.
    #[error("varint is not minimally encoded")]
    NotMinimal,
}

/// Appends the LEB128 encoding of `value` to `out`.
pub fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        // Truncation to the low seven bits is the point of the cast.
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The LEB128 encoding of `value` as a fresh vector.
pub fn varint_bytes(value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_VARINT_LEN);
    encode_varint(value, &mut out);
    out
}

/// Decodes one varint from the front of `input`, returning the value and the bytes it used.
pub fn decode_varint(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut decoder = VarintDecoder::default();
    for (index, byte) in input.iter().enumerate() {
        if let Some(value) = decoder.push(*byte)? {
            return Ok((value, index + 1));
        }
    }
    Err(VarintError::Truncated)
}

/// Byte-at-a-time decoder, for reading a prefix off a stream without over-reading.
#[derive(Debug, Default, Clone)]
pub(crate) struct VarintDecoder {
    value: u64,
    len: usize,
}

impl VarintDecoder {
    /// Feeds the next byte; returns the value once the final byte has been seen.
    pub(crate) fn push(&mut self, byte: u8) -> Result<Option<u64>, VarintError> {
        if self.len == MAX_VARINT_LEN {
            return Err(VarintError::Overflow);
        }
        let group = u64::from(byte & 0x7f);
        // The tenth byte holds only bit 63: anything larger does not fit a u64.
        if self.len == MAX_VARINT_LEN - 1 && (byte & 0x80 != 0 || group > 1) {
            return Err(VarintError::Overflow);
        }
        self.value |= group << (7 * self.len);
        self.len += 1;
        if byte & 0x80 != 0 {
            return Ok(None);
        }
        if byte == 0 && self.len > 1 {
            return Err(VarintError::NotMinimal);
        }
        Ok(Some(self.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let cases: [(u64, &[u8]); 7] = [
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (u64::from(u32::MAX), &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            (u64::MAX, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ];
        for (value, encoded) in cases {
            assert_eq!(varint_bytes(value), encoded, "encoding {value}");
            assert_eq!(decode_varint(encoded), Ok((value, encoded.len())), "decoding {value}");
        }
    }

    #[test]
    fn rejects_truncated_input() {
        assert_eq!(decode_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(decode_varint(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(decode_varint(&[0xff, 0xff]), Err(VarintError::Truncated));
    }

    #[test]
    fn rejects_more_than_ten_bytes_and_overflow() {
        assert_eq!(decode_varint(&[0x80; 11]), Err(VarintError::Overflow));
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(decode_varint(&too_big), Err(VarintError::Overflow));
    }

    #[test]
    fn rejects_non_minimal() {
        assert_eq!(decode_varint(&[0x80, 0x00]), Err(VarintError::NotMinimal));
        assert_eq!(decode_varint(&[0x81, 0x80, 0x00]), Err(VarintError::NotMinimal));
    }

    #[test]
    fn stops_at_the_last_byte() {
        assert_eq!(decode_varint(&[0xac, 0x02, 0xff, 0xff]), Ok((300, 2)));
    }

    proptest! {
        #[test]
        fn roundtrip(value: u64, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = varint_bytes(value);
            let len = bytes.len();
            prop_assert!(len <= MAX_VARINT_LEN);
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(decode_varint(&bytes), Ok((value, len)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok((value, used)) = decode_varint(&bytes) {
                prop_assert_eq!(varint_bytes(value), bytes[..used].to_vec());
            }
        }
    }
}
