//! The head snapshot written on clean shutdown (`docs/format/head-snapshot.md`):
//! every series with its chunks, the head's tombstones and bounds, and the
//! last WAL segment it covers, so that a clean restart loads chunks as
//! bytes instead of replaying every sample of the WAL.
//!
//! The snapshot is only a shortcut: the WAL is never trimmed because of it,
//! and [`crate::storage::Db::open`] deletes it once loaded (or when it fails
//! its checksum), so a later crash always recovers from the WAL. Owns the
//! file's encoding (its frame is [`crate::storage::file_frame`]'s); must
//! not touch the WAL's files.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::model::{HistogramSample, LabelsBuilder, Sample};
use crate::storage::chunk::{self, Encoding, XorIter};
use crate::storage::encoding::{
    put_be_u32, put_be_u64, put_uvarint, put_uvarint_str, put_varint, Decbuf, DecodeError,
};
use crate::storage::file_frame::{self, FrameError};
use crate::storage::head::ooo::{OooData, OooSample};
use crate::storage::head::series::{GetOrCreate, HeadChunk, HistData, MemSeries};
use crate::storage::head::Head;
use crate::storage::tombstones::Interval;
use crate::storage::SeriesRef;

/// File name of the snapshot in the data directory.
pub(crate) const HEAD_SNAPSHOT_FILE: &str = "head_snapshot";
const MAGIC: [u8; 4] = *b"TMHS";
/// Version 2 added each series' histogram chunks, version 3 its
/// out-of-order samples, version 4 stores the open chunk as its XOR bytes
/// instead of 16-byte samples, version 5 an encoding byte before each full
/// float chunk (XOR or packed, `chunk::pack_full`); older snapshots still
/// load (their full chunks are XOR).
const VERSION: u8 = 5;

