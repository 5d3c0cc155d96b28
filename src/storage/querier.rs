//! Read access over a time range: [`Querier`] selects series by matchers and
//! yields their samples in time order through [`SeriesSampleIter`].
//!
//! Reads snapshots (shared chunk bytes) taken under each series' lock, so
//! iteration never blocks appenders. Must not modify anything.

use std::sync::Arc;

use crate::model::{Labels, Matcher, Sample};
use crate::storage::chunk::XorIter;
use crate::storage::head::{Head, HeadChunk};

/// A read view of the database over `[mint, maxt]` (inclusive, ms).
pub struct Querier {
    head: Arc<Head>,
    mint: i64,
    maxt: i64,
}

/// One selected series: its labels and its chunks overlapping the range.
#[derive(Debug, Clone)]
pub struct Series {
    labels: Labels,
    chunks: Vec<HeadChunk>,
    mint: i64,
    maxt: i64,
}

impl Series {
    /// The series' labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The samples within the querier's range, oldest first.
    pub fn samples(&self) -> SeriesSampleIter<'_> {
        SeriesSampleIter {
            chunks: self.chunks.iter(),
            current: None,
            mint: self.mint,
            maxt: self.maxt,
        }
    }
}

/// Iterates one series' samples in `[mint, maxt]`, chunk by chunk.
pub struct SeriesSampleIter<'a> {
    chunks: std::slice::Iter<'a, HeadChunk>,
    current: Option<XorIter<&'a [u8]>>,
    mint: i64,
    maxt: i64,
}

impl Iterator for SeriesSampleIter<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        loop {
            if let Some(it) = &mut self.current {
                for s in it.by_ref() {
                    if s.t > self.maxt {
                        break;
                    }
                    if s.t >= self.mint {
                        return Some(s);
                    }
                }
                self.current = None;
            }
            let c = self.chunks.next()?;
            self.current = Some(XorIter::new(&c.bytes[..]));
        }
    }
}

impl Querier {
    pub(crate) fn new(head: Arc<Head>, mint: i64, maxt: i64) -> Self {
        Self { head, mint, maxt }
    }

    /// The querier's time range.
    pub fn range(&self) -> (i64, i64) {
        (self.mint, self.maxt)
    }

    /// Series matching all `matchers` that have data in the range, sorted by
    /// labels. An empty matcher list selects every series.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<Series> {
        self.head
            .select(matchers, self.mint, self.maxt)
            .into_iter()
            .map(|(labels, chunks)| Series {
                labels,
                chunks,
                mint: self.mint,
                maxt: self.maxt,
            })
            .collect()
    }

    /// Sorted label names of the series matching `matchers` (all series when
    /// empty) with data in the range.
    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() && self.covers_head() {
            return self.head.label_names();
        }
        let mut names: Vec<String> = self
            .select(matchers)
            .iter()
            .flat_map(|s| s.labels.iter().map(|l| l.name.to_string()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Sorted values of label `name` among the series matching `matchers`
    /// with data in the range.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() && self.covers_head() {
            return self.head.label_values(name);
        }
        let mut values: Vec<String> = self
            .select(matchers)
            .iter()
            .filter_map(|s| s.labels.get(name).map(str::to_string))
            .collect();
        values.sort_unstable();
        values.dedup();
        values
    }

    /// Whether the range holds all of the head's data, so the index alone
    /// answers label questions.
    fn covers_head(&self) -> bool {
        match (self.head.min_t(), self.head.max_t()) {
            (Some(lo), Some(hi)) => self.mint <= lo && self.maxt >= hi,
            _ => true,
        }
    }
}
