//! The native-histogram trim operators `</` (keep observations below the
//! right-hand value) and `>/` (keep those above), which the
//! `promql-parser` crate does not read. They bind like comparisons
//! (Prometheus's grammar puts them in the comparison precedence group), so
//! before parsing each is replaced by a comparison operator the query does
//! not otherwise use (`<=`, `>=` or `==`), which parses to the same tree
//! shape; after parsing, [`mark`] turns those placeholder nodes into binary
//! expressions with the private operator ids [`TRIM_UPPER`] and
//! [`TRIM_LOWER`]. A query that already uses every candidate operator is
//! left as it is (and fails to parse, as before).
//!
//! Owns that rewrite only; the evaluation is in `eval/binary.rs`. Such
//! nodes print as an unknown token (only error texts show it).

use std::borrow::Cow;

use promql_parser::parser::token::{TokenId, TokenType, T_EQLC, T_GTE, T_LTE};
use promql_parser::parser::Expr;

use crate::promql::segments::{segments, Segment};

/// Operator id of `</` (outside the crate's token range).
pub(crate) const TRIM_UPPER: TokenId = 0x7F01;
/// Operator id of `>/`.
pub(crate) const TRIM_LOWER: TokenId = 0x7F02;

/// The placeholders a rewrite used: comparison token ids standing for
/// `</` and `>/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Placeholders {
    upper: Option<TokenId>,
    lower: Option<TokenId>,
}

/// Replaces `</` and `>/` in code (not in strings or comments) by unused
/// comparison operators.
pub(crate) fn rewrite(query: &str) -> (Cow<'_, str>, Placeholders) {
    let code_has =
        |op: &str| segments(query).any(|s| matches!(s, Segment::Code(t) if t.contains(op)));
    let (has_upper, has_lower) = (code_has("</"), code_has(">/"));
    if !has_upper && !has_lower {
        return (Cow::Borrowed(query), Placeholders::default());
    }
    let mut free = [("<=", T_LTE), (">=", T_GTE), ("==", T_EQLC)]
        .into_iter()
        .filter(|(text, _)| !query.contains(text));
    let mut ph = Placeholders::default();
    let mut upper_text = None;
    let mut lower_text = None;
    if has_upper {
        let Some((t, id)) = free.next() else {
            return (Cow::Borrowed(query), Placeholders::default());
        };
        upper_text = Some(t);
        ph.upper = Some(id);
    }
    if has_lower {
        let Some((t, id)) = free.next() else {
            return (Cow::Borrowed(query), Placeholders::default());
        };
        lower_text = Some(t);
        ph.lower = Some(id);
    }
    let mut out = String::with_capacity(query.len());
    for seg in segments(query) {
        match seg {
            Segment::Code(t) => {
                let mut t = t.to_string();
                if let Some(u) = upper_text {
                    t = t.replace("</", u);
                }
                if let Some(l) = lower_text {
                    t = t.replace(">/", l);
                }
                out.push_str(&t);
            }
            other => out.push_str(other.text()),
        }
    }
    (Cow::Owned(out), ph)
}

/// Turns the placeholder comparisons of `expr` back into trim operators.
pub(crate) fn mark(expr: &mut Expr, ph: Placeholders) {
    if ph == Placeholders::default() {
        return;
    }
    match expr {
        Expr::Aggregate(a) => {
            mark(&mut a.expr, ph);
            if let Some(p) = a.param.as_mut() {
                mark(p, ph);
            }
        }
        Expr::Unary(u) => mark(&mut u.expr, ph),
        Expr::Binary(b) => {
            let id = b.op.id();
            if Some(id) == ph.upper {
                b.op = TokenType::new(TRIM_UPPER);
            } else if Some(id) == ph.lower {
                b.op = TokenType::new(TRIM_LOWER);
            }
            mark(&mut b.lhs, ph);
            mark(&mut b.rhs, ph);
        }
        Expr::Paren(p) => mark(&mut p.expr, ph),
        Expr::Subquery(s) => mark(&mut s.expr, ph),
        Expr::Call(c) => {
            for a in c.args.args.iter_mut() {
                mark(a, ph);
            }
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

/// The operator text of a binary node: `</`, `>/`, or the parser's own.
pub(crate) fn op_text(op: TokenType) -> String {
    match op.id() {
        TRIM_UPPER => "</".into(),
        TRIM_LOWER => ">/".into(),
        _ => op.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Expr {
        let (text, ph) = rewrite(q);
        let mut e = promql_parser::parser::parse(&text).unwrap();
        mark(&mut e, ph);
        e
    }

    #[test]
    fn trim_operators_parse_with_comparison_precedence() {
        let Expr::Binary(b) = parse("h </ 1 + 2") else {
            panic!()
        };
        assert_eq!(b.op.id(), TRIM_UPPER);
        assert!(matches!(*b.rhs, Expr::Binary(_)));
        let Expr::Binary(b) = parse(r#"sum(h{a="</"}) >/ on (l) f"#) else {
            panic!()
        };
        assert_eq!(op_text(b.op), ">/");
    }

    #[test]
    fn queries_without_trim_are_untouched() {
        let (t, ph) = rewrite("a <= b");
        assert_eq!(t, "a <= b");
        assert_eq!(ph, Placeholders::default());
        // Every placeholder taken: left for the parser to refuse.
        let (t, _) = rewrite("a </ 1 <= 2 >= 3 == 4");
        assert!(t.contains("</"));
    }
}
