//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics: regexes
//! are fully anchored and `.` matches newlines (`^(?s:…)$`), and a matcher
//! that matches the empty string also matches series without the label.

use std::collections::HashSet;
use std::fmt;

use regex::Regex;

/// The four matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// A regex that could not be compiled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid regular expression {pattern:?} in matcher: {reason}")]
pub struct MatcherError {
    /// The pattern as given.
    pub pattern: String,
    /// The regex crate's explanation.
    pub reason: String,
}

/// How a regex matcher tests a value; literal shapes skip the regex engine.
#[derive(Clone)]
enum RegexKind {
    /// `.*`: everything.
    Any,
    /// `.+`: every non-empty value.
    NonEmpty,
    /// `a|b|c` of plain literals.
    Set(HashSet<String>),
    /// Anything else.
    Re(Regex),
}

/// One label matcher.
#[derive(Clone)]
pub struct Matcher {
    op: MatchOp,
    name: String,
    value: String,
    re: Option<RegexKind>,
}

impl Matcher {
    /// Builds a matcher; regex operators compile `value` anchored.
    ///
    /// # Errors
    /// [`MatcherError`] when the regex does not compile.
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let (name, value) = (name.into(), value.into());
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(compile(&value)?),
            _ => None,
        };
        Ok(Self {
            op,
            name,
            value,
            re,
        })
    }

    /// `name = value`.
    pub fn eq(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            op: MatchOp::Equal,
            name: name.into(),
            value: value.into(),
            re: None,
        }
    }

    /// `name != value`.
    pub fn neq(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            op: MatchOp::NotEqual,
            name: name.into(),
            value: value.into(),
            re: None,
        }
    }

    /// The operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value or pattern as given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Tests a label value; an absent label is tested as `""`.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.re_matches(v),
            MatchOp::NotRegex => !self.re_matches(v),
        }
    }

    /// Reports whether the matcher accepts the empty string, and so series
    /// that lack the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// The literal values this matcher accepts, when it is a plain equality or
    /// a literal alternation (`=~"a|b"`); lets the index look values up
    /// instead of scanning them.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => Some(vec![&self.value]),
            (MatchOp::Regex, Some(RegexKind::Set(s))) => {
                Some(s.iter().map(String::as_str).collect())
            }
            _ => None,
        }
    }

    fn re_matches(&self, v: &str) -> bool {
        match self
            .re
            .as_ref()
            .expect("regex ops always carry a compiled regex")
        {
            RegexKind::Any => true,
            RegexKind::NonEmpty => !v.is_empty(),
            RegexKind::Set(s) => s.contains(v),
            RegexKind::Re(r) => r.is_match(v),
        }
    }
}

fn compile(pattern: &str) -> Result<RegexKind, MatcherError> {
    // Always compile, so an invalid pattern is reported even when a fast path
    // would have matched.
    let re = Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| MatcherError {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })?;
    Ok(match pattern {
        ".*" => RegexKind::Any,
        ".+" => RegexKind::NonEmpty,
        p if !p.is_empty()
            && p.split('|')
                .all(|alt| !alt.is_empty() && !alt.contains(is_meta)) =>
        {
            RegexKind::Set(p.split('|').map(str::to_string).collect())
        }
        _ => RegexKind::Re(re),
    })
}

fn is_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' | '|'
    )
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.op == o.op && self.name == o.name && self.value == o.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, v: &str) -> Matcher {
        Matcher::new(op, "l", v).unwrap()
    }

    #[test]
    fn regex_is_fully_anchored() {
        let r = m(MatchOp::Regex, "fo+");
        assert!(r.matches("foo"));
        assert!(!r.matches("xfoo"));
        assert!(!r.matches("foox"));
    }

    #[test]
    fn regex_dot_matches_newline() {
        assert!(m(MatchOp::Regex, "a.b").matches("a\nb"));
    }

    #[test]
    fn table_of_ops() {
        let cases = [
            (MatchOp::Equal, "a", "a", true),
            (MatchOp::Equal, "a", "", false),
            (MatchOp::NotEqual, "a", "b", true),
            (MatchOp::NotEqual, "", "", false),
            (MatchOp::Regex, ".*", "", true),
            (MatchOp::Regex, ".+", "", false),
            (MatchOp::Regex, ".+", "x", true),
            (MatchOp::Regex, "a|b", "b", true),
            (MatchOp::Regex, "a|b", "ab", false),
            (MatchOp::Regex, "a|", "", true),
            (MatchOp::NotRegex, "a|b", "c", true),
            (MatchOp::NotRegex, "a.*", "abc", false),
            (MatchOp::Regex, "(?i)ABC", "abc", true),
        ];
        for (op, pat, v, want) in cases {
            assert_eq!(m(op, pat).matches(v), want, "{op} {pat:?} on {v:?}");
        }
    }

    #[test]
    fn literal_alternation_is_a_set() {
        let matcher = m(MatchOp::Regex, "b|a");
        let mut s = matcher.set_matches().unwrap();
        s.sort();
        assert_eq!(s, ["a", "b"]);
        assert!(m(MatchOp::Regex, "a.|b").set_matches().is_none());
    }

    #[test]
    fn invalid_regex_is_an_error() {
        let e = Matcher::new(MatchOp::Regex, "l", "(").unwrap_err();
        assert_eq!(e.pattern, "(");
        // A fast-path shape that is still invalid is reported too.
        assert!(Matcher::new(MatchOp::Regex, "l", "a|(").is_err());
    }
}
