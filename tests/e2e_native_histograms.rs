//! End to end with a real client: Debian's Prometheus 2.42, with
//! `--enable-feature=native-histograms`, scrapes a target exposing a native
//! histogram (protobuf exposition, served by this test: no packaged
//! exporter exposes one) every second and remote-writes it to the
//! `tidemark` binary with `send_native_histograms: true`. Tidemark must
//! store exactly the histograms the target served (bucket by bucket), and
//! Prometheus must report no failed sends. Prometheus's own head chunk,
//! taken from a TSDB snapshot, is the golden bytes of the histogram chunk
//! codec: Tidemark decodes it to the served histograms and re-encodes
//! them to the same bytes.
//!
//! Needs `prometheus`; `TIDEMARK_SKIP_E2E=1` skips without it.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::http;
use common::proc::{
    find_bin as find, free_port, start_prometheus_with, start_tidemark, wait_until,
};
use prost::Message;
use tidemark::model::Matcher;
use tidemark::storage::chunk::{HistogramAppender, HistogramIter};
use tidemark::storage::encoding::Decbuf;
use tidemark::storage::{Db, Options};

/// The exposition format's messages (io.prometheus.client, metrics.proto),
/// only the fields used here.
#[derive(Clone, PartialEq, Message)]
struct MetricFamily {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    help: String,
    #[prost(int32, tag = "3")]
    r#type: i32,
    #[prost(message, repeated, tag = "4")]
    metric: Vec<Metric>,
}

#[derive(Clone, PartialEq, Message)]
struct Metric {
    #[prost(message, optional, tag = "7")]
    histogram: Option<Histogram>,
}

#[derive(Clone, PartialEq, Message)]
struct Histogram {
    #[prost(uint64, tag = "1")]
    sample_count: u64,
    #[prost(double, tag = "2")]
    sample_sum: f64,
    #[prost(sint32, tag = "5")]
    schema: i32,
    #[prost(double, tag = "6")]
    zero_threshold: f64,
    #[prost(uint64, tag = "7")]
    zero_count: u64,
    #[prost(message, repeated, tag = "12")]
    positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "13")]
    positive_delta: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct BucketSpan {
    #[prost(sint32, tag = "1")]
    offset: i32,
    #[prost(uint32, tag = "2")]
    length: u32,
}

/// The histogram served at scrape number `n`: schema 2, buckets -1..=3
/// growing at different rates, one zero-bucket observation per scrape.
/// Returns it with its absolute bucket counts.
fn served(n: u64) -> (Histogram, Vec<u64>) {
    let abs: Vec<u64> = (0..5u64).map(|i| n * (i + 1) + i).collect();
    let mut prev = 0i64;
    let positive_delta = abs
        .iter()
        .map(|&a| {
            let d = a as i64 - prev;
            prev = a as i64;
            d
        })
        .collect();
    let h = Histogram {
        sample_count: abs.iter().sum::<u64>() + n,
        sample_sum: n as f64 * 1.5,
        schema: 2,
        zero_threshold: 2f64.powi(-128),
        zero_count: n,
        positive_span: vec![BucketSpan {
            offset: -1,
            length: 5,
        }],
        positive_delta,
    };
    (h, abs)
}

/// Serves `/metrics` in the protobuf exposition format; each scrape
/// advances the histogram.
fn serve(listener: TcpListener, scrapes: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = [0u8; 4096];
        let _ = s.read(&mut req);
        let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
        let family = MetricFamily {
            name: "nh_latency_seconds".into(),
            help: "A native histogram.".into(),
            r#type: 4,
            metric: vec![Metric {
                histogram: Some(served(n).0),
            }],
        };
        let body = family.encode_length_delimited_to_vec();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&body);
    }
}

