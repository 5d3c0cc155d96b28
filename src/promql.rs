//! PromQL: parse with the `promql-parser` crate, evaluate over
//! [`crate::storage::Querier`]. Depends on `model` and `storage`; never on
//! `api` or `ingest`.
//!
//! Semantics follow Prometheus 3: 5 m lookback, left-open range windows,
//! staleness markers ending series, `offset` and `@`, subqueries.
//!
//! Hostile input: `guard` bounds nesting and operators before the
//! recursive parser runs and every `@`/offset/range/step after it;
//! `worker` runs parsing and evaluation on threads with a known stack,
//! catching panics; the evaluator counts the samples it holds against
//! `max_samples` as it allocates them.

mod duration_expr;
mod engine;
mod error;
mod eval;
mod functions;
mod guard;
mod segments;
mod source;
mod trim_ops;
mod value;
mod worker;

pub use engine::{deadline_after, Engine, EngineOptions, QueryOptions};
pub use error::QueryError;
/// Go's `%g` number formatting, shared with the rule templates.
pub(crate) use functions::annotations::{go_format_g, go_format_g_precision};
pub use guard::{
    check_ast, prescan, shallow, MAX_ABS_DURATION_MS, MAX_AST_DEPTH, MAX_NESTING_DEPTH,
    MAX_OPERATORS, QUERY_THREAD_STACK,
};
pub use source::{Budget, MetricMetadata, Selected, SelectedSeries, Source};
pub use value::{HistogramPoint, InstantSample, QueryResult, RangeSeries, Value};
pub use worker::{run_here, run_on_query_thread, WorkerError};

/// Re-export of the parser's AST, for callers that build or rewrite
/// expressions (the conformance runner pins `@` on the AST).
pub use promql_parser::parser as ast;
