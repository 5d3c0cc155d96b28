//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics: regexes
//! are fully anchored and `.` matches newlines (`^(?s:…)$`), and a matcher
//! that matches the empty string also matches series without the label.
//!
//! Compiled regexes are kept in a bounded cache by pattern
//! ([`COMPILED_CACHE_BYTES`]): a dashboard sends the same few patterns on
//! every refresh, and compiling one (the regex engine builds its automata
//! eagerly) costs more than answering a small query.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;

use crate::lru::ByteLru;

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
enum RegexKind {
    /// `.*`: everything.
    Any,
    /// `.+`: every non-empty value.
    NonEmpty,
    /// `a|b|c` of plain literals.
    Set(HashSet<String>),
    /// Anything else, with the literal every value it accepts starts with
    /// (often empty).
    Re(Regex, String),
}

/// One label matcher.
#[derive(Clone)]
pub struct Matcher {
    op: MatchOp,
    name: String,
    value: String,
    re: Option<Arc<RegexKind>>,
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
            MatchOp::Regex | MatchOp::NotRegex => Some(compile(&value)?.0),
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
        match (self.op, self.re.as_deref()) {
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
            .as_deref()
            .expect("regex ops always carry a compiled regex")
        {
            RegexKind::Any => true,
            RegexKind::NonEmpty => !v.is_empty(),
            RegexKind::Set(s) => s.contains(v),
            RegexKind::Re(r, prefix) => v.starts_with(prefix.as_str()) && r.is_match(v),
        }
    }

    /// The literal every value `m.matches(v) == want` accepts starts with,
    /// when it is not empty: a regex matcher's literal prefix (`=~"node-0.*"`
    /// gives `node-0`), for a matching value when `want`, or, for `!~`, a
    /// rejected one. Lets an index with sorted values scan only that range.
    pub fn value_prefix(&self, want: bool) -> Option<&str> {
        let accepting = match self.op {
            MatchOp::Regex => want,
            MatchOp::NotRegex => !want,
            MatchOp::Equal | MatchOp::NotEqual => return None,
        };
        match self.re.as_deref() {
            Some(RegexKind::Re(_, prefix)) if accepting && !prefix.is_empty() => Some(prefix),
            _ => None,
        }
    }
}

/// Bytes of compiled regexes (their automata, as the regex engine
/// counts them, plus the pattern) the cache holds at most.
pub(crate) const COMPILED_CACHE_BYTES: u64 = 16 << 20;

/// Patterns longer than this are compiled every time, never cached.
const MAX_CACHED_PATTERN: usize = 4096;

/// A compiled matcher and the bytes it holds.
type Compiled = (Arc<RegexKind>, u64);

/// Compiled matchers by pattern, least recently used out first.
static COMPILED: LazyLock<Mutex<ByteLru<String, Compiled>>> =
    LazyLock::new(|| Mutex::new(ByteLru::new(COMPILED_CACHE_BYTES)));

/// `pattern` compiled (from the cache when it was compiled before), with
/// the bytes it costs there.
fn compile(pattern: &str) -> Result<Compiled, MatcherError> {
    if let Some(hit) = COMPILED.lock().get(pattern) {
        return Ok(hit.clone());
    }
    // Compiled outside the lock: another thread may compile the same
    // pattern meanwhile; the later insert replaces the earlier.
    let (kind, bytes) = compile_uncached(pattern)?;
    let kind = Arc::new(kind);
    if pattern.len() <= MAX_CACHED_PATTERN && bytes <= COMPILED_CACHE_BYTES / 8 {
        COMPILED
            .lock()
            .insert(pattern.to_string(), (kind.clone(), bytes), bytes, |_| false);
    }
    Ok((kind, bytes))
}

/// The heap bytes compiling `pattern` takes (its automata and the
/// pattern), compiling it (or finding it in the cache): what a parsed
/// query holding its own copy of the regex costs, for the caches that
/// weigh their entries. Zero for an invalid pattern.
pub(crate) fn regex_bytes(pattern: &str) -> u64 {
    compile(pattern).map_or(0, |(_, bytes)| bytes)
}

impl RegexKind {
    fn heap_bytes(&self, pattern: &str) -> u64 {
        let own = match self {
            RegexKind::Re(r, prefix) => r.memory_usage() + prefix.len(),
            RegexKind::Set(s) => s.iter().map(|v| v.len() + 32).sum(),
            RegexKind::Any | RegexKind::NonEmpty => 0,
        };
        (own + pattern.len() + 64) as u64
    }
}

