//! Command-line flags shared by `tidemark-loadgen` and `tidemark-compare`:
//! the workload's size and shape.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;

use super::workload::{Spec, MAX_SAMPLES_PER_SEND};
use tidemark::model::parse_duration_ms;

/// The workload flags shared with `tidemark-compare`.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Scrape targets (node_exporter instances).
    #[arg(long, default_value_t = 64)]
    pub targets: usize,
    /// Series per target (ignored with --replay: the captures decide).
    #[arg(long, default_value_t = 856)]
    pub series_per_target: usize,
    /// Scrapes per target (history length = scrapes x interval).
    #[arg(long, default_value_t = 200)]
    pub scrapes: usize,
    /// Scrape interval (Prometheus duration).
    #[arg(long, default_value = "15s", value_parser = duration_ms)]
    pub scrape_interval: i64,
    /// Largest delay of a scrape timestamp after its schedule, ms.
    #[arg(long, default_value_t = 5)]
    pub jitter_ms: i64,
    /// Remote-write shards, each sending its series in time order.
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Samples per request at most.
    #[arg(long, default_value_t = MAX_SAMPLES_PER_SEND)]
    pub max_samples_per_send: usize,
    /// End of the history, ms since the epoch (default: now).
    #[arg(long)]
    pub end_ms: Option<i64>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Parses a Prometheus duration (`15s`, `1h`) into ms.
///
/// # Errors
/// A message naming the bad text.
pub fn duration_ms(s: &str) -> Result<i64, String> {
    parse_duration_ms(s).ok_or_else(|| format!("invalid duration {s:?}"))
}

impl WorkloadArgs {
    /// The workload these flags describe.
    pub fn spec(&self) -> Spec {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Spec {
            targets: self.targets,
            series_per_target: self.series_per_target,
            scrapes: self.scrapes,
            interval_ms: self.scrape_interval,
            jitter_ms: self.jitter_ms,
            end_ms: self.end_ms.unwrap_or(now),
            shards: self.shards.max(1),
            max_samples_per_send: self.max_samples_per_send.max(1),
            seed: self.seed,
        }
    }
}
