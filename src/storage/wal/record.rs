//! WAL record payload codecs: series, samples and tombstones records here;
//! exemplars and metadata records in [`exemplar_metadata`], histogram
//! samples in `histogram_record`
//! (`docs/format/wal.md`, section "Records").
//!
//! Owns the payload layout only. Framing (length, CRC) belongs to `segment`;
//! this module never touches files. Bytes are parsed only through
//! [`Decbuf`], so malformed input is an error, never a panic.

use crate::model::{Interner, LabelError, Labels, LabelsBuilder};
use crate::storage::encoding::{
    put_be_u64, put_uvarint, put_uvarint_str, put_varint, Decbuf, DecodeError,
};
use crate::storage::SeriesRef;

mod chained;
mod exemplar_metadata;

pub(crate) use chained::chained_fits;
pub use chained::{
    encode_linked, next_segment_tag, ChainLink, SampleChain, SeriesSamples, RECORD_CHAINED_SAMPLES,
    RECORD_RUN_SAMPLES,
};

pub use exemplar_metadata::{
    encode_exemplars, encode_metadata, RefExemplar, RefMetadata, RECORD_EXEMPLARS, RECORD_METADATA,
};

/// Type byte of a series record (`payload[0]`).
pub const RECORD_SERIES: u8 = 1;
/// Type byte of a samples record (`payload[0]`).
pub const RECORD_SAMPLES: u8 = 2;
/// Type byte of a tombstones record (`payload[0]`): deleted intervals.
pub const RECORD_TOMBSTONES: u8 = 3;
/// Type byte of an out-of-order samples record (`payload[0]`, format
/// version 5): float samples stored in the out-of-order window, laid out
/// as a samples record. Their own kind, because replay inserts them into
/// the series' out-of-order data instead of appending, and a checkpoint
/// keeps them while the head has not written them to a block.
pub const RECORD_OOO_SAMPLES: u8 = 9;
/// Type byte of a snappy-compressed record (`payload[0]`, format version
/// 6): the rest is the snappy block compression of a whole record payload
/// of another type, its type byte included (`--storage.wal-compression`).
pub const RECORD_SNAPPY: u8 = 12;
/// Payloads shorter than this are written as they are: snappy's header
/// and a few literal bytes would outweigh what it saves.
const COMPRESS_MIN_LEN: usize = 256;

/// `payload` compressed as a [`RECORD_SNAPPY`] record into `out` (cleared
/// first), when that is shorter; returns whether it was.
pub fn compress_record(payload: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if payload.len() < COMPRESS_MIN_LEN {
        return false;
    }
    out.resize(1 + snap::raw::max_compress_len(payload.len()), 0);
    out[0] = RECORD_SNAPPY;
    match snap::raw::Encoder::new().compress(payload, &mut out[1..]) {
        Ok(n) if 1 + n < payload.len() => {
            out.truncate(1 + n);
            true
        }
        _ => {
            out.clear();
            false
        }
    }
}

/// A series' first appearance: its ref and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefSeries {
    /// The head's ref for the series.
    pub series_ref: SeriesRef,
    /// The series' labels.
    pub labels: Labels,
}

/// One sample of an already logged series.
#[derive(Debug, Clone, Copy)]
pub struct RefSample {
    /// The series the sample belongs to.
    pub series_ref: SeriesRef,
    /// Timestamp in ms.
    pub t: i64,
    /// The value; round-trips bit-exactly (staleness marker, NaN payloads, -0.0).
    pub v: f64,
}

/// A deleted time range of one series (both ends inclusive, ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefTombstone {
    /// The series the deletion applies to.
    pub series_ref: SeriesRef,
    /// First deleted timestamp.
    pub mint: i64,
    /// Last deleted timestamp.
    pub maxt: i64,
}

