//! What the integer and float histogram chunks share: the 3-byte header
//! with its counter-reset flag, the chunk layout written before the first
//! sample (zero threshold, schema, spans, custom bounds), and the bucket
//! layout arithmetic the appenders use to decide between appending,
//! recoding and cutting. Bit-compatible with Prometheus's
//! `tsdb/chunkenc/histogram_meta.go`
//! (<https://github.com/prometheus/prometheus/blob/v3.1.0/tsdb/chunkenc/histogram_meta.go>).
//!
//! Owns no sample state. Format: `docs/format/chunks-histogram.md`.

use super::bstream::{BitReader, BitWriter};
use super::varbit::{put_varbit_int, put_varbit_uint, read_varbit_int, read_varbit_uint};
use crate::model::histogram::{is_custom_buckets, is_valid_schema};
use crate::model::{CounterResetHint, Span};

/// Bytes of a histogram chunk header: `u16` BE sample count, flag byte.
pub(super) const HIST_HEADER_LEN: usize = 3;

/// What a histogram chunk's header says about the counter reset before its
/// first sample (the top two bits of byte 2; Prometheus's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterResetHeader {
    /// Not known: readers detect resets by comparing with the previous chunk.
    Unknown,
    /// The chunk was cut because of a counter reset.
    CounterReset,
    /// The chunk was cut for another reason; no reset happened.
    NotCounterReset,
    /// The chunk holds gauge histograms.
    Gauge,
}

impl CounterResetHeader {
    /// The flag byte's top two bits.
    pub fn to_bits(self) -> u8 {
        match self {
            CounterResetHeader::Unknown => 0b0000_0000,
            CounterResetHeader::NotCounterReset => 0b0100_0000,
            CounterResetHeader::CounterReset => 0b1000_0000,
            CounterResetHeader::Gauge => 0b1100_0000,
        }
    }

    /// The header a flag byte holds (its low six bits are ignored).
    pub fn from_byte(b: u8) -> Self {
        match b & 0b1100_0000 {
            0b0100_0000 => CounterResetHeader::NotCounterReset,
            0b1000_0000 => CounterResetHeader::CounterReset,
            0b1100_0000 => CounterResetHeader::Gauge,
            _ => CounterResetHeader::Unknown,
        }
    }

    /// The hint a sample at position `index` of such a chunk carries
    /// (Prometheus `counterResetHint`): gauge chunks say gauge, samples
    /// after the first say no reset, the first says unknown (the previous
    /// chunk may be gone or out of order, so its header is not trusted).
    pub fn hint_at(self, index: usize) -> CounterResetHint {
        match self {
            CounterResetHeader::Gauge => CounterResetHint::Gauge,
            _ if index > 0 => CounterResetHint::NotCounterReset,
            _ => CounterResetHint::Unknown,
        }
    }
}

/// The bucket layout every sample of a chunk shares.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Layout {
    pub(super) schema: i32,
    pub(super) zero_threshold: f64,
    pub(super) positive_spans: Vec<Span>,
    pub(super) negative_spans: Vec<Span>,
    pub(super) custom_values: Vec<f64>,
}

/// Why a layout could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LayoutFault {
    Eof,
    UnknownSchema,
    TooManyBuckets,
}

/// Most buckets one side of a chunk layout may declare when read back: far
/// above any real histogram (Prometheus clients cap at 160 by default),
/// low enough that hostile bytes cannot make a reader allocate gigabytes.
/// Equal to what validation lets in ([`crate::model::histogram::MAX_BUCKETS_PER_SIDE`]).
pub(super) const MAX_LAYOUT_BUCKETS: u64 = crate::model::histogram::MAX_BUCKETS_PER_SIDE as u64;

impl Layout {
    pub(super) fn write(&self, w: &mut BitWriter) {
        put_zero_threshold(w, self.zero_threshold);
        put_varbit_int(w, i64::from(self.schema));
        put_spans(w, &self.positive_spans);
        put_spans(w, &self.negative_spans);
        if is_custom_buckets(self.schema) {
            put_varbit_uint(w, self.custom_values.len() as u64);
            for &b in &self.custom_values {
                put_custom_bound(w, b);
            }
        }
    }

