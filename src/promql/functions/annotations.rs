//! The exact texts of PromQL warnings and infos, as upstream renders them
//! without a query attached (what `promqltest` compares, see
//! `shared/promql-tests/FORMAT.md` §7.2).
//!
//! Upstream keeps an annotation as an error carrying its position range;
//! when the HTTP API renders it with the query string, it appends
//! ` (<line>:<col>)` — the 1-based line and column of the start of the
//! offending expression — e.g. `… got NaN (1:20)`. The
//! forced-monotonicity info additionally gets
//! [`histogram_quantile_forced_monotonicity_details`] *before* that
//! position. The evaluator (or API layer) appends both; nothing here knows
//! positions. Upstream also deduplicates annotations by their text, so
//! callers should collect them in a set.
//!
//! Numbers are formatted like Go's `%g`, strings like Go's `%q`.
//!
//! Upstream: util/annotations/annotations.go @ v3.14.0.

const WARNING: &str = "PromQL warning";
const INFO: &str = "PromQL info";

/// Go's `strconv.Quote` / `%q`: double quotes, `\"` and `\\`, C escapes for
/// the usual control characters, `\xNN`/`\uNNNN`/`\UNNNNNNNN` for other
/// non-printable characters; printable Unicode is kept as is.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            // A raw byte of invalid UTF-8 from a `\xNN` escape (see
            // `engine::RAW_BYTE_BASE`): Go prints the byte.
            c if (crate::promql::engine::RAW_BYTE_BASE
                ..=crate::promql::engine::RAW_BYTE_BASE + 0xff)
                .contains(&(c as u32)) =>
            {
                out.push_str(&format!(
                    "\\x{:02x}",
                    c as u32 - crate::promql::engine::RAW_BYTE_BASE
                ));
            }
            // Approximates unicode.IsPrint: controls (C0/C1) and a few
            // format/separator characters are escaped.
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{ad}') => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Splits a finite non-zero `|v|` rendered by Rust's `{:e}` (shortest
/// round-trip or with a precision) into its decimal digits (no dot, no
/// trailing zeros) and decimal exponent `e` with `v = 0.d₁d₂… × 10^(e+1)`.
fn digits_and_exp(e_formatted: &str) -> (String, i32) {
    let (mantissa, exp) = e_formatted.split_once('e').unwrap_or((e_formatted, "0"));
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp.parse().unwrap_or(0))
}

/// Renders `digits × 10^exp` (one digit before the point) the way Go's
/// `%g` does: `%e` form (`d.ddde±XX`, at least two exponent digits) when
/// `exp < -4 || exp >= eprec`, plain decimal otherwise.
fn render_g(negative: bool, digits: &str, exp: i32, eprec: i32) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if exp < -4 || exp >= eprec {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".to_owned())
    } else if v == f64::INFINITY {
        Some("+Inf".to_owned())
    } else if v == f64::NEG_INFINITY {
        Some("-Inf".to_owned())
    } else if v == 0.0 {
        Some(if v.is_sign_negative() { "-0" } else { "0" }.to_owned())
    } else {
        None
    }
}

/// Go's `%g` (shortest representation): `NaN`, `+Inf`, `-Inf`, `-0`,
/// `0.1`, `1.01`, `100000`, `1e+06`, `1.5e-07`.
pub(crate) fn go_format_g(v: f64) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let (digits, exp) = digits_and_exp(&format!("{:e}", v.abs()));
    render_g(v < 0.0, &digits, exp, SHORTEST_G_EPREC)
}

/// Exponent threshold of Go's shortest `%g`: strconv decides `%e` vs `%f`
/// with precision 6 when formatting the shortest representation, so
/// `100000` stays decimal and a million becomes `1e+06`. (The threshold of
/// 21 belongs to `encoding/json`, not to `%g`.)
const SHORTEST_G_EPREC: i32 = 6;

/// Go's `%.{precision}g`: rounded to `precision` significant digits, then
/// as `%g` with `precision` as the exponent threshold (trailing zeros
/// dropped).
pub(crate) fn go_format_g_precision(v: f64, precision: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let precision = precision.max(1);
    let (digits, exp) = digits_and_exp(&format!("{:.*e}", precision - 1, v.abs()));
    let mut eprec = precision as i32;
    // Go: if eprec > digs.nd && digs.nd >= digs.dp { eprec = digs.nd }.
    let nd = digits.len() as i32;
    if eprec > nd && nd > exp {
        eprec = nd;
    }
    render_g(v < 0.0, &digits, exp, eprec)
}

/// `metric name "<name>"` suffix, left out for an empty name.
///
/// Upstream: `maybeAddMetricName`.
fn maybe_add_metric_name(msg: String, metric_name: &str) -> String {
    if metric_name.is_empty() {
        msg
    } else {
        format!("{msg} for metric name {}", go_quote(metric_name))
    }
}

