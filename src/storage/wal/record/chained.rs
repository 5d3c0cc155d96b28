//! The chained samples record (type 13, WAL format version 7): float
//! samples each stored against the previous sample of the same series *in
//! the same segment*: a timestamp equal to the record's previous one in
//! one bit, else its delta-of-delta; a value as the delta of its decimal
//! mantissa (as packed block chunks store them), else Gorilla XOR. A
//! scrape-regular counter costs a couple of bytes instead of the 8-byte
//! value and two varints of the samples record (`docs/format/wal.md`,
//! "Chained samples record").
//!
//! Owns the layout and [`SampleChain`], the per-segment state both sides
//! keep: the writer encodes a segment's samples records in the order it
//! writes them, and replay decodes them in the same order, each side
//! starting from an empty chain at the segment's first record. Knows
//! nothing of files: starting a new chain at a segment boundary is the
//! writer's and the reader's job.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use crate::model::STALE_NAN_BITS;
use crate::storage::chunk::bstream::{BitReader, BitWriter};
use crate::storage::chunk::{
    decimal_at, from_decimal, read_dod, read_xor, to_decimal, write_dod, write_xor, XorFault,
    NO_WINDOW,
};
use crate::storage::encoding::{put_uvarint, put_varint, Decbuf};
use crate::storage::SeriesRef;

use super::{RecordError, RefSample};

mod runs;

pub use runs::RECORD_RUN_SAMPLES;

/// Type byte of a chained samples record (`payload[0]`, format version 7).
/// Replay still decodes it; writers write run-chained samples records
/// ([`RECORD_RUN_SAMPLES`], version 8) instead.
pub const RECORD_CHAINED_SAMPLES: u8 = 13;

/// Bucket widths of the zig-zag ref delta after `1` (`0` alone is +1),
/// selected by a unary prefix: `0` 8 bits, `10` 20, `110` 36, `111` 64.
const REF_BUCKETS: [u32; 4] = [8, 20, 36, 64];

/// Bucket widths of the zig-zag mantissa of a decimal value at a new
/// scale (after `110` and the scale): `0` 4 bits, `10` 8, `110` 13,
/// `1110` 20, `11110` 32, `11111` 64.
const DELTA_BUCKETS: [u32; 6] = [4, 8, 13, 20, 32, 64];

/// `scale` value meaning "the previous value has no decimal mantissa".
const NO_SCALE: u8 = 0xff;

/// The most bytes a chained samples record's header takes: type byte and
/// three 10-byte varints.
const MAX_HEADER_LEN: usize = 31;
/// The most bytes a sample takes in it, rounded up: ref `1 111` + 64,
/// time `1 1111` + 64, value `1110 11` + 5 + 6 + 64 (219 bits; the other
/// value forms are shorter).
const MAX_SAMPLE_LEN: usize = 28;

/// Whether `n` samples chained stay within `max` bytes whatever they
/// hold; writers write a samples record (type 2) instead when not.
pub(crate) fn chained_fits(n: usize, max: usize) -> bool {
    n.checked_mul(MAX_SAMPLE_LEN)
        .and_then(|b| b.checked_add(MAX_HEADER_LEN))
        .is_some_and(|b| b <= max)
}

/// Fewest bits a sample takes: `0` ref, `0` time, `0` value.
const MIN_SAMPLE_BITS: usize = 3;

/// What the chain remembers of a series: its previous sample in the
/// segment, the decimal scale its value has there, and its XOR window.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    t: i64,
    v: u64,
    /// The previous timestamp delta, truncated to 32 bits (both sides
    /// truncate alike, so any delta still round-trips; only the bucket a
    /// huge delta-of-delta lands in changes).
    dt: i32,
    /// The scale `k` at which `v` is `m / 10^k` exactly
    /// ([`decimal_at`]), or [`NO_SCALE`].
    scale: u8,
    /// Bits of the previous mantissa delta's window (0: none yet).
    width: u8,
    leading: u8,
    trailing: u8,
}

