//! Duration expressions (on by default since Prometheus 3.14), which the
//! `promql-parser` crate does not read: arithmetic in range and subquery
//! brackets (`x[26m+4m]`, `x[29s+1s:20*500ms]`) and in parenthesised
//! offsets (`offset (2 * 2)`, `offset -(1m + 1s)`). Before parsing, each
//! such expression is evaluated (numbers are seconds, durations their
//! length in seconds; `+ - * / % ^` with PromQL precedence, unary minus
//! below `^`) and replaced by a plain millisecond duration the crate reads.
//! Function calls such as `step()` stay unsupported (experimental upstream).

use crate::promql::error::QueryError;
use crate::promql::segments::{segments, Segment};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Num(f64),
    Op(u8),
    Open,
    Close,
}

/// Tokenizes an arithmetic duration expression; `None` if it holds
/// anything else (identifiers, function calls).
fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' => i += 1,
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => {
                out.push(Tok::Op(c));
                i += 1;
            }
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'0'..=b'9' | b'.' => {
                // A number, or a duration made of number+unit groups.
                let start = i;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                if i < b.len() && b[i].is_ascii_alphabetic() {
                    let mut ms = 0.0;
                    let mut j = start;
                    loop {
                        let ns = j;
                        while j < b.len() && b[j].is_ascii_digit() {
                            j += 1;
                        }
                        let n: f64 = s[ns..j].parse().ok()?;
                        let us = j;
                        while j < b.len() && b[j].is_ascii_alphabetic() {
                            j += 1;
                        }
                        ms += n * crate::model::unit_ms(&s[us..j])? as f64;
                        if j >= b.len() || !b[j].is_ascii_digit() {
                            break;
                        }
                    }
                    i = j;
                    out.push(Tok::Num(ms / 1000.0));
                } else {
                    out.push(Tok::Num(s[start..i].parse().ok()?));
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Precedence climbing over the tokens: `+ -` < `* / %` < unary `-` < `^`
/// (right-associative), as PromQL's grammar orders them.
struct Eval<'t> {
    toks: &'t [Tok],
    pos: usize,
}

impl Eval<'_> {
    fn peek(&self) -> Option<Tok> {
        self.toks.get(self.pos).copied()
    }

    fn expr(&mut self) -> Option<f64> {
        let mut v = self.term()?;
        while let Some(Tok::Op(op @ (b'+' | b'-'))) = self.peek() {
            self.pos += 1;
            let r = self.term()?;
            v = if op == b'+' { v + r } else { v - r };
        }
        Some(v)
    }

    fn term(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        while let Some(Tok::Op(op @ (b'*' | b'/' | b'%'))) = self.peek() {
            self.pos += 1;
            let r = self.unary()?;
            v = match op {
                b'*' => v * r,
                b'/' => v / r,
                _ => v % r,
            };
        }
        Some(v)
    }

    fn unary(&mut self) -> Option<f64> {
        match self.peek() {
            Some(Tok::Op(b'-')) => {
                self.pos += 1;
                Some(-self.unary()?)
            }
            Some(Tok::Op(b'+')) => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if let Some(Tok::Op(b'^')) = self.peek() {
            self.pos += 1;
            let exp = self.unary()?;
            return Some(base.powf(exp));
        }
        Some(base)
    }

    fn atom(&mut self) -> Option<f64> {
        match self.peek()? {
            Tok::Num(n) => {
                self.pos += 1;
                Some(n)
            }
            Tok::Open => {
                self.pos += 1;
                let v = self.expr()?;
                (self.peek()? == Tok::Close).then(|| self.pos += 1)?;
                Some(v)
            }
            _ => None,
        }
    }
}

/// Evaluates `s` to milliseconds when it is an arithmetic duration
/// expression (it has an operator or parentheses); `None` otherwise.
fn evaluate_ms(s: &str) -> Option<Result<i64, QueryError>> {
    if !s.contains(['+', '-', '*', '/', '%', '^', '(']) {
        return None;
    }
    let toks = tokenize(s)?;
    let mut e = Eval {
        toks: &toks,
        pos: 0,
    };
    let secs = e.expr()?;
    if e.pos != toks.len() {
        return None;
    }
    if !secs.is_finite() || secs.abs() > 9.2e15 {
        return Some(Err(QueryError::Parse(format!(
            "duration expression {s:?} is out of range"
        ))));
    }
    Some(Ok((secs * 1000.0).round() as i64))
}

/// Refuses a duration written as plain seconds (`1e300`, `Inf`, `NaN`)
/// that no duration can hold: the parser crate panics on those.
fn check_plain_seconds(s: &str) -> Result<(), QueryError> {
    let Ok(secs) = s.trim().parse::<f64>() else {
        return Ok(());
    };
    let max_secs = (crate::promql::guard::MAX_ABS_DURATION_MS / 1000) as f64;
    if secs.is_finite() && (0.0..=max_secs).contains(&secs) {
        return Ok(());
    }
    Err(QueryError::Parse(format!(
        "invalid duration {:?}: out of range (at most {max_secs}s)",
        s.trim()
    )))
}

/// Rewrites duration expressions in `query` to plain millisecond durations.
/// Text inside string literals and comments is left alone.
///
/// # Errors
/// [`QueryError::Parse`] for a duration expression out of range.
pub(crate) fn rewrite(query: &str) -> Result<String, QueryError> {
    let mut out = String::with_capacity(query.len());
    for seg in segments(query) {
        match seg {
            Segment::Code(code) => rewrite_code(code, &mut out)?,
            other => out.push_str(other.text()),
        }
    }
    Ok(out)
}

/// [`rewrite`] of one piece of code (no strings or comments in it).
fn rewrite_code(query: &str, out: &mut String) -> Result<(), QueryError> {
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'[' => {
                let Some(close) = query[i..].find(']').map(|n| i + n) else {
                    out.push_str(&query[i..]);
                    break;
                };
                let inner = &query[i + 1..close];
                let parts: Vec<&str> = split_top_level_colon(inner);
                out.push('[');
                for (k, part) in parts.iter().enumerate() {
                    if k > 0 {
                        out.push(':');
                    }
                    match evaluate_ms(part) {
                        Some(ms) => out.push_str(&format!("{}ms", ms?)),
                        None => {
                            check_plain_seconds(part)?;
                            out.push_str(part);
                        }
                    }
                }
                out.push(']');
                i = close + 1;
            }
            _ if query[i..].starts_with("offset") && is_word_boundary(b, i, 6) => {
                out.push_str("offset");
                i += 6;
                let rest = &query[i..];
                let ws = rest.len() - rest.trim_start().len();
                let after = &rest[ws..];
                let (sign, body_start) = match after.strip_prefix('-') {
                    Some(r) if r.trim_start().starts_with('(') => {
                        ("-", ws + 1 + (r.len() - r.trim_start().len()))
                    }
                    _ => ("", ws),
                };
                let operand: String = after
                    .trim_start_matches('-')
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
                    .collect();
                check_plain_seconds(&operand)?;
                if query[i + body_start..].starts_with('(') {
                    if let Some(len) = balanced_len(&query[i + body_start..]) {
                        let expr = &query[i + body_start..i + body_start + len];
                        if let Some(ms) = evaluate_ms(expr) {
                            let ms = ms?;
                            let ms = if sign == "-" { -ms } else { ms };
                            out.push_str(&format!(" {ms}ms"));
                            i += body_start + len;
                            continue;
                        }
                    }
                }
            }
            _ => {
                let ch = query[i..].chars().next().expect("in bounds");
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Ok(())
}

fn is_word_boundary(b: &[u8], start: usize, len: usize) -> bool {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    (start == 0 || !ident(b[start - 1])) && b.get(start + len).is_none_or(|&c| !ident(c))
}

/// Length of the balanced parenthesised group at the start of `s`.
fn balanced_len(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (k, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn split_top_level_colon(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (k, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&s[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_ranges_subqueries_and_offsets() {
        let cases = [
            ("x[26m+4m]", "x[1800000ms]"),
            ("x[60*30]", "x[1800000ms]"),
            ("x[2m*(10+5)]", "x[1800000ms]"),
            ("x[24m+((1.5*2m)+2m)]", "x[1740000ms]"),
            ("x[-5m+35m]", "x[1800000ms]"),
            ("x[1h30m % 1h]", "x[1800000ms]"),
            ("x[30m1s-30m1s % 1m]", "x[1800000ms]"),
            ("x[29s+1s:5s+5s]", "x[30000ms:10000ms]"),
            ("x offset (2 ^ 2)", "x offset 4000ms"),
            ("x offset (-2 ^ 2)", "x offset -4000ms"),
            ("x offset -(1m + 1s)", "x offset -61000ms"),
            // Untouched: plain forms, strings, comments.
            ("x[5m:1m] offset 1m", "x[5m:1m] offset 1m"),
            ("x[1800]", "x[1800]"),
            (r#"x{a="[1m+1m]"}"#, r#"x{a="[1m+1m]"}"#),
            ("x # [1m+1m]", "x # [1m+1m]"),
            ("my_offset_total", "my_offset_total"),
        ];
        for (q, want) in cases {
            assert_eq!(rewrite(q).unwrap(), want, "{q}");
        }
    }
}
