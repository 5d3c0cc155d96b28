//! The run-chained samples record (type 14, WAL format version 8): the
//! chained samples record's idea (each sample against its series' previous
//! sample in the same segment) with two changes measured on
//! node_exporter-shaped traffic (`docs/format/wal.md`, "Run-chained
//! samples record"):
//!
//! - samples come in **runs** at one timestamp (a scrape's series, in ref
//!   order), so the ref and the time are written once a run (ref, time,
//!   length) instead of a bit or more each a sample (type 13 spent 0.26
//!   bytes a sample on them): dense runs of consecutive refs, or a gapped
//!   run with a short ref step a sample when the scrape's refs were
//!   interleaved with another request's;
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
pub(super) const RUN_BUCKETS: [u32; 4] = [4, 8, 12, 64];

/// A window this many bits wider than a delta needs is replaced by a
/// narrower one. Type 13 used 4; on the compare workload (node_exporter,
/// 200 scrapes) 7 writes 1.4 % fewer bytes: a gauge's occasional tiny move
/// no longer shrinks its window only for the next move to widen it again
/// (samples records of one run's WAL re-encoded: 4: 12.01 MB, 5: 11.91,
/// 6: 11.87, 7: 11.85, 8: 11.85, 10: 12.00, 14: 12.07).
const SHRINK_BITS: u8 = 7;

/// Flag in [`Link::width`]: the window holds plain (unsigned) deltas, not
/// zig-zag ones.
const UNSIGNED: u8 = 0x80;

/// Bucket widths of a gapped run's ref step minus one (after `1`; `0`
/// alone is the previous step in the run again, +1 at its start): `0` 2
/// bits, `10` 6, `110` 20, `111` 64 (wrapping, so steps back and repeats
/// take the last bucket).
pub(super) const GAP_BUCKETS: [u32; 4] = [2, 6, 20, 64];

/// One run: how many samples, and whether their refs are consecutive
/// (dense) or each carries its step from the previous one (gapped).
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    len: usize,
    gapped: bool,
}

/// Bits [`write_bucketed`] takes for `z`.
fn bucketed_bits(z: u64, widths: &[u32]) -> usize {
    let last = widths.len() - 1;
    for (i, &nbits) in widths.iter().enumerate() {
        if i == last || z >> nbits == 0 {
            return i + usize::from(i < last) + nbits as usize;
        }
    }
    unreachable!("the last width takes any value")
}

/// The runs `samples` (ref, time; the record's order) are written in.
/// Samples at one timestamp (a scrape's) are one group; a group is
/// written as dense runs of consecutive refs, or as one gapped run when
/// that takes fewer bits: a scrape whose series got refs interleaved with
/// another request's (series created concurrently) has many short dense
/// stretches, each of which would cost a run header.
pub(super) fn plan_runs(samples: impl Iterator<Item = (u64, i64)>) -> Vec<Run> {
    let samples: Vec<(u64, i64)> = samples.collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut prev_ref = samples.first().map_or(0, |s| s.0.wrapping_sub(1));
    while i < samples.len() {
        let t = samples[i].1;
        let end = samples[i..]
            .iter()
            .position(|s| s.1 != t)
            .map_or(samples.len(), |n| i + n);
        let group = &samples[i..end];
        // Dense: a header (ref step, time `0`, length, kind bit) for each
        // stretch after the first; the first's header is common to both.
        let mut dense = Vec::new();
        let mut dense_bits = 0;
        let mut gapped_bits = bucketed_bits((group.len() - 1) as u64, &RUN_BUCKETS);
        let mut last = prev_ref;
        let mut last_step = 1;
        for (k, &(r, _)) in group.iter().enumerate() {
            let step = r.wrapping_sub(last);
            if k > 0 {
                gapped_bits += if step == last_step {
                    1
                } else {
                    1 + bucketed_bits(step.wrapping_sub(1), &GAP_BUCKETS)
                };
                last_step = step;
            }
            if k > 0 && step == 1 {
                if let Some(len) = dense.last_mut() {
                    *len += 1;
                }
            } else {
                if k > 0 {
                    let dref = step.wrapping_sub(1) as i64;
                    dense_bits += 1 + bucketed_bits(zigzag(dref), &REF_BUCKETS) + 2;
                }
                dense.push(1);
            }
            last = r;
        }
        dense_bits += dense
            .iter()
            .map(|&len| bucketed_bits((len - 1) as u64, &RUN_BUCKETS))
            .sum::<usize>();
        if gapped_bits < dense_bits {
            out.push(Run {
                len: group.len(),
                gapped: true,
            });
        } else {
            out.extend(dense.into_iter().map(|len| Run { len, gapped: false }));
        }
        prev_ref = last;
        i = end;
    }
    out
}