/// A decoded WAL record.
#[derive(Debug, Clone)]
pub enum Record {
    /// New series.
    Series(Vec<RefSeries>),
    /// Samples of known series.
    Samples(Vec<RefSample>),
    /// Deletions of known series' data.
    Tombstones(Vec<RefTombstone>),
    /// Exemplars of known series (format version 3).
    Exemplars(Vec<RefExemplar>),
    /// Changed metric metadata (format version 3).
    Metadata(Vec<RefMetadata>),
    /// Histogram samples of known series (record types 7 and 8).
    Histograms(Vec<super::RefHistogramSample>),
    /// Out-of-order float samples of known series (record type 9).
    OooSamples(Vec<RefSample>),
    /// Out-of-order histogram samples of known series (record types 10
    /// and 11).
    OooHistograms(Vec<super::RefHistogramSample>),
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The payload has no type byte.
    #[error("empty record payload")]
    Empty,
    /// The type byte is not one this build knows.
    #[error("unknown record type {typ}")]
    UnknownType {
        /// The type byte found.
        typ: u8,
    },
    /// A field was truncated or a varint overflowed.
    #[error("malformed record")]
    Decode(#[from] DecodeError),
    /// A label string is not UTF-8.
    #[error("label string at byte {at} is not UTF-8")]
    InvalidUtf8 {
        /// Offset of the string's length prefix in the payload.
        at: usize,
    },
    /// A label value is empty (labels never hold empty values).
    #[error("empty label value at byte {at}")]
    EmptyLabelValue {
        /// Offset of the value's length prefix in the payload.
        at: usize,
    },
    /// The labels of an exemplar are not a valid label set.
    #[error("invalid exemplar labels for series {series_ref}")]
    InvalidExemplarLabels {
        /// The series the exemplar belongs to.
        series_ref: SeriesRef,
        /// What is wrong with them.
        #[source]
        source: LabelError,
    },
    /// A histogram field is out of range or a count exceeds the record.
    #[error("malformed histogram at byte {at}: {what}")]
    BadHistogram {
        /// Offset of the field in the payload.
        at: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A snappy-compressed record that does not decompress, would
    /// decompress past [`super::MAX_RECORD_LEN`], or holds another
    /// compressed record.
    #[error("bad compressed record: {reason}")]
    Snappy {
        /// What is wrong.
        reason: String,
    },
    /// A chained or run-chained samples record (type 13 or 14) that does
    /// not decode.
    #[error("malformed chained samples record at bit {bit}: {what}")]
    BadChainedSamples {
        /// Bit offset in the record body where the fault was found.
        bit: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// The labels of a series are not a valid label set.
    #[error("invalid labels for series {series_ref}")]
    InvalidLabels {
        /// The series whose labels are invalid.
        series_ref: SeriesRef,
        /// What is wrong with them.
        #[source]
        source: LabelError,
    },
}

/// Appends one series record payload:
/// `type=1 | (ref <uvarint> | n <uvarint> | (name <uvarint str> | value <uvarint str>){n})*`.
pub fn encode_series(series: &[RefSeries], buf: &mut Vec<u8>) {
    buf.push(RECORD_SERIES);
    for s in series {
        put_uvarint(buf, s.series_ref.0);
        put_labels(buf, &s.labels);
    }
}

/// Appends one samples record payload:
/// `type=2 | ref0 <uvarint> | t0 <varint> | (dref <varint> | dt <varint> | v <8b>)*`,
/// deltas taken against the first sample with wrapping arithmetic, so every
/// `u64` ref and `i64` timestamp round-trips. An empty slice is just the type.
pub fn encode_samples(samples: &[RefSample], buf: &mut Vec<u8>) {
    encode_samples_as(RECORD_SAMPLES, samples, buf);
}

/// Appends one out-of-order samples record payload: type 9, then the
/// layout of [`encode_samples`].
pub fn encode_ooo_samples(samples: &[RefSample], buf: &mut Vec<u8>) {
    encode_samples_as(RECORD_OOO_SAMPLES, samples, buf);
}

fn encode_samples_as(typ: u8, samples: &[RefSample], buf: &mut Vec<u8>) {
    buf.push(typ);
    let Some(first) = samples.first() else {
        return;
    };
    put_uvarint(buf, first.series_ref.0);
    put_varint(buf, first.t);
    for s in samples {
        put_varint(buf, s.series_ref.0.wrapping_sub(first.series_ref.0) as i64);
        put_varint(buf, s.t.wrapping_sub(first.t));
        put_be_u64(buf, s.v.to_bits());
    }
}

/// Appends one tombstones record payload:
/// `type=3 | (ref <uvarint> | mint <varint> | maxt <varint>)*`.
pub fn encode_tombstones(tombstones: &[RefTombstone], buf: &mut Vec<u8>) {
    buf.push(RECORD_TOMBSTONES);
    for t in tombstones {
        put_uvarint(buf, t.series_ref.0);
        put_varint(buf, t.mint);
        put_varint(buf, t.maxt);
    }
}

/// Decodes a payload on its own: a chained samples record (type 13 or
/// 14) decodes as the first of its segment. Label strings go through the
/// interner (one copy per distinct string).
///
/// # Errors
/// [`RecordError`] for an empty, unknown, truncated or otherwise malformed payload.
pub fn decode(payload: &[u8], interner: &Interner) -> Result<Record, RecordError> {
    decode_chained(payload, interner, &mut SampleChain::new())
}

/// Decodes a payload that follows, in its segment, the records `chain` has
/// seen (a chained samples record refers to them).
///
/// # Errors
/// As [`decode`].
pub fn decode_chained(
    payload: &[u8],
    interner: &Interner,
    chain: &mut SampleChain,
) -> Result<Record, RecordError> {
    with_plain(payload, |plain| decode_plain(plain, interner, chain))
}

/// [`decode_chained`] of a record whose type byte `wanted` accepts; `None`,
/// the rest left undecoded, for any other (a compressed record is
/// decompressed to read its type). A skipped chained samples record leaves
/// `chain` behind: a caller that skips one must skip every samples record
/// after it in the segment.
///
/// # Errors
/// As [`decode`], for the records decoded.
pub fn decode_chained_if(
    payload: &[u8],
    interner: &Interner,
    chain: &mut SampleChain,
    wanted: impl Fn(u8) -> bool,
) -> Result<Option<Record>, RecordError> {
    with_plain(payload, |plain| match plain.first() {
        Some(&typ) if !wanted(typ) => Ok(None),
        _ => decode_plain(plain, interner, chain).map(Some),
    })
}

/// Calls `f` with the uncompressed payload: `payload` itself, or what a
/// [`RECORD_SNAPPY`] payload's body decompresses to.
fn with_plain<T>(
    payload: &[u8],
    f: impl FnOnce(&[u8]) -> Result<T, RecordError>,
) -> Result<T, RecordError> {
    if payload.first() == Some(&RECORD_SNAPPY) {
        let inner = decompress_record(&payload[1..])?;
        if inner.first() == Some(&RECORD_SNAPPY) {
            return Err(RecordError::Snappy {
                reason: "a compressed record inside a compressed record".into(),
            });
        }
        return f(&inner);
    }
    f(payload)
}

/// The record a [`RECORD_SNAPPY`] payload's body compresses, its size
/// checked against [`super::MAX_RECORD_LEN`] before anything is allocated.
fn decompress_record(body: &[u8]) -> Result<Vec<u8>, RecordError> {
    let snappy = |e: snap::Error| RecordError::Snappy {
        reason: e.to_string(),
    };
    let len = snap::raw::decompress_len(body).map_err(snappy)?;
    if len > super::MAX_RECORD_LEN as usize {
        return Err(RecordError::Snappy {
            reason: format!(
                "decompresses to {len} bytes, past the {} byte limit",
                super::MAX_RECORD_LEN
            ),
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(snappy)
}

/// [`decode`] of an uncompressed payload.
fn decode_plain(
    payload: &[u8],
    interner: &Interner,
    chain: &mut SampleChain,
) -> Result<Record, RecordError> {
    let mut d = Decbuf::new(payload);
    let typ = d.u8().map_err(|_| RecordError::Empty)?;
    match typ {
        RECORD_SERIES => decode_series(&mut d, interner).map(Record::Series),
        RECORD_SAMPLES => decode_samples(&mut d).map(Record::Samples),
        RECORD_CHAINED_SAMPLES => chain.decode(&payload[1..]).map(Record::Samples),
        RECORD_RUN_SAMPLES => chain.decode_runs(&payload[1..]).map(Record::Samples),
        RECORD_OOO_SAMPLES => decode_samples(&mut d).map(Record::OooSamples),
        RECORD_TOMBSTONES => decode_tombstones(&mut d).map(Record::Tombstones),
        RECORD_EXEMPLARS => {
            exemplar_metadata::decode_exemplars(&mut d, interner).map(Record::Exemplars)
        }
        RECORD_METADATA => exemplar_metadata::decode_metadata(&mut d).map(Record::Metadata),
        super::RECORD_HISTOGRAM_SAMPLES => {
            super::histogram_record::decode_histogram_samples(&mut d, false).map(Record::Histograms)
        }
        super::RECORD_FLOAT_HISTOGRAM_SAMPLES => {
            super::histogram_record::decode_histogram_samples(&mut d, true).map(Record::Histograms)
        }
        super::RECORD_OOO_HISTOGRAM_SAMPLES => {
            super::histogram_record::decode_histogram_samples(&mut d, false)
                .map(Record::OooHistograms)
        }
        super::RECORD_OOO_FLOAT_HISTOGRAM_SAMPLES => {
            super::histogram_record::decode_histogram_samples(&mut d, true)
                .map(Record::OooHistograms)
        }
        typ => Err(RecordError::UnknownType { typ }),
    }
}

fn decode_series(d: &mut Decbuf<'_>, interner: &Interner) -> Result<Vec<RefSeries>, RecordError> {
    let mut out = Vec::new();
    let mut builder = LabelsBuilder::new();
    while !d.is_empty() {
        let series_ref = SeriesRef(d.uvarint()?);
        read_label_pairs(d, interner, &mut builder)?;
        let labels = builder
            .build()
            .map_err(|source| RecordError::InvalidLabels { series_ref, source })?;
        out.push(RefSeries { series_ref, labels });
    }
    Ok(out)
}

/// Reads `n <uvarint> | (name <uvarint str> | value <uvarint str>){n}` into
/// `builder`, strings through the interner.
pub(super) fn read_label_pairs(
    d: &mut Decbuf<'_>,
    interner: &Interner,
    builder: &mut LabelsBuilder,
) -> Result<(), RecordError> {
    let n = d.uvarint()?;
    // Each label takes at least two bytes, so a corrupt count fails on
    // end of input within `remaining / 2` rounds: no huge loop.
    for _ in 0..n {
        let at = d.position();
        let name = utf8(d.uvarint_bytes()?, at)?;
        let at = d.position();
        let value = utf8(d.uvarint_bytes()?, at)?;
        if value.is_empty() {
            return Err(RecordError::EmptyLabelValue { at });
        }
        builder.push_shared(interner.intern(name), interner.intern(value));
    }
    Ok(())
}

/// Appends `n <uvarint> | (name <uvarint str> | value <uvarint str>){n}`.
pub(super) fn put_labels(buf: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(buf, labels.len() as u64);
    for l in labels {
        put_uvarint_str(buf, &l.name);
        put_uvarint_str(buf, &l.value);
    }
}

pub(super) fn utf8(b: &[u8], at: usize) -> Result<&str, RecordError> {
    std::str::from_utf8(b).map_err(|_| RecordError::InvalidUtf8 { at })
}

/// Smallest encoded sample: one-byte ref delta, one-byte t delta, 8-byte value.
const MIN_SAMPLE_LEN: usize = 10;

fn decode_samples(d: &mut Decbuf<'_>) -> Result<Vec<RefSample>, RecordError> {
    if d.is_empty() {
        return Ok(Vec::new());
    }
    let ref0 = d.uvarint()?;
    let t0 = d.varint()?;
    let mut out = Vec::with_capacity(d.remaining() / MIN_SAMPLE_LEN);
    while !d.is_empty() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let v = f64::from_bits(d.be_u64()?);
        out.push(RefSample {
            series_ref: SeriesRef(ref0.wrapping_add(dref as u64)),
            t: t0.wrapping_add(dt),
            v,
        });
    }
    Ok(out)
}

fn decode_tombstones(d: &mut Decbuf<'_>) -> Result<Vec<RefTombstone>, RecordError> {
    let mut out = Vec::new();
    while !d.is_empty() {
        out.push(RefTombstone {
            series_ref: SeriesRef(d.uvarint()?),
            mint: d.varint()?,
            maxt: d.varint()?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn arb_labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[a-c_]{1,3}", "[a-cé☃]{1,4}", 0..5)
            .prop_map(|m| Labels::try_from_pairs(m).expect("unique non-empty names"))
    }

    fn arb_series() -> impl Strategy<Value = Vec<RefSeries>> {
        proptest::collection::vec(
            (any::<u64>(), arb_labels()).prop_map(|(r, labels)| RefSeries {
                series_ref: SeriesRef(r),
                labels,
            }),
            0..8,
        )
    }

    fn arb_bits() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(STALE_NAN_BITS),
            Just((-0.0f64).to_bits()),
            Just(f64::NAN.to_bits()),
            Just(0x7ff8_0000_dead_beef),
            any::<u64>(),
        ]
    }

    fn arb_samples() -> impl Strategy<Value = Vec<RefSample>> {
        proptest::collection::vec(
            (any::<u64>(), any::<i64>(), arb_bits()).prop_map(|(r, t, bits)| RefSample {
                series_ref: SeriesRef(r),
                t,
                v: f64::from_bits(bits),
            }),
            0..16,
        )
    }

    fn sample_key(s: &RefSample) -> (u64, i64, u64) {
        (s.series_ref.0, s.t, s.v.to_bits())
    }

    proptest! {
        /// A compressed record decodes to what its plain payload decodes
        /// to; small or incompressible payloads stay plain.
        #[test]
        fn prop_compressed_records_decode_as_plain(
            samples in proptest::collection::vec(
                (0u64..64, 0i64..1_000_000, prop_oneof![Just(0u64), Just(1f64.to_bits()), any::<u64>()])
                    .prop_map(|(r, t, bits)| RefSample { series_ref: SeriesRef(r), t, v: f64::from_bits(bits) }),
                0..400,
            )
        ) {
            let interner = Interner::new();
            let mut plain = Vec::new();
            encode_samples(&samples, &mut plain);
            let mut out = Vec::new();
            let compressed = compress_record(&plain, &mut out);
            if plain.len() < COMPRESS_MIN_LEN {
                prop_assert!(!compressed);
            }
            if compressed {
                prop_assert_eq!(out[0], RECORD_SNAPPY);
                prop_assert!(out.len() < plain.len());
                match (decode(&out, &interner).unwrap(), decode(&plain, &interner).unwrap()) {
                    (Record::Samples(a), Record::Samples(b)) => prop_assert_eq!(
                        a.iter().map(sample_key).collect::<Vec<_>>(),
                        b.iter().map(sample_key).collect::<Vec<_>>()
                    ),
                    other => prop_assert!(false, "got {:?}", other),
                }
            } else {
                prop_assert!(out.is_empty());
            }
        }

        #[test]
        fn prop_tombstones_round_trip(
            raw in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..8)
        ) {
            let tombstones: Vec<RefTombstone> = raw
                .into_iter()
                .map(|(r, mint, maxt)| RefTombstone { series_ref: SeriesRef(r), mint, maxt })
                .collect();
            let mut buf = Vec::new();
            encode_tombstones(&tombstones, &mut buf);
            match decode(&buf, &Interner::new()).unwrap() {
                Record::Tombstones(got) => prop_assert_eq!(got, tombstones),
                other => prop_assert!(false, "got {:?}", other),
            }
        }

        #[test]
        fn prop_records_round_trip(series in arb_series(), samples in arb_samples()) {
            let interner = Interner::new();
            let mut buf = Vec::new();
            encode_series(&series, &mut buf);
            match decode(&buf, &interner).unwrap() {
                Record::Series(got) => prop_assert_eq!(got, series),
                other => prop_assert!(false, "got {:?}", other),
            }
            buf.clear();
            encode_samples(&samples, &mut buf);
            match decode(&buf, &interner).unwrap() {
                Record::Samples(got) => prop_assert_eq!(
                    got.iter().map(sample_key).collect::<Vec<_>>(),
                    samples.iter().map(sample_key).collect::<Vec<_>>()
                ),
                other => prop_assert!(false, "got {:?}", other),
            }
            buf.clear();
            encode_ooo_samples(&samples, &mut buf);
            match decode(&buf, &interner).unwrap() {
                Record::OooSamples(got) => prop_assert_eq!(
                    got.iter().map(sample_key).collect::<Vec<_>>(),
                    samples.iter().map(sample_key).collect::<Vec<_>>()
                ),
                other => prop_assert!(false, "got {:?}", other),
            }
        }

        #[test]
        fn prop_decode_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
            typ in 0u8..13,
        ) {
            let interner = Interner::new();
            let _ = decode(&bytes, &interner);
            // Also with a valid type byte, so the body decoders get exercised.
            let mut typed = vec![typ];
            typed.extend_from_slice(&bytes);
            let _ = decode(&typed, &interner);
        }
    }

    #[test]
    fn decode_shares_interned_strings() {
        let interner = Interner::new();
        let labels = Labels::from_static(&[("job", "api")]);
        let series: Vec<RefSeries> = (0..2)
            .map(|i| RefSeries {
                series_ref: SeriesRef(i),
                labels: labels.clone(),
            })
            .collect();
        let mut buf = Vec::new();
        encode_series(&series, &mut buf);
        let Ok(Record::Series(got)) = decode(&buf, &interner) else {
            panic!("series record expected");
        };
        let a = got[0].labels.iter().next().unwrap();
        let b = got[1].labels.iter().next().unwrap();
        assert!(std::sync::Arc::ptr_eq(&a.value, &b.value));
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn decode_malformed_payloads_rejected() {
        let interner = Interner::new();
        let cases: &[(&[u8], RecordError)] = &[
            (&[], RecordError::Empty),
            (&[99], RecordError::UnknownType { typ: 99 }),
            // One label whose name is invalid UTF-8.
            (
                &[1, 0, 1, 1, 0xff, 1, b'x'],
                RecordError::InvalidUtf8 { at: 3 },
            ),
            (
                &[1, 0, 1, 1, b'a', 0],
                RecordError::EmptyLabelValue { at: 5 },
            ),
            (
                &[1, 7, 2, 1, b'a', 1, b'x', 1, b'a', 1, b'y'],
                RecordError::InvalidLabels {
                    series_ref: SeriesRef(7),
                    source: LabelError::DuplicateName { name: "a".into() },
                },
            ),
        ];
        for (payload, want) in cases {
            assert_eq!(
                decode(payload, &interner).unwrap_err(),
                *want,
                "{payload:?}"
            );
        }
        // Compressed records: garbage, a claimed size past the record
        // limit (a decompression bomb, refused before allocating), and a
        // compressed record inside a compressed record.
        let garbage = [RECORD_SNAPPY, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&garbage, &interner),
            Err(RecordError::Snappy { .. })
        ));
        let mut bomb = vec![RECORD_SNAPPY];
        crate::storage::encoding::put_uvarint(
            &mut bomb,
            u64::from(super::super::MAX_RECORD_LEN) + 1,
        );
        bomb.push(0);
        match decode(&bomb, &interner) {
            Err(RecordError::Snappy { reason }) => assert!(reason.contains("limit"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let mut plain = vec![RECORD_SAMPLES];
        plain.resize(COMPRESS_MIN_LEN * 4, 0);
        let mut once = Vec::new();
        assert!(compress_record(&plain, &mut once));
        let nested = std::iter::once(RECORD_SNAPPY)
            .chain(snap::raw::Encoder::new().compress_vec(&once).unwrap())
            .collect::<Vec<_>>();
        assert!(matches!(
            decode(&nested, &interner),
            Err(RecordError::Snappy { .. })
        ));
        // A samples record cut inside the value.
        assert!(matches!(
            decode(&[2, 1, 2, 0, 0, 1, 2, 3], &interner),
            Err(RecordError::Decode(_))
        ));
    }
}
