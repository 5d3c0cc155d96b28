//! Stable-toolchain fuzzing of the query path (issue 13): arbitrary text
//! and grammar-generated PromQL (selectors, the engine's functions, binary
//! operators, aggregations, subqueries, offsets, `@`, deep nesting) sent to
//! `/api/v1/query` and `/api/v1/query_range` of the in-process router over
//! the small fixture store, and extreme i64/f64 times, offsets, ranges and
//! steps fed to the engine directly. Every answer must be well-formed JSON
//! with a 2xx/4xx/503 status (a 500 means a caught panic) and nothing may
//! panic. CI-sized: about three thousand cases in all.

mod common;

use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use common::api::{enc, fixture, post, Api, T0};
use tidemark::promql::{Engine, QueryOptions};

/// Functions with one range-vector argument.
const RANGE_FUNCS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "resets",
    "changes",
    "avg_over_time",
    "sum_over_time",
    "min_over_time",
    "max_over_time",
    "count_over_time",
    "last_over_time",
    "first_over_time",
    "present_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "absent_over_time",
];

/// Functions with one instant-vector argument.
const VECTOR_FUNCS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "exp",
    "ln",
    "log2",
    "log10",
    "sqrt",
    "sgn",
    "absent",
    "sort",
    "sort_desc",
    "timestamp",
    "round",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
    "deg",
    "rad",
    "sin",
    "cos",
    "tanh",
];

const AGGREGATIONS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
];

const BINARY_OPS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless", "atan2",
];

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (-1000i64..1000).prop_map(|n| n.to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("Inf".to_string()),
        1 => Just("-Inf".to_string()),
        1 => Just("1e300".to_string()),
        1 => Just("-1e308".to_string()),
        1 => Just("0.5".to_string()),
        1 => Just("0x1F".to_string()),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u32..600).prop_map(|n| format!("{n}s")),
        1 => (1u32..48).prop_map(|n| format!("{n}h")),
        1 => Just("5m".to_string()),
        1 => Just("1ms".to_string()),
        1 => Just("1y".to_string()),
        1 => Just("1e300".to_string()),
        1 => Just("Inf".to_string()),
        1 => Just("1e9".to_string()),
        1 => Just("2m+30s".to_string()),
        1 => Just("0".to_string()),
    ]
}

