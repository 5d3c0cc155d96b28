//! Read access over a time range: [`Querier`] selects series by matchers
//! across the head and every persisted block overlapping the range, and
//! yields each series' samples in time order through [`SeriesSampleIter`]:
//! one sorted, deduplicated stream per label set, tombstones applied; and
//! each series' native histogram samples through [`Series::histograms`].
//!
//! Reads snapshots (shared chunk bytes) taken under each series' lock, and
//! holds its blocks by `Arc`, so iteration never blocks appenders or
//! compaction. Must not modify anything.

use std::collections::BTreeSet;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::model::{CounterResetHint, FloatHistogram, HistogramValue, Labels, Matcher, Sample};
use crate::storage::block::{Block, BlockChunk};
use crate::storage::chunk::{self, Encoding, XorIter};
use crate::storage::head::{Head, HeadChunk};
use crate::storage::tombstones::Intervals;

/// The database's block list, shared with [`crate::storage::Db`], which
/// swaps it whole under the write lock.
pub(crate) type BlockList = Arc<RwLock<Vec<Arc<Block>>>>;

/// A read view of the database over `[mint, maxt]` (inclusive, ms).
///
/// Each read takes the head's data first and the block list after it:
/// compaction adds a block before it truncates the head, so data cut from
/// the head before the head read is in a block the later list holds, and
/// data read from both is deduplicated. (Holding the list taken when the
/// querier was made would miss data a compaction moved in between.)
pub struct Querier {
    head: Arc<Head>,
    blocks: BlockList,
    mint: i64,
    maxt: i64,
    problems: Arc<ReadProblems>,
}

/// What could not be read while answering from a querier (a block whose
/// index fails, a chunk failing its checksum): the answer is partial, and
/// the caller must say so ([`Querier::take_problems`]), never return it as
/// if it were whole.
#[derive(Default)]
struct ReadProblems(parking_lot::Mutex<Vec<String>>);

impl ReadProblems {
    fn add(&self, what: String) {
        let mut v = self.0.lock();
        // Bounded: one damaged block can fail thousands of chunks.
        if v.len() < 16 && !v.contains(&what) {
            v.push(what);
        }
    }
}

/// One chunk of a selected series, from the head or from a block.
#[derive(Clone)]
enum SourceChunk {
    Head(HeadChunk),
    Block(BlockChunk),
}

impl SourceChunk {
    fn bounds(&self) -> (i64, i64) {
        match self {
            SourceChunk::Head(c) => (c.mint, c.maxt),
            SourceChunk::Block(c) => (c.mint, c.maxt),
        }
    }

    /// The chunk's samples; a chunk failing its checksum or its decoding
    /// (a block's, or one the head packed) is logged, recorded in
    /// `problems` and read as empty, so one damaged chunk does not fail the
    /// whole query but the answer says it is partial.
    fn iter(&self, problems: &ReadProblems) -> ChunkIter<'_> {
        let data = match self {
            SourceChunk::Head(c) => Ok((c.encoding, &c.bytes[..])),
            SourceChunk::Block(c) => c.data().map_err(|e| e.to_string()),
        };
        let decoded = match data {
            Ok((Encoding::Xor, bytes)) => return ChunkIter::Xor(XorIter::new(bytes)),
            // Read by `Series::histograms`.
            Ok((e, _)) if e.is_histogram() => Ok(Vec::new()),
            // A block's packed chunk, or a full chunk the head packed
            // (`chunk::pack_full`).
            Ok((e, bytes)) => match self {
                SourceChunk::Block(c) => c.decode(e, bytes).map_err(|e| e.to_string()),
                SourceChunk::Head(_) => chunk::decode(e, bytes).map_err(|e| e.to_string()),
            },
            Err(e) => Err(e),
        };
        match decoded {
            Ok(samples) => ChunkIter::Decoded(samples.into_iter()),
            Err(error) => {
                let what = match self {
                    SourceChunk::Head(_) => {
                        tracing::error!(%error, "skipping unreadable head chunk");
                        "head"
                    }
                    SourceChunk::Block(c) => {
                        tracing::error!(%error, chunk = ?c, "skipping unreadable block chunk");
                        "block"
                    }
                };
                problems.add(format!("a {what} chunk could not be read and was skipped, the result may be incomplete: {error}"));
                ChunkIter::Decoded(Vec::new().into_iter())
            }
        }
    }
}