impl Link {
    /// The reference of a series not yet in the chain: time `t0` (the
    /// record's first timestamp), no delta, value 0.0 (decimal at scale
    /// 0), no XOR window.
    fn start(t0: i64, leading: u8) -> Self {
        Self {
            t: t0,
            v: 0,
            dt: 0,
            scale: 0,
            width: 0,
            leading,
            trailing: 0,
        }
    }
}

/// The writer's side of one series' chain, kept by whoever owns the series
/// (the head keeps one in each series, under its lock, so the writer needs
/// no map): the link and the segment it belongs to. A link of another
/// segment (or none yet) is the start of a chain. 32 bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainLink {
    /// Tag of the segment the link was written in; 0 for none (`link` is
    /// then meaningless).
    segment: u32,
    link: Link,
}

/// One series' in-order float samples for a chained samples record, with
/// its [`ChainLink`].
#[derive(Debug)]
pub struct SeriesSamples<'a> {
    /// The series' link, advanced past `samples` when they are encoded.
    pub link: &'a mut ChainLink,
    /// Samples of one series (one ref), oldest first.
    pub samples: &'a [RefSample],
}

/// A tag for a segment about to be written: unique in the process (a
/// counter shared by every writer), never 0. [`encode_linked`] starts a
/// series' chain again when its link carries another tag, so a link from an
/// earlier segment, another WAL or a batch that was never written is never
/// taken for one the decoder has seen.
pub fn next_segment_tag() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    loop {
        let tag = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if tag != 0 {
            return tag;
        }
    }
}

