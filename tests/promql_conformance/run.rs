//! Running one `.test` file: a fresh [`Db`] per file and per `clear`, one
//! `db.append` per `load` block, and every selected eval run as its
//! instant/range query plus the extra variants of FORMAT.md §9.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use tempfile::TempDir;
use tidemark::model::{FloatHistogram, HistogramSample, HistogramValue, Labels, Sample};
use tidemark::promql::ast::Expr;
use tidemark::promql::{Engine, QueryOptions};
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options, SampleKind, SeriesSamples};

use crate::check::{
    check_annotations, check_error, compare_instant, compare_range, compare_range_mode,
};
use crate::pin::{pin_at, pinned_eval_times};
use crate::script::{
    is_start_timestamp_line, parse_eval_block, parse_file, parse_series_line, Command, EvalCmd,
    EvalKind, Expectations, Slot,
};

/// Interval of the range-mode cross-check (§9.1): `[T-1m, T+1m]` step 1m.
const RANGE_MODE_STEP_MS: i64 = 60_000;

/// Functions whose presence (as text) disables the range-mode
/// cross-check (§9.1).
const RANGE_MODE_EXCLUDED: [&str; 4] = ["start()", "end()", "range()", "step()"];

/// What happened to one eval.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Pass,
    Fail(String),
    /// Not run: its inventory category is skipped.
    Skip,
    /// Not run: excluded by `PROMQL_ONLY`.
    Filtered,
}

/// The outcomes of one file, keyed by eval line.
#[derive(Debug, Default)]
pub(crate) struct FileReport {
    pub(crate) cases: Vec<(usize, Outcome)>,
    /// The file did not parse: no eval ran.
    pub(crate) error: Option<String>,
    /// Series with histogram samples that were not stored (float runner).
    pub(crate) histogram_series: usize,
}

/// A Db in its own temporary directory; `db` drops before `_dir`.
pub(crate) struct Storage {
    pub(crate) db: Db,
    _dir: TempDir,
}

impl Storage {
    pub(crate) fn open() -> Storage {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let opts = Options {
            wal: WalOptions {
                fsync: FsyncPolicy::Never,
                ..Default::default()
            },
            stripes: 64,
            // Upstream's test storage (util/teststorage/storage.go @ v3.14.0)
            // uses 24 h blocks because "tests just load data for a series
            // sequentially", so a later `load` may go back up to 12 h behind
            // the head's max time (at_modifier.test needs it: `metric_ms`
            // from t=0 after `metric` up to 10 000 s).
            block_range_ms: 24 * 60 * 60 * 1000,
            ..Default::default()
        };
        let db = Db::open(dir.path(), opts).expect("open a Db in a fresh temporary directory");
        Storage { db, _dir: dir }
    }
}

/// Appends one `load` block as one batch (§5); later lines for the same
/// label set replace earlier ones. With `nhcb` (`load_with_nhcb`, §5.1)
/// the custom-bucket histograms derived from the block's classic
/// histogram families are appended too. Series with histogram samples are
/// added to `histogram_series`.
pub(crate) fn load(
    db: &Db,
    interval_ms: i64,
    lines: &[(usize, String)],
    nhcb: bool,
    histogram_series: &mut HashSet<Labels>,
) -> Result<(), String> {
    let mut order: Vec<Labels> = Vec::new();
    let mut by_labels: HashMap<Labels, (Vec<Sample>, Vec<HistogramSample>)> = HashMap::new();
    for (line_no, text) in lines {
        if is_start_timestamp_line(text) {
            // Start timestamps (§4.4) only feed experimental behaviour.
            continue;
        }
        let (labels, slots) =
            parse_series_line(text).map_err(|e| format!("line {line_no}: {e}"))?;
        let mut samples = Vec::with_capacity(slots.len());
        let mut histograms = Vec::new();
        for (i, slot) in slots.into_iter().enumerate() {
            let t = i as i64 * interval_ms;
            match slot {
                Slot::Float(v) => samples.push(Sample::new(t, v)),
                Slot::Histogram { h, .. } => {
                    histogram_series.insert(labels.clone());
                    histograms.push(HistogramSample {
                        t,
                        h: HistogramValue::Float(*h),
                    });
                }
                Slot::Gap => {}
            }
        }
        if by_labels
            .insert(labels.clone(), (samples, histograms))
            .is_none()
        {
            order.push(labels);
        }
    }
    let mut batch: Vec<SeriesSamples> = order
        .into_iter()
        .filter_map(|labels| {
            let (samples, histograms) = by_labels.remove(&labels)?;
            (!samples.is_empty() || !histograms.is_empty()).then_some(SeriesSamples {
                created: Vec::new(),
                labels,
                samples,
                histograms,
            })
        })
        .collect();
    if nhcb {
        let derived = nhcb_series(&batch)?;
        for s in &derived {
            histogram_series.insert(s.labels.clone());
        }
        batch.extend(derived);
    }
    // The head applies a series' floats before its histograms, so a series
    // that switches between the two kinds is appended in rounds of
    // same-kind runs, keeping every series in time order.
    for round in append_rounds(batch) {
        append_checked(db, &round)?;
    }
    Ok(())
}