    pub(super) fn read(r: &mut BitReader, bytes: &[u8]) -> Result<Self, LayoutFault> {
        let zero_threshold = read_zero_threshold(r, bytes).ok_or(LayoutFault::Eof)?;
        let schema = read_varbit_int(r, bytes).ok_or(LayoutFault::Eof)?;
        // Prometheus also reads schemas 9..=52 (reducing them to 8); no
        // writer produces them and Tidemark refuses them.
        let schema = i32::try_from(schema)
            .ok()
            .filter(|s| is_valid_schema(*s))
            .ok_or(LayoutFault::UnknownSchema)?;
        let positive_spans = read_spans(r, bytes)?;
        let negative_spans = read_spans(r, bytes)?;
        let mut custom_values = Vec::new();
        if is_custom_buckets(schema) {
            let n = read_varbit_uint(r, bytes).ok_or(LayoutFault::Eof)?;
            if n > MAX_LAYOUT_BUCKETS {
                return Err(LayoutFault::TooManyBuckets);
            }
            for _ in 0..n {
                custom_values.push(read_custom_bound(r, bytes).ok_or(LayoutFault::Eof)?);
            }
        }
        Ok(Self {
            schema,
            zero_threshold,
            positive_spans,
            negative_spans,
            custom_values,
        })
    }
}

fn put_spans(w: &mut BitWriter, spans: &[Span]) {
    put_varbit_uint(w, spans.len() as u64);
    for s in spans {
        put_varbit_uint(w, u64::from(s.length));
        put_varbit_int(w, i64::from(s.offset));
    }
}

fn read_spans(r: &mut BitReader, bytes: &[u8]) -> Result<Vec<Span>, LayoutFault> {
    let n = read_varbit_uint(r, bytes).ok_or(LayoutFault::Eof)?;
    if n > MAX_LAYOUT_BUCKETS {
        return Err(LayoutFault::TooManyBuckets);
    }
    let mut spans = Vec::with_capacity(n as usize);
    let mut total: u64 = 0;
    for _ in 0..n {
        let length = read_varbit_uint(r, bytes).ok_or(LayoutFault::Eof)?;
        let offset = read_varbit_int(r, bytes).ok_or(LayoutFault::Eof)?;
        total = total.saturating_add(length);
        if total > MAX_LAYOUT_BUCKETS {
            return Err(LayoutFault::TooManyBuckets);
        }
        // Prometheus truncates both to 32 bits; so do we.
        spans.push(Span {
            offset: offset as i32,
            length: length as u32,
        });
    }
    Ok(spans)
}

/// Zero threshold: one byte `0` for 0, one byte `exp + 243` for a power of
/// two between 2^-243 and 2^10, else `255` and the 64 raw bits.
fn put_zero_threshold(w: &mut BitWriter, threshold: f64) {
    if threshold == 0.0 {
        w.write_bits(0, 8);
        return;
    }
    match frexp_half_exponent(threshold) {
        Some(exp) if (-242..=11).contains(&exp) => w.write_bits((exp + 243) as u64, 8),
        _ => {
            w.write_bits(255, 8);
            w.write_bits(threshold.to_bits(), 64);
        }
    }
}

/// If `v` is `0.5 * 2^exp` exactly (Go's `math.Frexp` returning a fraction
/// of 0.5), the exponent.
fn frexp_half_exponent(v: f64) -> Option<i32> {
    if !v.is_finite() || v <= 0.0 {
        return None;
    }
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = bits & ((1u64 << 52) - 1);
    if biased == 0 {
        // Subnormal: a power of two when exactly one mantissa bit is set.
        if mantissa.count_ones() != 1 {
            return None;
        }
        let p = mantissa.trailing_zeros() as i32; // v = 2^(p - 1074)
        return Some(p - 1074 + 1);
    }
    if mantissa != 0 {
        return None;
    }
    // v = 2^(biased - 1023) = 0.5 * 2^(biased - 1022).
    Some(biased - 1022)
}

