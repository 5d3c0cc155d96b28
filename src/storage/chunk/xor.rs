//! Gorilla XOR chunk: [`XorAppender`] encodes samples, [`XorIter`] decodes
//! them. Bit-compatible with Prometheus' `XORChunk`
//! (<https://github.com/prometheus/prometheus/blob/v3.1.0/tsdb/chunkenc/xor.go>),
//! so block chunks written by either can be read by the other.
//! Layout and bucket table: `docs/format/chunks.md`.
//!
//! Timestamp deltas and delta-of-deltas use wrapping `i64` arithmetic on
//! both sides: any strictly increasing `i64` sequence round-trips exactly,
//! even when a difference does not fit in an `i64`.

use super::bstream::{BitReader, BitWriter};
use super::{Error, HEADER_LEN};
use crate::model::Sample;
use crate::storage::encoding::{put_uvarint, put_varint, Decbuf, DecodeError};

/// `leading` value meaning "no XOR window chosen yet".
pub(crate) const NO_WINDOW: u8 = 0xff;

/// Initial allocation; Prometheus uses the same, and a 120-sample counter
/// chunk fits (measured ~1.2-1.4 bytes/sample).
const INITIAL_CAPACITY: usize = 128;

/// Delta-of-delta buckets after the unary prefix `0`, `10`, `110`, `1110`:
/// payload width in bits. Prefix `1111` is followed by all 64 bits.
const DOD_BUCKET_BITS: [u32; 3] = [14, 17, 20];

/// Reports whether `dod` fits the `nbits` bucket. The range is Prometheus'
/// `bitRange` (`-(2^(n-1) - 1) ..= 2^(n-1)`), not two's complement, so our
/// bytes equal Prometheus' at the bucket edges too.
#[inline]
fn fits_bucket(dod: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= dod && dod <= half
}

/// Inverse of the bucket encoding: `bits` is the `nbits`-bit payload.
#[inline]
fn bucket_value(bits: u64, nbits: u32) -> i64 {
    let v = bits as i64;
    if bits > 1 << (nbits - 1) {
        v - (1 << nbits)
    } else {
        v
    }
}

/// Writes a timestamp delta-of-delta: `0` for none, else a bucket prefix
/// (`10`, `110`, `1110`) and 14, 17 or 20 bits, or `1111` and all 64.
/// Shared by the XOR chunk and the WAL's chained samples record.
#[inline]
pub(crate) fn write_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
        return;
    }
    // Prefix `10`, `110`, `1110` for the buckets, in one write each.
    let mut prefix = 0b10;
    for (i, &nbits) in DOD_BUCKET_BITS.iter().enumerate() {
        if fits_bucket(dod, nbits) {
            w.write_bits(prefix, i as u32 + 2);
            w.write_bits(dod as u64, nbits);
            return;
        }
        prefix = (prefix | 1) << 1;
    }
    w.write_bits(0b1111, 4);
    w.write_bits(dod as u64, 64);
}

/// Reads what [`write_dod`] wrote; `None` at the end of the stream.
#[inline]
pub(crate) fn read_dod(r: &mut BitReader, bytes: &[u8]) -> Option<i64> {
    Some(match r.read_unary(bytes, 4)? {
        0 => 0,
        4 => r.read_bits(bytes, 64)? as i64,
        b => {
            let nbits = DOD_BUCKET_BITS[b as usize - 1];
            bucket_value(r.read_bits(bytes, nbits)?, nbits)
        }
    })
}