/// Why a snapshot could not be loaded (the caller falls back to the WAL).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("reading head snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("head snapshot damaged: {0}")]
    Frame(#[from] FrameError),
    #[error("head snapshot damaged: {0}")]
    Corrupt(&'static str),
    #[error("head snapshot damaged: {0}")]
    Decode(#[from] DecodeError),
}

/// Encodes the head (which must take no appends meanwhile) as covering the
/// WAL up to segment `wal_segment`, and writes it atomically to `path`.
pub(crate) fn write(head: &Head, path: &Path, wal_segment: u32) -> std::io::Result<()> {
    // No append is between its WAL write and its apply while this is held.
    let _gc = head.gc_lock.write();
    let mut buf = Vec::with_capacity(crate::storage::SNAPSHOT_BUFFER_SIZE);
    file_frame::start(&mut buf, MAGIC, VERSION);
    put_be_u32(&mut buf, wal_segment);
    put_uvarint(&mut buf, head.next_ref.load(Ordering::Acquire));
    put_varint(&mut buf, head.min_valid_floor.load(Ordering::Acquire));
    put_varint(&mut buf, head.min_t.load(Ordering::Acquire));
    put_varint(&mut buf, head.max_t.load(Ordering::Acquire));
    let all = head.series.all();
    put_uvarint(&mut buf, all.len() as u64);
    for s in &all {
        put_uvarint(&mut buf, s.series_ref.0);
        put_uvarint(&mut buf, s.labels.len() as u64);
        for l in &s.labels {
            put_uvarint_str(&mut buf, &l.name);
            put_uvarint_str(&mut buf, &l.value);
        }
        let d = s.data.lock();
        put_uvarint(&mut buf, d.full.len() as u64);
        for c in &d.full {
            buf.push(c.encoding.to_byte());
            put_varint(&mut buf, c.mint);
            put_varint(&mut buf, c.maxt);
            put_uvarint(&mut buf, c.bytes.len() as u64);
            buf.extend_from_slice(&c.bytes);
        }
        // The open chunk as its bytes (about 1-2 bytes a sample; version
        // 3 wrote 10-16), appended again on load.
        put_uvarint(&mut buf, d.open.bytes().len() as u64);
        buf.extend_from_slice(d.open.bytes());
        let hist = d.hist();
        let hist_full = hist.map_or(&[][..], |h| &h.full[..]);
        put_uvarint(&mut buf, hist_full.len() as u64);
        for c in hist_full {
            buf.push(c.encoding.to_byte());
            put_varint(&mut buf, c.mint);
            put_varint(&mut buf, c.maxt);
            put_uvarint(&mut buf, c.bytes.len() as u64);
            buf.extend_from_slice(&c.bytes);
        }
        match hist.and_then(|h| h.open_chunk()) {
            Some((encoding, bytes)) => {
                buf.push(encoding.to_byte());
                put_uvarint(&mut buf, bytes.len() as u64);
                buf.extend_from_slice(bytes);
            }
            None => buf.push(0),
        }
        let ooo = d.ooo().map(|o| o.samples()).unwrap_or_default();
        put_uvarint(&mut buf, ooo.len() as u64);
        for x in ooo {
            put_varint(&mut buf, x.t);
            put_be_u64(&mut buf, x.v.to_bits());
        }
        // Out-of-order histograms as histogram chunks of their samples.
        let ooo_hist = d.ooo_hist().map(|o| o.samples()).unwrap_or_default();
        let chunks = HistogramSample::encode(&ooo_hist);
        put_uvarint(&mut buf, chunks.len() as u64);
        for c in chunks {
            buf.push(c.encoding.to_byte());
            put_uvarint(&mut buf, c.bytes.len() as u64);
            buf.extend_from_slice(&c.bytes);
        }
    }
    let ts = head.tombstones.read();
    put_uvarint(&mut buf, ts.len() as u64);
    for (r, ivs) in ts.iter() {
        put_uvarint(&mut buf, r.0);
        put_uvarint(&mut buf, ivs.iter().count() as u64);
        for iv in ivs.iter() {
            put_varint(&mut buf, iv.mint);
            put_varint(&mut buf, iv.maxt);
        }
    }
    drop(ts);
    file_frame::seal(&mut buf);
    file_frame::write_atomic(path, &buf)
}

/// Loads a snapshot into an empty head. Returns the last WAL segment it
/// covers; replay continues after it.
pub(crate) fn load(head: &Head, path: &Path) -> Result<u32, SnapshotError> {
    load_bytes(head, &fs::read(path)?)
}

/// Decodes `bytes` as a `head_snapshot` file into a fresh, empty head, as
/// `Db::open` does, and says why it is refused if it is; returns the last
/// WAL segment it covers. For the fuzz harness `fuzz_head_snapshot`: no
/// bytes may make it panic.
///
/// # Errors
/// What makes `Db::open` ignore the file and replay the WAL instead:
/// frame, checksum, version or content, as text.
pub fn check_head_snapshot(bytes: &[u8]) -> Result<u32, String> {
    let head = Head::new(crate::storage::head::HeadOptions {
        block_range_ms: 7_200_000,
        max_series_per_metric: 0,
        stripes: 16,
        max_exemplars: 0,
        metadata: crate::storage::head::MetadataLimits {
            max_families: 0,
            max_bytes: 0,
        },
        ooo_window_ms: 0,
    });
    load_bytes(&head, bytes).map_err(|e| e.to_string())
}

/// [`load`] from the file's bytes.
fn load_bytes(head: &Head, bytes: &[u8]) -> Result<u32, SnapshotError> {
    let (version, body) = file_frame::open_versions(bytes, MAGIC, 1..=VERSION)?;
    let mut d = Decbuf::new(body);
    let wal_segment = d.be_u32()?;
    head.next_ref.store(d.uvarint()?, Ordering::Release);
    head.set_min_valid_floor(d.varint()?);
    let (min_t, max_t) = (d.varint()?, d.varint()?);
    let n = d.uvarint()?;
    // Indexed together at the end, in ref order (MemPostings::add_many).
    let mut indexed = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1 << 24));
    let mut builder = LabelsBuilder::new();
    for _ in 0..n {
        let r = SeriesRef(d.uvarint()?);
        let nl = d.uvarint()?;
        for _ in 0..nl {
            let name = utf8(d.uvarint_bytes()?)?;
            let value = utf8(d.uvarint_bytes()?)?;
            builder.push_shared(head.interner.intern(name), head.interner.intern(value));
        }
        let labels = builder
            .build()
            .map_err(|_| SnapshotError::Corrupt("invalid labels"))?;
        let nc = d.uvarint()?;
        let mut full = Vec::new();
        for _ in 0..nc {
            let encoding = if version >= 5 {
                full_chunk_encoding(d.u8()?)?
            } else {
                Encoding::Xor
            };
            let mint = d.varint()?;
            let maxt = d.varint()?;
            let len = usize::try_from(d.uvarint()?)
                .map_err(|_| SnapshotError::Corrupt("chunk length"))?;
            let bytes = d.bytes(len)?;
            // A packed chunk that takes its timestamps from another one
            // reads only inside a block's chunk segment, never here.
            if encoding == Encoding::Packed && chunk::shared_timestamps_owner(bytes).is_some() {
                return Err(SnapshotError::Corrupt(
                    "packed head chunk shares timestamps",
                ));
            }
            full.push(HeadChunk {
                encoding,
                bytes: Arc::from(bytes),
                mint,
                maxt,
            });
        }
        let open = if version >= 4 {
            let len = usize::try_from(d.uvarint()?)
                .map_err(|_| SnapshotError::Corrupt("chunk length"))?;
            let bytes = d.bytes(len)?;
            let mut it = XorIter::new(bytes);
            let open: Vec<Sample> = it.by_ref().collect();
            if it.err().is_some() || open.windows(2).any(|w| w[0].t >= w[1].t) {
                return Err(SnapshotError::Corrupt("open chunk does not decode"));
            }
            open
        } else {
            let no = d.uvarint()?;
            let mut open = Vec::new();
            for _ in 0..no {
                let t = d.varint()?;
                open.push(Sample::new(t, f64::from_bits(d.be_u64()?)));
            }
            open
        };
        let hist = if version >= 2 {
            load_histograms(&mut d, head.opts.block_range_ms)?
        } else {
            None
        };
        let (ooo, ooo_hist) = if version >= 3 {
            (load_ooo(&mut d)?, load_ooo_histograms(&mut d)?)
        } else {
            (None, None)
        };
        let got = head
            .series
            .get_or_create(labels.stable_hash(), &labels, || {
                let _ = head.count_series_of_metric(&labels, false);
                Ok::<_, SnapshotError>(Arc::new(MemSeries::new(r, labels.clone(), true)))
            })?;
        let GetOrCreate::Created(s) = got else {
            return Err(SnapshotError::Corrupt("series listed twice"));
        };
        indexed.push((s.series_ref, s.labels.clone()));
        let mut data = s.data.lock();
        data.restore(full, &open, head.opts.block_range_ms);
        data.set_rare(hist, ooo, ooo_hist);
    }
    head.postings.add_many(indexed);
    let nt = d.uvarint()?;
    let mut ts = head.tombstones.write();
    for _ in 0..nt {
        let r = d.uvarint()?;
        let ni = d.uvarint()?;
        for _ in 0..ni {
            let (mint, maxt) = (d.varint()?, d.varint()?);
            ts.add(SeriesRef(r), Interval { mint, maxt });
        }
    }
    drop(ts);
    if !d.is_empty() {
        return Err(SnapshotError::Corrupt("trailing bytes"));
    }
    if min_t <= max_t {
        head.observe_time_range(min_t, max_t);
    }
    Ok(wal_segment)
}

