//! Running one `.test` file: a fresh [`Db`] per file and per `clear`, one
//! `db.append` per `load` block, and every selected eval run as its
//! instant/range query plus the extra variants of FORMAT.md §9.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use tempfile::TempDir;
use tidemark::model::{Labels, Sample};
use tidemark::promql::ast::Expr;
use tidemark::promql::{Engine, QueryOptions};
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options, SeriesSamples};

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
/// label set replace earlier ones. Histogram slots are not stored; the
/// series that had them are added to `histogram_series`.
pub(crate) fn load(
    db: &Db,
    interval_ms: i64,
    lines: &[(usize, String)],
    histogram_series: &mut HashSet<Labels>,
) -> Result<(), String> {
    let mut order: Vec<Labels> = Vec::new();
    let mut by_labels: HashMap<Labels, Vec<Sample>> = HashMap::new();
    for (line_no, text) in lines {
        if is_start_timestamp_line(text) {
            // Start timestamps (§4.4) only feed experimental behaviour.
            continue;
        }
        let (labels, slots) =
            parse_series_line(text).map_err(|e| format!("line {line_no}: {e}"))?;
        let mut samples = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            match slot {
                Slot::Float(v) => samples.push(Sample::new(i as i64 * interval_ms, *v)),
                Slot::Histogram { .. } => {
                    histogram_series.insert(labels.clone());
                }
                Slot::Gap => {}
            }
        }
        if by_labels.insert(labels.clone(), samples).is_none() {
            order.push(labels);
        }
    }
    let batch: Vec<SeriesSamples> = order
        .into_iter()
        .filter_map(|labels| {
            let samples = by_labels.remove(&labels)?;
            (!samples.is_empty()).then_some(SeriesSamples {
                labels,
                samples,
                histograms: Vec::new(),
            })
        })
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    let outcome = db.append(&batch).map_err(|e| format!("append: {e}"))?;
    if let Some(r) = outcome.rejected.first() {
        let s = &batch[r.series];
        return Err(format!(
            "storage rejected {} samples, first {} at t={}: {}",
            outcome.rejected.len(),
            s.labels,
            s.samples[r.sample].t,
            r.error
        ));
    }
    Ok(())
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
            } => {
                if aborted.is_some() {
                    continue;
                }
                let db = &storage.get_or_insert_with(Storage::open).db;
                if let Err(e) = load(db, *interval_ms, series, &mut histogram_series) {
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
