//! The generated workload: N node_exporter targets × M series, scraped
//! `scrapes` times every `interval_ms` up to `end_ms`, split into K shards
//! the way Prometheus's remote-write queue splits series, each shard's
//! samples in time order and cut into requests of at most
//! `max_samples_per_send` samples.
//!
//! Values follow the series' [`Shape`]: counters grow by plausible,
//! noisy increments in the units node_exporter reports (CPU seconds in
//! hundredths, memory in pages), gauges wander within bounds, many series
//! never change, and scrape timestamps get `0..=jitter_ms` of delay as
//! real scrapes do. Everything is a pure function of the [`Spec`] (seed
//! included): two runs produce the same bytes.

use std::sync::Arc;

use super::catalog;
use super::rng::{mix, Rng};

/// Prometheus's default `queue_config.max_samples_per_send`.
pub const MAX_SAMPLES_PER_SEND: usize = 2000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Number of scrape targets (node_exporter instances).
    pub targets: usize,
    /// Series each target exposes (see [`catalog::host`] for the layout).
    pub series_per_target: usize,
    /// Scrapes per target (history length = `scrapes × interval_ms`).
    pub scrapes: usize,
    /// Scrape interval in ms.
    pub interval_ms: i64,
    /// Largest delay of a scrape timestamp after its scheduled time, ms.
    pub jitter_ms: i64,
    /// The history ends before this time (ms since the epoch): the last
    /// scrape of every target is within the last interval before it.
    pub end_ms: i64,
    /// Remote-write shards (Prometheus `queue_config` shards).
    pub shards: usize,
    /// Samples per request at most.
    pub max_samples_per_send: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Spec {
    /// Every series of every target.
    pub fn active_series(&self) -> usize {
        self.targets * self.series_per_target
    }

    /// Every sample of the workload.
    pub fn total_samples(&self) -> u64 {
        (self.active_series() * self.scrapes) as u64
    }

    /// The scheduled time of scrape 0 (before a target's phase offset).
    pub fn start_ms(&self) -> i64 {
        self.end_ms - self.scrapes as i64 * self.interval_ms
    }
}

/// Prometheus metric type, sent as 2.0 metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Monotonic (resets aside).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A classic histogram's `_bucket`, `_sum` or `_count` series.
    Histogram,
}

/// How one series' value moves from scrape to scrape.
#[derive(Debug, Clone)]
pub enum Shape {
    /// A counter growing by about `rate` units per second (±30 %), counted
    /// in steps of `1 / per_unit` (stochastically rounded, so slow
    /// counters rarely move).
    Counter {
        /// Mean increase per second.
        rate: f64,
        /// Steps per unit: 100 for CPU seconds, 1 for bytes.
        per_unit: f64,
    },
    /// A gauge starting anywhere in `[lo, hi]` and moving by up to `step`
    /// per scrape, in steps of `1 / per_unit`.
    Gauge {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
        /// Largest move per scrape.
        step: f64,
        /// Steps per unit.
        per_unit: f64,
    },
    /// The same value at every scrape.
    Constant(f64),
    /// The scrape's own time in seconds (`node_time_seconds`).
    ScrapeTime,
    /// Cumulative count of per-scrape handler durations `<= le` seconds
    /// (one observation per scrape, the same for all buckets of a target).
    Bucket {
        /// Upper bound of the bucket; `f64::INFINITY` for `+Inf`.
        le: f64,
    },
    /// Sum of those durations.
    HistSum,
    /// Count of those observations.
    HistCount,
    /// Captured values, replayed in a cycle; counters keep growing by
    /// `cycle_delta` per lap so they stay monotonic.
    Replay {
        /// One value per captured scrape.
        values: Arc<[f64]>,
        /// Added once per completed lap.
        cycle_delta: f64,
    },
}

/// One series: its labels (sorted by name, `__name__` included), type
/// and shape.
#[derive(Debug, Clone)]
pub struct SeriesDef {
    /// Sorted by name, unique, `instance` and `job` included.
    pub labels: Vec<(String, String)>,
    /// For 2.0 metadata.
    pub metric_type: MetricType,
    /// How the value moves.
    pub shape: Shape,
}

impl SeriesDef {
    /// The `__name__` label.
    pub fn name(&self) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == "__name__")
            .map_or("", |(_, v)| v.as_str())
    }
}

