//! The `.test` script language (shared/promql-tests/FORMAT.md §1–7): file
//! structure, durations, series notation, eval headers and expectation
//! blocks. Pure parsing: nothing here touches storage or the engine.
//!
//! Eval blocks are split off at file level but parsed per case
//! ([`parse_eval_block`]), so a malformed expectation fails that case only,
//! and the blocks of skipped (histogram/experimental) cases are never parsed.

use regex::Regex;
use tidemark::model::{CounterResetHint, FloatHistogram, Labels, Span, STALE_NAN};

/// One slot of an expanded value list (§4.2).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Slot {
    /// `_`: no sample in this slot.
    Gap,
    /// A float sample; `stale` is [`STALE_NAN`].
    Float(f64),
    /// A native-histogram sample (§4.3); `hint_set` says whether the
    /// literal gave `counter_reset_hint` (only then is it compared).
    Histogram {
        h: Box<FloatHistogram>,
        hint_set: bool,
    },
}

/// Parses one `{{key:value …}}` histogram literal (§4.3), braces included;
/// returns the histogram and whether it set `counter_reset_hint`.
pub(crate) fn parse_histogram(s: &str) -> Result<(FloatHistogram, bool), String> {
    let inner = s
        .strip_prefix("{{")
        .and_then(|x| x.strip_suffix("}}"))
        .ok_or_else(|| format!("histogram literal {s:?} is not in {{{{…}}}}"))?;
    let mut h = FloatHistogram::default();
    let mut hint_set = false;
    let (mut buckets, mut offset) = (None::<Vec<f64>>, 0i32);
    let (mut n_buckets, mut n_offset) = (None::<Vec<f64>>, 0i32);
    let mut seen: Vec<&str> = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("histogram literal {s:?}: key without value"))?;
        let key = rest[..colon].trim();
        if seen.contains(&key) {
            return Err(format!("histogram literal {s:?}: {key} given twice"));
        }
        seen.push(key);
        let after = rest[colon + 1..].trim_start();
        let (value, next) = if let Some(list) = after.strip_prefix('[') {
            let end = list
                .find(']')
                .ok_or_else(|| format!("histogram literal {s:?}: unterminated list"))?;
            (&list[..end], &list[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let num = |v: &str| -> Result<f64, String> {
            parse_value_float(v).map_err(|e| format!("histogram literal {s:?}: {key}: {e}"))
        };
        let list =
            |v: &str| -> Result<Vec<f64>, String> { v.split_whitespace().map(num).collect() };
        let int = |v: &str| -> Result<i32, String> {
            v.parse::<i32>()
                .map_err(|_| format!("histogram literal {s:?}: {key}: bad integer {v:?}"))
        };
        match key {
            "schema" => h.schema = int(value)?,
            "sum" => h.sum = num(value)?,
            "count" => h.count = num(value)?,
            "z_bucket" => h.zero_count = num(value)?,
            "z_bucket_w" => h.zero_threshold = num(value)?,
            "buckets" => buckets = Some(list(value)?),
            "offset" => offset = int(value)?,
            "n_buckets" => n_buckets = Some(list(value)?),
            "n_offset" => n_offset = int(value)?,
            "custom_values" => h.custom_values = list(value)?,
            "counter_reset_hint" => {
                hint_set = true;
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => {
                        return Err(format!(
                            "histogram literal {s:?}: unknown counter_reset_hint {other:?}"
                        ))
                    }
                };
            }
            other => return Err(format!("histogram literal {s:?}: unknown key {other:?}")),
        }
        rest = next.trim_start();
    }
    // One span per side, at the offset, covering the buckets as given.
    let span = |b: &Option<Vec<f64>>, offset: i32| match b {
        Some(b) if !b.is_empty() => vec![Span {
            offset,
            length: b.len() as u32,
        }],
        _ => Vec::new(),
    };
    h.positive_spans = span(&buckets, offset);
    h.negative_spans = span(&n_buckets, n_offset);
    h.positive_buckets = buckets.unwrap_or_default();
    h.negative_buckets = n_buckets.unwrap_or_default();
    Ok((h, hint_set))
}