/// The record-wide state of encoding: the runs still to write, the samples
/// left in the current one and whether it is gapped, and the previous
/// sample's ref and time.
pub(super) struct RunCursor {
    runs: std::vec::IntoIter<Run>,
    left: usize,
    gapped: bool,
    /// The previous ref step in a gapped run.
    step: u64,
    prev_ref: u64,
    prev_t: i64,
}

impl RunCursor {
    /// Writes the header of a run-chained record of `n` samples starting
    /// with `first`, with runs `runs` ([`plan_runs`] of the same samples),
    /// and hands back the bit writer (owning `buf`'s bytes) and the cursor;
    /// `None` (the header is then complete) when there are none.
    pub(super) fn start(
        buf: &mut Vec<u8>,
        n: usize,
        first: Option<RefSample>,
        runs: Vec<Run>,
    ) -> Option<(RefSample, BitWriter, Self)> {
        buf.push(RECORD_RUN_SAMPLES);
        put_uvarint(buf, n as u64);
        let first = first?;
        put_uvarint(buf, first.series_ref.0);
        put_varint(buf, first.t);
        let cursor = Self {
            runs: runs.into_iter(),
            left: 0,
            gapped: false,
            step: 1,
            prev_ref: first.series_ref.0.wrapping_sub(1),
            prev_t: first.t,
        };
        Some((first, BitWriter::from_vec(std::mem::take(buf)), cursor))
    }

    /// Writes `s` against `link` (its series' link), after a run header
    /// when `s` starts a run, or after its ref step in a gapped run.
    pub(super) fn encode(&mut self, w: &mut BitWriter, link: &mut Link, s: &RefSample) {
        let r = s.series_ref.0;
        if self.left == 0 {
            // Runs cover the samples exactly (planned from the same
            // samples); a one-sample run keeps a mismatch decodable.
            let run = self.runs.next().unwrap_or(Run {
                len: 1,
                gapped: false,
            });
            let len = run.len.max(1);
            self.left = len;
            self.gapped = run.gapped;
            self.step = 1;
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
            w.write_bit(run.gapped);
        } else if self.gapped {
            let step = r.wrapping_sub(self.prev_ref);
            if step == self.step {
                w.write_bit(false);
            } else {
                w.write_bit(true);
                write_bucketed(w, step.wrapping_sub(1), &GAP_BUCKETS);
                self.step = step;
            }
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
        let gapped = r.read_bit(body).ok_or_else(eof)?;
        let mut series_ref = run_ref;
        let mut step = 1u64;
        for i in 0..len {
            let at = r.bit_offset();
            if i > 0 {
                if gapped && r.read_bit(body).ok_or_else(eof)? {
                    step = read_bucketed(&mut r, body, &GAP_BUCKETS)
                        .ok_or_else(eof)?
                        .wrapping_add(1);
                }
                series_ref = series_ref.wrapping_add(step);
            }
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
        prev_ref = series_ref;
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
/// and the window is not [`SHRINK_BITS`] or more bits wider than it
/// needs, else `110` and a new window. A new window is unsigned when the delta is not
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
        if needed <= width && needed + SHRINK_BITS > width {
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
pub(super) fn decode_value(
    r: &mut BitReader,
    body: &[u8],
    link: &mut Link,
) -> Result<u64, &'static str> {
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
        3 => super::decode_new_scale(r, body, link)?,
        4 => super::decode_xor(r, body, link)?,
        _ => return Ok(STALE_NAN_BITS),
    }
    Ok(link.v)
}
