//! The subset of Prometheus's alert templates (Go `text/template` with
//! Prometheus's functions) that rule files use in labels and annotations:
//! text, `{{ … }}` actions with `{{-`/`-}}` trimming and comments,
//! `$labels.<name>` / `.Labels.<name>`, `$externalLabels.<name>`,
//! `$value` / `.Value`, string and number literals, pipelines, and the
//! functions `humanize`, `humanize1024`, `humanizePercentage`,
//! `humanizeDuration`, `printf`, `toUpper`, `toLower`, `title`. Anything
//! else (`if`, `range`, `query`, variables) is refused when the rule file
//! is loaded, naming the construct.
//!
//! Owns parsing and expanding template text; knows nothing of rules or
//! alerts beyond the data it is handed ([`TemplateData`]).

use std::collections::BTreeMap;

use crate::promql::{go_format_g, go_format_g_precision};

/// Why a template does not parse or expand.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without `}}`.
    #[error("unclosed action")]
    Unclosed,
    /// A construct outside the supported subset.
    #[error("unsupported template construct {0:?}")]
    Unsupported(String),
    /// An action that does not parse.
    #[error("bad action {0:?}")]
    Syntax(String),
    /// A function called with the wrong arguments.
    #[error("{func}: {reason}")]
    Call {
        /// The function.
        func: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// What a template sees: the alert's labels, the external labels and the
/// value of the series that triggered it.
#[derive(Debug, Clone, Default)]
pub struct TemplateData<'a> {
    /// `$labels`.
    pub labels: BTreeMap<&'a str, &'a str>,
    /// `$externalLabels`.
    pub external_labels: BTreeMap<&'a str, &'a str>,
    /// `$value`.
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Value,
    Labels,
    Label(String),
    ExternalLabels,
    ExternalLabel(String),
    Str(String),
    Num(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
    Title,
}

/// The functions a template may call, by name.
const FUNCS: [(&str, Func); 8] = [
    ("humanize", Func::Humanize),
    ("humanize1024", Func::Humanize1024),
    ("humanizePercentage", Func::HumanizePercentage),
    ("humanizeDuration", Func::HumanizeDuration),
    ("printf", Func::Printf),
    ("toUpper", Func::ToUpper),
    ("toLower", Func::ToLower),
    ("title", Func::Title),
];

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Operand(Operand),
    Call(Func, Vec<Operand>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Pipeline(Vec<Command>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(f64),
    Map(Vec<(String, String)>),
}

impl Val {
    fn render(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(v) => go_format_g(*v),
            Val::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", inner.join(" "))
            }
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::Num(_) => "float64",
            Val::Map(_) => "template.Labels",
        }
    }
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`TemplateError`] naming what is wrong or unsupported.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut literal = &rest[..open];
            if trim_next {
                literal = literal.trim_start();
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let mut action = &after[..close];
            if let Some(a) = action.strip_prefix('-') {
                if a.starts_with(char::is_whitespace) {
                    literal = literal.trim_end();
                    action = a;
                }
            }
            trim_next = false;
            if let Some(a) = action.strip_suffix('-') {
                if a.ends_with(char::is_whitespace) {
                    trim_next = true;
                    action = a;
                }
            }
            if !literal.is_empty() {
                parts.push(Part::Text(literal.to_string()));
            }
            let action = action.trim();
            if !(action.starts_with("/*") && action.ends_with("*/")) {
                parts.push(Part::Pipeline(parse_pipeline(action)?));
            }
            rest = &after[close + 2..];
        }
        let literal = if trim_next { rest.trim_start() } else { rest };
        if !literal.is_empty() {
            parts.push(Part::Text(literal.to_string()));
        }
        Ok(Self { parts })
    }

    /// Expands the template with `data`.
    ///
    /// # Errors
    /// [`TemplateError::Call`] when a function gets arguments it cannot take.
    pub fn expand(&self, data: &TemplateData<'_>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Pipeline(cmds) => {
                    let mut piped: Option<Val> = None;
                    for c in cmds {
                        piped = Some(match c {
                            Command::Operand(o) => {
                                if piped.is_some() {
                                    return Err(TemplateError::Syntax(
                                        "a value cannot take piped input".into(),
                                    ));
                                }
                                resolve(o, data)
                            }
                            Command::Call(f, args) => {
                                let mut vals: Vec<Val> =
                                    args.iter().map(|a| resolve(a, data)).collect();
                                vals.extend(piped.take());
                                call(*f, vals)?
                            }
                        });
                    }
                    if let Some(v) = piped {
                        out.push_str(&v.render());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Parses and expands `text` in one go.
///
/// # Errors
/// As [`Template::parse`] and [`Template::expand`].
pub fn expand(text: &str, data: &TemplateData<'_>) -> Result<String, TemplateError> {
    Template::parse(text)?.expand(data)
}

fn resolve(o: &Operand, data: &TemplateData<'_>) -> Val {
    let map = |m: &BTreeMap<&str, &str>| {
        Val::Map(
            m.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    match o {
        Operand::Value => Val::Num(data.value),
        Operand::Labels => map(&data.labels),
        // Prometheus expands with missingkey=zero: a missing label is "".
        Operand::Label(n) => Val::Str(data.labels.get(n.as_str()).unwrap_or(&"").to_string()),
        Operand::ExternalLabels => map(&data.external_labels),
        Operand::ExternalLabel(n) => Val::Str(
            data.external_labels
                .get(n.as_str())
                .unwrap_or(&"")
                .to_string(),
        ),
        Operand::Str(s) => Val::Str(s.clone()),
        Operand::Num(v) => Val::Num(*v),
    }
}

fn parse_pipeline(action: &str) -> Result<Vec<Command>, TemplateError> {
    let tokens = tokenize(action)?;
    if tokens.is_empty() {
        return Err(TemplateError::Syntax(action.into()));
    }
    let mut cmds = Vec::new();
    for cmd in tokens.split(|t| t == "|") {
        let Some((first, args)) = cmd.split_first() else {
            return Err(TemplateError::Syntax(action.into()));
        };
        if let Some(&(_, f)) = FUNCS.iter().find(|(n, _)| n == first) {
            let args = args.iter().map(|a| operand(a)).collect::<Result<_, _>>()?;
            cmds.push(Command::Call(f, args));
        } else if args.is_empty() {
            cmds.push(Command::Operand(operand(first)?));
        } else {
            return Err(TemplateError::Unsupported(first.clone()));
        }
    }
    Ok(cmds)
}

fn operand(t: &str) -> Result<Operand, TemplateError> {
    let field = |rest: &str| -> Result<String, TemplateError> {
        let ok = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ok.then(|| rest.to_string())
            .ok_or_else(|| TemplateError::Syntax(t.into()))
    };
    Ok(match t {
        "$value" | ".Value" => Operand::Value,
        "$labels" | ".Labels" => Operand::Labels,
        "$externalLabels" | ".ExternalLabels" => Operand::ExternalLabels,
        _ if t.starts_with('"') || t.starts_with('`') => Operand::Str(unquote(t)?),
        _ => {
            if let Some(r) = t
                .strip_prefix("$labels.")
                .or_else(|| t.strip_prefix(".Labels."))
            {
                Operand::Label(field(r)?)
            } else if let Some(r) = t
                .strip_prefix("$externalLabels.")
                .or_else(|| t.strip_prefix(".ExternalLabels."))
            {
                Operand::ExternalLabel(field(r)?)
            } else if let Ok(v) = t.parse::<f64>() {
                Operand::Num(v)
            } else {
                return Err(TemplateError::Unsupported(t.into()));
            }
        }
    })
}

/// Splits an action into words, keeping quoted strings whole and `|` apart.
fn tokenize(action: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut chars = action.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            out.push("|".into());
        } else if c == '"' || c == '`' {
            chars.next();
            let mut end = None;
            let mut escaped = false;
            for (j, d) in chars.by_ref() {
                if c == '"' && escaped {
                    escaped = false;
                } else if c == '"' && d == '\\' {
                    escaped = true;
                } else if d == c {
                    end = Some(j);
                    break;
                }
            }
            let end = end.ok_or_else(|| TemplateError::Syntax(action.into()))?;
            out.push(action[i..=end].to_string());
        } else if c == '(' || c == ')' {
            return Err(TemplateError::Unsupported("(".into()));
        } else {
            let start = i;
            let mut end = action.len();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_whitespace() || d == '|' {
                    end = j;
                    break;
                }
                chars.next();
            }
            out.push(action[start..end].to_string());
        }
    }
    Ok(out)
}

fn unquote(t: &str) -> Result<String, TemplateError> {
    if let Some(raw) = t.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return Ok(raw.to_string());
    }
    let inner = t
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| TemplateError::Syntax(t.into()))?;
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            _ => return Err(TemplateError::Syntax(t.into())),
        }
    }
    Ok(out)
}

