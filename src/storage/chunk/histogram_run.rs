//! Runs of histogram samples to and from chunks, for blocks: decoding a
//! histogram chunk of either encoding into samples that keep what its
//! header says (so re-encoding keeps explicit counter resets and gauges),
//! and encoding a run of samples into histogram chunks, cut as the chunk
//! appenders decide (layout change, reset, gauge switch, after a stale
//! marker) and at [`BLOCK_HISTOGRAM_CHUNK_SAMPLES`] samples or
//! [`BLOCK_HISTOGRAM_CHUNK_BYTES`] bytes.
//!
//! Blocks store fewer, larger histogram chunks than the head (whose chunks
//! Prometheus sizes at ~1 KiB): the layout and the raw first sample are
//! written once per chunk, so larger chunks take fewer bytes per sample.
//! The bytes of each chunk are still Prometheus's encodings 2 and 3.
//! Format: `docs/format/chunks-histogram.md`.

use super::{
    CounterResetHeader, Encoding, Error, FloatHistogramAppender, FloatHistogramIter,
    HistogramAppender, HistogramIter, Result,
};
use crate::model::{CounterResetHint, HistogramValue};

/// Most samples of a histogram chunk written to a block.
pub const BLOCK_HISTOGRAM_CHUNK_SAMPLES: usize = 1024;
/// A block histogram chunk is cut once it reaches this many bytes.
pub const BLOCK_HISTOGRAM_CHUNK_BYTES: usize = 16 << 10;

/// The hint the first sample of a chunk carries when re-encoded: what the
/// chunk's header says (Prometheus's readers say "unknown" for it; a
/// writer merging chunks must not lose an explicit reset).
fn first_hint(header: CounterResetHeader) -> CounterResetHint {
    match header {
        CounterResetHeader::Unknown => CounterResetHint::Unknown,
        CounterResetHeader::CounterReset => CounterResetHint::CounterReset,
        CounterResetHeader::NotCounterReset => CounterResetHint::NotCounterReset,
        CounterResetHeader::Gauge => CounterResetHint::Gauge,
    }
}

/// Decodes a histogram chunk into `(t, value)` samples in its own kind
/// (integer or float), the first sample's hint taken from the header.
///
/// # Errors
/// What the decoder reports; [`Error::NotHistogramSamples`] for a
/// float-sample chunk.
pub fn decode_histogram_values(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<Vec<(i64, HistogramValue)>> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Histogram => {
            let mut it = HistogramIter::new(bytes);
            let hint = first_hint(it.header());
            for (t, mut h) in it.by_ref() {
                if out.is_empty() && !h.is_stale() {
                    h.counter_reset_hint = hint;
                }
                out.push((t, HistogramValue::Int(h)));
            }
            if let Some(e) = it.err() {
                return Err(e.clone());
            }
        }
        Encoding::FloatHistogram => {
            let mut it = FloatHistogramIter::new(bytes);
            let hint = first_hint(it.header());
            for (t, mut h) in it.by_ref() {
                if out.is_empty() && !h.is_stale() {
                    h.counter_reset_hint = hint;
                }
                out.push((t, HistogramValue::Float(h)));
            }
            if let Some(e) = it.err() {
                return Err(e.clone());
            }
        }
        Encoding::Xor | Encoding::Packed => {
            return Err(Error::NotHistogramSamples {
                encoding: encoding.to_byte(),
            })
        }
    }
    Ok(out)
}

/// One encoded chunk of a run: encoding, first and last timestamp, bytes.
pub type EncodedChunk = (Encoding, i64, i64, Box<[u8]>);

enum Open {
    Int(HistogramAppender),
    Float(FloatHistogramAppender),
}

impl Open {
    fn new(h: &HistogramValue, header: CounterResetHeader) -> Self {
        match h {
            HistogramValue::Int(_) => Open::Int(HistogramAppender::new(header)),
            HistogramValue::Float(_) => Open::Float(FloatHistogramAppender::new(header)),
        }
    }

    fn append(
        &mut self,
        t: i64,
        h: &HistogramValue,
    ) -> std::result::Result<(), CounterResetHeader> {
        match (self, h) {
            (Open::Int(a), HistogramValue::Int(h)) => a.append(t, h),
            (Open::Float(a), HistogramValue::Float(h)) => a.append(t, h),
            _ => Err(CounterResetHeader::Unknown),
        }
    }

