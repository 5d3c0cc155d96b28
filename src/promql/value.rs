//! Query results: scalars, strings, instant vectors and range vectors
//! (matrices), plus the warnings and infos Prometheus attaches.

use crate::model::{FloatHistogram, Labels, Sample};

/// One element of an instant vector: a float, or a native histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    /// The series' labels.
    pub labels: Labels,
    /// Evaluation timestamp, ms.
    pub t: i64,
    /// The float value (unused when `h` is set).
    pub v: f64,
    /// The histogram value, for a histogram sample (Prometheus `Sample.H`).
    pub h: Option<Box<FloatHistogram>>,
}

/// One histogram point of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    /// Timestamp, ms.
    pub t: i64,
    /// The histogram.
    pub h: FloatHistogram,
}

/// One series of a range vector / matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Float points in time order.
    pub samples: Vec<Sample>,
    /// Histogram points in time order (Prometheus `Series.Histograms`).
    pub histograms: Vec<HistogramPoint>,
}

/// The value of an evaluated expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number at the evaluation time.
    Scalar {
        /// Timestamp, ms.
        t: i64,
        /// The number.
        v: f64,
    },
    /// A string at the evaluation time.
    String {
        /// Timestamp, ms.
        t: i64,
        /// The string.
        v: String,
    },
    /// An instant vector.
    Vector(Vec<InstantSample>),
    /// A range vector (range queries always return one, sorted by labels).
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// Prometheus's result type name: `scalar`, `string`, `vector`, `matrix`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A query's value with its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The result.
    pub value: Value,
    /// Warnings (Prometheus `warnings`), e.g. a bad `le` label.
    pub warnings: Vec<String>,
    /// Infos (Prometheus `infos`), e.g. non-monotonic buckets.
    pub infos: Vec<String>,
}