/// One scrape target: its series are `first..first + len` of
/// [`Workload::series`].
#[derive(Debug, Clone)]
pub struct Target {
    /// The `instance` label.
    pub instance: String,
    /// Offset of its scrapes within the interval, ms (Prometheus spreads
    /// targets over the interval by a hash of the target).
    pub phase_ms: i64,
    /// Index of its first series.
    pub first: usize,
    /// Number of its series.
    pub len: usize,
}

/// One sample of series `series` (index into [`Workload::series`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Series index.
    pub series: u32,
    /// Timestamp, ms.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// The samples of one request, in the order Prometheus would send them.
pub type Batch = Vec<Point>;

/// The whole generated workload.
#[derive(Debug, Clone)]
pub struct Workload {
    /// What was asked for.
    pub spec: Spec,
    /// Targets, in series order.
    pub targets: Vec<Target>,
    /// Every series, target after target.
    pub series: Vec<SeriesDef>,
}

/// `job` label of every generated series.
pub const JOB: &str = "node";

/// The `instance` label of target `i`.
pub fn instance_name(i: usize) -> String {
    format!("node-{i:03}.example.internal:9100")
}

impl Workload {
    /// The synthetic node_exporter workload of `spec`.
    pub fn generate(spec: Spec) -> Self {
        let hosts = (0..spec.targets)
            .map(|i| {
                catalog::host(
                    spec.series_per_target,
                    &mut Rng::keyed(spec.seed, 1, i as u64),
                )
            })
            .collect();
        Self::from_hosts(spec, hosts)
    }

    /// A workload whose target `i` exposes `hosts[i]` (labels without
    /// `instance` and `job`, which are added here).
    pub fn from_hosts(spec: Spec, hosts: Vec<Vec<SeriesDef>>) -> Self {
        let mut series = Vec::new();
        let mut targets = Vec::with_capacity(hosts.len());
        for (i, host) in hosts.into_iter().enumerate() {
            let instance = instance_name(i);
            let first = series.len();
            let len = host.len();
            for mut s in host {
                s.labels.push(("instance".into(), instance.clone()));
                s.labels.push(("job".into(), JOB.into()));
                s.labels.sort();
                series.push(s);
            }
            // Leave room for the jitter so a scrape never crosses into the
            // next interval.
            let span = (spec.interval_ms - spec.jitter_ms).max(1) as u64;
            let phase_ms = (mix(spec.seed ^ mix(i as u64 + 0x51)) % span) as i64;
            targets.push(Target {
                instance,
                phase_ms,
                first,
                len,
            });
        }
        Self {
            spec,
            targets,
            series,
        }
    }

    /// The timestamp of scrape `k` of target `target`.
    pub fn scrape_time(&self, target: usize, k: usize) -> i64 {
        let s = &self.spec;
        let jitter =
            Rng::keyed(s.seed ^ 0x6a17, target as u64, k as u64).upto(s.jitter_ms.max(0) as u64);
        s.start_ms() + k as i64 * s.interval_ms + self.targets[target].phase_ms + jitter as i64
    }

    /// The shard that owns series `i` (as Prometheus, a hash of the series
    /// modulo the shard count).
    pub fn shard_of(&self, i: usize) -> usize {
        (mix(self.spec.seed ^ 0x5a4d ^ mix(i as u64)) % self.spec.shards.max(1) as u64) as usize
    }

    /// The requests of shard `shard`, generated lazily in time order.
    pub fn shard(&self, shard: usize) -> ShardStream<'_> {
        let mut order: Vec<usize> = (0..self.targets.len()).collect();
        order.sort_by_key(|&t| (self.targets[t].phase_ms, t));
        let owned: Vec<Vec<u32>> = order
            .iter()
            .map(|&t| {
                let tg = &self.targets[t];
                (tg.first..tg.first + tg.len)
                    .filter(|&i| self.shard_of(i) == shard)
                    .map(|i| i as u32)
                    .collect()
            })
            .collect();
        ShardStream {
            wl: self,
            order,
            owned,
            values: std::collections::HashMap::new(),
            pending: std::collections::VecDeque::new(),
            next_scrape: 0,
        }
    }
}

/// The requests of one shard: every scrape round in time order (targets
/// by phase), cut into batches of at most `max_samples_per_send`.
#[derive(Debug)]
pub struct ShardStream<'a> {
    wl: &'a Workload,
    /// Target indices by phase.
    order: Vec<usize>,
    /// This shard's series of `order[j]`.
    owned: Vec<Vec<u32>>,
    /// Last value of each owned series.
    values: std::collections::HashMap<u32, f64>,
    pending: std::collections::VecDeque<Point>,
    next_scrape: usize,
}

