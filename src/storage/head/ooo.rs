//! A series' out-of-order samples ([`OooData`], one for float samples and
//! one for native histograms): samples older than the series' newest one
//! (or than the head's in-order floor) but inside the out-of-order time
//! window, kept apart from the in-order chunks as Prometheus keeps its
//! out-of-order head chunks.
//!
//! Samples go into a small sorted buffer; at [`OOO_CHUNK_CAPACITY`] samples
//! (Prometheus's `out_of_order_cap_max` default) the buffer is encoded into
//! immutable chunks ([`OooSample::encode`]: one XOR chunk for floats, the
//! head's histogram chunks for histograms). Chunks may overlap each other and the in-order
//! chunks: readers (the querier and the block writer) already merge
//! overlapping chunks into one sorted, de-duplicated stream.
//!
//! Head compaction marks the chunks it reads ([`OooData::mark_persisting`])
//! and later drops only the samples of those chunks that it wrote
//! ([`OooData::drop_persisted`]), so a sample that arrives while a block is
//! being written stays in the head for the next one. Owns nothing but the
//! samples: must not touch the WAL, the in-order chunks or the head's bounds.

use std::sync::Arc;

use crate::model::{HistogramSample, Sample};
use crate::storage::chunk::{self, Encoding, XorAppender, XorIter};
use crate::storage::head::series::{HeadChunk, HistData};

/// Samples the open buffer holds before it is cut into a chunk
/// (Prometheus's `out_of_order_cap_max` default).
pub(crate) const OOO_CHUNK_CAPACITY: usize = 32;

/// A sample kind the out-of-order data holds.
pub(crate) trait OooSample: Clone {
    /// The sample's timestamp.
    fn t(&self) -> i64;
    /// Encodes samples sorted by time (unique timestamps) as head chunks.
    fn encode(samples: &[Self]) -> Vec<HeadChunk>;
    /// The samples of a chunk [`OooSample::encode`] made.
    fn decode(chunk: &HeadChunk) -> Vec<Self>;
}

impl OooSample for Sample {
    fn t(&self) -> i64 {
        self.t
    }

    fn encode(samples: &[Self]) -> Vec<HeadChunk> {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Vec::new();
        };
        let mut app = XorAppender::new();
        for s in samples {
            app.append(s.t, s.v);
        }
        vec![HeadChunk {
            encoding: Encoding::Xor,
            bytes: Arc::from(app.finish()),
            mint: first.t,
            maxt: last.t,
        }]
    }

    fn decode(chunk: &HeadChunk) -> Vec<Self> {
        XorIter::new(&chunk.bytes[..]).collect()
    }
}

impl OooSample for HistogramSample {
    fn t(&self) -> i64 {
        self.t
    }

    /// The head's histogram chunks, cut as in order (layout, kind and
    /// counter-reset changes), never by block range.
    fn encode(samples: &[Self]) -> Vec<HeadChunk> {
        let mut d = HistData::default();
        for s in samples {
            d.append(s.t, &s.h, i64::MAX);
        }
        d.into_chunks()
    }

    fn decode(chunk: &HeadChunk) -> Vec<Self> {
        chunk::decode_histogram_values(chunk.encoding, &chunk.bytes)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, h)| HistogramSample { t, h })
            .collect()
    }
}

/// One series' out-of-order samples of one kind.
#[derive(Debug, Clone)]
pub(crate) struct OooData<S> {
    /// Cut chunks, in the order they were cut; each is sorted, but they
    /// may overlap one another.
    chunks: Vec<HeadChunk>,
    /// Samples not yet cut, sorted by time, each timestamp once.
    open: Vec<S>,
    /// `chunks[..persisting]` were read by the running head compaction.
    persisting: usize,
    /// Timestamp of the newest sample held.
    max_t: Option<i64>,
}

impl<S> Default for OooData<S> {
    fn default() -> Self {
        OooData {
            chunks: Vec::new(),
            open: Vec::new(),
            persisting: 0,
            max_t: None,
        }
    }
}

