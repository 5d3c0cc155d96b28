//! Per-request limits of remote write ([`WriteLimits`]) and of remote read
//! ([`ReadLimits`]), the flag that sets each ([`Limit::flag`]), and the
//! counting pre-scan ([`scan`]) that checks the whole-request limits on the
//! raw protobuf bytes *before* prost allocates anything.
//!
//! Why a pre-scan: an empty `Sample {}` is two bytes on the wire and sixteen
//! in memory (an empty `Label` 64, an empty `TimeSeries` 96, an empty
//! native `Histogram` about 240, one byte of a packed `labels_refs` four),
//! and snappy compresses such runs about 20:1, so a small body can ask for
//! gigabytes. The scan walks the message once, counting repeated entries
//! (never allocating) and stops at the first count over its limit. The
//! in-place 1.0 reader ([`crate::ingest::wire`]) counts the same way while
//! it reads instead, so both paths refuse the same requests.
//!
//! Whole-request limits (samples, series, label pairs, exemplars, metadata
//! entries) refuse the request: it can never be accepted, so the answer is
//! 400 and senders drop it. Per-series limits (labels per series, name and
//! value length) and per-entry limits (exemplar label set length, metadata
//! text length) are checked while preparing and reject only that series or
//! entry, in the partial-write answer.

use crate::ingest::decode::ProtoVersion;
use crate::ingest::error::Error;
use crate::storage::encoding::split_uvarint;

/// One configurable limit: what it counts and the flag that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Float samples plus native histogram samples (and their buckets) in
    /// one write request, empty ones included.
    SamplesPerRequest,
    /// Series (`TimeSeries` entries) in one write request.
    SeriesPerRequest,
    /// Label pairs of all series and exemplars in one write request (and,
    /// for 2.0, entries of the symbol table).
    LabelsPerRequest,
    /// Exemplars in one write request.
    ExemplarsPerRequest,
    /// Metadata entries in one write request.
    MetadataPerRequest,
    /// Labels of one series.
    LabelsPerSeries,
    /// Bytes of one label name.
    LabelNameLength,
    /// Bytes of one label value (the metric name included).
    LabelValueLength,
    /// Characters of one exemplar's label names and values together.
    ExemplarLabelsLength,
    /// Bytes of one metadata help or unit text.
    MetadataTextLength,
    /// Bytes of a remote-read request after snappy decompression.
    ReadDecompressedBytes,
    /// Samples one remote-read request may return.
    ReadSamples,
}

impl Limit {
    /// The command-line flag that sets this limit.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::SamplesPerRequest => "--max-write-samples-per-request",
            Limit::SeriesPerRequest => "--max-write-series-per-request",
            Limit::LabelsPerRequest => "--max-write-labels-per-request",
            Limit::ExemplarsPerRequest => "--max-write-exemplars-per-request",
            Limit::MetadataPerRequest => "--max-write-metadata-per-request",
            Limit::LabelsPerSeries => "--max-labels-per-timeseries",
            Limit::LabelNameLength => "--max-label-name-len",
            Limit::LabelValueLength => "--max-label-value-len",
            Limit::ExemplarLabelsLength => "--max-exemplar-labels-len",
            Limit::MetadataTextLength => "--max-metadata-text-len",
            Limit::ReadDecompressedBytes => "--storage.remote.read-max-decompressed-bytes",
            Limit::ReadSamples => "--storage.remote.read-sample-limit",
        }
    }

    /// What is counted, plural, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Limit::SamplesPerRequest => "samples (float and histogram, empty ones included)",
            Limit::SeriesPerRequest => "series",
            Limit::LabelsPerRequest => "label pairs (series and exemplar labels, 2.0 symbols)",
            Limit::ExemplarsPerRequest => "exemplars",
            Limit::MetadataPerRequest => "metadata entries",
            Limit::LabelsPerSeries => "labels in one series",
            Limit::LabelNameLength => "bytes in a label name",
            Limit::LabelValueLength => "bytes in a label value",
            Limit::ExemplarLabelsLength => "characters in an exemplar's labels",
            Limit::MetadataTextLength => "bytes in a metadata help or unit text",
            Limit::ReadDecompressedBytes => "decompressed bytes in a read request",
            Limit::ReadSamples => "samples in a read response",
        }
    }

    /// Every limit, for checking that each flag exists.
    pub const ALL: [Limit; 12] = [
        Limit::SamplesPerRequest,
        Limit::SeriesPerRequest,
        Limit::LabelsPerRequest,
        Limit::ExemplarsPerRequest,
        Limit::MetadataPerRequest,
        Limit::LabelsPerSeries,
        Limit::LabelNameLength,
        Limit::LabelValueLength,
        Limit::ExemplarLabelsLength,
        Limit::MetadataTextLength,
        Limit::ReadDecompressedBytes,
        Limit::ReadSamples,
    ];
}