impl SourceChunk {
    /// Whether this is a histogram chunk, from its encoding byte alone
    /// (a block chunk whose byte cannot be read counts as not: its reader
    /// reports it).
    fn is_histogram(&self) -> bool {
        match self {
            SourceChunk::Head(c) => c.encoding.is_histogram(),
            SourceChunk::Block(c) => c.encoding().is_some_and(Encoding::is_histogram),
        }
    }

    /// The chunk's histogram samples in their stored kind, empty for a
    /// float chunk, the first sample's hint taken from the chunk header. A
    /// block chunk that fails its checksum or decoding is reported as in
    /// [`SourceChunk::iter`] and read as empty.
    fn histogram_values(&self, problems: &ReadProblems) -> Vec<(i64, HistogramValue)> {
        let decoded = match self {
            SourceChunk::Head(c) if c.encoding.is_histogram() => {
                chunk::decode_histogram_values(c.encoding, &c.bytes).map_err(|e| e.to_string())
            }
            SourceChunk::Head(_) => return Vec::new(),
            SourceChunk::Block(b) => match b.data() {
                Ok((e, bytes)) if e.is_histogram() => {
                    chunk::decode_histogram_values(e, bytes).map_err(|e| e.to_string())
                }
                Ok(_) => return Vec::new(),
                Err(e) => Err(e.to_string()),
            },
        };
        decoded.unwrap_or_else(|error| {
            tracing::error!(%error, "skipping unreadable histogram chunk");
            problems.add(format!("a histogram chunk could not be read and was skipped, the result may be incomplete: {error}"));
            Vec::new()
        })
    }
}

/// Makes a chunk's first sample say "unknown" about a counter reset, as
/// Prometheus's readers do (the chunk before it may be gone), unless it is
/// a gauge histogram.
fn clear_reset_hint(h: &mut HistogramValue) {
    let hint = match h {
        HistogramValue::Int(h) => &mut h.counter_reset_hint,
        HistogramValue::Float(h) => &mut h.counter_reset_hint,
    };
    if *hint != CounterResetHint::Gauge {
        *hint = CounterResetHint::Unknown;
    }
}

/// Whether a sample at `t` is read: inside `[mint, maxt]` and not deleted.
#[inline]
fn visible(t: i64, mint: i64, maxt: i64, deleted: Option<&Intervals>) -> bool {
    t >= mint && t <= maxt && !deleted.is_some_and(|d| d.contains(t))
}

/// The samples of one chunk: XOR chunks decode lazily, packed chunks are
/// decoded whole (their columns are stored one after the other).
enum ChunkIter<'a> {
    Xor(XorIter<&'a [u8]>),
    Decoded(std::vec::IntoIter<Sample>),
}

impl Iterator for ChunkIter<'_> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        match self {
            ChunkIter::Xor(it) => it.next(),
            ChunkIter::Decoded(it) => it.next(),
        }
    }
}

/// The chunks one source (the head or one block) holds for a series, with
/// that source's deleted intervals.
#[derive(Clone)]
struct Part {
    chunks: Vec<SourceChunk>,
    deleted: Option<Intervals>,
}