/// `histogram_quantile` over classic buckets had to flatten a decrease.
/// Upstream passes the metric name only with delayed name removal enabled,
/// otherwise `""` (then the `for metric name …` part is left out).
///
/// `PromQL info: input to histogram_quantile needed to be fixed for
/// monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name "<name>"`
///
/// Upstream: `NewHistogramQuantileForcedMonotonicityInfo`.
pub(crate) fn histogram_quantile_forced_monotonicity_info(metric_name: &str) -> String {
    maybe_add_metric_name(
        format!(
            "{INFO}: input to histogram_quantile needed to be fixed for monotonicity \
             (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
        ),
        metric_name,
    )
}

/// A `le` label that does not parse as a float.
///
/// `PromQL warning: bucket label "le" is missing or has a malformed value of "<label>" for metric name "<name>"`
///
/// Upstream: `NewBadBucketLabelWarning`.
pub(crate) fn bad_bucket_label_warning(metric_name: &str, label: &str) -> String {
    maybe_add_metric_name(
        format!(
            "{WARNING}: bucket label \"le\" is missing or has a malformed value of {}",
            go_quote(label)
        ),
        metric_name,
    )
}

/// A quantile parameter that is NaN or outside [0, 1] (`quantile`,
/// `quantile_over_time`, `histogram_quantile(s)`).
///
/// `PromQL warning: quantile value should be between 0 and 1, got <q>`
///
/// Upstream: `NewInvalidQuantileWarning`.
pub(crate) fn invalid_quantile_warning(q: f64) -> String {
    format!(
        "{WARNING}: quantile value should be between 0 and 1, got {}",
        go_format_g(q)
    )
}

/// `rate`/`increase` over a float series whose name does not end in
/// `_total`, `_sum`, `_count` or `_bucket` (see
/// [`super::rate::is_possible_non_counter`]).
///
/// `PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "<name>"`
///
/// Upstream: `NewPossibleNonCounterInfo`.
pub(crate) fn possible_non_counter_info(metric_name: &str) -> String {
    format!(
        "{INFO}: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
        go_quote(metric_name)
    )
}

/// A range function that cannot mix float and histogram samples.
///
/// `PromQL warning: encountered a mix of histograms and floats for metric name "<name>"`
///
/// Upstream: `NewMixedFloatsHistogramsWarning`.
pub(crate) fn mixed_floats_histograms_warning(metric_name: &str) -> String {
    format!(
        "{WARNING}: encountered a mix of histograms and floats for metric name {}",
        go_quote(metric_name)
    )
}

/// `sum`/`avg` over a group with both floats and histograms.
///
/// `PromQL warning: encountered a mix of histograms and floats for aggregation`
///
/// Upstream: `NewMixedFloatsHistogramsAggWarning`.
pub(crate) fn mixed_floats_histograms_agg_warning() -> String {
    format!("{WARNING}: encountered a mix of histograms and floats for aggregation")
}

/// `histogram_quantile`/`histogram_fraction` input with classic and native
/// histograms for the same series.
///
/// `PromQL warning: vector contains a mix of classic and native histograms for metric name "<name>"`
///
/// Upstream: `NewMixedClassicNativeHistogramsWarning`.
pub(crate) fn mixed_classic_native_histograms_warning(metric_name: &str) -> String {
    maybe_add_metric_name(
        format!("{WARNING}: vector contains a mix of classic and native histograms"),
        metric_name,
    )
}

/// `PromQL warning: this native histogram metric is not a counter: "<name>"`
///
/// Upstream: `NewNativeHistogramNotCounterWarning`.
pub(crate) fn native_histogram_not_counter_warning(metric_name: &str) -> String {
    format!(
        "{WARNING}: this native histogram metric is not a counter: {}",
        go_quote(metric_name)
    )
}

/// `PromQL warning: this native histogram metric is not a gauge: "<name>"`
///
/// Upstream: `NewNativeHistogramNotGaugeWarning`.
pub(crate) fn native_histogram_not_gauge_warning(metric_name: &str) -> String {
    format!(
        "{WARNING}: this native histogram metric is not a gauge: {}",
        go_quote(metric_name)
    )
}

/// `PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name "<name>"`
///
/// Upstream: `NewMixedExponentialCustomHistogramsWarning`.
pub(crate) fn mixed_exponential_custom_histograms_warning(metric_name: &str) -> String {
    format!(
        "{WARNING}: vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}",
        go_quote(metric_name)
    )
}

/// `PromQL warning: incompatible bucket layout encountered for binary operator <op>`
///
/// Upstream: `NewIncompatibleBucketLayoutInBinOpWarning`.
pub(crate) fn incompatible_bucket_layout_in_bin_op_warning(operator: &str) -> String {
    format!("{WARNING}: incompatible bucket layout encountered for binary operator {operator}")
}