/// Expands a histogram item: `{{A}}`, `{{A}}xN`, `{{A}}+{{B}}xN`,
/// `{{A}}-{{B}}xN` (§4.2; sums by histogram addition, as upstream's
/// parser, which takes the hint flag of the increment).
fn expand_histogram_item(item: &str) -> Result<Vec<Slot>, String> {
    let bad = || format!("invalid histogram item {item:?}");
    let first_end = item.find("}}").ok_or_else(bad)? + 2;
    let (base, base_hint) = parse_histogram(&item[..first_end])?;
    let tail = &item[first_end..];
    let slot = |h: FloatHistogram, hint_set: bool| Slot::Histogram {
        h: Box::new(h),
        hint_set,
    };
    if tail.is_empty() {
        return Ok(vec![slot(base, base_hint)]);
    }
    if let Some(op @ ('+' | '-')) = tail.chars().next() {
        let inc_text = &tail[1..];
        let inc_end = inc_text.rfind("}}").ok_or_else(bad)? + 2;
        let (inc, hint_set) = parse_histogram(&inc_text[..inc_end])?;
        let ("", Some(n)) = split_times(&inc_text[inc_end..])? else {
            return Err(bad());
        };
        let mut out = Vec::with_capacity(n + 1);
        let mut cur = base;
        out.push(slot(cur.clone(), hint_set));
        for _ in 0..n {
            if cur.schema > inc.schema {
                return Err(format!(
                    "{item:?}: cannot merge from schema {} to {}",
                    inc.schema, cur.schema
                ));
            }
            let mut next = cur.clone();
            let r = if op == '+' {
                next.add(&inc)
            } else {
                next.sub(&inc)
            };
            r.map_err(|e| format!("{item:?}: {e}"))?;
            out.push(slot(next.clone(), hint_set));
            cur = next;
        }
        return Ok(out);
    }
    match split_times(tail)? {
        ("", Some(n)) => Ok(vec![slot(base, base_hint); n + 1]),
        _ => Err(bad()),
    }
}

/// A top-level command of a file.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// `load <interval>` (or `load_with_nhcb`) and its series lines.
    Load {
        line: usize,
        interval_ms: i64,
        /// `(line number, text)` of each series line.
        series: Vec<(usize, String)>,
        /// `load_with_nhcb`: also derive custom-bucket histograms (§5.1).
        nhcb: bool,
    },
    /// `clear`.
    Clear,
    /// An `eval` command; its block is parsed when the case runs.
    Eval(EvalCmd),
}

/// Whether an eval is an instant or a range query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum EvalKind {
    /// `eval instant at <t>`.
    Instant { t: i64 },
    /// `eval range from <start> to <end> step <step>`.
    Range { start: i64, end: i64, step: i64 },
}

/// An `eval` header with its raw block.
#[derive(Debug, Clone)]
pub(crate) struct EvalCmd {
    /// 1-based line of the header: the case id with the file name.
    pub(crate) line: usize,
    pub(crate) kind: EvalKind,
    /// The expression, verbatim.
    pub(crate) expr: String,
    /// `eval_fail`, `eval_warn`, `eval_info`, `eval_ordered` (§7.4).
    pub(crate) deprecated: Deprecated,
    /// `(line number, trimmed text)` of each block line.
    pub(crate) block: Vec<(usize, String)>,
}

/// The implied expectation of a deprecated `eval_*` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deprecated {
    None,
    Fail,
    Warn,
    Info,
    Ordered,
}

/// How an annotation or error text must look (§7.1).
#[derive(Debug, Clone)]
pub(crate) enum TextMatch {
    /// No `msg:`/`regex:`: anything matches.
    Any,
    /// `msg:`: exact equality.
    Msg(String),
    /// `regex:`: unanchored search.
    Regex(Regex),
}

