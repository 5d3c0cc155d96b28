//! Bit-level field codecs of the histogram chunks: Prometheus's "varbit"
//! signed and unsigned integers (a unary size prefix of up to 8 bits, then
//! the value in 0, 3, 6, 9, 12, 18, 25, 56 or 64 bits) and the Gorilla XOR
//! float field. Bit-compatible with Prometheus's `tsdb/chunkenc/varbit.go`
//! and `xorWrite`/`xorRead` in `tsdb/chunkenc/xor.go`
//! (<https://github.com/prometheus/prometheus/blob/v3.1.0/tsdb/chunkenc/varbit.go>).
//!
//! Owns only these field layouts; knows nothing of samples or chunks.
//! Format: `docs/format/chunks-histogram.md`.

use super::bstream::{BitReader, BitWriter};

/// Payload widths after the prefixes `10`, `110`, ..., `11111110`; the
/// prefix `11111111` is followed by all 64 bits.
const WIDTHS: [u32; 7] = [3, 6, 9, 12, 18, 25, 56];

/// Reports whether `v` fits Prometheus's `bitRange(v, n)`:
/// `-(2^(n-1) - 1) ..= 2^(n-1)` (not two's complement: one more positive).
#[inline]
fn fits_signed(v: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= v && v <= half
}

/// Writes the unary prefix for payload class `i` (0-based into [`WIDTHS`]).
#[inline]
fn write_prefix(w: &mut BitWriter, i: usize) {
    // `10` for i=0, `110` for i=1, ...: (i+1) ones then a zero.
    let n = i as u32 + 2;
    let ones = (1u64 << (i + 1)) - 1;
    w.write_bits(ones << 1, n);
}

/// Writes a signed varbit integer.
pub(super) fn put_varbit_int(w: &mut BitWriter, v: i64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (i, &n) in WIDTHS.iter().enumerate() {
        if fits_signed(v, n) {
            write_prefix(w, i);
            w.write_bits(v as u64, n);
            return;
        }
    }
    w.write_bits(0xff, 8);
    w.write_bits(v as u64, 64);
}

/// Writes an unsigned varbit integer.
pub(super) fn put_varbit_uint(w: &mut BitWriter, v: u64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (i, &n) in WIDTHS.iter().enumerate() {
        if v.leading_zeros() >= 64 - n {
            write_prefix(w, i);
            w.write_bits(v, n);
            return;
        }
    }
    w.write_bits(0xff, 8);
    w.write_bits(v, 64);
}

/// Reads the prefix: `Some(None)` for the 1-bit zero, `Some(Some(width))`.
#[inline]
fn read_prefix(r: &mut BitReader, bytes: &[u8]) -> Option<Option<u32>> {
    let ones = r.read_unary(bytes, 8)?;
    Some(match ones {
        0 => None,
        8 => Some(64),
        k => Some(WIDTHS[k as usize - 1]),
    })
}

/// Reads a signed varbit integer; `None` if the stream ends first.
pub(super) fn read_varbit_int(r: &mut BitReader, bytes: &[u8]) -> Option<i64> {
    match read_prefix(r, bytes)? {
        None => Some(0),
        Some(64) => Some(r.read_bits(bytes, 64)? as i64),
        Some(n) => {
            let bits = r.read_bits(bytes, n)?;
            Some(if bits > 1 << (n - 1) {
                bits.wrapping_sub(1 << n) as i64
            } else {
                bits as i64
            })
        }
    }
}

/// Reads an unsigned varbit integer; `None` if the stream ends first.
pub(super) fn read_varbit_uint(r: &mut BitReader, bytes: &[u8]) -> Option<u64> {
    match read_prefix(r, bytes)? {
        None => Some(0),
        Some(n) => r.read_bits(bytes, n),
    }
}

/// `leading` meaning "no XOR window chosen yet" (writer side only).
pub(super) const NO_WINDOW: u8 = 0xff;

/// The XOR-encoding state of one float field: its last value and window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct XorField {
    pub(super) bits: u64,
    pub(super) leading: u8,
    pub(super) trailing: u8,
}

