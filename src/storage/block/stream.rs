//! A block's stream labels: the labels of the stream it belongs to (a
//! bucket block's `thanos.labels`, set by the store), added to every series
//! the block yields, as Thanos's store gateway does. A stream label takes
//! precedence over a series label of the same name.
//!
//! Owns deciding matchers that name a stream label against the block's
//! value, and which labels a series carries; never reads the index. Empty
//! for a node's own blocks, where it costs nothing.

use std::borrow::Cow;

use crate::model::{Label, Labels, Matcher};

/// The stream labels of one block (empty: none).
#[derive(Clone, Debug, Default)]
pub(super) struct Stream(Labels);

impl Stream {
    pub(super) fn new(labels: Labels) -> Self {
        Self(labels)
    }

    pub(super) fn labels(&self) -> &Labels {
        &self.0
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of stream label `name`, if the block has one.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name)
    }

    /// The matchers the index must decide, or `None` when a matcher naming
    /// a stream label rejects the block's value (no series of the block
    /// can match). Borrows `matchers` when the block has no stream labels.
    pub(super) fn split<'a>(&self, matchers: &'a [Matcher]) -> Option<Cow<'a, [Matcher]>> {
        if self.0.is_empty() || !matchers.iter().any(|m| self.get(m.name()).is_some()) {
            return Some(Cow::Borrowed(matchers));
        }
        let mut rest = Vec::with_capacity(matchers.len());
        for m in matchers {
            match self.get(m.name()) {
                Some(v) if !m.matches(v) => return None,
                Some(_) => {}
                None => rest.push(m.clone()),
            }
        }
        Some(Cow::Owned(rest))
    }

    /// Whether a series label named `name` is kept (a stream label of the
    /// same name replaces it).
    pub(super) fn keeps(&self, name: &str) -> bool {
        self.0.is_empty() || self.get(name).is_none()
    }

    /// The stream labels, to add to a series'.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchOp;

    fn stream() -> Stream {
        Stream::new(Labels::from_static(&[("replica", "a"), ("zone", "x")]))
    }

    #[test]
    fn matchers_on_stream_labels_are_decided_against_the_block_value() {
        let s = stream();
        let job = Matcher::eq("job", "j");
        assert!(s
            .split(&[Matcher::eq("replica", "b"), job.clone()])
            .is_none());
        assert!(s.split(&[Matcher::eq("replica", "")]).is_none());
        let ms = [
            Matcher::new(MatchOp::Regex, "replica", "a|b").unwrap(),
            job.clone(),
        ];
        let kept = s.split(&ms).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name(), "job");
        assert!(matches!(
            s.split(std::slice::from_ref(&job)),
            Some(Cow::Borrowed(_))
        ));
        let none = Stream::default();
        assert_eq!(none.split(&[Matcher::eq("replica", "")]).unwrap().len(), 1);
        assert!(s.keeps("job") && !s.keeps("replica") && none.keeps("replica"));
    }
}