impl TextMatch {
    pub(crate) fn matches(&self, text: &str) -> bool {
        match self {
            TextMatch::Any => true,
            TextMatch::Msg(m) => m == text,
            TextMatch::Regex(r) => r.is_match(text),
        }
    }
}

impl std::fmt::Display for TextMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextMatch::Any => write!(f, "(any)"),
            TextMatch::Msg(m) => write!(f, "msg: {m}"),
            TextMatch::Regex(r) => write!(f, "regex: {}", r.as_str()),
        }
    }
}

/// One expected series line.
#[derive(Debug, Clone)]
pub(crate) struct ExpectedSeries {
    pub(crate) labels: Labels,
    pub(crate) slots: Vec<Slot>,
    /// 1-based position among the block's series lines (for `ordered`).
    pub(crate) pos: usize,
}

/// Everything an eval block asks for (§6.3, §7).
#[derive(Debug, Clone, Default)]
pub(crate) struct Expectations {
    pub(crate) fail: Option<TextMatch>,
    pub(crate) warn: Vec<TextMatch>,
    pub(crate) info: Vec<TextMatch>,
    pub(crate) no_warn: bool,
    pub(crate) no_info: bool,
    /// `eval_warn`: at least one warning, texts unchecked.
    pub(crate) some_warn: bool,
    /// `eval_info`: at least one info, texts unchecked.
    pub(crate) some_info: bool,
    pub(crate) ordered: bool,
    /// `expect range vector from … to … step …` as (start, end, step) ms.
    pub(crate) range_vector: Option<(i64, i64, i64)>,
    pub(crate) string: Option<String>,
    pub(crate) scalar: Option<f64>,
    /// Expected series lines; a later line with the same labels replaces
    /// an earlier one (upstream keys them by label hash).
    pub(crate) series: Vec<ExpectedSeries>,
}

/// Parses a Prometheus duration (`0`, `1m30s`, `20s500ms`) into ms (§3).
pub(crate) fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    // Units in the only order allowed, each at most once.
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let bad = || format!("invalid duration {s:?}");
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let idx = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(bad)?
            + next_unit;
        next_unit = idx + 1;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// Parses a float of the value notation: decimal or `Inf`/`NaN` in any
/// case, `_` digit separators, no hex (§4.2).
pub(crate) fn parse_value_float(s: &str) -> Result<f64, String> {
    let bad = || format!("invalid number {s:?}");
    let unsigned = s.trim_start_matches(['+', '-']);
    if unsigned.len() + 1 < s.len() || unsigned.is_empty() {
        return Err(bad());
    }
    if unsigned.len() > 1 && (unsigned.starts_with("0x") || unsigned.starts_with("0X")) {
        return Err(bad());
    }
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "nan" {
        return s.parse::<f64>().map_err(|_| bad());
    }
    if !unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
    {
        return Err(bad());
    }
    let cleaned: String = if s.contains('_') {
        let b = s.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c == b'_' {
                let ok = i > 0
                    && i + 1 < b.len()
                    && b[i - 1].is_ascii_digit()
                    && b[i + 1].is_ascii_digit();
                if !ok {
                    return Err(bad());
                }
            }
        }
        s.replace('_', "")
    } else {
        s.to_string()
    };
    cleaned.parse::<f64>().map_err(|_| bad())
}