/// Writes a value's XOR with the previous value (Gorilla): `0` for none,
/// `10` and the bits of the previous window (`leading`, `trailing`) when
/// they fit it, else `11`, 5 bits leading zeros, 6 bits significant count
/// (64 stored as 0) and the bits, which become the window. `leading`
/// starts at [`NO_WINDOW`]. Shared by the XOR chunk and the WAL's chained
/// samples record.
#[inline]
pub(crate) fn write_xor(w: &mut BitWriter, xor: u64, leading: &mut u8, trailing: &mut u8) {
    if xor == 0 {
        w.write_bit(false);
        return;
    }
    // Leading zeros are stored in 5 bits; a longer run just widens the
    // significant part.
    let lead = (xor.leading_zeros() as u8).min(31);
    let trail = xor.trailing_zeros() as u8;
    if *leading != NO_WINDOW && lead >= *leading && trail >= *trailing {
        // Fits the previous window: `10` + the window's bits.
        let sig = 64 - u32::from(*leading) - u32::from(*trailing);
        w.write_bits(0b10, 2);
        w.write_bits(xor >> *trailing, sig);
        return;
    }
    *leading = lead;
    *trailing = trail;
    let sig = 64 - u32::from(lead) - u32::from(trail);
    // `11` + 5 bits leading + 6 bits significant count (64 stored as 0).
    w.write_bits(0b11, 2);
    w.write_bits(u64::from(lead), 5);
    w.write_bits(u64::from(sig) & 0x3f, 6);
    w.write_bits(xor >> trail, sig);
}

/// Reads what [`write_xor`] wrote: the XOR with the previous value. The
/// reader's window starts at `leading = trailing = 0` (all 64 bits), as
/// Prometheus's, so a `10` before any `11` is read the same way.
#[inline]
pub(crate) fn read_xor(
    r: &mut BitReader,
    bytes: &[u8],
    leading: &mut u8,
    trailing: &mut u8,
) -> Result<u64, XorFault> {
    match r.read_unary(bytes, 2).ok_or(XorFault::Eof)? {
        0 => return Ok(0),
        1 => {}
        _ => {
            let header = r.read_bits(bytes, 11).ok_or(XorFault::Eof)?;
            let lead = (header >> 6) as u8;
            let sig = match (header & 0x3f) as u8 {
                0 => 64,
                s => s,
            };
            if u32::from(lead) + u32::from(sig) > 64 {
                return Err(XorFault::BadWindow { leading: lead, sig });
            }
            *leading = lead;
            *trailing = 64 - lead - sig;
        }
    }
    let sig = 64 - u32::from(*leading) - u32::from(*trailing);
    let bits = r.read_bits(bytes, sig).ok_or(XorFault::Eof)?;
    Ok(bits << *trailing)
}

/// Why [`read_xor`] failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum XorFault {
    /// The stream ended inside the value.
    Eof,
    /// A window of more than 64 bits.
    BadWindow {
        /// Leading zeros read.
        leading: u8,
        /// Significant bits read.
        sig: u8,
    },
}

