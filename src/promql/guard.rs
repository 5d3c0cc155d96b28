//! Guards that keep hostile queries away from recursion and overflow: a
//! cheap pre-scan of the query text (bracket nesting, operator count,
//! escapes the parser would panic on) run BEFORE the recursive parser, an
//! iterative depth check run before any recursive walk of an AST, bounds on
//! every `@`, `offset`, range and step in an AST, and [`parse_caught`], which
//! turns a panic inside the `promql-parser` crate into a parse error.
//!
//! The depth limits are constants, not flags: they are what the stack of
//! the thread that parses and evaluates ([`QUERY_THREAD_STACK`]) is sized
//! for, so raising them safely needs a code change.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr, Offset};

use crate::promql::error::QueryError;
use crate::promql::segments::{segments, Segment};

/// Deepest nesting of `(`, `[` and `{` a query may have.
pub const MAX_NESTING_DEPTH: usize = 256;

/// Most operators (binary, unary, set operators) a query may have: each one
/// can add a level to the AST (`1+1+1+…`, `----x`).
pub const MAX_OPERATORS: usize = 1_000;

/// Deepest AST the evaluator walks (bounds the recursion of evaluation,
/// printing and dropping of an expression).
pub const MAX_AST_DEPTH: usize = MAX_NESTING_DEPTH + MAX_OPERATORS + 16;

/// Stack of the threads that parse and evaluate queries: an AST of the
/// deepest admitted shape needs 4 to 8 MiB in a debug build (see the
/// `stack_tests`), so 64 MiB leaves a wide margin. Only touched pages
/// cost memory.
pub const QUERY_THREAD_STACK: usize = 64 << 20;

/// Largest magnitude, in ms, of an `@` time, offset, range or subquery
/// step (about 36 million years): sums of a few of them and a query time
/// stay far from `i64` overflow.
pub const MAX_ABS_DURATION_MS: i64 = 1 << 60;

fn too_deep() -> QueryError {
    QueryError::Parse(format!(
        "query is nested too deeply: more than {MAX_NESTING_DEPTH} levels of parentheses, brackets or braces (the limit of the query nesting depth)"
    ))
}

fn too_many_operators() -> QueryError {
    QueryError::Parse(format!(
        "query has too many operators: more than {MAX_OPERATORS} (the limit of operators per query)"
    ))
}

fn count_op(ops: &mut usize) -> Result<(), QueryError> {
    *ops += 1;
    if *ops > MAX_OPERATORS {
        return Err(too_many_operators());
    }
    Ok(())
}

/// Scans the query text once, without recursion: fails when brackets nest
/// deeper than [`MAX_NESTING_DEPTH`], when there are more than
/// [`MAX_OPERATORS`] operators, or when a quoted string has a backslash
/// before a non-ASCII character (invalid in Go; the parser crate panics on
/// it). String literals and `#` comments are skipped, so brackets and
/// operators inside them do not count.
///
/// # Errors
/// [`QueryError::Parse`] naming the limit.
pub fn prescan(query: &str) -> Result<(), QueryError> {
    scan(query).map(drop)
}

/// What [`scan`] counts of a query: its deepest bracket nesting and its
/// operators.
struct Shape {
    deepest: usize,
    ops: usize,
}

/// The one pass of [`prescan`] and [`shallow`]: the query's [`Shape`], or
/// the first limit it breaks.
fn scan(query: &str) -> Result<Shape, QueryError> {
    let mut depth = 0usize;
    let mut shape = Shape { deepest: 0, ops: 0 };
    let mut offset = 0usize;
    for seg in segments(query) {
        match seg {
            Segment::Str { quote, text } if quote != b'`' => check_escapes(text, offset)?,
            Segment::Code(code) => {
                scan_code(code, &mut depth, &mut shape.deepest, &mut shape.ops)?;
            }
            _ => {}
        }
        offset += seg.text().len();
    }
    Ok(shape)
}

