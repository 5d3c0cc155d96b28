//! Element-wise float functions: the one-argument math functions, `round`
//! and `clamp`, plus Go's `math.Max`/`math.Min` (whose NaN rules differ from
//! Rust's `f64::max`/`f64::min`).
//!
//! Transcendental functions use Rust's `std` (the platform libm); Go's own
//! implementations can differ from it in the last bit, which is far below
//! the 1e-6 relative tolerance PromQL tests compare with.

/// `abs`.
pub(crate) fn abs(v: f64) -> f64 {
    v.abs()
}

/// `ceil`.
pub(crate) fn ceil(v: f64) -> f64 {
    v.ceil()
}

/// `floor`.
pub(crate) fn floor(v: f64) -> f64 {
    v.floor()
}

/// `exp`.
pub(crate) fn exp(v: f64) -> f64 {
    v.exp()
}

/// `sqrt`.
pub(crate) fn sqrt(v: f64) -> f64 {
    v.sqrt()
}

/// `ln`.
pub(crate) fn ln(v: f64) -> f64 {
    v.ln()
}

/// `log2`.
pub(crate) fn log2(v: f64) -> f64 {
    v.log2()
}

/// `log10`.
pub(crate) fn log10(v: f64) -> f64 {
    v.log10()
}

/// `sgn`: −1, +1, or the value itself for ±0 and NaN (upstream `funcSgn`).
pub(crate) fn sgn(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }
}

/// `sin`.
pub(crate) fn sin(v: f64) -> f64 {
    v.sin()
}

/// `cos`.
pub(crate) fn cos(v: f64) -> f64 {
    v.cos()
}

/// `tan`.
pub(crate) fn tan(v: f64) -> f64 {
    v.tan()
}

/// `asin`.
pub(crate) fn asin(v: f64) -> f64 {
    v.asin()
}

/// `acos`.
pub(crate) fn acos(v: f64) -> f64 {
    v.acos()
}

/// `atan`.
pub(crate) fn atan(v: f64) -> f64 {
    v.atan()
}

/// `sinh`.
pub(crate) fn sinh(v: f64) -> f64 {
    v.sinh()
}

/// `cosh`.
pub(crate) fn cosh(v: f64) -> f64 {
    v.cosh()
}

/// `tanh`.
pub(crate) fn tanh(v: f64) -> f64 {
    v.tanh()
}

/// `asinh`.
pub(crate) fn asinh(v: f64) -> f64 {
    v.asinh()
}

/// `acosh`.
pub(crate) fn acosh(v: f64) -> f64 {
    v.acosh()
}

/// `atanh`.
pub(crate) fn atanh(v: f64) -> f64 {
    v.atanh()
}

/// `deg`: `v · 180 / π`, in that order as upstream.
pub(crate) fn deg(v: f64) -> f64 {
    v * 180.0 / std::f64::consts::PI
}

/// `rad`: `v · π / 180`, in that order as upstream.
pub(crate) fn rad(v: f64) -> f64 {
    v * std::f64::consts::PI / 180.0
}

/// `round(v, to_nearest)`: `floor(v · inv + 0.5) / inv` with
/// `inv = 1 / to_nearest`; ties round up. The inverse is used because it
/// causes fewer float artefacts (upstream's comment).
///
/// Upstream: `funcRound` in promql/functions.go @ v3.14.0.
pub(crate) fn round(v: f64, to_nearest: f64) -> f64 {
    let inv = 1.0 / to_nearest;
    (v * inv + 0.5).floor() / inv
}

/// Go's `math.Max`: +Inf wins over everything (even NaN), then NaN wins,
/// and +0 beats −0.
pub(crate) fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        return f64::INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && x == y {
        return if x.is_sign_negative() { y } else { x };
    }
    if x > y {
        x
    } else {
        y
    }
}

/// Go's `math.Min`: −Inf wins over everything (even NaN), then NaN wins,
/// and −0 beats +0.
pub(crate) fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && x == y {
        return if x.is_sign_negative() { x } else { y };
    }
    if x < y {
        x
    } else {
        y
    }
}