/// Parses an expected scalar line: Go `ParseInt(s, 0, 64)` then
/// `ParseFloat` (§6.3 rule 5). `None` when the line is not a number.
pub(crate) fn parse_scalar_line(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let int = |digits: &str, radix: u32| -> Option<f64> {
        if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') {
            return None;
        }
        let v = i64::from_str_radix(&digits.replace('_', ""), radix).ok()?;
        Some(if neg { -(v as f64) } else { v as f64 })
    };
    let lower = body.to_ascii_lowercase();
    let as_int = if let Some(h) = lower.strip_prefix("0x") {
        int(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        int(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        int(b, 2)
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        int(&body[1..], 8)
    } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        int(body, 10)
    } else {
        None
    };
    if as_int.is_some() {
        return as_int;
    }
    match lower.as_str() {
        "inf" | "infinity" | "nan" => return s.parse::<f64>().ok(),
        _ => {}
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Splits a series line into its metric part and the values text: the
/// metric part ends at the first blank outside braces and quotes.
pub(crate) fn split_metric(line: &str) -> Result<(&str, &str), String> {
    let b = line.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            q @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= b.len() {
                    return Err(format!("unterminated string in {line:?}"));
                }
            }
            b' ' | b'\t' if depth == 0 => return Ok((&line[..i], line[i..].trim())),
            _ => {}
        }
        i += 1;
    }
    Ok((line, ""))
}

/// Unquotes a PromQL/Go string literal (`"…"`, `'…'` with escapes,
/// `` `…` `` raw). `s` must be exactly the literal.
pub(crate) fn unquote(s: &str) -> Result<String, String> {
    let bad = |why: &str| format!("invalid string literal {s:?}: {why}");
    let q = s.chars().next().ok_or_else(|| bad("empty"))?;
    if !matches!(q, '"' | '\'' | '`') || s.len() < 2 || !s.ends_with(q) {
        return Err(bad("not quoted"));
    }
    let body = &s[1..s.len() - 1];
    if q == '`' {
        if body.contains('`') {
            return Err(bad("backquote inside"));
        }
        return Ok(body.to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.char_indices();
    let hex = |digits: &str| u32::from_str_radix(digits, 16).map_err(|_| bad("bad hex escape"));
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Err(bad("unescaped quote"));
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let (_, e) = chars.next().ok_or_else(|| bad("trailing backslash"))?;
        let simple = match e {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '\'' if q == '\'' => Some(b'\''),
            '"' if q == '"' => Some(b'"'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            continue;
        }
        let start = i + 2;
        let take = |n: usize, chars: &mut std::str::CharIndices<'_>| -> Result<&str, String> {
            let digits = body
                .get(start..start + n)
                .ok_or_else(|| bad("short escape"))?;
            for _ in 0..n {
                chars.next();
            }
            Ok(digits)
        };
        match e {
            'x' => out.push(hex(take(2, &mut chars)?)? as u8),
            'u' | 'U' => {
                let n = if e == 'u' { 4 } else { 8 };
                let cp = hex(take(n, &mut chars)?)?;
                let c = char::from_u32(cp).ok_or_else(|| bad("bad code point"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            '0'..='7' => {
                let digits = body.get(i + 1..i + 4).ok_or_else(|| bad("short octal"))?;
                chars.next();
                chars.next();
                let v = u32::from_str_radix(digits, 8).map_err(|_| bad("bad octal"))?;
                out.push(u8::try_from(v).map_err(|_| bad("octal > 255"))?);
            }
            _ => return Err(bad("unknown escape")),
        }
    }
    String::from_utf8(out).map_err(|_| bad("not UTF-8"))
}

/// Reads one quoted literal at the start of `s`; returns it (with quotes)
/// and the rest.
fn take_quoted(s: &str) -> Result<(&str, &str), String> {
    let b = s.as_bytes();
    let q = b[0];
    let mut i = 1;
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' && q != b'`' {
            i += 1;
        }
        i += 1;
    }
    if i >= b.len() {
        return Err(format!("unterminated string in {s:?}"));
    }
    Ok((&s[..=i], &s[i + 1..]))
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Parses the metric part of a series line (§4.1): `name`, `name{l="v"}`,
/// `{__name__="n", l="v"}`, `{"quoted.name", "l.x"="v"}`, `{}`. Only `=`
/// matchers; the name may be a PromQL keyword.
pub(crate) fn parse_metric(s: &str) -> Result<Labels, String> {
    let bad = |why: &str| format!("invalid series descriptor {s:?}: {why}");
    let name_len = s.find('{').unwrap_or(s.len());
    let name = &s[..name_len];
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        if !name.chars().all(is_name_char) || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("bad metric name"));
        }
        pairs.push(("__name__".into(), name.into()));
    }
    let mut rest = &s[name_len..];
    if rest.is_empty() {
        if name.is_empty() {
            return Err(bad("empty"));
        }
    } else {
        rest = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| bad("unbalanced braces"))?;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            // A label name: identifier or quoted string.
            let label: String;
            if rest.starts_with(['"', '\'', '`']) {
                let (lit, r) = take_quoted(rest)?;
                label = unquote(lit)?;
                rest = r.trim_start();
            } else {
                let n = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
                if n == 0 {
                    return Err(bad("expected a label name"));
                }
                label = rest[..n].to_string();
                rest = rest[n..].trim_start();
            }
            if let Some(r) = rest.strip_prefix('=') {
                if r.starts_with('~') || r.starts_with('=') {
                    return Err(bad("only = matchers are allowed"));
                }
                rest = r.trim_start();
                if !rest.starts_with(['"', '\'', '`']) {
                    return Err(bad("label value must be a string"));
                }
                let (lit, r) = take_quoted(rest)?;
                pairs.push((label, unquote(lit)?));
                rest = r.trim_start();
            } else {
                // A lone quoted string is the metric name.
                pairs.push(("__name__".into(), label));
            }
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.trim().is_empty() => break,
                None => return Err(bad("expected , or }")),
            }
        }
    }
    Labels::try_from_pairs(pairs).map_err(|e| bad(&e.to_string()))
}