/// The limits of one remote-write request. The defaults accept anything a
/// Prometheus, Alloy or vmagent sends (Prometheus sends at most
/// `max_samples_per_send` = 2,000 samples, one series each, per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// See [`Limit::SamplesPerRequest`]. Default 1,000,000.
    pub max_samples_per_request: usize,
    /// See [`Limit::SeriesPerRequest`]. Default 100,000.
    pub max_series_per_request: usize,
    /// See [`Limit::LabelsPerRequest`]. Default 2,000,000.
    pub max_labels_per_request: usize,
    /// See [`Limit::ExemplarsPerRequest`]. Default 100,000.
    pub max_exemplars_per_request: usize,
    /// See [`Limit::MetadataPerRequest`]. Default 100,000.
    pub max_metadata_per_request: usize,
    /// See [`Limit::LabelsPerSeries`]. Default 100.
    pub max_labels_per_series: usize,
    /// See [`Limit::LabelNameLength`]. Default 256.
    pub max_label_name_len: usize,
    /// See [`Limit::LabelValueLength`]. Default 4096.
    pub max_label_value_len: usize,
    /// See [`Limit::ExemplarLabelsLength`]. Default 128, Prometheus's
    /// `ExemplarMaxLabelSetLength`.
    pub max_exemplar_labels_len: usize,
    /// See [`Limit::MetadataTextLength`]. Default 4096.
    pub max_metadata_text_len: usize,
}

impl WriteLimits {
    /// The defaults (see each field).
    pub const DEFAULT: WriteLimits = WriteLimits {
        max_samples_per_request: 1_000_000,
        max_series_per_request: 100_000,
        max_labels_per_request: 2_000_000,
        max_exemplars_per_request: 100_000,
        max_metadata_per_request: 100_000,
        max_labels_per_series: 100,
        max_label_name_len: 256,
        max_label_value_len: 4096,
        max_exemplar_labels_len: 128,
        max_metadata_text_len: 4096,
    };

    /// No limit at all (tests and benchmarks of decoding alone).
    pub const UNLIMITED: WriteLimits = WriteLimits {
        max_samples_per_request: usize::MAX,
        max_series_per_request: usize::MAX,
        max_labels_per_request: usize::MAX,
        max_exemplars_per_request: usize::MAX,
        max_metadata_per_request: usize::MAX,
        max_labels_per_series: usize::MAX,
        max_label_name_len: usize::MAX,
        max_label_value_len: usize::MAX,
        max_exemplar_labels_len: usize::MAX,
        max_metadata_text_len: usize::MAX,
    };

    /// The value of a write limit (`usize::MAX` for a read limit).
    pub fn get(&self, limit: Limit) -> usize {
        match limit {
            Limit::SamplesPerRequest => self.max_samples_per_request,
            Limit::SeriesPerRequest => self.max_series_per_request,
            Limit::LabelsPerRequest => self.max_labels_per_request,
            Limit::ExemplarsPerRequest => self.max_exemplars_per_request,
            Limit::MetadataPerRequest => self.max_metadata_per_request,
            Limit::LabelsPerSeries => self.max_labels_per_series,
            Limit::LabelNameLength => self.max_label_name_len,
            Limit::LabelValueLength => self.max_label_value_len,
            Limit::ExemplarLabelsLength => self.max_exemplar_labels_len,
            Limit::MetadataTextLength => self.max_metadata_text_len,
            Limit::ReadDecompressedBytes | Limit::ReadSamples => usize::MAX,
        }
    }
}

impl Default for WriteLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The limits of one remote-read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest request after snappy decompression, checked against the
    /// size the body declares before anything is allocated. Default 32 MiB
    /// (Prometheus's limit on the compressed read request).
    pub max_decompressed_bytes: usize,
    /// Most samples one read may return (0 = no limit). Default 50,000,000,
    /// as Prometheus's `--storage.remote.read-sample-limit`.
    pub sample_limit: usize,
    /// Largest frame of a streamed (`STREAMED_XOR_CHUNKS`) response, as
    /// Prometheus's `--storage.remote.read-max-bytes-in-frame`. Default 1 MiB.
    pub max_bytes_in_frame: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 32 << 20,
            sample_limit: 50_000_000,
            max_bytes_in_frame: 1 << 20,
        }
    }
}

