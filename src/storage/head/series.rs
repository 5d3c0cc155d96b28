//! In-memory series ([`MemSeries`]) and the stripe-locked map that finds them
//! by labels or by ref ([`StripeSeries`]).
//!
//! A series owns its chunks: immutable full chunks plus one open chunk being
//! appended to, for float samples (XOR) and, in [`HistData`], for native
//! histogram samples (Prometheus's histogram and float histogram chunk
//! encodings). Must not touch the WAL or the postings index.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::model::{FloatHistogram, HistogramSample, HistogramValue, Labels, Sample};
use crate::storage::chunk::{
    self, CounterResetHeader, Encoding, FloatHistogramAppender, HistogramAppender, XorAppender,
    XorIter, SAMPLES_PER_CHUNK,
};
use crate::storage::head::ooo::OooData;
use crate::storage::SeriesRef;

/// A full, immutable head chunk with its time bounds.
#[derive(Debug, Clone)]
pub(crate) struct HeadChunk {
    /// XOR for float samples; one of the histogram encodings for
    /// histogram chunks.
    pub(crate) encoding: Encoding,
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
}

/// One series of the head. `labels` and `series_ref` are immutable; `data`
/// is guarded by its mutex (the appender holds it across WAL write + apply
/// so that per-series WAL order equals apply order).
pub(crate) struct MemSeries {
    pub(crate) series_ref: SeriesRef,
    pub(crate) labels: Labels,
    pub(crate) data: Mutex<SeriesData>,
    /// Set (under the head's GC write lock) once the series is dropped
    /// from the head's maps: a [`crate::storage::SeriesHandle`] kept by a
    /// caller must not be appended to after that.
    pub(crate) removed: std::sync::atomic::AtomicBool,
}

/// The mutable part of a series.
pub(crate) struct SeriesData {
    /// Full chunks, oldest first.
    pub(crate) full: Vec<HeadChunk>,
    /// The chunk being appended to; empty when no sample is open.
    pub(crate) open: XorAppender,
    /// End (exclusive) of the block range the open chunk belongs to.
    open_range_end: i64,
    /// Newest float sample ([`SeriesData::last`]), for the ordering and
    /// duplicate rules: its time and value, valid when `has_last` (an
    /// `Option<Sample>` would take a word more for its tag).
    last_sample_t: i64,
    last_sample_v: f64,
    has_last: bool,
    /// Whether the series record has been written to the WAL.
    pub(crate) logged: bool,
    /// The newest full chunk holds the first [`HALF_CHUNK`] samples of the
    /// chunk the open one continues (packed there to keep the open XOR
    /// buffer small); the next cut joins them. A hint only: the join
    /// checks the chunk it joins ([`SeriesData::join_half`]).
    half_cut: bool,
    /// The series' link in the WAL segment's chain of samples: the WAL
    /// writer encodes its in-order samples against it (held here, under
    /// the series lock the appender holds while logging, so the writer
    /// needs no map of a million links).
    pub(crate) wal_link: crate::storage::wal::ChainLink,
    /// What few series have (histograms, out-of-order samples), boxed
    /// together: one word in every series for all of it.
    rare: Option<Box<Rare>>,
}

/// The parts of a series most series never have, each boxed on its own
/// (a series with out-of-order floats only holds no room for histograms).
#[derive(Default)]
struct Rare {
    /// Histogram samples.
    hist: Option<Box<HistData>>,
    /// Out-of-order float samples.
    ooo: Option<Box<OooData<Sample>>>,
    /// Out-of-order histogram samples.
    ooo_hist: Option<Box<OooData<HistogramSample>>>,
}

impl Rare {
    fn is_empty(&self) -> bool {
        self.hist.is_none() && self.ooo.is_none() && self.ooo_hist.is_none()
    }
}

/// The open histogram chunk, in the encoding of the samples it holds.
#[derive(Debug, Clone)]
pub(crate) enum OpenHist {
    Int(HistogramAppender),
    Float(FloatHistogramAppender),
}

impl OpenHist {
    /// An empty chunk for samples like `h`.
    fn new(h: &HistogramValue, header: CounterResetHeader) -> Self {
        match h {
            HistogramValue::Int(_) => OpenHist::Int(HistogramAppender::new(header)),
            HistogramValue::Float(_) => OpenHist::Float(FloatHistogramAppender::new(header)),
        }
    }

    /// Appends if the sample fits; `Err(header)` for a new chunk.
    fn append(&mut self, t: i64, h: &HistogramValue) -> Result<(), CounterResetHeader> {
        match (self, h) {
            (OpenHist::Int(a), HistogramValue::Int(h)) => a.append(t, h),
            (OpenHist::Float(a), HistogramValue::Float(h)) => a.append(t, h),
            _ => Err(CounterResetHeader::Unknown),
        }
    }

    fn encoding(&self) -> Encoding {
        match self {
            OpenHist::Int(_) => Encoding::Histogram,
            OpenHist::Float(_) => Encoding::FloatHistogram,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            OpenHist::Int(a) => a.bytes(),
            OpenHist::Float(a) => a.bytes(),
        }
    }

    pub(crate) fn num_samples(&self) -> usize {
        match self {
            OpenHist::Int(a) => a.num_samples(),
            OpenHist::Float(a) => a.num_samples(),
        }
    }

    pub(crate) fn first_t(&self) -> Option<i64> {
        match self {
            OpenHist::Int(a) => a.first_t(),
            OpenHist::Float(a) => a.first_t(),
        }
    }

    pub(crate) fn last_t(&self) -> Option<i64> {
        match self {
            OpenHist::Int(a) => a.last_t(),
            OpenHist::Float(a) => a.last_t(),
        }
    }

    fn finish(self) -> Box<[u8]> {
        match self {
            OpenHist::Int(a) => a.finish(),
            OpenHist::Float(a) => a.finish(),
        }
    }
}

/// Prometheus's target size of a histogram chunk
/// (`chunkenc.TargetBytesPerHistogramChunk`).
const TARGET_BYTES_PER_HISTOGRAM_CHUNK: usize = 1024;
/// Fewest samples a histogram chunk is cut at for size
/// (`chunkenc.MinSamplesPerHistogramChunk`).
const MIN_SAMPLES_PER_HISTOGRAM_CHUNK: usize = 10;

