//! [`Options`]: every tunable of the storage layer with its default. Read
//! once at [`crate::storage::Db::open`]; nothing below reads configuration
//! from anywhere else.

use crate::storage::compact::CrashHook;
use crate::storage::wal::WalOptions;

/// Storage options. `Default` gives production defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// WAL segment size and fsync policy.
    pub wal: WalOptions,
    /// Block range in milliseconds (default 2 h). Head chunks are cut at
    /// multiples of it, and samples older than the head's max time minus half
    /// of it are refused as too old, as in Prometheus.
    pub block_range_ms: i64,
    /// How far (ms) behind the head's newest sample a float sample older
    /// than its series' newest sample is still stored (Prometheus's
    /// `out_of_order_time_window`); 0, the default, refuses them as out of
    /// order or too old.
    pub out_of_order_time_window_ms: i64,
    /// Maximum series per metric name; 0 means unlimited (the default).
    pub max_series_per_metric: usize,
    /// Number of lock stripes of the head's series map (a power of two).
    pub stripes: usize,
    /// Most exemplars the head keeps (a ring: the oldest are overwritten);
    /// 0 turns exemplar storage off. Default 100 000, as Prometheus's
    /// `--storage.exemplars.max-exemplars` when enabled.
    pub max_exemplars: usize,
    /// Most metric families whose metadata is kept; past it new families
    /// are dropped. 0 turns metadata storage off. Default 100 000.
    pub max_metadata_families: usize,
    /// Most bytes of metadata text (family names, help, unit) kept; past it
    /// new or growing entries are dropped. 0 turns metadata storage off.
    /// Default 32 MiB.
    pub max_metadata_bytes: usize,
    /// Blocks whose end is this far (ms) behind the newest data are deleted;
    /// 0 keeps everything. Default 15 d.
    pub retention_ms: i64,
    /// Oldest blocks are deleted while blocks plus WAL exceed this many
    /// bytes; 0 means no limit (the default).
    pub retention_bytes: u64,
    /// Check every chunk's checksum when a block is opened (a sequential
    /// read of the block), so damage is found and quarantined at start.
    pub verify_chunks_on_open: bool,
    /// Open blocks with only the checks that cost little whatever their
    /// size ([`crate::storage::Block::open_deferring_checks`]) and serve
    /// them at once; the walk over every series, postings list and chunk
    /// runs later, in [`crate::storage::Db::check_deferred_blocks`] (which
    /// [`crate::storage::Db::compact`] calls first), and a block that fails
    /// it is quarantined then. A start then costs little whatever the
    /// data held. Off in this default (every check in
    /// [`crate::storage::Db::open`]); the server turns it on.
    pub defer_block_checks: bool,
    /// Write the head to `head_snapshot` on [`crate::storage::Db::close`],
    /// so a clean restart loads it instead of replaying the WAL.
    pub head_snapshot_on_close: bool,
    /// Write everything the head holds to blocks on
    /// [`crate::storage::Db::close`] and checkpoint the WAL empty, so the
    /// data directory at rest holds blocks only and the next start replays
    /// nothing (`docs/architecture.md`, "Persisting the head at shutdown").
    /// Takes precedence over [`Options::head_snapshot_on_close`] (there is
    /// no head left to snapshot). Off in this default; the server turns it
    /// on (`--storage.persist-head-on-shutdown`).
    pub persist_head_on_close: bool,
    /// Test hook called at each step of block writing, compaction, tombstone
    /// rewrites, retention deletes and WAL checkpoints.
    pub crash_hook: Option<CrashHook>,
}

impl Options {
    /// Largest block compaction builds: 10 % of the retention, at most 31 d,
    /// never less than one block range.
    pub fn max_block_duration_ms(&self) -> i64 {
        const DAY: i64 = 24 * 60 * 60 * 1000;
        let by_retention = if self.retention_ms > 0 {
            self.retention_ms / 10
        } else {
            31 * DAY
        };
        by_retention.min(31 * DAY).max(self.block_range_ms)
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            wal: WalOptions::default(),
            block_range_ms: 2 * 60 * 60 * 1000,
            out_of_order_time_window_ms: 0,
            max_series_per_metric: 0,
            stripes: 4096,
            max_exemplars: 100_000,
            max_metadata_families: 100_000,
            max_metadata_bytes: 32 << 20,
            retention_ms: 15 * 24 * 60 * 60 * 1000,
            retention_bytes: 0,
            verify_chunks_on_open: true,
            defer_block_checks: false,
            head_snapshot_on_close: true,
            persist_head_on_close: false,
            crash_hook: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_block_is_a_tenth_of_retention_within_one_range_and_31_days() {
        const H: i64 = 60 * 60 * 1000;
        let with = |retention_ms| Options {
            retention_ms,
            ..Options::default()
        };
        // Default 15 d: 36 h, so compaction builds 2 h, 6 h and 18 h blocks.
        assert_eq!(with(15 * 24 * H).max_block_duration_ms(), 36 * H);
        // A year: capped at 31 d. No time retention: 31 d as well.
        assert_eq!(with(365 * 24 * H).max_block_duration_ms(), 31 * 24 * H);
        assert_eq!(with(0).max_block_duration_ms(), 31 * 24 * H);
        // 6 h retention: a tenth is below one block range, which wins.
        assert_eq!(with(6 * H).max_block_duration_ms(), 2 * H);
    }
}