/// Deepest bracket nesting, and most operators, of a query that may be
/// evaluated on an async worker's stack ([`shallow`]): an AST of
/// [`MAX_AST_DEPTH`] levels needs at most 8 MiB in a debug build, so one
/// of `2 × SHALLOW_LIMIT + 16` levels needs well under 1 MiB of the 2 MiB
/// an async worker has.
pub(crate) const SHALLOW_LIMIT: usize = 32;

/// Whether `query` nests brackets at most [`SHALLOW_LIMIT`] deep and has at
/// most [`SHALLOW_LIMIT`] operators (counted as [`prescan`] counts them,
/// strings and comments skipped): parsing and evaluating it fits an async
/// worker's stack. Never true for a query [`prescan`] refuses.
pub fn shallow(query: &str) -> bool {
    scan(query).is_ok_and(|s| s.deepest <= SHALLOW_LIMIT && s.ops <= SHALLOW_LIMIT)
}

/// A backslash must be followed by an ASCII character (Go refuses the rest;
/// the parser crate panics on it). `offset` is where `text` starts.
fn check_escapes(text: &str, offset: usize) -> Result<(), QueryError> {
    let b = text.as_bytes();
    let mut j = 1;
    while j + 1 < b.len() {
        if b[j] == b'\\' {
            if !b[j + 1].is_ascii() {
                let at = offset + j;
                return Err(QueryError::Parse(format!(
                    "invalid escape sequence at byte {at}: a backslash must be followed by an ASCII character"
                )));
            }
            j += 1;
        }
        j += 1;
    }
    Ok(())
}

/// Bracket depth (now and deepest) and operator count of code outside
/// strings and comments.
fn scan_code(
    code: &str,
    depth: &mut usize,
    deepest: &mut usize,
    ops: &mut usize,
) -> Result<(), QueryError> {
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => {
                *depth += 1;
                *deepest = (*deepest).max(*depth);
                if *depth > MAX_NESTING_DEPTH {
                    return Err(too_deep());
                }
            }
            b')' | b']' | b'}' => *depth = depth.saturating_sub(1),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'!' => count_op(ops)?,
            // `==` counts once (via its first `=`); `!=`, `<=`, `>=` were
            // counted at their first character; `=~` and a lone `=` are
            // matchers.
            b'=' if b.get(i + 1) == Some(&b'=') => {
                count_op(ops)?;
                i += 2;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &code[start..i];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    count_op(ops)?;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The patterns of every regex matcher (`=~`, `!~`) in `expr`, each time
/// it appears: what the parser compiled into the AST.
pub(crate) fn regex_patterns(expr: &Expr) -> Vec<&str> {
    use promql_parser::label::MatchOp;
    let mut out = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        let vs = match e {
            Expr::VectorSelector(vs) => Some(vs),
            Expr::MatrixSelector(ms) => Some(&ms.vs),
            _ => None,
        };
        if let Some(vs) = vs {
            out.extend(
                vs.matchers
                    .matchers
                    .iter()
                    .chain(vs.matchers.or_matchers.iter().flatten())
                    .filter(|m| matches!(m.op, MatchOp::Re(_) | MatchOp::NotRe(_)))
                    .map(|m| m.value.as_str()),
            );
        }
        stack.extend(children(e));
    }
    out
}

/// The direct sub-expressions of `e`.
fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Aggregate(a) => {
            let mut v = vec![a.expr.as_ref()];
            if let Some(p) = &a.param {
                v.push(p.as_ref());
            }
            v
        }
        Expr::Unary(u) => vec![u.expr.as_ref()],
        Expr::Binary(b) => vec![b.lhs.as_ref(), b.rhs.as_ref()],
        Expr::Paren(p) => vec![p.expr.as_ref()],
        Expr::Subquery(s) => vec![s.expr.as_ref()],
        Expr::Call(c) => c.args.args.iter().map(|a| a.as_ref()).collect(),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => Vec::new(),
    }
}

fn duration_ms(what: &str, d: Duration) -> Result<i64, QueryError> {
    i64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= MAX_ABS_DURATION_MS)
        .ok_or_else(|| {
            QueryError::Parse(format!(
                "{what} {}s is out of range: at most {}s",
                d.as_secs(),
                MAX_ABS_DURATION_MS / 1000
            ))
        })
}