/// `sort`/`sort_desc`/`sort_by_label(_desc)` in a range query.
///
/// `PromQL warning: sort is ineffective for range queries since results are always ordered by labels`
///
/// Upstream: `NewSortInRangeQueryWarning`.
pub(crate) fn sort_in_range_query_warning() -> String {
    format!("{WARNING}: sort is ineffective for range queries since results are always ordered by labels")
}

/// Histogram operation named in the counter-reset-collision warning and
/// the mismatched-custom-buckets info.
///
/// Upstream: `HistogramOperation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistogramOperation {
    /// `addition`
    Add,
    /// `subtraction`
    Sub,
    /// `aggregation`
    Agg,
}

impl HistogramOperation {
    fn as_str(self) -> &'static str {
        match self {
            HistogramOperation::Add => "addition",
            HistogramOperation::Sub => "subtraction",
            HistogramOperation::Agg => "aggregation",
        }
    }
}

/// `PromQL warning: conflicting counter resets during histogram <operation>`
///
/// Upstream: `NewHistogramCounterResetCollisionWarning`.
pub(crate) fn histogram_counter_reset_collision_warning(op: HistogramOperation) -> String {
    format!(
        "{WARNING}: conflicting counter resets during histogram {}",
        op.as_str()
    )
}

/// `PromQL info: mismatched custom buckets were reconciled during <operation>`
///
/// Upstream: `NewMismatchedCustomBucketsHistogramsInfo`.
pub(crate) fn mismatched_custom_buckets_histograms_info(op: HistogramOperation) -> String {
    format!(
        "{INFO}: mismatched custom buckets were reconciled during {}",
        op.as_str()
    )
}

/// A binary operator between sample types it cannot combine, e.g.
/// `("histogram", "+", "float")`.
///
/// `PromQL info: incompatible sample types encountered for binary operator "<op>": <lhs> <op> <rhs>`
///
/// Upstream: `NewIncompatibleTypesInBinOpInfo`.
pub(crate) fn incompatible_types_in_bin_op_info(
    lhs_type: &str,
    operator: &str,
    rhs_type: &str,
) -> String {
    format!(
        "{INFO}: incompatible sample types encountered for binary operator {}: {lhs_type} {operator} {rhs_type}",
        go_quote(operator)
    )
}

/// A histogram skipped by a float-only aggregation (`min`, `max`,
/// `stddev`, `stdvar`, `quantile`, `topk`, `bottomk`, …).
///
/// `PromQL info: ignored histogram in <aggregation> aggregation`
///
/// Upstream: `NewHistogramIgnoredInAggregationInfo`.
pub(crate) fn histogram_ignored_in_aggregation_info(aggregation: &str) -> String {
    format!("{INFO}: ignored histogram in {aggregation} aggregation")
}

/// Histograms skipped in a range holding floats too (`min/max/stddev/
/// stdvar/quantile/mad_over_time`, `deriv`, `predict_linear`, …).
///
/// `PromQL info: ignored histograms in a range containing both floats and histograms for metric name "<name>"`
///
/// Upstream: `NewHistogramIgnoredInMixedRangeInfo`.
pub(crate) fn histogram_ignored_in_mixed_range_info(metric_name: &str) -> String {
    format!(
        "{INFO}: ignored histograms in a range containing both floats and histograms for metric name {}",
        go_quote(metric_name)
    )
}

/// `PromQL info: input to histogram_quantile has NaN observations, result is NaN`
/// (+ ` for metric name "<name>"` when named)
///
/// Upstream: `NewNativeHistogramQuantileNaNResultInfo`.
pub(crate) fn native_histogram_quantile_nan_result_info(metric_name: &str) -> String {
    maybe_add_metric_name(
        format!("{INFO}: input to histogram_quantile has NaN observations, result is NaN"),
        metric_name,
    )
}

/// `PromQL info: input to histogram_quantile has NaN observations, result is skewed higher`
/// (+ ` for metric name "<name>"` when named)
///
/// Upstream: `NewNativeHistogramQuantileNaNSkewInfo`.
pub(crate) fn native_histogram_quantile_nan_skew_info(metric_name: &str) -> String {
    maybe_add_metric_name(
        format!(
            "{INFO}: input to histogram_quantile has NaN observations, result is skewed higher"
        ),
        metric_name,
    )
}

