//! Fuzzes the PromQL parser and evaluator: arbitrary bytes (as text) must
//! never panic, overflow the stack or run away; each input is parsed (on a
//! thread with the query stack, as the server does) and, when it parses,
//! evaluated as an instant and a range query over a small store.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tidemark::model::{Labels, Sample};
use tidemark::promql::{Engine, QueryOptions, QUERY_THREAD_STACK};
use tidemark::storage::{Db, Options, SeriesSamples};

const T0: i64 = 1_700_000_000_000;

fn db() -> &'static Db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tidemark-fuzz-promql-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Db::open(&dir, Options::default()).expect("open db");
        let grid = |f: &dyn Fn(usize) -> f64| -> Vec<Sample> {
            (0..=40).map(|i| Sample::new(T0 + i as i64 * 15_000, f(i))).collect()
        };
        let l = |pairs: &[(&str, &str)]| Labels::from_static(pairs);
        db.append(&[
            SeriesSamples {
                histograms: Vec::new(),
                created: Vec::new(),
                labels: l(&[("__name__", "up"), ("instance", "i1"), ("job", "a")]),
                samples: grid(&|_| 1.0),
            },
            SeriesSamples {
                histograms: Vec::new(),
                created: Vec::new(),
                labels: l(&[("__name__", "up"), ("instance", "i2"), ("job", "b")]),
                samples: grid(&|_| 0.0),
            },
            SeriesSamples {
                histograms: Vec::new(),
                created: Vec::new(),
                labels: l(&[("__name__", "requests_total"), ("job", "a")]),
                samples: grid(&|i| i as f64 * 10.0),
            },
        ])
        .expect("append");
        db
    })
}

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data).into_owned();
    let db = db();
    std::thread::Builder::new()
        .stack_size(QUERY_THREAD_STACK)
        .spawn(move || {
            let Ok(expr) = Engine::parse(&query) else {
                return;
            };
            let engine = Engine::default();
            let o = QueryOptions::default();
            let _ = engine.instant(db, &expr, T0 + 300_000, &o);
            let _ = engine.range(db, &expr, T0, T0 + 600_000, 15_000, &o);
        })
        .expect("spawn")
        .join()
        .expect("no panic");
});
