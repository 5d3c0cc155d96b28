//! Float histogram chunk (Prometheus's `EncFloatHistogram`, encoding 3):
//! [`FloatHistogramAppender`] encodes [`FloatHistogram`] samples,
//! [`FloatHistogramIter`] decodes them. Bit-compatible with Prometheus's
//! `tsdb/chunkenc/float_histogram.go`
//! (<https://github.com/prometheus/prometheus/blob/v3.1.0/tsdb/chunkenc/float_histogram.go>),
//! with the same append / recode / new-chunk decisions as the integer
//! chunk (`histogram.rs`).
//!
//! Per sample: timestamp as delta-of-delta varbit (the first raw), then
//! count, zero count, sum and every bucket as an XOR-encoded float field
//! (the first sample's raw). A stale marker writes no buckets.
//! Layout: `docs/format/chunks-histogram.md`.

use super::bstream::{BitReader, BitWriter};
use super::histogram_meta::{
    bucket_indices, count_spans, expand_counts, merge_side, recoded_spans, CounterResetHeader,
    Layout, LayoutFault, HIST_HEADER_LEN,
};
use super::varbit::{put_varbit_int, read_varbit_int, XorField};
use super::Error;
use crate::model::histogram::is_custom_buckets;
use crate::model::{CounterResetHint, FloatHistogram, Span};

const INITIAL_CAPACITY: usize = 128;

/// What a sample needs before it can go into the chunk.
enum Fit {
    Append,
    Merge {
        positive: super::histogram_meta::SideMerge,
        negative: super::histogram_meta::SideMerge,
    },
    Cut(CounterResetHeader),
}

/// Encodes float histogram samples into one chunk.
#[derive(Debug, Clone)]
pub struct FloatHistogramAppender {
    w: BitWriter,
    num: u16,
    layout: Layout,
    p_idx: Vec<i64>,
    n_idx: Vec<i64>,
    first_t: i64,
    t: i64,
    t_delta: i64,
    cnt: XorField,
    zcnt: XorField,
    sum: XorField,
    p_buckets: Vec<XorField>,
    n_buckets: Vec<XorField>,
}

impl FloatHistogramAppender {
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
            t_delta: 0,
            cnt: XorField::writer(0.0),
            zcnt: XorField::writer(0.0),
            sum: XorField::writer(0.0),
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
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

    fn values(fields: &[XorField]) -> Vec<f64> {
        fields.iter().map(XorField::value).collect()
    }