fn selector() -> impl Strategy<Value = String> {
    let name = prop_oneof![Just("up"), Just("requests_total"), Just("nope"), Just("")];
    let matcher = prop_oneof![
        Just(r#"job="a""#),
        Just(r#"job!="a""#),
        Just(r#"instance=~"i.*""#),
        Just(r#"__name__=~".+""#),
        Just(r#"job!~"(""#),
        Just(r#""http.status"="200""#),
    ];
    (name, proptest::option::of(matcher)).prop_map(|(n, m)| match (n, m) {
        ("", None) => r#"{job=~".*"}"#.to_string(),
        (n, None) => n.to_string(),
        (n, Some(m)) => format!("{n}{{{m}}}"),
    })
}

fn modifiers(inner: String) -> impl Strategy<Value = String> {
    (
        proptest::option::of(duration()),
        proptest::option::of(prop_oneof![
            number(),
            Just("start()".to_string()),
            Just("end()".to_string()),
            Just("1700000300".to_string()),
        ]),
        any::<bool>(),
    )
        .prop_map(move |(off, at, neg)| {
            let mut s = inner.clone();
            if let Some(at) = at {
                s.push_str(&format!(" @ {at}"));
            }
            if let Some(off) = off {
                s.push_str(&format!(" offset {}{off}", if neg { "-" } else { "" }));
            }
            s
        })
}

/// A range vector: a matrix selector or a subquery of `inner`.
fn range_vector(inner: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        (selector(), duration()).prop_map(|(s, d)| format!("{s}[{d}]")),
        (inner, duration(), proptest::option::of(duration()))
            .prop_map(|(e, r, st)| format!("({e})[{r}:{}]", st.unwrap_or_default())),
    ]
    .prop_flat_map(modifiers)
}

/// Grammar-generated PromQL, possibly ill-typed (errors are fine).
fn promql() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        selector().prop_flat_map(modifiers),
        number(),
        Just(r#""a string""#.to_string()),
        Just("time()".to_string()),
        Just("pi()".to_string()),
    ];
    leaf.prop_recursive(6, 48, 3, |inner| {
        let b = inner.clone().boxed();
        prop_oneof![
            (prop::sample::select(RANGE_FUNCS), range_vector(b.clone()))
                .prop_map(|(f, r)| format!("{f}({r})")),
            (prop::sample::select(VECTOR_FUNCS), inner.clone())
                .prop_map(|(f, e)| format!("{f}({e})")),
            (
                prop::sample::select(AGGREGATIONS),
                inner.clone(),
                prop_oneof![Just(""), Just(" by (job)"), Just(" without (instance)")]
            )
                .prop_map(|(a, e, m)| format!("{a}{m} ({e})")),
            (
                prop_oneof![
                    Just("topk"),
                    Just("bottomk"),
                    Just("quantile"),
                    Just("limitk")
                ],
                number(),
                inner.clone()
            )
                .prop_map(|(a, k, e)| format!("{a}({k}, {e})")),
            (
                inner.clone(),
                prop::sample::select(BINARY_OPS),
                prop_oneof![
                    Just(""),
                    Just(" bool"),
                    Just(" on (job)"),
                    Just(" ignoring (instance) group_left"),
                    Just(" on() group_right")
                ],
                inner.clone()
            )
                .prop_map(|(l, op, m, r)| format!("{l} {op}{m} {r}")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.clone().prop_map(|e| format!("({e})")),
            (inner.clone(), number(), number())
                .prop_map(|(e, a, b)| format!("clamp({e}, {a}, {b})")),
            (inner.clone(), number()).prop_map(|(e, q)| format!("histogram_quantile({q}, {e})")),
            (number(), range_vector(b.clone()))
                .prop_map(|(q, r)| format!("quantile_over_time({q}, {r})")),
            (range_vector(b), number()).prop_map(|(r, d)| format!("predict_linear({r}, {d})")),
            inner
                .clone()
                .prop_map(|e| format!(r#"label_replace({e}, "dst", "$1", "job", "(.*)")"#)),
            inner
                .clone()
                .prop_map(|e| format!(r#"count_values("v", {e})"#)),
            (1usize..400, inner).prop_map(|(n, e)| format!(
                "{}{e}{}",
                "(".repeat(n),
                ")".repeat(n)
            )),
        ]
    })
}

/// Times for the `time`/`start`/`end` parameters, in the fixture's range
/// and at the extremes.
fn time_param() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (0i64..900).prop_map(|s| (T0 / 1000 + s).to_string()),
        1 => Just("1e300".to_string()),
        1 => Just("-1e300".to_string()),
        1 => Just("9e15".to_string()),
        1 => Just("-9e15".to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("9223372036854775807".to_string()),
        1 => Just("2023-11-14T22:15:00Z".to_string()),
        1 => Just("0".to_string()),
    ]
}

fn step_param() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => Just("15".to_string()),
        1 => Just("1".to_string()),
        1 => Just("0.001".to_string()),
        1 => Just("1e300".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("Inf".to_string()),
        1 => Just("9223372036".to_string()),
        1 => Just("1m".to_string()),
    ]
}

/// Sends one request and checks the answer is well-formed.
fn check(
    rt: &tokio::runtime::Runtime,
    a: &Api,
    path: &str,
    form: &str,
) -> Result<StatusCode, TestCaseError> {
    let r = rt.block_on(post(&a.app, path, form));
    prop_assert!(
        matches!(
            r.status,
            StatusCode::OK
                | StatusCode::BAD_REQUEST
                | StatusCode::UNPROCESSABLE_ENTITY
                | StatusCode::SERVICE_UNAVAILABLE
        ),
        "{path} {form}: {} {}",
        r.status,
        r.body
    );
    if std::env::var_os("FUZZ_SHOW_ERRORS").is_some() && r.status != StatusCode::OK {
        eprintln!(
            "ERRMSG {}",
            r.body.chars().skip(40).take(90).collect::<String>()
        );
    }
    let v: serde_json::Value = serde_json::from_str(&r.body)
        .map_err(|e| TestCaseError::fail(format!("{path} {form}: not JSON ({e}): {}", r.body)))?;
    let want = if r.status == StatusCode::OK {
        "success"
    } else {
        "error"
    };
    prop_assert_eq!(&v["status"], want, "{} {}: {}", path, form, r.body);
    if r.status != StatusCode::OK {
        prop_assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}",
            r.body
        );
    }
    Ok(r.status)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs `f` on a thread with a large stack: the nested strategy types of
/// the grammar generator take deep stack frames in debug builds.
fn on_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn arbitrary_text_never_panics_the_query_api() {
    let rt = rt();
    let a = fixture();
    let text = prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..120)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[a-z_(){}\\[\\]\"'`\\\\=~!,:@+*/%^<>#0-9. \né-]{0,80}",
        // String literals with escapes, including a backslash before a
        // multi-byte character (which panicked inside the parser).
        "[\\\\éx0-9aU\"]{0,12}".prop_map(|s| format!("up{{a=\"{s}\"}}")),
    ];
    runner(1000)
        .run(&text, |q| {
            check(
                &rt,
                &a,
                "/api/v1/query",
                &format!("query={}&time={}", enc(&q), T0 / 1000 + 300),
            )
            .map(drop)
        })
        .unwrap();
}

#[test]
fn generated_promql_never_panics_the_engine() {
    on_big_stack(generated_promql);
}

fn generated_promql() {
    let rt = rt();
    let a = fixture();
    let s = (
        promql(),
        time_param(),
        time_param(),
        step_param(),
        any::<bool>(),
    );
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    runner(1500)
        .run(&s, |(q, t1, t2, step, range)| {
            let status = if range {
                check(
                    &rt,
                    &a,
                    "/api/v1/query_range",
                    &format!(
                        "query={}&start={t1}&end={}&step={step}",
                        enc(&q),
                        match t1.parse::<i64>() {
                            // Mostly a valid window; sometimes an extreme end.
                            Ok(t)
                                if !t2.starts_with(|c: char| c.is_ascii_digit())
                                    || t2.len() < 12 =>
                                t.saturating_add(600).to_string(),
                            _ => t2.clone(),
                        }
                    ),
                )
            } else {
                check(
                    &rt,
                    &a,
                    "/api/v1/query",
                    &format!("query={}&time={t1}", enc(&q)),
                )
            }?;
            *statuses.lock().unwrap().entry(status.as_u16()).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let statuses = statuses.into_inner().unwrap();
    eprintln!("statuses of generated queries: {statuses:?}");
    // The generator must reach the evaluator, not only the parser.
    assert!(
        statuses.get(&200).copied().unwrap_or(0) >= 30,
        "{statuses:?}"
    );
}

fn extreme_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(i64::MAX / 1000),
        Just(i64::MIN / 1000),
        Just(1 << 60),
        Just(-(1 << 60)),
        (T0 - 1_000_000..T0 + 1_000_000),
    ]
}

fn extreme_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::MAX),
        Just(f64::MIN),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(1e300),
        Just(-1e300),
        Just(9.3e15),
        (-1e12f64..1e12),
    ]
}

#[test]
fn extreme_times_offsets_ranges_and_steps_never_panic() {
    let a = fixture();
    let engine = Engine::default();
    let s = (
        extreme_i64(),
        extreme_i64(),
        extreme_i64(),
        extreme_f64(),
        extreme_f64(),
        extreme_f64(),
        0usize..4,
    );
    runner(600)
        .run(&s, |(start, end, step, at, off, range, shape)| {
            let q = match shape {
                0 => format!("up @ {at:e} offset {off:e}"),
                1 => format!("rate(up[{range:e}] offset {off:e})"),
                2 => format!("max_over_time(up[{range:e}:{off:e}] @ {at:e})"),
                _ => format!("up offset -{off:e}"),
            };
            // Parse errors are fine; panics are not (proptest reports them).
            let Ok(expr) = Engine::parse(&q) else {
                return Ok(());
            };
            let o = QueryOptions::default();
            let _ = engine.instant(&*a.db, &expr, start, &o);
            let _ = engine.range(&*a.db, &expr, start.min(end), start.max(end), step, &o);
            let _ = engine.range(&*a.db, &expr, T0, T0 + 600_000, step, &o);
            Ok(())
        })
        .unwrap();
}