/// Appends one run-chained samples record payload ([`RECORD_RUN_SAMPLES`])
/// for `series` (in ref order, for runs of consecutive refs; each entry one
/// series' samples) to `buf`, as a record of the segment tagged `tag`
/// ([`next_segment_tag`]): a link of another tag starts the series' chain
/// again. Advances the links.
pub fn encode_linked(series: &mut [SeriesSamples<'_>], tag: u32, buf: &mut Vec<u8>) {
    let n: usize = series.iter().map(|s| s.samples.len()).sum();
    let first = series.iter().find_map(|s| s.samples.first()).copied();
    let runs = runs::plan_runs(
        series
            .iter()
            .flat_map(|s| s.samples.iter().map(|x| (x.series_ref.0, x.t))),
    );
    let Some((first, mut w, mut cursor)) = runs::RunCursor::start(buf, n, first, runs) else {
        return;
    };
    for s in series.iter_mut() {
        if s.link.segment != tag {
            s.link.segment = tag;
            s.link.link = Link::start(first.t, NO_WINDOW);
        }
        for sample in s.samples {
            cursor.encode(&mut w, &mut s.link.link, sample);
        }
    }
    *buf = w.into_bytes();
}

#[cfg(test)]
/// Writes a chained samples record's header for `n` samples starting with
/// `first` into `buf` and hands back the bit writer (owning `buf`'s bytes)
/// and cursor to encode them with; `None` (the header is then complete)
/// when there are none.
fn start_record(
    buf: &mut Vec<u8>,
    n: usize,
    first: Option<RefSample>,
) -> Option<(RefSample, BitWriter, Cursor)> {
    buf.push(RECORD_CHAINED_SAMPLES);
    put_uvarint(buf, n as u64);
    let first = first?;
    put_uvarint(buf, first.series_ref.0);
    put_varint(buf, first.t);
    let cursor = Cursor {
        prev_ref: first.series_ref.0,
        prev_t: first.t,
    };
    Some((first, BitWriter::from_vec(std::mem::take(buf)), cursor))
}

/// The record-wide state of encoding: the previous sample's ref and time.
#[cfg(test)]
struct Cursor {
    prev_ref: u64,
    prev_t: i64,
}

#[cfg(test)]
impl Cursor {
    fn encode(&mut self, w: &mut BitWriter, link: &mut Link, s: &RefSample) {
        let r = s.series_ref.0;
        let dref = r.wrapping_sub(self.prev_ref) as i64;
        if dref == 1 {
            w.write_bit(false);
        } else {
            w.write_bit(true);
            write_bucketed(w, zigzag(dref), &REF_BUCKETS);
        }
        self.prev_ref = r;
        let dt = s.t.wrapping_sub(link.t);
        if s.t == self.prev_t {
            w.write_bit(false);
        } else {
            w.write_bit(true);
            write_dod(w, dt.wrapping_sub(i64::from(link.dt)));
        }
        self.prev_t = s.t;
        encode_value(w, link, s.v);
        link.t = s.t;
        link.dt = dt as i32;
    }
}

/// A fast hash for refs: the head hands them out in sequence, so they are
/// not chosen by clients (no flooding) and a multiply spreads them.
#[derive(Default, Clone, Copy)]
struct RefHasher(u64);

impl std::hash::Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing; the high bits (which hashbrown uses for its
        // control bytes) depend on every bit of `n`.
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The per-segment state of chained samples records as a map: each
/// series' previous sample. Replay keeps one per segment read; checkpoints
/// one per checkpoint segment written. (The WAL writer keeps the links in
/// the series instead: [`ChainLink`], [`encode_linked`].)
#[derive(Default)]
pub struct SampleChain {
    links: HashMap<u64, Link, BuildHasherDefault<RefHasher>>,
}

impl SampleChain {
    /// An empty chain: what both sides hold at a segment's start.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every series: a new segment starts.
    pub fn clear(&mut self) {
        self.links.clear();
    }

    /// Series the chain holds a previous sample of.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Reports whether the chain holds no series.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Appends one run-chained samples record payload
    /// ([`RECORD_RUN_SAMPLES`]) for `samples` to `buf` and advances the
    /// chain past them. No samples is just the type and the zero count.
    pub fn encode(&mut self, samples: &[RefSample], buf: &mut Vec<u8>) {
        let runs = runs::plan_runs(samples.iter().map(|s| (s.series_ref.0, s.t)));
        let Some((first, mut w, mut cursor)) =
            runs::RunCursor::start(buf, samples.len(), samples.first().copied(), runs)
        else {
            return;
        };
        for s in samples {
            let link = self
                .links
                .entry(s.series_ref.0)
                .or_insert_with(|| Link::start(first.t, NO_WINDOW));
            cursor.encode(&mut w, link, s);
        }
        *buf = w.into_bytes();
    }

    /// Decodes a run-chained samples record's body (the payload after its
    /// type byte) and advances the chain past it.
    ///
    /// # Errors
    /// [`RecordError::Decode`] for a truncated header;
    /// [`RecordError::BadChainedSamples`] for a count the body cannot hold,
    /// a run past the count, a stream that ends early, a bad scale, window
    /// or XOR window, or bytes left over.
    pub fn decode_runs(&mut self, body: &[u8]) -> Result<Vec<RefSample>, RecordError> {
        runs::decode(self, body)
    }

    /// Appends one chained samples record payload (type 13, what version 7
    /// wrote) for `samples`: `type=13 | n <uvarint> | ref0 <uvarint> | t0
    /// <varint> | bits`. Tests only: they keep its decoder honest.
    #[cfg(test)]
    pub(crate) fn encode_v7(&mut self, samples: &[RefSample], buf: &mut Vec<u8>) {
        let Some((first, mut w, mut cursor)) =
            start_record(buf, samples.len(), samples.first().copied())
        else {
            return;
        };
        for s in samples {
            let link = self
                .links
                .entry(s.series_ref.0)
                .or_insert_with(|| Link::start(first.t, NO_WINDOW));
            cursor.encode(&mut w, link, s);
        }
        *buf = w.into_bytes();
    }

    /// Decodes a chained samples record's body (the payload after its type
    /// byte) and advances the chain past it.
    ///
    /// # Errors
    /// [`RecordError::Decode`] for a truncated header;
    /// [`RecordError::BadChainedSamples`] for a count the body cannot hold,
    /// a stream that ends early, a bad scale or XOR window, or bytes left
    /// over.
    pub fn decode(&mut self, body: &[u8]) -> Result<Vec<RefSample>, RecordError> {
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
        let fits = (body.len() - start).saturating_mul(8) / MIN_SAMPLE_BITS;
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= fits)
            .ok_or_else(|| bad(start * 8, "more samples than the record can hold"))?;
        let mut r = BitReader::at_byte(start);
        let mut out = Vec::with_capacity(n);
        let (mut prev_ref, mut prev_t) = (ref0, t0);
        for _ in 0..n {
            let at = r.bit_offset();
            let fault = |what| bad(at, what);
            let eof = || fault("record ends inside a sample");
            let next = r.read_bit(body).ok_or_else(eof)?;
            let dref = if next {
                unzigzag(read_bucketed(&mut r, body, &REF_BUCKETS).ok_or_else(eof)?)
            } else {
                1
            };
            let series_ref = prev_ref.wrapping_add(dref as u64);
            prev_ref = series_ref;
            let link = self
                .links
                .entry(series_ref)
                .or_insert_with(|| Link::start(t0, 0));
            let t = if r.read_bit(body).ok_or_else(eof)? {
                let dod = read_dod(&mut r, body).ok_or_else(eof)?;
                link.t.wrapping_add(i64::from(link.dt)).wrapping_add(dod)
            } else {
                prev_t
            };
            prev_t = t;
            let bits = decode_value(&mut r, body, link).map_err(fault)?;
            link.dt = t.wrapping_sub(link.t) as i32;
            link.t = t;
            out.push(RefSample {
                series_ref: SeriesRef(series_ref),
                t,
                v: f64::from_bits(bits),
            });
        }
        if r.bit_offset().div_ceil(8) != body.len() {
            return Err(bad(r.bit_offset(), "bytes after the last sample"));
        }
        Ok(out)
    }
}

#[cfg(test)]
/// Writes `v` against `link` and moves `link` to it (type 13):
/// - `0`: the same bits;
/// - `10` + the zig-zag mantissa delta in the link's window
///   ([`write_windowed`]): decimal at the link's scale;
/// - `110` + scale (5 bits) + bucketed zig-zag mantissa: decimal at
///   another scale (the smallest), which becomes the link's;
/// - `1110` + XOR with the previous bits (Gorilla, the link's window): no
///   decimal mantissa (NaN, infinities, binary fractions); the link then
///   has no scale, and the series stays with XOR in this segment (the
///   encoder's choice: a decoder follows whichever prefix it reads);
/// - `1111`: the staleness marker. The link keeps the value before it, so
///   a series that comes back after a marker costs what it would have.
fn encode_value(w: &mut BitWriter, link: &mut Link, v: f64) {
    let bits = v.to_bits();
    if bits == link.v {
        w.write_bit(false);
        return;
    }
    if bits == STALE_NAN_BITS {
        w.write_bits(0b1111, 4);
        return;
    }
    // A series whose value had no decimal mantissa stays with XOR (a
    // binary fraction would pay the whole scale search at every sample).
    if link.scale != NO_SCALE {
        let k = usize::from(link.scale);
        let prev = decimal_at(f64::from_bits(link.v), k);
        if let (Some(m), Some(prev)) = (decimal_at(v, k), prev) {
            w.write_bits(0b10, 2);
            write_windowed(w, zigzag(m.wrapping_sub(prev)), &mut link.width);
            link.v = bits;
            return;
        }
        if let Some((m, k)) = to_decimal(v) {
            w.write_bits(0b110, 3);
            w.write_bits(k as u64, 5);
            write_bucketed(w, zigzag(m), &DELTA_BUCKETS);
            link.v = bits;
            link.scale = k as u8;
            return;
        }
    }
    w.write_bits(0b1110, 4);
    write_xor(w, bits ^ link.v, &mut link.leading, &mut link.trailing);
    link.v = bits;
    link.scale = NO_SCALE;
}

/// Reads what [`encode_value`] wrote and moves `link` to it; returns the
/// value's bits.
fn decode_value(r: &mut BitReader, body: &[u8], link: &mut Link) -> Result<u64, &'static str> {
    const EOF: &str = "record ends inside a sample";
    match r.read_unary(body, 4).ok_or(EOF)? {
        0 => {}
        1 => {
            let k = usize::from(link.scale);
            let prev = decimal_at(f64::from_bits(link.v), k)
                .ok_or("a mantissa delta for a value with no decimal scale")?;
            let d = unzigzag(read_windowed(r, body, &mut link.width).ok_or(EOF)?);
            link.v = decoded(prev.wrapping_add(d), k)?;
        }
        2 => decode_new_scale(r, body, link)?,
        3 => decode_xor(r, body, link)?,
        _ => return Ok(STALE_NAN_BITS),
    }
    Ok(link.v)
}

