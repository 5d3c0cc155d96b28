//! `--storage.out-of-order-time-window` through the real binary over HTTP:
//! remote-written samples sent shuffled inside the window are answered by
//! PromQL exactly as the sorted data, after a `kill -9` too; a sample
//! outside the window is refused as too old naming its bound; without the
//! flag late samples are refused as out of order, as before; the self
//! metric counts what was stored out of order.

mod common;

use std::time::Duration;

use common::http::{encode, get, metric, remote_write_v1, remote_write_v1_status};
use common::proc::{free_port, start_tidemark_with, wait_ready};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// 2023-11-14T00:00:00Z.
const T0: i64 = 1_699_920_000_000;
const STEP: i64 = 15_000;
const POINTS: i64 = 240;

/// `ooo_http[1h]` at `T0 + 1h` as (t ms, value).
fn range_query(addr: &str) -> Vec<(i64, f64)> {
    let path = format!(
        "/api/v1/query?query={}&time={}",
        encode("ooo_http[1h]"),
        (T0 + POINTS * STEP) / 1000
    );
    let (status, body) = get(addr, &path).expect("query");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = v["data"]["result"].as_array().expect("matrix").clone();
    assert_eq!(result.len(), 1, "{body}");
    result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            (t, p[1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

#[test]
fn shuffled_remote_writes_inside_the_window_query_as_the_sorted_data() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let flags = ["--storage.out-of-order-time-window=30m"];
    let mut server = start_tidemark_with(&addr, dir.path(), &flags);
    wait_ready(&mut server, &addr, Duration::from_secs(30));

    let labels: &[(&str, &str)] = &[("__name__", "ooo_http"), ("job", "t")];
    // The newest sample first, then the hour before it in shuffled
    // batches of 10: the first 30 minutes are outside the window.
    let newest = T0 + POINTS * STEP;
    remote_write_v1(&addr, &[(labels, newest, -1.0)]);
    let mut ks: Vec<i64> = (0..POINTS).collect();
    ks.shuffle(&mut rand::rngs::StdRng::seed_from_u64(3));
    let window_start = newest - 30 * 60_000;
    let mut want: Vec<(i64, f64)> = vec![(newest, -1.0)];
    let mut too_old = 0;
    for chunk in ks.chunks(10) {
        let points: Vec<_> = chunk
            .iter()
            .map(|&k| (labels, T0 + k * STEP, k as f64))
            .collect();
        let (status, body) = remote_write_v1_status(&addr, &points);
        let old = chunk
            .iter()
            .filter(|&&k| T0 + k * STEP < window_start)
            .count();
        if old == 0 {
            assert_eq!(status, 204, "{body}");
        } else {
            // A partial write: the rest is stored, the old ones named.
            assert_eq!(status, 400, "{body}");
            assert!(body.contains("too old"), "{body}");
            assert!(body.contains(&window_start.to_string()), "{body}");
        }
        too_old += old;
        want.extend(
            chunk
                .iter()
                .filter(|&&k| T0 + k * STEP >= window_start)
                .map(|&k| (T0 + k * STEP, k as f64)),
        );
    }
    assert_eq!(too_old, 120);
    want.sort_by_key(|x| x.0);
    // `[1h]` is left-open: the sample exactly an hour back is not in it.
    let want: Vec<(i64, f64)> = want.into_iter().filter(|x| x.0 > T0).collect();
    assert_eq!(range_query(&addr), want);
    assert_eq!(
        metric(&addr, "tidemark_head_out_of_order_samples_appended_total"),
        Some(120.0)
    );

    // kill -9 and restart: nothing acknowledged is lost (WAL replay).
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let mut server = start_tidemark_with(&addr, dir.path(), &flags);
    wait_ready(&mut server, &addr, Duration::from_secs(30));
    assert_eq!(range_query(&addr), want, "after kill -9");
    server.terminate(Duration::from_secs(20));
}

#[test]
fn without_the_window_late_samples_are_refused_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut server = start_tidemark_with(&addr, dir.path(), &[]);
    wait_ready(&mut server, &addr, Duration::from_secs(30));
    let labels: &[(&str, &str)] = &[("__name__", "ooo_http"), ("job", "t")];
    remote_write_v1(&addr, &[(labels, T0 + STEP, 1.0)]);
    let (status, body) = remote_write_v1_status(&addr, &[(labels, T0, 2.0)]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("out of order"), "{body}");
    assert_eq!(
        metric(&addr, "tidemark_head_out_of_order_samples_appended_total"),
        Some(0.0)
    );
    server.terminate(Duration::from_secs(20));
}
