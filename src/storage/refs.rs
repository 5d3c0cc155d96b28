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
