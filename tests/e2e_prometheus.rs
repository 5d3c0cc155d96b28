//! End to end with a real client: Debian's Prometheus scrapes Debian's
//! node_exporter every second and remote-writes to the `tidemark` binary,
//! all on 127.0.0.1. After ~30 s Tidemark must hold the same series and the
//! same number of samples as Prometheus's own TSDB for the window, and
//! Prometheus must report zero failed sends.
//!
//! Needs `prometheus` and `prometheus-node-exporter` (scripts/test installs
//! them). Set `TIDEMARK_SKIP_E2E=1` to skip on a machine without them.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::http;
use common::proc::{
    find_bin as find, free_port, start_prometheus_with, start_tidemark, wait_until, Proc,
};
use tidemark::model::{is_stale_nan, Matcher};
use tidemark::storage::{Db, Options};

/// Runs an instant query against Prometheus; returns each result's labels
/// and, for a vector its value, for a matrix its number of samples.
fn prom_query(addr: &str, q: &str, time: f64) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = http::get(
        addr,
        &format!("/api/v1/query?query={}&time={time}", http::encode(q)),
    )
    .expect("prometheus reachable");
    assert_eq!(status, 200, "{q}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let value = match r["values"].as_array() {
                Some(values) => values.len() as f64,
                None => r["value"][1].as_str().unwrap().parse().unwrap(),
            };
            (labels, value)
        })
        .collect()
}

fn labels_key(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn prometheus_remote_write_to_tidemark_matches_prometheus_tsdb() {
    let (Some(prometheus), Some(node_exporter)) =
        (find("prometheus"), find("prometheus-node-exporter"))
    else {
        if std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1") {
            eprintln!("skipping: prometheus / node_exporter not installed");
            return;
        }
        panic!("prometheus and prometheus-node-exporter must be installed (apt-get install -y prometheus prometheus-node-exporter; scripts/test does it)");
    };
    let dir = tempfile::tempdir().unwrap();
    let (tm_addr, prom_addr, node_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );

    let mut tidemark = start_tidemark(&tm_addr, &dir.path().join("tidemark"));
    let _node = Proc(
        Command::new(&node_exporter)
            .args([&format!("--web.listen-address={node_addr}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        "node_exporter",
    );
    wait_until("tidemark ready", Duration::from_secs(30), || {
        http::get(&tm_addr, "/-/ready").is_some_and(|r| r.0 == 200)
    });
    wait_until("node_exporter up", Duration::from_secs(30), || {
        http::get(&node_addr, "/metrics").is_some_and(|r| r.0 == 200)
    });

    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{node_addr}']\n  - job_name: prometheus\n    static_configs:\n      - targets: ['{prom_addr}']\nremote_write:\n  - url: http://{tm_addr}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      max_samples_per_send: 2000\n"
    );
    let mut prom = start_prometheus_with(&prometheus, &prom_addr, dir.path(), &config, &[]);
    wait_until("prometheus ready", Duration::from_secs(60), || {
        http::get(&prom_addr, "/-/ready").is_some_and(|r| r.0 == 200)
    });
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    std::thread::sleep(Duration::from_secs(30));

    // A cut-off that remote write has certainly delivered: wait until the
    // highest sent timestamp passes it and nothing is pending.
    let cut = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor();
    wait_until("remote write to catch up", Duration::from_secs(60), || {
        let sent = prom_query(
            &prom_addr,
            "max(prometheus_remote_storage_queue_highest_sent_timestamp_seconds)",
            cut + 5.0,
        );
        sent.first().is_some_and(|(_, v)| *v >= cut + 2.0)
    });
    let failed = prom_query(
        &prom_addr,
        "sum(prometheus_remote_storage_samples_failed_total)",
        cut + 2.0,
    );
    assert_eq!(
        failed.first().map(|x| x.1),
        Some(0.0),
        "Prometheus reports failed sends"
    );
    let sent = prom_query(
        &prom_addr,
        "sum(prometheus_remote_storage_samples_total)",
        cut + 2.0,
    );
    assert!(
        sent.first().is_some_and(|x| x.1 > 1000.0),
        "Prometheus sent samples: {sent:?}"
    );

    // Prometheus's own TSDB: its raw non-stale samples per series in
    // (cut - window, cut] (a range selector leaves stale markers out).
    let window = (cut - start).ceil() as i64 + 60;
    let want: BTreeMap<String, f64> =
        prom_query(&prom_addr, &format!("{{__name__=~\".+\"}}[{window}s]"), cut)
            .into_iter()
            .map(|(m, v)| (labels_key(&m), v))
            .collect();
    assert!(
        want.len() > 100,
        "node_exporter exposes hundreds of series, got {}",
        want.len()
    );

    prom.terminate(Duration::from_secs(90));
    tidemark.terminate(Duration::from_secs(30));

    // Tidemark's data, read back after its own clean restart.
    let db = Db::open(dir.path().join("tidemark"), Options::default()).unwrap();
    let cut_ms = (cut * 1000.0) as i64;
    let mut got: BTreeMap<String, f64> = BTreeMap::new();
    for s in db
        .querier(cut_ms - window * 1000 + 1, cut_ms)
        .select(&[Matcher::new(tidemark::model::MatchOp::Regex, "__name__", ".+").unwrap()])
    {
        let n = s.samples().filter(|x| !is_stale_nan(x.v)).count();
        if n > 0 {
            let m: BTreeMap<String, String> = s
                .labels()
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            got.insert(labels_key(&m), n as f64);
        }
    }
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "series differ: missing {missing:?}, extra {extra:?}"
    );
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| (k, v, got.get(k)))
        .take(5)
        .collect();
    assert!(
        differ.is_empty(),
        "sample counts differ (series, Prometheus, Tidemark): {differ:?}"
    );
    let total: f64 = want.values().sum();
    eprintln!(
        "{} series, {total} samples identical in Prometheus and Tidemark",
        want.len()
    );
}