/// One selected series: its labels and its chunks overlapping the range.
#[derive(Clone)]
pub struct Series {
    labels: Labels,
    problems: Arc<ReadProblems>,
    /// Sources oldest first (blocks by time, then the head).
    parts: Vec<Part>,
    mint: i64,
    maxt: i64,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels)
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Series {
    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The samples within the querier's range, oldest first, each timestamp
    /// once (where sources overlap, the oldest source's sample wins).
    pub fn samples(&self) -> SeriesSampleIter<'_> {
        let mut chunks: Vec<(&SourceChunk, Option<&Intervals>, usize)> = self
            .parts
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.chunks.iter().map(move |c| (c, p.deleted.as_ref(), i)))
            // Block histogram chunks are skipped when read (after their
            // checksum, so a damaged encoding byte is reported, not
            // skipped).
            .filter(|(c, _, _)| !matches!(c, SourceChunk::Head(h) if h.encoding.is_histogram()))
            .collect();
        chunks.sort_by_key(|(c, _, _)| c.bounds().0);
        let disjoint = chunks
            .windows(2)
            .all(|w| w[0].0.bounds().1 < w[1].0.bounds().0);
        if disjoint {
            return SeriesSampleIter {
                inner: Inner::Sequential {
                    chunks: chunks
                        .into_iter()
                        .map(|(c, d, _)| (c, d))
                        .collect::<Vec<_>>()
                        .into_iter(),
                    current: None,
                },
                mint: self.mint,
                maxt: self.maxt,
                problems: &self.problems,
            };
        }
        // Overlapping sources (a block and the head after a crash between
        // block write and head truncation, or overlapping blocks): merge.
        // Each timestamp once, the oldest source's value.
        let mut all: Vec<(usize, Sample)> = Vec::new();
        for (c, deleted, source) in chunks {
            all.extend(
                c.iter(&self.problems)
                    .filter(|s| visible(s.t, self.mint, self.maxt, deleted))
                    .map(|s| (source, s)),
            );
        }
        all.sort_by_key(|(source, s)| (s.t, *source));
        all.dedup_by_key(|(_, s)| s.t);
        let all: Vec<Sample> = all.into_iter().map(|(_, s)| s).collect();
        SeriesSampleIter {
            inner: Inner::Merged(all.into_iter()),
            mint: self.mint,
            maxt: self.maxt,
            problems: &self.problems,
        }
    }

    /// What [`Series::samples`] yields, as a `Vec`, with as few copies as
    /// the chunks allow: a decoded packed chunk's buffer becomes the
    /// answer's (filtered in place) and later chunks are appended after
    /// one reservation each, instead of growing the answer sample by
    /// sample.
    pub fn samples_vec(&self) -> Vec<Sample> {
        let chunks = match self.samples().inner {
            Inner::Merged(all) => return all.collect(),
            Inner::Sequential { chunks, .. } => chunks,
        };
        let (mint, maxt) = (self.mint, self.maxt);
        let mut out: Vec<Sample> = Vec::new();
        for (c, deleted) in chunks {
            if c.bounds().0 > maxt {
                break;
            }
            match c.iter(&self.problems) {
                ChunkIter::Decoded(decoded) => {
                    // Not advanced: collecting reuses the buffer.
                    let mut decoded: Vec<Sample> = decoded.collect();
                    // Timestamps increase: what is in range is one run.
                    let lo = decoded.partition_point(|s| s.t < mint);
                    let hi = decoded.partition_point(|s| s.t <= maxt).max(lo);
                    decoded.truncate(hi);
                    decoded.drain(..lo);
                    if let Some(d) = deleted {
                        decoded.retain(|s| !d.contains(s.t));
                    }
                    if out.is_empty() {
                        out = decoded;
                    } else {
                        out.extend_from_slice(&decoded);
                    }
                }
                ChunkIter::Xor(xor) => {
                    out.reserve(xor.size_hint().1.unwrap_or(0));
                    for s in xor {
                        if s.t > maxt {
                            break;
                        }
                        if visible(s.t, mint, maxt, deleted) {
                            out.push(s);
                        }
                    }
                }
            }
        }
        out
    }

    /// The native histogram samples within the querier's range, oldest
    /// first, as float histograms, each timestamp once (where sources
    /// overlap, the oldest source's sample wins). A stale marker is a
    /// histogram whose `sum` is the stale NaN. As Prometheus's chunk
    /// readers, the first sample of each chunk says "unknown" about a
    /// counter reset (gauge in gauge chunks), later ones "no reset".
    pub fn histograms(&self) -> impl Iterator<Item = (i64, FloatHistogram)> {
        self.collect_histograms(false)
            .into_iter()
            .map(|(t, h)| (t, h.to_float()))
    }

    /// [`Series::histograms`] in their stored kind (integer or float
    /// histograms), the first sample of each chunk carrying what its
    /// chunk's header says (for re-encoding, as remote read does).
    pub fn histogram_values(&self) -> Vec<(i64, HistogramValue)> {
        self.collect_histograms(true)
    }

    fn collect_histograms(&self, header_hints: bool) -> Vec<(i64, HistogramValue)> {
        // (t, source, chunk number, value).
        let mut all: Vec<(i64, usize, usize, HistogramValue)> = Vec::new();
        let mut chunk_no = 0usize;
        for (source, p) in self.parts.iter().enumerate() {
            for c in &p.chunks {
                chunk_no += 1;
                let (cmint, cmaxt) = c.bounds();
                if cmaxt < self.mint || cmint > self.maxt || !c.is_histogram() {
                    continue;
                }
                let mut values = c.histogram_values(&self.problems);
                if !header_hints {
                    if let Some((_, first)) = values.first_mut() {
                        clear_reset_hint(first);
                    }
                }
                all.extend(
                    values
                        .into_iter()
                        .filter(|(t, _)| *t >= self.mint && *t <= self.maxt)
                        .filter(|(t, _)| !p.deleted.as_ref().is_some_and(|d| d.contains(*t)))
                        .map(|(t, h)| (t, source, chunk_no, h)),
                );
            }
        }
        // Usually already in order (one source, chunks in time order).
        if !all.windows(2).all(|w| w[0].0 < w[1].0) {
            all.sort_by_key(|(t, source, _, _)| (*t, *source));
            all.dedup_by_key(|(t, _, _, _)| *t);
            // Interleaved chunks (out-of-order data, overlapping blocks):
            // a sample whose predecessor is from another chunk cannot keep
            // its chunk's "no reset" claim (Prometheus's merging iterator
            // does the same).
            for i in 1..all.len() {
                if all[i].2 != all[i - 1].2 {
                    clear_reset_hint(&mut all[i].3);
                }
            }
        }
        all.into_iter().map(|(t, _, _, h)| (t, h)).collect()
    }

    /// Whether the series has histogram chunks in the range. Cheap: reads
    /// one encoding byte per block chunk, checks and decodes nothing.
    pub fn has_histograms(&self) -> bool {
        self.parts
            .iter()
            .any(|p| p.chunks.iter().any(SourceChunk::is_histogram))
    }

    fn has_tombstones(&self) -> bool {
        self.parts.iter().any(|p| p.deleted.is_some())
    }
}