/// Running counts of the whole-request limits, shared by [`scan`] and the
/// in-place reader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counter<'l> {
    limits: &'l WriteLimits,
    samples: usize,
    series: usize,
    labels: usize,
    exemplars: usize,
    metadata: usize,
}

impl<'l> Counter<'l> {
    pub(crate) fn new(limits: &'l WriteLimits) -> Self {
        Self {
            limits,
            samples: 0,
            series: 0,
            labels: 0,
            exemplars: 0,
            metadata: 0,
        }
    }

    #[inline]
    fn add(count: &mut usize, n: usize, max: usize, limit: Limit) -> Result<(), Error> {
        *count = count.saturating_add(n);
        if *count > max {
            return Err(Error::TooMany { limit, max });
        }
        Ok(())
    }

    /// Counts `n` samples (a histogram counts as several).
    #[inline]
    pub(crate) fn samples(&mut self, n: usize) -> Result<(), Error> {
        let max = self.limits.max_samples_per_request;
        Self::add(&mut self.samples, n, max, Limit::SamplesPerRequest)
    }

    /// Counts one series.
    #[inline]
    pub(crate) fn series(&mut self) -> Result<(), Error> {
        let max = self.limits.max_series_per_request;
        Self::add(&mut self.series, 1, max, Limit::SeriesPerRequest)
    }

    /// Counts `n` label pairs (or 2.0 symbols).
    #[inline]
    pub(crate) fn labels(&mut self, n: usize) -> Result<(), Error> {
        let max = self.limits.max_labels_per_request;
        Self::add(&mut self.labels, n, max, Limit::LabelsPerRequest)
    }

    pub(crate) fn exemplar(&mut self) -> Result<(), Error> {
        let max = self.limits.max_exemplars_per_request;
        Self::add(&mut self.exemplars, 1, max, Limit::ExemplarsPerRequest)
    }

    pub(crate) fn metadata(&mut self) -> Result<(), Error> {
        let max = self.limits.max_metadata_per_request;
        Self::add(&mut self.metadata, 1, max, Limit::MetadataPerRequest)
    }
}

/// How many samples one native histogram counts as: its in-memory size
/// (about 240 bytes) over a float sample's (16), as Prometheus's query
/// engine weighs histograms by size. Each bucket span, delta or count adds
/// one more.
pub const HISTOGRAM_SAMPLE_WEIGHT: usize = 16;

/// Checks the whole-request limits of a decompressed request of `version`
/// without decoding it. Stops at the first count over its limit. Malformed
/// bytes end the scan without an error: the decoder reports them, and what
/// it allocates before failing is bounded by what the scan counted. A
/// group field (wire types 3 and 4) is refused instead: prost skips groups
/// of unknown fields, so everything after one would be decoded uncounted,
/// and no remote-write sender writes them (proto3).
///
/// # Errors
/// [`Error::TooMany`] naming the limit; [`Error::Protobuf`] for a group.
pub fn scan(version: ProtoVersion, buf: &[u8], limits: &WriteLimits) -> Result<(), Error> {
    let mut c = Counter::new(limits);
    let r = match version {
        ProtoVersion::V1 => scan_v1(buf, &mut c),
        ProtoVersion::V2 => scan_v2(buf, &mut c),
    };
    match r {
        Ok(()) | Err(Stop::Malformed) => Ok(()),
        Err(Stop::Group) => Err(Error::Protobuf {
            message: match version {
                ProtoVersion::V1 => "prometheus.WriteRequest",
                ProtoVersion::V2 => "io.prometheus.write.v2.Request",
            },
            reason: "a group field (wire types 3 and 4), which remote write never uses".into(),
        }),
        Err(Stop::Limit(e)) => Err(e),
    }
}

/// Why a scan stopped early.
pub(crate) enum Stop {
    Limit(Error),
    Malformed,
    /// A group field (wire types 3 and 4), which prost skips.
    Group,
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Limit(e)
    }
}

pub(crate) type Scan = Result<(), Stop>;

fn scan_v1(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            (1, Value::Bytes(ts)) => scan_series_v1(ts, c)?,
            (3, Value::Bytes(_)) => c.metadata()?,
            _ => {}
        }
    }
    Ok(())
}

fn scan_series_v1(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    c.series()?;
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            (1, Value::Bytes(_)) => c.labels(1)?,
            (2, Value::Bytes(_)) => c.samples(1)?,
            (3, Value::Bytes(e)) => {
                c.exemplar()?;
                let mut er = Reader(e);
                while !er.is_empty() {
                    if let (1, Value::Bytes(_)) = er.field()? {
                        c.labels(1)?;
                    }
                }
            }
            (4, Value::Bytes(h)) => scan_histogram(h, c)?,
            _ => {}
        }
    }
    Ok(())
}