fn call(f: Func, mut args: Vec<Val>) -> Result<Val, TemplateError> {
    let name = FUNCS.iter().find(|(_, g)| *g == f).map_or("?", |(n, _)| n);
    let bad = |reason: String| TemplateError::Call { func: name, reason };
    if f == Func::Printf {
        if args.is_empty() {
            return Err(bad("needs a format".into()));
        }
        let format = match args.remove(0) {
            Val::Str(s) => s,
            v => {
                return Err(bad(format!(
                    "format must be a string, not {}",
                    v.type_name()
                )))
            }
        };
        return Ok(Val::Str(go_sprintf(&format, &args)));
    }
    if args.len() != 1 {
        return Err(bad(format!("wants 1 argument, got {}", args.len())));
    }
    let arg = args.remove(0);
    let number = |v: &Val| -> Result<f64, TemplateError> {
        match v {
            Val::Num(n) => Ok(*n),
            Val::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| bad(format!("{s:?} is not a number"))),
            Val::Map(_) => Err(bad("labels are not a number".into())),
        }
    };
    Ok(Val::Str(match f {
        Func::Humanize => humanize(number(&arg)?),
        Func::Humanize1024 => humanize_1024(number(&arg)?),
        Func::HumanizePercentage => format!("{}%", go_format_g_precision(number(&arg)? * 100.0, 4)),
        Func::HumanizeDuration => humanize_duration(number(&arg)?),
        Func::ToUpper => arg.render().to_uppercase(),
        Func::ToLower => arg.render().to_lowercase(),
        Func::Title => title(&arg.render()),
        Func::Printf => unreachable!("handled above"),
    }))
}

