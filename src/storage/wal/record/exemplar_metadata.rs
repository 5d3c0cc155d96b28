//! Payload codecs of the exemplars record (type 4) and the metadata record
//! (type 6), added in WAL format version 3 (`docs/format/wal.md`,
//! "Exemplars record" and "Metadata record"). The type numbers are
//! Prometheus's; the exemplars layout follows Prometheus's
//! (`tsdb/record/record.go` @ v2.42.0, `EncodeExemplars`) in this WAL's
//! varint style, the metadata layout is per metric family, not per series.
//!
//! Owns these two payload layouts only; never touches files. Bytes are
//! parsed only through [`Decbuf`].

use crate::model::{Interner, Labels, LabelsBuilder};
use crate::storage::encoding::{put_be_u64, put_uvarint, put_uvarint_str, put_varint, Decbuf};
use crate::storage::SeriesRef;

use super::{put_labels, read_label_pairs, utf8, RecordError};

/// Type byte of an exemplars record (`payload[0]`), Prometheus's number.
pub const RECORD_EXEMPLARS: u8 = 4;
/// Type byte of a metadata record (`payload[0]`), Prometheus's number.
pub const RECORD_METADATA: u8 = 6;

/// One exemplar of an already logged series.
#[derive(Debug, Clone, PartialEq)]
pub struct RefExemplar {
    /// The series the exemplar belongs to.
    pub series_ref: SeriesRef,
    /// Timestamp in ms.
    pub t: i64,
    /// The value; round-trips bit-exactly.
    pub v: f64,
    /// The exemplar's own labels (may be empty).
    pub labels: Labels,
}

/// The metadata of one metric family, as changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefMetadata {
    /// Metric family name.
    pub metric: String,
    /// Type code (index into `storage::head::METRIC_TYPES`); kept as read,
    /// so codes of a newer build survive a checkpoint.
    pub metric_type: u8,
    /// Unit.
    pub unit: String,
    /// Help text.
    pub help: String,
}

/// Appends one exemplars record payload:
/// `type=4 | ref0 <uvarint> | t0 <varint> | (dref <varint> | dt <varint> | v <8b> | labels)*`,
/// `labels = n <uvarint> | (name <uvarint str> | value <uvarint str>){n}`,
/// deltas against the first exemplar with wrapping arithmetic (as the
/// samples record). An empty slice is just the type.
pub fn encode_exemplars(exemplars: &[RefExemplar], buf: &mut Vec<u8>) {
    buf.push(RECORD_EXEMPLARS);
    let Some(first) = exemplars.first() else {
        return;
    };
    put_uvarint(buf, first.series_ref.0);
    put_varint(buf, first.t);
    for e in exemplars {
        put_varint(buf, e.series_ref.0.wrapping_sub(first.series_ref.0) as i64);
        put_varint(buf, e.t.wrapping_sub(first.t));
        put_be_u64(buf, e.v.to_bits());
        put_labels(buf, &e.labels);
    }
}

/// Appends one metadata record payload:
/// `type=6 | (metric <uvarint str> | type <1b> | unit <uvarint str> | help <uvarint str>)*`.
pub fn encode_metadata(metadata: &[RefMetadata], buf: &mut Vec<u8>) {
    buf.push(RECORD_METADATA);
    for m in metadata {
        put_uvarint_str(buf, &m.metric);
        buf.push(m.metric_type);
        put_uvarint_str(buf, &m.unit);
        put_uvarint_str(buf, &m.help);
    }
}

/// Smallest encoded exemplar: one-byte deltas, 8-byte value, label count.
const MIN_EXEMPLAR_LEN: usize = 11;

pub(super) fn decode_exemplars(
    d: &mut Decbuf<'_>,
    interner: &Interner,
) -> Result<Vec<RefExemplar>, RecordError> {
    if d.is_empty() {
        return Ok(Vec::new());
    }
    let ref0 = d.uvarint()?;
    let t0 = d.varint()?;
    let mut out = Vec::with_capacity(d.remaining() / MIN_EXEMPLAR_LEN);
    let mut builder = LabelsBuilder::new();
    while !d.is_empty() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let v = f64::from_bits(d.be_u64()?);
        let series_ref = SeriesRef(ref0.wrapping_add(dref as u64));
        read_label_pairs(d, interner, &mut builder)?;
        let labels = builder
            .build()
            .map_err(|source| RecordError::InvalidExemplarLabels { series_ref, source })?;
        out.push(RefExemplar {
            series_ref,
            t: t0.wrapping_add(dt),
            v,
            labels,
        });
    }
    Ok(out)
}