/// A series' histogram samples: full chunks and the open one, cut as
/// Prometheus's `histogramsAppendPreprocessor` cuts them (by size, time
/// and block range) and as its chunk appenders do (layout change, counter
/// reset, gauge switch, sample after a stale marker).
#[derive(Debug, Default)]
pub(crate) struct HistData {
    /// Full chunks, oldest first.
    pub(crate) full: Vec<HeadChunk>,
    pub(crate) open: Option<OpenHist>,
    /// Time at or after which the open chunk is cut (Prometheus `nextAt`).
    next_at: i64,
    /// Whether `next_at` was estimated from the open chunk's fill rate.
    computed_end: bool,
    /// A float sample came after the open chunk's last histogram: the next
    /// histogram starts a new chunk (Prometheus cuts on encoding change).
    interrupted: bool,
    /// Newest histogram sample as appended, for the ordering and
    /// duplicate rules.
    pub(crate) last: Option<HistogramSample>,
}

impl HistData {
    /// Number of samples held.
    pub(crate) fn num_samples(&self) -> usize {
        self.full
            .iter()
            .map(|c| usize::from(chunk::num_samples(&c.bytes).unwrap_or(0)))
            .sum::<usize>()
            + self.open.as_ref().map_or(0, OpenHist::num_samples)
    }

    /// Bytes of chunk data held.
    pub(crate) fn chunk_bytes(&self) -> usize {
        self.full.iter().map(|c| c.bytes.len()).sum::<usize>()
            + self.open.as_ref().map_or(0, |o| o.bytes().len())
    }

    /// Timestamp of the oldest sample held.
    pub(crate) fn first_t(&self) -> Option<i64> {
        self.full
            .first()
            .map(|c| c.mint)
            .or_else(|| self.open.as_ref().and_then(OpenHist::first_t))
    }

    /// Every chunk, the open one cut (for out-of-order histogram chunks,
    /// built from sorted samples).
    pub(crate) fn into_chunks(mut self) -> Vec<HeadChunk> {
        self.cut();
        self.full
    }

    fn cut(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let (Some(mint), Some(maxt)) = (open.first_t(), open.last_t()) else {
            return;
        };
        let encoding = open.encoding();
        self.full.push(HeadChunk {
            encoding,
            bytes: Arc::from(open.finish()),
            mint,
            maxt,
        });
    }

    /// Appends a histogram sample known to be newer than every sample of
    /// the series.
    pub(crate) fn append(&mut self, t: i64, h: &HistogramValue, block_range_ms: i64) {
        let want = match h {
            HistogramValue::Int(_) => Encoding::Histogram,
            HistogramValue::Float(_) => Encoding::FloatHistogram,
        };
        let same_encoding = self.open.as_ref().is_some_and(|o| o.encoding() == want);
        // A new chunk without a predecessor of the same encoding: the
        // header says only what the sample's own hint says.
        let mut header = None;
        if !same_encoding || self.interrupted {
            self.cut();
            self.interrupted = false;
        }
        if let Some(open) = &self.open {
            let n = open.num_samples();
            let bytes = open.bytes().len();
            let first_t = open.first_t().unwrap_or(t);
            let next_range_start = if self.computed_end {
                range_end(first_t, block_range_ms)
            } else {
                self.next_at
            };
            if !self.computed_end && bytes >= TARGET_BYTES_PER_HISTOGRAM_CHUNK / 4 {
                let ratio = TARGET_BYTES_PER_HISTOGRAM_CHUNK as f64 / bytes as f64;
                let last_t = open.last_t().unwrap_or(t);
                self.next_at = compute_chunk_end_time(first_t, last_t, self.next_at, ratio);
                self.computed_end = true;
            }
            let full = n >= usize::from(u16::MAX) - 1;
            if full
                || ((t >= self.next_at || bytes >= TARGET_BYTES_PER_HISTOGRAM_CHUNK * 2)
                    && (n >= MIN_SAMPLES_PER_HISTOGRAM_CHUNK || t >= next_range_start))
            {
                header = Some(match (open, h) {
                    (OpenHist::Int(a), HistogramValue::Int(h)) => a.header_for_next(h),
                    (OpenHist::Float(a), HistogramValue::Float(h)) => a.header_for_next(h),
                    _ => CounterResetHeader::Unknown,
                });
                self.cut();
                self.computed_end = false;
            }
        }
        let open = match self.open.as_mut() {
            Some(open) => open,
            None => {
                let header = header.unwrap_or(CounterResetHeader::Unknown);
                self.next_at = range_end(t, block_range_ms);
                self.open.insert(OpenHist::new(h, header))
            }
        };
        if let Err(header) = open.append(t, h) {
            // The chunk appender refused the sample (layout change, reset,
            // encoding): a new chunk with the header it chose, which takes
            // any sample.
            self.cut();
            let mut fresh = OpenHist::new(h, header);
            let appended = fresh.append(t, h);
            debug_assert!(appended.is_ok(), "an empty chunk takes any sample");
            self.open = Some(fresh);
            self.next_at = range_end(t, block_range_ms);
        }
        self.last = Some(HistogramSample { t, h: h.clone() });
    }

    /// Restores from a head snapshot: full chunks as they were, and the
    /// open chunk's samples appended again to a chunk with its header,
    /// which rebuilds the appender exactly (re-encoding a chunk's decoded
    /// samples gives its bytes back). `None` if the open chunk does not
    /// decode or re-encode.
    pub(crate) fn restore(
        full: Vec<HeadChunk>,
        open: Option<(Encoding, &[u8])>,
        block_range_ms: i64,
    ) -> Option<Self> {
        let mut d = HistData {
            full,
            ..Default::default()
        };
        let mut last = None;
        match open {
            Some((Encoding::Histogram, bytes)) => {
                let mut it = chunk::HistogramIter::new(bytes);
                let mut app = HistogramAppender::new(it.header());
                for (t, h) in it.by_ref() {
                    app.append(t, &h).ok()?;
                    last = Some(HistogramSample {
                        t,
                        h: HistogramValue::Int(h),
                    });
                }
                if it.err().is_some() {
                    return None;
                }
                d.open = Some(OpenHist::Int(app));
            }
            Some((Encoding::FloatHistogram, bytes)) => {
                let mut it = chunk::FloatHistogramIter::new(bytes);
                let mut app = FloatHistogramAppender::new(it.header());
                for (t, h) in it.by_ref() {
                    app.append(t, &h).ok()?;
                    last = Some(HistogramSample {
                        t,
                        h: HistogramValue::Float(h),
                    });
                }
                if it.err().is_some() {
                    return None;
                }
                d.open = Some(OpenHist::Float(app));
            }
            Some(_) => return None,
            None => {}
        }
        if last.is_none() {
            let c = d.full.last()?;
            let (t, h) = match c.encoding {
                Encoding::Histogram => {
                    let (t, h) = chunk::HistogramIter::new(&c.bytes[..]).last()?;
                    (t, HistogramValue::Int(h))
                }
                Encoding::FloatHistogram => {
                    let (t, h) = chunk::FloatHistogramIter::new(&c.bytes[..]).last()?;
                    (t, HistogramValue::Float(h))
                }
                _ => return None,
            };
            last = Some(HistogramSample { t, h });
        }
        d.next_at = range_end(
            d.open
                .as_ref()
                .and_then(OpenHist::first_t)
                .unwrap_or(i64::MIN),
            block_range_ms,
        );
        d.last = last;
        Some(d)
    }

