//! The Prometheus response envelope
//! `{status, data, errorType, error, warnings, infos}` (empty fields left
//! out, as Go's `omitempty`) and the encoding of query results, written by
//! hand into one `String` so that large matrices cost one pass and no
//! intermediate tree. Numbers follow Prometheus's `util/jsonutil/marshal.go`:
//! sample values are JSON strings in Go's `strconv.AppendFloat` form,
//! timestamps are JSON numbers of seconds with the milliseconds as written
//! (`MarshalTimestamp`). Must not touch storage or evaluate anything.

use std::fmt::Write as _;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::model::{FloatHistogram, Labels};
use crate::promql::Value;

/// Appends `v` as Prometheus writes a sample value, without quotes: Go's
/// shortest `'f'` form, or `'e'` form (`1e-07`, `1.5e+21`) when
/// `|v| < 1e-6` or `|v| >= 1e21`; `+Inf`, `-Inf`, `NaN`.
///
/// The hottest part of a large answer: integers below 2^53 are written as
/// integers, the rest from Ryu's shortest digits (the algorithm Go's
/// `strconv` uses for the shortest form, so the same digits), laid out as
/// Go lays them out.
pub(crate) fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.fract() == 0.0 && v.abs() < EXACT_INTEGERS {
        if v == 0.0 && v.is_sign_negative() {
            out.push_str("-0");
        } else {
            // Exact: |v| < 2^53 converts without rounding.
            out.push_str(itoa::Buffer::new().format(v as i64));
        }
        return;
    }
    let mut ryu = ryu::Buffer::new();
    let abs = v.abs();
    if (1e-5..1e16).contains(&abs) {
        // Ryu writes these without exponent, as Go does ("0.00001",
        // "123.45"), and an integer with ".0", which Go leaves out.
        let s = ryu.format_finite(v);
        out.push_str(s.strip_suffix(".0").unwrap_or(s));
        return;
    }
    let d = shortest_digits(ryu.format_finite(v));
    let (digits, exp) = (d.digits(), d.exp);
    if d.negative {
        out.push('-');
    }
    // The value is 0.d1d2d3... × 10^exp; Go's cut-offs for 'e' form.
    if !(1e-6..1e21).contains(&abs) {
        out.push(char::from(digits[0]));
        if digits.len() > 1 {
            out.push('.');
            push_ascii(out, &digits[1..]);
        }
        let e = exp - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        let e = e.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(e));
    } else if exp <= 0 {
        out.push_str("0.");
        for _ in 0..exp.unsigned_abs() {
            out.push('0');
        }
        push_ascii(out, digits);
    } else {
        let point = exp.unsigned_abs() as usize;
        if digits.len() <= point {
            push_ascii(out, digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            push_ascii(out, &digits[..point]);
            out.push('.');
            push_ascii(out, &digits[point..]);
        }
    }
}

/// The significant digits of a finite float and where the point goes.
struct Digits {
    negative: bool,
    buf: [u8; 32],
    len: usize,
    /// The value is `0.d1d2d3… × 10^exp`.
    exp: i32,
}

impl Digits {
    fn digits(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Ryu's output (`1.5e-7`, `123.45`, `0.001`, `1e16`, at most 17
/// significant digits) as sign, significant digits (no leading or
/// trailing zeros) and exponent.
fn shortest_digits(s: &str) -> Digits {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exp) = match s.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let int_len = mantissa.find('.').unwrap_or(mantissa.len()) as i32;
    let mut d = Digits {
        negative,
        buf: [0; 32],
        len: 0,
        exp: 0,
    };
    let mut leading_zeros = 0i32;
    for &c in mantissa.as_bytes() {
        if c == b'.' {
            continue;
        }
        if d.len == 0 && c == b'0' {
            leading_zeros += 1;
            continue;
        }
        if d.len < d.buf.len() {
            d.buf[d.len] = c;
            d.len += 1;
        }
    }
    while d.len > 0 && d.buf[d.len - 1] == b'0' {
        d.len -= 1;
    }
    d.exp = int_len - leading_zeros + exp;
    d
}

/// Appends ASCII digits.
fn push_ascii(out: &mut String, digits: &[u8]) {
    // Digits are ASCII: valid UTF-8 one byte each.
    out.push_str(std::str::from_utf8(digits).unwrap_or_default());
}

/// Appends a timestamp in ms as Prometheus's `MarshalTimestamp`: seconds,
/// then `.` and exactly three digits of ms unless they are zero.
pub(crate) fn push_timestamp(out: &mut String, t: i64) {
    if t < 0 {
        out.push('-');
    }
    let t = t.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(t / 1000));
    let frac = t % 1000;
    if frac != 0 {
        out.push('.');
        out.push(char::from(b'0' + (frac / 100) as u8));
        out.push(char::from(b'0' + (frac / 10 % 10) as u8));
        out.push(char::from(b'0' + (frac % 10) as u8));
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    // Almost every label name and value needs no escape: one check over
    // all bytes (no early exit, so it vectorizes), then one copy.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20 && b != b'"' && b != b'\\'));
    if plain {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut last = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[last..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        last = i + 1;
    }
    out.push_str(&s[last..]);
    out.push('"');
}

/// Appends labels as a JSON object (sorted by name, as `Labels` are).
pub(crate) fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, &l.name);
        out.push(':');
        push_json_str(out, &l.value);
    }
    out.push('}');
}