/// Splits a batch into batches in which no series mixes floats and
/// histograms: round k holds the k-th same-kind run of each series.
fn append_rounds(batch: Vec<SeriesSamples>) -> Vec<Vec<SeriesSamples>> {
    let mut rounds: Vec<Vec<SeriesSamples>> = Vec::new();
    for s in batch {
        let (mut f, mut h) = (
            s.samples.into_iter().peekable(),
            s.histograms.into_iter().peekable(),
        );
        let mut k = 0;
        loop {
            let float_first = match (f.peek(), h.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(a), Some(b)) => a.t < b.t,
            };
            let mut run = SeriesSamples {
                created: Vec::new(),
                labels: s.labels.clone(),
                samples: Vec::new(),
                histograms: Vec::new(),
            };
            if float_first {
                let limit = h.peek().map_or(i64::MAX, |x| x.t);
                while let Some(x) = f.next_if(|x| x.t < limit) {
                    run.samples.push(x);
                }
            } else {
                let limit = f.peek().map_or(i64::MAX, |x| x.t);
                while let Some(x) = h.next_if(|x| x.t < limit) {
                    run.histograms.push(x);
                }
            }
            if rounds.len() <= k {
                rounds.push(Vec::new());
            }
            rounds[k].push(run);
            k += 1;
        }
    }
    rounds
}

/// Appends one batch; any rejected sample fails the load.
fn append_checked(db: &Db, batch: &[SeriesSamples]) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let outcome = db.append(batch).map_err(|e| format!("append: {e}"))?;
    if let Some(r) = outcome.rejected.first() {
        let s = &batch[r.series];
        let t = match r.kind {
            SampleKind::Float => s.samples.get(r.sample).map(|x| x.t),
            SampleKind::Histogram => s.histograms.get(r.sample).map(|x| x.t),
        };
        return Err(format!(
            "storage rejected {} samples, first {} at t={t:?}: {}",
            outcome.rejected.len(),
            s.labels,
            r.error
        ));
    }
    Ok(())
}

/// One timestamp of a classic histogram family being collected (upstream
/// `convertnhcb.TempHistogram`): cumulative `(le, count)` ascending.
#[derive(Default)]
struct TempHistogram {
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
    err: Option<String>,
}

impl TempHistogram {
    fn set_bucket(&mut self, le: f64, count: f64) {
        if self.err.is_some() {
            return;
        }
        if count < 0.0 {
            self.err = Some(format!("negative bucket count: le={le}, count={count}"));
            return;
        }
        let k = self.buckets.partition_point(|b| b.0 < le);
        if self.buckets.get(k).is_some_and(|b| b.0 == le) {
            return;
        }
        if k > 0 && count < self.buckets[k - 1].1 {
            self.err = Some(format!("count is not cumulative: {count}"));
            return;
        }
        if self.buckets.get(k).is_some_and(|b| count > b.1) {
            self.err = Some(format!("count is not cumulative: {count}"));
            return;
        }
        self.buckets.insert(k, (le, count));
    }