    /// The open chunk's encoding and bytes, if any.
    pub(crate) fn open_chunk(&self) -> Option<(Encoding, &[u8])> {
        self.open
            .as_ref()
            .filter(|o| o.num_samples() > 0)
            .map(|o| (o.encoding(), o.bytes()))
    }

    /// The histogram stored at exactly `t`, if any, as a float histogram.
    pub(crate) fn value_at(&self, t: i64) -> Option<FloatHistogram> {
        let find = |encoding: Encoding, bytes: &[u8]| {
            chunk::decode_histograms(encoding, bytes)
                .ok()?
                .into_iter()
                .find(|(ht, _)| *ht == t)
                .map(|(_, h)| h)
        };
        if let Some(open) = &self.open {
            if open.first_t().is_some_and(|first| first <= t) {
                return find(open.encoding(), open.bytes());
            }
        }
        let i = self.full.partition_point(|c| c.maxt < t);
        self.full
            .get(i)
            .filter(|c| c.mint <= t)
            .and_then(|c| find(c.encoding, &c.bytes))
    }

    /// Snapshot of the chunks overlapping `[mint, maxt]`.
    pub(crate) fn snapshot(&self, mint: i64, maxt: i64, out: &mut Vec<HeadChunk>) {
        out.extend(
            self.full
                .iter()
                .filter(|c| c.maxt >= mint && c.mint <= maxt)
                .cloned(),
        );
        if let Some(open) = &self.open {
            if let (Some(cmint), Some(cmaxt)) = (open.first_t(), open.last_t()) {
                if cmaxt >= mint && cmint <= maxt {
                    out.push(HeadChunk {
                        encoding: open.encoding(),
                        bytes: Arc::from(open.bytes()),
                        mint: cmint,
                        maxt: cmaxt,
                    });
                }
            }
        }
    }
}

impl HistData {
    /// Drops full chunks ending before `mint` (written to a block);
    /// reports whether any data at or after `mint` remains.
    /// A dead open chunk (all before `mint`, so persisted) is dropped too;
    /// `last` stays for the ordering rules.
    pub(crate) fn truncate(&mut self, mint: i64) -> bool {
        self.full.retain(|c| c.maxt >= mint);
        let open_live = self
            .open
            .as_ref()
            .and_then(OpenHist::last_t)
            .is_some_and(|t| t >= mint);
        if !open_live {
            self.open = None;
        }
        !self.full.is_empty() || open_live
    }
}

/// Prometheus's `computeChunkEndTime`: the end time that splits the rest
/// of the range into chunks as full as the open one will be.
fn compute_chunk_end_time(start: i64, cur: i64, max_t: i64, ratio_to_full: f64) -> i64 {
    let n = (max_t.wrapping_sub(start)) as f64
        / ((cur.wrapping_sub(start) as f64 + 1.0) * ratio_to_full);
    if n <= 1.0 {
        return max_t;
    }
    (start as f64 + (max_t.wrapping_sub(start)) as f64 / n.floor()) as i64
}

