//! Command-line and environment configuration ([`Config`]), its defaults,
//! and conversion into each layer's options. The only place that reads
//! flags or `TIDEMARK_*` variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::ingest::ReceiverOptions;
use crate::storage::wal::{FsyncPolicy, WalOptions};
use crate::storage::Options;

/// When the WAL is fsynced relative to acknowledging a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WalFsync {
    /// Group commit: a write is acknowledged after an fsync covering it
    /// (concurrent writes share one fsync). Survives power loss.
    Batch,
    /// Acknowledge after write(2); fsync every `--wal-fsync-interval`.
    /// Survives process crashes; a power loss may lose the last interval.
    Interval,
    /// Never fsync explicitly. Survives process crashes only.
    None,
}

/// Tidemark: a Prometheus-compatible metrics store (remote write in, PromQL out).
#[derive(Debug, Clone, Parser)]
#[command(name = "tidemark", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on for HTTP (remote write, query API, health).
    #[arg(long, env = "TIDEMARK_LISTEN", default_value = "0.0.0.0:9201")]
    pub listen: SocketAddr,

    /// Directory holding the WAL and blocks; created if missing.
    #[arg(long, env = "TIDEMARK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// WAL durability: `batch` (fsync before acknowledging, shared by
    /// concurrent writes), `interval` (fsync periodically) or `none`.
    #[arg(long, env = "TIDEMARK_WAL_FSYNC", value_enum, default_value_t = WalFsync::Batch)]
    pub wal_fsync: WalFsync,

    /// Period of background fsyncs with `--wal-fsync=interval` (e.g. `1s`, `200ms`).
    #[arg(long, env = "TIDEMARK_WAL_FSYNC_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub wal_fsync_interval: Duration,

    /// WAL segment size in bytes before a new segment is started.
    #[arg(long, env = "TIDEMARK_WAL_SEGMENT_SIZE", default_value_t = 128 << 20)]
    pub wal_segment_size: u64,

    /// Maximum number of series per metric name; new series past it are
    /// rejected. 0 means unlimited.
    #[arg(long, env = "TIDEMARK_MAX_SERIES_PER_METRIC", default_value_t = 0)]
    pub max_series_per_metric: usize,

    /// Largest accepted remote-write body (compressed), in bytes; larger
    /// requests get 413.
    #[arg(long, env = "TIDEMARK_MAX_WRITE_BODY_BYTES", default_value_t = 32 << 20)]
    pub max_write_body_bytes: usize,

    /// Largest accepted remote-write body after snappy decompression, in
    /// bytes; larger requests get 400.
    #[arg(long, env = "TIDEMARK_MAX_WRITE_DECOMPRESSED_BYTES", default_value_t = 256 << 20)]
    pub max_write_decompressed_bytes: usize,

    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or a
    /// tracing directive such as `tidemark=debug,info`.
    #[arg(long, env = "TIDEMARK_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl From<&Config> for Options {
    fn from(c: &Config) -> Self {
        Options {
            wal: WalOptions {
                segment_size: c.wal_segment_size,
                fsync: match c.wal_fsync {
                    WalFsync::Batch => FsyncPolicy::Batch,
                    WalFsync::Interval => FsyncPolicy::Interval(c.wal_fsync_interval),
                    WalFsync::None => FsyncPolicy::Never,
                },
            },
            max_series_per_metric: c.max_series_per_metric,
            ..Options::default()
        }
    }
}

impl From<&Config> for ReceiverOptions {
    fn from(c: &Config) -> Self {
        ReceiverOptions {
            max_body_bytes: c.max_write_body_bytes,
            max_decompressed_bytes: c.max_write_decompressed_bytes,
            ..ReceiverOptions::default()
        }
    }
}

/// Parses a Prometheus-style duration: one or more `<number><unit>` terms
/// with units `ms`, `s`, `m`, `h`, `d`, `w`, `y` (e.g. `1h30m`, `250ms`).
///
/// # Errors
/// A message naming what is wrong, for clap to print.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total_ms: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {s:?}: expected a number at {rest:?}"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        rest = &rest[unit_len..];
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration_table() {
        let ok = [
            ("1s", 1_000),
            ("250ms", 250),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            ("0s", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "1", "s", "1x", "-1s", "1.5s", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_env_names() {
        let c = Config::try_parse_from(["tidemark"]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9201");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.wal_fsync, WalFsync::Batch);
        let o = Options::from(&c);
        assert_eq!(o.wal.fsync, FsyncPolicy::Batch);
        let c = Config::try_parse_from([
            "tidemark",
            "--wal-fsync=interval",
            "--wal-fsync-interval=200ms",
        ])
        .unwrap();
        assert_eq!(
            Options::from(&c).wal.fsync,
            FsyncPolicy::Interval(Duration::from_millis(200))
        );
        assert!(Config::try_parse_from(["tidemark", "--wal-fsync=sometimes"]).is_err());
    }
}
