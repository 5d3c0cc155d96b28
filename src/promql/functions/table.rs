//! The PromQL function table: one entry per function the engine evaluates,
//! saying how it is evaluated (an element-wise kernel, a date part, a
//! range kernel, or code of its own), which argument is the range vector
//! and which a per-step scalar parameter, whether the result keeps
//! `__name__`, and which annotations it raises. The only place a function
//! is told apart by name: `eval/call.rs` dispatches on the entry. Native
//! histogram functions are to be added as entries here.

use crate::model::{FloatHistogram, Sample};
use crate::promql::functions::hist_range::HistMode;
use crate::promql::functions::{math, native_histogram, over_time, rate, time};

/// A range kernel: (window samples, window start, window end, the step's
/// scalar parameter (NaN when the function has none), step time) → value.
pub(crate) type RangeKernel = fn(&[Sample], i64, i64, f64, i64) -> Option<f64>;

/// How a function is evaluated.
#[derive(Clone, Copy)]
pub(crate) enum Eval {
    /// Element-wise on its instant-vector argument.
    Elementwise(fn(f64) -> f64),
    /// A float of each native histogram sample of its instant-vector
    /// argument; float samples are dropped (upstream `simpleHistogramFunc`).
    HistogramElementwise(fn(&FloatHistogram) -> f64),
    /// A date part of each value (a Unix time in seconds); without an
    /// argument, of the evaluation time.
    DatePart(fn(f64) -> f64),
    /// A kernel per series and step over the range-vector argument.
    Range(RangeKernel),
    /// Code of its own in `eval/call.rs`.
    Special(Special),
}

/// Functions with code of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    Time,
    Pi,
    Vector,
    Scalar,
    Timestamp,
    Absent,
    AbsentOverTime,
    LabelReplace,
    LabelJoin,
    Sort,
    SortDesc,
    Round,
    Clamp,
    ClampMin,
    ClampMax,
    HistogramQuantile,
    HistogramFraction,
}

/// What the engine knows about one function.
pub(crate) struct Function {
    /// The PromQL name.
    pub(crate) name: &'static str,
    /// How it is evaluated.
    pub(crate) eval: Eval,
    /// Index of the range-vector argument (range functions).
    pub(crate) range_arg: usize,
    /// Index of a scalar argument evaluated per step and passed to the
    /// kernel (range functions).
    pub(crate) param_arg: Option<usize>,
    /// Whether the result keeps the input's metric name.
    pub(crate) keeps_name: bool,
    /// Info annotation when the metric name does not look like a counter.
    pub(crate) counter_info: bool,
    /// Warning when the parameter is outside `[0, 1]`.
    pub(crate) quantile_param: bool,
    /// How a range function treats histogram samples in its windows.
    pub(crate) hist: HistMode,
}

const fn entry(name: &'static str, eval: Eval) -> Function {
    Function {
        name,
        eval,
        range_arg: 0,
        param_arg: None,
        keeps_name: false,
        counter_info: false,
        quantile_param: false,
        hist: HistMode::FloatsOnly,
    }
}

/// A range function with its histogram behaviour.
const fn hist(mode: HistMode, f: Function) -> Function {
    Function { hist: mode, ..f }
}

const fn elementwise(name: &'static str, f: fn(f64) -> f64) -> Function {
    entry(name, Eval::Elementwise(f))
}

const fn histogram_fn(name: &'static str, f: fn(&FloatHistogram) -> f64) -> Function {
    entry(name, Eval::HistogramElementwise(f))
}

const fn date(name: &'static str, f: fn(f64) -> f64) -> Function {
    entry(name, Eval::DatePart(f))
}

const fn range(name: &'static str, k: RangeKernel) -> Function {
    entry(name, Eval::Range(k))
}

const fn special(name: &'static str, s: Special) -> Function {
    entry(name, Eval::Special(s))
}

