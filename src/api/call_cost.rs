//! How long the work of each repeated read call took the last time it ran,
//! so that calls known to be cheap run on the async worker that received
//! them instead of hopping to a query thread and back.
//!
//! The hop (hand the work to a parked query thread, park the worker, wake
//! it with the answer) is two cross-thread wake-ups: about 60-100 µs on a
//! 2-core VM, more than the whole work of a `labels` call or a one-series
//! instant query. Dashboards send the same calls over and over (Grafana
//! refreshes every panel with the same text and range length), so the cost
//! of a call is known from its last run. A call runs inline only when its
//! last run took at most [`INLINE_MAX`]: an async worker is then blocked
//! for about that long, no more, and a call that became expensive (more
//! data) is seen so at that run and goes back to a query thread.
//!
//! Owns the memo only; what a key holds (endpoint, query text, range
//! length, step, matchers) is the handlers', and whether the work is safe
//! on an async worker's stack (shallow enough) is theirs too.

use std::sync::LazyLock;
use std::time::Duration;

use parking_lot::Mutex;

use crate::lru::ByteLru;

/// The longest last run of a call that may run inline next time.
pub(crate) const INLINE_MAX: Duration = Duration::from_micros(250);

/// Bytes of keys the memo holds (least recently used out first).
const MEMO_BYTES: u64 = 1 << 20;

/// Longest key remembered; longer calls always take a query thread.
const MAX_KEY: usize = 4 << 10;

/// Bytes an entry costs besides its key: the value, the map's and the use
/// order's bookkeeping.
const ENTRY_OVERHEAD: u64 = 64;

/// Last run's work time in µs, by call key.
struct Memo(Mutex<ByteLru<String, u32>>);

impl Memo {
    fn new(capacity: u64) -> Self {
        Self(Mutex::new(ByteLru::new(capacity)))
    }

    fn is_cheap(&self, key: &str) -> bool {
        let max = INLINE_MAX.as_micros() as u32;
        self.0.lock().get(key).is_some_and(|&us| us <= max)
    }

    fn record(&self, key: &str, took: Duration) {
        if key.len() > MAX_KEY {
            return;
        }
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        let bytes = key.len() as u64 + ENTRY_OVERHEAD;
        self.0.lock().insert(key.to_owned(), us, bytes, |_| false);
    }
}

/// The process's memo.
static MEMO: LazyLock<Memo> = LazyLock::new(|| Memo::new(MEMO_BYTES));

/// Whether the call `key` ran before and its work took at most
/// [`INLINE_MAX`].
pub(crate) fn is_cheap(key: &str) -> bool {
    MEMO.is_cheap(key)
}

/// Remembers that the work of call `key` took `took` this time.
pub(crate) fn record(key: &str, took: Duration) {
    MEMO.record(key, took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_calls_are_not_cheap_and_the_last_run_decides() {
        let m = Memo::new(MEMO_BYTES);
        let key = "last-run";
        assert!(!m.is_cheap(key));
        m.record(key, Duration::from_micros(40));
        assert!(m.is_cheap(key));
        m.record(key, INLINE_MAX + Duration::from_micros(1));
        assert!(!m.is_cheap(key), "a run over the bound sends it back");
        m.record(key, INLINE_MAX);
        assert!(m.is_cheap(key));
        m.record(key, Duration::from_secs(u64::MAX / 2));
        assert!(!m.is_cheap(key), "huge times saturate, never wrap to cheap");
    }

    #[test]
    fn long_keys_are_never_remembered_and_the_memo_stays_bounded() {
        let m = Memo::new(64 << 10);
        let long = "x".repeat(MAX_KEY + 1);
        m.record(&long, Duration::from_micros(1));
        assert!(!m.is_cheap(&long));
        for i in 0..10_000 {
            m.record(&format!("bound|{i:08}"), Duration::ZERO);
        }
        let held = m.0.lock().bytes();
        assert!(held <= 64 << 10, "{held} bytes");
        assert!(m.is_cheap("bound|00009999"));
        assert!(!m.is_cheap("bound|00000000"), "oldest evicted");
    }
}