/// Prometheus's `humanize`: SI prefixes, 4 significant digits.
fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_format_g_precision(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_format_g_precision(v, 4))
}

/// Prometheus's `humanize1024`: binary prefixes for |v| >= 1.
fn humanize_1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_format_g_precision(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_format_g_precision(v, 4))
}

/// Prometheus's `humanizeDuration`: `1d 2h 3m 4s`, or seconds with 4
/// significant digits and a sub-second prefix.
fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_format_g_precision(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", go_format_g_precision(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let total = v.abs() as i64;
        let (days, hours, minutes, seconds) = (
            total / 86_400,
            total / 3_600 % 24,
            total / 60 % 60,
            total % 60,
        );
        return if days != 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours != 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes != 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{sign}{}s", go_format_g_precision(v.abs(), 4))
        };
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_format_g_precision(v, 4))
}

/// Go's (deprecated) `strings.Title`: upper-cases each word's first letter.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric() && c != '_' && c != '\'';
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %f %e %g %q %%`
/// with `-`, `+`, `0` flags, width and precision. A verb that does not
/// suit its argument prints Go's `%!verb(type=value)`.
fn go_sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0).min(64));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let body = match (verb, arg) {
            ('v', v) => v.render(),
            ('s', Val::Str(s)) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('q', Val::Str(s)) => format!("{s:?}"),
            ('f' | 'F', Val::Num(v)) => fixed(*v, prec.unwrap_or(6)),
            ('e', Val::Num(v)) => go_exp(*v, prec.unwrap_or(6)),
            ('g', Val::Num(v)) => match prec {
                Some(p) => go_format_g_precision(*v, p),
                None => go_format_g(*v),
            },
            (verb, v) => format!("%!{verb}({}={})", v.type_name(), v.render()),
        };
        let body = if plus && matches!(arg, Val::Num(n) if *n >= 0.0) && verb != 'v' {
            format!("+{body}")
        } else {
            body
        };
        let width: usize = width.parse().unwrap_or(0).min(256);
        let len = body.chars().count();
        if len >= width {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', width - len));
        } else if zero && matches!(arg, Val::Num(_)) {
            let (sign, digits) = match body.strip_prefix(['-', '+']) {
                Some(d) => (&body[..1], d),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', width - len));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', width - len));
            out.push_str(&body);
        }
    }
    out
}

fn fixed(v: f64, prec: usize) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v:.prec$}")
    }
}

/// Go's `%e`: at least two exponent digits, with a sign.
fn go_exp(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return fixed(v, prec);
    }
    let s = format!("{v:.prec$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(value: f64) -> TemplateData<'static> {
        TemplateData {
            labels: BTreeMap::from([("instance", "a:9100"), ("job", "node")]),
            external_labels: BTreeMap::from([("cluster", "eu")]),
            value,
        }
    }

    fn x(text: &str, value: f64) -> String {
        expand(text, &data(value)).unwrap()
    }

    #[test]
    fn expands_labels_values_and_pipelines() {
        assert_eq!(x("{{ $labels.instance }} is down", 0.0), "a:9100 is down");
        assert_eq!(
            x("{{.Labels.job}}/{{ $externalLabels.cluster }}", 0.0),
            "node/eu"
        );
        assert_eq!(x("{{ $labels.missing }}|", 0.0), "|");
        assert_eq!(x("v={{ $value }}", 1e6), "v=1e+06");
        assert_eq!(x("v={{ $value }}", 0.25), "v=0.25");
        assert_eq!(x("{{ $value | humanize }}", 1234567.0), "1.235M");
        assert_eq!(x("{{ humanize $value }}", 0.001234), "1.234m");
        assert_eq!(x("{{ $value | humanize1024 }}", 1048576.0), "1Mi");
        assert_eq!(x("{{ $value | humanizePercentage }}", 0.1234), "12.34%");
        assert_eq!(x("{{ $value | humanizeDuration }}", 93784.0), "1d 2h 3m 4s");
        assert_eq!(x("{{ $value | humanizeDuration }}", 42.5), "42.5s");
        assert_eq!(x("{{ $value | humanizeDuration }}", 0.25), "250ms");
        assert_eq!(x("{{ printf \"%.2f\" $value }}", 1.23456), "1.23");
        assert_eq!(x("{{ $value | printf \"%.1f%%\" }}", 99.95), "100.0%");
        assert_eq!(
            x("{{ printf \"%5.1f|%-4s|\" $value \"ab\" }}", 2.0),
            "  2.0|ab  |"
        );
        assert_eq!(x("{{ printf \"%d\" $value }}", 3.0), "%!d(float64=3)");
        assert_eq!(x("{{ printf \"%e\" $value }}", 1234.5), "1.234500e+03");
        assert_eq!(x("{{ $labels.job | toUpper }}", 0.0), "NODE");
        assert_eq!(x("{{ \"hello world\" | title }}", 0.0), "Hello World");
        assert_eq!(x("a  {{- $labels.job -}}  b", 0.0), "anodeb");
        assert_eq!(x("a{{/* note */}}b", 0.0), "ab");
        assert_eq!(x("{{ $labels }}", 0.0), "map[instance:a:9100 job:node]");
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for t in [
            "{{ if $value }}x{{ end }}",
            "{{ range $labels }}{{ end }}",
            "{{ query \"up\" }}",
            "{{ $x := 1 }}",
            "{{ $labels.",
            "{{ }}",
            "{{ (1) }}",
            "{{ \"unterminated }}",
        ] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
        assert!(matches!(
            expand("{{ humanize \"abc\" }}", &data(0.0)),
            Err(TemplateError::Call {
                func: "humanize",
                ..
            })
        ));
    }
}