/// Sum over every series of `name` (any labels) in `addr`'s `/metrics`.
fn metric_sum(addr: &str, name: &str) -> Option<f64> {
    let (_, body) = http::get(addr, "/metrics")?;
    let values: Vec<f64> = body
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn prometheus_2_42_remote_writes_native_histograms_that_tidemark_stores_exactly() {
    let Some(prometheus) = find("prometheus") else {
        if std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1") {
            eprintln!("skipping: prometheus not installed");
            return;
        }
        panic!(
            "prometheus must be installed (apt-get install -y prometheus; scripts/test does it)"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let (tm_addr, prom_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (scrapes, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let server = {
        let (scrapes, stop) = (scrapes.clone(), stop.clone());
        std::thread::spawn(move || serve(listener, scrapes, stop))
    };

    let tm_dir = dir.path().join("tidemark");
    let mut tidemark = start_tidemark(&tm_addr, &tm_dir);
    wait_until("tidemark ready", Duration::from_secs(30), || {
        http::get(&tm_addr, "/-/ready").is_some_and(|r| r.0 == 200)
    });
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nh\n    static_configs:\n      - targets: ['{target}']\nremote_write:\n  - url: http://{tm_addr}/api/v1/write\n    send_native_histograms: true\n    queue_config:\n      batch_send_deadline: 1s\n"
    );
    let mut prom = start_prometheus_with(
        &prometheus,
        &prom_addr,
        dir.path(),
        &config,
        &[
            "--enable-feature=native-histograms",
            "--web.enable-admin-api",
        ],
    );
    wait_until("prometheus ready", Duration::from_secs(60), || {
        http::get(&prom_addr, "/-/ready").is_some_and(|r| r.0 == 200)
    });
    wait_until("10 scrapes", Duration::from_secs(60), || {
        scrapes.load(Ordering::SeqCst) >= 10
    });
    // Prometheus itself stored native histograms (not classic buckets).
    wait_until(
        "prometheus has the native histogram",
        Duration::from_secs(30),
        || {
            http::get(&prom_addr, "/api/v1/query?query=nh_latency_seconds")
                .is_some_and(|(s, b)| s == 200 && b.contains("\"histogram\""))
        },
    );
    // Let remote write send what was scraped, then stop scraping.
    std::thread::sleep(Duration::from_secs(4));
    // The same PromQL answers from both, at a time both hold the same data.
    // histogram_quantile and histogram_fraction are left out on purpose:
    // Prometheus 3 (Tidemark's reference, checked by the conformance
    // suite's native_histogram cases) interpolates exponentially inside
    // exponential buckets where 2.42 interpolated linearly, so their
    // answers differ from 2.42's by design.
    let newest = |addr: &str| -> Option<f64> {
        let (_, body) = http::get(addr, "/api/v1/query?query=timestamp(nh_latency_seconds)")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
    };
    let latest = newest(&prom_addr).expect("prometheus answers with a timestamp");
    // Remote write may lag on a loaded machine (batches wait up to their
    // send deadline): compare only once Tidemark holds what Prometheus
    // held at that moment.
    wait_until(
        "tidemark holds prometheus's newest sample",
        Duration::from_secs(60),
        || newest(&tm_addr).is_some_and(|t| t >= latest),
    );
    let at = latest - 2.0;
    for q in [
        "histogram_count(nh_latency_seconds)",
        "histogram_sum(nh_latency_seconds)",
        "histogram_count(increase(nh_latency_seconds[5s]))",
        "histogram_sum(rate(nh_latency_seconds[5s]))",
        "histogram_count(sum(nh_latency_seconds))",
    ] {
        let value = |addr: &str| -> f64 {
            let path = format!("/api/v1/query?query={}&time={at}", http::encode(q));
            let (status, body) = http::get(addr, &path).expect("answers");
            assert_eq!(status, 200, "{addr} {q}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{addr} {q}: {body}"))
        };
        let (want, got) = (value(&prom_addr), value(&tm_addr));
        let close = (want - got).abs() <= 1e-9 * want.abs().max(got.abs())
            || (want.is_nan() && got.is_nan());
        assert!(close, "{q} at {at}: Prometheus {want}, Tidemark {got}");
    }
    let failed = metric_sum(
        &prom_addr,
        "prometheus_remote_storage_histograms_failed_total",
    )
    .expect("prometheus exports its failed-histograms counter");
    let sent = metric_sum(&prom_addr, "prometheus_remote_storage_histograms_total")
        .expect("prometheus exports its sent-histograms counter");
    let golden = prometheus_histogram_chunks(&prom_addr, &dir.path().join("prom"));
    prom.terminate(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    tidemark.terminate(Duration::from_secs(30));
    assert_eq!(failed, 0.0, "Prometheus failed to send some histograms");

    let db = Db::open(&tm_dir, Options::default()).unwrap();
    let q = db.querier(i64::MIN, i64::MAX);
    let series = q.select(&[Matcher::eq("__name__", "nh_latency_seconds")]);
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].labels().get("job"), Some("nh"));
    let got: Vec<_> = series[0].histograms().collect();
    assert!(
        got.len() >= 8,
        "only {} histograms stored (Prometheus sent {sent})",
        got.len()
    );
    assert!(
        got.len() as f64 >= sent,
        "{} stored, {sent} sent",
        got.len()
    );
    eprintln!(
        "E2E-NATIVE-HISTOGRAMS scrapes={} prometheus_sent={sent} tidemark_stored={}",
        scrapes.load(Ordering::SeqCst),
        got.len()
    );
    let mut last_count = 0.0;
    for (t, h) in &got {
        if h.is_stale() {
            continue;
        }
        // Scrape n served zero count n: which scrape this is.
        let n = h.zero_count as u64;
        let (want, abs) = served(n);
        assert_eq!(h.schema, 2, "{t}");
        assert_eq!(h.count, want.sample_count as f64, "{t}");
        assert_eq!(h.sum, want.sample_sum, "{t}");
        assert_eq!(h.zero_threshold, want.zero_threshold, "{t}");
        let buckets: Vec<(i32, f64)> = {
            let mut idx = h.positive_spans.first().map_or(0, |s| s.offset);
            let mut out = Vec::new();
            let mut k = 0;
            for (i, s) in h.positive_spans.iter().enumerate() {
                if i > 0 {
                    idx += s.offset;
                }
                for _ in 0..s.length {
                    out.push((idx, h.positive_buckets[k]));
                    k += 1;
                    idx += 1;
                }
            }
            out
        };
        let want_buckets: Vec<(i32, f64)> = abs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as i32 - 1, *a as f64))
            .collect();
        assert_eq!(buckets, want_buckets, "{t}");
        assert!(h.count > last_count, "{t}: counts grow scrape by scrape");
        last_count = h.count;
    }

    // Golden bytes: Prometheus's own chunks decode to what was served and
    // re-encode, sample by sample with the chunk's header, to the same
    // bytes.
    assert!(!golden.is_empty(), "the snapshot holds no histogram chunk");
    // Refreshes the golden fixture of tests/storage_histograms.rs.
    if let Ok(path) = std::env::var("TIDEMARK_WRITE_GOLDEN_HISTOGRAM_CHUNK") {
        std::fs::write(path, &golden[0]).unwrap();
    }
    let mut decoded = 0;
    for bytes in &golden {
        let mut it = HistogramIter::new(&bytes[..]);
        let samples: Vec<_> = it.by_ref().collect();
        assert_eq!(it.err(), None);
        let mut app = HistogramAppender::new(it.header());
        for (_, h) in samples.iter() {
            if h.is_stale() {
                continue;
            }
            let (want, _) = served(h.zero_count);
            assert_eq!(h.count, want.sample_count);
            assert_eq!(h.positive_buckets, want.positive_delta);
        }
        for (t, h) in &samples {
            app.append(*t, h).expect("fits the chunk it came from");
        }
        assert_eq!(
            &app.finish()[..],
            &bytes[..],
            "re-encoded chunk differs from Prometheus's"
        );
        decoded += samples.len();
    }
    eprintln!(
        "E2E-NATIVE-HISTOGRAMS golden chunks={} samples={decoded}",
        golden.len()
    );
    assert!(decoded >= 8);
}

