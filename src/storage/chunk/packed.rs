//! Packed chunk: the encoding persisted blocks use. [`encode_packed`] turns
//! a run of samples into one chunk, [`decode_packed`] reads it back bit for
//! bit. Layout: `docs/format/chunks-packed.md`.
//!
//! Where the XOR chunk (built for appending one sample at a time) spends a
//! 16-bit bucket on every jittered timestamp and a leading/trailing window on
//! every changed value, a block chunk is written once, whole, so it can look
//! at all its samples first:
//!
//! - **timestamps** are stored as offsets from a fixed-step grid (scrapes are
//!   scheduled at a fixed interval, so the offsets are just the scrape
//!   jitter), or as plain deltas when no step fits, whichever is smaller;
//! - **values** are stored as decimal mantissas at one scale (`v = m / 10^k`,
//!   checked to reproduce the exact bits), delta- or delta-of-delta coded;
//!   values with no exact decimal form (NaN, the stale marker, ±Inf, -0.0,
//!   long binary fractions) are kept as raw bits in an exception list;
//! - every integer column is frame-of-reference bit-packed in frames of
//!   [`FRAME`] values: a frame stores its minimum and the bit width of the
//!   largest offset from it, so a constant column costs 0 bits per value.
//!
//! Owns the chunk bytes only: no framing, no choice of when to cut a chunk,
//! no knowledge of series.

use super::{Error, Result, HEADER_LEN};
use crate::model::Sample;
use crate::storage::encoding::{put_uvarint, put_varint, uvarint_len, varint_len, Decbuf};

/// Values per bit-packed frame.
const FRAME: usize = 128;

/// Most samples one packed chunk holds. Blocks cut a series' samples into
/// chunks of this size: big enough that per-chunk headers and frame minima
/// cost little, small enough that a query reading a few samples decodes
/// a few microseconds' worth.
pub const MAX_PACKED_SAMPLES: usize = 1024;

/// Largest decimal scale tried: `v = m / 10^k` with `k <= MAX_SCALE`.
const MAX_SCALE: usize = 18;

/// Mantissas stay within ±2^53 so that `m as f64` is exact.
const MAX_MANTISSA: i64 = 1 << 53;

