//! Elias–Fano coding of a non-decreasing sequence of `u64`s, with random
//! access: what the version-2 block index stores each series' first chunk
//! reference as (`docs/format/index.md`, "Series directory"). `n` values below `u`
//! take about `2 + log2(u / n)` bits each instead of 64; value `i` is read
//! back with one sampled position and a short popcount scan.
//!
//! Owns the bit layout of the sequence only (the section header around it
//! is `index.rs`'s and `index_writer.rs`'s). Decoding never panics and
//! never reads outside the given bytes: any inconsistency is `None`.

/// One sampled high-bit position per this many values.
pub(crate) const SAMPLE_EVERY: u64 = 64;

/// The low-bit width the writer chooses for `n` values whose largest is
/// `max`: `floor(log2(max / n))`, 0 when `max < n`.
pub(crate) fn low_bits(n: u64, max: u64) -> u8 {
    if n == 0 {
        return 0;
    }
    let q = max / n;
    if q == 0 {
        0
    } else {
        (63 - q.leading_zeros()) as u8
    }
}

/// Appends the encoding of `values` (non-decreasing; checked by the caller)
/// to `out`: `low bits <1b>`, the sampled positions (`ceil(n / 64)` ×
/// `<8b>` big-endian), the low bits (`ceil(n · low / 8)` bytes, LSB first),
/// then the high bits to the end. The count is the caller's to store.
pub(crate) fn encode(values: &[u64], out: &mut Vec<u8>) {
    let n = values.len() as u64;
    let max = values.last().copied().unwrap_or(0);
    let low = low_bits(n, max);
    out.push(low);
    let high_len = n + (max >> low) + 1;
    let mut highs = vec![0u8; high_len.div_ceil(8) as usize];
    let mut lows = vec![0u8; (n * u64::from(low)).div_ceil(8) as usize];
    let mask = if low == 0 { 0 } else { u64::MAX >> (64 - low) };
    for (i, &v) in values.iter().enumerate() {
        let pos = (v >> low) + i as u64;
        highs[(pos / 8) as usize] |= 1 << (pos % 8);
        if (i as u64).is_multiple_of(SAMPLE_EVERY) {
            out.extend_from_slice(&pos.to_be_bytes());
        }
        let bits = v & mask;
        let at = i as u64 * u64::from(low);
        for b in 0..u64::from(low) {
            if bits >> b & 1 == 1 {
                let p = at + b;
                lows[(p / 8) as usize] |= 1 << (p % 8);
            }
        }
    }
    out.extend_from_slice(&lows);
    out.extend_from_slice(&highs);
}

/// A decoder over an encoding of `n` values (the bytes [`encode`] wrote).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EliasFano<'a> {
    n: u64,
    low: u8,
    samples: &'a [u8],
    lows: &'a [u8],
    highs: &'a [u8],
}

impl<'a> EliasFano<'a> {
    /// Splits `bytes` as the encoding of `n` values. `None` when the bytes
    /// cannot hold them.
    pub(crate) fn new(bytes: &'a [u8], n: u64) -> Option<Self> {
        let (&low, rest) = bytes.split_first()?;
        if low > 63 {
            return None;
        }
        let samples_len = usize::try_from(n.div_ceil(SAMPLE_EVERY).checked_mul(8)?).ok()?;
        let lows_len = usize::try_from(n.checked_mul(u64::from(low))?.div_ceil(8)).ok()?;
        let samples = rest.get(..samples_len)?;
        let rest = &rest[samples_len..];
        let lows = rest.get(..lows_len)?;
        let highs = &rest[lows_len..];
        // Every value sets one high bit.
        if (highs.len() as u64).saturating_mul(8) < n {
            return None;
        }
        Some(Self {
            n,
            low,
            samples,
            lows,
            highs,
        })
    }

    /// Value `i`, or `None` when `i` is out of range or the bytes are
    /// inconsistent (a sampled position without its bit, too few bits).
    pub(crate) fn get(&self, i: u64) -> Option<u64> {
        let pos = self.high_pos(i)?;
        self.value_at(i, pos)
    }