enum Inner<'a> {
    Sequential {
        chunks: std::vec::IntoIter<(&'a SourceChunk, Option<&'a Intervals>)>,
        current: Option<(ChunkIter<'a>, Option<&'a Intervals>)>,
    },
    Merged(std::vec::IntoIter<Sample>),
}

/// Iterates one series' samples in `[mint, maxt]`, chunk by chunk.
pub struct SeriesSampleIter<'a> {
    inner: Inner<'a>,
    mint: i64,
    maxt: i64,
    problems: &'a ReadProblems,
}

impl Iterator for SeriesSampleIter<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        match &mut self.inner {
            Inner::Merged(it) => it.next(),
            Inner::Sequential { chunks, current } => loop {
                if let Some((it, deleted)) = current {
                    for s in it.by_ref() {
                        if s.t > self.maxt {
                            break;
                        }
                        if visible(s.t, self.mint, self.maxt, *deleted) {
                            return Some(s);
                        }
                    }
                    *current = None;
                }
                let (c, deleted) = chunks.next()?;
                *current = Some((c.iter(self.problems), deleted));
            },
        }
    }
}

impl Querier {
    pub(crate) fn new(head: Arc<Head>, blocks: BlockList, mint: i64, maxt: i64) -> Self {
        Self {
            head,
            blocks,
            mint,
            maxt,
            problems: Arc::default(),
        }
    }