/// Every function, in Prometheus's documentation order.
pub(crate) static FUNCTIONS: &[Function] = &[
    elementwise("abs", math::abs),
    special("absent", Special::Absent),
    special("absent_over_time", Special::AbsentOverTime),
    elementwise("acos", math::acos),
    elementwise("acosh", math::acosh),
    elementwise("asin", math::asin),
    elementwise("asinh", math::asinh),
    elementwise("atan", math::atan),
    elementwise("atanh", math::atanh),
    hist(
        HistMode::Avg,
        range("avg_over_time", |s, _, _, _, _| over_time::avg_over_time(s)),
    ),
    elementwise("ceil", math::ceil),
    hist(
        HistMode::Changes,
        range("changes", |s, _, _, _, _| rate::changes(s)),
    ),
    special("clamp", Special::Clamp),
    special("clamp_max", Special::ClampMax),
    special("clamp_min", Special::ClampMin),
    elementwise("cos", math::cos),
    elementwise("cosh", math::cosh),
    hist(
        HistMode::Count,
        range("count_over_time", |s, _, _, _, _| {
            over_time::count_over_time(s)
        }),
    ),
    date("day_of_month", time::day_of_month),
    date("day_of_week", time::day_of_week),
    date("day_of_year", time::day_of_year),
    date("days_in_month", time::days_in_month_of),
    elementwise("deg", math::deg),
    hist(
        HistMode::Rate {
            counter: false,
            per_second: false,
        },
        range("delta", |s, start, end, _, _| {
            rate::extrapolated_rate(s, start, end, false, false)
        }),
    ),
    range("deriv", |s, _, _, _, _| rate::deriv(s)),
    elementwise("exp", math::exp),
    hist(
        HistMode::First,
        Function {
            keeps_name: true,
            ..range("first_over_time", |s, _, _, _, _| {
                over_time::first_over_time(s)
            })
        },
    ),
    elementwise("floor", math::floor),
    histogram_fn("histogram_avg", native_histogram::avg),
    histogram_fn("histogram_count", native_histogram::count),
    special("histogram_fraction", Special::HistogramFraction),
    special("histogram_quantile", Special::HistogramQuantile),
    histogram_fn("histogram_stddev", native_histogram::stddev),
    histogram_fn("histogram_stdvar", native_histogram::stdvar),
    histogram_fn("histogram_sum", native_histogram::sum),
    date("hour", time::hour),
    hist(
        HistMode::Instant { per_second: false },
        range("idelta", |s, _, _, _, _| rate::instant_value(s, false)),
    ),
    hist(
        HistMode::Rate {
            counter: true,
            per_second: false,
        },
        Function {
            counter_info: true,
            ..range("increase", |s, start, end, _, _| {
                rate::extrapolated_rate(s, start, end, true, false)
            })
        },
    ),
    hist(
        HistMode::Instant { per_second: true },
        range("irate", |s, _, _, _, _| rate::instant_value(s, true)),
    ),
    Function {
        keeps_name: true,
        ..special("label_join", Special::LabelJoin)
    },
    Function {
        keeps_name: true,
        ..special("label_replace", Special::LabelReplace)
    },
    hist(
        HistMode::Last,
        Function {
            keeps_name: true,
            ..range("last_over_time", |s, _, _, _, _| {
                over_time::last_over_time(s)
            })
        },
    ),
    elementwise("ln", math::ln),
    elementwise("log10", math::log10),
    elementwise("log2", math::log2),
    range("max_over_time", |s, _, _, _, _| over_time::max_over_time(s)),
    range("min_over_time", |s, _, _, _, _| over_time::min_over_time(s)),
    date("minute", time::minute),
    date("month", time::month),
    special("pi", Special::Pi),
    Function {
        param_arg: Some(1),
        ..range("predict_linear", |s, _, _, d, t| {
            rate::predict_linear(s, t, d)
        })
    },
    hist(
        HistMode::Present,
        range("present_over_time", |s, _, _, _, _| {
            over_time::present_over_time(s)
        }),
    ),
    Function {
        range_arg: 1,
        param_arg: Some(0),
        quantile_param: true,
        ..range("quantile_over_time", |s, _, _, q, _| {
            over_time::quantile_over_time(q, s)
        })
    },
    elementwise("rad", math::rad),
    hist(
        HistMode::Rate {
            counter: true,
            per_second: true,
        },
        Function {
            counter_info: true,
            ..range("rate", |s, start, end, _, _| {
                rate::extrapolated_rate(s, start, end, true, true)
            })
        },
    ),
    hist(
        HistMode::Resets,
        range("resets", |s, _, _, _, _| rate::resets(s)),
    ),
    special("round", Special::Round),
    special("scalar", Special::Scalar),
    elementwise("sgn", math::sgn),
    elementwise("sin", math::sin),
    elementwise("sinh", math::sinh),
    Function {
        keeps_name: true,
        ..special("sort", Special::Sort)
    },
    Function {
        keeps_name: true,
        ..special("sort_desc", Special::SortDesc)
    },
    elementwise("sqrt", math::sqrt),
    range("stddev_over_time", |s, _, _, _, _| {
        over_time::stddev_over_time(s)
    }),
    range("stdvar_over_time", |s, _, _, _, _| {
        over_time::stdvar_over_time(s)
    }),
    hist(
        HistMode::Sum,
        range("sum_over_time", |s, _, _, _, _| over_time::sum_over_time(s)),
    ),
    elementwise("tan", math::tan),
    elementwise("tanh", math::tanh),
    special("time", Special::Time),
    special("timestamp", Special::Timestamp),
    special("vector", Special::Vector),
    date("year", time::year),
];

