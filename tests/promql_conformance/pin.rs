//! `@`-modifier pinning (FORMAT.md §9.2), done on the AST so that printer
//! differences between the Go and Rust parsers cannot cause false failures.
//!
//! Mirrors upstream `atModifierTestCases` (promql/promqltest/test.go @
//! v3.14.0): a pre-order walk that stops below any subquery carrying an
//! `@` — including one it has just pinned — so that neither selectors nor
//! calls inside a subquery are looked at. In particular a time-dependent
//! call *inside* a subquery does not prevent pinning: the pinned subquery
//! evaluates it at fixed steps.

use std::time::{Duration, SystemTime};

use tidemark::promql::ast::{AtModifier, Expr};

/// Functions whose value depends on the evaluation time itself (upstream
/// `AtModifierUnsafeFunctions` plus the experimental `start`, `end`,
/// `range`, `step`).
const TIME_DEPENDENT: &[&str] = &[
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
    "start",
    "end",
    "range",
    "step",
];

/// `@ <t_ms>` as the parser would build it.
fn at(t_ms: i64) -> AtModifier {
    let d = Duration::from_millis(t_ms.unsigned_abs());
    let t = if t_ms >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    };
    AtModifier::At(t)
}

fn has_at(m: &Option<AtModifier>) -> bool {
    // `@ start()` / `@ end()` count as "no @ yet" upstream: they are
    // pinned too (upstream only looks at the numeric timestamp).
    matches!(m, Some(AtModifier::At(_)))
}

/// Rewrites `expr` in place; returns whether it calls a time-dependent
/// function outside every subquery.
fn walk(expr: &mut Expr, pin: &AtModifier) -> bool {
    match expr {
        Expr::VectorSelector(vs) => {
            if !has_at(&vs.at) {
                vs.at = Some(pin.clone());
            }
            false
        }
        Expr::MatrixSelector(ms) => {
            if !has_at(&ms.vs.at) {
                ms.vs.at = Some(pin.clone());
            }
            false
        }
        Expr::Subquery(sq) => {
            if !has_at(&sq.at) {
                sq.at = Some(pin.clone());
            }
            // Now it carries an `@`: nothing below it is visited.
            false
        }
        Expr::Aggregate(a) => {
            let p = a.param.as_deref_mut().is_some_and(|p| walk(p, pin));
            walk(&mut a.expr, pin) | p
        }
        Expr::Unary(u) => walk(&mut u.expr, pin),
        Expr::Binary(b) => walk(&mut b.lhs, pin) | walk(&mut b.rhs, pin),
        Expr::Paren(p) => walk(&mut p.expr, pin),
        Expr::Call(c) => {
            let mut dep = TIME_DEPENDENT.contains(&c.func.name);
            for a in c.args.args.iter_mut() {
                dep |= walk(a, pin);
            }
            dep
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
    }
}

/// The pinned expression, or `None` when the expression depends on the
/// evaluation time (then upstream runs no pinned variants).
pub(crate) fn pin_at(expr: &Expr, t_ms: i64) -> Option<Expr> {
    let mut e = expr.clone();
    if walk(&mut e, &at(t_ms)) {
        None
    } else {
        Some(e)
    }
}

/// The evaluation times (ms) of the pinned runs for eval time `t_ms`.
pub(crate) fn pinned_eval_times(t_ms: i64) -> Vec<i64> {
    if t_ms == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * t_ms, 0, t_ms / 5, t_ms, 10 * t_ms]
    }
}