impl MemSeries {
    pub(crate) fn new(series_ref: SeriesRef, labels: Labels, logged: bool) -> Self {
        Self {
            series_ref,
            labels,
            data: Mutex::new(SeriesData {
                full: Vec::new(),
                open: XorAppender::new(),
                open_range_end: i64::MIN,
                last_sample_t: 0,
                last_sample_v: 0.0,
                has_last: false,
                logged,
                half_cut: false,
                wal_link: crate::storage::wal::ChainLink::default(),
                rare: None,
            }),
            removed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl SeriesData {
    /// Newest float sample, for the ordering and duplicate rules.
    #[inline]
    pub(crate) fn last(&self) -> Option<Sample> {
        self.has_last
            .then(|| Sample::new(self.last_sample_t, self.last_sample_v))
    }

    #[inline]
    fn set_last(&mut self, s: Option<Sample>) {
        self.has_last = s.is_some();
        if let Some(s) = s {
            self.last_sample_t = s.t;
            self.last_sample_v = s.v;
        }
    }

    /// Histogram samples, for a series that has any.
    pub(crate) fn hist(&self) -> Option<&HistData> {
        self.rare.as_ref()?.hist.as_deref()
    }

    /// [`SeriesData::hist`], mutable.
    pub(crate) fn hist_mut(&mut self) -> Option<&mut HistData> {
        self.rare.as_mut()?.hist.as_deref_mut()
    }

    /// Out-of-order float samples, for a series that has any.
    pub(crate) fn ooo(&self) -> Option<&OooData<Sample>> {
        self.rare.as_ref()?.ooo.as_deref()
    }

    /// Out-of-order histogram samples, for a series that has any.
    pub(crate) fn ooo_hist(&self) -> Option<&OooData<HistogramSample>> {
        self.rare.as_ref()?.ooo_hist.as_deref()
    }

    /// Sets the rare parts at once (a restored series), boxing them only
    /// when there are any.
    pub(crate) fn set_rare(
        &mut self,
        hist: Option<HistData>,
        ooo: Option<OooData<Sample>>,
        ooo_hist: Option<OooData<HistogramSample>>,
    ) {
        let rare = Rare {
            hist: hist.map(Box::new),
            ooo: ooo.map(Box::new),
            ooo_hist: ooo_hist.map(Box::new),
        };
        self.rare = (!rare.is_empty()).then(|| Box::new(rare));
    }

    /// The rare parts, boxed now if there were none.
    fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Frees the box once nothing rare is left in it.
    fn drop_rare_if_empty(&mut self) {
        if self.rare.as_ref().is_some_and(|r| r.is_empty()) {
            self.rare = None;
        }
    }

    /// Appends a sample known to be newer than `last`. Cuts the open chunk at
    /// [`SAMPLES_PER_CHUNK`] samples or when `t` crosses a block-range
    /// boundary, so that chunks never straddle two blocks.
    pub(crate) fn append(&mut self, s: Sample, block_range_ms: i64) {
        let n = self.open.num_samples();
        let filled = n + if self.half_cut { HALF_CHUNK } else { 0 };
        if n > 0 && (filled >= SAMPLES_PER_CHUNK || s.t >= self.open_range_end) {
            self.cut(block_range_ms);
        } else if n == HALF_CHUNK && !self.half_cut && self.open.bytes().len() >= HALF_PACK_BYTES {
            self.cut(block_range_ms);
            self.half_cut = true;
        }
        if self.open.num_samples() == 0 {
            self.open_range_end = range_end(s.t, block_range_ms);
        }
        self.open.append(s.t, s.v);
        self.set_last(Some(s));
        if let Some(h) = self.hist_mut() {
            h.interrupted = h.open.is_some();
        }
    }

    /// Appends a histogram sample known to be newer than every sample of
    /// the series; cuts the open float chunk first, as Prometheus cuts on
    /// an encoding change.
    pub(crate) fn append_histogram(&mut self, t: i64, h: &HistogramValue, block_range_ms: i64) {
        if self.open.num_samples() > 0 {
            self.cut(block_range_ms);
        }
        self.rare_mut()
            .hist
            .get_or_insert_with(Box::default)
            .append(t, h, block_range_ms);
    }

    /// Timestamp of the newest sample of either kind, out-of-order ones
    /// included (a sample not newer than an out-of-order one held is
    /// judged against what is held, never appended in order beside it).
    pub(crate) fn last_t(&self) -> Option<i64> {
        let f = self.last().map(|s| s.t);
        let h = self.hist().and_then(|h| h.last.as_ref()).map(|s| s.t);
        let o = self.ooo().and_then(|o| o.last_t());
        let oh = self.ooo_hist().and_then(|o| o.last_t());
        f.max(h).max(o).max(oh)
    }

    /// Timestamp of the oldest sample of either kind.
    pub(crate) fn first_t(&self) -> Option<i64> {
        let f = self.full.first().map(|c| c.mint).or(self.open.first_t());
        let h = self.hist().and_then(|h| h.first_t());
        [f, h, self.ooo_first_t()].into_iter().flatten().min()
    }

    /// Timestamp of the oldest out-of-order sample of either kind.
    pub(crate) fn ooo_first_t(&self) -> Option<i64> {
        let o = self.ooo().and_then(|o| o.first_t());
        let oh = self.ooo_hist().and_then(|o| o.first_t());
        o.into_iter().chain(oh).min()
    }

    /// Marks the out-of-order chunks of both kinds as read by the running
    /// head compaction ([`OooData::mark_persisting`]).
    pub(crate) fn mark_ooo_persisting(&mut self) {
        let Some(r) = self.rare.as_mut() else {
            return;
        };
        if let Some(o) = r.ooo.as_mut() {
            o.mark_persisting();
        }
        if let Some(o) = r.ooo_hist.as_mut() {
            o.mark_persisting();
        }
    }

    /// [`OooData::drop_persisted`] for both kinds, freeing what is left
    /// empty.
    pub(crate) fn drop_persisted_ooo(&mut self, mint: i64, maxt: i64) {
        let Some(r) = self.rare.as_mut() else {
            return;
        };
        if let Some(o) = r.ooo.as_mut() {
            o.drop_persisted(mint, maxt);
        }
        if r.ooo.as_ref().is_some_and(|o| o.is_empty()) {
            r.ooo = None;
        }
        if let Some(o) = r.ooo_hist.as_mut() {
            o.drop_persisted(mint, maxt);
        }
        if r.ooo_hist.as_ref().is_some_and(|o| o.is_empty()) {
            r.ooo_hist = None;
        }
        self.drop_rare_if_empty();
    }

    /// Stores an out-of-order float sample (older than the newest sample,
    /// checked by the caller against what is held). Returns `false` when a
    /// sample at `s.t` is held already among the out-of-order ones.
    pub(crate) fn append_ooo(&mut self, s: Sample) -> bool {
        self.rare_mut()
            .ooo
            .get_or_insert_with(Box::default)
            .insert(s)
    }

    /// [`SeriesData::append_ooo`] for a histogram sample.
    pub(crate) fn append_ooo_histogram(&mut self, s: HistogramSample) -> bool {
        self.rare_mut()
            .ooo_hist
            .get_or_insert_with(Box::default)
            .insert(s)
    }

    /// Whether out-of-order samples of either kind are held.
    pub(crate) fn has_ooo(&self) -> bool {
        self.ooo().is_some_and(|o| !o.is_empty()) || self.ooo_hist().is_some_and(|o| !o.is_empty())
    }

    fn cut(&mut self, block_range_ms: i64) {
        let half = std::mem::take(&mut self.half_cut);
        let open = std::mem::take(&mut self.open);
        let (Some(mint), Some(maxt)) = (open.first_t(), open.last_t()) else {
            return;
        };
        if half && self.join_half(&open, block_range_ms) {
            return;
        }
        let (encoding, bytes) = chunk::pack_full(open.finish().into_vec());
        // One slot at a time: a series holds few full chunks (one or two
        // between head compactions at a scrape a minute), and a doubling
        // `Vec` kept four 40-byte slots for one.
        self.full.reserve_exact(1);
        self.full.push(HeadChunk {
            encoding,
            bytes: Arc::from(bytes),
            mint,
            maxt,
        });
    }

    /// Drops the open float chunk (head truncation, once it is persisted).
    pub(crate) fn drop_open(&mut self) {
        self.open = XorAppender::new();
        self.half_cut = false;
    }

    /// Replaces the newest full chunk with it and `open` as one packed
    /// chunk, if that chunk is the packed first part of `open`'s: older
    /// than it, in the same block range, and together no more than
    /// [`SAMPLES_PER_CHUNK`] samples. Returns whether it did; otherwise
    /// both stay as they are (head truncation may have dropped the half; a
    /// half kept as XOR codes better that way).
    fn join_half(&mut self, open: &XorAppender, block_range_ms: i64) -> bool {
        let (Some(first), Some(last_t)) = (open.first_t(), open.last_t()) else {
            return false;
        };
        let Some(half) = self.full.last_mut() else {
            return false;
        };
        if half.encoding != Encoding::Packed
            || half.maxt >= first
            || range_end(half.mint, block_range_ms) != range_end(first, block_range_ms)
        {
            return false;
        }
        let Ok(mut samples) = chunk::decode(half.encoding, &half.bytes) else {
            return false;
        };
        if samples.len() + open.num_samples() > SAMPLES_PER_CHUNK {
            return false;
        }
        samples.extend(XorIter::new(open.bytes()));
        half.bytes = Arc::from(chunk::encode_packed(&samples));
        half.maxt = last_t;
        true
    }

    /// Restores a series from a head snapshot: its full chunks as they were,
    /// and the open chunk's samples appended again (which rebuilds the
    /// appender's state exactly: the encoding is deterministic).
    pub(crate) fn restore(&mut self, full: Vec<HeadChunk>, open: &[Sample], block_range_ms: i64) {
        self.full = full;
        self.half_cut = false;
        self.set_last(None);
        for s in open {
            if self.open.num_samples() == 0 {
                self.open_range_end = range_end(s.t, block_range_ms);
            }
            self.open.append(s.t, s.v);
            self.set_last(Some(*s));
        }
        if !self.has_last {
            let last = self
                .full
                .last()
                .and_then(|c| chunk::decode(c.encoding, &c.bytes).ok()?.last().copied());
            self.set_last(last);
        }
    }

    /// Whether [`SeriesData::snapshot`] would return a chunk, without
    /// copying any (the series and label APIs need only the answer).
    pub(crate) fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        if self.full.iter().any(|c| c.maxt >= mint && c.mint <= maxt) {
            return true;
        }
        if let (Some(cmint), Some(cmaxt)) = (self.open.first_t(), self.open.last_t()) {
            if cmaxt >= mint && cmint <= maxt {
                return true;
            }
        }
        if self.rare.is_none() {
            return false;
        }
        !self.snapshot(mint, maxt).is_empty()
    }

    /// Snapshot of the chunks overlapping `[mint, maxt]`, for lock-free reading.
    pub(crate) fn snapshot(&self, mint: i64, maxt: i64) -> Vec<HeadChunk> {
        let mut out: Vec<HeadChunk> = self
            .full
            .iter()
            .filter(|c| c.maxt >= mint && c.mint <= maxt)
            .cloned()
            .collect();
        if let (Some(cmint), Some(cmaxt)) = (self.open.first_t(), self.open.last_t()) {
            if cmaxt >= mint && cmint <= maxt {
                out.push(HeadChunk {
                    encoding: Encoding::Xor,
                    bytes: Arc::from(self.open.bytes()),
                    mint: cmint,
                    maxt: cmaxt,
                });
            }
        }
        if let Some(h) = self.hist() {
            h.snapshot(mint, maxt, &mut out);
        }
        if let Some(o) = self.ooo() {
            o.snapshot(mint, maxt, &mut out);
        }
        if let Some(o) = self.ooo_hist() {
            o.snapshot(mint, maxt, &mut out);
        }
        out
    }

    /// The value stored at exactly `t`, if any (the slow path for resent
    /// samples older than the newest one).
    pub(crate) fn value_at(&self, t: i64) -> Option<f64> {
        let find = |samples: &mut dyn Iterator<Item = Sample>| {
            samples
                .take_while(|s| s.t <= t)
                .find(|s| s.t == t)
                .map(|s| s.v)
        };
        let in_order = if self.open.first_t().is_some_and(|first| first <= t) {
            find(&mut XorIter::new(self.open.bytes()))
        } else {
            // Full chunks are in time order: the one that may hold t is the
            // first whose maxt is not before t.
            let i = self.full.partition_point(|c| c.maxt < t);
            self.full
                .get(i)
                .filter(|c| c.mint <= t)
                .and_then(|c| match c.encoding {
                    Encoding::Xor => find(&mut XorIter::new(&c.bytes)),
                    e => find(&mut chunk::decode(e, &c.bytes).ok()?.into_iter()),
                })
        };
        in_order.or_else(|| self.ooo()?.sample_at(t).map(|s| s.v))
    }

    /// Number of samples held (full + open chunks, floats and histograms).
    pub(crate) fn num_samples(&self) -> usize {
        self.full
            .iter()
            .map(|c| usize::from(chunk::num_samples(&c.bytes).unwrap_or(0)))
            .sum::<usize>()
            + self.open.num_samples()
            + self.hist().map_or(0, |h| h.num_samples())
            + self.ooo().map_or(0, |o| o.num_samples())
            + self.ooo_hist().map_or(0, |o| o.num_samples())
    }

    /// Bytes of chunk data held.
    pub(crate) fn chunk_bytes(&self) -> usize {
        self.full.iter().map(|c| c.bytes.len()).sum::<usize>()
            + self.open.bytes().len()
            + self.hist().map_or(0, |h| h.chunk_bytes())
            + self.ooo().map_or(0, |o| o.chunk_bytes())
            + self.ooo_hist().map_or(0, |o| o.chunk_bytes())
    }

    /// Number of chunks (full and open, floats and histograms).
    pub(crate) fn num_chunks(&self) -> usize {
        self.full.len()
            + usize::from(self.open.num_samples() > 0)
            + self.hist().map_or(0, |h| {
                h.full.len() + usize::from(h.open.as_ref().is_some_and(|o| o.num_samples() > 0))
            })
            + self.ooo().map_or(0, |o| o.num_chunks())
            + self.ooo_hist().map_or(0, |o| o.num_chunks())
    }
}

/// End (exclusive) of the block range containing `t`.
/// Samples of a float chunk at which it is packed half full when its XOR
/// bytes have reached [`HALF_PACK_BYTES`] by then.
const HALF_CHUNK: usize = SAMPLES_PER_CHUNK / 2;

/// XOR bytes of a half-full chunk past which its samples are packed
/// there and then (joined with the rest at the cut): on values XOR codes
/// poorly (4.5 bytes a sample on node_exporter data, where packed takes
/// ~1.3) the open buffer would otherwise double to 512 and 1,024 bytes in
/// every series; chunks that code well (counters, constants) never reach
/// it and are packed once, as before.
const HALF_PACK_BYTES: usize = 256;

fn range_end(t: i64, range: i64) -> i64 {
    t.div_euclid(range).saturating_add(1).saturating_mul(range)
}

/// Consecutive refs of one stripe per [`RefPage`].
const REF_PAGE: usize = 64;

/// One lock stripe of the by-ref map: the series whose ref is `stripe`
/// modulo the stripe count, in pages of [`REF_PAGE`] consecutive such refs.
/// Refs are handed out in increasing order, so a stripe's live refs are
/// dense: a slot costs 8 bytes where a hash map entry cost ~17 over its
/// load factor (~36 bytes a series at a million). A page whose series are
/// all gone is freed.
#[derive(Default)]
struct RefStripe {
    pages: std::collections::BTreeMap<u64, Box<RefPage>>,
}

struct RefPage {
    slots: [Option<Arc<MemSeries>>; REF_PAGE],
    used: usize,
}

impl RefStripe {
    /// Page and slot of the stripe's `k`-th ref (`k = ref >> stripe bits`).
    fn at(k: u64) -> (u64, usize) {
        (k / REF_PAGE as u64, (k % REF_PAGE as u64) as usize)
    }

    fn get(&self, k: u64) -> Option<&Arc<MemSeries>> {
        let (page, slot) = Self::at(k);
        self.pages.get(&page)?.slots[slot].as_ref()
    }

    fn insert(&mut self, k: u64, s: Arc<MemSeries>) {
        let (page, slot) = Self::at(k);
        let p = self.pages.entry(page).or_insert_with(|| {
            Box::new(RefPage {
                slots: std::array::from_fn(|_| None),
                used: 0,
            })
        });
        if p.slots[slot].replace(s).is_none() {
            p.used += 1;
        }
    }

    fn remove(&mut self, k: u64) {
        let (page, slot) = Self::at(k);
        if let Some(p) = self.pages.get_mut(&page) {
            if p.slots[slot].take().is_some() {
                p.used -= 1;
                if p.used == 0 {
                    self.pages.remove(&page);
                }
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.pages.values().flat_map(|p| p.slots.iter().flatten())
    }
}

/// One lock stripe of the by-labels map: the series, found by their labels'
/// hash ([`Labels::stable_hash`], which the table also rehashes with) and
/// then compared label for label, so series whose hashes collide simply
/// share a hash (as Prometheus's `seriesHashmap` conflicts list). An entry
/// is the series pointer alone: 8 bytes where a map keyed by the hash took
/// 16.
#[derive(Default)]
struct HashStripe {
    table: hashbrown::HashTable<Arc<MemSeries>>,
}

impl HashStripe {
    fn get(&self, hash: u64, labels: &Labels) -> Option<&Arc<MemSeries>> {
        self.table.find(hash, |s| s.labels == *labels)
    }

    /// Adds `s`, whose labels hash to `hash`.
    fn insert(&mut self, hash: u64, s: Arc<MemSeries>) {
        debug_assert_eq!(hash, s.labels.stable_hash());
        self.table
            .insert_unique(hash, s, |s| s.labels.stable_hash());
    }

    fn remove(&mut self, hash: u64, r: SeriesRef) {
        if let Ok(e) = self.table.find_entry(hash, |s| s.series_ref == r) {
            e.remove();
        }
    }
}

/// The head's series, findable by labels (hash stripes) and by ref (ref
/// stripes). Each stripe has its own `RwLock`: lookups take a read lock,
/// creation a write lock on one stripe, so appenders on different series do
/// not contend. Lock order: hash stripe, then ref stripe.
pub(crate) struct StripeSeries {
    by_hash: Box<[RwLock<HashStripe>]>,
    by_ref: Box<[RwLock<RefStripe>]>,
    mask: usize,
    /// log2 of the stripe count: a ref's place within its by-ref stripe is
    /// `ref >> shift`.
    shift: u32,
}

/// Outcome of [`StripeSeries::get_or_create`].
pub(crate) enum GetOrCreate {
    /// The series existed.
    Found(Arc<MemSeries>),
    /// The series was created by this call.
    Created(Arc<MemSeries>),
}

impl StripeSeries {
    pub(crate) fn new(stripes: usize) -> Self {
        let n = stripes.max(1).next_power_of_two();
        Self {
            by_hash: (0..n).map(|_| RwLock::default()).collect(),
            by_ref: (0..n).map(|_| RwLock::default()).collect(),
            mask: n - 1,
            shift: n.trailing_zeros(),
        }
    }

    fn ref_stripe(&self, r: SeriesRef) -> &RwLock<RefStripe> {
        &self.by_ref[(r.0 as usize) & self.mask]
    }

    pub(crate) fn get_by_ref(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.ref_stripe(r).read().get(r.0 >> self.shift).cloned()
    }

    /// [`StripeSeries::get_by_ref`] when `keep` accepts the series; a
    /// rejected one is not cloned (the planner's label checks reject most
    /// candidates, and the `Arc` count is one more cache line written).
    pub(crate) fn get_by_ref_if(
        &self,
        r: SeriesRef,
        keep: impl FnOnce(&MemSeries) -> bool,
    ) -> Option<Arc<MemSeries>> {
        self.ref_stripe(r)
            .read()
            .get(r.0 >> self.shift)
            .filter(|s| keep(s))
            .cloned()
    }

    pub(crate) fn get(&self, hash: u64, labels: &Labels) -> Option<Arc<MemSeries>> {
        self.by_hash[(hash as usize) & self.mask]
            .read()
            .get(hash, labels)
            .cloned()
    }

    /// Finds the series or creates it with `make()`. `make` runs under the
    /// stripe's write lock and may refuse (series limit) by returning `Err`.
    pub(crate) fn get_or_create<E>(
        &self,
        hash: u64,
        labels: &Labels,
        make: impl FnOnce() -> Result<Arc<MemSeries>, E>,
    ) -> Result<GetOrCreate, E> {
        if let Some(s) = self.get(hash, labels) {
            return Ok(GetOrCreate::Found(s));
        }
        let mut stripe = self.by_hash[(hash as usize) & self.mask].write();
        if let Some(s) = stripe.get(hash, labels) {
            return Ok(GetOrCreate::Found(s.clone()));
        }
        let s = make()?;
        stripe.insert(hash, s.clone());
        self.ref_stripe(s.series_ref)
            .write()
            .insert(s.series_ref.0 >> self.shift, s.clone());
        Ok(GetOrCreate::Created(s))
    }

    /// Removes a series from both maps.
    pub(crate) fn remove(&self, s: &MemSeries) {
        let hash = s.labels.stable_hash();
        self.by_hash[(hash as usize) & self.mask]
            .write()
            .remove(hash, s.series_ref);
        self.ref_stripe(s.series_ref)
            .write()
            .remove(s.series_ref.0 >> self.shift);
    }

    /// Every series, in no particular order.
    pub(crate) fn all(&self) -> Vec<Arc<MemSeries>> {
        let mut out = Vec::new();
        for stripe in self.by_ref.iter() {
            out.extend(stripe.read().values().cloned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_stripes_find_insert_remove_and_free_empty_pages() {
        let st = StripeSeries::new(4);
        let mk = |r: u64| Arc::new(MemSeries::new(SeriesRef(r), Labels::empty(), true));
        // Refs of every stripe, across several pages of each.
        let refs: Vec<u64> = (1..2_000).collect();
        for &r in &refs {
            let s = mk(r);
            st.ref_stripe(s.series_ref)
                .write()
                .insert(r >> st.shift, s.clone());
        }
        for &r in &refs {
            assert_eq!(st.get_by_ref(SeriesRef(r)).unwrap().series_ref.0, r);
        }
        assert!(st.get_by_ref(SeriesRef(2_000)).is_none());
        assert!(st.get_by_ref(SeriesRef(0)).is_none());
        let mut all: Vec<u64> = st.all().iter().map(|s| s.series_ref.0).collect();
        all.sort_unstable();
        assert_eq!(all, refs);
        // Remove all but the last ref: only its page stays.
        for &r in &refs[..refs.len() - 1] {
            st.remove(&mk(r));
            assert!(st.get_by_ref(SeriesRef(r)).is_none());
        }
        let pages: usize = st.by_ref.iter().map(|s| s.read().pages.len()).sum();
        assert_eq!(pages, 1);
        assert_eq!(st.get_by_ref(SeriesRef(1_999)).unwrap().series_ref.0, 1_999);
        st.remove(&mk(1_999));
        let pages: usize = st.by_ref.iter().map(|s| s.read().pages.len()).sum();
        assert_eq!(pages, 0);
    }

    #[test]
    fn append_cuts_chunk_at_sample_count() {
        let s = MemSeries::new(SeriesRef(1), Labels::empty(), true);
        let mut d = s.data.lock();
        for i in 0..(SAMPLES_PER_CHUNK as i64 * 2 + 5) {
            d.append(Sample::new(i * 1000, i as f64), 7_200_000);
        }
        assert_eq!(d.full.len(), 2);
        assert_eq!(d.open.num_samples(), 5);
        assert_eq!(d.num_samples(), SAMPLES_PER_CHUNK * 2 + 5);
    }

    /// Values XOR codes poorly: many decimals, no pattern (a gauge).
    fn noisy(i: i64) -> f64 {
        let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        (x as f64) / 1000.0 + 0.001
    }

    /// Samples as (time, value bits), to compare bit for bit.
    fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
        samples.iter().map(|x| (x.t, x.v.to_bits())).collect()
    }

    /// Every sample the series' chunks hold, as [`bits`].
    fn read_back(d: &SeriesData) -> Vec<(i64, u64)> {
        let samples: Vec<Sample> = d
            .snapshot(i64::MIN, i64::MAX)
            .iter()
            .flat_map(|c| chunk::decode(c.encoding, &c.bytes).unwrap())
            .collect();
        bits(&samples)
    }

    fn counts(d: &SeriesData) -> Vec<usize> {
        d.full
            .iter()
            .map(|c| usize::from(chunk::num_samples(&c.bytes).unwrap()))
            .collect()
    }

    #[test]
    fn a_chunk_xor_codes_poorly_is_packed_half_full_and_joined_at_the_cut() {
        let s = MemSeries::new(SeriesRef(1), Labels::empty(), true);
        let mut d = s.data.lock();
        let want: Vec<Sample> = (0..200i64)
            .map(|i| Sample::new(i * 15_000 + (i * 7) % 5, noisy(i)))
            .collect();
        for (i, &x) in want.iter().enumerate() {
            d.append(x, 7_200_000);
            // Every sample reads back at every step.
            assert_eq!(read_back(&d), bits(&want[..=i]), "after {} samples", i + 1);
            match i + 1 {
                // The first half is packed once the 61st sample comes.
                60 => assert_eq!(counts(&d), Vec::<usize>::new()),
                61 => {
                    assert_eq!(counts(&d), [HALF_CHUNK]);
                    assert!(d.half_cut);
                    assert_eq!(d.open.num_samples(), 1);
                }
                // Joined into one chunk of 120 when the 121st comes.
                121 => {
                    assert_eq!(counts(&d), [SAMPLES_PER_CHUNK]);
                    assert!(!d.half_cut);
                    let c = &d.full[0];
                    assert_eq!((c.mint, c.maxt), (want[0].t, want[119].t));
                    assert_eq!(c.encoding, Encoding::Packed);
                }
                181 => assert_eq!(counts(&d), [SAMPLES_PER_CHUNK, HALF_CHUNK]),
                _ => {}
            }
        }
        // The open buffer stayed small: 20 samples, not 80.
        assert_eq!(d.open.num_samples(), 20);
        assert_eq!(d.num_samples(), 200);
        for x in &want {
            assert_eq!(d.value_at(x.t).map(f64::to_bits), Some(x.v.to_bits()));
        }
    }

    #[test]
    fn chunks_that_code_well_are_not_packed_half_full() {
        let s = MemSeries::new(SeriesRef(1), Labels::empty(), true);
        let mut d = s.data.lock();
        for i in 0..(SAMPLES_PER_CHUNK as i64 + 1) {
            d.append(Sample::new(i * 15_000, (i * 4) as f64), 7_200_000);
            if i == HALF_CHUNK as i64 {
                assert!(d.full.is_empty() && !d.half_cut);
            }
        }
        assert_eq!(counts(&d), [SAMPLES_PER_CHUNK]);
    }

    #[test]
    fn a_half_chunk_is_joined_only_within_its_block_range() {
        // The block range ends 20 samples after the half cut: the cut there
        // joins 60 + 20, and the next range starts a chunk of its own.
        let range = 80 * 15_000;
        let s = MemSeries::new(SeriesRef(1), Labels::empty(), true);
        let mut d = s.data.lock();
        let want: Vec<Sample> = (0..150i64)
            .map(|i| Sample::new(i * 15_000, noisy(i)))
            .collect();
        for &x in &want {
            d.append(x, range);
        }
        assert_eq!(counts(&d), [80, HALF_CHUNK]);
        for c in &d.full {
            assert_eq!(range_end(c.mint, range), range_end(c.maxt, range));
        }
        assert_eq!(read_back(&d), bits(&want));

        // Truncation dropped the half: the cut keeps the open chunk as a
        // chunk of its own instead of joining it to anything else.
        let s = MemSeries::new(SeriesRef(2), Labels::empty(), true);
        let mut d = s.data.lock();
        for &x in &want[..70] {
            d.append(x, 7_200_000);
        }
        assert!(d.half_cut);
        d.full.clear();
        for &x in &want[70..] {
            d.append(x, 7_200_000);
        }
        assert_eq!(counts(&d), [HALF_CHUNK]);
        assert_eq!(read_back(&d), bits(&want[60..]));
    }

    #[test]
    fn append_cuts_chunk_at_block_boundary() {
        let s = MemSeries::new(SeriesRef(1), Labels::empty(), true);
        let mut d = s.data.lock();
        d.append(Sample::new(7_199_999, 1.0), 7_200_000);
        d.append(Sample::new(7_200_000, 2.0), 7_200_000);
        assert_eq!(d.full.len(), 1);
        assert_eq!((d.full[0].mint, d.full[0].maxt), (7_199_999, 7_199_999));
        // Negative timestamps round towards minus infinity.
        assert_eq!(range_end(-1, 10), 0);
        assert_eq!(range_end(i64::MAX - 1, 10), i64::MAX);
    }

    #[test]
    fn value_at_finds_samples_in_full_and_open_chunks() {
        let s = MemSeries::new(SeriesRef(1), Labels::empty(), true);
        let mut d = s.data.lock();
        for i in 0..250i64 {
            d.append(Sample::new(i * 2, i as f64), 7_200_000);
        }
        assert_eq!(d.value_at(0), Some(0.0));
        assert_eq!(d.value_at(238), Some(119.0));
        assert_eq!(d.value_at(240), Some(120.0));
        assert_eq!(d.value_at(498), Some(249.0));
        assert_eq!(d.value_at(3), None);
        assert_eq!(d.value_at(-2), None);
        assert_eq!(d.value_at(1000), None);
    }

    /// A full chunk is kept packed when that is smaller (decimals on a
    /// jittered 15 s grid), as XOR otherwise (values with no decimal form),
    /// and both read back bit for bit, `value_at` and a restore included.
    #[test]
    fn full_chunks_are_packed_when_smaller_and_read_back_exactly() {
        let odd = [f64::NAN, crate::model::STALE_NAN, -0.0, f64::INFINITY];
        let decimal = |i: i64| match i % 40 {
            7 => odd[(i / 40) as usize % odd.len()],
            _ => (i * 3) as f64 / 100.0,
        };
        // Beyond 2^53: no decimal form, every sample a packed exception.
        let huge = |i: i64| if i % 50 == 0 { 4e300 } else { 3e300 };
        for (value, packed) in [(&decimal as &dyn Fn(i64) -> f64, true), (&huge, false)] {
            let s = MemSeries::new(SeriesRef(1), Labels::empty(), true);
            let mut d = s.data.lock();
            let want: Vec<Sample> = (0..300i64)
                .map(|i| Sample::new(i * 15_000 + (i * 7) % 5, value(i)))
                .collect();
            for &x in &want {
                d.append(x, 7_200_000);
            }
            assert_eq!(d.full.len(), 2);
            let xor_len = |c: &HeadChunk| {
                let mut a = XorAppender::new();
                for x in chunk::decode(c.encoding, &c.bytes).unwrap() {
                    a.append(x.t, x.v);
                }
                a.finish().len()
            };
            for c in &d.full {
                let want_encoding = if packed {
                    Encoding::Packed
                } else {
                    Encoding::Xor
                };
                assert_eq!(c.encoding, want_encoding);
                assert!(c.bytes.len() <= xor_len(c));
                if packed {
                    assert!(c.bytes.len() * 2 < xor_len(c), "{} bytes", c.bytes.len());
                }
            }
            assert_eq!(read_back(&d), bits(&want));
            for x in &want {
                assert_eq!(d.value_at(x.t).map(f64::to_bits), Some(x.v.to_bits()));
            }
            // Restored from its chunks (a head snapshot), the newest sample
            // comes from the packed chunk when the open one is empty.
            let r = MemSeries::new(SeriesRef(2), Labels::empty(), true);
            let mut rd = r.data.lock();
            rd.restore(d.full.clone(), &[], 7_200_000);
            let last = want[SAMPLES_PER_CHUNK * 2 - 1];
            assert_eq!(
                rd.last().map(|x| (x.t, x.v.to_bits())),
                Some((last.t, last.v.to_bits()))
            );
        }
    }

    #[test]
    fn snapshot_selects_overlapping_chunks() {
        let s = MemSeries::new(SeriesRef(1), Labels::empty(), true);
        let mut d = s.data.lock();
        for i in 0..250i64 {
            d.append(Sample::new(i, i as f64), 7_200_000);
        }
        assert_eq!(d.snapshot(0, 10).len(), 1);
        assert_eq!(d.snapshot(100, 130).len(), 2);
        assert_eq!(d.snapshot(245, 1000).len(), 1);
        assert_eq!(d.snapshot(1000, 2000).len(), 0);
    }

    #[test]
    fn stripes_handle_hash_conflicts() {
        let st = StripeSeries::new(4);
        // Two label sets forced under one hash.
        let a = Labels::from_static(&[("a", "1")]).with_hash_for_test(7);
        let b = Labels::from_static(&[("b", "1")]).with_hash_for_test(7);
        let mk =
            |r, l: &Labels| Ok::<_, ()>(Arc::new(MemSeries::new(SeriesRef(r), l.clone(), false)));
        assert!(matches!(
            st.get_or_create(7, &a, || mk(1, &a)),
            Ok(GetOrCreate::Created(_))
        ));
        assert!(matches!(
            st.get_or_create(7, &b, || mk(2, &b)),
            Ok(GetOrCreate::Created(_))
        ));
        assert!(
            matches!(st.get_or_create(7, &b, || mk(3, &b)), Ok(GetOrCreate::Found(s)) if s.series_ref == SeriesRef(2))
        );
        assert_eq!(st.get(7, &a).unwrap().series_ref, SeriesRef(1));
        st.by_hash[7 & st.mask].write().remove(7, SeriesRef(1));
        assert_eq!(st.get(7, &b).unwrap().series_ref, SeriesRef(2));
        assert!(st.get(7, &a).is_none());
        assert_eq!(st.all().len(), 2);
    }

    #[test]
    fn the_by_labels_table_finds_every_series_after_growing() {
        let st = StripeSeries::new(1);
        let labels: Vec<Labels> = (0..5_000)
            .map(|i| Labels::try_from_pairs([("i", i.to_string())]).unwrap())
            .collect();
        for (r, l) in labels.iter().enumerate() {
            let s = Arc::new(MemSeries::new(SeriesRef(r as u64 + 1), l.clone(), false));
            let got = st.get_or_create(l.stable_hash(), l, || Ok::<_, ()>(s));
            assert!(matches!(got, Ok(GetOrCreate::Created(_))));
        }
        for (r, l) in labels.iter().enumerate() {
            assert_eq!(
                st.get(l.stable_hash(), l).unwrap().series_ref,
                SeriesRef(r as u64 + 1)
            );
        }
    }
}
#[cfg(test)]
mod size_tests {
    /// A head series is one allocation of the `Arc` counts (16 bytes) and
    /// a `MemSeries`: at most 224 bytes, an allocator size class (mimalloc
    /// and glibc alike) below 256. A million series hold a million of
    /// them, so a field that pushes it over costs 32 MB there.
    #[test]
    fn a_series_fits_in_224_bytes_with_its_arc_counts() {
        assert!(std::mem::size_of::<super::MemSeries>() + 16 <= 224);
    }
}
