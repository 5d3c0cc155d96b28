//! [`Engine`]: the entry points of PromQL evaluation, its options and
//! limits. Parses with `promql-parser` and hands the AST to the evaluator;
//! parsed queries are kept in a bounded cache by query text
//! ([`PARSED_CACHE_BYTES`]), since dashboards send the same queries on
//! every refresh and the parser compiles each regex matcher it meets.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use promql_parser::parser::Expr;

use crate::lru::ByteLru;

use crate::promql::error::QueryError;
use crate::promql::eval::Evaluator;
use crate::promql::guard::{self, MAX_ABS_DURATION_MS};
use crate::promql::segments::{segments, Segment};
use crate::promql::source::Source;
use crate::promql::value::QueryResult;

/// Bytes of parsed queries the cache holds at most, as estimated: the
/// tree at [`PARSED_BYTES_PER_QUERY_BYTE`] per byte of query text, plus
/// each regex the parser compiled at what the regex engine says it holds.
pub(crate) const PARSED_CACHE_BYTES: u64 = 32 << 20;

/// The estimate of a parsed tree's heap bytes per byte of its text.
const PARSED_BYTES_PER_QUERY_BYTE: u64 = 16;

/// Queries longer than this are parsed every time, never cached.
const MAX_CACHED_QUERY: usize = 64 << 10;

/// Parsed queries by text, least recently used out first.
static PARSED: LazyLock<Mutex<ByteLru<String, Expr>>> =
    LazyLock::new(|| Mutex::new(ByteLru::new(PARSED_CACHE_BYTES)));

/// Rewrites `\xHH` escapes inside quoted string literals to the characters
/// their bytes spell. In Go (and so in Prometheus) `\xHH` is a *byte*:
/// `"\xc3\xa9"` is `é`, and `"\xff"` is invalid UTF-8; the `promql-parser`
/// crate instead reads each `\xHH` as the code point U+00HH. Runs of byte
/// escapes that form valid UTF-8 become `\UXXXXXXXX` escapes the crate reads
/// correctly; each byte of an invalid sequence becomes `RAW_BYTE_BASE` +
/// byte ([`has_raw_bytes`]), which the evaluator refuses as a label name
/// (Prometheus fails those queries at evaluation) and error messages print
/// back as `\xNN`, as Go quotes the invalid string.
///
/// # Errors
/// None today; kept fallible for future lexing checks.
/// Where a byte of invalid UTF-8 from a `\xNN` escape lands: U+F700 +
/// byte, in the private use area (see [`normalize_byte_escapes`]).
pub(crate) const RAW_BYTE_BASE: u32 = 0xF700;

/// Whether `s` holds bytes of invalid UTF-8 from the query's `\xNN`
/// escapes: a string Go would see as invalid UTF-8.
pub(crate) fn has_raw_bytes(s: &str) -> bool {
    s.chars()
        .any(|c| (RAW_BYTE_BASE..=RAW_BYTE_BASE + 0xff).contains(&(c as u32)))
}

/// `bytes` as characters: valid UTF-8 as it is, every other byte as
/// `RAW_BYTE_BASE + byte`.
fn raw_bytes_to_chars(mut bytes: &[u8]) -> Vec<char> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.extend(s.chars());
                break;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                // `good` is valid UTF-8 by construction.
                out.extend(std::str::from_utf8(good).unwrap_or_default().chars());
                let bad = e.error_len().unwrap_or(rest.len()).max(1);
                for &b in &rest[..bad] {
                    out.extend(char::from_u32(RAW_BYTE_BASE + u32::from(b)));
                }
                bytes = &rest[bad..];
            }
        }
    }
    out
}

pub(crate) fn normalize_byte_escapes(query: &str) -> Result<std::borrow::Cow<'_, str>, QueryError> {
    if !query.contains("\\x") {
        return Ok(std::borrow::Cow::Borrowed(query));
    }
    let mut out = String::with_capacity(query.len());
    for seg in segments(query) {
        match seg {
            Segment::Str { quote, text } if quote != b'`' => byte_escapes_in(text, &mut out),
            other => out.push_str(other.text()),
        }
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// [`normalize_byte_escapes`] inside one quoted string (quotes included).
fn byte_escapes_in(text: &str, out: &mut String) {
    let b = text.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
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
                    // Each byte that is not part of valid UTF-8 becomes
                    // U+F7xx (RAW_BYTE_BASE + byte): label-name checks refuse
                    // it, so the query fails where Prometheus's does (at
                    // evaluation), and `go_quote` prints it back as `\xNN`.
                    for ch in raw_bytes_to_chars(&bytes) {
                        out.push_str(&format!("\\U{:08X}", ch as u32));
                    }
                    i = j;
                    continue;
                }
            }
            // Any other escape is copied whole (an escaped quote, or a
            // backslash before a multi-byte character, which the pre-scan
            // refuses: never sliced through).
            let next = text[i + 1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&text[i..i + 1 + next]);
            i += 1 + next;
            continue;
        }
        let ch = text[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
}

