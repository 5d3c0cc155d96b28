//! Query errors, with Prometheus's error kinds (mapped to HTTP in `api/`).

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The expression does not parse, or has the wrong type (`bad_data`).
    #[error("{0}")]
    Parse(String),
    /// Evaluation failed, e.g. duplicate series, many-to-many matching
    /// (`execution`).
    #[error("{0}")]
    Exec(String),
    /// More samples than `max_samples` were loaded (`execution`).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran past its deadline (`timeout`).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The client went away (`canceled`).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    /// A source could not read what the query needs, e.g. an endpoint of
    /// the query role did not answer (`unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// A range query would return too many points per series (`bad_data`).
    #[error("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")]
    TooManyPoints,
}
