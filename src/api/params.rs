//! Request parameters shared by every API handler: the merged form (POST
//! body first, then the URL query, as Go's `r.ParseForm`), and parsers for
//! times, durations, limits and `match[]` selectors with Prometheus's rules
//! and error messages (`web/api/v1/api.go` `parseTime`, `parseDuration`,
//! `parseLimitParam`, `parseMatchersParam`). Must not evaluate queries.

use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::Expr;

use crate::api::error::ApiError;
use crate::model::{calendar, MatchOp, Matcher, METRIC_NAME};
use crate::promql::Engine;

/// Largest accepted form body. Grafana's longest POSTs (many `match[]`
/// selectors) are well under a megabyte.
const MAX_FORM_BYTES: usize = 8 << 20;

/// Prometheus's `MinTime`/`MaxTime` in ms (`web/api/v1/api.go`): the
/// defaults of `start`/`end` on metadata calls, and what their RFC 3339
/// spellings parse to.
pub(crate) const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// See [`MIN_TIME_MS`].
pub(crate) const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// Decoded form parameters in order: body pairs, then URL query pairs.
/// Repeated keys (`match[]`) keep every value.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parameters from a raw query string and form body.
    pub(crate) fn from_parts(query: Option<&str>, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Self { pairs }
    }

    /// The first value of `name`, as Go's `FormValue` (empty when absent).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter, or `default` when absent.
    pub(crate) fn time_or(&self, name: &'static str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(s) => parse_time(s).map_err(|reason| ApiError::InvalidParam { name, reason }),
        }
    }

    /// A required time parameter (`start`/`end` of a range query).
    pub(crate) fn time(&self, name: &'static str) -> Result<i64, ApiError> {
        parse_time(self.get(name).unwrap_or(""))
            .map_err(|reason| ApiError::InvalidParam { name, reason })
    }

    /// A duration parameter in ns (`step`, `timeout`), if present.
    pub(crate) fn duration_ns(&self, name: &'static str) -> Result<Option<i128>, ApiError> {
        self.get(name)
            .map(|s| parse_duration_ns(s).map_err(|reason| ApiError::InvalidParam { name, reason }))
            .transpose()
    }

    /// `limit` as Prometheus's `parseLimitParam`: absent or 0 means none.
    pub(crate) fn limit(&self) -> Result<Option<usize>, ApiError> {
        let Some(s) = self.get("limit") else {
            return Ok(None);
        };
        let n: i64 = s.parse().map_err(|_| ApiError::InvalidParam {
            name: "limit",
            reason: format!("cannot parse {s:?} to a valid limit"),
        })?;
        if n < 0 {
            return Err(ApiError::InvalidParam {
                name: "limit",
                reason: "limit must be non-negative".into(),
            });
        }
        Ok((n > 0).then_some(n as usize))
    }

    /// The `match[]` selectors, each as a conjunction of matchers.
    pub(crate) fn matchers(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        self.all("match[]")
            .into_iter()
            .map(parse_selector)
            .collect()
    }
}

/// Reads the form from GET query strings and from POST bodies of type
/// `application/x-www-form-urlencoded`.
impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_string);
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        let body = if is_form && matches!(*req.method(), Method::POST | Method::PUT) {
            axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
                .await
                .map_err(|_| ApiError::FormTooLarge {
                    limit: MAX_FORM_BYTES,
                })?
        } else {
            Default::default()
        };
        Ok(Params::from_parts(query.as_deref(), &body))
    }
}