/// Splits the values text into items; a `{{…}}` histogram literal (which
/// contains blanks) stays one item with whatever is glued to it.
fn split_items(s: &str) -> Result<Vec<&str>, String> {
    let mut items = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' || b[i] == b'\t' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
            if s[i..].starts_with("{{") {
                let end = s[i..]
                    .find("}}")
                    .ok_or_else(|| format!("unterminated histogram in {s:?}"))?;
                i += end + 2;
            } else {
                i += 1;
            }
        }
        items.push(&s[start..i]);
    }
    Ok(items)
}

/// Splits `xN` off the end of an item.
fn split_times(item: &str) -> Result<(&str, Option<usize>), String> {
    if let Some(pos) = item.rfind('x') {
        let n = &item[pos + 1..];
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            let n = n
                .parse::<usize>()
                .map_err(|_| format!("bad repeat count in {item:?}"))?;
            return Ok((&item[..pos], Some(n)));
        }
    }
    Ok((item, None))
}

/// Expands one item into slots (§4.2).
pub(crate) fn expand_item(item: &str) -> Result<Vec<Slot>, String> {
    let bad = || format!("invalid value item {item:?}");
    if item.contains("{{") {
        return expand_histogram_item(item);
    }
    if item == "_" {
        return Ok(vec![Slot::Gap]);
    }
    if item.eq_ignore_ascii_case("stale") {
        return Ok(vec![Slot::Float(STALE_NAN)]);
    }
    let (head, times) = split_times(item)?;
    let Some(n) = times else {
        return parse_value_float(item).map(|v| vec![Slot::Float(v)]);
    };
    if head == "_" {
        return Ok(vec![Slot::Gap; n]);
    }
    let (a, b) = match parse_value_float(head) {
        Ok(a) => (a, 0.0),
        Err(_) => split_arith(head).ok_or_else(bad)?,
    };
    // Repeated addition, as upstream, so `0.1+0.1x9` is bit-identical.
    let mut out = Vec::with_capacity(n + 1);
    let mut v = a;
    out.push(Slot::Float(v));
    for _ in 0..n {
        v += b;
        out.push(Slot::Float(v));
    }
    Ok(out)
}