    /// The custom-buckets histogram (upstream `Convert`).
    fn convert(mut self) -> Result<FloatHistogram, String> {
        if let Some(e) = self.err {
            return Err(e);
        }
        let count = match self.count {
            Some(c) => c,
            None => self.buckets.last().map_or(0.0, |b| b.1),
        };
        if self.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
            self.buckets.push((f64::INFINITY, count));
        }
        let last = self.buckets.last().map_or(0.0, |b| b.1);
        if count != last {
            return Err(format!("count={count} != le=+Inf count={last}"));
        }
        let mut h = FloatHistogram {
            schema: tidemark::model::histogram::CUSTOM_BUCKETS_SCHEMA,
            count,
            sum: self.sum,
            ..Default::default()
        };
        let mut prev = 0.0;
        let mut pairs = Vec::with_capacity(self.buckets.len());
        for (i, (le, c)) in self.buckets.iter().enumerate() {
            pairs.push((i as i32, c - prev));
            prev = *c;
            if le.is_finite() || *le == f64::NEG_INFINITY {
                h.custom_values.push(*le);
            }
        }
        h.set_positive(&pairs);
        h.compact();
        Ok(h)
    }
}

/// The custom-bucket histogram series `load_with_nhcb` derives from the
/// `X_bucket` (with a parseable, non-NaN `le`), `X_count` and `X_sum`
/// series of a block: labels of the family with `__name__="X"` and no
/// `le`, one histogram per timestamp any of them has a sample at.
fn nhcb_series(batch: &[SeriesSamples]) -> Result<Vec<SeriesSamples>, String> {
    let mut families: Vec<(Labels, BTreeMap<i64, TempHistogram>)> = Vec::new();
    for s in batch {
        let Some(name) = s.labels.metric_name() else {
            continue;
        };
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            let Some(le) = s
                .labels
                .get("le")
                .and_then(|v| v.trim().parse::<f64>().ok())
            else {
                continue;
            };
            if le.is_nan() {
                continue;
            }
            (b, Some(le))
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, None)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, None)
        } else {
            continue;
        };
        let mut lb = tidemark::model::LabelsBuilder::new();
        for l in s.labels.iter() {
            match &*l.name {
                "le" | "__name__" => {}
                _ => {
                    lb.push_shared(l.name.clone(), l.value.clone());
                }
            }
        }
        lb.push("__name__", base);
        let key = lb.build().map_err(|e| format!("nhcb labels: {e}"))?;
        let k = match families.iter().position(|f| f.0 == key) {
            Some(k) => k,
            None => {
                families.push((key, BTreeMap::new()));
                families.len() - 1
            }
        };
        let by_t = &mut families[k].1;
        for p in &s.samples {
            let h = by_t.entry(p.t).or_default();
            match kind {
                Some(le) => h.set_bucket(le, p.v),
                None if name.ends_with("_sum") => h.sum = p.v,
                None => {
                    if p.v < 0.0 {
                        h.err = Some(format!("negative count: {}", p.v));
                    }
                    h.count = Some(p.v);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (labels, by_t) in families {
        let mut histograms = Vec::with_capacity(by_t.len());
        for (t, temp) in by_t {
            let h = temp
                .convert()
                .map_err(|e| format!("load_with_nhcb {labels} at t={t}: {e}"))?;
            histograms.push(HistogramSample {
                t,
                h: HistogramValue::Float(h),
            });
        }
        out.push(SeriesSamples {
            created: Vec::new(),
            labels,
            samples: Vec::new(),
            histograms,
        });
    }
    Ok(out)
}

/// One instant query at `t` with its checks, then its range-mode
/// cross-check (§9.1) when `range_mode`.
fn run_instant(
    engine: &Engine,
    db: &Db,
    expr: &Expr,
    t: i64,
    exp: &Expectations,
    range_mode: bool,
) -> Result<(), String> {
    let q = QueryOptions::default();
    let res = match engine.instant(db, expr, t, &q) {
        Ok(r) => r,
        Err(e) => return check_error(exp, &e, true),
    };
    if exp.fail.is_some() {
        return Err(format!(
            "expected the query to fail, it returned a {}",
            res.value.type_name()
        ));
    }
    check_annotations(exp, &res)?;
    compare_instant(exp, &res.value)?;
    if !range_mode {
        return Ok(());
    }
    let range = engine
        .range(
            db,
            expr,
            t - RANGE_MODE_STEP_MS,
            t + RANGE_MODE_STEP_MS,
            RANGE_MODE_STEP_MS,
            &q,
        )
        .map_err(|e| format!("range mode: query failed: {e}"))?;
    compare_range_mode(exp, &res.value, &range.value, t).map_err(|e| format!("range mode: {e}"))
}

/// Runs one eval with all its variants.
pub(crate) fn run_case(engine: &Engine, db: &Db, cmd: &EvalCmd) -> Result<(), String> {
    let exp = parse_eval_block(cmd).map_err(|e| format!("bad eval block: {e}"))?;
    let expr = match Engine::parse(&cmd.expr) {
        Ok(e) => e,
        Err(e) => return check_error(&exp, &e, false),
    };
    match cmd.kind {
        EvalKind::Range { start, end, step } => {
            match engine.range(db, &expr, start, end, step, &QueryOptions::default()) {
                Err(e) => check_error(&exp, &e, true),
                Ok(r) if exp.fail.is_some() => Err(format!(
                    "expected the query to fail, it returned a {}",
                    r.value.type_name()
                )),
                Ok(r) => {
                    check_annotations(&exp, &r)?;
                    compare_range(&exp, &r.value, (start, end, step))
                }
            }
        }
        EvalKind::Instant { t } => {
            let range_mode = exp.range_vector.is_none()
                && exp.string.is_none()
                && !RANGE_MODE_EXCLUDED.iter().any(|f| cmd.expr.contains(f));
            run_instant(engine, db, &expr, t, &exp, range_mode)?;
            if let Some(pinned) = pin_at(&expr, t) {
                for at in pinned_eval_times(t) {
                    run_instant(engine, db, &pinned, at, &exp, range_mode)
                        .map_err(|e| format!("@-pinned to {t}ms, evaluated at {at}ms: {e}"))?;
                }
            }
            Ok(())
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

/// Runs the file `text`. `selected(line)` says whether an eval runs
/// (`Some(true)`), is skipped by category (`Some(false)`) or filtered out
/// (`None`).
pub(crate) fn run_file(
    engine: &Engine,
    text: &str,
    selected: &dyn Fn(usize) -> Option<bool>,
) -> FileReport {
    let mut report = FileReport::default();
    let cmds = match parse_file(text) {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    let last_runnable = cmds
        .iter()
        .rposition(|c| matches!(c, Command::Eval(e) if selected(e.line) == Some(true)));
    let mut storage: Option<Storage> = None;
    let mut aborted: Option<String> = None;
    let mut histogram_series = HashSet::new();
    for (i, cmd) in cmds.iter().enumerate() {
        let needed = last_runnable.is_some_and(|last| i <= last);
        match cmd {
            Command::Clear => storage = None,
            Command::Load { .. } | Command::Eval(_) if !needed => {
                if let Command::Eval(e) = cmd {
                    let o = match selected(e.line) {
                        Some(_) => Outcome::Skip,
                        None => Outcome::Filtered,
                    };
                    report.cases.push((e.line, o));
                }
            }
            Command::Load {
                line,
                interval_ms,
                series,
                nhcb,
            } => {
                if aborted.is_some() {
                    continue;
                }
                let db = &storage.get_or_insert_with(Storage::open).db;
                if let Err(e) = load(db, *interval_ms, series, *nhcb, &mut histogram_series) {
                    aborted = Some(format!("file aborted: load at line {line} failed: {e}"));
                }
            }
            Command::Eval(e) => {
                let outcome = match selected(e.line) {
                    None => Outcome::Filtered,
                    Some(false) => Outcome::Skip,
                    Some(true) => match &aborted {
                        Some(why) => Outcome::Fail(why.clone()),
                        None => {
                            let db = &storage.get_or_insert_with(Storage::open).db;
                            match catch_unwind(AssertUnwindSafe(|| run_case(engine, db, e))) {
                                Ok(Ok(())) => Outcome::Pass,
                                Ok(Err(why)) => Outcome::Fail(why),
                                Err(p) => Outcome::Fail(format!("panicked: {}", panic_text(&*p))),
                            }
                        }
                    },
                };
                report.cases.push((e.line, outcome));
            }
        }
    }
    report.histogram_series = histogram_series.len();
    report
}