/// Encodes samples into one XOR chunk.
///
/// Holds at most [`u16::MAX`] samples (the header is 16 bits); the head cuts
/// chunks at [`super::SAMPLES_PER_CHUNK`], far below that.
#[derive(Debug, Clone)]
pub struct XorAppender {
    w: BitWriter,
    num: u16,
    /// The last sample's timestamp (the first's is read back from the
    /// bytes: a word less in every head series).
    t: i64,
    t_delta: i64,
    v_bits: u64,
    /// Leading zeros of the current XOR window, or [`NO_WINDOW`].
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl XorAppender {
    /// An empty chunk (just the zero sample count).
    pub fn new() -> Self {
        let mut w = BitWriter::with_capacity(INITIAL_CAPACITY);
        w.bytes_mut().extend_from_slice(&[0; HEADER_LEN]);
        Self {
            w,
            num: 0,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends a sample.
    ///
    /// The caller guarantees `t` is strictly greater than the previous `t`
    /// (the head rejects out-of-order samples before they get here) and that
    /// the chunk holds fewer than [`u16::MAX`] samples.
    ///
    /// # Panics
    /// In debug builds, if either guarantee is broken.
    pub fn append(&mut self, t: i64, v: f64) {
        debug_assert!(self.num < u16::MAX, "XOR chunk is full");
        debug_assert!(
            self.num == 0 || t > self.t,
            "timestamps must increase: {} after {}",
            t,
            self.t
        );
        let v_bits = v.to_bits();
        match self.num {
            0 => {
                let bytes = self.w.bytes_mut();
                put_varint(bytes, t);
                bytes.extend_from_slice(&v_bits.to_be_bytes());
            }
            1 => {
                debug_assert!(self.w.is_aligned());
                let delta = t.wrapping_sub(self.t);
                put_uvarint(self.w.bytes_mut(), delta as u64);
                self.write_value(v_bits);
                self.t_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.t);
                self.write_dod(delta.wrapping_sub(self.t_delta));
                self.write_value(v_bits);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v_bits = v_bits;
        self.num = self.num.wrapping_add(1);
        self.w.bytes_mut()[..HEADER_LEN].copy_from_slice(&self.num.to_be_bytes());
    }

    fn write_dod(&mut self, dod: i64) {
        write_dod(&mut self.w, dod);
    }

    fn write_value(&mut self, v_bits: u64) {
        write_xor(
            &mut self.w,
            v_bits ^ self.v_bits,
            &mut self.leading,
            &mut self.trailing,
        );
    }

    /// Number of samples appended so far.
    pub fn num_samples(&self) -> usize {
        usize::from(self.num)
    }

    /// The chunk so far: always a complete, decodable chunk whose header
    /// count matches the samples appended.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// Finishes the chunk: exactly its bytes, no spare capacity.
    pub fn finish(self) -> Box<[u8]> {
        self.w.into_bytes().into_boxed_slice()
    }

    /// Timestamp of the first sample, if any: the varint after the
    /// header, as `append` wrote it.
    pub fn first_t(&self) -> Option<i64> {
        if self.num == 0 {
            return None;
        }
        let written = self.w.bytes().get(HEADER_LEN..)?;
        Decbuf::new(written).varint().ok()
    }

    /// Timestamp of the last sample, if any.
    pub fn last_t(&self) -> Option<i64> {
        (self.num > 0).then_some(self.t)
    }

    /// Value of the last sample, if any (bit-exact, so the head can detect
    /// duplicate samples by bits).
    pub fn last_v(&self) -> Option<f64> {
        (self.num > 0).then(|| f64::from_bits(self.v_bits))
    }
}

/// Iterates the samples of one XOR chunk, in timestamp order.
///
/// Generic over the byte owner so the head can iterate an owned
/// `Arc<[u8]>` snapshot (`XorIter<Arc<[u8]>>`) and blocks a borrowed
/// `&[u8]`. Iteration ends early at the first decoding error, which
/// [`XorIter::err`] then reports; it never panics on arbitrary bytes.
#[derive(Debug, Clone)]
pub struct XorIter<B: AsRef<[u8]>> {
    bytes: B,
    /// Samples in the header; 0 once iteration has ended.
    total: u16,
    /// Samples returned so far.
    read: u16,
    r: BitReader,
    t: i64,
    t_delta: i64,
    v_bits: u64,
    leading: u8,
    trailing: u8,
    err: Option<Error>,
}

impl<B: AsRef<[u8]>> XorIter<B> {
    /// An iterator over the chunk in `bytes`. A header that cannot be read
    /// yields no samples and sets [`XorIter::err`].
    pub fn new(bytes: B) -> Self {
        let (total, err) = match super::num_samples(bytes.as_ref()) {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e)),
        };
        Self {
            bytes,
            total,
            read: 0,
            r: BitReader::at_byte(HEADER_LEN),
            t: 0,
            t_delta: 0,
            v_bits: 0,
            leading: 0,
            trailing: 0,
            err,
        }
    }

    /// The decoding error that ended iteration early, if any.
    pub fn err(&self) -> Option<&Error> {
        self.err.as_ref()
    }

    /// Ends iteration with `fault`, which hit the sample starting at bit
    /// `start`.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, fault: Fault, start: usize) -> Option<Sample> {
        let sample = usize::from(self.read);
        self.err = Some(match fault {
            Fault::Eof => Error::Truncated {
                sample,
                bit_offset: start,
            },
            Fault::VarintOverflow => Error::VarintOverflow {
                sample,
                byte_offset: start / 8,
            },
            Fault::NotIncreasing { t } => Error::NotIncreasing {
                sample,
                bit_offset: start,
                prev_t: self.t,
                t,
            },
            Fault::BadXorWindow { leading, sig } => Error::BadXorWindow {
                sample,
                bit_offset: start,
                leading,
                sig,
            },
        });
        self.total = 0;
        None
    }

    /// Sample 0: zig-zag varint `t`, then the raw 64 value bits.
    fn first(&mut self) -> Result<(), Fault> {
        let start = self.r.bit_offset() / 8;
        let mut d = Decbuf::new(self.bytes.as_ref().get(start..).unwrap_or(&[]));
        self.t = d.varint()?;
        self.v_bits = d.be_u64()?;
        self.r = BitReader::at_byte(start + d.position());
        Ok(())
    }

    /// Sample 1: uvarint delta (byte-aligned: sample 0 ends on a byte),
    /// then the value XOR.
    fn second(&mut self) -> Result<(), Fault> {
        let start = self.r.bit_offset() / 8;
        let mut d = Decbuf::new(self.bytes.as_ref().get(start..).unwrap_or(&[]));
        let delta = d.uvarint()? as i64;
        self.r = BitReader::at_byte(start + d.position());
        self.set_t(delta)?;
        self.read_value()
    }

    /// Samples 2..: delta-of-delta timestamp, then the value XOR.
    #[inline]
    fn next_dod(&mut self) -> Result<(), Fault> {
        let dod = read_dod(&mut self.r, self.bytes.as_ref()).ok_or(Fault::Eof)?;
        self.set_t(self.t_delta.wrapping_add(dod))?;
        self.read_value()
    }

    /// Advances `t` by `delta`, rejecting a non-increasing result.
    #[inline]
    fn set_t(&mut self, delta: i64) -> Result<(), Fault> {
        let t = self.t.wrapping_add(delta);
        if t <= self.t {
            return Err(Fault::NotIncreasing { t });
        }
        self.t = t;
        self.t_delta = delta;
        Ok(())
    }

    #[inline]
    fn read_value(&mut self) -> Result<(), Fault> {
        let xor = read_xor(
            &mut self.r,
            self.bytes.as_ref(),
            &mut self.leading,
            &mut self.trailing,
        )
        .map_err(|f| match f {
            XorFault::Eof => Fault::Eof,
            XorFault::BadWindow { leading, sig } => Fault::BadXorWindow { leading, sig },
        })?;
        self.v_bits ^= xor;
        Ok(())
    }
}

/// A decoding failure before the sample index and offset are attached;
/// small so the per-sample path returns it in registers.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Eof,
    VarintOverflow,
    NotIncreasing { t: i64 },
    BadXorWindow { leading: u8, sig: u8 },
}

impl From<DecodeError> for Fault {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::UnexpectedEof { .. } => Self::Eof,
            DecodeError::VarintOverflow { .. } => Self::VarintOverflow,
        }
    }
}

impl<B: AsRef<[u8]>> Iterator for XorIter<B> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if self.read >= self.total {
            return None;
        }
        let start = self.r.bit_offset();
        let res = match self.read {
            0 => self.first(),
            1 => self.second(),
            _ => self.next_dod(),
        };
        if let Err(fault) = res {
            return self.fail(fault, start);
        }
        self.read += 1;
        Some(Sample::new(self.t, f64::from_bits(self.v_bits)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.total - self.read.min(self.total))))
    }
}

#[cfg(test)]
mod tests;
