//! Typed identifiers shared across the storage layer.

use std::fmt;

/// The head's stable identifier of a series, assigned on first sight and
/// written to the WAL in series and sample records. Never reused while the
/// WAL references it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeriesRef(pub u64);

impl fmt::Display for SeriesRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A series' position in one block's index (its series id there), what the
/// block's tombstones and postings hold. Meaningless outside that block and
/// never a head [`SeriesRef`]: the two are different types so tombstones of
/// one cannot be applied to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockSeriesId(pub u64);

impl fmt::Display for BlockSeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
