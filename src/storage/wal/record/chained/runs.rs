//! The run-chained samples record (type 14, WAL format version 8): the
//! chained samples record's idea (each sample against its series' previous
//! sample in the same segment) with two changes measured on
//! node_exporter-shaped traffic (`docs/format/wal.md`, "Run-chained
//! samples record"):
//!
//! - samples come in **runs** of consecutive refs at one timestamp (a
//!   scrape's series, in ref order), so the ref and the time are written
//!   once a run (ref, time, length) instead of a bit or more each a sample
//!   (type 13 spent 0.26 bytes a sample on them);
//! - the value codes are one prefix tree, the common "delta in the
//!   series' window" taking 2 bits of prefix instead of 3, and a window
//!   may be **unsigned** (a counter's deltas never go below zero), one bit
//!   narrower than the zig-zag one.
//!
//! Owns this layout only; the links, the chain and the shared bit codes
//! are the parent module's.

use super::*;

/// Type byte of a run-chained samples record (`payload[0]`, format
/// version 8).
pub const RECORD_RUN_SAMPLES: u8 = 14;

/// Bucket widths of a run's length minus one: `0` 4 bits, `10` 8, `110`
/// 12, `111` 64.
const RUN_BUCKETS: [u32; 4] = [4, 8, 12, 64];

/// Flag in [`Link::width`]: the window holds plain (unsigned) deltas, not
/// zig-zag ones.
const UNSIGNED: u8 = 0x80;

/// The lengths of the runs `samples` (ref, time) fall into: each run
/// consecutive refs (wrapping) at one timestamp.
pub(super) fn run_lengths(samples: impl Iterator<Item = (u64, i64)>) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev: Option<(u64, i64)> = None;
    for (r, t) in samples {
        match (prev, out.last_mut()) {
            (Some((pr, pt)), Some(len)) if pr.wrapping_add(1) == r && pt == t => *len += 1,
            _ => out.push(1),
        }
        prev = Some((r, t));
    }
    out
}

/// The record-wide state of encoding: the runs still to write, the samples
/// left in the current one, and the previous run's last ref and time.
pub(super) struct RunCursor {
    runs: std::vec::IntoIter<usize>,
    left: usize,
    prev_ref: u64,
    prev_t: i64,
}

impl RunCursor {
    /// Writes the header of a run-chained record of `n` samples starting
    /// with `first`, with runs `runs` ([`run_lengths`]), and hands back
    /// the bit writer (owning `buf`'s bytes) and the cursor; `None` (the
    /// header is then complete) when there are none.
    pub(super) fn start(
        buf: &mut Vec<u8>,
        n: usize,
        first: Option<RefSample>,
        runs: Vec<usize>,
    ) -> Option<(RefSample, BitWriter, Self)> {
        buf.push(RECORD_RUN_SAMPLES);
        put_uvarint(buf, n as u64);
        let first = first?;
        put_uvarint(buf, first.series_ref.0);
        put_varint(buf, first.t);
        let cursor = Self {
            runs: runs.into_iter(),
            left: 0,
            prev_ref: first.series_ref.0.wrapping_sub(1),
            prev_t: first.t,
        };
        Some((first, BitWriter::from_vec(std::mem::take(buf)), cursor))
    }

    /// Writes `s` against `link` (its series' link), after a run header
    /// when `s` starts a run.
    pub(super) fn encode(&mut self, w: &mut BitWriter, link: &mut Link, s: &RefSample) {
        let r = s.series_ref.0;
        if self.left == 0 {
            // Runs cover the samples exactly (same iterator); 1 keeps a
            // caller's mismatch from underflowing below.
            let len = self.runs.next().unwrap_or(1).max(1);
            self.left = len;
            let dref = r.wrapping_sub(self.prev_ref.wrapping_add(1)) as i64;
            if dref == 0 {
                w.write_bit(false);
            } else {
                w.write_bit(true);
                write_bucketed(w, zigzag(dref), &REF_BUCKETS);
            }
            if s.t == self.prev_t {
                w.write_bit(false);
            } else {
                w.write_bit(true);
                write_dod(w, s.t.wrapping_sub(link.t).wrapping_sub(i64::from(link.dt)));
            }
            write_bucketed(w, (len - 1) as u64, &RUN_BUCKETS);
        }
        self.left -= 1;
        self.prev_ref = r;
        self.prev_t = s.t;
        let dt = s.t.wrapping_sub(link.t);
        encode_value(w, link, s.v);
        link.t = s.t;
        link.dt = dt as i32;
    }
}