const POW10: [f64; MAX_SCALE + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

const TS_DELTA: u8 = 0;
const TS_GRID: u8 = 1;
const TS_SHARED: u8 = 2;
const V_DELTA: u8 = 0;
const V_DOD: u8 = 1;

/// The value `m / 10^k` decodes to. Encoding only ever keeps a mantissa for
/// which this reproduces the sample's exact bits.
#[inline]
pub(crate) fn from_decimal(m: i64, k: usize) -> f64 {
    m as f64 / POW10[k]
}

/// The smallest scale `k` and mantissa `m` with `m / 10^k` bit-identical to
/// `v`, if any; `m` is always [`decimal_at`]`(v, k)`'s.
pub(crate) fn to_decimal(v: f64) -> Option<(i64, usize)> {
    if !v.is_finite() {
        return None;
    }
    for (k, p) in POW10.iter().enumerate() {
        let scaled = (v * p).round();
        if scaled.abs() > MAX_MANTISSA as f64 {
            return None;
        }
        let m = scaled as i64;
        if from_decimal(m, k).to_bits() == v.to_bits() {
            return Some((m, k));
        }
    }
    None
}

/// `v`'s mantissa at scale `k` (`0..=18`): `round(v * 10^k)`, if that is
/// within ±2^53 and `m / 10^k` gives back `v`'s exact bits.
#[inline]
pub(crate) fn decimal_at(v: f64, k: usize) -> Option<i64> {
    let p = *POW10.get(k)?;
    let scaled = (v * p).round();
    // NaN fails the comparison too.
    if scaled.is_nan() || scaled.abs() > MAX_MANTISSA as f64 {
        return None;
    }
    let m = scaled as i64;
    (from_decimal(m, k).to_bits() == v.to_bits()).then_some(m)
}

/// `v`'s mantissa at scale `scale`, if `v` has one there.
fn mantissa_at(v: f64, decimal: Option<(i64, usize)>, scale: usize) -> Option<i64> {
    let (m, k) = decimal?;
    if k > scale {
        return None;
    }
    // `decimal` is `to_decimal(v)`'s, which checked this very mantissa.
    if k == scale {
        return Some(m);
    }
    let m = m.checked_mul(10i64.checked_pow((scale - k) as u32)?)?;
    (m.abs() <= MAX_MANTISSA && from_decimal(m, scale).to_bits() == v.to_bits()).then_some(m)
}

/// Encodes `samples` (strictly increasing timestamps) as one packed chunk.
///
/// # Panics
/// If there are more than `u16::MAX` samples (a caller bug: blocks cut at
/// [`MAX_PACKED_SAMPLES`]).
pub fn encode_packed(samples: &[Sample]) -> Vec<u8> {
    let mut out = timestamp_section(samples);
    if !samples.is_empty() {
        put_values(&mut out, samples);
    }
    out
}

/// The start of the chunk [`encode_packed`] writes for `samples`: the
/// header and the timestamps. Two runs get equal sections exactly when
/// their timestamps are equal (the encoding is a function of them and
/// decodes back to them), so block writers key shared timestamps by it.
///
/// # Panics
/// As [`encode_packed`].
pub fn timestamp_section(samples: &[Sample]) -> Vec<u8> {
    let mut out = header(samples);
    if !samples.is_empty() {
        put_timestamps(&mut out, samples);
    }
    out
}

/// Encodes `samples` as a packed chunk that takes its timestamps from the
/// packed chunk at byte `owner` of the same chunk segment file, whose
/// timestamps the caller has checked to be identical (equal
/// [`timestamp_section`]s). Such a chunk decodes only through
/// [`decode_packed_with`].
///
/// # Panics
/// As [`encode_packed`].
pub fn encode_packed_shared(samples: &[Sample], owner: u64) -> Vec<u8> {
    let mut out = header(samples);
    if !samples.is_empty() {
        out.push(TS_SHARED);
        put_uvarint(&mut out, owner);
        put_values(&mut out, samples);
    }
    out
}

fn header(samples: &[Sample]) -> Vec<u8> {
    let n = u16::try_from(samples.len()).expect("packed chunk holds at most u16::MAX samples");
    let mut out = Vec::with_capacity(16 + samples.len());
    out.extend_from_slice(&n.to_be_bytes());
    out
}

fn put_timestamps(out: &mut Vec<u8>, samples: &[Sample]) {
    let t0 = samples[0].t;
    if samples.len() == 1 {
        out.push(TS_DELTA);
        put_varint(out, t0);
        return;
    }
    let deltas: Vec<i64> = samples
        .windows(2)
        .map(|w| w[1].t.wrapping_sub(w[0].t))
        .collect();
    let mut best = (column_cost(&deltas), None);
    let mut scratch = deltas.clone();
    let mid = scratch.len() / 2;
    let median = *scratch.select_nth_unstable(mid).1;
    for step in [median, median.wrapping_sub(1), median.wrapping_add(1)] {
        let cost = column_cost(&grid_offsets(samples, t0, step));
        if cost < best.0 {
            best = (cost, Some(step));
        }
    }
    match best.1 {
        None => {
            out.push(TS_DELTA);
            put_varint(out, t0);
            put_column(out, &deltas);
        }
        Some(step) => {
            out.push(TS_GRID);
            put_varint(out, t0);
            put_varint(out, step);
            put_column(out, &grid_offsets(samples, t0, step));
        }
    }
}

/// `t_i - (t0 + i * step)` for samples 1.., wrapping.
fn grid_offsets(samples: &[Sample], t0: i64, step: i64) -> Vec<i64> {
    samples
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, s)| {
            s.t.wrapping_sub(t0.wrapping_add((i as i64).wrapping_mul(step)))
        })
        .collect()
}