/// Parses a time: Unix seconds as a float (rounded to ms) or RFC 3339, as
/// Prometheus's `parseTime`. Returns ms since the epoch.
///
/// # Errors
/// `cannot parse "<s>" to a valid timestamp`.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("cannot parse {s:?} to a valid timestamp");
    if let Some(t) = parse_go_float(s) {
        // Go: s, ns := math.Modf(t); ns = math.Round(ns*1000)/1000;
        // time.Unix(int64(s), int64(ns*1e9)), then ms = floor(total ns / 1e6).
        if !t.is_finite() || t.abs() >= 9.2e15 {
            return Err(bad());
        }
        let secs = t.trunc();
        let frac = ((t - secs) * 1000.0).round() / 1000.0;
        let total_ns = secs as i128 * 1_000_000_000 + (frac * 1e9) as i128;
        return Ok(total_ns.div_euclid(1_000_000) as i64);
    }
    if let Some(ms) = parse_rfc3339(s) {
        return Ok(ms);
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME_MS),
        MAX_TIME_FORMATTED => Ok(MAX_TIME_MS),
        _ => Err(bad()),
    }
}

/// A float as Go's `strconv.ParseFloat` reads one for a time or duration:
/// decimal or exponent notation. (Go also takes `Inf`/`NaN`, which no
/// time can be, and hex floats, which no client sends.)
fn parse_go_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let ok = !body.is_empty()
        && body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'));
    if !ok {
        return None;
    }
    s.parse().ok()
}

/// RFC 3339 with optional fraction (`2015-07-01T20:10:51.781Z`,
/// `2015-07-01T22:10:51+02:00`) → ms since the epoch; digits past ms are
/// truncated, as `timestamp.FromTime`.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > i64::from(calendar::days_in_month(year, month as u32))
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let digits = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(start..start + digits)? * 10i64.pow(9 - digits as u32);
        i = start + digits;
    }
    let offset_s = match b.get(i)? {
        b'Z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = calendar::days_from_civil(year, month as u32, day as u32);
    let secs = days * calendar::SECS_PER_DAY + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1000 + nanos / 1_000_000)
}

/// Parses a duration: float seconds, or a Prometheus duration (`1h30m`,
/// `5m`, `250ms`, `1d`, `1w`, `1y`), into ns, as Prometheus's
/// `parseDuration`.
///
/// # Errors
/// `cannot parse "<s>" to a valid duration`, or the overflow message.
pub(crate) fn parse_duration_ns(s: &str) -> Result<i128, String> {
    if let Some(d) = parse_go_float(s) {
        let ns = d * 1e9;
        if !ns.is_finite() || ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i128);
    }
    crate::model::parse_duration_ms(s)
        .map(|ms| ms as i128 * 1_000_000)
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// Parses one `match[]` value: a vector selector without offset or `@`
/// (Prometheus's `parser.ParseMetricSelector`).
///
/// # Errors
/// `invalid parameter "match[]": …` (bad_data).
pub(crate) fn parse_selector(s: &str) -> Result<Vec<Matcher>, ApiError> {
    let invalid = |reason: String| ApiError::InvalidParam {
        name: "match[]",
        reason,
    };
    let expr = Engine::parse(s).map_err(|e| invalid(e.to_string()))?;
    match expr {
        Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => {
            selector_matchers(vs.name.as_deref(), &vs.matchers.matchers)
                .and_then(|ms| {
                    if vs.matchers.or_matchers.is_empty() {
                        Ok(ms)
                    } else {
                        Err("\"or\" in label matchers is not supported".into())
                    }
                })
                .map_err(invalid)
        }
        _ => Err(invalid(format!("{s:?} is not a series selector"))),
    }
}

