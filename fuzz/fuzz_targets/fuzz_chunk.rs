//! Fuzzes the XOR chunk decoder: arbitrary bytes must never panic, and the
//! samples decoded before any error must re-encode to a chunk that decodes
//! to exactly the same samples (bit-exact values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::storage::chunk::{num_samples, XorAppender, XorIter};

fuzz_target!(|data: &[u8]| {
    let mut it = XorIter::new(data);
    let got: Vec<(i64, u64)> = it.by_ref().map(|s| (s.t, s.v.to_bits())).collect();
    if let Ok(n) = num_samples(data) {
        assert!(got.len() <= usize::from(n));
        assert_eq!(it.err().is_none(), got.len() == usize::from(n));
    }
    // The decoder rejects non-increasing timestamps, so the prefix meets
    // the appender's precondition.
    let mut a = XorAppender::new();
    for &(t, v) in &got {
        a.append(t, f64::from_bits(v));
    }
    let mut again = XorIter::new(a.bytes());
    let round: Vec<(i64, u64)> = again.by_ref().map(|s| (s.t, s.v.to_bits())).collect();
    assert_eq!(again.err(), None);
    assert_eq!(round, got);
});
