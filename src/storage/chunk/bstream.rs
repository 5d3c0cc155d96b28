//! Bit-granular writer and reader for the XOR chunk body (and the WAL's
//! chained samples record), most significant bit first. Owns nothing but
//! bit positions; the sample layouts live in `xor.rs` and
//! `storage/wal/record/chained.rs`. Format: `docs/format/chunks.md`.
//!
//! The reader keeps no borrow so that [`super::XorIter`] can own its bytes
//! (an `Arc<[u8]>` head snapshot) and hand the slice in on every call.

/// Mask of the low `n` bits, `n` in `0..=64`.
#[inline]
fn low_bits(n: u32) -> u64 {
    u64::MAX.checked_shr(64 - n).unwrap_or(0)
}

/// Appends bits to a byte vector, most significant bit first. The last byte
/// is zero-padded, so the vector is always a complete prefix of the stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Unused low bits of the last byte (0 when the last byte is full).
    free: u32,
}

impl BitWriter {
    /// An empty stream with room for `cap` bytes.
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(cap),
            free: 0,
        }
    }

    /// A stream continuing after the whole bytes of `bytes` (which stay
    /// as they are: a header written byte-wise before the bits).
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        Self { bytes, free: 0 }
    }

    /// The stream so far, padded with zero bits to a whole byte.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Mutable access for byte-aligned fields (header, varints). Callers
    /// may only append while [`Self::is_aligned`], or overwrite bytes.
    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Reports whether the next bit starts a new byte.
    #[inline]
    pub(crate) fn is_aligned(&self) -> bool {
        self.free == 0
    }

    /// Consumes the writer, returning its bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Appends one bit.
    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 1 << self.free;
        }
    }

    /// Appends the low `n` bits of `v`, `n` in `1..=64`.
    #[inline]
    pub(crate) fn write_bits(&mut self, v: u64, n: u32) {
        debug_assert!((1..=64).contains(&n));
        let mut n = n;
        if self.free > 0 {
            let k = n.min(self.free);
            let chunk = (v >> (n - k)) & low_bits(k);
            let last = self.bytes.len() - 1;
            self.bytes[last] |= (chunk << (self.free - k)) as u8;
            self.free -= k;
            n -= k;
        }
        // Now byte-aligned (or done): whole bytes, then a partial one.
        while n >= 8 {
            n -= 8;
            self.bytes.push((v >> n) as u8);
        }
        if n > 0 {
            self.bytes.push(((v & low_bits(n)) << (8 - n)) as u8);
            self.free = 8 - n;
        }
    }
}

/// Reading position in a bit stream; the bytes are passed to each call.
///
/// Bits are fetched eight bytes at a time into `buf` (right-aligned, `valid`
/// low bits unread) so the common 1-2 bit reads are a shift and a mask.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitReader {
    /// Next byte to load into `buf`.
    pos: usize,
    buf: u64,
    /// Number of unread low bits in `buf`.
    valid: u32,
}

impl BitReader {
    /// A reader whose first bit is the top bit of byte `pos`.
    pub(crate) fn at_byte(pos: usize) -> Self {
        Self {
            pos,
            buf: 0,
            valid: 0,
        }
    }

    /// Offset of the next unread bit from the start of the stream.
    #[inline]
    pub(crate) fn bit_offset(&self) -> usize {
        self.pos * 8 - self.valid as usize
    }

