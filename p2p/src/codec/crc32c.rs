//! CRC-32C (Castagnoli) and the snappy framing format's masked form of it.
//!
//! `snap` keeps its own checksum private, and the frame codec in this crate needs it to check
//! chunks one at a time, so the table-driven version lives here (a few hundred MB/s is far more
//! than gossip and req/resp need).

/// Reflected Castagnoli polynomial.
const POLY: u32 = 0x82f6_3b78;

const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
}

/// Plain CRC-32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc = TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    !crc
}

/// The masked checksum the snappy framing format stores, so that a CRC of data that itself
/// contains CRCs stays well distributed.
pub(crate) fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_value() {
        // The catalogue check value of CRC-32C over "123456789".
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn masked_matches_a_frame_from_the_vectors() {
        // From test_stream_two_success_chunks: the uncompressed chunk of `deadbeef` carries
        // masked CRC bytes 90 ce a0 91 (little endian).
        assert_eq!(masked_crc32c(&[0xde, 0xad, 0xbe, 0xef]), 0x91a0_ce90);
    }
}