impl<S: OooSample> OooData<S> {
    /// Whether no sample is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.open.is_empty()
    }

    /// Adds a sample. Returns `false`, changing nothing, when a sample at
    /// its time is already held (the caller checked values before).
    pub(crate) fn insert(&mut self, s: S) -> bool {
        let t = s.t();
        if self.sample_at(t).is_some() {
            return false;
        }
        let at = self.open.partition_point(|o| o.t() < t);
        self.open.insert(at, s);
        self.max_t = self.max_t.max(Some(t));
        if self.open.len() >= OOO_CHUNK_CAPACITY {
            self.cut();
        }
        true
    }

    /// Encodes the open buffer as chunks.
    fn cut(&mut self) {
        self.chunks.extend(S::encode(&self.open));
        self.open.clear();
    }

    /// The sample held at exactly `t`, if any.
    pub(crate) fn sample_at(&self, t: i64) -> Option<S> {
        if let Ok(i) = self.open.binary_search_by_key(&t, S::t) {
            return Some(self.open[i].clone());
        }
        self.chunks
            .iter()
            .filter(|c| c.mint <= t && t <= c.maxt)
            .find_map(|c| S::decode(c).into_iter().find(|s| s.t() == t))
    }

    /// Adds the chunks overlapping `[mint, maxt]` to `out`, the open buffer
    /// encoded as more.
    pub(crate) fn snapshot(&self, mint: i64, maxt: i64, out: &mut Vec<HeadChunk>) {
        out.extend(
            self.chunks
                .iter()
                .filter(|c| c.maxt >= mint && c.mint <= maxt)
                .cloned(),
        );
        let open_overlaps = matches!((self.open.first(), self.open.last()),
            (Some(a), Some(b)) if b.t() >= mint && a.t() <= maxt);
        if open_overlaps {
            out.extend(S::encode(&self.open));
        }
    }

    /// Every sample held, sorted by time (for the head snapshot).
    pub(crate) fn samples(&self) -> Vec<S> {
        let mut all: Vec<S> = self
            .chunks
            .iter()
            .flat_map(S::decode)
            .chain(self.open.iter().cloned())
            .collect();
        all.sort_by_key(S::t);
        all.dedup_by_key(|s| s.t());
        all
    }

    /// Rebuilds from samples sorted by time (a head snapshot): full groups
    /// of [`OOO_CHUNK_CAPACITY`] as chunks, the rest as the open buffer.
    pub(crate) fn restore(samples: Vec<S>) -> Self {
        let full = samples.len() - samples.len() % OOO_CHUNK_CAPACITY;
        OooData {
            chunks: samples[..full]
                .chunks(OOO_CHUNK_CAPACITY)
                .flat_map(S::encode)
                .collect(),
            max_t: samples.last().map(S::t),
            open: samples[full..].to_vec(),
            persisting: 0,
        }
    }

    /// Cuts the open buffer and marks every chunk as read by the running
    /// head compaction: [`OooData::drop_persisted`] may drop their samples.
    pub(crate) fn mark_persisting(&mut self) {
        self.cut();
        self.persisting = self.chunks.len();
    }

    /// Drops the samples in `[mint, maxt)` of the chunks marked by
    /// [`OooData::mark_persisting`] (written to a block by now), and clears
    /// the mark. Chunks cut since are kept whole.
    pub(crate) fn drop_persisted(&mut self, mint: i64, maxt: i64) {
        let marked = std::mem::take(&mut self.persisting).min(self.chunks.len());
        let rest = self.chunks.split_off(marked);
        let mut kept: Vec<HeadChunk> = Vec::with_capacity(marked + rest.len());
        for c in std::mem::take(&mut self.chunks) {
            if c.maxt < mint || c.mint >= maxt {
                kept.push(c);
                continue;
            }
            let left: Vec<S> = S::decode(&c)
                .into_iter()
                .filter(|s| s.t() < mint || s.t() >= maxt)
                .collect();
            kept.extend(S::encode(&left));
        }
        kept.extend(rest);
        self.chunks = kept;
        self.max_t = self
            .chunks
            .iter()
            .map(|c| c.maxt)
            .chain(self.open.last().map(S::t))
            .max();
    }

    /// Timestamp of the newest sample held.
    pub(crate) fn last_t(&self) -> Option<i64> {
        self.max_t
    }

    /// Timestamp of the oldest sample held.
    pub(crate) fn first_t(&self) -> Option<i64> {
        self.chunks
            .iter()
            .map(|c| c.mint)
            .chain(self.open.first().map(S::t))
            .min()
    }

    /// Number of samples held.
    pub(crate) fn num_samples(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| usize::from(chunk::num_samples(&c.bytes).unwrap_or(0)))
            .sum::<usize>()
            + self.open.len()
    }

    /// Bytes held (chunk bytes plus the buffered samples' size).
    pub(crate) fn chunk_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.bytes.len()).sum::<usize>()
            + self.open.len() * std::mem::size_of::<S>()
    }

    /// Number of chunks, the open buffer counted as one.
    pub(crate) fn num_chunks(&self) -> usize {
        self.chunks.len() + usize::from(!self.open.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(d: &OooData<Sample>) -> Vec<(i64, f64)> {
        d.samples().into_iter().map(|s| (s.t, s.v)).collect()
    }

    #[test]
    fn insert_keeps_samples_sorted_and_refuses_held_timestamps() {
        let mut d = OooData::<Sample>::default();
        for t in [50i64, 10, 30, 20, 40] {
            assert!(d.insert(Sample::new(t, t as f64)));
        }
        assert!(!d.insert(Sample::new(30, 99.0)));
        assert_eq!(d.sample_at(30).map(|s| s.v), Some(30.0));
        assert!(d.sample_at(31).is_none());
        assert_eq!(
            all(&d),
            vec![(10, 10.0), (20, 20.0), (30, 30.0), (40, 40.0), (50, 50.0)]
        );
        assert_eq!((d.first_t(), d.num_samples()), (Some(10), 5));
        assert_eq!(d.last_t(), Some(50));
    }

    #[test]
    fn buffer_is_cut_into_chunks_at_capacity() {
        let mut d = OooData::<Sample>::default();
        // Descending: every insert goes to the front of the buffer.
        for t in (0..(OOO_CHUNK_CAPACITY as i64 * 2 + 3)).rev() {
            assert!(d.insert(Sample::new(t, 1.0)));
        }
        assert_eq!(d.chunks.len(), 2);
        assert_eq!(d.open.len(), 3);
        assert_eq!(d.num_samples(), OOO_CHUNK_CAPACITY * 2 + 3);
        assert_eq!(d.sample_at(0).map(|s| s.v), Some(1.0));
        assert_eq!(d.sample_at(40).map(|s| s.v), Some(1.0));
        let mut out = Vec::new();
        d.snapshot(0, 2, &mut out);
        assert_eq!(out.len(), 1, "only the chunk holding 0..=2 overlaps");
        d.snapshot(i64::MIN, i64::MAX, &mut out);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn drop_persisted_keeps_samples_outside_the_range_and_chunks_cut_later() {
        let mut d = OooData::<Sample>::default();
        for t in [5i64, 15, 25] {
            d.insert(Sample::new(t, t as f64));
        }
        d.mark_persisting();
        // Arrives while the block is written.
        d.insert(Sample::new(12, 12.0));
        d.drop_persisted(10, 20);
        assert_eq!(all(&d), vec![(5, 5.0), (12, 12.0), (25, 25.0)]);
        d.mark_persisting();
        d.drop_persisted(20, 30);
        assert_eq!(d.last_t(), Some(12));
        // Without a mark, nothing is dropped.
        d.drop_persisted(0, 100);
        assert_eq!(d.num_samples(), 2);
    }

    #[test]
    fn restore_gives_back_the_same_samples() {
        let mut d = OooData::<Sample>::default();
        for t in (0..70i64).rev() {
            d.insert(Sample::new(t * 3, t as f64 / 2.0));
        }
        let r = OooData::restore(d.samples());
        assert_eq!(all(&r), all(&d));
        assert_eq!(r.open.len(), 70 % OOO_CHUNK_CAPACITY);
    }
}
