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

/// Rewrites `\xHH` escapes inside quoted string literals to the characters
/// their bytes spell. In Go (and so in Prometheus) `\xHH` is a *byte*:
/// `"\xc3\xa9"` is `é`, and `"\xff"` is invalid UTF-8; the `promql-parser`
/// crate instead reads each `\xHH` as the code point U+00HH. Runs of byte
/// escapes that form valid UTF-8 become `\UXXXXXXXX` escapes the crate reads
/// correctly; invalid sequences become U+FFFD, which the evaluator refuses
/// as a label name (Prometheus fails those queries at evaluation).
///
/// # Errors
/// None today; kept fallible for future lexing checks.
pub(crate) fn normalize_byte_escapes(query: &str) -> Result<std::borrow::Cow<'_, str>, QueryError> {
    if !query.contains("\\x") {
        return Ok(std::borrow::Cow::Borrowed(query));
    }
    let b = query.as_bytes();
    let mut out = String::with_capacity(query.len());
    let mut quote: Option<u8> = None;
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    while i < b.len() {
        let c = b[i];
        match quote {
            None => {
                if c == b'"' || c == b'\'' || c == b'`' {
                    quote = Some(c);
                } else if c == b'#' {
                    // A comment runs to the end of the line.
                    let end = query[i..].find('\n').map_or(b.len(), |n| i + n);
                    out.push_str(&query[i..end]);
                    i = end;
                    continue;
                }
            }
            Some(q) if c == q => quote = None,
            Some(q) if q != b'`' && c == b'\\' && i + 1 < b.len() => {
                if b[i + 1] == b'x' {
                    let mut bytes = Vec::new();
                    let mut j = i;
                    while j + 3 < b.len() && b[j] == b'\\' && b[j + 1] == b'x' {
                        match (hex(b[j + 2]), hex(b[j + 3])) {
                            (Some(h), Some(l)) => bytes.push(h * 16 + l),
                            _ => break,
                        }
                        j += 4;
                    }
                    if !bytes.is_empty() {
                        // Invalid UTF-8 becomes U+FFFD, which label-name
                        // checks refuse, so the query fails where
                        // Prometheus's does (at evaluation).
                        let s = String::from_utf8_lossy(&bytes);
                        for ch in s.chars() {
                            out.push_str(&format!("\\U{:08X}", ch as u32));
                        }
                        i = j;
                        continue;
                    }
                }
                out.push_str(&query[i..i + 2]);
                i += 2;
                continue;
            }
            Some(_) => {}
        }
        let ch = query[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(std::borrow::Cow::Owned(out))
}

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
    /// A shorter time-out for this query (the API's `timeout` parameter);
    /// capped at [`EngineOptions::timeout`].
    pub timeout: Option<Duration>,
    /// This query's lookback delta in ms (the API's `lookback_delta`
    /// parameter), instead of [`EngineOptions::lookback_delta_ms`].
    pub lookback_delta_ms: Option<i64>,
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

    /// The engine options and deadline for one query.
    fn per_query(&self, q: &QueryOptions) -> (std::borrow::Cow<'_, EngineOptions>, Instant) {
        let timeout = q
            .timeout
            .map_or(self.opts.timeout, |t| t.min(self.opts.timeout));
        let opts = match q.lookback_delta_ms {
            Some(l) if l > 0 && l != self.opts.lookback_delta_ms => {
                std::borrow::Cow::Owned(EngineOptions {
                    lookback_delta_ms: l,
                    ..self.opts.clone()
                })
            }
            _ => std::borrow::Cow::Borrowed(&self.opts),
        };
        (opts, Instant::now() + timeout)
    }

    /// Parses a query.
    ///
    /// # Errors
    /// [`QueryError::Parse`] with the parser's message.
    pub fn parse(query: &str) -> Result<Expr, QueryError> {
        let query = normalize_byte_escapes(query)?;
        let query = crate::promql::duration_expr::rewrite(&query)?;
        parser::parse(&query).map_err(QueryError::Parse)
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
        let (opts, deadline) = self.per_query(q);
        Evaluator::new(&opts, db, t, t, 0, deadline, q.cancel.clone()).run_instant(expr)
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
        // Prometheus's API refuses `(end-start)/step > 11000`, i.e. allows
        // 11 001 points (web/api/v1/api.go queryRange).
        if (end - start) / step > self.opts.max_points_per_series as i64 {
            return Err(QueryError::TooManyPoints);
        }
        let (opts, deadline) = self.per_query(q);
        Evaluator::new(&opts, db, start, end, step, deadline, q.cancel.clone()).run_range(expr)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_escapes_follow_go_semantics() {
        let n = |q: &str| normalize_byte_escapes(q).map(|c| c.into_owned());
        assert_eq!(n(r#"f("a")"#).unwrap(), r#"f("a")"#);
        assert_eq!(n(r#"x{a="\xc3\xa9"}"#).unwrap(), r#"x{a="\U000000E9"}"#);
        assert_eq!(n(r#"x{a="\x41b"}"#).unwrap(), r#"x{a="\U00000041b"}"#);
        assert_eq!(n(r#"f("\xff")"#).unwrap(), r#"f("\U0000FFFD")"#);
        // Raw strings, escaped backslashes and comments are left alone.
        assert_eq!(n(r#"x{a=`\xff`}"#).unwrap(), r#"x{a=`\xff`}"#);
        assert_eq!(n(r#"x{a="\\xff"}"#).unwrap(), r#"x{a="\\xff"}"#);
        assert_eq!(n("x # \\xff\n").unwrap(), "x # \\xff\n");
        let e = Engine::parse(r#"x{a="\xc3\xa9"}"#).unwrap();
        assert!(e.to_string().contains('é'), "{e}");
    }
}