    /// What could not be read so far through this querier or the series it
    /// returned, as warnings for the answer; emptied by the call.
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.problems.0.lock())
    }

    /// The blocks overlapping the range, as the list is now. Call after
    /// reading the head (see [`Querier`]).
    fn blocks_now(&self) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .iter()
            .filter(|b| b.meta().min_time <= self.maxt && b.meta().max_time > self.mint)
            .cloned()
            .collect()
    }

    /// The querier's time range.
    pub fn range(&self) -> (i64, i64) {
        (self.mint, self.maxt)
    }

    /// Series matching all `matchers` that have data in the range, sorted by
    /// labels. An empty matcher list selects every series. A block that
    /// cannot be read is logged and left out; the rest still answers.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<Series> {
        let head = self.head.select(matchers, self.mint, self.maxt);
        let mut found: Vec<(Labels, Part)> = Vec::new();
        for b in &self.blocks_now() {
            let series = match b.select(matchers, self.mint, self.maxt) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(block = %b.meta().ulid, error = %e, "block read failed");
                    self.problems.add(format!(
                        "block {} could not be read and was left out, the result may be incomplete: {e}",
                        b.meta().ulid
                    ));
                    continue;
                }
            };
            let tombstones = b.tombstones();
            for s in series {
                let deleted = tombstones.get(s.id).cloned();
                if deleted
                    .as_ref()
                    .is_some_and(|d| d.covers(self.mint, self.maxt))
                {
                    continue;
                }
                let chunks = s.chunks.into_iter().map(SourceChunk::Block).collect();
                found.push((s.labels, Part { chunks, deleted }));
            }
        }
        for (labels, chunks, deleted) in head {
            let chunks = chunks.into_iter().map(SourceChunk::Head).collect();
            found.push((labels, Part { chunks, deleted }));
        }
        // Stable sort keeps source order (blocks by time, then head) within
        // one label set.
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<Series> = Vec::new();
        for (labels, part) in found {
            match out.last_mut() {
                Some(last) if last.labels == labels => last.parts.push(part),
                _ => out.push(Series {
                    labels,
                    problems: self.problems.clone(),
                    parts: vec![part],
                    mint: self.mint,
                    maxt: self.maxt,
                }),
            }
        }
        // A series whose every sample in range is deleted is not selected.
        out.retain(|s| {
            !s.has_tombstones() || s.samples().next().is_some() || s.histograms().next().is_some()
        });
        out
    }

    /// The label sets of the series [`Querier::select`] returns, sorted,
    /// without reading or copying the head's chunks (the series API).
    pub fn select_labels(&self, matchers: &[Matcher]) -> Vec<Labels> {
        let mut out = self.labels_in_range(matchers, &self.blocks_now());
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The label sets of [`Querier::select`], in no order, possibly
    /// repeated across the head and blocks. Falls back to `select` when
    /// tombstones touch the answer (a series is left out when every sample
    /// in range is deleted, which takes the samples to know).
    fn labels_in_range(&self, matchers: &[Matcher], blocks: &[Arc<Block>]) -> Vec<Labels> {
        let full = || {
            self.select(matchers)
                .into_iter()
                .map(|s| s.labels)
                .collect()
        };
        let Some(mut out) = self.head.select_labels(matchers, self.mint, self.maxt) else {
            return full();
        };
        for b in blocks {
            if b.has_tombstones() {
                return full();
            }
            match b.select_labels(matchers, self.mint, self.maxt) {
                Ok(labels) => out.extend(labels),
                Err(e) => self.block_failed(b, &e),
            }
        }
        out
    }

    fn block_failed(&self, b: &Block, e: &dyn std::fmt::Display) {
        tracing::error!(block = %b.meta().ulid, error = %e, "block read failed");
        self.problems.add(format!(
            "block {} could not be read and was left out, the result may be incomplete: {e}",
            b.meta().ulid
        ));
    }

    /// The blocks of the range split into those whose index alone answers
    /// label questions and the rest, whose series must be read: as
    /// Prometheus's `LabelNames`/`LabelValues`, a block the range overlaps
    /// answers from its index (every series of the block, whether or not
    /// its samples fall inside the range), unless something in it is
    /// deleted (then a series whose every sample is deleted must not
    /// count, which takes reading it).
    fn blocks_by_index(&self) -> (Vec<Arc<Block>>, Vec<Arc<Block>>) {
        self.blocks_now()
            .into_iter()
            .partition(|b| !b.has_tombstones())
    }

    /// Sorted label names of the series matching `matchers` (all series when
    /// empty) with data in the range (in a block the range overlaps, as
    /// Prometheus answers: see `blocks_by_index`).
    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        let (indexed, scanned) = self.blocks_by_index();
        let mut names: BTreeSet<String> = BTreeSet::new();
        if matchers.is_empty() && self.covers_head() && scanned.is_empty() {
            names.extend(self.head.label_names());
        } else {
            for l in self.labels_in_range(matchers, &scanned) {
                for l in l.iter() {
                    if !names.contains(&*l.name) {
                        names.insert(l.name.to_string());
                    }
                }
            }
        }
        for b in &indexed {
            match b.label_names(matchers) {
                Ok(n) => names.extend(n),
                Err(e) => self.block_failed(b, &e),
            }
        }
        names.into_iter().collect()
    }

    /// Sorted values of label `name` among the series matching `matchers`
    /// with data in the range (in a block the range overlaps, as Prometheus
    /// answers: see `blocks_by_index`).
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        let (indexed, scanned) = self.blocks_by_index();
        let mut values: BTreeSet<String> = BTreeSet::new();
        if matchers.is_empty() && self.covers_head() && scanned.is_empty() {
            values.extend(self.head.label_values(name));
        } else {
            for l in self.labels_in_range(matchers, &scanned) {
                if let Some(v) = l.get(name) {
                    if !values.contains(v) {
                        values.insert(v.to_string());
                    }
                }
            }
        }
        for b in &indexed {
            match b.label_values(name, matchers) {
                Ok(v) => values.extend(v),
                Err(e) => self.block_failed(b, &e),
            }
        }
        values.into_iter().collect()
    }

    /// Whether the range holds all of the head's data, so the index alone
    /// answers label questions.
    fn covers_head(&self) -> bool {
        match (self.head.min_t(), self.head.max_t()) {
            (Some(lo), Some(hi)) => self.mint <= lo && self.maxt >= hi,
            _ => true,
        }
    }
}
