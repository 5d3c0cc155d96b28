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
use crate::storage::chunk::{Encoding, XorIter};
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
/// instead of 16-byte samples; older snapshots still load.
const VERSION: u8 = 4;

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
            put_varint(&mut buf, c.mint);
            put_varint(&mut buf, c.maxt);
            put_uvarint(&mut buf, c.bytes.len() as u64);
            buf.extend_from_slice(&c.bytes);
        }
        // The open chunk as its bytes (about 1-2 bytes a sample; version
        // 3 wrote 10-16), appended again on load.
        put_uvarint(&mut buf, d.open.bytes().len() as u64);
        buf.extend_from_slice(d.open.bytes());
        let hist = d.hist.as_deref();
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
        let ooo = d.ooo.as_ref().map(|o| o.samples()).unwrap_or_default();
        put_uvarint(&mut buf, ooo.len() as u64);
        for x in ooo {
            put_varint(&mut buf, x.t);
            put_be_u64(&mut buf, x.v.to_bits());
        }
        // Out-of-order histograms as histogram chunks of their samples.
        let ooo_hist = d.ooo_hist.as_ref().map(|o| o.samples()).unwrap_or_default();
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
    let bytes = fs::read(path)?;
    let (version, body) = file_frame::open_versions(&bytes, MAGIC, 1..=VERSION)?;
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
            let mint = d.varint()?;
            let maxt = d.varint()?;
            let len = usize::try_from(d.uvarint()?)
                .map_err(|_| SnapshotError::Corrupt("chunk length"))?;
            full.push(HeadChunk {
                encoding: crate::storage::chunk::Encoding::Xor,
                bytes: Arc::from(d.bytes(len)?),
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
        data.hist = hist.map(Box::new);
        data.ooo = ooo.map(Box::new);
        data.ooo_hist = ooo_hist.map(Box::new);
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