/// Splits `a+b` / `a-b` (each possibly signed, possibly with exponents)
/// into `(a, ±b)`.
fn split_arith(s: &str) -> Option<(f64, f64)> {
    let b = s.as_bytes();
    (1..b.len()).find_map(|i| {
        if !matches!(b[i], b'+' | b'-') || matches!(b[i - 1], b'e' | b'E' | b'+' | b'-') {
            return None;
        }
        let a = parse_value_float(&s[..i]).ok()?;
        let d = parse_value_float(&s[i + 1..]).ok()?;
        Some((a, if b[i] == b'-' { -d } else { d }))
    })
}

/// Expands a whole values text.
pub(crate) fn expand_values(s: &str) -> Result<Vec<Slot>, String> {
    let mut out = Vec::new();
    for item in split_items(s)? {
        out.extend(expand_item(item)?);
    }
    Ok(out)
}

/// Parses a full series line into labels and slots.
pub(crate) fn parse_series_line(line: &str) -> Result<(Labels, Vec<Slot>), String> {
    let (metric, values) = split_metric(line)?;
    Ok((parse_metric(metric)?, expand_values(values)?))
}

/// Reports whether a `load` line is a start-timestamp line (§4.4).
pub(crate) fn is_start_timestamp_line(line: &str) -> bool {
    split_metric(line).is_ok_and(|(m, _)| m.ends_with("@st"))
}

/// Takes the next blank-separated token off `s`.
fn next_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    let end = s.find([' ', '\t']).unwrap_or(s.len());
    Some((&s[..end], &s[end..]))
}

fn expect_token<'a>(s: &'a str, want: &str, line: &str) -> Result<&'a str, String> {
    match next_token(s) {
        Some((t, rest)) if t == want => Ok(rest),
        _ => Err(format!("expected {want:?} in {line:?}")),
    }
}

/// Parses an eval header line (§6.1, §6.2).
fn parse_eval_header(line_no: usize, line: &str) -> Result<(EvalKind, String, Deprecated), String> {
    let (cmd, rest) = next_token(line).ok_or("empty eval line")?;
    let deprecated = match cmd.to_ascii_lowercase().as_str() {
        "eval" => Deprecated::None,
        "eval_fail" => Deprecated::Fail,
        "eval_warn" => Deprecated::Warn,
        "eval_info" => Deprecated::Info,
        "eval_ordered" => Deprecated::Ordered,
        _ => return Err(format!("line {line_no}: unknown command {cmd:?}")),
    };
    let (mode, rest) = next_token(rest).ok_or_else(|| format!("line {line_no}: bare {cmd}"))?;
    fn time(line_no: usize, rest: &str) -> Result<(i64, &str), String> {
        let (t, rest) = next_token(rest).ok_or_else(|| format!("line {line_no}: missing time"))?;
        Ok((
            parse_duration_ms(t).map_err(|e| format!("line {line_no}: {e}"))?,
            rest,
        ))
    }
    let (kind, expr) = match mode {
        "instant" => {
            let rest = expect_token(rest, "at", line)?;
            let (t, rest) = time(line_no, rest)?;
            (EvalKind::Instant { t }, rest)
        }
        "range" => {
            if deprecated == Deprecated::Ordered {
                return Err(format!("line {line_no}: eval_ordered is instant-only"));
            }
            let rest = expect_token(rest, "from", line)?;
            let (start, rest) = time(line_no, rest)?;
            let rest = expect_token(rest, "to", line)?;
            let (end, rest) = time(line_no, rest)?;
            let rest = expect_token(rest, "step", line)?;
            let (step, rest) = time(line_no, rest)?;
            if end < start {
                return Err(format!("line {line_no}: end before start"));
            }
            (EvalKind::Range { start, end, step }, rest)
        }
        _ => {
            return Err(format!(
                "line {line_no}: expected instant or range in {line:?}"
            ))
        }
    };
    let expr = expr.trim();
    if expr.is_empty() {
        return Err(format!("line {line_no}: missing expression"));
    }
    Ok((kind, expr.to_string(), deprecated))
}