/// The encoding of a full float chunk from its byte (version 5): XOR or
/// packed, the two the head keeps ([`chunk::pack_full`]).
fn full_chunk_encoding(byte: u8) -> Result<Encoding, SnapshotError> {
    match Encoding::from_byte(byte) {
        Some(e @ (Encoding::Xor | Encoding::Packed)) => Ok(e),
        _ => Err(SnapshotError::Corrupt("full float chunk encoding")),
    }
}

/// Reads one series' histogram section (version 2): full chunks, then the
/// open chunk (encoding byte 0 when there is none).
fn load_histograms(
    d: &mut Decbuf<'_>,
    block_range_ms: i64,
) -> Result<Option<HistData>, SnapshotError> {
    let encoding = |b: u8| {
        Encoding::from_byte(b)
            .filter(|e| e.is_histogram())
            .ok_or(SnapshotError::Corrupt("histogram chunk encoding"))
    };
    let n = d.uvarint()?;
    let mut full = Vec::new();
    for _ in 0..n {
        let enc = encoding(d.u8()?)?;
        let mint = d.varint()?;
        let maxt = d.varint()?;
        let len =
            usize::try_from(d.uvarint()?).map_err(|_| SnapshotError::Corrupt("chunk length"))?;
        full.push(HeadChunk {
            encoding: enc,
            bytes: Arc::from(d.bytes(len)?),
            mint,
            maxt,
        });
    }
    let open = match d.u8()? {
        0 => None,
        b => {
            let enc = encoding(b)?;
            let len = usize::try_from(d.uvarint()?)
                .map_err(|_| SnapshotError::Corrupt("chunk length"))?;
            Some((enc, d.bytes(len)?))
        }
    };
    if full.is_empty() && open.is_none() {
        return Ok(None);
    }
    HistData::restore(full, open, block_range_ms)
        .map(Some)
        .ok_or(SnapshotError::Corrupt("histogram chunk does not decode"))
}