impl ShardStream<'_> {
    fn fill_round(&mut self) {
        let k = self.next_scrape;
        self.next_scrape += 1;
        for (j, &t) in self.order.iter().enumerate() {
            let ts = self.wl.scrape_time(t, k);
            for &i in &self.owned[j] {
                let prev = self.values.get(&i).copied();
                let v = value(self.wl, t, i as usize, k, ts, prev);
                self.values.insert(i, v);
                self.pending.push_back(Point {
                    series: i,
                    t: ts,
                    v,
                });
            }
        }
    }
}

impl Iterator for ShardStream<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let max = self.wl.spec.max_samples_per_send.max(1);
        while self.pending.len() < max && self.next_scrape < self.wl.spec.scrapes {
            self.fill_round();
        }
        if self.pending.is_empty() {
            return None;
        }
        let n = self.pending.len().min(max);
        Some(self.pending.drain(..n).collect())
    }
}

/// One simulated handler duration of scrape `k` of `target`, seconds:
/// mostly 4–40 ms, now and then a slow one.
fn observation(seed: u64, target: usize, k: u64) -> f64 {
    let mut r = Rng::keyed(seed ^ 0x4157, target as u64, k);
    let u = r.unit();
    if r.unit() < 0.02 {
        0.3 + u
    } else {
        0.004 * (1.0 + 9.0 * u * u * u)
    }
}

/// Scrapes before the history begins, for a histogram's starting counts.
fn past_observations(seed: u64, target: usize) -> u64 {
    200 + Rng::keyed(seed ^ 0x9a57, target as u64, 0).upto(800)
}

/// The value of series `i` (of target `target`) at scrape `k`, time `ts`.
fn value(wl: &Workload, target: usize, i: usize, k: usize, ts: i64, prev: Option<f64>) -> f64 {
    let seed = wl.spec.seed;
    let interval_s = wl.spec.interval_ms as f64 / 1000.0;
    let mut r = Rng::keyed(seed, i as u64, k as u64);
    match &wl.series[i].shape {
        Shape::Counter { rate, per_unit } => {
            let steps = |r: &mut Rng, seconds: f64| {
                let raw = rate * seconds * per_unit * (1.0 + 0.3 * r.signed());
                (raw + r.unit()).floor().max(0.0)
            };
            match prev {
                // Uptime of 1 to 30 days before the first scrape.
                None => {
                    let mut r0 = Rng::keyed(seed ^ 0xc0, i as u64, 0);
                    let uptime = 86_400.0 * (1.0 + 29.0 * r0.unit());
                    steps(&mut r0, uptime) / per_unit
                }
                Some(p) => ((p * per_unit).round() + steps(&mut r, interval_s)) / per_unit,
            }
        }
        Shape::Gauge {
            lo,
            hi,
            step,
            per_unit,
        } => {
            let v = match prev {
                None => lo + (hi - lo) * Rng::keyed(seed ^ 0x9a, i as u64, 0).unit(),
                Some(p) => (p + step * r.signed()).clamp(*lo, *hi),
            };
            // `+ 0.0` turns a rounded -0.0 into 0.0: remote write's proto3
            // drops a zero double, -0.0 included (as Prometheus's does),
            // so -0.0 would arrive as 0.0.
            (v * per_unit).round() / per_unit + 0.0
        }
        Shape::Constant(v) => *v,
        Shape::ScrapeTime => ts as f64 / 1000.0,
        Shape::Bucket { le } => match prev {
            None => (0..past_observations(seed, target))
                .filter(|&p| observation(seed ^ 1, target, p) <= *le)
                .count() as f64,
            Some(p) => p + f64::from(u8::from(observation(seed, target, k as u64) <= *le)),
        },
        Shape::HistSum => match prev {
            None => (0..past_observations(seed, target))
                .map(|p| observation(seed ^ 1, target, p))
                .sum(),
            Some(p) => p + observation(seed, target, k as u64),
        },
        Shape::HistCount => match prev {
            None => past_observations(seed, target) as f64,
            Some(p) => p + 1.0,
        },
        Shape::Replay {
            values,
            cycle_delta,
        } => {
            let n = values.len().max(1);
            values.get(k % n).copied().unwrap_or(0.0) + (k / n) as f64 * cycle_delta
        }
    }
}