/// A histogram (the same field numbers in 1.0 and 2.0) counts as
/// [`HISTOGRAM_SAMPLE_WEIGHT`] samples plus one per span, delta and count.
fn scan_histogram(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    c.samples(HISTOGRAM_SAMPLE_WEIGHT)?;
    let mut r = Reader(buf);
    while !r.is_empty() {
        let n = match r.field()? {
            // Spans: one message each.
            (8 | 11, _) => 1,
            // Deltas: packed varints (one per byte below 0x80) or one each.
            (9 | 12, Value::Bytes(b)) => packed_varints(b),
            // Counts and custom bounds: packed doubles or one each.
            (10 | 13 | 16, Value::Bytes(b)) => b.len() / 8,
            (9 | 10 | 12 | 13 | 16, _) => 1,
            _ => 0,
        };
        c.samples(n)?;
    }
    Ok(())
}

fn scan_v2(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            (4, Value::Bytes(_)) => c.labels(1)?,
            (5, Value::Bytes(ts)) => scan_series_v2(ts, c)?,
            _ => {}
        }
    }
    Ok(())
}

fn scan_series_v2(buf: &[u8], c: &mut Counter<'_>) -> Scan {
    c.series()?;
    let mut r = Reader(buf);
    while !r.is_empty() {
        match r.field()? {
            // labels_refs: two references per label pair.
            (1, Value::Bytes(b)) => c.labels(packed_varints(b).div_ceil(2))?,
            (1, Value::Varint) => c.labels(1)?,
            (2, Value::Bytes(_)) => c.samples(1)?,
            (3, Value::Bytes(h)) => scan_histogram(h, c)?,
            (4, Value::Bytes(e)) => {
                c.exemplar()?;
                let mut er = Reader(e);
                while !er.is_empty() {
                    match er.field()? {
                        (1, Value::Bytes(b)) => c.labels(packed_varints(b).div_ceil(2))?,
                        (1, Value::Varint) => c.labels(1)?,
                        _ => {}
                    }
                }
            }
            (5, Value::Bytes(_)) => c.metadata()?,
            _ => {}
        }
    }
    Ok(())
}

/// Varints in a packed field: each ends with a byte below 0x80.
pub(crate) fn packed_varints(b: &[u8]) -> usize {
    b.iter().filter(|&&x| x < 0x80).count()
}

/// A field's value, as far as the scan needs it.
pub(crate) enum Value<'a> {
    Varint,
    Fixed,
    Bytes(&'a [u8]),
}