fn read_zero_threshold(r: &mut BitReader, bytes: &[u8]) -> Option<f64> {
    match r.read_bits(bytes, 8)? {
        0 => Some(0.0),
        255 => Some(f64::from_bits(r.read_bits(bytes, 64)?)),
        b => Some(ldexp_half(b as i32 - 243)),
    }
}

/// `0.5 * 2^exp` for `exp` in `-242..=11` (always a normal float).
fn ldexp_half(exp: i32) -> f64 {
    f64::from_bits(((exp + 1022) as u64) << 52)
}

/// A custom bucket bound: `bound * 1000 + 1` as a varbit uint when that is
/// a whole number in `1..=33554431`, else a 0 bit and the 64 raw bits.
fn put_custom_bound(w: &mut BitWriter, f: f64) {
    let tf = f * 1000.0;
    if !(0.0..=33_554_430.0).contains(&tf) || !is_whole_when_multiplied(f) {
        w.write_bit(false);
        w.write_bits(f.to_bits(), 64);
        return;
    }
    put_varbit_uint(w, (tf.round() as u64) + 1);
}

/// Go's `isWholeWhenMultiplied`: `uint(round(f*1000)) / 1000 == f`.
fn is_whole_when_multiplied(f: f64) -> bool {
    let i = (f * 1000.0).round();
    // Only reached with 0 <= f*1000 <= 33554430, so the cast is exact.
    (i as u64) as f64 / 1000.0 == f
}

fn read_custom_bound(r: &mut BitReader, bytes: &[u8]) -> Option<f64> {
    match read_varbit_uint(r, bytes)? {
        0 => Some(f64::from_bits(r.read_bits(bytes, 64)?)),
        b => Some((b - 1) as f64 / 1000.0),
    }
}

/// Number of buckets the spans describe.
pub(super) fn count_spans(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.length as usize).sum()
}

/// The bucket indices the spans cover, in order (Prometheus's
/// `bucketIterator`; zero-length spans only move the position).
pub(super) fn bucket_indices(spans: &[Span]) -> Vec<i64> {
    let mut out = Vec::with_capacity(count_spans(spans));
    let mut idx: i64 = 0;
    for s in spans {
        idx = idx.wrapping_add(i64::from(s.offset));
        for _ in 0..s.length {
            out.push(idx);
            idx = idx.wrapping_add(1);
        }
    }
    out
}

/// Canonical spans for sorted, distinct bucket indices (Prometheus's
/// `addBucket` in `expandSpansBothWays`/`adjustForInserts`).
pub(super) fn spans_for(indices: &[i64]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut last: i64 = 0;
    for &b in indices {
        // Wrapping, as Go's int: indices come from i32 offsets and u32
        // lengths, so valid layouts never wrap; damaged ones must not panic.
        let offset = b.wrapping_sub(last).wrapping_sub(1);
        match spans.last_mut() {
            Some(s) if offset == 0 => s.length = s.length.wrapping_add(1),
            _ => spans.push(Span {
                offset: if spans.is_empty() {
                    offset.wrapping_add(1)
                } else {
                    offset
                } as i32,
                length: 1,
            }),
        }
        last = b;
    }
    spans
}

/// How one side of a new sample relates to the chunk's layout.
#[derive(Debug, Default)]
pub(super) struct SideMerge {
    /// The sample has buckets the chunk lacks (the chunk must be recoded).
    pub(super) forward: bool,
    /// The chunk has (empty) buckets the sample lacks.
    pub(super) backward: bool,
    /// Union of both index sets, ascending.
    pub(super) union: Vec<i64>,
}

