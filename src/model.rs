//! The shared vocabulary of every layer: [`Labels`], [`Sample`], [`Matcher`],
//! [`Histogram`] and [`FloatHistogram`].
//!
//! Depends on std and `regex` only; must never import `storage`, `ingest`,
//! `promql` or `api`.

pub mod calendar;
mod duration;
pub mod histogram;
pub mod histogram_ops;
mod labels;
mod matcher;
mod sample;

pub use duration::{format_duration_ms, parse_duration_ms, unit_ms, DURATION_UNITS};
pub use histogram::{
    CounterResetHint, FloatHistogram, Histogram, HistogramError, HistogramSample, HistogramValue,
    Span,
};
pub use labels::{Interner, Label, LabelError, Labels, LabelsBuilder, METRIC_NAME};
pub(crate) use matcher::regex_bytes;
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use sample::{format_float_f, is_stale_nan, Sample, STALE_NAN, STALE_NAN_BITS};