/// Decodes a run-chained samples record's body (the payload after its
/// type byte) and advances `chain` past it.
pub(super) fn decode(chain: &mut SampleChain, body: &[u8]) -> Result<Vec<RefSample>, RecordError> {
    let mut d = Decbuf::new(body);
    let n = d.uvarint()?;
    if n == 0 {
        return if d.is_empty() {
            Ok(Vec::new())
        } else {
            Err(bad(d.position() * 8, "bytes after an empty record"))
        };
    }
    let ref0 = d.uvarint()?;
    let t0 = d.varint()?;
    let start = d.position();
    // A sample takes a bit at least (its value's `0`).
    let fits = (body.len() - start).saturating_mul(8);
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= fits)
        .ok_or_else(|| bad(start * 8, "more samples than the record can hold"))?;
    let mut r = BitReader::at_byte(start);
    let mut out = Vec::with_capacity(n);
    let (mut prev_ref, mut t) = (ref0.wrapping_sub(1), t0);
    while out.len() < n {
        let at = r.bit_offset();
        let eof = || bad(at, "record ends inside a run");
        let dref = if r.read_bit(body).ok_or_else(eof)? {
            unzigzag(read_bucketed(&mut r, body, &REF_BUCKETS).ok_or_else(eof)?)
        } else {
            0
        };
        let run_ref = prev_ref.wrapping_add(1).wrapping_add(dref as u64);
        if r.read_bit(body).ok_or_else(eof)? {
            let dod = read_dod(&mut r, body).ok_or_else(eof)?;
            let link = chain
                .links
                .entry(run_ref)
                .or_insert_with(|| Link::start(t0, 0));
            t = link.t.wrapping_add(i64::from(link.dt)).wrapping_add(dod);
        }
        let len = read_bucketed(&mut r, body, &RUN_BUCKETS)
            .ok_or_else(eof)?
            .saturating_add(1);
        if len > (n - out.len()) as u64 {
            return Err(bad(at, "a run longer than the samples left"));
        }
        for i in 0..len {
            let series_ref = run_ref.wrapping_add(i);
            let at = r.bit_offset();
            let link = chain
                .links
                .entry(series_ref)
                .or_insert_with(|| Link::start(t0, 0));
            let bits = decode_value(&mut r, body, link).map_err(|what| bad(at, what))?;
            link.dt = t.wrapping_sub(link.t) as i32;
            link.t = t;
            out.push(RefSample {
                series_ref: SeriesRef(series_ref),
                t,
                v: f64::from_bits(bits),
            });
        }
        prev_ref = run_ref.wrapping_add(len - 1);
    }
    if r.bit_offset().div_ceil(8) != body.len() {
        return Err(bad(r.bit_offset(), "bytes after the last sample"));
    }
    Ok(out)
}

/// Writes `v` against `link` and moves `link` to it:
/// - `0`: the same bits;
/// - `10` + the mantissa delta in the link's window (width bits, plain
///   or zig-zag as the window says): decimal at the link's scale;
/// - `110` + unsigned <1b> + width <6b, 64 as 0> + the delta in it: the
///   same, in a new window, which becomes the link's;
/// - `1110` + scale <5b> + bucketed zig-zag mantissa: decimal at another
///   scale (the smallest), which becomes the link's;
/// - `11110` + XOR with the previous bits (Gorilla, the link's window):
///   no decimal mantissa; the link then has no scale;
/// - `11111`: the staleness marker; the link keeps the value before it.
fn encode_value(w: &mut BitWriter, link: &mut Link, v: f64) {
    let bits = v.to_bits();
    if bits == link.v {
        w.write_bit(false);
        return;
    }
    if bits == STALE_NAN_BITS {
        w.write_bits(0b11111, 5);
        return;
    }
    if link.scale != NO_SCALE {
        let k = usize::from(link.scale);
        let prev = decimal_at(f64::from_bits(link.v), k);
        if let (Some(m), Some(prev)) = (decimal_at(v, k), prev) {
            write_delta(w, m.wrapping_sub(prev), &mut link.width);
            link.v = bits;
            return;
        }
        if let Some((m, k)) = to_decimal(v) {
            w.write_bits(0b1110, 4);
            w.write_bits(k as u64, 5);
            write_bucketed(w, zigzag(m), &DELTA_BUCKETS);
            link.v = bits;
            link.scale = k as u8;
            return;
        }
    }
    w.write_bits(0b11110, 5);
    write_xor(w, bits ^ link.v, &mut link.leading, &mut link.trailing);
    link.v = bits;
    link.scale = NO_SCALE;
}