pub(super) fn decode_metadata(d: &mut Decbuf<'_>) -> Result<Vec<RefMetadata>, RecordError> {
    let mut out = Vec::new();
    let text = |d: &mut Decbuf<'_>| -> Result<String, RecordError> {
        let at = d.position();
        Ok(utf8(d.uvarint_bytes()?, at)?.to_string())
    };
    while !d.is_empty() {
        let metric = text(d)?;
        let metric_type = d.u8()?;
        let unit = text(d)?;
        let help = text(d)?;
        out.push(RefMetadata {
            metric,
            metric_type,
            unit,
            help,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{decode, Record};
    use super::*;
    use crate::model::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn arb_labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[a-c_]{1,3}", "[a-cé☃]{1,4}", 0..4)
            .prop_map(|m| Labels::try_from_pairs(m).expect("unique non-empty names"))
    }

    fn arb_exemplars() -> impl Strategy<Value = Vec<RefExemplar>> {
        let bits = prop_oneof![
            Just(STALE_NAN_BITS),
            Just((-0.0f64).to_bits()),
            Just(f64::NAN.to_bits()),
            any::<u64>(),
        ];
        proptest::collection::vec(
            (any::<u64>(), any::<i64>(), bits, arb_labels()).prop_map(|(r, t, b, labels)| {
                RefExemplar {
                    series_ref: SeriesRef(r),
                    t,
                    v: f64::from_bits(b),
                    labels,
                }
            }),
            0..12,
        )
    }

    fn key(e: &RefExemplar) -> (u64, i64, u64, Labels) {
        (e.series_ref.0, e.t, e.v.to_bits(), e.labels.clone())
    }

    proptest! {
        #[test]
        fn prop_exemplars_round_trip(exemplars in arb_exemplars()) {
            let mut buf = Vec::new();
            encode_exemplars(&exemplars, &mut buf);
            match decode(&buf, &Interner::new()).unwrap() {
                Record::Exemplars(got) => prop_assert_eq!(
                    got.iter().map(key).collect::<Vec<_>>(),
                    exemplars.iter().map(key).collect::<Vec<_>>()
                ),
                other => prop_assert!(false, "got {:?}", other),
            }
        }

        #[test]
        fn prop_metadata_round_trip(
            raw in proptest::collection::vec(
                ("[a-z_:]{0,12}", any::<u8>(), "\\PC{0,6}", "\\PC{0,24}"), 0..8)
        ) {
            let metadata: Vec<RefMetadata> = raw
                .into_iter()
                .map(|(metric, metric_type, unit, help)| RefMetadata { metric, metric_type, unit, help })
                .collect();
            let mut buf = Vec::new();
            encode_metadata(&metadata, &mut buf);
            match decode(&buf, &Interner::new()).unwrap() {
                Record::Metadata(got) => prop_assert_eq!(got, metadata),
                other => prop_assert!(false, "got {:?}", other),
            }
        }

        #[test]
        fn prop_exemplar_metadata_decode_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            let interner = Interner::new();
            for typ in [RECORD_EXEMPLARS, RECORD_METADATA] {
                let mut typed = vec![typ];
                typed.extend_from_slice(&bytes);
                let _ = decode(&typed, &interner);
            }
        }
    }

    #[test]
    fn decode_malformed_exemplar_and_metadata_payloads_rejected() {
        let interner = Interner::new();
        // Exemplar cut inside its value.
        assert!(matches!(
            decode(&[4, 1, 2, 0, 0, 1, 2], &interner),
            Err(RecordError::Decode(_))
        ));
        // Exemplar label with an empty value.
        assert_eq!(
            decode(
                &[4, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, b'a', 0],
                &interner
            )
            .unwrap_err(),
            RecordError::EmptyLabelValue { at: 16 }
        );
        // Duplicate exemplar label names.
        assert!(matches!(
            decode(
                &[4, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, b'a', 1, b'x', 1, b'a', 1, b'y'],
                &interner
            ),
            Err(RecordError::InvalidExemplarLabels {
                series_ref: SeriesRef(7),
                ..
            })
        ));
        // Metadata help not UTF-8.
        assert_eq!(
            decode(&[6, 1, b'm', 1, 0, 1, 0xff], &interner).unwrap_err(),
            RecordError::InvalidUtf8 { at: 5 }
        );
        // Metadata cut before its type byte.
        assert!(matches!(
            decode(&[6, 1, b'm'], &interner),
            Err(RecordError::Decode(_))
        ));
        // Empty records decode to nothing.
        assert!(matches!(decode(&[4], &interner), Ok(Record::Exemplars(v)) if v.is_empty()));
        assert!(matches!(decode(&[6], &interner), Ok(Record::Metadata(v)) if v.is_empty()));
    }
}