    fn full(&self) -> bool {
        let (n, bytes) = match self {
            Open::Int(a) => (a.num_samples(), a.bytes().len()),
            Open::Float(a) => (a.num_samples(), a.bytes().len()),
        };
        n >= BLOCK_HISTOGRAM_CHUNK_SAMPLES || bytes >= BLOCK_HISTOGRAM_CHUNK_BYTES
    }

    /// The header of the next chunk when this one is cut for size.
    fn header_for_next(&self, h: &HistogramValue) -> CounterResetHeader {
        match (self, h) {
            (Open::Int(a), HistogramValue::Int(h)) => a.header_for_next(h),
            (Open::Float(a), HistogramValue::Float(h)) => a.header_for_next(h),
            _ => CounterResetHeader::Unknown,
        }
    }

    fn finish(self) -> Option<EncodedChunk> {
        let (encoding, first, last, bytes) = match self {
            Open::Int(a) => (Encoding::Histogram, a.first_t(), a.last_t(), a.finish()),
            Open::Float(a) => (
                Encoding::FloatHistogram,
                a.first_t(),
                a.last_t(),
                a.finish(),
            ),
        };
        Some((encoding, first?, last?, bytes))
    }
}

/// Encodes histogram samples (strictly increasing timestamps, valid
/// histograms) into chunks, in order.
pub fn encode_histogram_run(samples: &[(i64, HistogramValue)]) -> Vec<EncodedChunk> {
    let mut out = Vec::new();
    let mut open: Option<Open> = None;
    for (t, h) in samples {
        let header = match open.take() {
            None => CounterResetHeader::Unknown,
            Some(mut o) => {
                let same_kind = matches!(
                    (&o, h),
                    (Open::Int(_), HistogramValue::Int(_))
                        | (Open::Float(_), HistogramValue::Float(_))
                );
                if !same_kind {
                    out.extend(o.finish());
                    CounterResetHeader::Unknown
                } else if o.full() {
                    let header = o.header_for_next(h);
                    out.extend(o.finish());
                    header
                } else {
                    match o.append(*t, h) {
                        Ok(()) => {
                            open = Some(o);
                            continue;
                        }
                        Err(header) => {
                            out.extend(o.finish());
                            header
                        }
                    }
                }
            }
        };
        let mut o = Open::new(h, header);
        let appended = o.append(*t, h);
        debug_assert!(appended.is_ok(), "an empty chunk takes any sample");
        open = Some(o);
    }
    if let Some(o) = open {
        out.extend(o.finish());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Histogram, Span};

    fn h(count: u64, hint: CounterResetHint) -> HistogramValue {
        HistogramValue::Int(Histogram {
            counter_reset_hint: hint,
            count,
            sum: count as f64,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![count as i64],
            ..Default::default()
        })
    }

    #[test]
    fn run_round_trip_keeps_explicit_resets_and_cuts_by_size() {
        let mut samples: Vec<(i64, HistogramValue)> = (0..3000)
            .map(|i| (i, h(i as u64 + 1, CounterResetHint::Unknown)))
            .collect();
        // An explicit reset hint although the count grows.
        samples[1500].1 = h(5000, CounterResetHint::CounterReset);
        for (i, s) in samples.iter_mut().enumerate().skip(1501) {
            s.1 = h(5000 + i as u64, CounterResetHint::Unknown);
        }
        let chunks = encode_histogram_run(&samples);
        assert!(chunks.len() >= 4, "{}", chunks.len());
        let mut got = Vec::new();
        for (enc, first, last, bytes) in &chunks {
            let d = decode_histogram_values(*enc, bytes).unwrap();
            assert_eq!((d[0].0, d[d.len() - 1].0), (*first, *last));
            got.extend(d);
        }
        assert_eq!(got.len(), samples.len());
        let reset_chunk = chunks
            .iter()
            .find(|c| c.1 == 1500)
            .expect("cut at the reset");
        assert_eq!(
            HistogramIter::new(&reset_chunk.3[..]).header(),
            CounterResetHeader::CounterReset
        );
        // Re-encoding the decoded samples gives the same chunks.
        let again = encode_histogram_run(&got);
        assert_eq!(again, chunks);
    }
}