/// Reads one series' out-of-order samples (version 3): a count, then each
/// sample's time and value bits, strictly ascending in time.
fn load_ooo(d: &mut Decbuf<'_>) -> Result<Option<OooData<Sample>>, SnapshotError> {
    let n = d.uvarint()?;
    let mut samples: Vec<Sample> = Vec::new();
    for _ in 0..n {
        let t = d.varint()?;
        if samples.last().is_some_and(|p| p.t >= t) {
            return Err(SnapshotError::Corrupt("out-of-order samples not ascending"));
        }
        samples.push(Sample::new(t, f64::from_bits(d.be_u64()?)));
    }
    Ok((!samples.is_empty()).then(|| OooData::restore(samples)))
}

/// Reads one series' out-of-order histograms (version 3): a count of
/// histogram chunks, each its encoding byte, length and bytes; together
/// strictly ascending in time.
fn load_ooo_histograms(
    d: &mut Decbuf<'_>,
) -> Result<Option<OooData<HistogramSample>>, SnapshotError> {
    let n = d.uvarint()?;
    let mut samples: Vec<HistogramSample> = Vec::new();
    for _ in 0..n {
        let encoding = Encoding::from_byte(d.u8()?)
            .filter(|e| e.is_histogram())
            .ok_or(SnapshotError::Corrupt("histogram chunk encoding"))?;
        let len =
            usize::try_from(d.uvarint()?).map_err(|_| SnapshotError::Corrupt("chunk length"))?;
        let values = crate::storage::chunk::decode_histogram_values(encoding, d.bytes(len)?)
            .map_err(|_| SnapshotError::Corrupt("histogram chunk does not decode"))?;
        for (t, h) in values {
            if samples.last().is_some_and(|p| p.t >= t) {
                return Err(SnapshotError::Corrupt(
                    "out-of-order histograms not ascending",
                ));
            }
            samples.push(HistogramSample { t, h });
        }
    }
    Ok((!samples.is_empty()).then(|| OooData::restore(samples)))
}

