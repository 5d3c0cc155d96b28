//! [`Engine`]: the entry points of PromQL evaluation, its options and
//! limits. Parses with `promql-parser` and hands the AST to the evaluator.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::{self, Expr};

use crate::promql::error::QueryError;
use crate::promql::eval::Evaluator;
use crate::promql::value::QueryResult;
use crate::storage::Db;

/// Engine-wide settings, with Prometheus's defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (default 5 m).
    pub lookback_delta_ms: i64,
    /// Most samples a query may hold in memory at once (default 50 000 000).
    pub max_samples: usize,
    /// Query time-out (default 2 m).
    pub timeout: Duration,
    /// Most points per series in a range query (default 11 000).
    pub max_points_per_series: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            max_points_per_series: 11_000,
        }
    }
}

/// Per-query controls.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Set to `true` to cancel (e.g. the HTTP client went away).
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The PromQL engine. Cheap to share; holds no per-query state.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with `opts`.
    pub fn new(opts: EngineOptions) -> Self {
        Self { opts }
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Parses a query.
    ///
    /// # Errors
    /// [`QueryError::Parse`] with the parser's message.
    pub fn parse(query: &str) -> Result<Expr, QueryError> {
        parser::parse(query).map_err(QueryError::Parse)
    }

    /// Evaluates `expr` at `t` (ms).
    ///
    /// # Errors
    /// Any [`QueryError`].
    pub fn instant(
        &self,
        db: &Db,
        expr: &Expr,
        t: i64,
        q: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let deadline = Instant::now() + self.opts.timeout;
        Evaluator::new(&self.opts, db, t, t, 0, deadline, q.cancel.clone()).run_instant(expr)
    }

    /// Evaluates `expr` at every step from `start` to `end` (ms, inclusive);
    /// the result is always a matrix sorted by labels.
    ///
    /// # Errors
    /// Any [`QueryError`]; [`QueryError::TooManyPoints`] past the
    /// per-series point limit, [`QueryError::Exec`] for a step of zero.
    pub fn range(
        &self,
        db: &Db,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        q: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        if step <= 0 {
            return Err(QueryError::Parse("zero or negative query resolution step widths are not accepted. Try a positive integer".into()));
        }
        if end < start {
            return Err(QueryError::Parse(
                "end timestamp must not be before start time".into(),
            ));
        }
        if (end - start) / step >= self.opts.max_points_per_series as i64 {
            return Err(QueryError::TooManyPoints);
        }
        let deadline = Instant::now() + self.opts.timeout;
        Evaluator::new(&self.opts, db, start, end, step, deadline, q.cancel.clone()).run_range(expr)
    }

    /// Parses and evaluates an instant query.
    ///
    /// # Errors
    /// Any [`QueryError`].
    pub fn instant_query(&self, db: &Db, query: &str, t: i64) -> Result<QueryResult, QueryError> {
        self.instant(db, &Self::parse(query)?, t, &QueryOptions::default())
    }

    /// Parses and evaluates a range query.
    ///
    /// # Errors
    /// Any [`QueryError`].
    pub fn range_query(
        &self,
        db: &Db,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, QueryError> {
        self.range(
            db,
            &Self::parse(query)?,
            start,
            end,
            step,
            &QueryOptions::default(),
        )
    }
}