/// Compares one side: `a` the chunk's indices and absolute counts of its
/// last sample, `b` the new sample's. `None` if a bucket count went down or
/// a non-empty bucket disappeared (a counter reset), unless `gauge`.
pub(super) fn merge_side<V: PartialOrd + Copy + Default>(
    a_idx: &[i64],
    a_counts: &[V],
    b_idx: &[i64],
    b_counts: &[V],
    gauge: bool,
) -> Option<SideMerge> {
    let mut m = SideMerge::default();
    let (mut i, mut j) = (0, 0);
    let zero = V::default();
    loop {
        let (a, b) = (a_idx.get(i).copied(), b_idx.get(j).copied());
        let a_first = match (a, b) {
            (None, None) => return Some(m),
            (Some(ai), Some(bi)) => ai.cmp(&bi),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
        };
        match a_first {
            std::cmp::Ordering::Equal => {
                if !gauge
                    && a_counts.get(i).copied().unwrap_or(zero)
                        > b_counts.get(j).copied().unwrap_or(zero)
                {
                    return None;
                }
                m.union.push(a_idx[i]);
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                if !gauge && a_counts.get(i).copied().unwrap_or(zero) != zero {
                    return None;
                }
                m.backward = true;
                m.union.push(a_idx[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                m.forward = true;
                m.union.push(b_idx[j]);
                j += 1;
            }
        }
    }
}

/// Absolute counts of `from_idx` placed at their positions in `to_idx` (a
/// superset), zero elsewhere.
pub(super) fn expand_counts<V: Copy + Default>(
    from_idx: &[i64],
    counts: &[V],
    to_idx: &[i64],
) -> Vec<V> {
    let mut out = vec![V::default(); to_idx.len()];
    let mut k = 0;
    for (pos, &t) in to_idx.iter().enumerate() {
        if from_idx.get(k) == Some(&t) {
            out[pos] = counts.get(k).copied().unwrap_or_default();
            k += 1;
        }
    }
    out
}

/// The spans one side of the chunk has after a sample is merged in, when
/// some side needs the chunk recoded (`any_forward`). Prometheus takes the
/// sample's spans, except where buckets are inserted into the sample too:
/// there canonical spans of the union (per side for counters, on both
/// sides once any side has such inserts for gauges).
pub(super) fn recoded_spans(
    sample: &[Span],
    m: &SideMerge,
    any_backward: bool,
    gauge: bool,
) -> Vec<Span> {
    let backward = if gauge { any_backward } else { m.backward };
    if backward {
        spans_for(&m.union)
    } else {
        sample.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threshold_default_is_one_byte_116() {
        let mut w = BitWriter::default();
        put_zero_threshold(&mut w, 2f64.powi(-128));
        assert_eq!(w.bytes(), &[116]);
        let mut r = BitReader::at_byte(0);
        assert_eq!(
            read_zero_threshold(&mut r, w.bytes()),
            Some(2f64.powi(-128))
        );
        for v in [
            0.0,
            1.0,
            1024.0,
            2f64.powi(-243),
            0.001,
            2048.0,
            f64::MIN_POSITIVE / 4.0,
        ] {
            let mut w = BitWriter::default();
            put_zero_threshold(&mut w, v);
            let mut r = BitReader::at_byte(0);
            assert_eq!(read_zero_threshold(&mut r, w.bytes()), Some(v), "{v}");
        }
    }

    #[test]
    fn custom_bounds_round_trip() {
        for v in [0.0, 0.001, 1.5, 33554.43, 33554.431, -1.0, 0.1 + 0.2, 1e300] {
            let mut w = BitWriter::default();
            put_custom_bound(&mut w, v);
            let mut r = BitReader::at_byte(0);
            assert_eq!(
                read_custom_bound(&mut r, w.bytes()).map(f64::to_bits),
                Some(v.to_bits()),
                "{v}"
            );
        }
    }

    #[test]
    fn spans_for_is_canonical() {
        let spans = vec![
            Span {
                offset: -2,
                length: 2,
            },
            Span {
                offset: 0,
                length: 1,
            },
            Span {
                offset: 3,
                length: 0,
            },
            Span {
                offset: 1,
                length: 1,
            },
        ];
        let idx = bucket_indices(&spans);
        assert_eq!(idx, vec![-2, -1, 0, 5]);
        assert_eq!(
            spans_for(&idx),
            vec![
                Span {
                    offset: -2,
                    length: 3
                },
                Span {
                    offset: 4,
                    length: 1
                }
            ]
        );
    }
}
