//! The `head_metadata` file (`docs/format/head-metadata.md`): the head's
//! metric metadata and exemplars, written beside the head snapshot on clean
//! shutdown, so a start that loads the snapshot (and skips the WAL segments
//! it covers) gets them back too. A bincode body inside the frame of
//! [`crate::storage::file_frame`].
//!
//! Beside a snapshot it is only a shortcut: [`crate::storage::Db::open`]
//! loads it only together with a snapshot of the same WAL segment, deletes
//! it once read, and replays the whole WAL when either is missing or
//! damaged. Written after the head was persisted to blocks at shutdown
//! (`persisted_head`, version 2) it is the only copy of the exemplars the
//! emptied head held: every open loads it before replaying the WAL and
//! keeps it until the next clean shutdown replaces it. Owns the file's
//! encoding; must not touch the WAL or the snapshot file.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{Labels, LabelsBuilder};
use crate::storage::file_frame::{self, FrameError};
use crate::storage::head::exemplars::ExemplarEntry;
use crate::storage::head::metadata::{metric_type_code, metric_type_name, MetricMetadata};
use crate::storage::head::Head;
use crate::storage::SeriesRef;

/// File name in the data directory.
pub(crate) const HEAD_METADATA_FILE: &str = "head_metadata";
/// First four bytes of the file.
pub(crate) const HEAD_METADATA_MAGIC: [u8; 4] = *b"TMHM";
/// Format version written and read (`docs/format/head-metadata.md`).
pub(crate) const HEAD_METADATA_VERSION: u8 = 2;
/// Largest body bincode may decode, a bound on what a damaged (but
/// CRC-valid) length field could make it allocate.
const MAX_BODY_BYTES: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_BODY_BYTES>()
}

/// The body (version 2). Field order is the format: append fields only
/// with a version bump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Body {
    /// The last WAL segment the head snapshot beside it covers (or, with
    /// `persisted_head`, the last segment at shutdown).
    wal_segment: u32,
    metadata: Vec<FileMetadata>,
    /// Series the exemplars belong to: ref and labels.
    series: Vec<(u64, Vec<(String, String)>)>,
    /// Exemplars, oldest first.
    exemplars: Vec<FileExemplar>,
    /// Written after the head was persisted to blocks at shutdown (no
    /// snapshot beside it); version 2.
    persisted_head: bool,
}