/// Longest deadline, when `now + timeout` does not fit an [`Instant`].
const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `timeout` from now, capped where it would not fit an [`Instant`].
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or(now + MAX_TIMEOUT)
}

/// Refuses an evaluation time whose arithmetic with offsets and ranges
/// could overflow (more than about 36 million years from 1970).
fn check_time(name: &str, t: i64) -> Result<(), QueryError> {
    if t.unsigned_abs() > MAX_ABS_DURATION_MS.unsigned_abs() {
        return Err(QueryError::Parse(format!(
            "{name} {t} ms is out of range: at most {} s from 1970",
            MAX_ABS_DURATION_MS / 1000
        )));
    }
    Ok(())
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
    /// Largest lookback delta a query may ask for with `lookback_delta`
    /// (default 1 d; `--query.max-lookback-delta`).
    pub max_lookback_delta_ms: i64,
    /// Most queries evaluated at once; more wait their turn within their
    /// time-out (default 20; `--query.max-concurrency`).
    pub max_concurrency: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            max_points_per_series: 11_000,
            max_lookback_delta_ms: 24 * 3600 * 1000,
            max_concurrency: 20,
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

/// The PromQL engine. Cheap to share; holds no per-query state besides the
/// semaphore bounding concurrent queries.
#[derive(Debug, Clone)]
pub struct Engine {
    opts: EngineOptions,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new(EngineOptions::default())
    }
}