/// Takes a TSDB snapshot of Prometheus (its head written as a block) and
/// returns the bytes of every histogram chunk (encoding 2) in its chunk
/// segment files: magic, version and padding (8 bytes), then per chunk a
/// uvarint length, the encoding byte, the data and a CRC-32C.
fn prometheus_histogram_chunks(prom_addr: &str, prom_dir: &std::path::Path) -> Vec<Vec<u8>> {
    let (status, body) = http::request(prom_addr, "POST", "/api/v1/admin/tsdb/snapshot", &[], b"")
        .expect("prometheus reachable");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let name = v["data"]["name"].as_str().unwrap();
    let mut out = Vec::new();
    for block in std::fs::read_dir(prom_dir.join("snapshots").join(name)).unwrap() {
        let chunks = block.unwrap().path().join("chunks");
        for seg in std::fs::read_dir(&chunks).unwrap() {
            let bytes = std::fs::read(seg.unwrap().path()).unwrap();
            assert_eq!(
                &bytes[..4],
                &[0x85, 0xBD, 0x40, 0xDD],
                "chunk segment magic"
            );
            let mut d = Decbuf::new(&bytes[8..]);
            while !d.is_empty() {
                let len = d.uvarint().unwrap() as usize;
                let encoding = d.u8().unwrap();
                let data = d.bytes(len).unwrap();
                let crc = d.be_u32().unwrap();
                let mut with_enc = vec![encoding];
                with_enc.extend_from_slice(data);
                assert_eq!(crc, crc32c::crc32c(&with_enc), "chunk CRC");
                if encoding == 2 {
                    out.push(data.to_vec());
                }
            }
        }
    }
    out
}