    fn fit(&self, h: &FloatHistogram) -> Fit {
        if h.counter_reset_hint == CounterResetHint::Gauge {
            if self.header() != CounterResetHeader::Gauge {
                return Fit::Cut(CounterResetHeader::Gauge);
            }
            if h.is_stale() {
                return Fit::Append;
            }
            if self.last_is_stale()
                || h.schema != self.layout.schema
                || h.zero_threshold != self.layout.zero_threshold
                || (is_custom_buckets(h.schema) && h.custom_values != self.layout.custom_values)
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

    /// Prometheus's float `appendable`: it reports only "reset or not", so
    /// every other reason to cut gives an unknown header.
    fn counter_fit(&self, h: &FloatHistogram) -> Result<Fit, CounterResetHeader> {
        use CounterResetHeader as H;
        if self.header() == H::Gauge {
            return Err(H::Unknown);
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
        if h.count < self.cnt.value() {
            return Err(H::CounterReset);
        }
        if h.schema != self.layout.schema || h.zero_threshold != self.layout.zero_threshold {
            return Err(H::Unknown);
        }
        if is_custom_buckets(h.schema) && h.custom_values != self.layout.custom_values {
            return Err(H::CounterReset);
        }
        if h.zero_count < self.zcnt.value() {
            return Err(H::CounterReset);
        }
        match self.merge(h, false) {
            Fit::Cut(_) => Err(H::CounterReset),
            fit => Ok(fit),
        }
    }

    fn merge(&self, h: &FloatHistogram, gauge: bool) -> Fit {
        let (Some(positive), Some(negative)) = (
            merge_side(
                &self.p_idx,
                &Self::values(&self.p_buckets),
                &bucket_indices(&h.positive_spans),
                &h.positive_buckets,
                gauge,
            ),
            merge_side(
                &self.n_idx,
                &Self::values(&self.n_buckets),
                &bucket_indices(&h.negative_spans),
                &h.negative_buckets,
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
    /// for `h`. Prometheus's float appender reports only whether a counter
    /// reset happened, so a sample that would fit says "no reset".
    pub fn header_for_next(&self, h: &FloatHistogram) -> CounterResetHeader {
        match h.counter_reset_hint {
            CounterResetHint::Gauge => CounterResetHeader::Gauge,
            CounterResetHint::CounterReset => CounterResetHeader::CounterReset,
            _ => match self.counter_fit(h) {
                Ok(_) => CounterResetHeader::NotCounterReset,
                Err(CounterResetHeader::CounterReset) => CounterResetHeader::CounterReset,
                Err(_) => CounterResetHeader::NotCounterReset,
            },
        }
    }

    /// Appends `h` at `t` if it fits this chunk (recoding it for new
    /// buckets); `Err(header)`: start a new chunk with that header.
    /// Same caller guarantees as [`super::HistogramAppender::append`].
    ///
    /// # Errors
    /// The header of the new chunk needed.
    pub fn append(&mut self, t: i64, h: &FloatHistogram) -> Result<(), CounterResetHeader> {
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
                if any_forward {
                    let p = recoded_spans(&h.positive_spans, &positive, any_backward, gauge);
                    let n = recoded_spans(&h.negative_spans, &negative, any_backward, gauge);
                    self.recode(p, n);
                }
                let mut h2 = h.clone();
                h2.positive_buckets = expand_counts(
                    &bucket_indices(&h.positive_spans),
                    &h.positive_buckets,
                    &self.p_idx,
                );
                h2.negative_buckets = expand_counts(
                    &bucket_indices(&h.negative_spans),
                    &h.negative_buckets,
                    &self.n_idx,
                );
                h2.positive_spans = self.layout.positive_spans.clone();
                h2.negative_spans = self.layout.negative_spans.clone();
                self.write(t, &h2);
                Ok(())
            }
        }
    }

    fn recode(&mut self, p_spans: Vec<Span>, n_spans: Vec<Span>) {
        let mut fresh = FloatHistogramAppender::new(self.header());
        let p_new = bucket_indices(&p_spans);
        let n_new = bucket_indices(&n_spans);
        let old = std::mem::take(&mut self.w).into_bytes();
        for (t, mut h) in FloatHistogramIter::new(&old[..]).by_ref() {
            if !h.is_stale() {
                h.positive_buckets = expand_counts(&self.p_idx, &h.positive_buckets, &p_new);
                h.negative_buckets = expand_counts(&self.n_idx, &h.negative_buckets, &n_new);
                h.positive_spans = p_spans.clone();
                h.negative_spans = n_spans.clone();
            }
            fresh.write(t, &h);
        }
        *self = fresh;
    }

    fn write(&mut self, t: i64, h: &FloatHistogram) {
        let stale_marker;
        let h = if h.is_stale() {
            stale_marker = FloatHistogram {
                sum: h.sum,
                ..Default::default()
            };
            &stale_marker
        } else {
            h
        };
        let mut t_delta = 0;
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
            put_varbit_int(&mut self.w, t);
            for v in [h.count, h.zero_count, h.sum] {
                self.w.write_bits(v.to_bits(), 64);
            }
            self.cnt = XorField::writer(h.count);
            self.zcnt = XorField::writer(h.zero_count);
            self.sum = XorField::writer(h.sum);
            self.p_buckets = h
                .positive_buckets
                .iter()
                .map(|&v| XorField::writer(v))
                .collect();
            self.n_buckets = h
                .negative_buckets
                .iter()
                .map(|&v| XorField::writer(v))
                .collect();
            for &v in h.positive_buckets.iter().chain(&h.negative_buckets) {
                self.w.write_bits(v.to_bits(), 64);
            }
            self.first_t = t;
        } else {
            t_delta = t.wrapping_sub(self.t);
            put_varbit_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
            self.cnt.write(&mut self.w, h.count);
            self.zcnt.write(&mut self.w, h.zero_count);
            self.sum.write(&mut self.w, h.sum);
            for (f, &v) in self.p_buckets.iter_mut().zip(&h.positive_buckets) {
                f.write(&mut self.w, v);
            }
            for (f, &v) in self.n_buckets.iter_mut().zip(&h.negative_buckets) {
                f.write(&mut self.w, v);
            }
        }
        self.t = t;
        self.t_delta = t_delta;
        self.num = self.num.wrapping_add(1);
        self.w.bytes_mut()[..2].copy_from_slice(&self.num.to_be_bytes());
    }
}

/// Iterates the samples of one float histogram chunk. Ends early at the
/// first decoding error ([`FloatHistogramIter::err`]); never panics on
/// arbitrary bytes.
#[derive(Debug, Clone)]
pub struct FloatHistogramIter<B: AsRef<[u8]>> {
    bytes: B,
    total: u16,
    read: u16,
    header: CounterResetHeader,
    r: BitReader,
    layout: Layout,
    t: i64,
    t_delta: i64,
    cnt: XorField,
    zcnt: XorField,
    sum: XorField,
    p_buckets: Vec<XorField>,
    n_buckets: Vec<XorField>,
    err: Option<Error>,
}

impl<B: AsRef<[u8]>> FloatHistogramIter<B> {
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
            t_delta: 0,
            cnt: XorField::reader(0.0),
            zcnt: XorField::reader(0.0),
            sum: XorField::reader(0.0),
            p_buckets: Vec::new(),
            n_buckets: Vec::new(),
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
    fn fail(&mut self, what: &'static str, start: usize) -> Option<(i64, FloatHistogram)> {
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
        let mut raw = || -> Result<XorField, &'static str> {
            Ok(XorField::reader(f64::from_bits(
                self.r.read_bits(bytes, 64).ok_or(EOF)?,
            )))
        };
        self.cnt = raw()?;
        self.zcnt = raw()?;
        self.sum = raw()?;
        let bits_left = (bytes.len() * 8).saturating_sub(self.r.bit_offset());
        if (np + nn).saturating_mul(64) > bits_left {
            return Err("more buckets than bits left");
        }
        let mut p = Vec::with_capacity(np);
        for _ in 0..np {
            p.push(XorField::reader(f64::from_bits(
                self.r.read_bits(bytes, 64).ok_or(EOF)?,
            )));
        }
        let mut n = Vec::with_capacity(nn);
        for _ in 0..nn {
            n.push(XorField::reader(f64::from_bits(
                self.r.read_bits(bytes, 64).ok_or(EOF)?,
            )));
        }
        self.p_buckets = p;
        self.n_buckets = n;
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
        let xor_err = |e: Option<(u8, u8)>| match e {
            None => EOF,
            Some(_) => "bad XOR window",
        };
        let r = &mut self.r;
        self.cnt.read(r, bytes).map_err(xor_err)?;
        self.zcnt.read(r, bytes).map_err(xor_err)?;
        self.sum.read(r, bytes).map_err(xor_err)?;
        if crate::model::is_stale_nan(self.sum.value()) {
            return Ok(());
        }
        for f in self.p_buckets.iter_mut().chain(self.n_buckets.iter_mut()) {
            f.read(r, bytes).map_err(xor_err)?;
        }
        Ok(())
    }

    fn current(&self) -> FloatHistogram {
        if crate::model::is_stale_nan(self.sum.value()) {
            return FloatHistogram {
                sum: self.sum.value(),
                ..Default::default()
            };
        }
        FloatHistogram {
            counter_reset_hint: self.header.hint_at(usize::from(self.read)),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: self.zcnt.value(),
            count: self.cnt.value(),
            sum: self.sum.value(),
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: self.p_buckets.iter().map(XorField::value).collect(),
            negative_buckets: self.n_buckets.iter().map(XorField::value).collect(),
            custom_values: self.layout.custom_values.clone(),
        }
    }
}

impl<B: AsRef<[u8]>> Iterator for FloatHistogramIter<B> {
    type Item = (i64, FloatHistogram);

    fn next(&mut self) -> Option<(i64, FloatHistogram)> {
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