/// Storage matchers of a selector (its name becomes `__name__="…"`).
pub(crate) fn selector_matchers(
    name: Option<&str>,
    matchers: &[PMatcher],
) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::with_capacity(matchers.len() + 1);
    if let Some(n) = name {
        out.push(Matcher::eq(METRIC_NAME, n));
    }
    for m in matchers {
        let op = match &m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Decodes a label name from a URL path segment: names starting `U__` are
/// Prometheus's value-encoding escape of UTF-8 names (`U__` prefix, `__`
/// for `_`, `_<hex code point>_` for any other character), which Grafana
/// uses for names outside the legacy character set. An invalid escape leaves
/// the name as given, as `model.UnescapeName` does.
pub(crate) fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        let mut code: u32 = 0;
        let mut digits = 0;
        loop {
            match chars.next() {
                None => return name.to_string(),
                Some('_') if digits == 0 => {
                    out.push('_');
                    break;
                }
                Some('_') => match char::from_u32(code) {
                    Some(ch) => {
                        out.push(ch);
                        break;
                    }
                    None => return name.to_string(),
                },
                Some(h) => {
                    let Some(d) = h.to_digit(16) else {
                        return name.to_string();
                    };
                    digits += 1;
                    if digits > 6 {
                        return name.to_string();
                    }
                    code = code * 16 + d;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_time_table() {
        let ok = [
            ("1435781451.781", 1_435_781_451_781),
            ("1435781451", 1_435_781_451_000),
            ("4", 4_000),
            ("1.5e3", 1_500_000),
            ("-1.5", -1_500),
            ("0.0005", 1),
            ("2015-07-01T20:10:51.781Z", 1_435_781_451_781),
            ("2015-07-01T20:10:51Z", 1_435_781_451_000),
            ("2015-07-01T22:10:51.781+02:00", 1_435_781_451_781),
            ("2015-07-01T18:10:51.781999999-02:00", 1_435_781_451_781),
            ("1970-01-01T00:00:04Z", 4_000),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000),
            (MIN_TIME_FORMATTED, MIN_TIME_MS),
            (MAX_TIME_FORMATTED, MAX_TIME_MS),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_time(s), Ok(ms), "{s}");
        }
        for bad in [
            "",
            "abc",
            "NaN",
            "Inf",
            "2015-07-01 20:10:51Z",
            "2015-13-01T20:10:51Z",
            "2023-02-29T00:00:00Z",
            "2015-07-01T20:10:51",
            "2015-07-01T20:10:51.Z",
            "1e300",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains("to a valid timestamp"), "{bad}: {err}");
        }
    }

    #[test]
    fn parse_duration_table() {
        let ok = [
            ("15", 15_000_000_000i128),
            ("0.5", 500_000_000),
            ("1m", 60_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("250ms", 250_000_000),
            ("1d", 86_400_000_000_000),
            ("0", 0),
        ];
        for (s, ns) in ok {
            assert_eq!(parse_duration_ns(s), Ok(ns), "{s}");
        }
        for bad in ["", "x", "1x", "30m1h", "1m1m", "-1m"] {
            assert!(parse_duration_ns(bad).is_err(), "{bad}");
        }
        assert!(parse_duration_ns("1e300")
            .unwrap_err()
            .contains("overflows"));
    }

    #[test]
    fn params_body_first_and_repeated_keys() {
        let p = Params::from_parts(
            Some("query=url&match%5B%5D=b&time="),
            b"query=body&match[]=a",
        );
        assert_eq!(p.get("query"), Some("body"));
        assert_eq!(p.all("match[]"), ["a", "b"]);
        assert_eq!(p.get("time"), None);
    }

    #[test]
    fn unescape_label_name_table() {
        let cases = [
            ("job", "job"),
            ("U__http_2e_status", "http.status"),
            ("U__a__b", "a_b"),
            ("U__caf_e9_", "café"),
            ("U__bad_zz_", "U__bad_zz_"),
            ("U__open_2e", "U__open_2e"),
        ];
        for (i, want) in cases {
            assert_eq!(unescape_label_name(i), want, "{i}");
        }
    }

    #[test]
    fn parse_selector_accepts_only_selectors() {
        assert_eq!(parse_selector(r#"up{job="a"}"#).unwrap().len(), 2);
        for bad in ["up[5m]", "1+1", "sum(up)", "up offset 5m", "{"] {
            let e = parse_selector(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid parameter \"match[]\""), "{bad}: {e}");
        }
    }
}