/// `PromQL info: input to histogram_fraction has NaN observations, which are excluded from all fractions`
/// (+ ` for metric name "<name>"` when named)
///
/// Upstream: `NewNativeHistogramFractionNaNsInfo`.
pub(crate) fn native_histogram_fraction_nans_info(metric_name: &str) -> String {
    maybe_add_metric_name(
        format!(
            "{INFO}: input to histogram_fraction has NaN observations, which are excluded from all fractions"
        ),
        metric_name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `expect warn/info msg:` text in shared/promql-tests that a
    /// kernel-side annotation produces, with the call that must produce it.
    #[test]
    fn annotation_texts_match_promql_tests() {
        let cases: Vec<(String, &str)> = vec![
            (
                invalid_quantile_warning(f64::NAN),
                "PromQL warning: quantile value should be between 0 and 1, got NaN",
            ),
            (
                bad_bucket_label_warning("series", ""),
                r#"PromQL warning: bucket label "le" is missing or has a malformed value of "" for metric name "series""#,
            ),
            (
                bad_bucket_label_warning("series", "Hello World"),
                r#"PromQL warning: bucket label "le" is missing or has a malformed value of "Hello World" for metric name "series""#,
            ),
            (
                mixed_classic_native_histograms_warning("series"),
                r#"PromQL warning: vector contains a mix of classic and native histograms for metric name "series""#,
            ),
            (
                sort_in_range_query_warning(),
                "PromQL warning: sort is ineffective for range queries since results are always ordered by labels",
            ),
            (
                native_histogram_not_counter_warning("http_requests_histogram"),
                r#"PromQL warning: this native histogram metric is not a counter: "http_requests_histogram""#,
            ),
            (
                native_histogram_not_gauge_warning("http_requests_counter"),
                r#"PromQL warning: this native histogram metric is not a gauge: "http_requests_counter""#,
            ),
            (
                mixed_floats_histograms_warning("http_requests_mix"),
                r#"PromQL warning: encountered a mix of histograms and floats for metric name "http_requests_mix""#,
            ),
            (
                mixed_exponential_custom_histograms_warning("mixed_hist"),
                r#"PromQL warning: vector contains a mix of histograms with exponential and custom buckets schemas for metric name "mixed_hist""#,
            ),
            (
                mismatched_custom_buckets_histograms_info(HistogramOperation::Sub),
                "PromQL info: mismatched custom buckets were reconciled during subtraction",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn other_annotation_texts() {
        let cases: Vec<(String, &str)> = vec![
            (
                histogram_quantile_forced_monotonicity_info(""),
                "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)",
            ),
            (
                histogram_quantile_forced_monotonicity_info("series_1"),
                r#"PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name "series_1""#,
            ),
            (
                possible_non_counter_info("http_requests"),
                r#"PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "http_requests""#,
            ),
            (histogram_ignored_in_aggregation_info("sum"), "PromQL info: ignored histogram in sum aggregation"),
            (
                histogram_ignored_in_mixed_range_info("m"),
                r#"PromQL info: ignored histograms in a range containing both floats and histograms for metric name "m""#,
            ),
            (
                incompatible_types_in_bin_op_info("histogram", "+", "float"),
                r#"PromQL info: incompatible sample types encountered for binary operator "+": histogram + float"#,
            ),
            (
                mixed_floats_histograms_agg_warning(),
                "PromQL warning: encountered a mix of histograms and floats for aggregation",
            ),
            (
                histogram_counter_reset_collision_warning(HistogramOperation::Agg),
                "PromQL warning: conflicting counter resets during histogram aggregation",
            ),
            (
                native_histogram_quantile_nan_result_info(""),
                "PromQL info: input to histogram_quantile has NaN observations, result is NaN",
            ),
            (
                invalid_quantile_warning(-0.1),
                "PromQL warning: quantile value should be between 0 and 1, got -0.1",
            ),
            (
                invalid_quantile_warning(1.01),
                "PromQL warning: quantile value should be between 0 and 1, got 1.01",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn go_format_g_table() {
        let cases: &[(f64, &str)] = &[
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (-1.1, "-1.1"),
            (0.1, "0.1"),
            (1.01, "1.01"),
            (100000.0, "100000"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for (v, want) in cases {
            assert_eq!(go_format_g(*v), *want, "{v}");
        }
    }

    #[test]
    fn go_format_g_precision_table() {
        let cases: &[(f64, &str)] = &[
            (10.0, "10"),
            (7.5, "7.5"),
            (0.01, "0.01"),
            (0.05, "0.05"),
            (123.0, "1.2e+02"),
            (5.5, "5.5"),
            (0.125, "0.12"),
            (99.9, "1e+02"),
            (1.0, "1"),
        ];
        for (v, want) in cases {
            assert_eq!(go_format_g_precision(*v, 2), *want, "{v}");
        }
    }

    #[test]
    fn go_quote_table() {
        let cases: &[(&str, &str)] = &[
            ("", r#""""#),
            ("series", r#""series""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("tab\there\n", r#""tab\there\n""#),
            ("\u{1}", r#""\x01""#),
            ("ünï", "\"ünï\""),
            ("\u{85}", r#""\u0085""#),
        ];
        for (s, want) in cases {
            assert_eq!(go_quote(s), *want, "{s:?}");
        }
    }
}
