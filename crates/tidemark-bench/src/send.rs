//! Sends shard streams of remote-write bodies to one URL as Prometheus's
//! queue manager does: one sender per shard, one request in flight per
//! shard, a shard's requests in order; 5xx, 429 and connection errors
//! retried with exponential back-off (bounded), other 4xx dropped and
//! counted. Shards are kept within [`SendOptions::max_skew_ms`] of sample
//! time of each other, so a receiver whose head only accepts samples near
//! its newest (Prometheus: within an hour) never sees one shard run ahead.
//! Reports samples/s, request latency percentiles and errors.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::encode::{Body, Protocol};
use super::http::{Client, Url};

/// How to send.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Protocol the bodies are encoded with (sets the headers).
    pub protocol: Protocol,
    /// Socket time-out of every request.
    pub timeout: Duration,
    /// Retries of a request after 5xx, 429 or a connection error.
    pub max_retries: u32,
    /// Largest lead of one shard over the slowest, in sample time (ms).
    pub max_skew_ms: i64,
    /// Stop sending after this long, whatever is left.
    pub deadline: Duration,
    /// Show a progress bar (on stderr, only when it is a terminal).
    pub progress: bool,
    /// OTLP bodies are gzip (sets `Content-Encoding`).
    pub gzip: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            protocol: Protocol::V1,
            timeout: Duration::from_secs(60),
            max_retries: 5,
            max_skew_ms: 10 * 60_000,
            deadline: Duration::from_secs(3600),
            progress: true,
            gzip: false,
        }
    }
}

/// The outcome of a send.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Requests answered 2xx.
    pub requests_ok: u64,
    /// Requests given up on (4xx, or retries exhausted).
    pub requests_failed: u64,
    /// Retries made.
    pub retries: u64,
    /// Samples in 2xx-answered requests.
    pub samples_ok: u64,
    /// Samples in failed requests.
    pub samples_failed: u64,
    /// Samples never sent because the deadline passed.
    pub samples_unsent: u64,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of every answered request, sorted.
    pub latencies: Vec<Duration>,
    /// The first failure, as `status: body` or the I/O error.
    pub first_error: Option<String>,
}

impl Summary {
    /// Acknowledged samples per second of wall time.
    pub fn samples_per_sec(&self) -> f64 {
        self.samples_ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-quantile (0..=1) of request latency.
    pub fn latency(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    /// A human summary, one `key=value` line (parsed by tests and scripts).
    pub fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "samples_ok={} samples_failed={} samples_unsent={} requests_ok={} requests_failed={} retries={} \
             elapsed_s={:.3} samples_per_s={:.0} latency_p50_ms={:.2} latency_p90_ms={:.2} latency_p99_ms={:.2} latency_max_ms={:.2}",
            self.samples_ok,
            self.samples_failed,
            self.samples_unsent,
            self.requests_ok,
            self.requests_failed,
            self.retries,
            self.elapsed.as_secs_f64(),
            self.samples_per_sec(),
            ms(self.latency(0.5)),
            ms(self.latency(0.9)),
            ms(self.latency(0.99)),
            ms(self.latency(1.0)),
        )
    }
}

/// The nearest-rank `p`-quantile of sorted durations (zero when empty).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
    sorted[i]
}

/// Keeps shards within `max_skew_ms` of each other: each shard publishes
/// the first sample time of the request it is about to send
/// (`i64::MAX` when done); a shard more than the skew ahead of the slowest
/// waits. The slowest never waits, so all make progress.
struct Skew {
    next_t: Vec<AtomicI64>,
    max_skew_ms: i64,
}

