//! Hostile queries against the real binary (issue 13, query side): deep
//! nesting, long operator chains, bad escapes, out-of-range `@`, offsets,
//! ranges, steps and times, and a range query over 20,000 series that
//! would hold hundreds of millions of points. Each must answer a 4xx (or
//! 422 for the sample limit) whose message names the limit, the server
//! must stay alive, and its peak RSS (VmHWM, printed per input) must stay
//! under a stated bound.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use tidemark::ingest::proto::prometheus as v1;

use common::http;
use common::proc::{free_port, start_tidemark_with, wait_ready, Proc};

const SERIES: usize = 20_000;

/// Peak RSS bound for the whole run. Before the fix the lookback query
/// alone reached 13.7 GiB and 50,000 parentheses aborted the process.
const MAX_PEAK_RSS_KIB: u64 = 1536 * 1024;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn label(n: &str, v: &str) -> v1::Label {
    v1::Label {
        name: Bytes::copy_from_slice(n.as_bytes()),
        value: Bytes::copy_from_slice(v.as_bytes()),
    }
}

/// Writes `hostile{i="<n>"}` for every n < [`SERIES`], two samples each
/// (at `t - 1h` and `t`), in batches over remote write 1.0.
fn write_series(addr: &str, t: i64) {
    for chunk in (0..SERIES).collect::<Vec<_>>().chunks(2_000) {
        let req = v1::WriteRequest {
            timeseries: chunk
                .iter()
                .map(|n| v1::TimeSeries {
                    labels: vec![label("__name__", "hostile"), label("i", &n.to_string())],
                    samples: vec![
                        v1::Sample {
                            value: 1.0,
                            timestamp: t - 3_600_000,
                        },
                        v1::Sample {
                            value: 2.0,
                            timestamp: t,
                        },
                    ],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        let (status, resp) = http::request(
            addr,
            "POST",
            "/api/v1/write",
            &[
                (
                    "Content-Type",
                    "application/x-protobuf;proto=prometheus.WriteRequest",
                ),
                ("Content-Encoding", "snappy"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            &body,
        )
        .expect("write reaches the server");
        assert_eq!(status, 204, "{}", String::from_utf8_lossy(&resp));
    }
}

/// POSTs `form` to `path` (form bodies: URLs cannot hold 100 KB queries).
fn post(addr: &str, path: &str, form: &str) -> (u16, String) {
    let (status, body) = http::request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .unwrap_or_else(|| panic!("no answer to {path} {}", &form[..form.len().min(200)]));
    (status, String::from_utf8_lossy(&body).into_owned())
}

struct Case {
    what: String,
    path: &'static str,
    form: String,
    status: u16,
    /// A piece of the error message (naming the problem or the limit).
    says: &'static str,
}

fn case(what: &str, path: &'static str, form: String, status: u16, says: &'static str) -> Case {
    Case {
        what: what.to_string(),
        path,
        form,
        status,
        says,
    }
}

fn q(query: &str) -> String {
    format!("query={}", http::encode(query))
}

#[test]
fn hostile_queries_get_4xx_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    // Default limits, except a lookback ceiling above 1y so that the
    // issue's query (lookback_delta=1y) reaches the sample limit; the
    // default ceiling (1d) is tested in tests/query_limits.rs.
    let mut p: Proc = start_tidemark_with(&addr, dir.path(), &["--query.max-lookback-delta=2y"]);
    wait_ready(&mut p, &addr, Duration::from_secs(60));
    let t = now_ms();
    write_series(&addr, t);
    let secs = t / 1000;
    let baseline = p.peak_rss_kib().unwrap();
    eprintln!("peak RSS after writing {SERIES} series: {baseline} KiB");

    let parens = format!("{}up{}", "(".repeat(50_000), ")".repeat(50_000));
    let plus_chain = vec!["1"; 100_000].join("+");
    let minus_chain = format!("{}up", "-".repeat(100_000));
    let or_chain = vec!["up"; 20_000].join(" or ");
    let mut cases = vec![
        case(
            "50,000 nested parentheses",
            "/api/v1/query",
            q(&parens),
            400,
            "256",
        ),
        case(
            "50,000 nested parentheses (query_range)",
            "/api/v1/query_range",
            format!("{}&start=1&end=2&step=1", q(&parens)),
            400,
            "256",
        ),
        case(
            "50,000 nested parentheses (format_query)",
            "/api/v1/format_query",
            q(&parens),
            400,
            "256",
        ),
        case(
            "50,000 nested parentheses (match[])",
            "/api/v1/series",
            format!("match[]={}", http::encode(&parens)),
            400,
            "256",
        ),
        case(
            "1+1+… 100,000 times",
            "/api/v1/query",
            q(&plus_chain),
            400,
            "1000",
        ),
        case(
            "100,000 unary minus",
            "/api/v1/query",
            q(&minus_chain),
            400,
            "1000",
        ),
        case("20,000 `or`", "/api/v1/query", q(&or_chain), 400, "1000"),
        case(
            "bad escape",
            "/api/v1/query",
            q(r#"up{a="\x41\é"}"#),
            400,
            "escape",
        ),
        case(
            "offset Inf",
            "/api/v1/query",
            q("up offset Inf"),
            400,
            "duration",
        ),
        case(
            "offset NaN",
            "/api/v1/query",
            q("up offset NaN"),
            400,
            "duration",
        ),
        case(
            "offset -1e300",
            "/api/v1/query",
            q("up offset -1e300"),
            400,
            "duration",
        ),
        case(
            "rate(up[1e300])",
            "/api/v1/query",
            q("rate(up[1e300])"),
            400,
            "duration",
        ),
        case(
            "@ 1e300",
            "/api/v1/query",
            q("up @ 1e300"),
            400,
            "@ modifier",
        ),
        case(
            "@ -1e300",
            "/api/v1/query",
            q("up @ -1e300"),
            400,
            "@ modifier",
        ),
        case("@ 1e16", "/api/v1/query", q("up @ 1e16"), 400, "@ modifier"),
        case(
            "offset 1e16",
            "/api/v1/query",
            q("up offset 1e16"),
            400,
            "out of range",
        ),
        case(
            "subquery range 1e300",
            "/api/v1/query",
            q("max_over_time(up[1e300:1s])"),
            400,
            "duration",
        ),
        case(
            "subquery step 1e300",
            "/api/v1/query",
            q("max_over_time(up[5m:1e300])"),
            400,
            "duration",
        ),
        case(
            "subquery range 1e16",
            "/api/v1/query",
            q("max_over_time(up[1e16:1s])"),
            400,
            "out of range",
        ),
        case(
            "subquery of 1e9 steps",
            "/api/v1/query",
            q("max_over_time(up[1e9:1ms])"),
            422,
            "too many samples",
        ),
    ];
    for bad in [
        "1e300",
        "-1e300",
        "NaN",
        "Inf",
        "-Inf",
        "9223372036854775807",
        "-9223372036854775808",
    ] {
        cases.push(case(
            &format!("time={bad}"),
            "/api/v1/query",
            format!("{}&time={}", q("up"), http::encode(bad)),
            400,
            "time",
        ));
        cases.push(case(
            &format!("start={bad}"),
            "/api/v1/query_range",
            format!("{}&start={}&end={secs}&step=15", q("up"), http::encode(bad)),
            400,
            "start",
        ));
        cases.push(case(
            &format!("end={bad}"),
            "/api/v1/query_range",
            format!("{}&start={secs}&end={}&step=15", q("up"), http::encode(bad)),
            400,
            "end",
        ));
        cases.push(case(
            &format!("step={bad}"),
            "/api/v1/query_range",
            format!(
                "{}&start={secs}&end={secs}&step={}",
                q("up"),
                http::encode(bad)
            ),
            400,
            "step",
        ));
        cases.push(case(
            &format!("series start={bad}"),
            "/api/v1/series",
            format!("match[]=up&start={}", http::encode(bad)),
            400,
            "start",
        ));
    }
    cases.extend([
        case(
            "time=9e15 (in range for parseTime, not for the engine)",
            "/api/v1/query",
            format!("{}&time=9e15", q("up offset -5m")),
            400,
            "out of range",
        ),
        case(
            "start=end=9e15",
            "/api/v1/query_range",
            format!("{}&start=9e15&end=9e15&step=1", q("up")),
            400,
            "out of range",
        ),
        case(
            "lookback_delta=3y",
            "/api/v1/query_range",
            format!(
                "{}&start={}&end={secs}&step=1&lookback_delta=3y",
                q("hostile"),
                secs - 11_000
            ),
            400,
            "--query.max-lookback-delta",
        ),
        case(
            "lookback_delta=1e300",
            "/api/v1/query",
            format!("{}&lookback_delta=1e300", q("hostile")),
            400,
            "lookback_delta",
        ),
        case(
            "20,000 series x 11,001 steps (lookback_delta=1y)",
            "/api/v1/query_range",
            format!(
                "{}&start={}&end={secs}&step=1&lookback_delta=1y",
                q("hostile"),
                secs - 11_000
            ),
            422,
            "too many samples",
        ),
        case(
            "last_over_time over 20,000 series x 11,001 steps",
            "/api/v1/query_range",
            format!(
                "{}&start={}&end={secs}&step=1",
                q("last_over_time(hostile[1d])"),
                secs - 11_000
            ),
            422,
            "too many samples",
        ),
        case(
            "11,001 steps",
            "/api/v1/query_range",
            format!("{}&start={}&end={secs}&step=1", q("hostile"), secs - 11_001),
            400,
            "11,000 points",
        ),
    ]);

    for c in &cases {
        let (status, body) = post(&addr, c.path, &c.form);
        let rss = p.peak_rss_kib().expect("tidemark is running");
        eprintln!(
            "{:>4} peak RSS {rss:>8} KiB  {}: {}",
            status,
            c.what,
            &body[..body.len().min(200)]
        );
        assert_eq!(status, c.status, "{}: {body}", c.what);
        assert!(
            body.contains(c.says),
            "{}: message should name {:?}: {body}",
            c.what,
            c.says
        );
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {body}", c.what));
        assert_eq!(v["status"], "error", "{}", c.what);
        p.assert_alive(&addr);
    }
    // Still serves ordinary queries.
    let (status, body) = post(
        &addr,
        "/api/v1/query",
        &format!("{}&time={}", q("count(hostile)"), secs + 1),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("\"{SERIES}\"")), "{body}");
    let peak = p.peak_rss_kib().unwrap();
    eprintln!("peak RSS at the end: {peak} KiB (bound {MAX_PEAK_RSS_KIB} KiB)");
    assert!(
        peak < MAX_PEAK_RSS_KIB,
        "peak RSS {peak} KiB over {MAX_PEAK_RSS_KIB} KiB"
    );
}