/// Protobuf primitives over a shrinking slice.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn varint(&mut self) -> Result<u64, Stop> {
        let (v, rest) = split_uvarint(self.0).ok_or(Stop::Malformed)?;
        self.0 = rest;
        Ok(v)
    }

    fn skip(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        if n > self.0.len() {
            return Err(Stop::Malformed);
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }

    /// The next field's number and value; groups and bad wire types end
    /// the scan (the decoder reports them).
    pub(crate) fn field(&mut self) -> Result<(u64, Value<'a>), Stop> {
        let tag = self.varint()?;
        let field = tag >> 3;
        let value = match tag & 7 {
            0 => {
                self.varint()?;
                Value::Varint
            }
            1 => {
                self.skip(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Stop::Malformed)?;
                Value::Bytes(self.skip(len)?)
            }
            5 => {
                self.skip(4)?;
                Value::Fixed
            }
            3 | 4 => return Err(Stop::Group),
            _ => return Err(Stop::Malformed),
        };
        Ok((field, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` empty `Sample {}` in one series, 1.0.
    fn empty_samples_v1(n: usize) -> Vec<u8> {
        let series: Vec<u8> = std::iter::repeat_n([0x12u8, 0x00], n).flatten().collect();
        let mut out = vec![0x0a];
        crate::storage::encoding::put_uvarint(&mut out, series.len() as u64);
        out.extend(series);
        out
    }

    fn limits() -> WriteLimits {
        WriteLimits {
            max_samples_per_request: 10,
            max_series_per_request: 3,
            max_labels_per_request: 5,
            max_exemplars_per_request: 2,
            max_metadata_per_request: 2,
            ..WriteLimits::DEFAULT
        }
    }

    fn limit_of(r: Result<(), Error>) -> Option<Limit> {
        match r {
            Ok(()) => None,
            Err(Error::TooMany { limit, .. }) => Some(limit),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    /// A group (field 15, wire types 3 then 4) that prost would skip,
    /// followed by more series than the limit: refused, never left for
    /// prost to decode uncounted.
    #[test]
    fn a_group_field_is_refused_not_skipped() {
        let l = limits();
        let mut body = vec![(15 << 3) | 3, (15 << 3) | 4];
        body.extend([0x0au8, 0x00].repeat(4));
        for version in [ProtoVersion::V1, ProtoVersion::V2] {
            match scan(version, &body, &l) {
                Err(Error::Protobuf { reason, .. }) => assert!(reason.contains("group")),
                other => panic!("{version:?}: {other:?}"),
            }
        }
        // prost itself would skip the group and decode the four series.
        let got =
            <crate::ingest::proto::prometheus::WriteRequest as prost::Message>::decode(&body[..])
                .map(|r| r.timeseries.len());
        assert_eq!(got.ok(), Some(4));
    }

    #[test]
    fn empty_samples_are_counted() {
        let l = limits();
        assert_eq!(
            limit_of(scan(ProtoVersion::V1, &empty_samples_v1(10), &l)),
            None
        );
        assert_eq!(
            limit_of(scan(ProtoVersion::V1, &empty_samples_v1(11), &l)),
            Some(Limit::SamplesPerRequest)
        );
    }

    #[test]
    fn each_whole_request_limit_v1() {
        let l = limits();
        // Four empty series.
        let series = [0x0au8, 0x00].repeat(4);
        assert_eq!(
            limit_of(scan(ProtoVersion::V1, &series, &l)),
            Some(Limit::SeriesPerRequest)
        );
        // One series with six empty labels.
        let labels = [0x0a, 12]
            .into_iter()
            .chain([0x0a, 0x00].repeat(6))
            .collect::<Vec<_>>();
        assert_eq!(
            limit_of(scan(ProtoVersion::V1, &labels, &l)),
            Some(Limit::LabelsPerRequest)
        );
        // One series with three empty exemplars.
        let ex = [0x0a, 6]
            .into_iter()
            .chain([0x1a, 0x00].repeat(3))
            .collect::<Vec<_>>();
        assert_eq!(
            limit_of(scan(ProtoVersion::V1, &ex, &l)),
            Some(Limit::ExemplarsPerRequest)
        );
        // Three empty metadata entries.
        let md = [0x1a, 0x00].repeat(3);
        assert_eq!(
            limit_of(scan(ProtoVersion::V1, &md, &l)),
            Some(Limit::MetadataPerRequest)
        );
        // One empty histogram weighs 16 samples.
        let h = [0x0a, 2, 0x22, 0x00];
        assert_eq!(
            limit_of(scan(ProtoVersion::V1, &h, &l)),
            Some(Limit::SamplesPerRequest)
        );
        // Malformed bytes are the decoder's business.
        assert_eq!(limit_of(scan(ProtoVersion::V1, &[0x0a, 0xff], &l)), None);
    }

    #[test]
    fn each_whole_request_limit_v2() {
        let l = limits();
        // Six empty symbols.
        let symbols = [0x22u8, 0x00].repeat(6);
        assert_eq!(
            limit_of(scan(ProtoVersion::V2, &symbols, &l)),
            Some(Limit::LabelsPerRequest)
        );
        // A series with a packed labels_refs of 12 refs (6 pairs).
        let refs = [0x2a, 14, 0x0a, 12]
            .into_iter()
            .chain([0u8; 12])
            .collect::<Vec<_>>();
        assert_eq!(
            limit_of(scan(ProtoVersion::V2, &refs, &l)),
            Some(Limit::LabelsPerRequest)
        );
        // Eleven empty samples.
        let samples = [0x2a, 22]
            .into_iter()
            .chain([0x12, 0x00].repeat(11))
            .collect::<Vec<_>>();
        assert_eq!(
            limit_of(scan(ProtoVersion::V2, &samples, &l)),
            Some(Limit::SamplesPerRequest)
        );
        // A histogram with a packed run of 1-byte deltas.
        let h = [0x2a, 8, 0x1a, 6, 0x4a, 4, 1, 2, 3, 4];
        assert_eq!(
            limit_of(scan(ProtoVersion::V2, &h, &l)),
            Some(Limit::SamplesPerRequest)
        );
        let series = [0x2a, 0x00].repeat(4);
        assert_eq!(
            limit_of(scan(ProtoVersion::V2, &series, &l)),
            Some(Limit::SeriesPerRequest)
        );
    }

    #[test]
    fn every_limit_names_a_flag() {
        for l in Limit::ALL {
            assert!(l.flag().starts_with("--"), "{l:?}");
            assert!(!l.what().is_empty());
        }
    }
}
