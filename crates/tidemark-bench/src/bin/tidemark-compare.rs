//! `tidemark-compare`: Tidemark beside Debian's Prometheus 2.42 and
//! VictoriaMetrics 1.79 on one generated node_exporter workload, on this
//! machine, in one run; prints issue 21's targets read off the run and one
//! Markdown table (ingest rate, server CPU and RSS, data dir size at five
//! stages, bytes per sample persisted, restart time, query latency and
//! result equality). `scripts/compare` installs the packages, builds the
//! release binaries and runs it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tidemark_bench::cli::WorkloadArgs;
use tidemark_bench::compare::{self, Binaries, System};

#[derive(Debug, Parser)]
#[command(name = "tidemark-compare", version, about)]
struct Cli {
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Multiplies the number of targets (and so series and samples).
    #[arg(long, default_value_t = 1)]
    scale: usize,
    /// A named workload size; replaces --targets, --series-per-target and
    /// --scrapes. `million`: 1,953 targets x 512 series (999,936 active
    /// series) x 12 scrapes, issue 21's scale point.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Systems to run, in order (Prometheus's answers are the reference
    /// for Tidemark's).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "prometheus,victoriametrics,tidemark"
    )]
    systems: Vec<System>,
    /// The tidemark server binary (default: beside this one).
    #[arg(long)]
    tidemark_bin: Option<String>,
    /// The prometheus binary (default: installed).
    #[arg(long)]
    prometheus_bin: Option<String>,
    /// The victoria-metrics binary (default: installed).
    #[arg(long)]
    victoriametrics_bin: Option<String>,
    /// Where the systems' data directories go (default: a temporary
    /// directory, removed at the end).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Timed runs per query, after one warm-up.
    #[arg(long, default_value_t = 5)]
    query_runs: usize,
    /// Also write the table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Named workload sizes (`--preset`).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Preset {
    /// About a million active series, a dozen scrapes.
    Million,
}

impl Preset {
    /// `(targets, series per target, scrapes)`.
    fn size(self) -> (usize, usize, usize) {
        match self {
            Preset::Million => (1_953, 512, 12),
        }
    }
}

impl Cli {
    /// The flags with `--preset`'s size in place of the size flags.
    fn with_preset(mut self) -> Cli {
        if let Some(p) = self.preset {
            let (targets, series, scrapes) = p.size();
            self.workload.targets = targets;
            self.workload.series_per_target = series;
            self.workload.scrapes = scrapes;
        }
        self
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse().with_preset();
    let mut spec = cli.workload.spec();
    spec.targets *= cli.scale.max(1);
    let found = Binaries::discover();
    let binaries = Binaries {
        prometheus: cli.prometheus_bin.or(found.prometheus),
        victoriametrics: cli.victoriametrics_bin.or(found.victoriametrics),
        tidemark: cli.tidemark_bin.or(found.tidemark),
    };
    let temp;
    let work_dir = match cli.work_dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new()
                .prefix("tidemark-compare-")
                .tempdir()
                .context("create a temporary work directory")?;
            temp.path().to_path_buf()
        }
    };
    let report = compare::run(&compare::Options {
        spec,
        systems: cli.systems,
        binaries,
        work_dir,
        query_runs: cli.query_runs.max(1),
        progress: !cli.no_progress,
    })?;
    let table = report.markdown();
    println!("{table}");
    if let Some(out) = cli.out {
        std::fs::write(&out, &table).with_context(|| format!("write {}", out.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn million_preset_replaces_the_size_flags_with_a_million_series() {
        let cli = Cli::parse_from(["tidemark-compare", "--preset", "million", "--targets", "3"])
            .with_preset();
        let spec = cli.workload.spec();
        assert_eq!(spec.targets * spec.series_per_target, 999_936);
        assert_eq!(spec.scrapes, 12);
        let plain = Cli::parse_from(["tidemark-compare", "--targets", "3"]).with_preset();
        assert_eq!(plain.workload.spec().targets, 3);
    }
}