/// Reads a value at a new decimal scale (`scale <5b> | mantissa`,
/// bucketed) into `link`: the same code in both record versions.
fn decode_new_scale(r: &mut BitReader, body: &[u8], link: &mut Link) -> Result<(), &'static str> {
    let k = r.read_bits(body, 5).ok_or(SAMPLE_EOF)? as usize;
    let m = unzigzag(read_bucketed(r, body, &DELTA_BUCKETS).ok_or(SAMPLE_EOF)?);
    link.v = decoded(m, k)?;
    link.scale = k as u8;
    Ok(())
}

/// Reads a Gorilla XOR value into `link`: the same code in both record
/// versions.
fn decode_xor(r: &mut BitReader, body: &[u8], link: &mut Link) -> Result<(), &'static str> {
    let xor = read_xor(r, body, &mut link.leading, &mut link.trailing).map_err(|f| match f {
        XorFault::Eof => SAMPLE_EOF,
        XorFault::BadWindow { .. } => "XOR window wider than 64 bits",
    })?;
    link.v ^= xor;
    link.scale = NO_SCALE;
    Ok(())
}

/// The error of a record that ends inside a sample.
const SAMPLE_EOF: &str = "record ends inside a sample";

/// The bits of `m / 10^k`, refusing what an encoder never writes: a
/// scale past 18 or a mantissa that does not give back itself at that
/// scale (so the next delta starts from the same mantissa on both sides).
fn decoded(m: i64, k: usize) -> Result<u64, &'static str> {
    if k > 18 {
        return Err("decimal scale past 18");
    }
    let v = from_decimal(m, k);
    if decimal_at(v, k) != Some(m) {
        return Err("mantissa outside the exact range of its scale");
    }
    Ok(v.to_bits())
}