impl XorField {
    /// A writer-side field after its first raw value `v`.
    pub(super) fn writer(v: f64) -> Self {
        Self {
            bits: v.to_bits(),
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// A reader-side field after its first raw value `v` (Prometheus's
    /// reader starts from an all-64-bit window).
    pub(super) fn reader(v: f64) -> Self {
        Self {
            bits: v.to_bits(),
            leading: 0,
            trailing: 0,
        }
    }

    /// The current value.
    pub(super) fn value(&self) -> f64 {
        f64::from_bits(self.bits)
    }

    /// Writes `v` as the XOR with the previous value (Prometheus `xorWrite`).
    pub(super) fn write(&mut self, w: &mut BitWriter, v: f64) {
        let new = v.to_bits();
        let xor = new ^ self.bits;
        self.bits = new;
        if xor == 0 {
            w.write_bit(false);
            return;
        }
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            w.write_bits(0b10, 2);
            w.write_bits(xor >> self.trailing, sig);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        let sig = 64 - u32::from(leading) - u32::from(trailing);
        w.write_bits(0b11, 2);
        w.write_bits(u64::from(leading), 5);
        w.write_bits(u64::from(sig) & 0x3f, 6);
        w.write_bits(xor >> trailing, sig);
    }

    /// Reads the next value (Prometheus `xorRead`). `Err(None)` when the
    /// stream ends, `Err(Some((leading, sig)))` for a window wider than
    /// 64 bits (which Prometheus would misread; we refuse it).
    pub(super) fn read(&mut self, r: &mut BitReader, bytes: &[u8]) -> Result<(), Option<(u8, u8)>> {
        match r.read_unary(bytes, 2).ok_or(None)? {
            0 => return Ok(()),
            1 => {}
            _ => {
                let header = r.read_bits(bytes, 11).ok_or(None)?;
                let leading = (header >> 6) as u8;
                let sig = match (header & 0x3f) as u8 {
                    0 => 64,
                    s => s,
                };
                if u32::from(leading) + u32::from(sig) > 64 {
                    return Err(Some((leading, sig)));
                }
                self.leading = leading;
                self.trailing = 64 - leading - sig;
            }
        }
        let sig = 64u32
            .saturating_sub(u32::from(self.leading))
            .saturating_sub(u32::from(self.trailing));
        if sig == 0 || u32::from(self.trailing) >= 64 {
            return Err(Some((self.leading, 0)));
        }
        let bits = r.read_bits(bytes, sig).ok_or(None)?;
        self.bits ^= bits << self.trailing;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varbit_int_bucket_edges_match_prometheus() {
        // Prometheus varbit_test.go: sizes at the bucket edges.
        let cases: [(i64, usize); 8] = [
            (0, 1),
            (4, 5),
            (-3, 5),
            (5, 9),
            (-4, 9),
            (32, 9),
            (33, 13),
            (i64::MIN, 72),
        ];
        for (v, bits) in cases {
            let mut w = BitWriter::default();
            put_varbit_int(&mut w, v);
            let mut r = BitReader::at_byte(0);
            assert_eq!(read_varbit_int(&mut r, w.bytes()), Some(v), "{v}");
            assert_eq!(r.bit_offset(), bits, "{v}");
        }
    }

    proptest! {
        #[test]
        fn prop_varbit_round_trip(ints in proptest::collection::vec(any::<i64>(), 0..50),
                                  uints in proptest::collection::vec(any::<u64>(), 0..50),
                                  floats in proptest::collection::vec(any::<u64>(), 0..50)) {
            let mut w = BitWriter::default();
            for &v in &ints { put_varbit_int(&mut w, v); put_varbit_int(&mut w, v >> 40); }
            for &v in &uints { put_varbit_uint(&mut w, v); put_varbit_uint(&mut w, v >> 50); }
            let mut f = XorField::writer(0.0);
            for &v in &floats { f.write(&mut w, f64::from_bits(v)); }
            let bytes = w.bytes();
            let mut r = BitReader::at_byte(0);
            for &v in &ints {
                prop_assert_eq!(read_varbit_int(&mut r, bytes), Some(v));
                prop_assert_eq!(read_varbit_int(&mut r, bytes), Some(v >> 40));
            }
            for &v in &uints {
                prop_assert_eq!(read_varbit_uint(&mut r, bytes), Some(v));
                prop_assert_eq!(read_varbit_uint(&mut r, bytes), Some(v >> 50));
            }
            let mut g = XorField::reader(0.0);
            for &v in &floats {
                prop_assert_eq!(g.read(&mut r, bytes), Ok(()));
                prop_assert_eq!(g.bits, v);
            }
        }
    }
}