fn compile_uncached(pattern: &str) -> Result<(RegexKind, u64), MatcherError> {
    // Always compile, so an invalid pattern is reported even when a fast
    // path would have matched. The regex crate's settings for a string
    // regex (its `Regex::new`), without capture groups: only `is_match`
    // is asked.
    let anchored = format!("^(?s:{pattern})$");
    let config = meta::Config::new()
        .nfa_size_limit(Some(10 << 20))
        .hybrid_cache_capacity(2 << 20)
        .match_kind(regex_automata::MatchKind::LeftmostFirst)
        .utf8_empty(true)
        .which_captures(WhichCaptures::None);
    let re = meta::Builder::new()
        .configure(config)
        .syntax(syntax::Config::new().utf8(true))
        .build(&anchored)
        .map_err(|_| MatcherError {
            pattern: pattern.to_string(),
            // The regex crate's message (with the position), the one
            // users know; it fails the same way.
            reason: regex::Regex::new(&anchored).err().map_or_else(
                || "invalid regular expression".to_string(),
                |e| e.to_string(),
            ),
        })?;
    let kind = match pattern {
        ".*" => RegexKind::Any,
        ".+" => RegexKind::NonEmpty,
        p if !p.is_empty()
            && p.split('|')
                .all(|alt| !alt.is_empty() && !alt.contains(is_meta)) =>
        {
            RegexKind::Set(p.split('|').map(str::to_string).collect())
        }
        _ => RegexKind::Re(re, literal_prefix(&anchored)),
    };
    let bytes = kind.heap_bytes(pattern);
    Ok((kind, bytes))
}

/// The literal every string the regex `anchored` (`^(?s:…)$`) matches
/// starts with: the longest common prefix of its prefix literals, as
/// regex-syntax's extractor finds them for prefilters (any match begins
/// with one of them). Empty when there is none, the set is unbounded, or
/// the pattern does not parse here; cut back to a whole character.
fn literal_prefix(anchored: &str) -> String {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .utf8(true)
        .build()
        .parse(anchored)
    else {
        return String::new();
    };
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let Some(lcp) = seq.longest_common_prefix() else {
        return String::new();
    };
    match std::str::from_utf8(lcp) {
        Ok(s) => s.to_string(),
        Err(e) => String::from_utf8_lossy(&lcp[..e.valid_up_to()]).into_owned(),
    }
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

    #[test]
    fn literal_prefixes_are_what_every_match_starts_with() {
        for (pattern, want) in [
            ("node-00[0-3].*", "node-00"),
            ("ab+", "ab"),
            ("ab*", "a"),
            ("foo?bar", "fo"),
            ("abc|abd.*", "ab"),
            ("é.*", "é"),
            ("[é]x.*", "éx"),
            (".*foo", ""),
            ("(?i)abc.*", ""),
            ("a|b.*", ""),
            ("", ""),
            ("x*", ""),
        ] {
            assert_eq!(
                literal_prefix(&format!("^(?s:{pattern})$")),
                want,
                "{pattern}"
            );
        }
        let m = Matcher::new(MatchOp::Regex, "instance", "node-00[0-3].*").unwrap();
        assert_eq!(m.value_prefix(true), Some("node-00"));
        assert_eq!(m.value_prefix(false), None);
        let n = Matcher::new(MatchOp::NotRegex, "instance", "node-00[0-3].*").unwrap();
        assert_eq!(n.value_prefix(false), Some("node-00"));
        assert_eq!(n.value_prefix(true), None);
        assert_eq!(Matcher::eq("a", "b").value_prefix(true), None);
    }

    proptest::proptest! {
        /// Soundness: whatever the pattern, every value the matcher accepts
        /// starts with the prefix it reports.
        #[test]
        fn prop_every_accepted_value_starts_with_the_prefix(
            pattern in "[ab.*+?|()\\[\\]é]{0,8}",
            values in proptest::collection::vec("[abé]{0,5}", 1..40),
        ) {
            let Ok(m) = Matcher::new(MatchOp::Regex, "l", pattern.as_str()) else {
                return Ok(());
            };
            let prefix = m.value_prefix(true).unwrap_or("");
            for v in &values {
                if m.matches(v) {
                    proptest::prop_assert!(v.starts_with(prefix), "{pattern:?} {v:?} {prefix:?}");
                }
            }
        }
    }

    fn m(op: MatchOp, v: &str) -> Matcher {
        Matcher::new(op, "l", v).unwrap()
    }

    #[test]
    fn compiled_regexes_are_shared_from_the_cache() {
        let a = m(MatchOp::Regex, "cache-test-[0-9]+x");
        let b = m(MatchOp::NotRegex, "cache-test-[0-9]+x");
        assert!(Arc::ptr_eq(a.re.as_ref().unwrap(), b.re.as_ref().unwrap()));
        assert!(a.matches("cache-test-12x") && !b.matches("cache-test-12x"));
        assert!(regex_bytes("cache-test-[0-9]+x") > 0);
        // Invalid patterns are never cached and keep the regex crate's
        // message.
        for _ in 0..2 {
            let e = Matcher::new(MatchOp::Regex, "l", "cache-test-(").unwrap_err();
            assert!(e.reason.contains("unclosed group"), "{}", e.reason);
        }
        assert_eq!(regex_bytes("cache-test-("), 0);
    }

    #[test]
    fn the_matcher_cache_stays_within_its_bytes() {
        for i in 0..3000 {
            m(MatchOp::Regex, &format!("bound-test-{i}-[a-z]+"));
        }
        assert!(COMPILED.lock().bytes() <= COMPILED_CACHE_BYTES);
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
