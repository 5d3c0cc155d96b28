//! The evaluator (placeholder while it is written).
#![allow(missing_docs, dead_code)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use promql_parser::parser::Expr;

use crate::promql::engine::EngineOptions;
use crate::promql::error::QueryError;
use crate::promql::value::QueryResult;
use crate::storage::Db;

pub(crate) struct Evaluator<'a> {
    opts: &'a EngineOptions,
    db: &'a Db,
    start: i64,
    end: i64,
    step: i64,
    deadline: Instant,
    cancel: Option<Arc<AtomicBool>>,
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        opts: &'a EngineOptions,
        db: &'a Db,
        start: i64,
        end: i64,
        step: i64,
        deadline: Instant,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Self {
        Self {
            opts,
            db,
            start,
            end,
            step,
            deadline,
            cancel,
        }
    }

    pub(crate) fn run_instant(&self, _expr: &Expr) -> Result<QueryResult, QueryError> {
        Err(QueryError::Exec("not implemented".into()))
    }

    pub(crate) fn run_range(&self, _expr: &Expr) -> Result<QueryResult, QueryError> {
        Err(QueryError::Exec("not implemented".into()))
    }
}