fn check_offset(o: &Option<Offset>) -> Result<(), QueryError> {
    match o {
        None => Ok(()),
        Some(Offset::Pos(d) | Offset::Neg(d)) => duration_ms("offset", *d).map(|_| ()),
    }
}

fn check_at(at: &Option<AtModifier>) -> Result<(), QueryError> {
    let Some(AtModifier::At(t)) = at else {
        return Ok(());
    };
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok(),
        Err(e) => i64::try_from(e.duration().as_millis()).ok(),
    };
    match ms {
        Some(ms) if ms <= MAX_ABS_DURATION_MS => Ok(()),
        _ => Err(QueryError::Parse(format!(
            "timestamp out of bounds for @ modifier: at most {} seconds from 1970",
            MAX_ABS_DURATION_MS / 1000
        ))),
    }
}

/// Checks an AST without recursion: at most [`MAX_AST_DEPTH`] levels, and
/// every `@` time, offset, range and subquery step within
/// ±[`MAX_ABS_DURATION_MS`]. Run before anything walks `expr` recursively.
///
/// # Errors
/// [`QueryError::Parse`] naming the limit.
pub fn check_ast(expr: &Expr) -> Result<(), QueryError> {
    let mut stack: Vec<(&Expr, usize)> = vec![(expr, 1)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_AST_DEPTH {
            return Err(QueryError::Parse(format!(
                "query is nested too deeply: the expression tree is more than {MAX_AST_DEPTH} levels deep (the limit of the query nesting depth)"
            )));
        }
        match e {
            Expr::VectorSelector(vs) => {
                check_offset(&vs.offset)?;
                check_at(&vs.at)?;
            }
            Expr::MatrixSelector(ms) => {
                check_offset(&ms.vs.offset)?;
                check_at(&ms.vs.at)?;
                duration_ms("range", ms.range)?;
            }
            Expr::Subquery(sq) => {
                check_offset(&sq.offset)?;
                check_at(&sq.at)?;
                duration_ms("subquery range", sq.range)?;
                if let Some(step) = sq.step {
                    duration_ms("subquery step", step)?;
                }
            }
            _ => {}
        }
        stack.extend(children(e).into_iter().map(|c| (c, depth + 1)));
    }
    Ok(())
}

/// Runs the parser crate, turning a panic inside it (it panics on some
/// out-of-range durations, e.g. `offset Inf` or `x[1e300]`) into
/// [`QueryError::Parse`]. The caller has already run [`prescan`], so the
/// crate cannot overflow the stack.
///
/// # Errors
/// The parser's message, or the panic's.
pub(crate) fn parse_caught(query: &str) -> Result<Expr, QueryError> {
    match catch_unwind(AssertUnwindSafe(|| promql_parser::parser::parse(query))) {
        Ok(r) => r.map_err(QueryError::Parse),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(QueryError::Parse(if what.contains("Duration") {
                format!("invalid duration: out of range or not a number ({what})")
            } else {
                format!("the query could not be parsed ({what})")
            }))
        }
    }
}

