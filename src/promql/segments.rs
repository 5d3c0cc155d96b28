//! Splits PromQL text into code, string literals and comments: the one
//! place that knows PromQL's quoting (`"…"` and `'…'` with backslash
//! escapes, raw `` `…` ``) and its `#` line comments. The hand-written
//! passes that run before the parser (the guard's pre-scan, byte-escape
//! normalization, duration-expression rewriting) look only at the segments
//! they care about. Never fails: an unterminated string runs to the end.

/// One piece of a query, borrowing its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    /// Anything outside strings and comments.
    Code(&'a str),
    /// A string literal with its quotes; `quote` is `"`, `'` or `` ` ``.
    Str { quote: u8, text: &'a str },
    /// A `#` comment up to (not including) the end of its line.
    Comment(&'a str),
}

impl<'a> Segment<'a> {
    /// The segment's text, as it stands in the query.
    pub(crate) fn text(&self) -> &'a str {
        match *self {
            Segment::Code(t) | Segment::Comment(t) | Segment::Str { text: t, .. } => t,
        }
    }
}

/// The segments of `query`, in order; their texts concatenate to `query`.
pub(crate) fn segments(query: &str) -> impl Iterator<Item = Segment<'_>> {
    let b = query.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= b.len() {
            return None;
        }
        let start = i;
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                let mut j = i + 1;
                while j < b.len() && b[j] != q {
                    if b[j] == b'\\' && q != b'`' {
                        j += 1;
                    }
                    j += 1;
                }
                // Past the closing quote; an escape may have stepped past the
                // end, and the end may fall inside a multi-byte character
                // only when the text ends in a lone backslash (it cannot).
                i = (j + 1).min(b.len());
                while !query.is_char_boundary(i) {
                    i += 1;
                }
                Some(Segment::Str {
                    quote: q,
                    text: &query[start..i],
                })
            }
            b'#' => {
                i = query[i..].find('\n').map_or(b.len(), |n| i + n);
                Some(Segment::Comment(&query[start..i]))
            }
            _ => {
                while i < b.len() && !matches!(b[i], b'"' | b'\'' | b'`' | b'#') {
                    i += 1;
                }
                Some(Segment::Code(&query[start..i]))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(q: &str) -> Vec<Segment<'_>> {
        segments(q).collect()
    }

    #[test]
    fn splits_code_strings_and_comments() {
        let q = "sum(up{a=\"x]\\\"y\"}[5m]) # note \"not a string\"\n+ `raw\\` or 'q'";
        let got = split(q);
        assert_eq!(
            got,
            vec![
                Segment::Code("sum(up{a="),
                Segment::Str {
                    quote: b'"',
                    text: "\"x]\\\"y\""
                },
                Segment::Code("}[5m]) "),
                Segment::Comment("# note \"not a string\""),
                Segment::Code("\n+ "),
                Segment::Str {
                    quote: b'`',
                    text: "`raw\\`"
                },
                Segment::Code(" or "),
                Segment::Str {
                    quote: b'\'',
                    text: "'q'"
                },
            ]
        );
        assert_eq!(got.iter().map(Segment::text).collect::<String>(), q);
    }

    #[test]
    fn unterminated_and_multibyte_text_is_kept_whole() {
        for q in ["up{a=\"abc", "up{a=\"\\é\"}", "\"\\", "é#é\né", "'\\"] {
            let got: String = segments(q).map(|s| s.text()).collect();
            assert_eq!(got, q);
        }
    }
}
