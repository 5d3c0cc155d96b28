//! Fuzzes the WAL record decoder (`tidemark::storage::wal::decode_chained`),
//! every record type (series, samples, chained and run-chained samples
//! (types 13 and 14; re-encoded as 14), tombstones,
//! exemplars, metadata, histograms, out-of-order samples) over a sequence
//! of payloads sharing one segment's chain (the input split at each
//! 2-byte little-endian length): arbitrary bytes must never panic, and
//! whatever decodes must re-encode to payloads that decode to the same
//! records (values compared by bits; samples re-encoded as a chain of
//! their own, in order).
//!
//! `cargo +nightly fuzz run fuzz_wal_record` (nightly, outside CI). Minimized
//! crashes become unit tests in `src/storage/wal/record.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidemark::model::Interner;
use tidemark::model::Labels;
use tidemark::storage::wal::{
    decode_chained, encode_exemplars, encode_histogram_samples, encode_metadata,
    encode_ooo_histogram_samples, encode_ooo_samples, encode_samples, encode_series,
    encode_tombstones, Record, RefMetadata, SampleChain,
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

/// `data` cut into payloads: each a 2-byte little-endian length and that
/// many bytes (the last one whatever is left).
fn payloads(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() > 2 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let (p, tail) = rest.split_at(len.min(rest.len()));
        out.push(p);
        data = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let interner = Interner::new();
    let mut chain = SampleChain::new();
    let mut records = Vec::new();
    for p in payloads(data) {
        // A segment's replay stops at the first record that does not decode.
        let Ok(record) = decode_chained(p, &interner, &mut chain) else {
            break;
        };
        records.push(record);
    }
    let (mut enc, mut dec) = (SampleChain::new(), SampleChain::new());
    for record in &records {
        let mut buf = Vec::new();
        match record {
            Record::Series(s) => encode_series(s, &mut buf),
            Record::Samples(s) if s.len() % 2 == 0 => enc.encode(s, &mut buf),
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
            continue; // an empty histogram record re-encodes to nothing
        }
        let again = decode_chained(&buf, &interner, &mut dec).expect("a re-encoded record decodes");
        assert_eq!(canon(&again), canon(record));
    }
});
