//! Integer histogram chunk (Prometheus's `EncHistogram`, encoding 2):
//! [`HistogramAppender`] encodes [`Histogram`] samples, [`HistogramIter`]
//! decodes them. Bit-compatible with Prometheus's
//! `tsdb/chunkenc/histogram.go`
//! (<https://github.com/prometheus/prometheus/blob/v3.1.0/tsdb/chunkenc/histogram.go>),
//! including when a sample is appended, the chunk recoded for new buckets,
//! or a new chunk needed (schema, zero threshold or custom bounds change,
//! counter reset, gauge/counter switch, a sample after a stale marker).
//!
//! Per sample: timestamp, count and zero count as delta-of-delta varbits
//! (the first sample raw), the sum XOR-encoded, and each bucket's
//! delta-within-histogram value as a delta-of-delta varbit. A stale marker
//! writes no buckets. Layout: `docs/format/chunks-histogram.md`.

use super::bstream::{BitReader, BitWriter};
use super::histogram_meta::{
    bucket_indices, count_spans, expand_counts, merge_side, recoded_spans, CounterResetHeader,
    Layout, LayoutFault, SideMerge, HIST_HEADER_LEN,
};
use super::varbit::{put_varbit_int, put_varbit_uint, read_varbit_int, read_varbit_uint, XorField};
use super::Error;
use crate::model::{CounterResetHint, Histogram};

/// Prometheus's initial chunk allocation.
const INITIAL_CAPACITY: usize = 128;

/// What a sample needs before it can go into a chunk.
#[derive(Debug)]
pub(super) enum Fit {
    /// Appendable as is.
    Append,
    /// Appendable after the chunk and/or the sample take the merged spans.
    Merge {
        positive: SideMerge,
        negative: SideMerge,
    },
    /// A new chunk with this header is needed.
    Cut(CounterResetHeader),
}

/// Absolute counts from delta-encoded bucket counts (wrapping, as Go).
pub(super) fn absolute(deltas: &[i64]) -> Vec<i64> {
    let mut cur = 0i64;
    deltas
        .iter()
        .map(|d| {
            cur = cur.wrapping_add(*d);
            cur
        })
        .collect()
}

/// Delta encoding of absolute counts.
fn deltas(abs: &[i64]) -> Vec<i64> {
    let mut prev = 0i64;
    abs.iter()
        .map(|a| {
            let d = a.wrapping_sub(prev);
            prev = *a;
            d
        })
        .collect()
}

/// Encodes integer histogram samples into one chunk.
#[derive(Debug, Clone)]
pub struct HistogramAppender {
    w: BitWriter,
    num: u16,
    layout: Layout,
    p_idx: Vec<i64>,
    n_idx: Vec<i64>,
    first_t: i64,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    /// Last sample's buckets (delta-within-histogram, as sent).
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    /// Change of each bucket value from the sample before.
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: XorField,
}

impl HistogramAppender {
    /// An empty chunk whose header says `header`.
    pub fn new(header: CounterResetHeader) -> Self {
        let mut w = BitWriter::with_capacity(INITIAL_CAPACITY);
        w.bytes_mut().extend_from_slice(&[0, 0, header.to_bits()]);
        Self {
            w,
            num: 0,
            layout: Layout::default(),
            p_idx: Vec::new(),
            n_idx: Vec::new(),
            first_t: 0,
            t: i64::MIN,
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: XorField::writer(0.0),
        }
    }

    /// The chunk's counter reset header.
    pub fn header(&self) -> CounterResetHeader {
        CounterResetHeader::from_byte(self.w.bytes()[2])
    }

    /// Number of samples appended.
    pub fn num_samples(&self) -> usize {
        usize::from(self.num)
    }

    /// The chunk so far (always complete and decodable).
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// Finishes the chunk: exactly its bytes.
    pub fn finish(self) -> Box<[u8]> {
        self.w.into_bytes().into_boxed_slice()
    }

    /// Timestamp of the first sample, if any.
    pub fn first_t(&self) -> Option<i64> {
        (self.num > 0).then_some(self.first_t)
    }

    /// Timestamp of the last sample, if any.
    pub fn last_t(&self) -> Option<i64> {
        (self.num > 0).then_some(self.t)
    }

    fn last_is_stale(&self) -> bool {
        crate::model::is_stale_nan(self.sum.value())
    }