/// The entry of the function named `name`.
pub(crate) fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted() {
        for w in FUNCTIONS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }

    /// Every stable float function of Prometheus 3 has an entry
    /// (native-histogram and experimental ones are added with their
    /// features).
    #[test]
    fn every_stable_float_function_has_an_entry() {
        let stable = [
            "abs",
            "absent",
            "absent_over_time",
            "acos",
            "acosh",
            "asin",
            "asinh",
            "atan",
            "atanh",
            "avg_over_time",
            "ceil",
            "changes",
            "clamp",
            "clamp_max",
            "clamp_min",
            "cos",
            "cosh",
            "count_over_time",
            "day_of_month",
            "day_of_week",
            "day_of_year",
            "days_in_month",
            "deg",
            "delta",
            "deriv",
            "exp",
            "floor",
            "histogram_avg",
            "histogram_count",
            "histogram_fraction",
            "histogram_quantile",
            "histogram_stddev",
            "histogram_stdvar",
            "histogram_sum",
            "hour",
            "idelta",
            "increase",
            "irate",
            "label_join",
            "label_replace",
            "last_over_time",
            "ln",
            "log10",
            "log2",
            "max_over_time",
            "min_over_time",
            "minute",
            "month",
            "pi",
            "predict_linear",
            "present_over_time",
            "quantile_over_time",
            "rad",
            "rate",
            "resets",
            "round",
            "scalar",
            "sgn",
            "sin",
            "sinh",
            "sort",
            "sort_desc",
            "sqrt",
            "stddev_over_time",
            "stdvar_over_time",
            "sum_over_time",
            "tan",
            "tanh",
            "time",
            "timestamp",
            "vector",
            "year",
            // Experimental upstream, evaluated here.
            "first_over_time",
        ];
        for name in stable {
            assert!(lookup(name).is_some(), "{name} has no entry");
        }
        assert_eq!(
            FUNCTIONS.len(),
            stable.len(),
            "an entry without a test name"
        );
    }

    #[test]
    fn range_functions_name_their_arguments() {
        let q = lookup("quantile_over_time").unwrap();
        assert_eq!((q.range_arg, q.param_arg), (1, Some(0)));
        let p = lookup("predict_linear").unwrap();
        assert_eq!((p.range_arg, p.param_arg), (0, Some(1)));
        assert!(lookup("rate").unwrap().counter_info);
        assert!(lookup("last_over_time").unwrap().keeps_name);
        assert!(!lookup("max_over_time").unwrap().keeps_name);
    }
}
