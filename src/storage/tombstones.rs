//! Tombstones: deleted time intervals per series, in memory ([`Intervals`],
//! [`Tombstones`]) and as the `tombstones` file of a block
//! ([`read_tombstones`], [`write_tombstones`]).
//!
//! Typed by where the series ids come from: [`Tombstones<BlockSeriesId>`]
//! in a block (the only kind with a file), `Tombstones<SeriesRef>` in the
//! head. This module owns only the interval arithmetic and the file codec,
//! never series, chunks or the decision of which samples to drop.
//! Format: `docs/format/tombstones.md`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::storage::block::{Corruption, Part};
use crate::storage::encoding::{put_be_u32, put_uvarint, put_varint, Decbuf, DecodeError};
use crate::storage::refs::BlockSeriesId;

/// Magic number at the start of a tombstones file (`docs/format/tombstones.md`).
pub const TOMBSTONES_MAGIC: u32 = 0x5444_5453; // "TDTS"
/// Version byte of the tombstones format this code writes and reads.
pub const TOMBSTONES_FORMAT_VERSION: u8 = 1;
/// Bytes of magic + version.
const HEADER_LEN: usize = 5;

/// A tombstones file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged (bad magic, checksum, truncated entry, ...).
    #[error("corrupt tombstones file {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset where the damage was noticed.
        offset: u64,
        /// What was wrong.
        reason: Corruption,
    },
}

/// A closed time interval `[mint, maxt]` in milliseconds (both inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// First deleted timestamp.
    pub mint: i64,
    /// Last deleted timestamp.
    pub maxt: i64,
}

impl Interval {
    /// `[mint, maxt]`.
    pub fn new(mint: i64, maxt: i64) -> Self {
        Self { mint, maxt }
    }

    /// Reports whether the two closed intervals share a timestamp.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.mint <= maxt && mint <= self.maxt
    }
}

/// A set of timestamps kept as sorted, disjoint, non-adjacent closed
/// intervals: adding `[1,3]` and `[4,5]` stores `[1,5]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Intervals(Vec<Interval>);

impl Intervals {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `iv`, merging it with overlapping or adjacent intervals. An
    /// interval with `mint > maxt` is empty and ignored.
    pub fn add(&mut self, iv: Interval) {
        if iv.mint > iv.maxt {
            return;
        }
        // First interval that ends at or after iv.mint - 1 (could touch iv).
        let lo = self
            .0
            .partition_point(|x| x.maxt < iv.mint.saturating_sub(1));
        // First interval that starts after iv.maxt + 1 (cannot touch iv).
        let hi = self
            .0
            .partition_point(|x| x.mint <= iv.maxt.saturating_add(1));
        if lo >= hi {
            self.0.insert(lo, iv);
            return;
        }
        let merged = Interval {
            mint: self.0[lo].mint.min(iv.mint),
            maxt: self.0[hi - 1].maxt.max(iv.maxt),
        };
        self.0.splice(lo..hi, [merged]);
    }

    /// Reports whether `t` lies in one of the intervals.
    pub fn contains(&self, t: i64) -> bool {
        let i = self.0.partition_point(|x| x.maxt < t);
        self.0.get(i).is_some_and(|x| x.mint <= t)
    }

    /// Reports whether every timestamp of `[mint, maxt]` is in the set (a
    /// chunk so covered can be skipped whole). An empty range is covered.
    pub fn covers(&self, mint: i64, maxt: i64) -> bool {
        if mint > maxt {
            return true;
        }
        let i = self.0.partition_point(|x| x.maxt < mint);
        self.0
            .get(i)
            .is_some_and(|x| x.mint <= mint && maxt <= x.maxt)
    }

    /// Reports whether some timestamp of `[mint, maxt]` is in the set.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        let i = self.0.partition_point(|x| x.maxt < mint);
        self.0.get(i).is_some_and(|x| x.overlaps(mint, maxt))
    }

    /// The intervals, ascending.
    pub fn iter(&self) -> std::slice::Iter<'_, Interval> {
        self.0.iter()
    }

    /// Number of disjoint intervals.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Reports whether nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops the intervals that end before `t` (retention: data older than
    /// `t` is gone anyway).
    pub fn retain_after(&mut self, t: i64) {
        self.0.retain(|x| x.maxt >= t);
    }
}

impl<'a> IntoIterator for &'a Intervals {
    type Item = &'a Interval;
    type IntoIter = std::slice::Iter<'a, Interval>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Deleted intervals by series: `K` is [`BlockSeriesId`] in a block (and
/// its file), [`SeriesRef`](crate::storage::SeriesRef) in the head, so one
/// owner's ids can never be looked up in the other's tombstones.
#[derive(Clone, Debug, PartialEq)]
pub struct Tombstones<K>(BTreeMap<K, Intervals>);

impl<K> Default for Tombstones<K> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<K: Copy + Ord> Tombstones<K> {
    /// No tombstones.
    pub fn new() -> Self {
        Self::default()
    }

    /// The deleted intervals of series `id`, if any.
    pub fn get(&self, id: K) -> Option<&Intervals> {
        self.0.get(&id)
    }

