//! Fuzzes the WAL record decoder (`tidemark::storage::wal::decode`), every
//! record type (series, samples, tombstones, exemplars, metadata, histograms,
//! out-of-order samples):
//! arbitrary bytes must never panic, and whatever decodes must re-encode to a
//! payload that decodes to the same record (values compared by bits).
//!
//! `cargo +nightly fuzz run fuzz_wal_record` (nightly, outside CI). Minimized
//! crashes become unit tests in `src/storage/wal/record.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::model::Interner;
use tidemark::model::Labels;
use tidemark::storage::wal::{
    decode, encode_exemplars, encode_histogram_samples, encode_metadata,
    encode_ooo_histogram_samples, encode_ooo_samples, encode_samples, encode_series,
    encode_tombstones, Record, RefMetadata,
};

/// Comparable form of a record: series as (ref, labels), samples as bits.
#[derive(Debug, PartialEq, Eq)]
enum Canon {
    Series(Vec<(u64, Vec<(String, String)>)>),
    Samples(Vec<(u64, i64, u64)>),
    OooSamples(Vec<(u64, i64, u64)>),
    Tombstones(Vec<(u64, i64, i64)>),
    Exemplars(Vec<(u64, i64, u64, Vec<(String, String)>)>),
    Metadata(Vec<RefMetadata>),
    /// Histogram records by their re-encoded bytes (the encoding is
    /// deterministic, and keeps every float's bits).
    Histograms(Vec<u8>),
    OooHistograms(Vec<u8>),
}

fn pairs(labels: &Labels) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect()
}

fn canon(r: &Record) -> Canon {
    match r {
        Record::Series(s) => Canon::Series(
            s.iter()
                .map(|s| (s.series_ref.0, pairs(&s.labels)))
                .collect(),
        ),
        Record::Samples(s) => Canon::Samples(
            s.iter()
                .map(|s| (s.series_ref.0, s.t, s.v.to_bits()))
                .collect(),
        ),
        Record::OooSamples(s) => Canon::OooSamples(
            s.iter()
                .map(|s| (s.series_ref.0, s.t, s.v.to_bits()))
                .collect(),
        ),
        Record::Tombstones(t) => {
            Canon::Tombstones(t.iter().map(|t| (t.series_ref.0, t.mint, t.maxt)).collect())
        }
        Record::Exemplars(e) => Canon::Exemplars(
            e.iter()
                .map(|e| (e.series_ref.0, e.t, e.v.to_bits(), pairs(&e.labels)))
                .collect(),
        ),
        Record::Metadata(m) => Canon::Metadata(m.clone()),
        Record::Histograms(h) => {
            let mut buf = Vec::new();
            encode_histogram_samples(h, &mut buf);
            Canon::Histograms(buf)
        }
        Record::OooHistograms(h) => {
            let mut buf = Vec::new();
            encode_ooo_histogram_samples(h, &mut buf);
            Canon::OooHistograms(buf)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let interner = Interner::new();
    let Ok(record) = decode(data, &interner) else {
        return;
    };
    let mut buf = Vec::new();
    match &record {
        Record::Series(s) => encode_series(s, &mut buf),
        Record::Samples(s) => encode_samples(s, &mut buf),
        Record::OooSamples(s) => encode_ooo_samples(s, &mut buf),
        Record::Tombstones(t) => encode_tombstones(t, &mut buf),
        Record::Exemplars(e) => encode_exemplars(e, &mut buf),
        Record::Metadata(m) => encode_metadata(m, &mut buf),
        Record::Histograms(h) => {
            // One record type per decoded record: one payload.
            assert!(encode_histogram_samples(h, &mut buf).len() <= 1);
        }
        Record::OooHistograms(h) => {
            assert!(encode_ooo_histogram_samples(h, &mut buf).len() <= 1);
        }
    }
    if buf.is_empty() {
        return; // an empty histogram record re-encodes to nothing
    }
    let again = decode(&buf, &interner).expect("a re-encoded record decodes");
    assert_eq!(canon(&again), canon(&record));
});