fn bad(bit: usize, what: &'static str) -> RecordError {
    RecordError::BadChainedSamples { bit, what }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Writes `z` in the first of `widths` it fits, after a unary prefix
/// naming it (`i` ones and a zero; the last width, 64, has no zero).
fn write_bucketed(w: &mut BitWriter, z: u64, widths: &[u32]) {
    let last = widths.len() - 1;
    for (i, &nbits) in widths.iter().enumerate() {
        if i == last || z >> nbits == 0 {
            let ones = i as u32;
            if ones > 0 {
                w.write_bits(u64::MAX, ones);
            }
            if i < last {
                w.write_bit(false);
            }
            w.write_bits(z, nbits);
            return;
        }
    }
}

#[cfg(test)]
/// Writes `z` in the series' delta window: `0` and `width` bits when it
/// fits and the window is not 4 or more bits wider than `z` needs, else
/// `1`, the new width (6 bits, 64 as 0) and `z` in it, which becomes the
/// window. Steady counters pay one bit over their deltas' width.
fn write_windowed(w: &mut BitWriter, z: u64, width: &mut u8) {
    let needed = (64 - z.leading_zeros()).max(1) as u8;
    if *width != 0 && needed <= *width && needed + 4 > *width {
        w.write_bit(false);
        w.write_bits(z, u32::from(*width));
        return;
    }
    *width = needed;
    w.write_bit(true);
    w.write_bits(u64::from(needed) & 0x3f, 6);
    w.write_bits(z, u32::from(needed));
}

/// Reads what [`write_windowed`] wrote.
fn read_windowed(r: &mut BitReader, bytes: &[u8], width: &mut u8) -> Option<u64> {
    if r.read_bit(bytes)? {
        *width = match r.read_bits(bytes, 6)? as u8 {
            0 => 64,
            n => n,
        };
    } else if *width == 0 || *width > 64 {
        // None yet, or a run-chained record's unsigned window (a segment
        // this build writes never mixes the two record types).
        return None;
    }
    r.read_bits(bytes, u32::from(*width))
}

/// Reads what [`write_bucketed`] wrote.
fn read_bucketed(r: &mut BitReader, bytes: &[u8], widths: &[u32]) -> Option<u64> {
    let i = r.read_unary(bytes, widths.len() as u32 - 1)?;
    r.read_bits(bytes, widths[i as usize])
}

#[cfg(test)]
mod census;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(r: u64, t: i64, bits: u64) -> RefSample {
        RefSample {
            series_ref: SeriesRef(r),
            t,
            v: f64::from_bits(bits),
        }
    }

    fn same(a: &[RefSample], b: &[RefSample]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.series_ref == y.series_ref && x.t == y.t && x.v.to_bits() == y.v.to_bits()
            })
    }

    fn arb_bits() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(STALE_NAN_BITS),
            Just((-0.0f64).to_bits()),
            Just(f64::NAN.to_bits()),
            (0u32..1000).prop_map(|i| f64::from(i).to_bits()),
            any::<u64>(),
        ]
    }

    /// Records of samples from a small pool of series (so chains form),
    /// with any refs, timestamps and value bits.
    fn arb_records() -> impl Strategy<Value = Vec<Vec<RefSample>>> {
        let refs = prop_oneof![0u64..8, Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 40)];
        let times = prop_oneof![
            (0i64..20).prop_map(|k| 1_700_000_000_000 + k * 15_000),
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
        ];
        let s = (refs, times, arb_bits()).prop_map(|(r, t, b)| sample(r, t, b));
        proptest::collection::vec(proptest::collection::vec(s, 0..12), 0..8)
    }

    proptest! {
        /// Whatever the refs, timestamps and values, a segment's records
        /// decode, in order, to exactly the samples encoded, and a chain
        /// cleared on both sides starts a segment afresh.
        #[test]
        fn prop_records_round_trip_in_order(segments in proptest::collection::vec(arb_records(), 1..3)) {
            // Both layouts: run-chained (type 14, written) and chained
            // (type 13, still replayed).
            for runs in [true, false] {
                let mut enc = SampleChain::new();
                for records in &segments {
                    enc.clear();
                    let mut dec = SampleChain::new();
                    for rec in records {
                        let mut buf = Vec::new();
                        let got = if runs {
                            enc.encode(rec, &mut buf);
                            prop_assert_eq!(buf[0], RECORD_RUN_SAMPLES);
                            dec.decode_runs(&buf[1..]).unwrap()
                        } else {
                            enc.encode_v7(rec, &mut buf);
                            prop_assert_eq!(buf[0], RECORD_CHAINED_SAMPLES);
                            dec.decode(&buf[1..]).unwrap()
                        };
                        prop_assert!(same(&got, rec), "{:?} != {:?}", got, rec);
                    }
                    prop_assert_eq!(enc.len(), dec.len());
                }
            }
        }

        /// Runs of consecutive refs at one time, with counters, gauges
        /// that turn negative and values that leave their window, round
        /// trip through run-chained records.
        #[test]
        fn prop_runs_round_trip(
            steps in proptest::collection::vec((0u64..4, -3i64..40, 0i64..3), 1..40),
            series in 1u64..6,
        ) {
            let mut enc = SampleChain::new();
            let mut dec = SampleChain::new();
            let mut vals = vec![0i64; series as usize];
            for (k, (gap, delta, jitter)) in steps.iter().enumerate() {
                let t = 1_700_000_000_000 + k as i64 * 15_000 + jitter;
                let rec: Vec<_> = (0..series)
                    .filter(|r| (r + k as u64) % 4 != *gap || series == 1)
                    .map(|r| {
                        vals[r as usize] += delta * (r as i64 + 1);
                        sample(100 + r, t, (vals[r as usize] as f64 / 100.0).to_bits())
                    })
                    .collect();
                let mut buf = Vec::new();
                enc.encode(&rec, &mut buf);
                let got = dec.decode_runs(&buf[1..]).unwrap();
                prop_assert!(same(&got, &rec), "{:?} != {:?}", got, rec);
            }
        }

        /// Arbitrary bytes never panic the decoder, whatever the chain holds.
        #[test]
        fn prop_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut dec = SampleChain::new();
            let _ = dec.decode(&body);
            let _ = dec.decode_runs(&body);
            let _ = dec.decode(&body);
            let _ = dec.decode_runs(&body);
        }
    }

    /// A scrape-regular counter of many series costs a few bits a sample
    /// once the chain knows the series (the samples record takes 10-12
    /// bytes).
    #[test]
    fn regular_scrapes_cost_bits_not_bytes() {
        let mut enc = SampleChain::new();
        let mut total = 0;
        let scrapes = 20;
        let series = 500u64;
        for k in 0..scrapes {
            let rec: Vec<_> = (0..series)
                .map(|i| {
                    let v = (i * 1000 + k * (i % 7)) as f64;
                    sample(1000 + i, 1_700_000_000_000 + k as i64 * 15_000, v.to_bits())
                })
                .collect();
            let mut buf = Vec::new();
            enc.encode(&rec, &mut buf);
            if k >= 2 {
                total += buf.len();
            }
        }
        let per_sample = total as f64 / ((scrapes - 2) * series) as f64;
        assert!(per_sample < 2.0, "{per_sample} bytes per sample");
    }

    /// A scrape whose series got refs interleaved with another request's
    /// (every other ref, a few skipped) is written as one gapped run, not
    /// a run header every sample or two, and still round-trips.
    #[test]
    fn interleaved_refs_take_one_gapped_run() {
        let refs: Vec<u64> = (0..400u64).filter(|r| r % 2 == 0 || r % 7 == 0).collect();
        let plan = runs::plan_runs(refs.iter().map(|&r| (r, 5)));
        assert_eq!(plan.len(), 1, "{plan:?}");
        let (mut enc, mut dec, mut v7) =
            (SampleChain::new(), SampleChain::new(), SampleChain::new());
        let (mut size, mut size_v7) = (0, 0);
        for k in 0..10i64 {
            let rec: Vec<_> = refs
                .iter()
                .map(|&r| {
                    sample(
                        r,
                        1_000 + k * 15_000,
                        (((r as i64 + 1) * k) as f64).to_bits(),
                    )
                })
                .collect();
            let (mut buf, mut old) = (Vec::new(), Vec::new());
            enc.encode(&rec, &mut buf);
            v7.encode_v7(&rec, &mut old);
            assert!(same(&dec.decode_runs(&buf[1..]).unwrap(), &rec));
            size += buf.len();
            size_v7 += old.len();
        }
        assert!(size < size_v7, "type 14 {size} bytes, type 13 {size_v7}");
    }

    #[test]
    fn a_count_the_body_cannot_hold_is_refused_before_allocating() {
        let mut buf = vec![RECORD_CHAINED_SAMPLES];
        put_uvarint(&mut buf, u64::MAX);
        put_uvarint(&mut buf, 1);
        put_varint(&mut buf, 0);
        buf.push(0);
        let err = SampleChain::new().decode(&buf[1..]).unwrap_err();
        assert!(
            matches!(err, RecordError::BadChainedSamples { what, .. } if what.contains("more samples")),
            "{err:?}"
        );
        let err = SampleChain::new().decode_runs(&buf[1..]).unwrap_err();
        assert!(
            matches!(err, RecordError::BadChainedSamples { what, .. } if what.contains("more samples")),
            "{err:?}"
        );
        // A truncated record and trailing bytes are damage too, in both
        // layouts.
        let one = [sample(5, 10, 1.5f64.to_bits())];
        let (mut v7, mut v8) = (Vec::new(), Vec::new());
        SampleChain::new().encode_v7(&one, &mut v7);
        SampleChain::new().encode(&one, &mut v8);
        type Decode = fn(&mut SampleChain, &[u8]) -> Result<Vec<RefSample>, RecordError>;
        let decoders: [(Vec<u8>, Decode); 2] =
            [(v7, SampleChain::decode), (v8, SampleChain::decode_runs)];
        for (ok, decode) in decoders {
            assert!(decode(&mut SampleChain::new(), &ok[1..ok.len() - 1]).is_err());
            let mut long = ok.clone();
            long.push(0);
            assert!(decode(&mut SampleChain::new(), &long[1..]).is_err());
            assert_eq!(decode(&mut SampleChain::new(), &ok[1..]).unwrap().len(), 1);
        }
    }
}