/// `clamp(v, min, max)` = `math.Max(min, math.Min(max, v))`; `None` when
/// `max < min` (upstream then returns an empty vector). `clamp_min` is
/// `clamp(v, min, +Inf)`, `clamp_max` is `clamp(v, −Inf, max)`.
///
/// Upstream: `clamp` in promql/functions.go @ v3.14.0.
pub(crate) fn clamp(v: f64, min: f64, max: f64) -> Option<f64> {
    if max < min {
        return None;
    }
    Some(go_max(min, go_min(max, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits() || (a - b).abs() < 1e-12
    }

    #[test]
    fn simple_table() {
        use std::f64::consts::PI;
        let cases: &[(&str, f64, f64)] = &[
            ("abs", -2.5, 2.5),
            ("ceil", 1.2, 2.0),
            ("floor", -1.2, -2.0),
            ("exp", 0.0, 1.0),
            ("sqrt", 4.0, 2.0),
            ("sqrt", -1.0, f64::NAN),
            ("ln", 1.0, 0.0),
            ("log2", 8.0, 3.0),
            ("log10", 1000.0, 3.0),
            ("sgn", -3.0, -1.0),
            ("sgn", 3.0, 1.0),
            ("sgn", -0.0, -0.0),
            ("sgn", f64::NAN, f64::NAN),
            ("sin", 0.0, 0.0),
            ("cos", 0.0, 1.0),
            ("tan", 0.0, 0.0),
            ("asin", 1.0, PI / 2.0),
            ("acos", 1.0, 0.0),
            ("atan", 0.0, 0.0),
            ("sinh", 0.0, 0.0),
            ("cosh", 0.0, 1.0),
            ("tanh", 0.0, 0.0),
            ("asinh", 0.0, 0.0),
            ("acosh", 1.0, 0.0),
            ("atanh", 0.0, 0.0),
            ("atanh", 1.0, f64::INFINITY),
            ("deg", PI, 180.0),
            ("rad", 180.0, PI),
        ];
        use crate::promql::functions::table::{lookup, Eval};
        let simple = |name: &str| match lookup(name).map(|f| f.eval) {
            Some(Eval::Elementwise(f)) => Some(f),
            _ => None,
        };
        for (name, input, want) in cases {
            let f = simple(name).unwrap_or_else(|| panic!("{name} missing"));
            let got = f(*input);
            assert!(same(got, *want), "{name}({input}) = {got}, want {want}");
        }
        assert!(simple("round").is_none());
        assert!(simple("nope").is_none());
    }

    #[test]
    fn round_table() {
        let cases: &[(f64, f64, f64)] = &[
            (1.5, 1.0, 2.0),
            (2.5, 1.0, 3.0),
            (-1.5, 1.0, -1.0),
            (-2.5, 1.0, -2.0),
            (1.234, 0.01, 1.23),
            (1.235, 0.1, 1.2),
            (17.0, 5.0, 15.0),
            (17.5, 5.0, 20.0),
            (f64::NAN, 1.0, f64::NAN),
            (f64::INFINITY, 1.0, f64::INFINITY),
        ];
        for (v, to, want) in cases {
            let got = round(*v, *to);
            assert!(same(got, *want), "round({v}, {to}) = {got}, want {want}");
        }
    }

    #[test]
    fn go_max_min_follow_go_special_cases() {
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert!(go_max(1.0, f64::NAN).is_nan());
        assert_eq!(go_max(-0.0, 0.0).to_bits(), 0.0f64.to_bits());
        assert_eq!(go_max(-0.0, -0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(go_min(f64::NAN, f64::NEG_INFINITY), f64::NEG_INFINITY);
        assert!(go_min(1.0, f64::NAN).is_nan());
        assert_eq!(go_min(0.0, -0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(go_min(2.0, 3.0), 2.0);
    }

    #[test]
    fn clamp_table() {
        let cases: &[(f64, f64, f64, Option<f64>)] = &[
            (5.0, 0.0, 3.0, Some(3.0)),
            (-5.0, 0.0, 3.0, Some(0.0)),
            (1.0, 0.0, 3.0, Some(1.0)),
            (1.0, 3.0, 0.0, None),
            (f64::NAN, 0.0, 3.0, Some(f64::NAN)),
            (5.0, f64::NEG_INFINITY, 3.0, Some(3.0)),
            (-5.0, 0.0, f64::INFINITY, Some(0.0)),
        ];
        for (v, lo, hi, want) in cases {
            let got = clamp(*v, *lo, *hi);
            match (got, want) {
                (Some(g), Some(w)) => assert!(same(g, *w), "clamp({v},{lo},{hi}) = {g}"),
                _ => assert_eq!(got, *want),
            }
        }
    }
}