    /// A reader of the values in order, cheaper per value than [`Self::get`]
    /// (one forward bit search) and checking the sampled positions as it
    /// passes them.
    pub(crate) fn iter(&self) -> Iter<'a> {
        Iter {
            ef: *self,
            i: 0,
            pos: None,
        }
    }

    /// The position in `highs` of value `i`'s bit.
    fn high_pos(&self, i: u64) -> Option<u64> {
        if i >= self.n {
            return None;
        }
        self.nth_one_from(self.sample(i / SAMPLE_EVERY)?, i % SAMPLE_EVERY)
    }

    /// `samples[j]`: the high-bit position of value `64·j`.
    fn sample(&self, j: u64) -> Option<u64> {
        let s = usize::try_from(j).ok()?.checked_mul(8)?;
        Some(u64::from_be_bytes(
            self.samples.get(s..s.checked_add(8)?)?.try_into().ok()?,
        ))
    }

    /// Value `i` from its high bit's position `pos`.
    fn value_at(&self, i: u64, pos: u64) -> Option<u64> {
        let high = pos.checked_sub(i)?;
        let low = u64::from(self.low);
        if low > 0 && high > u64::MAX >> low {
            return None;
        }
        Some((high << low) | self.low_of(i))
    }

    /// The 64 bits of `highs` from byte `byte` on (zero past the end), or
    /// `None` when `byte` is past the end.
    #[inline]
    fn word_at(&self, byte: usize) -> Option<u64> {
        let have = self.highs.get(byte..)?;
        if let Some(word) = have.first_chunk::<8>() {
            return Some(u64::from_le_bytes(*word));
        }
        if have.is_empty() {
            return None;
        }
        let mut buf = [0u8; 8];
        let take = have.len().min(8);
        buf[..take].copy_from_slice(&have[..take]);
        Some(u64::from_le_bytes(buf))
    }

    /// The position of the `k`-th set bit after the one at `start` (which
    /// must be set; `k = 0` is `start` itself).
    fn nth_one_from(&self, start: u64, mut k: u64) -> Option<u64> {
        let mut byte = usize::try_from(start / 8).ok()?;
        let bit = (start % 8) as u32;
        let mut w = self.word_at(byte)?;
        if w >> bit & 1 == 0 {
            return None;
        }
        // Ones from `start` on (inclusive).
        w &= u64::MAX << bit;
        loop {
            let ones = u64::from(w.count_ones());
            if k < ones {
                return Some(byte as u64 * 8 + u64::from(nth_set_bit(w, k as u32)));
            }
            k -= ones;
            byte = byte.checked_add(8)?;
            w = self.word_at(byte)?;
        }
    }

    /// The position of the first set bit at `start` or after.
    fn first_one_from(&self, start: u64) -> Option<u64> {
        let mut byte = usize::try_from(start / 8).ok()?;
        let mut w = self.word_at(byte)? & (u64::MAX << (start % 8));
        while w == 0 {
            byte = byte.checked_add(8)?;
            w = self.word_at(byte)?;
        }
        Some(byte as u64 * 8 + u64::from(w.trailing_zeros()))
    }

    /// The low bits of value `i`: one little-endian load of the (at most
    /// nine) bytes that hold them.
    fn low_of(&self, i: u64) -> u64 {
        let low = u32::from(self.low);
        if low == 0 {
            return 0;
        }
        let start = i * u64::from(low);
        let byte = (start / 8) as usize;
        let have = self.lows.get(byte..).unwrap_or(&[]);
        // One 16-byte load where the bytes are there (a variable-length
        // copy is a call to memcpy), else the tail copied out.
        let word = match have.first_chunk::<16>() {
            Some(word) => u128::from_le_bytes(*word),
            None => {
                let mut buf = [0u8; 16];
                let take = have.len().min(9);
                buf[..take].copy_from_slice(&have[..take]);
                u128::from_le_bytes(buf)
            }
        };
        ((word >> (start % 8)) as u64) & (u64::MAX >> (64 - low))
    }
}