    /// Marks `iv` deleted for series `id`; an empty interval adds nothing.
    pub fn add(&mut self, id: K, iv: Interval) {
        if iv.mint > iv.maxt {
            return;
        }
        self.0.entry(id).or_default().add(iv);
    }

    /// Number of series with deletions.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Reports whether no series has deletions.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total number of intervals over all series.
    pub fn num_intervals(&self) -> usize {
        self.0.values().map(Intervals::len).sum()
    }

    /// `(series id, intervals)` by ascending id.
    pub fn iter(&self) -> impl Iterator<Item = (K, &Intervals)> + '_ {
        self.0.iter().map(|(&id, ivs)| (id, ivs))
    }

    /// Applies [`Intervals::retain_after`] to every series and forgets
    /// series left without intervals.
    pub fn retain_after(&mut self, t: i64) {
        self.0.retain(|_, ivs| {
            ivs.retain_after(t);
            !ivs.is_empty()
        });
    }
}

impl Tombstones<BlockSeriesId> {
    /// Encodes the whole file (header, entries, CRC).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + 8 + self.0.len() * 12);
        put_be_u32(&mut b, TOMBSTONES_MAGIC);
        b.push(TOMBSTONES_FORMAT_VERSION);
        put_uvarint(&mut b, self.0.len() as u64);
        for (&id, ivs) in &self.0 {
            put_uvarint(&mut b, id.0);
            put_uvarint(&mut b, ivs.len() as u64);
            for iv in ivs {
                put_varint(&mut b, iv.mint);
                // maxt >= mint, so the difference fits in u64.
                put_uvarint(&mut b, iv.maxt.wrapping_sub(iv.mint) as u64);
            }
        }
        let crc = crc32fast::hash(&b[HEADER_LEN..]);
        put_be_u32(&mut b, crc);
        b
    }

    /// Decodes a whole file; `path` only names the file in errors.
    ///
    /// # Errors
    /// [`Error::Corrupt`] on any damage; never panics.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self, Error> {
        let corrupt = |offset: usize, reason: Corruption| Error::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };
        let truncated = |source| Corruption::Truncated {
            part: Part::Header,
            source,
        };
        if bytes.len() < HEADER_LEN + 4 {
            return Err(corrupt(
                0,
                Corruption::TooShort {
                    len: bytes.len() as u64,
                },
            ));
        }
        let mut d = Decbuf::new(bytes);
        let magic = d.be_u32().map_err(|e| corrupt(0, truncated(e)))?;
        if magic != TOMBSTONES_MAGIC {
            return Err(corrupt(0, Corruption::BadMagic { got: magic }));
        }
        let version = d.u8().map_err(|e| corrupt(4, truncated(e)))?;
        if version != TOMBSTONES_FORMAT_VERSION {
            return Err(corrupt(4, Corruption::UnknownVersion { version }));
        }
        let body_end = bytes.len() - 4;
        let mut want = [0u8; 4];
        want.copy_from_slice(&bytes[body_end..]);
        let want = u32::from_be_bytes(want);
        let got = crc32fast::hash(&bytes[HEADER_LEN..body_end]);
        if want != got {
            return Err(corrupt(
                body_end,
                Corruption::ChecksumMismatch {
                    part: Part::Header,
                    stored: want,
                    computed: got,
                },
            ));
        }
        let mut d = Decbuf::new(&bytes[HEADER_LEN..body_end]);
        let part = Part::Tombstone;
        let err = |source: DecodeError, d: &Decbuf<'_>| {
            corrupt(
                HEADER_LEN + d.position(),
                Corruption::Truncated { part, source },
            )
        };
        let n = d.uvarint().map_err(|e| err(e, &d))?;
        let mut out = Tombstones::new();
        let mut prev: Option<u64> = None;
        for _ in 0..n {
            let at = HEADER_LEN + d.position();
            let id = d.uvarint().map_err(|e| err(e, &d))?;
            if prev.is_some_and(|p| p >= id) {
                return Err(corrupt(at, Corruption::OutOfOrder { part }));
            }
            prev = Some(id);
            let k = d.uvarint().map_err(|e| err(e, &d))?;
            if k == 0 {
                return Err(corrupt(at, Corruption::Empty { part }));
            }
            let mut ivs = Intervals::new();
            for _ in 0..k {
                let mint = d.varint().map_err(|e| err(e, &d))?;
                let delta = d.uvarint().map_err(|e| err(e, &d))?;
                // maxt - mint < 2^64, so the wrapping sum is exact.
                let maxt = mint.wrapping_add(delta as i64);
                if maxt < mint {
                    return Err(corrupt(at, Corruption::TimeOverflow { part }));
                }
                ivs.add(Interval { mint, maxt });
            }
            out.0.insert(BlockSeriesId(id), ivs);
        }
        if !d.is_empty() {
            return Err(corrupt(
                HEADER_LEN + d.position(),
                Corruption::TrailingBytes {
                    part,
                    bytes: d.remaining() as u64,
                },
            ));
        }
        Ok(out)
    }
}