/// Appends `[ts,"v"]`.
pub(crate) fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    push_timestamp(out, t);
    out.push_str(",\"");
    push_float(out, v);
    out.push_str("\"]");
}

/// Appends a histogram as Prometheus's `jsonutil.MarshalHistogram` does:
/// `{"count":"…","sum":"…","buckets":[[rule,"lower","upper","count"],…]}`
/// with every populated bucket in ascending order (no `buckets` field when
/// none is populated). The rule: 0 lower-open/upper-closed, 1
/// lower-closed/upper-open, 2 both open, 3 both closed.
pub(crate) fn push_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{\"count\":\"");
    push_float(out, h.count);
    out.push_str("\",\"sum\":\"");
    push_float(out, h.sum);
    out.push('"');
    let mut first = true;
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        out.push_str(if first { ",\"buckets\":[" } else { "," });
        first = false;
        let rule = match (b.lower_inclusive, b.upper_inclusive) {
            (true, true) => 3,
            (true, false) => 1,
            (false, true) => 0,
            (false, false) => 2,
        };
        out.push('[');
        out.push_str(&rule.to_string());
        for v in [b.lower, b.upper, b.count] {
            out.push_str(",\"");
            push_float(out, v);
            out.push('"');
        }
        out.push(']');
    }
    if !first {
        out.push(']');
    }
    out.push('}');
}

/// Appends `[ts,{histogram}]`.
pub(crate) fn push_histogram_point(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    push_timestamp(out, t);
    out.push(',');
    push_histogram(out, h);
    out.push(']');
}

/// Appends a JSON array of strings.
pub(crate) fn push_str_array<S: AsRef<str>>(out: &mut String, items: &[S]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, s.as_ref());
    }
    out.push(']');
}

/// Appends a query result as Prometheus's `{"resultType":…,"result":…}`.
pub(crate) fn push_query_data(out: &mut String, value: &Value) {
    out.push_str("{\"resultType\":\"");
    out.push_str(value.type_name());
    out.push_str("\",\"result\":");
    match value {
        Value::Scalar { t, v } => push_point(out, *t, *v),
        Value::String { t, v } => {
            out.push('[');
            push_timestamp(out, *t);
            out.push(',');
            push_json_str(out, v);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &s.labels);
                match &s.h {
                    None => {
                        out.push_str(",\"value\":");
                        push_point(out, s.t, s.v);
                    }
                    Some(h) => {
                        out.push_str(",\"histogram\":");
                        push_histogram_point(out, s.t, h);
                    }
                }
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, &s.labels);
                // Like Prometheus: `values` only with float points,
                // `histograms` only with histogram points.
                if !s.samples.is_empty() {
                    out.push_str(",\"values\":[");
                    for (j, p) in s.samples.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_point(out, p.t, p.v);
                    }
                    out.push(']');
                }
                if !s.histograms.is_empty() {
                    out.push_str(",\"histograms\":[");
                    for (j, p) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_histogram_point(out, p.t, &p.h);
                    }
                    out.push(']');
                }
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
}