fn put_values(out: &mut Vec<u8>, samples: &[Sample]) {
    // Runs of equal values (constants, idle counters) are converted once.
    let mut last: Option<(u64, Option<(i64, usize)>)> = None;
    let decimals: Vec<Option<(i64, usize)>> = samples
        .iter()
        .map(|s| {
            let bits = s.v.to_bits();
            match last {
                Some((b, d)) if b == bits => d,
                _ => {
                    let d = to_decimal(s.v);
                    last = Some((bits, d));
                    d
                }
            }
        })
        .collect();
    let mut scales: Vec<usize> = decimals.iter().flatten().map(|&(_, k)| k).collect();
    scales.sort_unstable();
    scales.dedup();
    let Some(&max) = scales.last() else {
        put_values_at(out, samples, &decimals, 0);
        return;
    };
    // The largest scale any value needs holds every decimal value unless
    // a mantissa overflows ±2^53 there; only then can a smaller scale
    // (more values as exceptions) win, so only then are they tried.
    let overflows = samples
        .iter()
        .zip(&decimals)
        .any(|(s, &d)| d.is_some() && mantissa_at(s.v, d, max).is_none());
    if !overflows {
        put_values_at(out, samples, &decimals, max);
        return;
    }
    let mut best: Option<Vec<u8>> = None;
    for scale in scales {
        let mut buf = Vec::new();
        put_values_at(&mut buf, samples, &decimals, scale);
        if best.as_ref().is_none_or(|b| buf.len() < b.len()) {
            best = Some(buf);
        }
    }
    out.extend_from_slice(&best.unwrap_or_default());
}

/// Values at one decimal scale: scale, exceptions, then the mantissas.
fn put_values_at(
    out: &mut Vec<u8>,
    samples: &[Sample],
    decimals: &[Option<(i64, usize)>],
    scale: usize,
) {
    out.push(scale as u8);
    let mut mantissas = Vec::with_capacity(samples.len());
    let mut exceptions: Vec<(usize, u64)> = Vec::new();
    let mut prev = 0i64;
    for (i, (s, &d)) in samples.iter().zip(decimals).enumerate() {
        match mantissa_at(s.v, d, scale) {
            Some(m) => prev = m,
            None => exceptions.push((i, s.v.to_bits())),
        }
        mantissas.push(prev);
    }
    put_uvarint(out, exceptions.len() as u64);
    let mut last = 0usize;
    for (i, bits) in exceptions {
        put_uvarint(out, (i - last) as u64);
        out.extend_from_slice(&bits.to_le_bytes());
        last = i;
    }
    put_varint(out, mantissas[0]);
    if mantissas.len() < 2 {
        return;
    }
    let deltas: Vec<i64> = mantissas
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .collect();
    let dods: Vec<i64> = deltas.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    if column_cost(&dods) + varint_len(deltas[0]) < column_cost(&deltas) {
        out.push(V_DOD);
        put_varint(out, deltas[0]);
        put_column(out, &dods);
    } else {
        out.push(V_DELTA);
        put_column(out, &deltas);
    }
}

