//! A borrowing reader for the common shape of a remote write 1.0 request:
//! series with labels and float samples only, which is what Prometheus
//! sends in every data request. Labels stay slices of the request bytes and
//! samples land in one vector, instead of prost's owned message with a
//! `Vec` and two `Bytes` per label of every series.
//!
//! Anything else (metadata, exemplars, native histograms, an unknown field,
//! a wire type that does not fit, malformed bytes) is `None`: the caller
//! decodes the request with prost instead, which gives the full message or
//! the exact protobuf error. So this reader never decides what a request
//! means, only whether the fast path can read it. It does count what it
//! reads against the whole-request limits ([`crate::ingest::limits`]), so a
//! body of millions of empty samples stops at the limit instead of filling
//! memory. Knows nothing of HTTP or storage.

use std::ops::Range;

use crate::ingest::error::Error;
use crate::ingest::limits::{Counter, WriteLimits};
use crate::model::Sample;
use crate::storage::encoding::split_uvarint;

/// One series of a [`PlainV1`]: ranges into its label and sample vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainSeries {
    /// Into [`PlainV1::labels`].
    pub labels: Range<usize>,
    /// Into [`PlainV1::samples`].
    pub samples: Range<usize>,
}

/// A 1.0 request of series with labels and float samples only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlainV1<'a> {
    /// The series, in request order.
    pub series: Vec<PlainSeries>,
    /// Every series' `(name, value)` pairs, in request order.
    pub labels: Vec<(&'a [u8], &'a [u8])>,
    /// Every series' samples, in request order.
    pub samples: Vec<Sample>,
}

/// Reads `buf` as a plain 1.0 request, or `None` (see the module doc).
/// No limits: see [`read_plain_v1_limited`].
pub fn read_plain_v1(buf: &[u8]) -> Option<PlainV1<'_>> {
    read_plain_v1_limited(buf, &WriteLimits::UNLIMITED).unwrap_or(None)
}

/// [`read_plain_v1`] counting series, label pairs and samples against the
/// whole-request `limits` as it reads (as [`crate::ingest::limits::scan`]
/// does for prost), so it never holds more than the limits allow.
///
/// # Errors
/// [`Error::TooMany`] at the first count over its limit.
pub fn read_plain_v1_limited<'a>(
    buf: &'a [u8],
    limits: &WriteLimits,
) -> Result<Option<PlainV1<'a>>, Error> {
    // Room for a typical request up front (grown push by push, the label
    // pairs were copied about twice over: 1.8% of the server's CPU under
    // `tidemark-loadgen`, whose pairs take 23 bytes each). The guesses (a
    // pair per 20 bytes, a series and a sample per 128) come to about twice
    // the body at most, within the request limits, and pages never written
    // cost no memory.
    let mut out = PlainV1 {
        series: Vec::with_capacity((buf.len() / 128).min(limits.max_series_per_request)),
        labels: Vec::with_capacity((buf.len() / 20).min(limits.max_labels_per_request)),
        samples: Vec::with_capacity((buf.len() / 128).min(limits.max_samples_per_request)),
    };
    let mut counter = Counter::new(limits);
    let mut r = Reader(buf);
    while !r.0.is_empty() {
        let step = match r.tag() {
            Some((1, 2)) => match r.bytes() {
                Some(ts) => read_series(ts, &mut out, &mut counter),
                None => Err(Step::NotPlain),
            },
            _ => Err(Step::NotPlain),
        };
        match step {
            Ok(()) => {}
            Err(Step::NotPlain) => return Ok(None),
            Err(Step::Limit(e)) => return Err(e),
        }
    }
    Ok(Some(out))
}

/// Why reading stopped early.
enum Step {
    /// Not the plain shape (or malformed): prost decides.
    NotPlain,
    /// A whole-request limit.
    Limit(Error),
}

impl From<Error> for Step {
    fn from(e: Error) -> Self {
        Step::Limit(e)
    }
}

fn read_series<'a>(
    buf: &'a [u8],
    out: &mut PlainV1<'a>,
    counter: &mut Counter<'_>,
) -> Result<(), Step> {
    counter.series()?;
    let (labels_start, samples_start) = (out.labels.len(), out.samples.len());
    let mut r = Reader(buf);
    while !r.0.is_empty() {
        match r.tag().ok_or(Step::NotPlain)? {
            (1, 2) => {
                let mut l = Reader(r.bytes().ok_or(Step::NotPlain)?);
                let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
                while !l.0.is_empty() {
                    match l.tag().ok_or(Step::NotPlain)? {
                        (1, 2) => name = l.bytes().ok_or(Step::NotPlain)?,
                        (2, 2) => value = l.bytes().ok_or(Step::NotPlain)?,
                        _ => return Err(Step::NotPlain),
                    }
                }
                counter.labels(1)?;
                out.labels.push((name, value));
            }
            (2, 2) => {
                let mut s = Reader(r.bytes().ok_or(Step::NotPlain)?);
                let (mut v, mut t) = (0f64, 0i64);
                while !s.0.is_empty() {
                    match s.tag().ok_or(Step::NotPlain)? {
                        (1, 1) => v = f64::from_bits(s.fixed64().ok_or(Step::NotPlain)?),
                        (2, 0) => t = s.varint().ok_or(Step::NotPlain)? as i64,
                        _ => return Err(Step::NotPlain),
                    }
                }
                counter.samples(1)?;
                out.samples.push(Sample::new(t, v));
            }
            _ => return Err(Step::NotPlain),
        }
    }
    out.series.push(PlainSeries {
        labels: labels_start..out.labels.len(),
        samples: samples_start..out.samples.len(),
    });
    Ok(())
}

/// Protobuf primitives over a shrinking slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Tags and lengths are nearly always one byte: read those here, the
    /// rest by [`split_uvarint`] (which the profile showed as a call of
    /// its own, 3.7% of the server's CPU under `tidemark-loadgen`).
    #[inline]
    fn varint(&mut self) -> Option<u64> {
        if let Some((&b, rest)) = self.0.split_first() {
            if b < 0x80 {
                self.0 = rest;
                return Some(u64::from(b));
            }
        }
        let (v, rest) = split_uvarint(self.0)?;
        self.0 = rest;
        Some(v)
    }

    /// Field number and wire type; field 0 is invalid.
    fn tag(&mut self) -> Option<(u64, u8)> {
        let tag = self.varint()?;
        let field = tag >> 3;
        (field != 0 && field <= u64::from(u32::MAX >> 3)).then_some((field, (tag & 7) as u8))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(b)
    }

    fn fixed64(&mut self) -> Option<u64> {
        let (b, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*b))
    }
}