fn utf8(b: &[u8]) -> Result<&str, SnapshotError> {
    std::str::from_utf8(b).map_err(|_| SnapshotError::Corrupt("label not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, Matcher};
    use crate::storage::head::appender::SeriesSamples;
    use crate::storage::head::metadata_file::tests::head;
    use crate::storage::wal::{Wal, WalOptions};

    /// The content of the golden fixtures `tests/testdata/head_snapshot-v*`:
    /// three series of 150 samples each (one full chunk and an open one),
    /// scraped every 15 s with a few ms of jitter: a counter of decimals,
    /// a gauge of sines with no decimal form, and one of the floats codecs
    /// get wrong (stale marker, NaN payload, -0.0, infinities).
    fn fixture_head(wal: &Wal) -> Head {
        let h = head();
        let value = |i: usize, j: usize| match (i, j % 10) {
            (2, 3) => crate::model::STALE_NAN,
            (2, 5) => f64::from_bits(0x7ff8_0000_dead_beef),
            (2, 7) => -0.0,
            (2, 9) => f64::NEG_INFINITY,
            (0, _) => (j * 17) as f64 / 10.0,
            (1, _) => (j as f64).sin() * 1e3,
            _ => j as f64,
        };
        let batch: Vec<SeriesSamples> = (0..3)
            .map(|i| SeriesSamples {
                created: Vec::new(),
                histograms: Vec::new(),
                labels: Labels::from_static(&[
                    ("__name__", ["counter", "sine", "odd"][i]),
                    ("job", "fixture"),
                ]),
                samples: (0..150)
                    .map(|j| {
                        let t = 1_700_000_000_000 + j as i64 * 15_000 + (j as i64 * 7) % 5;
                        Sample::new(t, value(i, j))
                    })
                    .collect(),
            })
            .collect();
        let out = h.append(&batch, wal).unwrap();
        assert_eq!(out.appended, 450);
        h
    }

    /// A series as the fixture test compares it: labels, samples as
    /// (t, bits), and the encodings of its chunks.
    type Dumped = (String, Vec<(i64, u64)>, Vec<Encoding>);

    /// Every series' samples as (t, bits), and its chunks' encodings.
    fn dump(h: &Head) -> Vec<Dumped> {
        let all = [Matcher::eq("job", "fixture")];
        let mut out: Vec<_> = h
            .select(&all, i64::MIN, i64::MAX)
            .into_iter()
            .map(|(labels, chunks, _)| {
                let samples = chunks
                    .iter()
                    .flat_map(|c| chunk::decode(c.encoding, &c.bytes).unwrap())
                    .map(|s| (s.t, s.v.to_bits()))
                    .collect();
                let encodings = chunks.iter().map(|c| c.encoding).collect();
                (labels.to_string(), samples, encodings)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The golden fixtures of versions 4 (full chunks XOR) and 5 (an
    /// encoding byte per full chunk; the head packed them) keep
    /// loading with the same samples, and appends go on after the load.
    /// Regenerate the current version's (only with a version bump) with
    /// `TIDEMARK_WRITE_FIXTURES=1 cargo test --lib head_snapshot_golden`.
    #[test]
    fn head_snapshot_golden_fixtures_load() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(&dir.path().join("wal"), WalOptions::default()).unwrap();
        let want = fixture_head(&wal);
        let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
        if std::env::var_os("TIDEMARK_WRITE_FIXTURES").is_some() {
            let path = testdata.join(format!("head_snapshot-v{VERSION}"));
            write(&want, &path, 42).unwrap();
        }
        let samples = |d: Vec<Dumped>| d.into_iter().map(|(l, s, _)| (l, s)).collect::<Vec<_>>();
        for version in [4, 5] {
            let path = testdata.join(format!("head_snapshot-v{version}"));
            let got = head();
            assert_eq!(load(&got, &path).unwrap(), 42, "version {version}");
            let dumped = dump(&got);
            let packed = dumped
                .iter()
                .flat_map(|(_, _, e)| e)
                .filter(|&&e| e == Encoding::Packed)
                .count();
            assert_eq!(packed > 0, version >= 5, "version {version}");
            assert_eq!(samples(dumped), samples(dump(&want)), "version {version}");
            let more = SeriesSamples {
                created: Vec::new(),
                histograms: Vec::new(),
                labels: Labels::from_static(&[("__name__", "counter"), ("job", "fixture")]),
                samples: vec![Sample::new(1_800_000_000_000, 1.0)],
            };
            let wal_dir = tempfile::tempdir().unwrap();
            let w = Wal::open(&wal_dir.path().join("wal"), WalOptions::default()).unwrap();
            assert_eq!(got.append(&[more], &w).unwrap().appended, 1);
        }
    }

    /// The fuzz entry point loads a good snapshot and refuses a damaged one
    /// with a reason, never a panic.
    #[test]
    fn check_head_snapshot_takes_the_fixture_and_refuses_damage() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata/head_snapshot-v5");
        let mut bytes = fs::read(path).unwrap();
        assert_eq!(check_head_snapshot(&bytes), Ok(42));
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        assert!(check_head_snapshot(&bytes).unwrap_err().contains("damaged"));
        assert!(check_head_snapshot(&[]).is_err());
    }

    /// A version-5 full float chunk is XOR or packed, nothing else.
    #[test]
    fn full_chunk_encoding_takes_xor_and_packed_only() {
        assert_eq!(full_chunk_encoding(1).unwrap(), Encoding::Xor);
        assert_eq!(
            full_chunk_encoding(Encoding::Packed.to_byte()).unwrap(),
            Encoding::Packed
        );
        for b in [0u8, 2, 3, 0xff] {
            assert!(full_chunk_encoding(b).is_err(), "{b}");
        }
    }
}