#[test]
fn prometheus_remote_read_from_tidemark_answers_queries() {
    let Some(prometheus) = find("prometheus") else {
        if std::env::var("TIDEMARK_SKIP_E2E").as_deref() == Ok("1") {
            eprintln!("skipping: prometheus not installed");
            return;
        }
        panic!(
            "prometheus must be installed (apt-get install -y prometheus; scripts/test does it)"
        );
    };
    use prost::Message;
    use tidemark::ingest::proto::prometheus as pb;
    let dir = tempfile::tempdir().unwrap();
    let (tm_addr, prom_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let _tidemark = start_tidemark(&tm_addr, &dir.path().join("tidemark"));
    wait_until("tidemark ready", Duration::from_secs(30), || {
        http::get(&tm_addr, "/-/ready").is_some_and(|r| r.0 == 200)
    });

    // Data only Tidemark holds: 20 minutes at 15 s up to now.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let series: Vec<pb::TimeSeries> = (0..3)
        .map(|i| pb::TimeSeries {
            labels: [
                ("__name__", "only_in_tidemark".to_string()),
                ("job", "rr".to_string()),
                ("i", i.to_string()),
            ]
            .iter()
            .map(|(n, v)| pb::Label {
                name: n.as_bytes().to_vec().into(),
                value: v.as_bytes().to_vec().into(),
            })
            .collect(),
            samples: (0..80)
                .map(|k| pb::Sample {
                    value: (k * 10 + i) as f64,
                    timestamp: now_ms - (79 - k) * 15_000,
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let body = snap::raw::Encoder::new()
        .compress_vec(
            &pb::WriteRequest {
                timeseries: series,
                ..Default::default()
            }
            .encode_to_vec(),
        )
        .unwrap();
    let (status, _) = http::request(
        &tm_addr,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(status, 204);

    let config = format!("global:\n  scrape_interval: 1m\nremote_read:\n  - url: http://{tm_addr}/api/v1/read\n    read_recent: true\n");
    let _prom = start_prometheus_with(&prometheus, &prom_addr, dir.path(), &config, &[]);
    wait_until("prometheus ready", Duration::from_secs(60), || {
        http::get(&prom_addr, "/-/ready").is_some_and(|r| r.0 == 200)
    });
    let at = now_ms as f64 / 1000.0;
    let mut got = prom_query(&prom_addr, "only_in_tidemark", at);
    got.sort_by(|a, b| a.0["i"].cmp(&b.0["i"]));
    let values: Vec<(String, f64)> = got.iter().map(|(m, v)| (m["i"].clone(), *v)).collect();
    assert_eq!(
        values,
        vec![
            ("0".into(), 790.0),
            ("1".into(), 791.0),
            ("2".into(), 792.0)
        ],
        "Prometheus answered from Tidemark"
    );
    // A range selector through remote read. Prometheus 2.42 windows are
    // closed on the left ([now-5m, now]: 21 samples at 15 s); Prometheus 3
    // and Tidemark's engine use (now-5m, now] (20 samples).
    let counts = prom_query(&prom_addr, "only_in_tidemark{i=\"2\"}[5m]", at);
    assert_eq!(counts.len(), 1);
    assert_eq!(
        counts[0].1, 21.0,
        "samples in [now-5m, now] as Prometheus 2.42 selects them"
    );
    let sum = prom_query(&prom_addr, "sum(only_in_tidemark)", at);
    assert_eq!(sum[0].1, 790.0 + 791.0 + 792.0);
}