impl Engine {
    /// An engine with `opts`.
    pub fn new(opts: EngineOptions) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_concurrency.max(1)));
        Self { opts, slots }
    }

    /// The semaphore of query slots (`--query.max-concurrency` permits):
    /// the API holds one for as long as a query or heavy read runs.
    pub fn slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.slots
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// The engine options and deadline for one query.
    fn per_query(
        &self,
        expr: &Expr,
        q: &QueryOptions,
    ) -> Result<(std::borrow::Cow<'_, EngineOptions>, Instant), QueryError> {
        guard::check_ast(expr)?;
        if let Some(l) = q.lookback_delta_ms {
            if l > self.opts.max_lookback_delta_ms {
                return Err(QueryError::Parse(format!(
                    "lookback_delta {} exceeds the limit of {} (--query.max-lookback-delta)",
                    crate::model::format_duration_ms(l.unsigned_abs()),
                    crate::model::format_duration_ms(
                        self.opts.max_lookback_delta_ms.unsigned_abs()
                    ),
                )));
            }
        }
        let timeout = self.timeout_for(q.timeout);
        let opts = match q.lookback_delta_ms {
            Some(l) if l > 0 && l != self.opts.lookback_delta_ms => {
                std::borrow::Cow::Owned(EngineOptions {
                    lookback_delta_ms: l,
                    ..self.opts.clone()
                })
            }
            _ => std::borrow::Cow::Borrowed(&self.opts),
        };
        Ok((opts, deadline_after(timeout)))
    }

    /// The time-out of a query that asked for `requested`: a request can
    /// only shorten `--query.timeout`.
    pub fn timeout_for(&self, requested: Option<Duration>) -> Duration {
        requested.map_or(self.opts.timeout, |t| t.min(self.opts.timeout))
    }

    /// Parses a query. A cheap pre-scan refuses queries nested too deeply
    /// or with too many operators before the recursive parser runs, a
    /// panic inside the parser crate becomes an error, and the AST's `@`,
    /// offsets, ranges and steps are checked to be in range. Deep (but
    /// allowed) queries need a stack larger than the default 2 MiB: run
    /// this on a thread of [`QUERY_THREAD_STACK`](crate::promql::QUERY_THREAD_STACK).
    ///
    /// # Errors
    /// [`QueryError::Parse`] with the parser's message or the limit.
    pub fn parse(query: &str) -> Result<Expr, QueryError> {
        let cacheable = query.len() <= MAX_CACHED_QUERY;
        if cacheable {
            if let Some(expr) = PARSED.lock().get(query) {
                return Ok(expr.clone());
            }
        }
        let expr = Self::parse_uncached(query)?;
        if cacheable {
            let bytes = (query.len() as u64)
                .saturating_mul(PARSED_BYTES_PER_QUERY_BYTE)
                .saturating_add(
                    guard::regex_patterns(&expr)
                        .into_iter()
                        .map(crate::model::regex_bytes)
                        .sum(),
                );
            if bytes <= PARSED_CACHE_BYTES / 8 {
                // An evicted query's tree is dropped here, on this
                // (large-stack) query thread.
                let evicted = PARSED
                    .lock()
                    .insert(query.to_string(), expr.clone(), bytes, |_| false);
                drop(evicted);
            }
        }
        Ok(expr)
    }

    fn parse_uncached(query: &str) -> Result<Expr, QueryError> {
        guard::prescan(query)?;
        let query = normalize_byte_escapes(query)?;
        let query = crate::promql::duration_expr::rewrite(&query)?;
        let (query, trims) = crate::promql::trim_ops::rewrite(&query);
        let mut expr = guard::parse_caught(&query)?;
        crate::promql::trim_ops::mark(&mut expr, trims);
        guard::check_ast(&expr)?;
        Ok(expr)
    }

    /// Evaluates `expr` at `t` (ms).
    ///
    /// # Errors
    /// Any [`QueryError`].
    pub fn instant(
        &self,
        db: &dyn Source,
        expr: &Expr,
        t: i64,
        q: &QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        let (opts, deadline) = self.per_query(expr, q)?;
        check_time("time", t)?;
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
        db: &dyn Source,
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
        check_time("start", start)?;
        check_time("end", end)?;
        // Prometheus's API refuses `(end-start)/step > 11000`, i.e. allows
        // 11 001 points (web/api/v1/api.go queryRange).
        if (i128::from(end) - i128::from(start)) / i128::from(step)
            > self.opts.max_points_per_series as i128
        {
            return Err(QueryError::TooManyPoints);
        }
        let (opts, deadline) = self.per_query(expr, q)?;
        Evaluator::new(&opts, db, start, end, step, deadline, q.cancel.clone()).run_range(expr)
    }

    /// Parses and evaluates an instant query.
    ///
    /// # Errors
    /// Any [`QueryError`].
    pub fn instant_query(
        &self,
        db: &dyn Source,
        query: &str,
        t: i64,
    ) -> Result<QueryResult, QueryError> {
        self.instant(db, &Self::parse(query)?, t, &QueryOptions::default())
    }

    /// Parses and evaluates a range query.
    ///
    /// # Errors
    /// Any [`QueryError`].
    pub fn range_query(
        &self,
        db: &dyn Source,
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
        assert_eq!(n(r#"f("\xff")"#).unwrap(), r#"f("\U0000F7FF")"#);
        assert_eq!(
            n(r#"f("a\xc5z\xc3\xa9")"#).unwrap(),
            r#"f("a\U0000F7C5z\U000000E9")"#
        );
        assert!(has_raw_bytes("a\u{f7c5}z") && !has_raw_bytes("a\u{fffd}z"));
        // Raw strings, escaped backslashes and comments are left alone.
        assert_eq!(n(r#"x{a=`\xff`}"#).unwrap(), r#"x{a=`\xff`}"#);
        assert_eq!(n(r#"x{a="\\xff"}"#).unwrap(), r#"x{a="\\xff"}"#);
        assert_eq!(n("x # \\xff\n").unwrap(), "x # \\xff\n");
        let e = Engine::parse(r#"x{a="\xc3\xa9"}"#).unwrap();
        assert!(e.to_string().contains('é'), "{e}");
    }

    #[test]
    fn parsed_queries_come_from_the_cache_and_errors_are_not_kept() {
        let q = r#"sum by (i) (rate(parse_cache_test{i=~"a.*[05]"}[5m]))"#;
        let first = Engine::parse(q).unwrap();
        assert!(PARSED.lock().get(q).is_some());
        assert_eq!(Engine::parse(q).unwrap().to_string(), first.to_string());
        // A cached tree still goes through nothing else: an invalid query
        // fails every time, and is not kept.
        for _ in 0..2 {
            assert!(Engine::parse("parse_cache_test{").is_err());
        }
        assert!(PARSED.lock().get("parse_cache_test{").is_none());
        // Regex patterns weigh what their automata hold.
        let e = Engine::parse(r#"parse_cache_test{a=~"x+", b!~"y|z", c="w"}[1m]"#).unwrap();
        let mut p = guard::regex_patterns(&e);
        p.sort_unstable();
        assert_eq!(p, ["x+", "y|z"]);
    }

    #[test]
    fn the_parse_cache_stays_within_its_bytes() {
        // ~4 KiB of text each, weighed at 64 KiB: 1,000 of them are twice
        // the bound.
        let q = |i: usize| {
            format!(
                r#"parse_bound_test_{i}{{a=~"v{i}-[a-z]+"}} + {}"#,
                "1 + ".repeat(900) + "1"
            )
        };
        for i in 0..1000 {
            Engine::parse(&q(i)).unwrap();
        }
        let mut cache = PARSED.lock();
        assert!(cache.bytes() <= PARSED_CACHE_BYTES);
        assert!(cache.get(q(0).as_str()).is_none());
        assert!(cache.get(q(999).as_str()).is_some());
    }
}
