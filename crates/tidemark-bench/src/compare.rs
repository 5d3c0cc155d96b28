//! The side-by-side run: one workload, encoded once, sent to each system
//! in turn on loopback (fresh data directory each); then the figures of
//! each: ingest wall time and rate, server CPU seconds and RSS from
//! `/proc` (peak during ingest, after persist, peak over ingest and the
//! queries), the data directory's size at five stages ([`disk::Stages`]),
//! bytes persisted, restart time, query latency and whether Tidemark's
//! answers equal Prometheus's. [`Report::markdown`] prints them as one
//! table under issue 21's targets read off the run ([`targets`]).
//!
//! The restarted process is killed with SIGKILL after its queries, to
//! measure what a crash leaves on disk.
//!
//! Server CPU is counted from the first request until the server has
//! been idle (under 2 % of a core) for half a second after the last
//! answer, at most 30 s: work a server defers past its acknowledgements
//! (VictoriaMetrics' in-memory parts) is charged to ingest too.

pub mod disk;
pub mod queries;
pub mod systems;
pub mod targets;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::encode::{Body, Encoder, Protocol};
use super::error::Result;
use super::http::Client;
use super::process::{free_port, Server};
use super::send::{percentile, progress_bar, send, SendOptions, Summary};
use super::workload::{Spec, Workload};
use disk::{dir_size, DirSize, PeakSampler, EXCLUDED};
use queries::{query_set, same_result, Query, Timing};
pub use systems::{Binaries, Persisted, System};
pub use targets::geomean;

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
    /// Peak RSS after the persist step (ingest and persist), bytes.
    pub persist_hwm_bytes: Option<u64>,
    /// RSS after the persist step (settled), bytes.
    pub persist_rss_bytes: Option<u64>,
    /// Peak RSS of the restarted process after its queries (start-up,
    /// loading the data, queries), bytes.
    pub query_hwm_bytes: Option<u64>,
    /// The data directory's size at each stage.
    pub disk: disk::Stages,
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
            persist_hwm_bytes: None,
            persist_rss_bytes: None,
            query_hwm_bytes: None,
            disk: disk::Stages::default(),
            persist: None,
            persist_cpu_s: None,
            stop: None,
            restart: None,
            queries: Vec::new(),
        }
    }

    /// Peak RSS over ingest and the queries: the larger of the ingesting
    /// process's peak and the restarted process's peak after its queries
    /// (`None` unless both were read).
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.hwm_bytes
            .zip(self.query_hwm_bytes)
            .map(|(a, b)| a.max(b))
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
    let data = dir.join("data");
    let mut server = start("server.log")?;
    server.wait_ready(system.ready_path(), Duration::from_secs(60))?;

    // Ingest.
    let sampler = PeakSampler::start(&data);
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
    let end = dir_size(&data, EXCLUDED);
    o.disk.ingest_end = Some(end);
    o.disk.ingest_peak = sampler.finish().map(|p| p.max(end));

    // Persist.
    let p = system.persist(&server, &dir);
    eprintln!("   persist: {p:?}");
    o.persist = Some(p);
    o.persist_cpu_s = settle(&server, Duration::from_secs(30))
        .zip(cpu1)
        .map(|(a, b)| a - b);
    if let Some(st) = server.stat() {
        o.persist_hwm_bytes = Some(st.hwm_bytes);
        o.persist_rss_bytes = Some(st.rss_bytes);
    }
    o.disk.persisted = Some(dir_size(&data, EXCLUDED));
    o.disk.snapshots = Some(dir_size(&data.join("snapshots"), &[]));

    // Restart with the data in place.
    let stop = server
        .terminate(Duration::from_secs(120))
        .map_err(|e| e.to_string());
    o.stop = Some(stop);
    drop(server);
    o.disk.stopped = Some(dir_size(&data, EXCLUDED));
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
    o.query_hwm_bytes = server.stat().map(|s| s.hwm_bytes);

    // A crash: what SIGKILL leaves on disk.
    server.kill()?;
    o.disk.killed = Some(dir_size(&data, EXCLUDED));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
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

    /// The figures of `o` that issue 21's targets compare.
    pub fn figures(&self, o: &Outcome) -> targets::Figures {
        let persisted = match &o.persist {
            Some(Ok(p)) => Some(
                (p.index_bytes + p.chunk_bytes) as f64 / self.spec.total_samples().max(1) as f64,
            ),
            _ => None,
        };
        targets::Figures {
            disk: o.disk.in_order().map(|d| d.map(|d| d.bytes)),
            persisted_bytes_per_sample: persisted,
            peak_rss: o.peak_rss_bytes(),
            peak_ingest_rss: o.hwm_bytes,
            samples_per_cpu_s: match (o.ingest_cpu_s, &o.send) {
                (Some(c), Some(x)) if c > 0.0 => Some(x.samples_ok as f64 / c),
                _ => None,
            },
            query_medians_ms: o
                .queries
                .iter()
                .map(|q| q.as_ref().ok().map(|t| ms(percentile(&t.latencies, 0.5))))
                .collect(),
            restart_s: match &o.restart {
                Some(Ok(d)) => Some(d.as_secs_f64()),
                _ => None,
            },
        }
    }

    /// Issue 21's targets read off this run (Markdown).
    pub fn targets(&self) -> String {
        let ran = |s| {
            self.outcomes
                .iter()
                .find(|o| o.system == s && o.send.is_some())
                .map(|o| self.figures(o))
        };
        let names: Vec<String> = self.queries.iter().map(|q| q.name.clone()).collect();
        targets::section(
            ran(System::Tidemark).as_ref(),
            ran(System::Victoriametrics).as_ref(),
            &names,
        )
    }

    /// The targets, the workload line and the table, in Markdown.
    pub fn markdown(&self) -> String {
        let s = &self.spec;
        let mut out = self.targets();
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
        let per_series = |b: u64| format!("{:.0}", b as f64 / s.active_series().max(1) as f64);
        row("peak RSS per active series (bytes)", &|o| {
            o.hwm_bytes.map_or_else(na, per_series)
        });
        row("peak RSS through persist, VmHWM (MiB)", &|o| {
            o.persist_hwm_bytes
                .map_or_else(na, |b| format!("{:.1}", mib(b)))
        });
        row("RSS after persist, VmRSS (MiB)", &|o| {
            o.persist_rss_bytes
                .map_or_else(na, |b| format!("{:.1}", mib(b)))
        });
        row(
            "peak RSS of the restarted process through queries, VmHWM (MiB)",
            &|o| {
                o.query_hwm_bytes
                    .map_or_else(na, |b| format!("{:.1}", mib(b)))
            },
        );
        row("peak RSS over ingest + queries (MiB)", &|o| {
            o.peak_rss_bytes()
                .map_or_else(na, |b| format!("{:.1}", mib(b)))
        });
        row(
            "peak RSS over ingest + queries per active series (bytes)",
            &|o| o.peak_rss_bytes().map_or_else(na, per_series),
        );
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
        let disk = |o: &Outcome, d: Option<DirSize>| {
            let Some(d) = d else { return na() };
            let per = match o.send.as_ref().map(|x| x.samples_ok) {
                Some(n) if n > 0 => format!("{:.3}", d.bytes as f64 / n as f64),
                _ => "n/a".into(),
            };
            format!("{:.2} / {per} (du {:.2})", mib(d.bytes), mib(d.allocated))
        };
        let stages = [
            "peak during ingest",
            "end of ingest, before persist",
            "after persist",
            "after clean shutdown (SIGTERM, exited)",
            "after kill -9 of the restarted process",
        ];
        for (i, stage) in stages.iter().enumerate() {
            row(
                &format!(
                    "data dir ({}) {stage}: MiB / bytes per ingested sample",
                    ["a", "b", "c", "d", "e"][i]
                ),
                &|o| disk(o, o.disk.in_order()[i]),
            );
        }
        row(
            "snapshots/ written by persist, not in (c) (MiB)",
            &|o| match (o.system, o.disk.snapshots) {
                (System::Victoriametrics, _) => "none (persist writes no snapshot)".into(),
                (_, Some(d)) => format!("{:.2}", mib(d.bytes)),
                (_, None) => na(),
            },
        );
        let dur = |r: &Option<std::result::Result<Duration, String>>| match r {
            Some(Ok(d)) => format!("{:.3}", d.as_secs_f64()),
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn outcome(system: System, scale: u64) -> Outcome {
        let mut o = Outcome::new(system, "v1".into());
        o.send = Some(Summary {
            samples_ok: 1000,
            elapsed: Duration::from_secs(1),
            ..Summary::default()
        });
        o.ingest_cpu_s = Some(0.5);
        o.hwm_bytes = Some(100 * MIB * scale);
        o.persist_hwm_bytes = Some(110 * MIB * scale);
        o.persist_rss_bytes = Some(90 * MIB * scale);
        o.query_hwm_bytes = Some(150 * MIB * scale);
        let size = |mib: u64| {
            Some(DirSize {
                bytes: mib * MIB * scale,
                allocated: (mib + 1) * MIB * scale,
            })
        };
        o.disk = disk::Stages {
            ingest_peak: size(4),
            ingest_end: size(3),
            persisted: size(2),
            snapshots: size(1),
            stopped: size(2),
            killed: size(2),
        };
        o.persist = Some(Ok(Persisted {
            index_bytes: 1000,
            chunk_bytes: 2000,
            elapsed: Duration::from_millis(10),
        }));
        o.restart = Some(Ok(Duration::from_millis(100 * scale)));
        o.queries = vec![Ok(Timing {
            latencies: vec![Duration::from_millis(2 * scale); 3],
            body: Vec::new(),
        })];
        o
    }

    fn report(outcomes: Vec<Outcome>) -> Report {
        Report {
            spec: Spec {
                targets: 1,
                series_per_target: 10,
                scrapes: 100,
                interval_ms: 15_000,
                jitter_ms: 0,
                end_ms: 0,
                shards: 1,
                max_samples_per_send: 100,
                seed: 1,
            },
            queries: vec![Query {
                name: "up".into(),
                path: "/api/v1/query?query=up".into(),
            }],
            outcomes,
            requests: 10,
            request_bytes: 100,
        }
    }

    #[test]
    fn markdown_puts_the_targets_on_top_and_reports_disk_and_memory_per_system() {
        let mut prom = Outcome::new(System::Prometheus, "not installed".into());
        prom.fatal = Some("binary not found".into());
        let r = report(vec![
            prom,
            outcome(System::Victoriametrics, 2),
            outcome(System::Tidemark, 1),
        ]);
        let md = r.markdown();
        assert!(
            md.starts_with("## Issue 21 targets (Tidemark / VictoriaMetrics)"),
            "{md}"
        );
        // The figures table, then the targets section above it.
        let (targets, table) = md.split_at(md.find("| figure |").expect("the table"));
        let find = |text: &str, start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in\n{md}"))
                .to_string()
        };
        let line = |start: &str| find(table, start);
        assert_eq!(
            line("| data dir (a) peak during ingest"),
            "| data dir (a) peak during ingest: MiB / bytes per ingested sample \
             | n/a (binary not found) | 8.00 / 8388.608 (du 10.00) | 4.00 / 4194.304 (du 5.00) |"
        );
        assert!(line("| data dir (e) after kill -9").ends_with("| 2.00 / 2097.152 (du 3.00) |"));
        assert!(line("| snapshots/").ends_with("| none (persist writes no snapshot) | 1.00 |"));
        assert!(line("| RSS after persist").ends_with("| 180.0 | 90.0 |"));
        assert!(line("| peak RSS over ingest + queries (MiB)").ends_with("| 300.0 | 150.0 |"));
        // 150 MiB over 10 active series.
        assert!(
            line("| peak RSS over ingest + queries per active series").ends_with("| 15728640 |")
        );
        // The existing rows stay.
        assert!(line("| peak RSS during ingest, VmHWM (MiB)").ends_with("| 200.0 | 100.0 |"));
        assert!(find(targets, "| disk (a): peak during ingest (MiB)")
            .ends_with("| 4.00 | 8.00 | 0.50x | <= 1.0x | met |"));
        assert!(find(targets, "| peak RSS over ingest + queries (MiB)")
            .ends_with("| 150.0 | 300.0 | 0.50x | <= 1.0x | met |"));
        assert!(
            find(targets, "| restart: start to ready, data in place (s)")
                .ends_with("| 0.100 | 0.200 | 0.50x | <= 0.5x | met |")
        );
    }

    #[test]
    fn markdown_without_victoriametrics_says_the_targets_cannot_be_read() {
        let md = report(vec![outcome(System::Tidemark, 1)]).markdown();
        assert!(md.contains("VictoriaMetrics was not run"), "{md}");
    }
}