    /// Loads the next up-to-8 bytes into `buf`; returns false at end.
    #[inline]
    fn refill(&mut self, bytes: &[u8]) -> bool {
        let rest = bytes.get(self.pos..).unwrap_or(&[]);
        if let Some(word) = rest.first_chunk::<8>() {
            self.buf = u64::from_be_bytes(*word);
            self.valid = 64;
            self.pos += 8;
            return true;
        }
        if rest.is_empty() {
            return false;
        }
        self.buf = rest.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b));
        self.valid = rest.len() as u32 * 8;
        self.pos += rest.len();
        true
    }

    /// Reads one bit, `None` at end of stream.
    #[inline]
    pub(crate) fn read_bit(&mut self, bytes: &[u8]) -> Option<bool> {
        if self.valid == 0 && !self.refill(bytes) {
            return None;
        }
        self.valid -= 1;
        Some((self.buf >> self.valid) & 1 == 1)
    }

    /// Counts leading one bits, stopping after a zero bit or at `max` ones
    /// (the zero is consumed, the bit after the `max`-th one is not).
    #[inline]
    pub(crate) fn read_unary(&mut self, bytes: &[u8], max: u32) -> Option<u32> {
        // A lone `0` (unchanged delta or value) is by far the most common.
        if self.valid > 0 && (self.buf >> (self.valid - 1)) & 1 == 0 {
            self.valid -= 1;
            return Some(0);
        }
        if self.valid >= max {
            // Fast path: look at the next `max` bits at once.
            let window = (self.buf >> (self.valid - max)) & low_bits(max);
            let ones = (!window << (64 - max)).leading_zeros().min(max);
            self.valid -= if ones == max { max } else { ones + 1 };
            return Some(ones);
        }
        let mut ones = 0;
        while ones < max && self.read_bit(bytes)? {
            ones += 1;
        }
        Some(ones)
    }

    /// Reads `n` bits, `n` in `1..=64`, as the low bits of the result;
    /// `None` if the stream ends first.
    #[inline]
    pub(crate) fn read_bits(&mut self, bytes: &[u8], n: u32) -> Option<u64> {
        debug_assert!((1..=64).contains(&n));
        if n <= self.valid {
            self.valid -= n;
            return Some((self.buf >> self.valid) & low_bits(n));
        }
        let high = self.buf & low_bits(self.valid);
        let rest = n - self.valid;
        if !self.refill(bytes) || self.valid < rest {
            return None;
        }
        self.valid -= rest;
        let low = (self.buf >> self.valid) & low_bits(rest);
        // `rest == 64` only when `high` is empty; avoid the overflowing shift.
        Some(high.checked_shl(rest).unwrap_or(0) | low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_bits_round_trip(
            fields in proptest::collection::vec((any::<u64>(), 1u32..=64), 0..100),
            start in 0usize..3,
        ) {
            let mut w = BitWriter::default();
            for _ in 0..start {
                w.bytes_mut().push(0xAB);
            }
            for &(v, n) in &fields {
                if n == 1 {
                    w.write_bit(v & 1 == 1);
                } else {
                    w.write_bits(v, n);
                }
            }
            let bytes = w.bytes();
            let mut r = BitReader::at_byte(start);
            for &(v, n) in &fields {
                prop_assert_eq!(r.read_bits(bytes, n), Some(v & low_bits(n)));
            }
            let total: usize = fields.iter().map(|&(_, n)| n as usize).sum();
            prop_assert_eq!(r.bit_offset(), start * 8 + total);
            prop_assert_eq!(bytes.len(), start + total.div_ceil(8));
        }

        #[test]
        fn prop_unary_matches_bitwise(bits in any::<u64>(), skip in 0u32..64, max in 1u32..=4) {
            let bytes = bits.to_be_bytes();
            let mut fast = BitReader::at_byte(0);
            let mut slow = BitReader::at_byte(0);
            fast.read_bits(&bytes, 1);
            slow.read_bits(&bytes, 1);
            for _ in 0..skip.min(62) {
                fast.read_bit(&bytes);
                slow.read_bit(&bytes);
            }
            let f = fast.read_unary(&bytes, max);
            let mut ones = 0;
            let mut ended = false;
            while ones < max {
                match slow.read_bit(&bytes) {
                    Some(true) => ones += 1,
                    Some(false) => break,
                    None => { ended = true; break; }
                }
            }
            if !ended {
                prop_assert_eq!(f, Some(ones));
                prop_assert_eq!(fast.bit_offset(), slow.bit_offset());
            }
        }
    }

    #[test]
    fn read_past_end_returns_none() {
        let bytes = [0xFF, 0x00];
        let mut r = BitReader::at_byte(0);
        assert_eq!(r.read_bits(&bytes, 12), Some(0xFF0));
        assert_eq!(r.read_bits(&bytes, 5), None);
        let mut r = BitReader::at_byte(5);
        assert_eq!(r.read_bit(&bytes), None);
    }
}