    /// Prometheus's `appendable` / `appendableGauge` for a non-empty chunk.
    pub(super) fn fit(&self, h: &Histogram) -> Fit {
        let gauge_chunk = self.header() == CounterResetHeader::Gauge;
        if h.counter_reset_hint == CounterResetHint::Gauge {
            if !gauge_chunk {
                return Fit::Cut(CounterResetHeader::Gauge);
            }
            if h.is_stale() {
                return Fit::Append;
            }
            if self.last_is_stale()
                || h.schema != self.layout.schema
                || h.zero_threshold != self.layout.zero_threshold
                || (crate::model::histogram::is_custom_buckets(h.schema)
                    && h.custom_values != self.layout.custom_values)
            {
                return Fit::Cut(CounterResetHeader::Gauge);
            }
            return self.merge(h, true);
        }
        match self.counter_fit(h) {
            Ok(fit) => fit,
            Err(header) => Fit::Cut(header),
        }
    }

    /// The counter-histogram rules; `Err(header)` means a new chunk.
    fn counter_fit(&self, h: &Histogram) -> Result<Fit, CounterResetHeader> {
        use CounterResetHeader as H;
        if self.header() == H::Gauge {
            return Err(H::NotCounterReset);
        }
        if h.counter_reset_hint == CounterResetHint::CounterReset {
            return Err(H::CounterReset);
        }
        if h.is_stale() {
            return Ok(Fit::Append);
        }
        if self.last_is_stale() {
            return Err(H::Unknown);
        }
        if h.count < self.cnt {
            return Err(H::CounterReset);
        }
        if h.schema != self.layout.schema || h.zero_threshold != self.layout.zero_threshold {
            return Err(H::Unknown);
        }
        if crate::model::histogram::is_custom_buckets(h.schema)
            && h.custom_values != self.layout.custom_values
        {
            return Err(H::CounterReset);
        }
        if h.zero_count < self.zcnt {
            return Err(H::CounterReset);
        }
        match self.merge(h, false) {
            Fit::Cut(_) => Err(H::CounterReset),
            fit => Ok(fit),
        }
    }

    fn merge(&self, h: &Histogram, gauge: bool) -> Fit {
        let hp = bucket_indices(&h.positive_spans);
        let hn = bucket_indices(&h.negative_spans);
        let (Some(positive), Some(negative)) = (
            merge_side(
                &self.p_idx,
                &absolute(&self.p_buckets),
                &hp,
                &absolute(&h.positive_buckets),
                gauge,
            ),
            merge_side(
                &self.n_idx,
                &absolute(&self.n_buckets),
                &hn,
                &absolute(&h.negative_buckets),
                gauge,
            ),
        ) else {
            return Fit::Cut(CounterResetHeader::CounterReset);
        };
        if positive.forward || positive.backward || negative.forward || negative.backward {
            Fit::Merge { positive, negative }
        } else {
            Fit::Append
        }
    }

    /// The header a new chunk cut after this one (for size or time) gets
    /// for `h` (Prometheus passes the previous appender to the new chunk).
    pub fn header_for_next(&self, h: &Histogram) -> CounterResetHeader {
        match h.counter_reset_hint {
            CounterResetHint::Gauge => CounterResetHeader::Gauge,
            CounterResetHint::CounterReset => CounterResetHeader::CounterReset,
            _ => match self.counter_fit(h) {
                Ok(_) => CounterResetHeader::NotCounterReset,
                Err(header) => header,
            },
        }
    }