/// Reads a tombstones file.
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`Error::Corrupt`] when damaged.
pub fn read_tombstones(path: &Path) -> Result<Tombstones<BlockSeriesId>, Error> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        op: "read tombstones",
        path: path.to_path_buf(),
        source,
    })?;
    Tombstones::decode(&bytes, path)
}

/// Writes a tombstones file atomically: `<path>.tmp`, fsync, rename over
/// `path`, fsync of the parent directory.
///
/// # Errors
/// [`Error::Io`] naming the step that failed; `path` is then unchanged.
pub fn write_tombstones(path: &Path, tombstones: &Tombstones<BlockSeriesId>) -> Result<(), Error> {
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io {
            op,
            path: p,
            source,
        }
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp).map_err(io("create tombstones", &tmp))?;
    f.write_all(&tombstones.encode())
        .map_err(io("write tombstones", &tmp))?;
    f.sync_all().map_err(io("fsync tombstones", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("rename tombstones", path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    sync_dir(dir).map_err(io("fsync directory", dir))
}

/// Fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const LO: i64 = -40;
    const HI: i64 = 40;

    fn interval() -> impl Strategy<Value = Interval> {
        (LO..HI, 0i64..12).prop_map(|(mint, len)| Interval::new(mint, mint + len - 2))
    }

    proptest! {
        #[test]
        fn prop_intervals_match_point_set(adds in proptest::collection::vec(interval(), 0..12),
                                          probes in proptest::collection::vec((LO - 5..HI + 5, 0i64..20), 0..20),
                                          cut in LO..HI) {
            let mut ivs = Intervals::new();
            let mut oracle = BTreeSet::new();
            for iv in &adds {
                ivs.add(*iv);
                oracle.extend(iv.mint..=iv.maxt);
            }
            // Sorted, disjoint, non-adjacent, non-empty.
            for w in ivs.0.windows(2) {
                prop_assert!(w[0].maxt + 1 < w[1].mint, "{:?}", ivs);
            }
            prop_assert!(ivs.iter().all(|iv| iv.mint <= iv.maxt));
            prop_assert_eq!(ivs.is_empty(), oracle.is_empty());
            for t in LO - 5..HI + 5 {
                prop_assert_eq!(ivs.contains(t), oracle.contains(&t), "t={}", t);
            }
            for &(mint, len) in &probes {
                let maxt = mint + len;
                prop_assert_eq!(ivs.covers(mint, maxt), (mint..=maxt).all(|t| oracle.contains(&t)));
                prop_assert_eq!(ivs.overlaps(mint, maxt), (mint..=maxt).any(|t| oracle.contains(&t)));
            }
            // retain_after drops whole intervals ending before `cut` only.
            let mut kept = ivs.clone();
            kept.retain_after(cut);
            let want: Vec<Interval> = ivs.iter().copied().filter(|iv| iv.maxt >= cut).collect();
            prop_assert_eq!(kept.0, want);
        }

        #[test]
        fn prop_tombstones_round_trip(entries in proptest::collection::vec((0u64..1000, any::<i64>(), any::<i64>()), 0..30)) {
            let mut ts = Tombstones::new();
            for (id, a, b) in entries {
                ts.add(BlockSeriesId(id), Interval::new(a.min(b), a.max(b)));
            }
            let bytes = ts.encode();
            let back = Tombstones::decode(&bytes, Path::new("t")).unwrap();
            prop_assert_eq!(back, ts);
        }

        #[test]
        fn prop_tombstones_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Tombstones::decode(&bytes, Path::new("t"));
        }
    }

    #[test]
    fn intervals_add_merges_adjacent_and_extreme_values() {
        let mut ivs = Intervals::new();
        ivs.add(Interval::new(1, 3));
        ivs.add(Interval::new(4, 5));
        ivs.add(Interval::new(i64::MIN, -10));
        ivs.add(Interval::new(100, i64::MAX));
        ivs.add(Interval::new(7, 6)); // empty
        assert_eq!(
            ivs.iter().copied().collect::<Vec<_>>(),
            [
                Interval::new(i64::MIN, -10),
                Interval::new(1, 5),
                Interval::new(100, i64::MAX)
            ]
        );
        assert!(ivs.covers(1, 5) && !ivs.covers(1, 6) && ivs.contains(i64::MAX));
    }

    #[test]
    fn tombstones_file_round_trip_and_corruption_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tombstones");
        let mut ts = Tombstones::new();
        ts.add(BlockSeriesId(3), Interval::new(10, 20));
        ts.add(BlockSeriesId(3), Interval::new(15, 30));
        ts.add(BlockSeriesId(9), Interval::new(-5, 5));
        write_tombstones(&path, &ts).unwrap();
        assert_eq!(read_tombstones(&path).unwrap(), ts);
        assert!(!dir.path().join("tombstones.tmp").exists());

        let good = fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x20;
            assert!(
                matches!(Tombstones::decode(&bad, &path), Err(Error::Corrupt { .. })),
                "flip at {i} not detected"
            );
        }
        for n in 0..good.len() {
            assert!(
                Tombstones::decode(&good[..n], &path).is_err(),
                "truncated to {n}"
            );
        }
    }
}