/// Splits a file into commands (§1–2). An error here fails the whole file,
/// as upstream rejects it.
pub(crate) fn parse_file(text: &str) -> Result<Vec<Command>, String> {
    // Trimmed lines; comment lines count as empty (§1).
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            let t = l.trim_matches([' ', '\t', '\r']);
            if t.starts_with('#') {
                ""
            } else {
                t
            }
        })
        .collect();
    let block = |from: usize| -> Vec<(usize, String)> {
        lines[from..]
            .iter()
            .enumerate()
            .take_while(|(_, l)| !l.is_empty())
            .map(|(j, l)| (from + j + 1, l.to_string()))
            .collect()
    };
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let line_no = i + 1;
        if line.is_empty() {
            i += 1;
            continue;
        }
        let word = line
            .split([' ', '\t'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match word.as_str() {
            "clear" => {
                if line.len() != 5 {
                    return Err(format!("line {line_no}: clear takes no arguments"));
                }
                cmds.push(Command::Clear);
                i += 1;
            }
            "load" | "load_with_nhcb" => {
                let arg = line[word.len()..].trim();
                let interval_ms =
                    parse_duration_ms(arg).map_err(|e| format!("line {line_no}: {e}"))?;
                let series = block(i + 1);
                i += 1 + series.len();
                cmds.push(Command::Load {
                    line: line_no,
                    interval_ms,
                    series,
                    nhcb: word == "load_with_nhcb",
                });
            }
            w if w.starts_with("eval") => {
                let (kind, expr, deprecated) = parse_eval_header(line_no, line)?;
                let block = block(i + 1);
                i += 1 + block.len();
                cmds.push(Command::Eval(EvalCmd {
                    line: line_no,
                    kind,
                    expr,
                    deprecated,
                    block,
                }));
            }
            _ => return Err(format!("line {line_no}: unknown command {line:?}")),
        }
    }
    Ok(cmds)
}

fn text_match(kind: &str, m: Option<(&str, &str)>) -> Result<TextMatch, String> {
    let Some((how, text)) = m else {
        return Ok(TextMatch::Any);
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("expect {kind} {how}: needs a text"));
    }
    match how {
        "msg" => Ok(TextMatch::Msg(text.to_string())),
        "regex" => Regex::new(text)
            .map(TextMatch::Regex)
            .map_err(|e| format!("expect {kind} regex: {e}")),
        _ => Err(format!("expect {kind}: unknown matcher {how:?}")),
    }
}