    /// Appends `h` at `t` if it fits this chunk, recoding the chunk when
    /// the sample brings new buckets. `Err(header)` means it does not fit:
    /// the caller starts a new chunk with that header and appends there.
    ///
    /// The caller guarantees `t` is after the last sample, `h` is valid
    /// ([`Histogram::validate`]) and the chunk has room (fewer than
    /// `u16::MAX` samples).
    ///
    /// # Errors
    /// The header of the new chunk needed.
    pub fn append(&mut self, t: i64, h: &Histogram) -> Result<(), CounterResetHeader> {
        if self.num == 0 {
            let header = match h.counter_reset_hint {
                CounterResetHint::Gauge => Some(CounterResetHeader::Gauge),
                CounterResetHint::CounterReset => Some(CounterResetHeader::CounterReset),
                _ => None,
            };
            if let Some(header) = header {
                self.w.bytes_mut()[2] = header.to_bits();
            }
            self.write(t, h);
            return Ok(());
        }
        match self.fit(h) {
            Fit::Append => {
                self.write(t, h);
                Ok(())
            }
            Fit::Cut(header) => Err(header),
            Fit::Merge { positive, negative } => {
                let gauge = h.counter_reset_hint == CounterResetHint::Gauge;
                let any_forward = positive.forward || negative.forward;
                let any_backward = positive.backward || negative.backward;
                let (p_spans, n_spans) = if any_forward {
                    (
                        recoded_spans(&h.positive_spans, &positive, any_backward, gauge),
                        recoded_spans(&h.negative_spans, &negative, any_backward, gauge),
                    )
                } else {
                    (
                        self.layout.positive_spans.clone(),
                        self.layout.negative_spans.clone(),
                    )
                };
                if any_forward {
                    self.recode(&p_spans, &n_spans);
                }
                let mut h2 = h.clone();
                h2.positive_buckets = deltas(&expand_counts(
                    &bucket_indices(&h.positive_spans),
                    &absolute(&h.positive_buckets),
                    &self.p_idx,
                ));
                h2.negative_buckets = deltas(&expand_counts(
                    &bucket_indices(&h.negative_spans),
                    &absolute(&h.negative_buckets),
                    &self.n_idx,
                ));
                h2.positive_spans = p_spans;
                h2.negative_spans = n_spans;
                self.write(t, &h2);
                Ok(())
            }
        }
    }

    /// Re-encodes every sample with the new spans (Prometheus `recode`:
    /// decode all, insert empty buckets, encode again).
    fn recode(&mut self, p_spans: &[crate::model::Span], n_spans: &[crate::model::Span]) {
        let mut fresh = HistogramAppender::new(self.header());
        let p_new = bucket_indices(p_spans);
        let n_new = bucket_indices(n_spans);
        let old = std::mem::take(&mut self.w).into_bytes();
        for (t, mut h) in HistogramIter::new(&old[..]).by_ref() {
            if !h.is_stale() {
                h.positive_buckets = deltas(&expand_counts(
                    &self.p_idx,
                    &absolute(&h.positive_buckets),
                    &p_new,
                ));
                h.negative_buckets = deltas(&expand_counts(
                    &self.n_idx,
                    &absolute(&h.negative_buckets),
                    &n_new,
                ));
                h.positive_spans = p_spans.to_vec();
                h.negative_spans = n_spans.to_vec();
            }
            fresh.write(t, &h);
        }
        *self = fresh;
    }

