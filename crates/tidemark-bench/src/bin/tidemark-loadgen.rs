//! `tidemark-loadgen`: node_exporter-shaped remote-write traffic to any
//! URL, sent as Prometheus sends it (K shards, in time order, <= 2,000
//! samples per request, remote write 1.0 or 2.0, or the same series as
//! OTLP/HTTP with `--protocol=otlp`), or a replay of captured
//! node_exporter scrapes; `capture` saves such scrapes. Prints a progress
//! bar while sending and a summary (samples/s, latency percentiles,
//! errors) at the end; exits 1 when any request failed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tidemark_bench::cli::{duration_ms, WorkloadArgs};
use tidemark_bench::encode::{Encoder, Protocol};
use tidemark_bench::http::Url;
use tidemark_bench::send::{send, SendOptions};
use tidemark_bench::workload::Workload;
use tidemark_bench::{replay, workload};

#[derive(Debug, Parser)]
#[command(
    name = "tidemark-loadgen",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Remote-write URL.
    #[arg(long, default_value = "http://127.0.0.1:9201/api/v1/write")]
    url: String,
    /// Protocol: 1 (remote write 1.0), 2 (2.0) or otlp (OTLP/HTTP
    /// protobuf; point --url at /api/v1/otlp/v1/metrics).
    #[arg(long, value_enum, default_value = "1")]
    protocol: Protocol,
    /// With --protocol=otlp: gzip the bodies.
    #[arg(long)]
    otlp_gzip: bool,
    /// Replay the captured scrapes (*.prom) in this directory instead of
    /// the synthetic series.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Give up sending after this long.
    #[arg(long, default_value = "1h", value_parser = duration_ms)]
    deadline: i64,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Attach an exemplar (a 32-hex-digit `trace_id`) to every sample of 1
    /// in N series; 0 sends none.
    #[arg(long, default_value_t = 0)]
    exemplars: u32,
    #[command(flatten)]
    workload: WorkloadArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Save scrapes of a node_exporter as `scrape-NNNN.prom` for --replay.
    Capture {
        /// The exporter's metrics URL.
        #[arg(long, default_value = "http://127.0.0.1:9100/metrics")]
        url: String,
        /// Directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Scrapes to save.
        #[arg(long, default_value_t = 4)]
        count: usize,
        /// Time between scrapes.
        #[arg(long, default_value = "15s", value_parser = duration_ms)]
        interval: i64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Capture {
        url,
        out,
        count,
        interval,
    }) = cli.command
    {
        replay::capture(
            &url,
            &out,
            count,
            Duration::from_millis(interval.max(0) as u64),
        )
        .with_context(|| format!("capture {url}"))?;
        println!("captured {count} scrapes of {url} into {}", out.display());
        return Ok(());
    }
    let args = cli.run;
    let url = Url::parse(&args.url)?;
    let mut spec = args.workload.spec();
    let wl = match &args.replay {
        Some(dir) => {
            let host = replay::host(dir).with_context(|| format!("replay {}", dir.display()))?;
            spec.series_per_target = host.len();
            Workload::from_hosts(spec.clone(), vec![host; spec.targets])
        }
        None => Workload::generate(spec.clone()),
    };
    let encoder = Encoder::new(args.protocol, &wl.series)
        .with_exemplars(args.exemplars)
        .with_gzip(args.otlp_gzip);
    eprintln!(
        "sending {} series x {} scrapes = {} samples to {} ({}{}, {} shards, jitter 0..={} ms, exemplars on 1 in {} series)",
        spec.active_series(),
        spec.scrapes,
        spec.total_samples(),
        args.url,
        match args.protocol {
            Protocol::Otlp => "OTLP".to_string(),
            p => format!("remote write {}", p.as_str()),
        },
        if args.otlp_gzip { " gzip" } else { "" },
        spec.shards,
        spec.jitter_ms,
        args.exemplars,
    );
    let shards = (0..spec.shards)
        .map(|k| wl.shard(k).map(|b| encoder.encode(&b)))
        .collect();
    let summary = send(
        &url,
        shards,
        spec.total_samples(),
        &SendOptions {
            protocol: args.protocol,
            deadline: Duration::from_millis(args.deadline.max(0) as u64),
            progress: !args.no_progress,
            gzip: args.otlp_gzip,
            ..SendOptions::default()
        },
    );
    println!(
        "series={} scrapes={} job={} {}",
        spec.active_series(),
        spec.scrapes,
        workload::JOB,
        summary.line()
    );
    if let Some(e) = &summary.first_error {
        eprintln!("first error: {e}");
    }
    if summary.requests_failed > 0 || summary.samples_unsent > 0 {
        std::process::exit(1);
    }
    Ok(())
}
