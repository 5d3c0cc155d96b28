//! The store's chunk cache: byte ranges of chunk segments read from the
//! bucket, kept in memory up to `--store.chunk-cache-size` (least recently
//! used out first), and [`coalesce`], which turns the ranges one selection
//! misses into few reads, as Thanos's gap-based partitioner does
//! (`pkg/store/bucket.go`, `PartitionerMaxGapSize`).
//!
//! Owns the cached bytes and the read plan; never reads the bucket (the
//! caller does), never parses a chunk.

use std::ops::Range;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::lru::ByteLru;

/// Ranges at most this far apart are read in one request: reading the gap
/// costs less than another round trip (Thanos's figure).
pub(crate) const MAX_GAP_BYTES: u64 = 512 << 10;
/// Longest read that merging makes (a range longer than this alone is
/// still read whole): bounds the memory one read takes.
pub(crate) const MAX_READ_BYTES: u64 = 16 << 20;
/// Bookkeeping counted per cached range besides its bytes.
const ENTRY_OVERHEAD: u64 = 96;

/// A cached range: which block (the store's number for it), which
/// segment, which bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChunkKey {
    pub(crate) block: u64,
    pub(crate) segment: u32,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// Chunk ranges in memory, bounded by bytes.
#[derive(Debug)]
pub(crate) struct ChunkCache {
    lru: Mutex<ByteLru<ChunkKey, Bytes>>,
}

impl ChunkCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            lru: Mutex::new(ByteLru::new(capacity)),
        }
    }

    /// The cached bytes of `key`.
    pub(crate) fn get(&self, key: &ChunkKey) -> Option<Bytes> {
        self.lru.lock().get(key).cloned()
    }

    /// Caches a copy of `bytes` (so the cache never pins the larger read
    /// it was sliced from); returns how many entries were evicted. A range
    /// larger than the whole cache is not cached.
    pub(crate) fn insert(&self, key: ChunkKey, bytes: &[u8]) -> usize {
        let size = bytes.len() as u64 + ENTRY_OVERHEAD;
        let mut lru = self.lru.lock();
        if size > lru.capacity() {
            return 0;
        }
        lru.insert(key, Bytes::copy_from_slice(bytes), size, |_| false)
            .len()
    }

    /// Bytes held (with bookkeeping).
    pub(crate) fn bytes(&self) -> u64 {
        self.lru.lock().bytes()
    }
}

/// Groups `ranges` (sorted by start, not overlapping) into reads: a range
/// joins the read before it when the gap between them is at most
/// `max_gap` and the read stays within `max_read` bytes. Returns each read
/// with the indexes of the ranges it covers.
pub(crate) fn coalesce(
    ranges: &[Range<u64>],
    max_gap: u64,
    max_read: u64,
) -> Vec<(Range<u64>, Range<usize>)> {
    let mut out: Vec<(Range<u64>, Range<usize>)> = Vec::new();
    for (i, r) in ranges.iter().enumerate() {
        match out.last_mut() {
            Some((read, members))
                if r.start >= read.end
                    && r.start - read.end <= max_gap
                    && r.end.saturating_sub(read.start) <= max_read =>
            {
                read.end = r.end;
                members.end = i + 1;
            }
            _ => out.push((r.clone(), i..i + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn coalesce_merges_close_ranges_and_splits_far_or_long_ones() {
        let ranges = [10..20, 25..30, 100..110, 111..200, 1000..1010];
        let got = coalesce(&ranges, 10, 100);
        assert_eq!(
            got,
            vec![(10..30, 0..2), (100..200, 2..4), (1000..1010, 4..5)]
        );
        // A read may not grow past max_read: 100..200 is 100 bytes.
        let got = coalesce(&ranges, 10, 99);
        assert_eq!(got[1], (100..110, 2..3));
        assert_eq!(got[2], (111..200, 3..4));
        assert!(coalesce(&[], 10, 10).is_empty());
    }

    #[test]
    fn chunk_cache_stays_within_its_bytes_and_copies() {
        let c = ChunkCache::new(3 * (100 + ENTRY_OVERHEAD));
        let key = |start| ChunkKey {
            block: 1,
            segment: 1,
            start,
            end: start + 100,
        };
        let big = Bytes::from(vec![7u8; 1000]);
        for i in 0..5 {
            c.insert(key(i * 100), &big[i as usize * 100..(i as usize + 1) * 100]);
            assert!(c.bytes() <= 3 * (100 + ENTRY_OVERHEAD));
        }
        assert!(c.get(&key(0)).is_none());
        assert_eq!(c.get(&key(400)).map(|b| b.len()), Some(100));
        // Larger than the cache: not cached.
        assert_eq!(c.insert(key(5000), &vec![0u8; 1000]), 0);
        assert!(c.get(&key(5000)).is_none());
    }

    fn sorted_ranges() -> impl Strategy<Value = Vec<Range<u64>>> {
        prop::collection::vec((0u64..2000, 1u64..300), 0..60).prop_map(|v| {
            let mut at = 0;
            v.into_iter()
                .map(|(gap, len)| {
                    let r = at + gap..at + gap + len;
                    at = r.end;
                    r
                })
                .collect()
        })
    }

    proptest! {
        /// Every range is inside its read, each once, in order; reads are
        /// sorted and disjoint; two neighbouring reads could not have been
        /// one (gap too wide or read too long); a read is only longer than
        /// max_read when it holds one range.
        #[test]
        fn prop_coalesce_covers_every_range_once(ranges in sorted_ranges(), max_gap in 0u64..1000, max_read in 1u64..3000) {
            let reads = coalesce(&ranges, max_gap, max_read);
            let mut next = 0;
            let mut prev_end = 0;
            for (i, (read, members)) in reads.iter().enumerate() {
                prop_assert_eq!(members.start, next);
                prop_assert!(members.end > members.start);
                next = members.end;
                prop_assert!(read.start >= prev_end);
                prev_end = read.end;
                prop_assert_eq!(read.start, ranges[members.start].start);
                prop_assert_eq!(read.end, ranges[members.end - 1].end);
                prop_assert!(read.end - read.start <= max_read || members.len() == 1);
                if let Some((after, _)) = reads.get(i + 1) {
                    let gap = after.start - read.end;
                    prop_assert!(gap > max_gap || ranges[members.end].end - read.start > max_read);
                }
            }
            prop_assert_eq!(next, ranges.len());
        }
    }
}