/// Parses an eval's block into [`Expectations`] (§6.3, §7).
pub(crate) fn parse_eval_block(cmd: &EvalCmd) -> Result<Expectations, String> {
    let mut exp = Expectations::default();
    match cmd.deprecated {
        Deprecated::None => {}
        Deprecated::Fail => exp.fail = Some(TextMatch::Any),
        Deprecated::Warn => exp.some_warn = true,
        Deprecated::Info => exp.some_info = true,
        Deprecated::Ordered => exp.ordered = true,
    }
    let mut fail_lines = 0;
    let mut ended_at: Option<usize> = None;
    let mut series_pos = 0;
    for (line_no, line) in &cmd.block {
        let line_no = *line_no;
        if let Some(end) = ended_at {
            return Err(format!(
                "line {line_no}: line after the block ended at line {end}"
            ));
        }
        let err = |e: String| format!("line {line_no}: {e}");
        let first = line.split([' ', '\t']).next().unwrap_or_default();
        if cmd.deprecated == Deprecated::Fail
            && (first == "expected_fail_message" || first == "expected_fail_regexp")
        {
            let text = line[first.len()..].trim();
            let how = if first == "expected_fail_message" {
                "msg"
            } else {
                "regex"
            };
            exp.fail = Some(text_match("fail", Some((how, text))).map_err(err)?);
            ended_at = Some(line_no);
            continue;
        }
        if let Some(rest) = line.strip_prefix("expect range vector ") {
            let rest = expect_token(rest, "from", line).map_err(err)?;
            let (s, rest) = next_token(rest).ok_or_else(|| err("missing start".into()))?;
            let rest = expect_token(rest, "to", line).map_err(err)?;
            let (e, rest) = next_token(rest).ok_or_else(|| err("missing end".into()))?;
            let rest = expect_token(rest, "step", line).map_err(err)?;
            let st = rest.trim();
            exp.range_vector = Some((
                parse_duration_ms(s).map_err(err)?,
                parse_duration_ms(e).map_err(err)?,
                parse_duration_ms(st).map_err(err)?,
            ));
            continue;
        }
        if let Some(rest) = line.strip_prefix("expect string ") {
            exp.string = Some(unquote(rest.trim()).map_err(err)?);
            continue;
        }
        if first == "expect" {
            let rest = line[first.len()..].trim_start();
            let (kind, rest) = next_token(rest).ok_or_else(|| err("bare expect".into()))?;
            let rest = rest.trim();
            let matcher = if rest.is_empty() {
                None
            } else if let Some(t) = rest.strip_prefix("msg:") {
                Some(("msg", t))
            } else if let Some(t) = rest.strip_prefix("regex:") {
                Some(("regex", t))
            } else {
                return Err(err(format!(
                    "unexpected text after expect {kind}: {rest:?}"
                )));
            };
            let plain_only = |exp_set: &mut bool| -> Result<(), String> {
                if matcher.is_some() {
                    return Err(err(format!("expect {kind} takes no msg/regex")));
                }
                *exp_set = true;
                Ok(())
            };
            match kind {
                "fail" => {
                    fail_lines += 1;
                    exp.fail = Some(text_match(kind, matcher).map_err(err)?);
                }
                "warn" => exp.warn.push(text_match(kind, matcher).map_err(err)?),
                "info" => exp.info.push(text_match(kind, matcher).map_err(err)?),
                "no_warn" => plain_only(&mut exp.no_warn)?,
                "no_info" => plain_only(&mut exp.no_info)?,
                "ordered" => plain_only(&mut exp.ordered)?,
                _ => return Err(err(format!("unknown expectation {kind:?}"))),
            }
            continue;
        }
        if let Some(v) = parse_scalar_line(line) {
            exp.scalar = Some(v);
            ended_at = Some(line_no);
            continue;
        }
        let (labels, slots) = parse_series_line(line).map_err(err)?;
        series_pos += 1;
        let s = ExpectedSeries {
            labels,
            slots,
            pos: series_pos,
        };
        match exp.series.iter_mut().find(|e| e.labels == s.labels) {
            Some(old) => *old = s,
            None => exp.series.push(s),
        }
    }
    if fail_lines > 1 {
        return Err("more than one expect fail".into());
    }
    if (exp.no_warn && !exp.warn.is_empty()) || (exp.no_info && !exp.info.is_empty()) {
        return Err("expect warn/info together with no_warn/no_info".into());
    }
    let instant = matches!(cmd.kind, EvalKind::Instant { .. });
    if !instant && (exp.ordered || exp.range_vector.is_some() || exp.string.is_some()) {
        return Err("ordered/range vector/string expectations are for instant evals".into());
    }
    if instant && exp.range_vector.is_none() {
        if let Some(s) = exp.series.iter().find(|s| s.slots.len() != 1) {
            return Err(format!(
                "instant eval expects exactly one value per series, {} has {}",
                s.labels,
                s.slots.len()
            ));
        }
    }
    Ok(exp)
}