/// `t` in ms since the epoch, saturating at the `i64` range.
pub(crate) fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// `d` in ms, saturating at `i64::MAX`.
pub(crate) fn duration_ms_saturating(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prescan_limits_nesting_and_operators() {
        let deep = format!("{}up{}", "(".repeat(50_000), ")".repeat(50_000));
        let e = prescan(&deep).unwrap_err().to_string();
        assert!(e.contains("256"), "{e}");
        let chain = vec!["1"; 100_001].join("+");
        assert!(prescan(&chain).unwrap_err().to_string().contains("1000"));
        let neg = format!("{}up", "-".repeat(100_000));
        assert!(prescan(&neg).is_err());
        let ors = vec!["up"; 5_000].join(" or ");
        assert!(prescan(&ors).is_err());
        // Brackets inside strings and comments do not count.
        let s = format!("up{{a=\"{}\"}} # {}\n", "(".repeat(1000), "[".repeat(1000));
        prescan(&s).unwrap();
        prescan(r#"sum by (job) (rate(x{a=~"b", c!="d"}[5m] offset 1m)) > 0 and on() vector(1)"#)
            .unwrap();
        let e = prescan(r#"up{a="\x41\é"}"#).unwrap_err().to_string();
        assert!(e.contains("escape"), "{e}");
    }

    #[test]
    fn shallow_bounds_nesting_and_operators() {
        let n = SHALLOW_LIMIT;
        assert!(shallow("sum by (job) (rate(x{a=\"(((\"}[5m]))"));
        assert!(shallow(&format!("{}up{}", "(".repeat(n), ")".repeat(n))));
        assert!(!shallow(&format!(
            "{}up{}",
            "(".repeat(n + 1),
            ")".repeat(n + 1)
        )));
        assert!(shallow(&vec!["1"; n + 1].join("+")));
        assert!(!shallow(&vec!["1"; n + 2].join("+")));
        // Brackets and operators in strings do not count.
        let s = format!("up{{a=\"{}{}\"}}", "(".repeat(100), "+".repeat(100));
        assert!(shallow(&s));
        // Whatever prescan refuses is not shallow.
        assert!(!shallow("x{a=\"\\é\"}"));
    }

    #[test]
    fn parse_panics_become_errors() {
        for q in [
            "up offset Inf",
            "rate(up[1e300])",
            "up offset NaN",
            "up[-1]",
        ] {
            let _ = parse_caught(q);
        }
        assert!(parse_caught("rate(up[1e300])").is_err());
    }

    #[test]
    fn check_ast_bounds() {
        let e = promql_parser::parser::parse("up @ 1e16").unwrap();
        assert!(check_ast(&e).is_err());
        let e = promql_parser::parser::parse("up @ 100 offset 5m").unwrap();
        check_ast(&e).unwrap();
    }
}

#[cfg(test)]
mod stack_tests {
    use super::*;
    use crate::promql::Engine;

    /// The largest inputs the limits admit.
    fn worst_cases() -> Vec<String> {
        let n = MAX_NESTING_DEPTH;
        let ops = MAX_OPERATORS;
        vec![
            format!("{}up{}", "(".repeat(n), ")".repeat(n)),
            format!("{}up{}", "abs(".repeat(n), ")".repeat(n)),
            vec!["1"; ops + 1].join("+"),
            vec!["up"; ops + 1].join(" + "),
            format!("{}up", "-".repeat(ops)),
            format!(
                "{}{}up{}",
                "-".repeat(ops - n),
                "(-".repeat(n - 1),
                ")".repeat(n - 1)
            ),
        ]
    }

    /// `match[]` selectors are parsed on async workers (tokio's 2 MiB
    /// stacks) by some handlers: parsing and dropping the deepest admitted
    /// query must fit there.
    #[test]
    fn deepest_admitted_queries_parse_on_a_2_mib_stack() {
        for q in worst_cases() {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || {
                    let e = Engine::parse(&q);
                    assert!(e.is_ok(), "{}: {e:?}", &q[..40]);
                })
                .unwrap()
                .join()
                .unwrap();
        }
    }

    /// Evaluation, printing and dropping of the deepest admitted queries
    /// fit in the query thread's stack (measured in a debug build: they
    /// need between 4 and 8 MiB, against 64 MiB).
    #[test]
    fn deepest_admitted_queries_evaluate_on_the_query_stack() {
        let dir = std::env::temp_dir().join(format!("tidemark-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = std::sync::Arc::new(
            crate::storage::Db::open(&dir, crate::storage::Options::default()).unwrap(),
        );
        for q in worst_cases() {
            let db = db.clone();
            std::thread::Builder::new()
                .stack_size(QUERY_THREAD_STACK)
                .spawn(move || {
                    let e = Engine::parse(&q).unwrap();
                    let _ = e.to_string();
                    let _ = e.prettify();
                    let engine = Engine::default();
                    let o = crate::promql::QueryOptions::default();
                    engine.instant(&*db, &e, 1_000_000, &o).unwrap();
                    engine.range(&*db, &e, 0, 3_600_000, 15_000, &o).unwrap();
                })
                .unwrap()
                .join()
                .unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
