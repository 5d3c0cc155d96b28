//! Pure numeric kernels of PromQL functions and aggregations.
//!
//! Everything here works on plain values — `&[Sample]` windows, `f64`s,
//! classic buckets — and returns plain values or annotation strings. No
//! storage, no AST, no labels: the evaluator selects the window, picks the
//! kernel by function name and attaches results and annotations.
//!
//! Semantics follow Prometheus v3.14 (`promql/functions.go`,
//! `promql/quantile.go`, the float paths of `aggregation()` in
//! `promql/engine.go`, `util/kahansum`, `util/annotations`); each ported
//! function cites its upstream source.
//!
//! One file per function family:
//! [`rate`] (rate/increase/delta, irate/idelta, deriv, predict_linear,
//! resets, changes), [`over_time`] (`*_over_time`), [`stats`] (quantile,
//! Kahan summation, aggregation accumulators), [`math`] (one-argument float
//! functions, round, clamp), [`time`] (date functions), [`histogram`]
//! (classic-bucket histogram_quantile / histogram_fraction) and
//! [`annotations`] (the exact warning/info texts).

pub(crate) mod annotations;
pub(crate) mod hist_range;
pub(crate) mod histogram;
pub(crate) mod math;
pub(crate) mod native_histogram;
pub(crate) mod over_time;
pub(crate) mod rate;
pub(crate) mod stats;
pub(crate) mod table;
pub(crate) mod time;