    /// Writes a sample that fits the chunk's layout (or starts it).
    fn write(&mut self, t: i64, h: &Histogram) {
        let stale_marker;
        let h = if h.is_stale() {
            stale_marker = Histogram {
                sum: h.sum,
                ..Default::default()
            };
            &stale_marker
        } else {
            h
        };
        let (mut t_delta, mut cnt_delta, mut zcnt_delta) = (0, 0, 0);
        if self.num == 0 {
            self.layout = Layout {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                positive_spans: h.positive_spans.clone(),
                negative_spans: h.negative_spans.clone(),
                custom_values: h.custom_values.clone(),
            };
            self.layout.write(&mut self.w);
            self.p_idx = bucket_indices(&h.positive_spans);
            self.n_idx = bucket_indices(&h.negative_spans);
            self.p_buckets = vec![0; self.p_idx.len()];
            self.n_buckets = vec![0; self.n_idx.len()];
            self.p_deltas = vec![0; self.p_idx.len()];
            self.n_deltas = vec![0; self.n_idx.len()];
            put_varbit_int(&mut self.w, t);
            put_varbit_uint(&mut self.w, h.count);
            put_varbit_uint(&mut self.w, h.zero_count);
            self.w.write_bits(h.sum.to_bits(), 64);
            self.sum = XorField::writer(h.sum);
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                put_varbit_int(&mut self.w, b);
            }
            self.first_t = t;
        } else {
            t_delta = t.wrapping_sub(self.t);
            cnt_delta = (h.count as i64).wrapping_sub(self.cnt as i64);
            zcnt_delta = (h.zero_count as i64).wrapping_sub(self.zcnt as i64);
            let (mut cnt_dod, mut zcnt_dod) = (
                cnt_delta.wrapping_sub(self.cnt_delta),
                zcnt_delta.wrapping_sub(self.zcnt_delta),
            );
            if h.is_stale() {
                (cnt_dod, zcnt_dod) = (0, 0);
            }
            put_varbit_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
            put_varbit_int(&mut self.w, cnt_dod);
            put_varbit_int(&mut self.w, zcnt_dod);
            self.sum.write(&mut self.w, h.sum);
            for (i, &b) in h.positive_buckets.iter().enumerate() {
                let delta = b.wrapping_sub(self.p_buckets[i]);
                put_varbit_int(&mut self.w, delta.wrapping_sub(self.p_deltas[i]));
                self.p_deltas[i] = delta;
            }
            for (i, &b) in h.negative_buckets.iter().enumerate() {
                let delta = b.wrapping_sub(self.n_buckets[i]);
                put_varbit_int(&mut self.w, delta.wrapping_sub(self.n_deltas[i]));
                self.n_deltas[i] = delta;
            }
        }
        self.t = t;
        self.cnt = h.count;
        self.zcnt = h.zero_count;
        self.t_delta = t_delta;
        self.cnt_delta = cnt_delta;
        self.zcnt_delta = zcnt_delta;
        // Go's `copy`: a stale marker has no buckets and leaves them as is.
        for (d, s) in self.p_buckets.iter_mut().zip(&h.positive_buckets) {
            *d = *s;
        }
        for (d, s) in self.n_buckets.iter_mut().zip(&h.negative_buckets) {
            *d = *s;
        }
        self.num = self.num.wrapping_add(1);
        self.w.bytes_mut()[..2].copy_from_slice(&self.num.to_be_bytes());
    }
}

/// Iterates the samples of one integer histogram chunk. Ends early at the
/// first decoding error ([`HistogramIter::err`]); never panics on
/// arbitrary bytes.
#[derive(Debug, Clone)]
pub struct HistogramIter<B: AsRef<[u8]>> {
    bytes: B,
    total: u16,
    read: u16,
    header: CounterResetHeader,
    r: BitReader,
    layout: Layout,
    t: i64,
    cnt: u64,
    zcnt: u64,
    t_delta: i64,
    cnt_delta: i64,
    zcnt_delta: i64,
    p_buckets: Vec<i64>,
    n_buckets: Vec<i64>,
    p_deltas: Vec<i64>,
    n_deltas: Vec<i64>,
    sum: XorField,
    err: Option<Error>,
}

impl<B: AsRef<[u8]>> HistogramIter<B> {
    /// An iterator over the chunk in `bytes`.
    pub fn new(bytes: B) -> Self {
        let b = bytes.as_ref();
        let (total, header, err) = match b.first_chunk::<HIST_HEADER_LEN>() {
            Some(h) => (
                u16::from_be_bytes([h[0], h[1]]),
                CounterResetHeader::from_byte(h[2]),
                None,
            ),
            None => (
                0,
                CounterResetHeader::Unknown,
                Some(Error::TooShort { len: b.len() }),
            ),
        };
        Self {
            bytes,
            total,
            read: 0,
            header,
            r: BitReader::at_byte(HIST_HEADER_LEN),
            layout: Layout::default(),
            t: 0,
            cnt: 0,
            zcnt: 0,
            t_delta: 0,
            cnt_delta: 0,
            zcnt_delta: 0,
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
            p_deltas: Vec::new(),
            n_deltas: Vec::new(),
            sum: XorField::reader(0.0),
            err,
        }
    }

    /// The chunk's counter reset header.
    pub fn header(&self) -> CounterResetHeader {
        self.header
    }

    /// The decoding error that ended iteration early, if any.
    pub fn err(&self) -> Option<&Error> {
        self.err.as_ref()
    }

    #[cold]
    fn fail(&mut self, what: &'static str, start: usize) -> Option<(i64, Histogram)> {
        self.err = Some(Error::Histogram {
            sample: usize::from(self.read),
            bit_offset: start,
            what,
        });
        self.total = 0;
        None
    }