/// A success envelope around already-encoded `data`, with warnings and
/// infos left out when empty.
pub(crate) fn success_body(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str(SUCCESS_HEAD);
    out.push_str(data);
    push_success_tail(&mut out, warnings, infos);
    out
}

/// [`success_body`] around a query result, encoded in place: one buffer,
/// sized up front, instead of the result's encoding copied into the
/// envelope.
pub(crate) fn query_success_body(value: &Value, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(estimated_len(value));
    out.push_str(SUCCESS_HEAD);
    push_query_data(&mut out, value);
    push_success_tail(&mut out, warnings, infos);
    out
}

const SUCCESS_HEAD: &str = "{\"status\":\"success\",\"data\":";

fn push_success_tail(out: &mut String, warnings: &[String], infos: &[String]) {
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        push_str_array(out, warnings);
    }
    if !infos.is_empty() {
        out.push_str(",\"infos\":");
        push_str_array(out, infos);
    }
    out.push('}');
}

/// About the bytes [`push_query_data`] writes for float results (a point
/// `[1712345678.123,"0.123456789"]` is ~30), so the buffer rarely grows.
fn estimated_len(value: &Value) -> usize {
    const POINT: usize = 32;
    let labels = |l: &Labels| l.size_bytes() / 2 + 16;
    match value {
        Value::Scalar { .. } | Value::String { .. } => 128,
        Value::Vector(v) => v.iter().map(|s| labels(&s.labels) + 48).sum::<usize>() + 64,
        Value::Matrix(m) => {
            m.iter()
                .map(|s| labels(&s.labels) + 32 + s.samples.len() * POINT)
                .sum::<usize>()
                + 64
        }
    }
}

/// An error envelope.
pub(crate) fn error_body(error_type: &str, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    out.push_str("{\"status\":\"error\",\"errorType\":");
    push_json_str(&mut out, error_type);
    out.push_str(",\"error\":");
    push_json_str(&mut out, message);
    out.push('}');
    out
}

/// A 200 JSON response with this body.
pub(crate) fn json(body: String) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A 200 success envelope around `data` (already JSON).
pub(crate) fn ok(data: &str, warnings: &[String]) -> Response {
    json(success_body(data, warnings, &[]))
}