/// The values of an [`EliasFano`] in order: see [`EliasFano::iter`].
#[derive(Debug, Clone)]
pub(crate) struct Iter<'a> {
    ef: EliasFano<'a>,
    i: u64,
    /// The bit position of the previous value.
    pos: Option<u64>,
}

impl Iter<'_> {
    /// The next value; `None` past the last one or when the bytes are
    /// inconsistent (a bit missing, a sampled position that is not the
    /// value's), which a caller that knows the count tells apart.
    pub(crate) fn next_value(&mut self) -> Option<u64> {
        let ef = &self.ef;
        if self.i >= ef.n {
            return None;
        }
        let pos = match self.pos {
            None => ef.first_one_from(0)?,
            Some(p) => ef.first_one_from(p.checked_add(1)?)?,
        };
        if self.i.is_multiple_of(SAMPLE_EVERY) && ef.sample(self.i / SAMPLE_EVERY)? != pos {
            return None;
        }
        let v = ef.value_at(self.i, pos)?;
        self.pos = Some(pos);
        self.i += 1;
        Some(v)
    }
}

/// The position of the `k`-th (0-based) set bit of `w`; `k` is below
/// `w.count_ones()`.
fn nth_set_bit(mut w: u64, mut k: u32) -> u32 {
    // Whole bytes first, then at most seven bits.
    let mut base = 0;
    loop {
        let ones = (w & 0xff).count_ones();
        if k < ones || base >= 56 {
            break;
        }
        k -= ones;
        w >>= 8;
        base += 8;
    }
    for _ in 0..k {
        w &= w.wrapping_sub(1);
    }
    base + w.trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[u64]) {
        let mut b = Vec::new();
        encode(values, &mut b);
        let ef = EliasFano::new(&b, values.len() as u64).expect("own encoding");
        for (i, &v) in values.iter().enumerate() {
            assert_eq!(ef.get(i as u64), Some(v), "value {i}");
        }
        let mut it = ef.iter();
        for (i, &v) in values.iter().enumerate() {
            assert_eq!(it.next_value(), Some(v), "in order, value {i}");
        }
        assert_eq!(it.next_value(), None);
        assert_eq!(ef.get(values.len() as u64), None);
    }

    #[test]
    fn series_offsets_take_about_one_byte_each() {
        // 100,000 entries of 20..60 bytes.
        let mut at = 0u64;
        let values: Vec<u64> = (0..100_000u64)
            .map(|i| {
                let v = at;
                at += 20 + i * 7919 % 41;
                v
            })
            .collect();
        let mut b = Vec::new();
        encode(&values, &mut b);
        assert!(b.len() < 100_000 * 9 / 8, "{} bytes", b.len());
        round_trip(&values);
    }

    #[test]
    fn edge_sequences_round_trip() {
        round_trip(&[]);
        round_trip(&[0]);
        round_trip(&[u64::MAX]);
        round_trip(&[0, 0, 0, 0]);
        round_trip(&[5; 200]);
        round_trip(&[0, u64::MAX]);
        round_trip(&(0..1_000).collect::<Vec<_>>());
    }

    proptest! {
        #[test]
        fn prop_round_trip(mut values in proptest::collection::vec(any::<u64>(), 0..600),
                           small in any::<bool>()) {
            if small {
                for v in &mut values {
                    *v %= 5_000;
                }
            }
            values.sort_unstable();
            round_trip(&values);
        }

        #[test]
        fn prop_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                            n in 0u64..2_000) {
            if let Some(ef) = EliasFano::new(&bytes, n) {
                for i in 0..n.min(300) {
                    let _ = ef.get(i);
                }
                let _ = ef.get(u64::MAX);
                let mut it = ef.iter();
                while it.next_value().is_some() {}
            }
        }
    }
}