    fn first(&mut self) -> Result<(), &'static str> {
        let bytes = self.bytes.as_ref();
        self.layout = Layout::read(&mut self.r, bytes).map_err(|f| match f {
            LayoutFault::Eof => "truncated layout",
            LayoutFault::UnknownSchema => "unknown schema",
            LayoutFault::TooManyBuckets => "too many buckets",
        })?;
        let np = count_spans(&self.layout.positive_spans);
        let nn = count_spans(&self.layout.negative_spans);
        const EOF: &str = "truncated sample";
        self.t = read_varbit_int(&mut self.r, bytes).ok_or(EOF)?;
        self.cnt = read_varbit_uint(&mut self.r, bytes).ok_or(EOF)?;
        self.zcnt = read_varbit_uint(&mut self.r, bytes).ok_or(EOF)?;
        self.sum = XorField::reader(f64::from_bits(self.r.read_bits(bytes, 64).ok_or(EOF)?));
        // Each bucket takes at least one bit: a count beyond the bits left
        // is corrupt, and refusing it bounds the allocation.
        let bits_left = (bytes.len() * 8).saturating_sub(self.r.bit_offset());
        if np + nn > bits_left {
            return Err("more buckets than bits left");
        }
        self.p_buckets = Vec::with_capacity(np);
        for _ in 0..np {
            self.p_buckets
                .push(read_varbit_int(&mut self.r, bytes).ok_or(EOF)?);
        }
        self.n_buckets = Vec::with_capacity(nn);
        for _ in 0..nn {
            self.n_buckets
                .push(read_varbit_int(&mut self.r, bytes).ok_or(EOF)?);
        }
        self.p_deltas = vec![0; np];
        self.n_deltas = vec![0; nn];
        Ok(())
    }

    fn next_sample(&mut self) -> Result<(), &'static str> {
        let bytes = self.bytes.as_ref();
        const EOF: &str = "truncated sample";
        let t_dod = read_varbit_int(&mut self.r, bytes).ok_or(EOF)?;
        self.t_delta = self.t_delta.wrapping_add(t_dod);
        let t = self.t.wrapping_add(self.t_delta);
        if t <= self.t {
            return Err("timestamp not increasing");
        }
        self.t = t;
        let cnt_dod = read_varbit_int(&mut self.r, bytes).ok_or(EOF)?;
        self.cnt_delta = self.cnt_delta.wrapping_add(cnt_dod);
        self.cnt = (self.cnt as i64).wrapping_add(self.cnt_delta) as u64;
        let zcnt_dod = read_varbit_int(&mut self.r, bytes).ok_or(EOF)?;
        self.zcnt_delta = self.zcnt_delta.wrapping_add(zcnt_dod);
        self.zcnt = (self.zcnt as i64).wrapping_add(self.zcnt_delta) as u64;
        self.sum.read(&mut self.r, bytes).map_err(|e| match e {
            None => EOF,
            Some(_) => "bad XOR window",
        })?;
        if crate::model::is_stale_nan(self.sum.value()) {
            return Ok(());
        }
        for (b, d) in self
            .p_buckets
            .iter_mut()
            .zip(self.p_deltas.iter_mut())
            .chain(self.n_buckets.iter_mut().zip(self.n_deltas.iter_mut()))
        {
            let dod = read_varbit_int(&mut self.r, bytes).ok_or(EOF)?;
            *d = d.wrapping_add(dod);
            *b = b.wrapping_add(*d);
        }
        Ok(())
    }

    fn current(&self) -> Histogram {
        if crate::model::is_stale_nan(self.sum.value()) {
            return Histogram {
                sum: self.sum.value(),
                ..Default::default()
            };
        }
        Histogram {
            counter_reset_hint: self.header.hint_at(usize::from(self.read)),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: self.zcnt,
            count: self.cnt,
            sum: self.sum.value(),
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: self.p_buckets.clone(),
            negative_buckets: self.n_buckets.clone(),
            custom_values: self.layout.custom_values.clone(),
        }
    }
}

impl<B: AsRef<[u8]>> Iterator for HistogramIter<B> {
    type Item = (i64, Histogram);

    fn next(&mut self) -> Option<(i64, Histogram)> {
        if self.read >= self.total {
            return None;
        }
        let start = self.r.bit_offset();
        let res = if self.read == 0 {
            self.first()
        } else {
            self.next_sample()
        };
        if let Err(what) = res {
            return self.fail(what, start);
        }
        let h = self.current();
        self.read += 1;
        Some((self.t, h))
    }
}

#[cfg(test)]
mod tests;
