//! The side-by-side run: one workload, encoded once, sent to each system
//! in turn on loopback (fresh data directory each); then the figures of
//! each: ingest wall time and rate, server CPU seconds and peak RSS from
//! `/proc`, bytes on disk after persisting, restart time, query latency
//! and whether Tidemark's answers equal Prometheus's. [`Report::markdown`]
//! prints them as one table.
//!
//! Server CPU is counted from the first request until the server has
//! been idle (under 2 % of a core) for half a second after the last
//! answer, at most 30 s: work a server defers past its acknowledgements
//! (VictoriaMetrics' in-memory parts) is charged to ingest too.

pub mod queries;
pub mod systems;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::encode::{Body, Encoder, Protocol};
use super::error::Result;
use super::http::Client;
use super::process::{free_port, Server};
use super::send::{percentile, progress_bar, send, SendOptions, Summary};
use super::workload::{Spec, Workload};
use queries::{query_set, same_result, Query, Timing};
pub use systems::{Binaries, Persisted, System};

/// What to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workload.
    pub spec: Spec,
    /// Systems in the order they run (Prometheus first: its answers are
    /// the reference).
    pub systems: Vec<System>,
    /// Binaries.
    pub binaries: Binaries,
    /// Parent of each system's fresh data directory.
    pub work_dir: PathBuf,
    /// Timed runs per query (after one warm-up).
    pub query_runs: usize,
    /// Show progress bars.
    pub progress: bool,
}

/// Everything measured of one system; `Err` cells carry the reason.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which system.
    pub system: System,
    /// Its version line.
    pub version: String,
    /// A failure that stopped its run early.
    pub fatal: Option<String>,
    /// The ingest.
    pub send: Option<Summary>,
    /// Server CPU seconds of the ingest (and settling after it).
    pub ingest_cpu_s: Option<f64>,
    /// Peak RSS after ingest, bytes.
    pub hwm_bytes: Option<u64>,
    /// The persist step.
    pub persist: Option<Result<Persisted, String>>,
    /// Server CPU seconds of the persist step.
    pub persist_cpu_s: Option<f64>,
    /// SIGTERM to exit.
    pub stop: Option<Result<Duration, String>>,
    /// Start to ready, data in place.
    pub restart: Option<Result<Duration, String>>,
    /// One per query of [`queries::query_set`], in its order.
    pub queries: Vec<Result<Timing, String>>,
}

impl Outcome {
    fn new(system: System, version: String) -> Self {
        Self {
            system,
            version,
            fatal: None,
            send: None,
            ingest_cpu_s: None,
            hwm_bytes: None,
            persist: None,
            persist_cpu_s: None,
            stop: None,
            restart: None,
            queries: Vec::new(),
        }
    }
}

/// The comparison's results.
#[derive(Debug, Clone)]
pub struct Report {
    /// The workload.
    pub spec: Spec,
    /// The queries, in row order.
    pub queries: Vec<Query>,
    /// One per system, in run order.
    pub outcomes: Vec<Outcome>,
    /// Encoded request bodies and their total size.
    pub requests: usize,
    /// Snappy bytes of all requests.
    pub request_bytes: u64,
}

/// Waits until the process has used under 2 % of a core over half a
/// second (at most `within`); returns its CPU seconds then.
fn settle(server: &Server, within: Duration) -> Option<f64> {
    let start = Instant::now();
    let mut last = server.stat()?.cpu_seconds;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = server.stat()?.cpu_seconds;
        if now - last < 0.01 || start.elapsed() > within {
            return Some(now);
        }
        last = now;
    }
}