/// The warning Prometheus adds when `limit` cut a result.
pub(crate) const TRUNCATED_WARNING: &str = "results truncated due to limit";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;
    use crate::promql::{InstantSample, RangeSeries};

    fn float(v: f64) -> String {
        let mut s = String::new();
        push_float(&mut s, v);
        s
    }

    fn ts(t: i64) -> String {
        let mut s = String::new();
        push_timestamp(&mut s, t);
        s
    }

    /// The formatting `push_float` replaced (core's shortest digits, Go's
    /// layout): the reference it must equal in layout and length for every
    /// float. The digits may differ in the last place where the exact
    /// value lies halfway between two shortest candidates: core rounds
    /// such ties up, Ryu and Go's `strconv` (`ryuFtoaShortest`) to even.
    fn reference_float(v: f64) -> String {
        if v.is_nan() {
            return "NaN".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
        }
        let abs = v.abs();
        if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
            let s = format!("{v:e}");
            let (m, e) = s.split_once('e').unwrap();
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        } else {
            format!("{v}")
        }
    }

    /// `push_float(v)` against the reference: the same text, or (a tie)
    /// the same text but the last significant digit one apart, ours even;
    /// and it always reads back as `v`.
    fn check_against_reference(v: f64) -> Result<(), String> {
        let (got, want) = (float(v), reference_float(v));
        if got == want {
            return Ok(());
        }
        if !v.is_finite() || got.parse::<f64>().map(f64::to_bits) != Ok(v.to_bits()) {
            return Err(format!("{v:?}: {got} does not read back"));
        }
        // The last digit of the mantissa (before any exponent).
        let last = |s: &str| s.find('e').unwrap_or(s.len()).checked_sub(1);
        let (gl, wl) = (last(&got), last(&want));
        let tie = got.len() == want.len()
            && gl == wl
            && gl.is_some_and(|i| {
                got[..i] == want[..i]
                    && got[i + 1..] == want[i + 1..]
                    && (got.as_bytes()[i] - b'0').is_multiple_of(2)
                    && got.as_bytes()[i].abs_diff(want.as_bytes()[i]) == 1
            });
        if tie {
            Ok(())
        } else {
            Err(format!("{v:?}: {got} vs {want}"))
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_push_float_equals_the_reference(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assert_eq!(check_against_reference(v), Ok(()));
        }

        #[test]
        fn prop_push_float_equals_the_reference_for_decimals(m in -10_000_000_000i64..10_000_000_000, e in -30i32..30) {
            let v = m as f64 * 10f64.powi(e);
            proptest::prop_assert_eq!(check_against_reference(v), Ok(()));
        }
    }

    #[test]
    fn push_float_rounds_exact_ties_to_even_as_go() {
        // -948080254496303.25 exactly: .2 and .3 both read back; Go's
        // strconv.FormatFloat(v, 'f', -1, 64) writes .2 (half to even),
        // core's Display .3.
        let v = -948_080_254_496_303.2;
        assert_eq!(float(v), "-948080254496303.2");
        assert_eq!(reference_float(v), "-948080254496303.3");
    }

    #[test]
    fn push_float_edges_equal_the_reference() {
        let mut cases = vec![
            9_007_199_254_740_992.0,
            9_007_199_254_740_993.0,
            -9_007_199_254_740_991.0,
            1e15,
            1e16,
            1e17,
            123_456_789_012_345_680.0,
            0.5,
            1e-5,
            1e-6,
            f64::from_bits(1e-6f64.to_bits() - 1),
            1e21,
            f64::from_bits(1e21f64.to_bits() - 1),
            f64::MAX,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            1.0 / 3.0,
            2.0 / 3.0 * 1e10,
        ];
        cases.extend((0..64).map(|i| 1.5 * 2f64.powi(i - 32)));
        for v in cases {
            assert_eq!(check_against_reference(v), Ok(()));
        }
    }

    #[test]
    fn push_float_matches_go_append_float() {
        let cases: &[(f64, &str)] = &[
            (1e-7, "1e-07"),
            (1.5e21, "1.5e+21"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (0.1, "0.1"),
            (100.0, "100"),
            (2.0, "2"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1e-6, "0.000001"),
            (9.99e-7, "9.99e-07"),
            (-2.5e-10, "-2.5e-10"),
            (1.2345678901234567e300, "1.2345678901234567e+300"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.30000000000000004, "0.30000000000000004"),
            (123456.789, "123456.789"),
        ];
        for &(v, want) in cases {
            assert_eq!(float(v), want, "{v:?}");
        }
    }

    #[test]
    fn push_timestamp_matches_marshal_timestamp() {
        let cases = [
            (1_435_781_451_781, "1435781451.781"),
            (1_435_781_451_780, "1435781451.780"),
            (1_435_781_451_000, "1435781451"),
            (4_000, "4"),
            (5, "0.005"),
            (50, "0.050"),
            (0, "0"),
            (-1_500, "-1.500"),
            (-5, "-0.005"),
            (i64::MIN, "-9223372036854775.808"),
        ];
        for (t, want) in cases {
            assert_eq!(ts(t), want, "{t}");
        }
    }

    #[test]
    fn push_json_str_escapes_like_serde_json() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n\r\t",
            "\u{1}\u{1f}",
            "é✓",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_push_json_str_reads_back(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
            let mut out = String::new();
            push_json_str(&mut out, &s);
            let back: String = serde_json::from_str(&out).unwrap();
            proptest::prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn query_data_shapes() {
        let labels = Labels::from_static(&[("__name__", "up"), ("job", "a\"b")]);
        let mut out = String::new();
        push_query_data(&mut out, &Value::Scalar { t: 4000, v: 2.0 });
        assert_eq!(out, r#"{"resultType":"scalar","result":[4,"2"]}"#);
        out.clear();
        push_query_data(
            &mut out,
            &Value::String {
                t: 1500,
                v: "x".into(),
            },
        );
        assert_eq!(out, r#"{"resultType":"string","result":[1.500,"x"]}"#);
        out.clear();
        push_query_data(&mut out, &Value::Vector(vec![]));
        assert_eq!(out, r#"{"resultType":"vector","result":[]}"#);
        out.clear();
        push_query_data(
            &mut out,
            &Value::Vector(vec![InstantSample {
                labels: labels.clone(),
                t: 1,
                v: f64::NAN,
                h: None,
            }]),
        );
        assert_eq!(
            out,
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[0.001,"NaN"]}]}"#
        );
        out.clear();
        push_query_data(
            &mut out,
            &Value::Matrix(vec![RangeSeries {
                labels,
                samples: vec![Sample::new(1000, 1.0), Sample::new(2000, f64::INFINITY)],
                histograms: Vec::new(),
            }]),
        );
        assert_eq!(
            out,
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\"b"},"values":[[1,"1"],[2,"+Inf"]]}]}"#
        );
    }

    /// The example of Prometheus's `MarshalHistogram` doc comment: zero
    /// bucket closed on both sides, positive buckets lower-open.
    fn doc_histogram() -> FloatHistogram {
        let mut h = FloatHistogram {
            schema: 0,
            count: 42.0,
            sum: 34593.34,
            zero_threshold: 0.25,
            zero_count: 3.0,
            ..Default::default()
        };
        h.set_positive(&[(-1, 12.0), (0, 21.0), (1, 0.0), (2, 6.0)]);
        h
    }

    #[test]
    fn histogram_encodes_like_marshal_histogram() {
        let mut out = String::new();
        push_histogram(&mut out, &doc_histogram());
        assert_eq!(
            out,
            r#"{"count":"42","sum":"34593.34","buckets":[[3,"-0.25","0.25","3"],[0,"0.25","0.5","12"],[0,"0.5","1","21"],[0,"2","4","6"]]}"#
        );
        // Negative buckets are lower-closed; no populated bucket, no field.
        let mut h = FloatHistogram {
            count: 1.0,
            sum: -1.5,
            ..Default::default()
        };
        h.set_negative(&[(1, 1.0)]);
        out.clear();
        push_histogram(&mut out, &h);
        assert_eq!(
            out,
            r#"{"count":"1","sum":"-1.5","buckets":[[1,"-2","-1","1"]]}"#
        );
        out.clear();
        push_histogram(&mut out, &FloatHistogram::default());
        assert_eq!(out, r#"{"count":"0","sum":"0"}"#);
        // Custom buckets: the first is closed below (at -Inf), all closed above.
        let mut c = FloatHistogram {
            schema: crate::model::histogram::CUSTOM_BUCKETS_SCHEMA,
            count: 3.0,
            sum: 2.0,
            custom_values: vec![1.0],
            ..Default::default()
        };
        c.set_positive(&[(0, 1.0), (1, 2.0)]);
        out.clear();
        push_histogram(&mut out, &c);
        assert_eq!(
            out,
            r#"{"count":"3","sum":"2","buckets":[[3,"-Inf","1","1"],[0,"1","+Inf","2"]]}"#
        );
    }

    #[test]
    fn query_data_histogram_samples_and_series() {
        let labels = Labels::from_static(&[("__name__", "h")]);
        let mut out = String::new();
        push_query_data(
            &mut out,
            &Value::Vector(vec![InstantSample {
                labels: labels.clone(),
                t: 1000,
                v: 0.0,
                h: Some(Box::new(doc_histogram())),
            }]),
        );
        assert!(
            out.starts_with(
                r#"{"resultType":"vector","result":[{"metric":{"__name__":"h"},"histogram":[1,{"count":"42","#
            ),
            "{out}"
        );
        out.clear();
        let small = FloatHistogram {
            count: 2.0,
            sum: 3.0,
            ..Default::default()
        };
        push_query_data(
            &mut out,
            &Value::Matrix(vec![RangeSeries {
                labels,
                samples: vec![Sample::new(1000, 1.0)],
                histograms: vec![crate::promql::HistogramPoint { t: 2000, h: small }],
            }]),
        );
        assert_eq!(
            out,
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"h"},"values":[[1,"1"]],"histograms":[[2,{"count":"2","sum":"3"}]]}]}"#
        );
    }

    #[test]
    fn envelopes_omit_empty_fields() {
        assert_eq!(
            success_body("[]", &[], &[]),
            r#"{"status":"success","data":[]}"#
        );
        assert_eq!(
            success_body("1", &["w".into()], &["i".into()]),
            r#"{"status":"success","data":1,"warnings":["w"],"infos":["i"]}"#
        );
        assert_eq!(
            error_body("bad_data", "x"),
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#
        );
    }
}
