//! [`Options`]: every tunable of the storage layer with its default. Read
//! once at [`crate::storage::Db::open`]; nothing below reads configuration
//! from anywhere else.

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
    /// Maximum series per metric name; 0 means unlimited (the default).
    pub max_series_per_metric: usize,
    /// Number of lock stripes of the head's series map (a power of two).
    pub stripes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            wal: WalOptions::default(),
            block_range_ms: 2 * 60 * 60 * 1000,
            max_series_per_metric: 0,
            stripes: 4096,
        }
    }
}