/// Runs the comparison.
///
/// # Errors
/// Only when the work directory cannot be created; a system that fails
/// is reported in its column.
pub fn run(opts: &Options) -> Result<Report> {
    let wl = Workload::generate(opts.spec.clone());
    let encoder = Encoder::new(Protocol::V1, &wl.series);
    let total = opts.spec.total_samples();
    let pb = progress_bar(total, opts.progress, "encode");
    let shards: Vec<Vec<Body>> = (0..opts.spec.shards)
        .map(|k| {
            wl.shard(k)
                .map(|b| {
                    pb.inc(b.len() as u64);
                    encoder.encode(&b)
                })
                .collect()
        })
        .collect();
    pb.finish_and_clear();
    let requests = shards.iter().map(Vec::len).sum();
    let request_bytes = shards.iter().flatten().map(|b| b.bytes.len() as u64).sum();
    let queries = query_set(&opts.spec);
    std::fs::create_dir_all(&opts.work_dir).map_err(|source| super::Error::File {
        what: "create work directory",
        path: opts.work_dir.clone(),
        source,
    })?;
    let mut outcomes = Vec::new();
    for &system in &opts.systems {
        let Some(bin) = opts.binaries.of(system) else {
            let mut o = Outcome::new(system, "not installed".into());
            o.fatal = Some("binary not found".into());
            outcomes.push(o);
            continue;
        };
        eprintln!("== {}", system.title());
        let mut o = Outcome::new(system, system.version(bin));
        if let Err(e) = run_one(opts, system, bin, &shards, &queries, &mut o) {
            o.fatal = Some(e.to_string());
        }
        outcomes.push(o);
    }
    Ok(Report {
        spec: opts.spec.clone(),
        queries,
        outcomes,
        requests,
        request_bytes,
    })
}

fn run_one(
    opts: &Options,
    system: System,
    bin: &str,
    shards: &[Vec<Body>],
    queries: &[Query],
    o: &mut Outcome,
) -> Result<()> {
    let dir = opts.work_dir.join(system.title().to_lowercase());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|source| super::Error::File {
        what: "create data directory",
        path: dir.clone(),
        source,
    })?;
    let addr = format!("127.0.0.1:{}", free_port());
    let ready_within = Duration::from_secs(600);
    let start = |log: &str| {
        Server::spawn(
            system.title(),
            system.command(bin, &addr, &dir),
            &addr,
            Some(&dir.join(log)),
        )
    };
    let mut server = start("server.log")?;
    server.wait_ready(system.ready_path(), Duration::from_secs(60))?;

    // Ingest.
    let url = server.url().with_path(system.write_path());
    let cpu0 = server.stat().map_or(0.0, |s| s.cpu_seconds);
    let summary = send(
        &url,
        shards.iter().map(|s| s.iter().cloned()).collect(),
        opts.spec.total_samples(),
        &SendOptions {
            progress: opts.progress,
            ..SendOptions::default()
        },
    );
    eprintln!("   ingest: {}", summary.line());
    o.send = Some(summary);
    let cpu1 = settle(&server, Duration::from_secs(30));
    o.ingest_cpu_s = cpu1.map(|c| c - cpu0);
    o.hwm_bytes = server.stat().map(|s| s.hwm_bytes);

    // Persist.
    let p = system.persist(&server, &dir);
    eprintln!("   persist: {p:?}");
    o.persist = Some(p);
    o.persist_cpu_s = settle(&server, Duration::from_secs(30))
        .zip(cpu1)
        .map(|(a, b)| a - b);

    // Restart with the data in place.
    let stop = server
        .terminate(Duration::from_secs(120))
        .map_err(|e| e.to_string());
    o.stop = Some(stop);
    drop(server);
    let mut server = start("server-restart.log")?;
    let ready = server.wait_ready(system.ready_path(), ready_within);
    let ready_ok = ready.is_ok();
    o.restart = Some(ready.map_err(|e| e.to_string()));
    eprintln!("   restart: stop {:?}, ready {:?}", o.stop, o.restart);
    if !ready_ok {
        return Ok(());
    }

    // Queries.
    let pb = progress_bar(queries.len() as u64, opts.progress, "query");
    let mut client = Client::new(server.url(), Duration::from_secs(120));
    for q in queries {
        o.queries
            .push(queries::time_query(&mut client, q, opts.query_runs));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let _ = server.terminate(Duration::from_secs(120));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

/// Geometric mean of positive values (`None` when empty).
pub fn geomean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some((values.iter().map(|v| v.max(1e-9).ln()).sum::<f64>() / values.len() as f64).exp())
}

impl Report {
    /// Medians of one system's queries that succeeded on every system
    /// (so geomeans cover the same set).
    fn common_medians(&self, o: &Outcome) -> Vec<f64> {
        (0..self.queries.len())
            .filter(|&i| {
                self.outcomes
                    .iter()
                    .all(|x| matches!(x.queries.get(i), Some(Ok(_))))
            })
            .filter_map(|i| match o.queries.get(i) {
                Some(Ok(t)) => Some(ms(percentile(&t.latencies, 0.5))),
                _ => None,
            })
            .collect()
    }