impl Skew {
    fn wait_turn(&self, shard: usize, t: i64, stop: &AtomicBool) {
        self.next_t[shard].store(t, Ordering::SeqCst);
        loop {
            let slowest = self
                .next_t
                .iter()
                .map(|a| a.load(Ordering::SeqCst))
                .min()
                .unwrap_or(i64::MAX);
            if t <= slowest.saturating_add(self.max_skew_ms) || stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn done(&self, shard: usize) {
        self.next_t[shard].store(i64::MAX, Ordering::SeqCst);
    }
}

/// A progress bar of `total` samples on stderr, hidden when it is not a
/// terminal or `show` is false.
pub fn progress_bar(total: u64, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} samples ({per_sec}, eta {eta})",
        )
        .expect("template is valid"),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Sends `shards` (each an iterator of bodies in time order) to `url`,
/// one thread per shard. `total` sizes the progress bar.
pub fn send<I>(url: &Url, shards: Vec<I>, total: u64, opts: &SendOptions) -> Summary
where
    I: Iterator<Item = Body> + Send,
{
    let skew = Skew {
        next_t: shards.iter().map(|_| AtomicI64::new(i64::MIN)).collect(),
        max_skew_ms: opts.max_skew_ms,
    };
    let stop = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let pb = progress_bar(total, opts.progress, "send");
    let merged = Mutex::new(Summary::default());
    let start = Instant::now();
    let headers = opts.protocol.headers(opts.gzip);
    std::thread::scope(|scope| {
        for (i, bodies) in shards.into_iter().enumerate() {
            let (skew, stop, sent, pb, merged, headers) =
                (&skew, &stop, &sent, &pb, &merged, &headers);
            scope.spawn(move || {
                let mut client = Client::new(url, opts.timeout);
                let mut s = Summary::default();
                for body in bodies {
                    if start.elapsed() > opts.deadline {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if stop.load(Ordering::Relaxed) {
                        s.samples_unsent += u64::from(body.samples);
                        continue;
                    }
                    skew.wait_turn(i, body.min_t, stop);
                    let ok = post(&mut client, url, headers, &body, opts, &mut s);
                    if ok {
                        s.requests_ok += 1;
                        s.samples_ok += u64::from(body.samples);
                    } else {
                        s.requests_failed += 1;
                        s.samples_failed += u64::from(body.samples);
                    }
                    sent.fetch_add(u64::from(body.samples), Ordering::Relaxed);
                    pb.inc(u64::from(body.samples));
                }
                skew.done(i);
                let mut m = merged.lock().expect("no sender panics holding it");
                m.requests_ok += s.requests_ok;
                m.requests_failed += s.requests_failed;
                m.retries += s.retries;
                m.samples_ok += s.samples_ok;
                m.samples_failed += s.samples_failed;
                m.samples_unsent += s.samples_unsent;
                m.latencies.extend(s.latencies);
                if m.first_error.is_none() {
                    m.first_error = s.first_error;
                }
            });
        }
    });
    pb.finish_and_clear();
    let mut summary = merged.into_inner().expect("no sender panics holding it");
    summary.elapsed = start.elapsed();
    summary.latencies.sort_unstable();
    summary
}

/// Posts one body with retries; true when it was acknowledged (2xx).
fn post(
    client: &mut Client,
    url: &Url,
    headers: &[(&str, &str)],
    body: &Body,
    opts: &SendOptions,
    s: &mut Summary,
) -> bool {
    let mut backoff = Duration::from_millis(50);
    for attempt in 0..=opts.max_retries {
        if attempt > 0 {
            s.retries += 1;
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        let t0 = Instant::now();
        let retryable = match client.request("POST", &url.path, headers, &body.bytes) {
            Ok(r) => {
                s.latencies.push(t0.elapsed());
                if (200..300).contains(&r.status) {
                    return true;
                }
                if s.first_error.is_none() {
                    let text = r.text();
                    s.first_error = Some(format!(
                        "{}: {}",
                        r.status,
                        text.chars().take(300).collect::<String>()
                    ));
                }
                r.status >= 500 || r.status == 429
            }
            Err(e) => {
                if s.first_error.is_none() {
                    s.first_error = Some(format!(
                        "{e}: {}",
                        std::error::Error::source(&e)
                            .map(|c| c.to_string())
                            .unwrap_or_default()
                    ));
                }
                true
            }
        };
        if !retryable {
            return false;
        }
    }
    false
}