/// Greatest common divisor of every value's offset from its frame's
/// minimum (1 when all offsets are 0): values that move in fixed steps
/// (memory in 4 KiB pages, frequencies in kHz) pack in fewer bits divided
/// by it.
fn column_divisor(values: &[i64]) -> u64 {
    let mut g = 0u64;
    for frame in values.chunks(FRAME) {
        let min = frame.iter().copied().min().unwrap_or(0);
        for &v in frame {
            g = gcd(g, v.wrapping_sub(min) as u64);
            if g == 1 {
                return 1;
            }
        }
    }
    g.max(1)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Frame minimum and bit width of the largest offset from it, divided by
/// the column's divisor.
fn frame_params(frame: &[i64], divisor: u64) -> (i64, u32) {
    if frame.is_empty() {
        return (0, 0);
    }
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for &v in frame {
        min = min.min(v);
        max = max.max(v);
    }
    // Dividing by the divisor keeps the order of the offsets, so the
    // largest quotient is the largest offset's: one division a frame.
    let max_off = max.wrapping_sub(min) as u64 / divisor;
    (min, 64 - max_off.leading_zeros())
}

/// Bytes [`put_column`] would write for `values`.
fn column_cost(values: &[i64]) -> usize {
    if values.is_empty() {
        return 0;
    }
    let divisor = column_divisor(values);
    uvarint_len(divisor)
        + values
            .chunks(FRAME)
            .map(|f| {
                let (min, width) = frame_params(f, divisor);
                varint_len(min) + 1 + (f.len() * width as usize).div_ceil(8)
            })
            .sum::<usize>()
}

/// Frame-of-reference bit packing. A non-empty column starts with its
/// divisor (uvarint, [`column_divisor`]); then per frame of [`FRAME`]
/// values, the minimum (varint), the bit width (u8), then each value's
/// offset from the minimum, divided by the divisor, in `width` bits, least
/// significant bit first, padded to a byte.
fn put_column(out: &mut Vec<u8>, values: &[i64]) {
    if values.is_empty() {
        return;
    }
    let divisor = column_divisor(values);
    put_uvarint(out, divisor);
    for frame in values.chunks(FRAME) {
        let (min, width) = frame_params(frame, divisor);
        put_varint(out, min);
        out.push(width as u8);
        // Most columns have no divisor: no division a value then.
        if divisor == 1 {
            pack_offsets(
                out,
                frame.iter().map(|&v| v.wrapping_sub(min) as u64),
                width,
            );
        } else {
            let offsets = frame.iter().map(|&v| v.wrapping_sub(min) as u64 / divisor);
            pack_offsets(out, offsets, width);
        }
    }
}

/// Appends `offsets` in `width` bits each, least significant bit first,
/// padded to a byte.
#[inline]
fn pack_offsets(out: &mut Vec<u8>, offsets: impl Iterator<Item = u64>, width: u32) {
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for off in offsets {
        acc |= u128::from(off) << bits;
        bits += width;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

fn malformed(d: &Decbuf<'_>, what: &'static str) -> Error {
    Error::Malformed {
        byte_offset: HEADER_LEN + d.position(),
        what,
    }
}

/// Reads `n` values written by [`put_column`].
fn read_column(d: &mut Decbuf<'_>, n: usize, mut put: impl FnMut(i64)) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let divisor = d
        .uvarint()
        .map_err(|_| malformed(d, "column divisor is not a uvarint"))?;
    let mut left = n;
    while left > 0 {
        let len = left.min(FRAME);
        let min = d
            .varint()
            .map_err(|_| malformed(d, "frame minimum is not a varint"))?;
        let width = u32::from(d.u8().map_err(|_| malformed(d, "frame width missing"))?);
        if width > 64 {
            return Err(malformed(d, "frame width over 64 bits"));
        }
        let bytes = d
            .bytes((len * width as usize).div_ceil(8))
            .map_err(|_| malformed(d, "frame truncated"))?;
        unpack_frame(bytes, len, width, |off| {
            put(min.wrapping_add(off.wrapping_mul(divisor) as i64));
        });
        left -= len;
    }
    Ok(())
}

/// Calls `put` with each of the `len` values of `width` bits (0..=64) that
/// `bytes` (exactly `ceil(len * width / 8)` bytes) holds, least
/// significant bit first.
///
/// A value of up to 57 bits lies within the 8 bytes from the byte holding
/// its first bit, so it is one unaligned little-endian load, a shift and a
/// mask; only the last few values, whose 8 bytes would pass the end, load
/// through a zero-padded copy. Wider values take a 128-bit accumulator.
#[inline(always)]
fn unpack_frame(bytes: &[u8], len: usize, width: u32, mut put: impl FnMut(u64)) {
    if width == 0 {
        (0..len).for_each(|_| put(0));
        return;
    }
    let mask = u64::MAX >> (64 - width);
    if width <= 57 {
        let width = width as usize;
        let (mut i, mut bit) = (0usize, 0usize);
        // Reads values from `src`, which holds the frame's bytes from byte
        // `base` on, while a value's 8-byte load stays inside it.
        let mut run = |src: &[u8], base: usize, i: &mut usize, bit: &mut usize| {
            while *i < len {
                let at = (*bit >> 3).saturating_sub(base);
                let Some(word) = src.get(at..at + 8) else {
                    break;
                };
                let mut le = [0u8; 8];
                le.copy_from_slice(word);
                put((u64::from_le_bytes(le) >> (*bit & 7)) & mask);
                *bit += width;
                *i += 1;
            }
        };
        run(bytes, 0, &mut i, &mut bit);
        // The tail (fewer than 8 bytes from the next value's first byte
        // on), from one zero-padded copy.
        let base = (bit >> 3).min(bytes.len());
        let mut padded = [0u8; 16];
        let tail = &bytes[base..];
        let kept = tail.len().min(8);
        padded[..kept].copy_from_slice(&tail[..kept]);
        run(&padded, base, &mut i, &mut bit);
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    let mut next = bytes.iter();
    for _ in 0..len {
        while bits < width {
            // The slice holds exactly the bits the frame needs.
            acc |= u128::from(*next.next().unwrap_or(&0)) << bits;
            bits += 8;
        }
        put((acc as u64) & mask);
        acc = acc.checked_shr(width).unwrap_or(0);
        bits -= width;
    }
}

/// Decodes a chunk written by [`encode_packed`]. A chunk sharing another's
/// timestamps ([`encode_packed_shared`]) needs [`decode_packed_with`].
///
/// # Errors
/// [`Error::TooShort`] without a header, [`Error::Malformed`] for bytes
/// that are not a packed chunk (truncated, bad widths, bad scale, exception
/// index out of range, trailing bytes, shared timestamps),
/// [`Error::NotIncreasing`] when the timestamps do not increase.
pub fn decode_packed(bytes: &[u8]) -> Result<Vec<Sample>> {
    decode_packed_with(bytes, |_| None)
}

/// The segment offset of the chunk whose timestamps the packed chunk
/// `bytes` shares, read without decoding it (`None` when it holds its own
/// timestamps, or is too short to say): what a reader that fetches chunks
/// one by one must fetch besides it.
pub fn shared_timestamps_owner(bytes: &[u8]) -> Option<u64> {
    if usize::from(super::num_samples(bytes).ok()?) == 0 {
        return None;
    }
    let rest = bytes.get(HEADER_LEN..)?;
    if rest.first() != Some(&TS_SHARED) {
        return None;
    }
    Decbuf::new(&rest[1..]).uvarint().ok()
}

/// Decodes a packed chunk; `owner` gives the bytes of the packed chunk at
/// a byte offset of the same chunk segment file, for a chunk that shares
/// that chunk's timestamps (`None` when there is none).
///
/// # Errors
/// As [`decode_packed`]; also [`Error::Malformed`] when the owner is
/// missing, itself shares timestamps, or holds a different sample count.
pub fn decode_packed_with<'a>(
    bytes: &[u8],
    owner: impl FnOnce(u64) -> Option<&'a [u8]>,
) -> Result<Vec<Sample>> {
    let n = usize::from(super::num_samples(bytes)?);
    let mut d = Decbuf::new(&bytes[HEADER_LEN..]);
    let mut out = vec![Sample::new(0, 0.0); n];
    if n == 0 {
        return finish(d, out);
    }
    // One pass per column, straight into the answer: the timestamps
    // first (checked to increase), then the values over them.
    if d.remaining() > 0 && bytes[HEADER_LEN] == TS_SHARED {
        let _ = d.u8();
        let at = d
            .uvarint()
            .map_err(|_| malformed(&d, "shared timestamps' owner is not a uvarint"))?;
        let owner = owner(at).ok_or_else(|| malformed(&d, "shared timestamps' owner not found"))?;
        if usize::from(super::num_samples(owner)?) != n {
            return Err(malformed(
                &d,
                "shared timestamps' owner holds another count",
            ));
        }
        read_timestamps(&mut Decbuf::new(&owner[HEADER_LEN..]), &mut out)?;
    } else {
        read_timestamps(&mut d, &mut out)?;
    }
    let scale = usize::from(d.u8().map_err(|_| malformed(&d, "decimal scale missing"))?);
    if scale > MAX_SCALE {
        return Err(malformed(&d, "decimal scale over 18"));
    }
    let num_exceptions = d
        .uvarint()
        .map_err(|_| malformed(&d, "exception count is not a varint"))?;
    if num_exceptions > n as u64 {
        return Err(malformed(&d, "more exceptions than samples"));
    }
    let mut exceptions = Vec::with_capacity(num_exceptions as usize);
    let mut at = 0u64;
    for i in 0..num_exceptions {
        let gap = d
            .uvarint()
            .map_err(|_| malformed(&d, "exception index is not a varint"))?;
        at = match at.checked_add(gap) {
            Some(next) if next < n as u64 && (i == 0 || gap > 0) => next,
            _ => return Err(malformed(&d, "exception index out of order or range")),
        };
        let bits = d
            .bytes(8)
            .map_err(|_| malformed(&d, "exception value truncated"))?;
        let mut le = [0u8; 8];
        le.copy_from_slice(bits);
        exceptions.push((at as usize, u64::from_le_bytes(le)));
    }
    let m0 = d
        .varint()
        .map_err(|_| malformed(&d, "first mantissa is not a varint"))?;
    // `out` holds exactly n samples; the column readers write each once.
    let mut values = out.iter_mut();
    // `from_decimal` with the power looked up once (scale <= MAX_SCALE).
    let pow = POW10[scale];
    let mut put = |m: i64| {
        if let Some(s) = values.next() {
            s.v = m as f64 / pow;
        }
    };
    put(m0);
    if n > 1 {
        let mode = d.u8().map_err(|_| malformed(&d, "value mode missing"))?;
        match mode {
            V_DELTA => {
                let mut m = m0;
                read_column(&mut d, n - 1, |delta| {
                    m = m.wrapping_add(delta);
                    put(m);
                })?;
            }
            V_DOD => {
                let mut delta = d
                    .varint()
                    .map_err(|_| malformed(&d, "first delta is not a varint"))?;
                let mut m = m0.wrapping_add(delta);
                put(m);
                read_column(&mut d, n - 2, |dod| {
                    delta = delta.wrapping_add(dod);
                    m = m.wrapping_add(delta);
                    put(m);
                })?;
            }
            _ => return Err(malformed(&d, "unknown value mode")),
        }
    }
    for (i, bits) in exceptions {
        if let Some(s) = out.get_mut(i) {
            s.v = f64::from_bits(bits);
        }
    }
    finish(d, out)
}

/// Reads a delta or grid timestamp section of `out.len()` (> 0)
/// timestamps into `out`'s samples and checks that they increase.
fn read_timestamps(d: &mut Decbuf<'_>, out: &mut [Sample]) -> Result<()> {
    let mode = d.u8().map_err(|_| malformed(d, "timestamp mode missing"))?;
    let t0 = d
        .varint()
        .map_err(|_| malformed(d, "first timestamp is not a varint"))?;
    let n = out.len();
    let (first, rest) = out
        .split_first_mut()
        .ok_or_else(|| malformed(d, "no timestamps"))?;
    first.t = t0;
    let mut slots = rest.iter_mut();
    // Whether every timestamp is above the one before: kept as a flag, so
    // the loop has no early exit; the failing pair is found only on error.
    let mut increasing = true;
    let mut prev = t0;
    let mut set = |t: i64| {
        if let Some(s) = slots.next() {
            increasing &= t > prev;
            prev = t;
            s.t = t;
        }
    };
    match mode {
        TS_DELTA => {
            let mut t = t0;
            read_column(d, n - 1, |delta| {
                t = t.wrapping_add(delta);
                set(t);
            })?;
        }
        TS_GRID => {
            let step = d
                .varint()
                .map_err(|_| malformed(d, "grid step is not a varint"))?;
            let mut grid = t0;
            read_column(d, n - 1, |off| {
                grid = grid.wrapping_add(step);
                set(grid.wrapping_add(off));
            })?;
        }
        _ => return Err(malformed(d, "unknown timestamp mode")),
    }
    if !increasing {
        if let Some((i, w)) = out.windows(2).enumerate().find(|(_, w)| w[1].t <= w[0].t) {
            return Err(Error::NotIncreasing {
                sample: i + 1,
                bit_offset: 0,
                prev_t: w[0].t,
                t: w[1].t,
            });
        }
    }
    Ok(())
}

fn finish(d: Decbuf<'_>, out: Vec<Sample>) -> Result<Vec<Sample>> {
    if !d.is_empty() {
        return Err(malformed(&d, "trailing bytes after the last column"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::STALE_NAN_BITS;

    fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
        samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
    }

    fn round_trip(samples: &[Sample]) -> Vec<u8> {
        let bytes = encode_packed(samples);
        let got = decode_packed(&bytes).unwrap();
        assert_eq!(bits(&got), bits(samples));
        bytes
    }

    /// Timestamps at a 15 s step with `0..=jitter` ms of delay, as scrapes.
    fn scrape_times(n: usize, jitter: u64) -> Vec<i64> {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                1_700_000_000_000 + i as i64 * 15_000 + (x % (jitter + 1)) as i64
            })
            .collect()
    }

    #[test]
    fn constant_series_costs_almost_nothing() {
        let samples: Vec<Sample> = scrape_times(960, 0)
            .into_iter()
            .map(|t| Sample::new(t, 8.0))
            .collect();
        let bytes = round_trip(&samples);
        // Header, t0, modes, step, one frame minimum per 128 values: no
        // per-sample bits at all.
        assert!(bytes.len() < 60, "{} bytes", bytes.len());
    }

    #[test]
    fn jittered_timestamps_cost_the_jitter_bits_only() {
        // 0..=5 ms of jitter: offsets from the 15 s grid span 6 values, so
        // 3 bits each.
        let samples: Vec<Sample> = scrape_times(1024, 5)
            .into_iter()
            .map(|t| Sample::new(t, 1.0))
            .collect();
        let bytes = round_trip(&samples);
        let per_sample = bytes.len() as f64 / 1024.0;
        assert!(per_sample < 0.45, "{per_sample} bytes/sample");
        assert_eq!(bytes[HEADER_LEN], TS_GRID);
    }

    #[test]
    fn decimal_counters_store_their_increments() {
        // CPU seconds in hundredths, +0..=255 hundredths a scrape: 8 bits.
        let mut v = 123_456.78_f64;
        let samples: Vec<Sample> = scrape_times(1024, 0)
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                v = ((v * 100.0).round() + (i * 37 % 256) as f64) / 100.0;
                Sample::new(t, v)
            })
            .collect();
        let bytes = round_trip(&samples);
        let per_sample = bytes.len() as f64 / 1024.0;
        assert!(per_sample < 1.1, "{per_sample} bytes/sample");
    }

    #[test]
    fn special_values_are_kept_bit_exact_as_exceptions() {
        let specials = [
            f64::from_bits(STALE_NAN_BITS),
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.1 + 0.2,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            1e300,
        ];
        let samples: Vec<Sample> = (0..40)
            .map(|i| {
                let v = if i % 4 == 1 {
                    specials[i / 4]
                } else {
                    i as f64 * 0.5
                };
                Sample::new(i as i64 * 1000, v)
            })
            .collect();
        round_trip(&samples);
        // A chunk of nothing but exceptions still round-trips.
        let all: Vec<Sample> = specials
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(i as i64, v))
            .collect();
        round_trip(&all);
    }

    #[test]
    fn gaps_and_extremes_round_trip() {
        round_trip(&[]);
        round_trip(&[Sample::new(i64::MIN, 1.0)]);
        round_trip(&[Sample::new(i64::MIN, 1.0), Sample::new(i64::MAX, -2.5)]);
        let mut ts = scrape_times(300, 3);
        ts[150..].iter_mut().for_each(|t| *t += 3_600_000);
        let samples: Vec<Sample> = ts.into_iter().map(|t| Sample::new(t, 2.0)).collect();
        round_trip(&samples);
        // Mantissas at the ±2^53 edge and a mixture of scales.
        let vals = [
            9_007_199_254_740_992.0,
            -9_007_199_254_740_992.0,
            0.001,
            1e15,
        ];
        let samples: Vec<Sample> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(i as i64, v))
            .collect();
        round_trip(&samples);
    }

    #[test]
    fn decode_rejects_non_increasing_timestamps_and_trailing_bytes() {
        let mut bytes = encode_packed(&[Sample::new(10, 1.0), Sample::new(20, 1.0)]);
        bytes.push(0);
        assert!(matches!(
            decode_packed(&bytes),
            Err(Error::Malformed { .. })
        ));
        // Grid step 0 with zero offsets: timestamps equal.
        let mut bad = vec![0, 2, TS_GRID];
        put_varint(&mut bad, 10);
        put_varint(&mut bad, 0);
        put_column(&mut bad, &[0]);
        bad.extend_from_slice(&[0, 0]);
        put_varint(&mut bad, 0);
        bad.push(V_DELTA);
        put_column(&mut bad, &[0]);
        assert!(matches!(
            decode_packed(&bad),
            Err(Error::NotIncreasing { sample: 1, .. })
        ));
    }

    #[test]
    fn shared_timestamps_come_from_the_owner_chunk() {
        let ts = scrape_times(200, 5);
        let owner: Vec<Sample> = ts.iter().map(|&t| Sample::new(t, 1.0)).collect();
        let other: Vec<Sample> = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| Sample::new(t, i as f64 * 0.25))
            .collect();
        assert_eq!(timestamp_section(&owner), timestamp_section(&other));
        let owner_bytes = encode_packed(&owner);
        let shared = encode_packed_shared(&other, 4242);
        assert!(shared.len() < encode_packed(&other).len() / 2);
        let got =
            decode_packed_with(&shared, |at| (at == 4242).then_some(&owner_bytes[..])).unwrap();
        assert_eq!(bits(&got), bits(&other));
        // Standalone decoding, a missing owner, an owner that shares in
        // turn or holds another count are errors, not wrong samples.
        assert!(matches!(
            decode_packed(&shared),
            Err(Error::Malformed { .. })
        ));
        let sharer_of_sharer = encode_packed_shared(&other, 1);
        assert!(decode_packed_with(&sharer_of_sharer, |_| Some(&shared[..])).is_err());
        let short = encode_packed(&owner[..199]);
        assert!(matches!(
            decode_packed_with(&shared, |_| Some(&short[..])),
            Err(Error::Malformed { .. })
        ));
    }

    fn any_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-1_000_000i64..1_000_000, 0u32..6).prop_map(|(m, k)| m as f64 / 10f64.powi(k as i32)),
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::from_bits(STALE_NAN_BITS)),
            Just(-0.0),
        ]
    }

    proptest! {
        #[test]
        fn prop_packed_round_trip_bit_exact(
            start in any::<i64>(),
            deltas in proptest::collection::vec(1i64..100_000, 0..600),
            values in proptest::collection::vec(any_value(), 600),
        ) {
            let mut t = start;
            let mut samples = vec![Sample::new(t, values[0])];
            for (i, d) in deltas.iter().enumerate() {
                t = match t.checked_add(*d) {
                    Some(t) => t,
                    None => break,
                };
                samples.push(Sample::new(t, values[i + 1]));
            }
            let bytes = encode_packed(&samples);
            let got = decode_packed(&bytes).unwrap();
            prop_assert_eq!(bits(&got), bits(&samples));
            prop_assert_eq!(usize::from(super::super::num_samples(&bytes).unwrap()), samples.len());
        }

        /// Columns of any width (every frame width 0..=64 comes up: the
        /// one-load path up to 57 bits, the zero-padded tail and the
        /// 128-bit path above) and any length read back as written.
        #[test]
        fn prop_column_round_trip_every_width(
            width in 0u32..=64,
            raw in proptest::collection::vec(any::<u64>(), 0..400),
            base in any::<i64>(),
        ) {
            let mask = u64::MAX.checked_shr(64 - width).unwrap_or(0);
            let values: Vec<i64> = raw
                .iter()
                .map(|r| base.wrapping_add((r & mask) as i64))
                .collect();
            let mut bytes = Vec::new();
            put_column(&mut bytes, &values);
            let mut d = Decbuf::new(&bytes);
            let mut got = Vec::new();
            read_column(&mut d, values.len(), |v| got.push(v)).unwrap();
            prop_assert!(d.is_empty());
            prop_assert_eq!(got, values);
        }

        #[test]
        fn prop_packed_decode_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let _ = decode_packed(&bytes);
        }

        #[test]
        fn prop_packed_decode_mutated_chunks_never_panics(
            n in 1usize..300,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            let samples: Vec<Sample> = scrape_times(n, 5)
                .into_iter()
                .enumerate()
                .map(|(i, t)| Sample::new(t, (i * 7 % 13) as f64 / 4.0))
                .collect();
            let mut bytes = encode_packed(&samples);
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            let _ = decode_packed(&bytes);
        }
    }
}