    /// Per query: `Some(Ok)` when Tidemark's answer equals Prometheus's,
    /// `Some(Err(why))` when not, `None` when either is missing.
    pub fn tidemark_equal(&self) -> Vec<Option<Result<(), String>>> {
        let find = |s| self.outcomes.iter().find(|o| o.system == s);
        let (Some(p), Some(t)) = (find(System::Prometheus), find(System::Tidemark)) else {
            return vec![None; self.queries.len()];
        };
        (0..self.queries.len())
            .map(|i| match (p.queries.get(i), t.queries.get(i)) {
                (Some(Ok(a)), Some(Ok(b))) => Some(same_result(&a.body, &b.body)),
                _ => None,
            })
            .collect()
    }

    /// The workload line and the table, in Markdown.
    pub fn markdown(&self) -> String {
        let s = &self.spec;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Workload: {} targets x {} node_exporter series = {} active series, {} scrapes every {} s \
             (history {} min ending at {} ms), scrape timestamp jitter 0..={} ms, {} shards, \
             <= {} samples/request, remote write 1.0; {} samples in {} requests ({:.1} MiB snappy).\n",
            s.targets,
            s.series_per_target,
            s.active_series(),
            s.scrapes,
            s.interval_ms / 1000,
            s.scrapes as i64 * s.interval_ms / 60_000,
            s.end_ms,
            s.jitter_ms,
            s.shards,
            s.max_samples_per_send,
            s.total_samples(),
            self.requests,
            mib(self.request_bytes),
        );
        let _ = write!(out, "| figure |");
        for o in &self.outcomes {
            let _ = write!(out, " {} |", o.system.title());
        }
        let _ = write!(out, "\n| --- |");
        for _ in &self.outcomes {
            let _ = write!(out, " --- |");
        }
        out.push('\n');
        let mut row = |name: &str, cell: &dyn Fn(&Outcome) -> String| {
            let _ = write!(out, "| {name} |");
            for o in &self.outcomes {
                let c = match (&o.fatal, cell(o)) {
                    (Some(f), c) if c.is_empty() || c.starts_with("n/a") => {
                        format!("n/a ({})", f.replace('|', "/"))
                    }
                    (_, c) if c.is_empty() => "n/a".into(),
                    (_, c) => c,
                };
                let _ = write!(out, " {c} |");
            }
            out.push('\n');
        };
        let na = String::new;
        row("version", &|o| o.version.replace('|', "/"));
        row("samples acknowledged", &|o| {
            o.send
                .as_ref()
                .map_or_else(na, |x| format!("{} of {}", x.samples_ok, s.total_samples()))
        });
        row("failed requests / retries", &|o| {
            o.send.as_ref().map_or_else(na, |x| match &x.first_error {
                Some(e) if x.requests_failed > 0 => format!(
                    "{} / {} (first: {})",
                    x.requests_failed,
                    x.retries,
                    e.replace('|', "/").chars().take(80).collect::<String>()
                ),
                _ => format!("{} / {}", x.requests_failed, x.retries),
            })
        });
        row("ingest wall time (s)", &|o| {
            o.send
                .as_ref()
                .map_or_else(na, |x| format!("{:.2}", x.elapsed.as_secs_f64()))
        });
        row("ingest samples/s", &|o| {
            o.send
                .as_ref()
                .map_or_else(na, |x| format!("{:.0}", x.samples_per_sec()))
        });
        row("request latency p50 / p99 (ms)", &|o| {
            o.send.as_ref().map_or_else(na, |x| {
                format!("{:.2} / {:.2}", ms(x.latency(0.5)), ms(x.latency(0.99)))
            })
        });
        row("server CPU during ingest (s)", &|o| {
            o.ingest_cpu_s.map_or_else(na, |c| format!("{c:.2}"))
        });
        row(
            "samples per server CPU-second",
            &|o| match (o.ingest_cpu_s, &o.send) {
                (Some(c), Some(x)) if c > 0.0 => format!("{:.0}", x.samples_ok as f64 / c),
                _ => na(),
            },
        );
        row("peak RSS during ingest, VmHWM (MiB)", &|o| {
            o.hwm_bytes.map_or_else(na, |b| format!("{:.1}", mib(b)))
        });
        row("peak RSS per active series (bytes)", &|o| {
            o.hwm_bytes.map_or_else(na, |b| {
                format!("{:.0}", b as f64 / s.active_series().max(1) as f64)
            })
        });
        let persisted = |o: &Outcome, f: &dyn Fn(&Persisted) -> String| match &o.persist {
            Some(Ok(p)) => f(p),
            Some(Err(e)) => format!("n/a ({})", e.replace('|', "/")),
            None => na(),
        };
        let samples = s.total_samples().max(1) as f64;
        row("persist step", &|o| match o.system {
            System::Victoriametrics => "force_flush + force_merge".into(),
            _ => "admin snapshot (head as block)".into(),
        });
        row("persist time (s) / server CPU (s)", &|o| {
            persisted(o, &|p| {
                format!(
                    "{:.2} / {}",
                    p.elapsed.as_secs_f64(),
                    o.persist_cpu_s.map_or("n/a".into(), |c| format!("{c:.2}"))
                )
            })
        });
        row("index bytes on disk (MiB)", &|o| {
            persisted(o, &|p| format!("{:.2}", mib(p.index_bytes)))
        });
        row("chunk bytes on disk (MiB)", &|o| {
            persisted(o, &|p| format!("{:.2}", mib(p.chunk_bytes)))
        });
        row("bytes per sample (index + chunks)", &|o| {
            persisted(o, &|p| {
                format!("{:.3}", (p.index_bytes + p.chunk_bytes) as f64 / samples)
            })
        });
        row("chunk bytes per sample", &|o| {
            persisted(o, &|p| format!("{:.3}", p.chunk_bytes as f64 / samples))
        });
        let dur = |r: &Option<std::result::Result<Duration, String>>| match r {
            Some(Ok(d)) => format!("{:.2}", d.as_secs_f64()),
            Some(Err(e)) => format!("n/a ({})", e.replace('|', "/")),
            None => na(),
        };
        row("restart: stop after SIGTERM (s)", &|o| dur(&o.stop));
        row("restart: start to ready, data in place (s)", &|o| {
            dur(&o.restart)
        });
        let equal = self.tidemark_equal();
        for (i, q) in self.queries.iter().enumerate() {
            let eq = &equal[i];
            row(
                &format!("query {}: median / p90 (ms)", q.name),
                &|o| match o.queries.get(i) {
                    Some(Ok(t)) => {
                        let mark = match (o.system, eq) {
                            (System::Tidemark, Some(Ok(()))) => " ✓",
                            (System::Tidemark, Some(Err(_))) => " ✗",
                            _ => "",
                        };
                        format!(
                            "{:.2} / {:.2}{mark}",
                            ms(percentile(&t.latencies, 0.5)),
                            ms(percentile(&t.latencies, 0.9))
                        )
                    }
                    Some(Err(e)) => format!(
                        "n/a ({})",
                        e.replace('|', "/").chars().take(80).collect::<String>()
                    ),
                    None => na(),
                },
            );
        }
        row("query latency, geomean of medians (ms)", &|o| {
            geomean(&self.common_medians(o)).map_or_else(na, |g| format!("{g:.2}"))
        });
        let compared = equal.iter().flatten().count();
        let same = equal.iter().flatten().filter(|r| r.is_ok()).count();
        row(
            "results equal to Prometheus (1e-9 relative)",
            &|o| match o.system {
                System::Prometheus => "reference".into(),
                System::Tidemark if compared > 0 => format!("{same} of {compared} ✓"),
                System::Tidemark => na(),
                System::Victoriametrics => "not compared".into(),
            },
        );
        let diffs: Vec<String> = self
            .queries
            .iter()
            .zip(&equal)
            .filter_map(|(q, e)| match e {
                Some(Err(why)) => Some(format!(
                    "- {}: {}",
                    q.name,
                    why.chars().take(300).collect::<String>()
                )),
                _ => None,
            })
            .collect();
        if !diffs.is_empty() {
            let _ = writeln!(
                out,
                "\nTidemark answers that differ from Prometheus's:\n{}",
                diffs.join("\n")
            );
        }
        out
    }
}
