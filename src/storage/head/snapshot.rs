//! The head snapshot written on clean shutdown (`docs/format/head-snapshot.md`):
//! every series with its chunks, the head's tombstones and bounds, and the
//! last WAL segment it covers, so that a clean restart loads chunks as
//! bytes instead of replaying every sample of the WAL.
//!
//! The snapshot is only a shortcut: the WAL is never trimmed because of it,
//! and [`crate::storage::Db::open`] deletes it once loaded (or when it fails
//! its checksum), so a later crash always recovers from the WAL. Owns the
//! file's encoding; must not touch the WAL's files.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::model::{LabelsBuilder, Sample};
use crate::storage::chunk::XorIter;
use crate::storage::encoding::{
    put_be_u32, put_be_u64, put_uvarint, put_uvarint_str, put_varint, Decbuf, DecodeError,
};
use crate::storage::head::series::{GetOrCreate, HeadChunk, MemSeries};
use crate::storage::head::Head;
use crate::storage::tombstones::Interval;
use crate::storage::SeriesRef;

/// File name of the snapshot in the data directory.
pub(crate) const HEAD_SNAPSHOT_FILE: &str = "head_snapshot";
const MAGIC: [u8; 4] = *b"TMHS";
const VERSION: u8 = 1;

/// Why a snapshot could not be loaded (the caller falls back to the WAL).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("reading head snapshot: {0}")]
    Io(#[from] std::io::Error),
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
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&[VERSION, 0, 0, 0]);
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
        let open: Vec<Sample> = XorIter::new(d.open.bytes()).collect();
        put_uvarint(&mut buf, open.len() as u64);
        for x in open {
            put_varint(&mut buf, x.t);
            put_be_u64(&mut buf, x.v.to_bits());
        }
    }
    let ts = head.tombstones.read();
    put_uvarint(&mut buf, ts.len() as u64);
    for (r, ivs) in ts.iter() {
        put_uvarint(&mut buf, r);
        put_uvarint(&mut buf, ivs.iter().count() as u64);
        for iv in ivs.iter() {
            put_varint(&mut buf, iv.mint);
            put_varint(&mut buf, iv.maxt);
        }
    }
    drop(ts);
    let crc = crc32fast::hash(&buf);
    put_be_u32(&mut buf, crc);

    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&buf)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Loads a snapshot into an empty head. Returns the last WAL segment it
/// covers; replay continues after it.
pub(crate) fn load(head: &Head, path: &Path) -> Result<u32, SnapshotError> {
    let bytes = fs::read(path)?;
    if bytes.len() < 16 || bytes[..4] != MAGIC {
        return Err(SnapshotError::Corrupt("bad magic"));
    }
    if bytes[4] != VERSION {
        return Err(SnapshotError::Corrupt("unknown version"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        return Err(SnapshotError::Corrupt("checksum mismatch"));
    }
    let mut d = Decbuf::new(&body[8..]);
    let wal_segment = d.be_u32()?;
    head.next_ref.store(d.uvarint()?, Ordering::Release);
    head.set_min_valid_floor(d.varint()?);
    let (min_t, max_t) = (d.varint()?, d.varint()?);
    let n = d.uvarint()?;
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
        let no = d.uvarint()?;
        let mut open = Vec::new();
        for _ in 0..no {
            let t = d.varint()?;
            open.push(Sample::new(t, f64::from_bits(d.be_u64()?)));
        }
        let got = head
            .series
            .get_or_create(labels.stable_hash(), &labels, || {
                let _ = head.count_series_of_metric(&labels, false);
                Ok::<_, SnapshotError>(Arc::new(MemSeries::new(r, labels.clone(), true)))
            })?;
        let GetOrCreate::Created(s) = got else {
            return Err(SnapshotError::Corrupt("series listed twice"));
        };
        head.postings.add(s.series_ref, &s.labels);
        s.data.lock().restore(full, &open, head.opts.block_range_ms);
    }
    let nt = d.uvarint()?;
    let mut ts = head.tombstones.write();
    for _ in 0..nt {
        let r = d.uvarint()?;
        let ni = d.uvarint()?;
        for _ in 0..ni {
            let (mint, maxt) = (d.varint()?, d.varint()?);
            ts.add(r, Interval { mint, maxt });
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

fn utf8(b: &[u8]) -> Result<&str, SnapshotError> {
    std::str::from_utf8(b).map_err(|_| SnapshotError::Corrupt("label not UTF-8"))
}