/// The body of version 1: version 2 without `persisted_head`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct BodyV1 {
    wal_segment: u32,
    metadata: Vec<FileMetadata>,
    series: Vec<(u64, Vec<(String, String)>)>,
    exemplars: Vec<FileExemplar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileMetadata {
    metric: String,
    metric_type: u8,
    help: String,
    unit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileExemplar {
    /// Index into `Body::series`.
    series: u32,
    labels: Vec<(String, String)>,
    value_bits: u64,
    t: i64,
}

/// Why the file could not be loaded (the caller replays the WAL instead).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadMetadataError {
    #[error("reading head metadata: {0}")]
    Io(#[from] std::io::Error),
    #[error("head metadata damaged: {0}")]
    Frame(#[from] FrameError),
    #[error("head metadata damaged: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("head metadata damaged: {len} trailing bytes")]
    TrailingBytes { len: usize },
    #[error("head metadata damaged: exemplar {index} names series {series} of {count}")]
    SeriesIndex {
        index: usize,
        series: u32,
        count: usize,
    },
    #[error("head metadata damaged: invalid labels")]
    InvalidLabels,
    #[error("head metadata covers WAL segment {got}, the head snapshot {expected}")]
    SegmentMismatch { expected: u32, got: u32 },
    #[error("encoding head metadata: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

fn pairs(l: &Labels) -> Vec<(String, String)> {
    l.iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect()
}

/// Encodes the head's metadata and exemplars as covering the WAL up to
/// `wal_segment`.
pub(crate) fn encode(
    head: &Head,
    wal_segment: u32,
    persisted_head: bool,
) -> Result<Vec<u8>, HeadMetadataError> {
    let metadata = head
        .metadata
        .all()
        .into_iter()
        .map(|m| FileMetadata {
            metric_type: metric_type_code(m.metric_type),
            metric: m.metric,
            help: m.help,
            unit: m.unit,
        })
        .collect();
    let mut series: Vec<(u64, Vec<(String, String)>)> = Vec::new();
    let mut index: std::collections::HashMap<SeriesRef, u32> = Default::default();
    let mut exemplars = Vec::new();
    for (r, e) in head.exemplars.lock().entries() {
        let i = match index.get(r) {
            Some(i) => *i,
            None => {
                let i = u32::try_from(series.len()).unwrap_or(u32::MAX);
                series.push((r.0, pairs(&e.series)));
                index.insert(*r, i);
                i
            }
        };
        exemplars.push(FileExemplar {
            series: i,
            labels: pairs(&e.labels),
            value_bits: e.value.to_bits(),
            t: e.t,
        });
    }
    let body = Body {
        wal_segment,
        metadata,
        series,
        exemplars,
        persisted_head,
    };
    let mut buf = Vec::new();
    file_frame::start(&mut buf, HEAD_METADATA_MAGIC, HEAD_METADATA_VERSION);
    buf.extend_from_slice(&bincode::serde::encode_to_vec(&body, config())?);
    file_frame::seal(&mut buf);
    Ok(buf)
}

/// Writes the file atomically to `path`, as the companion of a head
/// snapshot of `wal_segment`.
pub(crate) fn write(head: &Head, path: &Path, wal_segment: u32) -> Result<(), HeadMetadataError> {
    let buf = encode(head, wal_segment, false)?;
    file_frame::write_atomic(path, &buf)?;
    Ok(())
}

/// Writes the file atomically to `path` after the head was persisted to
/// blocks at shutdown: the only copy of its exemplars from then on.
pub(crate) fn write_persisted(
    head: &Head,
    path: &Path,
    wal_segment: u32,
) -> Result<(), HeadMetadataError> {
    let buf = encode(head, wal_segment, true)?;
    file_frame::write_atomic(path, &buf)?;
    Ok(())
}

/// Loads a file written by [`write_persisted`] into a fresh head, before
/// the WAL is replayed. Returns `Ok(false)`, changing nothing, for a
/// snapshot's companion (version 1, or 2 without `persisted_head`).
/// Series created from now on get refs above the exemplars' own, so an
/// exemplar is never judged against another series' newest.
pub(crate) fn load_persisted(head: &Head, path: &Path) -> Result<bool, HeadMetadataError> {
    let bytes = fs::read(path)?;
    let body = decode(&bytes)?;
    if !body.persisted_head {
        return Ok(false);
    }
    let max_ref = body.series.iter().map(|(r, _)| *r).max();
    apply(head, body)?;
    if let Some(r) = max_ref {
        head.next_ref
            .fetch_max(r.saturating_add(1), std::sync::atomic::Ordering::AcqRel);
    }
    Ok(true)
}

/// Checks the frame and decodes a body of either version.
fn decode(bytes: &[u8]) -> Result<Body, HeadMetadataError> {
    let (version, raw) =
        file_frame::open_versions(bytes, HEAD_METADATA_MAGIC, 1..=HEAD_METADATA_VERSION)?;
    let (body, used) = if version == 1 {
        let (b, used): (BodyV1, usize) = bincode::serde::decode_from_slice(raw, config())?;
        let body = Body {
            wal_segment: b.wal_segment,
            metadata: b.metadata,
            series: b.series,
            exemplars: b.exemplars,
            persisted_head: false,
        };
        (body, used)
    } else {
        bincode::serde::decode_from_slice(raw, config())?
    };
    if used != raw.len() {
        return Err(HeadMetadataError::TrailingBytes {
            len: raw.len() - used,
        });
    }
    Ok(body)
}

/// Loads the file into a head freshly loaded from a snapshot of
/// `wal_segment`, whose stores are empty.
pub(crate) fn load(head: &Head, path: &Path, wal_segment: u32) -> Result<(), HeadMetadataError> {
    let bytes = fs::read(path)?;
    load_bytes(head, &bytes, wal_segment)
}

fn load_bytes(head: &Head, bytes: &[u8], wal_segment: u32) -> Result<(), HeadMetadataError> {
    let body = decode(bytes)?;
    if body.wal_segment != wal_segment {
        return Err(HeadMetadataError::SegmentMismatch {
            expected: wal_segment,
            got: body.wal_segment,
        });
    }
    apply(head, body)
}

/// Applies a decoded body to the head's (empty) stores.
fn apply(head: &Head, body: Body) -> Result<(), HeadMetadataError> {
    // Everything is decoded and checked before the stores change.
    let labels = |pairs: Vec<(String, String)>| -> Result<Labels, HeadMetadataError> {
        let mut b = LabelsBuilder::new();
        for (n, v) in pairs {
            b.push_shared(head.interner.intern(&n), head.interner.intern(&v));
        }
        b.build().map_err(|_| HeadMetadataError::InvalidLabels)
    };
    let mut series = Vec::with_capacity(body.series.len());
    for (r, l) in body.series {
        series.push((SeriesRef(r), labels(l)?));
    }
    let mut exemplars = Vec::with_capacity(body.exemplars.len());
    for (index, e) in body.exemplars.into_iter().enumerate() {
        let Some((r, s)) = usize::try_from(e.series).ok().and_then(|i| series.get(i)) else {
            return Err(HeadMetadataError::SeriesIndex {
                index,
                series: e.series,
                count: series.len(),
            });
        };
        exemplars.push((
            *r,
            ExemplarEntry {
                series: s.clone(),
                labels: labels(e.labels)?,
                value: f64::from_bits(e.value_bits),
                t: e.t,
            },
        ));
    }
    let metadata = body
        .metadata
        .into_iter()
        .map(|m| MetricMetadata {
            metric: m.metric,
            metric_type: metric_type_name(m.metric_type).unwrap_or("unknown"),
            help: m.help,
            unit: m.unit,
        })
        .collect();
    head.metadata.apply(metadata);
    for (r, e) in exemplars {
        head.exemplars.add(r, e);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::storage::head::{HeadOptions, MetadataLimits};

    pub(crate) fn head() -> Head {
        Head::new(HeadOptions {
            block_range_ms: 7_200_000,
            max_series_per_metric: 0,
            stripes: 16,
            max_exemplars: 100,
            metadata: MetadataLimits {
                max_families: 100,
                max_bytes: 1 << 20,
            },
            ooo_window_ms: 0,
        })
    }

    /// A head holding two metadata families and three exemplars of two
    /// series (one with no labels, one with a NaN value); the content of
    /// the golden fixture `tests/testdata/head_metadata-v1`.
    pub(crate) fn fixture_head() -> Head {
        let h = head();
        h.metadata.apply(vec![
            MetricMetadata {
                metric: "http_requests_total".into(),
                metric_type: "counter",
                help: "Requests served.".into(),
                unit: String::new(),
            },
            MetricMetadata {
                metric: "temperature".into(),
                metric_type: "gauge",
                help: "Temperature ☃.".into(),
                unit: "celsius".into(),
            },
        ]);
        let a = Labels::from_static(&[("__name__", "http_requests_total"), ("job", "api")]);
        let b = Labels::from_static(&[("__name__", "temperature")]);
        let ex = |series: &Labels, trace: &[(&'static str, &'static str)], value: f64, t| {
            ExemplarEntry {
                series: series.clone(),
                labels: Labels::from_static(trace),
                value,
                t,
            }
        };
        h.exemplars
            .add(SeriesRef(1), ex(&a, &[("trace_id", "abc")], 1.5, 1_000));
        h.exemplars.add(SeriesRef(2), ex(&b, &[], f64::NAN, 1_500));
        h.exemplars
            .add(SeriesRef(1), ex(&a, &[("trace_id", "def")], 2.0, 2_000));
        h
    }

    fn exemplar_keys(h: &Head) -> Vec<(String, String, u64, i64)> {
        h.exemplars
            .select(&[], i64::MIN, i64::MAX)
            .iter()
            .map(|e| {
                (
                    e.series.to_string(),
                    e.labels.to_string(),
                    e.value.to_bits(),
                    e.t,
                )
            })
            .collect()
    }

    #[test]
    fn head_metadata_round_trips() {
        let src = fixture_head();
        let bytes = encode(&src, 7, false).unwrap();
        let dst = head();
        load_bytes(&dst, &bytes, 7).unwrap();
        assert_eq!(dst.metadata.all(), src.metadata.all());
        assert_eq!(exemplar_keys(&dst), exemplar_keys(&src));
        assert_eq!(exemplar_keys(&dst).len(), 3);
    }

    #[test]
    fn head_metadata_damage_and_segment_mismatch_refused() {
        let bytes = encode(&fixture_head(), 7, false).unwrap();
        assert!(matches!(
            load_bytes(&head(), &bytes, 8),
            Err(HeadMetadataError::SegmentMismatch {
                expected: 8,
                got: 7
            })
        ));
        for i in [0, 4, 10, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            let h = head();
            assert!(load_bytes(&h, &bad, 7).is_err(), "byte {i}");
            assert!(h.metadata.is_empty() && h.exemplars.is_empty());
        }
    }

    /// The golden fixture written by format version 1 keeps opening with
    /// the same content (as a snapshot's companion).
    #[test]
    fn head_metadata_golden_v1_fixture_opens() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/head_metadata-v1");
        let want = fixture_head();
        let got = head();
        load(&got, &path, 42).expect("the v1 fixture must keep opening");
        assert_eq!(got.metadata.all(), want.metadata.all());
        assert_eq!(exemplar_keys(&got), exemplar_keys(&want));
        assert!(
            !load_persisted(&head(), &path).unwrap(),
            "v1 is never a persisted head's"
        );
    }

    /// The golden fixture of format version 2 (written after the head was
    /// persisted at shutdown) keeps opening with the same content, and
    /// series created after it get refs above its exemplars'. Regenerate
    /// (only with a version bump) with
    /// `TIDEMARK_WRITE_FIXTURES=1 cargo test --lib head_metadata_golden`.
    #[test]
    fn head_metadata_golden_v2_fixture_opens() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/head_metadata-v2");
        let want = fixture_head();
        if std::env::var_os("TIDEMARK_WRITE_FIXTURES").is_some() {
            fs::write(&path, encode(&want, 42, true).unwrap()).unwrap();
        }
        let got = head();
        assert!(load_persisted(&got, &path).expect("the v2 fixture must keep opening"));
        assert_eq!(got.metadata.all(), want.metadata.all());
        assert_eq!(exemplar_keys(&got), exemplar_keys(&want));
        assert!(got.next_ref.load(std::sync::atomic::Ordering::Acquire) > 2);
        // A snapshot's companion is not applied by the persisted loader.
        let companion = encode(&want, 42, false).unwrap();
        let tmp = std::env::temp_dir().join(format!("tm-hm-{}", std::process::id()));
        fs::write(&tmp, companion).unwrap();
        let h = head();
        assert!(!load_persisted(&h, &tmp).unwrap());
        assert!(h.metadata.is_empty() && h.exemplars.is_empty());
        let _ = fs::remove_file(&tmp);
    }

    proptest::proptest! {
        #[test]
        fn prop_head_metadata_arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)
        ) {
            // Framed correctly, so bincode sees the arbitrary body.
            let mut buf = Vec::new();
            file_frame::start(&mut buf, HEAD_METADATA_MAGIC, HEAD_METADATA_VERSION);
            buf.extend_from_slice(&bytes);
            file_frame::seal(&mut buf);
            let _ = load_bytes(&head(), &buf, 0);
            let _ = load_bytes(&head(), &bytes, 0);
        }
    }
}