/// Writes a mantissa delta: `10` + the delta in the window when it fits
/// and the window is not 4 or more bits wider than it needs, else `110`
/// and a new window. A new window is unsigned when the delta is not
/// negative and the series' previous window (if any) was unsigned too, so
/// a gauge that went down once stays zig-zag instead of flipping.
fn write_delta(w: &mut BitWriter, d: i64, window: &mut u8) {
    let width = *window & !UNSIGNED;
    let unsigned = *window & UNSIGNED != 0;
    let z = if unsigned {
        u64::try_from(d).ok()
    } else {
        Some(zigzag(d))
    };
    if let Some(z) = z.filter(|_| width != 0) {
        let needed = bit_len(z);
        if needed <= width && needed + 4 > width {
            w.write_bits(0b10, 2);
            w.write_bits(z, u32::from(width));
            return;
        }
    }
    let unsigned = d >= 0 && (width == 0 || unsigned);
    let z = if unsigned { d as u64 } else { zigzag(d) };
    let needed = bit_len(z);
    *window = needed | if unsigned { UNSIGNED } else { 0 };
    w.write_bits(0b110, 3);
    w.write_bit(unsigned);
    w.write_bits(u64::from(needed) & 0x3f, 6);
    w.write_bits(z, u32::from(needed));
}

/// Bits `z` needs, at least 1.
fn bit_len(z: u64) -> u8 {
    (64 - z.leading_zeros()).max(1) as u8
}

/// Reads what [`encode_value`] wrote and moves `link` to it; returns the
/// value's bits.
fn decode_value(r: &mut BitReader, body: &[u8], link: &mut Link) -> Result<u64, &'static str> {
    const EOF: &str = "record ends inside a sample";
    match r.read_unary(body, 5).ok_or(EOF)? {
        0 => {}
        form @ (1 | 2) => {
            let k = usize::from(link.scale);
            let prev = decimal_at(f64::from_bits(link.v), k)
                .ok_or("a mantissa delta for a value with no decimal scale")?;
            if form == 2 {
                let unsigned = r.read_bit(body).ok_or(EOF)?;
                let width = match r.read_bits(body, 6).ok_or(EOF)? as u8 {
                    0 => 64,
                    n => n,
                };
                link.width = width | if unsigned { UNSIGNED } else { 0 };
            }
            let width = link.width & !UNSIGNED;
            if width == 0 {
                return Err("a delta in a window the series does not have");
            }
            let z = r.read_bits(body, u32::from(width)).ok_or(EOF)?;
            let d = if link.width & UNSIGNED != 0 {
                z as i64
            } else {
                unzigzag(z)
            };
            link.v = decoded(prev.wrapping_add(d), k)?;
        }
        3 => {
            let k = r.read_bits(body, 5).ok_or(EOF)? as usize;
            let m = unzigzag(read_bucketed(r, body, &DELTA_BUCKETS).ok_or(EOF)?);
            link.v = decoded(m, k)?;
            link.scale = k as u8;
        }
        4 => {
            let xor =
                read_xor(r, body, &mut link.leading, &mut link.trailing).map_err(|f| match f {
                    XorFault::Eof => EOF,
                    XorFault::BadWindow { .. } => "XOR window wider than 64 bits",
                })?;
            link.v ^= xor;
            link.scale = NO_SCALE;
        }
        _ => return Ok(STALE_NAN_BITS),
    }
    Ok(link.v)
}
